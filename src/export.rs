//! `relaytop export`: a recording as one row per request (session, provider, model, start,
//! time to first token, total time, tokens, whether they were estimated, cost, outcome), as
//! CSV or JSON, streamed while the recording is replayed as fast as possible.
//!
//! Costs are priced exactly as the metrics price them (`ProviderPricing::cost` of a `cost::Response`), so the rows
//! add up to the report's spend.

use std::collections::HashMap;
use std::io::Write;

use chrono::SecondsFormat;
use serde::Serialize;

use relaytop_core::cost::Response;
use relaytop_core::record::replay::Replay;
use relaytop_core::session::{Completed, EventKind, RequestId, SessionEvent, SessionId};

/// One request of a recording.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestRow {
    pub session: String,
    pub provider: String,
    pub model: String,
    /// The request's number within its session.
    pub request: RequestId,
    /// When it was sent: RFC 3339, UTC, milliseconds.
    pub start: String,
    /// When it was sent, seconds since the run started.
    pub start_s: f64,
    /// Time to first token, milliseconds; none when no text came.
    pub ttft_ms: Option<f64>,
    /// From sending to `done` (or to the failure), milliseconds; none when unfinished.
    pub total_ms: Option<f64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    /// Whether the tokens were estimated (the relay sent no usage).
    pub estimated: bool,
    /// Spend in US $ (tokens and per-call fee); none unless done.
    pub cost_usd: Option<f64>,
    /// `done`, `cut` (ended, or lost its connection, without its terminal mark; or ended
    /// clean but not whole), `failed` or `unfinished` (the recording ends, or the session
    /// moved on, first).
    pub outcome: String,
    /// The finish reason of a done request, why a cut one is cut, the failure of a failed one.
    pub detail: String,
    /// Time to the first answer token (after thinking), milliseconds.
    pub answer_ms: Option<f64>,
    /// Time per output token, milliseconds: `(total - ttft) / (tokens_out - 1)`.
    pub tpot_ms: Option<f64>,
    /// Output speed, tokens per second (1 / TPOT).
    pub output_tps: Option<f64>,
    /// The longest gap between chunks (or before the end), milliseconds.
    pub stall_ms: Option<f64>,
    /// Output tokens relaytop counted in the answer text, when it counted them.
    pub text_tokens: Option<u64>,
    /// A failed request's class as the relay explained it (`account::ErrorClass::slug`).
    pub error_class: Option<String>,
    /// The relay's request id of a failed request, to quote to the station's support.
    pub relay_request_id: Option<String>,
}

/// How rows are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 21] = [
    "session",
    "provider",
    "model",
    "request",
    "start",
    "start_s",
    "ttft_ms",
    "total_ms",
    "tokens_in",
    "tokens_out",
    "estimated",
    "cost_usd",
    "outcome",
    "detail",
    "answer_ms",
    "tpot_ms",
    "output_tps",
    "stall_ms",
    "text_tokens",
    "error_class",
    "relay_request_id",
];

struct Open {
    model: String,
    sent_us: u64,
    ttft_us: Option<u64>,
    /// Its chunks' timing, for its speed and stalls.
    streaming: relaytop_core::metrics::Streaming,
}

/// Plays `replay` from the start to the end and hands every request's row to `each`, in the
/// order requests finish (unfinished ones when the session sends its next request, or at the
/// end). Returns the number of rows.
pub fn for_each_row(
    replay: &mut Replay,
    mut each: impl FnMut(RequestRow) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    replay.seek_to_start(std::time::Duration::ZERO);
    let infos = replay.sessions().to_vec();
    let pricing = replay.pricing().clone();
    let started = replay.started_at();
    let mut open: HashMap<(SessionId, RequestId), Open> = HashMap::new();
    let mut rows = 0u64;
    let row = |session: SessionId, request: RequestId, o: &Open| {
        let info = infos.get(session as usize);
        let start =
            started + chrono::Duration::microseconds(i64::try_from(o.sent_us).unwrap_or(i64::MAX));
        RequestRow {
            session: info.map(|i| i.name.clone()).unwrap_or_default(),
            provider: info.map(|i| i.provider.clone()).unwrap_or_default(),
            model: if o.model.is_empty() {
                info.map(|i| i.model.clone()).unwrap_or_default()
            } else {
                o.model.clone()
            },
            request,
            start: start.to_rfc3339_opts(SecondsFormat::Millis, true),
            start_s: o.sent_us as f64 / 1e6,
            ttft_ms: o.ttft_us.map(ms),
            total_ms: None,
            tokens_in: None,
            tokens_out: None,
            estimated: false,
            cost_usd: None,
            outcome: "unfinished".into(),
            detail: String::new(),
            answer_ms: None,
            tpot_ms: None,
            output_tps: None,
            stall_ms: None,
            text_tokens: None,
            error_class: None,
            relay_request_id: None,
        }
    };
    // A failed request's row waits for the relay's explanation (`RelayError`, reported right
    // after the failure) until the session's next request.
    let mut failed: HashMap<SessionId, RequestRow> = HashMap::new();
    while let Some(SessionEvent {
        session,
        at_us,
        kind,
    }) = replay.next_event()
    {
        match kind {
            EventKind::RequestSent { request, model, .. } => {
                if let Some(r) = failed.remove(&session) {
                    each(r)?;
                    rows += 1;
                }
                // A request still open here was abandoned without a word (a session closed
                // mid-response): it ends unfinished.
                let stale: Vec<RequestId> = open
                    .keys()
                    .filter(|(s, _)| *s == session)
                    .map(|(_, r)| *r)
                    .collect();
                for r in stale {
                    if let Some(o) = open.remove(&(session, r)) {
                        each(row(session, r, &o))?;
                        rows += 1;
                    }
                }
                let mut streaming = relaytop_core::metrics::Streaming::default();
                streaming.start(request);
                open.insert(
                    (session, request),
                    Open {
                        model,
                        sent_us: at_us,
                        ttft_us: None,
                        streaming,
                    },
                );
            }
            EventKind::Chunk { request, text } => {
                if let Some(o) = open.get_mut(&(session, request)) {
                    o.streaming.chunk(request, at_us, text.len() as u64);
                }
            }
            EventKind::FirstToken { request, ttft_us } => {
                if let Some(o) = open.get_mut(&(session, request)) {
                    o.ttft_us.get_or_insert(ttft_us);
                }
            }
            EventKind::Done(done) => {
                let Completed {
                    request,
                    model,
                    ttft_us,
                    answer_us,
                    total_us,
                    tokens,
                    reported_cost_usd,
                    finish_reason,
                    bytes,
                    cut,
                    text_tokens,
                    ..
                } = *done;
                let Some(mut o) = open.remove(&(session, request)) else {
                    continue;
                };
                if !model.is_empty() {
                    o.model = model;
                }
                o.ttft_us = ttft_us.or(o.ttft_us);
                let mut r = row(session, request, &o);
                // The model the request went out for when the `Done` names none (`row`).
                let cost = pricing.provider(&r.provider).cost(&Response {
                    model: &r.model,
                    tokens: &tokens,
                    reported_cost_usd,
                });
                r.total_ms = Some(ms(total_us));
                r.tokens_in = Some(tokens.input);
                r.tokens_out = Some(tokens.output);
                r.estimated = tokens.estimated;
                // Nano-dollars, as the metrics add them up.
                r.cost_usd = Some((cost.total_usd * 1e9).round() / 1e9);
                let f = o
                    .streaming
                    .figures(request, at_us, ttft_us, answer_us, total_us, &tokens, bytes);
                r.answer_ms = f.ttfa_us.map(ms);
                r.tpot_ms = f.tpot_us.map(ms);
                r.output_tps = f.tpot_us.map(|t| {
                    (relaytop_core::metrics::tokens_per_second(t) * 1000.0).round() / 1000.0
                });
                r.stall_ms = f.stall_us.map(ms);
                r.text_tokens = text_tokens;
                match cut {
                    Some(why) => {
                        r.outcome = "cut".into();
                        r.detail = why;
                    }
                    None => {
                        r.outcome = "done".into();
                        r.detail = finish_reason.unwrap_or_default();
                    }
                }
                each(r)?;
                rows += 1;
            }
            EventKind::RequestFailed {
                request,
                kind,
                reason,
            } => {
                let Some(o) = open.remove(&(session, request)) else {
                    continue;
                };
                let mut r = row(session, request, &o);
                r.total_ms = Some(ms(at_us.saturating_sub(o.sent_us)));
                r.outcome = if kind == relaytop_core::session::ErrorKind::Cut {
                    "cut"
                } else {
                    "failed"
                }
                .into();
                r.detail = format!("{}: {reason}", kind.label());
                if let Some(earlier) = failed.insert(session, r) {
                    each(earlier)?;
                    rows += 1;
                }
            }
            EventKind::RelayError(error) => {
                let explained = failed
                    .get(&session)
                    .is_some_and(|r| error.request == Some(r.request));
                if let Some(mut r) = explained.then(|| failed.remove(&session)).flatten() {
                    r.error_class = Some(error.class.slug().to_owned());
                    r.relay_request_id = error.relay_request_id.clone();
                    each(r)?;
                    rows += 1;
                }
            }
            _ => {}
        }
    }
    let mut waiting: Vec<RequestRow> = failed.into_values().collect();
    waiting.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    for r in waiting {
        each(r)?;
        rows += 1;
    }
    let mut rest: Vec<((SessionId, RequestId), Open)> = open.into_iter().collect();
    rest.sort_by_key(|(_, o)| o.sent_us);
    for ((session, request), o) in rest {
        each(row(session, request, &o))?;
        rows += 1;
    }
    Ok(rows)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Writes every request of `replay` to `out` as CSV (a header row, then one row a request) or
/// as a JSON array. Returns the number of rows.
pub fn export(
    replay: &mut Replay,
    format: ExportFormat,
    out: &mut dyn Write,
) -> std::io::Result<u64> {
    replay.play_forward_only();
    // The rows are this module's own fold; the replay's metrics are never read.
    replay.fold_nothing();
    match format {
        ExportFormat::Csv => {
            writeln!(out, "{}", CSV_COLUMNS.join(","))?;
            let n = for_each_row(replay, |r| {
                let line = csv_record(&r);
                out.write_all(line.as_bytes())
            })?;
            out.flush()?;
            Ok(n)
        }
        ExportFormat::Json => {
            out.write_all(b"[")?;
            let mut first = true;
            let n = for_each_row(replay, |r| {
                out.write_all(if first { b"\n  " } else { b",\n  " })?;
                first = false;
                serde_json::to_writer(&mut *out, &r).map_err(std::io::Error::other)
            })?;
            out.write_all(if n == 0 { b"]\n" } else { b"\n]\n" })?;
            out.flush()?;
            Ok(n)
        }
    }
}

/// One CSV line (RFC 4180: fields with a comma, quote or line break are quoted, quotes
/// doubled), ending in `\n`.
pub fn csv_record(r: &RequestRow) -> String {
    let opt_f =
        |x: Option<f64>, decimals: usize| x.map_or(String::new(), |v| format!("{v:.decimals$}"));
    let opt_u = |x: Option<u64>| x.map_or(String::new(), |v| v.to_string());
    let fields = [
        csv_field(&r.session),
        csv_field(&r.provider),
        csv_field(&r.model),
        r.request.to_string(),
        csv_field(&r.start),
        format!("{:.6}", r.start_s),
        opt_f(r.ttft_ms, 3),
        opt_f(r.total_ms, 3),
        opt_u(r.tokens_in),
        opt_u(r.tokens_out),
        r.estimated.to_string(),
        opt_f(r.cost_usd, 9),
        csv_field(&r.outcome),
        csv_field(&r.detail),
        opt_f(r.answer_ms, 3),
        opt_f(r.tpot_ms, 3),
        opt_f(r.output_tps, 3),
        opt_f(r.stall_ms, 3),
        opt_u(r.text_tokens),
        csv_field(r.error_class.as_deref().unwrap_or_default()),
        csv_field(r.relay_request_id.as_deref().unwrap_or_default()),
    ];
    let mut line = fields.join(",");
    line.push('\n');
    line
}

/// A CSV field, quoted when it must be.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
    }
}
