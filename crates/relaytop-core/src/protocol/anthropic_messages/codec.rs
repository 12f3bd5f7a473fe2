//! anthropic-messages's codec for the shared HTTP streaming half. SKELETON: to be written.

use std::borrow::Cow;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::protocol::anthropic_messages::decode::{MessagesDecoder, MessagesFormat};
use crate::session::workload::Outgoing;
use crate::session::{EventKind, SessionSpec};
use crate::transport::http_stream::retry::retry_delay;
use crate::transport::http_stream::{Action, HttpFailure, HttpStreamCodec, StreamRequest};

/// One anthropic-messages session's codec. Survives reconnects (request numbers go on).
pub struct MessagesCodec {
    base: String,
    decoder: MessagesDecoder,
}

impl MessagesCodec {
    pub fn new(spec: &SessionSpec) -> Self {
        Self {
            base: spec.info.url.clone(),
            decoder: MessagesDecoder::new(),
        }
    }
}

impl HttpStreamCodec for MessagesCodec {
    type Format = MessagesFormat;

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
        "POST /v1/messages"
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

    fn decoder(&self) -> &MessagesDecoder {
        &self.decoder
    }

    fn decoder_mut(&mut self) -> &mut MessagesDecoder {
        &mut self.decoder
    }
}
