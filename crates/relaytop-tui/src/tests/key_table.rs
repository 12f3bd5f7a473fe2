//! The key table against the help overlay, the README's key list and its `[ui]` example.

use crossterm::event::KeyCode;

use crate::keys;

use super::fixture::{draw, fixture, press, screen_text};

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
    let readme = include_str!("../../../../README.md");
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
