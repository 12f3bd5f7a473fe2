//! docs/examples/mixed.toml (one provider for each of the six protocols: relay-v1, openai-sse,
//! openai-realtime, anthropic-messages, openai-responses and gemini, all simulated on
//! 127.0.0.1) run headless for a few seconds, with `--metrics-listen`'s server on a loopback
//! port: the JSON report shows responses with time to first token, tokens and cost from every
//! provider, each priced as its format reported it, and two Prometheus scrapes during the run
//! parse (with a text-format parser) and show the counters moving.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use relaytop::headless::{self, HeadlessOptions, OutputFormat};
use relaytop_core::config::file;
use relaytop_core::world::World;

const PROVIDERS: [&str; 6] = ["holysheep", "compat", "voice", "claude", "codex", "gemini"];

async fn scrape(url: &str) -> prometheus_parse::Scrape {
    let response = reqwest::get(url).await.expect("the metrics server answers");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("a body");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("the exposition parses")
}

fn value(v: &prometheus_parse::Value) -> f64 {
    use prometheus_parse::Value;
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => *x,
        Value::Histogram(_) | Value::Summary(_) => f64::NAN,
    }
}

/// `metric` summed over sessions, by provider.
fn by_provider(scrape: &prometheus_parse::Scrape, metric: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == metric) {
        let provider = sample.labels.get("provider").unwrap_or("?").to_owned();
        *sums.entry(provider).or_insert(0.0) += value(&sample.value);
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_protocols_in_one_headless_run_with_prometheus() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/mixed.toml");
    let config = file::load(&path).expect("the example parses");
    let protocols: Vec<_> = config
        .providers
        .iter()
        .map(|p| p.protocol.label())
        .collect();
    assert_eq!(
        protocols,
        [
            "relay-v1",
            "openai-sse",
            "openai-realtime",
            "anthropic-messages",
            "openai-responses",
            "gemini"
        ]
    );
    let mut world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("the world starts");
    let url = world
        .serve_metrics(([127, 0, 0, 1], 0).into())
        .await
        .expect("metrics on a loopback port");

    let scrapes = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let early = scrape(&url).await;
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let late = scrape(&url).await;
        (early, late)
    });
    let options = HeadlessOptions {
        duration: Some(Duration::from_millis(3500)),
        requests: None,
        format: OutputFormat::Json,
    };
    let mut out = Vec::new();
    headless::run(&world, &options, &mut out)
        .await
        .expect("the headless run");
    let (early, late) = scrapes.await.expect("the scrapes");

    // The headless JSON: every provider answered, with TTFT, tokens and cost.
    let report: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    let providers = report["providers"].as_array().expect("providers");
    for name in PROVIDERS {
        let p = providers
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {report:#}"));
        assert!(p["completed"].as_u64().unwrap() >= 2, "{name}: {p:#}");
        assert!(
            p["ttft_ms"]["count"].as_u64().unwrap() >= 2,
            "{name}: {p:#}"
        );
        let p50 = p["ttft_ms"]["p50"].as_f64().unwrap();
        assert!((50.0..2000.0).contains(&p50), "{name}: TTFT p50 {p50}");
        assert!(p["tokens_in"].as_u64().unwrap() > 0, "{name}: {p:#}");
        assert!(p["tokens_out"].as_u64().unwrap() > 0, "{name}: {p:#}");
        assert_eq!(
            p["tokens_estimated"], 0,
            "{name}: usage came from the relay"
        );
        assert!(p["cost_usd"].as_f64().unwrap() > 0.0, "{name}: {p:#}");
        assert_eq!(p["failed"], 0, "{name}: {p:#}");
    }
    let compat = providers.iter().find(|p| p["name"] == "compat").unwrap();
    let voice = providers.iter().find(|p| p["name"] == "voice").unwrap();
    // openai-sse: the relay's `usage.cost` (5 $/MTok of all tokens) is what is counted.
    let tokens = compat["tokens_in"].as_f64().unwrap() + compat["tokens_out"].as_f64().unwrap();
    let cost = compat["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - tokens * 5.0 / 1e6).abs() < 1e-6,
        "{cost} for {tokens} tokens"
    );
    // openai-realtime: cached tokens are counted, and priced apart (0.4 vs 4 $/MTok).
    assert!(voice["tokens_cached"].as_u64().unwrap() > 0, "{voice:#}");
    let (input, cached, output) = (
        voice["tokens_in"].as_f64().unwrap(),
        voice["tokens_cached"].as_f64().unwrap(),
        voice["tokens_out"].as_f64().unwrap(),
    );
    let expected = ((input - cached) * 4.0 + cached * 0.4 + output * 16.0) / 1e6;
    let cost = voice["cost_usd"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-6, "{cost} vs {expected}");
    // anthropic-messages and gemini: cache reads priced apart (cache writes at the input rate,
    // as no write price is set); thinking is output.
    for (name, input_rate, cached_rate, output_rate) in
        [("claude", 3.0, 0.3, 15.0), ("gemini", 0.30, 0.03, 2.50)]
    {
        let p = providers.iter().find(|p| p["name"] == name).unwrap();
        let (input, cached, output) = (
            p["tokens_in"].as_f64().unwrap(),
            p["tokens_cached"].as_f64().unwrap(),
            p["tokens_out"].as_f64().unwrap(),
        );
        assert!(cached > 0.0, "{name}: {p:#}");
        let expected =
            ((input - cached) * input_rate + cached * cached_rate + output * output_rate) / 1e6;
        let cost = p["cost_usd"].as_f64().unwrap();
        assert!(
            (cost - expected).abs() < 1e-6,
            "{name}: {cost} vs {expected}"
        );
    }
    // openai-responses: the relay's `usage.cost` (5 $/MTok of all tokens) is what is counted.
    let codex = providers.iter().find(|p| p["name"] == "codex").unwrap();
    let tokens = codex["tokens_in"].as_f64().unwrap() + codex["tokens_out"].as_f64().unwrap();
    let cost = codex["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - tokens * 5.0 / 1e6).abs() < 1e-6,
        "codex: {cost} for {tokens} tokens"
    );

    // Prometheus: both scrapes parse, every provider shows up, and counters move.
    for metric in [
        "relaytop_requests_total",
        "relaytop_responses_total",
        "relaytop_tokens_total",
        "relaytop_cost_usd_total",
        "relaytop_ttft_seconds_count",
    ] {
        let before = by_provider(&early, metric);
        let after = by_provider(&late, metric);
        for name in PROVIDERS {
            let a = after.get(name).copied().unwrap_or(0.0);
            let b = before.get(name).copied().unwrap_or(0.0);
            assert!(a > 0.0, "{metric} for {name} in the late scrape: {after:?}");
            assert!(a > b, "{metric} for {name} moved: {b} then {a}");
        }
    }
    let states = late
        .samples
        .iter()
        .filter(|s| s.metric == "relaytop_session_state" && value(&s.value) == 1.0)
        .count();
    assert_eq!(states, 12, "one state per session");
    let protocols: Vec<_> = late
        .samples
        .iter()
        .filter(|s| s.metric == "relaytop_session_info")
        .filter_map(|s| s.labels.get("protocol"))
        .collect();
    for protocol in [
        "relay-v1",
        "openai-sse",
        "openai-realtime",
        "anthropic-messages",
        "openai-responses",
        "gemini",
    ] {
        assert!(protocols.contains(&protocol), "{protocols:?}");
    }
    world.stop().await;
}
