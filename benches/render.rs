//! Frame time of the dashboard: 1,000 sessions and a 10,000-line stream pane, drawn on a
//! 250x56 `TestBackend` a few hundred times, with fresh events folded between frames as in a
//! live run. Prints the median and the slower frames. Then the same for a chat pane holding a
//! 2,000-line conversation with a reply streaming in. Run with `cargo bench --bench render`.
#![allow(clippy::unwrap_used)] // test code: a panic is a failure with its place

use std::time::{Duration, Instant};

use chrono::DateTime;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use relaytop_core::cost::Pricing;
use relaytop_core::session::{
    Completed, EventKind, Protocol, SessionEvent, SessionInfo, SessionState, Tokens,
};
use relaytop_tui::app::{App, SessionSetup};
use relaytop_tui::render;

const SESSIONS: u32 = 1_000;
const STREAM_LINES: usize = 10_000;
const FRAMES: usize = 300;
const S: u64 = 1_000_000;

fn setups() -> Vec<SessionSetup> {
    (0..SESSIONS)
        .map(|id| SessionSetup {
            info: SessionInfo {
                id,
                name: format!("probe-{id:04}"),
                provider: if id % 2 == 0 { "legacy" } else { "holysheep" }.into(),
                model: "gpt-4.1".into(),
                protocol: Protocol::RelayV1,
                url: "ws://127.0.0.1:1/v1/stream".into(),
                workload: "probe".into(),
            },
            heartbeat_every: Some(Duration::from_secs(5)),
        })
        .collect()
}

/// One request of `session` at `at_us`: sent, first token, `chunks` chunks, done.
fn request(out: &mut Vec<SessionEvent>, session: u32, request: u64, at_us: u64, chunks: usize) {
    let ttft = 150_000 + (request * 7_919 + u64::from(session) * 104_729) % 400_000;
    let ev = |at_us: u64, kind: EventKind| SessionEvent {
        session,
        at_us,
        kind,
    };
    out.push(ev(
        at_us,
        EventKind::RequestSent {
            request,
            model: "gpt-4.1".into(),
            prompt_tokens_estimate: 7,
        },
    ));
    out.push(ev(
        at_us,
        EventKind::State(SessionState::Streaming { request }),
    ));
    out.push(ev(
        at_us + ttft,
        EventKind::FirstToken {
            request,
            ttft_us: ttft,
        },
    ));
    for i in 0..chunks {
        let text = if i == 0 {
            "Relay".to_string()
        } else {
            format!(" token{i}")
        };
        out.push(ev(
            at_us + ttft + i as u64 * 1_000,
            EventKind::Chunk {
                request,
                text: text.into(),
            },
        ));
    }
    out.push(ev(
        at_us + ttft + 30_000,
        EventKind::Done(Box::new(Completed {
            request,
            model: "gpt-4.1".into(),
            ttft_us: Some(ttft),
            answer_us: None,
            total_us: ttft + 30_000,
            tokens: Tokens {
                input: 7,
                output: chunks as u64,
                cached_input: 0,
                cache_write_input: 0,
                reasoning_output: 0,
                estimated: false,
            },
            reported_cost_usd: None,
            finish_reason: Some("stop".into()),
            chunks: chunks as u32,
            bytes: 100,
            cut: None,
            text_tokens: None,
        })),
    ));
    out.push(ev(
        at_us + ttft + 30_000,
        EventKind::State(SessionState::Open),
    ));
}

fn main() {
    let start = DateTime::parse_from_rfc3339("2026-11-25T14:00:00+00:00").expect("a valid time");
    let mut app = App::new(&setups(), Pricing::new(), start);
    let mut events = Vec::new();
    for session in 0..SESSIONS {
        let ev = |at_us: u64, kind: EventKind| SessionEvent {
            session,
            at_us,
            kind,
        };
        events.push(ev(
            10_000,
            EventKind::Connected {
                attempt: 1,
                handshake_us: 2_000,
            },
        ));
        events.push(ev(10_000, EventKind::State(SessionState::Open)));
        for round in 0..30u64 {
            request(
                &mut events,
                session,
                round + 1,
                round * 20 * S + u64::from(session) * 500,
                25,
            );
            events.push(ev(
                round * 20 * S + 3 * S,
                EventKind::Pong {
                    rtt_us: 1_500 + round,
                },
            ));
        }
    }
    // The selected session (the first by name) gets a 10,000-line stream: three lines a request.
    for r in 0..(STREAM_LINES as u64 / 3 + 1) {
        request(&mut events, 0, 100 + r, 600 * S + r * 1_000, 25);
    }
    events.sort_by_key(|e| e.at_us);
    let folding = Instant::now();
    for e in &events {
        app.apply(e);
    }
    let fold_time = folding.elapsed();
    let mut now = events.last().map_or(0, |e| e.at_us);
    app.set_now(now);

    let mut terminal = Terminal::new(TestBackend::new(250, 56)).expect("a test terminal");
    let area = ratatui::layout::Rect::new(0, 0, 250, 56);
    let mut frames = Vec::with_capacity(FRAMES);
    let mut prepares = Vec::with_capacity(FRAMES);
    let mut draws = Vec::with_capacity(FRAMES);
    let mut next_request = 10_000u64;
    for frame in 0..FRAMES + 20 {
        // Between frames, as live: a response for the selected session and one elsewhere.
        let mut fresh = Vec::new();
        request(
            &mut fresh,
            (frame as u32 * 37) % SESSIONS,
            next_request,
            now,
            3,
        );
        request(&mut fresh, 0, next_request + 1, now, 3);
        next_request += 2;
        for e in &fresh {
            app.apply(e);
        }
        now += 33_000;
        app.set_now(now);
        let began = Instant::now();
        app.prepare(area);
        let prepared = Instant::now();
        terminal
            .draw(|f| render::draw(f, &app))
            .expect("drawing to memory");
        let drawn = Instant::now();
        if frame >= 20 {
            frames.push(drawn - began);
            prepares.push(prepared - began);
            draws.push(drawn - prepared);
        }
    }
    let lines = app.live().view(0).map_or(0, |v| v.stream.len());
    println!(
        "render 250x56, {SESSIONS} sessions, {lines}-line stream pane ({} events folded in {:.0} ms):",
        events.len(),
        fold_time.as_secs_f64() * 1e3
    );
    for (what, mut times) in [
        ("frame (prepare + draw)", frames),
        ("  prepare", prepares),
        ("  draw", draws),
    ] {
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "  {what:<24} median {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms  ({FRAMES} frames)",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        );
    }
    chat_pane();
}

/// Frame time of a chat pane with a 2,000-line conversation (Markdown replies) at 250x56, a
/// reply streaming in a chunk a frame.
fn chat_pane() {
    use crossterm::event::{KeyCode, KeyEvent};
    use relaytop_tui::chat::ChatPane;
    use relaytop_tui::theme::Theme;

    let info = SessionInfo {
        id: 0,
        name: "chat".into(),
        provider: "legacy".into(),
        model: "gpt-4.1".into(),
        protocol: Protocol::RelayV1,
        url: "ws://127.0.0.1:1/v1/stream".into(),
        workload: "chat".into(),
    };
    let theme = Theme::dark();
    let mut pane = ChatPane::new(
        0,
        &info,
        None,
        relaytop_core::cost::ProviderPricing::default(),
    );
    let area = ratatui::layout::Rect::new(0, 0, 250, 56);
    let ev = |at_us: u64, kind: EventKind| SessionEvent {
        session: 0,
        at_us,
        kind,
    };
    let reply = "## Answer\n\nA relay keeps **one socket** per session and *pings* it:\n\n\
                 - heartbeat every 30 s\n- back off with jitter\n\n```rust\nlet x = 1;\n```\n";
    let mut request = 0u64;
    let mut at = 0u64;
    let ask = |pane: &mut ChatPane, request: u64, at: u64, done: bool| {
        pane.handle_paste("How do relays keep a stream alive?");
        pane.handle_key(KeyEvent::from(KeyCode::Enter));
        pane.apply(&ev(
            at,
            EventKind::RequestSent {
                request,
                model: "gpt-4.1".into(),
                prompt_tokens_estimate: 9,
            },
        ));
        pane.apply(&ev(
            at + 1,
            EventKind::Chunk {
                request,
                text: reply.into(),
            },
        ));
        if done {
            pane.apply(&ev(
                at + 2,
                EventKind::Done(Box::new(Completed {
                    request,
                    model: "gpt-4.1".into(),
                    ttft_us: Some(400_000),
                    answer_us: None,
                    total_us: 1_500_000,
                    tokens: Tokens {
                        input: 9,
                        output: 40,
                        cached_input: 0,
                        cache_write_input: 0,
                        reasoning_output: 0,
                        estimated: false,
                    },
                    reported_cost_usd: None,
                    finish_reason: Some("stop".into()),
                    chunks: 1,
                    bytes: 120,
                    cut: None,
                    text_tokens: None,
                })),
            ));
        }
    };
    while pane.total_lines() < 2_000 {
        request += 1;
        at += 2 * S;
        ask(&mut pane, request, at, true);
        pane.layout(248, &theme);
    }
    request += 1;
    at += 2 * S;
    ask(&mut pane, request, at, false);
    let mut terminal = Terminal::new(TestBackend::new(250, 56)).expect("a test terminal");
    let mut frames = Vec::with_capacity(FRAMES);
    for frame in 0..FRAMES + 20 {
        pane.apply(&ev(
            at + 10 + frame as u64,
            EventKind::Chunk {
                request,
                text: " and more words".into(),
            },
        ));
        let began = Instant::now();
        terminal
            .draw(|f| {
                render::chat::prepare(&mut pane, area, &theme);
                render::chat::render(f, area, &pane, &theme);
            })
            .expect("drawing to memory");
        if frame >= 20 {
            frames.push(began.elapsed());
        }
    }
    frames.sort();
    let at_q = |q: f64| frames[((frames.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "chat pane 250x56, {}-line conversation, a reply streaming:\n  frame (layout + draw)    median {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms  ({FRAMES} frames)",
        pane.total_lines(),
        at_q(0.5),
        at_q(0.9),
        at_q(0.99),
        at_q(1.0)
    );
}
