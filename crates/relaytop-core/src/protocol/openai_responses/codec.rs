//! openai-responses's codec for the shared HTTP streaming half. SKELETON: to be written.

use std::borrow::Cow;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::protocol::openai_responses::decode::{ResponsesDecoder, ResponsesFormat};
use crate::session::workload::Outgoing;
use crate::session::{EventKind, SessionSpec};
use crate::transport::http_stream::retry::retry_delay;
use crate::transport::http_stream::{Action, HttpFailure, HttpStreamCodec, StreamRequest};

/// One openai-responses session's codec. Survives reconnects (request numbers go on).
pub struct ResponsesCodec {
    base: String,
    decoder: ResponsesDecoder,
}

impl ResponsesCodec {
    pub fn new(spec: &SessionSpec) -> Self {
        Self {
            base: spec.info.url.clone(),
            decoder: ResponsesDecoder::new(),
        }
    }
}

impl HttpStreamCodec for ResponsesCodec {
    type Format = ResponsesFormat;

    fn check_url(&self) -> &str {
        &self.base
    }

    fn check_name(&self) -> &'static str {
        "GET /v1/models"
    }

    fn stream_url(&self, _model: &str) -> Cow<'_, str> {
        Cow::Borrowed(&self.base)
    }

    fn stream_name(&self) -> &'static str {
        "POST /v1/responses"
    }

    fn auth(&self) -> Option<&(HeaderName, HeaderValue)> {
        None
    }

    fn request(&self, spec: &SessionSpec, _outgoing: &Outgoing) -> StreamRequest {
        StreamRequest {
            body: String::new(),
            model: spec.info.model.clone(),
            prompt_tokens_estimate: 0,
        }
    }

    fn classify(
        &self,
        status: u16,
        _headers: &HeaderMap,
        _body: &[u8],
        _check: bool,
    ) -> HttpFailure {
        HttpFailure {
            kind: crate::session::ErrorKind::Other,
            action: Action::Fail,
            message: format!("answered {status}"),
        }
    }

    fn rate_limits(&self, _headers: &HeaderMap) -> Option<EventKind> {
        None
    }

    fn rate_limited_wait(&self) -> Duration {
        retry_delay(0, None, 0.0)
    }

    fn decoder(&self) -> &ResponsesDecoder {
        &self.decoder
    }

    fn decoder_mut(&mut self) -> &mut ResponsesDecoder {
        &mut self.decoder
    }
}
