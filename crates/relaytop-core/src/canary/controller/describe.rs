//! Phases and durations in words, for banners and logs.

use std::time::Duration;

use crate::canary::plan::{CanaryPlan, human};

use super::verdicts::Phase;

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
