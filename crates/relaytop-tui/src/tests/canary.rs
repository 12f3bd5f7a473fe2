//! The canary pane: its snapshots, and its keys (pause at once, ask before promoting or
//! rolling back).

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::app::{App, Effect, Pane};
use relaytop_core::canary::CanaryView;

use super::fixture::{NOW, draw, events, fixture, press, pricing, screen_text, setups, start};

/// A canary in stage 2 of 4 (25 %), with one failed check, the p99 over its threshold and the
/// error rate still collecting samples.
fn canary_view() -> CanaryView {
    use relaytop_core::canary::controller::{
        CheckCounts, CheckRecord, Reading, ReadingStatus, Verdict,
    };
    use relaytop_core::canary::plan::{Metric, Role as Side};
    use relaytop_core::canary::{Phase, ProviderTraffic};
    let secs = Duration::from_secs;
    let readings = vec![
        Reading {
            metric: Metric::ErrorRate,
            value: Some(0.012),
            threshold: Some(0.05),
            rollback_at: Some(0.10),
            basis: None,
            samples: 41,
            min_samples: 50,
            status: ReadingStatus::Collecting,
        },
        Reading {
            metric: Metric::P50Latency,
            value: Some(850.0),
            threshold: None,
            rollback_at: None,
            basis: None,
            samples: 41,
            min_samples: 0,
            status: ReadingStatus::Shown,
        },
        Reading {
            metric: Metric::P99Latency,
            value: Some(2_140.0),
            threshold: Some(1_780.0),
            rollback_at: Some(4_000.0),
            basis: Some("baseline p99 890 ms × 2".into()),
            samples: 41,
            min_samples: 20,
            status: ReadingStatus::Breached,
        },
    ];
    let check =
        |at: u64, stage: usize, percentage: u32, verdict: Verdict, note: &str| CheckRecord {
            at: secs(at),
            stage,
            percentage,
            verdict,
            window: secs(300),
            readings: Vec::new(),
            note: note.into(),
        };
    let traffic =
        |provider: &str, role: Side, weight: u32, sent: u64, failed: u64| ProviderTraffic {
            provider: provider.into(),
            role,
            weight,
            pool_size: 4,
            pool_up: 4,
            busy: 1,
            waiting: 0,
            waiting_for_slot: 0,
            next_slot_in: Duration::ZERO,
            sends_in_window: 3,
            requests_per_window: 60,
            routed: sent,
            sent,
            ok: sent - failed,
            failed,
            rate_limited: 2,
        };
    CanaryView {
        baseline: "legacy".into(),
        canary: "holysheep".into(),
        phase: Phase::Running,
        banner: None,
        stage: 2,
        stages: 4,
        stage_plan: vec![
            (5, secs(600)),
            (25, secs(900)),
            (50, secs(900)),
            (100, secs(0)),
        ],
        weights: vec![("legacy".into(), 75), ("holysheep".into(), 25)],
        elapsed: secs(1_020),
        stage_elapsed: secs(420),
        stage_time_left: Some(secs(480)),
        next_check_in: Some(secs(20)),
        window: secs(300),
        interval: secs(60),
        time_scale: 120.0,
        readings,
        failed_checks: 1,
        failed_checks_threshold: 3,
        consecutive_failures: 1,
        consecutive_failures_limit: Some(2),
        checks: CheckCounts {
            passed: 14,
            failed: 1,
            inconclusive: 2,
        },
        history: vec![
            check(
                480,
                1,
                5,
                Verdict::Passed,
                "every metric within its threshold",
            ),
            check(
                540,
                1,
                5,
                Verdict::Inconclusive,
                "error_rate: 12 samples of 50",
            ),
            check(
                600,
                1,
                5,
                Verdict::Passed,
                "stage 1 held for 10 min: on to 25 %",
            ),
            check(
                660,
                2,
                25,
                Verdict::Passed,
                "every metric within its threshold",
            ),
            check(
                720,
                2,
                25,
                Verdict::Failed,
                "p99_latency 2140 ms over 1780 ms",
            ),
        ],
        providers: vec![
            traffic("legacy", Side::Baseline, 75, 1_204, 9),
            traffic("holysheep", Side::Canary, 25, 312, 4),
        ],
        notifications: None,
        log: Vec::new(),
    }
}

fn canary_fixture() -> App {
    let mut app = App::new(&setups(), pricing(), start()).with_canary(canary_view());
    for e in events() {
        app.apply(&e);
    }
    app.set_now(NOW);
    app
}

#[test]
fn canary_200x50() {
    let mut app = canary_fixture();
    insta::assert_snapshot!(draw(&mut app, 200, 50).backend());
}

#[test]
fn canary_80x24() {
    let mut app = canary_fixture();
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn canary_rolled_back_zoomed_80x24() {
    use relaytop_core::canary::{Banner, BannerKind, Phase, Trigger};
    let mut view = canary_view();
    view.phase = Phase::RolledBack {
        trigger: Trigger {
            rule: "consecutive_failures".into(),
            value: Some(2.0),
            threshold: Some(2.0),
            samples: 2,
            detail: "2 failed checks in a row".into(),
        },
    };
    view.banner = Some(Banner {
        kind: BannerKind::RolledBack,
        text: "ROLLED BACK: holysheep set to 0 %: 2 failed checks in a row".into(),
    });
    view.weights = vec![("legacy".into(), 100), ("holysheep".into(), 0)];
    let mut app = canary_fixture();
    app.set_canary(view);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Pane::Canary);
    press(&mut app, KeyCode::Char('z'));
    let text = screen_text(&draw(&mut app, 80, 24));
    assert!(text.contains("ROLLED BACK"), "{text}");
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
    // Nothing more to do once rolled back.
    assert_eq!(
        app.handle_key(KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL)),
        None
    );
    assert_eq!(app.confirming(), None);
}

#[test]
fn canary_keys_pause_at_once_and_ask_before_promoting_or_rolling_back() {
    use crate::app::CanaryCommand;
    let mut app = canary_fixture();
    assert_eq!(
        press(&mut app, KeyCode::Char('P')),
        Some(Effect::Canary(CanaryCommand::Pause))
    );
    let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
    assert_eq!(app.handle_key(ctrl('p')), None);
    assert!(app.confirming().is_some_and(|q| q.contains("promote")));
    let text = screen_text(&draw(&mut app, 120, 30));
    assert!(text.contains("y confirms"), "{text}");
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        Some(Effect::Canary(CanaryCommand::Promote))
    );
    assert_eq!(app.handle_key(ctrl('b')), None);
    assert!(app.confirming().is_some_and(|q| q.contains("roll")));
    // Any other key cancels, and does nothing else.
    assert_eq!(press(&mut app, KeyCode::Char('q')), None);
    assert_eq!(app.confirming(), None);
    // Paused: the same key resumes.
    let mut view = canary_view();
    view.phase = relaytop_core::canary::Phase::Paused {
        reason: "by hand".into(),
    };
    app.set_canary(view);
    assert_eq!(
        press(&mut app, KeyCode::Char('P')),
        Some(Effect::Canary(CanaryCommand::Resume))
    );
    // Without a canary the keys only say so.
    let mut plain = fixture();
    assert_eq!(press(&mut plain, KeyCode::Char('P')), None);
    assert_eq!(plain.notice(), Some("no canary in this run"));
}

#[test]
fn tab_skips_the_canary_pane_without_a_canary() {
    let mut app = fixture();
    for _ in 0..12 {
        press(&mut app, KeyCode::Tab);
        assert_ne!(app.focus, Pane::Canary);
    }
}
