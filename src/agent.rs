//! `relaytop agent`: a headless run with no end, for a fleet. It runs until SIGTERM or
//! SIGINT (then prints the summary and exits cleanly), serves `/metrics` and `/healthz` with
//! its `location` and `--label`s on every series, keeps its recordings within a size and age
//! budget (`relaytop_core::fleet::retention`, swept every `SWEEP_EVERY`), and on SIGHUP reads
//! its configuration anew: sessions whose spec did not change keep running, added ones start,
//! removed ones stop (`relaytop_core::fleet::reload`).
//!
//! Memory stays bounded over days: the fold keeps windows and fixed-size histograms, events
//! are not kept, the recorder writes through fixed buffers; `/healthz` says the resident
//! memory so that a soak can watch it.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use relaytop_core::canary::RunOptions;
use relaytop_core::fleet::reload::{self, Known};
use relaytop_core::fleet::retention::{self, Budget};
use relaytop_core::metrics::Metrics;
use relaytop_core::report::{Report, RunInfo};
use relaytop_core::run::{Ending, Run, RunSetup};
use relaytop_core::world::World;

/// How often the recordings are swept into their budget.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often `/healthz` is told the agent is alive.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// What an agent is given beyond its world.
#[derive(Clone, Debug, Default)]
pub struct AgentOptions {
    /// The configuration file SIGHUP reads anew (`None`: nothing to reload).
    pub config: Option<PathBuf>,
    /// `--simulate` and `--time-scale`, for the reloads.
    pub run_options: RunOptions,
    /// The recordings' budget.
    pub budget: Budget,
}

/// Labels an agent may not set: the ones its series already carry.
const RESERVED: [&str; 12] = [
    "provider",
    "model",
    "session",
    "protocol",
    "kind",
    "direction",
    "state",
    "limit",
    "alert",
    "severity",
    "scope",
    "le",
];

/// Checks the constant labels: `location` first, then `k=v` pairs with Prometheus label
/// names that the series do not use already.
pub fn metric_labels(location: &str, labels: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = vec![("location".to_owned(), location.to_owned())];
    if location.trim().is_empty() {
        anyhow::bail!("the location is empty: give --location NAME (e.g. sg, fra-1)");
    }
    for label in labels {
        let Some((k, v)) = label.split_once('=') else {
            anyhow::bail!("--label {label}: write it as name=value (e.g. --label team=infra)");
        };
        let k = k.trim();
        let valid = k
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if k.is_empty() || !valid || k.starts_with("__") {
            anyhow::bail!(
                "--label {label}: `{k}` is not a Prometheus label name (letters, digits and _, \
                 not starting with a digit or __)"
            );
        }
        if k == "location" || RESERVED.contains(&k) {
            anyhow::bail!(
                "--label {label}: relaytop's series already use the label `{k}` (the location \
                 is --location)"
            );
        }
        if out.iter().any(|(have, _)| have == k) {
            anyhow::bail!("--label {label}: `{k}` is given twice");
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// The location when none is given: the host's name, else `local`.
pub fn default_location() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "local".to_owned())
}

/// The resident memory of this process, bytes (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Runs the agent until SIGTERM or SIGINT (taken by `signals`); prints the summary to `out` at
/// the end.
pub async fn run(
    world: &World,
    options: &AgentOptions,
    mut signals: Signals,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    let (mut run, mut events) = Run::start(world, RunSetup::default())?;
    let clock = run.clock();
    let started_at = run.started_at();
    let infos = run.supervisor().infos().to_vec();
    let mut metrics = Metrics::new(infos.clone(), world.config.pricing().into())
        .with_slos(world.config.slo.clone());
    // What each running session is, by id, for the reloads (`None` once stopped).
    let mut running: Vec<Option<Known>> = reload::known(&world.config.sessions)
        .into_iter()
        .map(Some)
        .collect();
    let mut completed = 0u64;

    let mut alert_tick = tokio::time::interval(relaytop_core::run::ALERT_TICK);
    alert_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let alerts_on = run.alerting().is_some();
    let mut sweep_tick = tokio::time::interval(SWEEP_EVERY);
    sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut health_tick = tokio::time::interval(HEALTH_EVERY);
    health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let record_root = world.recording.as_ref().map(|r| r.root.clone());
    let current_dir = run.recorder().map(|r| r.dir().to_owned());

    eprintln!(
        "relaytop agent: {} sessions ({}); SIGHUP reloads, SIGTERM or Ctrl-C stops",
        infos.len(),
        world.config.source
    );
    let ended_by = loop {
        tokio::select! {
            received = events.recv_batch() => {
                let Some(batch) = received else {
                    break "the event stream ended".to_owned();
                };
                for event in &batch {
                    run.observe(event);
                    metrics.apply(event);
                    if matches!(event.kind, relaytop_core::session::EventKind::Done(_)) {
                        completed += 1;
                    }
                }
                events.recycle(batch);
            }
            _ = alert_tick.tick(), if alerts_on => {
                run.evaluate_alerts(&metrics);
            }
            _ = health_tick.tick() => {
                if let Some(exporter) = &world.prometheus {
                    let up = running.iter().filter(|k| k.is_some()).count();
                    exporter.set_health(format!(
                        "{up} sessions, {completed} responses, up {} s, resident {} MiB",
                        clock.now().as_secs(),
                        resident_bytes().map_or(0, |b| b / (1 << 20))
                    ));
                }
            }
            _ = sweep_tick.tick(), if !options.budget.is_unlimited() => {
                if let Some(root) = record_root.clone() {
                    let current = current_dir.clone();
                    let budget = options.budget;
                    let swept = tokio::task::spawn_blocking(move || {
                        retention::sweep(&root, current.as_deref(), budget)
                    })
                    .await;
                    match swept {
                        Ok(Ok(s)) if !s.deleted.is_empty() => tracing::info!(
                            deleted = s.deleted.len(), freed = s.freed_bytes,
                            "old recordings deleted to stay within the budget"
                        ),
                        Ok(Err(e)) => tracing::warn!("cannot sweep the recordings: {e}"),
                        _ => {}
                    }
                }
            }
            signal = signals.next() => match signal {
                Signal::Stop(words) => break words.to_owned(),
                Signal::Reload => {
                    match reload_sessions(world, options, &mut run, &mut metrics, &mut running) {
                        Ok(said) => eprintln!("relaytop agent: reloaded: {said}"),
                        Err(e) => eprintln!(
                            "relaytop agent: reload refused, the sessions run on as they were: {e:#}"
                        ),
                    }
                }
            },
        }
    };

    let duration = clock.now();
    run.evaluate_alerts(&metrics);
    let alerts = run.alerts(&metrics);
    let ending = Ending {
        reason: ended_by.clone(),
        duration,
    };
    run.finish(events, ending, |event| {
        metrics.apply(event);
    })
    .await?;
    let mut report = Report::build(
        &metrics,
        RunInfo {
            started_at,
            duration_us: relaytop_core::session::event::micros(duration),
            source: world.config.source.clone(),
            ended_by,
        },
    );
    report.alerts = alerts;
    write!(out, "{}", report.to_text())?;
    out.flush()?;
    Ok(report)
}

/// SIGHUP: the configuration read anew and compared with what runs.
fn reload_sessions(
    world: &World,
    options: &AgentOptions,
    run: &mut Run<'_>,
    metrics: &mut Metrics,
    running: &mut Vec<Option<Known>>,
) -> anyhow::Result<String> {
    let Some(path) = &options.config else {
        anyhow::bail!("the agent runs without --config: there is no file to read anew");
    };
    let config = world.reload_config(path, &options.run_options)?;
    let wanted = reload::known(&config.sessions);
    let plan = reload::diff(running, &wanted);
    for &old in &plan.stop {
        let id = u32::try_from(old).unwrap_or(u32::MAX);
        run.stop_session(id);
        running[old] = None;
    }
    for &new in &plan.start {
        let spec = config.sessions[new].clone();
        let key_env = config
            .providers
            .iter()
            .find(|p| p.name == spec.info.provider)
            .and_then(|p| p.api_key_env.clone());
        let id = run.start_session(spec, key_env.as_deref())?;
        if let Some(info) = run.supervisor().infos().get(id as usize) {
            metrics.add_session(info.clone());
        }
        // By id: sessions the run started itself (a canary's pools) are not the config's.
        let slot = id as usize;
        if running.len() <= slot {
            running.resize(slot + 1, None);
        }
        running[slot] = Some(wanted[new].clone());
    }
    Ok(plan.describe())
}

enum Signal {
    Stop(&'static str),
    Reload,
}

/// SIGTERM and SIGINT stop the agent; SIGHUP reloads it. Taken before `/healthz` is served:
/// a supervisor that reloads as soon as it answers must not end the agent with a SIGHUP that
/// comes before the handler (the signal's default action ends the process).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop("terminated (SIGTERM)"),
            _ = self.int.recv() => Signal::Stop("interrupted (SIGINT)"),
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked_and_the_location_comes_first() {
        let labels = metric_labels("sg", &["team=infra".into(), "tier=1".into()]).expect("ok");
        assert_eq!(labels[0], ("location".into(), "sg".into()));
        assert_eq!(labels[2], ("tier".into(), "1".into()));
        for bad in ["provider=x", "1x=y", "nokey", "__a=b", "location=x"] {
            assert!(metric_labels("sg", &[bad.into()]).is_err(), "{bad}");
        }
        assert!(metric_labels(" ", &[]).is_err());
    }
}
