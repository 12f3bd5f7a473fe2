//! Dashboard tests: a fixed fixture of session events and a fixed clock, drawn on a
//! `TestBackend` and compared with insta snapshots (main screen, help, every pane, at 80x24
//! and 200x50); key and mouse handling; the README's key list against the key table.

use std::time::Duration;

use chrono::DateTime;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;

use crate::app::{App, Effect, Pane, SessionSetup, SortColumn};
use crate::keys;
use crate::render;
use crate::theme::{Role, Theme, theme_cycle};
use relaytop_core::canary::CanaryView;
use relaytop_core::cost::{Pricing, ProviderPricing};
use relaytop_core::session::{
    ErrorKind, EventKind, Protocol, SessionEvent, SessionId, SessionInfo, SessionState, Tokens,
};

const S: u64 = 1_000_000;
/// The fixture's "now": 95 s into the run.
const NOW: u64 = 95 * S;

fn info(id: SessionId, name: &str, provider: &str, model: &str) -> SessionInfo {
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

fn setups() -> Vec<SessionSetup> {
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

fn pricing() -> Pricing {
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

const WORDS: [&str; 12] = [
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
fn events() -> Vec<SessionEvent> {
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
                EventKind::Done {
                    request,
                    model: model.into(),
                    ttft_us: Some(ttft),
                    total_us: ttft + 60_000,
                    tokens: Tokens {
                        input: 7,
                        output: 12,
                        cached_input: 0,
                        estimated: id == 7,
                    },
                    reported_cost_usd: None,
                    finish_reason: Some("stop".into()),
                    chunks: 12,
                    bytes: 70,
                },
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

fn start() -> DateTime<chrono::FixedOffset> {
    DateTime::parse_from_rfc3339("2026-11-25T14:00:00+00:00").expect("a valid time")
}

fn fixture() -> App {
    let mut app = App::new(&setups(), pricing(), start());
    for e in events() {
        app.apply(&e);
    }
    app.set_now(NOW);
    app
}

fn draw(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|frame| {
            app.prepare(frame.area());
            render::draw(frame, app);
        })
        .expect("drawing to memory");
    terminal
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, code: KeyCode) -> Option<Effect> {
    app.handle_key(key(code))
}

fn screen_text(terminal: &Terminal<TestBackend>) -> String {
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

// ---- snapshots ---------------------------------------------------------------------------

#[test]
fn main_screen_80x24() {
    let mut app = fixture();
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn main_screen_200x50() {
    let mut app = fixture();
    insta::assert_snapshot!(draw(&mut app, 200, 50).backend());
}

#[test]
fn help_80x24() {
    let mut app = fixture();
    press(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn help_200x50() {
    let mut app = fixture();
    press(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(draw(&mut app, 200, 50).backend());
}

/// Every pane zoomed, at both sizes; and each pane in the compact layout's lower slot.
#[test]
fn every_pane_at_both_sizes() {
    // The canary's pane has its own tests (it needs a canary).
    for pane in Pane::ALL.into_iter().filter(|p| *p != Pane::Canary) {
        for (width, height) in [(80u16, 24u16), (200, 50)] {
            let mut app = fixture();
            while app.focus != pane {
                press(&mut app, KeyCode::Tab);
            }
            press(&mut app, KeyCode::Char('z'));
            let name = format!("pane_{}_{width}x{height}", pane.title().to_lowercase());
            insta::assert_snapshot!(name, draw(&mut app, width, height).backend());
        }
    }
}

#[test]
fn compact_layout_shows_the_tabbed_pane() {
    for pane in [Pane::Health, Pane::Cost, Pane::Events] {
        let mut app = fixture();
        while app.focus != pane {
            press(&mut app, KeyCode::Tab);
        }
        let name = format!("compact_{}_80x24", pane.title().to_lowercase());
        insta::assert_snapshot!(name, draw(&mut app, 80, 24).backend());
    }
}

#[test]
fn a_session_backing_off_and_a_filter() {
    let mut app = fixture();
    press(&mut app, KeyCode::Char('/'));
    for c in "legacy".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Down);
    insta::assert_snapshot!(draw(&mut app, 120, 30).backend());
}

// ---- the canary ---------------------------------------------------------------------------

/// A canary in stage 2 of 4 (25 %), with one failed check, the p99 over its threshold and the
/// error rate still collecting samples.
fn canary_view() -> CanaryView {
    use relaytop_core::canary::controller::{
        CheckCounts, CheckRecord, Reading, ReadingStatus, Verdict,
    };
    use relaytop_core::canary::plan::{Metric, Role as Side};
    use relaytop_core::canary::{Phase, ProviderTraffic};
    let secs = Duration::from_secs;
    let readings = vec![
        Reading {
            metric: Metric::ErrorRate,
            value: Some(0.012),
            threshold: Some(0.05),
            rollback_at: Some(0.10),
            basis: None,
            samples: 41,
            min_samples: 50,
            status: ReadingStatus::Collecting,
        },
        Reading {
            metric: Metric::P50Latency,
            value: Some(850.0),
            threshold: None,
            rollback_at: None,
            basis: None,
            samples: 41,
            min_samples: 0,
            status: ReadingStatus::Shown,
        },
        Reading {
            metric: Metric::P99Latency,
            value: Some(2_140.0),
            threshold: Some(1_780.0),
            rollback_at: Some(4_000.0),
            basis: Some("baseline p99 890 ms × 2".into()),
            samples: 41,
            min_samples: 20,
            status: ReadingStatus::Breached,
        },
    ];
    let check =
        |at: u64, stage: usize, percentage: u32, verdict: Verdict, note: &str| CheckRecord {
            at: secs(at),
            stage,
            percentage,
            verdict,
            window: secs(300),
            readings: Vec::new(),
            note: note.into(),
        };
    let traffic =
        |provider: &str, role: Side, weight: u32, sent: u64, failed: u64| ProviderTraffic {
            provider: provider.into(),
            role,
            weight,
            pool_size: 4,
            pool_up: 4,
            busy: 1,
            waiting: 0,
            waiting_for_slot: 0,
            next_slot_in: Duration::ZERO,
            sends_in_window: 3,
            requests_per_window: 60,
            routed: sent,
            sent,
            ok: sent - failed,
            failed,
            rate_limited: 2,
        };
    CanaryView {
        baseline: "legacy".into(),
        canary: "holysheep".into(),
        phase: Phase::Running,
        banner: None,
        stage: 2,
        stages: 4,
        stage_plan: vec![
            (5, secs(600)),
            (25, secs(900)),
            (50, secs(900)),
            (100, secs(0)),
        ],
        weights: vec![("legacy".into(), 75), ("holysheep".into(), 25)],
        elapsed: secs(1_020),
        stage_elapsed: secs(420),
        stage_time_left: Some(secs(480)),
        next_check_in: Some(secs(20)),
        window: secs(300),
        interval: secs(60),
        time_scale: 120.0,
        readings,
        failed_checks: 1,
        failed_checks_threshold: 3,
        consecutive_failures: 1,
        consecutive_failures_limit: Some(2),
        checks: CheckCounts {
            passed: 14,
            failed: 1,
            inconclusive: 2,
        },
        history: vec![
            check(
                480,
                1,
                5,
                Verdict::Passed,
                "every metric within its threshold",
            ),
            check(
                540,
                1,
                5,
                Verdict::Inconclusive,
                "error_rate: 12 samples of 50",
            ),
            check(
                600,
                1,
                5,
                Verdict::Passed,
                "stage 1 held for 10 min: on to 25 %",
            ),
            check(
                660,
                2,
                25,
                Verdict::Passed,
                "every metric within its threshold",
            ),
            check(
                720,
                2,
                25,
                Verdict::Failed,
                "p99_latency 2140 ms over 1780 ms",
            ),
        ],
        providers: vec![
            traffic("legacy", Side::Baseline, 75, 1_204, 9),
            traffic("holysheep", Side::Canary, 25, 312, 4),
        ],
        notifications: None,
        log: Vec::new(),
    }
}

fn canary_fixture() -> App {
    let mut app = App::new(&setups(), pricing(), start()).with_canary(canary_view());
    for e in events() {
        app.apply(&e);
    }
    app.set_now(NOW);
    app
}

#[test]
fn canary_200x50() {
    let mut app = canary_fixture();
    insta::assert_snapshot!(draw(&mut app, 200, 50).backend());
}

#[test]
fn canary_80x24() {
    let mut app = canary_fixture();
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn canary_rolled_back_zoomed_80x24() {
    use relaytop_core::canary::{Banner, BannerKind, Phase, Trigger};
    let mut view = canary_view();
    view.phase = Phase::RolledBack {
        trigger: Trigger {
            rule: "consecutive_failures".into(),
            value: Some(2.0),
            threshold: Some(2.0),
            samples: 2,
            detail: "2 failed checks in a row".into(),
        },
    };
    view.banner = Some(Banner {
        kind: BannerKind::RolledBack,
        text: "ROLLED BACK: holysheep set to 0 %: 2 failed checks in a row".into(),
    });
    view.weights = vec![("legacy".into(), 100), ("holysheep".into(), 0)];
    let mut app = canary_fixture();
    app.set_canary(view);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Pane::Canary);
    press(&mut app, KeyCode::Char('z'));
    let text = screen_text(&draw(&mut app, 80, 24));
    assert!(text.contains("ROLLED BACK"), "{text}");
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
    // Nothing more to do once rolled back.
    assert_eq!(
        app.handle_key(KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL)),
        None
    );
    assert_eq!(app.confirming(), None);
}

#[test]
fn canary_keys_pause_at_once_and_ask_before_promoting_or_rolling_back() {
    use crate::app::CanaryCommand;
    let mut app = canary_fixture();
    assert_eq!(
        press(&mut app, KeyCode::Char('P')),
        Some(Effect::Canary(CanaryCommand::Pause))
    );
    let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
    assert_eq!(app.handle_key(ctrl('p')), None);
    assert!(app.confirming().is_some_and(|q| q.contains("promote")));
    let text = screen_text(&draw(&mut app, 120, 30));
    assert!(text.contains("y confirms"), "{text}");
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        Some(Effect::Canary(CanaryCommand::Promote))
    );
    assert_eq!(app.handle_key(ctrl('b')), None);
    assert!(app.confirming().is_some_and(|q| q.contains("roll")));
    // Any other key cancels, and does nothing else.
    assert_eq!(press(&mut app, KeyCode::Char('q')), None);
    assert_eq!(app.confirming(), None);
    // Paused: the same key resumes.
    let mut view = canary_view();
    view.phase = relaytop_core::canary::Phase::Paused {
        reason: "by hand".into(),
    };
    app.set_canary(view);
    assert_eq!(
        press(&mut app, KeyCode::Char('P')),
        Some(Effect::Canary(CanaryCommand::Resume))
    );
    // Without a canary the keys only say so.
    let mut plain = fixture();
    assert_eq!(press(&mut plain, KeyCode::Char('P')), None);
    assert_eq!(plain.notice(), Some("no canary in this run"));
}

#[test]
fn tab_skips_the_canary_pane_without_a_canary() {
    let mut app = fixture();
    for _ in 0..12 {
        press(&mut app, KeyCode::Tab);
        assert_ne!(app.focus, Pane::Canary);
    }
}

// ---- markers and the recording -------------------------------------------------------------

#[test]
fn m_writes_a_marker_when_recording() {
    let mut app = fixture();
    assert_eq!(press(&mut app, KeyCode::Char('m')), None);
    assert!(app.notice().is_some_and(|n| n.contains("not recording")));
    let mut app = App::new(&setups(), pricing(), start())
        .with_recording(Some("/tmp/runs/20261125T140000Z".into()));
    for e in events() {
        app.apply(&e);
    }
    app.set_now(NOW);
    assert_eq!(press(&mut app, KeyCode::Char('m')), Some(Effect::Mark(1)));
    app.marked(&crate::app::marker_label(1));
    assert_eq!(press(&mut app, KeyCode::Char('m')), Some(Effect::Mark(2)));
    while app.focus != Pane::Events {
        press(&mut app, KeyCode::Tab);
    }
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(text.contains("marker 1 (key press)"), "{text}");
    assert!(text.contains("rec 20261125T140000Z"), "{text}");
}

// ---- what the screen says ----------------------------------------------------------------

#[test]
fn states_read_as_people_say_them_in_their_colours() {
    let mut app = fixture();
    let terminal = draw(&mut app, 200, 50);
    let text = screen_text(&terminal);
    assert!(text.contains("backing off 3/10 in 2.0 s"), "{text}");
    assert!(
        text.contains("stopped: upgrade answered 401: invalid API key"),
        "{text}"
    );
    assert!(text.contains("streaming"));
    assert!(text.contains("missed"), "session 2's heartbeat");
    // The backing-off state is drawn in the theme's backing_off colour.
    let buffer = terminal.backend().buffer();
    let (x, y) = find(&text, "backing off 3/10");
    assert_eq!(
        buffer[(x, y)].fg,
        app.theme().color(Role::BackingOff),
        "state colour"
    );
}

/// Column and row of the first occurrence of `needle` in a screen's text.
fn find(text: &str, needle: &str) -> (u16, u16) {
    for (y, line) in text.lines().enumerate() {
        if let Some(byte) = line.find(needle) {
            let x = line[..byte].chars().count();
            return (x as u16, y as u16);
        }
    }
    panic!("{needle:?} not on screen");
}

#[test]
fn the_countdown_follows_the_clock() {
    let mut app = fixture();
    app.set_now(96 * S + 500_000);
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(text.contains("backing off 3/10 in 0.5 s"), "{text}");
}

#[test]
fn the_relays_rate_limits_show_under_the_stream() {
    let mut app = fixture();
    app.apply(&SessionEvent {
        session: 7,
        at_us: NOW - S,
        kind: EventKind::RateLimitStatus {
            requests_limit: Some(60),
            requests_remaining: Some(4),
            requests_reset_ms: Some(3_000),
            tokens_limit: Some(150_000),
            tokens_remaining: Some(149_000),
            tokens_reset_ms: None,
        },
    });
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(
        text.contains("rate limits: requests 4/60, reset in 2.0 s · tokens 149k/150k"),
        "{text}"
    );
}

#[test]
fn no_color_draws_without_colours() {
    let mut app = fixture().with_themes(vec![Theme::no_color()], 0);
    let terminal = draw(&mut app, 120, 30);
    let buffer = terminal.backend().buffer();
    let coloured = buffer
        .content()
        .iter()
        .filter(|c| c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset)
        .count();
    assert_eq!(coloured, 0);
}

#[test]
fn tiny_screens_do_not_panic() {
    for (w, h) in [
        (1u16, 1u16),
        (10, 3),
        (20, 5),
        (40, 10),
        (79, 23),
        (150, 29),
        (300, 100),
    ] {
        for zoom in [false, true] {
            let mut app = fixture();
            if zoom {
                press(&mut app, KeyCode::Char('z'));
            }
            press(&mut app, KeyCode::Char('?'));
            draw(&mut app, w, h);
            press(&mut app, KeyCode::Esc);
            for _ in 0..5 {
                press(&mut app, KeyCode::Tab);
                draw(&mut app, w, h);
            }
        }
    }
}

// ---- keys --------------------------------------------------------------------------------

#[test]
fn arrows_and_jk_move_the_selection_and_the_stream_follows_it() {
    let mut app = fixture();
    draw(&mut app, 80, 24);
    assert_eq!(app.selected, Some(7), "chat-holysheep sorts first by name");
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected, Some(4));
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(app.selected, Some(5));
    press(&mut app, KeyCode::Char('k'));
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Up);
    assert_eq!(app.selected, Some(7), "stops at the top");
    press(&mut app, KeyCode::End);
    assert_eq!(app.selected, Some(3), "probe-legacy-4 is last");
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(
        text.contains("Stream probe-legacy-4") || text.contains("probe-legacy-4 · legacy"),
        "{text}"
    );
}

#[test]
fn enter_opens_the_stream_and_esc_comes_back() {
    let mut app = fixture();
    draw(&mut app, 80, 24);
    press(&mut app, KeyCode::Enter);
    assert_eq!((app.focus, app.detail), (Pane::Stream, Pane::Stream));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.focus, Pane::Sessions);
}

#[test]
fn tab_cycles_the_panes_both_ways() {
    let mut app = fixture();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(app.focus);
        press(&mut app, KeyCode::Tab);
    }
    let without_canary: Vec<Pane> = Pane::ALL
        .into_iter()
        .filter(|p| *p != Pane::Canary)
        .collect();
    assert_eq!(seen, without_canary);
    assert_eq!(app.focus, Pane::Sessions);
    app.handle_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_eq!(app.focus, Pane::Events);
}

#[test]
fn slash_filters_sessions_and_esc_clears() {
    let mut app = fixture();
    press(&mut app, KeyCode::Char('/'));
    for c in "legacy back".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert_eq!(app.rows, vec![1], "only the legacy session backing off");
    // `q` while typing is text, not quit.
    assert_eq!(press(&mut app, KeyCode::Char('q')), None);
    assert!(app.rows.is_empty());
    press(&mut app, KeyCode::Backspace);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.input, None);
    assert_eq!(app.session_filter, "legacy back");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.session_filter, "");
    assert_eq!(app.rows.len(), 8);
    // Ctrl-c still quits from the prompt.
    press(&mut app, KeyCode::Char('/'));
    assert_eq!(
        app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Effect::Quit)
    );
}

#[test]
fn slash_on_the_event_log_filters_the_log() {
    let mut app = fixture();
    while app.focus != Pane::Events {
        press(&mut app, KeyCode::Tab);
    }
    press(&mut app, KeyCode::Char('/'));
    for c in "drop".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    let text = screen_text(&draw(&mut app, 120, 30));
    assert!(
        text.contains("dropped 1006: connection lost without a close frame"),
        "{text}"
    );
    assert!(!text.contains("connected (attempt"), "{text}");
}

#[test]
fn sorting_cycles_columns_and_reverses() {
    let mut app = fixture();
    press(&mut app, KeyCode::Right);
    assert_eq!(app.sort, SortColumn::Provider);
    press(&mut app, KeyCode::Char('h'));
    press(&mut app, KeyCode::Char('h'));
    assert_eq!(app.sort, SortColumn::Cost);
    while app.sort != SortColumn::State {
        press(&mut app, KeyCode::Char('l'));
    }
    assert_eq!(app.rows.first(), Some(&3), "stopped first");
    assert_eq!(app.rows.get(1), Some(&1), "then backing off");
    press(&mut app, KeyCode::Char('I'));
    assert_eq!(app.rows.last(), Some(&3));
}

#[test]
fn freeze_keeps_folding_but_holds_the_view() {
    let mut app = fixture();
    let before = screen_text(&draw(&mut app, 200, 50));
    press(&mut app, KeyCode::Char('f'));
    app.apply(&SessionEvent {
        session: 0,
        at_us: NOW + 100,
        kind: EventKind::Closed {
            code: 1011,
            reason: "server error".into(),
            requested: false,
        },
    });
    app.set_now(NOW + 2 * S);
    assert_eq!(app.frozen_events(), Some(1));
    assert_eq!(
        app.live().metrics.session(0).map(|s| s.counts.drops),
        Some(1)
    );
    assert_eq!(
        app.shown().metrics.session(0).map(|s| s.counts.drops),
        Some(0)
    );
    let frozen = screen_text(&draw(&mut app, 200, 50));
    assert!(
        frozen.contains("FROZEN at 14:01:35 · 1 new events"),
        "{frozen}"
    );
    assert!(!frozen.contains("dropped 1011"));
    // Everything but the status bar is as it was.
    let body = |s: &str| s.lines().take(49).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&frozen), body(&before));
    press(&mut app, KeyCode::Char('f'));
    let live = screen_text(&draw(&mut app, 200, 50));
    assert!(live.contains("dropped 1011: server error"), "{live}");
}

#[test]
fn r_asks_to_reconnect_the_selected_session() {
    let mut app = fixture();
    assert_eq!(
        press(&mut app, KeyCode::Char('r')),
        Some(Effect::Reconnect(7))
    );
    app.reconnect_sent(7, true);
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(
        text.contains("reconnect requested for chat-holysheep"),
        "{text}"
    );
}

#[test]
fn plus_and_minus_change_the_window() {
    use relaytop_core::metrics::Window;
    let mut app = fixture();
    assert_eq!(app.window, Window::OneMinute);
    press(&mut app, KeyCode::Char('+'));
    assert_eq!(app.window, Window::FifteenMinutes);
    press(&mut app, KeyCode::Char('='));
    press(&mut app, KeyCode::Char('+'));
    assert_eq!(app.window, Window::Run);
    press(&mut app, KeyCode::Char('-'));
    assert_eq!(app.window, Window::FifteenMinutes);
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(text.contains("15 min"), "{text}");
}

#[test]
fn t_cycles_themes() {
    let (themes, index) = theme_cycle(Theme::dark());
    let mut app = fixture().with_themes(themes, index);
    assert_eq!(app.theme().name(), "dark");
    press(&mut app, KeyCode::Char('t'));
    assert_eq!(app.theme().name(), "light");
    for _ in 0..3 {
        press(&mut app, KeyCode::Char('t'));
    }
    assert_eq!(app.theme().name(), "dark");
}

#[test]
fn question_mark_opens_help_and_keys_close_it() {
    let mut app = fixture();
    press(&mut app, KeyCode::Char('?'));
    assert_eq!(app.help, Some(0));
    press(&mut app, KeyCode::Down);
    assert_eq!(app.help, Some(1), "arrows scroll the help");
    assert_eq!(
        press(&mut app, KeyCode::Char('q')),
        None,
        "q closes help first"
    );
    assert_eq!(app.help, None);
    assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Effect::Quit));
}

#[test]
fn the_stream_stops_following_when_scrolled_and_end_resumes() {
    let mut app = fixture();
    press(&mut app, KeyCode::Enter);
    draw(&mut app, 200, 50);
    assert!(app.stream_scroll.follow);
    press(&mut app, KeyCode::Up);
    assert!(!app.stream_scroll.follow);
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(text.contains("paused"), "{text}");
    // New text does not move a paused view.
    let bottom = app.stream_scroll.bottom;
    app.apply(&SessionEvent {
        session: 7,
        at_us: NOW + 1,
        kind: EventKind::Marker {
            label: "a new line".into(),
        },
    });
    draw(&mut app, 200, 50);
    assert_eq!(app.stream_scroll.bottom, bottom);
    press(&mut app, KeyCode::End);
    assert!(app.stream_scroll.follow);
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(text.contains("a new line"));
}

#[test]
fn home_shows_the_oldest_lines() {
    let mut app = fixture();
    press(&mut app, KeyCode::Enter);
    draw(&mut app, 80, 24);
    press(&mut app, KeyCode::Home);
    let text = screen_text(&draw(&mut app, 80, 24));
    assert!(text.contains("connected · attempt 1"), "{text}");
    assert!(!app.stream_scroll.follow);
}

#[test]
fn a_click_selects_a_session_and_focuses_its_pane() {
    let mut app = fixture();
    draw(&mut app, 80, 24);
    // Row 0 is the border, row 1 the header, row 2 the first session, row 3 the second.
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 5,
        row: 3,
        modifiers: KeyModifiers::NONE,
    };
    app.handle_mouse(click, Rect::new(0, 0, 80, 24));
    assert_eq!(app.selected, Some(app.rows[1]));
    // A click in the lower pane focuses it; the wheel scrolls it.
    let click = MouseEvent { row: 15, ..click };
    app.handle_mouse(click, Rect::new(0, 0, 80, 24));
    assert_eq!(app.focus, Pane::Stream);
    let wheel = MouseEvent {
        kind: MouseEventKind::ScrollUp,
        ..click
    };
    app.handle_mouse(wheel, Rect::new(0, 0, 80, 24));
    assert!(!app.stream_scroll.follow);
}

#[test]
fn a_click_on_a_tab_switches_the_lower_pane() {
    let mut app = fixture();
    draw(&mut app, 80, 24);
    let screen = render::layout(Rect::new(0, 0, 80, 24), &app);
    let lower = screen.pane(Pane::Stream).expect("the stream is below");
    // Tabs: " Stream │ Health │ Cost │ Events " from the second column.
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: lower.x + 1 + 9 + 2,
        row: lower.y,
        modifiers: KeyModifiers::NONE,
    };
    app.handle_mouse(click, Rect::new(0, 0, 80, 24));
    assert_eq!(app.detail, Pane::Health);
}

#[test]
fn viewed_sessions_keep_long_streams_and_the_rest_short() {
    use crate::app::{BACKGROUND_STREAM_LINES, MAX_VIEWED_SESSIONS, VIEWED_STREAM_LINES};
    let many: Vec<SessionSetup> = (0..20u32)
        .map(|i| SessionSetup {
            info: info(i, &format!("s-{i}"), "p", "m"),
            heartbeat_every: None,
        })
        .collect();
    let mut app = App::new(&many, Pricing::new(), start());
    for _ in 0..19 {
        press(&mut app, KeyCode::Down);
    }
    let long = app
        .live()
        .sessions
        .iter()
        .filter(|v| v.stream.capacity() == VIEWED_STREAM_LINES)
        .count();
    assert_eq!(long, MAX_VIEWED_SESSIONS);
    assert_eq!(
        app.live().view(0).map(|v| v.stream.capacity()),
        Some(BACKGROUND_STREAM_LINES)
    );
}

#[test]
fn keys_from_the_configuration_are_used() {
    let overrides =
        std::collections::BTreeMap::from([("reconnect".to_string(), vec!["R".to_string()])]);
    let mut app = fixture().with_keys(keys::KeyMap::new(&overrides).expect("valid"));
    assert_eq!(press(&mut app, KeyCode::Char('r')), None);
    assert_eq!(
        press(&mut app, KeyCode::Char('R')),
        Some(Effect::Reconnect(7))
    );
    press(&mut app, KeyCode::Char('?'));
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(
        text.contains("R           reconnect the selected session now") || text.contains("R  "),
        "{text}"
    );
}

// ---- the key table, the help and the README ------------------------------------------------

/// Every action's keys and help line appear in the help overlay.
#[test]
fn help_lists_every_action_of_the_table() {
    let mut app = fixture();
    press(&mut app, KeyCode::Char('?'));
    let text = screen_text(&draw(&mut app, 200, 60));
    // The replay keys are listed while replaying (tests/replay_dashboard.rs).
    for row in keys::ACTIONS.iter().filter(|a| !a.action.is_replay()) {
        let keys = app.keys().keys_label(row.action);
        let line = text
            .lines()
            .find(|l| l.contains(row.help))
            .unwrap_or_else(|| panic!("help for {} missing:\n{text}", row.name));
        assert!(line.contains(&keys), "{}: {line}", row.name);
    }
}

/// README.md's key list is the one generated from the key table.
#[test]
fn readme_key_list_matches_the_key_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md exists");
    let start = "<!-- keys:start (generated from crates/relaytop-tui/src/keys.rs; see crates/relaytop-tui/src/tests.rs) -->\n";
    let end = "<!-- keys:end -->";
    let expected = keys::readme_key_list();
    let Some(from) = readme.find(start) else {
        panic!(
            "README.md has no `{}` marker; add this section:\n\n{start}{expected}{end}\n",
            start.trim_end()
        );
    };
    let rest = &readme[from + start.len()..];
    let to = rest.find(end).expect("README.md has the keys:end marker");
    assert!(
        rest[..to] == expected,
        "README.md's key list differs from the key table; replace it with:\n\n{start}{expected}{end}\n"
    );
}

/// The `[ui]` example in README.md is a valid configuration.
#[test]
fn readme_ui_example_is_valid() {
    let readme = include_str!("../../../README.md");
    let marker = "```toml\n[ui]\n";
    let start = readme.find(marker).expect("the [ui] example in the README") + 8;
    let end = start + readme[start..].find("```").expect("the example ends");
    let file: relaytop_core::config::file::ConfigFile =
        toml::from_str(&readme[start..end]).expect("the example parses");
    let settings = crate::Settings::resolve(&crate::UiOptions::default(), &file.ui, "README.md")
        .expect("the example's settings are valid");
    assert_eq!(settings.fps, 20);
    assert!(!settings.mouse);
    assert_eq!(settings.themes[settings.theme].name(), "solarized");
}

/// `c` asks for a chat pane on the selected session's provider; `C` for the open ones.
#[test]
fn c_opens_a_chat_pane_on_the_selected_session() {
    let mut app = fixture();
    let selected = app.selected.expect("a session is selected");
    assert_eq!(
        press(&mut app, KeyCode::Char('c')),
        Some(Effect::OpenChat(selected))
    );
    assert_eq!(press(&mut app, KeyCode::Char('C')), Some(Effect::ShowChat));
}
