//! The figures an alert can watch, by name, and the scopes they are read over: the one place
//! that reads `Metrics` (and the alerts' own tallies) for the alerts.
//!
//! Adding a figure: a variant, its name in `Figure::NAMES` and `parse`, its unit, and a line
//! in `read`. The account figures (balance, run-out time) come from the account readings the
//! tallies keep.

use serde::Serialize;

use crate::metrics::{LatencyMetric, Metrics, Quantiles, Window};
use crate::session::{SessionInfo, SessionState};

use super::tally::Tallies;

/// A quantile of a latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantile {
    P50,
    P90,
    P99,
}

impl Quantile {
    fn of(self, q: &Quantiles) -> f64 {
        match self {
            Quantile::P50 => q.p50_ms(),
            Quantile::P90 => q.p90_ms(),
            Quantile::P99 => q.p99_ms(),
        }
    }
}

/// A figure an alert watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// Time to first token, milliseconds.
    Ttft(Quantile),
    /// Whole-response (end-to-end) time, milliseconds.
    E2e(Quantile),
    /// Failed requests per 100 finished, over the window.
    ErrorRate,
    /// Drops per 100 finished requests, over the window (per connection, long-lived
    /// connections would tend to 100 %).
    DropRate,
    /// Inter-token latency, milliseconds.
    Itl(Quantile),
    /// Output speed, tokens per second: the median (alert `below` it).
    OutputSpeed,
    /// Heartbeats that went unanswered in the window.
    HeartbeatsMissed,
    /// Sessions backing off or stopped, now.
    SessionsDown,
    /// Good requests (as `[slo]` says) per 100 finished, over the window.
    Goodput,
    /// Responses cut short, in the window.
    CutStreams,
    /// The relay account's balance (not measured yet).
    Balance,
    /// Hours until the balance runs out at the current spend (not measured yet).
    RunOutHours,
}

impl Figure {
    /// Every name a config may use.
    pub const NAMES: [&'static str; 18] = [
        "ttft_p50_ms",
        "ttft_p90_ms",
        "ttft_p99_ms",
        "e2e_p50_ms",
        "e2e_p90_ms",
        "e2e_p99_ms",
        "error_rate_pct",
        "drop_rate_pct",
        "itl_p50_ms",
        "itl_p90_ms",
        "itl_p99_ms",
        "output_speed_tps",
        "heartbeats_missed",
        "sessions_down",
        "goodput_pct",
        "cut_streams",
        "balance",
        "run_out_hours",
    ];

    pub fn parse(name: &str) -> Option<Figure> {
        Some(match name.trim() {
            "ttft_p50_ms" => Figure::Ttft(Quantile::P50),
            "ttft_p90_ms" => Figure::Ttft(Quantile::P90),
            "ttft_p99_ms" => Figure::Ttft(Quantile::P99),
            "e2e_p50_ms" => Figure::E2e(Quantile::P50),
            "e2e_p90_ms" => Figure::E2e(Quantile::P90),
            "e2e_p99_ms" => Figure::E2e(Quantile::P99),
            "error_rate_pct" => Figure::ErrorRate,
            "drop_rate_pct" => Figure::DropRate,
            "itl_p50_ms" => Figure::Itl(Quantile::P50),
            "itl_p90_ms" => Figure::Itl(Quantile::P90),
            "itl_p99_ms" => Figure::Itl(Quantile::P99),
            "output_speed_tps" => Figure::OutputSpeed,
            "heartbeats_missed" => Figure::HeartbeatsMissed,
            "sessions_down" => Figure::SessionsDown,
            "goodput_pct" => Figure::Goodput,
            "cut_streams" => Figure::CutStreams,
            "balance" => Figure::Balance,
            "run_out_hours" => Figure::RunOutHours,
            _ => return None,
        })
    }

    /// The name, as the config writes it.
    pub fn name(self) -> &'static str {
        match self {
            Figure::Ttft(Quantile::P50) => "ttft_p50_ms",
            Figure::Ttft(Quantile::P90) => "ttft_p90_ms",
            Figure::Ttft(Quantile::P99) => "ttft_p99_ms",
            Figure::E2e(Quantile::P50) => "e2e_p50_ms",
            Figure::E2e(Quantile::P90) => "e2e_p90_ms",
            Figure::E2e(Quantile::P99) => "e2e_p99_ms",
            Figure::ErrorRate => "error_rate_pct",
            Figure::DropRate => "drop_rate_pct",
            Figure::Itl(Quantile::P50) => "itl_p50_ms",
            Figure::Itl(Quantile::P90) => "itl_p90_ms",
            Figure::Itl(Quantile::P99) => "itl_p99_ms",
            Figure::OutputSpeed => "output_speed_tps",
            Figure::HeartbeatsMissed => "heartbeats_missed",
            Figure::SessionsDown => "sessions_down",
            Figure::Goodput => "goodput_pct",
            Figure::CutStreams => "cut_streams",
            Figure::Balance => "balance",
            Figure::RunOutHours => "run_out_hours",
        }
    }

    /// A short label for messages: "TTFT p99".
    pub fn label(self) -> &'static str {
        match self {
            Figure::Ttft(Quantile::P50) => "TTFT p50",
            Figure::Ttft(Quantile::P90) => "TTFT p90",
            Figure::Ttft(Quantile::P99) => "TTFT p99",
            Figure::E2e(Quantile::P50) => "E2E p50",
            Figure::E2e(Quantile::P90) => "E2E p90",
            Figure::E2e(Quantile::P99) => "E2E p99",
            Figure::ErrorRate => "error rate",
            Figure::DropRate => "drops per 100 responses",
            Figure::Itl(Quantile::P50) => "ITL p50",
            Figure::Itl(Quantile::P90) => "ITL p90",
            Figure::Itl(Quantile::P99) => "ITL p99",
            Figure::OutputSpeed => "output speed",
            Figure::HeartbeatsMissed => "heartbeats missed",
            Figure::SessionsDown => "sessions down",
            Figure::Goodput => "goodput",
            Figure::CutStreams => "cut streams",
            Figure::Balance => "balance",
            Figure::RunOutHours => "run-out time",
        }
    }

    /// The unit its values are written in: "ms", "%", "h" or "".
    pub fn unit(self) -> &'static str {
        match self {
            Figure::Ttft(_) | Figure::E2e(_) | Figure::Itl(_) => "ms",
            Figure::OutputSpeed => "tok/s",
            Figure::ErrorRate | Figure::DropRate | Figure::Goodput => "%",
            Figure::RunOutHours => "h",
            _ => "",
        }
    }

    /// Whether the figure is read from the alerts' own tallies.
    pub fn needs_tally(self) -> bool {
        matches!(self, Figure::HeartbeatsMissed | Figure::Goodput)
    }
}

/// What a scope covers, as written in a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeSpec {
    /// Every session together.
    All,
    /// Each provider (`None`) or one.
    Provider(Option<String>),
    /// Each model (`None`) or one.
    Model(Option<String>),
    /// Each session (`None`) or one, by name.
    Session(Option<String>),
}

/// The kind of a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeKind {
    All,
    Provider,
    Model,
    Session,
}

/// One scope an alert is evaluated over.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeKey {
    All,
    Provider(String),
    Model(String),
    Session(String),
}

impl std::fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopeKey::All => f.write_str("all"),
            ScopeKey::Provider(p) => write!(f, "provider:{p}"),
            ScopeKey::Model(m) => write!(f, "model:{m}"),
            ScopeKey::Session(s) => write!(f, "session:{s}"),
        }
    }
}

impl Serialize for ScopeKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl ScopeKey {
    /// The key of `kind` a session belongs to.
    pub fn of(kind: ScopeKind, info: &SessionInfo) -> ScopeKey {
        match kind {
            ScopeKind::All => ScopeKey::All,
            ScopeKind::Provider => ScopeKey::Provider(info.provider.clone()),
            ScopeKind::Model => ScopeKey::Model(info.model.clone()),
            ScopeKind::Session => ScopeKey::Session(info.name.clone()),
        }
    }

    fn holds(&self, info: &SessionInfo) -> bool {
        match self {
            ScopeKey::All => true,
            ScopeKey::Provider(p) => &info.provider == p,
            ScopeKey::Model(m) => &info.model == m,
            ScopeKey::Session(s) => &info.name == s,
        }
    }
}

impl ScopeSpec {
    /// `all`, `provider`, `provider:NAME`, `model`, `model:NAME`, `session`, `session:NAME`.
    pub fn parse(text: &str) -> Result<ScopeSpec, String> {
        let text = text.trim();
        let (kind, name) = match text.split_once(':') {
            Some((k, n)) if !n.trim().is_empty() => (k.trim(), Some(n.trim().to_owned())),
            Some(_) => return Err(format!("`{text}` names nothing after the colon")),
            None => (text, None),
        };
        Ok(match (kind, name) {
            ("all", None) => ScopeSpec::All,
            ("provider", n) => ScopeSpec::Provider(n),
            ("model", n) => ScopeSpec::Model(n),
            ("session", n) => ScopeSpec::Session(n),
            _ => {
                return Err(format!(
                    "`{text}`: use all, provider, provider:NAME, model, model:NAME, session or \
                     session:NAME"
                ));
            }
        })
    }

    pub fn kind(&self) -> ScopeKind {
        match self {
            ScopeSpec::All => ScopeKind::All,
            ScopeSpec::Provider(_) => ScopeKind::Provider,
            ScopeSpec::Model(_) => ScopeKind::Model,
            ScopeSpec::Session(_) => ScopeKind::Session,
        }
    }

    /// The scopes this spec covers now (each provider, model or session `metrics` knows).
    pub fn expand(&self, metrics: &Metrics) -> Vec<ScopeKey> {
        let mut keys: Vec<ScopeKey> = match self {
            ScopeSpec::All => vec![ScopeKey::All],
            ScopeSpec::Provider(Some(p)) => vec![ScopeKey::Provider(p.clone())],
            ScopeSpec::Model(Some(m)) => vec![ScopeKey::Model(m.clone())],
            ScopeSpec::Session(Some(s)) => vec![ScopeKey::Session(s.clone())],
            ScopeSpec::Provider(None) => metrics
                .providers()
                .iter()
                .filter(|p| p.sessions() > 0)
                .map(|p| ScopeKey::Provider(p.name().to_owned()))
                .collect(),
            ScopeSpec::Model(None) => metrics
                .sessions()
                .map(|s| ScopeKey::Model(s.info().model.clone()))
                .collect(),
            ScopeSpec::Session(None) => metrics
                .sessions()
                .map(|s| ScopeKey::Session(s.info().name.clone()))
                .collect(),
        };
        keys.sort();
        keys.dedup();
        keys
    }
}

/// A figure's value, or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    Value(f64),
    /// No samples in the window, or a figure not measured yet (the note says which).
    NoData(&'static str),
}

impl Reading {
    pub fn value(&self) -> Option<f64> {
        match self {
            Reading::Value(v) => Some(*v),
            Reading::NoData(_) => None,
        }
    }
}

const NO_SAMPLES: &str = "no samples in the window";

fn window_us(window: Window) -> Option<u64> {
    window.length_us()
}

fn pct(part: u64, whole: u64) -> Reading {
    if whole == 0 {
        Reading::NoData(NO_SAMPLES)
    } else {
        Reading::Value(part as f64 * 100.0 / whole as f64)
    }
}

/// Reads `figure` over `scope` and `window` at `now_us`.
///
/// Provider and all scopes read the provider's (or the run's) figures. A model or session
/// scope reads its sessions: counts add up; a latency quantile is the worst session's (session
/// quantiles keep the last minute and the run: a 15-minute window reads the run).
pub fn read(
    figure: Figure,
    metrics: &Metrics,
    tallies: &Tallies,
    scope: &ScopeKey,
    window: Window,
    now_us: u64,
) -> Reading {
    if matches!(figure, Figure::Balance | Figure::RunOutHours) {
        return account_figure(figure, tallies, scope, metrics);
    }
    if figure.needs_tally() {
        let t = tallies.over(scope, window_us(window), now_us);
        return match figure {
            Figure::HeartbeatsMissed => Reading::Value(t.heartbeats_missed as f64),
            _ => pct(t.good, t.requests()),
        };
    }
    if figure == Figure::SessionsDown {
        let down = metrics
            .sessions()
            .filter(|s| scope.holds(s.info()))
            .filter(|s| {
                matches!(
                    s.state(),
                    SessionState::BackingOff { .. } | SessionState::Stopped { .. }
                )
            })
            .count();
        return Reading::Value(down as f64);
    }
    let provider = match scope {
        ScopeKey::All => Some(metrics.totals()),
        ScopeKey::Provider(p) => match metrics.provider(p) {
            Some(p) => Some(p),
            None => return Reading::NoData("no such provider in this run"),
        },
        _ => None,
    };
    if let Some(p) = provider {
        let latency = |metric: LatencyMetric, q: Quantile| {
            let quantiles = p.latency(metric, window, now_us);
            if quantiles.count == 0 {
                Reading::NoData(NO_SAMPLES)
            } else {
                Reading::Value(q.of(&quantiles))
            }
        };
        let rates = || p.rates(window, now_us);
        return match figure {
            Figure::Ttft(q) => latency(LatencyMetric::TimeToFirstToken, q),
            Figure::E2e(q) => latency(LatencyMetric::ResponseTime, q),
            Figure::Itl(q) => latency(LatencyMetric::InterTokenLatency, q),
            Figure::OutputSpeed => {
                let tpot = p.latency(LatencyMetric::TimePerOutputToken, window, now_us);
                if tpot.count == 0 {
                    Reading::NoData(NO_SAMPLES)
                } else {
                    Reading::Value(crate::metrics::tokens_per_second(tpot.p50))
                }
            }
            Figure::ErrorRate => {
                // Refused connects are errors too: a relay refusing every upgrade is 100 %.
                let r = rates();
                pct(
                    r.failed + r.refused,
                    r.responses + r.cut + r.failed + r.refused,
                )
            }
            Figure::DropRate => {
                let r = rates();
                pct(r.drops, r.responses + r.cut + r.failed)
            }
            Figure::CutStreams => Reading::Value(rates().cut as f64),
            _ => Reading::NoData(NO_SAMPLES),
        };
    }
    // A model or a session: over its sessions.
    let sessions = || metrics.sessions().filter(|s| scope.holds(s.info()));
    let session_window = if window == Window::FifteenMinutes {
        Window::Run
    } else {
        window
    };
    let worst = |metric: LatencyMetric, q: Quantile| {
        sessions()
            .filter_map(|s| s.latency(metric, session_window, now_us))
            .filter(|x| x.count > 0)
            .map(|x| q.of(&x))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            .map_or(Reading::NoData(NO_SAMPLES), Reading::Value)
    };
    match figure {
        Figure::Ttft(q) => worst(LatencyMetric::TimeToFirstToken, q),
        Figure::E2e(q) => worst(LatencyMetric::ResponseTime, q),
        Figure::Itl(q) => worst(LatencyMetric::InterTokenLatency, q),
        Figure::OutputSpeed => sessions()
            .filter_map(|s| s.latency(LatencyMetric::TimePerOutputToken, session_window, now_us))
            .filter(|x| x.count > 0)
            .map(|x| crate::metrics::tokens_per_second(x.p50))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
            .map_or(Reading::NoData(NO_SAMPLES), Reading::Value),
        Figure::ErrorRate => {
            let (bad, all) = sessions().fold((0, 0), |(b, a), s| {
                let c = &s.counts;
                (
                    b + c.requests_failed + c.connects_refused,
                    a + c.finished() + c.connects_refused,
                )
            });
            pct(bad, all)
        }
        Figure::DropRate => {
            let (drops, finished) = sessions().fold((0, 0), |(d, f), s| {
                (d + s.counts.drops, f + s.counts.finished())
            });
            pct(drops, finished)
        }
        Figure::CutStreams => {
            Reading::Value(sessions().map(|s| s.counts.responses_cut).sum::<u64>() as f64)
        }
        _ => Reading::NoData(NO_SAMPLES),
    }
}

/// The balance (in the station's unit) or the hours to run-out of the accounts in `scope`:
/// a provider's own, or the lowest over every provider (the one that runs dry first).
fn account_figure(
    figure: Figure,
    tallies: &Tallies,
    scope: &ScopeKey,
    metrics: &Metrics,
) -> Reading {
    const NOT_READ: &str = "no account read (set [providers.account])";
    let value = |book: &crate::account::AccountBook| match figure {
        Figure::Balance => book.balance(),
        _ => book.run_out_s().map(|s| s as f64 / 3600.0),
    };
    let books: Vec<&crate::account::AccountBook> = match scope {
        ScopeKey::Provider(p) => tallies.account(p).into_iter().collect(),
        ScopeKey::All => tallies.accounts().collect(),
        // A model or a session spends its provider's account.
        _ => metrics
            .sessions()
            .filter(|s| scope.holds(s.info()))
            .filter_map(|s| tallies.account(&s.info().provider))
            .collect(),
    };
    if books.is_empty() {
        return Reading::NoData(NOT_READ);
    }
    books
        .into_iter()
        .filter_map(value)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
        .map_or(
            Reading::NoData(if figure == Figure::Balance {
                "the account has no balance (unlimited, or not read yet)"
            } else {
                "nothing spent yet: no run-out to project"
            }),
            Reading::Value,
        )
}
