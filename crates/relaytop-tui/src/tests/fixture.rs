//! The fixture: eight sessions of two providers and their events, a fixed clock, the
//! pricing; drawing on a `TestBackend`, key presses, the screen as text.

use std::time::Duration;

use chrono::DateTime;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::app::{App, Effect, SessionSetup};
use crate::render;
use relaytop_core::cost::{Pricing, ProviderPricing};
use relaytop_core::session::{
    Completed, ErrorKind, EventKind, Protocol, SessionEvent, SessionId, SessionInfo, SessionState,
    Tokens,
};

pub(super) const S: u64 = 1_000_000;
/// The fixture's "now": 95 s into the run.
pub(super) const NOW: u64 = 95 * S;

pub(super) fn info(id: SessionId, name: &str, provider: &str, model: &str) -> SessionInfo {
    SessionInfo {
        id,
        name: name.into(),
        provider: provider.into(),
        model: model.into(),
        protocol: Protocol::RelayV1,
        url: "ws://127.0.0.1:1/v1/stream".into(),
        workload: "probe".into(),
    }
}

pub(super) fn setups() -> Vec<SessionSetup> {
    let sessions = [
        ("probe-legacy-1", "legacy", "gpt-4.1"),
        ("probe-legacy-2", "legacy", "gpt-4.1"),
        ("probe-legacy-3", "legacy", "gpt-4.1"),
        ("probe-legacy-4", "legacy", "gpt-4.1"),
        ("probe-holysheep-1", "holysheep", "gpt-4.1"),
        ("probe-holysheep-2", "holysheep", "gpt-4.1"),
        ("probe-holysheep-3", "holysheep", "gpt-4.1"),
        ("chat-holysheep", "holysheep", "mystery-model"),
    ];
    sessions
        .iter()
        .enumerate()
        .map(|(i, (name, provider, model))| SessionSetup {
            info: info(i as SessionId, name, provider, model),
            heartbeat_every: Some(Duration::from_secs(5)),
        })
        .collect()
}

pub(super) fn pricing() -> Pricing {
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
                billing_currency: "CNY".into(),
                billing_rate: 1.0,
                ..ProviderPricing::default()
            },
        )
}

pub(super) const WORDS: [&str; 12] = [
    "Relay",
    " stations",
    " forward",
    " each",
    " request",
    " to",
    " an",
    " upstream",
    " model",
    " and",
    " stream",
    " back.",
];

/// The fixture: 95 seconds of two relays, with a drop and a backoff, a 401 that stops a
/// session, a 429, missed heartbeats, estimated tokens, an unpriced model and a response
/// still streaming.
pub(super) fn events() -> Vec<SessionEvent> {
    let mut out = Vec::new();
    let mut push = |session: SessionId, at_us: u64, kind: EventKind| {
        out.push(SessionEvent {
            session,
            at_us,
            kind,
        });
    };
    for id in 0..8u32 {
        let t = 100_000 + u64::from(id) * 10_000;
        push(
            id,
            t,
            EventKind::State(SessionState::Connecting { attempt: 1 }),
        );
        if id == 3 {
            push(
                id,
                t + 30_000,
                EventKind::Error {
                    kind: ErrorKind::Auth,
                    message: "upgrade answered 401: invalid API key".into(),
                    retryable: false,
                    retry_after_ms: None,
                },
            );
            push(
                id,
                t + 30_000,
                EventKind::State(SessionState::Stopped {
                    reason: "upgrade answered 401: invalid API key".into(),
                }),
            );
            continue;
        }
        push(
            id,
            t + 20_000,
            EventKind::Connected {
                attempt: 1,
                handshake_us: 2_000 + u64::from(id) * 100,
            },
        );
        push(id, t + 20_000, EventKind::State(SessionState::Open));
    }
    let legacy = |id: SessionId| id < 4;
    for round in 0..18u64 {
        for id in [0u32, 1, 2, 4, 5, 6, 7] {
            let start = round * 5 * S + S + u64::from(id) * 50_000;
            // Session 1 dropped at 60 s and is backing off; session 6 is mid-stream at the end.
            if id == 1 && start >= 60 * S {
                continue;
            }
            let request = round + 1;
            let ttft = if legacy(id) {
                380_000 + (round * 37 + u64::from(id) * 11) % 9 * 20_000
            } else {
                160_000 + (round * 29 + u64::from(id) * 7) % 7 * 10_000
            };
            let model = if id == 7 { "mystery-model" } else { "gpt-4.1" };
            if id == 5 && round == 10 {
                push(
                    id,
                    start,
                    EventKind::Error {
                        kind: ErrorKind::RateLimited,
                        message: "429 rate_limited: slow down".into(),
                        retryable: true,
                        retry_after_ms: Some(1_000),
                    },
                );
                push(
                    id,
                    start,
                    EventKind::RateLimited {
                        wait_ms: 1_000,
                        cause: "relay said rate_limited".into(),
                    },
                );
                continue;
            }
            push(
                id,
                start,
                EventKind::RequestSent {
                    request,
                    model: model.into(),
                    prompt_tokens_estimate: 7,
                },
            );
            push(
                id,
                start,
                EventKind::State(SessionState::Streaming { request }),
            );
            push(
                id,
                start + ttft,
                EventKind::FirstToken {
                    request,
                    ttft_us: ttft,
                },
            );
            let last_round = round == 17;
            let words = if id == 6 && last_round {
                5
            } else {
                WORDS.len()
            };
            for (i, word) in WORDS.iter().take(words).enumerate() {
                push(
                    id,
                    start + ttft + i as u64 * 4_000,
                    EventKind::Chunk {
                        request,
                        text: (*word).into(),
                    },
                );
            }
            if id == 6 && last_round {
                continue;
            }
            let done_at = start + ttft + 60_000;
            push(
                id,
                done_at,
                EventKind::Done(Box::new(Completed {
                    request,
                    model: model.into(),
                    ttft_us: Some(ttft),
                    answer_us: None,
                    total_us: ttft + 60_000,
                    tokens: Tokens {
                        input: 7,
                        output: 12,
                        cached_input: 0,
                        cache_write_input: 0,
                        reasoning_output: 0,
                        estimated: id == 7,
                    },
                    reported_cost_usd: None,
                    finish_reason: Some("stop".into()),
                    chunks: 12,
                    bytes: 70,
                    cut: None,
                    text_tokens: None,
                })),
            );
            push(id, done_at, EventKind::State(SessionState::Open));
        }
        // Heartbeats every 5 s; session 2's go unanswered for the last 20 s.
        for id in [0u32, 1, 2, 4, 5, 6, 7] {
            let at = round * 5 * S + 3 * S + u64::from(id) * 20_000;
            if id == 1 && at >= 60 * S {
                continue;
            }
            if id == 2 && at >= 75 * S {
                push(id, at, EventKind::HeartbeatMissed { waited_us: 5 * S });
                continue;
            }
            let rtt = if legacy(id) { 2_400 } else { 900 } + u64::from(id) * 100 + round * 10;
            push(id, at, EventKind::Pong { rtt_us: rtt });
        }
    }
    // Session 1 drops at 60.5 s and backs off, attempt 3 of 10 until 97 s.
    let drop_at = 60 * S + 500_000;
    push(
        1,
        drop_at,
        EventKind::RequestFailed {
            request: 13,
            kind: ErrorKind::Network,
            reason: "connection dropped mid-stream".into(),
        },
    );
    push(
        1,
        drop_at,
        EventKind::Closed {
            code: 1006,
            reason: String::new(),
            requested: false,
        },
    );
    for (attempt, at, delay) in [
        (1u32, drop_at, 800u64),
        (2, 62 * S, 1_900),
        (3, 93 * S, 4_000),
    ] {
        push(
            1,
            at,
            EventKind::BackingOff {
                attempt,
                max_attempts: 10,
                delay_ms: delay,
                cause: "dropped 1006".into(),
            },
        );
        push(
            1,
            at,
            EventKind::State(SessionState::BackingOff {
                attempt,
                max_attempts: 10,
                until_us: at + delay * 1000,
                watch: None,
            }),
        );
        if attempt < 3 {
            push(
                1,
                at + delay * 1000,
                EventKind::State(SessionState::Connecting {
                    attempt: attempt + 1,
                }),
            );
            push(
                1,
                at + delay * 1000 + 5_000,
                EventKind::Error {
                    kind: ErrorKind::Overloaded,
                    message: "upgrade answered 503: relay overloaded".into(),
                    retryable: true,
                    retry_after_ms: None,
                },
            );
        }
    }
    out.sort_by_key(|e| e.at_us);
    out
}

pub(super) fn start() -> DateTime<chrono::FixedOffset> {
    DateTime::parse_from_rfc3339("2026-11-25T14:00:00+00:00").expect("a valid time")
}

pub(super) fn fixture() -> App {
    let mut app = App::new(&setups(), pricing(), start());
    for e in events() {
        app.apply(&e);
    }
    app.set_now(NOW);
    app
}

pub(super) fn draw(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|frame| {
            app.prepare(frame.area());
            render::draw(frame, app);
        })
        .expect("drawing to memory");
    terminal
}

pub(super) fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

pub(super) fn press(app: &mut App, code: KeyCode) -> Option<Effect> {
    app.handle_key(key(code))
}

pub(super) fn screen_text(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        for x in 0..area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}
