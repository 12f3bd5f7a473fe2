//! The wire tap: how a session shows a recorder every frame and every event it reports.
//!
//! The session task calls its tap synchronously (no await) for each frame it sends or
//! receives and for each event it reports itself; a recorder behind the tap must only buffer
//! (never block on disk). Events the decoder derives from frames are not tapped: a replay
//! derives them again from the recorded frames with the same decoder. So everything a decoder
//! consumes goes through the tap (a WebSocket text frame, an SSE event with its name, an SSE
//! event refused, the end of an SSE body), and everything the session decides (a wait, a
//! cancelled response, a marker) it reports itself.
//!
//! A fast stream's text frames and SSE events are not shown one by one: the session stages
//! them (`Staged`) and shows them to the tap together (`Tap::staged`) with its events'
//! batch, or before anything else it shows the tap, so the tap sees everything in order, and a
//! recorder takes its lock once a batch instead of once a frame. (What others show a tap
//! directly, the canary's markers through `Supervisor::tap`, may come before frames the
//! session staged a moment earlier: at most one batch, the recorder keeping times in order.)

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
    /// Frames the session staged, in the order they went by (as many calls to `wire`).
    fn staged(&self, frames: &Staged) {
        for (at, direction, wire) in frames.iter() {
            self.wire(at, direction, wire);
        }
    }
}

/// Text frames and SSE events a session has staged for its tap: their bytes side by side in
/// one buffer, so staging a frame allocates nothing once the buffer has grown.
#[derive(Debug, Default)]
pub struct Staged {
    bytes: String,
    frames: Vec<StagedFrame>,
    /// The last batch's size (bytes, frames): what the next one reserves as it starts.
    last: (u32, u32),
}

#[derive(Clone, Copy, Debug)]
struct StagedFrame {
    at: Duration,
    direction: Direction,
    /// The SSE event name's length (its bytes come first), or `None` for a text frame.
    event_len: Option<u32>,
    /// Where the frame's bytes end in `Staged::bytes`.
    end: u32,
}

impl Staged {
    /// Staged frames past this many bytes or frames are shown to the tap at once (a session
    /// flushes far more often: this bounds what a stream of frames that report no events
    /// could stage).
    pub const MAX_BYTES: usize = 256 << 10;
    pub const MAX_FRAMES: usize = 1024;

    /// Stages `wire` if it is a text frame or an SSE event (`true`); anything else is left
    /// to the caller (`false`).
    pub fn stage(&mut self, at: Duration, direction: Direction, wire: Wire<'_>) -> bool {
        // A text frame is its text; an SSE event its name (`event_len` bytes), then its data.
        let (name, text, event_len) = match wire {
            Wire::Text(text) => ("", text, None),
            Wire::SseEvent { event, data } => (
                event,
                data,
                Some(u32::try_from(event.len()).unwrap_or(u32::MAX)),
            ),
            _ => return false,
        };
        if self.frames.capacity() == 0 {
            self.bytes.reserve(self.last.0 as usize);
            self.frames.reserve(self.last.1 as usize);
        }
        self.bytes.push_str(name);
        self.bytes.push_str(text);
        // Frames are far smaller than 4 GiB (`connect::MAX_MESSAGE_BYTES`) and the buffer is
        // shown to the tap past `MAX_BYTES`, so its length fits.
        let end = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.frames.push(StagedFrame {
            at,
            direction,
            event_len,
            end,
        });
        true
    }

    /// Whether the staged frames should be shown to the tap now, whatever comes next.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= Self::MAX_BYTES || self.frames.len() >= Self::MAX_FRAMES
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// The staged frames, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Duration, Direction, Wire<'_>)> + '_ {
        let mut start = 0usize;
        self.frames.iter().map(move |f| {
            let end = (f.end as usize).min(self.bytes.len());
            let bytes = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            let wire = match f.event_len {
                None => Wire::Text(bytes),
                Some(len) => {
                    let (event, data) = split_at_char(bytes, len as usize);
                    Wire::SseEvent { event, data }
                }
            };
            (f.at, f.direction, wire)
        })
    }

    /// Empties the stage after its frames were shown, letting its buffers go (as the outbox
    /// goes with each batch): a session between responses holds none (10,000 probes:
    /// docs/PERFORMANCE.md). The next batch reserves the size of this one as it starts, so a
    /// fast stream allocates once a batch.
    pub fn clear(&mut self) {
        self.last = (
            u32::try_from(self.bytes.len()).unwrap_or(u32::MAX),
            u32::try_from(self.frames.len()).unwrap_or(u32::MAX),
        );
        self.bytes = String::new();
        self.frames = Vec::new();
    }
}

/// `text` split at `at` (a character boundary when the SSE event name was text, as it is).
fn split_at_char(text: &str, at: usize) -> (&str, &str) {
    if text.is_char_boundary(at) {
        text.split_at(at)
    } else {
        ("", text)
    }
}

/// A shared tap, as a session spec carries it.
#[derive(Clone)]
pub struct TapHandle(pub Arc<dyn Tap>);

impl fmt::Debug for TapHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TapHandle")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_frames_come_back_in_order_and_anything_else_is_not_staged() {
        let mut staged = Staged::default();
        let ms = Duration::from_millis;
        assert!(staged.stage(ms(1), Direction::ToRelay, Wire::Text(r#"{"a":1}"#)));
        assert!(staged.stage(
            ms(2),
            Direction::FromRelay,
            Wire::SseEvent {
                event: "délta",
                data: "{}"
            }
        ));
        assert!(staged.stage(ms(3), Direction::FromRelay, Wire::Text("")));
        assert!(staged.stage(
            ms(4),
            Direction::FromRelay,
            Wire::SseEvent {
                event: "",
                data: "x"
            }
        ));
        assert!(!staged.stage(ms(5), Direction::FromRelay, Wire::BodyEnd));
        assert!(!staged.stage(ms(5), Direction::FromRelay, Wire::Upgrade { status: 200 }));
        let got: Vec<_> = staged.iter().collect();
        assert_eq!(
            got,
            vec![
                (ms(1), Direction::ToRelay, Wire::Text(r#"{"a":1}"#)),
                (
                    ms(2),
                    Direction::FromRelay,
                    Wire::SseEvent {
                        event: "délta",
                        data: "{}"
                    }
                ),
                (ms(3), Direction::FromRelay, Wire::Text("")),
                (
                    ms(4),
                    Direction::FromRelay,
                    Wire::SseEvent {
                        event: "",
                        data: "x"
                    }
                ),
            ]
        );
        assert_eq!(staged.len(), 4);
        staged.clear();
        assert!(staged.is_empty());
        assert_eq!(staged.iter().count(), 0);
    }

    #[test]
    fn a_shown_stage_holds_no_buffers_and_the_next_batch_reserves_the_last_ones_size() {
        let mut staged = Staged::default();
        for _ in 0..100 {
            staged.stage(Duration::ZERO, Direction::FromRelay, Wire::Text("a chunk"));
        }
        staged.clear();
        assert!(staged.is_empty());
        assert_eq!(staged.bytes.capacity() + staged.frames.capacity(), 0);
        staged.stage(Duration::ZERO, Direction::FromRelay, Wire::Text("a chunk"));
        assert!(staged.bytes.capacity() >= 700 && staged.frames.capacity() >= 100);
        assert!(!staged.stage(Duration::ZERO, Direction::FromRelay, Wire::BodyEnd));
    }

    #[test]
    fn a_stage_is_full_past_its_bounds() {
        let mut staged = Staged::default();
        let big = "x".repeat(Staged::MAX_BYTES / 4);
        for _ in 0..3 {
            staged.stage(Duration::ZERO, Direction::FromRelay, Wire::Text(&big));
            assert!(!staged.is_full());
        }
        staged.stage(Duration::ZERO, Direction::FromRelay, Wire::Text(&big));
        assert!(staged.is_full());
        let mut many = Staged::default();
        for i in 0..Staged::MAX_FRAMES {
            assert!(!many.is_full(), "{i}");
            many.stage(Duration::ZERO, Direction::FromRelay, Wire::Text("t"));
        }
        assert!(many.is_full());
    }
}
