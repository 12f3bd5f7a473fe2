//! `replay --against`: a run recorded against a slow simulated relay, re-sent to a fast one,
//! shows the fast one's latency, the same requests in the same order, and the target's
//! prices; through the library and through the binary's JSON.
//!
//! Loopback only (simulators on 127.0.0.1 port 0); each run lasts a second or two. The
//! latency checks are the profiles' (800 ms against 40 ms to first token), with wide margins.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use relaytop::against::{self, AgainstOptions, Comparison, Pacing};
use relaytop::export;
use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop_core::config::file;
use relaytop_core::record::{RecordOptions, Recorder, Replay, RunMeta};
use relaytop_core::session::{EventKind, RunClock, SessionCommand};
use relaytop_core::supervisor::Supervisor;
use relaytop_core::world::World;
use relaytop_sim::{SimProfile, SimServer};
use serde_json::Value;
use support::{TEST_KEY, chat, fast_timing, sim, spec, test_key};

fn slow() -> SimProfile {
    SimProfile {
        ttft_p50_ms: 800.0,
        ttft_p99_ms: 1200.0,
        drop_rate: 0.0,
        ..SimProfile::named("legacy").unwrap()
    }
}

fn fast() -> SimProfile {
    SimProfile {
        ttft_p50_ms: 40.0,
        ttft_p99_ms: 80.0,
        drop_rate: 0.0,
        ..SimProfile::named("holysheep").unwrap()
    }
}

/// Three probe sessions with different prompts on `old`; `new` bills 2 $ per 1,000 calls
/// plus list prices, in CNY at 7 per dollar.
fn config_text(old_url: &str, new_url: &str) -> String {
    format!(
        r#"
[defaults]
heartbeat_s = 0.5

[[providers]]
name = "old"
url = "{old_url}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"
billing = {{ per_1000_calls_usd = 1.75 }}

[[providers]]
name = "new"
url = "{new_url}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"
billing = {{ per_1000_calls_usd = 2.0, billing_currency = "CNY", billing_rate = 7.0 }}

[[sessions]]
name = "alpha"
provider = "old"
interval_s = 0.25
prompt = "alpha?"
max_tokens = 9

[[sessions]]
name = "beta"
provider = "old"
interval_s = 0.25
prompt = "beta?"
max_tokens = 7

[[sessions]]
name = "gamma"
provider = "old"
interval_s = 0.25
prompt = "gamma?"
"#
    )
}

/// Records `duration` of the probe sessions against the slow relay; returns the run dir.
async fn record_slow_run(root: &Path, old: &SimServer, new: &SimServer) -> PathBuf {
    let text = config_text(&old.url(), &new.url());
    let mut config = file::parse(&text, "against.toml", &test_key).expect("config");
    // Only the sessions on `old` are recorded; `new` is the target.
    config.sessions.retain(|s| s.info.provider == "old");
    let mut world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world");
    world.recording = Some(RecordOptions::new(root));
    let options = HeadlessOptions {
        duration: Some(Duration::from_millis(2500)),
        requests: None,
        format: OutputFormat::Json,
    };
    let mut out = Vec::new();
    headless::run(&world, &options, &mut out)
        .await
        .expect("headless run");
    let dir = world.recording_dir().expect("recorded");
    world.stop().await;
    dir
}

fn target_world_config(old: &SimServer, new: &SimServer) -> relaytop_core::config::Config {
    let text = config_text(&old.url(), &new.url());
    let mut config = file::parse(&text, "against.toml", &test_key).expect("config");
    config.sessions.clear();
    config
}

fn prompts(recorded: &against::Recorded) -> Vec<String> {
    recorded
        .requests
        .iter()
        .map(|r| {
            r.messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_against_a_faster_relay_shows_its_profile_and_prices() {
    let old = sim(slow()).await;
    let new = sim(fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = record_slow_run(&tmp.path().join("rec"), &old, &new).await;

    let recorded = against::read_recording(std::slice::from_ref(&run_dir)).expect("read");
    let recorded_requests = recorded.report.totals.figures.requests;
    assert!(
        recorded_requests >= 6,
        "{recorded_requests} requests recorded"
    );
    assert_eq!(recorded.requests.len() as u64, recorded_requests);
    assert_eq!(recorded.not_resent, 0);
    assert_eq!(recorded.providers, ["old"]);
    assert!((1..=3).contains(&recorded.concurrency));
    let alpha = recorded
        .requests
        .iter()
        .find(|r| r.session == "alpha")
        .expect("alpha's requests");
    assert_eq!(alpha.max_tokens, Some(9));

    let world = World::start(target_world_config(&old, &new), &relaytop_sim::Embedded)
        .await
        .expect("target world");
    let options = AgainstOptions {
        pacing: Pacing::Recorded {
            speed: 2.0,
            idle_limit: Some(Duration::from_millis(300)),
        },
        record: Some(RecordOptions::new(tmp.path().join("now"))),
        ..AgainstOptions::default()
    };
    let now = against::run(&recorded, &world, "new", &options)
        .await
        .expect("against run");
    let target = against::target(&world, "new").unwrap().clone();
    world.stop().await;
    assert_eq!(now.sent, recorded_requests);
    assert!(!now.interrupted);
    let comparison = Comparison::build(&recorded, &now, &target, options.pacing);
    assert_eq!(
        comparison.now.requests, recorded_requests,
        "{comparison:#?}"
    );
    assert_eq!(comparison.recorded.requests, recorded_requests);
    assert_eq!(
        comparison.now.completed, recorded_requests,
        "a drop-free relay"
    );

    // The profiles: 800 ms against 40 ms to first token.
    let recorded_p50 = comparison.recorded.ttft_p50_ms.unwrap();
    let now_p50 = comparison.now.ttft_p50_ms.unwrap();
    assert!(recorded_p50 > 500.0, "recorded p50 {recorded_p50}");
    assert!(
        (20.0..400.0).contains(&now_p50),
        "now p50 {now_p50} (profile 40 ms)"
    );
    assert!(comparison.change.ttft_p50_ratio.unwrap() < 0.5);

    // The same requests, in order: the new run's recording has them.
    let resent = against::read_recording(&[now.recorded_to.clone().expect("recorded")])
        .expect("read the new run");
    let mut sent = prompts(&resent);
    let mut wanted = prompts(&recorded);
    sent.sort();
    wanted.sort();
    assert_eq!(sent, wanted, "every recorded prompt, once");
    let max_tokens: Vec<_> = resent.requests.iter().map(|r| r.max_tokens).collect();
    assert!(max_tokens.contains(&Some(9)) && max_tokens.contains(&Some(7)));

    // Cost per 1,000 calls from the target's prices: the rows of the new run add up to it.
    let mut replay = Replay::open(&[now.recorded_to.clone().unwrap()]).unwrap();
    let (mut usd, mut done) = (0.0, 0u64);
    export::for_each_row(&mut replay, |row| {
        if let Some(c) = row.cost_usd {
            usd += c;
            done += 1;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(done, comparison.now.completed);
    let per_1000 = comparison.now.cost_per_1000_calls_usd.unwrap();
    assert!(
        (per_1000 - usd / done as f64 * 1000.0).abs() < 1e-4,
        "{per_1000}"
    );
    assert!(per_1000 > 2.0, "the 2 $ fee and the tokens: {per_1000}");
    let billed = comparison.now.cost_per_1000_calls_billed.unwrap();
    assert!((billed - per_1000 * 7.0).abs() < 1e-3, "CNY at 7: {billed}");
    assert_eq!(comparison.now.billing_currency, "CNY");
    // The month at the recorded volume.
    let per_month = recorded_requests as f64 / (recorded.duration_us as f64 / 3.6e9) * 730.0;
    let monthly = comparison.now.monthly_cost_usd.unwrap();
    let expected = comparison.now.cost_usd / comparison.now.requests as f64 * per_month;
    assert!(
        (monthly - expected).abs() <= 0.01 + expected * 1e-6,
        "{monthly} vs {expected}"
    );
    assert!(comparison.to_text(options.pacing).contains("TTFT p50"));

    old.stop().await;
    new.stop().await;
}

/// A chat's turns go out again with their whole conversation, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_turns_are_resent_with_their_conversation_in_order() {
    let server = sim(fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    let clock = RunClock::new();
    let recorder = Recorder::start(
        &RecordOptions::new(tmp.path().join("rec")),
        RunMeta {
            started_at: chrono::Utc::now(),
            source: "test".into(),
            pricing: Default::default(),
            secrets: vec![relaytop_core::config::secret::Secret::new(TEST_KEY)],
            slo: Default::default(),
        },
        clock,
    )
    .unwrap();
    let (mut supervisor, mut rx) = Supervisor::new(clock);
    let mut chat_spec = spec(&server.url(), chat(), fast_timing());
    chat_spec.info.provider = "old".into();
    recorder
        .attach(&mut chat_spec, Some("RELAYTOP_TEST_KEY"))
        .unwrap();
    let id = supervisor.start(chat_spec);
    for turn in ["one", "two", "three"] {
        assert!(supervisor.command(id, SessionCommand::Chat { text: turn.into() }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("a response within 10 s")
                .expect("events");
            if matches!(event.kind, EventKind::Done(_)) {
                break;
            }
        }
    }
    supervisor
        .shutdown(Duration::from_secs(2), &mut rx, |_| {})
        .await;
    let dir = recorder.finish("test", clock.now()).unwrap();

    let recorded = against::read_recording(&[dir]).unwrap();
    let shapes: Vec<Vec<String>> = recorded
        .requests
        .iter()
        .map(|r| r.messages.iter().map(|m| m.content.clone()).collect())
        .collect();
    assert_eq!(shapes.len(), 3);
    assert_eq!(shapes[0], ["one"]);
    assert_eq!(shapes[1].len(), 3, "one, the reply, two");
    assert_eq!(shapes[2].len(), 5);
    assert_eq!(shapes[2][4], "three");

    let text = config_text(&server.url(), &server.url());
    let mut config = file::parse(&text, "against.toml", &test_key).unwrap();
    config.sessions.clear();
    let world = World::start(config, &relaytop_sim::Embedded).await.unwrap();
    let options = AgainstOptions {
        pacing: Pacing::AsFastAsAllowed,
        record: Some(RecordOptions::new(tmp.path().join("now"))),
        ..AgainstOptions::default()
    };
    let now = against::run(&recorded, &world, "new", &options)
        .await
        .unwrap();
    world.stop().await;
    assert_eq!(now.pool, 1, "one request at a time was recorded");
    let resent = against::read_recording(&[now.recorded_to.unwrap()]).unwrap();
    let resent_shapes: Vec<Vec<String>> = resent
        .requests
        .iter()
        .map(|r| r.messages.iter().map(|m| m.content.clone()).collect())
        .collect();
    assert_eq!(resent_shapes, shapes, "the same conversations, in order");
    server.stop().await;
}

/// The binary: `replay DIR --against new --config CFG --headless --format json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_the_comparison_as_json() {
    let old = sim(slow()).await;
    let new = sim(fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = record_slow_run(&tmp.path().join("rec"), &old, &new).await;
    let cfg = tmp.path().join("target.toml");
    std::fs::write(&cfg, config_text(&old.url(), &new.url())).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_relaytop"));
    crate::support::without_tool_variables(&mut command)
        .arg("replay")
        .arg(&run_dir)
        .args(["--against", "new", "--config"])
        .arg(&cfg)
        .args([
            "--headless",
            "--format",
            "json",
            "--speed",
            "4x",
            "--log-dir",
        ])
        .arg(tmp.path().join("logs"))
        .env("RELAYTOP_TEST_KEY", TEST_KEY);
    // The simulators run on this runtime while the binary talks to them.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("relaytop runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains(TEST_KEY) && !String::from_utf8_lossy(&output.stdout).contains(TEST_KEY)
    );
    let v: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let requests = v["recording"]["requests"].as_u64().unwrap();
    assert!(requests >= 6);
    assert_eq!(v["recorded"]["requests"], requests);
    assert_eq!(v["now"]["requests"], requests);
    assert_eq!(v["target"]["provider"], "new");
    assert_eq!(v["target"]["pacing"], "recorded");
    assert_eq!(v["target"]["speed"], 4.0);
    assert_eq!(v["recorded"]["providers"], serde_json::json!(["old"]));
    assert_eq!(v["now"]["billing_currency"], "CNY");
    assert!(v["now"]["cost_per_1000_calls_usd"].as_f64().unwrap() > 2.0);
    assert!(v["now"]["monthly_cost_usd"].as_f64().is_some());
    assert!(v["change"]["ttft_p50_ratio"].as_f64().unwrap() < 0.5);
    old.stop().await;
    new.stop().await;
}

/// A recording of chat-completions traffic re-sent to relays of other formats (Anthropic
/// Messages, OpenAI Responses, Gemini): each gets the same conversations, in its own shape,
/// in order, and answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_traffic_is_resent_in_other_formats() {
    use relaytop_core::session::Protocol;
    let server = sim(fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    let clock = RunClock::new();
    let recorder = Recorder::start(
        &RecordOptions::new(tmp.path().join("rec")),
        RunMeta {
            started_at: chrono::Utc::now(),
            source: "test".into(),
            pricing: Default::default(),
            secrets: vec![relaytop_core::config::secret::Secret::new(TEST_KEY)],
            slo: Default::default(),
        },
        clock,
    )
    .unwrap();
    let (mut supervisor, mut rx) = Supervisor::new(clock);
    let mut chat_spec = spec(&server.sse_base_url(), chat(), fast_timing());
    chat_spec.info.protocol = Protocol::OpenaiSse;
    chat_spec.info.model = "gpt-4o-mini".into();
    chat_spec.info.provider = "old".into();
    recorder
        .attach(&mut chat_spec, Some("RELAYTOP_TEST_KEY"))
        .unwrap();
    let id = supervisor.start(chat_spec);
    for turn in ["one", "two"] {
        assert!(supervisor.command(id, SessionCommand::Chat { text: turn.into() }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("a response within 10 s")
                .expect("events");
            if matches!(event.kind, EventKind::Done(_)) {
                break;
            }
        }
    }
    supervisor
        .shutdown(Duration::from_secs(2), &mut rx, |_| {})
        .await;
    let dir = recorder.finish("test", clock.now()).unwrap();
    let recorded = against::read_recording(&[dir]).unwrap();
    let shapes = |r: &against::Recorded| -> Vec<Vec<String>> {
        r.requests
            .iter()
            .map(|r| r.messages.iter().map(|m| m.content.clone()).collect())
            .collect()
    };
    let wanted = shapes(&recorded);
    assert_eq!(wanted.len(), 2);
    assert_eq!(wanted[1].len(), 3, "one, the reply, two");

    let root = server.root_url();
    let text = format!(
        r#"
[[providers]]
name = "claude"
url = "{root}/v1"
protocol = "anthropic-messages"
api_key_env = "RELAYTOP_TEST_KEY"
model = "claude-sonnet-4-5"

[[providers]]
name = "codex"
url = "{root}/v1"
protocol = "openai-responses"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-5-mini"

[[providers]]
name = "gemini"
url = "{root}"
protocol = "gemini"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gemini-2.5-flash"
"#
    );
    for target in ["claude", "codex", "gemini"] {
        let config = file::parse(&text, "against.toml", &test_key).unwrap();
        let world = World::start(config, &relaytop_sim::Embedded).await.unwrap();
        let options = AgainstOptions {
            pacing: Pacing::AsFastAsAllowed,
            record: Some(RecordOptions::new(tmp.path().join(target))),
            ..AgainstOptions::default()
        };
        let now = against::run(&recorded, &world, target, &options)
            .await
            .unwrap();
        world.stop().await;
        let resent = against::read_recording(&[now.recorded_to.unwrap()]).unwrap();
        assert_eq!(shapes(&resent), wanted, "{target}: the same conversations");
        assert_eq!(
            resent.report.totals.figures.completed, 2,
            "{target}: answered"
        );
    }
    server.stop().await;
}
