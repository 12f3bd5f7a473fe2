//! relay/v1's codec for the shared WebSocket half: `chat.completion` and transcriptions out
//! (the key and `X-Model` on the upgrade), frames in through `decode::Decoder`, the
//! application `ping` (plus WebSocket Pings with `ws_ping`), `cancel`, the 429 schedule after
//! `rate_limited` error frames, and 1008 closes as final.

use std::time::Duration;

use crate::protocol::relay_v1::decode::{Decoder, Inbound};
use crate::protocol::relay_v1::{ChatMessage, ClientFrame};
use crate::session::connect::Flavor;
use crate::session::response::estimate_tokens_from_chars;
use crate::session::workload::{AudioJob, Outgoing};
use crate::session::{ErrorKind, EventKind, RequestId, SessionSpec};
use crate::transport::websocket::{Frame, HoldBack, Liveness, Reaction, Request, WebSocketCodec};

/// The largest binary frame of a transcription's audio.
const AUDIO_FRAME_BYTES: usize = 64 * 1024;

/// One relay/v1 session's codec. Survives reconnects (request numbers go on).
pub struct RelayV1Codec {
    url: String,
    decoder: Decoder,
}

impl RelayV1Codec {
    pub fn new(spec: &SessionSpec) -> Self {
        Self {
            url: spec.info.url.clone(),
            decoder: Decoder::new(),
        }
    }
}

impl WebSocketCodec for RelayV1Codec {
    fn url(&self) -> &str {
        &self.url
    }

    fn flavor(&self) -> Flavor {
        Flavor::RelayV1
    }

    fn liveness(&self) -> Liveness {
        Liveness::AppPing
    }

    fn hold_back(&self) -> HoldBack {
        HoldBack::Schedule
    }

    fn done_name(&self) -> &'static str {
        "done"
    }

    fn in_flight(&self) -> Option<RequestId> {
        self.decoder.in_flight()
    }

    fn sent_at(&self) -> Option<Duration> {
        self.decoder.sent_at()
    }

    fn request_sent(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind) {
        self.decoder
            .request_sent(now, model, prompt_tokens_estimate)
    }

    fn fail(&mut self, kind: ErrorKind, reason: String) -> Option<EventKind> {
        self.decoder.fail(kind, reason)
    }

    fn opening(&mut self, _spec: &SessionSpec) -> Vec<Frame> {
        Vec::new()
    }

    fn request(
        &mut self,
        spec: &SessionSpec,
        _history: &[ChatMessage],
        outgoing: Outgoing,
    ) -> Request {
        let prompt_chars: u64 = outgoing
            .messages
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        let model = spec.info.model.clone();
        let frame = ClientFrame::ChatCompletion {
            model: model.clone(),
            messages: outgoing.messages,
            stream: true,
            temperature: None,
            max_tokens: outgoing.max_tokens,
            id: None,
        };
        Request {
            frames: vec![Frame::Text(frame.to_text())],
            model,
            prompt_tokens_estimate: estimate_tokens_from_chars(prompt_chars),
        }
    }

    fn carries_audio(&self) -> bool {
        true
    }

    /// `audio.transcription`, the audio in binary frames of at most `AUDIO_FRAME_BYTES`, then
    /// `audio.end`. The relay answers `transcript` and `done`.
    fn transcription(&mut self, job: AudioJob) -> Request {
        let start = ClientFrame::AudioTranscription {
            model: job.model.clone(),
            stream: true,
            id: None,
        };
        let mut frames = Vec::with_capacity(job.audio.len() / AUDIO_FRAME_BYTES + 3);
        frames.push(Frame::Text(start.to_text()));
        for chunk in job.audio.chunks(AUDIO_FRAME_BYTES) {
            frames.push(Frame::Binary(chunk.to_vec()));
        }
        frames.push(Frame::Text(ClientFrame::AudioEnd.to_text()));
        Request {
            frames,
            model: job.model,
            prompt_tokens_estimate: 0,
        }
    }

    fn ping(&self) -> Option<Frame> {
        Some(Frame::Text(ClientFrame::Ping.to_text()))
    }

    fn cancel(&self) -> Frame {
        Frame::Text(ClientFrame::Cancel { id: None }.to_text())
    }

    fn on_text<F: FnMut(EventKind)>(&mut self, now: Duration, text: &str, out: &mut F) -> Reaction {
        match self.decoder.on_text(now, text, out) {
            Inbound::Nothing | Inbound::Text => Reaction::Nothing,
            Inbound::ResponseDone => Reaction::ResponseDone,
            Inbound::ResponseFailed { wait } => Reaction::ResponseFailed { wait },
            Inbound::Error { wait } => Reaction::Error { wait },
            Inbound::Pong => Reaction::Pong,
        }
    }

    fn closed_for_good(&self, code: u16, reason: &str) -> Option<String> {
        (code == 1008).then(|| {
            format!("the relay closed with 1008 (policy violation: usually the key): {reason}")
        })
    }
}
