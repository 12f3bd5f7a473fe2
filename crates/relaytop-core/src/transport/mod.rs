//! The two transports every protocol rides: one WebSocket half (`websocket`, for relay/v1 and
//! openai-realtime) and one HTTP streaming half (`http_stream`, for openai-sse). A transport
//! owns the socket, the timers and the session's reactions; the protocol's codec
//! (`crate::protocol`) builds what goes out and decodes what comes in.

pub mod http_stream;
pub mod websocket;
