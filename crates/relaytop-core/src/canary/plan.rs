//! The canary plan: which provider is the baseline and which the canary, the stages, the
//! health thresholds and rollback triggers, sample minimums, notifications and the probe
//! traffic. Both the canary YAML (`yaml.rs`) and relaytop's TOML (`[canary]`, `toml.rs`)
//! produce one; the controller, the driver and the start-up notes read it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::numbers::{duration_words as human, trim_float};

/// Samples a rate (error rate) needs before it is judged, unless the plan says otherwise.
pub const DEFAULT_MIN_SAMPLES_RATE: u64 = 20;
/// Samples a p99 needs before it is judged, unless the plan says otherwise.
pub const DEFAULT_MIN_SAMPLES_P99: u64 = 100;
/// Failed checks that roll back, unless the plan says otherwise.
pub const DEFAULT_FAILED_CHECKS_THRESHOLD: u32 = 3;
/// The probe prompt of canary traffic.
pub const DEFAULT_CANARY_PROMPT: &str = "Reply with a short greeting.";
/// `max_tokens` of canary probes.
pub const DEFAULT_CANARY_MAX_TOKENS: u32 = 16;
/// Share of the rate limits the probe traffic uses by default (the rest is headroom).
pub const PROBE_SHARE_OF_LIMIT: f64 = 0.9;
/// Windows hold this many times the minimum samples, so that jitter does not make a check
/// inconclusive.
pub const WINDOW_MARGIN: f64 = 1.2;

/// Which side of the split a provider is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Baseline,
    Canary,
}

/// Which latency the thresholds judge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyKind {
    /// Time to first token (the default).
    #[default]
    Ttft,
    /// From sending the request to `done`.
    Total,
}

impl LatencyKind {
    pub fn label(self) -> &'static str {
        match self {
            LatencyKind::Ttft => "time to first token",
            LatencyKind::Total => "whole-response time",
        }
    }
}

/// A metric a stage evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ErrorRate,
    /// Shown, never judged (no threshold exists for it).
    P50Latency,
    P99Latency,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::ErrorRate, Metric::P50Latency, Metric::P99Latency];

    pub fn label(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::P50Latency => "p50_latency",
            Metric::P99Latency => "p99_latency",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.label() == name)
    }
}

/// What an inconclusive check (too few samples) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// Pause the rollout for a person to look (Argo Rollouts); the default.
    #[default]
    Pause,
    /// Neither advance nor count; try again at the next interval.
    Hold,
    /// Count it as a failed check.
    Fail,
}

impl OnInconclusive {
    pub fn parse(name: &str) -> Option<OnInconclusive> {
        match name {
            "pause" => Some(OnInconclusive::Pause),
            "hold" => Some(OnInconclusive::Hold),
            "fail" => Some(OnInconclusive::Fail),
            _ => None,
        }
    }
}

/// One stage of the rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The canary's share of the traffic, in percent.
    pub percentage: u32,
    /// How long the stage holds while checks pass; zero at 100 % is promotion.
    pub duration: Duration,
    /// What the stage's checks evaluate (inherited from the previous stage when not given).
    pub metrics: Vec<Metric>,
    /// Wait for a person (resume) before leaving the stage.
    pub manual_gate: bool,
}

/// Health thresholds: a breach fails the check (progress halts; failures count).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthCheck {
    /// A fraction (0.05 is 5 %).
    pub max_error_rate: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Rollback triggers: a breach sets the canary to 0 % at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollbackRules {
    pub error_rate_above: Option<f64>,
    pub p99_above_ms: Option<f64>,
    /// With `relative_to: baseline`: roll back when the canary's p99 is above the baseline's
    /// times this factor.
    pub p99_above_factor: Option<f64>,
    pub consecutive_failures: Option<u32>,
}

/// Latency judged against the baseline rather than in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Relative {
    /// The health check fails when the canary's p99 exceeds the baseline's times this.
    pub factor: f64,
    /// The rollback trigger fires when the canary's p99 exceeds the baseline's times this.
    pub rollback_factor: Option<f64>,
}

/// Where rollbacks and promotions are announced.
#[derive(Clone, Debug, PartialEq)]
pub struct Notify {
    /// The variable holding the webhook URL (its value is never printed).
    pub url_env: String,
    /// The URL, when the variable is set.
    pub url: Option<String>,
    pub on_rollback: bool,
    pub on_promotion: bool,
}

/// How bad a start-up note is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteLevel {
    /// What relaytop inferred or will do.
    Info,
    /// A key accepted but not used.
    Unused,
    /// Something the user should look at.
    Warning,
}

/// One line printed once at start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Note {
    pub level: NoteLevel,
    /// Line and column in the file, when the note is about one place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<(usize, usize)>,
    pub text: String,
}

impl Note {
    pub fn info(text: impl Into<String>) -> Note {
        Note {
            level: NoteLevel::Info,
            at: None,
            text: text.into(),
        }
    }
    pub fn unused(text: impl Into<String>) -> Note {
        Note {
            level: NoteLevel::Unused,
            at: None,
            text: text.into(),
        }
    }
    pub fn warning(text: impl Into<String>) -> Note {
        Note {
            level: NoteLevel::Warning,
            at: None,
            text: text.into(),
        }
    }
    pub fn at(mut self, at: Option<(usize, usize)>) -> Note {
        self.at = at;
        self
    }

    /// `SOURCE:LINE:COL: warning: TEXT` (or `SOURCE: note: TEXT`).
    pub fn render(&self, source: &str) -> String {
        let level = match self.level {
            NoteLevel::Info => "note",
            NoteLevel::Unused => "not used",
            NoteLevel::Warning => "warning",
        };
        match self.at {
            Some((line, column)) => format!("{source}:{line}:{column}: {level}: {}", self.text),
            None => format!("{source}: {level}: {}", self.text),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("canary"))
    }
}

/// The whole canary.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryPlan {
    pub baseline: String,
    pub canary: String,
    /// At least one; the first sets the starting weight.
    pub stages: Vec<Stage>,
    /// How often the canary is evaluated.
    pub interval: Duration,
    pub latency: LatencyKind,
    /// `None` when `health_check.enabled` is false.
    pub health: Option<HealthCheck>,
    /// `None` when `rollback.enabled` is false.
    pub rollback: Option<RollbackRules>,
    pub relative: Option<Relative>,
    pub min_samples_rate: u64,
    pub min_samples_p99: u64,
    pub failed_checks_threshold: u32,
    pub on_inconclusive: OnInconclusive,
    pub notify: Option<Notify>,
    /// Connections (sessions) in the baseline's and the canary's pools, already clamped to
    /// each relay's connection limit.
    pub pool_baseline: u32,
    pub pool_canary: u32,
    /// Probe requests per (canary-time) minute over both providers; `None`: as many as the
    /// rate limits allow (90 % of them) at the current split.
    pub probe_requests_per_minute: Option<f64>,
    pub prompt: String,
    pub max_tokens: Option<u32>,
    /// The providers' send limits per minute (filled in from the providers).
    pub requests_per_minute_baseline: u32,
    pub requests_per_minute_canary: u32,
    /// Canary time runs this many times faster than real time (`--time-scale`).
    pub time_scale: f64,
    /// What was inferred, what is not used, and warnings: printed once at start.
    pub notes: Vec<Note>,
}

impl CanaryPlan {
    /// A plan with the defaults CANARY.md names, for `baseline` and `canary`, with the given
    /// stages. Builders (YAML, TOML, tests) start here.
    pub fn new(baseline: impl Into<String>, canary: impl Into<String>, stages: Vec<Stage>) -> Self {
        Self {
            baseline: baseline.into(),
            canary: canary.into(),
            stages,
            interval: Duration::from_secs(30),
            latency: LatencyKind::Ttft,
            health: Some(HealthCheck::default()),
            rollback: Some(RollbackRules::default()),
            relative: None,
            min_samples_rate: DEFAULT_MIN_SAMPLES_RATE,
            min_samples_p99: DEFAULT_MIN_SAMPLES_P99,
            failed_checks_threshold: DEFAULT_FAILED_CHECKS_THRESHOLD,
            on_inconclusive: OnInconclusive::Pause,
            notify: None,
            pool_baseline: crate::session::ratelimit::DEFAULT_MAX_CONNECTIONS,
            pool_canary: crate::session::ratelimit::DEFAULT_MAX_CONNECTIONS,
            probe_requests_per_minute: None,
            prompt: DEFAULT_CANARY_PROMPT.into(),
            max_tokens: Some(DEFAULT_CANARY_MAX_TOKENS),
            requests_per_minute_baseline: crate::session::ratelimit::DEFAULT_REQUESTS_PER_MINUTE,
            requests_per_minute_canary: crate::session::ratelimit::DEFAULT_REQUESTS_PER_MINUTE,
            time_scale: 1.0,
            notes: Vec::new(),
        }
    }

    /// The role of a provider, if it takes part.
    pub fn role_of(&self, provider: &str) -> Option<Role> {
        if provider == self.canary {
            Some(Role::Canary)
        } else if provider == self.baseline {
            Some(Role::Baseline)
        } else {
            None
        }
    }

    pub fn provider(&self, role: Role) -> &str {
        match role {
            Role::Baseline => &self.baseline,
            Role::Canary => &self.canary,
        }
    }

    /// The canary's starting share, in percent.
    pub fn start_percentage(&self) -> u32 {
        self.stages.first().map_or(0, |s| s.percentage)
    }

    /// Minimum samples before `metric` is judged.
    pub fn min_samples(&self, metric: Metric) -> u64 {
        match metric {
            Metric::ErrorRate => self.min_samples_rate,
            Metric::P50Latency | Metric::P99Latency => self.min_samples_p99,
        }
    }

    /// Whether the health check judges `metric` (it has a threshold).
    pub fn health_judges(&self, metric: Metric) -> bool {
        let Some(health) = &self.health else {
            return false;
        };
        match metric {
            Metric::ErrorRate => health.max_error_rate.is_some(),
            Metric::P99Latency => health.p99_ms.is_some() || self.relative.is_some(),
            Metric::P50Latency => false,
        }
    }

    /// The metrics a check at `stage` judges (for the minimum samples): the stage's metrics
    /// that have a health threshold, or, with health checks off, those with a rollback trigger.
    pub fn judged_metrics(&self, stage: usize) -> Vec<Metric> {
        let metrics = self
            .stages
            .get(stage)
            .map(|s| s.metrics.as_slice())
            .unwrap_or(&[]);
        if self.health.is_some() {
            metrics
                .iter()
                .copied()
                .filter(|m| self.health_judges(*m))
                .collect()
        } else {
            let Some(rb) = &self.rollback else {
                return Vec::new();
            };
            let mut judged = Vec::new();
            if rb.error_rate_above.is_some() {
                judged.push(Metric::ErrorRate);
            }
            if rb.p99_above_ms.is_some() || self.relative.is_some() {
                judged.push(Metric::P99Latency);
            }
            judged
        }
    }

    /// Probe requests per canary-time minute, over both providers, when the canary has
    /// `canary_percentage` of the traffic.
    pub fn probe_rate_per_minute(&self, canary_percentage: u32) -> f64 {
        if let Some(rate) = self.probe_requests_per_minute {
            return rate;
        }
        let c = f64::from(canary_percentage.min(100)) / 100.0;
        let mut rate = f64::INFINITY;
        if c < 1.0 {
            rate = rate.min(f64::from(self.requests_per_minute_baseline) / (1.0 - c));
        }
        if c > 0.0 {
            rate = rate.min(f64::from(self.requests_per_minute_canary) / c);
        }
        rate * PROBE_SHARE_OF_LIMIT
    }

    /// The evaluation window at `stage` with the canary at `canary_percentage`: at least one
    /// interval, and long enough for the canary's expected traffic to hold the minimum samples
    /// of every judged metric (with a margin).
    pub fn window(&self, stage: usize, canary_percentage: u32) -> Duration {
        let needed = self
            .judged_metrics(stage)
            .iter()
            .map(|m| self.min_samples(*m))
            .max()
            .unwrap_or(0);
        let canary_per_minute =
            self.probe_rate_per_minute(canary_percentage) * f64::from(canary_percentage) / 100.0;
        if needed == 0 || canary_per_minute <= 0.0 || !canary_per_minute.is_finite() {
            return self.interval;
        }
        let minutes = needed as f64 * WINDOW_MARGIN / canary_per_minute;
        let window = Duration::from_secs_f64((minutes * 60.0).min(86_400.0 * 7.0));
        window.max(self.interval)
    }

    /// The rollback trigger on p99 when latency is judged against the baseline.
    pub fn relative_rollback_factor(&self) -> Option<f64> {
        let relative = self.relative.as_ref()?;
        if let Some(f) = relative.rollback_factor {
            return Some(f);
        }
        let rb = self.rollback.as_ref()?;
        rb.p99_above_factor
    }

    /// Checks what a builder cannot express in types. The message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.baseline == self.canary {
            return Err(format!(
                "the baseline and the canary are the same provider ({})",
                self.canary
            ));
        }
        if self.stages.is_empty() {
            return Err("a canary needs at least one stage".into());
        }
        for (i, stage) in self.stages.iter().enumerate() {
            if stage.percentage > 100 {
                return Err(format!(
                    "stage {}: percentage {} is above 100",
                    i + 1,
                    stage.percentage
                ));
            }
        }
        if self.interval.is_zero() {
            return Err("the check interval must be longer than 0 s".into());
        }
        let fraction = |name: &str, v: Option<f64>| -> Result<(), String> {
            match v {
                Some(x) if !(0.0..=1.0).contains(&x) || !x.is_finite() => Err(format!(
                    "{name} is a fraction between 0 and 1 (0.05 is 5 %), not {x}"
                )),
                _ => Ok(()),
            }
        };
        let positive = |name: &str, v: Option<f64>| -> Result<(), String> {
            match v {
                Some(x) if !(x > 0.0 && x.is_finite()) => {
                    Err(format!("{name} must be a number above 0, not {x}"))
                }
                _ => Ok(()),
            }
        };
        if let Some(h) = &self.health {
            fraction("max_error_rate", h.max_error_rate)?;
            positive("latency_p99_threshold_ms", h.p99_ms)?;
        }
        if let Some(r) = &self.rollback {
            fraction("error_rate_above", r.error_rate_above)?;
            positive("p99_latency_above_ms", r.p99_above_ms)?;
            positive("p99_latency_above_factor", r.p99_above_factor)?;
            if r.consecutive_failures == Some(0) {
                return Err("consecutive_failures must be at least 1".into());
            }
        }
        if let Some(rel) = &self.relative {
            positive("latency_factor", Some(rel.factor))?;
            positive("rollback latency factor", rel.rollback_factor)?;
        }
        positive("probe requests_per_minute", self.probe_requests_per_minute)?;
        if self.failed_checks_threshold == 0 {
            return Err("failed_checks_threshold must be at least 1".into());
        }
        if !(self.time_scale >= 1.0 && self.time_scale.is_finite()) {
            return Err(format!(
                "the time scale must be 1 or more, not {}",
                self.time_scale
            ));
        }
        Ok(())
    }

    /// The warnings and notes every canary gets, whatever file it came from: rollback rules
    /// stricter than the health check, what a latency threshold judges, how soon a check can
    /// judge, and the reference case of spec/PROTOCOL.md against absolute p99 rules.
    /// `expected_canary_p99_ms` is the canary's expected p99 (its simulator profile's, under
    /// `--simulate`) with where that figure comes from.
    pub fn rule_notes(&self, expected: &ExpectedLatency) -> Vec<Note> {
        let mut notes = Vec::new();
        let pct = |x: f64| format!("{} %", trim_float(x * 100.0));
        if let (Some(h), Some(r)) = (&self.health, &self.rollback) {
            if let (Some(health), Some(rollback)) = (h.max_error_rate, r.error_rate_above)
                && rollback < health
            {
                notes.push(Note::warning(format!(
                    "rollback on error rate above {} is stricter than the health check's {}: an \
                     error rate between the two rolls back at once instead of failing a check",
                    pct(rollback),
                    pct(health)
                )));
            }
            if self.relative.is_none()
                && let (Some(health), Some(rollback)) = (h.p99_ms, r.p99_above_ms)
                && rollback < health
            {
                notes.push(Note::warning(format!(
                    "rollback on p99 above {} ms is stricter than the health check's {} ms: a p99 \
                     between the two rolls back at once instead of failing a check",
                    trim_float(rollback),
                    trim_float(health)
                )));
            }
        }
        if self.health_judges(Metric::P99Latency)
            || self
                .rollback
                .as_ref()
                .is_some_and(|r| r.p99_above_ms.is_some())
        {
            let which = match self.latency {
                LatencyKind::Ttft => {
                    "time to first token (say `latency: total` to judge whole responses)"
                }
                LatencyKind::Total => "whole-response time (`latency: total`)",
            };
            notes.push(Note::info(format!("latency thresholds judge {which}")));
        }
        if let Some(rel) = &self.relative {
            let rollback = self
                .relative_rollback_factor()
                .map(|f| {
                    format!(
                        "; rollback when above the baseline's p99 × {}",
                        trim_float(f)
                    )
                })
                .unwrap_or_default();
            notes.push(Note::info(format!(
                "relative_to: baseline: a check fails when the canary's p99 is above the \
                 baseline's p99 × {}{rollback} (millisecond thresholds are not used)",
                trim_float(rel.factor)
            )));
        }
        // How soon the first check can judge.
        let start = self.start_percentage();
        let window = self.window(0, start);
        let rate = self.probe_rate_per_minute(start);
        notes.push(Note::info(format!(
            "probes: {} requests a minute at {} % canary ({} a minute to {}); checks every {} \
             over the last {} so that each holds {} samples for p99 and {} for rates",
            trim_float((rate * 10.0).round() / 10.0),
            start,
            trim_float((rate * f64::from(start) / 100.0 * 10.0).round() / 10.0),
            self.canary,
            human(self.interval),
            human(window),
            self.min_samples_p99,
            self.min_samples_rate
        )));
        // The reference case against absolute p99 rules.
        if self.relative.is_none() {
            let mut rules = Vec::new();
            if let Some(r) = &self.rollback
                && let Some(ms) = r.p99_above_ms
                && ms < expected.canary_p99_ms
            {
                rules.push((format!("p99_latency_above_ms: {}", trim_float(ms)), true));
            }
            if let Some(h) = &self.health
                && let Some(ms) = h.p99_ms
                && ms < expected.canary_p99_ms
            {
                rules.push((
                    format!("latency_p99_threshold_ms: {}", trim_float(ms)),
                    false,
                ));
            }
            if !rules.is_empty() {
                let names: Vec<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
                let verdict = if rules.iter().any(|(_, rollback)| *rollback) {
                    format!("{} will be rolled back by {}", self.canary, names[0])
                } else {
                    format!(
                        "every check of {} will fail ({})",
                        self.canary,
                        names.join(", ")
                    )
                };
                notes.push(Note::warning(format!(
                    "{}: p99 {} ms against {} ms for {}{}; {verdict}. Add `relative_to: baseline` \
                     under health_check to judge the canary against the baseline instead",
                    expected.source,
                    trim_float(expected.canary_p99_ms),
                    trim_float(expected.baseline_p99_ms),
                    self.baseline,
                    faster(expected),
                )));
            }
        }
        notes
    }
}

fn faster(expected: &ExpectedLatency) -> String {
    let ratio = expected.baseline_p99_ms / expected.canary_p99_ms;
    if ratio > 1.2 {
        format!(
            " (the canary is {}× faster)",
            trim_float((ratio * 10.0).round() / 10.0)
        )
    } else {
        String::new()
    }
}

/// What the canary's and the baseline's p99 are expected to be, and from where.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedLatency {
    pub canary_p99_ms: f64,
    pub baseline_p99_ms: f64,
    /// "the reference case (spec/PROTOCOL.md)" or "under --simulate, holysheep's profile".
    pub source: String,
}

impl ExpectedLatency {
    /// The reference case of spec/PROTOCOL.md: the new relay's p99 320 ms, the legacy's 890 ms.
    pub fn reference_case(canary: &str) -> Self {
        Self {
            canary_p99_ms: 320.0,
            baseline_p99_ms: 890.0,
            source: format!(
                "if {canary} is like the reference case's new relay (spec/PROTOCOL.md)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_plan() -> CanaryPlan {
        let metrics = vec![Metric::ErrorRate, Metric::P50Latency, Metric::P99Latency];
        let stage = |percentage, minutes: u64| Stage {
            percentage,
            duration: Duration::from_secs(minutes * 60),
            metrics: metrics.clone(),
            manual_gate: false,
        };
        let mut plan = CanaryPlan::new(
            "legacy",
            "holysheep",
            vec![stage(10, 30), stage(30, 60), stage(50, 60), stage(100, 0)],
        );
        plan.health = Some(HealthCheck {
            max_error_rate: Some(0.05),
            p99_ms: Some(250.0),
        });
        plan.rollback = Some(RollbackRules {
            error_rate_above: Some(0.02),
            p99_above_ms: Some(300.0),
            p99_above_factor: None,
            consecutive_failures: Some(5),
        });
        plan
    }

    #[test]
    fn probe_rate_respects_both_limits() {
        let plan = reference_plan();
        // 90 % of 60 a minute to the baseline at 10 %: 60 in all, 6 of them to the canary.
        assert!((plan.probe_rate_per_minute(10) - 60.0).abs() < 1e-9);
        assert!((plan.probe_rate_per_minute(50) - 108.0).abs() < 1e-9);
        assert!((plan.probe_rate_per_minute(100) - 54.0).abs() < 1e-9);
        assert!((plan.probe_rate_per_minute(0) - 54.0).abs() < 1e-9);
    }

    #[test]
    fn windows_hold_the_minimum_samples() {
        let plan = reference_plan();
        // 100 samples × 1.2 at 6 a minute: 20 minutes.
        assert_eq!(plan.window(0, 10), Duration::from_secs(20 * 60));
        let mut rates_only = plan.clone();
        rates_only.stages[0].metrics = vec![Metric::ErrorRate];
        assert_eq!(rates_only.window(0, 10), Duration::from_secs(4 * 60));
        rates_only.stages[0].metrics = vec![Metric::P50Latency];
        assert_eq!(rates_only.window(0, 10), plan.interval, "p50 is not judged");
    }

    #[test]
    fn the_reference_case_warns_about_the_absolute_p99_rule() {
        let plan = reference_plan();
        let notes = plan.rule_notes(&ExpectedLatency::reference_case("holysheep"));
        let warnings: Vec<&str> = notes
            .iter()
            .filter(|n| n.level == NoteLevel::Warning)
            .map(|n| n.text.as_str())
            .collect();
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[0].contains("error rate above 2 % is stricter than the health check's 5 %")
        );
        assert!(warnings[1].contains("holysheep will be rolled back by p99_latency_above_ms: 300"));
        assert!(warnings[1].contains("relative_to: baseline"));
        let mut relative = plan.clone();
        relative.relative = Some(Relative {
            factor: 1.0,
            rollback_factor: Some(1.2),
        });
        let notes = relative.rule_notes(&ExpectedLatency::reference_case("holysheep"));
        assert_eq!(
            notes
                .iter()
                .filter(|n| n.level == NoteLevel::Warning)
                .count(),
            1,
            "only the error-rate inversion: {notes:#?}"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let mut plan = reference_plan();
        plan.health = Some(HealthCheck {
            max_error_rate: Some(5.0),
            p99_ms: None,
        });
        assert!(
            plan.validate()
                .unwrap_err()
                .contains("max_error_rate is a fraction")
        );
        assert!(reference_plan().validate().is_ok());
    }

    #[test]
    fn people_read_durations_and_numbers() {
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::from_secs(1200)), "20 min");
        assert_eq!(human(Duration::from_secs(5400)), "90 min");
        assert_eq!(human(Duration::from_secs(10800)), "3 h");
        assert_eq!(trim_float(0.05), "0.05");
        assert_eq!(trim_float(300.0), "300");
    }
}
