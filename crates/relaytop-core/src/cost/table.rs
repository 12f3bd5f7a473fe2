//! The price table as data: the bundled `prices.toml` (compiled in, parsed once), the entry
//! shape it shares with the config file's `[prices."model"]` tables, and model-name matching as
//! relays send names (`models/…`, `openai/…`, dated snapshots, `4.5` for `4-5`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::{LongContextPrice, ModelPrice, PricingError};

/// The bundled table's text (`crates/relaytop-core/prices.toml`).
pub const BUNDLED_PRICES_TOML: &str = include_str!("../../prices.toml");

/// One model's entry in a price table: its rates in US $ per million tokens and, in the
/// bundled table, where they come from.
///
/// The bundled `prices.toml` and the config file's top-level `[prices."model"]` tables use
/// this shape:
///
/// ```toml
/// [prices."claude-sonnet-4-5"]
/// input_per_mtok = 3.0
/// output_per_mtok = 15.0
/// cached_input_per_mtok = 0.30
/// cache_write_per_mtok = 3.75
/// long_context = { above_input_tokens = 200000, input_per_mtok = 6.0, output_per_mtok = 22.5 }
/// source = "https://platform.claude.com/docs/en/about-claude/pricing"
/// as_of = "2026-12-06"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// `input_per_mtok`: uncached prompt tokens.
    pub input_per_mtok: f64,
    /// `output_per_mtok`: completion tokens (reasoning tokens included).
    pub output_per_mtok: f64,
    /// `cached_input_per_mtok`: prompt tokens read from a cache (absent: a quarter of input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
    /// `cache_write_per_mtok`: prompt tokens written to a cache (absent: the input rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok: Option<f64>,
    /// `long_context`: the rates of requests whose input exceeds a threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContextPrice>,
    /// `source`: the pricing page the figures come from (required in the bundled table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `as_of`: the date the figures were checked, `YYYY-MM-DD` (required in the bundled table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

impl PriceEntry {
    /// The price this entry gives.
    pub fn price(&self) -> ModelPrice {
        ModelPrice {
            input_per_mtok: self.input_per_mtok,
            output_per_mtok: self.output_per_mtok,
            cached_input_per_mtok: self.cached_input_per_mtok,
            cache_write_per_mtok: self.cache_write_per_mtok,
            long_context: self.long_context,
        }
    }
}

/// A price file: `[prices."model"]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    #[serde(default)]
    prices: BTreeMap<String, PriceEntry>,
}

/// Checks every price of `entries` (a rate that is negative or not a number names the model
/// and the field) and returns them as prices by model name.
pub fn checked_prices(
    entries: &BTreeMap<String, PriceEntry>,
) -> Result<BTreeMap<String, ModelPrice>, PricingError> {
    entries
        .iter()
        .map(|(model, entry)| {
            let price = entry.price();
            price.check(model)?;
            Ok((model.clone(), price))
        })
        .collect()
}

/// Parses and checks a bundled-style table: every entry has sane rates, a `source` and an
/// `as_of` date, and no two names mean the same model once normalized.
pub fn parse_price_table(text: &str) -> Result<BTreeMap<String, PriceEntry>, String> {
    let file: PriceFile = toml::from_str(text).map_err(|e| e.to_string())?;
    checked_prices(&file.prices).map_err(|e| e.to_string())?;
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (model, entry) in &file.prices {
        if entry.source.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(format!("model {model:?} has no source"));
        }
        if !entry.as_of.as_deref().is_some_and(is_date) {
            return Err(format!("model {model:?} needs as_of = \"YYYY-MM-DD\""));
        }
        if let Some(other) = seen.insert(normalize_model(model), model) {
            return Err(format!("models {other:?} and {model:?} are the same model"));
        }
    }
    Ok(file.prices)
}

/// True for `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// The bundled table, by exact name and by normalized name.
#[derive(Debug, Default)]
struct Bundled {
    exact: BTreeMap<String, ModelPrice>,
    normalized: BTreeMap<String, ModelPrice>,
}

/// Parsed on first use. A bundled file that does not parse gives an empty table (every model
/// unpriced) rather than a failed run; the unit tests make sure it parses.
static BUNDLED: LazyLock<Bundled> = LazyLock::new(|| {
    let entries = parse_price_table(BUNDLED_PRICES_TOML).unwrap_or_default();
    let exact: BTreeMap<String, ModelPrice> = entries
        .iter()
        .map(|(model, entry)| (model.clone(), entry.price()))
        .collect();
    let normalized = exact
        .iter()
        .map(|(model, price)| (normalize_model(model), *price))
        .collect();
    Bundled { exact, normalized }
});

/// The bundled list price of `model`: exact name first, then the normalized name.
pub(super) fn bundled_price(model: &str) -> Option<ModelPrice> {
    let table = &*BUNDLED;
    table
        .exact
        .get(model)
        .or_else(|| table.normalized.get(&normalize_model(model)))
        .copied()
}

/// The price of `model` in `prices`: exact name first, then a name that normalizes alike.
pub(super) fn find_price(prices: &BTreeMap<String, ModelPrice>, model: &str) -> Option<ModelPrice> {
    if let Some(price) = prices.get(model) {
        return Some(*price);
    }
    if prices.is_empty() {
        return None;
    }
    let wanted = normalize_model(model);
    prices
        .iter()
        .find(|(name, _)| normalize_model(name) == wanted)
        .map(|(_, price)| *price)
}

/// Prefixes relays put before a model name: Gemini's resource path and OpenRouter's vendors.
const PREFIXES: [&str; 5] = ["models/", "openai/", "anthropic/", "google/", "deepseek/"];

/// A model name as relays vary it, reduced to one spelling: lower case, without a `models/`
/// or vendor (`openai/`, `anthropic/`, `google/`, `deepseek/`) prefix, without a date or
/// `-latest` suffix (`-20250929`, `@20250929`, `-2024-07-18`), dots as dashes
/// (`claude-sonnet-4.5` is `claude-sonnet-4-5`).
pub fn normalize_model(name: &str) -> String {
    let mut s = name.trim().to_ascii_lowercase();
    while let Some(rest) = PREFIXES.iter().find_map(|p| s.strip_prefix(p)) {
        s = rest.to_owned();
    }
    let cut = strip_date_suffix(&s).len();
    s.truncate(cut);
    s.replace('.', "-")
}

/// `name` without a trailing `-latest`, `-YYYY-MM-DD`, `-YYYYMMDD` or `@YYYYMMDD` (a year
/// 20xx), when something is left before it.
fn strip_date_suffix(name: &str) -> &str {
    if let Some(rest) = name.strip_suffix("-latest") {
        return if rest.is_empty() { name } else { rest };
    }
    let b = name.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    let year = |at: usize| b[at] == b'2' && b[at + 1] == b'0';
    // -YYYY-MM-DD
    if b.len() > 11 {
        let at = b.len() - 11;
        if b[at] == b'-'
            && year(at + 1)
            && digits(at + 1..at + 5)
            && b[at + 5] == b'-'
            && digits(at + 6..at + 8)
            && b[at + 8] == b'-'
            && digits(at + 9..at + 11)
        {
            return &name[..at];
        }
    }
    // -YYYYMMDD or @YYYYMMDD
    if b.len() > 9 {
        let at = b.len() - 9;
        if (b[at] == b'-' || b[at] == b'@') && year(at + 1) && digits(at + 1..at + 9) {
            return &name[..at];
        }
    }
    name
}
