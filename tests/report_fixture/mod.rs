//! A fixed run for report tests: two relays (the reference case's legacy relay and a new one),
//! four sessions, one minute of hand-built events with explicit times.

#![allow(dead_code)]

use chrono::{TimeZone, Utc};

use relaytop_core::cost::{Pricing, ProviderPricing};
use relaytop_core::metrics::Metrics;
use relaytop_core::report::{Report, RunInfo};
use relaytop_core::session::{
    Completed, ErrorKind, EventKind, Protocol, SessionEvent, SessionId, SessionInfo, SessionState,
    Tokens,
};

pub const MS: u64 = 1_000;
pub const S: u64 = 1_000_000;

pub fn info(id: SessionId, name: &str, provider: &str, model: &str, workload: &str) -> SessionInfo {
    SessionInfo {
        id,
        name: name.to_string(),
        provider: provider.to_string(),
        model: model.to_string(),
        protocol: Protocol::RelayV1,
        url: format!("ws://127.0.0.1:9/{provider}/v1/stream"),
        workload: workload.to_string(),
    }
}

pub fn sessions() -> Vec<SessionInfo> {
    vec![
        info(0, "legacy-1", "legacy", "gpt-4.1", "probe"),
        info(1, "legacy-2", "legacy", "claude-sonnet-4.5", "probe"),
        info(2, "new-1", "holysheep", "gpt-4.1", "probe"),
        info(3, "chat", "holysheep", "mystery-model", "chat"),
    ]
}

pub fn pricing() -> Pricing {
    Pricing::new()
        .with(
            "legacy",
            ProviderPricing {
                per_1000_calls_usd: 1.75,
                ..ProviderPricing::default()
            },
        )
        .with(
            "holysheep",
            ProviderPricing {
                per_1000_calls_usd: 0.28,
                billing_currency: "CNY".to_string(),
                billing_rate: 1.0,
                ..ProviderPricing::default()
            },
        )
}

struct Builder(Vec<SessionEvent>);

impl Builder {
    fn at(&mut self, session: SessionId, at_us: u64, kind: EventKind) {
        self.0.push(SessionEvent {
            session,
            at_us,
            kind,
        });
    }

    fn connect(&mut self, s: SessionId, at: u64, attempt: u32) {
        self.at(
            s,
            at,
            EventKind::State(SessionState::Connecting { attempt }),
        );
        self.at(
            s,
            at + 30 * MS,
            EventKind::Connected {
                attempt,
                handshake_us: 30 * MS,
            },
        );
        self.at(s, at + 30 * MS, EventKind::State(SessionState::Open));
    }

    /// A request at `at` with the given time to first token and total time.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        s: SessionId,
        at: u64,
        request: u64,
        model: &str,
        ttft: u64,
        total: u64,
        tokens: Tokens,
    ) {
        self.at(
            s,
            at,
            EventKind::RequestSent {
                request,
                model: model.into(),
                prompt_tokens_estimate: 12,
            },
        );
        self.at(s, at, EventKind::State(SessionState::Streaming { request }));
        self.at(
            s,
            at + ttft,
            EventKind::FirstToken {
                request,
                ttft_us: ttft,
            },
        );
        self.at(
            s,
            at + ttft,
            EventKind::Chunk {
                request,
                text: "Hello".into(),
            },
        );
        self.at(
            s,
            at + total - 10 * MS,
            EventKind::Chunk {
                request,
                text: " there!".into(),
            },
        );
        self.at(
            s,
            at + total,
            EventKind::Done(Box::new(Completed {
                request,
                model: model.into(),
                ttft_us: Some(ttft),
                answer_us: None,
                total_us: total,
                tokens,
                reported_cost_usd: None,
                finish_reason: Some("stop".into()),
                chunks: 2,
                bytes: 12,
                cut: None,
                text_tokens: None,
            })),
        );
        self.at(s, at + total, EventKind::State(SessionState::Open));
    }
}

fn usage(input: u64, output: u64) -> Tokens {
    Tokens {
        input,
        output,
        cached_input: 0,
        cache_write_input: 0,
        reasoning_output: 0,
        estimated: false,
    }
}

/// The fixed event sequence, in time order per session.
pub fn events() -> Vec<SessionEvent> {
    let mut b = Builder(Vec::new());
    b.connect(0, 0, 1);
    b.connect(1, 0, 1);
    b.connect(2, 0, 1);
    b.connect(3, 0, 1);

    // legacy-1: six requests, 420 ms-ish to first token, and heartbeats.
    let ttfts = [420, 380, 455, 610, 890, 400];
    for (i, t) in ttfts.iter().enumerate() {
        let at = (i as u64 + 1) * 8 * S;
        b.request(
            0,
            at,
            i as u64 + 1,
            "gpt-4.1",
            t * MS,
            (t + 900) * MS,
            usage(100, 400),
        );
    }
    b.at(0, 30 * S, EventKind::Pong { rtt_us: 41_250 });
    b.at(0, 60 * S, EventKind::Pong { rtt_us: 52_500 });

    // legacy-2: two requests, a drop, a backoff, a reconnect, a rate limit.
    b.request(
        1,
        5 * S,
        1,
        "claude-sonnet-4.5",
        500 * MS,
        1600 * MS,
        usage(200, 300),
    );
    b.request(
        1,
        15 * S,
        2,
        "claude-sonnet-4.5",
        470 * MS,
        1400 * MS,
        usage(200, 300),
    );
    b.at(
        1,
        20 * S,
        EventKind::RequestSent {
            request: 3,
            model: "claude-sonnet-4.5".into(),
            prompt_tokens_estimate: 12,
        },
    );
    b.at(
        1,
        21 * S,
        EventKind::Closed {
            code: 1006,
            reason: "connection reset".into(),
            requested: false,
        },
    );
    b.at(
        1,
        21 * S,
        EventKind::RequestFailed {
            request: 3,
            kind: ErrorKind::Network,
            reason: "dropped mid-stream".into(),
        },
    );
    b.at(
        1,
        21 * S,
        EventKind::State(SessionState::BackingOff {
            attempt: 1,
            max_attempts: 10,
            until_us: 21 * S + 800 * MS,
            watch: None,
        }),
    );
    b.at(
        1,
        21 * S,
        EventKind::BackingOff {
            attempt: 1,
            max_attempts: 10,
            delay_ms: 800,
            cause: "close 1006".into(),
        },
    );
    b.connect(1, 22 * S, 2);
    b.at(
        1,
        30 * S,
        EventKind::Error {
            kind: ErrorKind::RateLimited,
            message: "rate limited".into(),
            retryable: true,
            retry_after_ms: Some(2000),
        },
    );
    b.at(
        1,
        30 * S,
        EventKind::RateLimited {
            wait_ms: 2000,
            cause: "429".into(),
        },
    );
    b.at(1, 31 * S, EventKind::HeartbeatMissed { waited_us: 30 * S });
    b.at(
        1,
        40 * S,
        EventKind::Malformed {
            reason: "expected value at line 1 column 1".into(),
        },
    );

    // new-1: fast, one response without usage (estimated tokens).
    for i in 0..5u64 {
        let t = [180, 170, 200, 320, 190][i as usize];
        b.request(
            2,
            (i + 1) * 10 * S,
            i + 1,
            "gpt-4.1",
            t * MS,
            (t + 400) * MS,
            usage(100, 400),
        );
    }
    b.request(
        2,
        57 * S,
        6,
        "gpt-4.1",
        175 * MS,
        560 * MS,
        Tokens {
            input: 10,
            output: 40,
            cached_input: 0,
            cache_write_input: 0,
            reasoning_output: 0,
            estimated: true,
        },
    );
    b.at(2, 30 * S, EventKind::Pong { rtt_us: 12_125 });
    b.at(
        2,
        45 * S,
        EventKind::UnknownFrame {
            frame_type: "usage.update".into(),
        },
    );

    // chat: a model without a price, then a key the relay refuses.
    b.request(
        3,
        12 * S,
        1,
        "mystery-model",
        250 * MS,
        700 * MS,
        usage(50, 60),
    );
    b.at(
        3,
        40 * S,
        EventKind::Closed {
            code: 1008,
            reason: "invalid key".into(),
            requested: false,
        },
    );
    b.at(
        3,
        40 * S,
        EventKind::Error {
            kind: ErrorKind::Auth,
            message: "invalid key".into(),
            retryable: false,
            retry_after_ms: None,
        },
    );
    b.at(
        3,
        40 * S,
        EventKind::State(SessionState::Stopped {
            reason: "the relay refused the key (close 1008)".into(),
        }),
    );

    let mut events = b.0;
    events.sort_by_key(|e| e.at_us);
    events
}

pub fn metrics() -> Metrics {
    let mut m = Metrics::new(sessions(), pricing());
    for e in events() {
        m.apply(&e);
    }
    m
}

pub fn run_info() -> RunInfo {
    RunInfo {
        started_at: Utc
            .with_ymd_and_hms(2026, 3, 14, 9, 26, 53)
            .single()
            .expect("valid date"),
        duration_us: 62 * S + 500 * MS,
        source: "fixture".to_string(),
        ended_by: "duration".to_string(),
    }
}

pub fn report() -> Report {
    Report::build(&metrics(), run_info())
}
