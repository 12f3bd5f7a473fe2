//! gemini's codec for the shared HTTP streaming half: `GET {root}/models` as the check,
//! `POST {root}/models/{model}:streamGenerateContent?alt=sse` with the key as
//! `x-goog-api-key` (or `?key=`, `Authorization: Bearer`, `x-api-key` when a relay wants
//! it), a `GenerateContentRequest` body, Google's error bodies classified (a bad key is
//! Google's 400 `API_KEY_INVALID`: stop), relays' `x-ratelimit-*` headers, and the body
//! through `GeminiDecoder` (no terminal mark: a stream that closes after a `finishReason` is
//! done). The key never appears in a name or a message this codec makes.

use std::borrow::Cow;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::secret::{REDACTED, Secret};
use crate::protocol::gemini::decode::{GeminiDecoder, GeminiFormat};
use crate::protocol::gemini::wire;
use crate::protocol::gemini::wire::{
    ErrorMeaning, GenerateContentRequest, key_query, models_url, parse_error_body, stream_url,
};
use crate::protocol::openai_chat::policy::rate_limit_event;
use crate::session::connect::{error_body_message, status_kind};
use crate::session::workload::Outgoing;
use crate::session::{AuthStyle, ErrorKind, EventKind, SessionSpec};
use crate::transport::http_stream::{Action, HttpFailure, HttpStreamCodec, StreamRequest};

/// The check's name in messages (never the URL: it may hold the key).
pub const CHECK_NAME: &str = "GET /v1beta/models";
/// The request's name in messages (never the URL: it may hold the key).
pub const STREAM_NAME: &str = "POST /v1beta/models/…:streamGenerateContent";

/// One gemini session's codec. Survives reconnects (request numbers go on).
pub struct GeminiCodec {
    base: String,
    /// `key=…` when the key travels in the URL (`AuthStyle::Query`).
    key_query: Option<String>,
    models_url: String,
    /// The configured model and its stream URL (other models build theirs).
    model: String,
    model_url: String,
    /// The key's header (`x-goog-api-key` natively), marked sensitive; built once.
    auth: Option<(HeaderName, HeaderValue)>,
    /// The key, to scrub from any message a relay might echo it in.
    key: Option<Secret>,
    /// The key as the URL carries it (percent-encoded), when that differs.
    encoded_key: Option<String>,
    decoder: GeminiDecoder,
}

impl GeminiCodec {
    pub fn new(spec: &SessionSpec) -> Self {
        let key = spec
            .api_key
            .as_ref()
            .filter(|k| !k.expose().is_empty())
            .cloned();
        let header = |name: HeaderName, value: String| {
            let mut value = HeaderValue::from_str(&value).ok()?;
            value.set_sensitive(true);
            Some((name, value))
        };
        let (auth, key_query) = match (&key, spec.auth) {
            (None, _) => (None, None),
            (Some(key), AuthStyle::Query) => (None, Some(key_query(key.expose()))),
            (Some(key), AuthStyle::Bearer) => (
                header(header::AUTHORIZATION, format!("Bearer {}", key.expose())),
                None,
            ),
            (Some(key), AuthStyle::XApiKey) => (
                header(
                    HeaderName::from_static("x-api-key"),
                    key.expose().to_owned(),
                ),
                None,
            ),
            (Some(key), AuthStyle::Native | AuthStyle::XGoogApiKey) => (
                header(
                    HeaderName::from_static("x-goog-api-key"),
                    key.expose().to_owned(),
                ),
                None,
            ),
        };
        let base = spec.info.url.clone();
        let model = spec.info.model.clone();
        Self {
            models_url: models_url(&base, key_query.as_deref()),
            model_url: stream_url(&base, &model, key_query.as_deref()),
            base,
            encoded_key: key.as_ref().and_then(|k| {
                let encoded = wire::key_query(k.expose());
                let encoded = encoded.strip_prefix("key=").unwrap_or_default();
                (encoded != k.expose()).then(|| encoded.to_owned())
            }),
            key_query,
            model,
            auth,
            key,
            decoder: GeminiDecoder::new(),
        }
    }

    /// `text` with the key (and its URL-encoded form) replaced by `[REDACTED]`.
    fn scrub(&self, text: String) -> String {
        let Some(key) = &self.key else {
            return text;
        };
        let text = key.redact(&text).into_owned();
        match &self.encoded_key {
            Some(encoded) if text.contains(encoded.as_str()) => {
                text.replace(encoded.as_str(), REDACTED)
            }
            _ => text,
        }
    }
}

impl HttpStreamCodec for GeminiCodec {
    type Format = GeminiFormat;

    fn check_url(&self) -> &str {
        &self.models_url
    }

    fn check_name(&self) -> &'static str {
        CHECK_NAME
    }

    fn stream_url(&self, model: &str) -> Cow<'_, str> {
        if model == self.model {
            Cow::Borrowed(&self.model_url)
        } else {
            Cow::Owned(stream_url(&self.base, model, self.key_query.as_deref()))
        }
    }

    fn stream_name(&self) -> &'static str {
        STREAM_NAME
    }

    fn auth(&self) -> Option<&(HeaderName, HeaderValue)> {
        self.auth.as_ref()
    }

    fn request(&self, spec: &SessionSpec, outgoing: &Outgoing) -> StreamRequest {
        StreamRequest::new(
            GenerateContentRequest::new(&outgoing.messages, outgoing.max_tokens).to_json(),
            spec.info.model.clone(),
            &outgoing.messages,
        )
    }

    fn classify(&self, status: u16, _headers: &HeaderMap, body: &[u8], check: bool) -> HttpFailure {
        // Scrubbed before it is read: no message cut can leave a piece of the key.
        let body = match std::str::from_utf8(body) {
            Ok(text) if self.key.is_some() => Cow::Owned(self.scrub(text.to_owned()).into_bytes()),
            _ => Cow::Borrowed(body),
        };
        let body = body.as_ref();
        let error = parse_error_body(body);
        let (kind, action) = classify(status, error.as_ref().map(|e| e.meaning()));
        let what = if check { CHECK_NAME } else { STREAM_NAME };
        let detail = match &error {
            Some(error) => error.summary(),
            None => error_body_message(body),
        };
        HttpFailure {
            kind,
            action,
            message: self.scrub(format!("{what} answered {status}: {detail}")),
        }
    }

    fn rate_limits(&self, headers: &HeaderMap) -> Option<EventKind> {
        rate_limit_event(headers)
    }

    fn decoder(&self) -> &GeminiDecoder {
        &self.decoder
    }

    fn decoder_mut(&mut self) -> &mut GeminiDecoder {
        &mut self.decoder
    }
}

/// Classifies a non-2xx answer by its status and what its error body means: a bad key (401,
/// 403, or Google's 400 `API_KEY_INVALID`) and a relay's exhausted quota stop the session;
/// 408, 429 and 5xx are retried; other 4xx fail the request.
pub fn classify(status: u16, meaning: Option<ErrorMeaning>) -> (ErrorKind, Action) {
    match meaning {
        Some(ErrorMeaning::BadKey) => return (ErrorKind::Auth, Action::Stop),
        Some(ErrorMeaning::NoQuota) => return (ErrorKind::RateLimited, Action::Stop),
        _ => {}
    }
    if matches!(status, 401 | 403) {
        return (ErrorKind::Auth, Action::Stop);
    }
    let kind = match (status, meaning) {
        (429, _) | (_, Some(ErrorMeaning::RateLimited)) => ErrorKind::RateLimited,
        (503, _) | (_, Some(ErrorMeaning::Overloaded)) => ErrorKind::Overloaded,
        _ => status_kind(status),
    };
    let action = if matches!(status, 408 | 409 | 429 | 500..=599) {
        Action::Retry
    } else {
        Action::Fail
    };
    (kind, action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_policy() {
        assert_eq!(classify(401, None), (ErrorKind::Auth, Action::Stop));
        assert_eq!(classify(403, None), (ErrorKind::Auth, Action::Stop));
        assert_eq!(
            classify(400, Some(ErrorMeaning::BadKey)),
            (ErrorKind::Auth, Action::Stop)
        );
        assert_eq!(
            classify(400, Some(ErrorMeaning::InvalidRequest)),
            (ErrorKind::InvalidRequest, Action::Fail)
        );
        assert_eq!(classify(429, None), (ErrorKind::RateLimited, Action::Retry));
        assert_eq!(
            classify(429, Some(ErrorMeaning::NoQuota)),
            (ErrorKind::RateLimited, Action::Stop)
        );
        assert_eq!(classify(503, None), (ErrorKind::Overloaded, Action::Retry));
        assert_eq!(
            classify(500, Some(ErrorMeaning::Overloaded)),
            (ErrorKind::Overloaded, Action::Retry)
        );
        assert_eq!(classify(500, None), (ErrorKind::Upstream, Action::Retry));
        assert_eq!(classify(504, None), (ErrorKind::Upstream, Action::Retry));
        assert_eq!(
            classify(404, None),
            (ErrorKind::InvalidRequest, Action::Fail)
        );
    }
}
