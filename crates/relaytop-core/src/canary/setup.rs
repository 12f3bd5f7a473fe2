//! Turning a checked configuration into a run: `--simulate` (every provider against an
//! embedded simulated relay), `--time-scale` (the canary's clock N times faster), the canary's
//! connection pools (on-demand sessions), and the start-up notes printed once.
//!
//! What `--time-scale N` scales: stage durations, the check interval and the evaluation
//! windows (they are canary time, real time × N), and with them the probe rate, the rate
//! limiter's window (a minute of canary time) and the connection pools (each request keeps its
//! real latency, so N times the requests a real second need N times the connections, up to
//! `MAX_SCALED_POOL`). Request latencies, timeouts, heartbeats and reconnect backoff are not
//! scaled. Details: docs/CANARY-NOTES.md.

use std::time::Duration;

use crate::canary::plan::{ExpectedLatency, LatencyKind, Note, human, trim_float};
use crate::config::Config;
use crate::config::sim_profile::SimProfile;
use crate::session::{SessionInfo, SessionSpec, Timing, Workload};

/// Sessions a canary pool grows to at most under `--time-scale`.
pub const MAX_SCALED_POOL: u32 = 256;
/// The most `--time-scale` accepts.
pub const MAX_TIME_SCALE: f64 = 10_000.0;

/// How a run is asked to go, from the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunOptions {
    /// Run every provider against an embedded simulated relay instead of its URL.
    pub simulate: bool,
    /// Canary time runs this many times faster than real time (1: real time).
    pub time_scale: f64,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            simulate: false,
            time_scale: 1.0,
        }
    }
}

/// The simulator profile `--simulate` gives a provider: its own `simulate`, else the profile
/// named like it, else the reference case (the baseline is the legacy relay, the canary the
/// new one; other providers alternate).
fn profile_for(config: &Config, index: usize) -> String {
    let p = &config.providers[index];
    if let Some(profile) = &p.simulate {
        return profile.clone();
    }
    if SimProfile::named(&p.name).is_some() {
        return p.name.clone();
    }
    if let Some(plan) = &config.canary {
        if p.name == plan.canary {
            return "holysheep".into();
        }
        if p.name == plan.baseline {
            return "legacy".into();
        }
    }
    if index.is_multiple_of(2) {
        "legacy".into()
    } else {
        "holysheep".into()
    }
}

/// The p99 a profile gives the judged latency of `max_tokens`-token responses, in ms.
fn profile_p99(profile: &SimProfile, latency: LatencyKind, max_tokens: Option<u32>) -> f64 {
    let streaming = match latency {
        LatencyKind::Ttft => 0.0,
        LatencyKind::Total => {
            let tokens = max_tokens.map_or(profile.tokens_per_response, |m| {
                m.min(profile.tokens_per_response)
            });
            if profile.tokens_per_second > 0.0 && profile.tokens_per_second < 1e6 {
                f64::from(tokens.saturating_sub(1)) / profile.tokens_per_second * 1000.0
            } else {
                0.0
            }
        }
    };
    profile.ttft_p99_ms + streaming
}

/// Applies `options` to a checked configuration: simulators chosen, the canary's clock
/// scaled, its pools added as sessions. Returns the start-up notes (the canary's own first).
pub fn prepare(config: &mut Config, options: &RunOptions) -> Result<Vec<Note>, String> {
    let scale = options.time_scale;
    if !(1.0..=MAX_TIME_SCALE).contains(&scale) {
        return Err(format!(
            "--time-scale must be between 1 and {MAX_TIME_SCALE}, not {scale}"
        ));
    }
    let mut notes = Vec::new();
    if options.simulate {
        for i in 0..config.providers.len() {
            let profile_name = profile_for(config, i);
            let p = &mut config.providers[i];
            if let Some(profile) = SimProfile::named(&profile_name) {
                notes.push(Note::info(format!(
                    "--simulate: {} runs against a simulated relay (profile {profile_name}: time to \
                     first token p50 {} ms, p99 {} ms{}){}",
                    p.name,
                    trim_float(profile.ttft_p50_ms),
                    trim_float(profile.ttft_p99_ms),
                    if profile.drop_rate > 0.0 {
                        format!(", {} % of responses dropped", trim_float(profile.drop_rate * 100.0))
                    } else {
                        String::new()
                    },
                    if p.url.is_empty() || p.simulate.is_some() {
                        String::new()
                    } else {
                        format!(" instead of {}", p.url)
                    }
                )));
            }
            p.simulate = Some(profile_name);
            p.api_key = None;
        }
        if config.providers.iter().any(|p| p.api_key_env.is_some()) {
            notes.push(Note::info(
                "--simulate: no key is read from the environment (the simulators take any)",
            ));
        }
    }
    let Some(plan) = &mut config.canary else {
        if scale != 1.0 {
            return Err(
                "--time-scale speeds up a canary's clock, and this configuration has no canary"
                    .into(),
            );
        }
        return Ok(notes);
    };
    let simulated = |name: &str| {
        config
            .providers
            .iter()
            .find(|p| p.name == name)
            .is_some_and(|p| p.simulate.is_some())
    };
    if scale != 1.0 && !(simulated(&plan.baseline) && simulated(&plan.canary)) {
        return Err(
            "--time-scale needs simulated relays (add --simulate): a real relay's rate limits \
             and latencies do not run faster"
                .into(),
        );
    }
    plan.time_scale = scale;
    let provider = |name: &str| config.providers.iter().find(|p| p.name == name);
    let (Some(baseline), Some(canary)) = (provider(&plan.baseline), provider(&plan.canary)) else {
        return Err(format!(
            "the canary names providers {} and {}, and one of them is not configured",
            plan.baseline, plan.canary
        ));
    };
    plan.requests_per_minute_baseline = baseline.requests_per_minute;
    plan.requests_per_minute_canary = canary.requests_per_minute;

    // Pools: under --time-scale, N times the requests a real second need N times the
    // connections (latencies are real); grow as far as the rate needs, within bounds.
    let grow = |pool: u32, rpm: u32| -> u32 {
        if scale <= 1.0 {
            return pool;
        }
        let needed = (f64::from(rpm) * scale / 60.0).ceil() as u32 + 2;
        let most = (f64::from(pool) * scale).min(f64::from(MAX_SCALED_POOL)) as u32;
        needed.max(pool).min(most).max(1)
    };
    let configured = (plan.pool_baseline, plan.pool_canary);
    plan.pool_baseline = grow(plan.pool_baseline, baseline.requests_per_minute);
    plan.pool_canary = grow(plan.pool_canary, canary.requests_per_minute);

    // Expected latencies: the simulator profiles, or the reference case.
    let expected = match (
        baseline.simulate.as_deref().and_then(SimProfile::named),
        canary.simulate.as_deref().and_then(SimProfile::named),
    ) {
        (Some(b), Some(c)) => ExpectedLatency {
            canary_p99_ms: profile_p99(&c, plan.latency, plan.max_tokens),
            baseline_p99_ms: profile_p99(&b, plan.latency, plan.max_tokens),
            source: format!(
                "under --simulate, {} runs the {} profile",
                plan.canary,
                canary.simulate.as_deref().unwrap_or("")
            ),
        },
        _ => ExpectedLatency::reference_case(&plan.canary),
    };

    let mut sessions = Vec::new();
    for (provider, pool) in [(baseline, plan.pool_baseline), (canary, plan.pool_canary)] {
        for n in 1..=pool {
            sessions.push(SessionSpec {
                info: SessionInfo {
                    id: 0,
                    name: format!("{}-canary-{n}", provider.name),
                    provider: provider.name.clone(),
                    model: provider.model.clone(),
                    protocol: provider.protocol,
                    url: provider.url.clone(),
                    workload: "canary".into(),
                },
                api_key: provider.api_key.clone(),
                auth: provider.auth,
                workload: Workload::OnDemand,
                timing: Timing::default(),
                seed: None,
                tap: None,
                limits: None,
                resolver: None,
            });
        }
    }

    let mut canary_notes = std::mem::take(&mut plan.notes);
    canary_notes.extend(plan.rule_notes(&expected));
    let grown = if configured != (plan.pool_baseline, plan.pool_canary) {
        format!(
            " ({} and {} configured, grown for --time-scale {}: requests keep their real latency)",
            configured.0,
            configured.1,
            trim_float(scale)
        )
    } else {
        String::new()
    };
    canary_notes.push(Note::info(format!(
        "connection pools: {} to {}, {} to {}{grown}",
        plan.pool_baseline, plan.baseline, plan.pool_canary, plan.canary
    )));
    if scale > 1.0 {
        let total: Duration = plan.stages.iter().map(|s| s.duration).sum();
        canary_notes.push(Note::info(format!(
            "--time-scale {}: canary time runs {}× faster: the {} rollout takes about {} (stage \
             durations, check intervals, windows, the probe rate and the rate limits' minute are \
             scaled; request latencies are not)",
            trim_float(scale),
            trim_float(scale),
            human(total),
            human(total.div_f64(scale))
        )));
    }
    canary_notes.sort_by_key(|n| n.level);
    plan.notes = canary_notes.clone();
    canary_notes.extend(notes);
    canary_notes.sort_by_key(|n| n.level);

    let first_id = config.sessions.len();
    for (i, mut spec) in sessions.into_iter().enumerate() {
        spec.info.id = u32::try_from(first_id + i).unwrap_or(u32::MAX);
        config.sessions.push(spec);
    }
    Ok(canary_notes)
}

/// The limiter settings of a run: the window (a minute of canary time) and how many times
/// the providers' connection limits grow.
pub fn limit_scale(config: &Config) -> (Duration, u32) {
    let scale = config
        .canary
        .as_ref()
        .map_or(1.0, |c| c.time_scale)
        .max(1.0);
    let window = Duration::from_secs(60).div_f64(scale);
    let factor = scale.ceil().min(f64::from(u32::MAX)) as u32;
    (window, factor)
}
