//! The `Canary` state machine: its state, the weights and windows it reports, request
//! outcomes as they arrive (`on_outcome`) and the clock's tick (`tick`).

use std::collections::VecDeque;
use std::time::Duration;

use crate::canary::plan::{CanaryPlan, Metric, Role};

use super::outcome::{Outcome, OutcomeCounts, Sample, Samples};
use super::verdicts::{CheckCounts, CheckRecord, Decision, Phase, StageRecord, Trigger, Verdict};

/// Most samples kept per provider (older ones beyond every window are dropped anyway).
pub const MAX_SAMPLES: usize = 200_000;
/// Most checks kept in the history (the counts cover all of them).
pub const MAX_HISTORY: usize = 1_000;

/// The canary.
#[derive(Clone, Debug)]
pub struct Canary {
    pub(super) plan: CanaryPlan,
    pub(super) phase: Phase,
    /// The stage under way (from 0).
    pub(super) stage: usize,
    pub(super) stage_started: Duration,
    pub(super) started: Duration,
    /// The canary's share now, in percent.
    pub(super) weight: u32,
    pub(super) next_check: Duration,
    pub(super) failed_checks: u32,
    pub(super) consecutive_failures: u32,
    pub(super) samples: [Samples; 2],
    /// The baseline's last p99 with enough samples (the reference of relative checks when
    /// the baseline has too little traffic left, at 100 %).
    pub(super) baseline_p99_ref: Option<f64>,
    pub(super) last_verdict: Option<Verdict>,
    pub(super) history: VecDeque<CheckRecord>,
    pub(super) counts: CheckCounts,
    pub(super) outcomes: [OutcomeCounts; 2],
    pub(super) stages: Vec<StageRecord>,
    /// A manual gate is holding the rollout at the end of the stage.
    pub(super) at_gate: bool,
    /// How long samples are kept.
    pub(super) keep: Duration,
}

pub(super) fn index(role: Role) -> usize {
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
}
