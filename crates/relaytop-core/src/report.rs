//! The headless summary: a `Report` built from the metrics at the end of a run, as JSON
//! (schema: docs/headless-schema.json) or as aligned text tables for people.
//!
//! Latency figures are over the whole run, in milliseconds with 3 decimals in JSON (null with
//! a count of 0 when there is no sample) and 1 decimal in text, always with their sample count.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

pub use crate::numbers::{count, human_duration};
use crate::numbers::{dollars, millis, percent};

use crate::metrics::{
    Counts, ErrorCounts, LatencyMetric, Metrics, ProviderStats, Quantiles, SessionStats, Window,
};

/// relaytop's version, as written in reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the report says about the run itself.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// When the run started (wall clock).
    pub started_at: DateTime<Utc>,
    /// How long it ran, microseconds.
    pub duration_us: u64,
    /// Where the sessions came from: "default world" or the config path.
    pub source: String,
    /// What ended it: "duration", "ctrl-c", "all sessions stopped", ...
    pub ended_by: String,
}

/// The headless summary of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// relaytop's version.
    pub relaytop: String,
    pub run: RunSummary,
    /// Per provider, in the order they were first seen.
    pub providers: Vec<ProviderReport>,
    /// Over every provider.
    pub totals: ProviderReport,
    /// Per model at each provider, in the order first seen (quantiles at a session's
    /// precision: 2 significant figures).
    pub models: Vec<ModelReport>,
    /// Per session, by id.
    pub sessions: Vec<SessionReport>,
    /// What the canary did, when the run had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<crate::canary::CanaryReport>,
    /// The alerts, when the configuration has rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<crate::alert::AlertsView>,
    /// The relay accounts read during the run (`crate::account`), soonest run-out first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<crate::account::AccountSummary>,
}

/// The run: when, how long, from what, ended by what.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_us: u64,
    /// `duration_us` in seconds, 3 decimals.
    pub duration_s: f64,
    pub source: String,
    pub ended_by: String,
    pub sessions: u64,
    pub providers: u64,
    /// Session events folded.
    pub events: u64,
}

/// Latency quantiles over the whole run, in milliseconds (3 decimals); null without samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    /// Samples behind the figures.
    pub count: u64,
}

impl From<Quantiles> for LatencyMs {
    fn from(q: Quantiles) -> Self {
        let ms = |us: u64| (q.count > 0).then_some(us as f64 / 1000.0);
        Self {
            p50: ms(q.p50),
            p90: ms(q.p90),
            p99: ms(q.p99),
            p999: ms(q.p999),
            max: ms(q.max),
            mean: ms(q.mean),
            count: q.count,
        }
    }
}

/// Errors by kind, every kind present (0 when none), in a fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByKind(pub ErrorCounts);

impl Serialize for ByKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(ErrorCounts::KINDS.len()))?;
        for (kind, n) in self.0.iter() {
            map.serialize_entry(kind.label(), &n)?;
        }
        map.end()
    }
}

/// The figures reported alike for a provider, the totals and a session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    /// Requests sent.
    pub requests: u64,
    /// Responses completed.
    pub completed: u64,
    /// Requests that ended without a response.
    pub failed: u64,
    /// Errors reported by the relay or the connection.
    pub errors: u64,
    pub errors_by_kind: ByKind,
    pub connects: u64,
    /// Connections after a session's first.
    pub reconnects: u64,
    /// Closes the client did not ask for.
    pub drops: u64,
    /// `drops / connects`.
    pub drop_rate: f64,
    /// Time to first token.
    pub ttft_ms: LatencyMs,
    /// Whole-response time.
    pub total_ms: LatencyMs,
    /// Heartbeat round trip.
    pub heartbeat_rtt_ms: LatencyMs,
    pub heartbeats_answered: u64,
    pub heartbeats_missed: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_cached: u64,
    /// Tokens (in and out) that were estimated because the relay sent no usage.
    pub tokens_estimated: u64,
    /// Spend in US $, tokens and per-call fees.
    pub cost_usd: f64,
    /// Whether some of the spend was priced from estimated tokens.
    pub cost_estimated: bool,
    /// Spend in the billing currency; null when providers bill in different currencies.
    pub cost_billed: Option<f64>,
    /// The billing currency ("mixed" for totals over providers that differ).
    pub billing_currency: String,
    /// Effective spend per 1,000 completed calls, US $; null before the first.
    pub cost_per_1000_calls_usd: Option<f64>,
    /// The configured per-call fee per 1,000 calls, US $; null for totals over providers that
    /// differ.
    pub fee_per_1000_calls_usd: Option<f64>,
    /// Models that have no price (their responses counted at $0).
    pub unpriced_models: Vec<String>,
    pub malformed_frames: u64,
    pub unknown_frames: u64,
    pub rate_limit_waits: u64,
    /// Responses cut short: no terminal mark, no finish reason, `incomplete`, events lost,
    /// no answer (spec/RELAY-STATIONS.md §2); apart from `completed` and `failed`.
    pub cut: u64,
    /// Connection attempts refused or failed (counted as errors).
    pub connects_refused: u64,
    /// Failed requests and refused connects per attempt.
    pub error_rate: f64,
    /// Cut responses per finished request.
    pub cut_rate: f64,
    /// Requests that got at least one token, per finished request.
    pub response_rate: f64,
    /// Requests that met the service-level objective (`[slo]`).
    pub good: u64,
    /// Share of finished requests that met the service-level objective.
    pub good_rate: f64,
    /// Requests per second that met the service-level objective (vLLM's goodput).
    pub goodput_per_s: f64,
    /// Drops per 100 finished requests.
    pub drops_per_100_responses: f64,
    /// Connection time, hours, summed over connections.
    pub connection_hours: f64,
    /// Mean time between drops in connection hours; null without a drop.
    pub connection_hours_per_drop: Option<f64>,
    /// Time to the first answer token (after thinking).
    pub answer_ms: LatencyMs,
    /// Time per output token.
    pub tpot_ms: LatencyMs,
    /// Output speed, tokens per second (1 / TPOT): p50 the median, p90 and p99 the slow tail
    /// (the speed at TPOT's p90 and p99).
    pub output_speed_tps: Speed,
    /// Inter-token latency (a chunk of k tokens counts as k gaps of gap/k).
    pub itl_ms: LatencyMs,
    /// Each response's longest stall.
    pub stall_ms: LatencyMs,
    /// Output tokens reported against those counted in the text.
    pub usage_audit: AuditReport,
}

/// Output speed quantiles, tokens per second; null without samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Speed {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub count: u64,
}

impl From<Quantiles> for Speed {
    fn from(q: Quantiles) -> Self {
        let tps = |us: u64| {
            (q.count > 0 && us > 0).then(|| round(crate::metrics::tokens_per_second(us), 3))
        };
        Self {
            p50: tps(q.p50),
            p90: tps(q.p90),
            p99: tps(q.p99),
            count: q.count,
        }
    }
}

/// The usage audit of a provider, a session or the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AuditReport {
    /// Responses audited.
    pub responses: u64,
    /// Output tokens the relay reported for them.
    pub reported: u64,
    /// Output tokens relaytop counted in their text.
    pub counted: u64,
    /// `reported / counted - 1`: 0.25 is 25 % more than the text holds; null before any.
    pub excess: Option<f64>,
    /// Whether the relay reports more than its text holds beyond the tolerance.
    pub overbilling: bool,
    /// The tolerance.
    pub tolerance: f64,
}

/// One provider (or the totals, named "all").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderReport {
    pub name: String,
    /// Sessions using it.
    pub sessions: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One model at one provider.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelReport {
    pub provider: String,
    pub model: String,
    /// Sessions asking for it.
    pub sessions: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionReport {
    pub id: u32,
    pub name: String,
    pub provider: String,
    pub model: String,
    /// connecting, open, streaming, backing_off, stopped or closed.
    pub state: String,
    /// Why a stopped session stopped; null otherwise.
    pub state_reason: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

fn figures(
    counts: &Counts,
    latency: impl Fn(LatencyMetric) -> Quantiles,
    provider: &ProviderStats,
    unpriced_models: Vec<String>,
    judged: Judged,
) -> Figures {
    let c = counts;
    let hours = judged.connected_us as f64 / 3.6e9;
    let audit = c.usage_audit;
    let mixed = provider.billing_currency() == "mixed";
    Figures {
        requests: c.requests_sent,
        completed: c.responses_completed,
        failed: c.requests_failed,
        errors: c.errors,
        errors_by_kind: ByKind(c.errors_by_kind),
        connects: c.connects,
        reconnects: c.reconnects,
        drops: c.drops,
        drop_rate: round(c.drop_rate(), 6),
        ttft_ms: latency(LatencyMetric::TimeToFirstToken).into(),
        total_ms: latency(LatencyMetric::ResponseTime).into(),
        heartbeat_rtt_ms: latency(LatencyMetric::HeartbeatRtt).into(),
        heartbeats_answered: c.heartbeats_answered,
        heartbeats_missed: c.heartbeats_missed,
        tokens_in: c.tokens.input,
        tokens_out: c.tokens.output,
        tokens_cached: c.tokens.cached_input,
        tokens_estimated: c.tokens.estimated,
        cost_usd: round(c.cost.total_usd(), 9),
        cost_estimated: c.cost.is_estimated(),
        cost_billed: (!mixed).then(|| round(c.cost.billed(), 9)),
        billing_currency: provider.billing_currency().to_string(),
        cost_per_1000_calls_usd: c.cost_per_1000_calls_usd().map(|x| round(x, 6)),
        fee_per_1000_calls_usd: provider.fee_per_1000_calls_usd(),
        unpriced_models,
        malformed_frames: c.malformed_frames,
        unknown_frames: c.unknown_frames,
        rate_limit_waits: c.rate_limit_waits,
        cut: c.responses_cut,
        connects_refused: c.connects_refused,
        error_rate: round(c.error_rate(), 6),
        cut_rate: round(c.cut_rate(), 6),
        response_rate: round(c.response_rate(), 6),
        good: c.good,
        good_rate: round(c.good_rate(), 6),
        goodput_per_s: round(c.good as f64 / (judged.seconds.max(1e-9)), 6),
        drops_per_100_responses: round(c.drops_per_100_responses(), 4),
        connection_hours: round(hours, 6),
        connection_hours_per_drop: (c.drops > 0).then(|| round(hours / c.drops as f64, 6)),
        answer_ms: latency(LatencyMetric::TimeToFirstAnswer).into(),
        tpot_ms: latency(LatencyMetric::TimePerOutputToken).into(),
        output_speed_tps: latency(LatencyMetric::TimePerOutputToken).into(),
        itl_ms: latency(LatencyMetric::InterTokenLatency).into(),
        stall_ms: latency(LatencyMetric::LongestStall).into(),
        usage_audit: AuditReport {
            responses: audit.responses,
            reported: audit.reported,
            counted: audit.counted,
            excess: audit.excess().map(|e| round(e, 4)),
            overbilling: audit.overbills(judged.tolerance),
            tolerance: judged.tolerance,
        },
    }
}

/// What `figures` needs beyond the counts: the time and connection time they are over, and
/// the usage audit's tolerance.
#[derive(Clone, Copy, Debug)]
struct Judged {
    seconds: f64,
    connected_us: u64,
    tolerance: f64,
}

fn provider_report(p: &ProviderStats, now_us: u64, tolerance: f64) -> ProviderReport {
    ProviderReport {
        name: p.name().to_string(),
        sessions: u64::from(p.sessions()),
        figures: figures(
            &p.counts,
            |m| p.latency(m, Window::Run, now_us),
            p,
            p.unpriced_models().to_vec(),
            Judged {
                seconds: now_us as f64 / 1e6,
                connected_us: p.connected_us(now_us),
                tolerance,
            },
        ),
    }
}

fn session_report(
    s: &SessionStats,
    p: &ProviderStats,
    now_us: u64,
    tolerance: f64,
) -> SessionReport {
    let info = s.info();
    let unpriced = if s.counts.cost.unpriced_responses > 0 {
        vec![info.model.clone()]
    } else {
        Vec::new()
    };
    SessionReport {
        id: info.id,
        name: info.name.clone(),
        provider: info.provider.clone(),
        model: info.model.clone(),
        state: s.state().label().replace(' ', "_"),
        state_reason: s.stop_reason().map(str::to_string),
        figures: figures(
            &s.counts,
            |m| s.latency(m, Window::Run, now_us).unwrap_or_default(),
            p,
            unpriced,
            Judged {
                seconds: now_us as f64 / 1e6,
                connected_us: s.connected_us(now_us),
                tolerance,
            },
        ),
    }
}

impl Report {
    /// The report of a run: every provider, the totals and every session.
    pub fn build(metrics: &Metrics, run: RunInfo) -> Report {
        let now = run.duration_us;
        let tolerance = metrics.usage_tolerance();
        let providers: Vec<_> = metrics
            .providers()
            .iter()
            .map(|p| provider_report(p, now, tolerance))
            .collect();
        let sessions: Vec<_> = metrics
            .sessions()
            .map(|s| session_report(s, metrics.provider_of(s), now, tolerance))
            .collect();
        let models: Vec<_> = metrics
            .models()
            .iter()
            .filter_map(|m| {
                let p = metrics.provider(m.provider())?;
                let connected_us = metrics
                    .sessions()
                    .filter(|s| s.info().provider == m.provider() && s.info().model == m.model())
                    .map(|s| s.connected_us(now))
                    .sum();
                let unpriced = if m.counts.cost.unpriced_responses > 0 {
                    vec![m.model().to_owned()]
                } else {
                    Vec::new()
                };
                Some(ModelReport {
                    provider: m.provider().to_owned(),
                    model: m.model().to_owned(),
                    sessions: u64::from(m.sessions()),
                    figures: figures(
                        &m.counts,
                        |metric| m.latency(metric, Window::Run, now).unwrap_or_default(),
                        p,
                        unpriced,
                        Judged {
                            seconds: now as f64 / 1e6,
                            connected_us,
                            tolerance,
                        },
                    ),
                })
            })
            .collect();
        Report {
            relaytop: VERSION.to_string(),
            run: RunSummary {
                started_at: run.started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                duration_us: run.duration_us,
                duration_s: round(run.duration_us as f64 / 1e6, 3),
                source: run.source,
                ended_by: run.ended_by,
                sessions: sessions.len() as u64,
                providers: providers.len() as u64,
                events: metrics.events_applied(),
            },
            providers,
            totals: provider_report(metrics.totals(), now, tolerance),
            models,
            sessions,
            canary: None,
            alerts: None,
            accounts: Vec::new(),
        }
    }

    /// The report as indented JSON.
    pub fn to_json_pretty(&self) -> String {
        // Every field is a string, number, bool, option or vec of them with string keys:
        // serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The report as text: a header line, then tables per provider (traffic, latency, cost)
    /// and per session.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let r = &self.run;
        let started = DateTime::parse_from_rfc3339(&r.started_at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|_| r.started_at.clone());
        let _ = writeln!(
            out,
            "relaytop {}: {}, ran {} from {}, ended by {}",
            self.relaytop,
            r.source,
            human_duration(r.duration_us),
            started,
            r.ended_by
        );
        let _ = writeln!(
            out,
            "{} sessions on {} providers, {} events",
            count(r.sessions),
            count(r.providers),
            count(r.events)
        );

        let all: Vec<&ProviderReport> = self
            .providers
            .iter()
            .chain((self.providers.len() > 1).then_some(&self.totals))
            .collect();

        out.push_str("\nProviders\n");
        let mut t = Table::new(&[
            ("provider", L),
            ("sessions", R),
            ("requests", R),
            ("done", R),
            ("cut", R),
            ("failed", R),
            ("refused", R),
            ("error rate", R),
            ("connects", R),
            ("reconnects", R),
            ("drops", R),
            ("per 100 resp", R),
            ("conn-h per drop", R),
            ("hb missed", R),
            ("malformed", R),
        ]);
        for p in &all {
            let f = &p.figures;
            t.row(vec![
                p.name.clone(),
                count(p.sessions),
                count(f.requests),
                count(f.completed),
                count(f.cut),
                count(f.failed),
                count(f.connects_refused),
                percent(f.error_rate),
                count(f.connects),
                count(f.reconnects),
                count(f.drops),
                format!("{:.2}", f.drops_per_100_responses),
                f.connection_hours_per_drop
                    .map_or_else(|| "-".to_string(), |h| format!("{h:.2}")),
                count(f.heartbeats_missed),
                count(f.malformed_frames),
            ]);
        }
        t.render(&mut out);

        out.push_str("\nServing (over the whole run)\n");
        let mut t = Table::new(&[
            ("provider", L),
            ("tok/s p50", R),
            ("tok/s p99", R),
            ("itl p50 ms", R),
            ("itl p99 ms", R),
            ("stall max ms", R),
            ("response rate", R),
            ("good", R),
            ("goodput/s", R),
            ("usage audit", L),
        ]);
        for p in &all {
            let f = &p.figures;
            let speed = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
            let audit = &f.usage_audit;
            let audit_text = match audit.excess {
                None => "-".to_string(),
                Some(e) if audit.overbilling => format!(
                    "OVERBILLING: reports {:+.0} % more than its text ({} responses)",
                    e * 100.0,
                    count(audit.responses)
                ),
                Some(e) => format!("{:+.1} % ({} responses)", e * 100.0, count(audit.responses)),
            };
            t.row(vec![
                p.name.clone(),
                speed(f.output_speed_tps.p50),
                speed(f.output_speed_tps.p99),
                millis(f.itl_ms.p50),
                millis(f.itl_ms.p99),
                millis(f.stall_ms.max),
                percent(f.response_rate),
                percent(f.good_rate),
                format!("{:.2}", f.goodput_per_s),
                audit_text,
            ]);
        }
        t.render(&mut out);
        for p in &self.providers {
            let kinds: Vec<String> = p
                .figures
                .errors_by_kind
                .0
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{} {}", k.label(), count(n)))
                .collect();
            if !kinds.is_empty() {
                let _ = writeln!(out, "  errors at {}: {}", p.name, kinds.join(", "));
            }
        }

        out.push_str("\nLatency over the whole run (ms)\n");
        let mut t = Table::new(&[
            ("provider", L),
            ("measure", L),
            ("p50", R),
            ("p90", R),
            ("p99", R),
            ("max", R),
            ("mean", R),
            ("samples", R),
        ]);
        for p in &all {
            let f = &p.figures;
            for (i, (label, l)) in [
                ("time to first token", &f.ttft_ms),
                ("response time", &f.total_ms),
                ("heartbeat rtt", &f.heartbeat_rtt_ms),
            ]
            .into_iter()
            .enumerate()
            {
                let name = if i == 0 {
                    p.name.clone()
                } else {
                    String::new()
                };
                t.row(vec![
                    name,
                    label.to_string(),
                    millis(l.p50),
                    millis(l.p90),
                    millis(l.p99),
                    millis(l.max),
                    millis(l.mean),
                    count(l.count),
                ]);
            }
        }
        t.render(&mut out);

        out.push_str("\nCost\n");
        let mut t = Table::new(&[
            ("provider", L),
            ("tokens in", R),
            ("tokens out", R),
            ("estimated", R),
            ("cost", R),
            ("billed", R),
            ("per 1k calls", R),
            ("fee per 1k", R),
        ]);
        let mut estimated = false;
        for p in &all {
            let f = &p.figures;
            estimated |= f.cost_estimated;
            t.row(vec![
                p.name.clone(),
                count(f.tokens_in),
                count(f.tokens_out),
                count(f.tokens_estimated),
                dollars(f.cost_usd, f.cost_estimated),
                billed(f),
                f.cost_per_1000_calls_usd
                    .map_or_else(dash, |x| dollars(x, f.cost_estimated)),
                f.fee_per_1000_calls_usd
                    .map_or_else(dash, |x| dollars(x, false)),
            ]);
        }
        t.render(&mut out);
        if estimated {
            out.push_str("  ~ priced partly from estimated tokens (the relay sent no usage)\n");
        }
        for p in &self.providers {
            for model in &p.figures.unpriced_models {
                let _ = writeln!(
                    out,
                    "  no price for model {model} at {}: its tokens are counted at $0",
                    p.name
                );
            }
        }

        out.push_str("\nSessions\n");
        let mut t = Table::new(&[
            ("id", R),
            ("session", L),
            ("provider", L),
            ("model", L),
            ("state", L),
            ("requests", R),
            ("done", R),
            ("failed", R),
            ("reconnects", R),
            ("drops", R),
            ("ttft p50", R),
            ("ttft p99", R),
            ("ttft n", R),
            ("hb rtt p50", R),
            ("hb n", R),
            ("cost", R),
        ]);
        for s in &self.sessions {
            let f = &s.figures;
            t.row(vec![
                s.id.to_string(),
                s.name.clone(),
                s.provider.clone(),
                s.model.clone(),
                s.state.replace('_', " "),
                count(f.requests),
                count(f.completed),
                count(f.failed),
                count(f.reconnects),
                count(f.drops),
                millis(f.ttft_ms.p50),
                millis(f.ttft_ms.p99),
                count(f.ttft_ms.count),
                millis(f.heartbeat_rtt_ms.p50),
                count(f.heartbeat_rtt_ms.count),
                dollars(f.cost_usd, f.cost_estimated),
            ]);
        }
        t.render(&mut out);
        for s in &self.sessions {
            if let Some(reason) = &s.state_reason {
                let _ = writeln!(out, "  {} stopped: {reason}", s.name);
            }
        }
        if !self.accounts.is_empty() {
            out.push_str("\nAccounts\n");
            for a in &self.accounts {
                let _ = writeln!(out, "  {}", crate::account::book::describe(a));
            }
        }
        if let Some(canary) = &self.canary {
            out.push('\n');
            out.push_str(&canary.to_text());
        }
        if let Some(alerts) = &self.alerts {
            out.push('\n');
            out.push_str(&alerts.to_text());
        }
        out
    }
}

const L: bool = false;
const R: bool = true;

/// A text table: a header row and rows, columns padded to their widest cell.
struct Table {
    headers: Vec<(&'static str, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[(&'static str, bool)]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let widths: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .chain([h.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from(" ");
            for (i, ((_, right), width)) in self.headers.iter().zip(&widths).enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = width.saturating_sub(cell.chars().count());
                line.push(' ');
                if *right {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                line.push(' ');
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn dash() -> String {
    "-".to_string()
}

fn billed(f: &Figures) -> String {
    match f.cost_billed {
        Some(b) => format!("{b:.4} {}", f.billing_currency),
        None => dash(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(2_400_000), "2,400,000");
        assert_eq!(human_duration(45_200_000), "45.2s");
        assert_eq!(human_duration(125_000_000), "2m 05s");
        assert_eq!(human_duration(3_723_000_000), "1h 02m 03s");
        assert_eq!(percent(0.032), "3.2 %");
        assert_eq!(dollars(1.75, false), "$1.7500");
        assert_eq!(dollars(0.00515, true), "~$0.0052");
        assert_eq!(millis(Some(412.3456)), "412.3");
        assert_eq!(millis(None), "-");
    }

    #[test]
    fn latency_is_null_without_samples() {
        let l = LatencyMs::from(Quantiles::default());
        assert_eq!(l.p50, None);
        assert_eq!(l.count, 0);
        let l = LatencyMs::from(Quantiles {
            p50: 412_345,
            count: 1,
            ..Quantiles::default()
        });
        assert_eq!(l.p50, Some(412.345));
    }
}
