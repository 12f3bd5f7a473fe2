//! Cost: the price table (list prices, per-provider overrides, per-call fees, billing currency)
//! and token estimates for responses that carry no usage.
//!
//! List prices are data: the bundled `prices.toml` (parsed once, in `cost/table.rs`), under the
//! config file's top-level `[prices]`, under each provider's `billing.prices`. A model none of
//! them names is unpriced, never guessed.
//!
//! Everything here is a pure function of its arguments (the bundled table is a constant). A
//! completed response is priced in one place, [`ProviderPricing::cost`] of a [`Response`] (the
//! metrics fold, the dashboard's cost table, the chat pane, the Prometheus exporter and
//! `relaytop export` all call it), so live runs, replays, exports and tests price the same
//! response the same way.

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
            EventKind::Done(done) => Some(Self {
                model: &done.model,
                tokens: &done.tokens,
                reported_cost_usd: done.reported_cost_usd,
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

    fn rates(price: Option<ModelPrice>) -> Option<(f64, f64)> {
        price.map(|p| (p.input_per_mtok, p.output_per_mtok))
    }

    #[test]
    fn default_prices_match_the_protocol_table() {
        let p = ProviderPricing::default();
        assert_eq!(rates(p.price("gpt-4.1")), Some((2.0, 8.0)));
        assert_eq!(rates(p.price("claude-sonnet-4.5")), Some((3.0, 15.0)));
        assert_eq!(rates(p.price("gemini-2.5-flash")), Some((0.30, 2.50)));
        assert_eq!(rates(p.price("deepseek-v3.2")), Some((0.28, 0.42)));
        assert_eq!(p.price("gpt-4.1-turbo"), None, "no prefix matching");
        assert_eq!(p.price("gpt-4"), None, "no prefix matching");
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
        let mut p = ProviderPricing::default();
        p.prices.insert("m".into(), ModelPrice::new(2.0, 8.0));
        let t = Tokens {
            input: 1_000_000,
            output: 0,
            cached_input: 400_000,
            cache_write_input: 0,
            reasoning_output: 0,
            estimated: false,
        };
        // 600k uncached at 2.00 + 400k cached at 0.50.
        let c = response_cost(&p, "m", &t, None);
        assert!((c.list_usd - (1.2 + 0.2)).abs() < 1e-12);

        p.prices.insert(
            "m".into(),
            ModelPrice {
                cached_input_per_mtok: Some(0.0),
                ..ModelPrice::new(2.0, 8.0)
            },
        );
        let c = response_cost(&p, "m", &t, None);
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

    fn usage(input: u64, cached: u64, written: u64, output: u64) -> Tokens {
        Tokens {
            input,
            output,
            cached_input: cached,
            cache_write_input: written,
            reasoning_output: 0,
            estimated: false,
        }
    }

    /// The bundled list price of `model` for `tokens`, in US dollars.
    fn bundled_usd(model: &str, tokens: &Tokens) -> f64 {
        let c = response_cost(&ProviderPricing::default(), model, tokens, None);
        assert!(c.priced, "{model} has a bundled price");
        c.list_usd
    }

    fn assert_usd(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
    }

    #[test]
    fn the_bundled_table_parses_and_every_entry_is_sourced_dated_and_sane() {
        let entries = parse_price_table(BUNDLED_PRICES_TOML).expect("prices.toml parses");
        for (model, e) in &entries {
            let source = e.source.as_deref().unwrap_or_default();
            assert!(source.starts_with("https://"), "{model}: source {source:?}");
            assert!(
                e.as_of.as_deref().is_some_and(|d| d.starts_with("20")),
                "{model}"
            );
            let p = e.price();
            assert!(p.input_per_mtok > 0.0, "{model}: input");
            assert!(p.output_per_mtok >= p.input_per_mtok, "{model}: output");
            let base = p.rates(0);
            assert!(
                base.cached_input < base.input,
                "{model}: cache reads cost less"
            );
            assert!(
                base.cache_write >= base.input,
                "{model}: cache writes cost no less"
            );
            if let Some(tier) = p.long_context {
                assert!(tier.above_input_tokens >= 100_000, "{model}: threshold");
                let long = p.rates(tier.above_input_tokens + 1);
                assert!(
                    long.input > base.input && long.output > base.output,
                    "{model}"
                );
                assert!(long.cached_input > base.cached_input, "{model}");
                assert!(long.cache_write > base.cache_write || base.cache_write == base.input);
            }
            assert_eq!(
                default_price(model),
                Some(p),
                "{model} is found by its own name"
            );
        }
        for model in [
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "gpt-4o",
            "gpt-4o-mini",
            "o3",
            "o4-mini",
            "gpt-realtime",
            "gpt-4o-realtime-preview",
            "claude-opus-4-1",
            "claude-opus-4",
            "claude-sonnet-4-5",
            "claude-sonnet-4",
            "claude-3-7-sonnet",
            "claude-haiku-4-5",
            "claude-3-5-haiku",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-2.0-flash",
            "deepseek-chat",
            "deepseek-reasoner",
            "deepseek-v3.2",
        ] {
            assert!(entries.contains_key(model), "{model} is in prices.toml");
        }
        assert_eq!(entries.len(), 26, "a new entry gets a line above");
    }

    #[test]
    fn a_malformed_table_is_refused_with_the_reason() {
        let entry = |extra: &str| {
            format!("[prices.m]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n{extra}")
        };
        let ok = entry("source = \"https://x\"\nas_of = \"2026-12-06\"\n");
        assert!(parse_price_table(&ok).is_ok());
        let no_source = parse_price_table(&entry("as_of = \"2026-12-06\"\n")).unwrap_err();
        assert!(no_source.contains("no source"), "{no_source}");
        let bad_date = parse_price_table(&entry("source = \"https://x\"\nas_of = \"Dec 2026\"\n"))
            .unwrap_err();
        assert!(bad_date.contains("as_of"), "{bad_date}");
        let negative =
            parse_price_table(&ok.replace("input_per_mtok = 1.0", "input_per_mtok = -1.0"))
                .unwrap_err();
        assert!(
            negative.contains("input_per_mtok of model \"m\""),
            "{negative}"
        );
        let twice = format!("{ok}{}", ok.replace("[prices.m]", "[prices.\"M\"]"));
        assert!(
            parse_price_table(&twice)
                .unwrap_err()
                .contains("same model")
        );
        assert!(parse_price_table("[prices.m]\ninput = 1.0\n").is_err());
    }

    #[test]
    fn cache_reads_and_writes_are_priced_apart_to_the_cent() {
        // claude-sonnet-4-5: 10k uncached at 3.00, 60k read at 0.30, 30k written at 3.75,
        // 2k output at 15.00.
        let t = usage(100_000, 60_000, 30_000, 2_000);
        assert_usd(
            bundled_usd("claude-sonnet-4-5", &t),
            0.03 + 0.018 + 0.1125 + 0.03,
        );
        // deepseek-chat: 100k missed at 0.28, 900k hit at 0.028, 100k output at 0.42.
        let t = usage(1_000_000, 900_000, 0, 100_000);
        assert_usd(bundled_usd("deepseek-chat", &t), 0.028 + 0.0252 + 0.042);
        // gpt-4.1 charges no write surcharge: writes are input at 2.00.
        let t = usage(100_000, 0, 100_000, 0);
        assert_usd(bundled_usd("gpt-4.1", &t), 0.20);
        // Counts that do not add up are clamped: reads first, then writes, to the input.
        let t = usage(100_000, 80_000, 50_000, 0);
        assert_usd(bundled_usd("claude-sonnet-4-5", &t), 0.024 + 0.075);
    }

    #[test]
    fn reasoning_tokens_are_output() {
        let plain = usage(1_000, 0, 0, 1_000);
        let thinking = Tokens {
            reasoning_output: 800,
            ..plain
        };
        assert_usd(bundled_usd("o4-mini", &plain), 0.0011 + 0.0044);
        assert_eq!(
            bundled_usd("o4-mini", &thinking),
            bundled_usd("o4-mini", &plain)
        );
    }

    #[test]
    fn the_long_context_tier_prices_the_whole_request_above_its_threshold() {
        // At the threshold: the base rates.
        assert_usd(
            bundled_usd("claude-sonnet-4-5", &usage(200_000, 0, 0, 0)),
            0.60,
        );
        // One token over: every token at the long-context rates.
        assert_usd(
            bundled_usd("claude-sonnet-4-5", &usage(200_001, 0, 0, 0)),
            1.200006,
        );
        // 150k uncached at 6.00, 100k read at 0.60, 50k written at 7.50, 10k output at 22.50.
        let t = usage(300_000, 100_000, 50_000, 10_000);
        assert_usd(
            bundled_usd("claude-sonnet-4-5", &t),
            0.9 + 0.06 + 0.375 + 0.225,
        );
        assert_usd(
            bundled_usd("claude-sonnet-4", &t),
            0.9 + 0.06 + 0.375 + 0.225,
        );
        // Gemini 2.5 Pro: 80k at 1.25, 20k read at 0.125, 1k output at 10 ...
        let t = usage(100_000, 20_000, 0, 1_000);
        assert_usd(bundled_usd("gemini-2.5-pro", &t), 0.1 + 0.0025 + 0.01);
        // ... and above 200k: 200k at 2.50, 50k read at 0.25, 8k output at 15.
        let t = usage(250_000, 50_000, 0, 8_000);
        assert_usd(bundled_usd("gemini-2.5-pro", &t), 0.5 + 0.0125 + 0.12);
        // Models without a tier keep their rates however long the request.
        assert_usd(bundled_usd("gpt-4.1", &usage(1_000_000, 0, 0, 0)), 2.0);
        // A tier without cache rates: reads a quarter of its input, writes its input.
        let tiered = ModelPrice {
            long_context: Some(LongContextPrice {
                above_input_tokens: 10,
                input_per_mtok: 4.0,
                output_per_mtok: 8.0,
                cached_input_per_mtok: None,
                cache_write_per_mtok: None,
            }),
            ..ModelPrice::new(1.0, 2.0)
        };
        let r = tiered.rates(11);
        assert_eq!(
            (r.input, r.cached_input, r.cache_write, r.output),
            (4.0, 1.0, 4.0, 8.0)
        );
        assert_eq!(tiered.rates(10).input, 1.0);
    }

    #[test]
    fn model_names_match_as_relays_send_them() {
        let same = |sent: &str, listed: &str| {
            assert_eq!(
                default_price(sent),
                default_price(listed),
                "{sent} is {listed}"
            );
            assert!(default_price(sent).is_some(), "{sent} is priced");
        };
        same("models/gemini-2.5-flash", "gemini-2.5-flash");
        same("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5");
        same("claude-sonnet-4-5-20250929", "claude-sonnet-4-5");
        same("claude-sonnet-4.5", "claude-sonnet-4-5");
        same("gpt-4o-mini-2024-07-18", "gpt-4o-mini");
        same("openai/gpt-4.1", "gpt-4.1");
        same("google/gemini-2.5-pro", "gemini-2.5-pro");
        same("deepseek/deepseek-chat", "deepseek-chat");
        same("claude-3-5-haiku-latest", "claude-3-5-haiku");
        same("claude-3-7-sonnet-20250219", "claude-3-7-sonnet");
        same("claude-opus-4-1-20250805", "claude-opus-4-1");
        same("claude-sonnet-4@20250514", "claude-sonnet-4");
        same("GPT-4o", "gpt-4o");
        same("gemini-2.5-flash-lite", "gemini-2.5-flash-lite");
        assert_ne!(
            default_price("gemini-2.5-flash-lite"),
            default_price("gemini-2.5-flash")
        );

        assert_eq!(
            normalize_model("models/gemini-2.5-flash"),
            "gemini-2-5-flash"
        );
        assert_eq!(normalize_model("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(normalize_model("-latest"), "-latest");
        assert_eq!(normalize_model("o3-20250416"), "o3");
        assert_eq!(
            normalize_model("model-12345678"),
            "model-12345678",
            "not a date"
        );

        // Never a guess: near names stay unpriced.
        for unknown in [
            "o3-mini",
            "gpt-5-pro",
            "gpt-4o-mini-2024-07",
            "claude-sonnet-4-6",
            "gemini-2.5-flash-image",
            "mistral/gpt-4.1",
            "models/",
            "",
        ] {
            assert_eq!(default_price(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn an_unknown_model_is_unpriced_never_guessed() {
        let c = response_cost(
            &ProviderPricing::default(),
            "claude-sonnet-4-5-turbo",
            &tokens(1_000, 1_000),
            None,
        );
        assert!(!c.priced);
        assert_eq!(c.list_usd, 0.0);
    }

    #[test]
    fn overrides_match_names_the_way_the_table_does() {
        let mut p = ProviderPricing::default();
        p.prices
            .insert("claude-sonnet-4.5".into(), ModelPrice::new(1.0, 1.0));
        for sent in ["claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"] {
            assert_eq!(p.price(sent), Some(ModelPrice::new(1.0, 1.0)), "{sent}");
        }
    }

    #[test]
    fn new_fields_parse_and_round_trip_and_old_shapes_still_parse() {
        let p: ProviderPricing = toml::from_str(
            r#"
            [prices."m"]
            input_per_mtok = 3.0
            output_per_mtok = 15.0
            cached_input_per_mtok = 0.3
            cache_write_per_mtok = 3.75
            long_context = { above_input_tokens = 200000, input_per_mtok = 6.0, output_per_mtok = 22.5 }
            [prices."old"]
            input_per_mtok = 1.0
            output_per_mtok = 2.0
            cached_input_per_mtok = 0.5
            "#,
        )
        .expect("parses");
        let m = p.prices["m"];
        assert_eq!(m.cache_write_per_mtok, Some(3.75));
        assert_eq!(m.long_context.map(|t| t.above_input_tokens), Some(200_000));
        assert_eq!(p.prices["old"].cache_write_per_mtok, None);
        assert!(p.validate().is_ok());
        let json = serde_json::to_string(&p).expect("serializes");
        assert!(!json.contains("null"), "absent rates are left out: {json}");
        let back: ProviderPricing = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, p);

        let mut bad = p.clone();
        if let Some(tier) = bad
            .prices
            .get_mut("m")
            .and_then(|m| m.long_context.as_mut())
        {
            tier.output_per_mtok = f64::NAN;
        }
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("long_context.output_per_mtok of model \"m\""),
            "{err}"
        );
    }

    fn load(text: &str) -> crate::config::Config {
        crate::config::file::parse(text, "test.toml", &|var| {
            Err(crate::config::secret::SecretError::NotSet { var: var.into() })
        })
        .expect("the config loads")
    }

    #[test]
    fn config_prices_provider_over_top_level_over_bundled() {
        let config = load(
            r#"
            [[providers]]
            name = "own"
            simulate = "default"
            model = "gpt-4.1"
            [providers.billing.prices."gpt-4.1"]
            input_per_mtok = 1.0
            output_per_mtok = 1.0
            [providers.billing.prices."claude-sonnet-4-5"]
            input_per_mtok = 2.0
            output_per_mtok = 2.0

            [[providers]]
            name = "shared"
            simulate = "default"
            model = "gpt-4.1"

            [prices."gpt-4.1"]
            input_per_mtok = 5.0
            output_per_mtok = 5.0
            source = "my contract"
            [prices."claude-sonnet-4.5"]
            input_per_mtok = 6.0
            output_per_mtok = 6.0
            [prices."my-finetune"]
            input_per_mtok = 7.0
            output_per_mtok = 7.0
            long_context = { above_input_tokens = 1000, input_per_mtok = 8.0, output_per_mtok = 8.0 }
            "#,
        );
        let pricing = config.pricing();
        let own = &pricing["own"];
        let shared = &pricing["shared"];
        let input = |p: &ProviderPricing, model: &str| p.price(model).map(|m| m.input_per_mtok);
        // Provider beats top-level, under any spelling of the name.
        assert_eq!(input(own, "gpt-4.1"), Some(1.0));
        assert_eq!(input(own, "claude-sonnet-4.5"), Some(2.0));
        assert_eq!(
            input(own, "anthropic/claude-sonnet-4-5-20250929"),
            Some(2.0)
        );
        // Top-level beats bundled, for every provider without its own.
        assert_eq!(input(shared, "gpt-4.1"), Some(5.0));
        assert_eq!(input(shared, "openai/gpt-4.1"), Some(5.0));
        assert_eq!(input(shared, "claude-sonnet-4-5"), Some(6.0));
        // Top-level adds models, long-context tiers included.
        assert_eq!(input(own, "my-finetune"), Some(7.0));
        assert_eq!(
            shared.price("my-finetune").map(|m| m.rates(1001).input),
            Some(8.0)
        );
        // Bundled for the rest.
        assert_eq!(input(shared, "gemini-2.5-flash"), Some(0.30));
        assert_eq!(shared.price("mystery"), None);
    }

    #[test]
    fn config_prices_are_checked_and_name_the_model_and_field() {
        let text = r#"
            [[providers]]
            name = "p"
            simulate = "default"
            model = "gpt-4.1"
            [prices."gpt-4.1"]
            input_per_mtok = 1.0
            output_per_mtok = nan
            "#;
        let err = crate::config::file::parse(text, "test.toml", &|var| {
            Err(crate::config::secret::SecretError::NotSet { var: var.into() })
        })
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "test.toml: [prices]: price output_per_mtok of model \"gpt-4.1\" must be a number >= 0, not NaN"
        );
        let unknown = crate::config::file::parse(
            &text.replace("output_per_mtok = nan", "output_per_mtok = 1.0\nouput = 2"),
            "test.toml",
            &|var| Err(crate::config::secret::SecretError::NotSet { var: var.into() }),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("unknown field `ouput`"), "{unknown}");
    }
}
