//! What a WebSocket protocol tells the shared half: how to upgrade, how liveness works, the
//! frames of a request, a cancel and a ping, what a received frame meant (`Reaction`), and
//! which closes are for good. A codec holds its protocol's decoder and per-connection state;
//! it never touches the socket, the clock or the session: the shared half (`serve`) does.

use std::time::Duration;

use crate::protocol::relay_v1::ChatMessage;
use crate::session::connect::Flavor;
use crate::session::ratelimit::SlowDown;
use crate::session::workload::{AudioJob, Outgoing};
use crate::session::{ErrorKind, EventKind, RequestId, SessionSpec};

/// One frame to send. The shared half shows it to the tap as it goes out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// A request in the protocol's shape: its frames, in order, and what `RequestSent` says.
#[derive(Clone, Debug)]
pub struct Request {
    pub frames: Vec<Frame>,
    pub model: String,
    pub prompt_tokens_estimate: u64,
}

/// How the protocol proves the peer is alive (the `Heartbeat` state machine says when).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// An application ping (`WebSocketCodec::ping`), answered by a pong the decoder reads
    /// (`Reaction::Pong`); plus a WebSocket Ping when `ws_ping` is on.
    AppPing,
    /// WebSocket Ping only; the Pong frame is the round trip.
    WebSocketPing,
}

/// How the session waits when the peer asks it to slow down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldBack {
    /// A rate limit follows the 1, 2, 4, 8, 16 s schedule (`retry_after` wins) and gives up
    /// after 5 retries, dropping the one-shot requests waiting; an overload waits as asked.
    Schedule,
    /// Every slow-down waits as asked (or a second).
    AsAsked,
}

/// What a frame from the peer meant for the session, beyond the events the decoder produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reaction {
    Nothing,
    /// An application pong (`Liveness::AppPing`).
    Pong,
    /// The response under way is over (completed, cancelled, incomplete).
    ResponseDone,
    /// The response under way failed; `wait` when the peer asked to slow down.
    ResponseFailed {
        wait: Option<SlowDown>,
    },
    /// An error with no response under way; `wait` as above.
    Error {
        wait: Option<SlowDown>,
    },
    /// Retrying cannot help (a bad key): close and stop the session with `verdict`.
    Fatal {
        reason: String,
        verdict: String,
    },
}

/// A protocol over the shared WebSocket half.
pub trait WebSocketCodec: Send + Sync + 'static {
    /// The URL to upgrade.
    fn url(&self) -> &str;
    /// The upgrade's headers (its auth style).
    fn flavor(&self) -> Flavor;
    fn liveness(&self) -> Liveness;
    fn hold_back(&self) -> HoldBack;
    /// The name of the frame that ends a response (the response timeout's message).
    fn done_name(&self) -> &'static str;

    /// The request under way, if any (the decoder's).
    fn in_flight(&self) -> Option<RequestId>;
    /// When the request under way was sent.
    fn sent_at(&self) -> Option<Duration>;
    /// The request's frames all went out at `now`: its number and its `RequestSent`.
    fn request_sent(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind);
    /// The request under way failed for a reason outside the frames (a drop, a timeout).
    fn fail(&mut self, kind: ErrorKind, reason: String) -> Option<EventKind>;

    /// A connection is up: the frames to send before anything else (per-connection state
    /// starts over here).
    fn opening(&mut self, spec: &SessionSpec) -> Vec<Frame>;
    /// A chat request (a probe, a one-shot or a chat turn with the chat's `history`).
    fn request(
        &mut self,
        spec: &SessionSpec,
        history: &[ChatMessage],
        outgoing: Outgoing,
    ) -> Request;
    /// Whether it carries transcriptions (`audio`); `transcription` is asked only then.
    fn carries_audio(&self) -> bool {
        false
    }
    fn transcription(&mut self, job: AudioJob) -> Request {
        Request {
            frames: Vec::new(),
            model: job.model,
            prompt_tokens_estimate: 0,
        }
    }
    /// Every frame of the request from `request` went out.
    fn request_out(&mut self) {}
    /// The application ping (`Liveness::AppPing`).
    fn ping(&self) -> Option<Frame> {
        None
    }
    /// The frame that cancels the response under way.
    fn cancel(&self) -> Frame;

    /// Whether a binary frame holds text to decode (else it is counted as unknown).
    fn binary_is_text(&self) -> bool {
        false
    }
    /// A text frame received at `now`; its events go to `out`. The hot path: borrow.
    fn on_text<F: FnMut(EventKind)>(&mut self, now: Duration, text: &str, out: &mut F) -> Reaction;
    /// The response under way is over (`done`: it completed): frames to send after it.
    fn response_over(&mut self, _done: bool) -> Vec<Frame> {
        Vec::new()
    }
    /// The peer closed with `code`: `Some(verdict)` when retrying cannot help.
    fn closed_for_good(&self, code: u16, reason: &str) -> Option<String>;
}
