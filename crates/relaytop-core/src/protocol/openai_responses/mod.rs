//! openai-responses: OpenAI Responses streamed over HTTP Server-Sent Events: its wire shapes
//! (`wire`), its format on the shared stream decoder (`decode`, live and replay) and its codec
//! for the shared HTTP streaming half (`codec`).

pub mod codec;
pub mod decode;
pub mod wire;

pub use wire::*;
