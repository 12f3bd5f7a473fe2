//! `relaytop replay RUN --against PROVIDER`: re-sends a recording's requests to another
//! provider and compares the two, recorded and now (latency, errors, drops, tokens, cost per
//! 1,000 calls and the monthly cost at the recorded volume).
//!
//! Three parts: reading the requests out of a recording (`read_recording`: every request's
//! messages and `max_tokens`, from the frames the sessions sent, in recorded order), the
//! pacing (`Pacer`, a pure state machine over `now`: the recorded spacing, or as fast as the
//! target's rate limits allow, holding back after a 429), and the run (`run`: a pool of
//! on-demand sessions against the target, as many as the recording had requests in flight at
//! once) whose `Report` is set beside the recording's in a `Comparison`.
//!
//! Choices (docs/REPLAY-AGAINST.md): the whole recording is compared with the target, every
//! recorded provider together; requests go out with the target's model; a model the target
//! does not price is counted at $0 and marked; failed requests are not retried.
//!
//! The parts: `read.rs` (the requests out of a recording), `pacing.rs` (`Pacer`, `schedule`),
//! `run.rs` (the pool of sessions against the target, on `relaytop_core::run::Run`) and
//! `compare.rs` (`Comparison`: the two reports side by side, as JSON and text).

mod compare;
mod pacing;
mod read;
mod run;

pub use compare::{Change, Comparison, RecordingSummary, Side, TargetSummary};
pub use pacing::{Pace, Pacer, Pacing, schedule};
pub use read::{Recorded, RecordedRequest, read_recording};
pub use run::{AgainstOptions, NowRun, run, target};

/// Requests read from one recording, at most (the rest are left out, and the comparison says
/// so).
pub const MAX_REQUESTS: usize = 200_000;
/// Characters of messages kept over all requests, at most.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Connections the pool opens, at most (the target's `max_connections` may allow fewer).
pub const MAX_POOL: u32 = 256;
/// Hours in the month the projection uses (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;
