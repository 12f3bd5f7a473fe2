//! The shared HTTP streaming half: one request, one streamed answer, over the pooled reqwest
//! client. What a protocol tells it is `codec`; the session's loop, its check ("connecting"),
//! its retries and its drops are `serve`.

pub mod codec;
pub mod retry;
pub(crate) mod serve;

pub use codec::{Action, HttpFailure, HttpStreamCodec, SseInbound, StreamRequest};
