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

mod canary;
mod check;
mod describe;
mod outcome;
mod stages;
mod verdicts;

pub use canary::{Canary, MAX_HISTORY, MAX_SAMPLES};
pub use describe::{describe, human_duration};
pub use outcome::{Outcome, OutcomeCounts, WindowStats};
pub use verdicts::{
    CheckCounts, CheckRecord, Decision, Phase, Reading, ReadingStatus, StageRecord, Trigger,
    Verdict, secs,
};

#[cfg(test)]
mod tests;
