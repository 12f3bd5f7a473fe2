//! What a session is asked to do: where it connects, with which key, its workload and timing.
//!
//! A `SessionSpec` is built from the configuration (or by the default world) and handed to
//! the session task. `SessionInfo` is the part every consumer needs to label events.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::secret::Secret;
use crate::session::SessionId;

/// The wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// relay/v1 over WebSocket (spec/PROTOCOL.md).
    #[default]
    RelayV1,
    /// OpenAI-compatible Chat Completions over Server-Sent Events.
    OpenaiSse,
    /// The OpenAI Realtime API over WebSocket.
    OpenaiRealtime,
    /// Anthropic Messages (`POST /v1/messages`) over Server-Sent Events.
    AnthropicMessages,
    /// OpenAI Responses (`POST /v1/responses`) over Server-Sent Events.
    OpenaiResponses,
    /// Gemini `streamGenerateContent?alt=sse` over Server-Sent Events.
    Gemini,
}

impl Protocol {
    /// Every protocol, in the order help and docs list them.
    pub const ALL: [Protocol; 6] = [
        Protocol::RelayV1,
        Protocol::OpenaiSse,
        Protocol::OpenaiRealtime,
        Protocol::AnthropicMessages,
        Protocol::OpenaiResponses,
        Protocol::Gemini,
    ];

    /// The name configs and the command line use.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::RelayV1 => "relay-v1",
            Protocol::OpenaiSse => "openai-sse",
            Protocol::OpenaiRealtime => "openai-realtime",
            Protocol::AnthropicMessages => "anthropic-messages",
            Protocol::OpenaiResponses => "openai-responses",
            Protocol::Gemini => "gemini",
        }
    }

    /// Whether the protocol streams its answers over HTTP (no heartbeats of its own).
    pub fn is_http_stream(self) -> bool {
        !matches!(self, Protocol::RelayV1 | Protocol::OpenaiRealtime)
    }
}

/// How the key travels. `Native` is the protocol's own way (Bearer; Anthropic `x-api-key`;
/// Gemini `x-goog-api-key`); relays that want another say so with `auth = "…"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthStyle {
    #[default]
    Native,
    /// `Authorization: Bearer KEY`.
    Bearer,
    /// `x-api-key: KEY`.
    XApiKey,
    /// `x-goog-api-key: KEY`.
    XGoogApiKey,
    /// `?key=KEY` in the URL (Gemini's other way): never logged, recorded or shown.
    Query,
}

/// Reconnect backoff: the n-th retry waits a random time in `[0, min(cap, base * 2^(n-1))]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// Retries before the session counts the relay as down (and, without a
    /// `Timing::watch`, stops).
    pub max_attempts: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            max_attempts: 10,
        }
    }
}

/// How often a session that used up its retries looks again (`Timing::watch`).
pub const DEFAULT_WATCH: Duration = Duration::from_secs(60);

/// How often a session whose key was refused checks again (`Timing::recheck`).
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(300);

/// Every interval a session uses. Defaults are spec/PROTOCOL.md's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often to send the application `ping`; `None` turns heartbeats off.
    pub heartbeat: Option<Duration>,
    /// Whether to send WebSocket Ping frames alongside the application ping.
    pub ws_ping: bool,
    /// A connection with nothing received for this long is dead.
    pub dead_after: Duration,
    /// Limit on TCP connect, TLS and the upgrade together.
    pub handshake_timeout: Duration,
    /// A request with no `done` after this long has failed.
    pub response_timeout: Duration,
    /// A connection that stayed up this long resets the reconnect count.
    pub stable_after: Duration,
    pub backoff: BackoffPolicy,
    /// After `backoff.max_attempts` retries failed in a row the relay is "down": keep looking
    /// this often (or what the relay's `Retry-After` asks, if longer) until a connection
    /// proves healthy. `None`: stop instead (`relaytop check`, which wants a verdict).
    pub watch: Option<Duration>,
    /// After the relay refused the key or the policy (401, 403, close 1008, a codec's
    /// "stop"), look again this often, so that a fixed key resumes. `None`: stop instead.
    pub recheck: Option<Duration>,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat: Some(Duration::from_secs(30)),
            ws_ping: true,
            dead_after: Duration::from_secs(55),
            handshake_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(120),
            stable_after: Duration::from_secs(30),
            backoff: BackoffPolicy::default(),
            watch: Some(DEFAULT_WATCH),
            recheck: Some(DEFAULT_RECHECK),
        }
    }
}

/// What the session does once connected.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// Synthetic monitoring: send `prompt` every `interval` (never two at once).
    Probe {
        interval: Duration,
        prompt: String,
        max_tokens: Option<u32>,
    },
    /// Wait for chat messages sent as commands; the history survives reconnects.
    Chat { system: Option<String> },
    /// Connect and keep the connection alive (heartbeats); send only when told
    /// (`SessionCommand::Send`). The canary's connection pools are made of these.
    OnDemand,
}

/// Everything a session task needs.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    pub info: SessionInfo,
    pub api_key: Option<Secret>,
    /// How the key travels (`Native`: the protocol's own way).
    pub auth: AuthStyle,
    pub workload: Workload,
    pub timing: Timing,
    /// Seed for the backoff jitter (reproducible runs and tests); `None` seeds from entropy.
    pub seed: Option<u64>,
    /// Where frames and events are shown as they happen (the recorder), if anywhere.
    pub tap: Option<crate::session::tap::TapHandle>,
    /// The provider's rate limits, shared by all its sessions; `None` = unlimited.
    pub limits: Option<crate::session::ratelimit::ProviderLimits>,
    /// How WebSocket sessions resolve the relay's host; `None`: the system resolver. Tests
    /// inject one so that no lookup leaves the machine.
    pub resolver: Option<crate::session::connect::ResolverHandle>,
}

/// A session's identity, as every consumer labels it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: SessionId,
    pub name: String,
    pub provider: String,
    pub model: String,
    pub protocol: Protocol,
    pub url: String,
    /// `probe`, `chat` or `canary` (a canary pool's on-demand session).
    pub workload: String,
}
