//! What the controller decides and keeps: the phase of the rollout, rollback triggers, the
//! verdict and readings of each check, the stages entered, and their JSON forms.

use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::canary::plan::Metric;

/// What set the canary to 0 %.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trigger {
    /// The rule, in the file's words: `error_rate_above`, `p99_latency_above_ms`,
    /// `p99_latency_above_factor`, `consecutive_failures`, `failed_checks_threshold`, `manual`.
    pub rule: String,
    /// What was measured (a fraction, milliseconds or a count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Samples behind the value.
    pub samples: u64,
    /// A sentence for people.
    pub detail: String,
}

/// Where the rollout is.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// Holding or advancing stages.
    Running,
    /// Waiting for a person (by hand, an inconclusive check, or a manual gate).
    Paused { reason: String },
    /// The canary was set to 0 %.
    RolledBack { trigger: Trigger },
    /// The canary has all the traffic.
    Promoted {
        /// "stages completed" or "by hand".
        how: String,
    },
}

impl Phase {
    pub fn label(&self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused { .. } => "paused",
            Phase::RolledBack { .. } => "rolled back",
            Phase::Promoted { .. } => "promoted",
        }
    }

    /// Rolled back or promoted: nothing changes any more.
    pub fn is_final(&self) -> bool {
        matches!(self, Phase::RolledBack { .. } | Phase::Promoted { .. })
    }
}

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    Failed,
    Inconclusive,
    /// A rollback trigger fired during the check.
    RolledBack,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Inconclusive => "inconclusive",
            Verdict::RolledBack => "rolled back",
        }
    }
}

/// How one metric stood at a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingStatus {
    /// Judged and within its threshold.
    Ok,
    /// Over its health threshold.
    Breached,
    /// Over its rollback trigger.
    RollbackBreached,
    /// Fewer samples than the minimum: not judged.
    Collecting,
    /// Shown, not judged (p50, or a metric without a threshold).
    Shown,
}

/// One metric of the canary against its threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reading {
    pub metric: Metric,
    /// A fraction for the error rate, milliseconds for latencies; `None` without samples.
    pub value: Option<f64>,
    /// The health threshold (for relative latency: the baseline's p99 × factor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The rollback trigger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_at: Option<f64>,
    /// How the threshold was reached, when it is not a plain number ("baseline p99 890 ms × 1").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
    pub samples: u64,
    pub min_samples: u64,
    pub status: ReadingStatus,
}

/// One health check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckRecord {
    /// Canary time of the check, seconds.
    #[serde(rename = "at_s", serialize_with = "secs")]
    pub at: Duration,
    /// Stage number, from 1.
    pub stage: usize,
    pub percentage: u32,
    pub verdict: Verdict,
    #[serde(rename = "window_s", serialize_with = "secs")]
    pub window: Duration,
    pub readings: Vec<Reading>,
    /// Why, in a sentence.
    pub note: String,
}

/// A stage entered, and when it was left for the next one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageRecord {
    /// From 1.
    pub stage: usize,
    pub percentage: u32,
    #[serde(rename = "entered_at_s", serialize_with = "secs")]
    pub entered_at: Duration,
    /// When its hold ended with a passed check; absent while under way.
    #[serde(rename = "passed_at_s", serialize_with = "opt_secs")]
    pub passed_at: Option<Duration>,
}

/// Something the controller decided; the driver acts on it (weights, notifications, markers).
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Check(Verdict),
    /// Now at `stage` (from 0) with `percentage`.
    Advanced {
        stage: usize,
        percentage: u32,
    },
    Paused {
        reason: String,
    },
    Resumed,
    RolledBack(Trigger),
    Promoted {
        how: String,
    },
}

/// Checks by verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckCounts {
    pub passed: u64,
    pub failed: u64,
    pub inconclusive: u64,
}

/// Seconds with millisecond precision, for JSON.
pub fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => secs(d, s),
        None => s.serialize_none(),
    }
}
