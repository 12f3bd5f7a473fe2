//! The shared WebSocket half: the upgrade (`connect`), what a protocol tells it (`codec`), and
//! the serve loop with heartbeats, the response timeout, drops, close codes and the graceful
//! close (`serve`, with the endings in `ending`), written once for every WebSocket protocol.

pub mod codec;
pub(crate) mod ending;
pub(crate) mod serve;

pub use codec::{Frame, HoldBack, Liveness, Reaction, Request, WebSocketCodec};
