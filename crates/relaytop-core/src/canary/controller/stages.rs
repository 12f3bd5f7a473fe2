//! Stage timing, promotion and rollback, and what a person may do: pause, resume, promote,
//! roll back.

use std::time::Duration;

use super::canary::Canary;
use super::verdicts::{Decision, Phase, StageRecord, Trigger, Verdict};

impl Canary {
    pub(super) fn roll_back(&mut self, trigger: Trigger) -> Decision {
        self.weight = 0;
        self.at_gate = false;
        self.phase = Phase::RolledBack {
            trigger: trigger.clone(),
        };
        Decision::RolledBack(trigger)
    }

    pub(super) fn promote(&mut self, how: &str) -> Decision {
        self.weight = 100;
        self.at_gate = false;
        self.phase = Phase::Promoted { how: how.into() };
        Decision::Promoted { how: how.into() }
    }

    /// Leaves stages whose hold is over and whose last check passed.
    pub(super) fn progress(&mut self, now: Duration) -> Vec<Decision> {
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
    pub(super) fn advance(&mut self, now: Duration) -> Decision {
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
