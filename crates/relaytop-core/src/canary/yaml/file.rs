//! The file as serde structs: every key users keep is a field, with its place (line and
//! column) where the notes need it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::session::Protocol;

/// The model of canary sessions when a provider names none (the file has no `model` key).
pub const DEFAULT_MODEL: &str = "gpt-4.1";

/// The whole file.
#[derive(Debug, Deserialize)]
pub struct CanaryFile {
    pub deployment: Deployment,
    /// Tuning for the provider named `holysheep` (the file's new relay).
    pub holysheep_optimization: Option<Optimization>,
}

/// `deployment:`.
#[derive(Debug, Deserialize)]
pub struct Deployment {
    /// Only `canary`.
    pub strategy: Option<Spanned<String>>,
    /// The canary's starting share in percent (stages win, then this, then weights).
    pub canary_percentage: Option<Spanned<f64>>,
    pub providers: BTreeMap<String, ProviderYaml>,
    pub health_check: Option<HealthCheckYaml>,
    pub rollback: Option<RollbackYaml>,
    pub progressive_rollout: Option<RolloutYaml>,
    pub notification: Option<NotificationYaml>,
    /// relaytop's addition: the probe traffic the canary routes.
    pub probe: Option<ProbeYaml>,
}

/// `deployment.providers.NAME:`.
#[derive(Debug, Deserialize)]
pub struct ProviderYaml {
    pub base_url: Option<Spanned<String>>,
    /// The variable holding the key (its value is never printed).
    pub api_key_env: Option<Spanned<String>>,
    pub weight: Option<Spanned<f64>>,
    /// `canary` or `baseline`, when the weights should not decide.
    pub role: Option<Spanned<String>>,
    /// relaytop's additions.
    pub model: Option<String>,
    pub protocol: Option<Protocol>,
    pub requests_per_minute: Option<u32>,
    pub max_connections: Option<u32>,
    /// A simulator profile to run instead of connecting (as `simulate` in relaytop's TOML).
    pub simulate: Option<Spanned<String>>,
}

/// `deployment.health_check:`.
#[derive(Debug, Deserialize)]
pub struct HealthCheckYaml {
    pub enabled: Option<bool>,
    pub interval_seconds: Option<Spanned<f64>>,
    pub max_error_rate: Option<Spanned<f64>>,
    pub latency_p99_threshold_ms: Option<Spanned<f64>>,
    /// The keys CANARY.md says the file lacks.
    pub latency: Option<Spanned<String>>,
    pub relative_to: Option<Spanned<String>>,
    pub latency_factor: Option<Spanned<f64>>,
    pub min_samples: Option<u64>,
    pub min_samples_p99: Option<u64>,
    pub failed_checks_threshold: Option<u32>,
    pub on_inconclusive: Option<Spanned<String>>,
}

/// `deployment.rollback:`.
#[derive(Debug, Deserialize)]
pub struct RollbackYaml {
    pub enabled: Option<bool>,
    #[serde(default)]
    pub trigger_conditions: Vec<TriggerYaml>,
}

/// One entry of `trigger_conditions` (each sets one of these).
#[derive(Debug, Deserialize)]
pub struct TriggerYaml {
    pub error_rate_above: Option<Spanned<f64>>,
    pub p99_latency_above_ms: Option<Spanned<f64>>,
    /// With `relative_to: baseline`: roll back above the baseline's p99 times this.
    pub p99_latency_above_factor: Option<Spanned<f64>>,
    pub consecutive_failures: Option<Spanned<u32>>,
}

/// `deployment.progressive_rollout:`.
#[derive(Debug, Deserialize)]
pub struct RolloutYaml {
    #[serde(default)]
    pub stages: Vec<StageYaml>,
}

/// One stage.
#[derive(Debug, Deserialize)]
pub struct StageYaml {
    pub percentage: Spanned<f64>,
    pub duration_minutes: Option<Spanned<f64>>,
    pub evaluation_metrics: Option<Vec<Spanned<String>>>,
    /// Wait for a person before leaving the stage.
    pub manual_gate: Option<bool>,
}

/// `deployment.notification:`.
#[derive(Debug, Deserialize)]
pub struct NotificationYaml {
    pub slack_webhook_url_env: Option<Spanned<String>>,
    pub on_canary_failure: Option<bool>,
    pub on_canary_success: Option<bool>,
}

/// `deployment.probe:` (relaytop's addition).
#[derive(Debug, Deserialize)]
pub struct ProbeYaml {
    pub requests_per_minute: Option<Spanned<f64>>,
    pub prompt: Option<String>,
    pub max_tokens: Option<u32>,
}

/// `holysheep_optimization:`.
#[derive(Debug, Deserialize)]
pub struct Optimization {
    pub connection_pool_size: Option<Spanned<u32>>,
    pub max_concurrent_streams: Option<Spanned<u32>>,
    pub enable_geo_routing: Option<Spanned<bool>>,
    pub preferred_region: Option<Spanned<String>>,
}

/// Line and column of a spanned value.
pub(super) fn at<T>(s: &Spanned<T>) -> Option<(usize, usize)> {
    let l = s.referenced;
    let line = usize::try_from(l.line()).unwrap_or(0);
    let column = usize::try_from(l.column()).unwrap_or(0);
    (line > 0).then_some((line, column))
}
