//! Sessions started on demand for one provider (a chat pane, a transcription): which provider
//! a name means, and the session spec that talks to it.
//!
//! The configured sessions are the world's; these are extra ones a person asks for while it
//! runs, built from the provider as the configuration resolved it (URL, key, limits, and the
//! timing of the provider's first configured session).

use crate::config::Config;
use crate::config::file::Provider;
use crate::session::{Protocol, SessionInfo, SessionSpec, Timing, Workload};

/// The provider `name`, or when `None` the first one speaking `prefer` (else the first one).
/// The error says which providers there are.
pub fn find_provider<'a>(
    config: &'a Config,
    name: Option<&str>,
    prefer: Option<Protocol>,
) -> anyhow::Result<&'a Provider> {
    let known = || {
        config
            .providers
            .iter()
            .map(|p| format!("{} ({})", p.name, p.protocol.label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => config
            .providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no provider `{name}` in {}: use --provider with one of {}",
                    config.source,
                    known()
                )
            }),
        None => prefer
            .and_then(|protocol| config.providers.iter().find(|p| p.protocol == protocol))
            .or_else(|| config.providers.first())
            .ok_or_else(|| anyhow::anyhow!("{} defines no provider", config.source)),
    }
}

/// A session on `provider` with `workload`, named `name`; `model` overrides the provider's.
pub fn provider_session(
    config: &Config,
    provider: &Provider,
    name: String,
    model: Option<String>,
    workload: Workload,
) -> SessionSpec {
    let timing = config
        .sessions
        .iter()
        .find(|s| s.info.provider == provider.name)
        .map_or_else(Timing::default, |s| s.timing);
    let label = match &workload {
        Workload::Chat { .. } => "chat",
        Workload::Probe { .. } => "probe",
        Workload::OnDemand => "on-demand",
    };
    SessionSpec {
        info: SessionInfo {
            id: 0,
            name,
            provider: provider.name.clone(),
            model: model.unwrap_or_else(|| provider.model.clone()),
            protocol: provider.protocol,
            url: provider.url.clone(),
            workload: label.into(),
        },
        api_key: provider.api_key.clone(),
        auth: provider.auth,
        workload,
        timing,
        seed: None,
        tap: None,
        limits: provider.limits.clone(),
        resolver: None,
    }
}
