//! The relay account against the simulator's account flavours on 127.0.0.1: each kind read
//! (and detected by `auto`) with a balance whose decrease equals the simulated ledger, the
//! run-out projection and the low-balance warning (fired once, cleared by a top-up), the bill
//! check catching a station that charges 1.5× list price, and each relay error body of
//! RELAY-STATIONS §4 classified with its words, its request id kept, and the right reach
//! (a spent balance stops the session; a missing channel fails only that model).

use crate::support;

use std::time::Duration;

use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop_core::account::poll::read_once;
use relaytop_core::account::{AccountAlert, AccountBook, AccountKind, BillVerdict, ErrorClass};
use relaytop_core::config::file::Provider;
use relaytop_core::session::{EventKind, Protocol, SessionState};
use relaytop_sim::{SimProfile, SimServer};
use support::*;

const LONG: Duration = Duration::from_secs(10);

fn station(kind: &str, balance: f64, multiplier: f64) -> SimProfile {
    SimProfile {
        ttft_p50_ms: 5.0,
        ttft_p99_ms: 10.0,
        tokens_per_second: 0.0,
        tokens_per_response: 20,
        account_kind: Some(kind.to_owned()),
        account_balance_usd: balance,
        bill_multiplier: multiplier,
        ..SimProfile::default()
    }
}

/// A config of one openai-sse provider at `server` reading its account as `kind`, with
/// `sessions` probes every 50 ms.
fn config(
    server: &SimServer,
    kind: &str,
    extra: &str,
    sessions: u32,
) -> relaytop_core::config::Config {
    let text = format!(
        r#"
[[providers]]
name = "station"
url = "{url}"
protocol = "openai-sse"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4o-mini"
requests_per_minute = 100000
max_connections = 64
account = {{ kind = "{kind}", poll_s = 0.2, window_s = 60 {extra} }}

[[sessions]]
name = "probe"
provider = "station"
count = {sessions}
interval_s = 0.05
max_tokens = 20
"#,
        url = server.sse_base_url()
    );
    relaytop_core::config::file::parse(&text, "account.toml", &test_key).expect("config")
}

fn provider(server: &SimServer, kind: &str) -> Provider {
    config(server, kind, "", 1).providers.remove(0)
}

/// Spends on `server` with one session for `period`, then ends it (no request in flight).
async fn spend(server: &SimServer, period: Duration) {
    let mut spec = spec(&server.sse_base_url(), probe(20), fast_timing());
    spec.info.protocol = Protocol::OpenaiSse;
    spec.info.model = "gpt-4o-mini".into();
    let mut s = watch(spec);
    s.collect_for(period).await;
    s.handle.task.abort();
    let _ = s.handle.task.await;
    // A response the sim finished as the session went is charged by now.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn every_account_kind_reads_the_ledger_and_auto_finds_it() {
    let kinds = [
        ("openai-billing", AccountKind::OpenaiBilling),
        ("new-api", AccountKind::NewApi),
        ("openrouter", AccountKind::Openrouter),
        ("litellm", AccountKind::Litellm),
        ("deepseek", AccountKind::Deepseek),
    ];
    for (name, kind) in kinds {
        let server = sim(station(name, 10.0, 1.0)).await;
        for configured in [name, "auto"] {
            let before = read_once(&provider(&server, configured)).await;
            assert_eq!(before.error, None, "{name} as {configured}");
            assert_eq!(before.kind, kind, "{name} as {configured}");
            assert_eq!(before.currency, "USD");
            assert!((before.balance.unwrap() - server.ledger().balance_usd()).abs() < 1e-5);
        }
        let before = read_once(&provider(&server, name)).await.balance.unwrap();
        spend(&server, Duration::from_millis(400)).await;
        let ledger = server.ledger();
        assert!(ledger.charges > 0, "{name}: nothing served");
        let after = read_once(&provider(&server, "auto")).await;
        let decrease = before - after.balance.unwrap();
        assert!(
            (decrease - ledger.spent_usd).abs() < 1e-5,
            "{name}: the balance fell {decrease}, the ledger charged {}",
            ledger.spent_usd
        );
    }
}

#[tokio::test]
async fn a_wrong_kind_or_a_bad_key_is_said_not_guessed() {
    let server = sim(SimProfile {
        accepted_keys: Some(vec!["sk-someoneelse0000000000".into()]),
        ..station("new-api", 10.0, 1.0)
    })
    .await;
    for kind in ["new-api", "auto"] {
        let reading = read_once(&provider(&server, kind)).await;
        let error = reading.error.expect("refused");
        assert!(
            error.contains("401") && error.contains("无效的令牌"),
            "{kind}: {error}"
        );
        assert!(!error.contains(TEST_KEY));
    }
    let litellm = sim(station("litellm", 10.0, 1.0)).await;
    let reading = read_once(&provider(&litellm, "deepseek")).await;
    assert!(reading.error.unwrap().contains("404"));
}

#[tokio::test]
async fn low_balance_fires_once_and_a_top_up_clears_it() {
    let server = sim(station("new-api", 0.004, 1.0)).await;
    let provider = {
        let mut c = config(&server, "new-api", ", low_balance = 0.0037", 1);
        c.providers.remove(0)
    };
    let mut book = AccountBook::new("station");
    let mut alerts = Vec::new();
    let mut at_us = 0;
    let read = |book: &mut AccountBook, reading, at_us: u64| book.on_reading(at_us, reading);
    alerts.extend(read(&mut book, read_once(&provider).await, at_us));
    for _ in 0..4 {
        spend(&server, Duration::from_millis(300)).await;
        at_us += 60_000_000;
        alerts.extend(read(&mut book, read_once(&provider).await, at_us));
    }
    let low: Vec<_> = alerts
        .iter()
        .filter(|a| matches!(a, AccountAlert::LowBalance { .. }))
        .collect();
    assert_eq!(low.len(), 1, "{alerts:?} (ledger {:?})", server.ledger());
    assert!(book.low_balance_warning());
    // The projection: what is left over the spend rate.
    let rate = book.spend_per_hour().expect("a rate");
    assert!(rate > 0.0);
    let left = book.balance().unwrap().max(0.0);
    let run_out = book.run_out_s().expect("a run-out");
    assert!(
        (run_out as f64 - left / rate * 3600.0).abs() <= 1.0,
        "{run_out}"
    );

    server.top_up(5.0);
    at_us += 60_000_000;
    let after = read(&mut book, read_once(&provider).await, at_us);
    assert!(
        after.contains(&AccountAlert::Cleared { what: "topped up" }),
        "{after:?}"
    );
    assert!(!book.low_balance_warning());
    at_us += 60_000_000;
    assert!(read(&mut book, read_once(&provider).await, at_us).is_empty());
}

#[tokio::test]
async fn the_bill_check_catches_a_station_charging_one_and_a_half_times_list() {
    // Every account kind, shown in the headless report and on /metrics.
    let kinds = [
        "new-api",
        "openai-billing",
        "openrouter",
        "litellm",
        "deepseek",
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let server = sim(station(kind, 50.0, 1.5)).await;
        let config = config(&server, "auto", ", low_balance = 1.0", 4);
        let mut world = relaytop_core::world::World::start(config, &relaytop_sim::Embedded)
            .await
            .expect("world");
        let metrics_url = world
            .serve_metrics(([127, 0, 0, 1], 0).into())
            .await
            .expect("metrics");
        let options = HeadlessOptions {
            duration: Some(Duration::from_millis(if i == 0 { 2500 } else { 1500 })),
            requests: None,
            format: OutputFormat::Json,
        };
        let mut out = Vec::new();
        let report = headless::run(&world, &options, &mut out)
            .await
            .expect("run");
        let account = report.accounts.first().expect("an account in the report");
        assert_eq!(account.kind, kind);
        let bill = account.bill.as_ref().expect("a bill check");
        let BillVerdict::Charged { ratio } = bill.verdict else {
            panic!("{kind}: {bill:?}");
        };
        assert!((ratio - 1.5).abs() < 0.15, "{kind}: {bill:?}");
        assert!(
            bill.describe()
                .contains("list price for what relaytop sent")
        );
        assert!(account.spend_per_hour.unwrap() > 0.0);
        assert!(account.run_out_s.is_some());
        let scraped = reqwest::get(&metrics_url)
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        for name in [
            "relaytop_account_balance{",
            "relaytop_account_run_out_seconds{",
            "relaytop_account_bill_ratio{",
        ] {
            assert!(
                scraped
                    .lines()
                    .any(|l| l.starts_with(name) && l.contains("provider=\"station\"")),
                "{kind}: no {name} in\n{scraped}"
            );
        }
        if i > 0 {
            continue;
        }
        let text = report.to_text();
        assert!(text.contains("\nAccounts\n  station (new-api): "), "{text}");
        assert!(
            text.contains("× list price for what relaytop sent"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(json["accounts"][0]["bill"]["verdict"], "charged");
        // The report with its accounts is what docs/headless-schema.json says.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/headless-schema.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("json");
        let validator = jsonschema::draft202012::new(&schema).expect("a valid schema");
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

/// One request of `protocol` for `model` against a station answering `error`: the class of
/// its `RelayError`, its request id, and the session's state after it.
async fn relay_error_of(
    error: Option<&str>,
    protocol: Protocol,
    model: &str,
    profile: SimProfile,
) -> (ErrorClass, Option<String>, Vec<EventKind>) {
    let server = sim(SimProfile {
        relay_error: error.map(str::to_owned),
        ..profile
    })
    .await;
    let base = match protocol {
        Protocol::Gemini => server.root_url(),
        _ => server.sse_base_url(),
    };
    let mut spec = spec(&base, probe(100), fast_timing());
    spec.info.protocol = protocol;
    spec.info.model = model.into();
    let mut s = watch(spec);
    let event = s
        .wait_for(LONG, |k| matches!(k, EventKind::RelayError(_)))
        .await
        .unwrap_or_else(|| panic!("no relay error: {}", s.story()));
    s.collect_for(Duration::from_millis(400)).await;
    let EventKind::RelayError(e) = event.kind else {
        unreachable!()
    };
    let kinds = s.seen.iter().map(|e| e.kind.clone()).collect();
    (e.class, e.relay_request_id, kinds)
}

fn stopped(kinds: &[EventKind]) -> bool {
    kinds.iter().any(|k| {
        matches!(
            k,
            EventKind::State(SessionState::Stopped { .. })
                | EventKind::State(SessionState::BackingOff { watch: Some(_), .. })
        )
    })
}

#[tokio::test]
async fn each_relay_error_body_is_classified_with_its_words() {
    let cases = [
        ("invalid_key", ErrorClass::InvalidKey, true),
        ("expired_key", ErrorClass::InvalidKey, true),
        ("key_quota", ErrorClass::KeyQuotaUsedUp, true),
        ("balance", ErrorClass::BalanceTooLow, true),
        ("no_channel", ErrorClass::NoChannel, false),
        ("saturated", ErrorClass::UpstreamSaturated, false),
        ("overloaded", ErrorClass::UpstreamOverloaded, false),
        ("upstream", ErrorClass::UpstreamError, false),
    ];
    for (error, class, stops) in cases {
        for protocol in [Protocol::OpenaiSse, Protocol::AnthropicMessages] {
            let model = if protocol == Protocol::AnthropicMessages {
                "claude-sonnet-4-5"
            } else {
                "gpt-4o-mini"
            };
            let (got, id, kinds) =
                relay_error_of(Some(error), protocol, model, SimProfile::default()).await;
            assert_eq!(got, class, "{error} over {protocol:?}");
            assert!(
                id.is_some_and(|id| id.contains("sim")),
                "{error}: no request id"
            );
            assert_eq!(
                stopped(&kinds),
                stops,
                "{error} over {protocol:?}: {kinds:#?}"
            );
            assert!(!class.fix().is_empty());
        }
    }
}

#[tokio::test]
async fn a_spent_balance_stops_probing_and_a_missing_channel_only_its_model() {
    let (class, _, kinds) = relay_error_of(
        None,
        Protocol::OpenaiSse,
        "gpt-4o-mini",
        station("new-api", 0.0, 1.0),
    )
    .await;
    assert_eq!(class, ErrorClass::BalanceTooLow);
    assert!(stopped(&kinds));
    let missing = SimProfile {
        no_channel_models: vec!["gpt-9".into()],
        ..SimProfile::default()
    };
    let (class, _, kinds) =
        relay_error_of(None, Protocol::OpenaiSse, "gpt-9", missing.clone()).await;
    assert_eq!(class, ErrorClass::NoChannel);
    assert!(!stopped(&kinds), "{kinds:#?}");
    // The same station serves the other models.
    let server = sim(missing).await;
    let mut spec = spec(&server.sse_base_url(), probe(50), fast_timing());
    spec.info.protocol = Protocol::OpenaiSse;
    spec.info.model = "gpt-4o-mini".into();
    let mut s = watch(spec);
    assert!(
        s.wait_for(LONG, |k| matches!(k, EventKind::Done(_)))
            .await
            .is_some()
    );
}

/// Runs (and records) a world of one station on `server` for 1.5 s: the run directory and
/// the account readings the live run saw.
async fn record(
    server: &SimServer,
    extra: &str,
    name: &str,
) -> (
    std::path::PathBuf,
    Vec<relaytop_core::session::SessionEvent>,
) {
    use relaytop_core::record::RecordOptions;
    use relaytop_core::run::{Ending, Run, RunSetup};
    let config = config(server, "auto", extra, 2);
    let mut world = relaytop_core::world::World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world");
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("account-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    world.recording = Some(RecordOptions::new(&root));
    let (run, mut events) = Run::start(&world, RunSetup::default()).expect("run");
    let mut live = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(e) if matches!(e.kind, EventKind::Account(_)) => live.push(e),
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let ending = Ending {
        reason: "test over".into(),
        duration: run.clock().now(),
    };
    let finished = run.finish(events, ending, |_| {}).await.expect("finish");
    (finished.recorded_to.expect("recorded"), live)
}

#[tokio::test]
async fn the_recording_holds_the_readings_and_a_replay_shows_them() {
    use relaytop_core::record::Replay;
    let server = sim(station("openrouter", 20.0, 1.0)).await;
    let (dir, live) = record(&server, ", low_balance = 30.0", "readings").await;
    assert!(live.len() >= 3, "readings: {}", live.len());
    let text: String = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(!text.contains(TEST_KEY), "the key in the recording");
    let mut replay = Replay::open(&[dir]).expect("replay opens");
    let replayed: Vec<_> = std::iter::from_fn(|| replay.next_event())
        .filter(|e| matches!(e.kind, EventKind::Account(_)))
        .collect();
    assert_eq!(
        replayed.iter().map(|e| &e.kind).collect::<Vec<_>>(),
        live.iter().map(|e| &e.kind).collect::<Vec<_>>(),
        "the replay's readings are the live run's"
    );
    let EventKind::Account(first) = &replayed[0].kind else {
        unreachable!()
    };
    assert_eq!(first.kind, AccountKind::Openrouter);
    assert_eq!(first.low_balance, Some(30.0));
}

#[tokio::test]
async fn the_export_keeps_each_failed_request_class_and_relay_request_id() {
    use relaytop_core::record::Replay;
    let server = sim(SimProfile {
        no_channel_models: vec!["gpt-4o-mini".into()],
        ..station("new-api", 20.0, 1.0)
    })
    .await;
    let (dir, _) = record(&server, "", "export").await;
    let mut replay = Replay::open(&[dir]).expect("replay opens");
    let mut rows = Vec::new();
    relaytop::export::for_each_row(&mut replay, |r| {
        rows.push(r);
        Ok(())
    })
    .expect("export");
    let failed: Vec<_> = rows.iter().filter(|r| r.outcome == "failed").collect();
    assert!(!failed.is_empty(), "{rows:#?}");
    for r in failed {
        assert_eq!(r.error_class.as_deref(), Some("no_channel"), "{r:?}");
        assert!(
            r.relay_request_id
                .as_deref()
                .is_some_and(|id| id.contains("sim")),
            "{r:?}"
        );
        assert!(r.detail.contains("无可用渠道"), "{r:?}");
    }
    let line = relaytop::export::csv_record(&rows[0]);
    assert!(line.trim_end().ends_with(&format!(
        ",no_channel,{}",
        rows[0].relay_request_id.clone().unwrap_or_default()
    )));
}

#[tokio::test]
async fn an_overloaded_error_mid_stream_is_upstream_overloaded() {
    let profile = SimProfile {
        error_rate: 1.0,
        ..SimProfile::default()
    };
    let (class, _, kinds) = relay_error_of(
        None,
        Protocol::AnthropicMessages,
        "claude-sonnet-4-5",
        profile.clone(),
    )
    .await;
    assert_eq!(class, ErrorClass::UpstreamOverloaded);
    assert!(!stopped(&kinds));
    let (class, id, _) =
        relay_error_of(None, Protocol::OpenaiSse, "gpt-4o-mini", profile.clone()).await;
    assert_eq!(class, ErrorClass::UpstreamError);
    assert!(id.is_some_and(|id| id.starts_with("req_")), "x-request-id");
    // new-api says its own id on every answer.
    let new_api = SimProfile {
        account_kind: Some("new-api".into()),
        ..profile
    };
    let (_, id, _) = relay_error_of(None, Protocol::OpenaiSse, "gpt-4o-mini", new_api).await;
    assert!(
        id.is_some_and(|id| id.contains("sim")),
        "X-Oneapi-Request-Id"
    );
}

#[tokio::test]
async fn a_top_up_resumes_a_session_the_spent_balance_stopped() {
    let server = sim(station("new-api", 0.0, 1.0)).await;
    let mut timing = fast_timing();
    timing.recheck = Some(Duration::from_millis(300));
    let mut spec = spec(&server.sse_base_url(), probe(50), timing);
    spec.info.protocol = Protocol::OpenaiSse;
    spec.info.model = "gpt-4o-mini".into();
    let mut s = watch(spec);
    let refused = s
        .wait_for(LONG, |k| {
            matches!(
                k,
                EventKind::State(SessionState::BackingOff {
                    watch: Some(relaytop_core::session::Watch {
                        refused: Some(_),
                        ..
                    }),
                    ..
                })
            )
        })
        .await;
    assert!(refused.is_some(), "not refused: {}", s.story());
    assert_eq!(s.count(|k| matches!(k, EventKind::Done(_))), 0);
    server.top_up(5.0);
    assert!(
        s.wait_for(LONG, |k| matches!(k, EventKind::Done(_)))
            .await
            .is_some(),
        "no response after the top-up: {}",
        s.story()
    );
}
