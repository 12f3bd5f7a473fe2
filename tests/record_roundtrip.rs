//! Record a simulated run, replay it headless, and get the same report, field by field, and
//! the same events, session by session; the export's rows are the live responses.
//!
//! Loopback only (simulators on 127.0.0.1 port 0); the run lasts 1.5 s; no assertion on
//! wall-clock times.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use relaytop::config::file;
use relaytop::config::secret::{Secret, SecretError};
use relaytop::cost::{Pricing, response_cost};
use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop::record::export::{self, ExportFormat, RequestRow};
use relaytop::record::headless::{self as replay_headless, ReplayOptions};
use relaytop::record::{RecordOptions, Replay};
use relaytop::report::Report;
use relaytop::session::Tokens;
use relaytop::sim::{DropMode, SimProfile};
use relaytop::world::World;
use serde_json::Value;
use support::{TEST_KEY, sim};

fn config_text(flaky_url: &str) -> String {
    format!(
        r#"
[defaults]
heartbeat_s = 0.2
dead_after_s = 2
backoff = {{ base_ms = 50, cap_ms = 200 }}

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
    let read_key = |var: &str| match var {
        "RELAYTOP_TEST_KEY" => Ok(Secret::new(TEST_KEY)),
        other => Err(SecretError::NotSet { var: other.into() }),
    };
    let config =
        file::parse(&config_text(&flaky.url()), "roundtrip.toml", &read_key).expect("config");
    let pricing: Pricing = config.pricing().into();
    let mut world = World::start(config).await.expect("world starts");
    let root = tempfile::tempdir().expect("temp dir");
    world.recording = Some(RecordOptions::new(root.path()));

    let mut live_out = Vec::new();
    let options = HeadlessOptions {
        duration: Some(Duration::from_millis(1500)),
        requests: None,
        format: OutputFormat::Ndjson,
    };
    let live = headless::run(&world, &options, &mut live_out)
        .await
        .expect("live run");
    let dir = world.recording_dir().expect("the run was recorded");
    world.stop().await;
    flaky.stop().await;
    assert!(dir.starts_with(root.path()));
    assert!(dir.join("run.json").is_file());
    assert!(
        dir.join("probe_flaky-1.jsonl").is_file(),
        "session names are made safe for file names"
    );
    assert!(live.totals.figures.completed > 0, "responses completed");

    // Replay the run directory headless, as fast as possible.
    let mut replay = Replay::open(std::slice::from_ref(&dir)).expect("replay opens");
    assert_eq!(replay.sessions().len(), 4);
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
    assert_same_report(&live, &replayed);

    // The same events, session by session, with their times.
    let live_events = events_by_session(&live_out);
    let replay_events = events_by_session(&replay_out);
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

    // The session files replay alone too (no run.json: prices from the headers).
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    let mut loose = Replay::open(&files).expect("files open");
    while loose.next_event().is_some() {}
    let loose_report = Report::build(loose.metrics(), replay.run_info());
    assert_eq!(loose_report.totals, live.totals);

    // Export: one row per request; the done ones are the live `done` events.
    let mut rows: Vec<RequestRow> = Vec::new();
    let mut replay = Replay::open(std::slice::from_ref(&dir)).expect("replay opens");
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
    let mut replay = Replay::open(std::slice::from_ref(&dir)).expect("replay opens");
    let mut csv = Vec::new();
    let n = export::export(&mut replay, ExportFormat::Csv, &mut csv).expect("csv");
    assert_eq!(n as usize, rows.len());
    let csv = String::from_utf8(csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "session,provider,model,request,start,start_s,ttft_ms,total_ms,tokens_in,tokens_out,estimated,cost_usd,outcome,detail"
    );
    assert_eq!(lines.clone().count(), rows.len());
    let first = lines.next().unwrap();
    assert_eq!(first, export::csv_record(&rows[0]).trim_end());
    let mut replay = Replay::open(std::slice::from_ref(&dir)).expect("replay opens");
    let mut json = Vec::new();
    export::export(&mut replay, ExportFormat::Json, &mut json).expect("json");
    let json: Vec<Value> = serde_json::from_slice(&json).expect("a JSON array");
    assert_eq!(json.len(), rows.len());
    assert_eq!(json[0], serde_json::to_value(&rows[0]).unwrap());
}
