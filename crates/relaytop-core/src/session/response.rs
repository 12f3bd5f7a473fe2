//! The response under way on a connection: time to first token, chunks, bytes, the end, and
//! how it ended (whole, cut short, empty).
//!
//! Pure: it is told when a request went out and what came back, with the time, and answers
//! with the session events to report. Live sessions and replay share it, so time to first
//! token, response time, cut streams and token counts are decided in exactly one place.
//!
//! Tokens: the relay's usage when it sends one; when it sends none (or reports no output
//! although text came, as some Realtime relays do), the answer text counted with the model's
//! tokenizer (`crate::tokenize`), marked as an estimate. For the usage audit the text of a
//! response with usage is counted too, at most once a second per session (`AUDIT_EVERY`), so
//! counting never costs a busy session more than a sliver of a core.

use std::time::Duration;

use crate::session::event::micros;
use crate::session::{Completed, ErrorKind, EventKind, RequestId, Tokens};
use crate::tokenize::Counter;

/// Most text (answer, and thinking apart) kept of one response for counting its tokens; the
/// count of a longer text is scaled by its characters.
pub const MAX_COUNTED_TEXT: usize = 16 * 1024;

/// How often, at most, a session counts the text of a response that came with usage (for
/// the usage audit).
pub const AUDIT_EVERY: Duration = Duration::from_secs(1);

/// Why a response that ended with no answer text is cut.
pub const EMPTY_RESPONSE: &str = "empty response: no answer text";

/// Whether a finish reason says the answer was whole, in any format's words (chat `stop`,
/// Anthropic `end_turn` and `stop_sequence`, Responses `completed`, Gemini `STOP`): the
/// reasons worth showing are the others (a length limit, a filter, a cancel).
pub fn is_ordinary_finish(reason: &str) -> bool {
    matches!(
        reason,
        "stop" | "end_turn" | "stop_sequence" | "completed" | "STOP"
    )
}

/// Why an `incomplete` response (Responses, Realtime) is cut, with its reason. A length limit
/// (`max_output_tokens`) or a content filter is no cut: those are finish reasons, as chat's
/// `length` and `content_filter` are, so the same ending counts the same in every format.
pub fn incomplete_cut(reason: Option<&str>) -> String {
    match reason {
        Some(r) if !r.is_empty() => format!("incomplete ({r})"),
        _ => "incomplete".to_owned(),
    }
}

/// Whether an `incomplete` reason is an ordinary ending (the output limit asked, a filter).
pub fn is_limit_or_filter(reason: &str) -> bool {
    matches!(
        reason,
        "max_output_tokens" | "max_tokens" | "length" | "content_filter"
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
    /// The first `MAX_COUNTED_TEXT` bytes of the answer, for counting its tokens.
    text: String,
    /// The first `MAX_COUNTED_TEXT` bytes of the thinking.
    thinking: String,
}

/// Appends as much of `piece` as fits under `MAX_COUNTED_TEXT`, on a character boundary.
fn keep(into: &mut String, piece: &str) {
    let room = MAX_COUNTED_TEXT.saturating_sub(into.len());
    if room == 0 {
        return;
    }
    let mut end = piece.len().min(room);
    while !piece.is_char_boundary(end) {
        end -= 1;
    }
    into.push_str(&piece[..end]);
}

/// Tokens of a text of `chars` characters of which `kept` were counted as `counted`.
fn scaled(counter: &Counter, kept: &str, chars: u64) -> u64 {
    if chars == 0 {
        return 0;
    }
    let counted = counter.count(kept).tokens;
    let kept_chars = kept.chars().count() as u64;
    if kept_chars >= chars || kept_chars == 0 {
        return counted;
    }
    (counted as f64 * chars as f64 / kept_chars as f64).round() as u64
}

/// Tracks the one response a relay/v1 connection may have under way.
#[derive(Clone, Debug, Default)]
pub struct ResponseTracker {
    last_request: RequestId,
    current: Option<InFlight>,
    /// When a response with usage was last counted for the audit.
    last_audit: Option<Duration>,
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
            text: String::new(),
            thinking: String::new(),
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
        keep(&mut r.text, content);
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
        keep(&mut r.thinking, content);
    }

    /// `done` arrived at `now`, with the tokens the relay reported (`estimated: false`), if
    /// any: the completed response, or `None` if none was under way. Tokens are estimated
    /// from the text when the relay sent no usage, or reported no output though text came.
    /// A response with no answer text is cut (`EMPTY_RESPONSE`); callers that know a truer
    /// reason (no finish reason, an `incomplete`) set their own.
    pub fn on_done(
        &mut self,
        now: Duration,
        usage: Option<Tokens>,
        finish_reason: Option<&str>,
    ) -> Option<EventKind> {
        let r = self.current.take()?;
        let counter = Counter::for_model(&r.model);
        let answer_tokens = || scaled(&counter, &r.text, r.chars);
        let thinking_tokens = || scaled(&counter, &r.thinking, r.thinking_chars);
        let mut text_tokens = None;
        let tokens = match usage {
            Some(u) if u.output > 0 || r.chars + r.thinking_chars == 0 => {
                // Audit the answer when nothing hides in the output: no thinking shown or
                // reported (hidden or summarised reasoning is billed but never sent).
                let auditable = r.thinking_chars == 0 && u.reasoning_output == 0 && r.chars > 0;
                let due = self
                    .last_audit
                    .is_none_or(|t| now.saturating_sub(t) >= AUDIT_EVERY);
                if auditable && due {
                    self.last_audit = Some(now);
                    text_tokens = Some(answer_tokens());
                }
                Tokens {
                    estimated: false,
                    ..u
                }
            }
            reported => {
                let answer = answer_tokens();
                let thinking = thinking_tokens();
                text_tokens = Some(answer);
                Tokens {
                    input: reported.map_or(r.prompt_tokens_estimate, |u| u.input),
                    output: answer + thinking,
                    cached_input: reported.map_or(0, |u| u.cached_input),
                    cache_write_input: reported.map_or(0, |u| u.cache_write_input),
                    reasoning_output: thinking,
                    estimated: true,
                }
            }
        };
        Some(EventKind::Done(Box::new(Completed {
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
            cut: (r.chars == 0 && finish_reason != Some("cancelled"))
                .then(|| EMPTY_RESPONSE.to_owned()),
            text_tokens,
        })))
    }

    /// The request under way failed: the event to report, or `None` if none was under way.
    /// A connection lost after text came cut the response: that is counted as `Cut` in every
    /// protocol alike (a drop before any text stays a network failure).
    pub fn fail(&mut self, kind: ErrorKind, reason: impl Into<String>) -> Option<EventKind> {
        let r = self.current.take()?;
        let got_text = r.first_token_at.is_some();
        Some(EventKind::RequestFailed {
            request: r.request,
            kind: if kind == ErrorKind::Network && got_text {
                ErrorKind::Cut
            } else {
                kind
            },
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
                Some(Tokens {
                    input: 9,
                    output: 2,
                    ..Tokens::default()
                }),
                Some("stop"),
            )
            .unwrap();
        assert_eq!(
            done,
            EventKind::Done(Box::new(Completed {
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
                cut: None,
                text_tokens: Some(2),
            }))
        );
        assert_eq!(t.in_flight(), None);
    }

    #[test]
    fn tokens_are_estimated_without_usage() {
        let mut t = ResponseTracker::new();
        t.begin(ms(0), "m", 7);
        t.on_chunk(ms(1), "héllo wörld", |_| {});
        let Some(EventKind::Done(done)) = t.on_done(ms(2), None, None) else {
            panic!("expected done");
        };
        let Completed {
            tokens,
            text_tokens,
            ..
        } = *done;
        // Counted with o200k_base (the tokenizer for families it has no table of).
        let counted = Counter::for_model("m").count("héllo wörld").tokens;
        assert_eq!(text_tokens, Some(counted));
        assert_eq!(
            tokens,
            Tokens {
                input: 7,
                output: counted,
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
