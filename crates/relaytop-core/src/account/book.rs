//! The accounts fold: each provider's readings (`EventKind::Account`) as a balance series,
//! its spend rate over the window, the projected run-out time, the low-balance and run-out
//! warnings (each fires once and clears after a top-up), the bill check (the balance's
//! decrease against relaytop's own traffic at list price, and against the costs the relay
//! reported), and the relay's error classes (`EventKind::RelayError`). A pure fold over
//! events with the time they carry: live, replay and tests compute the same.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::{AccountReading, ErrorClass, RelayError};
use crate::cost::{Pricing, Response};
use crate::session::{EventKind, SessionEvent, SessionInfo};

/// Relaytop's own traffic, as its computed and reported costs add up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Traffic {
    /// List price of every completed response's tokens (US $).
    list_usd: f64,
    /// Costs the relay reported (`usage.cost`, cost headers), US $.
    reported_usd: f64,
    /// List price of the responses that had a reported cost.
    reported_list_usd: f64,
    responses: u64,
}

impl Traffic {
    fn since(&self, base: &Traffic) -> Traffic {
        Traffic {
            list_usd: self.list_usd - base.list_usd,
            reported_usd: self.reported_usd - base.reported_usd,
            reported_list_usd: self.reported_list_usd - base.reported_list_usd,
            responses: self.responses - base.responses,
        }
    }
}

/// One balance on the series.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    at_us: u64,
    /// In the station's currency.
    balance: f64,
    traffic: Traffic,
}

/// A warning that fired, or cleared.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "alert", rename_all = "snake_case")]
pub enum AccountAlert {
    /// The balance fell below `low_balance`.
    LowBalance { balance: f64, threshold: f64 },
    /// At the spend rate, the balance runs out within the horizon.
    RunningOut { in_s: u64 },
    /// A top-up (or a slower spend) ended the warnings.
    Cleared { what: &'static str },
}

impl AccountAlert {
    /// The sentence a person reads, for `provider` whose balance is in `currency`.
    pub fn describe(&self, provider: &str, currency: &str) -> String {
        match self {
            AccountAlert::LowBalance { balance, threshold } => format!(
                "account {provider}: low balance, {} left (warning below {})",
                money(*balance, currency),
                money(*threshold, currency)
            ),
            AccountAlert::RunningOut { in_s } => format!(
                "account {provider}: runs out in {} at the current spend",
                crate::numbers::duration_short(in_s.saturating_mul(1_000_000))
            ),
            AccountAlert::Cleared { what } => {
                format!("account {provider}: warnings cleared ({what})")
            }
        }
    }
}

/// What the bill check found.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum BillVerdict {
    /// Too little traffic or no decrease yet.
    Waiting,
    /// The balance fell `ratio` × the list price of what relaytop sent.
    Charged { ratio: f64 },
    /// The balance fell more than relaytop's traffic explains: other traffic shares the key.
    OtherTraffic { ratio: f64 },
}

/// The relay's bill set against relaytop's own traffic since the first reading (or the last
/// top-up).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BillCheck {
    pub interval_s: f64,
    /// The balance's decrease, in list-price dollars.
    pub decrease_usd: f64,
    /// Relaytop's responses over the interval, at list price.
    pub relaytop_list_usd: f64,
    pub responses: u64,
    /// Costs the relay reported for them, against their list price, when it reported any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_ratio: Option<f64>,
    #[serde(flatten)]
    pub verdict: BillVerdict,
}

/// Relaytop's traffic this small (list dollars) says nothing yet.
const MIN_TRAFFIC_USD: f64 = 1e-6;
/// A decrease more than this many times relaytop's list price is not one station's markup.
const OTHER_TRAFFIC_RATIO: f64 = 4.0;
/// A decrease this much above the costs the relay itself reported is someone else's.
const REPORTED_SLACK: f64 = 1.25;
/// The run-out warning clears when the projection moves this far past its horizon.
const RUN_OUT_CLEAR: f64 = 1.25;

impl BillCheck {
    /// The sentence a person reads.
    pub fn describe(&self) -> String {
        match self.verdict {
            BillVerdict::Waiting => "bill check: waiting for traffic and a decrease".to_owned(),
            BillVerdict::Charged { ratio } => {
                format!("the relay charged {ratio:.2}× list price for what relaytop sent")
            }
            BillVerdict::OtherTraffic { ratio } => format!(
                "the balance fell {ratio:.1}× what relaytop's traffic costs at list price: other traffic shares this key"
            ),
        }
    }

    /// The bill between two points.
    fn between(base: &Point, now: &Point, usd_per_unit: f64) -> BillCheck {
        let traffic = now.traffic.since(&base.traffic);
        let decrease_usd = (base.balance - now.balance) * usd_per_unit;
        let reported_ratio = (traffic.reported_list_usd > MIN_TRAFFIC_USD)
            .then(|| traffic.reported_usd / traffic.reported_list_usd);
        let verdict = if decrease_usd <= 0.0 {
            BillVerdict::Waiting
        } else if traffic.list_usd <= MIN_TRAFFIC_USD {
            // Money went and relaytop sent nothing: it was not relaytop.
            if traffic.responses == 0 && now.at_us > base.at_us {
                BillVerdict::OtherTraffic {
                    ratio: f64::INFINITY,
                }
            } else {
                BillVerdict::Waiting
            }
        } else {
            let ratio = decrease_usd / traffic.list_usd;
            let beyond_reported = traffic.reported_usd > MIN_TRAFFIC_USD
                && traffic.reported_list_usd >= traffic.list_usd * 0.99
                && decrease_usd > traffic.reported_usd * REPORTED_SLACK;
            if ratio > OTHER_TRAFFIC_RATIO || beyond_reported {
                BillVerdict::OtherTraffic { ratio }
            } else {
                BillVerdict::Charged { ratio }
            }
        };
        BillCheck {
            interval_s: (now.at_us - base.at_us) as f64 / 1e6,
            decrease_usd,
            relaytop_list_usd: traffic.list_usd,
            responses: traffic.responses,
            reported_ratio,
            verdict,
        }
    }
}

/// One provider's account.
#[derive(Clone, Debug, Default)]
pub struct AccountBook {
    pub provider: String,
    /// The last reading (a failed one included).
    pub latest: Option<AccountReading>,
    /// When it came, in microseconds since the run started.
    pub latest_at_us: u64,
    /// Readings with a balance since the last top-up, oldest first (the window's and the
    /// bill's base).
    points: VecDeque<Point>,
    /// The first point since the last top-up: the bill check's base.
    base: Option<Point>,
    traffic: Traffic,
    low_active: bool,
    run_out_active: bool,
    /// Warnings fired so far (each counted once per crossing).
    pub fired: u32,
    pub top_ups: u32,
    /// Failed requests by class.
    pub errors: BTreeMap<ErrorClass, u64>,
    /// The last failed request as the relay explained it.
    pub last_error: Option<RelayError>,
}

impl AccountBook {
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            ..Self::default()
        }
    }

    /// A completed response of relaytop's: its list price and the cost the relay reported.
    pub fn on_response(&mut self, list_usd: f64, reported_usd: Option<f64>) {
        self.traffic.list_usd += list_usd;
        self.traffic.responses += 1;
        if let Some(reported) = reported_usd.filter(|c| c.is_finite() && *c >= 0.0) {
            self.traffic.reported_usd += reported;
            self.traffic.reported_list_usd += list_usd;
        }
    }

    /// A reading at `at_us`: the warnings it fires or clears.
    pub fn on_reading(&mut self, at_us: u64, reading: AccountReading) -> Vec<AccountAlert> {
        let mut alerts = Vec::new();
        let balance = reading.balance.filter(|_| reading.error.is_none());
        let window_us = reading
            .window_s
            .unwrap_or(900)
            .max(1)
            .saturating_mul(1_000_000);
        self.latest_at_us = at_us;
        self.latest = Some(reading);
        let Some(balance) = balance else {
            return alerts;
        };
        let point = Point {
            at_us,
            balance,
            traffic: self.traffic,
        };
        let topped_up = self
            .points
            .back()
            .is_some_and(|last| balance > last.balance + 1e-9_f64.max(last.balance.abs() * 1e-6));
        if topped_up {
            self.top_ups += 1;
            self.points.clear();
            self.base = None;
        }
        self.base.get_or_insert(point);
        self.points.push_back(point);
        // Keep the window, and at least two points to make a rate of.
        while self.points.len() > 2
            && self
                .points
                .get(1)
                .is_some_and(|p| at_us.saturating_sub(p.at_us) >= window_us)
        {
            self.points.pop_front();
        }
        self.warnings(&mut alerts, topped_up);
        alerts
    }

    fn warnings(&mut self, alerts: &mut Vec<AccountAlert>, topped_up: bool) {
        let Some(reading) = &self.latest else {
            return;
        };
        let Some(balance) = reading.balance else {
            return;
        };
        let was_active = self.low_active || self.run_out_active;
        if let Some(threshold) = reading.low_balance {
            let low = balance < threshold;
            if low && !self.low_active {
                self.fired += 1;
                alerts.push(AccountAlert::LowBalance { balance, threshold });
            }
            self.low_active = low;
        }
        match (self.run_out_s(), reading.run_out_warning_s) {
            (Some(in_s), Some(horizon)) if (in_s as f64) < horizon as f64 => {
                if !self.run_out_active {
                    self.fired += 1;
                    alerts.push(AccountAlert::RunningOut { in_s });
                }
                self.run_out_active = true;
            }
            (Some(in_s), Some(horizon)) if (in_s as f64) < horizon as f64 * RUN_OUT_CLEAR => {
                // Between the horizon and its margin: a warning in force stays.
                self.run_out_active &= !topped_up;
            }
            _ => self.run_out_active = false,
        }
        if was_active && !self.low_active && !self.run_out_active {
            alerts.push(AccountAlert::Cleared {
                what: if topped_up { "topped up" } else { "recovered" },
            });
        }
    }

    /// The balance in the station's currency, when read.
    pub fn balance(&self) -> Option<f64> {
        self.latest.as_ref().and_then(|r| r.balance)
    }

    /// Spend per hour in the station's currency over the window (since the last top-up);
    /// `None` with fewer than two readings.
    pub fn spend_per_hour(&self) -> Option<f64> {
        let (first, last) = (self.points.front()?, self.points.back()?);
        let dt = last.at_us.checked_sub(first.at_us).filter(|dt| *dt > 0)?;
        Some((first.balance - last.balance) / (dt as f64 / 3.6e9))
    }

    /// Seconds until the balance runs out at the spend rate; `None` when nothing is spent.
    pub fn run_out_s(&self) -> Option<u64> {
        let rate = self.spend_per_hour().filter(|r| *r > 0.0)?;
        let balance = self.points.back()?.balance.max(0.0);
        Some((balance / rate * 3600.0) as u64)
    }

    /// The bill check since the first reading (or the last top-up).
    pub fn bill(&self) -> Option<BillCheck> {
        let (base, now) = (self.base.as_ref()?, self.points.back()?);
        let usd_per_unit = self.latest.as_ref().map_or(1.0, |r| r.usd_per_unit);
        (now.at_us > base.at_us).then(|| BillCheck::between(base, now, usd_per_unit))
    }

    pub fn low_balance_warning(&self) -> bool {
        self.low_active
    }

    pub fn run_out_warning(&self) -> bool {
        self.run_out_active
    }

    /// What the dashboard, the headless report and Prometheus show.
    pub fn summary(&self) -> AccountSummary {
        let reading = self.latest.as_ref();
        AccountSummary {
            provider: self.provider.clone(),
            kind: reading.map(|r| r.kind.label()).unwrap_or("auto"),
            currency: reading.map(|r| r.currency.clone()).unwrap_or_default(),
            balance: self.balance(),
            balance_usd: reading.and_then(AccountReading::balance_usd),
            unlimited: reading.is_some_and(|r| r.unlimited),
            spend_per_hour: self.spend_per_hour(),
            run_out_s: self.run_out_s(),
            low_balance_warning: self.low_active,
            run_out_warning: self.run_out_active,
            bill: self.bill(),
            error: reading.and_then(|r| r.error.clone()),
            errors: self
                .errors
                .iter()
                .map(|(class, n)| (class.slug(), *n))
                .collect(),
            last_error: self.last_error.as_ref().map(|e| LastError {
                class: e.class.slug(),
                label: e.class.label(),
                fix: e.class.fix(),
                relay_request_id: e.relay_request_id.clone(),
                model: e.model.clone(),
            }),
        }
    }
}

/// The last failed request, in words.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastError {
    pub class: &'static str,
    pub label: &'static str,
    pub fix: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// One provider's account as shown (headless JSON `accounts[]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccountSummary {
    pub provider: String,
    pub kind: &'static str,
    pub currency: String,
    pub balance: Option<f64>,
    pub balance_usd: Option<f64>,
    pub unlimited: bool,
    /// In `currency` per hour.
    pub spend_per_hour: Option<f64>,
    pub run_out_s: Option<u64>,
    pub low_balance_warning: bool,
    pub run_out_warning: bool,
    pub bill: Option<BillCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failed requests by error class.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
}

fn money(amount: f64, currency: &str) -> String {
    crate::numbers::money(
        amount,
        if currency.is_empty() { "USD" } else { currency },
        false,
    )
}

/// One account in a line: `newapi (new-api): $1.92 left, $0.41/h, runs out in 4h 41m; the
/// relay charged 1.20× list price for what relaytop sent`, with its warnings.
pub fn describe(a: &AccountSummary) -> String {
    let mut line = format!("{} ({})", a.provider, a.kind);
    if let Some(error) = &a.error {
        line.push_str(&format!(": not read: {error}"));
        return line;
    }
    if a.unlimited {
        line.push_str(": unlimited");
    } else if let Some(balance) = a.balance {
        line.push_str(&format!(": {} left", money(balance, &a.currency)));
    }
    if let Some(rate) = a.spend_per_hour {
        line.push_str(&format!(", {}/h", money(rate, &a.currency)));
    }
    match a.run_out_s {
        Some(s) => line.push_str(&format!(
            ", runs out in {}",
            crate::numbers::duration_short(s.saturating_mul(1_000_000))
        )),
        None if !a.unlimited => line.push_str(", not spending"),
        None => {}
    }
    if a.low_balance_warning {
        line.push_str(" [LOW BALANCE]");
    }
    if a.run_out_warning {
        line.push_str(" [RUNNING OUT]");
    }
    if let Some(bill) = &a.bill {
        line.push_str("; ");
        line.push_str(&bill.describe());
    }
    line
}

/// Every provider's account: the fold over the run's events.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    infos: Vec<SessionInfo>,
    pricing: Pricing,
    books: BTreeMap<String, AccountBook>,
}

impl Accounts {
    pub fn new(infos: Vec<SessionInfo>, pricing: Pricing) -> Self {
        Self {
            infos,
            pricing,
            books: BTreeMap::new(),
        }
    }

    /// A session started after the fold was made (on-demand pools, a chat), or again.
    pub fn add_session(&mut self, info: SessionInfo) {
        let slot = info.id as usize;
        if slot < self.infos.len() {
            self.infos[slot] = info;
        } else {
            self.infos.push(info);
        }
    }

    /// The provider of session `session`, when known.
    pub fn provider_of(&self, session: crate::session::SessionId) -> Option<&str> {
        self.infos
            .get(session as usize)
            .map(|info| info.provider.as_str())
    }

    fn book(&mut self, provider: &str) -> &mut AccountBook {
        self.books
            .entry(provider.to_owned())
            .or_insert_with(|| AccountBook::new(provider))
    }

    /// Folds one event: the warnings it fires or clears, with their provider.
    pub fn apply(&mut self, event: &SessionEvent) -> Vec<(String, AccountAlert)> {
        match &event.kind {
            EventKind::Account(reading) => {
                let Some(provider) = self.provider_of(event.session).map(str::to_owned) else {
                    return Vec::new();
                };
                let alerts = self
                    .book(&provider)
                    .on_reading(event.at_us, (**reading).clone());
                alerts.into_iter().map(|a| (provider.clone(), a)).collect()
            }
            EventKind::RelayError(error) => {
                if let Some(info) = self.infos.get(event.session as usize) {
                    let provider = info.provider.clone();
                    let book = self.book(&provider);
                    *book.errors.entry(error.class).or_default() += 1;
                    book.last_error = Some((**error).clone());
                }
                Vec::new()
            }
            kind @ EventKind::Done(_) => {
                let Some(info) = self.infos.get(event.session as usize) else {
                    return Vec::new();
                };
                let Some(response) = Response::of_session(kind, &info.model) else {
                    return Vec::new();
                };
                let pricing = self.pricing.provider(&info.provider);
                let list = pricing
                    .price(response.model)
                    .map_or(0.0, |p| p.list_usd(response.tokens));
                let reported = response.reported_cost_usd;
                let provider = info.provider.clone();
                self.book(&provider).on_response(list, reported);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The providers whose account was read (or whose requests the relay explained).
    pub fn books(&self) -> impl Iterator<Item = &AccountBook> {
        self.books
            .values()
            .filter(|b| b.latest.is_some() || !b.errors.is_empty())
    }

    pub fn get(&self, provider: &str) -> Option<&AccountBook> {
        self.books.get(provider)
    }

    /// Every read account, soonest run-out first (a person sees which relay runs dry first).
    pub fn summaries(&self) -> Vec<AccountSummary> {
        let mut out: Vec<AccountSummary> = self
            .books()
            .filter(|b| b.latest.is_some())
            .map(AccountBook::summary)
            .collect();
        out.sort_by_key(|s| (s.run_out_s.unwrap_or(u64::MAX), s.provider.clone()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{AccountConfig, AccountKind, parse::Balance};

    fn reading(balance: f64, low: Option<f64>) -> AccountReading {
        let config = AccountConfig {
            low_balance: low,
            run_out_warning_h: 1.0,
            window_s: 600.0,
            ..AccountConfig::default()
        };
        AccountReading::new(
            AccountKind::NewApi,
            Balance {
                currency: "USD".into(),
                remaining: Some(balance),
                ..Balance::default()
            },
            1.0,
            &config,
        )
    }

    const S: u64 = 1_000_000;

    #[test]
    fn spend_rate_and_run_out_come_from_the_window() {
        let mut book = AccountBook::new("station");
        assert!(book.on_reading(0, reading(10.0, None)).is_empty());
        assert_eq!(book.spend_per_hour(), None);
        book.on_reading(60 * S, reading(9.0, None));
        // $1 a minute: $60 an hour, nine minutes left.
        assert!((book.spend_per_hour().unwrap() - 60.0).abs() < 1e-9);
        assert_eq!(book.run_out_s(), Some(540));
        // Fifteen minutes in, the first reading is out of the ten-minute window: the rate
        // spans from the last reading at least a window old ($2 in 14 minutes).
        book.on_reading(600 * S, reading(8.0, None));
        book.on_reading(900 * S, reading(7.0, None));
        let rate = book.spend_per_hour().unwrap();
        assert!((rate - 2.0 / 840.0 * 3600.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn low_balance_fires_once_and_clears_after_a_top_up() {
        let mut book = AccountBook::new("station");
        let mut fired = Vec::new();
        for (i, balance) in [10.0, 6.0, 4.0, 3.0, 2.0].iter().enumerate() {
            fired.extend(book.on_reading(i as u64 * 3600 * S, reading(*balance, Some(5.0))));
        }
        assert_eq!(
            fired,
            vec![AccountAlert::LowBalance {
                balance: 4.0,
                threshold: 5.0
            }]
        );
        assert!(book.low_balance_warning());
        let after = book.on_reading(6 * 3600 * S, reading(50.0, Some(5.0)));
        assert_eq!(after, vec![AccountAlert::Cleared { what: "topped up" }]);
        assert!(!book.low_balance_warning());
        assert_eq!(book.top_ups, 1);
        assert_eq!(book.spend_per_hour(), None, "a top-up starts a new series");
        // Below again: fires again, once.
        let again = book.on_reading(7 * 3600 * S, reading(1.0, Some(5.0)));
        assert!(matches!(again[0], AccountAlert::LowBalance { .. }));
        assert_eq!(book.fired, 3, "low twice, and running out at $49 an hour");
    }

    #[test]
    fn run_out_warning_fires_within_the_horizon_once() {
        let mut book = AccountBook::new("station");
        assert!(book.on_reading(0, reading(100.0, None)).is_empty());
        // $1 in 10 minutes: 16 hours left, beyond the 1 h horizon.
        assert!(book.on_reading(600 * S, reading(99.0, None)).is_empty());
        // $50 in 10 minutes: the window's rate puts run-out within the hour.
        let alerts = book.on_reading(1200 * S, reading(49.0, None));
        assert!(
            matches!(alerts[..], [AccountAlert::RunningOut { .. }]),
            "{alerts:?}"
        );
        assert!(book.on_reading(1260 * S, reading(45.0, None)).is_empty());
        assert!(book.run_out_warning());
    }

    #[test]
    fn the_bill_check_catches_a_markup_and_other_traffic() {
        let mut book = AccountBook::new("station");
        book.on_reading(0, reading(10.0, None));
        book.on_response(1.0, None);
        book.on_response(1.0, None);
        book.on_reading(60 * S, reading(7.0, None));
        let bill = book.bill().unwrap();
        assert_eq!(bill.verdict, BillVerdict::Charged { ratio: 1.5 });
        assert!(
            bill.describe().contains("1.50× list price"),
            "{}",
            bill.describe()
        );
        // $5 more gone with relaytop sending $0.50: 3.2× over the whole interval, a markup.
        book.on_response(0.5, None);
        book.on_reading(120 * S, reading(2.0, None));
        let bill = book.bill().unwrap();
        assert!(
            matches!(bill.verdict, BillVerdict::Charged { .. }),
            "{bill:?}"
        );
        let mut quiet = AccountBook::new("q");
        quiet.on_reading(0, reading(10.0, None));
        quiet.on_reading(60 * S, reading(9.0, None));
        assert!(matches!(
            quiet.bill().unwrap().verdict,
            BillVerdict::OtherTraffic { .. }
        ));
        let mut shared = AccountBook::new("s");
        shared.on_reading(0, reading(10.0, None));
        shared.on_response(0.1, Some(0.1));
        shared.on_reading(60 * S, reading(9.0, None));
        let bill = shared.bill().unwrap();
        assert!(matches!(bill.verdict, BillVerdict::OtherTraffic { .. }));
        assert!(bill.describe().contains("other traffic shares this key"));
        assert_eq!(bill.reported_ratio, Some(1.0));
    }
}
