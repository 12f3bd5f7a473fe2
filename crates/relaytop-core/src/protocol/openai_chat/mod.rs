//! openai-sse, OpenAI Chat Completions streamed over HTTP Server-Sent Events: its wire shapes
//! (`wire`), its decoder (`decode`, shared by live sessions and replay), its error
//! classification (`policy`) and its codec for the shared HTTP streaming half (`codec`).

pub mod codec;
pub mod decode;
pub mod policy;
mod wire;

pub use crate::protocol::sse::{MAX_EVENT_BYTES, SseBuffer, SseError, SseEvent};
pub use wire::*;
