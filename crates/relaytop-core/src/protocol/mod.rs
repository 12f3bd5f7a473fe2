//! Wire protocols relaytop speaks, one codec each: wire types and parsers, the decoder that
//! turns the incoming stream into session events (pure: the same code live and in replay),
//! and what the protocol needs from its transport. No I/O.
//!
//! relay/v1 (`relay_v1`) and openai-realtime (`openai_realtime`) ride the shared WebSocket
//! transport; openai-sse (`openai_chat`), anthropic-messages, openai-responses and gemini
//! ride the HTTP stream transport (`crate::transport`), each a format on the shared stream
//! decoder (`stream_decoder`). The simulator, replay and fuzzers use exactly the same parsing
//! code as live sessions.

pub mod anthropic_messages;
pub mod endpoint;
pub mod gemini;
pub mod lenient;
pub mod openai_chat;
pub mod openai_realtime;
pub mod openai_responses;
pub mod relay_v1;
pub mod sse;
pub mod stream_decoder;
