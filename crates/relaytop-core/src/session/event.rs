//! The session events: everything a session reports, the one stream every consumer folds.
//!
//! A session task, the replay source and test fixtures all produce `SessionEvent`s; metrics,
//! cost, the recorder, the headless report and the TUI only ever consume them. Times are
//! whole microseconds since the run's start (a monotonic clock), so live runs, replays and
//! fixtures with a fake clock are indistinguishable. `close_code_meaning` and `close_cause`
//! put a WebSocket close code into the words events and logs use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Index of a session in the run's session table (`crate::session::SessionInfo`).
pub type SessionId = u32;

/// Number of a request within one session, counting from 1.
pub type RequestId = u64;

/// One thing that happened to one session at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub session: SessionId,
    /// Microseconds since the run started.
    pub at_us: u64,
    pub kind: EventKind,
}

impl SessionEvent {
    pub fn new(session: SessionId, at: Duration, kind: EventKind) -> Self {
        Self {
            session,
            at_us: micros(at),
            kind,
        }
    }

    /// Time since the run started.
    pub fn at(&self) -> Duration {
        Duration::from_micros(self.at_us)
    }
}

/// Whole microseconds of a duration, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What a session is doing, as a person watching it would say it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// Opening the connection (TCP, TLS, upgrade); `attempt` counts from 1.
    Connecting { attempt: u32 },
    /// Connected, no request under way.
    Open,
    /// A response is streaming.
    Streaming { request: RequestId },
    /// Waiting before the next connection attempt.
    BackingOff {
        attempt: u32,
        max_attempts: u32,
        /// When the wait ends, in microseconds since the run started.
        until_us: u64,
        /// Set when the session no longer counts retries but keeps watching: the relay is
        /// down (the retries are used up) or refused the key. Absent in older recordings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watch: Option<Watch>,
    },
    /// Given up: retrying cannot help (bad key, policy close, attempts exhausted) and the
    /// session was told not to keep watching (`Timing::watch`, `Timing::recheck`).
    Stopped { reason: String },
    /// Closed because the user (or the end of the run) asked for it.
    Closed,
}

impl SessionState {
    /// A short label: connecting, open, streaming, backing off, stopped, closed.
    pub fn label(&self) -> &'static str {
        match self {
            SessionState::Connecting { .. } => "connecting",
            SessionState::Open => "open",
            SessionState::Streaming { .. } => "streaming",
            SessionState::BackingOff { .. } => "backing off",
            SessionState::Stopped { .. } => "stopped",
            SessionState::Closed => "closed",
        }
    }

    /// Whether the session has a live connection.
    pub fn is_up(&self) -> bool {
        matches!(self, SessionState::Open | SessionState::Streaming { .. })
    }
}

/// A session that keeps watching a relay that is down or refused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// When the failures in a row began, in microseconds since the run started.
    pub since_us: u64,
    /// Why the relay refused the session (the key, the policy), when it did; `None`: down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl Watch {
    /// What a person watching is told, with `since` the start as the caller writes it (a
    /// wall clock) and `next_in_us` the time to the next look: `down since 14:03:22, next
    /// look in 42 s`, or `refused since 14:03:22, next check in 4m 58s: upgrade answered
    /// 401: invalid API key`.
    pub fn describe(&self, since: &str, next_in_us: u64) -> String {
        let next = crate::numbers::duration_short(next_in_us);
        match &self.refused {
            None => format!("down since {since}, next look in {next}"),
            Some(reason) => format!("refused since {since}, next check in {next}: {reason}"),
        }
    }
}

/// Tokens of one response, from the relay's `usage` or estimated from the text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    /// Input tokens served from a cache (a subset of `input`, priced on their own).
    #[serde(default)]
    pub cached_input: u64,
    /// Input tokens written to a cache (Anthropic's `cache_creation_input_tokens`; a subset of
    /// `input`, priced at the model's cache-write rate).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_input: u64,
    /// Output tokens spent thinking (a subset of `output`: reasoning tokens, Gemini's
    /// thoughts), billed as output.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_output: u64,
    /// True when the relay sent no usage and these are estimates.
    pub estimated: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What kind of failure an error is, for counting and for deciding whether to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 401/403 or close 1008: the key or the policy; retrying cannot help.
    Auth,
    /// 429 or a `rate_limited` error frame.
    RateLimited,
    /// 503 or an `overloaded` error frame.
    Overloaded,
    /// The relay's upstream failed (`upstream_error`, 5xx).
    Upstream,
    /// The relay rejected the request (`invalid_request`, 4xx).
    InvalidRequest,
    /// TCP, TLS, DNS, handshake or socket failure.
    Network,
    /// A handshake or response that took too long, or a peer found dead.
    Timeout,
    /// A frame that could not be understood.
    Protocol,
    /// A response cut short: its stream ended (or its connection dropped) after text came
    /// but before its terminal mark; its own outcome, apart from network errors.
    Cut,
    /// Anything else.
    Other,
}

impl ErrorKind {
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Upstream => "upstream",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Network => "network",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Cut => "cut",
            ErrorKind::Other => "other",
        }
    }
}

/// A completed response: what `EventKind::Done` carries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub request: RequestId,
    pub model: String,
    /// Time to first token; `None` when the response carried no text.
    pub ttft_us: Option<u64>,
    /// Time to the first answer token, when thinking came before it (when it did not,
    /// the first answer token is the first token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_us: Option<u64>,
    /// From sending the request to `done`.
    pub total_us: u64,
    pub tokens: Tokens,
    /// Cost in US dollars reported by the relay, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_cost_usd: Option<f64>,
    pub finish_reason: Option<String>,
    pub chunks: u32,
    /// Output bytes (UTF-8) of the response text.
    pub bytes: u64,
    /// Set when the response ended cleanly yet was cut short: a chat stream whose usage
    /// and `[DONE]` came though no choice carried a `finish_reason`, a Responses
    /// `incomplete`, an empty response. Says why. Absent in older recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<String>,
    /// Output tokens relaytop counted in the answer text with a tokenizer, when it
    /// counted them (for the usage audit, or as the estimate when no usage came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_tokens: Option<u64>,
}

/// The relay's own account of its rate limits (`EventKind::RateLimitStatus`). Each field is
/// absent when the relay did not say; resets are in milliseconds from when the event was
/// reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_remaining: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_reset_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_remaining: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_reset_ms: Option<u64>,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The session's state changed.
    State(SessionState),
    /// A connection was established (upgrade answered 101).
    Connected {
        attempt: u32,
        /// From starting the TCP connect to the upgrade's answer.
        handshake_us: u64,
    },
    /// A request was sent.
    RequestSent {
        request: RequestId,
        model: String,
        /// Estimated prompt tokens (used when the relay sends no usage).
        prompt_tokens_estimate: u64,
    },
    /// The first streamed token of a request arrived.
    FirstToken {
        request: RequestId,
        /// Time to first token: from sending the request to its first chunk.
        ttft_us: u64,
    },
    /// A piece of streamed text: held inline, without an allocation, up to 24 bytes (most
    /// chunks are a token or a few).
    Chunk {
        request: RequestId,
        text: compact_str::CompactString,
    },
    /// A response completed. Boxed: unboxed, its 216 bytes would set the size of every event
    /// (a chunk needs 32), and there is only one per response.
    Done(Box<Completed>),
    /// A request ended without `done` (an error frame, a drop mid-stream, a timeout).
    RequestFailed {
        request: RequestId,
        kind: ErrorKind,
        reason: String,
    },
    /// The relay or the connection reported an error.
    Error {
        kind: ErrorKind,
        message: String,
        /// Whether the session will retry on its own.
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// An application heartbeat was answered.
    Pong {
        /// Round trip from `ping` to `pong`.
        rtt_us: u64,
    },
    /// A heartbeat went unanswered for a whole heartbeat interval.
    HeartbeatMissed {
        /// How long the ping has been waiting.
        waited_us: u64,
    },
    /// The connection closed.
    Closed {
        /// The WebSocket close code; 1006 when the TCP connection just ended.
        code: u16,
        reason: String,
        /// True when this client asked for the close; false is a drop.
        requested: bool,
    },
    /// Waiting before reconnect attempt `attempt` of `max_attempts`.
    BackingOff {
        attempt: u32,
        max_attempts: u32,
        delay_ms: u64,
        cause: String,
    },
    /// Sending is held back by a rate limit (the relay's 429, or the local window).
    RateLimited { wait_ms: u64, cause: String },
    /// A frame that could not be parsed; counted, never fatal.
    Malformed { reason: String },
    /// A well-formed frame of an unknown type; counted, never fatal.
    UnknownFrame { frame_type: String },
    /// A transcription result.
    Transcript {
        request: RequestId,
        text: String,
        is_final: bool,
    },
    /// A point of interest (reconnect, canary stage, a key press), shown on timelines.
    Marker { label: String },
    /// The relay's own account of its rate limits: openai-sse's `x-ratelimit-*` response
    /// headers, or openai-realtime's `rate_limits.updated`. Each field is absent when the relay
    /// did not say; resets are in milliseconds from when the event was reported. Boxed, as
    /// `Done` is: one per response at most, and three times a chunk's size.
    RateLimitStatus(Box<RateLimits>),
    /// A reading of the provider's account (`crate::account`), reported on behalf of the
    /// provider's first session so that its recording holds it.
    Account(Box<crate::account::AccountReading>),
    /// A failed request as the relay explained it: its error class and the relay's request
    /// id (`crate::account::errors`), after the `RequestFailed` or `Error` it explains.
    RelayError(Box<crate::account::RelayError>),
}

impl EventKind {
    /// Replaces every occurrence of `key` in the event's text (state reasons, error messages,
    /// chunk and transcript text, close reasons, causes, labels) by `[REDACTED]`, as the
    /// recorder does with the frames it writes: a relay that echoes the key (a 401 body quoting
    /// the `Authorization` header, streamed text repeating it) never gets it past the session.
    /// Nothing is allocated when the key is not there.
    pub fn scrub(&mut self, key: &Scrub) {
        fn text(field: &mut String, key: &Scrub) {
            if key.found(field.as_bytes()) {
                *field = key.replace(field);
            }
        }
        match self {
            EventKind::State(SessionState::Stopped { reason }) => text(reason, key),
            EventKind::State(SessionState::BackingOff {
                watch:
                    Some(Watch {
                        refused: Some(reason),
                        ..
                    }),
                ..
            }) => text(reason, key),
            EventKind::Chunk { text: chunk, .. } => {
                if key.found(chunk.as_bytes()) {
                    *chunk = compact_str::CompactString::from(key.replace(chunk));
                }
            }
            EventKind::RequestSent { model, .. } => text(model, key),
            EventKind::Done(done) => {
                text(&mut done.model, key);
                if let Some(reason) = &mut done.finish_reason {
                    text(reason, key);
                }
            }
            EventKind::RequestFailed { reason, .. } => text(reason, key),
            EventKind::Error { message, .. } => text(message, key),
            EventKind::Closed { reason, .. } => text(reason, key),
            EventKind::BackingOff { cause, .. } | EventKind::RateLimited { cause, .. } => {
                text(cause, key)
            }
            EventKind::Malformed { reason } => text(reason, key),
            EventKind::UnknownFrame { frame_type } => text(frame_type, key),
            EventKind::Transcript { text: said, .. } => text(said, key),
            EventKind::Marker { label } => text(label, key),
            EventKind::Account(reading) => {
                if let Some(error) = &mut reading.error {
                    text(error, key);
                }
            }
            EventKind::RelayError(error) => {
                if let Some(id) = &mut error.relay_request_id {
                    text(id, key);
                }
            }
            EventKind::State(_)
            | EventKind::Connected { .. }
            | EventKind::FirstToken { .. }
            | EventKind::Pong { .. }
            | EventKind::HeartbeatMissed { .. }
            | EventKind::RateLimitStatus(_) => {}
        }
    }
}

/// A session's key, ready to be looked for in every text the session reports (a `memmem`
/// finder built once: the check on each chunk is one substring search, no allocation).
///
/// Limit: each event's text is scrubbed on its own, as the recorder scrubs each frame, so a
/// key a relay splits across two chunks is not caught (the two halves stay in two events; a
/// consumer that joins them would show it). Relays that echo a key send it in one piece (a
/// 401 body, one quoted header); joining chunks here would make replay differ from live.
#[derive(Clone)]
pub struct Scrub {
    key: String,
    finder: memchr::memmem::Finder<'static>,
}

impl std::fmt::Debug for Scrub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrub([REDACTED])")
    }
}

impl Scrub {
    /// A scrub for `key`; `None` for an empty key (nothing to look for).
    pub fn new(key: &crate::config::secret::Secret) -> Option<Self> {
        let raw = key.expose();
        if raw.is_empty() {
            return None;
        }
        Some(Self {
            key: raw.to_owned(),
            finder: memchr::memmem::Finder::new(raw.as_bytes()).into_owned(),
        })
    }

    fn found(&self, text: &[u8]) -> bool {
        self.finder.find(text).is_some()
    }

    /// `text` with every occurrence of the key replaced by `[REDACTED]`; borrowed (no
    /// allocation) when the key is not in it.
    pub fn scrub<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        if self.found(text.as_bytes()) {
            std::borrow::Cow::Owned(self.replace(text))
        } else {
            std::borrow::Cow::Borrowed(text)
        }
    }

    /// `text` with every occurrence of the key replaced by `[REDACTED]`.
    pub fn replace(&self, text: &str) -> String {
        text.replace(&self.key, crate::config::secret::REDACTED)
    }
}

/// What a WebSocket close code means, in a few words.
pub fn close_code_meaning(code: u16) -> &'static str {
    match code {
        1000 => "normal",
        1001 => "going away",
        1002 => "protocol error",
        1005 => "no code given",
        1006 => "abnormal: no close frame",
        1007 => "invalid data",
        1008 => "policy violation",
        1009 => "message too big",
        1011 => "server error",
        1012 => "service restart",
        1013 => "try again later",
        3000..=3999 => "application (registered)",
        4000..=4999 => "application",
        _ => "unknown code",
    }
}

/// A close the session did not ask for, as the cause of a reconnect: `close 1011 (server
/// error): reason`, without the colon part when the peer gave no reason.
pub fn close_cause(code: u16, reason: &str) -> String {
    if reason.is_empty() {
        format!("close {code} ({})", close_code_meaning(code))
    } else {
        format!("close {code} ({}): {reason}", close_code_meaning(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret::Secret;

    const KEY: &str = "hs_live_SCRUBTEST0123456789";

    #[test]
    fn scrub_replaces_the_key_in_every_text_and_leaves_the_rest() {
        let scrub = Scrub::new(&Secret::new(KEY)).expect("a key");
        let mut chunk = EventKind::Chunk {
            request: 1,
            text: format!("key {KEY}!").into(),
        };
        chunk.scrub(&scrub);
        assert_eq!(
            chunk,
            EventKind::Chunk {
                request: 1,
                text: "key [REDACTED]!".into()
            }
        );
        let mut stopped = EventKind::State(SessionState::Stopped {
            reason: format!("answered 401: Bearer {KEY} and {KEY}"),
        });
        stopped.scrub(&scrub);
        assert_eq!(
            stopped,
            EventKind::State(SessionState::Stopped {
                reason: "answered 401: Bearer [REDACTED] and [REDACTED]".into()
            })
        );
        let clean = EventKind::Error {
            kind: ErrorKind::Network,
            message: "connection lost".into(),
            retryable: true,
            retry_after_ms: None,
        };
        let mut same = clean.clone();
        same.scrub(&scrub);
        assert_eq!(same, clean);
        assert!(matches!(
            scrub.scrub("no key here"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(Scrub::new(&Secret::new("  ")).is_none());
        assert_eq!(format!("{scrub:?}"), "Scrub([REDACTED])");
        let mut done = EventKind::Done(Box::new(Completed {
            model: format!("m-{KEY}"),
            finish_reason: Some(format!("{KEY}!")),
            ..Completed::default()
        }));
        done.scrub(&scrub);
        assert_eq!(
            done,
            EventKind::Done(Box::new(Completed {
                model: "m-[REDACTED]".into(),
                finish_reason: Some("[REDACTED]!".into()),
                ..Completed::default()
            }))
        );
    }

    #[test]
    fn an_event_stays_small() {
        // Every event is moved a few times on the hot path (decoder, session channel, fold,
        // recorder), up to a million a second, and an enum is as large as its largest variant:
        // large, rare variants are boxed so that a chunk does not copy 232 bytes.
        let size = std::mem::size_of::<SessionEvent>();
        assert!(size <= 80, "SessionEvent takes {size} bytes");
    }

    #[test]
    fn boxed_events_serialize_flat_and_round_trip() {
        // Recordings, `replay --format json` and exports hold the fields beside `type`, as
        // they were when the variants held them inline.
        let done = SessionEvent {
            session: 2,
            at_us: 1_500_000,
            kind: EventKind::Done(Box::new(Completed {
                request: 3,
                model: "gpt-4.1".into(),
                ttft_us: Some(420_000),
                answer_us: None,
                total_us: 1_200_000,
                tokens: Tokens {
                    input: 9,
                    output: 12,
                    cached_input: 3,
                    cache_write_input: 0,
                    reasoning_output: 4,
                    estimated: false,
                },
                reported_cost_usd: None,
                finish_reason: Some("stop".into()),
                chunks: 12,
                bytes: 48,
                cut: None,
                text_tokens: None,
            })),
        };
        let json = serde_json::to_string(&done).unwrap();
        assert_eq!(
            json,
            r#"{"session":2,"at_us":1500000,"kind":{"type":"done","request":3,"model":"gpt-4.1","ttft_us":420000,"total_us":1200000,"tokens":{"input":9,"output":12,"cached_input":3,"reasoning_output":4,"estimated":false},"finish_reason":"stop","chunks":12,"bytes":48}}"#
        );
        assert_eq!(serde_json::from_str::<SessionEvent>(&json).unwrap(), done);

        let cut = EventKind::Done(Box::new(Completed {
            request: 1,
            model: "m".into(),
            answer_us: Some(5),
            total_us: 9,
            reported_cost_usd: Some(0.25),
            cut: Some("empty response".into()),
            text_tokens: Some(11),
            ..Completed::default()
        }));
        let json = serde_json::to_string(&cut).unwrap();
        assert_eq!(
            json,
            r#"{"type":"done","request":1,"model":"m","ttft_us":null,"answer_us":5,"total_us":9,"tokens":{"input":0,"output":0,"cached_input":0,"estimated":false},"reported_cost_usd":0.25,"finish_reason":null,"chunks":0,"bytes":0,"cut":"empty response","text_tokens":11}"#
        );
        assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), cut);

        let limits = EventKind::RateLimitStatus(Box::new(RateLimits {
            requests_limit: Some(10_000),
            requests_remaining: Some(9_998),
            tokens_reset_ms: Some(0),
            ..RateLimits::default()
        }));
        let json = serde_json::to_string(&limits).unwrap();
        assert_eq!(
            json,
            r#"{"type":"rate_limit_status","requests_limit":10000,"requests_remaining":9998,"tokens_reset_ms":0}"#
        );
        assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), limits);
        assert_eq!(
            serde_json::from_str::<EventKind>(r#"{"type":"rate_limit_status"}"#).unwrap(),
            EventKind::RateLimitStatus(Box::default())
        );
    }
}
