//! Record a simulated run, replay it headless, and get the same report, field by field, and
//! the same events, session by session; the export's rows are the live responses. For every
//! protocol (relay-v1, openai-sse and openai-realtime in one run), for relay/v1 rate limits
//! (the waits the session decided), and for a canary (its markers); and an SSE body with
//! named events, a refused event and no `[DONE]` replays from its recording as it decoded.
//!
//! Loopback only (simulators on 127.0.0.1 port 0); each run lasts at most a few seconds; no
//! assertion on wall-clock times.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use relaytop::export::{self, ExportFormat, RequestRow};
use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop::replay_headless::{self as replay_headless, ReplayOptions};
use relaytop_core::canary::RunOptions;
use relaytop_core::config::file;
use relaytop_core::cost::{Pricing, response_cost};
use relaytop_core::protocol::openai_chat::decode::SseDecoder;
use relaytop_core::record::{RecordOptions, Recorder, Replay, RunMeta};
use relaytop_core::report::Report;
use relaytop_core::session::tap::Direction;
use relaytop_core::session::{
    EventKind, Protocol, RunClock, SessionEvent, SessionInfo, SessionState, Timing, Tokens,
};
use relaytop_core::world::World;
use relaytop_sim::{DropMode, SimProfile};
use serde_json::Value;
use support::{probe_config, sim, test_key};

fn config_text(flaky_url: &str) -> String {
    format!(
        r#"
[defaults]
heartbeat_s = 0.2
dead_after_s = 2
backoff = {{ base_ms = 50, cap_ms = 200 }}

# Between the flaky relay's TTFT p50 and p99, so that some requests are good and some are
# not: a replay judges them by the objectives the run kept in its run.json.
[slo]
ttft_ms = 45
objective = 0.9

[[providers]]
name = "legacy"
simulate = "legacy"
model = "gpt-4.1"
billing = {{ per_1000_calls_usd = 1.75 }}

[[providers]]
name = "flaky"
url = "{flaky_url}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1-mini"

[[sessions]]
name = "probe-legacy"
provider = "legacy"
count = 2
interval_s = 0.1

[[sessions]]
name = "probe/flaky"
provider = "flaky"
count = 2
interval_s = 0.1
"#
    )
}

/// The events of an ndjson stream, by session name (the summary line left out).
fn events_by_session(ndjson: &[u8]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in String::from_utf8_lossy(ndjson).lines() {
        let v: Value = serde_json::from_str(line).expect("ndjson line");
        if v.get("summary").is_some() {
            continue;
        }
        let session = v["session"].as_str().expect("session").to_owned();
        out.entry(session).or_default().push(v);
    }
    out
}

fn assert_same_report(live: &Report, replayed: &Report) {
    assert_eq!(live.relaytop, replayed.relaytop);
    assert_eq!(live.run, replayed.run, "run");
    assert_eq!(live.providers.len(), replayed.providers.len());
    for (l, r) in live.providers.iter().zip(&replayed.providers) {
        assert_eq!(l.name, r.name);
        assert_eq!(l.figures.ttft_ms, r.figures.ttft_ms, "ttft at {}", l.name);
        assert_eq!(
            l.figures.total_ms, r.figures.total_ms,
            "total at {}",
            l.name
        );
        assert_eq!(
            l.figures.heartbeat_rtt_ms, r.figures.heartbeat_rtt_ms,
            "heartbeat rtt at {}",
            l.name
        );
        assert_eq!(l.figures.cost_usd, r.figures.cost_usd, "cost at {}", l.name);
        assert_eq!(l, r, "provider {}", l.name);
    }
    assert_eq!(live.totals, replayed.totals, "totals");
    assert_eq!(live.sessions.len(), replayed.sessions.len());
    for (l, r) in live.sessions.iter().zip(&replayed.sessions) {
        assert_eq!(l, r, "session {}", l.name);
    }
    assert_eq!(live, replayed);
}

/// The same events, session by session, with their times.
fn assert_same_events(live_out: &[u8], replay_out: &[u8]) -> BTreeMap<String, Vec<Value>> {
    let live_events = events_by_session(live_out);
    let replay_events = events_by_session(replay_out);
    assert_eq!(
        live_events.keys().collect::<Vec<_>>(),
        replay_events.keys().collect::<Vec<_>>()
    );
    for (session, events) in &live_events {
        let replayed = &replay_events[session];
        assert_eq!(events.len(), replayed.len(), "events of {session}");
        for (i, (l, r)) in events.iter().zip(replayed).enumerate() {
            assert_eq!(l, r, "event {i} of {session}");
        }
    }
    live_events
}

/// A run recorded live and replayed from its recording, both headless (ndjson).
struct Runs {
    live: Report,
    live_out: Vec<u8>,
    replayed: Report,
    replay_out: Vec<u8>,
    replay: Replay,
    dir: PathBuf,
    _root: tempfile::TempDir,
}

/// Runs `world` headless for at most `duration`, recording it, then replays the recording
/// headless as fast as possible.
async fn record_and_replay(world: &mut World, duration: Duration) -> Runs {
    let root = tempfile::tempdir().expect("temp dir");
    world.recording = Some(RecordOptions::new(root.path()));
    let mut live_out = Vec::new();
    let options = HeadlessOptions {
        duration: Some(duration),
        requests: None,
        format: OutputFormat::Ndjson,
    };
    let live = headless::run(world, &options, &mut live_out)
        .await
        .expect("live run");
    let dir = world.recording_dir().expect("the run was recorded");
    assert!(dir.starts_with(root.path()));
    let mut replay = Replay::open(std::slice::from_ref(&dir)).expect("replay opens");
    let mut replay_out = Vec::new();
    let options = ReplayOptions {
        format: OutputFormat::Ndjson,
        ..ReplayOptions::default()
    };
    let replayed = replay_headless::run(&mut replay, &options, &mut replay_out)
        .await
        .expect("replay");
    assert!(
        replay.read_stats().warnings().is_empty(),
        "{:?}",
        replay.read_stats()
    );
    Runs {
        live,
        live_out,
        replayed,
        replay_out,
        replay,
        dir,
        _root: root,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_run_reports_what_the_live_run_reported() {
    let flaky = sim(SimProfile {
        ttft_p50_ms: 30.0,
        ttft_p99_ms: 90.0,
        send_usage: false,
        error_rate: 0.1,
        malformed_rate: 0.03,
        drop_rate: 0.1,
        drop_mode: DropMode::Close(1011),
        seed: 11,
        ..SimProfile::default()
    })
    .await;
    let config =
        file::parse(&config_text(&flaky.url()), "roundtrip.toml", &test_key).expect("config");
    let pricing: Pricing = config.pricing().into();
    let mut world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world starts");
    let runs = record_and_replay(&mut world, Duration::from_millis(1500)).await;
    let (live, dir) = (&runs.live, &runs.dir);
    world.stop().await;
    flaky.stop().await;
    assert!(dir.join("run.json").is_file());
    assert!(
        dir.join("probe_flaky-1.jsonl").is_file(),
        "session names are made safe for file names"
    );
    assert!(live.totals.figures.completed > 0, "responses completed");
    let good = live.totals.figures.good;
    assert!(
        good > 0 && good < live.totals.figures.completed,
        "the objective judges some requests good and some not: {good} of {}",
        live.totals.figures.completed
    );

    // The run directory, replayed headless as fast as possible.
    assert_eq!(runs.replay.sessions().len(), 4);
    assert_same_report(live, &runs.replayed);
    let live_events = assert_same_events(&runs.live_out, &runs.replay_out);

    // The session files replay alone too (no run.json: prices from the headers).
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    let mut loose = Replay::open(&files).expect("files open");
    while loose.next_event().is_some() {}
    let loose_report = Report::build(loose.metrics(), runs.replay.run_info());
    assert_eq!(loose_report.totals, live.totals);

    // Export: one row per request; the done ones are the live `done` events.
    let mut rows: Vec<RequestRow> = Vec::new();
    let mut replay = Replay::open(std::slice::from_ref(dir)).expect("replay opens");
    export::for_each_row(&mut replay, |r| {
        rows.push(r);
        Ok(())
    })
    .expect("export");
    let live_done: Vec<&Value> = live_events
        .values()
        .flatten()
        .filter(|e| e["type"] == "done")
        .collect();
    let done_rows: Vec<&RequestRow> = rows.iter().filter(|r| r.outcome == "done").collect();
    assert_eq!(done_rows.len(), live_done.len());
    assert_eq!(done_rows.len() as u64, live.totals.figures.completed);
    let failed_rows = rows.iter().filter(|r| r.outcome == "failed").count() as u64;
    assert_eq!(failed_rows, live.totals.figures.failed);
    let cut_rows = rows.iter().filter(|r| r.outcome == "cut").count() as u64;
    assert_eq!(cut_rows, live.totals.figures.cut);
    let mut total_cost = 0.0;
    for event in live_done {
        let session = event["session"].as_str().unwrap();
        let request = event["request"].as_u64().unwrap();
        let row = done_rows
            .iter()
            .find(|r| r.session == session && r.request == request)
            .unwrap_or_else(|| panic!("no row for {session} request {request}"));
        let tokens: Tokens = serde_json::from_value(event["tokens"].clone()).unwrap();
        assert_eq!(row.provider, event["provider"].as_str().unwrap());
        assert_eq!(
            row.total_ms,
            Some(event["total_us"].as_u64().unwrap() as f64 / 1000.0)
        );
        assert_eq!(
            row.ttft_ms,
            event["ttft_us"].as_u64().map(|t| t as f64 / 1000.0)
        );
        assert_eq!(row.tokens_in, Some(tokens.input));
        assert_eq!(row.tokens_out, Some(tokens.output));
        assert_eq!(row.estimated, tokens.estimated);
        let model = event["model"].as_str().unwrap();
        let cost = response_cost(pricing.provider(&row.provider), model, &tokens, None);
        assert_eq!(row.cost_usd, Some((cost.total_usd * 1e9).round() / 1e9));
        let done_at_us = (event["at_ms"].as_f64().unwrap() * 1000.0).round() as u64;
        let sent_us = done_at_us - event["total_us"].as_u64().unwrap();
        assert_eq!((row.start_s * 1e6).round() as u64, sent_us);
        total_cost += row.cost_usd.unwrap();
    }
    assert!((total_cost - live.totals.figures.cost_usd).abs() < 1e-9);

    // CSV and JSON carry the same rows.
    let mut replay = Replay::open(std::slice::from_ref(dir)).expect("replay opens");
    let mut csv = Vec::new();
    let n = export::export(&mut replay, ExportFormat::Csv, &mut csv).expect("csv");
    assert_eq!(n as usize, rows.len());
    let csv = String::from_utf8(csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "session,provider,model,request,start,start_s,ttft_ms,total_ms,tokens_in,tokens_out,estimated,cost_usd,outcome,detail,answer_ms,tpot_ms,output_tps,stall_ms,text_tokens,error_class,relay_request_id"
    );
    assert_eq!(lines.clone().count(), rows.len());
    let first = lines.next().unwrap();
    assert_eq!(first, export::csv_record(&rows[0]).trim_end());
    let mut replay = Replay::open(std::slice::from_ref(dir)).expect("replay opens");
    let mut json = Vec::new();
    export::export(&mut replay, ExportFormat::Json, &mut json).expect("json");
    let json: Vec<Value> = serde_json::from_slice(&json).expect("a JSON array");
    assert_eq!(json.len(), rows.len());
    assert_eq!(json[0], serde_json::to_value(&rows[0]).unwrap());
}

/// The live events of one session's ndjson stream whose session name starts with `prefix`.
fn events_of<'a>(
    events: &'a BTreeMap<String, Vec<Value>>,
    prefix: &str,
) -> impl Iterator<Item = &'a Value> {
    events
        .iter()
        .filter(move |(session, _)| session.starts_with(prefix))
        .flat_map(|(_, events)| events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_run_of_all_six_protocols_reports_what_the_live_run_reported() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/mixed.toml");
    let config = file::load(&path).expect("the example parses");
    let mut world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world starts");
    let runs = record_and_replay(&mut world, Duration::from_millis(3000)).await;
    world.stop().await;
    for provider in ["holysheep", "compat", "voice", "claude", "codex", "gemini"] {
        let p = runs
            .live
            .providers
            .iter()
            .find(|p| p.name == provider)
            .unwrap_or_else(|| panic!("no {provider}"));
        assert!(p.figures.completed > 0, "{provider} completed responses");
    }
    assert_same_report(&runs.live, &runs.replayed);
    let events = assert_same_events(&runs.live_out, &runs.replay_out);
    // Every format's responses replay from their frames: chunks and `done`.
    for prefix in [
        "probe-compat",
        "probe-voice",
        "probe-claude",
        "probe-codex",
        "probe-gemini",
    ] {
        for kind in ["first_token", "chunk", "done"] {
            assert!(
                events_of(&events, prefix).any(|e| e["type"] == kind),
                "{prefix}: {kind}"
            );
        }
    }
    let lines = |file: &str| std::fs::read_to_string(runs.dir.join(file)).expect("a session file");
    assert!(
        !lines("probe-compat-1.jsonl").contains(r#""type":"chunk""#),
        "chunks are derived from the frames, not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_shows_the_rate_limit_waits_the_session_decided() {
    let relay = sim(SimProfile {
        ttft_p50_ms: 20.0,
        ttft_p99_ms: 60.0,
        rate_limit_rate: 0.4,
        rate_limit_retry_after_ms: 40,
        seed: 3,
        ..SimProfile::default()
    })
    .await;
    let config = probe_config(&relay.url(), 2, "limited.toml");
    let mut world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world starts");
    let runs = record_and_replay(&mut world, Duration::from_millis(1500)).await;
    world.stop().await;
    relay.stop().await;
    let events = assert_same_events(&runs.live_out, &runs.replay_out);
    assert_same_report(&runs.live, &runs.replayed);
    // The waits are the session's schedule (retry n of 5), as the live run reported them.
    let waits: Vec<(u64, String)> = events_of(&events, "probe")
        .filter(|e| e["type"] == "rate_limited")
        .map(|e| {
            let wait = e["wait_ms"].as_u64().expect("wait_ms");
            (wait, e["cause"].as_str().expect("cause").to_owned())
        })
        .collect();
    assert!(
        waits
            .iter()
            .any(|(_, cause)| cause.ends_with("(retry 1 of 5)")),
        "{waits:?}"
    );
    // Each one is a marker to jump to, with the wait the session decided.
    let mut replay = runs.replay;
    replay.wait_indexed();
    let markers: Vec<String> = replay.markers().into_iter().map(|m| m.label).collect();
    for (wait, _) in &waits {
        let label = format!("rate limited: wait {wait} ms");
        assert!(markers.contains(&label), "{label} in {markers:?}");
    }
    assert_eq!(
        markers
            .iter()
            .filter(|m| m.starts_with("rate limited"))
            .count(),
        waits.len(),
        "one marker a wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_canary_run_has_the_canary_markers() {
    let stable = sim(SimProfile::default()).await;
    let broken = sim(SimProfile {
        error_rate: 1.0,
        ..SimProfile::default()
    })
    .await;
    let text = format!(
        r#"
[[providers]]
name = "stable"
url = "{}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"
requests_per_minute = 1000

[[providers]]
name = "broken"
url = "{}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"
requests_per_minute = 1000

[canary]
baseline = "stable"
canary = "broken"
probe_requests_per_minute = 600
max_tokens = 4

[canary.rollback]
consecutive_failures = 5

[[canary.stages]]
percentage = 50
duration_min = 10

[[canary.stages]]
percentage = 100
duration_min = 0
"#,
        stable.url(),
        broken.url()
    );
    let config = file::parse(&text, "canary.toml", &test_key).expect("config");
    let mut world = World::start_with(config, &RunOptions::default(), &relaytop_sim::Embedded)
        .await
        .expect("world starts");
    let runs = record_and_replay(&mut world, Duration::from_secs(10)).await;
    world.stop().await;
    stable.stop().await;
    broken.stop().await;
    let canary = runs.live.canary.as_ref().expect("a canary object");
    assert_eq!(canary.state, "rolled_back");

    // The canary's markers are events of the run: the replay has them, at their times.
    let events = assert_same_events(&runs.live_out, &runs.replay_out);
    let labels: Vec<&str> = events
        .values()
        .flatten()
        .filter(|e| e["type"] == "marker")
        .filter_map(|e| e["label"].as_str())
        .filter(|l| l.starts_with("canary"))
        .collect();
    assert!(
        labels
            .iter()
            .any(|l| l.starts_with("canary: broken starts")),
        "{labels:?}"
    );
    assert!(
        labels.iter().any(|l| l.starts_with("canary rolled back")),
        "{labels:?}"
    );
    // And points to jump to.
    let mut replay = runs.replay;
    replay.wait_indexed();
    let markers: Vec<String> = replay.markers().into_iter().map(|m| m.label).collect();
    for label in &labels {
        assert!(markers.iter().any(|m| m == label), "{label} in {markers:?}");
    }
    // The report is the live one but for the canary object, which is the controller's state
    // (its checks, routing and webhook), not in the events: docs/RECORDING-NOTES.md.
    assert_eq!(runs.replayed.canary, None);
    let mut live = runs.live.clone();
    live.canary = None;
    assert_same_report(&live, &runs.replayed);
}

/// An openai-sse session written through a recorder's tap as the live transport writes it
/// (request events, the decoder's taps, a cancel the session reports itself), then replayed.
#[test]
fn an_sse_session_replays_from_its_recorded_events() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openai_sse");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut bodies: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("fixture"))
        .collect();
    assert!(bodies.len() >= 8, "{files:?}");
    // A named error event with the message at the top, and an event over 1 MiB (refused)
    // between two chunks of a stream that ends without `[DONE]`.
    bodies.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\nevent: error\ndata: {\"message\":\"boom\"}\n\n".to_vec());
    let mut big = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: ".to_vec();
    big.extend(std::iter::repeat_n(b'x', (1 << 20) + 10));
    big.extend_from_slice(
        b"\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"}]}\n\n",
    );
    bodies.push(big);

    let root = tempfile::tempdir().expect("temp dir");
    let meta = RunMeta {
        started_at: chrono::Utc::now(),
        source: "sse fixtures".into(),
        pricing: Default::default(),
        secrets: Vec::new(),
        slo: Default::default(),
    };
    let recorder =
        Recorder::start(&RecordOptions::new(root.path()), meta, RunClock::new()).expect("recorder");
    let info = SessionInfo {
        id: 0,
        name: "sse".into(),
        provider: "compat".into(),
        model: "gpt-4o-mini".into(),
        protocol: Protocol::OpenaiSse,
        url: "http://127.0.0.1:9/v1".into(),
        workload: "probe".into(),
    };
    let tap = recorder
        .tap(&info, &Timing::default(), None)
        .expect("a tap");
    let mut live: Vec<(u64, EventKind)> = Vec::new();
    let ms = Duration::from_millis;
    let report = |live: &mut Vec<(u64, EventKind)>, at: Duration, kind: EventKind| {
        tap.0.event(at, &kind);
        live.push((at.as_micros() as u64, kind));
    };
    report(&mut live, ms(0), EventKind::State(SessionState::Open));
    let mut d = SseDecoder::new();
    let mut at = ms(0);
    for (n, body) in bodies.iter().enumerate() {
        at += ms(1000);
        let (_, sent) = d.request_sent(at, "gpt-4o-mini", 9);
        report(&mut live, at, sent);
        let cancel_after = (n == 0).then_some(2);
        let mut end = None;
        // Small pieces, so that events straddle them (the big body in bigger ones).
        let piece = if body.len() > 4096 { 1 << 16 } else { 97 };
        for (k, piece) in body.chunks(piece).enumerate() {
            if cancel_after == Some(k) {
                // The user cancels: the session ends the response and reports it.
                let mut done = Vec::new();
                d.cancel(at, &mut |e| done.push(e));
                for e in done {
                    report(&mut live, at, e);
                }
                end = Some(relaytop_core::protocol::openai_chat::decode::SseInbound::ResponseDone);
                break;
            }
            at += ms(1);
            let mut derived = Vec::new();
            let inbound = d.on_bytes(at, piece, &mut |e| derived.push(e), &mut |w| {
                tap.0.wire(at, Direction::FromRelay, w)
            });
            live.extend(derived.into_iter().map(|e| (at.as_micros() as u64, e)));
            if !matches!(
                inbound,
                relaytop_core::protocol::openai_chat::decode::SseInbound::Nothing
                    | relaytop_core::protocol::openai_chat::decode::SseInbound::Text
            ) {
                end = Some(inbound);
                break;
            }
        }
        let end = end.unwrap_or_else(|| {
            at += ms(1);
            let mut derived = Vec::new();
            let inbound = d.on_end(at, &mut |e| derived.push(e), &mut |w| {
                tap.0.wire(at, Direction::FromRelay, w)
            });
            live.extend(derived.into_iter().map(|e| (at.as_micros() as u64, e)));
            inbound
        });
        if end == relaytop_core::protocol::openai_chat::decode::SseInbound::StreamCut
            && let Some(failed) = d.fail(relaytop_core::session::ErrorKind::Network, "cut")
        {
            report(&mut live, at, failed);
        }
    }
    let dir = recorder.finish("done", at + ms(1)).expect("finish");
    let kinds = |kind: &str| {
        live.iter()
            .filter(|(_, e)| serde_json::to_value(e).unwrap()["type"] == kind)
            .count()
    };
    assert!(kinds("done") >= 6, "{live:#?}");
    assert_eq!(
        kinds("malformed"),
        2,
        "the fixture's cut JSON, and the refusal"
    );
    assert!(kinds("request_failed") >= 2, "{live:#?}");
    assert!(live.iter().any(|(_, e)| matches!(
        e,
        EventKind::Error { message, .. } if message.contains("boom")
    )));
    assert!(live.iter().any(|(_, e)| matches!(
        e,
        EventKind::Done(done) if done.finish_reason.as_deref() == Some("cancelled")
    )));

    let mut replay = Replay::open(&[dir]).expect("replay opens");
    let replayed: Vec<(u64, EventKind)> = std::iter::from_fn(|| replay.next_event())
        .map(|e: SessionEvent| (e.at_us, e.kind))
        .collect();
    assert!(replay.read_stats().warnings().is_empty());
    assert_eq!(replayed.len(), live.len());
    for (i, (l, r)) in live.iter().zip(&replayed).enumerate() {
        assert_eq!(l, r, "event {i}");
    }
}

/// A recording made by relaytop before the workspace restructure (relay-v1, openai-sse and
/// openai-realtime sessions, `docs/examples/mixed.toml`, 12 s headless) replays to the very
/// summary that version printed for it: the decoders moved, the figures did not.
#[tokio::test]
async fn a_recording_of_the_version_before_the_restructure_replays_to_its_summary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings");
    let mut replay = Replay::open(&[dir.join("v0-mixed")]).expect("open the fixture");
    let options = ReplayOptions {
        format: OutputFormat::Json,
        ..ReplayOptions::default()
    };
    let mut out = Vec::new();
    replay_headless::run(&mut replay, &options, &mut out)
        .await
        .expect("replay");
    let replayed: serde_json::Value = serde_json::from_slice(&out).expect("json");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("v0-mixed.summary.json")).expect("summary"),
    )
    .expect("json");
    // Every figure that version printed is printed the same; figures added since are extra.
    let mut differences = Vec::new();
    same_where_both_have(&replayed, &expected, "", &mut differences);
    assert!(differences.is_empty(), "{differences:#?}");
    assert!(replay.read_stats().warnings().is_empty());
}

/// Collects every place where `expected` has a value that `got` lacks or differs from.
fn same_where_both_have(
    got: &serde_json::Value,
    expected: &serde_json::Value,
    at: &str,
    differences: &mut Vec<String>,
) {
    use serde_json::Value;
    match (got, expected) {
        (Value::Object(g), Value::Object(e)) => {
            for (key, ev) in e {
                match g.get(key) {
                    Some(gv) => same_where_both_have(gv, ev, &format!("{at}/{key}"), differences),
                    None => differences.push(format!("{at}/{key}: missing")),
                }
            }
        }
        (Value::Array(g), Value::Array(e)) if g.len() == e.len() => {
            for (i, (gv, ev)) in g.iter().zip(e).enumerate() {
                same_where_both_have(gv, ev, &format!("{at}/{i}"), differences);
            }
        }
        (g, e) if g != e => differences.push(format!("{at}: {g} != {e}")),
        _ => {}
    }
}
