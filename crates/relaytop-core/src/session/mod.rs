//! Sessions: one long-lived relay connection each, its events, and the pure timing logic.
//!
//! `spawn` (`handle`) starts a session's task for its protocol; the task owns its connection
//! and nothing else, reports through `SessionEvent`s and takes `SessionCommand`s. Every task
//! runs on `driver` (reporting, limits, offline commands, the reconnect loop) with one
//! transport (`crate::transport`) carrying the protocol's codec (`crate::protocol`): the
//! shared WebSocket half for relay/v1 and openai-realtime, the HTTP streaming half for
//! openai-sse. Backoff,
//! heartbeats, dead-peer detection and rate limits are pure state machines (`backoff`,
//! `heartbeat`, `ratelimit`) that take `now` and are tested without sleeping. Nothing here
//! knows about the screen.

pub mod backoff;
pub mod connect;
pub(crate) mod driver;
pub mod event;
pub mod handle;
pub mod heartbeat;
pub mod ratelimit;
pub mod response;
pub mod spec;
pub mod stream;
pub mod tap;
pub mod workload;

pub use event::{
    Completed, ErrorKind, EventKind, RateLimits, RequestId, SessionEvent, SessionId, SessionState,
    Tokens, Watch,
};
pub use handle::{
    HttpCheck, RunClock, SessionCommand, SessionHandle, http_check, http_classify, spawn,
};
pub use spec::{AuthStyle, BackoffPolicy, Protocol, SessionInfo, SessionSpec, Timing, Workload};
pub use stream::{EventReceiver, EventSender};
