//! relay/v1 (spec/PROTOCOL.md): its wire types and parsers (`wire`), its decoder (`decode`,
//! shared by live sessions and replay) and its codec for the shared WebSocket transport.

pub mod codec;
pub mod decode;
mod wire;

pub use wire::*;
