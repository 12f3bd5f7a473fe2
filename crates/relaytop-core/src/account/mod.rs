//! The relay account a user key can read: its configuration (`[providers.account]`), the
//! readings that enter the one event stream (`EventKind::Account`), the relay's error classes
//! (`EventKind::RelayError`), and the pure fold that makes balance, spend rate, run-out time,
//! warnings and the bill check out of them (design: docs/ACCOUNTS.md).
//!
//! - `errors`: error classes with their words and fixes, the relay's request id.
//! - `parse`: the account endpoints' JSON, tolerant.
//! - `book`: the balance series, spend rate, run-out, warnings, bill check (pure, `now` given).
//! - `poll`: the polling task per provider and its pure schedule (auto detection, backoff).

pub mod book;
pub mod errors;
pub mod parse;
pub mod poll;

use serde::{Deserialize, Serialize};

pub use book::{AccountAlert, AccountBook, AccountSummary, Accounts, BillCheck, BillVerdict};
pub use errors::{ErrorClass, Scope};

/// new-api's default: 500,000 quota units make one dollar.
pub const DEFAULT_QUOTA_PER_UNIT: f64 = 500_000.0;
/// Seconds between readings when the config does not say.
pub const DEFAULT_POLL_S: f64 = 60.0;
/// The spend rate's window when the config does not say (15 minutes).
pub const DEFAULT_WINDOW_S: f64 = 900.0;
/// The run-out warning's horizon when the config does not say (a day).
pub const DEFAULT_RUN_OUT_WARNING_H: f64 = 24.0;

/// Which account API a station serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountKind {
    /// Try what the station answers (new-api first when it says `X-Oneapi-Request-Id`).
    #[default]
    Auto,
    /// `/dashboard/billing/subscription` and `/usage` (one-api, new-api, OpenAI-legacy).
    OpenaiBilling,
    /// new-api's `/api/usage/token`.
    NewApi,
    /// OpenRouter's `/api/v1/key` (and `/api/v1/credits`).
    Openrouter,
    /// LiteLLM proxy's `/key/info`.
    Litellm,
    /// DeepSeek's `/user/balance`.
    Deepseek,
    /// No account polling.
    None,
}

impl AccountKind {
    pub fn label(self) -> &'static str {
        match self {
            AccountKind::Auto => "auto",
            AccountKind::OpenaiBilling => "openai-billing",
            AccountKind::NewApi => "new-api",
            AccountKind::Openrouter => "openrouter",
            AccountKind::Litellm => "litellm",
            AccountKind::Deepseek => "deepseek",
            AccountKind::None => "none",
        }
    }

    /// The kinds that read an account, in the order `auto` tries them.
    pub const READABLE: [AccountKind; 5] = [
        AccountKind::NewApi,
        AccountKind::OpenaiBilling,
        AccountKind::Openrouter,
        AccountKind::Litellm,
        AccountKind::Deepseek,
    ];
}

/// `[providers.account]`: which account to read and when to warn.
///
/// ```toml
/// [providers.account]
/// kind = "auto"            # openai-billing | new-api | openrouter | litellm | deepseek | none
/// poll_s = 60              # seconds between readings
/// low_balance = 5.0        # warn below this, in the balance's currency
/// run_out_warning_h = 24   # warn when the balance runs out within this many hours
/// quota_per_unit = 500000  # new-api quota units per dollar
/// window_s = 900           # the spend rate's window
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    pub kind: AccountKind,
    pub poll_s: f64,
    pub low_balance: Option<f64>,
    pub run_out_warning_h: f64,
    pub quota_per_unit: f64,
    pub window_s: f64,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            kind: AccountKind::Auto,
            poll_s: DEFAULT_POLL_S,
            low_balance: None,
            run_out_warning_h: DEFAULT_RUN_OUT_WARNING_H,
            quota_per_unit: DEFAULT_QUOTA_PER_UNIT,
            window_s: DEFAULT_WINDOW_S,
        }
    }
}

impl AccountConfig {
    /// No polling (a provider without `[providers.account]`).
    pub fn off() -> Self {
        Self {
            kind: AccountKind::None,
            ..Self::default()
        }
    }

    /// Checks the numbers; the loader names the provider.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("account.{name} must be a number > 0, not {v}"))
            }
        };
        positive("poll_s", self.poll_s)?;
        positive("run_out_warning_h", self.run_out_warning_h)?;
        positive("quota_per_unit", self.quota_per_unit)?;
        positive("window_s", self.window_s)?;
        if let Some(low) = self.low_balance
            && !(low.is_finite() && low >= 0.0)
        {
            return Err(format!(
                "account.low_balance must be a number >= 0, not {low}"
            ));
        }
        Ok(())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One reading of a provider's account, as the event stream (and the recording) carries it
/// on behalf of the provider's first session (the session says whose account it is):
/// the figures in the station's unit, the factor to list-price dollars, and the thresholds in
/// force, so that a replay computes the same warnings without the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountReading {
    /// The API that answered (never `auto`).
    pub kind: AccountKind,
    /// `USD`, `CNY`…
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<f64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub unlimited: bool,
    /// List-price US dollars one unit of `currency` is worth at this provider (its billing
    /// settings: `1 / billing_rate` for the billing currency).
    pub usd_per_unit: f64,
    /// Why there is no reading (the station refused, nothing answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_balance: Option<f64>,
    /// The run-out warning's horizon, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_out_warning_s: Option<u64>,
    /// The spend rate's window, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
}

impl AccountReading {
    /// A reading of `balance` from `kind`, with `config`'s thresholds.
    pub fn new(
        kind: AccountKind,
        balance: parse::Balance,
        usd_per_unit: f64,
        config: &AccountConfig,
    ) -> Self {
        Self {
            kind,
            currency: balance.currency,
            balance: balance.remaining,
            granted: balance.granted,
            used: balance.used,
            unlimited: balance.unlimited,
            usd_per_unit,
            error: None,
            low_balance: config.low_balance,
            run_out_warning_s: Some((config.run_out_warning_h * 3600.0) as u64),
            window_s: Some(config.window_s as u64),
        }
    }

    /// No reading: `error` says why.
    pub fn failed(kind: AccountKind, error: String, config: &AccountConfig) -> Self {
        let mut reading = Self::new(kind, parse::Balance::default(), 1.0, config);
        reading.currency = "USD".to_owned();
        reading.error = Some(error);
        reading
    }

    /// The balance in list-price dollars.
    pub fn balance_usd(&self) -> Option<f64> {
        self.balance.map(|b| b * self.usd_per_unit)
    }
}

/// A failed request as the relay explained it: its class, status, the relay's request id
/// (to quote to the station's support) and the model, when known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::session::RequestId>,
    pub class: ErrorClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// List-price dollars per unit of `currency` at a provider billed by `pricing`: its billing
/// currency converts at `1 / billing_rate`; US dollars are dollars; any other unit is taken
/// as the billing currency.
pub fn usd_per_unit(currency: &str, pricing: &crate::cost::ProviderPricing) -> f64 {
    if currency.eq_ignore_ascii_case("USD") && !pricing.billing_currency.eq_ignore_ascii_case("USD")
    {
        return 1.0;
    }
    1.0 / pricing.billing_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_reads_and_checks() {
        let c: AccountConfig = toml::from_str("kind = \"new-api\"\nlow_balance = 2.5").unwrap();
        assert_eq!(c.kind, AccountKind::NewApi);
        assert_eq!(c.poll_s, DEFAULT_POLL_S);
        assert!(c.validate().is_ok());
        let bad = AccountConfig {
            poll_s: 0.0,
            ..AccountConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("poll_s"));
        assert!(toml::from_str::<AccountConfig>("kind = \"x\"").is_err());
    }

    #[test]
    fn prometheus_exports_the_account_and_the_relay_errors() {
        use crate::session::{Protocol, SessionEvent, SessionInfo};
        let info = SessionInfo {
            id: 0,
            name: "probe".into(),
            provider: "station".into(),
            model: "gpt-4.1".into(),
            protocol: Protocol::OpenaiSse,
            url: "http://127.0.0.1:1/v1".into(),
            workload: "probe".into(),
        };
        let exporter = crate::prometheus::Exporter::new(&[info], Default::default());
        let config = AccountConfig::default();
        let reading = |balance: f64| {
            let b = parse::Balance {
                currency: "USD".into(),
                remaining: Some(balance),
                ..Default::default()
            };
            crate::session::EventKind::Account(Box::new(AccountReading::new(
                AccountKind::NewApi,
                b,
                1.0,
                &config,
            )))
        };
        exporter.observe(&SessionEvent {
            session: 0,
            at_us: 0,
            kind: reading(10.0),
        });
        exporter.observe(&SessionEvent {
            session: 0,
            at_us: 3_600_000_000,
            kind: reading(8.0),
        });
        exporter.observe(&SessionEvent {
            session: 0,
            at_us: 3_600_000_001,
            kind: crate::session::EventKind::RelayError(Box::new(RelayError {
                request: Some(1),
                class: ErrorClass::NoChannel,
                status: Some(503),
                relay_request_id: None,
                model: None,
            })),
        });
        let text = exporter.encode();
        for line in [
            r#"relaytop_account_balance{provider="station",currency="USD"} 8.0"#,
            r#"relaytop_account_spend_per_hour{provider="station",currency="USD"} 2.0"#,
            r#"relaytop_account_run_out_seconds{provider="station",currency="USD"} 14400.0"#,
            r#"relaytop_account_low_balance{provider="station",currency="USD"} 0"#,
            r#"relaytop_relay_errors_total{provider="station",class="no_channel"} 1"#,
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn money_converts_with_the_billing_settings() {
        let cny = crate::cost::ProviderPricing {
            billing_currency: "CNY".into(),
            billing_rate: 7.0,
            ..Default::default()
        };
        assert_eq!(usd_per_unit("USD", &cny), 1.0);
        assert!((usd_per_unit("CNY", &cny) - 1.0 / 7.0).abs() < 1e-12);
        assert_eq!(usd_per_unit("USD", &Default::default()), 1.0);
    }
}
