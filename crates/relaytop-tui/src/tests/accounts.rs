//! The relay accounts on screen: the cost pane's account lines (balance, spend rate, run-out,
//! warnings, bill check) for the fixture's two stations, and the stream pane's line for a
//! failed request the relay explained (its class, fix and request id).

use crossterm::event::KeyCode;

use crate::app::{App, Pane};
use relaytop_core::account::{
    AccountConfig, AccountKind, AccountReading, ErrorClass, RelayError, parse::Balance,
};
use relaytop_core::session::{EventKind, SessionEvent};

use super::fixture::{NOW, S, draw, fixture, press, screen_text};

fn reading(kind: AccountKind, currency: &str, balance: f64) -> EventKind {
    let config = AccountConfig {
        low_balance: Some(2.0),
        run_out_warning_h: 1.0,
        ..AccountConfig::default()
    };
    EventKind::Account(Box::new(AccountReading::new(
        kind,
        Balance {
            currency: currency.into(),
            remaining: Some(balance),
            ..Balance::default()
        },
        1.0,
        &config,
    )))
}

/// The fixture with two readings of each station's account and one explained failure.
fn with_accounts() -> App {
    let mut app = fixture();
    let events = [
        (0, 30 * S, reading(AccountKind::OpenaiBilling, "USD", 3.0)),
        (4, 30 * S, reading(AccountKind::NewApi, "CNY", 40.0)),
        (0, 90 * S, reading(AccountKind::OpenaiBilling, "USD", 1.5)),
        (4, 90 * S, reading(AccountKind::NewApi, "CNY", 39.9)),
        (
            0,
            91 * S,
            EventKind::RelayError(Box::new(RelayError {
                request: Some(9),
                class: ErrorClass::BalanceTooLow,
                status: Some(403),
                relay_request_id: Some("20261125140131sim0042".into()),
                model: Some("gpt-4.1".into()),
            })),
        ),
    ];
    for (session, at_us, kind) in events {
        app.apply(&SessionEvent {
            session,
            at_us,
            kind,
        });
    }
    app.set_now(NOW);
    app
}

#[test]
fn the_cost_pane_shows_which_account_runs_dry_first() {
    let mut app = with_accounts();
    while app.focus != Pane::Cost {
        press(&mut app, KeyCode::Tab);
    }
    press(&mut app, KeyCode::Char('z'));
    let terminal = draw(&mut app, 120, 30);
    let text = screen_text(&terminal);
    let legacy = text.find("legacy 1.500 USD left").expect(&text);
    let holysheep = text
        .find("holysheep 39.90 CNY left")
        .expect("holysheep's account");
    assert!(
        legacy < holysheep,
        "the sooner run-out comes first:\n{text}"
    );
    assert!(text.contains("runs out in 1m"), "{text}");
    assert!(text.contains("LOW BALANCE"), "{text}");
    assert!(text.contains("other traffic shares this key"), "{text}");
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn the_stream_pane_keeps_the_relay_request_id() {
    let mut app = with_accounts();
    app.selected = Some(0);
    while app.focus != Pane::Stream {
        press(&mut app, KeyCode::Tab);
    }
    press(&mut app, KeyCode::Char('z'));
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(
        text.contains(
            "relay: account balance too low (gpt-4.1) · request id 20261125140131sim0042"
        ),
        "{text}"
    );
}

#[test]
fn the_main_screen_says_which_relay_runs_dry_first() {
    let mut app = with_accounts();
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(
        text.contains("accounts:  legacy 1.500 USD · out in 1m 00s"),
        "{text}"
    );
}

#[test]
fn the_events_pane_logs_a_warning_when_it_fires_and_the_relay_error() {
    let mut app = with_accounts();
    while app.focus != Pane::Events {
        press(&mut app, KeyCode::Tab);
    }
    press(&mut app, KeyCode::Char('z'));
    let text = screen_text(&draw(&mut app, 200, 50));
    assert!(
        text.contains("account legacy: low balance, 1.500 USD left (warning below 2.000 USD)"),
        "{text}"
    );
    assert!(
        text.contains("account legacy: runs out in 1m 00s"),
        "{text}"
    );
    assert!(
        text.contains("relay: account balance too low (request id 20261125140131sim0042)"),
        "{text}"
    );
}
