//! Tests of the canary YAML: the reference file, weights, unknown keys, errors with their
//! place, relative latency, roles, which paths are YAML.

use super::*;
use crate::canary::plan::NoteLevel;
use crate::config::Config;
use crate::config::secret::{Secret, SecretError};
use std::path::Path;
use std::time::Duration;

/// The file of spec/ as users keep it (a copy, so that the unit tests stand alone).
pub const REFERENCE: &str = include_str!("../../../../../tests/data/canary_deployment_config.yaml");

fn keys(var: &str) -> Result<Secret, SecretError> {
    match var {
        "LEGACY_API_KEY" | "HOLYSHEEP_API_KEY" => Ok(Secret::new("hs_live_YAMLTEST0123456789")),
        _ => Err(SecretError::NotSet { var: var.into() }),
    }
}

fn parse_ok(text: &str) -> Config {
    parse(text, "canary.yaml", &keys, &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> String {
    parse(text, "canary.yaml", &keys, &|_| None)
        .expect_err("an error")
        .to_string()
}

fn texts(config: &Config, level: NoteLevel) -> Vec<String> {
    config
        .canary
        .as_ref()
        .map(|p| {
            p.notes
                .iter()
                .filter(|n| n.level == level)
                .map(|n| n.render("canary.yaml"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_reference_file_parses_every_key() {
    let c = parse_ok(REFERENCE);
    let plan = c.canary.as_ref().unwrap();
    assert_eq!(
        (plan.baseline.as_str(), plan.canary.as_str()),
        ("legacy", "holysheep")
    );
    assert_eq!(plan.start_percentage(), 10);
    let stages: Vec<(u32, u64)> = plan
        .stages
        .iter()
        .map(|s| (s.percentage, s.duration.as_secs() / 60))
        .collect();
    assert_eq!(stages, [(10, 30), (30, 60), (50, 60), (100, 0)]);
    assert!(
        plan.stages.iter().all(|s| s.metrics.len() == 3),
        "inherited"
    );
    assert_eq!(plan.interval, Duration::from_secs(30));
    let health = plan.health.as_ref().unwrap();
    assert_eq!(
        (health.max_error_rate, health.p99_ms),
        (Some(0.05), Some(250.0))
    );
    let rollback = plan.rollback.as_ref().unwrap();
    assert_eq!(rollback.error_rate_above, Some(0.02));
    assert_eq!(rollback.p99_above_ms, Some(300.0));
    assert_eq!(rollback.consecutive_failures, Some(5));
    assert_eq!(plan.pool_canary, 10, "25 clamped to the relay's 10");
    assert_eq!(
        plan.notify.as_ref().map(|n| n.url_env.as_str()),
        Some("SLACK_WEBHOOK_URL")
    );
    assert_eq!(c.providers.len(), 2);
    let legacy = c.providers.iter().find(|p| p.name == "legacy").unwrap();
    assert_eq!(legacy.url, "wss://legacy-relay-provider.com/v1/stream");
    assert_eq!(legacy.api_key_env.as_deref(), Some("LEGACY_API_KEY"));

    let infos = texts(&c, NoteLevel::Info).join("\n");
    assert!(
        infos.contains("canary: holysheep (the smaller weight, 10 against 90)"),
        "{infos}"
    );
    assert!(infos.contains("holysheep starts at 10 %"), "{infos}");
    let unused = texts(&c, NoteLevel::Unused).join("\n");
    assert!(
        unused.contains("canary.yaml:56:23: not used: enable_geo_routing"),
        "{unused}"
    );
    assert!(
        unused.contains("preferred_region: ap-southeast-1"),
        "{unused}"
    );
    assert!(unused.contains("max_concurrent_streams 100"), "{unused}");
    assert!(
        !unused.contains("unknown key"),
        "every key is known: {unused}"
    );
    let warnings = texts(&c, NoteLevel::Warning).join("\n");
    assert!(
        warnings.contains(
            "canary.yaml:54:25: warning: connection_pool_size 25 is above the relay's limit of 10"
        ),
        "{warnings}"
    );
    assert!(
        warnings.contains("SLACK_WEBHOOK_URL is not set"),
        "{warnings}"
    );
    assert!(!warnings.contains("disagrees"), "{warnings}");
}

#[test]
fn disagreeing_weights_are_a_warning_and_stages_win() {
    let c = parse_ok(&REFERENCE.replace("canary_percentage: 10", "canary_percentage: 20"));
    let warnings = texts(&c, NoteLevel::Warning).join("\n");
    assert!(
            warnings.contains(
                "the starting weight disagrees: stages[0].percentage 10 %, canary_percentage 20 %, weights 10 %; using 10 %"
            ),
            "{warnings}"
        );
    assert_eq!(c.canary.unwrap().start_percentage(), 10);
}

#[test]
fn unknown_keys_are_listed_with_their_place_not_refused() {
    let text = REFERENCE.replace(
        "    interval_seconds: 30\n",
        "    interval_seconds: 30\n    timeout_seconds: 5\n",
    );
    let c = parse_ok(&text);
    let unused = texts(&c, NoteLevel::Unused).join("\n");
    assert!(
        unused.contains(
            "canary.yaml:23:5: not used: unknown key `deployment.health_check.timeout_seconds`"
        ),
        "{unused}"
    );
}

#[test]
fn errors_say_line_and_column() {
    let err = parse_err(&REFERENCE.replace("max_error_rate: 0.05", "max_error_rate: lots"));
    assert_eq!(err, "canary.yaml:23:21: invalid floating point");
    let err = parse_err(&REFERENCE.replace("strategy: canary", "strategy: blue_green"));
    assert!(
        err.starts_with("canary.yaml:7:13: deployment.strategy is `blue_green`"),
        "{err}"
    );
    let err = parse_err(&REFERENCE.replace("wss://api.holysheep.ai", "https://api.holysheep.ai"));
    assert!(err.starts_with("canary.yaml:16:17: base_url"), "{err}");
    let err = parse_err(&REFERENCE.replace("- p50_latency", "- p95_latency"));
    assert!(
        err.contains("unknown evaluation metric `p95_latency`"),
        "{err}"
    );
    let err = parse_err(&REFERENCE.replace("HOLYSHEEP_API_KEY", "UNSET_KEY"));
    assert!(err.contains("UNSET_KEY is not set"), "{err}");
    let err = parse_err("deployment:\n  providers: [\n");
    assert!(err.starts_with("canary.yaml:"), "{err}");
}

#[test]
fn relative_to_baseline_keeps_the_files_ratio_for_rollback() {
    let text = REFERENCE.replace(
        "    latency_p99_threshold_ms: 250\n",
        "    latency_p99_threshold_ms: 250\n    relative_to: baseline\n",
    );
    let c = parse_ok(&text);
    let plan = c.canary.unwrap();
    let rel = plan.relative.as_ref().unwrap();
    assert_eq!(rel.factor, 1.0);
    assert!((rel.rollback_factor.unwrap() - 1.2).abs() < 1e-9);
}

#[test]
fn roles_override_weights_and_the_canary_must_be_known() {
    let c = parse_ok(&REFERENCE.replace(
        "      weight: 90\n",
        "      weight: 90\n      role: canary\n",
    ));
    assert_eq!(c.canary.unwrap().canary, "legacy");
    let err = parse_err(&REFERENCE.replace("weight: 90", "weight: 10"));
    assert!(
        err.contains("cannot tell which provider is the canary"),
        "{err}"
    );
}

#[test]
fn yaml_paths() {
    assert!(is_yaml(Path::new("a/canary.YAML")));
    assert!(is_yaml(Path::new("c.yml")));
    assert!(!is_yaml(Path::new("c.toml")));
}
