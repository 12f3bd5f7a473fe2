//! What an HTTP streaming protocol tells the shared HTTP half: where to check the key and
//! where to stream, its auth header, the request body in its own shape, how it classifies a
//! failed answer, where its rate-limit headers are, and its decoder: response bytes in (SSE
//! `event:` + `data:` framing), session events out, a body that ends without the protocol's
//! terminal mark answered `StreamCut`. Pure: no socket, no clock, no session.

use std::borrow::Cow;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::protocol::stream_decoder::{SseFormat, StreamDecoder};
use crate::session::tap::Wire;
use crate::session::workload::Outgoing;
use crate::session::{ErrorKind, EventKind, RequestId, SessionSpec};

/// What a piece of the response body meant for the session, beyond the events it produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseInbound {
    Nothing,
    /// Text of the response under way.
    Text,
    /// The response completed (its terminal mark, or the end of a stream that had finished).
    ResponseDone,
    /// An error event failed the response under way.
    ResponseFailed {
        kind: ErrorKind,
        message: String,
        /// The error says the key is bad, or the quota is gone: retrying cannot help.
        fatal: bool,
    },
    /// The body ended before the response finished (a broken stream).
    StreamCut,
}

impl SseInbound {
    /// The weightier of two outcomes of one batch of bytes.
    pub fn max(self, other: SseInbound) -> SseInbound {
        let weight = |i: &SseInbound| match i {
            SseInbound::Nothing => 0,
            SseInbound::Text => 1,
            _ => 2,
        };
        if weight(&other) > weight(&self) {
            other
        } else {
            self
        }
    }
}

/// What to do about a failed HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Retrying cannot help (a bad key, no quota): stop the session.
    Stop,
    /// Retry the same request after the retry delay.
    Retry,
    /// Fail this request and go on.
    Fail,
}

/// A failed HTTP answer, as the protocol reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpFailure {
    pub kind: ErrorKind,
    pub action: Action,
    /// `POST /v1/chat/completions answered 429: message (code)`.
    pub message: String,
}

impl HttpFailure {
    /// A failed answer to `what` (`POST /v1/messages`), with the error's own words when the
    /// body had them, else what the body says (`POST /v1/messages answered 529: …`).
    pub fn new(
        kind: ErrorKind,
        action: Action,
        what: &str,
        status: u16,
        detail: Option<String>,
        body: &[u8],
    ) -> Self {
        let detail = detail.unwrap_or_else(|| crate::session::connect::error_body_message(body));
        Self {
            kind,
            action,
            message: format!("{what} answered {status}: {detail}"),
        }
    }
}

/// A request in the protocol's shape: the JSON body and what `RequestSent` says.
#[derive(Clone, Debug)]
pub struct StreamRequest {
    pub body: String,
    pub model: String,
    pub prompt_tokens_estimate: u64,
}

impl StreamRequest {
    /// `body`, asking `model`, for a conversation of `messages` (the prompt's tokens
    /// estimated from them, for a relay that sends no usage).
    pub fn new(
        body: String,
        model: String,
        messages: &[crate::protocol::relay_v1::ChatMessage],
    ) -> Self {
        let chars: u64 = messages
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        Self {
            body,
            model,
            prompt_tokens_estimate: crate::session::response::estimate_tokens_from_chars(chars),
        }
    }
}

/// A protocol over the shared HTTP streaming half.
pub trait HttpStreamCodec: Send + Sync + 'static {
    /// The rules of the protocol's event stream.
    type Format: SseFormat + Sync;

    /// The check a session makes to "connect": a GET with the key (it proves the relay and
    /// the key and warms the pool; 404 and 405 count as reachable).
    fn check_url(&self) -> &str;
    /// The check's name in messages (`GET /v1/models`).
    fn check_name(&self) -> &'static str;
    /// Where requests for `model` are posted (Gemini puts the model in the path).
    fn stream_url(&self, model: &str) -> Cow<'_, str>;
    /// The request's name in messages (`POST /v1/chat/completions`).
    fn stream_name(&self) -> &'static str;
    /// What an answer answered: the check's name (`check`) or the request's.
    fn asked(&self, check: bool) -> &'static str {
        if check {
            self.check_name()
        } else {
            self.stream_name()
        }
    }
    /// The key's header in the protocol's auth style (built once, marked sensitive).
    fn auth(&self) -> Option<&(HeaderName, HeaderValue)>;
    /// Other headers every request carries (a version header, say).
    fn extra_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &[]
    }
    /// The request body for `outgoing` (the conversation in the protocol's shape).
    fn request(&self, spec: &SessionSpec, outgoing: &Outgoing) -> StreamRequest;
    /// A non-2xx answer to the check (`check: true`) or to a request.
    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8], check: bool) -> HttpFailure;
    /// The rate-limit headers of an answer, as a `RateLimitStatus`.
    fn rate_limits(&self, headers: &HeaderMap) -> Option<EventKind>;
    /// The wait after a stream's rate-limit error (the connection stays up).
    fn rate_limited_wait(&self) -> Duration {
        crate::transport::http_stream::retry::retry_delay(0, None, 0.0)
    }

    /// The decoder of the protocol's response bodies (its format on the shared decoder).
    fn decoder(&self) -> &StreamDecoder<Self::Format>;
    fn decoder_mut(&mut self) -> &mut StreamDecoder<Self::Format>;

    /// The request under way, if any (the decoder's).
    fn in_flight(&self) -> Option<RequestId> {
        self.decoder().in_flight()
    }
    /// A request went out at `now`: its number and its `RequestSent`.
    fn request_sent(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind) {
        self.decoder_mut()
            .request_sent(now, model, prompt_tokens_estimate)
    }
    /// The request under way failed for a reason outside the stream.
    fn fail(&mut self, kind: ErrorKind, reason: String) -> Option<EventKind> {
        self.decoder_mut().fail(kind, reason)
    }
    /// The user cancelled the response under way: it ends here, with an estimate.
    fn cancel<F: FnMut(EventKind)>(&mut self, now: Duration, out: &mut F) {
        self.decoder_mut().cancel(now, out);
    }
    /// Bytes of the body, received at `now`: events to `out`, what was consumed to `tap`.
    /// The hot path: borrow, never a `serde_json::Value` per event.
    fn on_bytes<F: FnMut(EventKind), T: FnMut(Wire<'_>)>(
        &mut self,
        now: Duration,
        bytes: &[u8],
        out: &mut F,
        tap: &mut T,
    ) -> SseInbound {
        self.decoder_mut().on_bytes(now, bytes, out, tap)
    }
    /// The body ended: `StreamCut` unless the terminal mark came.
    fn on_end<F: FnMut(EventKind), T: FnMut(Wire<'_>)>(
        &mut self,
        now: Duration,
        out: &mut F,
        tap: &mut T,
    ) -> SseInbound {
        self.decoder_mut().on_end(now, out, tap)
    }
}
