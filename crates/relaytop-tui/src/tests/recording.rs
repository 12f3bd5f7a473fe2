//! Markers and the recording: `m` writes a marker when recording.

use crossterm::event::KeyCode;

use crate::app::{App, Effect, Pane};

use super::fixture::{NOW, draw, events, fixture, press, pricing, screen_text, setups, start};

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

#[test]
fn a_failed_recording_is_said_in_the_status_bar() {
    let mut app = App::new(&setups(), pricing(), start())
        .with_recording(Some("/tmp/runs/20261125T140000Z".into()));
    for e in events() {
        app.apply(&e);
    }
    app.set_now(NOW);
    app.recording_stopped("cannot write probe-1.jsonl: No space left on device".into());
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(text.contains("✗ rec stopped"), "{text}");
    assert!(!text.contains("● rec 20261125T140000Z"), "{text}");
    assert!(
        app.notice()
            .is_some_and(|n| n.contains("recording stopped: cannot write probe-1.jsonl")),
        "{:?}",
        app.notice()
    );
}
