//! The decoder every HTTP streaming format shares: SSE framing (`sse`), the response under
//! way (`ResponseTracker`), and what a format's events mean (`SseFormat`: chat completions,
//! Anthropic Messages, Responses, Gemini), turned into session events the same way for all.
//! A format only reads its own events; time to first token, the first answer token, tokens,
//! the end, errors and cut streams are decided here, once. Pure: no socket, no clock; the
//! same code live and in replay.

use std::borrow::Cow;
use std::time::Duration;

use crate::protocol::sse::SseBuffer;
use crate::session::response::ResponseTracker;
use crate::session::tap::Wire;
use crate::session::{ErrorKind, EventKind, RequestId, Tokens};
pub use crate::transport::http_stream::SseInbound;

/// What a format's stream said about the tokens of the response. Formats that report usage
/// more than once (Anthropic's cumulative `message_delta`, Gemini's every chunk) keep the
/// last; `input` includes the cached and cache-written tokens; `output` includes reasoning.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StreamUsage {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write_input: u64,
    pub reasoning_output: u64,
    /// Cost in US dollars the relay reported (`usage.cost`), if any.
    pub cost_usd: Option<f64>,
}

/// What one event of a format's stream meant for the response under way.
#[derive(Clone, Debug, PartialEq)]
pub enum Step<'a> {
    /// Text of the answer (shown, counted, the first answer token).
    Answer(Cow<'a, str>),
    /// Thinking text (reasoning, thoughts): the first token if it comes first, never shown as
    /// the answer.
    Thinking(Cow<'a, str>),
    /// The response ended with the format's terminal mark.
    Done {
        usage: Option<StreamUsage>,
        finish_reason: Option<String>,
        /// Why the response, though it ended, was cut short (no finish reason, an
        /// `incomplete`, events lost); `None` when it is whole.
        cut: Option<String>,
    },
    /// The stream reported an error: the response failed.
    Failed {
        kind: ErrorKind,
        message: String,
        /// The key is bad or the quota gone: retrying cannot help.
        fatal: bool,
    },
    /// An event the format could not read (counted, never fatal).
    Malformed(String),
    /// An event of a type the format does not know (counted, never fatal).
    Unknown(String),
}

/// The rules of one HTTP streaming format: what its events mean. It keeps what it needs
/// between events of one response (usage so far, the finish reason, sequence numbers) and
/// is `reset` for every request.
pub trait SseFormat: Clone + std::fmt::Debug + Default + Send + 'static {
    /// A new request went out: forget the last response.
    fn reset(&mut self);
    /// One event (`event` is its `event:` name, `data` its data): its steps to `step`, in
    /// order. Unknown or unreadable events are steps too, never a panic or an end.
    fn on_event<'a>(&mut self, event: Option<&str>, data: &'a str, step: &mut impl FnMut(Step<'a>));
    /// The body ended without a `Done` step: `Some` when the stream had finished all the
    /// same (a relay that drops the terminal mark but sent the finish reason, or a format
    /// whose end is the close), `None` when it was cut.
    fn on_body_end(&mut self) -> Option<Step<'static>>;
}

/// A format's response bodies into session events. Survives reconnects (request numbers go
/// on). Bounded: one event may hold at most 1 MiB (`sse::MAX_EVENT_BYTES`).
///
/// Live, it takes the body's bytes (`on_bytes`, `on_end`) and shows its `tap` what it consumed,
/// in order: each event's data (`Wire::Text`, or `Wire::SseEvent` when the event has a name),
/// each event the framing refused (`Wire::SseRefused`), and the end of the body
/// (`Wire::BodyEnd`). A replay hands those back (`on_event`, `on_refused`, `on_body_end`) and
/// gets the same events.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder<F> {
    buffer: SseBuffer,
    tracker: ResponseTracker,
    /// The terminal mark or an error ended the response; later events are ignored.
    over: bool,
    format: F,
    /// The session's key: scrubbed from each event's data before the format reads it, as the
    /// recorder scrubs what it writes (so a replay reads the same data and derives the same
    /// events, byte counts and token estimates included).
    scrub: Option<crate::session::event::Scrub>,
}

impl<F: SseFormat> StreamDecoder<F> {
    pub fn new() -> Self {
        Self {
            buffer: SseBuffer::new(),
            tracker: ResponseTracker::new(),
            over: false,
            format: F::default(),
            scrub: None,
        }
    }

    /// Scrubs `scrub`'s key from every event's data from now on (live sessions; a replay's
    /// data is scrubbed already).
    pub fn set_scrub(&mut self, scrub: Option<crate::session::event::Scrub>) {
        self.scrub = scrub;
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
        self.buffer = SseBuffer::new();
        self.format.reset();
        self.over = false;
        self.tracker.begin(now, model, prompt_tokens_estimate)
    }

    /// The request under way failed for a reason outside the body (a status, a drop).
    pub fn fail(&mut self, kind: ErrorKind, reason: impl Into<String>) -> Option<EventKind> {
        self.over = true;
        self.tracker.fail(kind, reason)
    }

    /// The user cancelled the response under way: it is over, with the text so far (its
    /// tokens estimated: the usage never comes). Nothing on the wire says so: the session
    /// reports the `done` itself (and a replay ends the decoder's copy on it).
    pub fn cancel(&mut self, now: Duration, out: &mut impl FnMut(EventKind)) -> SseInbound {
        self.finish(now, None, Some("cancelled"), out)
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
        if self.over {
            return SseInbound::Nothing;
        }
        let mut inbound = SseInbound::Nothing;
        let Self {
            tracker,
            over,
            format,
            ..
        } = self;
        format.on_event(event, data, &mut |step| {
            if *over {
                return;
            }
            inbound = inbound.clone().max(apply(tracker, over, now, step, out));
        });
        inbound
    }

    /// An event the framing refused (over 1 MiB, not UTF-8), and why.
    pub fn on_refused(&mut self, reason: &str, out: &mut impl FnMut(EventKind)) {
        out(EventKind::Malformed {
            reason: reason.to_owned(),
        });
    }

    /// The body ended at `now`, after every event in it: a response that finished without
    /// its terminal mark is done if the format says so, else cut. A replay calls it for the
    /// recorded end.
    pub fn on_body_end(&mut self, now: Duration, out: &mut impl FnMut(EventKind)) -> SseInbound {
        if self.over || self.tracker.in_flight().is_none() {
            return SseInbound::Nothing;
        }
        match self.format.on_body_end() {
            Some(step) => apply(&mut self.tracker, &mut self.over, now, step, out),
            None => SseInbound::StreamCut,
        }
    }

    fn finish(
        &mut self,
        now: Duration,
        usage: Option<StreamUsage>,
        finish_reason: Option<&str>,
        out: &mut impl FnMut(EventKind),
    ) -> SseInbound {
        done(
            &mut self.tracker,
            &mut self.over,
            now,
            usage,
            finish_reason,
            None,
            out,
        )
    }

    fn drain(
        &mut self,
        now: Duration,
        out: &mut impl FnMut(EventKind),
        tap: &mut impl FnMut(Wire<'_>),
    ) -> SseInbound {
        let mut inbound = SseInbound::Nothing;
        while let Some(event) = self.buffer.next_event() {
            match event {
                Ok(event) => {
                    tap(match event.event {
                        Some(name) => Wire::SseEvent {
                            event: name,
                            data: &event.data,
                        },
                        None => Wire::Text(&event.data),
                    });
                    if self.over {
                        continue;
                    }
                    let Self {
                        tracker,
                        over,
                        format,
                        scrub,
                        ..
                    } = self;
                    let data = match scrub {
                        Some(scrub) => scrub.scrub(&event.data),
                        None => Cow::Borrowed(&event.data[..]),
                    };
                    format.on_event(event.event, &data, &mut |step| {
                        if *over {
                            return;
                        }
                        inbound = inbound.clone().max(apply(tracker, over, now, step, out));
                    });
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

/// One step of the response under way, into session events.
fn apply(
    tracker: &mut ResponseTracker,
    over: &mut bool,
    now: Duration,
    step: Step<'_>,
    out: &mut impl FnMut(EventKind),
) -> SseInbound {
    match step {
        Step::Answer(text) => {
            if text.is_empty() {
                return SseInbound::Nothing;
            }
            tracker.on_chunk(now, &text, &mut *out);
            SseInbound::Text
        }
        Step::Thinking(text) => {
            tracker.on_thinking(now, &text, &mut *out);
            SseInbound::Nothing
        }
        Step::Done {
            usage,
            finish_reason,
            cut,
        } => done(
            tracker,
            over,
            now,
            usage,
            finish_reason.as_deref(),
            cut,
            out,
        ),
        Step::Failed {
            kind,
            message,
            fatal,
        } => {
            *over = true;
            if let Some(failed) = tracker.fail(kind, message.clone()) {
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
        Step::Malformed(reason) => {
            out(EventKind::Malformed { reason });
            SseInbound::Nothing
        }
        Step::Unknown(frame_type) => {
            out(EventKind::UnknownFrame { frame_type });
            SseInbound::Nothing
        }
    }
}

/// The response completed at `now`, with the usage the stream reported (or an estimate).
fn done(
    tracker: &mut ResponseTracker,
    over: &mut bool,
    now: Duration,
    usage: Option<StreamUsage>,
    finish_reason: Option<&str>,
    cut: Option<String>,
    out: &mut impl FnMut(EventKind),
) -> SseInbound {
    *over = true;
    let reported = usage.map(|usage| Tokens {
        input: usage.input,
        output: usage.output,
        cached_input: usage.cached_input.min(usage.input),
        cache_write_input: usage
            .cache_write_input
            .min(usage.input.saturating_sub(usage.cached_input)),
        reasoning_output: usage.reasoning_output.min(usage.output),
        estimated: false,
    });
    let Some(mut done) = tracker.on_done(now, reported, finish_reason) else {
        return SseInbound::Nothing;
    };
    if let EventKind::Done(completed) = &mut done {
        if let Some(cut) = cut {
            // The format's reason is the truer one (an empty reply that was also cut).
            completed.cut = Some(cut);
        }
        completed.reported_cost_usd = usage.and_then(|u| u.cost_usd);
    }
    out(done);
    SseInbound::ResponseDone
}
