//! From the file to the plan: load and parse, which provider is the canary, the starting
//! weight, stages, health check, rollback, notifications, probes, connection pools, and the
//! notes (unknown keys, what was inferred, warnings).

use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::canary::plan::{
    CanaryPlan, HealthCheck, LatencyKind, Metric, Note, Notify, OnInconclusive, Relative,
    RollbackRules, Stage, human, trim_float,
};
use crate::config::secret::{Secret, SecretError};
use crate::config::{Config, ConfigError, Provider};
use crate::cost::ProviderPricing;
use crate::session::ratelimit::{DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUESTS_PER_MINUTE};

use super::file::{CanaryFile, DEFAULT_MODEL, ProviderYaml, StageYaml, at};
use super::unknown::{FILE, Node, unknown_keys};

/// Reads the canary YAML at `path`, with keys and the webhook URL from the environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse(
        &text,
        &path.display().to_string(),
        &|var| Secret::from_env(var),
        &|var| std::env::var(var).ok(),
    )
}

/// Parses canary YAML text. `read_key` fetches a provider's key by variable name;
/// `read_env` any other variable (the webhook URL).
pub fn parse(
    text: &str,
    path: &str,
    read_key: &dyn Fn(&str) -> Result<Secret, SecretError>,
    read_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let yaml_error = |e: serde_saphyr::Error| {
        let message = e.without_snippet().to_string();
        let message = message.lines().next().unwrap_or("").trim();
        // The place is said once, in front.
        let message = match message.rfind(" at line ") {
            Some(i) if message[i..].contains(", column ") => &message[..i],
            _ => message,
        }
        .to_owned();
        match e.location() {
            Some(l) if l.line() > 0 => ConfigError::At {
                path: path.to_owned(),
                line: usize::try_from(l.line()).unwrap_or(0),
                column: usize::try_from(l.column()).unwrap_or(0),
                message,
            },
            _ => ConfigError::Whole {
                path: path.to_owned(),
                message,
            },
        }
    };
    let file: CanaryFile = serde_saphyr::from_str(text).map_err(yaml_error)?;
    let tree: Node = serde_saphyr::from_str(text).map_err(yaml_error)?;
    let err_at = |place: Option<(usize, usize)>, message: String| match place {
        Some((line, column)) => ConfigError::At {
            path: path.to_owned(),
            line,
            column,
            message,
        },
        None => ConfigError::Whole {
            path: path.to_owned(),
            message,
        },
    };
    let mut notes: Vec<Note> = Vec::new();
    let d = &file.deployment;

    if let Some(strategy) = &d.strategy
        && strategy.value.trim() != "canary"
    {
        return Err(err_at(
            at(strategy),
            format!(
                "deployment.strategy is `{}`: relaytop runs `canary` deployments only",
                strategy.value
            ),
        ));
    }

    // Providers, and which one is the canary.
    if d.providers.len() != 2 {
        let names: Vec<&str> = d.providers.keys().map(String::as_str).collect();
        return Err(err_at(
            None,
            format!(
                "a canary needs exactly two providers (a baseline and a canary); deployment.providers has {}: {}",
                names.len(),
                names.join(", ")
            ),
        ));
    }
    let entries: Vec<(&String, &ProviderYaml)> = d.providers.iter().collect();
    for (name, p) in &entries {
        if let Some(role) = &p.role
            && !matches!(role.value.as_str(), "canary" | "baseline")
        {
            return Err(err_at(
                at(role),
                format!(
                    "provider {name}: role is `canary` or `baseline`, not `{}`",
                    role.value
                ),
            ));
        }
        if let Some(w) = &p.weight
            && !(w.value >= 0.0 && w.value.is_finite())
        {
            return Err(err_at(
                at(w),
                format!("provider {name}: weight must be 0 or more"),
            ));
        }
    }
    let by_role = |role: &str| {
        entries
            .iter()
            .position(|(_, p)| p.role.as_ref().is_some_and(|r| r.value == role))
    };
    let canary_index = match (by_role("canary"), by_role("baseline")) {
        (Some(c), _) => {
            notes.push(Note::info(format!(
                "canary: {} (role: canary); baseline: {}",
                entries[c].0,
                entries[1 - c].0
            )));
            c
        }
        (None, Some(b)) => {
            notes.push(Note::info(format!(
                "canary: {} (the other is role: baseline); baseline: {}",
                entries[1 - b].0,
                entries[b].0
            )));
            1 - b
        }
        (None, None) => {
            let w = |i: usize| entries[i].1.weight.as_ref().map(|w| w.value);
            match (w(0), w(1)) {
                (Some(a), Some(b)) if a != b => {
                    let c = if a < b { 0 } else { 1 };
                    notes.push(Note::info(format!(
                        "canary: {} (the smaller weight, {} against {}); baseline: {}",
                        entries[c].0,
                        trim_float(w(c).unwrap_or(0.0)),
                        trim_float(w(1 - c).unwrap_or(0.0)),
                        entries[1 - c].0
                    )));
                    c
                }
                _ => {
                    return Err(err_at(
                        None,
                        "cannot tell which provider is the canary: give them different weights, \
                         or one `role: canary`"
                            .into(),
                    ));
                }
            }
        }
    };
    let canary_name = entries[canary_index].0.clone();
    let baseline_name = entries[1 - canary_index].0.clone();

    let mut providers = Vec::new();
    for (name, p) in &entries {
        let url = match (&p.base_url, &p.simulate) {
            (Some(url), _) => {
                check_ws_url(&url.value).map_err(|m| err_at(at(url), m))?;
                url.value.trim().to_owned()
            }
            (None, Some(_)) => String::new(),
            (None, None) => {
                return Err(err_at(
                    None,
                    format!("provider {name} has no base_url (or `simulate: PROFILE`)"),
                ));
            }
        };
        if let Some(profile) = &p.simulate
            && crate::config::sim_profile::SimProfile::named(&profile.value).is_none()
        {
            return Err(err_at(
                at(profile),
                format!(
                    "no simulator profile `{}`: use {}",
                    profile.value,
                    crate::config::sim_profile::SimProfile::NAMES.join(", ")
                ),
            ));
        }
        let api_key = match (&p.api_key_env, &p.simulate) {
            (Some(var), None) => {
                Some(read_key(var.value.trim()).map_err(|e| err_at(at(var), e.to_string()))?)
            }
            _ => None,
        };
        let model = p.model.clone().unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        providers.push(Provider {
            name: (*name).clone(),
            url,
            protocol: p.protocol.unwrap_or_default(),
            auth: Default::default(),
            api_key,
            api_key_env: p.api_key_env.as_ref().map(|v| v.value.trim().to_owned()),
            model,
            simulate: p.simulate.as_ref().map(|s| s.value.clone()),
            billing: ProviderPricing::default(),
            requests_per_minute: p.requests_per_minute.unwrap_or(DEFAULT_REQUESTS_PER_MINUTE),
            max_connections: p.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            limits: None,
            account: crate::account::AccountConfig::off(),
        });
    }
    if entries.iter().all(|(_, p)| p.model.is_none()) {
        notes.push(Note::info(format!(
            "model: {DEFAULT_MODEL} (the file names none; add `model:` to a provider to change it)"
        )));
    }
    let keys: Vec<String> = entries
        .iter()
        .filter_map(|(name, p)| Some(format!("{name} from ${}", p.api_key_env.as_ref()?.value)))
        .collect();
    if !keys.is_empty() {
        notes.push(Note::info(format!(
            "keys: {} (values are never printed)",
            keys.join(", ")
        )));
    }

    // The starting weight: stages win, then canary_percentage, then weights.
    let stages_yaml: &[StageYaml] = d
        .progressive_rollout
        .as_ref()
        .map(|r| r.stages.as_slice())
        .unwrap_or(&[]);
    let percent = |s: &Spanned<f64>, what: &str| -> Result<u32, ConfigError> {
        let v = s.value;
        if !(0.0..=100.0).contains(&v) || v.fract() != 0.0 {
            return Err(err_at(
                at(s),
                format!("{what} is a whole percentage from 0 to 100, not {v}"),
            ));
        }
        Ok(v as u32)
    };
    let from_stage = stages_yaml
        .first()
        .map(|s| percent(&s.percentage, "percentage"))
        .transpose()?;
    let from_percentage = d
        .canary_percentage
        .as_ref()
        .map(|p| percent(p, "canary_percentage"))
        .transpose()?;
    let weight_of = |i: usize| entries[i].1.weight.as_ref().map(|w| w.value);
    let from_weights = match (weight_of(canary_index), weight_of(1 - canary_index)) {
        (Some(c), Some(b)) if c + b > 0.0 => Some(c / (c + b) * 100.0),
        _ => None,
    };
    let mut sources: Vec<String> = Vec::new();
    if let Some(p) = from_stage {
        sources.push(format!("stages[0].percentage {p} %"));
    }
    if let Some(p) = from_percentage {
        sources.push(format!("canary_percentage {p} %"));
    }
    if let Some(p) = from_weights {
        sources.push(format!("weights {} %", trim_float(p)));
    }
    let start = from_stage
        .map(f64::from)
        .or(from_percentage.map(f64::from))
        .or(from_weights)
        .unwrap_or(0.0);
    let values: Vec<f64> = [
        from_stage.map(f64::from),
        from_percentage.map(f64::from),
        from_weights,
    ]
    .into_iter()
    .flatten()
    .collect();
    if values.iter().any(|v| (v - start).abs() > 0.05) {
        notes.push(Note::warning(format!(
            "the starting weight disagrees: {}; using {} % (stages win, then canary_percentage, then weights)",
            sources.join(", "),
            trim_float(start)
        )));
    } else if !sources.is_empty() {
        notes.push(Note::info(format!(
            "{canary_name} starts at {} % ({})",
            trim_float(start),
            sources.join(", ")
        )));
    }

    // Stages.
    let default_metrics = vec![Metric::ErrorRate, Metric::P50Latency, Metric::P99Latency];
    let mut stages: Vec<Stage> = Vec::new();
    let mut inherited: Vec<usize> = Vec::new();
    for (i, s) in stages_yaml.iter().enumerate() {
        let percentage = percent(&s.percentage, "percentage")?;
        let minutes = s.duration_minutes.as_ref().map_or(0.0, |d| d.value);
        if !(minutes >= 0.0 && minutes.is_finite()) {
            let place = s.duration_minutes.as_ref().and_then(at);
            return Err(err_at(
                place,
                format!("duration_minutes must be 0 or more, not {minutes}"),
            ));
        }
        let metrics = match &s.evaluation_metrics {
            Some(list) => {
                let mut metrics = Vec::new();
                for m in list {
                    let metric = Metric::parse(m.value.trim()).ok_or_else(|| {
                        err_at(
                            at(m),
                            format!(
                                "unknown evaluation metric `{}`: use error_rate, p50_latency or p99_latency",
                                m.value
                            ),
                        )
                    })?;
                    metrics.push(metric);
                }
                metrics
            }
            None => {
                inherited.push(i + 1);
                stages.last().map_or_else(
                    || default_metrics.clone(),
                    |prev: &Stage| prev.metrics.clone(),
                )
            }
        };
        stages.push(Stage {
            percentage,
            duration: Duration::from_secs_f64(minutes * 60.0),
            metrics,
            manual_gate: s.manual_gate.unwrap_or(false),
        });
    }
    if stages.is_empty() {
        let percentage = start.round() as u32;
        notes.push(Note::info(format!(
            "no progressive_rollout stages: {canary_name} holds at {percentage} % until you promote it"
        )));
        stages.push(Stage {
            percentage,
            duration: Duration::ZERO,
            metrics: default_metrics,
            manual_gate: true,
        });
    } else {
        let list: Vec<String> = stages
            .iter()
            .map(|s| {
                if s.duration.is_zero() {
                    format!("{} % at once", s.percentage)
                } else {
                    format!("{} % for {}", s.percentage, human(s.duration))
                }
            })
            .collect();
        notes.push(Note::info(format!("stages: {}", list.join(", "))));
        if !inherited.is_empty() {
            let which: Vec<String> = inherited.iter().map(usize::to_string).collect();
            let first = inherited.first() == Some(&1);
            notes.push(Note::info(format!(
                "stage{} {} {} evaluation_metrics {}",
                if which.len() > 1 { "s" } else { "" },
                which.join(", "),
                if which.len() > 1 {
                    "inherit"
                } else {
                    "inherits"
                },
                if first {
                    "(stage 1 gets all three)"
                } else {
                    "from the stage before"
                }
            )));
        }
        if stages
            .iter()
            .any(|s| s.metrics.contains(&Metric::P50Latency))
        {
            notes.push(Note::info(
                "p50_latency has no threshold: shown, not judged",
            ));
        }
        if let Some(last) = stages.last()
            && last.percentage < 100
        {
            notes.push(Note::info(format!(
                "the last stage is {} %: completing it promotes {canary_name} to 100 %",
                last.percentage
            )));
        } else if stages.last().is_some_and(|s| s.duration.is_zero()) {
            notes.push(Note::info(format!(
                "stage {} (100 %, 0 minutes) is the promotion",
                stages.len()
            )));
        }
    }

    let mut plan = CanaryPlan::new(baseline_name.clone(), canary_name.clone(), stages);

    // Health check.
    match &d.health_check {
        Some(h) => {
            if let Some(i) = &h.interval_seconds {
                if !(i.value > 0.0 && i.value.is_finite()) {
                    return Err(err_at(at(i), "interval_seconds must be above 0".into()));
                }
                plan.interval = Duration::from_secs_f64(i.value);
            } else {
                notes.push(Note::info("health_check.interval_seconds: 30 (default)"));
            }
            plan.health = (h.enabled != Some(false)).then(|| HealthCheck {
                max_error_rate: h.max_error_rate.as_ref().map(|v| v.value),
                p99_ms: h.latency_p99_threshold_ms.as_ref().map(|v| v.value),
            });
            if h.enabled == Some(false) {
                notes.push(Note::info(
                    "health_check.enabled: false: only the rollback triggers judge the canary",
                ));
            }
            if let Some(l) = &h.latency {
                plan.latency = match l.value.trim() {
                    "ttft" | "time_to_first_token" | "first_token" => LatencyKind::Ttft,
                    "total" => LatencyKind::Total,
                    other => {
                        return Err(err_at(
                            at(l),
                            format!(
                                "latency is `ttft` (time to first token) or `total`, not `{other}`"
                            ),
                        ));
                    }
                };
            }
            if let Some(r) = &h.relative_to {
                if r.value.trim() != "baseline" {
                    return Err(err_at(
                        at(r),
                        format!("relative_to can only be `baseline`, not `{}`", r.value),
                    ));
                }
                plan.relative = Some(Relative {
                    factor: h.latency_factor.as_ref().map_or(1.0, |f| f.value),
                    rollback_factor: None,
                });
            } else if let Some(f) = &h.latency_factor {
                notes.push(
                    Note::unused("latency_factor applies with relative_to: baseline only")
                        .at(at(f)),
                );
            }
            let mut defaults = Vec::new();
            match h.min_samples {
                Some(n) => plan.min_samples_rate = n,
                None => defaults.push(format!("min_samples {}", plan.min_samples_rate)),
            }
            match h.min_samples_p99 {
                Some(n) => plan.min_samples_p99 = n,
                None => defaults.push(format!("min_samples_p99 {}", plan.min_samples_p99)),
            }
            match h.failed_checks_threshold {
                Some(n) => plan.failed_checks_threshold = n,
                None => defaults.push(format!(
                    "failed_checks_threshold {}",
                    plan.failed_checks_threshold
                )),
            }
            match &h.on_inconclusive {
                Some(o) => {
                    plan.on_inconclusive =
                        OnInconclusive::parse(o.value.trim()).ok_or_else(|| {
                            err_at(
                                at(o),
                                format!(
                                    "on_inconclusive is pause, hold or fail, not `{}`",
                                    o.value
                                ),
                            )
                        })?;
                }
                None => defaults.push("on_inconclusive pause".into()),
            }
            if !defaults.is_empty() {
                notes.push(Note::info(format!(
                    "defaults for keys the file lacks (under health_check): {}",
                    defaults.join(", ")
                )));
            }
        }
        None => {
            plan.health = None;
            notes.push(Note::info(
                "no health_check: only the rollback triggers judge the canary",
            ));
        }
    }

    // Rollback.
    match &d.rollback {
        Some(r) if r.enabled != Some(false) => {
            let mut rules = RollbackRules::default();
            for t in &r.trigger_conditions {
                if let Some(v) = &t.error_rate_above {
                    rules.error_rate_above = Some(v.value);
                }
                if let Some(v) = &t.p99_latency_above_ms {
                    rules.p99_above_ms = Some(v.value);
                }
                if let Some(v) = &t.p99_latency_above_factor {
                    rules.p99_above_factor = Some(v.value);
                }
                if let Some(v) = &t.consecutive_failures {
                    rules.consecutive_failures = Some(v.value);
                }
            }
            plan.rollback = Some(rules);
        }
        Some(_) => {
            plan.rollback = None;
            notes.push(Note::warning(
                "rollback.enabled: false: nothing rolls the canary back; failed checks only halt it",
            ));
            plan.failed_checks_threshold = u32::MAX;
        }
        None => plan.rollback = None,
    }
    // Relative latency: the rollback factor keeps the file's ratio of the two thresholds.
    if let Some(rel) = &mut plan.relative {
        let rules = plan.rollback.as_ref();
        let explicit = rules.and_then(|r| r.p99_above_factor);
        let derived = match (
            plan.health.as_ref().and_then(|h| h.p99_ms),
            rules.and_then(|r| r.p99_above_ms),
        ) {
            (Some(health), Some(rollback)) if health > 0.0 => Some(rel.factor * rollback / health),
            _ => None,
        };
        rel.rollback_factor = explicit.or(derived);
        if explicit.is_none()
            && let (Some(f), Some(h), Some(r)) = (
                derived,
                plan.health.as_ref().and_then(|h| h.p99_ms),
                rules.and_then(|r| r.p99_above_ms),
            )
        {
            notes.push(Note::info(format!(
                "relative_to: baseline: p99_latency_above_ms {} becomes the baseline's p99 × {} \
                 ({} / {} ms, the file's own ratio)",
                trim_float(r),
                trim_float((f * 100.0).round() / 100.0),
                trim_float(r),
                trim_float(h)
            )));
        }
    }

    // Notifications.
    if let Some(n) = &d.notification {
        match &n.slack_webhook_url_env {
            Some(var) => {
                let name = var.value.trim().to_owned();
                let url = read_env(&name)
                    .map(|u| u.trim().to_owned())
                    .filter(|u| !u.is_empty());
                let on_rollback = n.on_canary_failure.unwrap_or(true);
                let on_promotion = n.on_canary_success.unwrap_or(true);
                if url.is_none() && (on_rollback || on_promotion) {
                    notes.push(
                        Note::warning(format!(
                            "{name} is not set: rollbacks and promotions will not be posted"
                        ))
                        .at(at(var)),
                    );
                } else if url.is_some() {
                    let what = match (on_rollback, on_promotion) {
                        (true, true) => "rollback and promotion",
                        (true, false) => "rollback",
                        (false, true) => "promotion",
                        (false, false) => "nothing",
                    };
                    notes.push(Note::info(format!(
                        "notifications: on {what}, a Slack-compatible POST to ${name}"
                    )));
                }
                plan.notify = Some(Notify {
                    url_env: name,
                    url,
                    on_rollback,
                    on_promotion,
                });
            }
            None => notes.push(Note::unused(
                "notification without slack_webhook_url_env: nothing to post to",
            )),
        }
    }

    // Probe traffic.
    if let Some(p) = &d.probe {
        if let Some(r) = &p.requests_per_minute {
            if !(r.value > 0.0 && r.value.is_finite()) {
                return Err(err_at(
                    at(r),
                    "probe.requests_per_minute must be above 0".into(),
                ));
            }
            plan.probe_requests_per_minute = Some(r.value);
        }
        if let Some(prompt) = &p.prompt {
            plan.prompt = prompt.clone();
        }
        if p.max_tokens.is_some() {
            plan.max_tokens = p.max_tokens;
        }
    }

    // Connection pools: holysheep_optimization tunes the provider named holysheep.
    let max_conn = |name: &str| {
        providers
            .iter()
            .find(|p| p.name == name)
            .map_or(DEFAULT_MAX_CONNECTIONS, |p| p.max_connections)
    };
    plan.pool_baseline = max_conn(&baseline_name);
    plan.pool_canary = max_conn(&canary_name);
    if let Some(o) = &file.holysheep_optimization {
        let target = "holysheep";
        let role = plan.role_of(target);
        if let Some(size) = &o.connection_pool_size {
            match role {
                Some(role) => {
                    let limit = max_conn(target);
                    let pool = size.value.clamp(1, limit);
                    if size.value > limit {
                        notes.push(
                            Note::warning(format!(
                                "connection_pool_size {} is above the relay's limit of {limit} \
                                 connections: using {limit}",
                                size.value
                            ))
                            .at(at(size)),
                        );
                    }
                    match role {
                        crate::canary::plan::Role::Canary => plan.pool_canary = pool,
                        crate::canary::plan::Role::Baseline => plan.pool_baseline = pool,
                    }
                }
                None => notes.push(
                    Note::unused("holysheep_optimization: no provider is named holysheep")
                        .at(at(size)),
                ),
            }
        }
        if let Some(streams) = &o.max_concurrent_streams {
            let pool = if role == Some(crate::canary::plan::Role::Baseline) {
                plan.pool_baseline
            } else {
                plan.pool_canary
            };
            notes.push(
                Note::unused(format!(
                    "max_concurrent_streams {}: relay/v1 carries one stream per connection, so \
                     at most {pool} at once (the pool)",
                    streams.value
                ))
                .at(at(streams)),
            );
        }
        if let Some(geo) = &o.enable_geo_routing {
            notes.push(
                Note::unused(format!(
                    "enable_geo_routing: {}: accepted, not used (a client cannot route by region)",
                    geo.value
                ))
                .at(at(geo)),
            );
        }
        if let Some(region) = &o.preferred_region {
            notes.push(
                Note::unused(format!(
                    "preferred_region: {}: accepted, not used (a client cannot route by region)",
                    region.value
                ))
                .at(at(region)),
            );
        }
    }

    // Keys the structs do not know.
    let mut unknown = Vec::new();
    unknown_keys(&tree, &FILE, "", &mut unknown);
    for (key, place) in unknown {
        notes.push(Note::unused(format!("unknown key `{key}`: ignored")).at(place));
    }

    plan.requests_per_minute_baseline = max_rpm(&providers, &baseline_name);
    plan.requests_per_minute_canary = max_rpm(&providers, &canary_name);
    plan.validate().map_err(|m| err_at(None, m))?;
    plan.notes = notes;
    Ok(Config {
        source: path.to_owned(),
        providers,
        sessions: Vec::new(),
        ui: Default::default(),
        canary: Some(plan),
        slo: Default::default(),
        alerts: Default::default(),
        agent: Default::default(),
    })
}

fn max_rpm(providers: &[Provider], name: &str) -> u32 {
    providers
        .iter()
        .find(|p| p.name == name)
        .map_or(DEFAULT_REQUESTS_PER_MINUTE, |p| p.requests_per_minute)
}

/// relay/v1 URLs are WebSocket URLs with a host.
fn check_ws_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| format!("bad base_url `{url}`: {e}"))?;
    if !matches!(parsed.scheme(), "ws" | "wss") {
        return Err(format!(
            "base_url `{url}` has scheme `{}`: relay/v1 is a WebSocket protocol: use wss:// (or ws:// on loopback)",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("base_url `{url}` has no host"));
    }
    Ok(())
}

/// Whether a path names canary YAML (`.yaml` or `.yml`).
pub fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}
