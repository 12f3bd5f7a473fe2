//! A session seen from outside: `spawn` (which task runs it, by protocol), the `SessionHandle`
//! it returns, the `SessionCommand`s it takes, and the `RunClock` every event time counts from.
//!
//! Nothing here does I/O or decides anything about a connection; the tasks (`task`, `sse`,
//! `realtime`, on `driver`) do.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::protocol::anthropic_messages::codec::MessagesCodec;
use crate::protocol::gemini::codec::GeminiCodec;
use crate::protocol::openai_chat::codec::ChatCompletionsCodec;
use crate::protocol::openai_realtime::codec::RealtimeCodec;
use crate::protocol::openai_responses::codec::ResponsesCodec;
use crate::protocol::relay_v1::codec::RelayV1Codec;
use crate::session::event::micros;
use crate::session::{Protocol, SessionId, SessionSpec};
use crate::transport::{http_stream, websocket};

/// What a session can be asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionCommand {
    /// Send a chat turn (chat sessions); queued while disconnected.
    Chat { text: String },
    /// Send one request now (any workload): queued like chat turns, sent before the session's
    /// own requests, and never added to a chat history. The canary routes its probes so.
    Send {
        prompt: String,
        max_tokens: Option<u32>,
    },
    /// Send one request of several messages now, like `Send` (a recorded chat turn with its
    /// conversation, re-sent by `replay --against`).
    SendMessages {
        messages: Vec<crate::protocol::relay_v1::ChatMessage>,
        max_tokens: Option<u32>,
    },
    /// Transcribe this audio (relay/v1 `audio.transcription`: the audio goes as binary frames,
    /// then `audio.end`); queued while disconnected. Other protocols refuse it with an error.
    Transcribe { audio: Vec<u8>, model: String },
    /// Use this model for the requests from now on.
    SetModel { model: String },
    /// A chat's system prompt from its next turn on (`None` removes it).
    SetSystem { text: Option<String> },
    /// Forget a chat's history (the turns waiting to be sent stay).
    ClearHistory,
    /// Send a chat's last turn again, when its reply was cut (a drop, an error, a timeout).
    Retry,
    /// Stop the response under way (relay/v1 `cancel`).
    Cancel,
    /// Close the connection and connect again at once, without backoff.
    ReconnectNow,
    /// Close the connection (code 1000) and end the session.
    Close,
}

/// The run's monotonic clock: every event time is an offset from its start.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Time since the run started, in whole microseconds (the unit of every event time), so
    /// that a replay computing from recorded times gets exactly what the live run got.
    pub fn now(&self) -> Duration {
        Duration::from_micros(micros(self.start.elapsed()))
    }

    /// The instant at offset `at` (for timers).
    pub fn instant_at(&self, at: Duration) -> Instant {
        self.start.checked_add(at).unwrap_or_else(far_future)
    }
}

impl Default for RunClock {
    fn default() -> Self {
        Self::new()
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// A running session: its command channel and its task.
#[derive(Debug)]
pub struct SessionHandle {
    pub id: SessionId,
    pub commands: mpsc::Sender<SessionCommand>,
    pub task: JoinHandle<()>,
}

/// Starts a session task for the session's protocol. It reports on `events` until it stops,
/// is closed, or `events` has no receiver any more.
pub fn spawn(
    spec: SessionSpec,
    clock: RunClock,
    events: crate::session::EventSender,
) -> SessionHandle {
    // Each protocol is a codec on one of the two transports; they all report the same events.
    match spec.info.protocol {
        Protocol::RelayV1 => {
            let codec = RelayV1Codec::new(&spec);
            websocket::serve::spawn(spec, clock, events, codec)
        }
        Protocol::OpenaiSse => {
            let codec = ChatCompletionsCodec::new(&spec);
            http_stream::serve::spawn(spec, clock, events, codec)
        }
        Protocol::OpenaiRealtime => {
            let codec = RealtimeCodec::new(&spec);
            websocket::serve::spawn(spec, clock, events, codec)
        }
        Protocol::AnthropicMessages => {
            let codec = MessagesCodec::new(&spec);
            http_stream::serve::spawn(spec, clock, events, codec)
        }
        Protocol::OpenaiResponses => {
            let codec = ResponsesCodec::new(&spec);
            http_stream::serve::spawn(spec, clock, events, codec)
        }
        Protocol::Gemini => {
            let codec = GeminiCodec::new(&spec);
            http_stream::serve::spawn(spec, clock, events, codec)
        }
    }
}

/// An HTTP streaming protocol's check request, as its codec makes it: the URL, its name in
/// messages, and the headers (the key's among them, marked sensitive). `relaytop check` and
/// `relaytop URL` ask a relay exactly what a session would.
#[derive(Clone, Debug)]
pub struct HttpCheck {
    /// May hold a key (Gemini's `?key=`): show `shown_url`, never this.
    pub url: String,
    pub name: &'static str,
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
}

impl HttpCheck {
    /// The URL without its query (where a key may travel), for messages.
    pub fn shown_url(&self) -> &str {
        self.url.split('?').next().unwrap_or_default()
    }
}

/// A failed answer read as `spec`'s protocol reads it (a bad key that Google answers 400,
/// Anthropic's error shape, new-api's words); `None` for the WebSocket protocols.
pub fn http_classify(
    spec: &SessionSpec,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    check: bool,
) -> Option<crate::transport::http_stream::HttpFailure> {
    use crate::transport::http_stream::HttpStreamCodec;
    match spec.info.protocol {
        Protocol::RelayV1 | Protocol::OpenaiRealtime => None,
        Protocol::OpenaiSse => {
            Some(ChatCompletionsCodec::new(spec).classify(status, headers, body, check))
        }
        Protocol::AnthropicMessages => {
            Some(MessagesCodec::new(spec).classify(status, headers, body, check))
        }
        Protocol::OpenaiResponses => {
            Some(ResponsesCodec::new(spec).classify(status, headers, body, check))
        }
        Protocol::Gemini => Some(GeminiCodec::new(spec).classify(status, headers, body, check)),
    }
}

/// The check request of `spec`'s protocol; `None` for the WebSocket protocols.
pub fn http_check(spec: &SessionSpec) -> Option<HttpCheck> {
    use crate::transport::http_stream::HttpStreamCodec;
    fn of<C: HttpStreamCodec>(codec: C) -> HttpCheck {
        HttpCheck {
            url: codec.check_url().to_owned(),
            name: codec.check_name(),
            headers: codec
                .auth()
                .into_iter()
                .cloned()
                .chain(codec.extra_headers().iter().cloned())
                .collect(),
        }
    }
    match spec.info.protocol {
        Protocol::RelayV1 | Protocol::OpenaiRealtime => None,
        Protocol::OpenaiSse => Some(of(ChatCompletionsCodec::new(spec))),
        Protocol::AnthropicMessages => Some(of(MessagesCodec::new(spec))),
        Protocol::OpenaiResponses => Some(of(ResponsesCodec::new(spec))),
        Protocol::Gemini => Some(of(GeminiCodec::new(spec))),
    }
}
