//! `relaytop check` against the embedded simulator (and a listener that never answers) on
//! 127.0.0.1, with each fault it diagnoses: a healthy relay of each protocol, a bad key, an
//! unset variable, a key with white space around it, the wrong scheme, a closed port, a
//! stalled server, TLS spoken to a plain port, a failing DNS lookup (an injected resolver:
//! nothing leaves the machine), unanswered heartbeats and an idle cut-off.

use crate::support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use relaytop::check::{self, CheckOptions, CheckReport, Verdict};
use relaytop_core::session::Protocol;
use relaytop_sim::{SimProfile, SimServer};
use support::sim;

const KEY: &str = "hs_live_CHECKKEY0123456789";

fn options(url: &str, env: &[(&str, &str)]) -> CheckOptions {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut o = CheckOptions::new(url);
    o.key_env = Some("RELAY_KEY".into());
    o.env = Arc::new(move |var| env.get(var).cloned());
    o.timeout = Duration::from_secs(3);
    o
}

fn quick() -> SimProfile {
    SimProfile {
        ttft_p50_ms: 20.0,
        ttft_p99_ms: 20.0,
        tokens_per_second: 2000.0,
        tokens_per_response: 5,
        accepted_keys: Some(vec![KEY.into()]),
        ..SimProfile::default()
    }
}

fn urls(server: &SimServer) -> [(Protocol, String); 6] {
    let root = server.root_url();
    [
        (Protocol::RelayV1, server.url()),
        (Protocol::OpenaiSse, server.sse_base_url()),
        (Protocol::OpenaiRealtime, server.realtime_url()),
        (Protocol::AnthropicMessages, format!("{root}/v1/messages")),
        (Protocol::OpenaiResponses, format!("{root}/v1/responses")),
        (Protocol::Gemini, format!("{root}/v1beta")),
    ]
}

fn verdict(report: &CheckReport, step: &str) -> Verdict {
    report
        .step(step)
        .unwrap_or_else(|| panic!("no step {step}:\n{}", report.to_text()))
        .verdict
}

fn hint(report: &CheckReport, step: &str) -> String {
    report
        .step(step)
        .and_then(|s| s.hint.clone())
        .unwrap_or_else(|| panic!("no hint at {step}:\n{}", report.to_text()))
}

fn first_request(protocol: Protocol) -> &'static str {
    if protocol.is_http_stream() {
        "request"
    } else {
        "upgrade"
    }
}

#[tokio::test]
async fn a_healthy_relay_of_each_protocol_passes() {
    let server = sim(quick()).await;
    for (protocol, url) in urls(&server) {
        let report = check::run(&options(&url, &[("RELAY_KEY", KEY)])).await;
        assert!(report.passed, "{protocol:?}:\n{}", report.to_text());
        assert_eq!(report.protocol, Some(protocol), "inferred from the URL");
        assert_eq!(verdict(&report, "completion"), Verdict::Pass);
        let expected_heartbeat = if protocol.is_http_stream() {
            Verdict::Skip
        } else {
            Verdict::Pass
        };
        assert_eq!(verdict(&report, "heartbeat"), expected_heartbeat);
        assert!(
            report
                .step("completion")
                .unwrap()
                .detail
                .contains("time to first token"),
            "{}",
            report.to_text()
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        assert_eq!(json["passed"], true);
        assert_eq!(json["steps"].as_array().unwrap().len(), 9);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_bad_key_is_named_with_its_variable() {
    let server = sim(quick()).await;
    for (protocol, url) in urls(&server) {
        let report = check::run(&options(
            &url,
            &[("RELAY_KEY", "hs_live_NOTTHEKEY000000000")],
        ))
        .await;
        assert!(!report.passed);
        let step = first_request(protocol);
        assert_eq!(
            verdict(&report, step),
            Verdict::Fail,
            "{}",
            report.to_text()
        );
        let hint = hint(&report, step);
        assert!(
            hint.contains("refused the key in RELAY_KEY"),
            "{protocol:?}: {hint}"
        );
        assert_eq!(verdict(&report, "completion"), Verdict::Skip, "not run");
        if protocol == Protocol::OpenaiRealtime {
            let detail = &report.step("upgrade").unwrap().detail;
            assert!(detail.contains("close 3000"), "{detail}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unset_variable_and_a_padded_key() {
    let server = sim(quick()).await;
    let report = check::run(&options(&server.url(), &[])).await;
    assert!(!report.passed);
    assert!(
        hint(&report, "upgrade").contains("RELAY_KEY is not set"),
        "{}",
        report.to_text()
    );
    let padded = format!("{KEY}\n");
    let report = check::run(&options(&server.sse_base_url(), &[("RELAY_KEY", &padded)])).await;
    assert!(report.passed, "trimmed, so it works:\n{}", report.to_text());
    assert_eq!(verdict(&report, "request"), Verdict::Warn);
    assert!(
        hint(&report, "request").contains("white space"),
        "{}",
        report.to_text()
    );
    server.stop().await;
}

#[tokio::test]
async fn the_wrong_scheme_is_the_classic() {
    let server = sim(quick()).await;
    let wrong = server.url().replace("ws://", "https://");
    let report = check::run(&options(&wrong, &[("RELAY_KEY", KEY)])).await;
    assert!(!report.passed);
    assert_eq!(report.protocol, Some(Protocol::RelayV1), "from the path");
    assert_eq!(verdict(&report, "url"), Verdict::Fail);
    assert!(
        hint(&report, "url").starts_with("use wss://"),
        "{}",
        report.to_text()
    );
    assert_eq!(verdict(&report, "dns"), Verdict::Skip);

    let mut o = options(&server.url(), &[("RELAY_KEY", KEY)]);
    o.protocol = Some(Protocol::OpenaiSse);
    let report = check::run(&o).await;
    assert!(
        hint(&report, "url").starts_with("use http://"),
        "{}",
        report.to_text()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_closed_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let report = check::run(&options(
        &format!("ws://{addr}/v1/stream"),
        &[("RELAY_KEY", KEY)],
    ))
    .await;
    assert!(!report.passed);
    assert_eq!(verdict(&report, "tcp"), Verdict::Fail);
    assert!(
        hint(&report, "tcp").contains("nothing listens on port"),
        "{}",
        report.to_text()
    );
}

#[tokio::test]
async fn a_stalled_server() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    for (url, step) in [
        (format!("ws://{addr}/v1/stream"), "upgrade"),
        (format!("http://{addr}/v1"), "request"),
        (format!("ws://{addr}/v1/realtime"), "upgrade"),
    ] {
        let mut o = options(&url, &[("RELAY_KEY", KEY)]);
        o.timeout = Duration::from_millis(800);
        let report = check::run(&o).await;
        assert!(!report.passed);
        assert_eq!(verdict(&report, "tcp"), Verdict::Pass);
        assert_eq!(
            verdict(&report, step),
            Verdict::Fail,
            "{}",
            report.to_text()
        );
        let detail = &report.step(step).unwrap().detail;
        assert!(detail.contains("no answer"), "{detail}");
        assert!(
            hint(&report, step).contains("sent nothing back"),
            "{}",
            report.to_text()
        );
    }
    holder.abort();
}

#[tokio::test]
async fn tls_spoken_to_a_plain_port() {
    let server = sim(quick()).await;
    let wss = server.url().replace("ws://", "wss://");
    let report = check::run(&options(&wss, &[("RELAY_KEY", KEY)])).await;
    assert_eq!(
        verdict(&report, "tls"),
        Verdict::Fail,
        "{}",
        report.to_text()
    );
    assert!(
        hint(&report, "tls").contains("plain text"),
        "{}",
        report.to_text()
    );
    server.stop().await;
}

#[tokio::test]
async fn dns_failures_go_through_the_resolver() {
    let mut o = options("wss://relay.invalid/v1/stream", &[("RELAY_KEY", KEY)]);
    o.resolver = Arc::new(|host, _port| {
        Box::pin(async move {
            Err(std::io::Error::other(format!(
                "failed to lookup address information: Name or service not known ({host})"
            )))
        })
    });
    let report = check::run(&o).await;
    assert_eq!(verdict(&report, "dns"), Verdict::Fail);
    assert!(
        hint(&report, "dns").contains("relay.invalid"),
        "{}",
        report.to_text()
    );
    assert_eq!(verdict(&report, "tcp"), Verdict::Skip);
}

#[tokio::test]
async fn unanswered_heartbeats() {
    let server = sim(SimProfile {
        answer_pings: false,
        ..quick()
    })
    .await;
    let report = check::run(&options(&server.url(), &[("RELAY_KEY", KEY)])).await;
    assert_eq!(verdict(&report, "completion"), Verdict::Pass);
    assert_eq!(
        verdict(&report, "heartbeat"),
        Verdict::Fail,
        "{}",
        report.to_text()
    );
    assert!(hint(&report, "heartbeat").contains("does not answer heartbeats"));
    server.stop().await;
}

#[tokio::test]
async fn an_idle_cut_off_is_found() {
    let server = sim(SimProfile {
        idle_cutoff_ms: Some(400),
        ..quick()
    })
    .await;
    for url in [server.url(), server.realtime_url()] {
        let mut o = options(&url, &[("RELAY_KEY", KEY)]);
        o.idle = Some(Duration::from_secs(3));
        let report = check::run(&o).await;
        assert_eq!(
            verdict(&report, "idle"),
            Verdict::Fail,
            "{}",
            report.to_text()
        );
        let detail = &report.step("idle").unwrap().detail;
        assert!(detail.contains("cut after 0."), "{detail}");
        assert!(hint(&report, "idle").contains("heartbeats"));
    }
    let server = sim(quick()).await;
    let mut o = options(&server.url(), &[("RELAY_KEY", KEY)]);
    o.idle = Some(Duration::from_secs(1));
    let report = check::run(&o).await;
    assert_eq!(
        verdict(&report, "idle"),
        Verdict::Pass,
        "{}",
        report.to_text()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_rate_limited_completion_names_the_rate_limit_and_its_retry_after() {
    let server = sim(SimProfile {
        rate_limit_rate: 1.0,
        rate_limit_retry_after_ms: 1_500,
        ..quick()
    })
    .await;
    let report = check::run(&options(&server.url(), &[("RELAY_KEY", KEY)])).await;
    assert_eq!(
        verdict(&report, "completion"),
        Verdict::Fail,
        "{}",
        report.to_text()
    );
    let hint = hint(&report, "completion");
    assert!(
        hint.contains(
            "the relay rate-limited the request (429 / rate_limited); its Retry-After says 1.5 s"
        ) && !hint.contains("--model"),
        "{hint}"
    );
    server.stop().await;
}
