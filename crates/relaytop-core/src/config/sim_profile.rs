//! The simulator's knobs: `SimProfile` (named profiles, TOML loading, validation) and the
//! log-normal time-to-first-token model. Pure data and pure functions; no I/O but the file read.

use std::path::Path;

use anyhow::Context as _;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// The 99th percentile of the standard normal distribution: a log-normal latency with
/// median m and 99th percentile q has sigma = ln(q/m) / 2.326 (spec/PROTOCOL.md).
const Z_P99: f64 = 2.326;

/// Every time-to-first-token sample is capped here, so that an extreme sigma cannot park a
/// request for hours.
const MAX_TTFT_MS: f64 = 600_000.0;

/// The words a response streams when a profile gives none: one token a chunk, with the
/// leading spaces a tokenizer would keep; the 25 of them (a default response) make a sentence.
/// The thinking a simulated model does before it answers (`thinking_tokens`), a word a token.
const THINKING_WORDS: &[&str] = &[
    "The", " user", " asks", " about", " relays;", " keep", " it", " short.",
];

/// The words a simulated response streams by default, a token a chunk.
pub const DEFAULT_CHUNK_WORDS: &[&str] = &[
    "Relay",
    " stations",
    " forward",
    " each",
    " request",
    " to",
    " an",
    " upstream",
    " model",
    " and",
    " stream",
    " the",
    " answer",
    " back",
    " to",
    " the",
    " waiting",
    " client",
    ",",
    " one",
    " token",
    " at",
    " a",
    " time",
    ".",
];

/// How a simulated mid-stream drop ends the connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropMode {
    /// The TCP connection just ends, with no close frame (a client sees 1006).
    /// In TOML: `drop_mode = "abrupt"`.
    #[default]
    Abrupt,
    /// A WebSocket close frame with this code (1001, 1011, 1012, 1013, ...), then the end.
    /// In TOML: `drop_mode = { close = 1011 }`.
    Close(u16),
}

/// Answer some WebSocket upgrades with an HTTP error instead of `101`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpgradeRejection {
    /// How many upgrades to reject, counted from when this profile took effect (server start
    /// or `set_profile`); absent = reject every upgrade.
    pub first: Option<u64>,
    /// The HTTP status to answer with: 401, 403, 429, 503, ...
    pub status: u16,
    /// The `Retry-After` header value, sent as given (seconds, or an HTTP date); absent = no header.
    pub retry_after: Option<String>,
    /// The `error.message` of the JSON body; absent = a stock message for the status.
    pub message: Option<String>,
}

impl Default for UpgradeRejection {
    fn default() -> Self {
        Self {
            first: None,
            status: 503,
            retry_after: None,
            message: None,
        }
    }
}

impl UpgradeRejection {
    /// The message of the JSON error body.
    pub fn message(&self) -> &str {
        if let Some(message) = &self.message {
            return message;
        }
        match self.status {
            401 => "invalid API key (simulated rejection)",
            403 => "this key may not open streams (simulated rejection)",
            429 => "too many connections: retry later (simulated rejection)",
            503 => "relay overloaded: retry with backoff (simulated rejection)",
            _ => "upgrade rejected (simulated)",
        }
    }
}

/// Everything the simulated relay does, as knobs. `Default` is the "default" profile; a TOML
/// file may set any subset of the fields, the rest keep their "default" values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimProfile {
    /// Median time to first token, in milliseconds (log-normal).
    pub ttft_p50_ms: f64,
    /// 99th-percentile time to first token, in milliseconds (sigma = ln(p99/p50) / 2.326).
    pub ttft_p99_ms: f64,
    /// Tokens streamed per second after the first one; 0 (or 1,000,000 and more) = as fast as possible.
    pub tokens_per_second: f64,
    /// Tokens (one chunk each) a response streams; a request's smaller `max_tokens` wins.
    pub tokens_per_response: u32,
    /// The chunk texts, cycled from the first for every response; empty = a stock sentence.
    pub chunk_words: Vec<String>,
    /// Whether `done` carries `usage` (prompt = ceil(chars / 4) of all messages, completion = chunks sent).
    pub send_usage: bool,
    /// Probability, per response, that the connection drops mid-stream (after a random number of chunks).
    pub drop_rate: f64,
    /// How such a drop ends the connection: `"abrupt"` TCP close, or `{ close = CODE }`.
    pub drop_mode: DropMode,
    /// Probability, per request, of an `error` frame with code `upstream_error` instead of a
    /// stream (sent when the first token would have come).
    pub error_rate: f64,
    /// Probability, per request, of an `error` frame with code `rate_limited` instead of a
    /// stream (sent at once).
    pub rate_limit_rate: f64,
    /// The `retry_after_ms` sent with `rate_limited` errors.
    pub rate_limit_retry_after_ms: u64,
    /// Reject WebSocket upgrades with an HTTP error (all of them, or the first N), before the
    /// key is looked at, as an overloaded front door would; absent = accept.
    pub reject_upgrades: Option<UpgradeRejection>,
    /// The API keys accepted; absent = any `hs_live_` followed by 16 or more letters and digits.
    pub accepted_keys: Option<Vec<String>>,
    /// Cut a connection abruptly after this many milliseconds without a frame from the client
    /// (what proxies do); absent = never.
    pub idle_cutoff_ms: Option<u64>,
    /// Probability, per chunk, of also sending a malformed text frame (truncated JSON, or an unknown type).
    pub malformed_rate: f64,
    /// Whether application `ping`s and WebSocket Pings are answered; false = a half-open peer
    /// that sends nothing while idle (requests are still served).
    pub answer_pings: bool,
    /// Seed of the random choices; each connection derives its own generator from seed + its number.
    pub seed: u64,
    /// openai-sse and openai-realtime: probability, per response, that the stream goes silent
    /// after its first event (headers and the role delta; `response.created`) and never ends,
    /// the connection held open: what a stalled upstream looks like.
    pub stall_rate: f64,
    /// openai-sse: report `usage.cost` in US dollars, at this price per million tokens (prompt
    /// and completion alike); absent = no `cost` in the usage chunk.
    pub usage_cost_per_mtok: Option<f64>,
    /// openai-sse and openai-realtime: the share of each prompt's tokens reported as served
    /// from a cache (`prompt_tokens_details.cached_tokens`, `input_token_details.cached_tokens`).
    pub cached_prompt_fraction: f64,
    /// HTTP streaming formats (chat, Messages, Responses, Gemini): thinking tokens streamed
    /// before the answer (`reasoning_content`, `thinking_delta`, reasoning summary, thought
    /// parts), one a chunk at the token rate, reported as reasoning tokens; 0 = none.
    pub thinking_tokens: u32,
    /// anthropic-messages: the share of each prompt's tokens reported as written to the cache
    /// (`cache_creation_input_tokens`).
    pub cache_write_fraction: f64,
    /// The account API served beside the streams (`openai-billing`, `new-api`, `openrouter`,
    /// `litellm`, `deepseek`); absent = no account routes. one-api kinds answer with an
    /// `X-Oneapi-Request-Id` header.
    pub account_kind: Option<String>,
    /// The account's starting balance in US dollars; it goes down as responses complete.
    pub account_balance_usd: f64,
    /// What the station charges per list-price dollar of the tokens it serves (1.5: a station
    /// charging 1.5× list price).
    pub bill_multiplier: f64,
    /// HTTP streaming formats: answer every request with this relay error
    /// (`invalid_key`, `expired_key`, `key_quota`, `balance`, `no_channel`, `saturated`,
    /// `overloaded`, `upstream`), in new-api's words; absent = serve. A spent account
    /// balance answers `balance` by itself.
    pub relay_error: Option<String>,
    /// HTTP streaming formats: models no channel serves (503 `model_not_found`, 无可用渠道).
    pub no_channel_models: Vec<String>,
}

/// The relay errors `SimProfile::relay_error` knows.
pub const RELAY_ERRORS: [&str; 8] = [
    "invalid_key",
    "expired_key",
    "key_quota",
    "balance",
    "no_channel",
    "saturated",
    "overloaded",
    "upstream",
];

/// The account kinds `SimProfile::account_kind` knows.
pub const ACCOUNT_KINDS: [&str; 5] = [
    "openai-billing",
    "new-api",
    "openrouter",
    "litellm",
    "deepseek",
];

impl Default for SimProfile {
    fn default() -> Self {
        Self {
            ttft_p50_ms: 50.0,
            ttft_p99_ms: 150.0,
            tokens_per_second: 250.0,
            tokens_per_response: 25,
            chunk_words: DEFAULT_CHUNK_WORDS
                .iter()
                .map(|w| (*w).to_owned())
                .collect(),
            send_usage: true,
            thinking_tokens: 0,
            cache_write_fraction: 0.0,
            drop_rate: 0.0,
            drop_mode: DropMode::Abrupt,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            rate_limit_retry_after_ms: 1_000,
            reject_upgrades: None,
            accepted_keys: None,
            idle_cutoff_ms: None,
            malformed_rate: 0.0,
            answer_pings: true,
            seed: 0,
            stall_rate: 0.0,
            usage_cost_per_mtok: None,
            cached_prompt_fraction: 0.0,
            account_kind: None,
            account_balance_usd: 10.0,
            bill_multiplier: 1.0,
            relay_error: None,
            no_channel_models: Vec::new(),
        }
    }
}

impl SimProfile {
    /// The names `named` knows.
    pub const NAMES: [&'static str; 4] = ["default", "legacy", "holysheep", "openai"];

    /// A named profile: "default" (a quick relay without faults, for tests), or one of the two
    /// relays of the reference case in spec/PROTOCOL.md: "legacy" (TTFT p50 420 ms, p99 890 ms,
    /// 3.2 % abrupt drops) and "holysheep" (p50 180 ms, p99 320 ms, no drops).
    pub fn named(name: &str) -> Option<SimProfile> {
        let base = SimProfile::default();
        match name {
            "default" => Some(base),
            // Each station of the default world has an account of its own kind, balance and
            // burn, so the first screen shows which runs dry first.
            "legacy" => Some(SimProfile {
                ttft_p50_ms: 420.0,
                ttft_p99_ms: 890.0,
                drop_rate: 0.032,
                drop_mode: DropMode::Abrupt,
                account_kind: Some("openai-billing".into()),
                account_balance_usd: 30.0,
                ..base
            }),
            "holysheep" => Some(SimProfile {
                ttft_p50_ms: 180.0,
                ttft_p99_ms: 320.0,
                drop_rate: 0.0,
                account_kind: Some("new-api".into()),
                account_balance_usd: 20.0,
                ..base
            }),
            // An OpenAI-compatible relay for the openai-sse and openai-realtime demos: it
            // reports `usage.cost` (SSE) and cached prompt tokens (both).
            "openai" => Some(SimProfile {
                ttft_p50_ms: 300.0,
                ttft_p99_ms: 700.0,
                usage_cost_per_mtok: Some(5.0),
                cached_prompt_fraction: 0.5,
                ..base
            }),
            // A new-api-shaped station serving every format on one key: thinking models and
            // a prompt cache (reads and writes). Its faults are the other profiles' to show.
            "newapi" => Some(SimProfile {
                ttft_p50_ms: 350.0,
                ttft_p99_ms: 900.0,
                tokens_per_second: 120.0,
                thinking_tokens: 6,
                cached_prompt_fraction: 0.25,
                cache_write_fraction: 0.1,
                account_kind: Some("new-api".into()),
                account_balance_usd: 20.0,
                bill_multiplier: 1.2,
                ..base
            }),
            _ => None,
        }
    }

    /// Reads a profile from a TOML file; unset fields keep their "default" values. A syntax
    /// error or unknown field names its line and column; a value out of range names its field.
    pub fn from_toml_file(path: &Path) -> anyhow::Result<SimProfile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read simulator profile {}", path.display()))?;
        let profile: SimProfile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("simulator profile {}: {e}", path.display()))?;
        profile.validate().map_err(|problem| {
            anyhow::anyhow!("simulator profile {}: {problem}", path.display())
        })?;
        Ok(profile)
    }

    /// Checks that every knob is in range; the error names the field, its value and the range.
    /// The server never panics on a profile that fails this (it clamps), but the result would
    /// not be what was meant.
    pub fn validate(&self) -> Result<(), String> {
        let probability = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!(
                    "{name} = {p}: a probability must be between 0 and 1"
                ))
            }
        };
        probability("drop_rate", self.drop_rate)?;
        probability("error_rate", self.error_rate)?;
        probability("rate_limit_rate", self.rate_limit_rate)?;
        probability("malformed_rate", self.malformed_rate)?;
        probability("stall_rate", self.stall_rate)?;
        probability("cached_prompt_fraction", self.cached_prompt_fraction)?;
        probability("cache_write_fraction", self.cache_write_fraction)?;
        if let Some(price) = self.usage_cost_per_mtok
            && !(price.is_finite() && price >= 0.0)
        {
            return Err(format!(
                "usage_cost_per_mtok = {price}: must be 0 or more US $ per million tokens"
            ));
        }
        if !(self.ttft_p50_ms.is_finite() && self.ttft_p50_ms >= 0.0) {
            return Err(format!(
                "ttft_p50_ms = {}: must be 0 or more milliseconds",
                self.ttft_p50_ms
            ));
        }
        if !(self.ttft_p99_ms.is_finite() && self.ttft_p99_ms >= self.ttft_p50_ms) {
            return Err(format!(
                "ttft_p99_ms = {}: must be at least ttft_p50_ms ({})",
                self.ttft_p99_ms, self.ttft_p50_ms
            ));
        }
        if self.tokens_per_second.is_nan() || self.tokens_per_second < 0.0 {
            return Err(format!(
                "tokens_per_second = {}: must be 0 (as fast as possible) or more",
                self.tokens_per_second
            ));
        }
        if let DropMode::Close(code) = self.drop_mode
            && !close_code_is_sendable(code)
        {
            return Err(format!(
                "drop_mode close code {code}: must be 1000-1003, 1007-1014 or 3000-4999 \
                 (1004-1006 and 1015 may not be sent)"
            ));
        }
        if let Some(rejection) = &self.reject_upgrades {
            if !(400..=599).contains(&rejection.status) {
                return Err(format!(
                    "reject_upgrades.status = {}: must be an HTTP error status (400-599)",
                    rejection.status
                ));
            }
            if let Some(value) = &rejection.retry_after
                && value.chars().any(|c| c.is_control())
            {
                return Err(
                    "reject_upgrades.retry_after: a header value may not hold control characters"
                        .to_owned(),
                );
            }
        }
        if let Some(kind) = &self.account_kind
            && !ACCOUNT_KINDS.contains(&kind.as_str())
        {
            return Err(format!(
                "account_kind = {kind:?}: must be one of {}",
                ACCOUNT_KINDS.join(", ")
            ));
        }
        if let Some(error) = &self.relay_error
            && !RELAY_ERRORS.contains(&error.as_str())
        {
            return Err(format!(
                "relay_error = {error:?}: must be one of {}",
                RELAY_ERRORS.join(", ")
            ));
        }
        for (name, value) in [
            ("account_balance_usd", self.account_balance_usd),
            ("bill_multiplier", self.bill_multiplier),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{name} = {value}: must be a number >= 0"));
            }
        }
        if let Some(keys) = &self.accepted_keys
            && keys
                .iter()
                .any(|k| k.is_empty() || k.contains(char::is_whitespace))
        {
            return Err("accepted_keys: a key may not be empty or hold white space".to_owned());
        }
        Ok(())
    }

    /// The time-to-first-token model of this profile.
    pub fn time_to_first_token(&self) -> LogNormalLatency {
        LogNormalLatency::from_p50_p99(self.ttft_p50_ms, self.ttft_p99_ms)
    }

    /// The pause between two tokens (an hour at most); `None` = as fast as possible.
    pub fn token_interval(&self) -> Option<std::time::Duration> {
        let tps = self.tokens_per_second;
        if tps.is_finite() && tps > 0.0 && tps < 1_000_000.0 {
            std::time::Duration::try_from_secs_f64((1.0 / tps).min(3_600.0)).ok()
        } else {
            None
        }
    }

    /// The text of chunk number `index` (from 0) of a response.
    /// The `index`-th thinking token's text.
    pub fn thinking_word(&self, index: u32) -> &'static str {
        THINKING_WORDS[index as usize % THINKING_WORDS.len()]
    }

    pub fn chunk_word(&self, index: u32) -> &str {
        if self.chunk_words.is_empty() {
            DEFAULT_CHUNK_WORDS[index as usize % DEFAULT_CHUNK_WORDS.len()]
        } else {
            &self.chunk_words[index as usize % self.chunk_words.len()]
        }
    }
}

/// Whether a close code may be sent in a close frame (RFC 6455 section 7.4).
fn close_code_is_sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A log-normal latency given by its median and 99th percentile, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogNormalLatency {
    median_ms: f64,
    sigma: f64,
}

impl LogNormalLatency {
    /// sigma = ln(p99 / p50) / 2.326; a p99 below the median (or anything not finite) gives a
    /// constant latency, a median of 0 or less gives none.
    pub fn from_p50_p99(p50_ms: f64, p99_ms: f64) -> Self {
        let median_ms = if p50_ms.is_finite() {
            p50_ms.max(0.0)
        } else {
            0.0
        };
        let sigma = if median_ms > 0.0 && p99_ms.is_finite() && p99_ms > median_ms {
            (p99_ms / median_ms).ln() / Z_P99
        } else {
            0.0
        };
        let sigma = if sigma.is_finite() { sigma } else { 0.0 };
        Self { median_ms, sigma }
    }

    /// The sigma of the underlying normal distribution.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// One sample, in milliseconds (capped at ten minutes).
    pub fn sample_ms<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        if self.median_ms <= 0.0 {
            return 0.0;
        }
        if self.sigma == 0.0 {
            return self.median_ms.min(MAX_TTFT_MS);
        }
        let z: f64 = rng.sample(StandardNormal);
        (self.median_ms * (self.sigma * z).exp()).min(MAX_TTFT_MS)
    }

    /// One sample as a duration.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.sample_ms(rng) / 1_000.0)
    }
}

/// True with probability `p` (NaN or 0 and below: never; 1 and above: always, without drawing).
pub fn chance<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    p > 0.0 && (p >= 1.0 || rng.random::<f64>() < p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn quantile(sorted: &[f64], q: f64) -> f64 {
        let rank = ((sorted.len() as f64) * q).ceil() as usize;
        sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
    }

    #[test]
    fn log_normal_hits_its_p50_and_p99() {
        for (p50, p99) in [(420.0, 890.0), (180.0, 320.0), (50.0, 150.0)] {
            let model = LogNormalLatency::from_p50_p99(p50, p99);
            let mut rng = SmallRng::seed_from_u64(7);
            let mut samples: Vec<f64> = (0..20_000).map(|_| model.sample_ms(&mut rng)).collect();
            samples.sort_by(f64::total_cmp);
            let got50 = quantile(&samples, 0.50);
            let got99 = quantile(&samples, 0.99);
            assert!(
                (got50 / p50 - 1.0).abs() < 0.03,
                "p50 {got50:.1} vs {p50} for ({p50}, {p99})"
            );
            assert!(
                (got99 / p99 - 1.0).abs() < 0.05,
                "p99 {got99:.1} vs {p99} for ({p50}, {p99})"
            );
        }
    }

    #[test]
    fn log_normal_degenerate_shapes() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(
            LogNormalLatency::from_p50_p99(0.0, 100.0).sample_ms(&mut rng),
            0.0
        );
        assert_eq!(
            LogNormalLatency::from_p50_p99(80.0, 80.0).sample_ms(&mut rng),
            80.0
        );
        assert_eq!(
            LogNormalLatency::from_p50_p99(80.0, 10.0).sample_ms(&mut rng),
            80.0
        );
        assert_eq!(
            LogNormalLatency::from_p50_p99(f64::NAN, 10.0).sample_ms(&mut rng),
            0.0
        );
        let sigma = LogNormalLatency::from_p50_p99(420.0, 890.0).sigma();
        assert!((sigma - (890.0f64 / 420.0).ln() / 2.326).abs() < 1e-12);
    }

    #[test]
    fn named_profiles_follow_the_reference_case() {
        let legacy = SimProfile::named("legacy").unwrap();
        assert_eq!((legacy.ttft_p50_ms, legacy.ttft_p99_ms), (420.0, 890.0));
        assert_eq!(legacy.drop_rate, 0.032);
        assert_eq!(legacy.drop_mode, DropMode::Abrupt);
        assert_eq!(
            (legacy.tokens_per_response, legacy.tokens_per_second),
            (25, 250.0)
        );
        let new = SimProfile::named("holysheep").unwrap();
        assert_eq!(
            (new.ttft_p50_ms, new.ttft_p99_ms, new.drop_rate),
            (180.0, 320.0, 0.0)
        );
        assert_eq!(
            (new.tokens_per_response, new.tokens_per_second),
            (25, 250.0)
        );
        let default = SimProfile::named("default").unwrap();
        assert_eq!(default, SimProfile::default());
        assert_eq!((default.ttft_p50_ms, default.ttft_p99_ms), (50.0, 150.0));
        for name in SimProfile::NAMES {
            SimProfile::named(name).unwrap().validate().unwrap();
        }
        assert!(SimProfile::named("nope").is_none());
    }

    #[test]
    fn toml_sets_some_knobs_and_keeps_the_rest() {
        let profile: SimProfile = toml::from_str(
            r#"
            ttft_p50_ms = 100
            drop_rate = 0.5
            drop_mode = { close = 1012 }
            idle_cutoff_ms = 60000
            accepted_keys = ["hs_live_abcdefghijklmnop"]
            reject_upgrades = { first = 2, status = 429, retry_after = "3" }
            "#,
        )
        .unwrap();
        assert_eq!(profile.ttft_p50_ms, 100.0);
        assert_eq!(profile.ttft_p99_ms, 150.0);
        assert_eq!(profile.drop_mode, DropMode::Close(1012));
        assert_eq!(profile.idle_cutoff_ms, Some(60_000));
        let rejection = profile.reject_upgrades.unwrap();
        assert_eq!(
            (
                rejection.first,
                rejection.status,
                rejection.retry_after.as_deref()
            ),
            (Some(2), 429, Some("3"))
        );
        let abrupt: SimProfile = toml::from_str(r#"drop_mode = "abrupt""#).unwrap();
        assert_eq!(abrupt.drop_mode, DropMode::Abrupt);
    }

    #[test]
    fn toml_errors_say_where() {
        let dir = std::env::temp_dir().join(format!("relaytop-sim-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");

        std::fs::write(&path, "ttft_p50_ms = 100\ndrop_rat = 0.1\n").unwrap();
        let err = SimProfile::from_toml_file(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("drop_rat"), "{err}");

        std::fs::write(&path, "drop_rate = 1.5\n").unwrap();
        let err = SimProfile::from_toml_file(&path).unwrap_err().to_string();
        assert!(err.contains("drop_rate = 1.5"), "{err}");

        std::fs::write(&path, "drop_mode = { close = 1006 }\n").unwrap();
        let err = SimProfile::from_toml_file(&path).unwrap_err().to_string();
        assert!(err.contains("1006"), "{err}");

        let err = SimProfile::from_toml_file(&dir.join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");

        std::fs::write(&path, "tokens_per_response = 3\nseed = 9\n").unwrap();
        let profile = SimProfile::from_toml_file(&path).unwrap();
        assert_eq!((profile.tokens_per_response, profile.seed), (3, 9));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn token_interval_and_words() {
        let mut profile = SimProfile::default();
        assert_eq!(
            profile.token_interval(),
            Some(std::time::Duration::from_millis(4))
        );
        profile.tokens_per_second = 0.0;
        assert_eq!(profile.token_interval(), None);
        profile.tokens_per_second = f64::INFINITY;
        assert_eq!(profile.token_interval(), None);
        profile.chunk_words = vec!["a".into(), "b".into()];
        assert_eq!(
            (0..5).map(|i| profile.chunk_word(i)).collect::<String>(),
            "ababa"
        );
        profile.chunk_words.clear();
        assert_eq!(profile.chunk_word(0), "Relay");
        let sentence: String = (0..25).map(|i| profile.chunk_word(i)).collect();
        assert!(sentence.ends_with(" one token at a time."), "{sentence}");
    }

    #[test]
    fn chance_handles_the_edges() {
        let mut rng = SmallRng::seed_from_u64(3);
        assert!(!chance(&mut rng, 0.0));
        assert!(!chance(&mut rng, f64::NAN));
        assert!(!chance(&mut rng, -1.0));
        assert!(chance(&mut rng, 1.0));
        assert!(chance(&mut rng, 7.0));
        let hits = (0..10_000).filter(|_| chance(&mut rng, 0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }
}
