//! anthropic-messages's codec for the shared HTTP streaming half: `GET /v1/models` as the
//! check, `POST /v1/messages` with a streamed Messages body, the key as `x-api-key` (or
//! `Authorization: Bearer` for relays that want it) and `anthropic-version` always, answers
//! classified by `policy`, the `anthropic-ratelimit-*` headers, and the body through
//! `MessagesDecoder` (`message_stop` is the terminal mark).

use std::borrow::Cow;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::protocol::anthropic_messages::decode::{MessagesDecoder, MessagesFormat};
use crate::protocol::anthropic_messages::policy::{classify, rate_limit_event, should_retry};
use crate::protocol::anthropic_messages::wire::{
    ANTHROPIC_VERSION, MessagesRequest, messages_url, models_url, parse_error_body,
};
use crate::session::workload::Outgoing;
use crate::session::{AuthStyle, EventKind, SessionSpec};
use crate::transport::http_stream::{HttpFailure, HttpStreamCodec, StreamRequest};

/// One anthropic-messages session's codec. Survives reconnects (request numbers go on).
pub struct MessagesCodec {
    messages_url: String,
    models_url: String,
    /// The key's header, marked sensitive; built once.
    auth: Option<(HeaderName, HeaderValue)>,
    /// `anthropic-version: 2023-06-01`.
    extra: [(HeaderName, HeaderValue); 1],
    decoder: MessagesDecoder,
}

impl MessagesCodec {
    pub fn new(spec: &SessionSpec) -> Self {
        let auth = spec
            .api_key
            .as_ref()
            .and_then(|key| auth_header(spec.auth, key.expose()));
        Self {
            messages_url: messages_url(&spec.info.url),
            models_url: models_url(&spec.info.url),
            auth,
            extra: [(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            )],
            decoder: MessagesDecoder::new(),
        }
    }
}

/// The key's header in `style`: `x-api-key` natively; `Authorization: Bearer` for relays
/// that ask for it; `x-goog-api-key` if a config says so. A key in the URL (`Query`) is not
/// Anthropic's way: it travels as `x-api-key`. `None` when the key cannot be a header value.
pub fn auth_header(style: AuthStyle, key: &str) -> Option<(HeaderName, HeaderValue)> {
    let (name, value) = match style {
        AuthStyle::Bearer => (header::AUTHORIZATION, format!("Bearer {key}")),
        AuthStyle::XGoogApiKey => (HeaderName::from_static("x-goog-api-key"), key.to_owned()),
        AuthStyle::Native | AuthStyle::XApiKey | AuthStyle::Query => {
            (HeaderName::from_static("x-api-key"), key.to_owned())
        }
    };
    let mut value = HeaderValue::from_str(&value).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

impl HttpStreamCodec for MessagesCodec {
    type Format = MessagesFormat;

    fn check_url(&self) -> &str {
        &self.models_url
    }

    fn check_name(&self) -> &'static str {
        "GET /v1/models"
    }

    fn stream_url(&self, _model: &str) -> Cow<'_, str> {
        Cow::Borrowed(&self.messages_url)
    }

    fn stream_name(&self) -> &'static str {
        "POST /v1/messages"
    }

    fn auth(&self) -> Option<&(HeaderName, HeaderValue)> {
        self.auth.as_ref()
    }

    fn extra_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.extra
    }

    fn request(&self, spec: &SessionSpec, outgoing: &Outgoing) -> StreamRequest {
        let model = spec.info.model.clone();
        let body =
            MessagesRequest::streamed(&model, &outgoing.messages, outgoing.max_tokens).to_json();
        StreamRequest::new(body, model, &outgoing.messages)
    }

    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8], check: bool) -> HttpFailure {
        let error = parse_error_body(body);
        let (kind, action) = classify(status, error.as_ref(), should_retry(headers));
        HttpFailure::new(
            kind,
            action,
            self.asked(check),
            status,
            error.map(|e| e.summary()),
            body,
        )
    }

    fn rate_limits(&self, headers: &HeaderMap) -> Option<EventKind> {
        rate_limit_event(headers, chrono::Utc::now())
    }

    fn decoder(&self) -> &MessagesDecoder {
        &self.decoder
    }

    fn decoder_mut(&mut self) -> &mut MessagesDecoder {
        &mut self.decoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret::Secret;
    use crate::protocol::relay_v1::{ChatMessage, Role};
    use crate::session::{Protocol, SessionInfo, Timing, Workload};
    use crate::transport::http_stream::Action;

    fn spec(url: &str, auth: AuthStyle) -> SessionSpec {
        SessionSpec {
            info: SessionInfo {
                id: 0,
                name: "test".into(),
                provider: "test".into(),
                model: "claude-sonnet-4-5".into(),
                protocol: Protocol::AnthropicMessages,
                url: url.into(),
                workload: "probe".into(),
            },
            api_key: Some(Secret::new("sk-ant-api03-test")),
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
            "https://r.example",
            "https://r.example/v1",
            "https://r.example/v1/messages",
        ] {
            let codec = MessagesCodec::new(&spec(base, AuthStyle::Native));
            assert_eq!(codec.check_url(), "https://r.example/v1/models");
            assert_eq!(codec.stream_url("any"), "https://r.example/v1/messages");
        }
        let codec = MessagesCodec::new(&spec("https://r.example", AuthStyle::Native));
        assert_eq!(codec.check_name(), "GET /v1/models");
        assert_eq!(codec.stream_name(), "POST /v1/messages");
    }

    #[test]
    fn auth_headers_per_style() {
        let header = |style| {
            let codec = MessagesCodec::new(&spec("https://r.example", style));
            let (name, value) = codec.auth().cloned().unwrap();
            assert!(value.is_sensitive(), "{style:?}");
            let extra = codec.extra_headers();
            assert_eq!(extra.len(), 1);
            assert_eq!(extra[0].0.as_str(), "anthropic-version");
            assert_eq!(extra[0].1, "2023-06-01");
            (name.as_str().to_owned(), value.to_str().unwrap().to_owned())
        };
        let x_api_key = ("x-api-key".to_owned(), "sk-ant-api03-test".to_owned());
        assert_eq!(header(AuthStyle::Native), x_api_key);
        assert_eq!(header(AuthStyle::XApiKey), x_api_key);
        assert_eq!(header(AuthStyle::Query), x_api_key, "never in the URL");
        assert_eq!(
            header(AuthStyle::Bearer),
            (
                "authorization".to_owned(),
                "Bearer sk-ant-api03-test".to_owned()
            )
        );
        assert_eq!(
            header(AuthStyle::XGoogApiKey),
            ("x-goog-api-key".to_owned(), "sk-ant-api03-test".to_owned())
        );
        let mut no_key = spec("https://r.example", AuthStyle::Native);
        no_key.api_key = None;
        let codec = MessagesCodec::new(&no_key);
        assert!(codec.auth().is_none());
        assert_eq!(codec.extra_headers().len(), 1, "the version goes anyway");
        assert!(auth_header(AuthStyle::Native, "bad\nkey").is_none());
    }

    #[test]
    fn the_request_body_and_estimate() {
        let spec = spec("https://r.example", AuthStyle::Native);
        let codec = MessagesCodec::new(&spec);
        let outgoing = Outgoing {
            messages: vec![
                ChatMessage::new(Role::System, "Be brief."),
                ChatMessage::new(Role::User, "Say hello."),
            ],
            max_tokens: None,
        };
        let request = codec.request(&spec, &outgoing);
        assert_eq!(request.model, "claude-sonnet-4-5");
        assert_eq!(request.prompt_tokens_estimate, 5, "19 characters");
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["max_tokens"], 1024);
        assert_eq!(body["stream"], true);
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn failures_are_worded_like_chat() {
        let codec = MessagesCodec::new(&spec("https://r.example", AuthStyle::Native));
        let headers = HeaderMap::new();
        let f = codec.classify(
            529,
            &headers,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            false,
        );
        assert_eq!(f.kind, crate::session::ErrorKind::Overloaded);
        assert_eq!(f.action, Action::Retry);
        assert_eq!(
            f.message,
            "POST /v1/messages answered 529: overloaded_error: Overloaded"
        );
        let f = codec.classify(
            401,
            &headers,
            "{\"error\":{\"message\":\"无效的令牌\",\"type\":\"new_api_error\"}}".as_bytes(),
            true,
        );
        assert_eq!(f.action, Action::Stop);
        assert_eq!(
            f.message,
            "GET /v1/models answered 401: new_api_error: 无效的令牌"
        );
        let f = codec.classify(502, &headers, b"Bad Gateway", false);
        assert_eq!(f.action, Action::Retry);
        assert!(f.message.starts_with("POST /v1/messages answered 502: "));
    }
}
