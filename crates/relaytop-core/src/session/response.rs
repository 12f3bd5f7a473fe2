//! The response under way on a connection: time to first token, chunks, bytes and the end.
//!
//! Pure: it is told when a request went out and what came back, with the time, and answers
//! with the session events to report. Live sessions and replay share it, so time to first
//! token and response time are computed in exactly one place.

use std::time::Duration;

use crate::protocol::relay_v1::Usage;
use crate::session::event::micros;
use crate::session::{ErrorKind, EventKind, RequestId, Tokens};

/// Whether a finish reason says the answer was whole, in any format's words (chat `stop`,
/// Anthropic `end_turn` and `stop_sequence`, Responses `completed`, Gemini `STOP`): the
/// reasons worth showing are the others (a length limit, a filter, a cancel).
pub fn is_ordinary_finish(reason: &str) -> bool {
    matches!(
        reason,
        "stop" | "end_turn" | "stop_sequence" | "completed" | "STOP"
    )
}

/// Estimated tokens of a text of `chars` characters: one token per four characters.
pub fn estimate_tokens_from_chars(chars: u64) -> u64 {
    chars.div_ceil(4)
}

#[derive(Clone, Debug)]
struct InFlight {
    request: RequestId,
    model: String,
    sent_at: Duration,
    first_token_at: Option<Duration>,
    /// The first answer token, when thinking came first.
    first_answer_at: Option<Duration>,
    prompt_tokens_estimate: u64,
    chunks: u32,
    bytes: u64,
    chars: u64,
    /// Characters of thinking (reasoning) text: output too, never shown as the answer.
    thinking_chars: u64,
}

/// Tracks the one response a relay/v1 connection may have under way.
#[derive(Clone, Debug, Default)]
pub struct ResponseTracker {
    last_request: RequestId,
    current: Option<InFlight>,
}

impl ResponseTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The request under way, if any.
    pub fn in_flight(&self) -> Option<RequestId> {
        self.current.as_ref().map(|r| r.request)
    }

    /// When the request under way was sent.
    pub fn sent_at(&self) -> Option<Duration> {
        self.current.as_ref().map(|r| r.sent_at)
    }

    /// The number the next request will have.
    pub fn next_request(&self) -> RequestId {
        self.last_request + 1
    }

    /// A request went out at `now`. Returns its number and the event to report.
    pub fn begin(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind) {
        self.last_request += 1;
        let request = self.last_request;
        self.current = Some(InFlight {
            request,
            model: model.to_owned(),
            sent_at: now,
            first_token_at: None,
            first_answer_at: None,
            prompt_tokens_estimate,
            chunks: 0,
            bytes: 0,
            chars: 0,
            thinking_chars: 0,
        });
        (
            request,
            EventKind::RequestSent {
                request,
                model: model.to_owned(),
                prompt_tokens_estimate,
            },
        )
    }

    /// A chunk of text arrived at `now`. Reports the first token (once) and the chunk.
    /// A chunk with no request under way is still reported (as request 0).
    pub fn on_chunk(&mut self, now: Duration, content: &str, mut emit: impl FnMut(EventKind)) {
        let Some(r) = self.current.as_mut() else {
            emit(EventKind::Chunk {
                request: 0,
                text: content.into(),
            });
            return;
        };
        if !content.is_empty() {
            if r.first_token_at.is_none() {
                r.first_token_at = Some(now);
                emit(EventKind::FirstToken {
                    request: r.request,
                    ttft_us: micros(now.saturating_sub(r.sent_at)),
                });
            } else if r.thinking_chars > 0 && r.first_answer_at.is_none() {
                r.first_answer_at = Some(now);
            }
        }
        r.chunks = r.chunks.saturating_add(1);
        r.bytes += content.len() as u64;
        r.chars += content.chars().count() as u64;
        emit(EventKind::Chunk {
            request: r.request,
            text: content.into(),
        });
    }

    /// Thinking (reasoning) text arrived at `now`: the first token if it is the first text
    /// (time to first token counts thinking), output for the estimate, never a `Chunk`: the
    /// answer the user reads starts at the first `on_chunk`.
    pub fn on_thinking(&mut self, now: Duration, content: &str, mut emit: impl FnMut(EventKind)) {
        let Some(r) = self.current.as_mut() else {
            return;
        };
        if content.is_empty() {
            return;
        }
        if r.first_token_at.is_none() {
            r.first_token_at = Some(now);
            emit(EventKind::FirstToken {
                request: r.request,
                ttft_us: micros(now.saturating_sub(r.sent_at)),
            });
        }
        r.thinking_chars += content.chars().count() as u64;
    }

    /// `done` arrived at `now`: the completed response, or `None` if none was under way.
    pub fn on_done(
        &mut self,
        now: Duration,
        usage: Option<Usage>,
        finish_reason: Option<&str>,
    ) -> Option<EventKind> {
        let r = self.current.take()?;
        let tokens = match usage {
            Some(u) => Tokens {
                input: u.prompt_tokens,
                output: u.completion_tokens,
                estimated: false,
                ..Tokens::default()
            },
            None => Tokens {
                input: r.prompt_tokens_estimate,
                output: estimate_tokens_from_chars(r.chars)
                    + estimate_tokens_from_chars(r.thinking_chars),
                reasoning_output: estimate_tokens_from_chars(r.thinking_chars),
                estimated: true,
                ..Tokens::default()
            },
        };
        Some(EventKind::Done {
            request: r.request,
            model: r.model,
            ttft_us: r
                .first_token_at
                .map(|t| micros(t.saturating_sub(r.sent_at))),
            answer_us: r
                .first_answer_at
                .map(|t| micros(t.saturating_sub(r.sent_at))),
            total_us: micros(now.saturating_sub(r.sent_at)),
            tokens,
            reported_cost_usd: None,
            finish_reason: finish_reason.map(str::to_owned),
            chunks: r.chunks,
            bytes: r.bytes,
        })
    }

    /// The request under way failed: the event to report, or `None` if none was under way.
    pub fn fail(&mut self, kind: ErrorKind, reason: impl Into<String>) -> Option<EventKind> {
        let r = self.current.take()?;
        Some(EventKind::RequestFailed {
            request: r.request,
            kind,
            reason: reason.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_full_response() {
        let mut t = ResponseTracker::new();
        let (id, sent) = t.begin(ms(1000), "gpt-4.1", 12);
        assert_eq!(id, 1);
        assert!(matches!(sent, EventKind::RequestSent { request: 1, .. }));
        let mut events = Vec::new();
        t.on_chunk(ms(1420), "Hel", |e| events.push(e));
        t.on_chunk(ms(1430), "lo!", |e| events.push(e));
        assert_eq!(
            events[0],
            EventKind::FirstToken {
                request: 1,
                ttft_us: 420_000
            }
        );
        assert_eq!(events.len(), 3, "first token once, then two chunks");
        let done = t
            .on_done(
                ms(1500),
                Some(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 2,
                }),
                Some("stop"),
            )
            .unwrap();
        assert_eq!(
            done,
            EventKind::Done {
                request: 1,
                model: "gpt-4.1".into(),
                ttft_us: Some(420_000),
                answer_us: None,
                total_us: 500_000,
                tokens: Tokens {
                    input: 9,
                    output: 2,
                    cached_input: 0,
                    cache_write_input: 0,
                    reasoning_output: 0,
                    estimated: false
                },
                reported_cost_usd: None,
                finish_reason: Some("stop".into()),
                chunks: 2,
                bytes: 6,
            }
        );
        assert_eq!(t.in_flight(), None);
    }

    #[test]
    fn tokens_are_estimated_without_usage() {
        let mut t = ResponseTracker::new();
        t.begin(ms(0), "m", 7);
        t.on_chunk(ms(1), "héllo wörld", |_| {});
        let Some(EventKind::Done { tokens, .. }) = t.on_done(ms(2), None, None) else {
            panic!("expected done");
        };
        assert_eq!(
            tokens,
            Tokens {
                input: 7,
                output: 3,
                cached_input: 0,
                cache_write_input: 0,
                reasoning_output: 0,
                estimated: true
            }
        );
    }

    #[test]
    fn empty_first_chunks_are_not_the_first_token() {
        let mut t = ResponseTracker::new();
        t.begin(ms(0), "m", 1);
        let mut events = Vec::new();
        t.on_chunk(ms(5), "", |e| events.push(e));
        t.on_chunk(ms(9), "x", |e| events.push(e));
        assert!(events.contains(&EventKind::FirstToken {
            request: 1,
            ttft_us: 9000
        }));
    }

    #[test]
    fn failure_and_stray_frames() {
        let mut t = ResponseTracker::new();
        assert_eq!(t.on_done(ms(0), None, None), None);
        assert_eq!(t.fail(ErrorKind::Network, "x"), None);
        let mut events = Vec::new();
        t.on_chunk(ms(0), "stray", |e| events.push(e));
        assert!(matches!(events[0], EventKind::Chunk { request: 0, .. }));
        t.begin(ms(0), "m", 1);
        assert!(matches!(
            t.fail(ErrorKind::Network, "dropped"),
            Some(EventKind::RequestFailed { request: 1, .. })
        ));
        let (id, _) = t.begin(ms(0), "m", 1);
        assert_eq!(id, 2, "request numbers keep counting");
    }
}
