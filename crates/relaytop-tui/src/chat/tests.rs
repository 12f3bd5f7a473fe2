//! The chat pane with invented events: turns, streaming, cancel, a cut and its retry, the
//! commands, and what it looks like (insta snapshots at 80x24 and 200x50).

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::format;
use crate::theme::Theme;
use relaytop_core::cost::{ProviderPricing, response_cost};
use relaytop_core::session::{
    Completed, ErrorKind, EventKind, Protocol, RequestId, SessionCommand, SessionEvent,
    SessionInfo, SessionState, Tokens,
};

fn info() -> SessionInfo {
    SessionInfo {
        id: 0,
        name: "chat".into(),
        provider: "legacy".into(),
        model: "gpt-4.1".into(),
        protocol: Protocol::RelayV1,
        url: "ws://127.0.0.1:1/v1/stream".into(),
        workload: "chat".into(),
    }
}

fn pane() -> ChatPane {
    let pricing = ProviderPricing {
        per_1000_calls_usd: 1.75,
        ..ProviderPricing::default()
    };
    ChatPane::new(0, &info(), Some("Be brief.".into()), pricing)
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn type_text(pane: &mut ChatPane, text: &str) -> Option<ChatEffect> {
    for c in text.chars() {
        pane.handle_key(key(KeyCode::Char(c)));
    }
    pane.handle_key(key(KeyCode::Enter))
}

fn event(at_ms: u64, kind: EventKind) -> SessionEvent {
    SessionEvent::new(0, Duration::from_millis(at_ms), kind)
}

/// A whole reply: sent at `at`, first token 400 ms later, `chunks`, done.
fn reply(pane: &mut ChatPane, request: RequestId, at: u64, chunks: &[&str]) {
    pane.apply(&event(
        at,
        EventKind::RequestSent {
            request,
            model: "gpt-4.1".into(),
            prompt_tokens_estimate: 12,
        },
    ));
    pane.apply(&event(
        at + 400,
        EventKind::FirstToken {
            request,
            ttft_us: 412_000,
        },
    ));
    for chunk in chunks {
        pane.apply(&event(
            at + 500,
            EventKind::Chunk {
                request,
                text: (*chunk).into(),
            },
        ));
    }
    pane.apply(&event(
        at + 1800,
        EventKind::Done(Box::new(Completed {
            request,
            model: "gpt-4.1".into(),
            ttft_us: Some(412_000),
            answer_us: None,
            total_us: 1_812_000,
            tokens: Tokens {
                input: 12,
                output: 48,
                cached_input: 0,
                cache_write_input: 0,
                reasoning_output: 0,
                estimated: true,
            },
            reported_cost_usd: None,
            finish_reason: Some("stop".into()),
            chunks: chunks.len() as u32,
            bytes: 100,
            cut: None,
            text_tokens: None,
        })),
    ));
}

const MARKDOWN_REPLY: &[&str] = &[
    "## Reconnecting\n\nA relay drops idle sockets, so a client should:\n\n",
    "- send a **heartbeat** every 30 s\n- back off with *full jitter*\n- resend the cut turn\n\n",
    "```rust\nlet delay = rng.random_range(0..cap);\n```\n\nThat is all.",
];

/// A conversation: a Markdown reply with its stats, a cut reply.
fn conversation() -> ChatPane {
    let mut p = pane();
    p.apply(&event(0, EventKind::State(SessionState::Open)));
    assert!(matches!(
        type_text(&mut p, "How should a client reconnect?"),
        Some(ChatEffect::Send(_))
    ));
    reply(&mut p, 1, 100, MARKDOWN_REPLY);
    type_text(&mut p, "And the heartbeat?");
    p.apply(&event(
        3000,
        EventKind::RequestSent {
            request: 2,
            model: "gpt-4.1".into(),
            prompt_tokens_estimate: 40,
        },
    ));
    p.apply(&event(
        3300,
        EventKind::Chunk {
            request: 2,
            text: "Every 30 s the client sends".into(),
        },
    ));
    p.apply(&event(
        3400,
        EventKind::RequestFailed {
            request: 2,
            kind: ErrorKind::Network,
            reason: "close 1006 (abnormal: no close frame)".into(),
        },
    ));
    p
}

fn draw(pane: &mut ChatPane, width: u16, height: u16) -> Terminal<TestBackend> {
    let theme = Theme::dark();
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal
        .draw(|frame| {
            let area = frame.area();
            crate::render::chat::prepare(pane, area, &theme);
            crate::render::chat::render(frame, area, pane, &theme);
        })
        .expect("drawn");
    terminal
}

#[test]
fn a_conversation_at_80x24() {
    let mut p = conversation();
    insta::assert_snapshot!(draw(&mut p, 80, 24).backend());
}

#[test]
fn a_conversation_at_200x50() {
    let mut p = conversation();
    type_text(&mut p, "/model gpt-4o-mini");
    for c in "a draft\nof two lines".chars() {
        if c == '\n' {
            p.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
        } else {
            p.handle_key(key(KeyCode::Char(c)));
        }
    }
    insta::assert_snapshot!(draw(&mut p, 200, 50).backend());
}

#[test]
fn an_empty_pane_says_what_to_do() {
    let mut p = pane();
    insta::assert_snapshot!(draw(&mut p, 80, 24).backend());
}

#[test]
fn the_stats_line_has_latency_tokens_and_cost() {
    let p = conversation();
    let first = p.turns().next().unwrap();
    let stats = first.stats.as_ref().expect("stats under the reply");
    let cost = response_cost(&pane().pricing, "gpt-4.1", &stats.tokens, None);
    assert!(cost.priced && cost.estimated);
    assert_eq!(
        stats_text(stats),
        format!(
            "ttft 412 ms · total 1.8 s · ~12 → ~48 tokens (est.) · {}",
            format::money(cost.billed, "USD", true)
        )
    );
    assert_eq!(first.status, ReplyStatus::Done);
}

#[test]
fn esc_cancels_a_streaming_reply_then_leaves() {
    let mut p = pane();
    type_text(&mut p, "tell me a long story");
    p.apply(&event(
        0,
        EventKind::RequestSent {
            request: 1,
            model: "gpt-4.1".into(),
            prompt_tokens_estimate: 5,
        },
    ));
    assert_eq!(
        p.handle_key(key(KeyCode::Esc)),
        Some(ChatEffect::Send(vec![SessionCommand::Cancel]))
    );
    assert_eq!(
        p.handle_key(key(KeyCode::Esc)),
        Some(ChatEffect::Leave),
        "a second Esc leaves even if the reply goes on"
    );
    let mut q = pane();
    assert_eq!(q.handle_key(key(KeyCode::Esc)), Some(ChatEffect::Leave));
    // A cancelled reply is marked so.
    p.apply(&event(
        10,
        EventKind::Done(Box::new(Completed {
            request: 1,
            model: "gpt-4.1".into(),
            ttft_us: None,
            answer_us: None,
            total_us: 10_000,
            tokens: Tokens::default(),
            reported_cost_usd: None,
            finish_reason: Some("cancelled".into()),
            chunks: 0,
            bytes: 0,
            cut: None,
            text_tokens: None,
        })),
    ));
    assert_eq!(p.turns().next().unwrap().status, ReplyStatus::Cancelled);
    assert!(!p.busy());
}

#[test]
fn r_retries_a_cut_reply_only_when_the_input_is_empty() {
    let mut p = conversation();
    assert!(matches!(
        p.turns().last().unwrap().status,
        ReplyStatus::Cut { .. }
    ));
    assert_eq!(
        p.handle_key(key(KeyCode::Char('r'))),
        Some(ChatEffect::Send(vec![SessionCommand::Retry]))
    );
    assert_eq!(p.turns().last().unwrap().status, ReplyStatus::Queued);
    reply(&mut p, 3, 5000, &["Every 30 s."]);
    let last = p.turns().last().unwrap();
    assert_eq!(
        (last.reply.as_str(), &last.status),
        ("Every 30 s.", &ReplyStatus::Done)
    );
    // With nothing cut, r is a letter.
    assert_eq!(p.handle_key(key(KeyCode::Char('r'))), None);
    assert_eq!(p.editor.text(), "r");
}

#[test]
fn commands_change_the_session_and_the_pane() {
    let mut p = conversation();
    assert_eq!(
        type_text(&mut p, "/system Answer in French."),
        Some(ChatEffect::Send(vec![SessionCommand::SetSystem {
            text: Some("Answer in French.".into())
        }]))
    );
    assert_eq!(
        type_text(&mut p, "/model gpt-4o-mini"),
        Some(ChatEffect::Send(vec![SessionCommand::SetModel {
            model: "gpt-4o-mini".into()
        }]))
    );
    assert_eq!(p.model, "gpt-4o-mini");
    let Some(ChatEffect::Save { path, markdown }) = type_text(&mut p, "/save /tmp/x.md") else {
        panic!("save")
    };
    assert_eq!(path, "/tmp/x.md");
    assert!(markdown.contains("## You\n\nHow should a client reconnect?"));
    assert!(markdown.contains("```rust\nlet delay"));
    assert!(markdown.contains("_✂ cut: close 1006"));
    assert_eq!(type_text(&mut p, "/transcribe"), None, "needs a file");
    assert_eq!(
        type_text(&mut p, "/transcribe a.wav"),
        Some(ChatEffect::Transcribe {
            path: "a.wav".into()
        })
    );
    assert_eq!(
        type_text(&mut p, "/clear"),
        Some(ChatEffect::Send(vec![SessionCommand::ClearHistory]))
    );
    assert_eq!(p.turns().len(), 1, "only the note that it was cleared");
    type_text(&mut p, "waiting for its reply");
    assert_eq!(
        type_text(&mut p, "/clear"),
        None,
        "not while a reply is awaited"
    );
    assert_eq!(type_text(&mut p, "/nope"), None);
    assert_eq!(
        type_text(&mut p, "//not a command"),
        Some(ChatEffect::Send(vec![SessionCommand::Chat {
            text: "//not a command".into()
        }]))
    );
}

#[test]
fn a_transcription_shows_its_transcript() {
    let mut p = pane();
    p.transcription_queued("t.wav", "1.50 s of audio (16000 Hz, mono, 16-bit)".into());
    p.apply(&event(
        0,
        EventKind::RequestSent {
            request: 1,
            model: "whisper-1".into(),
            prompt_tokens_estimate: 0,
        },
    ));
    p.apply(&event(
        300,
        EventKind::Transcript {
            request: 1,
            text: "Simulated transcript.".into(),
            is_final: true,
        },
    ));
    let turn = p.turns().next().unwrap();
    assert_eq!(turn.reply, "Simulated transcript.");
    assert_eq!(turn.model, "whisper-1");
}

#[test]
fn a_refused_command_marks_its_turn() {
    let mut p = pane();
    type_text(&mut p, "hello");
    p.apply(&event(
        0,
        EventKind::Error {
            kind: ErrorKind::InvalidRequest,
            message: "not a chat session, or too many turns waiting".into(),
            retryable: false,
            retry_after_ms: None,
        },
    ));
    assert!(matches!(
        p.turns().next().unwrap().status,
        ReplyStatus::Cut { .. }
    ));
    assert!(!p.busy());
}

#[test]
fn scrolling_back_stops_following_and_the_end_follows_again() {
    let mut p = conversation();
    for n in 0..30 {
        p.note(format!("note {n}"));
    }
    draw(&mut p, 80, 24);
    assert!(p.scroll.follow());
    p.handle_key(key(KeyCode::PageUp));
    assert!(!p.scroll.follow());
    let screen = format!("{:?}", draw(&mut p, 80, 24).backend());
    assert!(screen.contains("lines below"), "{screen}");
    p.handle_key(key(KeyCode::PageDown));
    assert!(p.scroll.follow());
}

#[test]
fn layout_is_bounded_and_long_conversations_draw_only_what_shows() {
    let mut p = pane();
    for n in 0..MAX_TURNS + 10 {
        p.note(format!("line {n}"));
    }
    assert_eq!(p.turns().len(), MAX_TURNS);
    draw(&mut p, 80, 24);
    assert_eq!(p.total_lines(), MAX_TURNS * 2);
    assert_eq!(p.visible(10).len(), 10);
}
