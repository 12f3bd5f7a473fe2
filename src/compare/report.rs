//! The compare report: figures per relay and load level, the knee, the ranking with bootstrap
//! intervals and the verdict, written as `report.json` (the ranking first), `report.md` and a
//! self-contained `report.html` (its charts inline as SVG, PNG and SVG files beside it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use relaytop_core::compare::{
    LevelOutcome, MedianCi, RESAMPLES, Ranked, Summary, bootstrap_median, knee, rank,
};
use relaytop_core::metrics::Window;

use super::run::{CompareRun, Stage};
use super::workload::Load;

/// Finished requests a level needs before it can count as meeting the SLO.
pub const KNEE_MIN_SAMPLES: u64 = 10;
/// The confidence level of the intervals.
pub const CONFIDENCE: f64 = 0.95;

#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// Best first.
    pub ranking: Ranking,
    pub verdict: Vec<String>,
    /// Why the run ended ("every load level ran", or the budget spent).
    pub ended_by: String,
    pub stopped_early: bool,
    pub plan: Plan,
    pub relays: Vec<RelayResult>,
    pub load_seconds: f64,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_to: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ranking {
    /// What the relays are ranked by.
    pub by: String,
    pub relays: Vec<Ranked>,
    /// Relays with no sample of it (every request failed).
    pub no_samples: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub load: Load,
    pub stage_seconds: f64,
    pub input_tokens: Vec<u32>,
    pub max_tokens: u32,
    pub seed: u64,
    pub slo: String,
    pub quantiles_from: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RelayResult {
    pub name: String,
    pub model: String,
    pub url: String,
    /// The highest load level that met the SLO (with every lower one); `None`: not even the
    /// lowest.
    pub knee: Option<f64>,
    pub ttft_median_ms: Option<MedianCi>,
    pub e2e_median_ms: Option<MedianCi>,
    pub output_speed_median_tps: Option<MedianCi>,
    pub sent: u64,
    pub completed: u64,
    pub good_rate: f64,
    pub cost_usd: f64,
    pub cost_per_1000_calls_usd: Option<f64>,
    pub cost_per_million_output_tokens_usd: Option<f64>,
    pub levels: Vec<LevelResult>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LevelResult {
    pub load: f64,
    pub seconds: f64,
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    pub cut: u64,
    /// Replies longer than the `max_tokens` asked.
    pub over_limit: u64,
    /// Replies that stopped for length short of it.
    pub short: u64,
    /// Open loop: arrivals that found no free connection at once.
    pub queued: u64,
    pub response_rate: f64,
    pub good: u64,
    pub good_rate: f64,
    pub goodput_per_sec: f64,
    pub meets_slo: bool,
    pub ttft_ms: Summary,
    pub output_speed_tps: Summary,
    pub itl_ms: Summary,
    pub e2e_ms: Summary,
    pub error_kinds: BTreeMap<String, u64>,
    pub relay_error_classes: BTreeMap<String, u64>,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub cost_per_1000_calls_usd: Option<f64>,
    pub cost_per_million_output_tokens_usd: Option<f64>,
}

impl LevelResult {
    /// The level's errors in words: each kind, then the relay's own classes (`relay:CLASS`).
    fn errors(&self) -> Vec<String> {
        self.error_kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .chain(
                self.relay_error_classes
                    .iter()
                    .map(|(k, n)| format!("relay:{k} {n}")),
            )
            .collect()
    }
}

fn per(x: f64, n: u64, scale: f64) -> Option<f64> {
    (n > 0).then(|| x / n as f64 * scale)
}

fn level_result(stage: &Stage, r: usize, name: &str, objective: f64) -> LevelResult {
    let now = stage.metrics.last_event_us();
    let stats = stage.metrics.provider(name);
    let counts = stats.map(|s| s.counts.clone()).unwrap_or_default();
    let rates = stats.map(|s| s.rates(Window::Run, now));
    let cell = stage.cells.get(r);
    let seconds = stage.duration.as_secs_f64();
    let finished = counts.finished();
    let good_rate = if finished > 0 {
        counts.good as f64 / finished as f64
    } else {
        0.0
    };
    let cost = counts.cost.total_usd();
    let mut error_kinds = BTreeMap::new();
    for (kind, n) in counts.failures_by_kind.iter() {
        if n > 0 {
            error_kinds.insert(kind.label().to_owned(), n);
        }
    }
    LevelResult {
        load: stage.level,
        seconds,
        sent: cell.map_or(0, |c| c.sent),
        completed: counts.responses_completed,
        failed: counts.requests_failed,
        cut: counts.responses_cut,
        over_limit: cell.map_or(0, |c| c.over_limit),
        short: cell.map_or(0, |c| c.short),
        queued: cell.map_or(0, |c| c.queued),
        response_rate: rates.map_or(0.0, |r| r.response_rate),
        good: counts.good,
        good_rate,
        goodput_per_sec: if seconds > 0.0 {
            counts.good as f64 / seconds
        } else {
            0.0
        },
        meets_slo: finished >= KNEE_MIN_SAMPLES && good_rate >= objective,
        ttft_ms: cell.map_or_else(Summary::default, |c| Summary::of(c.ttft_ms.values())),
        output_speed_tps: cell
            .map_or_else(Summary::default, |c| Summary::of(c.output_tps.values())),
        itl_ms: cell.map_or_else(Summary::default, |c| Summary::of(c.itl_ms.values())),
        e2e_ms: cell.map_or_else(Summary::default, |c| Summary::of(c.e2e_ms.values())),
        error_kinds,
        relay_error_classes: cell.map(|c| c.relay_errors.clone()).unwrap_or_default(),
        output_tokens: counts.tokens.output,
        cost_usd: cost,
        cost_per_1000_calls_usd: per(cost, counts.responses_completed, 1000.0),
        cost_per_million_output_tokens_usd: per(cost, counts.tokens.output, 1e6),
    }
}

impl CompareReport {
    pub fn build(run: &CompareRun, plan: Plan, slos: &relaytop_core::config::slo::Slos) -> Self {
        let mut relays = Vec::new();
        for (r, p) in run.providers.iter().enumerate() {
            let objective = slos.of(&p.name).objective;
            let levels: Vec<LevelResult> = run
                .stages
                .iter()
                .map(|s| level_result(s, r, &p.name, objective))
                .collect();
            let outcomes: Vec<LevelOutcome> = levels
                .iter()
                .map(|l| LevelOutcome {
                    load: l.load,
                    good_rate: l.good_rate,
                    finished: l.completed + l.failed,
                })
                .collect();
            let seed = plan.seed.wrapping_add(r as u64 * 7919);
            let ci = |v: &[f64], k: u64| bootstrap_median(v, RESAMPLES, CONFIDENCE, seed + k);
            let sent = levels.iter().map(|l| l.sent).sum();
            let completed: u64 = levels.iter().map(|l| l.completed).sum();
            let good: u64 = levels.iter().map(|l| l.good).sum();
            let finished: u64 = levels.iter().map(|l| l.completed + l.failed).sum();
            let cost: f64 = levels.iter().map(|l| l.cost_usd).sum();
            let output: u64 = levels.iter().map(|l| l.output_tokens).sum();
            relays.push(RelayResult {
                name: p.name.clone(),
                model: p.model.clone(),
                url: p.url.clone(),
                knee: knee(&outcomes, objective, KNEE_MIN_SAMPLES),
                ttft_median_ms: ci(run.pooled_ttft_ms[r].values(), 1),
                e2e_median_ms: ci(run.pooled_e2e_ms[r].values(), 2),
                output_speed_median_tps: ci(run.pooled_output_tps[r].values(), 3),
                sent,
                completed,
                good_rate: if finished > 0 {
                    good as f64 / finished as f64
                } else {
                    0.0
                },
                cost_usd: cost,
                cost_per_1000_calls_usd: per(cost, completed, 1000.0),
                cost_per_million_output_tokens_usd: per(cost, output, 1e6),
                levels,
            });
        }
        let (ranked, no_samples) = rank(
            &relays
                .iter()
                .map(|r| (r.name.clone(), r.ttft_median_ms))
                .collect::<Vec<_>>(),
        );
        let verdict = verdict(&ranked, &no_samples, &relays, &plan.load);
        CompareReport {
            ranking: Ranking {
                by: "median time to first token over every load level (lower is better), \
                     95 % bootstrap interval"
                    .into(),
                relays: ranked,
                no_samples,
            },
            verdict,
            ended_by: run.ended_by.clone(),
            stopped_early: run.stopped_early,
            plan,
            relays,
            load_seconds: run.load_time.as_secs_f64(),
            started_at: run.started_at.to_rfc3339(),
            recorded_to: run.recorded_to.as_ref().map(|p| p.display().to_string()),
            notes: run.notes.clone(),
        }
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# relaytop compare\n");
        for line in &self.verdict {
            let _ = writeln!(s, "- {line}");
        }
        let _ = writeln!(
            s,
            "\nEnded: {}. Load {:.0} s; SLO: {}.\n",
            self.ended_by, self.load_seconds, self.plan.slo
        );
        let _ = writeln!(s, "## Ranking ({})\n", self.ranking.by);
        let _ = writeln!(
            s,
            "| rank | relay | TTFT p50 ms [95 % CI] | E2E p50 ms [95 % CI] | output tok/s p50 | good | knee ({}) | $ / 1,000 calls | $ / M output tokens |",
            self.plan.load.unit()
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for ranked in &self.ranking.relays {
            let Some(r) = self.relays.iter().find(|r| r.name == ranked.relay) else {
                continue;
            };
            let tie = if ranked.tied_with_above {
                " (not distinguishable from the one above)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "| {}{} | {} | {} | {} | {} | {:.1} % | {} | {} | {} |",
                ranked.rank,
                if ranked.tied_with_above { "=" } else { "" },
                r.name,
                fmt_ci(r.ttft_median_ms.as_ref()) + tie,
                fmt_ci(r.e2e_median_ms.as_ref()),
                r.output_speed_median_tps
                    .map_or("-".into(), |c| format!("{:.0}", c.median)),
                r.good_rate * 100.0,
                r.knee.map_or("none".into(), |k| format!("{k}")),
                money(r.cost_per_1000_calls_usd),
                money(r.cost_per_million_output_tokens_usd),
            );
        }
        for r in &self.relays {
            let _ = writeln!(s, "\n## {} ({}, {})\n", r.name, r.model, r.url);
            let _ = writeln!(
                s,
                "| {} | sent | done | failed | cut | short | over max_tokens | response rate | good | goodput/s | TTFT p50/p90/p99 ms | tok/s p50/p90/p99 | ITL p50/p90/p99 ms | E2E p50/p90/p99 ms | samples | errors | $ / 1,000 calls | $ / M out |",
                self.plan.load.unit()
            );
            let _ = writeln!(s, "|{}", "---|".repeat(19));
            for l in &r.levels {
                let errors = l.errors();
                let _ = writeln!(
                    s,
                    "| {}{} | {} | {} | {} | {} | {} | {} | {:.1} % | {:.1} % | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    l.load,
                    if l.meets_slo { " ✓" } else { "" },
                    l.sent,
                    l.completed,
                    l.failed,
                    l.cut,
                    l.short,
                    l.over_limit,
                    l.response_rate * 100.0,
                    l.good_rate * 100.0,
                    l.goodput_per_sec,
                    q3(&l.ttft_ms, 0),
                    q3(&l.output_speed_tps, 0),
                    q3(&l.itl_ms, 1),
                    q3(&l.e2e_ms, 0),
                    l.ttft_ms.count,
                    if errors.is_empty() {
                        "-".into()
                    } else {
                        errors.join(", ")
                    },
                    money(l.cost_per_1000_calls_usd),
                    money(l.cost_per_million_output_tokens_usd),
                );
            }
        }
        let _ = writeln!(
            s,
            "\nQuantiles: {}. ✓: the level met the SLO.",
            self.plan.quantiles_from
        );
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        if let Some(dir) = &self.recorded_to {
            let _ = writeln!(s, "\nRecorded in `{dir}` (`relaytop replay` plays it).");
        }
        s
    }

    /// The HTML page: the verdict, the charts (inline SVG, read from `dir`), the tables.
    pub fn to_html(&self, charts: &[(String, String)], dir: &Path) -> String {
        let mut s = String::new();
        s.push_str(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>relaytop compare</title>\
             <style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}\
             table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;\
             padding:3px 6px;text-align:right}th{background:#f3f3f3}td:nth-child(2){text-align:left}\
             .charts{display:grid;grid-template-columns:1fr 1fr;gap:12px}.charts figure{margin:0}\
             .charts svg{width:100%;height:auto}</style></head><body>",
        );
        s.push_str("<h1>relaytop compare</h1><ul>");
        for line in &self.verdict {
            let _ = write!(s, "<li>{}</li>", esc(line));
        }
        let _ = write!(
            s,
            "</ul><p>Ended: {}. Load {:.0} s; SLO: {}.</p><div class=\"charts\">",
            esc(&self.ended_by),
            self.load_seconds,
            esc(&self.plan.slo)
        );
        for (stem, title) in charts {
            let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap_or_default();
            let svg = svg
                .find("<svg")
                .map_or(svg.as_str(), |i| &svg[i..])
                .to_owned();
            let _ = write!(
                s,
                "<figure>{svg}<figcaption>{} (<a href=\"{stem}.png\">PNG</a>, <a href=\"{stem}.svg\">SVG</a>)</figcaption></figure>",
                esc(title)
            );
        }
        s.push_str("</div>");
        // The tables: the Markdown's, as HTML.
        let _ = write!(
            s,
            "<h2>Ranking</h2><p>{}</p><table><tr><th>rank</th><th>relay</th><th>TTFT p50 ms [95 % CI]</th><th>E2E p50 ms [95 % CI]</th><th>output tok/s p50</th><th>good</th><th>knee ({})</th><th>$ / 1,000 calls</th><th>$ / M output tokens</th></tr>",
            esc(&self.ranking.by),
            self.plan.load.unit()
        );
        for ranked in &self.ranking.relays {
            let Some(r) = self.relays.iter().find(|r| r.name == ranked.relay) else {
                continue;
            };
            let tie = match (ranked.tied_with_above, ranked.samples_to_decide) {
                (true, Some(n)) => {
                    format!(" — not distinguishable (≈{n} samples each would decide)")
                }
                (true, None) => " — not distinguishable".into(),
                _ => String::new(),
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{:.1} %</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                ranked.rank,
                esc(&r.name),
                fmt_ci(r.ttft_median_ms.as_ref()),
                esc(&tie),
                fmt_ci(r.e2e_median_ms.as_ref()),
                r.output_speed_median_tps
                    .map_or("-".into(), |c| format!("{:.0}", c.median)),
                r.good_rate * 100.0,
                r.knee.map_or("none".into(), |k| format!("{k}")),
                money(r.cost_per_1000_calls_usd),
                money(r.cost_per_million_output_tokens_usd),
            );
        }
        s.push_str("</table>");
        for r in &self.relays {
            let _ = write!(
                s,
                "<h2>{} <small>({}, {})</small></h2><table><tr><th>{}</th><th>sent</th><th>done</th><th>failed</th><th>cut</th><th>short</th><th>good</th><th>goodput/s</th><th>TTFT p50/p90/p99 ms</th><th>tok/s p50/p90/p99</th><th>ITL p50/p90/p99 ms</th><th>E2E p50/p90/p99 ms</th><th>errors</th><th>$ / 1,000 calls</th></tr>",
                esc(&r.name),
                esc(&r.model),
                esc(&r.url),
                self.plan.load.unit()
            );
            for l in &r.levels {
                let errors = l.errors();
                let _ = write!(
                    s,
                    "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} %</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    l.load,
                    if l.meets_slo { " ✓" } else { "" },
                    l.sent,
                    l.completed,
                    l.failed,
                    l.cut,
                    l.short,
                    l.good_rate * 100.0,
                    l.goodput_per_sec,
                    q3(&l.ttft_ms, 0),
                    q3(&l.output_speed_tps, 0),
                    q3(&l.itl_ms, 1),
                    q3(&l.e2e_ms, 0),
                    esc(&errors.join(", ")),
                    money(l.cost_per_1000_calls_usd),
                );
            }
            s.push_str("</table>");
        }
        let _ = write!(
            s,
            "<p>Quantiles: {}. ✓: the level met the SLO.</p>",
            esc(&self.plan.quantiles_from)
        );
        for n in &self.notes {
            let _ = write!(s, "<p>Note: {}</p>", esc(n));
        }
        s.push_str("</body></html>\n");
        s
    }
}

fn verdict(
    ranked: &[Ranked],
    no_samples: &[String],
    relays: &[RelayResult],
    load: &Load,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(best) = ranked.first() {
        let tied: Vec<&Ranked> = ranked.iter().filter(|r| r.rank == best.rank).collect();
        if tied.len() == 1 {
            let next = ranked.get(1);
            out.push(match next {
                Some(n) => format!(
                    "{} is best: median time to first token {:.0} ms against {:.0} ms for {} \
                     ({:.1}× faster; the 95 % intervals do not overlap)",
                    best.relay,
                    best.ci.median,
                    n.ci.median,
                    n.relay,
                    n.ci.median / best.ci.median.max(1e-9)
                ),
                None => format!(
                    "{}: median time to first token {:.0} ms",
                    best.relay, best.ci.median
                ),
            });
        } else {
            let names: Vec<&str> = tied.iter().map(|r| r.relay.as_str()).collect();
            let more = tied
                .iter()
                .filter_map(|r| r.samples_to_decide)
                .max()
                .map_or(
                    "their medians are equal: more samples would not separate them".to_owned(),
                    |n| format!("about {n} samples each would decide it"),
                );
            out.push(format!(
                "not distinguishable: {} (their 95 % intervals on the median time to first \
                 token overlap; {more})",
                names.join(", ")
            ));
        }
    }
    for r in ranked.iter().skip(1) {
        if r.tied_with_above && r.rank != 1 {
            out.push(format!(
                "{} is not distinguishable from the relay ranked above it{}",
                r.relay,
                r.samples_to_decide.map_or(String::new(), |n| format!(
                    " (about {n} samples each would decide it)"
                ))
            ));
        }
    }
    for name in no_samples {
        out.push(format!(
            "{name}: no response with a first token; not ranked"
        ));
    }
    for r in relays {
        out.push(format!(
            "{}: {:.1} % of requests good, knee {}, {} per 1,000 calls",
            r.name,
            r.good_rate * 100.0,
            r.knee
                .map_or("none (even the lowest level missed the SLO)".into(), |k| {
                    load.describe_level(k)
                }),
            money(r.cost_per_1000_calls_usd)
        ));
    }
    if let (Some(cheap), Some(dear)) = (
        relays
            .iter()
            .filter(|r| r.cost_per_1000_calls_usd.is_some())
            .min_by(|a, b| {
                a.cost_per_1000_calls_usd
                    .partial_cmp(&b.cost_per_1000_calls_usd)
                    .unwrap_or(std::cmp::Ordering::Equal)
            }),
        relays
            .iter()
            .filter(|r| r.cost_per_1000_calls_usd.is_some())
            .max_by(|a, b| {
                a.cost_per_1000_calls_usd
                    .partial_cmp(&b.cost_per_1000_calls_usd)
                    .unwrap_or(std::cmp::Ordering::Equal)
            }),
    ) && cheap.name != dear.name
    {
        out.push(format!(
            "cheapest: {} ({} per 1,000 calls against {} for {})",
            cheap.name,
            money(cheap.cost_per_1000_calls_usd),
            money(dear.cost_per_1000_calls_usd),
            dear.name
        ));
    }
    out
}

fn fmt_ci(ci: Option<&MedianCi>) -> String {
    ci.map_or("-".into(), |c| {
        format!(
            "{:.0} [{:.0}–{:.0}] (n={})",
            c.median, c.low, c.high, c.samples
        )
    })
}

fn q3(s: &Summary, digits: usize) -> String {
    if s.count == 0 {
        return "-".into();
    }
    format!("{:.d$} / {:.d$} / {:.d$}", s.p50, s.p90, s.p99, d = digits)
}

pub(super) fn money(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| {
        if x >= 100.0 {
            format!("${x:.0}")
        } else if x >= 1.0 {
            format!("${x:.2}")
        } else {
            format!("${x:.4}")
        }
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
