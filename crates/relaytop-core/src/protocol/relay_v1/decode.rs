//! Turning relay/v1 frames from the relay into session events, shared by live and replay.
//!
//! Pure: the live session task and the replay source both feed it the frames the relay sent
//! (with their times) and the requests that went out, and get the same events back: first
//! token, chunks, done, errors, malformed and unknown frames, transcripts. What the decoder
//! cannot see on the wire (state changes, connects, closes, heartbeat round trips, backoff)
//! the session reports itself, and a recording stores those as events. A `rate_limited` or
//! `overloaded` error is returned as a `SlowDown` (in `Inbound`), not reported: the wait is
//! the session's decision (its 429 schedule), so the session reports `RateLimited` itself.

use std::time::Duration;

use crate::protocol::relay_v1::{ErrorCode, ServerFrame};
use crate::session::ratelimit::SlowDown;
use crate::session::response::ResponseTracker;
use crate::session::{ErrorKind, EventKind, RequestId, Tokens};

/// What a frame from the relay meant for the session, beyond the events it produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Nothing the session must act on.
    Nothing,
    /// Text of the response under way.
    Text,
    /// The response under way completed.
    ResponseDone,
    /// The response under way failed (an error frame); `wait` is set when the relay asked
    /// the client to slow down (the session decides the wait and reports it).
    ResponseFailed { wait: Option<SlowDown> },
    /// An error frame with no response under way; `wait` as above.
    Error { wait: Option<SlowDown> },
    /// An application `pong`.
    Pong,
}

/// Decodes one relay/v1 connection's frames. Survives reconnects (request numbers go on).
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    tracker: ResponseTracker,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The request under way, if any.
    pub fn in_flight(&self) -> Option<RequestId> {
        self.tracker.in_flight()
    }

    /// When the request under way was sent.
    pub fn sent_at(&self) -> Option<Duration> {
        self.tracker.sent_at()
    }

    /// A request went out at `now`: its number and its `RequestSent` event.
    pub fn request_sent(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind) {
        self.tracker.begin(now, model, prompt_tokens_estimate)
    }

    /// The request under way failed for a reason outside the frames (a drop, a timeout).
    pub fn fail(&mut self, kind: ErrorKind, reason: impl Into<String>) -> Option<EventKind> {
        self.tracker.fail(kind, reason)
    }

    /// A text frame from the relay, received at `now`. Its events go to `out`.
    pub fn on_text(
        &mut self,
        now: Duration,
        text: &str,
        out: &mut impl FnMut(EventKind),
    ) -> Inbound {
        let frame = match ServerFrame::parse(text) {
            Ok(frame) => frame,
            Err(error) => {
                out(EventKind::Malformed {
                    reason: error.to_string(),
                });
                return Inbound::Nothing;
            }
        };
        match frame {
            ServerFrame::Chunk { content, .. } => {
                self.tracker.on_chunk(now, &content, &mut *out);
                Inbound::Text
            }
            ServerFrame::Done {
                usage,
                finish_reason,
                ..
            } => match self.tracker.on_done(
                now,
                usage.map(|u| Tokens {
                    input: u.prompt_tokens,
                    output: u.completion_tokens,
                    ..Tokens::default()
                }),
                finish_reason.as_deref(),
            ) {
                Some(done) => {
                    out(done);
                    Inbound::ResponseDone
                }
                None => Inbound::Nothing,
            },
            ServerFrame::Error {
                details,
                code,
                retry_after_ms,
                ..
            } => {
                let kind = match ErrorCode::from_wire(code.as_deref().unwrap_or("")) {
                    ErrorCode::RateLimited => ErrorKind::RateLimited,
                    ErrorCode::InvalidRequest => ErrorKind::InvalidRequest,
                    ErrorCode::UpstreamError => ErrorKind::Upstream,
                    ErrorCode::Overloaded => ErrorKind::Overloaded,
                    ErrorCode::Other => ErrorKind::Other,
                };
                let message = details.into_owned();
                // The error fails the request under way; the connection stays open.
                let failed = self.tracker.fail(kind, message.clone());
                let had_request = failed.is_some();
                if let Some(failed) = failed {
                    out(failed);
                }
                let retryable = !matches!(kind, ErrorKind::InvalidRequest | ErrorKind::Auth);
                out(EventKind::Error {
                    kind,
                    message: message.clone(),
                    retryable,
                    retry_after_ms,
                });
                let wait =
                    matches!(kind, ErrorKind::RateLimited | ErrorKind::Overloaded).then(|| {
                        SlowDown {
                            kind,
                            retry_after: retry_after_ms
                                .map(crate::session::connect::retry_after_millis),
                            cause: message,
                        }
                    });
                if had_request {
                    Inbound::ResponseFailed { wait }
                } else {
                    Inbound::Error { wait }
                }
            }
            ServerFrame::Pong => Inbound::Pong,
            ServerFrame::Transcript { text, is_final, .. } => {
                out(EventKind::Transcript {
                    request: self.tracker.in_flight().unwrap_or(0),
                    text: text.into_owned(),
                    is_final,
                });
                Inbound::Nothing
            }
            ServerFrame::Unknown { kind } => {
                out(EventKind::UnknownFrame {
                    frame_type: kind.into_owned(),
                });
                Inbound::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn decode(d: &mut Decoder, at: u64, text: &str) -> (Inbound, Vec<EventKind>) {
        let mut events = Vec::new();
        let inbound = d.on_text(ms(at), text, &mut |e| events.push(e));
        (inbound, events)
    }

    #[test]
    fn a_response_from_frames() {
        let mut d = Decoder::new();
        d.request_sent(ms(0), "gpt-4.1", 3);
        let (i, e) = decode(&mut d, 180, r#"{"type":"chunk","content":"Hi"}"#);
        assert_eq!(i, Inbound::Text);
        assert_eq!(e.len(), 2, "first token and chunk");
        let (i, e) = decode(
            &mut d,
            200,
            r#"{"type":"done","usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        );
        assert_eq!(i, Inbound::ResponseDone);
        assert!(matches!(&e[0], EventKind::Done(done) if done.total_us == 200_000));
        assert_eq!(d.in_flight(), None);
    }

    #[test]
    fn a_rate_limited_error_fails_the_request_and_asks_to_wait() {
        let mut d = Decoder::new();
        d.request_sent(ms(0), "m", 1);
        let (i, e) = decode(
            &mut d,
            5,
            r#"{"type":"error","code":"rate_limited","details":"slow down","retry_after_ms":1500}"#,
        );
        let slow_down = SlowDown {
            kind: ErrorKind::RateLimited,
            retry_after: Some(ms(1500)),
            cause: "slow down".into(),
        };
        assert_eq!(
            i,
            Inbound::ResponseFailed {
                wait: Some(slow_down)
            }
        );
        assert!(matches!(
            e[0],
            EventKind::RequestFailed {
                kind: ErrorKind::RateLimited,
                ..
            }
        ));
        assert!(matches!(
            e[1],
            EventKind::Error {
                retryable: true,
                ..
            }
        ));
        // The wait is the session's to decide and report (its 429 schedule), not the frame's.
        assert_eq!(e.len(), 2, "no `RateLimited` from the decoder: {e:?}");
    }

    #[test]
    fn an_overloaded_error_without_a_request_asks_to_wait_a_second() {
        let mut d = Decoder::new();
        let (i, e) = decode(
            &mut d,
            5,
            r#"{"type":"error","code":"overloaded","details":"busy"}"#,
        );
        let Inbound::Error { wait: Some(wait) } = i else {
            panic!("{i:?}")
        };
        assert_eq!((wait.kind, wait.wait()), (ErrorKind::Overloaded, ms(1000)));
        assert_eq!(e.len(), 1, "the error only: {e:?}");
    }

    #[test]
    fn junk_is_counted_not_fatal() {
        let mut d = Decoder::new();
        let (_, e) = decode(&mut d, 0, "{not json");
        assert!(matches!(e[0], EventKind::Malformed { .. }));
        let (_, e) = decode(&mut d, 0, r#"{"type":"sim.noise"}"#);
        assert_eq!(
            e[0],
            EventKind::UnknownFrame {
                frame_type: "sim.noise".into()
            }
        );
        let (i, e) = decode(&mut d, 0, r#"{"type":"pong"}"#);
        assert_eq!(i, Inbound::Pong);
        assert!(
            e.is_empty(),
            "round trips are measured by the session, not here"
        );
    }
}
