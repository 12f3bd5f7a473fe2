//! relaytop's own TOML for a canary: the `[canary]` table of a configuration file, which
//! expresses everything the canary YAML does (and the keys CANARY.md says it lacks).
//!
//! ```toml
//! [canary]
//! baseline = "legacy"
//! canary = "holysheep"
//! interval_s = 30
//! # latency = "total"; relative_to = "baseline"; latency_factor = 1.0
//! [canary.health]
//! max_error_rate = 0.05
//! p99_latency_ms = 250
//! [canary.rollback]
//! error_rate_above = 0.02
//! p99_latency_above_ms = 300
//! consecutive_failures = 5
//! [[canary.stages]]
//! percentage = 10
//! duration_min = 30
//! metrics = ["error_rate", "p50_latency", "p99_latency"]
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::canary::plan::{
    CanaryPlan, HealthCheck, LatencyKind, Metric, Note, Notify, OnInconclusive, Relative,
    RollbackRules, Stage,
};
use crate::config::Provider;

/// `[canary]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryToml {
    /// The provider that has the traffic now.
    pub baseline: Spanned<String>,
    /// The provider being rolled out.
    pub canary: Spanned<String>,
    /// Seconds between checks (default 30).
    pub interval_s: Option<f64>,
    /// `ttft` (default) or `total`.
    #[serde(default)]
    pub latency: LatencyKind,
    /// `baseline`: judge p99 against the baseline's p99 × `latency_factor`.
    pub relative_to: Option<Spanned<String>>,
    pub latency_factor: Option<f64>,
    /// Samples before a rate is judged (default 20).
    pub min_samples: Option<u64>,
    /// Samples before a p99 is judged (default 100).
    pub min_samples_p99: Option<u64>,
    /// Failed checks that roll back (default 3).
    pub failed_checks_threshold: Option<u32>,
    /// `pause` (default), `hold` or `fail`.
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
    /// Connections per provider (default and most: each provider's `max_connections`).
    pub pool_size: Option<u32>,
    /// Probe requests a minute over both providers (default: 90 % of what the limits allow).
    pub probe_requests_per_minute: Option<f64>,
    pub prompt: Option<String>,
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub health: HealthToml,
    #[serde(default)]
    pub rollback: RollbackToml,
    #[serde(default)]
    pub stages: Vec<StageToml>,
    pub notify: Option<NotifyToml>,
}

/// `[canary.health]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthToml {
    pub enabled: Option<bool>,
    pub max_error_rate: Option<f64>,
    pub p99_latency_ms: Option<f64>,
}

/// `[canary.rollback]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackToml {
    pub enabled: Option<bool>,
    pub error_rate_above: Option<f64>,
    pub p99_latency_above_ms: Option<f64>,
    pub p99_latency_above_factor: Option<f64>,
    pub consecutive_failures: Option<u32>,
}

/// `[[canary.stages]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageToml {
    pub percentage: u32,
    /// Minutes the stage holds while checks pass (0 at 100 % is promotion).
    #[serde(default)]
    pub duration_min: f64,
    /// Inherited from the stage before when absent (the first: all three).
    pub metrics: Option<Vec<Metric>>,
    #[serde(default)]
    pub manual_gate: bool,
}

/// `[canary.notify]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyToml {
    /// The variable holding the webhook URL.
    pub webhook_url_env: String,
    #[serde(default = "yes")]
    pub on_rollback: bool,
    #[serde(default = "yes")]
    pub on_promotion: bool,
}

fn yes() -> bool {
    true
}

/// Why a `[canary]` table cannot be used: a message, and where when it is about one value.
pub struct TomlError {
    pub span: Option<std::ops::Range<usize>>,
    pub message: String,
}

impl CanaryToml {
    /// The plan, checked against the configured providers; `read_env` reads the webhook URL.
    pub fn to_plan(
        &self,
        providers: &[Provider],
        read_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CanaryPlan, TomlError> {
        let find = |name: &Spanned<String>| {
            providers
                .iter()
                .find(|p| &p.name == name.get_ref())
                .ok_or_else(|| TomlError {
                    span: Some(name.span()),
                    message: format!(
                        "[canary] names provider `{}`, which is not defined (known: {})",
                        name.get_ref(),
                        providers
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
        };
        let baseline = find(&self.baseline)?;
        let canary = find(&self.canary)?;
        let mut notes = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for s in &self.stages {
            if !(s.duration_min >= 0.0 && s.duration_min.is_finite()) {
                return Err(TomlError {
                    span: None,
                    message: format!(
                        "[[canary.stages]]: duration_min must be 0 or more, not {}",
                        s.duration_min
                    ),
                });
            }
            let metrics = s.metrics.clone().unwrap_or_else(|| {
                stages.last().map_or_else(
                    || vec![Metric::ErrorRate, Metric::P50Latency, Metric::P99Latency],
                    |prev| prev.metrics.clone(),
                )
            });
            stages.push(Stage {
                percentage: s.percentage,
                duration: Duration::from_secs_f64(s.duration_min * 60.0),
                metrics,
                manual_gate: s.manual_gate,
            });
        }
        if stages.is_empty() {
            return Err(TomlError {
                span: Some(self.canary.span()),
                message: "[canary] needs at least one [[canary.stages]]".into(),
            });
        }
        let mut plan = CanaryPlan::new(baseline.name.clone(), canary.name.clone(), stages);
        if let Some(i) = self.interval_s {
            if !(i > 0.0 && i.is_finite()) {
                return Err(TomlError {
                    span: None,
                    message: format!("[canary] interval_s must be above 0, not {i}"),
                });
            }
            plan.interval = Duration::from_secs_f64(i);
        }
        plan.latency = self.latency;
        plan.health = (self.health.enabled != Some(false)).then_some(HealthCheck {
            max_error_rate: self.health.max_error_rate,
            p99_ms: self.health.p99_latency_ms,
        });
        let r = &self.rollback;
        plan.rollback = (r.enabled != Some(false)).then_some(RollbackRules {
            error_rate_above: r.error_rate_above,
            p99_above_ms: r.p99_latency_above_ms,
            p99_above_factor: r.p99_latency_above_factor,
            consecutive_failures: r.consecutive_failures,
        });
        if r.enabled == Some(false) {
            plan.failed_checks_threshold = u32::MAX;
        }
        if let Some(rel) = &self.relative_to {
            if rel.get_ref() != "baseline" {
                return Err(TomlError {
                    span: Some(rel.span()),
                    message: format!(
                        "relative_to can only be \"baseline\", not \"{}\"",
                        rel.get_ref()
                    ),
                });
            }
            let factor = self.latency_factor.unwrap_or(1.0);
            let derived = match (self.health.p99_latency_ms, r.p99_latency_above_ms) {
                (Some(h), Some(rb)) if h > 0.0 => Some(factor * rb / h),
                _ => None,
            };
            plan.relative = Some(Relative {
                factor,
                rollback_factor: r.p99_latency_above_factor.or(derived),
            });
        }
        if let Some(n) = self.min_samples {
            plan.min_samples_rate = n;
        }
        if let Some(n) = self.min_samples_p99 {
            plan.min_samples_p99 = n;
        }
        if let Some(n) = self.failed_checks_threshold {
            plan.failed_checks_threshold = n;
        }
        plan.on_inconclusive = self.on_inconclusive;
        let mut pool = |p: &Provider| {
            let want = self.pool_size.unwrap_or(p.max_connections);
            if want > p.max_connections {
                notes.push(Note::warning(format!(
                    "[canary] pool_size {want} is above {}'s limit of {} connections: using {}",
                    p.name, p.max_connections, p.max_connections
                )));
            }
            want.clamp(1, p.max_connections.max(1))
        };
        plan.pool_baseline = pool(baseline);
        plan.pool_canary = pool(canary);
        plan.probe_requests_per_minute = self.probe_requests_per_minute;
        if let Some(prompt) = &self.prompt {
            plan.prompt = prompt.clone();
        }
        if self.max_tokens.is_some() {
            plan.max_tokens = self.max_tokens;
        }
        plan.requests_per_minute_baseline = baseline.requests_per_minute;
        plan.requests_per_minute_canary = canary.requests_per_minute;
        if let Some(n) = &self.notify {
            let url = read_env(&n.webhook_url_env)
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty());
            if url.is_none() {
                notes.push(Note::warning(format!(
                    "{} is not set: rollbacks and promotions will not be posted",
                    n.webhook_url_env
                )));
            }
            plan.notify = Some(Notify {
                url_env: n.webhook_url_env.clone(),
                url,
                on_rollback: n.on_rollback,
                on_promotion: n.on_promotion,
            });
        }
        plan.notes = notes;
        plan.validate().map_err(|message| TomlError {
            span: None,
            message: format!("[canary]: {message}"),
        })?;
        Ok(plan)
    }
}
