//! openai-responses wire shapes: the `POST /v1/responses` body (and reading one back for
//! `replay --against`), the URLs a configured base stands for, and the streamed events
//! (`response.output_text.delta`, the terminal `response.completed` / `.incomplete` /
//! `.failed`, the top-level `error`) parsed from the borrowed event text into one flat struct
//! of optional fields: never a `serde_json::Value` per event. Tolerant: unknown fields are
//! skipped, a `delta` that is not a string is ignored, numbers may come as strings, Chat
//! Completions usage names are read too. Error bodies and `x-ratelimit-*` headers are the
//! Chat Completions ones (`openai_chat`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize};

use crate::protocol::lenient::{Lenient, LenientF64, StrOrNum, Text};
use crate::protocol::openai_chat::ApiError;
use crate::protocol::relay_v1::{ChatMessage, Role};

/// The path a relay serves the Responses API on (below the host).
pub const RESPONSES_PATH: &str = "/v1/responses";

/// The smallest `max_output_tokens` OpenAI accepts; a smaller limit is raised to it.
pub const MIN_OUTPUT_TOKENS: u32 = 16;

// ------------------------------------------------------------------------------------------
// URLs
// ------------------------------------------------------------------------------------------

/// The Responses URL for a configured base: `http(s)://HOST` gets `/v1/responses`, a base
/// ending in `/v1` gets `/responses`, a URL already ending in `/responses` is used as it is.
/// A query (`?api-version=…`) is kept.
pub fn responses_url(base: &str) -> String {
    crate::protocol::endpoint::endpoint_url(base, "/responses")
}

/// The `GET /v1/models` URL beside the Responses URL (see `responses_url`).
pub fn models_url(base: &str) -> String {
    crate::protocol::endpoint::models_url_beside(base, "/responses")
}

// ------------------------------------------------------------------------------------------
// The request
// ------------------------------------------------------------------------------------------

/// One message of `input`: `{"role":"user"|"assistant"|"system","content":"…"}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

/// The request body: `{"model","input":[…],"instructions"?,"stream":true,"store":false,
/// "max_output_tokens"?}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResponsesRequest<'a> {
    pub model: &'a str,
    pub input: Vec<InputMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Cow<'a, str>>,
    pub stream: bool,
    /// A monitor's requests are not kept on the server.
    pub store: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
}

impl<'a> ResponsesRequest<'a> {
    /// A streamed request for `messages`: the system messages before the first other one
    /// become `instructions` (joined by a blank line), later ones stay in `input` as `system`
    /// messages. A limit under `MIN_OUTPUT_TOKENS` is raised to it (OpenAI refuses less).
    pub fn streamed(model: &'a str, messages: &'a [ChatMessage], max_tokens: Option<u32>) -> Self {
        let leading = messages
            .iter()
            .take_while(|m| m.role == Role::System)
            .count();
        let instructions = match &messages[..leading] {
            [] => None,
            [one] => Some(Cow::Borrowed(one.content.as_str())),
            many => Some(Cow::Owned(
                many.iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            )),
        };
        let input = messages[leading..]
            .iter()
            .map(|m| InputMessage {
                role: match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                },
                content: &m.content,
            })
            .collect();
        Self {
            model,
            input,
            instructions,
            stream: true,
            store: false,
            max_output_tokens: max_tokens.map(|n| n.max(MIN_OUTPUT_TOKENS)),
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
/// Reads `input` as a string or as messages whose `content` is a string or an array of
/// `{type:"input_text"|"output_text",text}` parts; items that are not messages are skipped.
pub fn read_request(text: &str) -> Option<(Vec<ChatMessage>, Option<u32>)> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        input: Option<Input>,
        #[serde(default)]
        instructions: Option<String>,
        #[serde(default)]
        max_output_tokens: Option<Lenient>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Input {
        Text(String),
        Items(Vec<Item>),
    }
    #[derive(Deserialize)]
    struct Item {
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        role: Option<String>,
        #[serde(default)]
        content: Option<Content>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        text: Option<String>,
    }

    let body: Body = serde_json::from_str(text).ok()?;
    if body.input.is_none() && body.instructions.is_none() {
        return None;
    }
    let mut messages = Vec::new();
    if let Some(instructions) = body.instructions {
        messages.push(ChatMessage::new(Role::System, instructions));
    }
    match body.input {
        Some(Input::Text(text)) => messages.push(ChatMessage::new(Role::User, text)),
        Some(Input::Items(items)) => {
            for item in items {
                if item.kind.as_deref().is_some_and(|k| k != "message") {
                    continue;
                }
                let role = match item.role.as_deref() {
                    Some("assistant") => Role::Assistant,
                    Some("system" | "developer") => Role::System,
                    _ => Role::User,
                };
                let content = match item.content {
                    Some(Content::Text(text)) => text,
                    Some(Content::Parts(parts)) => parts
                        .into_iter()
                        .filter(|p| {
                            matches!(
                                p.kind.as_deref(),
                                None | Some("input_text" | "output_text" | "text")
                            )
                        })
                        .filter_map(|p| p.text)
                        .collect(),
                    None => continue,
                };
                messages.push(ChatMessage::new(role, content));
            }
        }
        None => {}
    }
    let max_tokens = body
        .max_output_tokens
        .map(|n| u32::try_from(n.0).unwrap_or(u32::MAX))
        .filter(|n| *n > 0);
    Some((messages, max_tokens))
}

// ------------------------------------------------------------------------------------------
// The events
// ------------------------------------------------------------------------------------------

/// Token usage of a finished response (`response.usage`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// `input_tokens` (cached ones included).
    pub input_tokens: u64,
    /// `input_tokens_details.cached_tokens`.
    pub cached_tokens: u64,
    /// `output_tokens` (reasoning included).
    pub output_tokens: u64,
    /// `output_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: u64,
    /// `usage.cost` in US dollars (LiteLLM, OpenRouter), when reported.
    pub cost_usd: Option<f64>,
}

/// What one event of a Responses stream says, with only what a monitor needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    /// `type` from the data, else the `event:` name.
    pub kind: Cow<'a, str>,
    pub sequence_number: Option<u64>,
    /// `delta`, when it is a string.
    pub delta: Option<Cow<'a, str>>,
    /// `response.usage`.
    pub usage: Option<Usage>,
    /// `response.status`.
    pub status: Option<Cow<'a, str>>,
    /// `response.incomplete_details.reason`.
    pub incomplete_reason: Option<Cow<'a, str>>,
    /// `response.error` (`response.failed`), or the error of an `error` event (its top-level
    /// `code`/`message`, or an `error` object some relays send).
    pub error: Option<ApiError<'a>>,
}

/// Why an event's data could not be understood. Counted, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("JSON that is not a Responses event: {0}")]
    BadShape(String),
    #[error("a Responses event without a type")]
    NoType,
}

impl<'a> Event<'a> {
    /// Parses one event. `event` is its `event:` name (absent in data-only streams). `None`:
    /// data that says nothing (empty, a keep-alive, or the `[DONE]` some relays append though
    /// Responses has none).
    pub fn parse(event: Option<&str>, data: &'a str) -> Result<Option<Event<'a>>, EventError> {
        let trimmed = data.trim();
        if trimmed.is_empty() || trimmed == "[DONE]" {
            return Ok(None);
        }
        let raw: RawEvent<'a> = serde_json::from_str(data).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => EventError::BadShape(e.to_string()),
                _ => EventError::NotJson(e.to_string()),
            }
        })?;
        let raw_error = raw.error.and_then(|e| e.0);
        let kind = match (raw.kind, event) {
            (Some(kind), _) => kind.0,
            (None, Some(name)) if !name.is_empty() => Cow::Owned(name.to_owned()),
            // OpenRouter's `data: {"error":{…}}` mid-stream, without a type.
            (None, _) if raw_error.is_some() => Cow::Borrowed("error"),
            (None, _) => return Err(EventError::NoType),
        };
        let (usage, status, incomplete_reason, response_error) = match raw.response {
            Some(r) => (
                r.usage.map(RawUsage::into_usage),
                r.status.map(|s| s.0),
                r.incomplete_details.and_then(|d| d.reason).map(|r| r.0),
                r.error.map(RawError::into_api_error),
            ),
            None => (None, None, None, None),
        };
        let error = response_error
            .or_else(|| raw_error.map(RawError::into_api_error))
            .or_else(|| {
                (kind == "error").then(|| ApiError {
                    message: raw
                        .message
                        .and_then(|m| m.0)
                        .unwrap_or(Cow::Borrowed("(no message)")),
                    kind: None,
                    code: raw.code.map(|c| c.0),
                    param: raw.param.map(|p| p.0),
                })
            });
        Ok(Some(Event {
            kind,
            sequence_number: raw.sequence_number.map(|n| n.0),
            delta: raw.delta.and_then(|d| d.0),
            usage,
            status,
            incomplete_reason,
            error,
        }))
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(default)]
    sequence_number: Option<Lenient>,
    #[serde(default, borrow)]
    delta: Option<AnyText<'a>>,
    #[serde(default, borrow)]
    response: Option<RawResponse<'a>>,
    /// The top-level `error` event: `{"type":"error","code","message","param"}`.
    #[serde(default, borrow)]
    code: Option<StrOrNum<'a>>,
    #[serde(default, borrow)]
    message: Option<AnyText<'a>>,
    #[serde(default, borrow)]
    param: Option<StrOrNum<'a>>,
    /// `{"type":"error","error":{…}}`, `{"error":{…}}` or `{"error":"text"}` from some relays.
    #[serde(default, borrow)]
    error: Option<ErrorField<'a>>,
}

/// An `error` that is an object or just its message; anything else is skipped.
struct ErrorField<'a>(Option<RawError<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for ErrorField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ErrorField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error object or message")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<ErrorField<'de>, A::Error> {
                RawError::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|e| ErrorField(Some(e)))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<ErrorField<'de>, E> {
                Ok(ErrorField(Some(RawError::with_message(Cow::Borrowed(v)))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ErrorField<'de>, E> {
                Ok(ErrorField(Some(RawError::with_message(Cow::Owned(
                    v.to_owned(),
                )))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ErrorField<'de>, E> {
                Ok(ErrorField(Some(RawError::with_message(Cow::Owned(v)))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ErrorField<'de>, E> {
                Ok(ErrorField(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ErrorField<'de>, E> {
                Ok(ErrorField(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ErrorField<'de>, E> {
                Ok(ErrorField(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ErrorField<'de>, E> {
                Ok(ErrorField(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ErrorField<'de>, E> {
                Ok(ErrorField(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<ErrorField<'de>, E> {
                Ok(ErrorField(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ErrorField<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ErrorField(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct RawResponse<'a> {
    #[serde(default, borrow)]
    status: Option<Text<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default, borrow)]
    incomplete_details: Option<RawIncomplete<'a>>,
    #[serde(default, borrow)]
    error: Option<RawError<'a>>,
}

#[derive(Deserialize)]
struct RawIncomplete<'a> {
    #[serde(default, borrow)]
    reason: Option<Text<'a>>,
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
    fn with_message(message: Cow<'a, str>) -> Self {
        RawError {
            message: Some(Text(message)),
            kind: None,
            code: None,
            param: None,
        }
    }

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

/// Responses usage, with the Chat Completions names some converting relays send instead.
#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    input_tokens: Option<Lenient>,
    #[serde(default)]
    output_tokens: Option<Lenient>,
    #[serde(default)]
    input_tokens_details: Option<RawDetails>,
    #[serde(default)]
    output_tokens_details: Option<RawDetails>,
    #[serde(default)]
    prompt_tokens: Option<Lenient>,
    #[serde(default)]
    completion_tokens: Option<Lenient>,
    #[serde(default)]
    prompt_tokens_details: Option<RawDetails>,
    #[serde(default)]
    completion_tokens_details: Option<RawDetails>,
    #[serde(default)]
    cost: Option<LenientF64>,
}

#[derive(Deserialize)]
struct RawDetails {
    #[serde(default)]
    cached_tokens: Option<Lenient>,
    #[serde(default)]
    reasoning_tokens: Option<Lenient>,
}

impl RawUsage {
    fn into_usage(self) -> Usage {
        let n = |v: Option<Lenient>| v.map(|l| l.0);
        let input_details = self.input_tokens_details.or(self.prompt_tokens_details);
        let output_details = self
            .output_tokens_details
            .or(self.completion_tokens_details);
        Usage {
            input_tokens: n(self.input_tokens).or(n(self.prompt_tokens)).unwrap_or(0),
            output_tokens: n(self.output_tokens)
                .or(n(self.completion_tokens))
                .unwrap_or(0),
            cached_tokens: input_details.and_then(|d| n(d.cached_tokens)).unwrap_or(0),
            reasoning_tokens: output_details
                .and_then(|d| n(d.reasoning_tokens))
                .unwrap_or(0),
            cost_usd: self
                .cost
                .and_then(|c| c.0)
                .filter(|c| c.is_finite() && *c >= 0.0),
        }
    }
}

/// A string borrowed from the event text when it has no escapes; any other JSON value is
/// skipped and read as `None` (a relay's odd `delta` must not make the event unreadable).
struct AnyText<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for AnyText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<AnyText<'de>, E> {
                Ok(AnyText(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyText<'de>, E> {
                Ok(AnyText(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<AnyText<'de>, E> {
                Ok(AnyText(Some(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<AnyText<'de>, E> {
                Ok(AnyText(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyText<'de>, E> {
                Ok(AnyText(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyText<'de>, E> {
                Ok(AnyText(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<AnyText<'de>, E> {
                Ok(AnyText(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<AnyText<'de>, E> {
                Ok(AnyText(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<AnyText<'de>, E> {
                Ok(AnyText(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<AnyText<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyText(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AnyText<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyText(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_any_base() {
        for base in [
            "https://relay.example",
            "https://relay.example/",
            "https://relay.example/v1",
            "https://relay.example/v1/",
            "https://relay.example/v1/responses",
            " https://relay.example/v1/responses/ ",
        ] {
            assert_eq!(
                responses_url(base),
                "https://relay.example/v1/responses",
                "{base}"
            );
            assert_eq!(
                models_url(base),
                "https://relay.example/v1/models",
                "{base}"
            );
        }
        assert_eq!(
            responses_url("https://r.example/openai/v1?api-version=1"),
            "https://r.example/openai/v1/responses?api-version=1"
        );
        assert_eq!(
            models_url("https://r.example/openai/v1?api-version=1"),
            "https://r.example/openai/v1/models?api-version=1"
        );
    }

    #[test]
    fn the_request_body() {
        let messages = vec![
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "hi"),
            ChatMessage::new(Role::Assistant, "hello"),
            ChatMessage::new(Role::User, "again \"quoted\""),
        ];
        let body = ResponsesRequest::streamed("gpt-5-mini", &messages, Some(64)).to_json();
        assert_eq!(
            body,
            r#"{"model":"gpt-5-mini","input":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"again \"quoted\""}],"instructions":"Be brief.","stream":true,"store":false,"max_output_tokens":64}"#
        );
        assert_eq!(read_request(&body), Some((messages, Some(64))));

        let messages = vec![ChatMessage::new(Role::User, "hi")];
        let body = ResponsesRequest::streamed("m", &messages, Some(4)).to_json();
        assert_eq!(
            body,
            r#"{"model":"m","input":[{"role":"user","content":"hi"}],"stream":true,"store":false,"max_output_tokens":16}"#,
            "no instructions; the limit raised to OpenAI's least"
        );
        let body = ResponsesRequest::streamed("m", &messages, None).to_json();
        assert!(!body.contains("max_output_tokens"), "{body}");
    }

    #[test]
    fn two_leading_system_messages_join_and_a_later_one_stays() {
        let messages = vec![
            ChatMessage::new(Role::System, "a"),
            ChatMessage::new(Role::System, "b"),
            ChatMessage::new(Role::User, "u"),
            ChatMessage::new(Role::System, "c"),
        ];
        let request = ResponsesRequest::streamed("m", &messages, None);
        assert_eq!(request.instructions.as_deref(), Some("a\n\nb"));
        assert_eq!(request.input.len(), 2);
        assert_eq!(request.input[1].role, "system");
    }

    #[test]
    fn reading_back_other_request_shapes() {
        assert_eq!(
            read_request(r#"{"model":"m","input":"hello","max_output_tokens":"32"}"#),
            Some((vec![ChatMessage::new(Role::User, "hello")], Some(32)))
        );
        let (messages, max) = read_request(
            r#"{"model":"m","instructions":"sys","input":[
                {"type":"message","role":"developer","content":[{"type":"input_text","text":"dev"}]},
                {"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","image_url":"x"},{"type":"input_text","text":"b"}]},
                {"type":"function_call","name":"f","arguments":"{}"},
                {"type":"message","role":"assistant","content":[{"type":"output_text","text":"c"}]}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            messages,
            vec![
                ChatMessage::new(Role::System, "sys"),
                ChatMessage::new(Role::System, "dev"),
                ChatMessage::new(Role::User, "ab"),
                ChatMessage::new(Role::Assistant, "c"),
            ]
        );
        assert_eq!(max, None);
        assert_eq!(read_request(r#"{"model":"m"}"#), None);
        assert_eq!(read_request("not json"), None);
        assert_eq!(read_request(r#"{"input":5}"#), None);
    }

    #[test]
    fn a_delta_event_borrows_its_text() {
        let data = r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi","logprobs":[],"sequence_number":4}"#;
        let Some(event) = Event::parse(None, data).unwrap() else {
            panic!()
        };
        assert_eq!(event.kind, "response.output_text.delta");
        assert_eq!(event.sequence_number, Some(4));
        assert!(matches!(event.delta, Some(Cow::Borrowed("Hi"))));
    }

    #[test]
    fn the_type_comes_from_the_data_or_the_event_name() {
        let parsed = Event::parse(Some("response.output_text.delta"), r#"{"delta":"x"}"#);
        let Ok(Some(event)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(event.kind, "response.output_text.delta");
        assert_eq!(
            Event::parse(None, r#"{"delta":"x"}"#),
            Err(EventError::NoType)
        );
        assert_eq!(Event::parse(None, " [DONE] "), Ok(None));
        assert_eq!(Event::parse(None, ""), Ok(None));
        assert!(matches!(
            Event::parse(None, "{oops"),
            Err(EventError::NotJson(_))
        ));
        assert!(matches!(
            Event::parse(None, r#"{"type":5}"#),
            Err(EventError::BadShape(_))
        ));
    }

    #[test]
    fn odd_deltas_and_numbers_are_tolerated() {
        let parsed = Event::parse(
            None,
            r#"{"type":"response.x.delta","delta":{"a":[1,2]},"sequence_number":"7"}"#,
        );
        let Ok(Some(event)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(event.delta, None);
        assert_eq!(event.sequence_number, Some(7));
    }

    #[test]
    fn the_terminal_events() {
        let completed = r#"{"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","object":"response","status":"completed","error":null,"incomplete_details":null,"output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}],"usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":64},"output_tokens":50,"output_tokens_details":{"reasoning_tokens":30},"total_tokens":150,"cost":0.00042}}}"#;
        let Ok(Some(event)) = Event::parse(None, completed) else {
            panic!()
        };
        assert_eq!(
            event.usage,
            Some(Usage {
                input_tokens: 100,
                cached_tokens: 64,
                output_tokens: 50,
                reasoning_tokens: 30,
                cost_usd: Some(0.00042),
            })
        );
        assert_eq!(event.status.as_deref(), Some("completed"));
        assert_eq!(event.error, None);

        let incomplete = r#"{"type":"response.incomplete","response":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"prompt_tokens":3,"completion_tokens":16}}}"#;
        let Ok(Some(event)) = Event::parse(None, incomplete) else {
            panic!()
        };
        assert_eq!(
            event.incomplete_reason.as_deref(),
            Some("max_output_tokens")
        );
        assert_eq!(
            event.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((3, 16)),
            "Chat Completions names"
        );

        let failed = r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"The model failed"},"usage":null}}"#;
        let Ok(Some(event)) = Event::parse(None, failed) else {
            panic!()
        };
        let error = event.error.unwrap();
        assert_eq!(error.code.as_deref(), Some("server_error"));
        assert_eq!(error.message, "The model failed");
        assert_eq!(event.usage, None);

        let top = r#"{"type":"error","code":"rate_limit_exceeded","message":"Slow down","param":null,"sequence_number":2}"#;
        let Ok(Some(event)) = Event::parse(Some("error"), top) else {
            panic!()
        };
        let error = event.error.unwrap();
        assert_eq!(error.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(error.message, "Slow down");

        let nested = r#"{"error":{"message":"upstream gone","code":502}}"#;
        let Ok(Some(event)) = Event::parse(None, nested) else {
            panic!()
        };
        assert_eq!(event.kind, "error");
        assert_eq!(event.error.unwrap().code.as_deref(), Some("502"));

        let text = r#"{"type":"error","error":"upstream gone"}"#;
        let Ok(Some(event)) = Event::parse(None, text) else {
            panic!()
        };
        assert_eq!(event.error.unwrap().message, "upstream gone");
    }
}
