//! The replay's decoders: each session's recorded frames back into the events they meant,
//! through the protocol's own decoder (`crate::protocol`), the same code the live session
//! ran. A new protocol adds its arm here.

use std::time::Duration;

use crate::protocol::anthropic_messages::decode::MessagesFormat;
use crate::protocol::gemini::decode::GeminiFormat;
use crate::protocol::openai_chat::decode::ChatFormat;
use crate::protocol::openai_realtime::decode::RealtimeDecoder;
use crate::protocol::openai_responses::decode::ResponsesFormat;
use crate::protocol::relay_v1::decode::Decoder;
use crate::protocol::stream_decoder::{SseFormat, StreamDecoder};
use crate::record::format::{Dir, Entry};
use crate::session::{ErrorKind, EventKind, Protocol, RequestId};

/// What turns a session's recorded frames back into the events they meant: the live code,
/// one decoder per protocol (`Clone`, for checkpoints).
#[derive(Clone, Debug)]
pub(super) enum ProtocolDecoder {
    RelayV1(Decoder),
    Realtime(RealtimeDecoder),
    Chat(StreamDecoder<ChatFormat>),
    Messages(StreamDecoder<MessagesFormat>),
    Responses(StreamDecoder<ResponsesFormat>),
    Gemini(StreamDecoder<GeminiFormat>),
}

/// The recorded lines of an HTTP streaming body, back through the format's decoder.
fn on_stream_line<F: SseFormat>(
    d: &mut StreamDecoder<F>,
    at: Duration,
    entry: &Entry,
    out: &mut impl FnMut(EventKind),
) {
    match entry {
        Entry::SseEvent { event, data } => {
            d.on_event(at, Some(event), data, out);
        }
        Entry::SseRefused { reason } => d.on_refused(reason, out),
        Entry::BodyEnd => {
            d.on_body_end(at, out);
        }
        // An unnamed event's data.
        Entry::Text {
            dir: Dir::FromRelay,
            text,
        } => {
            d.on_event(at, None, text, out);
        }
        _ => {}
    }
}

impl ProtocolDecoder {
    pub(super) fn for_protocol(protocol: Protocol) -> Self {
        match protocol {
            Protocol::RelayV1 => ProtocolDecoder::RelayV1(Decoder::new()),
            Protocol::OpenaiRealtime => ProtocolDecoder::Realtime(RealtimeDecoder::new()),
            Protocol::OpenaiSse => ProtocolDecoder::Chat(StreamDecoder::new()),
            Protocol::AnthropicMessages => ProtocolDecoder::Messages(StreamDecoder::new()),
            Protocol::OpenaiResponses => ProtocolDecoder::Responses(StreamDecoder::new()),
            Protocol::Gemini => ProtocolDecoder::Gemini(StreamDecoder::new()),
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
            ProtocolDecoder::Chat(d) => on_stream_line(d, at, entry, out),
            ProtocolDecoder::Messages(d) => on_stream_line(d, at, entry, out),
            ProtocolDecoder::Responses(d) => on_stream_line(d, at, entry, out),
            ProtocolDecoder::Gemini(d) => on_stream_line(d, at, entry, out),
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
            ProtocolDecoder::Realtime(d) => d.request_sent(at, model, prompt_tokens).0,
            ProtocolDecoder::Chat(d) => d.request_sent(at, model, prompt_tokens).0,
            ProtocolDecoder::Messages(d) => d.request_sent(at, model, prompt_tokens).0,
            ProtocolDecoder::Responses(d) => d.request_sent(at, model, prompt_tokens).0,
            ProtocolDecoder::Gemini(d) => d.request_sent(at, model, prompt_tokens).0,
        }
    }

    /// The session reported the end of the request under way itself (it failed, or it was
    /// cancelled): the decoder's copy is dropped.
    pub(super) fn end_request(&mut self, kind: ErrorKind, reason: &str) {
        let _ = match self {
            ProtocolDecoder::RelayV1(d) => d.fail(kind, reason),
            ProtocolDecoder::Realtime(d) => d.fail(kind, reason),
            ProtocolDecoder::Chat(d) => d.fail(kind, reason),
            ProtocolDecoder::Messages(d) => d.fail(kind, reason),
            ProtocolDecoder::Responses(d) => d.fail(kind, reason),
            ProtocolDecoder::Gemini(d) => d.fail(kind, reason),
        };
    }
}
