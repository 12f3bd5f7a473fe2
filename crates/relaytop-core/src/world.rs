//! The world a run happens in: the configuration, plus any simulated relays it asks for.
//!
//! With no configuration relaytop runs the default world (`config/default_world.toml`): two
//! simulated relays on 127.0.0.1 shaped like the reference case. Any provider may say
//! `simulate = "PROFILE"`; this module starts those simulators (through a `Simulator`, which
//! relaytop-sim provides: the engine does not depend on the simulator) and points the sessions
//! at them before anything connects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

use crate::canary::RunOptions;
use crate::config::secret::Secret;
use crate::config::sim_profile::SimProfile;
use crate::config::{Config, ConfigError, file};
use crate::record::{RecordOptions, Recorder, RunMeta};
use crate::session::{Protocol, RunClock, SessionSpec};
use futures_util::future::BoxFuture;

/// The default world's configuration text.
pub const DEFAULT_WORLD: &str = include_str!("config/default_world.toml");

/// The key sessions present to simulated relays (not a secret: it only opens local simulators).
pub const SIMULATOR_KEY: &str = "hs_live_simulatedrelay0000";

/// Starts the simulated relays a world asks for. relaytop-sim's `Embedded` is the one every
/// mode uses; tests may bring their own.
pub trait Simulator: Sync {
    /// Starts a simulated relay playing `profile` on 127.0.0.1 (an ephemeral port).
    fn start(&self, profile: SimProfile)
    -> BoxFuture<'_, std::io::Result<Box<dyn SimulatedRelay>>>;
}

/// A running simulated relay: one port that speaks every protocol.
pub trait SimulatedRelay: Send + Sync {
    /// The URL a session of `protocol` connects to.
    fn url(&self, protocol: Protocol) -> String;
    /// The profile it plays now.
    fn profile(&self) -> Arc<SimProfile>;
    /// Changes the profile for what comes next (connections open now included).
    fn set_profile(&self, profile: SimProfile);
    /// Stops it: the listener and every connection.
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A configuration with its simulators running.
pub struct World {
    pub config: Config,
    /// The simulators this world started, by provider name.
    pub simulators: Vec<(String, Box<dyn SimulatedRelay>)>,
    /// Where runs are recorded; `None` records nothing (the library's default: the command
    /// line turns recording on).
    pub recording: Option<RecordOptions>,
    /// The directory of the last run recorded.
    recording_dir: Mutex<Option<PathBuf>>,
    /// Why the last run's recording stopped before the run did.
    recording_failure: Mutex<Option<String>>,
    /// The Prometheus exporter (`--metrics-listen`), fed through `observe`; `None` = off.
    pub prometheus: Option<Arc<crate::prometheus::Exporter>>,
    /// Constant labels on every exported series (an agent's `location` and `--label`s);
    /// set before `serve_metrics`.
    pub metric_labels: Vec<(String, String)>,
    /// The server of `/metrics`, alive as long as the world.
    metrics_server: Option<crate::prometheus::MetricsServer>,
    /// What was inferred, what is not used, and warnings, to print once at start (canary
    /// YAML, `[canary]`, `--simulate`); render each with `Note::render(&config.source)`.
    pub notes: Vec<crate::canary::Note>,
}

/// Reads `path` (relaytop TOML, or canary YAML when it ends in .yaml or .yml), or the default
/// world when `None`. Under `--simulate` no key is read from the environment.
fn read_config(path: Option<&Path>, options: &RunOptions) -> anyhow::Result<Config> {
    let simulate = options.simulate;
    let read_key = |var: &str| {
        if simulate {
            Ok(Secret::new(SIMULATOR_KEY))
        } else {
            Secret::from_env(var)
        }
    };
    Ok(match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let source = path.display().to_string();
            if crate::canary::yaml::is_yaml(path) {
                crate::canary::yaml::parse(&text, &source, &read_key, &|var| {
                    std::env::var(var).ok()
                })?
            } else {
                file::parse(&text, &source, &read_key)?
            }
        }
        None => file::parse(DEFAULT_WORLD, "default world", &read_key)?,
    })
}

impl World {
    /// Loads `path`, or the default world when `None`, and starts its simulators.
    pub async fn load(path: Option<&Path>, simulator: &dyn Simulator) -> anyhow::Result<World> {
        Self::load_with(path, &RunOptions::default(), simulator).await
    }

    /// Loads `path` (relaytop TOML, or canary YAML when it ends in .yaml or .yml), or the
    /// default world when `None`, applies `--simulate` and `--time-scale`, and starts its
    /// simulators. Under `--simulate` no key is read from the environment.
    pub async fn load_with(
        path: Option<&Path>,
        options: &RunOptions,
        simulator: &dyn Simulator,
    ) -> anyhow::Result<World> {
        let config = read_config(path, options)?;
        Self::start_with(config, options, simulator).await
    }

    /// Loads a configuration relaytop wrote itself (`config::starter`: a URL, the
    /// environment) from its TOML `text`, named `source` on screen and in reports.
    pub async fn from_toml(
        text: &str,
        source: &str,
        options: &RunOptions,
        simulator: &dyn Simulator,
    ) -> anyhow::Result<World> {
        let read_key = |var: &str| Secret::from_env(var);
        let config = file::parse(text, source, &read_key)?;
        Self::start_with(config, options, simulator).await
    }

    /// Starts the simulators a checked configuration asks for.
    pub async fn start(config: Config, simulator: &dyn Simulator) -> anyhow::Result<World> {
        Self::start_with(config, &RunOptions::default(), simulator).await
    }

    /// Applies `--simulate` and `--time-scale` to a checked configuration (adding a canary's
    /// connection pools), starts the simulators it asks for, and gives every provider its
    /// shared rate limits.
    pub async fn start_with(
        mut config: Config,
        options: &RunOptions,
        simulator: &dyn Simulator,
    ) -> anyhow::Result<World> {
        let notes = crate::canary::prepare(&mut config, options).map_err(anyhow::Error::msg)?;
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
            let server = simulator.start(profile).await.map_err(|e| {
                anyhow::anyhow!("cannot start the simulated relay for {provider}: {e}")
            })?;
            // One simulator speaks every protocol; each has its own URL on it.
            let protocol = config
                .providers
                .iter()
                .find(|p| p.name == provider)
                .map(|p| p.protocol)
                .unwrap_or_default();
            let url = server.url(protocol);
            tracing::info!(provider, %url, "simulated relay started");
            config.attach_simulator(&provider, &|p| server.url(p), Secret::new(SIMULATOR_KEY));
            simulators.push((provider, server));
        }
        let (window, connections) = crate::canary::limit_scale(&config);
        config.attach_limits(window, connections);
        Ok(World {
            config,
            simulators,
            recording: None,
            recording_dir: Mutex::new(None),
            recording_failure: Mutex::new(None),
            prometheus: None,
            metric_labels: Vec::new(),
            metrics_server: None,
            notes,
        })
    }

    /// Starts the Prometheus exporter for this world's sessions and serves it at
    /// `GET /metrics` on `listen` for as long as the world lives; returns the scrape URL.
    /// Consumers feed it through `observe`.
    pub async fn serve_metrics(&mut self, listen: SocketAddr) -> anyhow::Result<String> {
        let infos: Vec<_> = self
            .config
            .sessions
            .iter()
            .enumerate()
            .map(|(id, spec)| {
                let mut info = spec.info.clone();
                info.id = u32::try_from(id).unwrap_or(u32::MAX);
                info
            })
            .collect();
        let exporter = Arc::new(
            crate::prometheus::Exporter::with_labels(
                &infos,
                self.config.pricing().into(),
                &self.metric_labels,
            )
            .with_slos(self.config.slo.clone()),
        );
        let server = crate::prometheus::serve(listen, exporter.clone())
            .await
            .with_context(|| format!("cannot serve Prometheus metrics on {listen}"))?;
        let url = server.url();
        self.prometheus = Some(exporter);
        self.metrics_server = Some(server);
        Ok(url)
    }

    /// A configuration read anew for a reload (`relaytop agent`, SIGHUP), made ready to run
    /// in this world: `--simulate` and `--time-scale` applied, and each simulated provider
    /// attached to this world's simulator of the same name (so the sessions it did not
    /// change compare equal: `crate::fleet::reload`). A simulated provider this world did
    /// not start is refused: that takes a restart.
    pub fn reload_config(&self, path: &Path, options: &RunOptions) -> anyhow::Result<Config> {
        let mut config = read_config(Some(path), options)?;
        crate::canary::prepare(&mut config, options).map_err(anyhow::Error::msg)?;
        let wanted: Vec<String> = config
            .providers
            .iter()
            .filter(|p| p.simulate.is_some())
            .map(|p| p.name.clone())
            .collect();
        for provider in wanted {
            let Some((_, server)) = self.simulators.iter().find(|(name, _)| *name == provider)
            else {
                anyhow::bail!(
                    "provider {provider} is simulated but this agent started no simulator for                      it: restart the agent to add a simulated provider"
                );
            };
            config.attach_simulator(&provider, &|p| server.url(p), Secret::new(SIMULATOR_KEY));
        }
        let (window, connections) = crate::canary::limit_scale(&config);
        config.attach_limits(window, connections);
        Ok(config)
    }

    /// Shows one session event to the run-wide observers (the Prometheus exporter). Every
    /// consumer of the event stream (headless, dashboard) calls it for each event it folds.
    pub fn observe(&self, event: &crate::session::SessionEvent) {
        if let Some(exporter) = &self.prometheus {
            exporter.observe(event);
        }
    }

    /// Shows the alerts' states to Prometheus (`relaytop_alert_state`), when it is served.
    pub fn observe_alerts(
        &self,
        states: &[(String, crate::alert::Severity, String, crate::alert::Phase)],
    ) {
        if let Some(exporter) = &self.prometheus {
            for (alert, severity, scope, phase) in states {
                let value = match phase {
                    crate::alert::Phase::Inactive => 0,
                    crate::alert::Phase::Pending { .. } => 1,
                    crate::alert::Phase::Firing { .. } => 2,
                };
                exporter.set_alert_state(alert, severity.label(), scope, value);
            }
        }
    }

    /// Starts recording a run that started at `started_at` (wall clock) on `clock`, when
    /// recording is on: makes the run directory. Attach it with `session_specs`, end it with
    /// `Recorder::finish`.
    pub fn start_recording(
        &self,
        started_at: chrono::DateTime<chrono::Utc>,
        clock: RunClock,
    ) -> anyhow::Result<Option<Recorder>> {
        let Some(options) = &self.recording else {
            return Ok(None);
        };
        let run = RunMeta {
            started_at,
            source: self.config.source.clone(),
            pricing: self.config.pricing(),
            secrets: self.config.secrets(),
            slo: self.config.slo.clone(),
        };
        let recorder = Recorder::start(options, run, clock).with_context(|| {
            format!(
                "cannot record the run under {} (--no-record runs without recording)",
                options.root.display()
            )
        })?;
        *self
            .recording_dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(recorder.dir().to_owned());
        Ok(Some(recorder))
    }

    /// The configured sessions, ready to start in this order (ids 0, 1, ...), with the
    /// recorder's tap attached to each when there is one.
    pub fn session_specs(&self, recorder: Option<&Recorder>) -> anyhow::Result<Vec<SessionSpec>> {
        let mut specs = self.config.sessions.clone();
        if let Some(recorder) = recorder {
            for (id, spec) in specs.iter_mut().enumerate() {
                spec.info.id = u32::try_from(id).unwrap_or(u32::MAX);
                let key_env = self
                    .config
                    .providers
                    .iter()
                    .find(|p| p.name == spec.info.provider)
                    .and_then(|p| p.api_key_env.as_deref());
                recorder
                    .attach(spec, key_env)
                    .with_context(|| format!("cannot record session {}", spec.info.name))?;
            }
        }
        Ok(specs)
    }

    /// The directory of the last run recorded (for the status bar and the exit message).
    pub fn recording_dir(&self) -> Option<PathBuf> {
        self.recording_dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Why the last run's recording stopped before the run did (a full disk): its
    /// directory (`recording_dir`) then holds a partial recording.
    pub fn recording_failure(&self) -> Option<String> {
        self.recording_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets what `recording_failure` says (`Run::finish`).
    pub fn set_recording_failure(&self, failure: Option<String>) {
        *self
            .recording_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
    }

    /// Stops the simulators.
    pub async fn stop(self) {
        for (_, server) in self.simulators {
            server.stop().await;
        }
    }
}
