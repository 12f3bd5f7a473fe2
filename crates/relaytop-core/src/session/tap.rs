//! The wire tap: how a session shows a recorder every frame and every event it reports.
//!
//! The session task calls its tap synchronously (no await) for each frame it sends or
//! receives and for each event it reports itself; a recorder behind the tap must only buffer
//! (never block on disk). Events the decoder derives from frames are not tapped: a replay
//! derives them again from the recorded frames with the same decoder. So everything a decoder
//! consumes goes through the tap (a WebSocket text frame, an SSE event with its name, an SSE
//! event refused, the end of an SSE body), and everything the session decides (a wait, a
//! cancelled response, a marker) it reports itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::session::EventKind;

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to relay (`>` in a recording).
    ToRelay,
    /// Relay to client (`<`).
    FromRelay,
}

/// A frame, or a connection-level fact seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire<'a> {
    /// A text frame (an SSE event without an `event:` name: its data).
    Text(&'a str),
    /// An SSE event with an `event:` name: the name and the data.
    SseEvent {
        event: &'a str,
        data: &'a str,
    },
    /// An SSE event the framing refused (over 1 MiB, not UTF-8), and why; its bytes are gone.
    SseRefused {
        reason: &'a str,
    },
    /// The end of a streamed HTTP response body.
    BodyEnd,
    Binary(&'a [u8]),
    /// The upgrade's answer.
    Upgrade {
        status: u16,
    },
    /// A close frame (or 1006 for a connection that just ended).
    Close {
        code: u16,
        reason: &'a str,
    },
}

/// Something that watches a session's frames and events (the recorder).
pub trait Tap: Send + Sync + 'static {
    /// A frame went by at `at` (time since the run started).
    fn wire(&self, at: Duration, direction: Direction, wire: Wire<'_>);
    /// The session reported `kind` at `at` (only events not derived from frames).
    fn event(&self, at: Duration, kind: &EventKind);
}

/// A shared tap, as a session spec carries it.
#[derive(Clone)]
pub struct TapHandle(pub Arc<dyn Tap>);

impl fmt::Debug for TapHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TapHandle")
    }
}
