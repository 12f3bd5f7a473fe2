//! openai-sse, OpenAI Chat Completions streamed over HTTP Server-Sent Events: its wire shapes
//! (`wire`), its decoder (`decode`, shared by live sessions and replay) and its error and
//! retry policy (`policy`).

pub mod decode;
pub mod policy;
mod wire;

pub use wire::*;
