//! Tests of the serving figures: output speed, inter-token latency, stalls, cut streams,
//! goodput, response rate, honest drop and error rates and the usage audit, from event
//! sequences whose timing is known exactly.

use super::*;
use crate::config::slo::Slo;
use crate::session::{Completed, ErrorKind, EventKind, Protocol, RequestId, SessionState, Tokens};

const MS: u64 = 1_000;
const S: u64 = 1_000_000;

fn info(id: SessionId, provider: &str) -> SessionInfo {
    SessionInfo {
        id,
        name: format!("{provider}-{id}"),
        provider: provider.to_string(),
        model: "gpt-4.1".to_string(),
        protocol: Protocol::OpenaiSse,
        url: "http://127.0.0.1:9/v1/chat/completions".to_string(),
        workload: "probe".to_string(),
    }
}

fn ev(at_us: u64, kind: EventKind) -> SessionEvent {
    SessionEvent {
        session: 0,
        at_us,
        kind,
    }
}

/// A stream in the timing of a known server: sent at `at`, first token after `ttft`, then
/// `chunks` one-token chunks `gap` apart, one of them (`stall_at`) `stall` late, `done`
/// `tail` after the last chunk with `output` tokens reported (and `counted` in the text).
#[allow(clippy::too_many_arguments)]
fn stream(
    out: &mut Vec<SessionEvent>,
    request: RequestId,
    at: u64,
    ttft: u64,
    chunks: u64,
    gap: u64,
    stall: Option<(u64, u64)>,
    output: u64,
    cut: Option<&str>,
) -> u64 {
    out.push(ev(
        at,
        EventKind::RequestSent {
            request,
            model: "gpt-4.1".into(),
            prompt_tokens_estimate: 10,
        },
    ));
    let mut t = at + ttft;
    out.push(ev(
        t,
        EventKind::FirstToken {
            request,
            ttft_us: ttft,
        },
    ));
    for i in 0..chunks {
        if i > 0 {
            t += gap;
            if let Some((at_chunk, extra)) = stall
                && at_chunk == i
            {
                t += extra;
            }
        }
        out.push(ev(
            t,
            EventKind::Chunk {
                request,
                text: " tok".into(),
            },
        ));
    }
    t += gap;
    out.push(ev(
        t,
        EventKind::Done(Box::new(Completed {
            request,
            model: "gpt-4.1".into(),
            ttft_us: Some(ttft),
            answer_us: None,
            total_us: t - at,
            tokens: Tokens {
                input: 10,
                output,
                ..Tokens::default()
            },
            reported_cost_usd: None,
            finish_reason: Some("stop".into()),
            chunks: chunks as u32,
            bytes: 4 * chunks,
            cut: cut.map(str::to_owned),
            text_tokens: Some(chunks),
        })),
    ));
    t
}

fn fold(events: &[SessionEvent], slo: Slo) -> Metrics {
    let mut m = Metrics::new(vec![info(0, "relay")], Default::default()).with_slos(
        crate::config::slo::Slos {
            default: slo,
            providers: Default::default(),
        },
    );
    for e in events {
        m.apply(e);
    }
    m
}

fn within(got: u64, want: u64, what: &str) {
    // Within 1 ms or 1 %, as the issue asks; the HDR histograms give far better.
    let tolerance = (want / 100).max(MS);
    assert!(
        got.abs_diff(want) <= tolerance,
        "{what}: got {got} µs, want {want} µs"
    );
}

#[test]
fn output_speed_gaps_and_the_longest_stall_are_those_of_the_server() {
    // TTFT 300 ms, 100 one-token chunks 20 ms apart, one stall of 1.5 s before chunk 50.
    let mut evs = vec![ev(
        0,
        EventKind::Connected {
            attempt: 1,
            handshake_us: MS,
        },
    )];
    let end = stream(
        &mut evs,
        1,
        S,
        300 * MS,
        100,
        20 * MS,
        Some((50, 1500 * MS)),
        100,
        None,
    );
    let m = fold(&evs, Slo::default());
    let p = &m.providers()[0];
    let q = |metric| p.latency(metric, Window::Run, end);
    // E2E = 300 ms + 99 gaps + stall + the gap to done = 300 + 2000 + 1500 ms.
    assert_eq!(q(LatencyMetric::ResponseTime).max, 3_800 * MS);
    // TPOT = (E2E - TTFT) / (100 - 1).
    within(
        q(LatencyMetric::TimePerOutputToken).p50,
        3_500 * MS / 99,
        "TPOT",
    );
    let itl = q(LatencyMetric::InterTokenLatency);
    assert_eq!(itl.count, 99, "one gap per chunk after the first");
    within(itl.p50, 20 * MS, "ITL p50");
    within(itl.p90, 20 * MS, "ITL p90");
    within(
        itl.p99,
        1_520 * MS,
        "ITL p99: of 99 gaps, the top one is the stall",
    );
    within(itl.max, 1_520 * MS, "ITL max");
    within(
        q(LatencyMetric::LongestStall).max,
        1_520 * MS,
        "longest stall",
    );
    assert_eq!(p.counts.longest_stall_us, 1_520 * MS);
    within(
        q(LatencyMetric::TimeToFirstAnswer).p50,
        300 * MS,
        "no thinking: the first answer token is the first token",
    );
    let s = m.session(0).unwrap();
    let sq = s
        .latency(LatencyMetric::InterTokenLatency, Window::Run, end)
        .unwrap();
    assert_eq!(sq.count, 99, "sessions keep the same figures");
}

#[test]
fn a_chunk_of_k_tokens_counts_as_k_gaps_of_gap_over_k() {
    // 10 chunks of 4 tokens (16 bytes each, 40 tokens), 80 ms apart: 9 gaps of 80 ms, each
    // 4 gaps of 20 ms.
    let mut evs = Vec::new();
    let mut t = S;
    evs.push(ev(
        0,
        EventKind::RequestSent {
            request: 1,
            model: "m".into(),
            prompt_tokens_estimate: 1,
        },
    ));
    for _ in 0..10 {
        t += 80 * MS;
        evs.push(ev(
            t,
            EventKind::Chunk {
                request: 1,
                text: "abcdefghijklmnop".into(),
            },
        ));
    }
    evs.push(ev(
        t,
        EventKind::Done(Box::new(Completed {
            request: 1,
            model: "m".into(),
            ttft_us: Some(S + 80 * MS),
            answer_us: None,
            total_us: t,
            tokens: Tokens {
                input: 1,
                output: 40,
                ..Tokens::default()
            },
            reported_cost_usd: None,
            finish_reason: Some("stop".into()),
            chunks: 10,
            bytes: 160,
            cut: None,
            text_tokens: None,
        })),
    ));
    let m = fold(&evs, Slo::default());
    let itl = m.providers()[0].latency(LatencyMetric::InterTokenLatency, Window::Run, t);
    assert_eq!(itl.count, 36);
    within(itl.p50, 20 * MS, "gap / k");
    within(itl.max, 20 * MS, "gap / k");
}

#[test]
fn cut_streams_are_their_own_outcome_and_billed() {
    let mut evs = Vec::new();
    let mut t = stream(&mut evs, 1, 0, 100 * MS, 5, 10 * MS, None, 5, None);
    // new-api after an upstream timeout: usage and [DONE], no finish reason.
    t = stream(
        &mut evs,
        2,
        t + S,
        100 * MS,
        5,
        10 * MS,
        None,
        5,
        Some("no finish_reason"),
    );
    // A stream that ended without its terminal mark, and a network failure before any text.
    evs.push(ev(
        t + S,
        EventKind::RequestSent {
            request: 3,
            model: "gpt-4.1".into(),
            prompt_tokens_estimate: 1,
        },
    ));
    evs.push(ev(
        t + 2 * S,
        EventKind::RequestFailed {
            request: 3,
            kind: ErrorKind::Cut,
            reason: "the stream ended before the response finished".into(),
        },
    ));
    evs.push(ev(
        t + 3 * S,
        EventKind::RequestSent {
            request: 4,
            model: "gpt-4.1".into(),
            prompt_tokens_estimate: 1,
        },
    ));
    evs.push(ev(
        t + 4 * S,
        EventKind::RequestFailed {
            request: 4,
            kind: ErrorKind::Network,
            reason: "connection reset".into(),
        },
    ));
    let m = fold(&evs, Slo::default());
    let c = &m.providers()[0].counts;
    assert_eq!(
        (c.responses_completed, c.responses_cut, c.requests_failed),
        (1, 2, 1)
    );
    assert_eq!(c.finished(), 4);
    assert_eq!(c.tokens.output, 10, "a cut response's tokens are billed");
    assert_eq!(c.responded, 2, "the two that streamed text");
    assert!((c.response_rate() - 0.5).abs() < 1e-9);
    assert!((c.cut_rate() - 0.5).abs() < 1e-9);
    assert!(
        (c.error_rate() - 0.25).abs() < 1e-9,
        "cuts are apart from errors"
    );
    let r = m.providers()[0].rates(Window::OneMinute, t + 4 * S);
    assert_eq!((r.cut, r.responses, r.failed), (2, 1, 1));
}

#[test]
fn goodput_counts_requests_that_met_every_threshold() {
    let slo = Slo {
        ttft_us: Some(500 * MS),
        tpot_us: Some(30 * MS),
        e2e_us: None,
        objective: 0.99,
    };
    let mut evs = Vec::new();
    // Good: TTFT 200 ms, 20 ms a token.
    let t = stream(&mut evs, 1, 0, 200 * MS, 10, 20 * MS, None, 10, None);
    // Slow first token.
    let t = stream(&mut evs, 2, t, 800 * MS, 10, 20 * MS, None, 10, None);
    // Slow tokens.
    let t = stream(&mut evs, 3, t, 200 * MS, 10, 50 * MS, None, 10, None);
    // Fast but cut.
    let t = stream(
        &mut evs,
        4,
        t,
        200 * MS,
        10,
        20 * MS,
        None,
        10,
        Some("incomplete"),
    );
    let m = fold(&evs, slo);
    let p = &m.providers()[0];
    assert_eq!(p.counts.good, 1);
    assert!((p.counts.good_rate() - 0.25).abs() < 1e-9);
    let r = p.rates(Window::Run, t);
    assert_eq!(r.good, 1);
    assert!((r.goodput_per_sec - 1.0 / (t as f64 / 1e6)).abs() < 1e-9);
}

#[test]
fn drops_are_per_response_and_per_connection_hour() {
    // One connection up for an hour, 100 responses, 3 drops (each reconnecting at once).
    let mut evs = vec![ev(
        0,
        EventKind::Connected {
            attempt: 1,
            handshake_us: MS,
        },
    )];
    let mut t = S;
    for r in 1..=100 {
        t = stream(&mut evs, r, t, 10 * MS, 2, MS, None, 2, None) + 30 * S;
        if r % 33 == 0 {
            evs.push(ev(
                t,
                EventKind::Closed {
                    code: 1006,
                    reason: String::new(),
                    requested: false,
                },
            ));
            evs.push(ev(
                t,
                EventKind::Connected {
                    attempt: 2,
                    handshake_us: MS,
                },
            ));
        }
    }
    let hour = 3600 * S;
    evs.push(ev(hour, EventKind::State(SessionState::Open)));
    let m = fold(&evs, Slo::default());
    let p = &m.providers()[0];
    let r = p.rates(Window::Run, hour);
    assert_eq!(r.drops, 3);
    assert!((r.drops_per_100_responses - 3.0).abs() < 1e-9, "{r:?}");
    assert!((r.connection_hours - 1.0).abs() < 1e-6, "{r:?}");
    let per_drop = r.connection_hours_per_drop.unwrap();
    assert!((per_drop - 1.0 / 3.0).abs() < 1e-6, "{per_drop}");
    assert!(
        r.drop_rate > 0.5,
        "the old per-connection figure tends to 100 %"
    );
    assert_eq!(m.session(0).unwrap().connected_us(hour), hour);
}

#[test]
fn refused_connects_are_errors() {
    let mut evs = Vec::new();
    for i in 0..4 {
        evs.push(ev(
            i * S,
            EventKind::State(SessionState::Connecting { attempt: 1 }),
        ));
        evs.push(ev(
            i * S + MS,
            EventKind::Error {
                kind: ErrorKind::Auth,
                message: "upgrade answered 401".into(),
                retryable: false,
                retry_after_ms: None,
            },
        ));
    }
    let m = fold(&evs, Slo::default());
    let c = &m.providers()[0].counts;
    assert_eq!(c.connects_refused, 4);
    assert_eq!(
        c.error_rate(),
        1.0,
        "a relay refusing every upgrade: 100 % errors"
    );
    let r = m.providers()[0].rates(Window::OneMinute, 4 * S);
    assert_eq!((r.refused, r.error_rate), (4, 1.0));
}

#[test]
fn the_usage_audit_catches_a_relay_that_reports_more_than_it_sent() {
    let mut honest = Vec::new();
    let mut t = 0;
    for r in 1..=10 {
        t = stream(&mut honest, r, t, 10 * MS, 20, MS, None, 20, None) + S;
    }
    let m = fold(&honest, Slo::default());
    let p = &m.providers()[0];
    assert_eq!(p.counts.usage_audit.responses, 10);
    assert_eq!(p.counts.usage_audit.excess(), Some(0.0));
    assert!(!m.overbills(p));

    let mut inflated = Vec::new();
    let mut t = 0;
    for r in 1..=10 {
        t = stream(&mut inflated, r, t, 10 * MS, 20, MS, None, 30, None) + S;
    }
    let m = fold(&inflated, Slo::default());
    let p = &m.providers()[0];
    assert_eq!(p.counts.usage_audit.excess(), Some(0.5));
    assert!(m.overbills(p), "1.5x the text's tokens is caught");
}
