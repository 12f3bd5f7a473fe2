//! openai-sse's codec for the shared HTTP streaming half: `GET /v1/models` as the check,
//! `POST /v1/chat/completions` with `Authorization: Bearer KEY` and a streamed Chat
//! Completions body, answers classified by the reference client policy (`policy`), the
//! `x-ratelimit-*` headers, and the body through `SseDecoder` (`[DONE]` is the terminal mark).

use std::borrow::Cow;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::protocol::openai_chat::decode::{ChatFormat, SseDecoder};
use crate::protocol::openai_chat::policy::{classify, rate_limit_event, should_retry};
use crate::protocol::openai_chat::{
    ApiError, ChatRequest, chat_completions_url, models_url, parse_error_body,
};
use crate::session::response::estimate_tokens_from_chars;
use crate::session::workload::Outgoing;
use crate::session::{EventKind, SessionSpec};
use crate::transport::http_stream::retry::retry_delay;
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
        let prompt_chars: u64 = outgoing
            .messages
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        let model = spec.info.model.clone();
        let body =
            ChatRequest::streamed(&model, outgoing.messages.clone(), outgoing.max_tokens).to_json();
        StreamRequest {
            body,
            model,
            prompt_tokens_estimate: estimate_tokens_from_chars(prompt_chars),
        }
    }

    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8], check: bool) -> HttpFailure {
        let error = parse_error_body(body);
        let (kind, action) = classify(status, error.as_ref(), should_retry(headers));
        let what = if check {
            self.check_name()
        } else {
            self.stream_name()
        };
        HttpFailure {
            kind,
            action,
            message: http_failure_message(what, status, error.as_ref(), body),
        }
    }

    fn rate_limits(&self, headers: &HeaderMap) -> Option<EventKind> {
        rate_limit_event(headers)
    }

    fn rate_limited_wait(&self) -> Duration {
        retry_delay(0, None, 0.0)
    }

    fn decoder(&self) -> &SseDecoder {
        &self.decoder
    }

    fn decoder_mut(&mut self) -> &mut SseDecoder {
        &mut self.decoder
    }
}

/// `POST /v1/chat/completions answered 429: message (code)`.
fn http_failure_message(
    what: &str,
    status: u16,
    error: Option<&ApiError<'_>>,
    body: &[u8],
) -> String {
    let detail = match error {
        Some(error) => error.summary(),
        None => crate::session::connect::error_body_message(body),
    };
    format!("{what} answered {status}: {detail}")
}
