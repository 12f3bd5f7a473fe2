//! The fleet view's source: a PromQL HTTP client (`GET /api/v1/query`, instant queries) and
//! what the fleet sees, assembled from its answers: one row per location × relay (health
//! and cost) and the alerts firing in the fleet.
//!
//! The figures mean what relaytop's own do (`crate::fleet::rules::figure_expr` writes them):
//! rates over the view's window, quantiles from the exported histograms. `Fleet::assemble`
//! is pure over the answers (tested against recorded answers of a real Prometheus,
//! tests/fixtures/prometheus/); `Client::fleet` asks every query at once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::alert::figure::{Figure, Quantile};

/// One sample of an instant vector: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What a PromQL query can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("Prometheus refused the query ({kind}): {message}")]
    Query { kind: String, message: String },
    #[error("cannot read Prometheus' answer: {0}")]
    Answer(String),
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Reads an `/api/v1/query` answer (JSON): its samples (a scalar is one sample without
/// labels). NaN and infinities are kept as they are (`NaN` is a quantile without samples).
pub fn parse_answer(body: &[u8]) -> Result<Vec<Sample>, PromError> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| PromError::Answer(e.to_string()))?;
    if answer.status != "success" {
        return Err(PromError::Query {
            kind: answer.error_type.unwrap_or_else(|| "error".into()),
            message: answer.error.unwrap_or_default(),
        });
    }
    let data = answer
        .data
        .ok_or_else(|| PromError::Answer("no data".into()))?;
    let number = |s: &str| match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap_or(f64::NAN),
    };
    match data.result_type.as_str() {
        "vector" => {
            let items: Vec<VectorItem> = serde_json::from_value(data.result)
                .map_err(|e| PromError::Answer(e.to_string()))?;
            Ok(items
                .into_iter()
                .map(|i| Sample {
                    labels: i.metric,
                    value: number(&i.value.1),
                })
                .collect())
        }
        "scalar" => {
            let (_, v): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| PromError::Answer(e.to_string()))?;
            Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: number(&v),
            }])
        }
        other => Err(PromError::Answer(format!(
            "a {other} answer where an instant vector was asked for"
        ))),
    }
}

/// A Prometheus server's HTTP API.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Where `fleet` writes each answer as it came (`<name>.json`): the test fixtures.
    record_to: Option<std::path::PathBuf>,
}

impl Client {
    /// A client of the server at `base` (`http://HOST:9090`, with or without a path prefix).
    pub fn new(base: &str) -> Result<Client, PromError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| PromError::Unreachable {
                url: base.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
            record_to: None,
        })
    }

    /// Writes each answer `fleet` gets to `dir/<query name>.json` (recording the fixtures of
    /// tests/it/fleet.rs: `RELAYTOP_RECORD_PROMQL=DIR relaytop --prometheus URL`).
    pub fn recording_to(mut self, dir: std::path::PathBuf) -> Client {
        self.record_to = Some(dir);
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// An instant query, now.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PromError> {
        self.query_as(promql, None).await
    }

    async fn query_as(&self, promql: &str, name: Option<&str>) -> Result<Vec<Sample>, PromError> {
        let url = format!("{}/api/v1/query", self.base);
        let unreachable = |e: reqwest::Error| PromError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let response = self
            .http
            .get(&url)
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if let (Some(dir), Some(name)) = (&self.record_to, name)
            && let Err(e) = std::fs::write(dir.join(format!("{name}.json")), &body)
        {
            tracing::warn!("cannot record the answer to {name}: {e}");
        }
        // Prometheus answers 400 and 422 with a JSON error that says more than the status.
        match parse_answer(&body) {
            Err(PromError::Answer(message)) if !status.is_success() => Err(PromError::Http {
                status: status.as_u16(),
                message: format!(
                    "{message}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            }),
            other => other,
        }
    }

    /// Every query of the fleet view over `window` (`5m`), asked at once, assembled.
    pub async fn fleet(&self, window: &str) -> Result<Fleet, PromError> {
        let queries = queries(window);
        let answers = futures_util::future::join_all(
            queries
                .iter()
                .map(|(name, promql)| self.query_as(promql, Some(*name))),
        )
        .await;
        let mut named = Vec::new();
        for ((name, _), answer) in queries.iter().zip(answers) {
            named.push((*name, answer?));
        }
        Ok(Fleet::assemble(&named))
    }
}

/// The labels the fleet is split by.
const BY: &str = "location, provider";

/// The fleet view's queries over a window, by name: `(name, PromQL)`.
pub fn queries(window: &str) -> Vec<(&'static str, String)> {
    let w = Some(format!("[{window}]"));
    let f = |figure| super::rules::figure_expr(figure, BY, "", &w).unwrap_or_default();
    vec![
        (
            "sessions",
            format!("count by ({BY}) (relaytop_session_info)"),
        ),
        ("sessions_down", f(Figure::SessionsDown)),
        (
            "requests_per_s",
            format!("sum by ({BY}) (rate(relaytop_requests_total[{window}]))"),
        ),
        ("ttft_p50_ms", f(Figure::Ttft(Quantile::P50))),
        ("ttft_p99_ms", f(Figure::Ttft(Quantile::P99))),
        ("e2e_p99_ms", f(Figure::E2e(Quantile::P99))),
        ("output_speed_tps", f(Figure::OutputSpeed)),
        ("error_rate_pct", f(Figure::ErrorRate)),
        ("drop_rate_pct", f(Figure::DropRate)),
        ("goodput_pct", f(Figure::Goodput)),
        (
            "cost_usd",
            format!("sum by ({BY}) (relaytop_cost_usd_total)"),
        ),
        (
            "cost_usd_per_hour",
            format!("sum by ({BY}) (rate(relaytop_cost_usd_total[{window}])) * 3600"),
        ),
        (
            "balance_usd",
            format!("min by ({BY}) (relaytop_account_balance_usd)"),
        ),
        ("agent_alerts", "relaytop_alert_state == 2".to_owned()),
        (
            "prometheus_alerts",
            "ALERTS{alertstate=\"firing\"}".to_owned(),
        ),
        // An agent Prometheus cannot scrape has no rows: it is said as an alert.
        ("targets_down", "up == 0".to_owned()),
    ]
}

/// One location × relay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetRow {
    pub location: String,
    pub provider: String,
    pub sessions: u64,
    pub sessions_down: u64,
    pub requests_per_s: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub output_speed_tps: Option<f64>,
    pub error_rate_pct: Option<f64>,
    pub drop_rate_pct: Option<f64>,
    pub goodput_pct: Option<f64>,
    pub cost_usd: Option<f64>,
    pub cost_usd_per_hour: Option<f64>,
    pub balance_usd: Option<f64>,
}

/// An alert firing somewhere in the fleet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FleetAlert {
    pub name: String,
    pub severity: String,
    pub location: String,
    /// What it is about: `provider:NAME`, `all`…
    pub scope: String,
    /// `prometheus` (the generated rules) or `agent` (an agent's own rule engine).
    pub source: &'static str,
}

/// What the fleet sees now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    /// By location, then relay.
    pub rows: Vec<FleetRow>,
    pub alerts: Vec<FleetAlert>,
}

impl Fleet {
    /// The fleet from the answers to `queries` (by name; a missing one leaves its column
    /// empty).
    pub fn assemble(answers: &[(&str, Vec<Sample>)]) -> Fleet {
        let mut rows: BTreeMap<(String, String), FleetRow> = BTreeMap::new();
        let key = |s: &Sample| {
            (
                s.labels.get("location").cloned().unwrap_or_default(),
                s.labels.get("provider").cloned().unwrap_or_default(),
            )
        };
        let mut alerts = Vec::new();
        for (name, samples) in answers {
            for s in samples {
                match *name {
                    "targets_down" => {
                        let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
                        alerts.push(FleetAlert {
                            name: "target down".into(),
                            severity: "critical".into(),
                            location: l("location"),
                            scope: format!("{} {}", l("job"), l("instance")),
                            source: "prometheus",
                        });
                        continue;
                    }
                    "agent_alerts" | "prometheus_alerts" => {
                        let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
                        let scope = if *name == "agent_alerts" {
                            l("scope")
                        } else {
                            ["provider", "model", "session"]
                                .iter()
                                .find_map(|k| s.labels.get(*k).map(|v| format!("{k}:{v}")))
                                .unwrap_or_else(|| "all".into())
                        };
                        alerts.push(FleetAlert {
                            name: if *name == "agent_alerts" {
                                l("alert")
                            } else {
                                l("alertname")
                            },
                            severity: l("severity"),
                            location: l("location"),
                            scope,
                            source: if *name == "agent_alerts" {
                                "agent"
                            } else {
                                "prometheus"
                            },
                        });
                        continue;
                    }
                    _ => {}
                }
                let (location, provider) = key(s);
                if provider.is_empty() {
                    continue;
                }
                let row = rows
                    .entry((location.clone(), provider.clone()))
                    .or_insert_with(|| FleetRow {
                        location,
                        provider,
                        ..FleetRow::default()
                    });
                let v = s.value.is_finite().then_some(s.value);
                match *name {
                    "sessions" => row.sessions = v.unwrap_or(0.0) as u64,
                    "sessions_down" => row.sessions_down = v.unwrap_or(0.0) as u64,
                    "requests_per_s" => row.requests_per_s = v,
                    "ttft_p50_ms" => row.ttft_p50_ms = v,
                    "ttft_p99_ms" => row.ttft_p99_ms = v,
                    "e2e_p99_ms" => row.e2e_p99_ms = v,
                    "output_speed_tps" => row.output_speed_tps = v,
                    "error_rate_pct" => row.error_rate_pct = v,
                    "drop_rate_pct" => row.drop_rate_pct = v,
                    "goodput_pct" => row.goodput_pct = v,
                    "cost_usd" => row.cost_usd = v,
                    "cost_usd_per_hour" => row.cost_usd_per_hour = v,
                    "balance_usd" => row.balance_usd = v,
                    _ => {}
                }
            }
        }
        alerts.sort();
        alerts.dedup();
        Fleet {
            rows: rows.into_values().collect(),
            alerts,
        }
    }

    /// The fleet as text (`relaytop --prometheus URL` off a terminal): a row per location ×
    /// relay, then the alerts firing.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let n = |v: Option<f64>, d: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.d$}"));
        let mut out = format!(
            "{:<14} {:<14} {:>5} {:>7} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8} {:>10} {:>10}\n",
            "location",
            "relay",
            "up",
            "req/s",
            "ttft_p50",
            "ttft_p99",
            "e2e_p99",
            "tok/s",
            "err%",
            "drop%",
            "goodput%",
            "spend$",
            "spend$/h"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:<14} {:<14} {:>5} {:>7} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8} {:>10} {:>10}",
                r.location,
                r.provider,
                format!(
                    "{}/{}",
                    r.sessions.saturating_sub(r.sessions_down),
                    r.sessions
                ),
                n(r.requests_per_s, 2),
                n(r.ttft_p50_ms, 0),
                n(r.ttft_p99_ms, 0),
                n(r.e2e_p99_ms, 0),
                n(r.output_speed_tps, 1),
                n(r.error_rate_pct, 1),
                n(r.drop_rate_pct, 1),
                n(r.goodput_pct, 1),
                n(r.cost_usd, 4),
                n(r.cost_usd_per_hour, 4),
            );
        }
        let _ = writeln!(out, "alerts firing: {}", self.alerts.len());
        for a in &self.alerts {
            let _ = writeln!(
                out,
                "  {} {} at {} ({}, {})",
                a.severity, a.name, a.location, a.scope, a.source
            );
        }
        out
    }

    /// The locations seen, in order.
    pub fn locations(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.rows.iter().map(|r| r.location.as_str()).collect();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_answer_reads_its_labels_and_values_nan_included() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"location":"sg","provider":"legacy"},"value":[1765000000.1,"812.5"]},
            {"metric":{"location":"fra","provider":"legacy"},"value":[1765000000.1,"NaN"]}]}}"#;
        let samples = parse_answer(body).expect("parse");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].labels["location"], "sg");
        assert!((samples[0].value - 812.5).abs() < 1e-9);
        assert!(samples[1].value.is_nan());
    }

    #[test]
    fn an_error_answer_says_what_prometheus_said() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let e = parse_answer(body).expect_err("error");
        assert_eq!(
            e.to_string(),
            "Prometheus refused the query (bad_data): parse error at char 3"
        );
    }

    #[test]
    fn a_target_prometheus_cannot_scrape_is_an_alert() {
        let down = Sample {
            labels: [("job", "relaytop"), ("instance", "probe-fra:9464")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            value: 0.0,
        };
        let fleet = Fleet::assemble(&[("targets_down", vec![down])]);
        assert!(fleet.rows.is_empty());
        assert_eq!(fleet.alerts[0].name, "target down");
        assert_eq!(fleet.alerts[0].scope, "relaytop probe-fra:9464");
    }

    #[test]
    fn rows_are_by_location_and_relay_and_nan_is_no_value() {
        let s = |loc: &str, v: f64| Sample {
            labels: [("location", loc), ("provider", "legacy")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            value: v,
        };
        let fleet = Fleet::assemble(&[
            ("sessions", vec![s("sg", 2.0), s("fra", 3.0)]),
            ("ttft_p99_ms", vec![s("sg", f64::NAN), s("fra", 900.0)]),
        ]);
        assert_eq!(fleet.locations(), vec!["fra", "sg"]);
        assert_eq!(fleet.rows[0].sessions, 3);
        assert_eq!(fleet.rows[0].ttft_p99_ms, Some(900.0));
        assert_eq!(fleet.rows[1].ttft_p99_ms, None);
    }
}
