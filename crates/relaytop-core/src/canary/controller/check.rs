//! One health check: the readings of the canary's metrics against their thresholds over the
//! window, rollback triggers, inconclusive and failed checks.

use std::time::Duration;

use crate::canary::plan::{Metric, OnInconclusive, Role, trim_float};

use super::canary::{Canary, MAX_HISTORY, index};
use super::outcome::WindowStats;
use super::verdicts::{CheckRecord, Decision, Phase, Reading, ReadingStatus, Trigger, Verdict};

impl Canary {
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

    pub(super) fn baseline_reference(&self, baseline: &WindowStats) -> Option<(f64, bool)> {
        match baseline.p99_ms {
            Some(p99) if baseline.latency_n >= self.plan.min_samples_p99 => Some((p99, true)),
            _ => self.baseline_p99_ref.map(|p| (p, false)),
        }
    }

    pub(super) fn readings_of(
        &self,
        c: &WindowStats,
        baseline_p99: Option<(f64, bool)>,
    ) -> Vec<Reading> {
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
    pub(super) fn check(&mut self, now: Duration) -> Vec<Decision> {
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

    pub(super) fn trigger_for(&self, r: &Reading) -> Trigger {
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
