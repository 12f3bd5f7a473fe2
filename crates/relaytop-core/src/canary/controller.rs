//! The canary controller: a pure state machine over request outcomes and `now`.
//!
//! It is told each routed request's outcome (`on_outcome`) and asked, with the time, to run
//! whatever is due (`tick`): the health check every interval over a window that holds the
//! minimum samples, rollback triggers, failed-check counting, stage timing and promotion. A
//! person may pause, resume, promote or roll back. It never reads a clock and never does I/O:
//! times are canary time (real time × the time scale), and tests drive it with invented times.
//!
//! Order of a check (spec/CANARY.md): a rollback trigger breached with enough samples rolls
//! back; too few samples is inconclusive (neither advance nor count; by default the rollout
//! pauses for a person); a breached health threshold fails the check (progress halts; at the
//! threshold it rolls back); otherwise it passes. A stage held long enough whose last check
//! passed advances, and leaving the last stage (or reaching a 0-minute 100 % one) promotes.
//! Consecutive canary failures roll back at once, whatever the checks say.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::canary::plan::{CanaryPlan, Metric, OnInconclusive, Role, human, trim_float};

/// Most samples kept per provider (older ones beyond every window are dropped anyway).
pub const MAX_SAMPLES: usize = 200_000;
/// Most checks kept in the history (the counts cover all of them).
pub const MAX_HISTORY: usize = 1_000;

/// How one routed request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// The latency the plan judges (time to first token or total), for completed requests.
    pub latency: Option<Duration>,
}

impl Outcome {
    pub fn ok(latency: Duration) -> Self {
        Self {
            ok: true,
            latency: Some(latency),
        }
    }
    pub fn failed() -> Self {
        Self {
            ok: false,
            latency: None,
        }
    }
}

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

/// Requests of one provider, as the controller saw their outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub ok: u64,
    pub failed: u64,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    ok: bool,
    latency_us: Option<u64>,
}

/// Figures of one provider over one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    /// Outcomes (completed and failed).
    pub n: u64,
    pub errors: u64,
    /// Latency samples.
    pub latency_n: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl WindowStats {
    pub fn error_rate(&self) -> Option<f64> {
        (self.n > 0).then(|| self.errors as f64 / self.n as f64)
    }
}

#[derive(Clone, Debug, Default)]
struct Samples(VecDeque<Sample>);

impl Samples {
    fn push(&mut self, sample: Sample) {
        if self.0.len() >= MAX_SAMPLES {
            self.0.pop_front();
        }
        // Outcomes may arrive slightly out of order; keep the deque sorted by time.
        let pos = self
            .0
            .iter()
            .rposition(|s| s.at <= sample.at)
            .map_or(0, |p| p + 1);
        self.0.insert(pos, sample);
    }

    fn prune(&mut self, before: Duration) {
        while self.0.front().is_some_and(|s| s.at < before) {
            self.0.pop_front();
        }
    }

    /// Figures over `[from, to]`.
    fn stats(&self, from: Duration, to: Duration) -> WindowStats {
        let mut stats = WindowStats::default();
        let mut latencies: Vec<u64> = Vec::new();
        for s in self.0.iter().filter(|s| s.at >= from && s.at <= to) {
            stats.n += 1;
            if !s.ok {
                stats.errors += 1;
            }
            if let Some(l) = s.latency_us {
                latencies.push(l);
            }
        }
        latencies.sort_unstable();
        stats.latency_n = latencies.len() as u64;
        stats.p50_ms = quantile(&latencies, 0.50);
        stats.p99_ms = quantile(&latencies, 0.99);
        stats
    }
}

/// Nearest-rank quantile of sorted microseconds, in milliseconds.
fn quantile(sorted_us: &[u64], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    Some(sorted_us[index] as f64 / 1000.0)
}

/// The canary.
#[derive(Clone, Debug)]
pub struct Canary {
    plan: CanaryPlan,
    phase: Phase,
    /// The stage under way (from 0).
    stage: usize,
    stage_started: Duration,
    started: Duration,
    /// The canary's share now, in percent.
    weight: u32,
    next_check: Duration,
    failed_checks: u32,
    consecutive_failures: u32,
    samples: [Samples; 2],
    /// The baseline's last p99 with enough samples (the reference of relative checks when
    /// the baseline has too little traffic left, at 100 %).
    baseline_p99_ref: Option<f64>,
    last_verdict: Option<Verdict>,
    history: VecDeque<CheckRecord>,
    counts: CheckCounts,
    outcomes: [OutcomeCounts; 2],
    stages: Vec<StageRecord>,
    /// A manual gate is holding the rollout at the end of the stage.
    at_gate: bool,
    /// How long samples are kept.
    keep: Duration,
}

fn index(role: Role) -> usize {
    match role {
        Role::Baseline => 0,
        Role::Canary => 1,
    }
}

impl Canary {
    /// Starts the canary at `now` in its first stage.
    pub fn new(plan: CanaryPlan, now: Duration) -> Self {
        let weight = plan.start_percentage();
        let keep = (0..plan.stages.len())
            .map(|i| plan.window(i, plan.stages[i].percentage.max(1)))
            .max()
            .unwrap_or(plan.interval)
            .max(plan.interval)
            .saturating_mul(2)
            + plan.interval;
        let first_window = plan.window(0, weight);
        let checks_to_first = (first_window.as_secs_f64() / plan.interval.as_secs_f64())
            .ceil()
            .max(1.0);
        let next_check = now + plan.interval.mul_f64(checks_to_first);
        let stages = vec![StageRecord {
            stage: 1,
            percentage: weight,
            entered_at: Duration::ZERO,
            passed_at: None,
        }];
        Self {
            phase: Phase::Running,
            stage: 0,
            stage_started: now,
            started: now,
            weight,
            next_check,
            failed_checks: 0,
            consecutive_failures: 0,
            samples: [Samples::default(), Samples::default()],
            baseline_p99_ref: None,
            last_verdict: None,
            history: VecDeque::new(),
            counts: CheckCounts::default(),
            outcomes: [OutcomeCounts::default(); 2],
            stages,
            at_gate: false,
            keep,
            plan,
        }
    }

    pub fn plan(&self) -> &CanaryPlan {
        &self.plan
    }
    pub fn phase(&self) -> &Phase {
        &self.phase
    }
    /// The stage under way, from 0.
    pub fn stage(&self) -> usize {
        self.stage
    }
    pub fn stage_started(&self) -> Duration {
        self.stage_started
    }
    pub fn started(&self) -> Duration {
        self.started
    }
    /// The canary's share of the traffic now, in percent (0 after a rollback).
    pub fn canary_weight(&self) -> u32 {
        self.weight
    }
    /// `(provider, weight)` for the router.
    pub fn weights(&self) -> [(&str, u32); 2] {
        [
            (self.plan.baseline.as_str(), 100 - self.weight.min(100)),
            (self.plan.canary.as_str(), self.weight.min(100)),
        ]
    }
    pub fn next_check(&self) -> Duration {
        self.next_check
    }
    pub fn failed_checks(&self) -> u32 {
        self.failed_checks
    }
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &CheckRecord> + ExactSizeIterator {
        self.history.iter()
    }
    pub fn counts(&self) -> CheckCounts {
        self.counts
    }
    pub fn outcomes(&self, role: Role) -> OutcomeCounts {
        self.outcomes[index(role)]
    }
    pub fn stages(&self) -> &[StageRecord] {
        &self.stages
    }
    /// The plan's evaluation window for the current split (what the canary's expected traffic
    /// needs to hold the minimum samples).
    /// Once rolled back (weight 0) it stays the window of the stage's planned split, rather
    /// than the far longer one a 1 % canary would need.
    pub fn window(&self) -> Duration {
        let weight = if self.weight > 0 {
            self.weight
        } else {
            self.plan
                .stages
                .get(self.stage)
                .map_or(1, |s| s.percentage.max(1))
        };
        self.plan.window(self.stage, weight)
    }

    /// The evaluation window ending at `now`: the plan's window, stretched back (as far as
    /// samples are kept) until it holds the judged metrics' minimum canary samples: after a
    /// stage change, the traffic of the stage before fills what the new one has not yet.
    pub fn window_at(&self, now: Duration) -> Duration {
        let base = self.window();
        let judged = self.plan.judged_metrics(self.stage);
        let need_n = if judged.contains(&Metric::ErrorRate) {
            self.plan.min_samples_rate
        } else {
            0
        };
        let need_latency = if judged.contains(&Metric::P99Latency) {
            self.plan.min_samples_p99
        } else {
            0
        };
        let mut span = base;
        let (mut n, mut latency) = (0u64, 0u64);
        for sample in self.samples[index(Role::Canary)].0.iter().rev() {
            if sample.at > now {
                continue;
            }
            if n >= need_n && latency >= need_latency {
                break;
            }
            n += 1;
            latency += u64::from(sample.latency_us.is_some());
            span = span.max(now.saturating_sub(sample.at));
        }
        span.min(self.keep.max(base))
    }

    /// When the current stage's hold ends (canary time).
    pub fn stage_ends(&self) -> Duration {
        self.stage_started + self.plan.stages[self.stage].duration
    }

    /// A routed request of `role` ended at `now`.
    pub fn on_outcome(&mut self, role: Role, outcome: Outcome, now: Duration) -> Vec<Decision> {
        let i = index(role);
        if outcome.ok {
            self.outcomes[i].ok += 1;
        } else {
            self.outcomes[i].failed += 1;
        }
        self.samples[i].push(Sample {
            at: now,
            ok: outcome.ok,
            latency_us: if outcome.ok {
                outcome
                    .latency
                    .map(|l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX))
            } else {
                None
            },
        });
        self.samples[i].prune(now.saturating_sub(self.keep));
        if role != Role::Canary || self.phase.is_final() {
            return Vec::new();
        }
        if outcome.ok {
            self.consecutive_failures = 0;
            return Vec::new();
        }
        self.consecutive_failures += 1;
        let limit = self
            .plan
            .rollback
            .as_ref()
            .and_then(|r| r.consecutive_failures);
        match limit {
            Some(limit) if self.consecutive_failures >= limit => {
                let trigger = Trigger {
                    rule: "consecutive_failures".into(),
                    value: Some(f64::from(self.consecutive_failures)),
                    threshold: Some(f64::from(limit)),
                    samples: u64::from(self.consecutive_failures),
                    detail: format!(
                        "{} failed requests in a row to {} (limit {limit})",
                        self.consecutive_failures, self.plan.canary
                    ),
                };
                vec![self.roll_back(trigger)]
            }
            _ => Vec::new(),
        }
    }

    /// Runs what is due at `now`: checks (each at its own scheduled time) and stage timing.
    pub fn tick(&mut self, now: Duration) -> Vec<Decision> {
        let mut decisions = Vec::new();
        // A clock that jumped far ahead runs the checks it missed, up to a bound.
        let mut budget = 10_000u32;
        while !self.phase.is_final() && self.next_check <= now && budget > 0 {
            budget -= 1;
            let at = self.next_check;
            self.next_check += self.plan.interval;
            decisions.extend(self.check(at));
            decisions.extend(self.progress(at));
        }
        if budget == 0 {
            self.next_check = now + self.plan.interval;
        }
        decisions.extend(self.progress(now));
        decisions
    }

    /// The figures of `role` over the window ending at `now`.
    pub fn window_stats(&self, role: Role, now: Duration) -> WindowStats {
        let from = now.saturating_sub(self.window_at(now)).max(self.started);
        self.samples[index(role)].stats(from, now)
    }

    /// Every metric of the canary against its thresholds over the window ending at `now`.
    pub fn readings(&self, now: Duration) -> Vec<Reading> {
        let canary = self.window_stats(Role::Canary, now);
        let baseline = self.window_stats(Role::Baseline, now);
        let baseline_p99 = self.baseline_reference(&baseline);
        self.readings_of(&canary, baseline_p99)
    }

    fn baseline_reference(&self, baseline: &WindowStats) -> Option<(f64, bool)> {
        match baseline.p99_ms {
            Some(p99) if baseline.latency_n >= self.plan.min_samples_p99 => Some((p99, true)),
            _ => self.baseline_p99_ref.map(|p| (p, false)),
        }
    }

    fn readings_of(&self, c: &WindowStats, baseline_p99: Option<(f64, bool)>) -> Vec<Reading> {
        let plan = &self.plan;
        let stage_metrics = &plan.stages[self.stage].metrics;
        let health = plan.health.as_ref();
        let rollback = plan.rollback.as_ref();
        let mut readings = Vec::new();
        for metric in Metric::ALL {
            let in_stage = stage_metrics.contains(&metric);
            let min = plan.min_samples(metric);
            let (value, samples, threshold, rollback_at, basis) = match metric {
                Metric::ErrorRate => (
                    c.error_rate(),
                    c.n,
                    health.and_then(|h| h.max_error_rate),
                    rollback.and_then(|r| r.error_rate_above),
                    None,
                ),
                Metric::P50Latency => (c.p50_ms, c.latency_n, None, None, None),
                Metric::P99Latency => match &plan.relative {
                    Some(rel) => {
                        let rb = plan.relative_rollback_factor();
                        match baseline_p99 {
                            Some((b, fresh)) => (
                                c.p99_ms,
                                c.latency_n,
                                health.map(|_| b * rel.factor),
                                rb.map(|f| b * f),
                                Some(format!(
                                    "{} p99 {} ms{} × {}",
                                    plan.baseline,
                                    trim_float(b),
                                    if fresh { "" } else { " (earlier)" },
                                    trim_float(rel.factor)
                                )),
                            ),
                            None => (
                                c.p99_ms,
                                c.latency_n,
                                None,
                                None,
                                Some(format!("{} p99: too few samples", plan.baseline)),
                            ),
                        }
                    }
                    None => (
                        c.p99_ms,
                        c.latency_n,
                        health.and_then(|h| h.p99_ms),
                        rollback.and_then(|r| r.p99_above_ms),
                        None,
                    ),
                },
            };
            // Rollback triggers apply whatever the stage evaluates; health thresholds only to
            // the stage's metrics.
            let rule_exists = match metric {
                Metric::ErrorRate => rollback.is_some_and(|r| r.error_rate_above.is_some()),
                Metric::P50Latency => false,
                Metric::P99Latency => match &plan.relative {
                    Some(_) => plan.relative_rollback_factor().is_some(),
                    None => rollback.is_some_and(|r| r.p99_above_ms.is_some()),
                },
            };
            let health_judged = plan.health_judges(metric) && in_stage;
            let status = if !(health_judged || rule_exists) {
                ReadingStatus::Shown
            } else if samples < min || (threshold.is_none() && rollback_at.is_none()) {
                ReadingStatus::Collecting
            } else {
                let v = value.unwrap_or(0.0);
                if rollback_at.is_some_and(|r| v > r) {
                    ReadingStatus::RollbackBreached
                } else if health_judged && threshold.is_some_and(|t| v > t) {
                    ReadingStatus::Breached
                } else {
                    ReadingStatus::Ok
                }
            };
            readings.push(Reading {
                metric,
                value,
                threshold,
                rollback_at,
                basis,
                samples,
                min_samples: min,
                status,
            });
        }
        readings
    }

    /// One check at `now`.
    fn check(&mut self, now: Duration) -> Vec<Decision> {
        let window = self.window_at(now);
        let canary = self.window_stats(Role::Canary, now);
        let baseline = self.window_stats(Role::Baseline, now);
        if let Some(p99) = baseline.p99_ms
            && baseline.latency_n >= self.plan.min_samples_p99
        {
            self.baseline_p99_ref = Some(p99);
        }
        let readings = self.readings_of(&canary, self.baseline_reference(&baseline));
        let mut decisions = Vec::new();

        // 1. Rollback triggers (with enough samples) roll back at once.
        let rolled = readings
            .iter()
            .find(|r| r.status == ReadingStatus::RollbackBreached);
        let (verdict, note) = if let Some(r) = rolled {
            let trigger = self.trigger_for(r);
            let note = trigger.detail.clone();
            decisions.push(self.roll_back(trigger));
            (Verdict::RolledBack, note)
        } else {
            let judged = self.plan.judged_metrics(self.stage);
            let lacking: Vec<String> = readings
                .iter()
                .filter(|r| judged.contains(&r.metric) && r.status == ReadingStatus::Collecting)
                .map(|r| {
                    if r.samples < r.min_samples {
                        format!(
                            "{} has {} of {} samples",
                            r.metric.label(),
                            r.samples,
                            r.min_samples
                        )
                    } else {
                        format!(
                            "{} has no reference ({})",
                            r.metric.label(),
                            r.basis.clone().unwrap_or_default()
                        )
                    }
                })
                .collect();
            let breached: Vec<String> = readings
                .iter()
                .filter(|r| judged.contains(&r.metric) && r.status == ReadingStatus::Breached)
                .map(describe_breach)
                .collect();
            if !lacking.is_empty() && self.plan.on_inconclusive != OnInconclusive::Fail {
                // 2. Too few samples: neither advance nor count.
                let note = format!("inconclusive: {}", lacking.join(", "));
                self.counts.inconclusive += 1;
                if self.plan.on_inconclusive == OnInconclusive::Pause
                    && self.phase == Phase::Running
                {
                    let reason = format!("{note}: waiting for a person (on_inconclusive: pause)");
                    self.phase = Phase::Paused {
                        reason: reason.clone(),
                    };
                    decisions.push(Decision::Paused { reason });
                }
                (Verdict::Inconclusive, note)
            } else if !breached.is_empty() || !lacking.is_empty() {
                // 3. A failed check halts progress and counts.
                self.counts.failed += 1;
                self.failed_checks += 1;
                let mut why = breached;
                why.extend(
                    lacking
                        .iter()
                        .map(|l| format!("{l} (on_inconclusive: fail)")),
                );
                let note = format!(
                    "failed ({} of {}): {}",
                    self.failed_checks,
                    self.plan.failed_checks_threshold,
                    why.join(", ")
                );
                if self.failed_checks >= self.plan.failed_checks_threshold {
                    let trigger = Trigger {
                        rule: "failed_checks_threshold".into(),
                        value: Some(f64::from(self.failed_checks)),
                        threshold: Some(f64::from(self.plan.failed_checks_threshold)),
                        samples: canary.n,
                        detail: format!(
                            "{} failed checks (the last: {})",
                            self.failed_checks,
                            why.join(", ")
                        ),
                    };
                    decisions.push(self.roll_back(trigger));
                }
                (Verdict::Failed, note)
            } else {
                self.counts.passed += 1;
                (Verdict::Passed, "passed".to_owned())
            }
        };
        self.last_verdict = Some(verdict);
        decisions.insert(0, Decision::Check(verdict));
        if self.history.len() >= MAX_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(CheckRecord {
            at: now.saturating_sub(self.started),
            stage: self.stage + 1,
            percentage: self.stages.last().map_or(self.weight, |s| s.percentage),
            verdict,
            window,
            readings,
            note,
        });
        decisions
    }

    fn trigger_for(&self, r: &Reading) -> Trigger {
        let relative = self.plan.relative.is_some() && r.metric == Metric::P99Latency;
        let rule = match r.metric {
            Metric::ErrorRate => "error_rate_above",
            _ if relative => "p99_latency_above_factor",
            _ => "p99_latency_above_ms",
        };
        let value = r.value.unwrap_or(0.0);
        let limit = r.rollback_at.unwrap_or(0.0);
        let detail = match r.metric {
            Metric::ErrorRate => format!(
                "error rate {} % > {} % over {} requests to {}",
                trim_float(value * 100.0),
                trim_float(limit * 100.0),
                r.samples,
                self.plan.canary
            ),
            _ => format!(
                "p99 latency {} ms > {} ms{} over {} samples of {}",
                trim_float((value * 10.0).round() / 10.0),
                trim_float((limit * 10.0).round() / 10.0),
                r.basis
                    .as_ref()
                    .map(|b| format!(" ({b})"))
                    .unwrap_or_default(),
                r.samples,
                self.plan.canary
            ),
        };
        Trigger {
            rule: rule.into(),
            value: Some(value),
            threshold: Some(limit),
            samples: r.samples,
            detail,
        }
    }

    fn roll_back(&mut self, trigger: Trigger) -> Decision {
        self.weight = 0;
        self.at_gate = false;
        self.phase = Phase::RolledBack {
            trigger: trigger.clone(),
        };
        Decision::RolledBack(trigger)
    }

    fn promote(&mut self, how: &str) -> Decision {
        self.weight = 100;
        self.at_gate = false;
        self.phase = Phase::Promoted { how: how.into() };
        Decision::Promoted { how: how.into() }
    }

    /// Leaves stages whose hold is over and whose last check passed.
    fn progress(&mut self, now: Duration) -> Vec<Decision> {
        let mut decisions = Vec::new();
        while self.phase == Phase::Running {
            let stage = &self.plan.stages[self.stage];
            let held = now >= self.stage_started + stage.duration;
            let at_full_immediately = stage.duration.is_zero() && stage.percentage >= 100;
            let passed = self.last_verdict == Some(Verdict::Passed);
            if !(held && (passed || at_full_immediately)) {
                break;
            }
            if stage.manual_gate && !self.at_gate && !at_full_immediately {
                self.at_gate = true;
                let reason = format!(
                    "stage {} ({} %) is complete: waiting for a person to resume (manual gate)",
                    self.stage + 1,
                    stage.percentage
                );
                self.phase = Phase::Paused {
                    reason: reason.clone(),
                };
                decisions.push(Decision::Paused { reason });
                break;
            }
            decisions.push(self.advance(now));
        }
        decisions
    }

    /// Passes the current stage: next stage, or promotion after the last one.
    fn advance(&mut self, now: Duration) -> Decision {
        self.at_gate = false;
        if let Some(record) = self.stages.last_mut() {
            record.passed_at = Some(now.saturating_sub(self.started));
        }
        let full = self.plan.stages[self.stage].percentage >= 100;
        if self.stage + 1 >= self.plan.stages.len() || full {
            return self.promote("stages completed");
        }
        self.stage += 1;
        self.stage_started = now;
        self.weight = self.plan.stages[self.stage].percentage;
        self.stages.push(StageRecord {
            stage: self.stage + 1,
            percentage: self.weight,
            entered_at: now.saturating_sub(self.started),
            passed_at: None,
        });
        Decision::Advanced {
            stage: self.stage,
            percentage: self.weight,
        }
    }

    /// A person paused the rollout (traffic keeps its split; rollback triggers stay armed).
    pub fn pause(&mut self, _now: Duration) -> Vec<Decision> {
        if self.phase != Phase::Running {
            return Vec::new();
        }
        let reason = "paused by hand".to_owned();
        self.phase = Phase::Paused {
            reason: reason.clone(),
        };
        vec![Decision::Paused { reason }]
    }

    /// A person resumed the rollout (and opened a manual gate, if one was holding it).
    pub fn resume(&mut self, now: Duration) -> Vec<Decision> {
        if !matches!(self.phase, Phase::Paused { .. }) {
            return Vec::new();
        }
        self.phase = Phase::Running;
        let mut decisions = vec![Decision::Resumed];
        if self.at_gate {
            decisions.push(self.advance(now));
        }
        decisions.extend(self.progress(now));
        decisions
    }

    /// A person promoted the canary to 100 %.
    pub fn promote_by_hand(&mut self, now: Duration) -> Vec<Decision> {
        if self.phase.is_final() {
            return Vec::new();
        }
        if let Some(record) = self.stages.last_mut() {
            record
                .passed_at
                .get_or_insert(now.saturating_sub(self.started));
        }
        vec![self.promote("by hand")]
    }

    /// A person rolled the canary back to 0 %.
    pub fn roll_back_by_hand(&mut self, _now: Duration) -> Vec<Decision> {
        if self.phase.is_final() {
            return Vec::new();
        }
        vec![self.roll_back(Trigger {
            rule: "manual".into(),
            value: None,
            threshold: None,
            samples: 0,
            detail: "rolled back by hand".into(),
        })]
    }
}

fn describe_breach(r: &Reading) -> String {
    let value = r.value.unwrap_or(0.0);
    let threshold = r.threshold.unwrap_or(0.0);
    match r.metric {
        Metric::ErrorRate => format!(
            "error rate {} % > {} % ({} requests)",
            trim_float(value * 100.0),
            trim_float(threshold * 100.0),
            r.samples
        ),
        _ => format!(
            "p99 {} ms > {} ms{} ({} samples)",
            trim_float((value * 10.0).round() / 10.0),
            trim_float((threshold * 10.0).round() / 10.0),
            r.basis
                .as_ref()
                .map(|b| format!(" ({b})"))
                .unwrap_or_default(),
            r.samples
        ),
    }
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

/// A one-line account of a phase, for banners and logs.
pub fn describe(phase: &Phase, plan: &CanaryPlan, stage: usize) -> String {
    match phase {
        Phase::Running => format!(
            "stage {} of {} ({} %)",
            stage + 1,
            plan.stages.len(),
            plan.stages[stage].percentage
        ),
        Phase::Paused { reason } => format!("paused: {reason}"),
        Phase::RolledBack { trigger } => format!(
            "{} rolled back to 0 % ({}): {}",
            plan.canary, trigger.rule, trigger.detail
        ),
        Phase::Promoted { how } => format!("{} promoted to 100 % ({how})", plan.canary),
    }
}

/// `human` re-exported for the view.
pub fn human_duration(d: Duration) -> String {
    human(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::plan::{HealthCheck, Relative, RollbackRules, Stage};

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }
    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// The reference file's rules with small numbers: stages of 60, 120, 120 s and a 0-s 100 %
    /// one, checks every 10 s, 10 samples for rates and p99, probes at 600 a minute.
    fn plan() -> CanaryPlan {
        let metrics = vec![Metric::ErrorRate, Metric::P50Latency, Metric::P99Latency];
        let stage = |percentage, secs| Stage {
            percentage,
            duration: s(secs),
            metrics: metrics.clone(),
            manual_gate: false,
        };
        let mut plan = CanaryPlan::new(
            "legacy",
            "holysheep",
            vec![stage(10, 60), stage(30, 120), stage(50, 120), stage(100, 0)],
        );
        plan.interval = s(10);
        plan.min_samples_rate = 10;
        plan.min_samples_p99 = 10;
        plan.probe_requests_per_minute = Some(600.0);
        plan.health = Some(HealthCheck {
            max_error_rate: Some(0.05),
            p99_ms: Some(250.0),
        });
        plan.rollback = Some(RollbackRules {
            error_rate_above: Some(0.2),
            p99_above_ms: Some(300.0),
            p99_above_factor: None,
            consecutive_failures: Some(5),
        });
        plan
    }

    /// Feeds one second of traffic at `at`: `n` canary outcomes with `latency`, and as many
    /// baseline ones with `baseline`.
    fn second(c: &mut Canary, at: Duration, n: u32, latency: Duration, baseline: Duration) {
        for i in 0..n {
            let t = at + ms(u64::from(i) * 1000 / u64::from(n));
            c.on_outcome(Role::Canary, Outcome::ok(latency), t);
            c.on_outcome(Role::Baseline, Outcome::ok(baseline), t);
        }
    }

    /// Runs the canary from `from` to `to` seconds with steady traffic, collecting decisions.
    fn run(
        c: &mut Canary,
        from: u64,
        to: u64,
        latency: Duration,
        baseline: Duration,
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for t in from..to {
            second(c, s(t), 2, latency, baseline);
            decisions.extend(c.tick(s(t + 1)));
            if c.phase().is_final() {
                break;
            }
        }
        decisions
    }

    #[test]
    fn a_healthy_canary_goes_through_every_stage_and_is_promoted() {
        let mut c = Canary::new(plan(), s(0));
        assert_eq!(c.canary_weight(), 10);
        let decisions = run(&mut c, 0, 400, ms(180), ms(420));
        let advanced: Vec<u32> = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Advanced { percentage, .. } => Some(*percentage),
                _ => None,
            })
            .collect();
        assert_eq!(advanced, [30, 50, 100]);
        assert!(
            matches!(c.phase(), Phase::Promoted { .. }),
            "{:?}",
            c.phase()
        );
        assert_eq!(c.canary_weight(), 100);
        assert_eq!(c.stages().len(), 4);
        assert!(c.stages()[..3].iter().all(|s| s.passed_at.is_some()));
        // Stage 1 held 60 s, stages 2 and 3 120 s each: promoted at 300 s.
        assert_eq!(c.stages()[1].entered_at, s(60));
        assert_eq!(c.stages()[3].entered_at, s(300));
        assert_eq!(c.counts().failed, 0);
        assert_eq!(c.counts().inconclusive, 0);
    }

    #[test]
    fn a_p99_above_the_trigger_rolls_back_by_that_rule() {
        let mut c = Canary::new(plan(), s(0));
        let window_before = c.window();
        let decisions = run(&mut c, 0, 400, ms(320), ms(890));
        // At 0 % the window stays the stage's, not the hours a 1 % canary would need.
        assert_eq!(c.window(), window_before);
        let Phase::RolledBack { trigger } = c.phase() else {
            panic!("not rolled back: {:?}", c.phase());
        };
        assert_eq!(trigger.rule, "p99_latency_above_ms");
        assert_eq!(trigger.threshold, Some(300.0));
        assert_eq!(trigger.value, Some(320.0));
        assert_eq!(c.canary_weight(), 0);
        assert_eq!(c.weights(), [("legacy", 100), ("holysheep", 0)]);
        assert!(
            decisions
                .iter()
                .any(|d| matches!(d, Decision::RolledBack(_)))
        );
        assert_eq!(
            c.history().last().map(|h| h.verdict),
            Some(Verdict::RolledBack)
        );
        // The first check that could judge (10 samples × 1.2 at 1 a second: 12 s → 20 s).
        assert_eq!(c.history().next().map(|h| h.at), Some(s(20)));
    }

    #[test]
    fn relative_to_baseline_promotes_the_same_traffic() {
        let mut p = plan();
        p.relative = Some(Relative {
            factor: 1.0,
            rollback_factor: Some(1.2),
        });
        let mut c = Canary::new(p, s(0));
        run(&mut c, 0, 400, ms(320), ms(890));
        assert!(
            matches!(c.phase(), Phase::Promoted { .. }),
            "{:?}",
            c.phase()
        );
        let r = &c.history().next().unwrap().readings[2];
        assert_eq!(r.metric, Metric::P99Latency);
        assert_eq!(r.threshold, Some(890.0));
        assert_eq!(r.status, ReadingStatus::Ok);
        assert!(
            r.basis
                .as_deref()
                .unwrap_or("")
                .contains("legacy p99 890 ms × 1")
        );
    }

    #[test]
    fn failed_checks_halt_progress_count_and_roll_back_at_the_threshold() {
        let mut c = Canary::new(plan(), s(0));
        // p99 270 ms: over the health threshold (250), under the trigger (300).
        let decisions = run(&mut c, 0, 400, ms(270), ms(420));
        let verdicts: Vec<Verdict> = c.history().map(|h| h.verdict).collect();
        assert_eq!(
            verdicts,
            [Verdict::Failed, Verdict::Failed, Verdict::Failed]
        );
        let Phase::RolledBack { trigger } = c.phase() else {
            panic!("{:?}", c.phase())
        };
        assert_eq!(trigger.rule, "failed_checks_threshold");
        assert!(
            !decisions
                .iter()
                .any(|d| matches!(d, Decision::Advanced { .. }))
        );
        assert_eq!(c.failed_checks(), 3);
    }

    #[test]
    fn a_failed_check_holds_the_stage_until_a_check_passes() {
        let mut c = Canary::new(plan(), s(0));
        run(&mut c, 0, 55, ms(180), ms(420));
        // A bad spell of 10 s around the end of stage 1 (at 60 s).
        let mut decisions = run(&mut c, 55, 60, ms(280), ms(420));
        decisions.extend(run(&mut c, 60, 61, ms(180), ms(420)));
        assert_eq!(c.stage(), 0, "still in stage 1: the last check failed");
        assert_eq!(c.failed_checks(), 1);
        decisions.extend(run(&mut c, 61, 200, ms(180), ms(420)));
        assert!(c.stage() >= 1, "advanced once checks passed again");
        assert!(c.stages()[1].entered_at > s(60));
    }

    #[test]
    fn consecutive_failures_roll_back_at_once_and_a_success_resets_them() {
        let mut c = Canary::new(plan(), s(0));
        for i in 0..4 {
            assert!(
                c.on_outcome(Role::Canary, Outcome::failed(), s(i))
                    .is_empty()
            );
        }
        c.on_outcome(Role::Canary, Outcome::ok(ms(100)), s(4));
        assert_eq!(c.consecutive_failures(), 0);
        for i in 0..4 {
            c.on_outcome(Role::Canary, Outcome::failed(), s(5 + i));
        }
        // Baseline failures do not count.
        c.on_outcome(Role::Baseline, Outcome::failed(), s(9));
        let decisions = c.on_outcome(Role::Canary, Outcome::failed(), s(9));
        let [Decision::RolledBack(trigger)] = decisions.as_slice() else {
            panic!("{decisions:?}");
        };
        assert_eq!(trigger.rule, "consecutive_failures");
        assert_eq!(trigger.value, Some(5.0));
        assert_eq!(c.canary_weight(), 0);
        assert!(c.history().next().is_none(), "no check was needed");
    }

    #[test]
    fn too_few_samples_are_inconclusive_and_pause_by_default() {
        let mut c = Canary::new(plan(), s(0));
        // Traffic stops: no samples at all.
        let decisions = c.tick(s(25));
        assert!(decisions.contains(&Decision::Check(Verdict::Inconclusive)));
        assert!(
            matches!(c.phase(), Phase::Paused { reason } if reason.contains("0 of 10 samples"))
        );
        assert_eq!(c.counts().inconclusive, 1);
        assert_eq!(c.failed_checks(), 0, "inconclusive checks do not count");
        // Paused: traffic is back and checks pass, but nothing advances until resumed.
        run(&mut c, 25, 150, ms(180), ms(420));
        assert_eq!(c.stage(), 0);
        let decisions = c.resume(s(150));
        assert!(decisions.contains(&Decision::Resumed));
        assert!(
            decisions
                .iter()
                .any(|d| matches!(d, Decision::Advanced { percentage: 30, .. }))
        );
    }

    #[test]
    fn hold_neither_pauses_nor_counts() {
        let mut p = plan();
        p.on_inconclusive = OnInconclusive::Hold;
        let mut c = Canary::new(p, s(0));
        c.tick(s(40));
        assert_eq!(c.phase(), &Phase::Running);
        assert_eq!(c.counts().inconclusive, 3);
        run(&mut c, 40, 400, ms(180), ms(420));
        assert!(matches!(c.phase(), Phase::Promoted { .. }));
    }

    #[test]
    fn an_error_rate_trigger_needs_its_minimum_samples() {
        let mut c = Canary::new(plan(), s(0));
        for i in 0..3 {
            c.on_outcome(Role::Canary, Outcome::failed(), s(10) + ms(100 * i));
            c.on_outcome(Role::Canary, Outcome::ok(ms(100)), s(10) + ms(100 * i + 50));
        }
        let mut p = plan();
        p.on_inconclusive = OnInconclusive::Hold;
        c.plan = p;
        c.tick(s(20));
        assert_eq!(
            c.phase(),
            &Phase::Running,
            "50 % errors over 6 requests: too few"
        );
        for i in 0..20 {
            c.on_outcome(Role::Canary, Outcome::failed(), s(21) + ms(10 * i));
            c.on_outcome(Role::Canary, Outcome::ok(ms(100)), s(21) + ms(10 * i + 5));
        }
        c.tick(s(30));
        let Phase::RolledBack { trigger } = c.phase() else {
            panic!("{:?}", c.phase())
        };
        assert_eq!(trigger.rule, "error_rate_above");
    }

    #[test]
    fn manual_actions() {
        let mut c = Canary::new(plan(), s(0));
        assert_eq!(c.pause(s(1)).len(), 1);
        assert!(matches!(c.phase(), Phase::Paused { reason } if reason == "paused by hand"));
        assert_eq!(c.resume(s(2)), vec![Decision::Resumed]);
        let promoted = c.promote_by_hand(s(3));
        assert_eq!(
            promoted,
            vec![Decision::Promoted {
                how: "by hand".into()
            }]
        );
        assert_eq!(c.canary_weight(), 100);
        assert!(c.roll_back_by_hand(s(4)).is_empty(), "final");

        let mut c = Canary::new(plan(), s(0));
        c.roll_back_by_hand(s(5));
        assert!(matches!(c.phase(), Phase::RolledBack { trigger } if trigger.rule == "manual"));
        assert_eq!(c.canary_weight(), 0);
    }

    #[test]
    fn a_manual_gate_waits_for_a_person() {
        let mut p = plan();
        p.stages[0].manual_gate = true;
        let mut c = Canary::new(p, s(0));
        run(&mut c, 0, 100, ms(180), ms(420));
        assert!(matches!(c.phase(), Phase::Paused { reason } if reason.contains("manual gate")));
        assert_eq!(c.stage(), 0);
        let decisions = c.resume(s(100));
        assert!(
            decisions
                .iter()
                .any(|d| matches!(d, Decision::Advanced { percentage: 30, .. }))
        );
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile(&us, 0.99), Some(99.0));
        assert_eq!(quantile(&us, 0.5), Some(50.0));
        assert_eq!(quantile(&[5000], 0.99), Some(5.0));
        assert_eq!(quantile(&[], 0.99), None);
    }
}
