//! openai-sse's decoder, shared by live sessions and replay: a response body (bytes, or
//! recorded event data in a replay) in, session events out. Time to first token at the first
//! content delta, chunks, `done` with the usage chunk's tokens (cached ones and `usage.cost`
//! included) or an estimate, mid-stream errors, and a body that ends before `[DONE]` as
//! `StreamCut`. Pure: no socket, no clock.

use std::time::Duration;

use crate::protocol::openai_chat::policy::error_kind;
use crate::protocol::openai_chat::wire::{StreamData, Usage};
use crate::protocol::sse::SseBuffer;
use crate::session::response::ResponseTracker;
use crate::session::tap::Wire;
use crate::session::{ErrorKind, EventKind, RequestId};
pub use crate::transport::http_stream::SseInbound;

/// The response under way, apart from the SSE framing.
#[derive(Clone, Debug, Default)]
struct ResponseState {
    tracker: ResponseTracker,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    /// `[DONE]` or an error ended the response; later events are ignored.
    over: bool,
}

impl ResponseState {
    fn on_event(
        &mut self,
        now: Duration,
        event: Option<&str>,
        data: &str,
        out: &mut impl FnMut(EventKind),
    ) -> SseInbound {
        if self.over {
            return SseInbound::Nothing;
        }
        let parsed = match StreamData::parse(event, data) {
            Ok(parsed) => parsed,
            Err(error) => {
                out(EventKind::Malformed {
                    reason: error.to_string(),
                });
                return SseInbound::Nothing;
            }
        };
        match parsed {
            StreamData::Done => self.finish(now, None, out),
            StreamData::Chunk(chunk) => {
                if let Some(usage) = chunk.usage {
                    self.usage = Some(usage);
                }
                if let Some(reason) = chunk.finish_reason {
                    self.finish_reason = Some(reason.into_owned());
                }
                match chunk.content {
                    Some(text) if !text.is_empty() => {
                        self.tracker.on_chunk(now, &text, &mut *out);
                        SseInbound::Text
                    }
                    _ => SseInbound::Nothing,
                }
            }
            StreamData::Error(error) => {
                self.over = true;
                let kind = error_kind(&error);
                let message = error.summary();
                let fatal = error.is_bad_key() || error.is_insufficient_quota();
                if let Some(failed) = self.tracker.fail(kind, message.clone()) {
                    out(failed);
                }
                out(EventKind::Error {
                    kind,
                    message: message.clone(),
                    retryable: !fatal && kind != ErrorKind::InvalidRequest,
                    retry_after_ms: None,
                });
                SseInbound::ResponseFailed {
                    kind,
                    message,
                    fatal,
                }
            }
        }
    }

    /// The response completed at `now` (`finish_reason` overrides the stream's own).
    fn finish(
        &mut self,
        now: Duration,
        finish_reason: Option<&str>,
        out: &mut impl FnMut(EventKind),
    ) -> SseInbound {
        self.over = true;
        let usage = self.usage.take();
        let reason = finish_reason.or(self.finish_reason.as_deref());
        let relay_usage = usage.map(|u| crate::protocol::relay_v1::Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        });
        let Some(mut done) = self.tracker.on_done(now, relay_usage, reason) else {
            return SseInbound::Nothing;
        };
        if let (
            EventKind::Done {
                tokens,
                reported_cost_usd,
                ..
            },
            Some(usage),
        ) = (&mut done, usage)
        {
            tokens.cached_input = usage.cached_tokens.min(usage.prompt_tokens);
            *reported_cost_usd = usage.cost_usd;
        }
        out(done);
        SseInbound::ResponseDone
    }
}

/// Decodes openai-sse response bodies into session events. Survives reconnects (request
/// numbers go on). Bounded: one event may hold at most 1 MiB (`MAX_EVENT_BYTES`).
///
/// Live, it takes the body's bytes (`on_bytes`, `on_end`) and shows its `tap` what it consumed,
/// in order: each event's data (`Wire::Text`, or `Wire::SseEvent` when the event has a name),
/// each event the framing refused (`Wire::SseRefused`), and the end of the body
/// (`Wire::BodyEnd`). A replay hands those back (`on_event`, `on_refused`, `on_body_end`) and
/// gets the same events.
#[derive(Clone, Debug, Default)]
pub struct SseDecoder {
    buffer: SseBuffer,
    state: ResponseState,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The request under way, if any.
    pub fn in_flight(&self) -> Option<RequestId> {
        self.state.tracker.in_flight()
    }

    /// When the request under way was sent.
    pub fn sent_at(&self) -> Option<Duration> {
        self.state.tracker.sent_at()
    }

    /// A request went out at `now`: its number and its `RequestSent` event.
    pub fn request_sent(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind) {
        self.buffer = SseBuffer::new();
        self.state.usage = None;
        self.state.finish_reason = None;
        self.state.over = false;
        self.state.tracker.begin(now, model, prompt_tokens_estimate)
    }

    /// The request under way failed for a reason outside the body (a status, a drop).
    pub fn fail(&mut self, kind: ErrorKind, reason: impl Into<String>) -> Option<EventKind> {
        self.state.over = true;
        self.state.tracker.fail(kind, reason)
    }

    /// The user cancelled the response under way: it is over, with the text so far
    /// (its tokens estimated: the usage chunk never comes). Nothing on the wire says so: the
    /// session reports the `done` itself (and a replay ends the decoder's copy on it).
    pub fn cancel(&mut self, now: Duration, out: &mut impl FnMut(EventKind)) -> SseInbound {
        self.state.usage = None;
        self.state.finish(now, Some("cancelled"), out)
    }

    /// Bytes of the response body arrived at `now`. `tap` sees what the decoder consumed.
    pub fn on_bytes(
        &mut self,
        now: Duration,
        bytes: &[u8],
        out: &mut impl FnMut(EventKind),
        tap: &mut impl FnMut(Wire<'_>),
    ) -> SseInbound {
        self.buffer.push(bytes);
        self.drain(now, out, tap)
    }

    /// The body ended at `now`.
    pub fn on_end(
        &mut self,
        now: Duration,
        out: &mut impl FnMut(EventKind),
        tap: &mut impl FnMut(Wire<'_>),
    ) -> SseInbound {
        self.buffer.finish();
        let inbound = self.drain(now, out, tap);
        tap(Wire::BodyEnd);
        inbound.max(self.on_body_end(now, out))
    }

    /// One event's data (`event` is its `event:` name): the same events as live. A replay
    /// calls it for each recorded one.
    pub fn on_event(
        &mut self,
        now: Duration,
        event: Option<&str>,
        data: &str,
        out: &mut impl FnMut(EventKind),
    ) -> SseInbound {
        self.state.on_event(now, event, data, out)
    }

    /// An event the framing refused (over 1 MiB, not UTF-8), and why.
    pub fn on_refused(&mut self, reason: &str, out: &mut impl FnMut(EventKind)) {
        out(EventKind::Malformed {
            reason: reason.to_owned(),
        });
    }

    /// The body ended at `now`, after every event in it: a response that finished without
    /// `[DONE]` is done, one that did not is cut. A replay calls it for the recorded end.
    pub fn on_body_end(&mut self, now: Duration, out: &mut impl FnMut(EventKind)) -> SseInbound {
        if self.state.over || self.state.tracker.in_flight().is_none() {
            return SseInbound::Nothing;
        }
        if self.state.finish_reason.is_some() || self.state.usage.is_some() {
            // A relay that never sends `[DONE]`: the stream had finished all the same.
            return self.state.finish(now, None, out);
        }
        SseInbound::StreamCut
    }

    fn drain(
        &mut self,
        now: Duration,
        out: &mut impl FnMut(EventKind),
        tap: &mut impl FnMut(Wire<'_>),
    ) -> SseInbound {
        let mut inbound = SseInbound::Nothing;
        let SseDecoder { buffer, state } = self;
        while let Some(event) = buffer.next_event() {
            match event {
                Ok(event) => {
                    tap(match event.event {
                        Some(name) => Wire::SseEvent {
                            event: name,
                            data: &event.data,
                        },
                        None => Wire::Text(&event.data),
                    });
                    let this = state.on_event(now, event.event, &event.data, out);
                    inbound = inbound.max(this);
                }
                Err(error) => {
                    let reason = error.to_string();
                    tap(Wire::SseRefused { reason: &reason });
                    out(EventKind::Malformed { reason });
                }
            }
        }
        inbound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn decode(d: &mut SseDecoder, at: u64, bytes: &[u8]) -> (SseInbound, Vec<EventKind>) {
        let mut events = Vec::new();
        let inbound = d.on_bytes(ms(at), bytes, &mut |e| events.push(e), &mut |_| {});
        (inbound, events)
    }

    #[test]
    fn ttft_is_the_first_content_delta_not_the_role_delta() {
        let mut d = SseDecoder::new();
        d.request_sent(ms(0), "gpt-4o-mini", 3);
        let (i, e) = decode(
            &mut d,
            50,
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        );
        assert_eq!(i, SseInbound::Nothing);
        assert!(e.is_empty(), "{e:?}");
        let (i, e) = decode(
            &mut d,
            200,
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        );
        assert_eq!(i, SseInbound::Text);
        assert_eq!(
            e[0],
            EventKind::FirstToken {
                request: 1,
                ttft_us: 200_000
            }
        );
    }

    #[test]
    fn a_cut_stream_and_a_stream_without_done() {
        let mut d = SseDecoder::new();
        d.request_sent(ms(0), "m", 1);
        decode(
            &mut d,
            1,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        );
        let inbound = d.on_end(ms(2), &mut |_| {}, &mut |_| {});
        assert_eq!(inbound, SseInbound::StreamCut);

        d.request_sent(ms(10), "m", 1);
        decode(
            &mut d,
            11,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
        );
        let mut events = Vec::new();
        let inbound = d.on_end(ms(12), &mut |e| events.push(e), &mut |_| {});
        assert_eq!(inbound, SseInbound::ResponseDone);
        assert!(matches!(
            &events[0],
            EventKind::Done { tokens, finish_reason: Some(f), .. } if tokens.estimated && f == "stop"
        ));
    }

    #[test]
    fn a_cancel_ends_the_response_with_an_estimate() {
        let mut d = SseDecoder::new();
        d.request_sent(ms(0), "m", 4);
        decode(
            &mut d,
            1,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hello there\"}}]}\n\n",
        );
        let mut events = Vec::new();
        assert_eq!(
            d.cancel(ms(5), &mut |e| events.push(e)),
            SseInbound::ResponseDone
        );
        assert!(matches!(
            &events[0],
            EventKind::Done { finish_reason: Some(f), tokens, .. } if f == "cancelled" && tokens.estimated
        ));
        assert_eq!(d.in_flight(), None);
    }
}
