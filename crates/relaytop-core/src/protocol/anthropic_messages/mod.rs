//! anthropic-messages: Anthropic Messages streamed over HTTP Server-Sent Events: its wire shapes
//! (`wire`), its format on the shared stream decoder (`decode`, live and replay), its error
//! classification and rate-limit headers (`policy`) and its codec for the shared HTTP
//! streaming half (`codec`).

pub mod codec;
pub mod decode;
pub mod policy;
pub mod wire;

pub use wire::*;
