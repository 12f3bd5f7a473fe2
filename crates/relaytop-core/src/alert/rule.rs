//! Alert rules and receivers as written (`[[alerts]]`, `[alert_receivers.NAME]`) and as
//! checked: a rule's condition over a figure, its scope, `for`, severity, resolve threshold
//! and re-notify interval; a receiver's kind and the secrets it reads from the environment.
//!
//! ```toml
//! [alert_receivers.ops]
//! kind = "webhook"                 # webhook, slack, discord, telegram, feishu, dingtalk, wecom
//! url_env = "ALERT_WEBHOOK_URL"    # the variable holding the URL (never the URL itself)
//!
//! [[alerts]]
//! name = "legacy slow"
//! figure = "ttft_p99_ms"           # see `Figure::NAMES`
//! above = 800                      # or below = ...
//! resolve_at = 600                 # hysteresis: resolves only at or under 600 ms
//! scope = "provider:legacy"        # all, provider, provider:NAME, model[:NAME], session[:NAME]
//! window = "1m"                    # 1m, 15m or run
//! for_s = 10                       # true this long before it fires
//! severity = "critical"            # info, warning, critical
//! renotify_s = 600                 # said again while firing (0: never)
//! receivers = ["ops"]
//!
//! [[alerts]]
//! name = "legacy burning its budget"
//! kind = "burn_rate"               # against [slo]; speed = "fast" (1 h and 5 min at 14.4×)
//! speed = "fast"                   # or "slow" (6 h and 30 min at 6×)
//! scope = "provider:legacy"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::secret::{Secret, SecretError};
use crate::metrics::Window;

use super::figure::{Figure, ScopeSpec};

/// One `[[alerts]]` table as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertToml {
    pub name: String,
    /// `threshold` (the default) or `burn_rate`.
    pub kind: Option<String>,
    /// The figure a threshold rule watches (`Figure::NAMES`).
    pub figure: Option<String>,
    /// Fires when the figure is above this.
    pub above: Option<f64>,
    /// Fires when the figure is below this.
    pub below: Option<f64>,
    /// Resolves only once the figure is back at or past this (default: the threshold).
    pub resolve_at: Option<f64>,
    /// `all` (default), `provider`, `provider:NAME`, `model`, `model:NAME`, `session`, `session:NAME`.
    pub scope: Option<String>,
    /// `1m` (default), `15m` or `run`.
    pub window: Option<String>,
    /// Seconds the condition must hold before the alert fires (default 0).
    pub for_s: Option<f64>,
    /// `info`, `warning` (default) or `critical`.
    pub severity: Option<String>,
    /// Seconds between reminders while firing (default 3600; 0: never).
    pub renotify_s: Option<f64>,
    /// Receivers (`[alert_receivers.NAME]`) told when it fires and resolves (default: all).
    pub receivers: Option<Vec<String>>,
    /// Burn rate: `fast` (1 h and 5 min at 14.4×, the default) or `slow` (6 h and 30 min at 6×).
    pub speed: Option<String>,
    /// Burn rate: the long window, seconds (over the speed's).
    pub long_window_s: Option<f64>,
    /// Burn rate: the short window, seconds (over the speed's).
    pub short_window_s: Option<f64>,
    /// Burn rate: the factor both windows must reach (over the speed's).
    pub burn_rate: Option<f64>,
    /// Burn rate: requests the long window needs before it can fire (default 10).
    pub min_requests: Option<u64>,
}

/// One `[alert_receivers.NAME]` table as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverToml {
    /// `webhook`, `slack`, `discord`, `telegram`, `feishu`, `dingtalk` or `wecom`.
    pub kind: String,
    /// The variable holding the webhook URL (every kind but telegram).
    pub url_env: Option<String>,
    /// Telegram: the variable holding the bot token.
    pub token_env: Option<String>,
    /// Telegram: the chat to post to.
    pub chat_id: Option<String>,
    /// Telegram: the API's base URL (default `https://api.telegram.org`).
    pub api_base: Option<String>,
    /// Feishu, DingTalk: the variable holding the signing secret (signed webhooks).
    pub secret_env: Option<String>,
    /// Seconds one POST may take (default 5).
    pub timeout_s: Option<f64>,
    /// Tries per message (default 3).
    pub attempts: Option<u32>,
}

/// How bad an alert is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Which way a threshold is crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Above,
    Below,
}

/// What a rule watches.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// A figure over a window against a threshold, resolving at `resolve_at`.
    Threshold {
        figure: Figure,
        window: Window,
        direction: Direction,
        value: f64,
        resolve_at: f64,
    },
    /// The SLO's error budget burning at `factor` times the sustainable rate over both windows.
    BurnRate {
        long_us: u64,
        short_us: u64,
        factor: f64,
        min_requests: u64,
    },
}

/// A checked rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub severity: Severity,
    pub scope: ScopeSpec,
    pub condition: Condition,
    /// How long the condition must hold before firing.
    pub for_us: u64,
    /// Reminders while firing; `None`: never.
    pub renotify_us: Option<u64>,
    /// Receivers' names; empty means every receiver.
    pub receivers: Vec<String>,
}

/// The kinds of receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    Webhook,
    Slack,
    Discord,
    Telegram,
    Feishu,
    DingTalk,
    WeCom,
}

impl ReceiverKind {
    pub const NAMES: [&'static str; 7] = [
        "webhook", "slack", "discord", "telegram", "feishu", "dingtalk", "wecom",
    ];

    fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "webhook" => ReceiverKind::Webhook,
            "slack" => ReceiverKind::Slack,
            "discord" => ReceiverKind::Discord,
            "telegram" => ReceiverKind::Telegram,
            "feishu" | "lark" => ReceiverKind::Feishu,
            "dingtalk" => ReceiverKind::DingTalk,
            "wecom" => ReceiverKind::WeCom,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            ReceiverKind::Webhook => "webhook",
            ReceiverKind::Slack => "slack",
            ReceiverKind::Discord => "discord",
            ReceiverKind::Telegram => "telegram",
            ReceiverKind::Feishu => "feishu",
            ReceiverKind::DingTalk => "dingtalk",
            ReceiverKind::WeCom => "wecom",
        }
    }
}

/// The Telegram Bot API's address.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// A checked receiver, its secrets read.
#[derive(Clone, Debug)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    /// The webhook URL (a credential: Slack's, Discord's and the others' URLs carry their token).
    pub url: Option<Secret>,
    /// Telegram's bot token.
    pub token: Option<Secret>,
    pub chat_id: Option<String>,
    pub api_base: String,
    /// Feishu's and DingTalk's signing secret.
    pub secret: Option<Secret>,
    pub timeout: std::time::Duration,
    pub attempts: u32,
}

impl Receiver {
    /// Every secret of this receiver (to redact from anything shown).
    pub fn secrets(&self) -> Vec<&Secret> {
        [&self.url, &self.token, &self.secret]
            .into_iter()
            .flatten()
            .collect()
    }

    /// `text` with every secret of this receiver replaced by `[REDACTED]`: the URL whole, and
    /// its path and query too (where webhook tokens live; a refusal may quote them).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self.secrets() {
            out = s.redact(&out).into_owned();
        }
        if let Some(parsed) = self
            .url
            .as_ref()
            .and_then(|u| url::Url::parse(u.expose()).ok())
        {
            let path = parsed.path();
            for part in [
                format!(
                    "{path}{}",
                    parsed.query().map(|q| format!("?{q}")).unwrap_or_default()
                ),
                path.to_owned(),
                parsed.query().unwrap_or_default().to_owned(),
            ] {
                if part.len() > 4 && out.contains(&part) {
                    out = out.replace(&part, crate::config::secret::REDACTED);
                }
            }
        }
        out
    }
}

/// Every rule and receiver of a configuration.
#[derive(Clone, Debug, Default)]
pub struct AlertConfig {
    pub rules: Vec<Rule>,
    pub receivers: Vec<Receiver>,
}

impl AlertConfig {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The receivers `rule` tells.
    pub fn receivers_of<'a>(&'a self, rule: &'a Rule) -> impl Iterator<Item = &'a Receiver> + 'a {
        self.receivers
            .iter()
            .filter(|r| rule.receivers.is_empty() || rule.receivers.contains(&r.name))
    }

    /// The secrets it loaded (the recorder and logs scrub them).
    pub fn secrets(&self) -> Vec<Secret> {
        self.receivers
            .iter()
            .flat_map(|r| r.secrets().into_iter().cloned())
            .collect()
    }
}

fn seconds_us(v: f64, key: &str, at: &str) -> Result<u64, String> {
    if v.is_finite() && (0.0..=7.0 * 86_400.0).contains(&v) {
        Ok((v * 1e6).round() as u64)
    } else {
        Err(format!("{at} {key} = {v}: give seconds from 0 to a week"))
    }
}

/// Checks `[[alerts]]` and `[alert_receivers]`; `providers` are the names defined (a scope
/// naming another is caught); `read` reads a secret from the variable named.
pub fn resolve(
    alerts: &[AlertToml],
    receivers: &BTreeMap<String, ReceiverToml>,
    providers: &[&str],
    read: &dyn Fn(&str) -> Result<Secret, SecretError>,
) -> Result<AlertConfig, String> {
    let mut out = AlertConfig::default();
    for (name, r) in receivers {
        out.receivers.push(resolve_receiver(name, r, read)?);
    }
    for a in alerts {
        let rule = resolve_rule(a, providers)?;
        if out.rules.iter().any(|r| r.name == rule.name) {
            return Err(format!("[[alerts]] `{}` is defined twice", rule.name));
        }
        for r in &rule.receivers {
            if !receivers.contains_key(r) {
                let known: Vec<&str> = receivers.keys().map(String::as_str).collect();
                return Err(format!(
                    "[[alerts]] `{}`: no receiver `{r}` (known: {})",
                    rule.name,
                    if known.is_empty() {
                        "none; add [alert_receivers.NAME]".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        out.rules.push(rule);
    }
    Ok(out)
}

fn resolve_receiver(
    name: &str,
    r: &ReceiverToml,
    read: &dyn Fn(&str) -> Result<Secret, SecretError>,
) -> Result<Receiver, String> {
    let at = format!("[alert_receivers.{name}]");
    let kind = ReceiverKind::parse(&r.kind).ok_or_else(|| {
        format!(
            "{at} kind = \"{}\": use one of {}",
            r.kind,
            ReceiverKind::NAMES.join(", ")
        )
    })?;
    let secret = |var: &Option<String>, key: &str| -> Result<Option<Secret>, String> {
        match var {
            Some(v) => read(v.trim())
                .map(Some)
                .map_err(|e| format!("{at} {key}: {e}")),
            None => Ok(None),
        }
    };
    let url = secret(&r.url_env, "url_env")?;
    let token = secret(&r.token_env, "token_env")?;
    let signing = secret(&r.secret_env, "secret_env")?;
    match kind {
        ReceiverKind::Telegram => {
            if token.is_none() || r.chat_id.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return Err(format!(
                    "{at}: a telegram receiver needs token_env (the variable holding the bot \
                     token) and chat_id"
                ));
            }
        }
        _ => {
            let Some(u) = &url else {
                return Err(format!(
                    "{at}: needs url_env, the variable holding the webhook URL"
                ));
            };
            url::Url::parse(u.expose())
                .ok()
                .filter(|p| matches!(p.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    format!(
                        "{at}: the URL in {} is not an http(s) URL",
                        r.url_env.as_deref().unwrap_or("url_env")
                    )
                })?;
        }
    }
    if signing.is_some() && !matches!(kind, ReceiverKind::Feishu | ReceiverKind::DingTalk) {
        return Err(format!(
            "{at}: secret_env signs feishu and dingtalk webhooks only"
        ));
    }
    let timeout = match r.timeout_s {
        None => std::time::Duration::from_secs(5),
        Some(t) if t.is_finite() && t > 0.0 && t <= 300.0 => std::time::Duration::from_secs_f64(t),
        Some(t) => {
            return Err(format!(
                "{at} timeout_s = {t}: give seconds above 0, at most 300"
            ));
        }
    };
    let attempts = match r.attempts {
        None => 3,
        Some(n @ 1..=10) => n,
        Some(n) => return Err(format!("{at} attempts = {n}: give 1 to 10")),
    };
    Ok(Receiver {
        name: name.to_owned(),
        kind,
        url,
        token,
        chat_id: r.chat_id.as_ref().map(|c| c.trim().to_owned()),
        api_base: r
            .api_base
            .as_deref()
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| TELEGRAM_API.to_owned()),
        secret: signing,
        timeout,
        attempts,
    })
}

fn resolve_rule(a: &AlertToml, providers: &[&str]) -> Result<Rule, String> {
    let name = a.name.trim();
    if name.is_empty() {
        return Err("[[alerts]]: every alert needs a name".into());
    }
    let at = format!("[[alerts]] `{name}`:");
    let severity = match a.severity.as_deref().map(str::trim) {
        None | Some("warning") => Severity::Warning,
        Some("info") => Severity::Info,
        Some("critical") => Severity::Critical,
        Some(other) => {
            return Err(format!(
                "{at} severity = \"{other}\": use info, warning or critical"
            ));
        }
    };
    let scope = ScopeSpec::parse(a.scope.as_deref().unwrap_or("all"))
        .map_err(|e| format!("{at} scope: {e}"))?;
    if let ScopeSpec::Provider(Some(p)) = &scope
        && !providers.contains(&p.as_str())
    {
        return Err(format!(
            "{at} scope names provider `{p}`, which is not defined (known: {})",
            providers.join(", ")
        ));
    }
    let for_us = seconds_us(a.for_s.unwrap_or(0.0), "for_s", &at)?;
    let renotify_us = match a.renotify_s {
        None => Some(3_600_000_000),
        Some(s) => Some(seconds_us(s, "renotify_s", &at)?).filter(|&us| us > 0),
    };
    let kind = a.kind.as_deref().map(str::trim).unwrap_or("threshold");
    let burn_only = [
        ("speed", a.speed.is_some()),
        ("long_window_s", a.long_window_s.is_some()),
        ("short_window_s", a.short_window_s.is_some()),
        ("burn_rate", a.burn_rate.is_some()),
        ("min_requests", a.min_requests.is_some()),
    ];
    let threshold_only = [
        ("figure", a.figure.is_some()),
        ("above", a.above.is_some()),
        ("below", a.below.is_some()),
        ("resolve_at", a.resolve_at.is_some()),
        ("window", a.window.is_some()),
    ];
    let condition = match kind {
        "threshold" => {
            if let Some((key, _)) = burn_only.iter().find(|(_, set)| *set) {
                return Err(format!("{at} {key} belongs to kind = \"burn_rate\""));
            }
            let figure_name = a.figure.as_deref().ok_or_else(|| {
                format!("{at} needs a figure (one of {})", Figure::NAMES.join(", "))
            })?;
            let figure = Figure::parse(figure_name).ok_or_else(|| {
                format!(
                    "{at} no figure `{figure_name}` (known: {})",
                    Figure::NAMES.join(", ")
                )
            })?;
            let (direction, value) = match (a.above, a.below) {
                (Some(v), None) => (Direction::Above, v),
                (None, Some(v)) => (Direction::Below, v),
                _ => {
                    return Err(format!(
                        "{at} give exactly one of above = VALUE or below = VALUE"
                    ));
                }
            };
            if !value.is_finite() {
                return Err(format!("{at} the threshold must be a number"));
            }
            let resolve_at = a.resolve_at.unwrap_or(value);
            let wrong_side = match direction {
                Direction::Above => resolve_at > value,
                Direction::Below => resolve_at < value,
            };
            if !resolve_at.is_finite() || wrong_side {
                return Err(format!(
                    "{at} resolve_at = {resolve_at} must be on the healthy side of the \
                     threshold ({} {value})",
                    match direction {
                        Direction::Above => "at most",
                        Direction::Below => "at least",
                    }
                ));
            }
            let window = match a.window.as_deref().map(str::trim) {
                None | Some("1m") => Window::OneMinute,
                Some("15m") => Window::FifteenMinutes,
                Some("run") => Window::Run,
                Some(w) => return Err(format!("{at} window = \"{w}\": use 1m, 15m or run")),
            };
            Condition::Threshold {
                figure,
                window,
                direction,
                value,
                resolve_at,
            }
        }
        "burn_rate" => {
            if let Some((key, _)) = threshold_only.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{at} {key} belongs to threshold rules; a burn-rate rule watches [slo]"
                ));
            }
            let (long_s, short_s, factor) = match a.speed.as_deref().map(str::trim) {
                None | Some("fast") => (3600.0, 300.0, 14.4),
                Some("slow") => (21_600.0, 1800.0, 6.0),
                Some(s) => return Err(format!("{at} speed = \"{s}\": use fast or slow")),
            };
            let long_us = seconds_us(a.long_window_s.unwrap_or(long_s), "long_window_s", &at)?;
            let short_us = seconds_us(a.short_window_s.unwrap_or(short_s), "short_window_s", &at)?;
            if short_us == 0 || short_us > long_us || long_us > super::tally::KEPT_US {
                return Err(format!(
                    "{at} the short window must be above 0 and at most the long one, and the \
                     long one at most 6 hours"
                ));
            }
            let factor = a.burn_rate.unwrap_or(factor);
            if !(factor.is_finite() && factor > 0.0) {
                return Err(format!("{at} burn_rate must be above 0"));
            }
            Condition::BurnRate {
                long_us,
                short_us,
                factor,
                min_requests: a.min_requests.unwrap_or(10),
            }
        }
        other => {
            return Err(format!(
                "{at} kind = \"{other}\": use threshold or burn_rate"
            ));
        }
    };
    Ok(Rule {
        name: name.to_owned(),
        severity,
        scope,
        condition,
        for_us,
        renotify_us,
        receivers: a.receivers.clone().unwrap_or_default(),
    })
}
