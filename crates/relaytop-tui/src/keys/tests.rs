//! Tests of the key table and the key map: one row an action, defaults, parsing and printing
//! keys, overrides, hints, key releases.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::actions::{ACTIONS, Action, info};
use super::key::Key;
use super::map::{KeyMap, KeyMapError};

fn key(code: KeyCode) -> Key {
    Key::new(code, KeyModifiers::NONE)
}

#[test]
fn every_action_has_one_row_and_a_unique_name() {
    let all = [
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        Action::Top,
        Action::Bottom,
        Action::NextPane,
        Action::PreviousPane,
        Action::Focus,
        Action::Back,
        Action::Zoom,
        Action::Alerts,
        Action::Filter,
        Action::SortNext,
        Action::SortPrevious,
        Action::SortReverse,
        Action::WindowLonger,
        Action::WindowShorter,
        Action::Freeze,
        Action::Reconnect,
        Action::Mark,
        Action::Chat,
        Action::ChatNext,
        Action::CanaryPause,
        Action::CanaryPromote,
        Action::CanaryRollBack,
        Action::Theme,
        Action::Help,
        Action::Quit,
        Action::ReplayPause,
        Action::ReplayStep,
        Action::ReplaySlower,
        Action::ReplayFaster,
        Action::ReplayBack,
        Action::ReplayForward,
        Action::ReplayPreviousMarker,
        Action::ReplayNextMarker,
        Action::ReplayStart,
        Action::ReplayEnd,
    ];
    assert_eq!(ACTIONS.len(), all.len());
    for action in all {
        assert_eq!(ACTIONS.iter().filter(|a| a.action == action).count(), 1);
        assert_eq!(info(action).action, action);
    }
    let mut names: Vec<_> = ACTIONS.iter().map(|a| a.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ACTIONS.len());
}

#[test]
fn defaults_parse_without_conflicts() {
    for row in ACTIONS {
        for k in row.defaults {
            Key::parse(k).unwrap_or_else(|e| panic!("{}: {e}", row.name));
        }
    }
    let map = KeyMap::new(&BTreeMap::new()).expect("defaults are consistent");
    assert_eq!(map.action(key(KeyCode::Char('q'))), Some(Action::Quit));
    assert_eq!(
        map.action(Key::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Action::Quit)
    );
    assert_eq!(map.action(key(KeyCode::Char('k'))), Some(Action::Up));
    assert_eq!(map.action(key(KeyCode::Up)), Some(Action::Up));
    assert_eq!(map.action(key(KeyCode::Char('/'))), Some(Action::Filter));
    assert_eq!(map.action(key(KeyCode::End)), Some(Action::Bottom));
    assert_eq!(map.action(key(KeyCode::Char('x'))), None);
}

#[test]
fn the_brief_keys_are_bound() {
    let map = KeyMap::default();
    let expect = [
        (KeyCode::Char('j'), Action::Down),
        (KeyCode::Char('h'), Action::SortPrevious),
        (KeyCode::Char('l'), Action::SortNext),
        (KeyCode::Tab, Action::NextPane),
        (KeyCode::Enter, Action::Focus),
        (KeyCode::Char('f'), Action::Freeze),
        (KeyCode::Char('r'), Action::Reconnect),
        (KeyCode::Char('m'), Action::Mark),
        (KeyCode::Char('+'), Action::WindowLonger),
        (KeyCode::Char('-'), Action::WindowShorter),
        (KeyCode::Char('t'), Action::Theme),
        (KeyCode::Char('?'), Action::Help),
    ];
    for (code, action) in expect {
        assert_eq!(map.action(key(code)), Some(action), "{code:?}");
    }
}

#[test]
fn shift_is_folded_into_characters() {
    let map = KeyMap::default();
    // Terminals report `G` with Shift held, `?` sometimes with it too.
    assert_eq!(
        map.action(Key::new(KeyCode::Char('G'), KeyModifiers::SHIFT)),
        Some(Action::Bottom)
    );
    assert_eq!(
        map.action(Key::new(KeyCode::Char('?'), KeyModifiers::SHIFT)),
        Some(Action::Help)
    );
    assert_eq!(
        map.action(Key::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
        Some(Action::PreviousPane)
    );
    assert_eq!(Key::parse("shift-g"), Ok(key(KeyCode::Char('G'))));
    assert_eq!(Key::parse("shift-tab"), Ok(key(KeyCode::BackTab)));
}

#[test]
fn parses_and_prints_keys() {
    for (text, shown) in [
        ("q", "q"),
        ("G", "G"),
        ("ctrl-c", "Ctrl-c"),
        ("Ctrl-Alt-x", "Ctrl-Alt-x"),
        ("pageup", "PgUp"),
        ("PgDn", "PgDn"),
        ("space", "Space"),
        ("f5", "F5"),
        ("-", "-"),
        ("ctrl--", "Ctrl--"),
        ("backtab", "Shift-Tab"),
    ] {
        assert_eq!(
            Key::parse(text).map(|k| k.to_string()),
            Ok(shown.into()),
            "{text}"
        );
    }
    assert!(Key::parse("f13").is_err());
    assert!(
        Key::parse("enterr")
            .unwrap_err()
            .contains("`enterr` is not a key")
    );
    assert!(Key::parse("").is_err());
}

#[test]
fn overrides_replace_defaults_and_take_keys_from_defaults() {
    let overrides = BTreeMap::from([
        ("reconnect".to_string(), vec!["R".to_string()]),
        (
            "freeze".to_string(),
            vec!["r".to_string(), "space".to_string()],
        ),
    ]);
    let map = KeyMap::new(&overrides).unwrap();
    assert_eq!(map.action(key(KeyCode::Char('R'))), Some(Action::Reconnect));
    assert_eq!(map.action(key(KeyCode::Char('r'))), Some(Action::Freeze));
    assert_eq!(
        map.action(key(KeyCode::Char('f'))),
        None,
        "freeze lost its default"
    );
    assert_eq!(map.keys_label(Action::Freeze), "r Space");
    assert_eq!(map.keys_label(Action::Reconnect), "R");
}

#[test]
fn bad_overrides_say_what_to_do() {
    let err = KeyMap::new(&BTreeMap::from([(
        "quitt".to_string(),
        vec!["q".to_string()],
    )]))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("[ui.keys]: no action `quitt`: the actions are up, down"),
        "{err}"
    );
    let err = KeyMap::new(&BTreeMap::from([(
        "quit".to_string(),
        vec!["ctrl-".to_string()],
    )]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("[ui.keys] quit: `ctrl-` is not a key"),
        "{err}"
    );
    let err = KeyMap::new(&BTreeMap::from([
        ("quit".to_string(), vec!["x".to_string()]),
        ("theme".to_string(), vec!["x".to_string()]),
    ]))
    .unwrap_err();
    assert_eq!(
        err,
        KeyMapError::Conflict {
            key: "x".into(),
            first: "quit",
            second: "theme"
        }
    );
}

#[test]
fn an_action_can_be_unbound() {
    let map = KeyMap::new(&BTreeMap::from([("reconnect".to_string(), vec![])])).unwrap();
    assert_eq!(map.action(key(KeyCode::Char('r'))), None);
    assert_eq!(map.keys_label(Action::Reconnect), "(unbound)");
}

#[test]
fn hints_follow_the_table() {
    let hints = KeyMap::default().hints();
    let shown: Vec<String> = hints.iter().map(|(k, l)| format!("{k} {l}")).collect();
    assert_eq!(
        shown,
        [
            "Tab pane", "/ filter", "f freeze", "t theme", "? help", "q quit"
        ]
    );
}

#[test]
fn releases_are_not_keys() {
    let mut ev = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    assert!(Key::from_event(&ev).is_some());
    ev.kind = KeyEventKind::Release;
    assert!(Key::from_event(&ev).is_none());
}
