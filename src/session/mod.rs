//! Sessions: one long-lived relay connection each, its events, and the pure timing logic.
//!
//! The session task (`task`) owns its socket and nothing else; it reports through
//! `SessionEvent`s and takes `SessionCommand`s. Backoff, heartbeats and dead-peer detection
//! are pure state machines (`backoff`, `heartbeat`) that take `now` and are tested without
//! sleeping. Nothing here knows about the screen. relay/v1 sessions run in `task`, openai-sse
//! sessions in `sse`, openai-realtime sessions in `realtime` (the last two share `driver`).

pub mod backoff;
pub mod connect;
pub mod decode;
pub(crate) mod driver;
pub mod event;
pub mod heartbeat;
pub mod ratelimit;
pub mod realtime;
pub mod response;
pub mod spec;
pub mod sse;
pub mod tap;
pub mod task;
pub mod workload;

pub use event::{ErrorKind, EventKind, RequestId, SessionEvent, SessionId, SessionState, Tokens};
pub use spec::{BackoffPolicy, Protocol, SessionInfo, SessionSpec, Timing, Workload};
pub use task::{RunClock, SessionCommand, SessionHandle};
