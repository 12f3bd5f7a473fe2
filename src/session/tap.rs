//! The wire tap: how a session shows a recorder every frame and every event it reports.
//!
//! The session task calls its tap synchronously (no await) for each frame it sends or
//! receives and for each event it reports itself; a recorder behind the tap must only buffer
//! (never block on disk). Events the decoder derives from frames are not tapped: a replay
//! derives them again from the recorded frames with the same `Decoder`.

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
    Text(&'a str),
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
