//! The alerts pane (`a`) and the status bar's alerts indicator, over a hand-made view.

use crossterm::event::KeyCode;

use relaytop_core::alert::deliver::Failure;
use relaytop_core::alert::{
    Active, AlertsView, Budget, DeliveryCounts, Notice, ScopeKey, Severity, Transition,
};

use super::fixture::{S, draw, fixture, press, screen_text};
use crate::app::Pane;

fn view() -> AlertsView {
    let slow = Active {
        alert: "legacy slow".into(),
        severity: Severity::Critical,
        scope: ScopeKey::Provider("legacy".into()),
        state: "firing",
        since_us: 42 * S,
        value: Some(1234.0),
        threshold: 800.0,
        summary: "TTFT p99 over 1m 1234 ms > 800 ms".into(),
        budget_left: None,
    };
    let errors = Active {
        alert: "errors".into(),
        severity: Severity::Warning,
        scope: ScopeKey::Provider("holysheep".into()),
        state: "pending",
        since_us: 90 * S,
        value: Some(7.5),
        threshold: 5.0,
        summary: "error rate over 1m 7.5 % > 5 %".into(),
        budget_left: None,
    };
    AlertsView {
        rules: 4,
        firing: vec![slow],
        pending: vec![errors],
        recent: vec![Notice {
            alert: "legacy slow".into(),
            severity: Severity::Critical,
            scope: ScopeKey::Provider("legacy".into()),
            transition: Transition::Fired,
            value: Some(1234.0),
            threshold: 800.0,
            text: "[FIRING] legacy slow (critical) · provider:legacy · TTFT p99 over 1m 1234 ms > 800 ms"
                .into(),
            at_us: 42 * S,
            receivers: Vec::new(),
        }],
        budgets: vec![Budget {
            scope: ScopeKey::Provider("legacy".into()),
            objective: 0.99,
            left: Some(-0.4),
        }],
        deliveries: DeliveryCounts {
            sent: 1,
            failed: 1,
            pending: 0,
            failures: vec![Failure {
                receiver: "slack".into(),
                alert: "legacy slow".into(),
                status: Some(403),
                reason: "invalid_token".into(),
            }],
        },
    }
}

#[test]
fn the_status_bar_says_what_is_firing() {
    let mut app = fixture();
    app.set_alerts(Some(view()));
    let text = screen_text(&draw(&mut app, 200, 50));
    let status = text.lines().last().unwrap_or_default();
    assert!(status.contains("⚠ 1 alert firing (a)"), "{status}");
    assert!(status.contains("1 not delivered"), "{status}");
}

#[test]
fn a_opens_the_alerts_pane_and_again_goes_back() {
    let mut app = fixture();
    app.set_alerts(Some(view()));
    press(&mut app, KeyCode::Char('a'));
    assert_eq!(app.focus, Pane::Alerts);
    let text = screen_text(&draw(&mut app, 160, 30));
    for wanted in [
        "Alerts",
        "4 rules · 1 firing · 1 pending",
        "● FIRING",
        "legacy slow",
        "provider:legacy",
        "TTFT p99 over 1m 1234 ms > 800 ms",
        "○ pending",
        "error rate over 1m 7.5 % > 5 %",
        "Error budgets",
        "-40 % (overspent)",
        "Failed deliveries",
        "HTTP 403",
        "Recent",
        "[FIRING] legacy slow",
    ] {
        assert!(text.contains(wanted), "{wanted} missing:\n{text}");
    }
    press(&mut app, KeyCode::Char('a'));
    assert_eq!(app.focus, Pane::Sessions);
    assert!(!app.zoomed);
}

#[test]
fn without_rules_the_pane_says_how_to_add_them() {
    let mut app = fixture();
    press(&mut app, KeyCode::Char('a'));
    let text = screen_text(&draw(&mut app, 120, 30));
    assert!(
        text.contains("no [[alerts]] in the configuration"),
        "{text}"
    );
}
