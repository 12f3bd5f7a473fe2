//! Tests of the metrics fold: hand-built event sequences with explicit times in, figures out.

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, LogNormal};

use super::*;
use crate::cost::ProviderPricing;
use crate::session::{Completed, ErrorKind, EventKind, Protocol, RequestId, SessionState, Tokens};

const MS: u64 = 1_000;
const S: u64 = 1_000_000;

fn info(id: SessionId, provider: &str, model: &str) -> SessionInfo {
    SessionInfo {
        id,
        name: format!("{provider}-{id}"),
        provider: provider.to_string(),
        model: model.to_string(),
        protocol: Protocol::RelayV1,
        url: "ws://127.0.0.1:9/v1/stream".to_string(),
        workload: "probe".to_string(),
    }
}

fn ev(session: SessionId, at_us: u64, kind: EventKind) -> SessionEvent {
    SessionEvent {
        session,
        at_us,
        kind,
    }
}

fn connected(attempt: u32) -> EventKind {
    EventKind::Connected {
        attempt,
        handshake_us: 20 * MS,
    }
}

fn closed(code: u16, requested: bool) -> EventKind {
    EventKind::Closed {
        code,
        reason: String::new(),
        requested,
    }
}

fn sent(request: RequestId) -> EventKind {
    EventKind::RequestSent {
        request,
        model: "gpt-4.1".into(),
        prompt_tokens_estimate: 10,
    }
}

fn done(request: RequestId, ttft_us: Option<u64>, total_us: u64, tokens: Tokens) -> EventKind {
    EventKind::Done(Box::new(Completed {
        request,
        model: "gpt-4.1".into(),
        ttft_us,
        answer_us: None,
        total_us,
        tokens,
        reported_cost_usd: None,
        finish_reason: Some("stop".into()),
        chunks: 3,
        bytes: 12,
        cut: None,
        text_tokens: None,
    }))
}

fn tokens(input: u64, output: u64, estimated: bool) -> Tokens {
    Tokens {
        input,
        output,
        cached_input: 0,
        cache_write_input: 0,
        reasoning_output: 0,
        estimated,
    }
}

/// One request, start to finish, at `at`: sent, first token, two chunks, done.
fn request(
    out: &mut Vec<SessionEvent>,
    session: SessionId,
    at: u64,
    request: RequestId,
    ttft: u64,
    total: u64,
) {
    out.push(ev(session, at, sent(request)));
    out.push(ev(
        session,
        at + ttft,
        EventKind::FirstToken {
            request,
            ttft_us: ttft,
        },
    ));
    for text in ["Hel", "lo"] {
        out.push(ev(
            session,
            at + ttft,
            EventKind::Chunk {
                request,
                text: text.into(),
            },
        ));
    }
    out.push(ev(
        session,
        at + total,
        done(request, Some(ttft), total, tokens(100, 400, false)),
    ));
}

fn fold(sessions: Vec<SessionInfo>, pricing: Pricing, events: &[SessionEvent]) -> Metrics {
    let mut m = Metrics::new(sessions, pricing);
    for e in events {
        m.apply(e);
    }
    m
}

#[test]
fn counts_reconnects_and_drops() {
    let mut evs = vec![
        ev(
            0,
            0,
            EventKind::State(SessionState::Connecting { attempt: 1 }),
        ),
        ev(0, 10 * MS, connected(1)),
        ev(0, 10 * MS, EventKind::State(SessionState::Open)),
    ];
    request(&mut evs, 0, S, 1, 400 * MS, 900 * MS);
    evs.extend([
        ev(0, 5 * S, closed(1006, false)),
        ev(
            0,
            5 * S,
            EventKind::BackingOff {
                attempt: 1,
                max_attempts: 10,
                delay_ms: 700,
                cause: "1006".into(),
            },
        ),
        ev(0, 6 * S, connected(1)),
        ev(0, 7 * S, closed(1001, false)),
        ev(0, 8 * S, connected(1)),
        ev(0, 9 * S, closed(1000, true)),
        ev(0, 9 * S, EventKind::State(SessionState::Closed)),
        ev(1, 0, connected(1)),
        ev(
            0,
            9 * S,
            EventKind::Malformed {
                reason: "not json".into(),
            },
        ),
        ev(
            0,
            9 * S,
            EventKind::UnknownFrame {
                frame_type: "x.y".into(),
            },
        ),
        ev(
            0,
            9 * S,
            EventKind::RateLimited {
                wait_ms: 1500,
                cause: "local window".into(),
            },
        ),
        ev(
            7,
            9 * S,
            EventKind::Marker {
                label: "no such session".into(),
            },
        ),
    ]);
    let m = fold(
        vec![info(0, "legacy", "gpt-4.1"), info(1, "legacy", "gpt-4.1")],
        Pricing::new(),
        &evs,
    );

    let s = m.session(0).expect("session 0").counts.clone();
    assert_eq!((s.connects, s.reconnects, s.drops), (3, 2, 2));
    assert!((s.drop_rate() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(
        (s.requests_sent, s.responses_completed, s.requests_failed),
        (1, 1, 0)
    );
    assert_eq!((s.chunks, s.bytes), (2, 5));
    assert_eq!((s.malformed_frames, s.unknown_frames), (1, 1));
    assert_eq!(
        (s.rate_limit_waits, s.rate_limit_wait_ms, s.backoffs),
        (1, 1500, 1)
    );
    assert_eq!(
        m.session(0).and_then(|s| s.last_close()).map(|c| c.code),
        Some(1000)
    );

    let p = m.provider("legacy").expect("legacy");
    // Session 1's first connect is not a reconnect.
    assert_eq!(
        (p.counts.connects, p.counts.reconnects, p.counts.drops),
        (4, 2, 2)
    );
    assert!((p.counts.drop_rate() - 0.5).abs() < 1e-12);
    assert_eq!(p.connections_up(), 1, "session 1 is still up");
    assert_eq!(p.sessions(), 2);
    assert_eq!(m.totals().counts, p.counts);
    assert_eq!(m.unknown_session_events(), 1);
    assert_eq!(m.events_applied(), evs.len() as u64);
}

#[test]
fn reference_cost_is_exact() {
    let legacy = ProviderPricing {
        per_1000_calls_usd: 1.75,
        ..ProviderPricing::default()
    };
    let pricing = Pricing::new().with("legacy", legacy);
    let mut m = Metrics::new(vec![info(0, "legacy", "gpt-4.1")], pricing);
    for r in 1..=1000u64 {
        m.apply(&ev(0, r * S, sent(r)));
        m.apply(&ev(
            0,
            r * S + 400 * MS,
            done(r, Some(300 * MS), 400 * MS, tokens(100, 400, false)),
        ));
    }
    let c = &m.provider("legacy").expect("legacy").counts;
    // 1,000 * (100 * 2.00 + 400 * 8.00) / 1e6 + 1.75, summed exactly in nano-dollars.
    assert_eq!(c.cost.total_nano_usd(), 5_150_000_000);
    assert_eq!(
        c.cost.total_usd(),
        1000.0 * (100.0 * 2.0 + 400.0 * 8.0) / 1e6 + 1.75
    );
    assert_eq!(c.cost.list_usd(), 3.4);
    assert_eq!(c.cost.fees_usd(), 1.75);
    assert_eq!(c.cost.billed(), 5.15);
    assert!(!c.cost.is_estimated());
    assert_eq!(
        (c.tokens.input, c.tokens.output, c.tokens.estimated),
        (100_000, 400_000, 0)
    );
    assert_eq!(c.cost_per_1000_calls_usd(), Some(5.15));
    let s = &m.session(0).expect("session").counts;
    assert_eq!(s.cost, c.cost);
}

#[test]
fn estimates_and_unpriced_models_are_flagged() {
    let cny = ProviderPricing {
        billing_currency: "CNY".into(),
        billing_rate: 7.3,
        ..ProviderPricing::default()
    };
    let mut m = Metrics::new(
        vec![info(0, "relay", "gpt-4.1"), info(1, "relay", "mystery-1")],
        Pricing::new().with("relay", cny),
    );
    m.apply(&ev(
        0,
        S,
        done(1, None, 100 * MS, tokens(1_000_000, 0, true)),
    ));
    let mut mystery = done(1, None, 100 * MS, tokens(10, 10, false));
    if let EventKind::Done(done) = &mut mystery {
        done.model = "mystery-1".into();
    }
    m.apply(&ev(1, S, mystery.clone()));
    m.apply(&ev(1, 2 * S, mystery));

    let p = m.provider("relay").expect("relay");
    assert_eq!(p.counts.tokens.estimated, 1_000_000);
    assert_eq!(p.counts.tokens.estimated_responses, 1);
    assert!(p.counts.cost.is_estimated());
    assert_eq!(p.counts.cost.unpriced_responses, 2);
    assert_eq!(p.unpriced_models(), ["mystery-1".to_string()]);
    assert_eq!(p.counts.cost.total_usd(), 2.0);
    assert!((p.counts.cost.billed() - 14.6).abs() < 1e-9);
    assert_eq!(p.billing_currency(), "CNY");
    assert!(!m.session(1).expect("s1").counts.cost.is_estimated());
    // A response without a first token gives no time-to-first-token sample.
    assert_eq!(
        p.latency(LatencyMetric::TimeToFirstToken, Window::Run, 2 * S)
            .count,
        0
    );
    assert_eq!(
        p.latency(LatencyMetric::ResponseTime, Window::Run, 2 * S)
            .count,
        3
    );
}

#[test]
fn time_to_first_token_counts_each_request_once() {
    let evs = vec![
        ev(0, 0, sent(1)),
        ev(
            0,
            300 * MS,
            EventKind::FirstToken {
                request: 1,
                ttft_us: 300 * MS,
            },
        ),
        ev(
            0,
            500 * MS,
            done(1, Some(300 * MS), 500 * MS, tokens(1, 1, false)),
        ),
        // A response whose first token came only with `done`.
        ev(0, S, sent(2)),
        ev(
            0,
            S + 700 * MS,
            done(2, Some(650 * MS), 700 * MS, tokens(1, 1, false)),
        ),
    ];
    let m = fold(vec![info(0, "p", "gpt-4.1")], Pricing::new(), &evs);
    let q =
        m.provider("p")
            .expect("p")
            .latency(LatencyMetric::TimeToFirstToken, Window::Run, 2 * S);
    assert_eq!(q.count, 2);
    // Quantiles are the top of their histogram bucket (within 0.1 %); max and mean are exact.
    assert!(q.p50.abs_diff(300 * MS) <= 300, "{}", q.p50);
    assert_eq!((q.max, q.mean), (650 * MS, 475 * MS));
    let s = m
        .session(0)
        .expect("s")
        .latency(LatencyMetric::TimeToFirstToken, Window::Run, 2 * S);
    assert_eq!(s.map(|q| q.count), Some(2));
}

#[test]
fn heartbeats_errors_and_state() {
    let long = "x".repeat(1000);
    let evs = vec![
        ev(0, S, EventKind::Pong { rtt_us: 40 * MS }),
        ev(0, 31 * S, EventKind::Pong { rtt_us: 60 * MS }),
        ev(0, 61 * S, EventKind::HeartbeatMissed { waited_us: 30 * S }),
        ev(
            0,
            62 * S,
            EventKind::Error {
                kind: ErrorKind::RateLimited,
                message: "slow down".into(),
                retryable: true,
                retry_after_ms: Some(1000),
            },
        ),
        ev(
            0,
            63 * S,
            EventKind::Error {
                kind: ErrorKind::Auth,
                message: "bad key".into(),
                retryable: false,
                retry_after_ms: None,
            },
        ),
        ev(
            0,
            63 * S,
            EventKind::RequestFailed {
                request: 3,
                kind: ErrorKind::Auth,
                reason: long.clone(),
            },
        ),
        ev(
            0,
            64 * S,
            EventKind::State(SessionState::Stopped { reason: long }),
        ),
    ];
    let m = fold(vec![info(0, "p", "gpt-4.1")], Pricing::new(), &evs);
    let s = m.session(0).expect("s");
    let c = &s.counts;
    assert_eq!((c.heartbeats_answered, c.heartbeats_missed), (2, 1));
    assert_eq!(
        c.last_heartbeat,
        Some(Heartbeat {
            rtt_us: 60 * MS,
            at_us: 31 * S
        })
    );
    assert_eq!((c.errors, c.requests_failed), (2, 1));
    assert_eq!(c.errors_by_kind.get(ErrorKind::RateLimited), 1);
    assert_eq!(c.errors_by_kind.get(ErrorKind::Auth), 1);
    assert_eq!(c.errors_by_kind.total(), 2);
    assert_eq!(c.failures_by_kind.get(ErrorKind::Auth), 1);
    let last = c.last_error.as_ref().expect("last error");
    assert_eq!(last.message.chars().count(), MAX_MESSAGE_CHARS + 1);
    assert_eq!(s.state().label(), "stopped");
    assert_eq!(s.state_since_us(), 64 * S);
    assert_eq!(
        s.stop_reason().map(|r| r.chars().count()),
        Some(MAX_MESSAGE_CHARS + 1)
    );
    assert_eq!(c.error_rate(), 1.0);

    let p = m.provider("p").expect("p");
    let rtt = p.latency(LatencyMetric::HeartbeatRtt, Window::Run, 64 * S);
    assert_eq!((rtt.count, rtt.max), (2, 60 * MS));
    assert!(rtt.p50.abs_diff(40 * MS) <= 40, "{}", rtt.p50);
    // At 64 s the 1-minute window (10-second slices) starts at slice 0: both pongs count;
    // at 75 s only the second one does.
    assert_eq!(
        p.latency(LatencyMetric::HeartbeatRtt, Window::OneMinute, 64 * S)
            .count,
        2
    );
    assert_eq!(
        p.latency(LatencyMetric::HeartbeatRtt, Window::OneMinute, 75 * S)
            .count,
        1
    );
    assert_eq!(
        p.latency(LatencyMetric::HeartbeatRtt, Window::OneMinute, 100 * S)
            .count,
        0
    );
    assert_eq!(
        p.latency(LatencyMetric::HeartbeatRtt, Window::FifteenMinutes, 100 * S)
            .count,
        2
    );
    assert_eq!(
        p.latency(LatencyMetric::HeartbeatRtt, Window::Run, 10_000 * S)
            .count,
        2
    );
    let series = p.series(SeriesMetric::HeartbeatRtt, Window::OneMinute, 64 * S);
    assert_eq!(series.len(), 60);
    assert_eq!(
        series.iter().map(|p| p.count).sum::<u64>(),
        1,
        "the pong at 1 s is out"
    );
    assert_eq!(series.iter().map(|p| p.missed).sum::<u64>(), 1);
}

#[test]
fn session_window_expires_and_fifteen_minutes_is_not_kept() {
    let m = fold(
        vec![info(0, "p", "gpt-4.1")],
        Pricing::new(),
        &[ev(0, 10 * S, EventKind::Pong { rtt_us: 5 * MS })],
    );
    let s = m.session(0).expect("s");
    let rtt = |w, now| {
        s.latency(LatencyMetric::HeartbeatRtt, w, now)
            .map(|q| q.count)
    };
    // 30-second slices: the sample (slice 0) counts until the window is a length and a
    // slice past it.
    assert_eq!(rtt(Window::OneMinute, 10 * S), Some(1));
    assert_eq!(rtt(Window::OneMinute, 89 * S), Some(1));
    assert_eq!(rtt(Window::OneMinute, 90 * S), Some(0));
    assert_eq!(rtt(Window::Run, 90 * S), Some(1));
    assert_eq!(rtt(Window::FifteenMinutes, 90 * S), None);
    assert_eq!(
        s.latency(LatencyMetric::ResponseTime, Window::Run, 0),
        Some(Quantiles::default())
    );
}

/// The reference case's legacy relay: log-normal, median 420 ms, p99 890 ms. Provider
/// quantiles must be within 1 ms of the exact ones.
#[test]
fn provider_quantiles_are_within_a_millisecond() {
    let sigma = (890.0f64 / 420.0).ln() / 2.326;
    let dist = LogNormal::new((420_000.0f64).ln(), sigma).expect("valid log-normal");
    let mut rng = SmallRng::seed_from_u64(2024);
    let mut m = Metrics::new(
        vec![info(0, "legacy", "gpt-4.1"), info(1, "legacy", "gpt-4.1")],
        Pricing::new(),
    );
    let mut truth = Vec::new();
    for i in 0..50_000u64 {
        let ttft = dist.sample(&mut rng).round() as u64;
        truth.push(ttft);
        let at = i * 10 * MS;
        let session = (i % 2) as SessionId;
        m.apply(&ev(
            session,
            at,
            EventKind::FirstToken {
                request: i + 1,
                ttft_us: ttft,
            },
        ));
    }
    truth.sort_unstable();
    let exact = |q: f64| truth[((q * truth.len() as f64).ceil() as usize).max(1) - 1];
    let p = m.provider("legacy").expect("legacy");
    let q = p.latency(LatencyMetric::TimeToFirstToken, Window::Run, 500 * S);
    assert_eq!(q.count, 50_000);
    for (name, got, want) in [
        ("p50", q.p50, exact(0.5)),
        ("p90", q.p90, exact(0.9)),
        ("p99", q.p99, exact(0.99)),
    ] {
        assert!(
            got.abs_diff(want) <= MS,
            "{name}: got {got} µs, exact {want} µs"
        );
    }
    assert!(q.p50.abs_diff(420 * MS) < 10 * MS && q.p99.abs_diff(890 * MS) < 30 * MS);
    assert_eq!(q.max, *truth.last().expect("samples"));
    // The windows see the recent part only: at 500 s, the 1-minute window holds 60-70 s.
    let w = p.latency(LatencyMetric::TimeToFirstToken, Window::OneMinute, 500 * S);
    assert!((6_000..=7_000).contains(&w.count), "{}", w.count);
    // Sessions are coarser but close.
    let s = m
        .session(0)
        .and_then(|s| s.latency(LatencyMetric::TimeToFirstToken, Window::Run, 500 * S))
        .expect("s0");
    assert_eq!(s.count, 25_000);
    assert!(s.p50.abs_diff(exact(0.5)) < 10 * MS);
}

#[test]
fn rates_over_windows() {
    let pricing = Pricing::new().with(
        "p",
        ProviderPricing {
            per_1000_calls_usd: 1000.0,
            ..ProviderPricing::default()
        },
    );
    let mut evs = vec![ev(0, 0, connected(1))];
    // One response a second for 120 s, each costing exactly $1 in fees (zero tokens).
    for r in 0..120u64 {
        evs.push(ev(0, r * S, sent(r + 1)));
        evs.push(ev(
            0,
            r * S + 500 * MS,
            done(r + 1, Some(100 * MS), 500 * MS, tokens(0, 0, false)),
        ));
    }
    evs.push(ev(
        0,
        100 * S,
        EventKind::RequestFailed {
            request: 999,
            kind: ErrorKind::Upstream,
            reason: "502".into(),
        },
    ));
    evs.push(ev(0, 110 * S, closed(1006, false)));
    let m = fold(vec![info(0, "p", "gpt-4.1")], pricing, &evs);
    let p = m.provider("p").expect("p");
    let now = 120 * S;

    let r = p.rates(Window::OneMinute, now);
    assert_eq!(r.seconds, 60.0);
    // Seconds 61..=120: responses at 61.5 .. 119.5.
    assert_eq!(r.responses, 59);
    assert!((r.responses_per_sec - 59.0 / 60.0).abs() < 1e-12);
    assert!((r.cost_usd - 59.0).abs() < 1e-9);
    assert!((r.cost_per_hour_usd - 59.0 * 60.0).abs() < 1e-6);
    assert!((r.error_rate - 1.0 / 60.0).abs() < 1e-12);
    // One connection up at the window's start, dropped in it.
    assert_eq!((r.drops, r.connects), (1, 0));
    assert_eq!(r.drop_rate, 1.0);

    let r = p.rates(Window::FifteenMinutes, now);
    assert_eq!(r.seconds, 120.0);
    assert_eq!(r.responses, 120);
    assert_eq!(r.drop_rate, 1.0);

    let r = p.rates(Window::Run, now);
    assert_eq!((r.responses, r.failed, r.drops, r.connects), (120, 1, 1, 1));
    assert!((r.responses_per_sec - 1.0).abs() < 1e-12);

    let series = p.series(SeriesMetric::Responses, Window::Run, now);
    assert_eq!(
        series.iter().map(|p| p.count).collect::<Vec<_>>(),
        vec![60, 60, 0]
    );
    let series = p.series(SeriesMetric::Drops, Window::FifteenMinutes, now);
    assert_eq!(series.len(), 121, "seconds 0..=120 exist so far");
    assert_eq!(series[110].count, 1);
}

#[test]
fn sessions_can_be_added_at_run_time() {
    let mut m = Metrics::new(vec![info(0, "a", "gpt-4.1")], Pricing::new());
    m.apply(&ev(1, S, sent(1)));
    assert_eq!(m.unknown_session_events(), 1);
    m.add_session(info(1, "b", "deepseek-v3.2"));
    m.apply(&ev(1, 2 * S, sent(2)));
    assert_eq!(m.session(1).map(|s| s.counts.requests_sent), Some(1));
    assert_eq!(m.session(1).map(|s| s.state_since_us()), Some(S));
    let names: Vec<_> = m.providers().iter().map(|p| p.name().to_string()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(m.totals().sessions(), 2);
    assert_eq!(m.totals().name(), TOTALS_NAME);
    assert_eq!(m.sessions().count(), 2);
}

#[test]
fn folding_is_deterministic() {
    let mut evs = Vec::new();
    for r in 0..200u64 {
        request(
            &mut evs,
            (r % 3) as SessionId,
            r * 700 * MS,
            r + 1,
            (150 + r % 37) * MS,
            (400 + r % 91) * MS,
        );
    }
    let sessions = || (0..3).map(|i| info(i, "p", "gpt-4.1")).collect::<Vec<_>>();
    let a = fold(sessions(), Pricing::new(), &evs);
    let b = fold(sessions(), Pricing::new(), &evs);
    let now = 200 * 700 * MS;
    for metric in LatencyMetric::ALL {
        for window in Window::ALL {
            let pa = a.provider("p").map(|p| p.latency(metric, window, now));
            let pb = b.provider("p").map(|p| p.latency(metric, window, now));
            assert_eq!(pa, pb);
        }
    }
    assert_eq!(a.totals().counts, b.totals().counts);
}

#[test]
fn memory_of_idle_and_busy_stats() {
    let mut m = Metrics::new(
        (0..2).map(|i| info(i, "p", "gpt-4.1")).collect(),
        Pricing::new(),
    );
    let idle_session = m.session(1).expect("s1").heap_bytes() + std::mem::size_of::<SessionStats>();
    let idle_provider =
        m.provider("p").expect("p").heap_bytes() + std::mem::size_of::<ProviderStats>();
    // A busy hour: a request every 2 s with heartbeats every 30 s, reference-case latencies.
    let dist = LogNormal::new((420_000.0f64).ln(), (890.0f64 / 420.0).ln() / 2.326).expect("valid");
    let mut rng = SmallRng::seed_from_u64(7);
    for r in 0..1800u64 {
        let at = r * 2 * S;
        let ttft = dist.sample(&mut rng) as u64;
        m.apply(&ev(0, at, sent(r + 1)));
        m.apply(&ev(
            0,
            at + ttft,
            EventKind::FirstToken {
                request: r + 1,
                ttft_us: ttft,
            },
        ));
        m.apply(&ev(
            0,
            at + 3 * ttft,
            done(r + 1, Some(ttft), 3 * ttft, tokens(100, 400, false)),
        ));
        if r % 15 == 0 {
            m.apply(&ev(0, at, EventKind::Pong { rtt_us: ttft / 4 }));
        }
    }
    let busy_session = m.session(0).expect("s0").heap_bytes() + std::mem::size_of::<SessionStats>();
    let busy_provider =
        m.provider("p").expect("p").heap_bytes() + std::mem::size_of::<ProviderStats>();
    println!(
        "SessionStats: idle {idle_session} B, busy {busy_session} B; ProviderStats: idle {idle_provider} B, busy {busy_provider} B"
    );
    assert!(busy_session <= 32 * 1024, "busy session {busy_session} B");
    assert!(
        busy_provider <= 8 * 1024 * 1024,
        "busy provider {busy_provider} B"
    );
}

/// Every latency figure the metrics answer at `now`: sessions, providers and the totals, every
/// metric and window.
fn all_latencies(m: &Metrics, now: u64) -> Vec<Option<Quantiles>> {
    let mut out = Vec::new();
    for metric in LatencyMetric::ALL {
        for window in Window::ALL {
            out.extend(m.sessions().map(|s| s.latency(metric, window, now)));
            out.extend(
                m.providers()
                    .iter()
                    .chain(std::iter::once(m.totals()))
                    .map(|p| Some(p.latency(metric, window, now))),
            );
        }
    }
    out
}

#[test]
fn packed_metrics_read_and_fold_like_whole_ones() {
    let sessions = vec![info(0, "a", "gpt-4.1"), info(1, "b", "gpt-4.1")];
    let mut whole = Metrics::new(sessions, Pricing::new());
    let mut packed = whole.packed();
    let mut rng = SmallRng::seed_from_u64(7);
    let ttft = LogNormal::new(12.5, 0.6).expect("a valid distribution");
    // 40 minutes: slices retire from both windows, out of packed copies too.
    for i in 0..700u64 {
        let at = i * 4 * S;
        let session = (i % 2) as SessionId;
        let first = ttft.sample(&mut rng) as u64;
        let events = [
            ev(session, at, sent(i)),
            ev(
                session,
                at + first,
                EventKind::FirstToken {
                    request: i,
                    ttft_us: first,
                },
            ),
            ev(
                session,
                at + first,
                done(i, Some(first), 2 * first, tokens(5, 9, false)),
            ),
            ev(session, at + first, EventKind::Pong { rtt_us: first / 7 }),
        ];
        for e in &events {
            whole.apply(e);
            packed.apply(e);
        }
        if i % 41 == 0 {
            // A checkpoint taken, and folded on from (its copies stay packed until recorded into).
            packed = packed.packed().clone();
        }
        if i % 67 == 0 {
            let now = at + first;
            for later in [now, now + 50 * S, now + 20 * 60 * S] {
                assert_eq!(all_latencies(&packed, later), all_latencies(&whole, later));
            }
        }
    }
    let bytes = |m: &Metrics| -> usize {
        m.providers()
            .iter()
            .chain(std::iter::once(m.totals()))
            .map(|p| p.heap_bytes())
            .sum()
    };
    assert!(bytes(&whole.packed()) * 3 < bytes(&whole));
}
