//! `relaytop compare`: simulated relays with known profiles on 127.0.0.1 port 0, short stages.
//! A fast relay (40 ms to first token) against a slow one (400 ms): the ranking, the knee
//! against an SLO of 250 ms and the cost per 1,000 calls (an unpriced model: the fee alone)
//! match the profiles; two identical relays are not distinguishable; budgets stop the run and
//! say which. Each run takes a few seconds.

use crate::support;

use std::time::Duration;

use relaytop::compare::{self, CompareOptions, Load};
use relaytop_core::config::file;
use relaytop_core::world::World;
use relaytop_sim::{SimProfile, SimServer};
use support::{sim, test_key};

fn profile(ttft_p50_ms: f64, ttft_p99_ms: f64) -> SimProfile {
    SimProfile {
        ttft_p50_ms,
        ttft_p99_ms,
        tokens_per_second: 500.0,
        tokens_per_response: 12,
        drop_rate: 0.0,
        ..SimProfile::default()
    }
}

/// Providers `a` and `b` on the two servers, an unpriced model (so a call costs its fee), and
/// an SLO of 250 ms to first token, 90 % good.
async fn world(a: &SimServer, fee_a: f64, b: &SimServer, fee_b: f64) -> World {
    let text = format!(
        r#"
[slo]
ttft_ms = 250
objective = 0.9

[[providers]]
name = "a"
url = "{}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "sim-model"
requests_per_minute = 100000
max_connections = 64
billing = {{ per_1000_calls_usd = {fee_a} }}

[[providers]]
name = "b"
url = "{}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "sim-model"
requests_per_minute = 100000
max_connections = 64
billing = {{ per_1000_calls_usd = {fee_b} }}
"#,
        a.url(),
        b.url()
    );
    let config = file::parse(&text, "compare.toml", &test_key).expect("config");
    World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world")
}

fn options(load: Load, stage_ms: u64) -> CompareOptions {
    CompareOptions {
        relays: vec!["a".into(), "b".into()],
        load,
        stage: Duration::from_millis(stage_ms),
        input_tokens: vec![100, 1000],
        max_tokens: 16,
        progress: false,
        drain: Duration::from_secs(5),
        ..CompareOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_ranks_the_faster_relay_first_with_its_knee_and_cost() {
    let slow = sim(profile(400.0, 600.0)).await;
    let fast = sim(profile(40.0, 80.0)).await;
    let world = world(&slow, 2.0, &fast, 0.5).await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let report = compare::compare(&world, &options(Load::Concurrency(vec![1, 4]), 3000), &out)
        .await
        .expect("compare");
    world.stop().await;

    let ranking = &report.ranking.relays;
    assert_eq!(ranking.len(), 2);
    assert_eq!(ranking[0].relay, "b", "{:#?}", report.ranking);
    assert!(!ranking[1].tied_with_above, "{:#?}", report.ranking);
    assert!(ranking[0].ci.median < 120.0, "{:?}", ranking[0].ci);
    assert!(ranking[1].ci.median > 250.0, "{:?}", ranking[1].ci);
    assert!(
        report.verdict[0].starts_with("b is best"),
        "{:?}",
        report.verdict
    );

    let a = &report.relays[0];
    let b = &report.relays[1];
    // The knee: the fast relay meets the SLO at every level, the slow one at none.
    assert_eq!(b.knee, Some(4.0), "{:#?}", b.levels);
    assert_eq!(a.knee, None, "{:#?}", a.levels);
    // Cost per 1,000 calls: the fee (the model is unpriced).
    let cost_a = a.cost_per_1000_calls_usd.unwrap();
    let cost_b = b.cost_per_1000_calls_usd.unwrap();
    assert!((cost_a - 2.0).abs() < 1e-6, "{cost_a}");
    assert!((cost_b - 0.5).abs() < 1e-6, "{cost_b}");
    // More load, more requests; every reply within the max_tokens asked.
    assert!(
        b.levels[1].completed > b.levels[0].completed,
        "{:#?}",
        b.levels
    );
    for l in a.levels.iter().chain(&b.levels) {
        assert_eq!(l.over_limit, 0);
        assert!(l.ttft_ms.count > 0);
        assert!(l.output_speed_tps.p50 > 100.0, "{l:#?}");
    }
    assert_eq!(report.ended_by, "every load level ran");

    // The report directory.
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(
        json.trim_start().starts_with("{\n  \"ranking\""),
        "the ranking first"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg"), "charts inline");
    for stem in [
        "latency-vs-load",
        "speed-vs-load",
        "ttft-distribution",
        "cost-vs-quality",
    ] {
        let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..4], b"\x89PNG", "{stem}.png");
        assert!(out.join(format!("{stem}.svg")).exists());
    }
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("| rank |")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_two_identical_relays_are_not_distinguishable() {
    let one = sim(profile(150.0, 300.0)).await;
    let two = sim(profile(150.0, 300.0)).await;
    let world = world(&one, 1.0, &two, 1.0).await;
    let tmp = tempfile::tempdir().unwrap();
    let report = compare::compare(
        &world,
        &options(Load::Concurrency(vec![2]), 3000),
        &tmp.path().join("r"),
    )
    .await
    .expect("compare");
    world.stop().await;
    let ranking = &report.ranking.relays;
    assert_eq!(ranking.len(), 2);
    assert!(ranking[1].tied_with_above, "{:#?}", report.ranking);
    assert_eq!(ranking[1].rank, 1);
    assert!(
        report.verdict[0].starts_with("not distinguishable"),
        "{:?}",
        report.verdict
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_budgets_stop_the_run_and_say_which() {
    let one = sim(profile(20.0, 40.0)).await;
    let two = sim(profile(20.0, 40.0)).await;
    // $100 per 1,000 calls: a tenth of a dollar a call.
    let world = world(&one, 100.0, &two, 100.0).await;
    let tmp = tempfile::tempdir().unwrap();

    let mut o = options(Load::Concurrency(vec![1, 2]), 10_000);
    o.max_requests = Some(10);
    let started = std::time::Instant::now();
    let report = compare::compare(&world, &o, &tmp.path().join("requests"))
        .await
        .expect("compare");
    assert!(report.stopped_early);
    assert!(
        report.ended_by.contains("--max-requests 10"),
        "{}",
        report.ended_by
    );
    let sent: u64 = report.relays.iter().map(|r| r.sent).sum();
    assert_eq!(sent, 10);
    assert_eq!(
        report.relays[0].levels.len(),
        1,
        "the second level never ran"
    );
    assert!(started.elapsed() < Duration::from_secs(9));

    let mut o = options(Load::Rate(vec![20.0]), 10_000);
    o.max_cost_usd = Some(0.5);
    let report = compare::compare(&world, &o, &tmp.path().join("cost"))
        .await
        .expect("compare");
    assert!(
        report.ended_by.contains("--max-cost"),
        "{}",
        report.ended_by
    );
    let spent: f64 = report.relays.iter().map(|r| r.cost_usd).sum();
    assert!((0.5..1.5).contains(&spent), "{spent}");
    assert!(report.load_seconds < 8.0, "{}", report.load_seconds);

    let mut o = options(Load::Concurrency(vec![1, 2]), 10_000);
    o.duration = Some(Duration::from_millis(1500));
    let report = compare::compare(&world, &o, &tmp.path().join("duration"))
        .await
        .expect("compare");
    assert!(
        report.ended_by.contains("--duration"),
        "{}",
        report.ended_by
    );
    world.stop().await;
}
