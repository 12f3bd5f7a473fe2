//! Wire protocols relaytop speaks: frame types and their parsers, with no I/O.
//!
//! Each protocol module (relay/v1, openai-sse, openai-realtime) turns wire text into typed
//! frames and back. Sockets, timers and session state live in `session`; this module must
//! stay free of them so that the simulator, replay and fuzzers use exactly the same parsing
//! code as live sessions.

pub mod openai_realtime;
pub mod openai_sse;
pub mod relay_v1;
