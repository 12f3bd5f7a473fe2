//! The replay's decoders: each session's recorded frames back into the events they meant,
//! through the protocol's own decoder (`crate::protocol`), the same code the live session
//! ran. A new protocol adds its arm here.

use std::time::Duration;

use crate::protocol::openai_chat::decode::SseDecoder;
use crate::protocol::openai_realtime::decode::RealtimeDecoder;
use crate::protocol::relay_v1::decode::Decoder;
use crate::record::format::{Dir, Entry};
use crate::session::{ErrorKind, EventKind, Protocol, RequestId};

/// What turns a session's recorded frames back into the events they meant: the live code,
/// one decoder per protocol (`Clone`, for checkpoints).
#[derive(Clone, Debug)]
pub(super) enum ProtocolDecoder {
    RelayV1(Decoder),
    Sse(SseDecoder),
    Realtime(RealtimeDecoder),
}

impl ProtocolDecoder {
    pub(super) fn for_protocol(protocol: Protocol) -> Self {
        match protocol {
            Protocol::RelayV1 => ProtocolDecoder::RelayV1(Decoder::new()),
            Protocol::OpenaiSse => ProtocolDecoder::Sse(SseDecoder::new()),
            Protocol::OpenaiRealtime => ProtocolDecoder::Realtime(RealtimeDecoder::new()),
        }
    }

    /// A line of what the relay sent at `at`, as the live decoder consumed it: its events go
    /// to `out`. Lines the decoder did not consume (frames to the relay, upgrades, closes,
    /// binary frames) make nothing here.
    pub(super) fn on_line(&mut self, at: Duration, entry: &Entry, out: &mut impl FnMut(EventKind)) {
        let text = match entry {
            Entry::Text {
                dir: Dir::FromRelay,
                text,
            } => Some(text.as_str()),
            _ => None,
        };
        match self {
            ProtocolDecoder::RelayV1(d) => {
                if let Some(text) = text {
                    d.on_text(at, text, out);
                }
            }
            ProtocolDecoder::Realtime(d) => {
                if let Some(text) = text {
                    d.on_text(at, text, out);
                }
            }
            ProtocolDecoder::Sse(d) => match entry {
                Entry::SseEvent { event, data } => {
                    d.on_event(at, Some(event), data, out);
                }
                Entry::SseRefused { reason } => d.on_refused(reason, out),
                Entry::BodyEnd => {
                    d.on_body_end(at, out);
                }
                // An unnamed event's data.
                _ => {
                    if let Some(data) = text {
                        d.on_event(at, None, data, out);
                    }
                }
            },
        }
    }

    /// A request went out (as the session reported it): the number the decoder gives it.
    pub(super) fn request_sent(
        &mut self,
        at: Duration,
        model: &str,
        prompt_tokens: u64,
    ) -> RequestId {
        match self {
            ProtocolDecoder::RelayV1(d) => d.request_sent(at, model, prompt_tokens).0,
            ProtocolDecoder::Sse(d) => d.request_sent(at, model, prompt_tokens).0,
            ProtocolDecoder::Realtime(d) => d.request_sent(at, model, prompt_tokens).0,
        }
    }

    /// The session reported the end of the request under way itself (it failed, or it was
    /// cancelled): the decoder's copy is dropped.
    pub(super) fn end_request(&mut self, kind: ErrorKind, reason: &str) {
        let _ = match self {
            ProtocolDecoder::RelayV1(d) => d.fail(kind, reason),
            ProtocolDecoder::Sse(d) => d.fail(kind, reason),
            ProtocolDecoder::Realtime(d) => d.fail(kind, reason),
        };
    }
}
