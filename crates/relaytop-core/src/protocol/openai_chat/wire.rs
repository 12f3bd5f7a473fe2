//! openai-sse wire shapes (spec/ADAPTERS.md): the Chat Completions request, the Server-Sent
//! Events framing of its streamed answer, the chunks inside it, error bodies and the
//! `x-ratelimit-*` headers. No I/O.
//!
//! Chunks are on the hot path (one per streamed token), so they are parsed from the borrowed
//! event text into flat structs of optional fields, never into a `serde_json::Value`, and
//! anything a relay adds or bends is tolerated: a usage chunk with non-empty `choices`,
//! `content: null`, ids that change on every chunk, a `model` other than the one asked for,
//! unknown fields, `usage: null` on every chunk, numbers where strings were expected. The SSE
//! framing is bounded: one event may hold at most `MAX_EVENT_BYTES`; a longer one is refused
//! and skipped, never buffered.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::lenient::{Lenient, LenientF64, StrOrNum, Text};
use crate::protocol::relay_v1::ChatMessage;

/// The path a relay serves streamed chat completions on (below the host).
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";

/// The request body: `{"model","messages","stream":true,"stream_options":{"include_usage":true},..}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// `stream_options`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

impl ChatRequest {
    /// A streamed request that asks for the usage chunk.
    pub fn streamed(model: &str, messages: Vec<ChatMessage>, max_tokens: Option<u32>) -> Self {
        Self {
            model: model.to_owned(),
            messages,
            stream: true,
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
            temperature: None,
            max_tokens,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and numbers: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The chat-completions URL for a configured base: `http(s)://HOST` gets
/// `/v1/chat/completions`, a base ending in `/v1` gets `/chat/completions`, and a URL that
/// already ends in `/chat/completions` is used as it is.
pub fn chat_completions_url(base: &str) -> String {
    crate::protocol::endpoint::endpoint_url(base, "/chat/completions")
}

/// The `GET /v1/models` URL beside a chat-completions URL (see `chat_completions_url`).
pub fn models_url(base: &str) -> String {
    crate::protocol::endpoint::models_url_beside(base, "/chat/completions")
}

// ------------------------------------------------------------------------------------------
// What the events carry
// ------------------------------------------------------------------------------------------

/// Token usage from the usage chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// `prompt_tokens_details.cached_tokens` (a subset of `prompt_tokens`).
    pub cached_tokens: u64,
    /// `completion_tokens_details.reasoning_tokens` (a subset of `completion_tokens`).
    pub reasoning_tokens: u64,
    /// `usage.cost`, in US dollars, when the relay reports it.
    pub cost_usd: Option<f64>,
}

/// An OpenAI-style error: `{"error":{"message","type","param","code"}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiError<'a> {
    pub message: Cow<'a, str>,
    /// `type`: `invalid_request_error`, `server_error`, `rate_limit_error`, ...
    pub kind: Option<Cow<'a, str>>,
    /// `code`: `invalid_api_key`, `rate_limit_exceeded`, `insufficient_quota`, ... (numbers
    /// some relays send are read as text).
    pub code: Option<Cow<'a, str>>,
    pub param: Option<Cow<'a, str>>,
}

impl ApiError<'_> {
    /// `message (code)`, or the message alone.
    pub fn summary(&self) -> String {
        match &self.code {
            Some(code) if !self.message.contains(code.as_ref()) => {
                format!("{} ({code})", self.message)
            }
            _ => self.message.clone().into_owned(),
        }
    }

    /// Whether it says the key is wrong, whatever the status was (some relays answer a bad
    /// key with 400 or 500).
    pub fn is_bad_key(&self) -> bool {
        let code_says = matches!(
            self.code.as_deref(),
            Some("invalid_api_key" | "incorrect_api_key" | "invalid_authentication")
        );
        let type_says = matches!(self.kind.as_deref(), Some("authentication_error"));
        let message = self.message.to_ascii_lowercase();
        let message_says = (message.contains("api key") || message.contains("api_key"))
            && (message.contains("invalid")
                || message.contains("incorrect")
                || message.contains("unknown"));
        code_says || type_says || message_says
    }

    /// Whether it says the account has no quota left (never worth retrying).
    pub fn is_insufficient_quota(&self) -> bool {
        self.code.as_deref() == Some("insufficient_quota")
            || self.kind.as_deref() == Some("insufficient_quota")
    }

    pub fn into_owned(self) -> ApiError<'static> {
        ApiError {
            message: Cow::Owned(self.message.into_owned()),
            kind: self.kind.map(|k| Cow::Owned(k.into_owned())),
            code: self.code.map(|c| Cow::Owned(c.into_owned())),
            param: self.param.map(|p| Cow::Owned(p.into_owned())),
        }
    }
}

/// One chunk of a streamed completion, with only what a monitor needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk<'a> {
    pub id: Option<Cow<'a, str>>,
    pub model: Option<Cow<'a, str>>,
    /// The `delta.content` of every choice, in order (borrowed when there is one).
    pub content: Option<Cow<'a, str>>,
    /// Thinking text: `delta.reasoning_content` (DeepSeek, new-api) or `delta.reasoning`
    /// (OpenRouter).
    pub reasoning: Option<Cow<'a, str>>,
    /// The first `finish_reason` that is not null.
    pub finish_reason: Option<Cow<'a, str>>,
    pub usage: Option<Usage>,
}

/// What one event's data means.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamData<'a> {
    /// `[DONE]`: the stream is over.
    Done,
    Chunk(Chunk<'a>),
    /// `{"error":{...}}` in the stream (sometimes under `event: error`).
    Error(ApiError<'a>),
}

/// Why an event's data could not be understood. Counted, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("JSON that is not a chunk: {0}")]
    BadShape(String),
}

impl<'a> StreamData<'a> {
    /// Parses one event. `event` is its `event:` name (`error` marks an error event).
    pub fn parse(event: Option<&str>, data: &'a str) -> Result<StreamData<'a>, ChunkError> {
        let trimmed = data.trim();
        if trimmed == "[DONE]" {
            return Ok(StreamData::Done);
        }
        let raw: RawChunk<'a> = serde_json::from_str(data).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ChunkError::BadShape(e.to_string()),
                _ => ChunkError::NotJson(e.to_string()),
            }
        })?;
        if let Some(error) = raw.error {
            return Ok(StreamData::Error(error.into_api_error()));
        }
        if event == Some("error") {
            // An error event whose data has no `error` object: the message may be at the top.
            let message = raw
                .message
                .map(|m| m.0)
                .unwrap_or(Cow::Borrowed("error event without a message"));
            return Ok(StreamData::Error(ApiError {
                message,
                ..ApiError::default()
            }));
        }
        let mut content: Option<Cow<'a, str>> = None;
        let mut reasoning: Option<Cow<'a, str>> = None;
        let mut finish_reason = None;
        for choice in raw.choices.into_iter().flatten() {
            let (delta_content, delta_reasoning) = match choice.delta {
                Some(d) => (d.content, d.reasoning_content),
                None => (None, None),
            };
            if let Some(thought) = delta_reasoning {
                reasoning = Some(match reasoning {
                    None => thought.0,
                    Some(before) => Cow::Owned(before.into_owned() + &thought.0),
                });
            }
            let piece = delta_content
                .or(choice.message.and_then(|m| m.content))
                .map(|t| t.0);
            if let Some(piece) = piece {
                content = Some(match content {
                    None => piece,
                    Some(before) => Cow::Owned(before.into_owned() + &piece),
                });
            }
            if finish_reason.is_none() {
                finish_reason = choice.finish_reason.map(|t| t.0);
            }
        }
        Ok(StreamData::Chunk(Chunk {
            id: raw.id.map(|t| t.0),
            model: raw.model.map(|t| t.0),
            content,
            reasoning,
            finish_reason,
            usage: raw.usage.map(RawUsage::into_usage),
        }))
    }
}

/// Reads an error body (`{"error":{...}}`, `{"error":"text"}` or `{"message":"text"}`).
pub fn parse_error_body(body: &[u8]) -> Option<ApiError<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(default, borrow)]
        error: Option<ErrorField<'a>>,
        #[serde(default, borrow)]
        message: Option<Text<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField<'a> {
        Object(#[serde(borrow)] RawError<'a>),
        Text(#[serde(borrow)] Text<'a>),
    }
    let body: Body<'_> = serde_json::from_str(text).ok()?;
    match (body.error, body.message) {
        (Some(ErrorField::Object(e)), _) => Some(e.into_api_error()),
        (Some(ErrorField::Text(t)), _) | (None, Some(t)) => Some(ApiError {
            message: t.0,
            ..ApiError::default()
        }),
        (None, None) => None,
    }
}

#[derive(Deserialize)]
struct RawChunk<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    choices: Option<Vec<RawChoice<'a>>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default, borrow)]
    error: Option<RawError<'a>>,
    #[serde(default, borrow)]
    message: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<RawDelta<'a>>,
    /// Some relays send whole-message shapes in a stream.
    #[serde(default, borrow)]
    message: Option<RawDelta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default, borrow, alias = "reasoning")]
    reasoning_content: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Lenient,
    #[serde(default)]
    completion_tokens: Lenient,
    #[serde(default)]
    prompt_tokens_details: Option<RawPromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<RawCompletionDetails>,
    #[serde(default)]
    cost: Option<LenientF64>,
}

#[derive(Deserialize)]
struct RawPromptDetails {
    #[serde(default)]
    cached_tokens: Lenient,
}

#[derive(Deserialize)]
struct RawCompletionDetails {
    #[serde(default)]
    reasoning_tokens: Lenient,
}

impl RawUsage {
    fn into_usage(self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.0,
            completion_tokens: self.completion_tokens.0,
            cached_tokens: self.prompt_tokens_details.map_or(0, |d| d.cached_tokens.0),
            reasoning_tokens: self
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens.0),
            cost_usd: self
                .cost
                .and_then(|c| c.0)
                .filter(|c| c.is_finite() && *c >= 0.0),
        }
    }
}

#[derive(Deserialize)]
struct RawError<'a> {
    #[serde(default, borrow)]
    message: Option<Text<'a>>,
    #[serde(default, rename = "type", borrow)]
    kind: Option<StrOrNum<'a>>,
    #[serde(default, borrow)]
    code: Option<StrOrNum<'a>>,
    #[serde(default, borrow)]
    param: Option<StrOrNum<'a>>,
}

impl<'a> RawError<'a> {
    fn into_api_error(self) -> ApiError<'a> {
        ApiError {
            message: self
                .message
                .map(|m| m.0)
                .unwrap_or(Cow::Borrowed("(no message)")),
            kind: self.kind.map(|k| k.0),
            code: self.code.map(|c| c.0),
            param: self.param.map(|p| p.0),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Rate-limit headers
// ------------------------------------------------------------------------------------------

/// The `x-ratelimit-*` response headers, each absent when the relay did not send it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub requests_limit: Option<u64>,
    pub requests_remaining: Option<u64>,
    pub requests_reset_ms: Option<u64>,
    pub tokens_limit: Option<u64>,
    pub tokens_remaining: Option<u64>,
    pub tokens_reset_ms: Option<u64>,
}

impl RateLimitHeaders {
    /// Reads them through `header(name)` (names in lower case).
    pub fn read<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Self {
        let number = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
        let reset = |name: &str| {
            header(name)
                .and_then(parse_openai_duration)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        Self {
            requests_limit: number("x-ratelimit-limit-requests"),
            requests_remaining: number("x-ratelimit-remaining-requests"),
            requests_reset_ms: reset("x-ratelimit-reset-requests"),
            tokens_limit: number("x-ratelimit-limit-tokens"),
            tokens_remaining: number("x-ratelimit-remaining-tokens"),
            tokens_reset_ms: reset("x-ratelimit-reset-tokens"),
        }
    }

    /// Whether any header was there.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Parses the durations of `x-ratelimit-reset-*`: `1s`, `6m0s`, `12ms`, `1h2m3.5s`, `0.5s`
/// (and a bare number of seconds).
pub fn parse_openai_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total.min(1e9)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::relay_v1::Role;

    #[test]
    fn the_request_has_the_reference_shape() {
        let request = ChatRequest::streamed(
            "gpt-4o-mini",
            vec![ChatMessage::new(Role::User, "hi")],
            Some(16),
        );
        assert_eq!(
            request.to_json(),
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":16}"#
        );
    }

    #[test]
    fn urls_from_any_base() {
        for base in [
            "https://relay.example",
            "https://relay.example/",
            "https://relay.example/v1",
            "https://relay.example/v1/",
            "https://relay.example/v1/chat/completions",
        ] {
            assert_eq!(
                chat_completions_url(base),
                "https://relay.example/v1/chat/completions",
                "{base}"
            );
            assert_eq!(
                models_url(base),
                "https://relay.example/v1/models",
                "{base}"
            );
        }
        assert_eq!(
            chat_completions_url("https://r.example/openai/v1?api-version=1"),
            "https://r.example/openai/v1/chat/completions?api-version=1"
        );
    }

    #[test]
    fn reset_durations() {
        let ms = |s: &str| parse_openai_duration(s).map(|d| d.as_millis());
        assert_eq!(ms("1s"), Some(1000));
        assert_eq!(ms("6m0s"), Some(360_000));
        assert_eq!(ms("12ms"), Some(12));
        assert_eq!(ms("1h2m3.5s"), Some(3_723_500));
        assert_eq!(ms("0.5"), Some(500));
        assert_eq!(ms("soon"), None);
        assert_eq!(ms(""), None);
        assert_eq!(ms("5x"), None);
    }

    #[test]
    fn rate_limit_headers() {
        let headers = [
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", "499"),
            ("x-ratelimit-reset-requests", "120ms"),
            ("x-ratelimit-remaining-tokens", "not a number"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ];
        let r = RateLimitHeaders::read(|name| {
            headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        });
        assert_eq!(
            r,
            RateLimitHeaders {
                requests_limit: Some(500),
                requests_remaining: Some(499),
                requests_reset_ms: Some(120),
                tokens_limit: None,
                tokens_remaining: None,
                tokens_reset_ms: Some(360_000),
            }
        );
        assert!(RateLimitHeaders::read(|_| None).is_empty());
    }

    #[test]
    fn error_bodies_of_every_shape() {
        let e = parse_error_body(
            br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        )
        .unwrap();
        assert!(e.is_bad_key());
        assert_eq!(e.code.as_deref(), Some("invalid_api_key"));
        let e = parse_error_body(br#"{"error":{"message":"boom","code":500}}"#).unwrap();
        assert_eq!(e.code.as_deref(), Some("500"));
        assert!(!e.is_bad_key());
        let e = parse_error_body(br#"{"error":"invalid api key"}"#).unwrap();
        assert!(e.is_bad_key(), "a relay's 500 with a key message");
        let e = parse_error_body(br#"{"message":"quota","code":1}"#).unwrap();
        assert_eq!(e.message, "quota");
        let e = parse_error_body(
            br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        )
        .unwrap();
        assert!(e.is_insufficient_quota());
        assert!(parse_error_body(b"<html>502</html>").is_none());
    }
}
