//! What others read of a running canary: `CanaryView`, a read-only snapshot for the dashboard
//! (stage, weights, time left, each metric against its threshold with sample counts, check
//! history, a banner), and `CanaryReport`, the `canary` object of the headless JSON.
//!
//! Times are canary time (real time × `time_scale`), as the plan's stage durations are.

use std::time::Duration;

use serde::Serialize;

use crate::canary::controller::{
    CheckCounts, CheckRecord, Phase, Reading, StageRecord, Trigger, secs,
};
use crate::canary::notify::NotifyCounts;
use crate::canary::plan::Role;

/// How loud the banner is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BannerKind {
    /// The canary was set to 0 %.
    RolledBack,
    /// The canary has all the traffic.
    Promoted,
    /// Waiting for a person (`resume`, `promote` or `roll back`).
    Paused,
}

/// A line across the canary view when the rollout needs attention or is over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Banner {
    pub kind: BannerKind,
    pub text: String,
}

/// Traffic of one provider of the canary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderTraffic {
    pub provider: String,
    pub role: Role,
    /// Its share of the traffic now, in percent.
    pub weight: u32,
    /// Sessions in its pool, and how many are connected.
    pub pool_size: u32,
    pub pool_up: u32,
    /// Requests under way.
    pub busy: u32,
    /// Requests routed here that wait for an idle connection or a rate-limit slot.
    pub waiting: u64,
    /// Sessions of this provider held back by the sliding window (all workloads).
    pub waiting_for_slot: u64,
    /// Time until the sliding window frees a slot (zero when one is free), real time.
    #[serde(rename = "next_slot_in_s", serialize_with = "secs")]
    pub next_slot_in: Duration,
    pub sends_in_window: u32,
    pub requests_per_window: u32,
    /// Routed to it, sent, completed, failed (counted against it), and refused by the relay's
    /// rate limit (not counted against it).
    pub routed: u64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub rate_limited: u64,
}

/// A snapshot of the canary for the dashboard.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryView {
    pub baseline: String,
    pub canary: String,
    pub phase: Phase,
    /// Set when rolled back, promoted or paused.
    pub banner: Option<Banner>,
    /// The stage under way, from 1, of `stages`.
    pub stage: usize,
    pub stages: usize,
    /// Each stage's percentage and duration.
    pub stage_plan: Vec<(u32, Duration)>,
    /// `(provider, percent)` now.
    pub weights: Vec<(String, u32)>,
    /// Canary time since the canary started.
    pub elapsed: Duration,
    /// Canary time in the current stage.
    pub stage_elapsed: Duration,
    /// Canary time until the stage's hold is over (while running; zero once it is).
    pub stage_time_left: Option<Duration>,
    /// Canary time until the next check (while not final).
    pub next_check_in: Option<Duration>,
    /// The evaluation window and the check interval.
    pub window: Duration,
    pub interval: Duration,
    /// Canary time runs this many times faster than real time.
    pub time_scale: f64,
    /// Each metric of the canary against its thresholds over the current window, with samples.
    pub readings: Vec<Reading>,
    pub failed_checks: u32,
    pub failed_checks_threshold: u32,
    pub consecutive_failures: u32,
    pub consecutive_failures_limit: Option<u32>,
    pub checks: CheckCounts,
    /// The latest checks, oldest first.
    pub history: Vec<CheckRecord>,
    pub providers: Vec<ProviderTraffic>,
    /// `None` without a webhook.
    pub notifications: Option<NotifyCounts>,
    /// Recent decisions (stage changes, pauses, rollback, promotion) with their canary time.
    pub log: Vec<(Duration, String)>,
}

/// The `canary` object of the headless JSON report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CanaryReport {
    pub baseline: String,
    pub canary: String,
    /// `running`, `paused`, `rolled_back` or `promoted`.
    pub state: String,
    /// What rolled it back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Why it is paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// The outcome in a sentence.
    pub summary: String,
    /// The canary's share at the end, in percent.
    pub canary_weight: u32,
    /// The stage at the end (from 1) of `stages`.
    pub stage: usize,
    pub stages: usize,
    /// Stages whose hold ended with a passed check.
    pub stages_passed: usize,
    /// Each stage entered, when, and when it passed.
    pub stage_history: Vec<StageRecord>,
    pub checks: CheckCounts,
    pub failed_checks: u32,
    /// The checks, oldest first (the latest 200).
    pub history: Vec<CheckRecord>,
    pub time_scale: f64,
    /// Canary time from start to the end of the run, seconds.
    #[serde(rename = "canary_time_s", serialize_with = "secs")]
    pub canary_time: Duration,
    pub providers: Vec<ProviderTraffic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotifyCounts>,
}

impl CanaryReport {
    /// A few lines for the text summary.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "Canary: {}", self.summary);
        let _ = writeln!(
            out,
            "  stages passed {} of {}; checks {} passed, {} failed, {} inconclusive; {} canary time (×{})",
            self.stages_passed,
            self.stages,
            self.checks.passed,
            self.checks.failed,
            self.checks.inconclusive,
            crate::canary::plan::human(self.canary_time),
            crate::canary::plan::trim_float(self.time_scale)
        );
        for p in &self.providers {
            let _ = writeln!(
                out,
                "  {:<12} {:>3} %  sent {:>6}  ok {:>6}  failed {:>5}  rate limited {:>4}",
                p.provider, p.weight, p.sent, p.ok, p.failed, p.rate_limited
            );
        }
        if let Some(last) = self.history.last() {
            let _ = writeln!(
                out,
                "  last check at {}: {}",
                crate::canary::plan::human(last.at),
                last.note
            );
        }
        if let Some(n) = &self.notifications {
            let _ = writeln!(out, "  notifications: {} sent, {} failed", n.sent, n.failed);
        }
        out
    }
}
