//! The canary end to end: the YAML users keep, relaytop's TOML for the same canary, and short
//! runs against simulated relays on 127.0.0.1 (`--simulate` with a high `--time-scale`, or
//! simulators the test starts itself): promotion through every stage, rollback by the p99
//! trigger, rollback on consecutive failures, the webhook, and the shared rate limits.
//! Every run is bounded (a duration limit) and takes a few seconds.

use crate::support;

use std::time::Duration;

use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop_core::canary::yaml;
use relaytop_core::canary::{NoteLevel, RunOptions};
use relaytop_core::config::secret::{Secret, SecretError};
use relaytop_core::report::Report;
use relaytop_core::session::ratelimit::ProviderLimits;
use relaytop_core::session::{ErrorKind, EventKind};
use relaytop_core::world::World;
use relaytop_sim::SimProfile;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The canary YAML of spec/, as users keep it (a copy; `the_copy_is_the_spec` checks it).
const REFERENCE: &str = include_str!("../data/canary_deployment_config.yaml");

fn any_key(_: &str) -> Result<Secret, SecretError> {
    Ok(Secret::new(TEST_KEY))
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> relaytop_core::config::Config {
    yaml::parse(text, "canary.yaml", &any_key, &no_env).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a world headless (JSON) for at most `limit`, and returns its report.
async fn run(world: &World, limit: Duration) -> Report {
    let options = HeadlessOptions {
        duration: Some(limit),
        requests: None,
        format: OutputFormat::Json,
    };
    let mut out = Vec::new();
    headless::run(world, &options, &mut out)
        .await
        .expect("the run completes")
}

fn schema_errors(report: &Report) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/headless-schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("a valid schema");
    let doc = serde_json::to_value(report).expect("JSON");
    validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn the_copy_is_the_spec() {
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/spec/canary_deployment_config.yaml"
    );
    if let Ok(text) = std::fs::read_to_string(spec) {
        assert_eq!(
            text, REFERENCE,
            "tests/data/ must be the spec's file, unchanged"
        );
    }
}

#[tokio::test]
async fn the_canary_yaml_parses_with_the_expected_warnings() {
    let mut config = parse(REFERENCE);
    let notes = relaytop_core::canary::prepare(
        &mut config,
        &RunOptions {
            simulate: true,
            time_scale: 120.0,
        },
    )
    .expect("prepared");
    let rendered: Vec<String> = notes.iter().map(|n| n.render("canary.yaml")).collect();
    let all = rendered.join("\n");
    let warnings: Vec<&String> = rendered
        .iter()
        .filter(|n| n.contains(": warning: "))
        .collect();
    for want in [
        "canary.yaml:54:25: warning: connection_pool_size 25 is above the relay's limit of 10 connections: using 10",
        "warning: rollback on error rate above 2 % is stricter than the health check's 5 %",
        "holysheep will be rolled back by p99_latency_above_ms: 300",
        "SLACK_WEBHOOK_URL is not set",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(want)),
            "missing warning {want:?} in\n{all}"
        );
    }
    for want in [
        "canary: holysheep (the smaller weight, 10 against 90); baseline: legacy",
        "canary.yaml:56:23: not used: enable_geo_routing: true",
        "canary.yaml:57:21: not used: preferred_region: ap-southeast-1",
        "max_concurrent_streams 100",
        "latency thresholds judge time to first token",
        "--simulate: legacy runs against a simulated relay (profile legacy",
        "--time-scale 120",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
    assert!(
        !all.contains("disagrees"),
        "the file's weights agree:\n{all}"
    );
    assert!(!all.contains("unknown key"), "every key is known:\n{all}");
    // Warnings come last, once each.
    let first_warning = notes.iter().position(|n| n.level == NoteLevel::Warning);
    assert!(
        notes[first_warning.unwrap_or(0)..]
            .iter()
            .all(|n| n.level == NoteLevel::Warning)
    );
    // The pools were added: ×120 for the rate, as far as the rate needs.
    let plan = config.canary.as_ref().expect("a canary");
    assert_eq!(plan.time_scale, 120.0);
    let pool = |p: &str| {
        config
            .sessions
            .iter()
            .filter(|s| s.info.provider == p && s.info.workload == "canary")
            .count()
    };
    assert_eq!(pool("holysheep"), plan.pool_canary as usize);
    assert!(pool("legacy") > 10 && pool("legacy") <= 256);

    // Weights that disagree are a warning.
    let mut config = parse(&REFERENCE.replace("weight: 10", "weight: 30"));
    let notes =
        relaytop_core::canary::prepare(&mut config, &RunOptions::default()).expect("prepared");
    assert!(
        notes.iter().any(|n| n.level == NoteLevel::Warning
            && n.text.contains("the starting weight disagrees: stages[0].percentage 10 %, canary_percentage 10 %, weights 25 %")),
        "{notes:#?}"
    );
}

#[test]
fn relaytops_toml_expresses_the_same_canary() {
    let toml = r#"
[[providers]]
name = "legacy"
url = "wss://legacy-relay-provider.com/v1/stream"
api_key_env = "LEGACY_API_KEY"
model = "gpt-4.1"

[[providers]]
name = "holysheep"
url = "wss://api.holysheep.ai/v1/stream"
api_key_env = "HOLYSHEEP_API_KEY"
model = "gpt-4.1"

[canary]
baseline = "legacy"
canary = "holysheep"
interval_s = 30
pool_size = 25

[canary.health]
max_error_rate = 0.05
p99_latency_ms = 250

[canary.rollback]
error_rate_above = 0.02
p99_latency_above_ms = 300
consecutive_failures = 5

[canary.notify]
webhook_url_env = "SLACK_WEBHOOK_URL_UNSET_IN_TESTS"

[[canary.stages]]
percentage = 10
duration_min = 30
metrics = ["error_rate", "p50_latency", "p99_latency"]

[[canary.stages]]
percentage = 30
duration_min = 60

[[canary.stages]]
percentage = 50
duration_min = 60

[[canary.stages]]
percentage = 100
duration_min = 0
"#;
    let from_toml = relaytop_core::config::file::parse(toml, "canary.toml", &any_key)
        .unwrap_or_else(|e| panic!("{e}"))
        .canary
        .expect("a canary");
    let mut from_yaml = parse(REFERENCE).canary.expect("a canary");
    let mut from_toml_cmp = from_toml.clone();
    from_toml_cmp.notes.clear();
    from_yaml.notes.clear();
    if let Some(n) = &mut from_toml_cmp.notify {
        n.url_env = "SLACK_WEBHOOK_URL".into();
    }
    assert_eq!(from_toml_cmp, from_yaml);
    assert!(from_toml.notes.iter().any(|n| {
        n.text
            .contains("pool_size 25 is above holysheep's limit of 10")
    }));

    // Mistakes are located.
    let err = relaytop_core::config::file::parse(
        &toml.replace("canary = \"holysheep\"", "canary = \"hs\""),
        "canary.toml",
        &any_key,
    )
    .expect_err("an unknown provider")
    .to_string();
    assert!(
        err.starts_with("canary.toml:16:10: [canary] names provider `hs`"),
        "{err}"
    );
}

/// A canary in the reference file's shape with small numbers: stages of one minute (10 %,
/// 50 %, then 100 %), checks every 5 s, 10 samples, 120 probes a minute.
fn short_canary(thresholds: &str, stages: &str) -> String {
    format!(
        r#"
deployment:
  strategy: canary
  canary_percentage: 10
  providers:
    legacy:
      base_url: "wss://legacy.invalid/v1/stream"
      api_key_env: "LEGACY_API_KEY"
      weight: 90
      requests_per_minute: 150
    holysheep:
      base_url: "wss://new.invalid/v1/stream"
      api_key_env: "HOLYSHEEP_API_KEY"
      weight: 10
      requests_per_minute: 150
{thresholds}
  progressive_rollout:
    stages:
{stages}
  probe:
    requests_per_minute: 120
    max_tokens: 4
"#
    )
}

const STAGES: &str = "      - percentage: 10
        duration_minutes: 1
        evaluation_metrics: [error_rate, p50_latency, p99_latency]
      - percentage: 50
        duration_minutes: 1
      - percentage: 100
        duration_minutes: 0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_within_its_thresholds_is_promoted_through_every_stage() {
    let text = short_canary(
        "  health_check:
    interval_seconds: 5
    max_error_rate: 0.1
    latency_p99_threshold_ms: 1500
    min_samples: 10
    min_samples_p99: 10
  rollback:
    trigger_conditions:
      - error_rate_above: 0.2
      - p99_latency_above_ms: 2000
      - consecutive_failures: 5",
        STAGES,
    );
    let options = RunOptions {
        simulate: true,
        time_scale: 20.0,
    };
    let world = World::start_with(parse(&text), &options, &relaytop_sim::Embedded)
        .await
        .expect("world");
    let started = std::time::Instant::now();
    let report = run(&world, Duration::from_secs(40)).await;
    world.stop().await;
    let canary = report.canary.as_ref().expect("a canary object");
    assert_eq!(canary.state, "promoted", "{:#?}", canary.history.last());
    assert_eq!(report.run.ended_by, "canary promoted to 100 %");
    assert_eq!(canary.canary_weight, 100);
    let entered: Vec<(u32, f64)> = canary
        .stage_history
        .iter()
        .map(|s| (s.percentage, s.entered_at.as_secs_f64()))
        .collect();
    assert_eq!(entered.len(), 3, "{entered:?}");
    assert_eq!(
        entered.iter().map(|e| e.0).collect::<Vec<_>>(),
        [10, 50, 100]
    );
    assert!(entered[1].1 >= 60.0 && entered[2].1 >= 120.0, "{entered:?}");
    assert_eq!(canary.stages_passed, 3);
    assert!(canary.checks.passed >= 2);
    assert_eq!(canary.checks.failed, 0);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "2 canary minutes at ×20 take about 6 s, not {:?}",
        started.elapsed()
    );
    // Exactly one request in ten went to the canary while it had 10 % (routing is exact).
    let holysheep = canary
        .providers
        .iter()
        .find(|p| p.provider == "holysheep")
        .expect("holysheep");
    assert!(holysheep.ok > 0 && holysheep.failed == 0, "{holysheep:?}");
    let errors = schema_errors(&report);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_breaches_p99_is_rolled_back_by_the_p99_trigger() {
    // holysheep's simulated p99 is 320 ms: over the 250 ms trigger, under the 1500 ms health
    // threshold, so only the p99 trigger can roll it back.
    let text = short_canary(
        "  health_check:
    interval_seconds: 5
    max_error_rate: 0.1
    latency_p99_threshold_ms: 1500
    min_samples: 10
    min_samples_p99: 40
  rollback:
    trigger_conditions:
      - error_rate_above: 0.2
      - p99_latency_above_ms: 250
      - consecutive_failures: 5",
        "      - percentage: 50
        duration_minutes: 2
      - percentage: 100
        duration_minutes: 0",
    )
    .replace("canary_percentage: 10", "canary_percentage: 50");
    let options = RunOptions {
        simulate: true,
        time_scale: 20.0,
    };
    let world = World::start_with(parse(&text), &options, &relaytop_sim::Embedded)
        .await
        .expect("world");
    let report = run(&world, Duration::from_secs(40)).await;
    world.stop().await;
    let canary = report.canary.as_ref().expect("a canary object");
    assert_eq!(canary.state, "rolled_back", "{canary:#?}");
    let trigger = canary.trigger.as_ref().expect("a trigger");
    assert_eq!(trigger.rule, "p99_latency_above_ms");
    assert_eq!(trigger.threshold, Some(250.0));
    assert!(trigger.value.unwrap_or(0.0) > 250.0);
    assert!(trigger.samples >= 40);
    assert_eq!(canary.canary_weight, 0);
    assert_eq!(
        report.run.ended_by,
        "canary rolled back (p99_latency_above_ms)"
    );
    let last = canary.history.last().expect("the check that rolled back");
    assert_eq!(last.verdict, relaytop_core::canary::Verdict::RolledBack);
    let errors = schema_errors(&report);
    assert!(errors.is_empty(), "{errors:#?}");
}

/// A webhook on 127.0.0.1: every body it receives (answered 200).
async fn webhook() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/services/T0/B0/X",
        listener.local_addr().expect("addr")
    );
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tx.send(text[end + 4..end + 4 + length].to_owned());
                    return;
                }
            });
        }
    });
    (url, rx)
}

/// A canary (`broken`) whose every request fails, against a healthy baseline, both simulators
/// started here; the webhook at `hook`.
fn failing_canary(stable: &str, broken: &str, hook: Option<&str>) -> relaytop_core::config::Config {
    let text = format!(
        r#"
deployment:
  strategy: canary
  providers:
    stable:
      base_url: "{stable}"
      api_key_env: "STABLE_KEY"
      weight: 50
      requests_per_minute: 1000
    broken:
      base_url: "{broken}"
      api_key_env: "BROKEN_KEY"
      weight: 50
      role: canary
      requests_per_minute: 1000
  health_check:
    interval_seconds: 30
    max_error_rate: 0.05
  rollback:
    trigger_conditions:
      - consecutive_failures: 5
  progressive_rollout:
    stages:
      - percentage: 50
        duration_minutes: 10
      - percentage: 100
        duration_minutes: 0
  notification:
    slack_webhook_url_env: "HOOK"
    on_canary_failure: true
    on_canary_success: true
  probe:
    requests_per_minute: 600
    max_tokens: 4
"#
    );
    let hook = hook.map(str::to_owned);
    yaml::parse(&text, "failing.yaml", &any_key, &move |var| {
        (var == "HOOK").then(|| hook.clone()).flatten()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn consecutive_failures_roll_back_at_once_and_the_webhook_gets_one_message() {
    let stable = sim(SimProfile::default()).await;
    let broken = sim(SimProfile {
        error_rate: 1.0,
        ..SimProfile::default()
    })
    .await;
    let (hook, mut messages) = webhook().await;
    let config = failing_canary(&stable.url(), &broken.url(), Some(&hook));
    let world = World::start_with(config, &RunOptions::default(), &relaytop_sim::Embedded)
        .await
        .expect("world");
    let started = std::time::Instant::now();
    let report = run(&world, Duration::from_secs(30)).await;
    let canary = report.canary.as_ref().expect("a canary object");
    assert_eq!(canary.state, "rolled_back");
    let trigger = canary.trigger.as_ref().expect("a trigger");
    assert_eq!(trigger.rule, "consecutive_failures");
    assert_eq!(trigger.value, Some(5.0));
    assert!(
        canary.history.is_empty(),
        "rolled back before any check was due (every 30 s)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "at once: {:?}",
        started.elapsed()
    );
    let broken_traffic = canary
        .providers
        .iter()
        .find(|p| p.provider == "broken")
        .expect("broken");
    // Five in a row rolled back; one more may have been under way then.
    assert!(
        (5..=7).contains(&broken_traffic.failed),
        "{broken_traffic:?}"
    );

    // One message per rollback: exactly one, naming the canary and the rule.
    let message = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .expect("the webhook was called")
        .expect("a body");
    let json: Value = serde_json::from_str(&message).expect("Slack JSON");
    let text = json["text"].as_str().expect("text");
    assert!(text.contains("*broken* rolled back to 0 %"), "{text}");
    assert!(text.contains("consecutive_failures"), "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(messages.try_recv().is_err(), "only one message");
    let notifications = canary.notifications.expect("counted");
    assert_eq!((notifications.sent, notifications.failed), (1, 0));
    world.stop().await;
    stable.stop().await;
    broken.stop().await;
}

#[tokio::test]
async fn time_scale_needs_simulated_relays() {
    let config = failing_canary(
        "ws://127.0.0.1:9/v1/stream",
        "ws://127.0.0.1:9/v1/stream",
        None,
    );
    let err = World::start_with(
        config,
        &RunOptions {
            simulate: false,
            time_scale: 10.0,
        },
        &relaytop_sim::Embedded,
    )
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("--time-scale needs simulated relays"), "{err}");
}

#[tokio::test]
async fn sessions_of_a_provider_share_its_sliding_window() {
    let server = sim(SimProfile {
        ttft_p50_ms: 5.0,
        ttft_p99_ms: 5.0,
        tokens_per_response: 1,
        ..SimProfile::default()
    })
    .await;
    // 5 sends per 500 ms for the three sessions together.
    let window = Duration::from_millis(500);
    let limits = ProviderLimits::new("sim", 5, window, 10);
    let mut watched = Vec::new();
    for _ in 0..3 {
        let mut spec = spec(&server.url(), probe(20), fast_timing());
        spec.limits = Some(limits.clone());
        watched.push(watch(spec));
    }
    // One clock for all three: events are comparable.
    let mut sent: Vec<Duration> = Vec::new();
    let mut waits = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2200);
    for w in &mut watched {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        w.collect_for(remaining).await;
    }
    let origin = watched[0].clock;
    for w in &watched {
        // This session's clock started after the first one's by about this much.
        let offset = origin.now().saturating_sub(w.clock.now());
        for e in &w.seen {
            match &e.kind {
                EventKind::RequestSent { .. } => sent.push(e.at() + offset),
                EventKind::RateLimited { cause, .. } if cause.starts_with("local limit") => {
                    waits += 1
                }
                _ => {}
            }
        }
    }
    sent.sort();
    assert!(sent.len() >= 10, "the sessions did send: {}", sent.len());
    assert!(waits > 0, "and waited for the window");
    // Clocks of the three sessions start within a millisecond or two of each other.
    let slack = Duration::from_millis(20);
    for (i, &start) in sent.iter().enumerate() {
        let inside = sent[i..]
            .iter()
            .take_while(|&&t| t + slack < start + window)
            .count();
        assert!(
            inside <= 5,
            "{inside} sends within 500 ms of {start:?}: {sent:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn rate_limited_answers_back_off_and_give_up_after_five_retries() {
    let server = sim(SimProfile {
        rate_limit_rate: 1.0,
        rate_limit_retry_after_ms: 30,
        ..SimProfile::default()
    })
    .await;
    let mut s = watch(spec(&server.url(), probe(10), fast_timing()));
    let gave_up = s
        .wait_for(Duration::from_secs(10), |k| {
            matches!(
                k,
                EventKind::Error {
                    kind: ErrorKind::RateLimited,
                    retryable: false,
                    ..
                }
            )
        })
        .await
        .unwrap_or_else(|| panic!("never gave up:\n{}", s.story()));
    let EventKind::Error { message, .. } = gave_up.kind else {
        unreachable!()
    };
    assert!(message.contains("after 5 retries"), "{message}");
    let waits: Vec<String> = s
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RateLimited { wait_ms, cause } => Some(format!("{wait_ms} {cause}")),
            _ => None,
        })
        .collect();
    // Retry-After (retry_after_ms: 30) wins over the 1, 2, 4, 8, 16 s schedule.
    assert!(waits.len() >= 6, "{waits:#?}");
    assert!(
        waits[0].starts_with("30 ") && waits[0].ends_with("(retry 1 of 5)"),
        "{waits:#?}"
    );
    assert!(waits[4].ends_with("(retry 5 of 5)"), "{waits:#?}");
    assert!(waits[5].ends_with("(gave up)"), "{waits:#?}");
    server.stop().await;
}

/// The done criterion of the canary issue, with the file unchanged: the new relay is rolled
/// back by the absolute p99 rule at ×120 (about 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_file_rolls_the_new_relay_back_by_the_p99_rule() {
    let options = RunOptions {
        simulate: true,
        time_scale: 120.0,
    };
    let world = World::start_with(parse(REFERENCE), &options, &relaytop_sim::Embedded)
        .await
        .expect("world");
    let report = run(&world, Duration::from_secs(60)).await;
    world.stop().await;
    let canary = report.canary.as_ref().expect("a canary object");
    assert_eq!(canary.state, "rolled_back", "{:#?}", canary.history.last());
    assert_eq!(
        canary.trigger.as_ref().map(|t| t.rule.as_str()),
        Some("p99_latency_above_ms")
    );
}

/// The same traffic judged `relative_to: baseline` is promoted to 100 % (75 s at ×120:
/// `cargo test --test canary -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "75 s: the whole 150-minute rollout at ×120"]
async fn the_reference_file_judged_against_the_baseline_is_promoted() {
    let text = REFERENCE.replace(
        "    latency_p99_threshold_ms: 250\n",
        "    latency_p99_threshold_ms: 250\n    relative_to: baseline\n",
    );
    let options = RunOptions {
        simulate: true,
        time_scale: 120.0,
    };
    let world = World::start_with(parse(&text), &options, &relaytop_sim::Embedded)
        .await
        .expect("world");
    let report = run(&world, Duration::from_secs(200)).await;
    world.stop().await;
    let canary = report.canary.as_ref().expect("a canary object");
    assert_eq!(canary.state, "promoted", "{:#?}", canary.history.last());
    assert_eq!(canary.stages_passed, 4);
}
