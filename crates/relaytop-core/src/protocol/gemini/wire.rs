//! Gemini's wire shapes: the URLs (`{root}/models/{model}:streamGenerateContent?alt=sse`, the
//! model list beside it), the `GenerateContentRequest` body and reading it back, the streamed
//! `GenerateContentResponse` chunks (parts, thoughts, `finishReason`, `usageMetadata`,
//! `promptFeedback`, an in-stream `error`), and error bodies (Google's `google.rpc.Status`
//! with its `ErrorInfo`/`RetryInfo` details, or a relay's OpenAI-shaped one). No I/O.
//!
//! Chunks are on the hot path, so they are read from the borrowed event text into flat
//! structs of optional fields, never a `serde_json::Value`; unknown fields are ignored and
//! numbers may come as strings or floats (`protocol::lenient`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::protocol::lenient::{Lenient, StrOrNum, Text};
use crate::protocol::relay_v1::{ChatMessage, Role};

/// The API version a bare host gets.
pub const API_VERSION_PATH: &str = "/v1beta";

/// What the streaming method's path ends with.
pub const STREAM_METHOD: &str = ":streamGenerateContent";

// ------------------------------------------------------------------------------------------
// URLs
// ------------------------------------------------------------------------------------------

/// The configured base split into the API root (`https://host/v1beta`, no trailing slash)
/// and its query (without `?`), if it had one.
///
/// `https://host` gets `/v1beta`; a base ending in `/v1beta`, `/v1alpha` or `/v1` is the
/// root; `…/v1beta/models` and a whole method URL (`…/models/m:streamGenerateContent`) are
/// cut back to it.
pub fn api_root(base: &str) -> (String, Option<&str>) {
    let base = base.trim();
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q).filter(|q| !q.is_empty())),
        None => (base, None),
    };
    let mut path = path.trim_end_matches('/');
    // A scheme's `//` is never a `/models` cut: look for it after the host only.
    let after_scheme = path.find("://").map_or(0, |i| i + 3);
    if let Some(i) = path[after_scheme..].find("/models/") {
        path = &path[..after_scheme + i];
    } else if let Some(stripped) = path.strip_suffix("/models") {
        path = stripped;
    }
    let path = path.trim_end_matches('/');
    let is_version = |p: &str| {
        p.rsplit('/')
            .next()
            .is_some_and(|last| matches!(last, "v1beta" | "v1alpha" | "v1"))
    };
    let root = if is_version(path) {
        path.to_owned()
    } else {
        format!("{path}{API_VERSION_PATH}")
    };
    (root, query)
}

/// The model's path below the root: `models/gemini-2.5-flash` and `gemini-2.5-flash` alike
/// give `models/gemini-2.5-flash`, a tuned model `tunedModels/…`; percent-encoded where a path
/// needs it.
pub fn model_path(model: &str) -> String {
    let model = model.trim();
    let (collection, name) = match model.strip_prefix("tunedModels/") {
        Some(name) => ("tunedModels", name),
        None => ("models", model.strip_prefix("models/").unwrap_or(model)),
    };
    let name = percent_encode(name, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'@')
    });
    format!("{collection}/{name}")
}

/// `{root}/models/{model}:streamGenerateContent?alt=sse`, with the base's own query kept
/// and `extra_query` (e.g. `key=…`) appended.
pub fn stream_url(base: &str, model: &str, extra_query: Option<&str>) -> String {
    let (root, query) = api_root(base);
    let mut url = format!("{root}/{}{STREAM_METHOD}?alt=sse", model_path(model));
    for q in [query, extra_query].into_iter().flatten() {
        url.push('&');
        url.push_str(q);
    }
    url
}

/// `{root}/models` (the check), with the base's query and `extra_query`.
pub fn models_url(base: &str, extra_query: Option<&str>) -> String {
    let (root, query) = api_root(base);
    let mut url = format!("{root}/models");
    let mut sep = '?';
    for q in [query, extra_query].into_iter().flatten() {
        url.push(sep);
        url.push_str(q);
        sep = '&';
    }
    url
}

/// `key=…` for the `Query` auth style (percent-encoded).
pub fn key_query(key: &str) -> String {
    format!(
        "key={}",
        percent_encode(key, |c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
        })
    )
}

fn percent_encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// The request
// ------------------------------------------------------------------------------------------

/// `{"contents":[…],"systemInstruction"?:{…},"generationConfig"?:{"maxOutputTokens":n}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    #[serde(default)]
    pub contents: Vec<Content>,
    #[serde(
        default,
        alias = "system_instruction",
        skip_serializing_if = "Option::is_none"
    )]
    pub system_instruction: Option<Content>,
    #[serde(
        default,
        alias = "generation_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub generation_config: Option<GenerationConfig>,
}

/// One turn: `{"role":"user"|"model","parts":[{"text":…}]}` (no role in `systemInstruction`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// A text part of a request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Part {
    #[serde(default)]
    pub text: String,
}

/// `generationConfig`, with what relaytop sets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(
        default,
        alias = "max_output_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_output_tokens: Option<u32>,
}

impl GenerateContentRequest {
    /// The conversation in Gemini's shape: system messages into `systemInstruction`, the
    /// assistant as `model`, consecutive messages of one role merged into one turn (a part
    /// each).
    pub fn new(messages: &[ChatMessage], max_tokens: Option<u32>) -> Self {
        let mut contents: Vec<Content> = Vec::new();
        let mut system: Vec<Part> = Vec::new();
        for message in messages {
            let part = Part {
                text: message.content.clone(),
            };
            let role = match message.role {
                Role::System => {
                    system.push(part);
                    continue;
                }
                Role::User => "user",
                Role::Assistant => "model",
            };
            match contents.last_mut() {
                Some(last) if last.role.as_deref() == Some(role) => last.parts.push(part),
                _ => contents.push(Content {
                    role: Some(role.to_owned()),
                    parts: vec![part],
                }),
            }
        }
        Self {
            contents,
            system_instruction: (!system.is_empty()).then_some(Content {
                role: None,
                parts: system,
            }),
            generation_config: max_tokens.map(|n| GenerationConfig {
                max_output_tokens: Some(n),
            }),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and numbers: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A request body this codec sent, read back: its conversation (system prompt first, as a
/// `system` message) and its output limit. `replay --against` re-sends recorded requests so.
/// Each part is a message (merged turns come back apart; sending them again merges them
/// the same way).
pub fn read_request(text: &str) -> Option<(Vec<ChatMessage>, Option<u32>)> {
    let request: GenerateContentRequest = serde_json::from_str(text).ok()?;
    let mut messages = Vec::new();
    for part in request.system_instruction.into_iter().flat_map(|c| c.parts) {
        messages.push(ChatMessage::new(Role::System, part.text));
    }
    for content in request.contents {
        let role = match content.role.as_deref() {
            Some("model" | "assistant") => Role::Assistant,
            Some("system") => Role::System,
            _ => Role::User,
        };
        for part in content.parts {
            messages.push(ChatMessage::new(role, part.text));
        }
    }
    if messages.is_empty() {
        return None;
    }
    let max_tokens = request.generation_config.and_then(|g| g.max_output_tokens);
    Some((messages, max_tokens))
}

// ------------------------------------------------------------------------------------------
// The streamed chunks
// ------------------------------------------------------------------------------------------

/// `usageMetadata`, as Gemini counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageMetadata {
    /// `promptTokenCount` (cached content included).
    pub prompt: u64,
    /// `candidatesTokenCount` (the answer, thoughts not included).
    pub candidates: u64,
    /// `thoughtsTokenCount`.
    pub thoughts: u64,
    /// `cachedContentTokenCount` (a part of `prompt`).
    pub cached: u64,
    /// `toolUsePromptTokenCount` (prompt tokens of tool results).
    pub tool_use_prompt: u64,
    /// `totalTokenCount`.
    pub total: u64,
}

/// One part of a candidate's content, as the decoder needs it.
#[derive(Clone, Debug, PartialEq)]
pub enum ChunkPart<'a> {
    /// Answer text.
    Text(Cow<'a, str>),
    /// A `thought: true` part's text.
    Thought(Cow<'a, str>),
    /// A `functionCall` part: its function's name (output, never the answer).
    FunctionCall(Cow<'a, str>),
}

/// One `GenerateContentResponse` of a stream, with only what a monitor needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk<'a> {
    /// The first candidate's parts, in order.
    pub parts: Vec<ChunkPart<'a>>,
    /// The first candidate's `finishReason`.
    pub finish_reason: Option<Cow<'a, str>>,
    pub usage: Option<UsageMetadata>,
    /// Whether the chunk had any candidate.
    pub has_candidates: bool,
    /// `promptFeedback.blockReason` (and its `blockReasonMessage`).
    pub block_reason: Option<Cow<'a, str>>,
    pub block_message: Option<Cow<'a, str>>,
    pub model_version: Option<Cow<'a, str>>,
    pub response_id: Option<Cow<'a, str>>,
}

/// What one event's data means.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamData<'a> {
    Chunk(Chunk<'a>),
    /// `{"error":{…}}` in the stream.
    Error(GeminiError<'a>),
}

/// Why an event's data could not be understood. Counted, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("JSON that is not a GenerateContentResponse: {0}")]
    BadShape(String),
}

impl<'a> StreamData<'a> {
    /// Parses one event's data: a whole `GenerateContentResponse` (or one in a one-element
    /// array, as some relays send), or an error object.
    pub fn parse(data: &'a str) -> Result<StreamData<'a>, ChunkError> {
        let mut trimmed = data.trim();
        if let Some(inner) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            trimmed = inner.trim().trim_end_matches(',').trim();
        }
        let raw: RawResponse<'a> = serde_json::from_str(trimmed).map_err(|e| {
            use serde_json::error::Category;
            let text = shorten(&e.to_string());
            match e.classify() {
                Category::Data => ChunkError::BadShape(text),
                _ => ChunkError::NotJson(text),
            }
        })?;
        if let Some(error) = raw.error {
            return Ok(StreamData::Error(error.into_error()));
        }
        let mut chunk = Chunk {
            usage: raw.usage_metadata.map(RawUsage::into_usage),
            model_version: raw.model_version.map(|t| t.0),
            response_id: raw.response_id.map(|t| t.0),
            ..Chunk::default()
        };
        if let Some(feedback) = raw.prompt_feedback {
            chunk.block_reason = feedback
                .block_reason
                .map(|t| t.0)
                .filter(|r| !r.is_empty() && r.as_ref() != "BLOCK_REASON_UNSPECIFIED");
            chunk.block_message = feedback.block_reason_message.map(|t| t.0);
        }
        let candidates = raw.candidates.unwrap_or_default();
        chunk.has_candidates = !candidates.is_empty();
        // The first candidate (by `index` when the relay numbers them).
        let first = candidates.iter().position(|c| c.index.0 == 0).unwrap_or(0);
        if let Some(candidate) = candidates.into_iter().nth(first) {
            chunk.finish_reason = candidate
                .finish_reason
                .map(|t| t.0)
                .filter(|r| !r.is_empty());
            let parts = candidate.content.and_then(|c| c.parts).unwrap_or_default();
            chunk.parts.reserve(parts.len());
            for part in parts {
                if let Some(call) = part.function_call {
                    let name = call
                        .name
                        .map(|t| t.0)
                        .filter(|n| !n.is_empty())
                        .unwrap_or(Cow::Borrowed("functionCall"));
                    chunk.parts.push(ChunkPart::FunctionCall(name));
                } else if let Some(text) = part.text {
                    chunk.parts.push(if part.thought.0 {
                        ChunkPart::Thought(text.0)
                    } else {
                        ChunkPart::Text(text.0)
                    });
                }
            }
        }
        Ok(StreamData::Chunk(chunk))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResponse<'a> {
    #[serde(default, borrow)]
    candidates: Option<Vec<RawCandidate<'a>>>,
    #[serde(default, alias = "usage_metadata")]
    usage_metadata: Option<RawUsage>,
    #[serde(default, borrow, alias = "prompt_feedback")]
    prompt_feedback: Option<RawFeedback<'a>>,
    #[serde(default, borrow, alias = "model_version")]
    model_version: Option<Text<'a>>,
    #[serde(default, borrow, alias = "response_id")]
    response_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    error: Option<RawError<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCandidate<'a> {
    #[serde(default, borrow)]
    content: Option<RawContent<'a>>,
    #[serde(default, borrow, alias = "finish_reason")]
    finish_reason: Option<Text<'a>>,
    #[serde(default)]
    index: Lenient,
}

#[derive(Deserialize)]
struct RawContent<'a> {
    #[serde(default, borrow)]
    parts: Option<Vec<RawPart<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPart<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default)]
    thought: LenientBool,
    #[serde(default, borrow, alias = "function_call")]
    function_call: Option<RawFunctionCall<'a>>,
}

#[derive(Deserialize)]
struct RawFunctionCall<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFeedback<'a> {
    #[serde(default, borrow, alias = "block_reason")]
    block_reason: Option<Text<'a>>,
    #[serde(default, borrow, alias = "block_reason_message")]
    block_reason_message: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUsage {
    #[serde(default, alias = "prompt_token_count")]
    prompt_token_count: Lenient,
    #[serde(default, alias = "candidates_token_count")]
    candidates_token_count: Lenient,
    #[serde(default, alias = "thoughts_token_count")]
    thoughts_token_count: Lenient,
    #[serde(default, alias = "cached_content_token_count")]
    cached_content_token_count: Lenient,
    #[serde(default, alias = "tool_use_prompt_token_count")]
    tool_use_prompt_token_count: Lenient,
    #[serde(default, alias = "total_token_count")]
    total_token_count: Lenient,
}

impl RawUsage {
    fn into_usage(self) -> UsageMetadata {
        UsageMetadata {
            prompt: self.prompt_token_count.0,
            candidates: self.candidates_token_count.0,
            thoughts: self.thoughts_token_count.0,
            cached: self.cached_content_token_count.0,
            tool_use_prompt: self.tool_use_prompt_token_count.0,
            total: self.total_token_count.0,
        }
    }
}

/// `true`, `false`, `"true"`, `1` or null (false).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LenientBool(bool);

impl<'de> Deserialize<'de> for LenientBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientBool;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<LenientBool, E> {
                Ok(LenientBool(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientBool, E> {
                Ok(LenientBool(v != 0))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientBool, E> {
                Ok(LenientBool(v != 0))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LenientBool, E> {
                Ok(LenientBool(v != 0.0))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientBool, E> {
                Ok(LenientBool(v.trim().eq_ignore_ascii_case("true")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientBool, E> {
                Ok(LenientBool(false))
            }
            fn visit_none<E: de::Error>(self) -> Result<LenientBool, E> {
                Ok(LenientBool(false))
            }
        }
        d.deserialize_any(V)
    }
}

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

/// Most characters of a message relaytop keeps from an error body.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// An error body or in-stream error: Google's `{"error":{"code","message","status",
/// "details":[…]}}` or a relay's `{"error":{"message","type","code"}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeminiError<'a> {
    pub message: Cow<'a, str>,
    /// `code`: Google's HTTP status (`503`), or a relay's code text (`invalid_api_key`).
    pub code: Option<Cow<'a, str>>,
    /// `status`: `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, …
    pub status: Option<Cow<'a, str>>,
    /// A relay's `type` (`invalid_request_error`, `new_api_error`, …).
    pub kind: Option<Cow<'a, str>>,
    /// `ErrorInfo.reason`: `API_KEY_INVALID`, `RATE_LIMIT_EXCEEDED`, …
    pub reason: Option<Cow<'a, str>>,
    /// `RetryInfo.retryDelay` (`"30s"`).
    pub retry_delay: Option<Duration>,
}

/// What an error means to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorMeaning {
    /// The key is wrong, expired or not allowed: stop.
    BadKey,
    /// The key's or the account's quota is gone for good (a relay's): stop.
    NoQuota,
    /// Rate limited (`RESOURCE_EXHAUSTED`, 429): retry later.
    RateLimited,
    /// `UNAVAILABLE`, 503, overloaded: retry.
    Overloaded,
    /// `INVALID_ARGUMENT`, `NOT_FOUND`, `FAILED_PRECONDITION`, a 4xx: the request itself.
    InvalidRequest,
    /// Anything else (`INTERNAL`, 5xx, a relay's upstream failure).
    Upstream,
}

impl GeminiError<'_> {
    /// `message (REASON)`: the reason, else the status, else the code, unless the message
    /// already says it; a `RetryInfo` delay appended. Bounded.
    pub fn summary(&self) -> String {
        let message = shorten(self.message.trim());
        let tag = self
            .reason
            .as_deref()
            .or(self.status.as_deref())
            .or(self.code.as_deref())
            .filter(|t| !t.is_empty() && !message.contains(*t));
        let mut out = match tag {
            Some(tag) => format!("{message} ({})", shorten(tag)),
            None => message,
        };
        if let Some(delay) = self.retry_delay {
            let _ = write!(out, " [retry in {:.0} s]", delay.as_secs_f64());
        }
        out
    }

    fn code_number(&self) -> Option<u16> {
        self.code.as_deref().and_then(|c| c.trim().parse().ok())
    }

    /// What the error means, from its reason, status, code, type and (relays') message.
    pub fn meaning(&self) -> ErrorMeaning {
        let reason = self.reason.as_deref().unwrap_or("");
        let status = self.status.as_deref().unwrap_or("");
        let code = self.code.as_deref().unwrap_or("");
        let kind = self.kind.as_deref().unwrap_or("");
        let message = self.message.as_ref();
        let lower = message.to_ascii_lowercase();
        let number = self.code_number();

        let bad_key = matches!(reason, "API_KEY_INVALID" | "API_KEY_EXPIRED")
            || matches!(status, "UNAUTHENTICATED" | "PERMISSION_DENIED")
            || matches!(number, Some(401 | 403))
            || matches!(
                code,
                "invalid_api_key" | "incorrect_api_key" | "invalid_authentication"
            )
            || kind == "authentication_error"
            || message.contains("无效的令牌")
            || message.contains("该令牌已过期")
            || ((lower.contains("api key") || lower.contains("api_key"))
                && (lower.contains("not valid")
                    || lower.contains("invalid")
                    || lower.contains("incorrect")
                    || lower.contains("expired")));
        if bad_key {
            return ErrorMeaning::BadKey;
        }
        let no_quota = message.contains("该令牌额度已用尽")
            || message.contains("用户额度不足")
            || matches!(code, "insufficient_user_quota" | "insufficient_quota")
            || matches!(kind, "insufficient_user_quota" | "insufficient_quota")
            || lower.contains("user quota is not enough");
        if no_quota {
            return ErrorMeaning::NoQuota;
        }
        if status == "RESOURCE_EXHAUSTED"
            || number == Some(429)
            || code.contains("rate_limit")
            || kind.contains("rate_limit")
            || message.contains("负载已饱和")
        {
            return ErrorMeaning::RateLimited;
        }
        if status == "UNAVAILABLE"
            || number == Some(503)
            || code.contains("overloaded")
            || kind.contains("overloaded")
        {
            return ErrorMeaning::Overloaded;
        }
        if matches!(
            status,
            "INVALID_ARGUMENT" | "NOT_FOUND" | "FAILED_PRECONDITION" | "OUT_OF_RANGE"
        ) || number.is_some_and(|n| (400..500).contains(&n))
            || kind == "invalid_request_error"
            || code == "model_not_found"
        {
            return ErrorMeaning::InvalidRequest;
        }
        ErrorMeaning::Upstream
    }

    pub fn into_owned(self) -> GeminiError<'static> {
        GeminiError {
            message: Cow::Owned(self.message.into_owned()),
            code: self.code.map(|c| Cow::Owned(c.into_owned())),
            status: self.status.map(|c| Cow::Owned(c.into_owned())),
            kind: self.kind.map(|c| Cow::Owned(c.into_owned())),
            reason: self.reason.map(|c| Cow::Owned(c.into_owned())),
            retry_delay: self.retry_delay,
        }
    }
}

/// Reads an error body: `{"error":{…}}` (Google's or a relay's), the same in a one-element
/// array (Google's non-SSE answers), `{"error":"text"}` or `{"message":"text"}`.
pub fn parse_error_body(body: &[u8]) -> Option<GeminiError<'_>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .map_or(text, str::trim);
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(default, borrow)]
        error: Option<ErrorField<'a>>,
        #[serde(default, borrow)]
        message: Option<Text<'a>>,
        #[serde(default, borrow)]
        code: Option<StrOrNum<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField<'a> {
        Object(#[serde(borrow)] RawError<'a>),
        Text(#[serde(borrow)] Text<'a>),
    }
    let body: Body<'_> = serde_json::from_str(text).ok()?;
    match (body.error, body.message) {
        (Some(ErrorField::Object(e)), _) => Some(e.into_error()),
        (Some(ErrorField::Text(t)), _) | (None, Some(t)) => Some(GeminiError {
            message: t.0,
            code: body.code.map(|c| c.0),
            ..GeminiError::default()
        }),
        (None, None) => None,
    }
}

#[derive(Deserialize)]
struct RawError<'a> {
    #[serde(default, borrow)]
    message: Option<Text<'a>>,
    #[serde(default, borrow)]
    code: Option<StrOrNum<'a>>,
    #[serde(default, borrow)]
    status: Option<Text<'a>>,
    #[serde(default, rename = "type", borrow)]
    kind: Option<StrOrNum<'a>>,
    #[serde(default, borrow)]
    details: Option<Vec<RawDetail<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDetail<'a> {
    #[serde(default, borrow)]
    reason: Option<Text<'a>>,
    #[serde(default, borrow)]
    retry_delay: Option<Text<'a>>,
}

impl<'a> RawError<'a> {
    fn into_error(self) -> GeminiError<'a> {
        let mut reason = None;
        let mut retry_delay = None;
        for detail in self.details.into_iter().flatten() {
            if reason.is_none() {
                reason = detail.reason.map(|t| t.0).filter(|r| !r.is_empty());
            }
            if retry_delay.is_none() {
                retry_delay = detail.retry_delay.and_then(|t| parse_google_duration(&t.0));
            }
        }
        GeminiError {
            message: self
                .message
                .map(|m| m.0)
                .unwrap_or(Cow::Borrowed("(no message)")),
            code: self.code.map(|c| c.0),
            status: self.status.map(|s| s.0),
            kind: self.kind.map(|k| k.0),
            reason,
            retry_delay,
        }
    }
}

/// Longest wait a `retryDelay` is read as.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// A protobuf `Duration` in JSON: `"30s"`, `"1.5s"`, `"0.250s"` (at most an hour).
pub fn parse_google_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().strip_suffix('s')?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_DELAY.as_secs_f64())))
}

/// At most `MAX_MESSAGE_CHARS` characters, `…` when cut.
pub fn shorten(text: &str) -> String {
    let mut chars = text.char_indices();
    match chars.nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_any_base() {
        for base in [
            "https://generativelanguage.googleapis.com",
            "https://generativelanguage.googleapis.com/",
            "https://generativelanguage.googleapis.com/v1beta",
            "https://generativelanguage.googleapis.com/v1beta/",
            "https://generativelanguage.googleapis.com/v1beta/models",
            "https://generativelanguage.googleapis.com/v1beta/models/",
            "https://generativelanguage.googleapis.com/v1beta/models/x:streamGenerateContent",
        ] {
            for model in ["gemini-2.5-flash", "models/gemini-2.5-flash"] {
                assert_eq!(
                    stream_url(base, model, None),
                    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                    "{base} {model}"
                );
            }
            assert_eq!(
                models_url(base, None),
                "https://generativelanguage.googleapis.com/v1beta/models",
                "{base}"
            );
        }
        assert_eq!(
            stream_url("https://relay.example/gemini/v1beta", "m", Some("key=K")),
            "https://relay.example/gemini/v1beta/models/m:streamGenerateContent?alt=sse&key=K"
        );
        assert_eq!(
            models_url("https://relay.example?x=1", Some("key=K")),
            "https://relay.example/v1beta/models?x=1&key=K"
        );
        assert_eq!(
            models_url("http://127.0.0.1:9/", Some("key=K")),
            "http://127.0.0.1:9/v1beta/models?key=K"
        );
        assert_eq!(model_path("a b/c"), "models/a%20b%2Fc");
        assert_eq!(model_path("tunedModels/my-tune"), "tunedModels/my-tune");
        assert_eq!(key_query("AIza+/="), "key=AIza%2B%2F%3D");
    }

    #[test]
    fn request_shape_and_reading_it_back() {
        let messages = vec![
            ChatMessage::new(Role::System, "be brief"),
            ChatMessage::new(Role::User, "hi"),
            ChatMessage::new(Role::User, "again"),
            ChatMessage::new(Role::Assistant, "hello"),
            ChatMessage::new(Role::User, "bye"),
        ];
        let body = GenerateContentRequest::new(&messages, Some(32)).to_json();
        assert_eq!(
            body,
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"},{"text":"again"}]},{"role":"model","parts":[{"text":"hello"}]},{"role":"user","parts":[{"text":"bye"}]}],"systemInstruction":{"parts":[{"text":"be brief"}]},"generationConfig":{"maxOutputTokens":32}}"#
        );
        assert_eq!(read_request(&body), Some((messages, Some(32))));
        let bare = GenerateContentRequest::new(&[ChatMessage::new(Role::User, "x")], None);
        assert_eq!(
            bare.to_json(),
            r#"{"contents":[{"role":"user","parts":[{"text":"x"}]}]}"#
        );
        assert_eq!(
            read_request(
                r#"{"system_instruction":{"parts":[{"text":"s"}]},"contents":[{"parts":[{"text":"u"}]}]}"#
            ),
            Some((
                vec![
                    ChatMessage::new(Role::System, "s"),
                    ChatMessage::new(Role::User, "u")
                ],
                None
            ))
        );
        assert_eq!(read_request("not json"), None);
        assert_eq!(read_request("{}"), None);
    }

    #[test]
    fn chunks() {
        let data = r#"{"candidates":[{"content":{"parts":[{"text":"Let me think","thought":true},{"text":"Hi"},{"functionCall":{"name":"f","args":{"a":1}}}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":"7","candidatesTokenCount":2.0,"thoughtsTokenCount":5,"cachedContentTokenCount":3,"totalTokenCount":14},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;
        let StreamData::Chunk(chunk) = StreamData::parse(data).unwrap() else {
            panic!("a chunk");
        };
        assert_eq!(
            chunk.parts,
            [
                ChunkPart::Thought("Let me think".into()),
                ChunkPart::Text("Hi".into()),
                ChunkPart::FunctionCall("f".into())
            ]
        );
        assert!(matches!(chunk.parts[1], ChunkPart::Text(Cow::Borrowed(_))));
        assert_eq!(chunk.finish_reason.as_deref(), Some("STOP"));
        assert_eq!(
            chunk.usage,
            Some(UsageMetadata {
                prompt: 7,
                candidates: 2,
                thoughts: 5,
                cached: 3,
                tool_use_prompt: 0,
                total: 14
            })
        );
        assert_eq!(chunk.model_version.as_deref(), Some("gemini-2.5-flash"));

        let StreamData::Chunk(blocked) = StreamData::parse(
            r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":4}}"#,
        )
        .unwrap() else {
            panic!("a chunk");
        };
        assert!(!blocked.has_candidates);
        assert_eq!(blocked.block_reason.as_deref(), Some("SAFETY"));

        let StreamData::Error(error) = StreamData::parse(
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        )
        .unwrap() else {
            panic!("an error");
        };
        assert_eq!(error.meaning(), ErrorMeaning::Overloaded);
        assert_eq!(error.summary(), "The model is overloaded. (UNAVAILABLE)");

        assert!(matches!(
            StreamData::parse("{not json"),
            Err(ChunkError::NotJson(_))
        ));
        assert!(matches!(
            StreamData::parse(r#"{"candidates":7}"#),
            Err(ChunkError::BadShape(_))
        ));
        assert!(StreamData::parse(r#"[{"candidates":[]}]"#).is_ok());
    }

    #[test]
    fn error_bodies() {
        let bad_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}]}}"#;
        let e = parse_error_body(bad_key).unwrap();
        assert_eq!(e.meaning(), ErrorMeaning::BadKey);
        assert_eq!(
            e.summary(),
            "API key not valid. Please pass a valid API key. (API_KEY_INVALID)"
        );
        let limited = br#"[{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}]"#;
        let e = parse_error_body(limited).unwrap();
        assert_eq!(e.meaning(), ErrorMeaning::RateLimited);
        assert_eq!(e.retry_delay, Some(Duration::from_secs(30)));
        assert!(e.summary().ends_with("[retry in 30 s]"), "{}", e.summary());
        let e = parse_error_body(
            r#"{"error":{"message":"该令牌额度已用尽 (request id: x)","type":"new_api_error","code":""}}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(e.meaning(), ErrorMeaning::NoQuota);
        let e = parse_error_body(
            "{\"error\":{\"message\":\"无效的令牌\",\"type\":\"new_api_error\"}}".as_bytes(),
        )
        .unwrap();
        assert_eq!(e.meaning(), ErrorMeaning::BadKey);
        let e = parse_error_body(
            br#"{"error":{"code":500,"message":"Internal error","status":"INTERNAL"}}"#,
        )
        .unwrap();
        assert_eq!(e.meaning(), ErrorMeaning::Upstream);
        assert!(parse_error_body(b"<html>502</html>").is_none());
        assert_eq!(
            parse_google_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_google_duration("soon"), None);
        assert_eq!(
            shorten(&"é".repeat(400)).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }
}
