//! Cost: the price table (list prices, per-provider overrides, per-call fees, billing currency)
//! and token estimates for responses that carry no usage.
//!
//! Everything here is a pure function of its arguments. A completed response is priced in one
//! place, [`ProviderPricing::cost`] of a [`Response`] (the metrics fold, the dashboard's cost
//! table, the chat pane, the Prometheus exporter and `relaytop export` all call it), so live
//! runs, replays, exports and tests price the same response the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::session::{EventKind, Tokens};

mod table;

pub use table::{
    BUNDLED_PRICES_TOML, PriceEntry, checked_prices, normalize_model, parse_price_table,
};

/// Price of one model, in US dollars per million tokens (list price).
///
/// The shape of a `[providers.billing.prices."model"]` or `[prices."model"]` table:
///
/// ```toml
/// input_per_mtok = 3.0          # uncached prompt tokens
/// output_per_mtok = 15.0        # completion tokens, reasoning included
/// cached_input_per_mtok = 0.30  # cache reads (default: a quarter of input)
/// cache_write_per_mtok = 3.75   # cache writes (default: the input rate)
/// long_context = { above_input_tokens = 200000, input_per_mtok = 6.0, output_per_mtok = 22.5 }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// `input_per_mtok`: US $ per million prompt tokens.
    pub input_per_mtok: f64,
    /// `output_per_mtok`: US $ per million completion tokens (reasoning tokens are output).
    pub output_per_mtok: f64,
    /// `cached_input_per_mtok`: US $ per million prompt tokens served from a cache; when absent,
    /// a quarter of `input_per_mtok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
    /// `cache_write_per_mtok`: US $ per million prompt tokens written to a cache (Anthropic's
    /// `cache_creation_input_tokens`); when absent, `input_per_mtok` (no surcharge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok: Option<f64>,
    /// `long_context`: other rates for requests whose input exceeds a threshold (Gemini 2.5
    /// Pro, Claude Sonnet 4/4.5 with the 1M context window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContextPrice>,
}

/// The rates of a model's long requests: when a request's input tokens (cache reads and writes
/// included) exceed `above_input_tokens`, all of its tokens are priced at these rates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongContextPrice {
    /// `above_input_tokens`: the tier applies to requests with more input tokens than this.
    pub above_input_tokens: u64,
    /// `input_per_mtok`: US $ per million uncached prompt tokens.
    pub input_per_mtok: f64,
    /// `output_per_mtok`: US $ per million completion tokens.
    pub output_per_mtok: f64,
    /// `cached_input_per_mtok`: cache reads; when absent, a quarter of this tier's input rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
    /// `cache_write_per_mtok`: cache writes; when absent, this tier's input rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok: Option<f64>,
}

/// The four rates one request is priced at, US $ per million tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    /// Uncached prompt tokens.
    pub input: f64,
    /// Prompt tokens read from a cache.
    pub cached_input: f64,
    /// Prompt tokens written to a cache.
    pub cache_write: f64,
    /// Completion tokens, reasoning included.
    pub output: f64,
}

impl ModelPrice {
    /// A price with input and output rates and the default cache rates, no long-context tier.
    pub const fn new(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Self {
            input_per_mtok,
            output_per_mtok,
            cached_input_per_mtok: None,
            cache_write_per_mtok: None,
            long_context: None,
        }
    }

    /// US $ per million cached prompt tokens (a quarter of the input rate unless set), below
    /// any long-context threshold.
    pub fn cached_input_rate(&self) -> f64 {
        self.cached_input_per_mtok
            .unwrap_or(self.input_per_mtok / 4.0)
    }

    /// The rates of a request with `input_tokens` prompt tokens (cache reads and writes
    /// included): the long-context tier's when the input exceeds its threshold.
    pub fn rates(&self, input_tokens: u64) -> Rates {
        match self.long_context {
            Some(tier) if input_tokens > tier.above_input_tokens => Rates {
                input: tier.input_per_mtok,
                cached_input: tier
                    .cached_input_per_mtok
                    .unwrap_or(tier.input_per_mtok / 4.0),
                cache_write: tier.cache_write_per_mtok.unwrap_or(tier.input_per_mtok),
                output: tier.output_per_mtok,
            },
            _ => Rates {
                input: self.input_per_mtok,
                cached_input: self.cached_input_rate(),
                cache_write: self.cache_write_per_mtok.unwrap_or(self.input_per_mtok),
                output: self.output_per_mtok,
            },
        }
    }

    /// List price in US dollars of `tokens`: uncached input, cache reads, cache writes and
    /// output each at its rate (cache reads and writes are subsets of input, reasoning tokens
    /// part of output).
    pub fn list_usd(&self, tokens: &Tokens) -> f64 {
        let rates = self.rates(tokens.input);
        let cached = tokens.cached_input.min(tokens.input);
        let written = tokens.cache_write_input.min(tokens.input - cached);
        let uncached = tokens.input - cached - written;
        (uncached as f64 * rates.input
            + cached as f64 * rates.cached_input
            + written as f64 * rates.cache_write
            + tokens.output as f64 * rates.output)
            / 1_000_000.0
    }

    fn check(&self, model: &str) -> Result<(), PricingError> {
        let tier = self.long_context.as_ref();
        let rates = [
            ("input_per_mtok", Some(self.input_per_mtok)),
            ("output_per_mtok", Some(self.output_per_mtok)),
            ("cached_input_per_mtok", self.cached_input_per_mtok),
            ("cache_write_per_mtok", self.cache_write_per_mtok),
            (
                "long_context.input_per_mtok",
                tier.map(|t| t.input_per_mtok),
            ),
            (
                "long_context.output_per_mtok",
                tier.map(|t| t.output_per_mtok),
            ),
            (
                "long_context.cached_input_per_mtok",
                tier.and_then(|t| t.cached_input_per_mtok),
            ),
            (
                "long_context.cache_write_per_mtok",
                tier.and_then(|t| t.cache_write_per_mtok),
            ),
        ];
        for (field, value) in rates {
            if let Some(v) = value
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(PricingError::BadPrice {
                    model: model.to_string(),
                    field,
                    value: v,
                });
            }
        }
        Ok(())
    }
}

/// The list price relaytop knows of `model` without configuration, from the bundled table
/// (`prices.toml`): the exact name first, then the name as relays vary it (`models/…`,
/// `openai/…`, a date suffix, `4.5` for `4-5`; see [`normalize_model`]). `None` for a model
/// the table does not name: relaytop never guesses a price.
pub fn default_price(model: &str) -> Option<ModelPrice> {
    table::bundled_price(model)
}

/// What one provider charges: model prices, a per-call fee and the billing currency.
///
/// In the configuration this is a provider's `billing` table, for example:
///
/// ```toml
/// [providers.billing]
/// per_1000_calls_usd = 1.75
/// billing_currency = "CNY"
/// billing_rate = 1.0
/// [providers.billing.prices."gpt-4.1"]
/// input_per_mtok = 2.0
/// output_per_mtok = 8.0
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderPricing {
    /// `prices`: per-model prices that replace (or add to) the defaults, by model name (the
    /// config file's top-level `[prices]` are merged in under the provider's own at load).
    pub prices: BTreeMap<String, ModelPrice>,
    /// `per_1000_calls_usd`: a fee in US dollars per 1,000 completed calls, added to the token
    /// price of every response (default 0).
    pub per_1000_calls_usd: f64,
    /// `billing_currency`: the currency the relay bills in (default "USD").
    pub billing_currency: String,
    /// `billing_rate`: what one list-price US dollar costs in the billing currency (default 1.0;
    /// a relay charging 1 CNY per list dollar has `billing_currency = "CNY"`, `billing_rate = 1`).
    pub billing_rate: f64,
}

impl Default for ProviderPricing {
    fn default() -> Self {
        Self {
            prices: BTreeMap::new(),
            per_1000_calls_usd: 0.0,
            billing_currency: "USD".to_string(),
            billing_rate: 1.0,
        }
    }
}

impl ProviderPricing {
    /// The price of `model` at this provider: its override (exact name, then the normalized
    /// name), else the bundled list price ([`default_price`]).
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        table::find_price(&self.prices, model).or_else(|| default_price(model))
    }

    /// This pricing with `shared` prices (the config file's top-level `[prices]`) added under
    /// its own: a shared entry is skipped when the provider prices the same model, under any
    /// spelling of its name.
    pub fn with_shared_prices(&self, shared: &BTreeMap<String, ModelPrice>) -> Self {
        let mut merged = self.clone();
        for (model, price) in shared {
            let wanted = normalize_model(model);
            if !self.prices.keys().any(|own| normalize_model(own) == wanted) {
                merged.prices.insert(model.clone(), *price);
            }
        }
        merged
    }

    /// The per-call fee in US dollars.
    pub fn fee_per_call_usd(&self) -> f64 {
        self.per_1000_calls_usd / 1000.0
    }

    /// Checks that every number is finite and not negative, the billing rate positive and the
    /// currency named; the configuration loader reports the error with the provider's name.
    pub fn validate(&self) -> Result<(), PricingError> {
        for (model, price) in &self.prices {
            price.check(model)?;
        }
        if !(self.per_1000_calls_usd.is_finite() && self.per_1000_calls_usd >= 0.0) {
            return Err(PricingError::BadFee(self.per_1000_calls_usd));
        }
        if !(self.billing_rate.is_finite() && self.billing_rate > 0.0) {
            return Err(PricingError::BadBillingRate(self.billing_rate));
        }
        if self.billing_currency.trim().is_empty() {
            return Err(PricingError::NoCurrency);
        }
        Ok(())
    }
}

/// A price table that makes no sense.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PricingError {
    #[error("price {field} of model {model:?} must be a number >= 0, not {value}")]
    BadPrice {
        model: String,
        field: &'static str,
        value: f64,
    },
    #[error("per_1000_calls_usd must be a number >= 0, not {0}")]
    BadFee(f64),
    #[error("billing_rate must be a number > 0, not {0}")]
    BadBillingRate(f64),
    #[error("billing_currency must not be empty")]
    NoCurrency,
}

/// Pricing of every provider, by provider name, with a fallback for providers not listed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pricing {
    providers: BTreeMap<String, ProviderPricing>,
    fallback: ProviderPricing,
}

impl Pricing {
    /// Default list prices for every provider, no fees, billed in US dollars.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the pricing of provider `name`.
    pub fn insert(&mut self, name: impl Into<String>, pricing: ProviderPricing) {
        self.providers.insert(name.into(), pricing);
    }

    /// This table with provider `name` priced by `pricing`.
    pub fn with(mut self, name: impl Into<String>, pricing: ProviderPricing) -> Self {
        self.insert(name, pricing);
        self
    }

    /// Sets the pricing of providers that have none of their own (default: list prices, no
    /// fee, US dollars).
    pub fn set_fallback(&mut self, pricing: ProviderPricing) {
        self.fallback = pricing;
    }

    /// The pricing of provider `name` (the fallback when it has none of its own).
    pub fn provider(&self, name: &str) -> &ProviderPricing {
        self.providers.get(name).unwrap_or(&self.fallback)
    }
}

impl From<BTreeMap<String, ProviderPricing>> for Pricing {
    fn from(providers: BTreeMap<String, ProviderPricing>) -> Self {
        Self {
            providers,
            fallback: ProviderPricing::default(),
        }
    }
}

/// The cost of one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Token cost at list price, or the relay's own figure when it reported one (US $).
    pub list_usd: f64,
    /// The provider's per-call fee (US $).
    pub fee_usd: f64,
    /// `list_usd + fee_usd`.
    pub total_usd: f64,
    /// `total_usd` in the provider's billing currency.
    pub billed: f64,
    /// True when the token counts were estimates and the relay reported no cost.
    pub estimated: bool,
    /// False when the model has no price (and the relay reported no cost): `list_usd` is 0 and
    /// the UI says "no price for model X".
    pub priced: bool,
}

/// One completed response as it is priced: the model that answered, the tokens it used and
/// the cost the relay reported, if any (the fields of a `Done` event).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Response<'a> {
    /// The model that answered.
    pub model: &'a str,
    /// The tokens it used (cached input is a subset of input).
    pub tokens: &'a Tokens,
    /// The cost in US dollars the relay reported, when it reported one.
    pub reported_cost_usd: Option<f64>,
}

impl<'a> Response<'a> {
    /// The response a `Done` event reports, its model as the event names it (possibly empty);
    /// `None` for any other event.
    pub fn of(kind: &'a EventKind) -> Option<Self> {
        match kind {
            EventKind::Done {
                model,
                tokens,
                reported_cost_usd,
                ..
            } => Some(Self {
                model,
                tokens,
                reported_cost_usd: *reported_cost_usd,
            }),
            _ => None,
        }
    }

    /// The response of a `Done` event of a session of `session_model`: a `Done` that names no
    /// model was answered by the session's model. `None` for any other event.
    pub fn of_session(kind: &'a EventKind, session_model: &'a str) -> Option<Self> {
        Self::of(kind).map(|r| r.or_model(session_model))
    }

    /// This response with `model` as its model when it names none.
    pub fn or_model(self, model: &'a str) -> Self {
        if self.model.is_empty() {
            Self { model, ..self }
        } else {
            self
        }
    }
}

impl ProviderPricing {
    /// The cost of `response` at this provider: the one place a response is priced.
    ///
    /// A cost reported by the relay (finite, not negative) replaces the token computation; the
    /// per-call fee is always added; the total is converted to the billing currency.
    pub fn cost(&self, response: &Response<'_>) -> Cost {
        let tokens = response.tokens;
        let reported = response
            .reported_cost_usd
            .filter(|c| c.is_finite() && *c >= 0.0);
        let (list_usd, priced, estimated) = match reported {
            Some(usd) => (usd, true, false),
            None => match self.price(response.model) {
                Some(price) => (price.list_usd(tokens), true, tokens.estimated),
                None => (0.0, false, tokens.estimated),
            },
        };
        let fee_usd = self.fee_per_call_usd();
        let total_usd = list_usd + fee_usd;
        Cost {
            list_usd,
            fee_usd,
            total_usd,
            billed: total_usd * self.billing_rate,
            estimated,
            priced,
        }
    }
}

/// The cost of one response of `model` with `tokens` at a provider priced by `pricing`:
/// [`ProviderPricing::cost`] of those fields.
pub fn response_cost(
    pricing: &ProviderPricing,
    model: &str,
    tokens: &Tokens,
    reported_cost_usd: Option<f64>,
) -> Cost {
    pricing.cost(&Response {
        model,
        tokens,
        reported_cost_usd,
    })
}

/// Estimated tokens of `text` when the relay sends no usage: one token per four characters,
/// rounded up, so any non-empty text is at least one token.
pub fn estimate_tokens(text: &str) -> u64 {
    let chars = text.chars().count() as u64;
    chars.div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, output: u64) -> Tokens {
        Tokens {
            input,
            output,
            cached_input: 0,
            cache_write_input: 0,
            reasoning_output: 0,
            estimated: false,
        }
    }

    #[test]
    fn default_prices_match_the_protocol_table() {
        let p = ProviderPricing::default();
        assert_eq!(p.price("gpt-4.1"), Some(ModelPrice::new(2.0, 8.0)));
        assert_eq!(
            p.price("claude-sonnet-4.5"),
            Some(ModelPrice::new(3.0, 15.0))
        );
        assert_eq!(
            p.price("gemini-2.5-flash"),
            Some(ModelPrice::new(0.30, 2.50))
        );
        assert_eq!(p.price("deepseek-v3.2"), Some(ModelPrice::new(0.28, 0.42)));
        assert_eq!(p.price("gpt-4.1-mini"), None, "no prefix matching");
    }

    #[test]
    fn token_cost_at_list_price_plus_fee() {
        let p = ProviderPricing {
            per_1000_calls_usd: 1.75,
            ..ProviderPricing::default()
        };
        let c = response_cost(&p, "gpt-4.1", &tokens(100, 400), None);
        assert!((c.list_usd - 0.0034).abs() < 1e-15);
        assert!((c.fee_usd - 0.00175).abs() < 1e-15);
        assert!((c.total_usd - 0.00515).abs() < 1e-15);
        assert_eq!(c.billed, c.total_usd);
        assert!(c.priced);
        assert!(!c.estimated);
    }

    #[test]
    fn cached_input_defaults_to_a_quarter_of_input() {
        let p = ProviderPricing::default();
        let t = Tokens {
            input: 1_000_000,
            output: 0,
            cached_input: 400_000,
            cache_write_input: 0,
            reasoning_output: 0,
            estimated: false,
        };
        // 600k uncached at 2.00 + 400k cached at 0.50.
        let c = response_cost(&p, "gpt-4.1", &t, None);
        assert!((c.list_usd - (1.2 + 0.2)).abs() < 1e-12);

        let mut p = ProviderPricing::default();
        p.prices.insert(
            "gpt-4.1".into(),
            ModelPrice {
                input_per_mtok: 2.0,
                output_per_mtok: 8.0,
                cached_input_per_mtok: Some(0.0),
            },
        );
        let c = response_cost(&p, "gpt-4.1", &t, None);
        assert!((c.list_usd - 1.2).abs() < 1e-12);
    }

    #[test]
    fn reported_cost_replaces_tokens_and_fee_is_still_added() {
        let p = ProviderPricing {
            per_1000_calls_usd: 0.28,
            billing_currency: "CNY".into(),
            billing_rate: 7.3,
            ..ProviderPricing::default()
        };
        let mut t = tokens(100, 400);
        t.estimated = true;
        let c = response_cost(&p, "no-such-model", &t, Some(0.01));
        assert_eq!(c.list_usd, 0.01);
        assert!((c.total_usd - 0.01028).abs() < 1e-15);
        assert!((c.billed - 0.01028 * 7.3).abs() < 1e-12);
        assert!(c.priced);
        assert!(!c.estimated, "the relay's figure is not an estimate");

        // A nonsense report is ignored.
        let c = response_cost(&p, "gpt-4.1", &t, Some(f64::NAN));
        assert!((c.list_usd - 0.0034).abs() < 1e-15);
        assert!(c.estimated);
    }

    #[test]
    fn unknown_model_is_free_and_flagged() {
        let c = response_cost(
            &ProviderPricing::default(),
            "mystery",
            &tokens(10, 10),
            None,
        );
        assert_eq!(c.list_usd, 0.0);
        assert!(!c.priced);
    }

    #[test]
    fn overrides_win_over_defaults() {
        let mut p = ProviderPricing::default();
        p.prices.insert("gpt-4.1".into(), ModelPrice::new(1.0, 1.0));
        let c = response_cost(&p, "gpt-4.1", &tokens(1_000_000, 1_000_000), None);
        assert!((c.list_usd - 2.0).abs() < 1e-12);
    }

    #[test]
    fn pricing_falls_back_for_unknown_providers() {
        let legacy = ProviderPricing {
            per_1000_calls_usd: 1.75,
            ..ProviderPricing::default()
        };
        let pricing = Pricing::new().with("legacy", legacy.clone());
        assert_eq!(pricing.provider("legacy"), &legacy);
        assert_eq!(pricing.provider("other"), &ProviderPricing::default());
        let mut pricing = pricing;
        pricing.set_fallback(legacy.clone());
        assert_eq!(pricing.provider("other"), &legacy);
    }

    #[test]
    fn provider_pricing_parses_from_toml_with_defaults() {
        let p: ProviderPricing = toml::from_str(
            r#"
            per_1000_calls_usd = 1.75
            billing_currency = "CNY"
            [prices."gpt-4.1"]
            input_per_mtok = 1.5
            output_per_mtok = 6.0
            "#,
        )
        .expect("parses");
        assert_eq!(p.billing_rate, 1.0);
        assert_eq!(p.billing_currency, "CNY");
        assert_eq!(p.price("gpt-4.1"), Some(ModelPrice::new(1.5, 6.0)));
        assert!(p.validate().is_ok());

        let empty: ProviderPricing = toml::from_str("").expect("parses");
        assert_eq!(empty, ProviderPricing::default());

        assert!(toml::from_str::<ProviderPricing>("per_call = 1").is_err());
        assert!(toml::from_str::<ProviderPricing>("[prices.x]\ninput_per_mtok = 1\n").is_err());
    }

    #[test]
    fn validate_rejects_nonsense() {
        let p = ProviderPricing {
            billing_rate: 0.0,
            ..ProviderPricing::default()
        };
        assert_eq!(p.validate(), Err(PricingError::BadBillingRate(0.0)));
        let mut p = ProviderPricing::default();
        p.prices.insert("m".into(), ModelPrice::new(-1.0, 1.0));
        assert!(matches!(p.validate(), Err(PricingError::BadPrice { .. })));
    }

    #[test]
    fn token_estimates_round_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        // Characters, not bytes.
        assert_eq!(estimate_tokens("日本語の"), 1);
    }
}
