//! Tests of the controller driven with invented times: stages and promotion, triggers, failed
//! and inconclusive checks, consecutive failures, manual actions and gates, quantiles.

use super::outcome::quantile;
use super::*;
use crate::canary::plan::{CanaryPlan, Metric, OnInconclusive, Role};
use crate::canary::plan::{HealthCheck, Relative, RollbackRules, Stage};
use std::time::Duration;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}
fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The reference file's rules with small numbers: stages of 60, 120, 120 s and a 0-s 100 %
/// one, checks every 10 s, 10 samples for rates and p99, probes at 600 a minute.
fn plan() -> CanaryPlan {
    let metrics = vec![Metric::ErrorRate, Metric::P50Latency, Metric::P99Latency];
    let stage = |percentage, secs| Stage {
        percentage,
        duration: s(secs),
        metrics: metrics.clone(),
        manual_gate: false,
    };
    let mut plan = CanaryPlan::new(
        "legacy",
        "holysheep",
        vec![stage(10, 60), stage(30, 120), stage(50, 120), stage(100, 0)],
    );
    plan.interval = s(10);
    plan.min_samples_rate = 10;
    plan.min_samples_p99 = 10;
    plan.probe_requests_per_minute = Some(600.0);
    plan.health = Some(HealthCheck {
        max_error_rate: Some(0.05),
        p99_ms: Some(250.0),
    });
    plan.rollback = Some(RollbackRules {
        error_rate_above: Some(0.2),
        p99_above_ms: Some(300.0),
        p99_above_factor: None,
        consecutive_failures: Some(5),
    });
    plan
}

/// Feeds one second of traffic at `at`: `n` canary outcomes with `latency`, and as many
/// baseline ones with `baseline`.
fn second(c: &mut Canary, at: Duration, n: u32, latency: Duration, baseline: Duration) {
    for i in 0..n {
        let t = at + ms(u64::from(i) * 1000 / u64::from(n));
        c.on_outcome(Role::Canary, Outcome::ok(latency), t);
        c.on_outcome(Role::Baseline, Outcome::ok(baseline), t);
    }
}

/// Runs the canary from `from` to `to` seconds with steady traffic, collecting decisions.
fn run(c: &mut Canary, from: u64, to: u64, latency: Duration, baseline: Duration) -> Vec<Decision> {
    let mut decisions = Vec::new();
    for t in from..to {
        second(c, s(t), 2, latency, baseline);
        decisions.extend(c.tick(s(t + 1)));
        if c.phase().is_final() {
            break;
        }
    }
    decisions
}

#[test]
fn a_healthy_canary_goes_through_every_stage_and_is_promoted() {
    let mut c = Canary::new(plan(), s(0));
    assert_eq!(c.canary_weight(), 10);
    let decisions = run(&mut c, 0, 400, ms(180), ms(420));
    let advanced: Vec<u32> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Advanced { percentage, .. } => Some(*percentage),
            _ => None,
        })
        .collect();
    assert_eq!(advanced, [30, 50, 100]);
    assert!(
        matches!(c.phase(), Phase::Promoted { .. }),
        "{:?}",
        c.phase()
    );
    assert_eq!(c.canary_weight(), 100);
    assert_eq!(c.stages().len(), 4);
    assert!(c.stages()[..3].iter().all(|s| s.passed_at.is_some()));
    // Stage 1 held 60 s, stages 2 and 3 120 s each: promoted at 300 s.
    assert_eq!(c.stages()[1].entered_at, s(60));
    assert_eq!(c.stages()[3].entered_at, s(300));
    assert_eq!(c.counts().failed, 0);
    assert_eq!(c.counts().inconclusive, 0);
}

#[test]
fn a_p99_above_the_trigger_rolls_back_by_that_rule() {
    let mut c = Canary::new(plan(), s(0));
    let window_before = c.window();
    let decisions = run(&mut c, 0, 400, ms(320), ms(890));
    // At 0 % the window stays the stage's, not the hours a 1 % canary would need.
    assert_eq!(c.window(), window_before);
    let Phase::RolledBack { trigger } = c.phase() else {
        panic!("not rolled back: {:?}", c.phase());
    };
    assert_eq!(trigger.rule, "p99_latency_above_ms");
    assert_eq!(trigger.threshold, Some(300.0));
    assert_eq!(trigger.value, Some(320.0));
    assert_eq!(c.canary_weight(), 0);
    assert_eq!(c.weights(), [("legacy", 100), ("holysheep", 0)]);
    assert!(
        decisions
            .iter()
            .any(|d| matches!(d, Decision::RolledBack(_)))
    );
    assert_eq!(
        c.history().last().map(|h| h.verdict),
        Some(Verdict::RolledBack)
    );
    // The first check that could judge (10 samples × 1.2 at 1 a second: 12 s → 20 s).
    assert_eq!(c.history().next().map(|h| h.at), Some(s(20)));
}

#[test]
fn relative_to_baseline_promotes_the_same_traffic() {
    let mut p = plan();
    p.relative = Some(Relative {
        factor: 1.0,
        rollback_factor: Some(1.2),
    });
    let mut c = Canary::new(p, s(0));
    run(&mut c, 0, 400, ms(320), ms(890));
    assert!(
        matches!(c.phase(), Phase::Promoted { .. }),
        "{:?}",
        c.phase()
    );
    let r = &c.history().next().unwrap().readings[2];
    assert_eq!(r.metric, Metric::P99Latency);
    assert_eq!(r.threshold, Some(890.0));
    assert_eq!(r.status, ReadingStatus::Ok);
    assert!(
        r.basis
            .as_deref()
            .unwrap_or("")
            .contains("legacy p99 890 ms × 1")
    );
}

#[test]
fn failed_checks_halt_progress_count_and_roll_back_at_the_threshold() {
    let mut c = Canary::new(plan(), s(0));
    // p99 270 ms: over the health threshold (250), under the trigger (300).
    let decisions = run(&mut c, 0, 400, ms(270), ms(420));
    let verdicts: Vec<Verdict> = c.history().map(|h| h.verdict).collect();
    assert_eq!(
        verdicts,
        [Verdict::Failed, Verdict::Failed, Verdict::Failed]
    );
    let Phase::RolledBack { trigger } = c.phase() else {
        panic!("{:?}", c.phase())
    };
    assert_eq!(trigger.rule, "failed_checks_threshold");
    assert!(
        !decisions
            .iter()
            .any(|d| matches!(d, Decision::Advanced { .. }))
    );
    assert_eq!(c.failed_checks(), 3);
}

#[test]
fn a_failed_check_holds_the_stage_until_a_check_passes() {
    let mut c = Canary::new(plan(), s(0));
    run(&mut c, 0, 55, ms(180), ms(420));
    // A bad spell of 10 s around the end of stage 1 (at 60 s).
    let mut decisions = run(&mut c, 55, 60, ms(280), ms(420));
    decisions.extend(run(&mut c, 60, 61, ms(180), ms(420)));
    assert_eq!(c.stage(), 0, "still in stage 1: the last check failed");
    assert_eq!(c.failed_checks(), 1);
    decisions.extend(run(&mut c, 61, 200, ms(180), ms(420)));
    assert!(c.stage() >= 1, "advanced once checks passed again");
    assert!(c.stages()[1].entered_at > s(60));
}

#[test]
fn consecutive_failures_roll_back_at_once_and_a_success_resets_them() {
    let mut c = Canary::new(plan(), s(0));
    for i in 0..4 {
        assert!(
            c.on_outcome(Role::Canary, Outcome::failed(), s(i))
                .is_empty()
        );
    }
    c.on_outcome(Role::Canary, Outcome::ok(ms(100)), s(4));
    assert_eq!(c.consecutive_failures(), 0);
    for i in 0..4 {
        c.on_outcome(Role::Canary, Outcome::failed(), s(5 + i));
    }
    // Baseline failures do not count.
    c.on_outcome(Role::Baseline, Outcome::failed(), s(9));
    let decisions = c.on_outcome(Role::Canary, Outcome::failed(), s(9));
    let [Decision::RolledBack(trigger)] = decisions.as_slice() else {
        panic!("{decisions:?}");
    };
    assert_eq!(trigger.rule, "consecutive_failures");
    assert_eq!(trigger.value, Some(5.0));
    assert_eq!(c.canary_weight(), 0);
    assert!(c.history().next().is_none(), "no check was needed");
}

#[test]
fn too_few_samples_are_inconclusive_and_pause_by_default() {
    let mut c = Canary::new(plan(), s(0));
    // Traffic stops: no samples at all.
    let decisions = c.tick(s(25));
    assert!(decisions.contains(&Decision::Check(Verdict::Inconclusive)));
    assert!(matches!(c.phase(), Phase::Paused { reason } if reason.contains("0 of 10 samples")));
    assert_eq!(c.counts().inconclusive, 1);
    assert_eq!(c.failed_checks(), 0, "inconclusive checks do not count");
    // Paused: traffic is back and checks pass, but nothing advances until resumed.
    run(&mut c, 25, 150, ms(180), ms(420));
    assert_eq!(c.stage(), 0);
    let decisions = c.resume(s(150));
    assert!(decisions.contains(&Decision::Resumed));
    assert!(
        decisions
            .iter()
            .any(|d| matches!(d, Decision::Advanced { percentage: 30, .. }))
    );
}

#[test]
fn hold_neither_pauses_nor_counts() {
    let mut p = plan();
    p.on_inconclusive = OnInconclusive::Hold;
    let mut c = Canary::new(p, s(0));
    c.tick(s(40));
    assert_eq!(c.phase(), &Phase::Running);
    assert_eq!(c.counts().inconclusive, 3);
    run(&mut c, 40, 400, ms(180), ms(420));
    assert!(matches!(c.phase(), Phase::Promoted { .. }));
}

#[test]
fn an_error_rate_trigger_needs_its_minimum_samples() {
    let mut c = Canary::new(plan(), s(0));
    for i in 0..3 {
        c.on_outcome(Role::Canary, Outcome::failed(), s(10) + ms(100 * i));
        c.on_outcome(Role::Canary, Outcome::ok(ms(100)), s(10) + ms(100 * i + 50));
    }
    let mut p = plan();
    p.on_inconclusive = OnInconclusive::Hold;
    c.plan = p;
    c.tick(s(20));
    assert_eq!(
        c.phase(),
        &Phase::Running,
        "50 % errors over 6 requests: too few"
    );
    for i in 0..20 {
        c.on_outcome(Role::Canary, Outcome::failed(), s(21) + ms(10 * i));
        c.on_outcome(Role::Canary, Outcome::ok(ms(100)), s(21) + ms(10 * i + 5));
    }
    c.tick(s(30));
    let Phase::RolledBack { trigger } = c.phase() else {
        panic!("{:?}", c.phase())
    };
    assert_eq!(trigger.rule, "error_rate_above");
}

#[test]
fn manual_actions() {
    let mut c = Canary::new(plan(), s(0));
    assert_eq!(c.pause(s(1)).len(), 1);
    assert!(matches!(c.phase(), Phase::Paused { reason } if reason == "paused by hand"));
    assert_eq!(c.resume(s(2)), vec![Decision::Resumed]);
    let promoted = c.promote_by_hand(s(3));
    assert_eq!(
        promoted,
        vec![Decision::Promoted {
            how: "by hand".into()
        }]
    );
    assert_eq!(c.canary_weight(), 100);
    assert!(c.roll_back_by_hand(s(4)).is_empty(), "final");

    let mut c = Canary::new(plan(), s(0));
    c.roll_back_by_hand(s(5));
    assert!(matches!(c.phase(), Phase::RolledBack { trigger } if trigger.rule == "manual"));
    assert_eq!(c.canary_weight(), 0);
}

#[test]
fn a_manual_gate_waits_for_a_person() {
    let mut p = plan();
    p.stages[0].manual_gate = true;
    let mut c = Canary::new(p, s(0));
    run(&mut c, 0, 100, ms(180), ms(420));
    assert!(matches!(c.phase(), Phase::Paused { reason } if reason.contains("manual gate")));
    assert_eq!(c.stage(), 0);
    let decisions = c.resume(s(100));
    assert!(
        decisions
            .iter()
            .any(|d| matches!(d, Decision::Advanced { percentage: 30, .. }))
    );
}

#[test]
fn quantiles_are_nearest_rank() {
    let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
    assert_eq!(quantile(&us, 0.99), Some(99.0));
    assert_eq!(quantile(&us, 0.5), Some(50.0));
    assert_eq!(quantile(&[5000], 0.99), Some(5.0));
    assert_eq!(quantile(&[], 0.99), None);
}
