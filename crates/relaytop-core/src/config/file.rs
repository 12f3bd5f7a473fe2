//! relaytop's own TOML configuration: providers, sessions and timing, checked with care.
//!
//! Loading turns a file into `SessionSpec`s ready to start, reading each provider's key from
//! the environment variable it names. Every error a person can make says where (file, line,
//! column) and what to do: bad TOML, unknown fields, bad URLs, unknown providers, unset keys.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::UiConfig;
use crate::config::secret::Secret;
use crate::cost::ProviderPricing;
use crate::session::{
    AuthStyle, BackoffPolicy, Protocol, SessionInfo, SessionSpec, Timing, Workload,
};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Timing every session uses unless it sets its own.
    #[serde(default)]
    pub defaults: TimingConfig,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub sessions: Vec<SessionConfig>,
    /// Dashboard settings (`[ui]`).
    #[serde(default)]
    pub ui: UiConfig,
    /// A canary between two of the providers (`[canary]`).
    pub canary: Option<crate::canary::toml::CanaryToml>,
    /// List prices for every provider (`[prices."model"]`), over the bundled table; a
    /// provider's own `billing.prices` win over these.
    #[serde(default)]
    pub prices: BTreeMap<String, crate::cost::PriceEntry>,
    /// Service-level objectives (`[slo]`): what makes a request good, per provider if wanted.
    #[serde(default)]
    pub slo: crate::config::slo::SloConfig,
    /// Alert rules (`[[alerts]]`): conditions over figures, or SLO burn rates.
    #[serde(default)]
    pub alerts: Vec<crate::alert::AlertToml>,
    /// Where alerts are delivered (`[alert_receivers.NAME]`).
    #[serde(default)]
    pub alert_receivers: BTreeMap<String, crate::alert::ReceiverToml>,
    /// `relaytop agent`'s settings (`[agent]`); the command line wins over them.
    #[serde(default)]
    pub agent: AgentConfig,
}

/// `[agent]`: where this agent stands and what it keeps (`relaytop agent`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The `location` label on every series (default: the host's name).
    pub location: Option<String>,
    /// More constant labels on every series.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Where `/metrics` and `/healthz` are served (default 127.0.0.1:9464).
    pub listen: Option<String>,
    /// The recordings' size budget, bytes.
    pub record_max_bytes: Option<u64>,
    /// The recordings' age budget: "7d", "12h".
    pub record_max_age: Option<String>,
}

/// Timing settings; every field is optional and falls back to spec/PROTOCOL.md's defaults.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingConfig {
    /// Seconds between application pings; 0 turns heartbeats off (default 30).
    pub heartbeat_s: Option<f64>,
    /// Also send WebSocket Ping frames (default true).
    pub ws_ping: Option<bool>,
    /// Seconds of silence after which the peer is dead (default 55).
    pub dead_after_s: Option<f64>,
    /// Seconds allowed for TCP, TLS and the upgrade together (default 10).
    pub handshake_timeout_s: Option<f64>,
    /// Seconds a response may take before it has failed (default 120).
    pub response_timeout_s: Option<f64>,
    /// Seconds a connection must stay up to reset the reconnect count (default 30).
    pub stable_after_s: Option<f64>,
    /// Reconnect backoff.
    pub backoff: Option<BackoffConfig>,
}

/// Reconnect backoff settings.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// First retry waits up to this many milliseconds (default 1000).
    pub base_ms: Option<u64>,
    /// No wait is longer than this (default 30000).
    pub cap_ms: Option<u64>,
    /// Retries at the backoff before a relay counts as down (default 10); then it is watched.
    pub max_attempts: Option<u32>,
    /// A relay that is down (its retries used up) is looked at this often, in seconds, until
    /// a connection proves it healthy (default 60). The session never stops for it.
    pub watch_interval_s: Option<f64>,
    /// A refused key or policy (401, 403, close 1008) is checked again this often, in seconds,
    /// so that a fixed key resumes (default 300).
    pub recheck_interval_s: Option<f64>,
}

/// One relay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The name shown everywhere (e.g. "holysheep").
    pub name: Spanned<String>,
    /// `wss://HOST/v1/stream` for relay-v1. Ignored when `simulate` is set.
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub protocol: Protocol,
    /// How the key travels when not the protocol's own way: `bearer`, `x-api-key`,
    /// `x-goog-api-key` or `query` (Gemini's `?key=`).
    #[serde(default)]
    pub auth: AuthStyle,
    /// The environment variable holding the key (never the key itself).
    pub api_key_env: Option<Spanned<String>>,
    /// The default model of this provider's sessions.
    pub model: String,
    /// Run an embedded simulated relay with this profile ("legacy", "holysheep",
    /// "default") instead of connecting to `url`.
    pub simulate: Option<Spanned<String>>,
    /// Prices, per-call fees and billing currency.
    #[serde(default)]
    pub billing: ProviderPricing,
    /// Sends the relay allows per minute, over all sessions of this provider (default 60).
    pub requests_per_minute: Option<u32>,
    /// Connections the relay allows at once (default 10).
    pub max_connections: Option<u32>,
    /// `[providers.account]`: the relay account to read (absent: none is read).
    pub account: Option<crate::account::AccountConfig>,
}

/// One session, or `count` alike.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// The name; with `count` > 1, sessions are named `NAME-1`, `NAME-2`, ...
    pub name: String,
    pub provider: Spanned<String>,
    #[serde(default)]
    pub workload: WorkloadKind,
    /// How many sessions like this one (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Probe: seconds between prompts, start to start (default 10).
    pub interval_s: Option<f64>,
    /// Probe: the prompt (default: a short greeting request).
    pub prompt: Option<String>,
    /// Probe: `max_tokens` sent with each prompt.
    pub max_tokens: Option<u32>,
    /// The model, when not the provider's.
    pub model: Option<String>,
    /// The format these sessions speak, when not the provider's: a station serves one key on
    /// every format (its URL is derived from the provider's, `config::station::url_for`).
    pub protocol: Option<Protocol>,
    /// Chat: the system prompt.
    pub system: Option<String>,
    /// Timing for these sessions only.
    #[serde(default)]
    pub timing: TimingConfig,
}

fn one() -> u32 {
    1
}

/// What a configured session does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    #[default]
    Probe,
    Chat,
}

/// The default probe prompt.
pub const DEFAULT_PROMPT: &str = "Reply with a short greeting.";

/// A provider ready to use: where it is, its key, its prices.
#[derive(Clone, Debug)]
pub struct Provider {
    pub name: String,
    pub url: String,
    pub protocol: Protocol,
    /// How the key travels (`Native`: the protocol's own way).
    pub auth: AuthStyle,
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    pub model: String,
    /// The simulator profile to start for it, when simulated.
    pub simulate: Option<String>,
    pub billing: ProviderPricing,
    /// Sends the relay allows per minute (spec/PROTOCOL.md: 60 by default).
    pub requests_per_minute: u32,
    /// Connections the relay allows at once (10 by default).
    pub max_connections: u32,
    /// The limits all its sessions share, once the world has started (`World::start`).
    pub limits: Option<crate::session::ratelimit::ProviderLimits>,
    /// The relay account to read (`kind = "none"` when the file has no `[providers.account]`).
    pub account: crate::account::AccountConfig,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from ("default world" or a path), for reports.
    pub source: String,
    pub providers: Vec<Provider>,
    pub sessions: Vec<SessionSpec>,
    /// Dashboard settings, as written under `[ui]`.
    pub ui: UiConfig,
    /// The canary, from `[canary]` or from canary YAML.
    pub canary: Option<crate::canary::plan::CanaryPlan>,
    /// Every provider's service-level objective (`[slo]`).
    pub slo: crate::config::slo::Slos,
    /// Alert rules and receivers (`[[alerts]]`, `[alert_receivers]`).
    pub alerts: crate::alert::AlertConfig,
    /// `[agent]`, as written.
    pub agent: AgentConfig,
}

impl Config {
    /// Pricing of every provider, by name.
    pub fn pricing(&self) -> BTreeMap<String, ProviderPricing> {
        self.providers
            .iter()
            .map(|p| (p.name.clone(), p.billing.clone()))
            .collect()
    }

    /// Warnings for providers whose limits quietly hold their sessions back: more sessions
    /// than `max_connections` (the others wait for a connection), or probes asking for more
    /// requests a minute than `requests_per_minute` (they wait for the limit). Each names
    /// the key to raise.
    pub fn limit_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for p in &self.providers {
            let sessions: Vec<&SessionSpec> = self
                .sessions
                .iter()
                .filter(|s| s.info.provider == p.name)
                .collect();
            if sessions.len() > p.max_connections as usize {
                warnings.push(format!(
                    "provider `{}`: {} sessions but max_connections = {}: only {} connect at \
                     once, the others wait for a connection; raise max_connections under its \
                     [[providers]] to run them all",
                    p.name,
                    sessions.len(),
                    p.max_connections,
                    p.max_connections
                ));
            }
            let per_minute: f64 = sessions
                .iter()
                .filter_map(|s| match &s.workload {
                    Workload::Probe { interval, .. } if !interval.is_zero() => {
                        Some(60.0 / interval.as_secs_f64())
                    }
                    _ => None,
                })
                .sum();
            if per_minute > f64::from(p.requests_per_minute) + 1e-9 {
                warnings.push(format!(
                    "provider `{}`: its probes ask for {:.0} requests a minute but \
                     requests_per_minute = {}: probes wait for the limit (rate-limit waits in \
                     the summary); raise requests_per_minute under its [[providers]], or \
                     probe less often (interval_s)",
                    p.name, per_minute, p.requests_per_minute
                ));
            }
        }
        warnings
    }

    /// The secrets this configuration loaded (the recorder and logs scrub them).
    pub fn secrets(&self) -> Vec<Secret> {
        self.providers
            .iter()
            .filter_map(|p| p.api_key.clone())
            .chain(self.alerts.secrets())
            .collect()
    }

    /// Gives each provider the limits its sessions share (a sliding window of
    /// `requests_per_minute` sends per `window`, and `max_connections` × `connections_factor`
    /// connections), and hands them to its sessions. `window` is a minute, or a minute of
    /// canary time under `--time-scale`.
    pub fn attach_limits(&mut self, window: std::time::Duration, connections_factor: u32) {
        for p in &mut self.providers {
            let limits = crate::session::ratelimit::ProviderLimits::new(
                p.name.clone(),
                p.requests_per_minute,
                window,
                p.max_connections.saturating_mul(connections_factor.max(1)),
            );
            for s in self
                .sessions
                .iter_mut()
                .filter(|s| s.info.provider == p.name)
            {
                s.limits = Some(limits.clone());
            }
            p.limits = Some(limits);
        }
    }

    /// Points a simulated provider, and each of its sessions in its own protocol, at its
    /// running simulator (one port serves every protocol).
    pub fn attach_simulator(
        &mut self,
        provider: &str,
        url_for: &dyn Fn(Protocol) -> String,
        key: Secret,
    ) {
        for p in self.providers.iter_mut().filter(|p| p.name == provider) {
            p.url = url_for(p.protocol);
            p.api_key = Some(key.clone());
        }
        for s in self
            .sessions
            .iter_mut()
            .filter(|s| s.info.provider == provider)
        {
            s.info.url = url_for(s.info.protocol);
            s.api_key = Some(key.clone());
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {message}")]
    Toml { path: String, message: String },
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Whole { path: String, message: String },
}

/// Reads and checks a configuration file. Keys are read from the environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse(&text, &path.display().to_string(), &|var| {
        Secret::from_env(var)
    })
}

/// Parses and checks configuration text; `read_key` fetches a key by variable name.
pub fn parse(
    text: &str,
    path: &str,
    read_key: &dyn Fn(&str) -> Result<Secret, crate::config::secret::SecretError>,
) -> Result<Config, ConfigError> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Toml {
        path: path.to_owned(),
        message: cap_quoted(e.to_string().trim_end()),
    })?;
    let at = |span: std::ops::Range<usize>, message: String| {
        let (line, column) = line_column(text, span.start);
        ConfigError::At {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    };

    if file.providers.is_empty() {
        return Err(ConfigError::Whole {
            path: path.to_owned(),
            message: "no [[providers]]: add at least one (see the README's configuration section)"
                .into(),
        });
    }
    let shared_prices =
        crate::cost::checked_prices(&file.prices).map_err(|e| ConfigError::Whole {
            path: path.to_owned(),
            message: format!("[prices]: {e}"),
        })?;
    let mut providers: Vec<Provider> = Vec::new();
    for p in &file.providers {
        let name = p.name.get_ref().trim();
        if name.is_empty() {
            return Err(at(p.name.span(), "a provider needs a name".into()));
        }
        if providers.iter().any(|q| q.name == name) {
            return Err(at(
                p.name.span(),
                format!("provider `{name}` is defined twice"),
            ));
        }
        let simulate = match &p.simulate {
            Some(profile) => {
                if crate::config::sim_profile::SimProfile::named(profile.get_ref()).is_none() {
                    return Err(at(
                        profile.span(),
                        format!(
                            "no simulator profile `{}`: use legacy, holysheep, openai, newapi or default",
                            profile.get_ref()
                        ),
                    ));
                }
                Some(profile.get_ref().clone())
            }
            None => None,
        };
        let url = match (&p.url, &simulate) {
            (Some(url), None) => {
                check_url(url.get_ref(), p.protocol).map_err(|m| at(url.span(), m))?;
                url.get_ref().trim().to_owned()
            }
            (url, Some(_)) => url
                .as_ref()
                .map(|u| u.get_ref().clone())
                .unwrap_or_default(),
            (None, None) => {
                return Err(at(
                    p.name.span(),
                    format!("provider `{name}` has no `url` (or set `simulate = \"legacy\"`)"),
                ));
            }
        };
        let api_key = match (&p.api_key_env, &simulate) {
            (_, Some(_)) => None,
            (Some(var), None) => {
                Some(read_key(var.get_ref().trim()).map_err(|e| at(var.span(), e.to_string()))?)
            }
            (None, None) => None,
        };
        p.billing
            .validate()
            .map_err(|e| at(p.name.span(), format!("provider `{name}`: billing: {e}")))?;
        let account = p
            .account
            .clone()
            .unwrap_or_else(crate::account::AccountConfig::off);
        account
            .validate()
            .map_err(|e| at(p.name.span(), format!("provider `{name}`: {e}")))?;
        providers.push(Provider {
            name: name.to_owned(),
            url,
            protocol: p.protocol,
            auth: p.auth,
            api_key,
            api_key_env: p.api_key_env.as_ref().map(|v| v.get_ref().clone()),
            model: p.model.clone(),
            simulate,
            billing: p.billing.with_shared_prices(&shared_prices),
            requests_per_minute: match p.requests_per_minute {
                Some(0) => {
                    return Err(at(
                        p.name.span(),
                        format!("provider `{name}`: requests_per_minute must be at least 1"),
                    ));
                }
                Some(n) => n,
                None => crate::session::ratelimit::DEFAULT_REQUESTS_PER_MINUTE,
            },
            max_connections: match p.max_connections {
                Some(0) => {
                    return Err(at(
                        p.name.span(),
                        format!("provider `{name}`: max_connections must be at least 1"),
                    ));
                }
                Some(n) => n,
                None => crate::session::ratelimit::DEFAULT_MAX_CONNECTIONS,
            },
            limits: None,
            account,
        });
    }

    let defaults = resolve_timing(&TimingConfig::default(), &file.defaults, Timing::default())
        .map_err(|m| ConfigError::Whole {
            path: path.to_owned(),
            message: format!("[defaults]: {m}"),
        })?;

    let mut sessions = Vec::new();
    for s in &file.sessions {
        let provider_name = s.provider.get_ref();
        let Some(provider) = providers.iter().find(|p| &p.name == provider_name) else {
            let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
            return Err(at(
                s.provider.span(),
                format!(
                    "session `{}` names provider `{provider_name}`, which is not defined (known: {})",
                    s.name,
                    known.join(", ")
                ),
            ));
        };
        if s.count == 0 || s.count > 100_000 {
            return Err(ConfigError::Whole {
                path: path.to_owned(),
                message: format!("session `{}`: count must be 1 to 100000", s.name),
            });
        }
        let timing = resolve_timing(&file.defaults, &s.timing, defaults)
            .and_then(|t| check_heartbeat(&t, s.protocol.unwrap_or(provider.protocol)).map(|()| t))
            .map_err(|m| ConfigError::Whole {
                path: path.to_owned(),
                message: format!("session `{}`: {m}", s.name),
            })?;
        let workload = match s.workload {
            WorkloadKind::Probe => {
                let interval =
                    seconds(s.interval_s.unwrap_or(10.0), "interval_s").map_err(|m| {
                        ConfigError::Whole {
                            path: path.to_owned(),
                            message: format!("session `{}`: {m}", s.name),
                        }
                    })?;
                Workload::Probe {
                    interval,
                    prompt: s.prompt.clone().unwrap_or_else(|| DEFAULT_PROMPT.into()),
                    max_tokens: s.max_tokens,
                }
            }
            WorkloadKind::Chat => Workload::Chat {
                system: s.system.clone(),
            },
        };
        for n in 1..=s.count {
            let name = if s.count == 1 {
                s.name.clone()
            } else {
                format!("{}-{n}", s.name)
            };
            let (protocol, url) = match s.protocol {
                Some(protocol) if protocol != provider.protocol && !provider.url.is_empty() => (
                    protocol,
                    crate::config::station::url_for(&provider.url, protocol),
                ),
                Some(protocol) => (protocol, provider.url.clone()),
                None => (provider.protocol, provider.url.clone()),
            };
            sessions.push(SessionSpec {
                info: SessionInfo {
                    id: 0,
                    name,
                    provider: provider.name.clone(),
                    model: s.model.clone().unwrap_or_else(|| provider.model.clone()),
                    protocol,
                    url,
                    workload: match s.workload {
                        WorkloadKind::Probe => "probe".into(),
                        WorkloadKind::Chat => "chat".into(),
                    },
                },
                api_key: provider.api_key.clone(),
                auth: provider.auth,
                workload: workload.clone(),
                timing,
                seed: None,
                tap: None,
                limits: None,
                resolver: None,
            });
        }
    }
    for (id, s) in sessions.iter_mut().enumerate() {
        s.info.id = u32::try_from(id).unwrap_or(u32::MAX);
    }
    let canary = match &file.canary {
        Some(table) => Some(
            table
                .to_plan(&providers, &|var| std::env::var(var).ok())
                .map_err(|e| match e.span {
                    Some(span) => at(span, e.message),
                    None => ConfigError::Whole {
                        path: path.to_owned(),
                        message: e.message,
                    },
                })?,
        ),
        None => None,
    };
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    let slo = file
        .slo
        .resolve(&names)
        .map_err(|message| ConfigError::Whole {
            path: path.to_owned(),
            message,
        })?;
    let alerts = crate::alert::rule::resolve(&file.alerts, &file.alert_receivers, &names, read_key)
        .map_err(|message| ConfigError::Whole {
            path: path.to_owned(),
            message,
        })?;
    Ok(Config {
        source: path.to_owned(),
        providers,
        sessions,
        ui: file.ui,
        canary,
        slo,
        alerts,
        agent: file.agent,
    })
}

fn check_url(url: &str, protocol: Protocol) -> Result<(), String> {
    // The URL parser would quietly percent-encode a space; the relay would then 404.
    if let Some((at, c)) = url
        .trim()
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        let what = if c == ' ' {
            "a space".to_owned()
        } else {
            format!("the character {c:?}")
        };
        return Err(format!(
            "URL `{url}` has {what} at character {}: a URL has none (write a space as %20)",
            url.trim()[..at].chars().count() + 1
        ));
    }
    let parsed = url::Url::parse(url.trim()).map_err(|e| format!("bad URL `{url}`: {e}"))?;
    let expected: &[&str] = match protocol {
        Protocol::RelayV1 | Protocol::OpenaiRealtime => &["ws", "wss"],
        Protocol::OpenaiSse
        | Protocol::AnthropicMessages
        | Protocol::OpenaiResponses
        | Protocol::Gemini => &["http", "https"],
    };
    if !expected.contains(&parsed.scheme()) {
        let hint = if protocol.is_http_stream() {
            format!(
                "{} talks HTTP: use https:// (or http:// on loopback)",
                protocol.label()
            )
        } else {
            "relay/v1 and Realtime are WebSocket protocols: use wss:// (or ws:// on loopback)"
                .to_owned()
        };
        return Err(format!(
            "URL `{url}` has scheme `{}`: {hint}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("URL `{url}` has no host"));
    }
    Ok(())
}

fn seconds(value: f64, field: &str) -> Result<Duration, String> {
    if !value.is_finite() || !(0.0..=1e9).contains(&value) {
        return Err(format!(
            "{field} must be a number of seconds ≥ 0, not {value}"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Applies `own` over `defaults` over `base`.
fn resolve_timing(
    defaults: &TimingConfig,
    own: &TimingConfig,
    base: Timing,
) -> Result<Timing, String> {
    let pick = |own: Option<f64>, default: Option<f64>| own.or(default);
    let mut t = base;
    if let Some(s) = pick(own.heartbeat_s, defaults.heartbeat_s) {
        let d = seconds(s, "heartbeat_s")?;
        t.heartbeat = (!d.is_zero()).then_some(d);
    }
    if let Some(b) = own.ws_ping.or(defaults.ws_ping) {
        t.ws_ping = b;
    }
    if let Some(s) = pick(own.dead_after_s, defaults.dead_after_s) {
        t.dead_after = seconds(s, "dead_after_s")?;
    }
    if let Some(s) = pick(own.handshake_timeout_s, defaults.handshake_timeout_s) {
        t.handshake_timeout = seconds(s, "handshake_timeout_s")?;
    }
    if let Some(s) = pick(own.response_timeout_s, defaults.response_timeout_s) {
        t.response_timeout = seconds(s, "response_timeout_s")?;
    }
    if let Some(s) = pick(own.stable_after_s, defaults.stable_after_s) {
        t.stable_after = seconds(s, "stable_after_s")?;
    }
    let empty = BackoffConfig::default();
    let own_b = own.backoff.as_ref().unwrap_or(&empty);
    let def_b = defaults.backoff.as_ref().unwrap_or(&empty);
    let base_b = BackoffPolicy::default();
    t.backoff = BackoffPolicy {
        base: Duration::from_millis(
            own_b
                .base_ms
                .or(def_b.base_ms)
                .unwrap_or(base_b.base.as_millis() as u64),
        ),
        cap: Duration::from_millis(
            own_b
                .cap_ms
                .or(def_b.cap_ms)
                .unwrap_or(base_b.cap.as_millis() as u64),
        ),
        max_attempts: own_b
            .max_attempts
            .or(def_b.max_attempts)
            .unwrap_or(base_b.max_attempts),
    };
    if t.backoff.cap < t.backoff.base {
        return Err("backoff cap_ms is smaller than base_ms".into());
    }
    let positive = |value: f64, field: &str| -> Result<Duration, String> {
        let d = seconds(value, field)?;
        if d.is_zero() {
            return Err(format!(
                "{field} must be more than 0 s: a relay that is down is looked at that often"
            ));
        }
        Ok(d)
    };
    if let Some(s) = own_b.watch_interval_s.or(def_b.watch_interval_s) {
        t.watch = Some(positive(s, "watch_interval_s")?);
    }
    if let Some(s) = own_b.recheck_interval_s.or(def_b.recheck_interval_s) {
        t.recheck = Some(positive(s, "recheck_interval_s")?);
    }
    Ok(t)
}

/// A session that sends heartbeats (the WebSocket protocols) needs them more often than it
/// declares its peer dead; the HTTP streaming protocols send none, so any values do.
fn check_heartbeat(t: &Timing, protocol: Protocol) -> Result<(), String> {
    if protocol.is_http_stream() {
        return Ok(());
    }
    if let Some(hb) = t.heartbeat
        && hb >= t.dead_after
    {
        return Err(format!(
            "heartbeat_s ({:.0}) must be shorter than dead_after_s ({:.0}), or a healthy peer looks dead",
            hb.as_secs_f64(),
            t.dead_after.as_secs_f64()
        ));
    }
    Ok(())
}

/// The most characters of one line of the configuration quoted back in an error: a syntax
/// error on a 50 MB line must not print it whole.
pub const MAX_QUOTED_CHARS: usize = 160;

/// `message` with each of its lines cut to `MAX_QUOTED_CHARS` characters (and the cut said).
fn cap_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(4 * MAX_QUOTED_CHARS + 256));
    for (i, line) in message.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match line.char_indices().nth(MAX_QUOTED_CHARS) {
            Some((cut, _)) => {
                out.push_str(&line[..cut]);
                out.push_str(&format!("… ({} more bytes not shown)", line.len() - cut));
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Line and column (both from 1) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret::SecretError;

    const KEY: &str = "hs_live_CONFIGTEST0123456789";

    fn keys(var: &str) -> Result<Secret, SecretError> {
        match var {
            "GOOD_KEY" => Ok(Secret::new(format!("{KEY}\n"))),
            _ => Err(SecretError::NotSet { var: var.into() }),
        }
    }

    fn parse_ok(text: &str) -> Config {
        parse(text, "test.toml", &keys).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(text, "test.toml", &keys).unwrap_err().to_string()
    }

    const MINIMAL: &str = r#"
[[providers]]
name = "holysheep"
url = "wss://api.holysheep.ai/v1/stream"
api_key_env = "GOOD_KEY"
model = "gpt-4.1"

[[sessions]]
name = "probe"
provider = "holysheep"
count = 3
interval_s = 5
"#;

    #[test]
    fn a_minimal_file() {
        let c = parse_ok(MINIMAL);
        assert_eq!(c.sessions.len(), 3);
        assert_eq!(c.sessions[2].info.name, "probe-3");
        assert_eq!(c.sessions[2].info.id, 2);
        assert_eq!(
            c.sessions[0].api_key.as_ref().unwrap().expose(),
            KEY,
            "trimmed"
        );
        assert_eq!(c.sessions[0].timing, Timing::default());
        assert!(matches!(
            c.sessions[0].workload,
            Workload::Probe { interval, .. } if interval == Duration::from_secs(5)
        ));
    }

    #[test]
    fn timing_layers() {
        let text = format!(
            "[defaults]\nheartbeat_s = 10\n[defaults.backoff]\nmax_attempts = 3\n{MINIMAL}\n[sessions.timing]\nheartbeat_s = 0\n"
        );
        let c = parse_ok(&text);
        assert_eq!(
            c.sessions[0].timing.heartbeat, None,
            "session turns heartbeats off"
        );
        assert_eq!(
            c.sessions[0].timing.backoff.max_attempts, 3,
            "from [defaults]"
        );
    }

    #[test]
    fn unknown_fields_are_named_with_their_line() {
        let err = parse_err(&MINIMAL.replace("count = 3", "cuont = 3"));
        assert!(err.contains("unknown field `cuont`"), "{err}");
        assert!(err.contains("line 11, column 1"), "{err}");
    }

    #[test]
    fn bad_toml_says_where() {
        let err = parse_err("[[providers]\nname = 1");
        assert!(
            err.starts_with("test.toml: TOML parse error at line 1"),
            "{err}"
        );
    }

    #[test]
    fn wrong_scheme_is_located_and_explained() {
        let err = parse_err(&MINIMAL.replace("wss://", "https://"));
        assert!(err.starts_with("test.toml:4:7: URL"), "{err}");
        assert!(err.contains("use wss://"), "{err}");
    }

    #[test]
    fn a_missing_key_variable_is_named() {
        let err = parse_err(&MINIMAL.replace("GOOD_KEY", "UNSET_KEY"));
        assert_eq!(
            err,
            "test.toml:5:15: UNSET_KEY is not set: export it, or name another variable in `api_key_env`"
        );
    }

    #[test]
    fn an_unknown_provider_lists_the_known_ones() {
        let err = parse_err(&MINIMAL.replace("provider = \"holysheep\"", "provider = \"hs\""));
        assert!(
            err.contains("provider `hs`, which is not defined (known: holysheep)"),
            "{err}"
        );
    }

    #[test]
    fn watch_and_recheck_intervals_are_set_in_the_backoff_table() {
        let c = parse_ok(&format!(
            "[defaults.backoff]\nwatch_interval_s = 20\nrecheck_interval_s = 90\n{MINIMAL}"
        ));
        let t = c.sessions[0].timing;
        assert_eq!(t.watch, Some(Duration::from_secs(20)));
        assert_eq!(t.recheck, Some(Duration::from_secs(90)));
        let err = parse_err(&format!(
            "[defaults.backoff]\nwatch_interval_s = 0\n{MINIMAL}"
        ));
        assert!(
            err.contains("watch_interval_s must be more than 0 s"),
            "{err}"
        );
    }

    #[test]
    fn a_providers_billing_is_checked_at_load() {
        let text = MINIMAL.replace(
            "[[providers]]",
            "[[providers]]\nbilling = { per_1000_calls_usd = -1.0 }",
        );
        let err = parse_err(&text);
        assert!(
            err.contains("billing: per_1000_calls_usd must be a number >= 0"),
            "{err}"
        );
    }

    #[test]
    fn a_syntax_error_on_a_long_line_quotes_a_bounded_part_of_it() {
        let long = format!("[[providers]]\nname = \"a\" {}\n", "x".repeat(1_000_000));
        let err = parse_err(&long);
        assert!(err.len() < 2_000, "{} bytes of error", err.len());
        assert!(err.contains("more bytes not shown"), "{err}");
    }

    #[test]
    fn a_space_in_a_url_fails_at_load() {
        let text = MINIMAL.replace("/v1/stream", "/v1/my stream");
        let err = parse_err(&text);
        assert!(
            err.contains("has a space at character 29: a URL has none (write a space as %20)"),
            "{err}"
        );
    }

    #[test]
    fn sessions_that_send_no_heartbeats_take_any_heartbeat_s() {
        let text = format!(
            "[defaults]\nheartbeat_s = 60\ndead_after_s = 30\n{}",
            MINIMAL
                .replace(
                    "wss://api.holysheep.ai/v1/stream",
                    "https://api.holysheep.ai/v1"
                )
                .replace("[[providers]]", "[[providers]]\nprotocol = \"openai-sse\"")
        );
        parse(&text, "test.toml", &keys).expect("an SSE-only configuration loads");
    }

    #[test]
    fn sessions_and_probes_past_the_provider_limits_are_warned_of() {
        let text = MINIMAL
            .replace("count = 3", "count = 12")
            .replace("interval_s = 5", "interval_s = 2");
        let config = parse(&text, "test.toml", &keys).unwrap();
        let warnings = config.limit_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("12 sessions but max_connections = 10")
                && warnings[0].contains("raise max_connections"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("360 requests a minute but requests_per_minute = 60")
                && warnings[1].contains("raise requests_per_minute"),
            "{warnings:?}"
        );
        assert!(
            parse(MINIMAL, "test.toml", &keys)
                .unwrap()
                .limit_warnings()
                .is_empty()
        );
    }

    #[test]
    fn heartbeat_must_be_shorter_than_dead_after() {
        let err = parse_err(&format!("[defaults]\nheartbeat_s = 60\n{MINIMAL}"));
        assert!(err.contains("must be shorter than dead_after_s"), "{err}");
    }

    #[test]
    fn simulated_providers_need_no_url_or_key() {
        let c = parse_ok(
            "[[providers]]\nname = \"legacy\"\nsimulate = \"legacy\"\nmodel = \"gpt-4.1\"\n[[sessions]]\nname = \"p\"\nprovider = \"legacy\"\n",
        );
        assert_eq!(c.providers[0].simulate.as_deref(), Some("legacy"));
        let err = parse_err("[[providers]]\nname = \"x\"\nsimulate = \"nope\"\nmodel = \"m\"\n");
        assert!(err.contains("no simulator profile `nope`"), "{err}");
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../../README.md");
        let marker = "```toml\n# Timing for every session";
        let start = readme
            .find(marker)
            .expect("the configuration example in the README")
            + 8;
        let end = start + readme[start..].find("```").expect("the example ends");
        let read_key = |var: &str| match var {
            "HOLYSHEEP_API_KEY" => Ok(Secret::new(KEY)),
            other => Err(SecretError::NotSet { var: other.into() }),
        };
        let c = parse(&readme[start..end], "README.md", &read_key).unwrap();
        assert_eq!(c.sessions.len(), 4);
        assert_eq!(
            c.sessions[0].timing.heartbeat,
            Some(Duration::from_secs(15))
        );
        assert_eq!(c.providers[0].billing.billing_currency, "CNY");
    }

    #[test]
    fn line_columns() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
