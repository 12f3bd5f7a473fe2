//! What to check (`CheckOptions`), and the environment and resolver it reads through (tests
//! inject their own).

use std::sync::Arc;
use std::time::Duration;

use relaytop_core::session::Protocol;

/// Resolves a host name to addresses (tests inject their own); the sessions `check` runs use
/// it too.
pub use relaytop_core::session::connect::{Resolver, system_resolver};

/// Reads an environment variable (tests inject their own).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> Env {
    Arc::new(|var| std::env::var(var).ok())
}

/// What to check.
#[derive(Clone)]
pub struct CheckOptions {
    pub url: String,
    /// `None`: inferred from the URL.
    pub protocol: Option<Protocol>,
    /// The variable holding the key.
    pub key_env: Option<String>,
    /// How the key travels (`Native`: the protocol's own way).
    pub auth: relaytop_core::session::AuthStyle,
    /// The model for the completion; `None`: the protocol's usual one.
    pub model: Option<String>,
    /// Limit on each network step (the completion gets three times as long).
    pub timeout: Duration,
    /// Also find out whether an idle connection survives this long.
    pub idle: Option<Duration>,
    pub resolver: Resolver,
    pub env: Env,
}

impl CheckOptions {
    /// Options with the system resolver and environment and a 10 s step limit.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            protocol: None,
            key_env: None,
            auth: Default::default(),
            model: None,
            timeout: Duration::from_secs(10),
            idle: None,
            resolver: system_resolver(),
            env: process_env(),
        }
    }
}
