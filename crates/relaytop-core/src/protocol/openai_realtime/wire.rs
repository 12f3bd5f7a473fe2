//! openai-realtime wire shapes (spec/ADAPTERS.md): the Realtime API's JSON events over
//! WebSocket, GA shape, with the older beta names read too. No I/O.
//!
//! Server events are on the hot path (one per streamed delta), so they are parsed from the
//! borrowed frame text into a flat struct of optional fields, never into a
//! `serde_json::Value`, and then into the typed `ServerEvent`; unknown fields are ignored and
//! unknown event types become `Unknown` (counted, never fatal). Client events are rare (a few
//! per request) and are plain owned serde types that the simulator parses too. relaytop sends
//! only the GA shape.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// The WebSocket path of the Realtime API.
pub const REALTIME_PATH: &str = "/v1/realtime";

/// Close code of a fatal `invalid_api_key` after a successful upgrade.
pub const CLOSE_INVALID_API_KEY: u16 = 3000;
/// Close code of `beta_api_shape_disabled` (a beta client against a GA endpoint).
pub const CLOSE_BETA_SHAPE_DISABLED: u16 = 4000;

/// The realtime URL with a `model` query parameter: `model` is added when the URL has none.
pub fn url_with_model(url: &str, model: &str) -> String {
    let url = url.trim();
    if let Ok(parsed) = url::Url::parse(url)
        && parsed.query_pairs().any(|(k, _)| k == "model")
    {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let model: String = url::form_urlencoded::byte_serialize(model.as_bytes()).collect();
    format!("{url}{separator}model={model}")
}

// ------------------------------------------------------------------------------------------
// Client events (what relaytop sends; the simulator parses them)
// ------------------------------------------------------------------------------------------

/// A client event (a JSON text frame tagged by `type`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    #[serde(rename = "session.update")]
    SessionUpdate {
        #[serde(default)]
        session: SessionConfig,
    },
    #[serde(rename = "conversation.item.create")]
    ConversationItemCreate { item: Item },
    #[serde(rename = "conversation.item.delete")]
    ConversationItemDelete { item_id: String },
    #[serde(rename = "response.create")]
    ResponseCreate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response: Option<ResponseConfig>,
    },
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_id: Option<String>,
    },
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioBufferAppend { audio: String },
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioBufferCommit,
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioBufferClear,
}

impl ClientEvent {
    /// The event as the JSON text sent on the wire.
    pub fn to_text(&self) -> String {
        // Plain structs of strings, numbers and lists: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a client event (the simulator's side).
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A user (or assistant) text message.
    pub fn message(id: Option<String>, role: &str, text: &str) -> Self {
        let kind = if role == "assistant" {
            "output_text"
        } else {
            "input_text"
        };
        ClientEvent::ConversationItemCreate {
            item: Item {
                id,
                kind: "message".into(),
                role: Some(role.to_owned()),
                content: vec![ContentPart {
                    kind: kind.into(),
                    text: Some(text.to_owned()),
                    transcript: None,
                }],
            },
        }
    }
}

/// `session` of `session.update` (the fields relaytop sets; others are ignored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// `realtime` (GA); absent in beta shapes.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A conversation item (relaytop sends messages only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Vec<ContentPart>,
}

impl Item {
    /// All the text of the item.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|c| c.text.as_deref().or(c.transcript.as_deref()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One part of an item's content: `input_text`, `output_text`, `input_audio`, ...
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
}

/// `response` of `response.create`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// A number of tokens, or `"inf"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<MaxTokens>,
}

/// `max_output_tokens`: a number or `"inf"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaxTokens {
    Tokens(u32),
    Inf(Infinite),
}

impl MaxTokens {
    /// The limit, `None` for `"inf"`.
    pub fn limit(self) -> Option<u32> {
        match self {
            MaxTokens::Tokens(n) => Some(n),
            MaxTokens::Inf(_) => None,
        }
    }
}

/// The string `"inf"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Infinite {
    #[serde(rename = "inf")]
    Inf,
}

// ------------------------------------------------------------------------------------------
// Server events
// ------------------------------------------------------------------------------------------

/// `response.done`'s `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseStatus {
    Completed,
    Cancelled,
    Failed,
    Incomplete,
    InProgress,
    /// A status this client does not know.
    Other,
}

impl ResponseStatus {
    pub fn from_wire(status: &str) -> Self {
        match status {
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            "incomplete" => Self::Incomplete,
            "in_progress" => Self::InProgress,
            _ => Self::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Incomplete => "incomplete",
            Self::InProgress => "in_progress",
            Self::Other => "other",
        }
    }
}

/// Token usage of one response (from `response.done`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `input_token_details.cached_tokens`: a subset of `input_tokens`, priced on its own.
    pub cached_tokens: u64,
}

/// One entry of `rate_limits.updated`.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit<'a> {
    /// `requests` or `tokens`.
    pub name: Cow<'a, str>,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset_seconds: Option<f64>,
}

/// An `error` event's (or a failed response's) error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RealtimeError<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub code: Option<Cow<'a, str>>,
    pub message: Cow<'a, str>,
    pub event_id: Option<Cow<'a, str>>,
}

impl RealtimeError<'_> {
    /// `message (code)`, or the message alone.
    pub fn summary(&self) -> String {
        match &self.code {
            Some(code) if !self.message.contains(code.as_ref()) => {
                format!("{} ({code})", self.message)
            }
            _ => self.message.clone().into_owned(),
        }
    }
}

/// A server event, with only what a monitor needs.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerEvent<'a> {
    SessionCreated,
    ResponseCreated {
        response_id: Option<Cow<'a, str>>,
    },
    /// A piece of the response's text: `response.output_text.delta` (beta
    /// `response.text.delta`) or, for audio responses, the transcript
    /// `response.output_audio_transcript.delta` (beta `response.audio_transcript.delta`).
    TextDelta {
        delta: Cow<'a, str>,
        response_id: Option<Cow<'a, str>>,
    },
    /// `response.output_item.added`: the id of the item the response writes into.
    OutputItemAdded {
        item_id: Option<Cow<'a, str>>,
    },
    ResponseDone {
        response_id: Option<Cow<'a, str>>,
        status: ResponseStatus,
        /// `status_details.reason` (`max_output_tokens`, `client_cancelled`, ...).
        reason: Option<Cow<'a, str>>,
        /// `status_details.error` of a failed response.
        error: Option<RealtimeError<'a>>,
        usage: Option<Usage>,
    },
    RateLimitsUpdated {
        limits: Vec<RateLimit<'a>>,
    },
    Error(RealtimeError<'a>),
    /// A known event that carries nothing a monitor needs.
    Other {
        kind: Cow<'a, str>,
    },
    /// An event type this client does not know: counted, never fatal.
    Unknown {
        kind: Cow<'a, str>,
    },
}

/// Event types that are known and carry nothing a monitor needs (GA and beta names).
const KNOWN_QUIET: &[&str] = &[
    "session.updated",
    "conversation.created",
    "conversation.item.added",
    "conversation.item.created",
    "conversation.item.done",
    "conversation.item.deleted",
    "conversation.item.retrieved",
    "conversation.item.truncated",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "input_audio_buffer.committed",
    "input_audio_buffer.cleared",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.timeout_triggered",
    "output_audio_buffer.started",
    "output_audio_buffer.stopped",
    "output_audio_buffer.cleared",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.done",
    "response.text.done",
    "response.output_audio.delta",
    "response.audio.delta",
    "response.output_audio.done",
    "response.audio.done",
    "response.output_audio_transcript.done",
    "response.audio_transcript.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "transcription_session.updated",
];

/// Why a server event could not be understood. Counted, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("JSON without a string `type`: {0}")]
    BadShape(String),
    #[error("`{kind}` without `{field}`")]
    MissingField { kind: String, field: &'static str },
}

impl<'a> ServerEvent<'a> {
    /// Parses one server text frame.
    pub fn parse(text: &'a str) -> Result<ServerEvent<'a>, EventError> {
        let raw: RawEvent<'a> = serde_json::from_str(text).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => EventError::BadShape(e.to_string()),
                _ => EventError::NotJson(e.to_string()),
            }
        })?;
        let kind = raw.kind.0;
        let missing = |field| EventError::MissingField {
            kind: kind.to_string(),
            field,
        };
        Ok(match kind.as_ref() {
            "session.created" => ServerEvent::SessionCreated,
            "response.created" => ServerEvent::ResponseCreated {
                response_id: raw.response.and_then(|r| r.id).map(|t| t.0),
            },
            "response.output_text.delta"
            | "response.text.delta"
            | "response.output_audio_transcript.delta"
            | "response.audio_transcript.delta" => ServerEvent::TextDelta {
                delta: raw.delta.map(|t| t.0).ok_or_else(|| missing("delta"))?,
                response_id: raw.response_id.map(|t| t.0),
            },
            "response.output_item.added" => ServerEvent::OutputItemAdded {
                item_id: raw.item.and_then(|i| i.id).map(|t| t.0),
            },
            "response.done" => {
                let response = raw.response.ok_or_else(|| missing("response"))?;
                let details = response.status_details;
                let (reason, error) = match details {
                    Some(d) => (d.reason.map(|t| t.0), d.error.map(RawError::into_error)),
                    None => (None, None),
                };
                ServerEvent::ResponseDone {
                    response_id: response.id.map(|t| t.0),
                    status: response
                        .status
                        .as_ref()
                        .map_or(ResponseStatus::Completed, |s| {
                            ResponseStatus::from_wire(&s.0)
                        }),
                    reason,
                    error,
                    usage: response.usage.map(|u| Usage {
                        input_tokens: u.input_tokens.0,
                        output_tokens: u.output_tokens.0,
                        cached_tokens: u.input_token_details.map_or(0, |d| d.cached_tokens.0),
                    }),
                }
            }
            "rate_limits.updated" => ServerEvent::RateLimitsUpdated {
                limits: raw
                    .rate_limits
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| RateLimit {
                        name: r.name.map(|t| t.0).unwrap_or(Cow::Borrowed("")),
                        limit: r.limit.map(|n| n.0),
                        remaining: r.remaining.map(|n| n.0),
                        reset_seconds: r.reset_seconds.and_then(|s| s.0),
                    })
                    .collect(),
            },
            "error" => {
                ServerEvent::Error(raw.error.map(RawError::into_error).unwrap_or_else(|| {
                    RealtimeError {
                        message: Cow::Borrowed("error event without details"),
                        ..RealtimeError::default()
                    }
                }))
            }
            known if KNOWN_QUIET.contains(&known) => ServerEvent::Other { kind },
            _ => ServerEvent::Unknown { kind },
        })
    }
}

#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    delta: Option<Text<'a>>,
    #[serde(default, borrow)]
    response_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    response: Option<RawResponse<'a>>,
    #[serde(default, borrow)]
    item: Option<RawItem<'a>>,
    #[serde(default, borrow)]
    rate_limits: Option<Vec<RawRateLimit<'a>>>,
    #[serde(default, borrow)]
    error: Option<RawError<'a>>,
}

#[derive(Deserialize)]
struct RawResponse<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    status: Option<Text<'a>>,
    #[serde(default, borrow)]
    status_details: Option<RawStatusDetails<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct RawStatusDetails<'a> {
    #[serde(default, borrow)]
    reason: Option<Text<'a>>,
    #[serde(default, borrow)]
    error: Option<RawError<'a>>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    input_tokens: Count,
    #[serde(default)]
    output_tokens: Count,
    #[serde(default)]
    input_token_details: Option<RawInputDetails>,
}

#[derive(Deserialize)]
struct RawInputDetails {
    #[serde(default)]
    cached_tokens: Count,
}

#[derive(Deserialize)]
struct RawItem<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawRateLimit<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default)]
    limit: Option<Count>,
    #[serde(default)]
    remaining: Option<Count>,
    #[serde(default)]
    reset_seconds: Option<Seconds>,
}

#[derive(Deserialize)]
struct RawError<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    code: Option<Text<'a>>,
    #[serde(default, borrow)]
    message: Option<Text<'a>>,
    #[serde(default, borrow)]
    event_id: Option<Text<'a>>,
}

impl<'a> RawError<'a> {
    fn into_error(self) -> RealtimeError<'a> {
        RealtimeError {
            kind: self.kind.map(|t| t.0),
            code: self.code.map(|t| t.0),
            message: self
                .message
                .map(|t| t.0)
                .unwrap_or(Cow::Borrowed("(no message)")),
            event_id: self.event_id.map(|t| t.0),
        }
    }
}

/// A whole number that may come as an integer, a float or null (0).
#[derive(Clone, Copy, Debug, Default)]
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(v).unwrap_or(0)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                // `as` saturates: negative and NaN become 0.
                Ok(Count(v.round() as u64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// Seconds that may come as a float, an integer or null.
#[derive(Clone, Copy, Debug, Default)]
struct Seconds(Option<f64>);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(Some(v as f64)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                Ok(Seconds(Some(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Ok(Seconds(v.is_finite().then_some(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Seconds, E> {
                Ok(Seconds(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_borrow_their_text_and_read_beta_names() {
        for kind in [
            "response.output_text.delta",
            "response.text.delta",
            "response.audio_transcript.delta",
            "response.output_audio_transcript.delta",
        ] {
            let text = format!(r#"{{"type":"{kind}","response_id":"resp_1","delta":"Hi"}}"#);
            let event = ServerEvent::parse(&text).unwrap();
            match event {
                ServerEvent::TextDelta {
                    delta: Cow::Borrowed("Hi"),
                    response_id: Some(id),
                } => assert_eq!(id, "resp_1"),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn response_done_with_cached_tokens() {
        let event = ServerEvent::parse(
            r#"{"type":"response.done","event_id":"e","response":{"id":"resp_1","status":"completed","output":[{"id":"item_2","type":"message"}],"usage":{"total_tokens":30,"input_tokens":12,"output_tokens":18,"input_token_details":{"text_tokens":12,"audio_tokens":0,"cached_tokens":8,"cached_tokens_details":{"text_tokens":8}},"output_token_details":{"text_tokens":18,"audio_tokens":0}}}}"#,
        )
        .unwrap();
        assert_eq!(
            event,
            ServerEvent::ResponseDone {
                response_id: Some("resp_1".into()),
                status: ResponseStatus::Completed,
                reason: None,
                error: None,
                usage: Some(Usage {
                    input_tokens: 12,
                    output_tokens: 18,
                    cached_tokens: 8
                }),
            }
        );
    }

    #[test]
    fn failed_responses_carry_their_error() {
        let event = ServerEvent::parse(
            r#"{"type":"response.done","response":{"id":"r","status":"failed","status_details":{"type":"failed","error":{"type":"server_error","code":"upstream_error","message":"boom"}},"usage":null}}"#,
        )
        .unwrap();
        let ServerEvent::ResponseDone {
            status: ResponseStatus::Failed,
            error: Some(error),
            usage: None,
            ..
        } = event
        else {
            panic!("{event:?}")
        };
        assert_eq!(error.summary(), "boom (upstream_error)");
    }

    #[test]
    fn rate_limits_and_errors() {
        let event = ServerEvent::parse(
            r#"{"type":"rate_limits.updated","rate_limits":[{"name":"requests","limit":1000,"remaining":999,"reset_seconds":0.06},{"name":"tokens","limit":50000,"remaining":49000,"reset_seconds":1}]}"#,
        )
        .unwrap();
        let ServerEvent::RateLimitsUpdated { limits } = event else {
            panic!()
        };
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[1].remaining, Some(49000));
        assert_eq!(limits[0].reset_seconds, Some(0.06));
        let event = ServerEvent::parse(
            r#"{"type":"error","event_id":"e1","error":{"type":"invalid_request_error","code":"invalid_api_key","message":"Incorrect API key provided","param":null,"event_id":null}}"#,
        )
        .unwrap();
        let ServerEvent::Error(error) = event else {
            panic!()
        };
        assert_eq!(error.code.as_deref(), Some("invalid_api_key"));
    }

    #[test]
    fn unknown_quiet_and_malformed() {
        assert_eq!(
            ServerEvent::parse(r#"{"type":"conversation.item.added","item":{}}"#).unwrap(),
            ServerEvent::Other {
                kind: "conversation.item.added".into()
            }
        );
        assert_eq!(
            ServerEvent::parse(r#"{"type":"sim.noise","x":[1]}"#).unwrap(),
            ServerEvent::Unknown {
                kind: "sim.noise".into()
            }
        );
        assert!(matches!(
            ServerEvent::parse("{nope"),
            Err(EventError::NotJson(_))
        ));
        assert!(matches!(
            ServerEvent::parse(r#"{"delta":"x"}"#),
            Err(EventError::BadShape(_))
        ));
        assert!(matches!(
            ServerEvent::parse(r#"{"type":"response.output_text.delta"}"#),
            Err(EventError::MissingField { field: "delta", .. })
        ));
    }

    #[test]
    fn client_events_have_the_ga_shape() {
        let update = ClientEvent::SessionUpdate {
            session: SessionConfig {
                kind: Some("realtime".into()),
                instructions: Some("Be brief.".into()),
                output_modalities: Some(vec!["text".into()]),
                model: None,
            },
        };
        assert_eq!(
            update.to_text(),
            r#"{"type":"session.update","session":{"type":"realtime","instructions":"Be brief.","output_modalities":["text"]}}"#
        );
        assert_eq!(
            ClientEvent::message(None, "user", "hello").to_text(),
            r#"{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"hello"}]}}"#
        );
        assert_eq!(
            ClientEvent::ResponseCreate { response: None }.to_text(),
            r#"{"type":"response.create"}"#
        );
        let create = ClientEvent::parse(
            r#"{"type":"response.create","response":{"max_output_tokens":"inf","metadata":{}}}"#,
        )
        .unwrap();
        assert!(matches!(
            create,
            ClientEvent::ResponseCreate {
                response: Some(ResponseConfig {
                    max_output_tokens: Some(MaxTokens::Inf(_)),
                    ..
                })
            }
        ));
        assert!(ClientEvent::parse(r#"{"type":"nope"}"#).is_err());
    }

    #[test]
    fn model_is_added_to_the_url() {
        assert_eq!(
            url_with_model("wss://api.example/v1/realtime", "gpt-realtime"),
            "wss://api.example/v1/realtime?model=gpt-realtime"
        );
        assert_eq!(
            url_with_model("wss://api.example/v1/realtime?model=x", "gpt-realtime"),
            "wss://api.example/v1/realtime?model=x"
        );
        assert_eq!(
            url_with_model("ws://h/v1/realtime?a=1", "m 1"),
            "ws://h/v1/realtime?a=1&model=m+1"
        );
    }
}
