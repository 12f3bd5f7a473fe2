//! The stream pane's text: a bounded ring of lines per session (streamed text, request
//! boundaries, errors, connection changes), the fold that fills it from session events, and
//! word wrapping of just the lines on screen.
//!
//! Lines are numbered from the session's first (`seq`), so a view scrolled back stays on the
//! same text while new lines arrive and old ones fall out of the ring. Wrapping happens at
//! draw time, for visible lines only, so a 10,000-line ring costs nothing per frame.

use std::collections::VecDeque;

use unicode_width::UnicodeWidthChar;

use crate::format;
use relaytop_core::session::{Completed, EventKind, RequestId, SessionEvent, SessionState};

/// Longest line kept, in bytes; longer streamed text continues on a new line.
pub const MAX_LINE_BYTES: usize = 2_000;

/// What a line of the stream pane is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A request was sent: the boundary before its text.
    Request,
    /// Streamed text (or a transcript).
    Text,
    /// A response completed.
    Done,
    /// A request failed, an error was reported, or the session stopped.
    Failed,
    /// A connection came up, or was closed on request.
    Connection,
    /// A connection dropped.
    Dropped,
    /// Backoff, rate limits, missed heartbeats, odd frames, markers.
    Notice,
}

/// One line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamLine {
    pub kind: LineKind,
    /// When the line began, microseconds since the run started.
    pub at_us: u64,
    /// The request the line belongs to (0: none).
    pub request: RequestId,
    pub text: String,
}

/// A session's lines: the newest `capacity` of them.
#[derive(Clone, Debug)]
pub struct StreamRing {
    lines: VecDeque<StreamLine>,
    capacity: usize,
    /// Lines ever pushed; the newest line's `seq` is `pushed - 1`.
    pushed: u64,
    /// The request whose text the last line is still receiving.
    open_text: Option<RequestId>,
    /// The request streaming and when its last chunk came (to mark stalls).
    last_chunk: Option<(RequestId, u64)>,
}

/// A gap between two chunks at least this long is marked in the pane.
pub const STALL_MARK_US: u64 = 2_000_000;

impl StreamRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            pushed: 0,
            open_text: None,
            last_chunk: None,
        }
    }

    /// How many lines it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps `capacity` lines from now on (dropping the oldest when shrinking).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.lines.len() > self.capacity {
            self.lines.pop_front();
        }
        self.lines
            .shrink_to(self.capacity.min(1024).max(self.lines.len()));
    }

    /// Lines held.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// `seq` of the oldest line held (equal to `end_seq` when empty).
    pub fn first_seq(&self) -> u64 {
        self.pushed - self.lines.len() as u64
    }

    /// One past the newest line's `seq`.
    pub fn end_seq(&self) -> u64 {
        self.pushed
    }

    /// The line numbered `seq`, if still held.
    pub fn get(&self, seq: u64) -> Option<&StreamLine> {
        let index = seq.checked_sub(self.first_seq())?;
        self.lines.get(usize::try_from(index).ok()?)
    }

    /// Adds a line.
    pub fn push(&mut self, line: StreamLine) {
        self.open_text = None;
        self.push_raw(line);
    }

    fn push_raw(&mut self, line: StreamLine) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        self.pushed += 1;
    }

    /// Adds streamed text of `request`: continues the open line, breaks at newlines and at
    /// `MAX_LINE_BYTES`.
    pub fn append_text(&mut self, request: RequestId, at_us: u64, text: &str) {
        for (i, piece) in text.split('\n').enumerate() {
            let continues = i == 0 && self.open_text == Some(request);
            if !continues {
                self.push_raw(StreamLine {
                    kind: LineKind::Text,
                    at_us,
                    request,
                    text: String::new(),
                });
            }
            self.open_text = Some(request);
            let mut rest = piece;
            while !rest.is_empty() {
                let Some(line) = self.lines.back_mut() else {
                    break;
                };
                let room = MAX_LINE_BYTES.saturating_sub(line.text.len());
                if room == 0 {
                    self.push_raw(StreamLine {
                        kind: LineKind::Text,
                        at_us,
                        request,
                        text: String::new(),
                    });
                    continue;
                }
                let mut cut = room.min(rest.len());
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                if cut == 0 {
                    // A character wider than the room left: start a new line for it.
                    self.push_raw(StreamLine {
                        kind: LineKind::Text,
                        at_us,
                        request,
                        text: String::new(),
                    });
                    continue;
                }
                line.text.push_str(&rest[..cut]);
                rest = &rest[cut..];
            }
        }
    }

    /// Folds one event of this ring's session.
    pub fn fold(&mut self, event: &SessionEvent) {
        let at_us = event.at_us;
        let (kind, request, text) = match &event.kind {
            EventKind::Chunk { request, text } => {
                if let Some((last_request, last_at)) = self.last_chunk
                    && last_request == *request
                    && at_us.saturating_sub(last_at) >= STALL_MARK_US
                {
                    self.push(StreamLine {
                        kind: LineKind::Notice,
                        at_us,
                        request: *request,
                        text: format!(
                            "⏸ stalled {} before the next token",
                            format::latency(at_us - last_at)
                        ),
                    });
                }
                self.last_chunk = Some((*request, at_us));
                self.append_text(*request, at_us, text);
                return;
            }
            EventKind::Transcript {
                request,
                text,
                is_final: true,
            } => {
                self.append_text(*request, at_us, text);
                return;
            }
            EventKind::RequestSent { request, model, .. } => (
                LineKind::Request,
                *request,
                format!("request #{request} · {model}"),
            ),
            EventKind::Done(done) => {
                let Completed {
                    request,
                    ttft_us,
                    answer_us,
                    total_us,
                    tokens,
                    finish_reason,
                    cut,
                    ..
                } = &**done;
                self.last_chunk = None;
                let mut text = format!(
                    "{} #{request} · {}{} tokens out",
                    if cut.is_some() { "cut" } else { "done" },
                    if tokens.estimated { "~" } else { "" },
                    tokens.output
                );
                if let Some(ttft) = ttft_us {
                    text.push_str(&format!(" · ttft {}", format::latency(*ttft)));
                    if tokens.output >= 2 && *total_us > *ttft {
                        let tpot = (total_us - ttft) / (tokens.output - 1);
                        text.push_str(&format!(
                            " · {:.0} tok/s",
                            relaytop_core::metrics::tokens_per_second(tpot)
                        ));
                    }
                }
                if let Some(answer) = answer_us {
                    text.push_str(&format!(" · answer {}", format::latency(*answer)));
                }
                text.push_str(&format!(" · total {}", format::latency(*total_us)));
                if let Some(reason) = finish_reason
                    .as_deref()
                    .filter(|r| !relaytop_core::session::response::is_ordinary_finish(r))
                {
                    text.push_str(&format!(" · {reason}"));
                }
                if let Some(cut) = cut {
                    text.push_str(&format!(" · {cut}"));
                    (LineKind::Failed, *request, text)
                } else {
                    (LineKind::Done, *request, text)
                }
            }
            EventKind::RequestFailed {
                request,
                kind,
                reason,
            } => (
                LineKind::Failed,
                *request,
                format!("request #{request} failed · {}: {reason}", kind.label()),
            ),
            EventKind::Error { kind, message, .. } => {
                (LineKind::Failed, 0, format!("{}: {message}", kind.label()))
            }
            EventKind::Connected {
                attempt,
                handshake_us,
            } => (
                LineKind::Connection,
                0,
                format!(
                    "connected · attempt {attempt} · handshake {}",
                    format::latency(*handshake_us)
                ),
            ),
            EventKind::Closed {
                code,
                reason,
                requested,
            } => {
                let reason = if reason.is_empty() {
                    crate::log::close_meaning(*code)
                } else {
                    reason.as_str()
                };
                let text = format!("{code} {reason}");
                if *requested {
                    (
                        LineKind::Connection,
                        0,
                        format!("closed · {}", text.trim_end()),
                    )
                } else {
                    (
                        LineKind::Dropped,
                        0,
                        format!("dropped · {}", text.trim_end()),
                    )
                }
            }
            EventKind::BackingOff {
                attempt,
                max_attempts,
                delay_ms,
                cause,
            } => {
                let next = format::duration_short(delay_ms.saturating_mul(1000));
                let text = if *max_attempts == 0 {
                    format!("refused · next check in {next} · {cause}")
                } else if attempt > max_attempts {
                    format!("down · next look in {next} · {cause}")
                } else {
                    format!("backing off {attempt}/{max_attempts} · next try in {next} · {cause}")
                };
                (LineKind::Notice, 0, text)
            }
            EventKind::RateLimited { wait_ms, cause } => (
                LineKind::Notice,
                0,
                format!(
                    "rate limited · waiting {} · {cause}",
                    format::duration_short(wait_ms.saturating_mul(1000))
                ),
            ),
            EventKind::HeartbeatMissed { waited_us } => (
                LineKind::Notice,
                0,
                format!(
                    "heartbeat missed · no pong for {}",
                    format::duration_short(*waited_us)
                ),
            ),
            EventKind::Malformed { reason } => {
                (LineKind::Notice, 0, format!("malformed frame · {reason}"))
            }
            EventKind::UnknownFrame { frame_type } => (
                LineKind::Notice,
                0,
                format!("unknown frame type `{frame_type}`"),
            ),
            EventKind::Marker { label } => (LineKind::Notice, 0, label.clone()),
            // The relay's explanation of a failed request: its class, its fix, and the
            // request id to quote to the station's support.
            EventKind::RelayError(error) => {
                let mut text = format!("relay: {}", error.class.label());
                if let Some(model) = &error.model {
                    text.push_str(&format!(" ({model})"));
                }
                if let Some(id) = &error.relay_request_id {
                    text.push_str(&format!(" · request id {id}"));
                }
                text.push_str(&format!(" · {}", error.class.fix()));
                (LineKind::Failed, error.request.unwrap_or(0), text)
            }
            EventKind::State(SessionState::Stopped { reason }) => {
                (LineKind::Failed, 0, format!("stopped · {reason}"))
            }
            // Pongs, first tokens, other states and whatever else sessions report: not text.
            _ => return,
        };
        self.push(StreamLine {
            kind,
            at_us,
            request,
            text,
        });
    }
}

/// Splits `text` into rows of at most `width` columns, breaking after spaces where it can.
/// Returns byte ranges into `text`; an empty text is one empty row.
pub fn wrap(text: &str, width: usize) -> Vec<(usize, usize)> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut start = 0;
    let mut col = 0;
    // The byte just after the last space in the current row, and the column there.
    let mut last_break: Option<(usize, usize)> = None;
    for (i, c) in text.char_indices() {
        let w = c.width().unwrap_or(0);
        if col + w > width && col > 0 {
            match last_break {
                Some((at, at_col)) if at > start => {
                    rows.push((start, at));
                    start = at;
                    col -= at_col;
                }
                _ => {
                    rows.push((start, i));
                    start = i;
                    col = 0;
                }
            }
            last_break = None;
        }
        col += w;
        if c == ' ' {
            last_break = Some((i + 1, col));
        }
    }
    rows.push((start, text.len()));
    rows
}

/// How many rows `text` takes at `width`.
pub fn wrapped_height(text: &str, width: usize) -> usize {
    wrap(text, width).len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaytop_core::session::{Tokens, event::ErrorKind};

    fn ev(at_us: u64, kind: EventKind) -> SessionEvent {
        SessionEvent {
            session: 0,
            at_us,
            kind,
        }
    }

    #[test]
    fn chunks_join_into_a_line_and_newlines_break_it() {
        let mut ring = StreamRing::new(100);
        ring.fold(&ev(
            0,
            EventKind::RequestSent {
                request: 1,
                model: "gpt-4.1".into(),
                prompt_tokens_estimate: 5,
            },
        ));
        for t in ["Hello", " world", "\nsecond", " line"] {
            ring.fold(&ev(
                1,
                EventKind::Chunk {
                    request: 1,
                    text: t.into(),
                },
            ));
        }
        ring.fold(&ev(
            2,
            EventKind::Done(Box::new(Completed {
                request: 1,
                model: String::new(),
                ttft_us: Some(420_000),
                answer_us: None,
                total_us: 540_000,
                tokens: Tokens {
                    input: 5,
                    output: 4,
                    cached_input: 0,
                    cache_write_input: 0,
                    reasoning_output: 0,
                    estimated: false,
                },
                reported_cost_usd: None,
                finish_reason: Some("stop".into()),
                chunks: 4,
                bytes: 24,
                cut: None,
                text_tokens: None,
            })),
        ));
        let texts: Vec<&str> = (ring.first_seq()..ring.end_seq())
            .map(|s| ring.get(s).unwrap().text.as_str())
            .collect();
        assert_eq!(
            texts,
            [
                "request #1 · gpt-4.1",
                "Hello world",
                "second line",
                "done #1 · 4 tokens out · ttft 420 ms · 25 tok/s · total 540 ms"
            ]
        );
    }

    #[test]
    fn the_ring_is_bounded_and_keeps_numbering() {
        let mut ring = StreamRing::new(3);
        for i in 0..10u64 {
            ring.fold(&ev(
                i,
                EventKind::Error {
                    kind: ErrorKind::Network,
                    message: format!("e{i}"),
                    retryable: true,
                    retry_after_ms: None,
                },
            ));
        }
        assert_eq!(ring.len(), 3);
        assert_eq!((ring.first_seq(), ring.end_seq()), (7, 10));
        assert_eq!(ring.get(7).unwrap().text, "network: e7");
        assert!(ring.get(6).is_none());
        ring.set_capacity(1);
        assert_eq!(ring.first_seq(), 9);
    }

    #[test]
    fn long_text_is_split_on_char_boundaries() {
        let mut ring = StreamRing::new(10);
        let text = "é".repeat(MAX_LINE_BYTES); // 2 bytes each
        ring.append_text(1, 0, &text);
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.get(0).unwrap().text.len(), MAX_LINE_BYTES);
        assert_eq!(ring.get(1).unwrap().text.len(), MAX_LINE_BYTES);
    }

    #[test]
    fn wrapping_breaks_after_spaces_or_hard() {
        let text = "Relay stations forward each request";
        let rows: Vec<&str> = wrap(text, 16).iter().map(|&(a, b)| &text[a..b]).collect();
        assert_eq!(rows, ["Relay stations ", "forward each ", "request"]);
        let rows: Vec<&str> = wrap("abcdefghij", 4)
            .iter()
            .map(|&(a, b)| &"abcdefghij"[a..b])
            .collect();
        assert_eq!(rows, ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 10), vec![(0, 0)]);
        // Wide characters take two columns.
        assert_eq!(wrapped_height("日本語の", 4), 2);
    }
}
