//! The canary YAML users keep (`canary_deployment_config.yaml`), read as they keep it.
//!
//! Every key of the file is a field of the serde structs below, parsed with serde-saphyr
//! (errors say line and column). Keys the structs do not know are not errors: a second pass
//! over the document lists them, with their place, among the start-up notes, together with the
//! keys relaytop accepts but cannot use (geo routing), what it inferred (which provider is the
//! canary, the starting weight, inherited stage metrics), and warnings (weights that disagree,
//! a connection pool above the relay's limit). The result is a `Config` whose `canary` is the
//! plan; the canary's connection pools are added later (`canary::prepare`).

mod file;
mod parse;
mod unknown;

pub use file::{
    CanaryFile, DEFAULT_MODEL, Deployment, HealthCheckYaml, NotificationYaml, Optimization,
    ProbeYaml, ProviderYaml, RollbackYaml, RolloutYaml, StageYaml, TriggerYaml,
};
pub use parse::{is_yaml, load, parse};

#[cfg(test)]
mod tests;
