//! The world a run happens in: the configuration, plus any simulated relays it asks for.
//!
//! With no configuration relaytop runs the default world (`config/default_world.toml`): two
//! simulated relays on 127.0.0.1 shaped like the reference case. Any provider may say
//! `simulate = "PROFILE"`; this module starts those simulators and points the sessions at
//! them before anything connects.

use std::net::SocketAddr;
use std::path::Path;

use crate::config::secret::Secret;
use crate::config::{Config, file};
use crate::sim::{SimProfile, SimServer};

/// The default world's configuration text.
pub const DEFAULT_WORLD: &str = include_str!("config/default_world.toml");

/// The key sessions present to simulated relays (not a secret: it only opens local simulators).
pub const SIMULATOR_KEY: &str = "hs_live_simulatedrelay0000";

/// A configuration with its simulators running.
pub struct World {
    pub config: Config,
    /// The simulators this world started, by provider name.
    pub simulators: Vec<(String, SimServer)>,
}

impl World {
    /// Loads `path`, or the default world when `None`, and starts its simulators.
    pub async fn load(path: Option<&Path>) -> anyhow::Result<World> {
        let config = match path {
            Some(path) => file::load(path)?,
            None => file::parse(DEFAULT_WORLD, "default world", &|var| Secret::from_env(var))?,
        };
        Self::start(config).await
    }

    /// Starts the simulators a checked configuration asks for.
    pub async fn start(mut config: Config) -> anyhow::Result<World> {
        let mut simulators = Vec::new();
        let wanted: Vec<(String, String)> = config
            .providers
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.simulate.clone()?)))
            .collect();
        for (provider, profile_name) in wanted {
            let profile = SimProfile::named(&profile_name).ok_or_else(|| {
                anyhow::anyhow!("no simulator profile `{profile_name}` for provider {provider}")
            })?;
            let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
            let server = SimServer::start(listen, profile).await.map_err(|e| {
                anyhow::anyhow!("cannot start the simulated relay for {provider}: {e}")
            })?;
            tracing::info!(provider, url = %server.url(), "simulated relay started");
            config.attach_simulator(&provider, &server.url(), Secret::new(SIMULATOR_KEY));
            simulators.push((provider, server));
        }
        Ok(World { config, simulators })
    }

    /// Stops the simulators.
    pub async fn stop(self) {
        for (_, server) in self.simulators {
            server.stop().await;
        }
    }
}
