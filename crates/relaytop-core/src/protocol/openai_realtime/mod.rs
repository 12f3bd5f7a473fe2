//! openai-realtime, the OpenAI Realtime API (GA shape) over a WebSocket: its wire types
//! (`wire`) and its decoder (`decode`, shared by live sessions and replay).

pub mod codec;
pub mod decode;
mod wire;

pub use wire::*;
