//! The headless report of a fixed run: its JSON against docs/headless-schema.json, its figures,
//! and its text, character for character.

use crate::report_fixture;

use relaytop_core::report::Report;
use serde_json::Value;

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/headless-schema.json");
    let text = std::fs::read_to_string(path).expect("docs/headless-schema.json");
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn validate(doc: &Value) -> Vec<String> {
    let validator = jsonschema::draft202012::new(&schema()).expect("a valid draft 2020-12 schema");
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn report_json_matches_the_schema() {
    let json = report_fixture::report().to_json_pretty();
    let doc: Value = serde_json::from_str(&json).expect("the report is JSON");
    let errors = validate(&doc);
    assert!(errors.is_empty(), "{errors:#?}\n{json}");

    // An empty run is valid too (null latencies, no sessions).
    let empty =
        relaytop_core::metrics::Metrics::new(Vec::new(), relaytop_core::cost::Pricing::new());
    let doc =
        serde_json::to_value(Report::build(&empty, report_fixture::run_info())).expect("json");
    let errors = validate(&doc);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn schema_rejects_what_it_should() {
    let mut doc = serde_json::to_value(report_fixture::report()).expect("json");
    doc["providers"][0]["surprise"] = Value::from(1);
    doc["sessions"][0]["ttft_ms"]["p50"] = Value::Null;
    doc["run"].as_object_mut().expect("run").remove("ended_by");
    let errors = validate(&doc).join("\n");
    for want in [
        "'surprise' was unexpected) at /providers/0",
        "\"ended_by\" is a required property at /run",
        "null is not of type \"number\" at /sessions/0/ttft_ms/p50",
    ] {
        assert!(errors.contains(want), "missing {want:?} in\n{errors}");
    }
}

#[test]
fn report_figures() {
    let doc = serde_json::to_value(report_fixture::report()).expect("json");
    assert_eq!(doc["relaytop"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["run"]["duration_s"], 62.5);
    assert_eq!(doc["run"]["started_at"], "2026-03-14T09:26:53.000Z");

    let legacy = &doc["providers"][0];
    assert_eq!(legacy["name"], "legacy");
    assert_eq!(legacy["requests"], 9);
    assert_eq!(legacy["completed"], 8);
    assert_eq!(legacy["failed"], 1);
    assert_eq!(legacy["errors"], 1);
    assert_eq!(legacy["errors_by_kind"]["rate_limited"], 1);
    assert_eq!(legacy["connects"], 3);
    assert_eq!(legacy["reconnects"], 1);
    assert_eq!(legacy["drops"], 1);
    assert!((legacy["drop_rate"].as_f64().expect("rate") - 0.333333).abs() < 1e-9);
    assert_eq!(legacy["ttft_ms"]["count"], 8);
    assert_eq!(legacy["ttft_ms"]["max"], 890.0);
    assert_eq!(legacy["heartbeat_rtt_ms"]["count"], 2);
    assert_eq!(legacy["heartbeat_rtt_ms"]["max"], 52.5);
    assert_eq!(legacy["heartbeats_missed"], 1);
    assert_eq!(legacy["malformed_frames"], 1);
    // 6 gpt-4.1 responses (100 in, 400 out) and 2 claude-sonnet-4.5 (200 in, 300 out), plus
    // 8 calls at $1.75 per 1,000.
    let want = 6.0 * (100.0 * 2.0 + 400.0 * 8.0) / 1e6
        + 2.0 * (200.0 * 3.0 + 300.0 * 15.0) / 1e6
        + 8.0 * 1.75 / 1000.0;
    assert!((legacy["cost_usd"].as_f64().expect("cost") - want).abs() < 1e-12);
    assert_eq!(legacy["cost_estimated"], false);
    assert_eq!(legacy["billing_currency"], "USD");
    assert_eq!(legacy["fee_per_1000_calls_usd"], 1.75);

    let new = &doc["providers"][1];
    assert_eq!(new["name"], "holysheep");
    assert_eq!(new["tokens_estimated"], 50);
    assert_eq!(new["cost_estimated"], true);
    assert_eq!(new["billing_currency"], "CNY");
    assert_eq!(new["unpriced_models"], serde_json::json!(["mystery-model"]));
    assert_eq!(new["errors_by_kind"]["auth"], 1);
    assert_eq!(new["unknown_frames"], 1);

    let totals = &doc["totals"];
    assert_eq!(totals["name"], "all");
    assert_eq!(totals["billing_currency"], "mixed");
    assert_eq!(totals["cost_billed"], Value::Null);
    assert_eq!(totals["requests"], 9 + 7);
    assert_eq!(totals["sessions"], 4);

    let chat = &doc["sessions"][3];
    assert_eq!(chat["state"], "stopped");
    assert_eq!(
        chat["state_reason"],
        "the relay refused the key (close 1008)"
    );
    assert_eq!(chat["heartbeat_rtt_ms"]["p50"], Value::Null);
    assert_eq!(chat["heartbeat_rtt_ms"]["count"], 0);
    let legacy2 = &doc["sessions"][1];
    assert_eq!(legacy2["state"], "open");
    assert_eq!(legacy2["reconnects"], 1);
    assert_eq!(legacy2["state_reason"], Value::Null);

    // Quantiles are milliseconds with at most 3 decimals.
    let p50 = legacy["ttft_ms"]["p50"].as_f64().expect("p50");
    assert_eq!((p50 * 1000.0).round() / 1000.0, p50);
    assert!(p50 > 400.0 && p50 < 460.0, "{p50}");
}

#[test]
fn report_text() {
    insta::assert_snapshot!("headless_text", report_fixture::report().to_text());
}
