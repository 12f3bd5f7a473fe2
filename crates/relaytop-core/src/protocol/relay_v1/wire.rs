//! relay/v1 frames (spec/PROTOCOL.md): typed client and server frames, parsed from borrowed text.
//!
//! Server frames are on the hot path (one per streamed chunk), so they are parsed from the
//! borrowed frame text into a flat struct of optional fields without building a
//! `serde_json::Value`; strings without escapes are borrowed, not copied. Client frames are
//! rare (one per request or heartbeat) and are plain owned serde types that the simulator
//! also parses.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The WebSocket path a relay serves relay/v1 on.
pub const STREAM_PATH: &str = "/v1/stream";

/// One chat message: `{role, content}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Who said a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// A frame from client to relay (a JSON text frame tagged by `type`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientFrame {
    /// Start one streamed completion; one at a time per connection.
    #[serde(rename = "chat.completion")]
    ChatCompletion {
        model: String,
        messages: Vec<ChatMessage>,
        #[serde(default = "yes")]
        stream: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        temperature: Option<f32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_tokens: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Application heartbeat, answered by `pong`.
    #[serde(rename = "ping")]
    Ping,
    /// Start a transcription; audio follows in binary frames, ended by `audio.end`.
    #[serde(rename = "audio.transcription")]
    AudioTranscription {
        model: String,
        #[serde(default = "yes")]
        stream: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The end of the audio of a transcription.
    #[serde(rename = "audio.end")]
    AudioEnd,
    /// Stop the completion under way; the relay ends it with `done`.
    #[serde(rename = "cancel")]
    Cancel {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

fn yes() -> bool {
    true
}

impl ClientFrame {
    /// The frame as the JSON text sent on the wire.
    pub fn to_text(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // custom serializers.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a client frame (the simulator's side of the wire).
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        serde_json::from_str(text).map_err(|e| FrameError::from_json(text, &e))
    }
}

/// Token usage reported by a relay in `done`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// The `code` of an `error` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    RateLimited,
    InvalidRequest,
    UpstreamError,
    Overloaded,
    /// A code this client does not know; the frame is still an error.
    Other,
}

impl ErrorCode {
    pub fn from_wire(code: &str) -> Self {
        match code {
            "rate_limited" => Self::RateLimited,
            "invalid_request" => Self::InvalidRequest,
            "upstream_error" => Self::UpstreamError,
            "overloaded" => Self::Overloaded,
            _ => Self::Other,
        }
    }
}

/// A frame from relay to client.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ServerFrame<'a> {
    /// The next piece of streamed text.
    #[serde(rename = "chunk")]
    Chunk {
        content: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Cow<'a, str>>,
    },
    /// The completion is over.
    #[serde(rename = "done")]
    Done {
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Cow<'a, str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        finish_reason: Option<Cow<'a, str>>,
    },
    /// The request failed; the connection stays open unless it is closed next.
    #[serde(rename = "error")]
    Error {
        details: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<Cow<'a, str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Cow<'a, str>>,
    },
    /// The answer to `ping`.
    #[serde(rename = "pong")]
    Pong,
    /// A transcription result.
    #[serde(rename = "transcript")]
    Transcript {
        text: Cow<'a, str>,
        #[serde(rename = "final")]
        is_final: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Cow<'a, str>>,
    },
    /// A well-formed frame of a type this client does not know: counted, never fatal.
    #[serde(skip)]
    Unknown { kind: Cow<'a, str> },
}

/// A string borrowed from the frame text when it has no escapes (serde borrows a `Cow` only
/// when it is a field of its own, not inside an `Option`).
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The fields of a `chunk` frame (any others are skipped): most of a stream's frames are
/// chunks, and this small struct parses them without building the all-fields one below
/// (`relaytop bench ingest`: docs/PERFORMANCE.md). Frames of other types are parsed again
/// in full.
#[derive(Deserialize)]
struct RawChunkFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
}

/// The content of a chunk frame written exactly as `{"type":"chunk","content":"..."}` with
/// no escape or control character in the content (most frames of a stream), read without
/// serde_json; `None` for anything else, which serde_json reads (or refuses) as before.
fn plain_chunk(text: &str) -> Option<&str> {
    let content = text
        .strip_prefix(r#"{"type":"chunk","content":""#)?
        .strip_suffix(r#""}"#)?;
    let plain = content
        .bytes()
        .all(|b| b != b'"' && b != b'\\' && b >= 0x20);
    plain.then_some(content)
}

/// Every field any server frame may carry, all optional, borrowed where possible.
#[derive(Deserialize)]
struct RawServerFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
    #[serde(default, borrow)]
    details: Option<Text<'a>>,
    #[serde(default, borrow)]
    message: Option<Text<'a>>,
    #[serde(default, borrow)]
    code: Option<Text<'a>>,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, rename = "final")]
    is_final: Option<bool>,
}

impl<'a> ServerFrame<'a> {
    /// Parses one server text frame. A frame that is not JSON, or that lacks a field its
    /// type needs, is an error the caller counts; an unknown `type` is `Unknown`.
    pub fn parse(text: &'a str) -> Result<Self, FrameError> {
        if let Some(content) = plain_chunk(text) {
            return Ok(ServerFrame::Chunk {
                content: Cow::Borrowed(content),
                id: None,
            });
        }
        Self::parse_general(text)
    }

    /// `parse` without its first fast path (`plain_chunk`): serde_json reads every frame.
    fn parse_general(text: &'a str) -> Result<Self, FrameError> {
        let chunk: RawChunkFrame<'a> =
            serde_json::from_str(text).map_err(|e| FrameError::from_json(text, &e))?;
        if chunk.kind.0 == "chunk"
            && let Some(content) = chunk.content
        {
            return Ok(ServerFrame::Chunk {
                content: content.0,
                id: chunk.id.map(|t| t.0),
            });
        }
        let raw: RawServerFrame<'a> =
            serde_json::from_str(text).map_err(|e| FrameError::from_json(text, &e))?;
        let kind = raw.kind.0;
        let missing = |field: &'static str, kind: &str| FrameError::MissingField {
            kind: kind.to_string(),
            field,
        };
        let text = |t: Option<Text<'a>>| t.map(|t| t.0);
        Ok(match kind.as_ref() {
            "chunk" => ServerFrame::Chunk {
                content: text(raw.content).ok_or_else(|| missing("content", &kind))?,
                id: text(raw.id),
            },
            "done" => ServerFrame::Done {
                usage: raw.usage,
                id: text(raw.id),
                finish_reason: text(raw.finish_reason),
            },
            "error" => ServerFrame::Error {
                // `details` is the spec's name; some relays send `message`. Accept either.
                details: text(raw.details)
                    .or(text(raw.message))
                    .unwrap_or(Cow::Borrowed("(no details)")),
                code: text(raw.code),
                retry_after_ms: raw.retry_after_ms,
                id: text(raw.id),
            },
            "pong" => ServerFrame::Pong,
            "transcript" => ServerFrame::Transcript {
                text: text(raw.text).ok_or_else(|| missing("text", &kind))?,
                is_final: raw.is_final.unwrap_or(true),
                id: text(raw.id),
            },
            _ => ServerFrame::Unknown { kind },
        })
    }

    /// The frame as the JSON text sent on the wire (the simulator's side).
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `code` of an error frame, classified.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ServerFrame::Error { code: Some(c), .. } => Some(ErrorCode::from_wire(c)),
            ServerFrame::Error { code: None, .. } => Some(ErrorCode::Other),
            _ => None,
        }
    }
}

/// Why a frame could not be understood. Never fatal to a session: it is counted and shown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not JSON: {reason}")]
    NotJson { reason: String },
    #[error("JSON without a string `type`: {reason}")]
    BadShape { reason: String },
    #[error("`{kind}` frame without `{field}`")]
    MissingField { kind: String, field: &'static str },
}

impl FrameError {
    fn from_json(_text: &str, e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => FrameError::NotJson {
                reason: e.to_string(),
            },
            Category::Data => FrameError::BadShape {
                reason: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_chunks_read_as_serde_json_reads_them() {
        for text in [
            r#"{"type":"chunk","content":"Hel"}"#,
            r#"{"type":"chunk","content":""}"#,
            r#"{"type":"chunk","content":" é 中 🙂"}"#,
        ] {
            assert!(plain_chunk(text).is_some(), "{text}");
            assert_eq!(
                ServerFrame::parse(text).ok(),
                ServerFrame::parse_general(text).ok()
            );
        }
        // Left to serde_json: an escape, a control character, a quote, another shape.
        for text in [
            r#"{"type":"chunk","content":"a"b"}"#,
            r#"{"type":"chunk","content":"a
b"}"#,
            "{\"type\":\"chunk\",\"content\":\"a\tb\"}",
            r#"{"type":"chunk","content":"a"}"}"#,
            r#"{"type":"chunk","content":"a"} "#,
            r#"{"type":"chunk","content":"a","id":"r1"}"#,
            r#"{"content":"a","type":"chunk"}"#,
        ] {
            assert_eq!(plain_chunk(text), None, "{text}");
            assert_eq!(
                ServerFrame::parse(text).ok(),
                ServerFrame::parse_general(text).ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn chunk_borrows_its_content() {
        let f = ServerFrame::parse(r#"{"type":"chunk","content":"Hel","id":"r1"}"#).unwrap();
        match f {
            ServerFrame::Chunk {
                content: Cow::Borrowed(c),
                id,
            } => {
                assert_eq!(c, "Hel");
                assert_eq!(id.as_deref(), Some("r1"));
            }
            other => panic!("expected a borrowed chunk, got {other:?}"),
        }
    }

    #[test]
    fn escaped_content_is_decoded() {
        let f = ServerFrame::parse(r#"{"type":"chunk","content":"a\nb \"q\" \u00e9"}"#).unwrap();
        assert_eq!(
            f,
            ServerFrame::Chunk {
                content: Cow::Owned("a\nb \"q\" é".into()),
                id: None
            }
        );
    }

    #[test]
    fn done_with_and_without_usage() {
        let f = ServerFrame::parse(
            r#"{"type":"done","usage":{"prompt_tokens":9,"completion_tokens":12},"finish_reason":"stop"}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            ServerFrame::Done {
                usage: Some(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 12
                }),
                id: None,
                finish_reason: Some("stop".into())
            }
        );
        let f = ServerFrame::parse(r#"{"type":"done"}"#).unwrap();
        assert!(matches!(f, ServerFrame::Done { usage: None, .. }));
    }

    #[test]
    fn error_frame_with_retry_after() {
        let f = ServerFrame::parse(
            r#"{"type":"error","details":"slow down","code":"rate_limited","retry_after_ms":1500}"#,
        )
        .unwrap();
        assert_eq!(f.error_code(), Some(ErrorCode::RateLimited));
        assert!(matches!(
            f,
            ServerFrame::Error {
                retry_after_ms: Some(1500),
                ..
            }
        ));
    }

    #[test]
    fn unknown_type_and_extra_fields_are_tolerated() {
        let f =
            ServerFrame::parse(r#"{"type":"session.stats","x":1,"nested":{"a":[1,2]}}"#).unwrap();
        assert_eq!(
            f,
            ServerFrame::Unknown {
                kind: "session.stats".into()
            }
        );
        let f = ServerFrame::parse(r#"{"type":"pong","obfuscation":"xyz"}"#).unwrap();
        assert_eq!(f, ServerFrame::Pong);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(matches!(
            ServerFrame::parse("not json"),
            Err(FrameError::NotJson { .. })
        ));
        assert!(matches!(
            ServerFrame::parse(r#"{"content":"x"}"#),
            Err(FrameError::BadShape { .. })
        ));
        assert!(matches!(
            ServerFrame::parse(r#"{"type":"chunk"}"#),
            Err(FrameError::MissingField {
                field: "content",
                ..
            })
        ));
        assert!(ServerFrame::parse(r#"{"type":"chunk","content":"#).is_err());
        assert!(ServerFrame::parse("").is_err());
    }

    #[test]
    fn server_frames_round_trip() {
        let frames = [
            ServerFrame::Chunk {
                content: "hi".into(),
                id: Some("7".into()),
            },
            ServerFrame::Done {
                usage: Some(Usage {
                    prompt_tokens: 1,
                    completion_tokens: 2,
                }),
                id: None,
                finish_reason: Some("stop".into()),
            },
            ServerFrame::Error {
                details: "boom".into(),
                code: Some("overloaded".into()),
                retry_after_ms: Some(10),
                id: None,
            },
            ServerFrame::Pong,
            ServerFrame::Transcript {
                text: "hello".into(),
                is_final: true,
                id: None,
            },
        ];
        for f in frames {
            let text = f.to_text();
            assert_eq!(ServerFrame::parse(&text).unwrap(), f, "{text}");
        }
    }

    #[test]
    fn client_frames_match_the_spec_shapes() {
        let f = ClientFrame::ChatCompletion {
            model: "gpt-4.1".into(),
            messages: vec![ChatMessage::new(Role::User, "hi")],
            stream: true,
            temperature: None,
            max_tokens: Some(32),
            id: None,
        };
        assert_eq!(
            f.to_text(),
            r#"{"type":"chat.completion","model":"gpt-4.1","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":32}"#
        );
        assert_eq!(ClientFrame::Ping.to_text(), r#"{"type":"ping"}"#);
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#).unwrap(),
            ClientFrame::Ping
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"cancel"}"#).unwrap(),
            ClientFrame::Cancel { id: None }
        );
    }
}
