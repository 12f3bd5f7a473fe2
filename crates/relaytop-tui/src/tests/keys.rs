//! Keys and the mouse: moving, focusing, panes, filters, sorting, freezing, reconnecting,
//! the window, themes, help, scrolling, clicks, the configuration's keys, chat.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use crate::app::{App, Effect, Pane, SessionSetup, SortColumn};
use crate::theme::{Theme, theme_cycle};
use crate::{keys, render};
use relaytop_core::cost::Pricing;
use relaytop_core::session::{EventKind, SessionEvent};

use super::fixture::{NOW, S, draw, fixture, info, press, screen_text, start};

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
