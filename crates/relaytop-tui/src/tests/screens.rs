//! Snapshots of the main screen, the help, every pane zoomed and the compact layout, at
//! 80x24 and 200x50.

use crossterm::event::KeyCode;

use crate::app::Pane;

use super::fixture::{draw, fixture, press};

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
