//! The comparison: the recording's report and the new run's side by side (`Comparison`),
//! with the ratios, the monthly projection, and its JSON and text forms.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use relaytop_core::config::file::Provider;
use relaytop_core::numbers::money_grouped as money2;
use relaytop_core::report::{Figures, count, human_duration};

use super::{HOURS_PER_MONTH, NowRun, Pacing, Recorded};

/// One side of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// The provider(s): the recorded ones, or the target.
    pub providers: Vec<String>,
    /// The model(s) the requests went out with.
    pub models: Vec<String>,
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    pub errors: u64,
    pub drops: u64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub total_p50_ms: Option<f64>,
    pub total_p99_ms: Option<f64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Some of the cost was priced from estimated tokens (the relay sent no usage).
    pub cost_estimated: bool,
    /// Models without a price: their responses count $0, and the costs are too low.
    pub unpriced_models: Vec<String>,
    /// In the billing currency; null when the providers bill in different ones.
    pub cost_billed: Option<f64>,
    pub billing_currency: String,
    /// Spend per 1,000 completed calls, US $.
    pub cost_per_1000_calls_usd: Option<f64>,
    /// The same in the billing currency.
    pub cost_per_1000_calls_billed: Option<f64>,
    /// This side's spend per request sent, times the requests of a month at the recorded
    /// volume, US $.
    pub monthly_cost_usd: Option<f64>,
    pub monthly_cost_billed: Option<f64>,
}

/// Now against recorded: a ratio (`now / recorded`) for each figure where both have one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub ttft_p50_ratio: Option<f64>,
    pub ttft_p99_ratio: Option<f64>,
    pub total_p50_ratio: Option<f64>,
    pub total_p99_ratio: Option<f64>,
    pub cost_per_1000_calls_ratio: Option<f64>,
    /// `now.monthly_cost_usd - recorded.monthly_cost_usd` (negative: a saving).
    pub monthly_cost_delta_usd: Option<f64>,
    /// Error rate (errors / requests), each side.
    pub error_rate_recorded: f64,
    pub error_rate_now: f64,
    pub drop_rate_recorded: f64,
    pub drop_rate_now: f64,
}

/// The recording compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingSummary {
    pub started_at: String,
    pub duration_s: f64,
    pub source: String,
    /// Requests sent in the recording (all of them, re-sent or not).
    pub requests: u64,
    /// Requests re-sent (those whose body the recording shows).
    pub requests_resent: u64,
    /// `requests` per hour of the recording.
    pub calls_per_hour: f64,
    /// `calls_per_hour × 730`.
    pub calls_per_month: f64,
    /// The most requests in flight at once.
    pub concurrency: u32,
}

/// The target and how it was driven.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetSummary {
    pub provider: String,
    pub model: String,
    pub protocol: String,
    /// "recorded" or "as_fast_as_allowed".
    pub pacing: String,
    /// Playback speed of the recorded spacing (1 in `as_fast_as_allowed`).
    pub speed: f64,
    pub idle_limit_s: Option<f64>,
    /// Connections in the pool.
    pub connections: u32,
    pub duration_s: f64,
    pub interrupted: bool,
    /// Where the new run was recorded, if it was.
    pub recorded_to: Option<String>,
}

/// `relaytop replay RUN --against PROVIDER`'s answer (schema: docs/REPLAY-AGAINST.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub relaytop: String,
    pub recording: RecordingSummary,
    pub target: TargetSummary,
    pub recorded: Side,
    /// The recorded side, provider by provider (the recording's traffic on each).
    pub recorded_by_provider: Vec<Side>,
    pub now: Side,
    pub change: Change,
    pub notes: Vec<String>,
}

fn ratio(now: Option<f64>, recorded: Option<f64>) -> Option<f64> {
    match (now, recorded) {
        (Some(n), Some(r)) if r > 0.0 => Some(round(n / r, 4)),
        _ => None,
    }
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

fn side(f: &Figures, providers: Vec<String>, models: Vec<String>, per_month: f64) -> Side {
    let per_request = |total: f64| (f.requests > 0).then(|| total / f.requests as f64);
    let per_completed =
        |total: f64| (f.completed > 0).then(|| round(total / f.completed as f64 * 1000.0, 6));
    Side {
        providers,
        models,
        requests: f.requests,
        completed: f.completed,
        failed: f.failed,
        errors: f.errors,
        drops: f.drops,
        ttft_p50_ms: f.ttft_ms.p50,
        ttft_p99_ms: f.ttft_ms.p99,
        total_p50_ms: f.total_ms.p50,
        total_p99_ms: f.total_ms.p99,
        tokens_in: f.tokens_in,
        tokens_out: f.tokens_out,
        cost_usd: f.cost_usd,
        cost_estimated: f.cost_estimated,
        unpriced_models: f.unpriced_models.clone(),
        cost_billed: f.cost_billed,
        billing_currency: f.billing_currency.clone(),
        cost_per_1000_calls_usd: f.cost_per_1000_calls_usd,
        cost_per_1000_calls_billed: f.cost_billed.and_then(per_completed),
        monthly_cost_usd: per_request(f.cost_usd).map(|c| round(c * per_month, 2)),
        monthly_cost_billed: f
            .cost_billed
            .and_then(per_request)
            .map(|c| round(c * per_month, 2)),
    }
}

impl Comparison {
    /// The recorded run's figures beside the new run's.
    pub fn build(
        recorded: &Recorded,
        now: &NowRun,
        target: &Provider,
        pacing: Pacing,
    ) -> Comparison {
        let r = &recorded.report;
        let hours = recorded.duration_us as f64 / 3.6e9;
        let calls_per_hour = if hours > 0.0 {
            r.totals.figures.requests as f64 / hours
        } else {
            0.0
        };
        let per_month = calls_per_hour * HOURS_PER_MONTH;
        let mut models: Vec<String> = Vec::new();
        for s in &r.sessions {
            if !models.contains(&s.model) {
                models.push(s.model.clone());
            }
        }
        let recorded_side = side(
            &r.totals.figures,
            recorded.providers.clone(),
            models,
            per_month,
        );
        let recorded_by_provider = r
            .providers
            .iter()
            .map(|p| {
                let mut models: Vec<String> = Vec::new();
                for s in r.sessions.iter().filter(|s| s.provider == p.name) {
                    if !models.contains(&s.model) {
                        models.push(s.model.clone());
                    }
                }
                side(&p.figures, vec![p.name.clone()], models, per_month)
            })
            .collect();
        let now_side = side(
            &now.report.totals.figures,
            vec![target.name.clone()],
            vec![target.model.clone()],
            per_month,
        );
        let mut notes = recorded.notes.clone();
        notes.extend(now.notes.iter().cloned());
        if recorded.providers.len() > 1 {
            notes.push(format!(
                "the recording has {} providers ({}); their traffic is compared with {} as a \
                 whole",
                recorded.providers.len(),
                recorded.providers.join(", "),
                target.name
            ));
        }
        if recorded_side.models.iter().any(|m| *m != target.model) {
            notes.push(format!(
                "requests went to {} with its model {} (recorded: {})",
                target.name,
                target.model,
                recorded_side.models.join(", ")
            ));
        }
        for (label, s) in [("recorded", &recorded_side), ("now", &now_side)] {
            if !s.unpriced_models.is_empty() {
                notes.push(format!(
                    "{label}: no price for {} (responses counted at $0; costs are too low: add \
                     prices under [providers.billing.prices])",
                    s.unpriced_models.join(", ")
                ));
            }
            if s.cost_estimated {
                notes.push(format!(
                    "{label}: some costs are priced from estimated tokens (the relay sent no usage)"
                ));
            }
        }
        if now.interrupted || now.sent < now.to_send {
            notes.push(format!(
                "only {} of {} requests were re-sent: the figures are of those",
                count(now.sent),
                count(now.to_send)
            ));
        }
        let rate = |n: u64, d: u64| {
            if d > 0 {
                round(n as f64 / d as f64, 6)
            } else {
                0.0
            }
        };
        let rf = &r.totals.figures;
        let nf = &now.report.totals.figures;
        let change = Change {
            ttft_p50_ratio: ratio(now_side.ttft_p50_ms, recorded_side.ttft_p50_ms),
            ttft_p99_ratio: ratio(now_side.ttft_p99_ms, recorded_side.ttft_p99_ms),
            total_p50_ratio: ratio(now_side.total_p50_ms, recorded_side.total_p50_ms),
            total_p99_ratio: ratio(now_side.total_p99_ms, recorded_side.total_p99_ms),
            cost_per_1000_calls_ratio: ratio(
                now_side.cost_per_1000_calls_usd,
                recorded_side.cost_per_1000_calls_usd,
            ),
            monthly_cost_delta_usd: match (
                now_side.monthly_cost_usd,
                recorded_side.monthly_cost_usd,
            ) {
                (Some(n), Some(r)) => Some(round(n - r, 2)),
                _ => None,
            },
            error_rate_recorded: rate(rf.errors, rf.requests),
            error_rate_now: rate(nf.errors, nf.requests),
            drop_rate_recorded: rf.drop_rate,
            drop_rate_now: nf.drop_rate,
        };
        let (pacing_name, speed, idle_limit_s) = match pacing {
            Pacing::Recorded { speed, idle_limit } => {
                ("recorded", speed, idle_limit.map(|d| d.as_secs_f64()))
            }
            Pacing::AsFastAsAllowed => ("as_fast_as_allowed", 1.0, None),
        };
        Comparison {
            relaytop: relaytop_core::report::VERSION.to_owned(),
            recording: RecordingSummary {
                started_at: r.run.started_at.clone(),
                duration_s: round(recorded.duration_us as f64 / 1e6, 3),
                source: r.run.source.clone(),
                requests: rf.requests,
                requests_resent: recorded.requests.len() as u64,
                calls_per_hour: round(calls_per_hour, 3),
                calls_per_month: round(per_month, 1),
                concurrency: recorded.concurrency,
            },
            target: TargetSummary {
                provider: target.name.clone(),
                model: target.model.clone(),
                protocol: target.protocol.label().to_owned(),
                pacing: pacing_name.to_owned(),
                speed,
                idle_limit_s,
                connections: now.pool,
                duration_s: now.report.run.duration_s,
                interrupted: now.interrupted,
                recorded_to: now.recorded_to.as_ref().map(|p| p.display().to_string()),
            },
            recorded: recorded_side,
            recorded_by_provider,
            now: now_side,
            change,
            notes,
        }
    }

    /// Indented JSON.
    pub fn to_json_pretty(&self) -> String {
        // Strings, numbers, options and vecs of them: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The side-by-side table for people: recorded (and each recorded provider, when there
    /// are several), now, and the change from recorded to now.
    pub fn to_text(&self, pacing: Pacing) -> String {
        let (r, n) = (&self.recorded, &self.now);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "relaytop replay --against {}: {} recorded requests ({}; {}, {} calls an hour), \
             re-sent {} over {} connections in {}",
            self.target.provider,
            count(self.recording.requests),
            r.providers.join(", "),
            human_duration((self.recording.duration_s * 1e6) as u64),
            count(self.recording.calls_per_hour.round() as u64),
            pacing.describe(),
            self.target.connections,
            human_duration((self.target.duration_s * 1e6) as u64),
        );
        let _ = writeln!(out);
        let ms = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
        let pct = |x: Option<f64>| {
            x.map_or(String::new(), |v| {
                let d = (v - 1.0) * 100.0;
                format!("{}{d:.0} %", if d > 0.0 { "+" } else { "" })
            })
        };
        let money = |usd: Option<f64>, billed: Option<f64>, currency: &str, est: bool| {
            let tilde = if est { "~" } else { "" };
            match (usd, billed) {
                (Some(u), Some(b)) if currency != "USD" => {
                    format!("{tilde}${u:.4} ({b:.4} {currency})")
                }
                (Some(u), _) => format!("{tilde}${u:.4}"),
                (None, _) => "-".to_owned(),
            }
        };
        let monthly = |usd: Option<f64>, billed: Option<f64>, currency: &str| match (usd, billed) {
            (Some(u), Some(b)) if currency != "USD" => {
                format!("${} ({} {currency})", money2(u), money2(b))
            }
            (Some(u), _) => format!("${}", money2(u)),
            (None, _) => "-".to_owned(),
        };
        // The columns: recorded, each recorded provider when there are several, now.
        let mut sides: Vec<(String, &Side)> = vec![("recorded".to_owned(), r)];
        if self.recorded_by_provider.len() > 1 {
            for p in &self.recorded_by_provider {
                let name = p.providers.join(", ");
                sides.push((format!("recorded: {name}"), p));
            }
        }
        sides.push((format!("now ({})", self.target.provider), n));
        let c = &self.change;
        type Cell<'a> = Box<dyn Fn(&Side) -> String + 'a>;
        let lines: Vec<(String, Cell, String)> = vec![
            (
                "requests".into(),
                Box::new(|s: &Side| count(s.requests)),
                String::new(),
            ),
            (
                "completed".into(),
                Box::new(|s: &Side| count(s.completed)),
                String::new(),
            ),
            (
                "failed".into(),
                Box::new(|s: &Side| count(s.failed)),
                String::new(),
            ),
            (
                "errors".into(),
                Box::new(|s: &Side| count(s.errors)),
                format!(
                    "{:.1} % -> {:.1} % of requests",
                    c.error_rate_recorded * 100.0,
                    c.error_rate_now * 100.0
                ),
            ),
            (
                "drops".into(),
                Box::new(|s: &Side| count(s.drops)),
                format!(
                    "{:.1} % -> {:.1} % of connections",
                    c.drop_rate_recorded * 100.0,
                    c.drop_rate_now * 100.0
                ),
            ),
            (
                "TTFT p50".into(),
                Box::new(|s: &Side| ms(s.ttft_p50_ms)),
                pct(c.ttft_p50_ratio),
            ),
            (
                "TTFT p99".into(),
                Box::new(|s: &Side| ms(s.ttft_p99_ms)),
                pct(c.ttft_p99_ratio),
            ),
            (
                "total p50".into(),
                Box::new(|s: &Side| ms(s.total_p50_ms)),
                pct(c.total_p50_ratio),
            ),
            (
                "total p99".into(),
                Box::new(|s: &Side| ms(s.total_p99_ms)),
                pct(c.total_p99_ratio),
            ),
            (
                "tokens in / out".into(),
                Box::new(|s: &Side| format!("{} / {}", count(s.tokens_in), count(s.tokens_out))),
                String::new(),
            ),
            (
                "cost".into(),
                Box::new(|s: &Side| {
                    money(
                        Some(s.cost_usd),
                        s.cost_billed,
                        &s.billing_currency,
                        s.cost_estimated,
                    )
                }),
                String::new(),
            ),
            (
                "cost / 1,000 calls".into(),
                Box::new(|s: &Side| {
                    money(
                        s.cost_per_1000_calls_usd,
                        s.cost_per_1000_calls_billed,
                        &s.billing_currency,
                        s.cost_estimated,
                    )
                }),
                pct(c.cost_per_1000_calls_ratio),
            ),
            (
                format!(
                    "a month at {} calls",
                    count(self.recording.calls_per_month.round() as u64)
                ),
                Box::new(|s: &Side| {
                    monthly(
                        s.monthly_cost_usd,
                        s.monthly_cost_billed,
                        &s.billing_currency,
                    )
                }),
                c.monthly_cost_delta_usd.map_or(String::new(), |d| {
                    format!("{}${}", if d < 0.0 { "-" } else { "+" }, money2(d.abs()))
                }),
            ),
        ];
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(lines.len() + 1);
        let mut head = vec![String::new()];
        head.extend(sides.iter().map(|(name, _)| name.clone()));
        head.push("change".into());
        rows.push(head);
        for (label, cell, change) in &lines {
            let mut row = vec![label.clone()];
            row.extend(sides.iter().map(|(_, s)| cell(s)));
            row.push(change.clone());
            rows.push(row);
        }
        let columns = sides.len() + 2;
        let mut widths = vec![0usize; columns];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i == 0 {
                    let _ = write!(line, "{cell:<w$}");
                } else if i + 1 == columns {
                    let _ = write!(line, "  {cell}");
                } else {
                    let _ = write!(line, "  {cell:>w$}");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        if self.recorded_by_provider.len() > 1 {
            let _ = writeln!(
                out,
                "\n(change: now against all the recorded traffic; a month: all of it at each \
                 column's cost per request)"
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for note in &self.notes {
                let _ = writeln!(out, "note: {note}");
            }
        }
        out
    }
}
