//! anthropic-messages wire shapes: the Messages request (and reading one back), the URLs a
//! base becomes, the events of its streamed answer (`message_start`, `content_block_*`,
//! `message_delta`, `message_stop`, `ping`, `error`) and error bodies. No I/O.
//!
//! Events are on the hot path (one per streamed token), so they are parsed from the borrowed
//! event text into one flat struct of optional fields, never into a `serde_json::Value`;
//! unknown fields are ignored and numbers that come as strings or floats are read. The type
//! is the data's `type` when it has one, else the `event:` name: relays that send data-only
//! SSE are read the same.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::protocol::lenient::{Lenient, StrOrNum, Text};
use crate::protocol::relay_v1::{ChatMessage, Role};

/// The path a relay serves Anthropic Messages on (below the host).
pub const MESSAGES_PATH: &str = "/v1/messages";

/// The `anthropic-version` header every request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` when the workload sets none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

// ------------------------------------------------------------------------------------------
// The request
// ------------------------------------------------------------------------------------------

/// The request body: `{"model","max_tokens","stream":true,"system"?,"messages":[…]}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub messages: Vec<ChatMessage>,
}

impl MessagesRequest {
    /// A streamed request for a conversation: system messages go to the top-level `system`
    /// (joined by a blank line), empty messages are left out and consecutive messages of one
    /// role merged (Anthropic refuses empty text and wants the roles alternating), and
    /// `max_tokens` falls back to `DEFAULT_MAX_TOKENS`.
    pub fn streamed(model: &str, conversation: &[ChatMessage], max_tokens: Option<u32>) -> Self {
        let mut system: Option<String> = None;
        let mut messages: Vec<ChatMessage> = Vec::with_capacity(conversation.len());
        for message in conversation {
            match message.role {
                _ if message.content.is_empty() => {}
                Role::System => match &mut system {
                    Some(before) => {
                        before.push_str("\n\n");
                        before.push_str(&message.content);
                    }
                    None => system = Some(message.content.clone()),
                },
                role => match messages.last_mut() {
                    Some(last) if last.role == role => {
                        last.content.push_str("\n\n");
                        last.content.push_str(&message.content);
                    }
                    _ => messages.push(ChatMessage::new(role, message.content.clone())),
                },
            }
        }
        Self {
            model: model.to_owned(),
            max_tokens: max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            stream: true,
            system,
            messages,
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
/// Content given as blocks (`[{"type":"text","text":…}]`) is read as its text blocks joined.
pub fn read_request(text: &str) -> Option<(Vec<ChatMessage>, Option<u32>)> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        system: Option<Content>,
        messages: Vec<Message>,
        #[serde(default)]
        max_tokens: Option<Lenient>,
    }
    #[derive(Deserialize)]
    struct Message {
        role: String,
        #[serde(default)]
        content: Option<Content>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Blocks(Vec<Block>),
    }
    #[derive(Deserialize)]
    struct Block {
        #[serde(default)]
        text: Option<String>,
    }
    impl Content {
        fn into_text(self) -> String {
            match self {
                Content::Text(text) => text,
                Content::Blocks(blocks) => blocks
                    .into_iter()
                    .filter_map(|b| b.text)
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            }
        }
    }
    let body: Body = serde_json::from_str(text).ok()?;
    let mut conversation = Vec::with_capacity(body.messages.len() + 1);
    if let Some(system) = body.system.map(Content::into_text)
        && !system.is_empty()
    {
        conversation.push(ChatMessage::new(Role::System, system));
    }
    for message in body.messages {
        let role = match message.role.as_str() {
            "assistant" => Role::Assistant,
            "system" => Role::System,
            _ => Role::User,
        };
        let content = message.content.map(Content::into_text).unwrap_or_default();
        conversation.push(ChatMessage::new(role, content));
    }
    let max_tokens = body
        .max_tokens
        .and_then(|m| u32::try_from(m.0).ok())
        .filter(|m| *m > 0);
    Some((conversation, max_tokens))
}

/// The Messages URL for a configured base: `http(s)://HOST` gets `/v1/messages`, a base
/// ending in `/v1` gets `/messages`, and a URL that already ends in `/messages` is used as it
/// is. A query is kept.
pub fn messages_url(base: &str) -> String {
    crate::protocol::endpoint::endpoint_url(base, "/messages")
}

/// The `GET /v1/models` URL beside the Messages URL (see `messages_url`). A query is kept.
pub fn models_url(base: &str) -> String {
    crate::protocol::endpoint::models_url_beside(base, "/messages")
}

// ------------------------------------------------------------------------------------------
// The events
// ------------------------------------------------------------------------------------------

/// Token counts one event reported; each absent when the event did not carry it (a later
/// event's counts replace an earlier one's: `message_delta.usage` is cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventUsage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
}

/// An Anthropic error (`{"type":"error","error":{"type","message"}}`), or a relay's
/// OpenAI-shaped one (`{"error":{"message","type","code"}}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessagesError<'a> {
    /// `overloaded_error`, `rate_limit_error`, `authentication_error`, … (a relay's own).
    pub kind: Option<Cow<'a, str>>,
    pub message: Cow<'a, str>,
    /// A relay's `code` (`insufficient_user_quota`, `model_not_found`, …).
    pub code: Option<Cow<'a, str>>,
}

impl MessagesError<'_> {
    /// `overloaded_error: Overloaded`, with ` (code)` when the relay gave one the message
    /// does not already hold.
    pub fn summary(&self) -> String {
        let mut text = match &self.kind {
            Some(kind) if !kind.is_empty() => format!("{kind}: {}", self.message),
            _ => self.message.clone().into_owned(),
        };
        if let Some(code) = &self.code
            && !code.is_empty()
            && !text.contains(code.as_ref())
        {
            text.push_str(&format!(" ({code})"));
        }
        text
    }
}

/// What one event's data says.
#[derive(Clone, Debug, PartialEq)]
pub enum MessagesEvent<'a> {
    /// `message_start`: the usage of the prompt (and the first output count).
    MessageStart { usage: Option<EventUsage> },
    /// `content_block_start`: a block begins; some relays put its first text in it.
    BlockStart {
        text: Option<Cow<'a, str>>,
        thinking: Option<Cow<'a, str>>,
    },
    /// `content_block_delta`.
    Delta(Delta<'a>),
    /// `content_block_stop`.
    BlockStop,
    /// `message_delta`: the stop reason and the cumulative usage.
    MessageDelta {
        stop_reason: Option<Cow<'a, str>>,
        usage: Option<EventUsage>,
    },
    /// `message_stop`: the terminal mark.
    MessageStop,
    /// `ping`.
    Ping,
    /// `error`, or any data holding an `error` object.
    Error(MessagesError<'a>),
    /// A type this reader does not know (its name).
    Unknown(Cow<'a, str>),
}

/// What a `content_block_delta` carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta<'a> {
    /// `text_delta`.
    Text(Cow<'a, str>),
    /// `thinking_delta`.
    Thinking(Cow<'a, str>),
    /// `input_json_delta` (a tool call's arguments, piece by piece).
    InputJson(Cow<'a, str>),
    /// `signature_delta` (a thinking block's signature).
    Signature,
    /// `citations_delta`.
    Citations,
    /// Another delta type (its name; `(no type)` when it has none).
    Unknown(Cow<'a, str>),
}

/// Why an event's data could not be understood. Counted, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("JSON that is not an event: {0}")]
    BadShape(String),
    #[error("an event without a type")]
    NoType,
}

impl<'a> MessagesEvent<'a> {
    /// Parses one event. `event` is its `event:` name; the data's `type` wins when both are
    /// there (relays that send data-only SSE put the type only in the data).
    pub fn parse(event: Option<&str>, data: &'a str) -> Result<MessagesEvent<'a>, EventError> {
        let raw: RawEvent<'a> = serde_json::from_str(data).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => EventError::BadShape(e.to_string()),
                _ => EventError::NotJson(e.to_string()),
            }
        })?;
        let RawEvent {
            kind,
            message,
            content_block,
            delta,
            usage,
            error,
        } = raw;
        if let Some(error) = error {
            return Ok(MessagesEvent::Error(error.into_error()));
        }
        let name: &str = match (&kind, event) {
            (Some(kind), _) if !kind.0.is_empty() => kind.0.as_ref(),
            (_, Some(name)) if !name.is_empty() => name,
            _ => return Err(EventError::NoType),
        };
        Ok(match name {
            "message_start" => MessagesEvent::MessageStart {
                usage: message
                    .and_then(MessageField::usage)
                    .or(usage)
                    .map(RawUsage::into_usage),
            },
            "content_block_start" => {
                let block = content_block;
                let (text, thinking) = match block {
                    Some(b) => (b.text.map(|t| t.0), b.thinking.map(|t| t.0)),
                    None => (None, None),
                };
                MessagesEvent::BlockStart { text, thinking }
            }
            "content_block_delta" => MessagesEvent::Delta(match delta {
                Some(delta) => delta.into_delta(),
                None => Delta::Unknown(Cow::Borrowed("(no type)")),
            }),
            "content_block_stop" => MessagesEvent::BlockStop,
            "message_delta" => MessagesEvent::MessageDelta {
                stop_reason: delta.and_then(|d| d.stop_reason).map(|t| t.0),
                usage: usage.map(RawUsage::into_usage),
            },
            "message_stop" => MessagesEvent::MessageStop,
            "ping" => MessagesEvent::Ping,
            "error" => MessagesEvent::Error(MessagesError {
                kind: None,
                message: message
                    .and_then(MessageField::text)
                    .unwrap_or(Cow::Borrowed("error event without a message")),
                code: None,
            }),
            _ => MessagesEvent::Unknown(Cow::Owned(name.to_owned())),
        })
    }
}

/// Reads an error body: Anthropic's `{"type":"error","error":{"type","message"}}`, a relay's
/// `{"error":{"message","type","code"}}`, `{"error":"text"}` or `{"message":"text"}`.
pub fn parse_error_body(body: &[u8]) -> Option<MessagesError<'_>> {
    let text = std::str::from_utf8(body).ok()?;
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
        (Some(ErrorField::Text(t)), _) | (None, Some(t)) => Some(MessagesError {
            kind: None,
            message: t.0,
            code: body.code.map(|c| c.0),
        }),
        (None, None) => None,
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Text<'a>>,
    /// `message_start`'s message; a bare `error` event's text is `message` too.
    #[serde(default, borrow)]
    message: Option<MessageField<'a>>,
    #[serde(default, borrow)]
    content_block: Option<RawBlock<'a>>,
    #[serde(default, borrow)]
    delta: Option<RawDelta<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default, borrow)]
    error: Option<RawError<'a>>,
}

/// `message` is an object in `message_start` and text in a bare `error` event.
#[derive(Deserialize)]
#[serde(untagged)]
enum MessageField<'a> {
    Object(RawMessage),
    Text(#[serde(borrow)] Text<'a>),
    Other(serde::de::IgnoredAny),
}

impl<'a> MessageField<'a> {
    fn usage(self) -> Option<RawUsage> {
        match self {
            MessageField::Object(m) => m.usage,
            _ => None,
        }
    }

    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            MessageField::Text(t) => Some(t.0),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct RawBlock<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    thinking: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawDelta<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    thinking: Option<Text<'a>>,
    #[serde(default, borrow)]
    partial_json: Option<Text<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Text<'a>>,
}

impl<'a> RawDelta<'a> {
    fn into_delta(self) -> Delta<'a> {
        match self.kind.as_ref().map(|k| k.0.as_ref()) {
            Some("text_delta") => Delta::Text(self.text.map(|t| t.0).unwrap_or_default()),
            Some("thinking_delta") => {
                Delta::Thinking(self.thinking.map(|t| t.0).unwrap_or_default())
            }
            Some("input_json_delta") => {
                Delta::InputJson(self.partial_json.map(|t| t.0).unwrap_or_default())
            }
            Some("signature_delta") => Delta::Signature,
            Some("citations_delta") => Delta::Citations,
            // No type: read what it carries.
            None if self.text.is_some() => Delta::Text(self.text.map(|t| t.0).unwrap_or_default()),
            None if self.thinking.is_some() => {
                Delta::Thinking(self.thinking.map(|t| t.0).unwrap_or_default())
            }
            None => Delta::Unknown(Cow::Borrowed("(no type)")),
            Some(_) => Delta::Unknown(self.kind.map(|k| k.0).unwrap_or_default()),
        }
    }
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    input_tokens: Option<Lenient>,
    #[serde(default)]
    output_tokens: Option<Lenient>,
    #[serde(default)]
    cache_creation_input_tokens: Option<Lenient>,
    #[serde(default)]
    cache_read_input_tokens: Option<Lenient>,
}

impl RawUsage {
    fn into_usage(self) -> EventUsage {
        EventUsage {
            input_tokens: self.input_tokens.map(|n| n.0),
            output_tokens: self.output_tokens.map(|n| n.0),
            cache_creation_input_tokens: self.cache_creation_input_tokens.map(|n| n.0),
            cache_read_input_tokens: self.cache_read_input_tokens.map(|n| n.0),
        }
    }
}

#[derive(Deserialize)]
struct RawError<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<StrOrNum<'a>>,
    #[serde(default, borrow)]
    message: Option<Text<'a>>,
    #[serde(default, borrow)]
    code: Option<StrOrNum<'a>>,
}

impl<'a> RawError<'a> {
    fn into_error(self) -> MessagesError<'a> {
        MessagesError {
            kind: self.kind.map(|k| k.0),
            message: self
                .message
                .map(|m| m.0)
                .unwrap_or(Cow::Borrowed("(no message)")),
            code: self.code.map(|c| c.0),
        }
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
            "https://relay.example/v1/messages",
            " https://relay.example/v1/messages/ ",
        ] {
            assert_eq!(
                messages_url(base),
                "https://relay.example/v1/messages",
                "{base}"
            );
            assert_eq!(
                models_url(base),
                "https://relay.example/v1/models",
                "{base}"
            );
        }
        assert_eq!(
            messages_url("https://r.example/anthropic?x=1"),
            "https://r.example/anthropic/v1/messages?x=1"
        );
        assert_eq!(
            models_url("https://r.example/anthropic/v1?x=1"),
            "https://r.example/anthropic/v1/models?x=1"
        );
    }

    #[test]
    fn the_request_has_the_messages_shape() {
        let conversation = [
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "hi"),
            ChatMessage::new(Role::Assistant, ""),
            ChatMessage::new(Role::User, "there"),
            ChatMessage::new(Role::Assistant, "Hello"),
            ChatMessage::new(Role::User, "again"),
        ];
        let request = MessagesRequest::streamed("claude-sonnet-4-5", &conversation, None);
        assert_eq!(
            request.to_json(),
            r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"system":"Be brief.","messages":[{"role":"user","content":"hi\n\nthere"},{"role":"assistant","content":"Hello"},{"role":"user","content":"again"}]}"#
        );
        let request =
            MessagesRequest::streamed("m", &[ChatMessage::new(Role::User, "hi")], Some(16));
        assert_eq!(
            request.to_json(),
            r#"{"model":"m","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        );
    }

    #[test]
    fn a_request_reads_back() {
        let conversation = vec![
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "hi"),
            ChatMessage::new(Role::Assistant, "Hello"),
            ChatMessage::new(Role::User, "again"),
        ];
        let body = MessagesRequest::streamed("m", &conversation, Some(64)).to_json();
        assert_eq!(read_request(&body), Some((conversation, Some(64))));
        // Blocks, a system given as blocks, no max_tokens.
        let (messages, max) = read_request(
            r#"{"model":"m","system":[{"type":"text","text":"S"}],"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image"},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            messages,
            [
                ChatMessage::new(Role::System, "S"),
                ChatMessage::new(Role::User, "a\n\nb")
            ]
        );
        assert_eq!(max, None);
        assert_eq!(read_request("not json"), None);
        assert_eq!(read_request(r#"{"model":"m"}"#), None);
    }

    #[test]
    fn events_with_and_without_their_names() {
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        let expected = MessagesEvent::Delta(Delta::Text(Cow::Borrowed("Hi")));
        assert_eq!(
            MessagesEvent::parse(Some("content_block_delta"), delta),
            Ok(expected.clone())
        );
        assert_eq!(MessagesEvent::parse(None, delta), Ok(expected));
        // The name alone (data without a type).
        assert_eq!(
            MessagesEvent::parse(Some("message_stop"), "{}"),
            Ok(MessagesEvent::MessageStop)
        );
        assert_eq!(MessagesEvent::parse(None, "{}"), Err(EventError::NoType));
        assert!(matches!(
            MessagesEvent::parse(None, "{not json"),
            Err(EventError::NotJson(_))
        ));
        assert!(matches!(
            MessagesEvent::parse(None, "[1,2]"),
            Err(EventError::BadShape(_))
        ));
        assert_eq!(
            MessagesEvent::parse(None, r#"{"type":"future_event"}"#),
            Ok(MessagesEvent::Unknown(Cow::Borrowed("future_event")))
        );
    }

    #[test]
    fn usage_and_stop_reason() {
        let start = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":"3","cache_read_input_tokens":null,"output_tokens":1.0}}}"#;
        assert_eq!(
            MessagesEvent::parse(None, start),
            Ok(MessagesEvent::MessageStart {
                usage: Some(EventUsage {
                    input_tokens: Some(25),
                    output_tokens: Some(1),
                    cache_creation_input_tokens: Some(3),
                    cache_read_input_tokens: None,
                })
            })
        );
        let delta = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#;
        assert_eq!(
            MessagesEvent::parse(None, delta),
            Ok(MessagesEvent::MessageDelta {
                stop_reason: Some(Cow::Borrowed("end_turn")),
                usage: Some(EventUsage {
                    output_tokens: Some(15),
                    ..EventUsage::default()
                })
            })
        );
    }

    #[test]
    fn errors_of_every_shape() {
        let anthropic =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let Ok(MessagesEvent::Error(e)) = MessagesEvent::parse(Some("error"), anthropic) else {
            panic!("not an error");
        };
        assert_eq!(e.summary(), "overloaded_error: Overloaded");
        let e = parse_error_body(anthropic.as_bytes()).unwrap();
        assert_eq!(e.kind.as_deref(), Some("overloaded_error"));
        let e = parse_error_body(
            r#"{"error":{"message":"无效的令牌 (request id: 2025)","type":"new_api_error","code":"invalid_api_key"}}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            e.summary(),
            "new_api_error: 无效的令牌 (request id: 2025) (invalid_api_key)"
        );
        let e = parse_error_body(br#"{"error":"bad gateway"}"#).unwrap();
        assert_eq!(e.summary(), "bad gateway");
        let e = parse_error_body(br#"{"message":"quota","code":1}"#).unwrap();
        assert_eq!(e.summary(), "quota (1)");
        assert!(parse_error_body(b"<html>502</html>").is_none());
        // A bare error event.
        let Ok(MessagesEvent::Error(e)) =
            MessagesEvent::parse(Some("error"), r#"{"message":"boom"}"#)
        else {
            panic!("not an error");
        };
        assert_eq!(e.summary(), "boom");
    }
}
