//! What the screen says: states in their words and colours, the countdown, rate limits,
//! no colour, tiny screens.

use crossterm::event::KeyCode;

use crate::theme::{Role, Theme};
use relaytop_core::session::{EventKind, RateLimits, SessionEvent};

use super::fixture::{NOW, S, draw, fixture, press, screen_text};

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
        kind: EventKind::RateLimitStatus(Box::new(RateLimits {
            requests_limit: Some(60),
            requests_remaining: Some(4),
            requests_reset_ms: Some(3_000),
            tokens_limit: Some(150_000),
            tokens_remaining: Some(149_000),
            tokens_reset_ms: None,
        })),
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
