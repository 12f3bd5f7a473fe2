//! openai-sse's codec for the shared HTTP streaming half: `GET /v1/models` as the check,
//! `POST /v1/chat/completions` with `Authorization: Bearer KEY` and a streamed Chat
//! Completions body, answers classified by the reference client policy (`policy`), the
//! `x-ratelimit-*` headers, and the body through `SseDecoder` (`[DONE]` is the terminal mark).

use std::borrow::Cow;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::protocol::openai_chat::decode::{ChatFormat, SseDecoder};
use crate::protocol::openai_chat::policy::{classify_answer, rate_limit_event};
use crate::protocol::openai_chat::{ChatRequest, chat_completions_url, models_url};
use crate::session::workload::Outgoing;
use crate::session::{EventKind, SessionSpec};
use crate::transport::http_stream::{HttpFailure, HttpStreamCodec, StreamRequest};

/// One openai-sse session's codec. Survives reconnects (request numbers go on).
pub struct ChatCompletionsCodec {
    chat_url: String,
    models_url: String,
    /// `Authorization: Bearer KEY`, marked sensitive; built once.
    authorization: Option<(HeaderName, HeaderValue)>,
    decoder: SseDecoder,
}

impl ChatCompletionsCodec {
    pub fn new(spec: &SessionSpec) -> Self {
        let authorization = spec.api_key.as_ref().and_then(|key| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
            value.set_sensitive(true);
            Some((header::AUTHORIZATION, value))
        });
        Self {
            chat_url: chat_completions_url(&spec.info.url),
            models_url: models_url(&spec.info.url),
            authorization,
            decoder: SseDecoder::new(),
        }
    }
}

impl HttpStreamCodec for ChatCompletionsCodec {
    type Format = ChatFormat;

    fn check_url(&self) -> &str {
        &self.models_url
    }

    fn check_name(&self) -> &'static str {
        "GET /v1/models"
    }

    fn stream_url(&self, _model: &str) -> Cow<'_, str> {
        Cow::Borrowed(&self.chat_url)
    }

    fn stream_name(&self) -> &'static str {
        "POST /v1/chat/completions"
    }

    fn auth(&self) -> Option<&(HeaderName, HeaderValue)> {
        self.authorization.as_ref()
    }

    fn request(&self, spec: &SessionSpec, outgoing: &Outgoing) -> StreamRequest {
        let model = spec.info.model.clone();
        let body =
            ChatRequest::streamed(&model, outgoing.messages.clone(), outgoing.max_tokens).to_json();
        StreamRequest::new(body, model, &outgoing.messages)
    }

    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8], check: bool) -> HttpFailure {
        classify_answer(self.asked(check), status, headers, body)
    }

    fn rate_limits(&self, headers: &HeaderMap) -> Option<EventKind> {
        rate_limit_event(headers)
    }

    fn decoder(&self) -> &SseDecoder {
        &self.decoder
    }

    fn decoder_mut(&mut self) -> &mut SseDecoder {
        &mut self.decoder
    }
}
