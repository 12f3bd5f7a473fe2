//! openai-responses's codec for the shared HTTP streaming half: `GET /v1/models` as the
//! check, `POST /v1/responses` with `Authorization: Bearer KEY` (or the configured auth
//! style) and a streamed, unstored Responses body, answers classified as Chat Completions
//! answers are (`openai_chat::policy`: the same error bodies, `x-should-retry`, the
//! `x-ratelimit-*` headers), and the body through `ResponsesDecoder` (one terminal event).

use std::borrow::Cow;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::protocol::openai_chat::policy::{classify_answer, rate_limit_event};
use crate::protocol::openai_responses::decode::{ResponsesDecoder, ResponsesFormat};
use crate::protocol::openai_responses::wire::{ResponsesRequest, models_url, responses_url};
use crate::session::workload::Outgoing;
use crate::session::{AuthStyle, EventKind, SessionSpec};
use crate::transport::http_stream::{HttpFailure, HttpStreamCodec, StreamRequest};

/// One openai-responses session's codec. Survives reconnects (request numbers go on).
pub struct ResponsesCodec {
    responses_url: String,
    models_url: String,
    /// The key's header, marked sensitive; built once.
    authorization: Option<(HeaderName, HeaderValue)>,
    decoder: ResponsesDecoder,
}

impl ResponsesCodec {
    pub fn new(spec: &SessionSpec) -> Self {
        let authorization = spec.api_key.as_ref().and_then(|key| {
            let key = key.expose();
            let (name, value) = match spec.auth {
                // A key in the URL is not a Responses way: Bearer.
                AuthStyle::Native | AuthStyle::Bearer | AuthStyle::Query => {
                    (header::AUTHORIZATION, format!("Bearer {key}"))
                }
                AuthStyle::XApiKey => (HeaderName::from_static("x-api-key"), key.to_owned()),
                AuthStyle::XGoogApiKey => {
                    (HeaderName::from_static("x-goog-api-key"), key.to_owned())
                }
            };
            let mut value = HeaderValue::from_str(&value).ok()?;
            value.set_sensitive(true);
            Some((name, value))
        });
        Self {
            responses_url: responses_url(&spec.info.url),
            models_url: models_url(&spec.info.url),
            authorization,
            decoder: ResponsesDecoder::new(),
        }
    }
}

impl HttpStreamCodec for ResponsesCodec {
    type Format = ResponsesFormat;

    fn check_url(&self) -> &str {
        &self.models_url
    }

    fn check_name(&self) -> &'static str {
        "GET /v1/models"
    }

    fn stream_url(&self, _model: &str) -> Cow<'_, str> {
        Cow::Borrowed(&self.responses_url)
    }

    fn stream_name(&self) -> &'static str {
        "POST /v1/responses"
    }

    fn auth(&self) -> Option<&(HeaderName, HeaderValue)> {
        self.authorization.as_ref()
    }

    fn request(&self, spec: &SessionSpec, outgoing: &Outgoing) -> StreamRequest {
        let model = spec.info.model.clone();
        let body =
            ResponsesRequest::streamed(&model, &outgoing.messages, outgoing.max_tokens).to_json();
        StreamRequest::new(body, model, &outgoing.messages)
    }

    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8], check: bool) -> HttpFailure {
        classify_answer(self.asked(check), status, headers, body)
    }

    fn rate_limits(&self, headers: &HeaderMap) -> Option<EventKind> {
        rate_limit_event(headers)
    }

    fn decoder(&self) -> &ResponsesDecoder {
        &self.decoder
    }

    fn decoder_mut(&mut self) -> &mut ResponsesDecoder {
        &mut self.decoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret::Secret;
    use crate::protocol::relay_v1::{ChatMessage, Role};
    use crate::session::{ErrorKind, Protocol, RateLimits, SessionInfo, Timing, Workload};
    use crate::transport::http_stream::Action;

    fn spec(url: &str, auth: AuthStyle) -> SessionSpec {
        SessionSpec {
            info: SessionInfo {
                id: 0,
                name: "test".into(),
                provider: "test".into(),
                model: "gpt-5-mini".into(),
                protocol: Protocol::OpenaiResponses,
                url: url.into(),
                workload: "probe".into(),
            },
            api_key: Some(Secret::new("sk-proj-abc")),
            auth,
            workload: Workload::OnDemand,
            timing: Timing::default(),
            seed: Some(7),
            tap: None,
            limits: None,
            resolver: None,
        }
    }

    #[test]
    fn urls_and_names() {
        for base in [
            "https://relay.example",
            "https://relay.example/v1",
            "https://relay.example/v1/responses",
        ] {
            let codec = ResponsesCodec::new(&spec(base, AuthStyle::Native));
            assert_eq!(codec.stream_url("m"), "https://relay.example/v1/responses");
            assert_eq!(codec.check_url(), "https://relay.example/v1/models");
        }
        let codec = ResponsesCodec::new(&spec("http://h", AuthStyle::Native));
        assert_eq!(codec.stream_name(), "POST /v1/responses");
        assert_eq!(codec.check_name(), "GET /v1/models");
        assert!(codec.extra_headers().is_empty());
    }

    #[test]
    fn the_key_travels_as_bearer_and_is_sensitive() {
        let codec = ResponsesCodec::new(&spec("http://h", AuthStyle::Native));
        let (name, value) = codec.auth().unwrap();
        assert_eq!(name, header::AUTHORIZATION);
        assert_eq!(value, "Bearer sk-proj-abc");
        assert!(value.is_sensitive());
        let codec = ResponsesCodec::new(&spec("http://h", AuthStyle::XApiKey));
        let (name, value) = codec.auth().unwrap();
        assert_eq!(name, "x-api-key");
        assert_eq!(value, "sk-proj-abc");
        assert!(value.is_sensitive());
        let mut keyless = spec("http://h", AuthStyle::Native);
        keyless.api_key = None;
        assert!(ResponsesCodec::new(&keyless).auth().is_none());
    }

    #[test]
    fn the_body_is_a_streamed_unstored_responses_request() {
        let s = spec("http://h", AuthStyle::Native);
        let codec = ResponsesCodec::new(&s);
        let outgoing = Outgoing {
            messages: vec![
                ChatMessage::new(Role::System, "sys"),
                ChatMessage::new(Role::User, "Say hello"),
            ],
            max_tokens: Some(32),
        };
        let request = codec.request(&s, &outgoing);
        assert_eq!(request.model, "gpt-5-mini");
        assert_eq!(
            request.body,
            r#"{"model":"gpt-5-mini","input":[{"role":"user","content":"Say hello"}],"instructions":"sys","stream":true,"store":false,"max_output_tokens":32}"#
        );
        assert!(request.prompt_tokens_estimate > 0);
        assert_eq!(
            crate::protocol::openai_responses::wire::read_request(&request.body),
            Some((outgoing.messages, Some(32)))
        );
    }

    #[test]
    fn answers_classified_as_chat_completions_are() {
        let codec = ResponsesCodec::new(&spec("http://h", AuthStyle::Native));
        let none = HeaderMap::new();
        let f = codec.classify(
            429,
            &none,
            br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
            false,
        );
        assert_eq!((f.kind, f.action), (ErrorKind::RateLimited, Action::Retry));
        assert_eq!(
            f.message,
            "POST /v1/responses answered 429: Rate limit reached (rate_limit_exceeded)"
        );
        let f = codec.classify(
            401,
            &none,
            br#"{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}"#,
            true,
        );
        assert_eq!((f.kind, f.action), (ErrorKind::Auth, Action::Stop));
        assert!(
            f.message.starts_with("GET /v1/models answered 401: "),
            "{}",
            f.message
        );
        let f = codec.classify(
            429,
            &none,
            br#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
            false,
        );
        assert_eq!(f.action, Action::Stop);
        let f = codec.classify(
            400,
            &none,
            br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#,
            false,
        );
        assert_eq!(
            (f.kind, f.action),
            (ErrorKind::InvalidRequest, Action::Fail)
        );
        let f = codec.classify(503, &none, b"<html>busy</html>", false);
        assert_eq!((f.kind, f.action), (ErrorKind::Overloaded, Action::Retry));
        let mut no_retry = HeaderMap::new();
        no_retry.insert("x-should-retry", HeaderValue::from_static("false"));
        assert_eq!(
            codec.classify(500, &no_retry, b"", false).action,
            Action::Fail
        );
    }

    #[test]
    fn rate_limit_headers() {
        let codec = ResponsesCodec::new(&spec("http://h", AuthStyle::Native));
        assert_eq!(codec.rate_limits(&HeaderMap::new()), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-limit-requests",
            HeaderValue::from_static("500"),
        );
        headers.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("9000"),
        );
        headers.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("1.5s"));
        assert_eq!(
            codec.rate_limits(&headers),
            Some(EventKind::RateLimitStatus(Box::new(RateLimits {
                requests_limit: Some(500),
                requests_remaining: None,
                requests_reset_ms: None,
                tokens_limit: None,
                tokens_remaining: Some(9000),
                tokens_reset_ms: Some(1500),
            })))
        );
    }
}
