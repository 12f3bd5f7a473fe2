//! One run's lifecycle, the same for every mode (headless, the dashboard, `relaytop chat`,
//! `replay --against`): start recording, the supervisor and the sessions, the canary; show
//! every event to the run-wide observers; and at the end stop the canary and the sessions
//! with their graces and finish the recording.
//!
//! A mode starts a `Run` from its `World` (`Run::start`), takes the events from the
//! `EventReceiver` it is handed, calls `Run::observe` for each event it folds (Prometheus,
//! the canary) and does its own consumption; `Run::finish` ends it and says where the
//! recording went. Nothing here knows a terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::alert::{Alerting, AlertsView, Notice};
use crate::canary::CanaryDriver;
use crate::metrics::Metrics;
use crate::record::{RecordOptions, Recorder, RunMeta};
use crate::session::{EventReceiver, RunClock, SessionEvent, SessionSpec, Timing};
use crate::supervisor::Supervisor;
use crate::world::World;

/// How long a canary gets to stop routing and post its notifications.
pub const CANARY_GRACE: Duration = Duration::from_secs(10);
/// How long the last alert deliveries get at the end of a run.
pub const ALERT_GRACE: Duration = Duration::from_secs(5);
/// How often the modes evaluate the alerts.
pub const ALERT_TICK: Duration = Duration::from_secs(1);
/// How long the sessions get to close.
pub const SESSION_GRACE: Duration = Duration::from_secs(2);

/// Where a run is recorded.
#[derive(Clone, Debug, Default)]
pub enum Recording {
    /// Where the world says (`World::recording`; nothing when it records nothing).
    #[default]
    World,
    /// A run directory of its own under these options, with this source (`replay --against`).
    Own {
        options: RecordOptions,
        source: String,
    },
    /// Not at all.
    Off,
}

/// What a run starts.
#[derive(Clone, Debug)]
pub struct RunSetup {
    /// The world's configured sessions (ids 0, 1, ...).
    pub configured: bool,
    /// Sessions started after the configured ones (on-demand pools, a chat session), in this
    /// order; recorded like them.
    pub extra: Vec<SessionSpec>,
    /// The configuration's canary, if it has one.
    pub canary: bool,
    pub recording: Recording,
}

impl RunSetup {
    /// Only `sessions` (a pool of its own: `replay --against`, `compare`), recorded in a run
    /// directory of its own under `record` with `source`, or not at all.
    pub fn own_pool(
        sessions: Vec<SessionSpec>,
        record: Option<&RecordOptions>,
        source: &str,
    ) -> Self {
        Self {
            configured: false,
            extra: sessions,
            canary: false,
            recording: match record {
                Some(options) => Recording::Own {
                    options: options.clone(),
                    source: source.to_owned(),
                },
                None => Recording::Off,
            },
        }
    }
}

impl Default for RunSetup {
    /// The configured sessions and the canary, recorded where the world says.
    fn default() -> Self {
        Self {
            configured: true,
            extra: Vec::new(),
            canary: true,
            recording: Recording::World,
        }
    }
}

/// How a run ended, for the recording.
#[derive(Clone, Debug)]
pub struct Ending {
    /// What ended it (`ended_by` in the recording and the report).
    pub reason: String,
    /// The run's length: the moment it ended, on its clock (the sessions' closing comes
    /// after and does not count).
    pub duration: Duration,
}

/// What a finished run leaves.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The run directory, when the run was recorded (a partial recording when
    /// `recording_failed` says why).
    pub recorded_to: Option<PathBuf>,
    /// Why the recording stopped before the run did (a full disk): the run and its summary
    /// are whole, the recording holds what was written before.
    pub recording_failed: Option<String>,
    pub ended_by: String,
    pub duration: Duration,
    /// The canary's report, taken once it stopped.
    pub canary: Option<crate::canary::CanaryReport>,
}

/// A run under way: its clock, sessions, recorder and canary.
pub struct Run<'w> {
    world: &'w World,
    started_at: chrono::DateTime<chrono::Utc>,
    clock: RunClock,
    supervisor: Supervisor,
    recorder: Option<Recorder>,
    canary: Option<CanaryDriver>,
    /// The alert rules and their deliveries, when the configuration has rules.
    alerting: Option<Alerting>,
    /// Each started session's timing, by id.
    timings: Vec<Timing>,
    /// The account pollers (`crate::account::poll`), one per provider with an account.
    accounts: crate::account::poll::Pollers,
}

impl std::fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("started_at", &self.started_at)
            .field("sessions", &self.supervisor.infos().len())
            .field("recorded", &self.recorder.is_some())
            .field("canary", &self.canary.is_some())
            .finish()
    }
}

impl<'w> Run<'w> {
    /// Starts the run: the recording, the sessions `setup` names, the canary. Returns it
    /// with the receiving end of its event stream.
    pub fn start(world: &'w World, setup: RunSetup) -> anyhow::Result<(Run<'w>, EventReceiver)> {
        let started_at = chrono::Utc::now();
        let clock = RunClock::new();
        let recorder = match &setup.recording {
            Recording::World => world.start_recording(started_at, clock)?,
            Recording::Own { options, source } => Some(Recorder::start(
                options,
                RunMeta {
                    started_at,
                    source: source.clone(),
                    pricing: world.config.pricing(),
                    secrets: world.config.secrets(),
                    slo: world.config.slo.clone(),
                },
                clock,
            )?),
            Recording::Off => None,
        };
        let mut specs = if setup.configured {
            world.session_specs(recorder.as_ref())?
        } else {
            Vec::new()
        };
        for mut spec in setup.extra {
            spec.info.id = u32::try_from(specs.len()).unwrap_or(u32::MAX);
            if let Some(recorder) = &recorder {
                let key_env = world
                    .config
                    .providers
                    .iter()
                    .find(|p| p.name == spec.info.provider)
                    .and_then(|p| p.api_key_env.as_deref());
                recorder
                    .attach(&mut spec, key_env)
                    .with_context(|| format!("cannot record session {}", spec.info.name))?;
            }
            specs.push(spec);
        }
        let (mut supervisor, events) = Supervisor::new(clock);
        // Counting tokens needs tables that take a moment to build: the ones these sessions'
        // models use, off the sessions' threads.
        crate::tokenize::warm_up_for(specs.iter().map(|spec| spec.info.model.as_str()));
        let timings = specs.iter().map(|spec| spec.timing).collect();
        for spec in specs {
            supervisor.start(spec);
        }
        // A canary routes its probes over its pools (and may end the run once it decided).
        let canary = match (&world.config.canary, setup.canary) {
            (Some(plan), true) => Some(CanaryDriver::start(
                plan.clone(),
                &supervisor,
                &world.config.providers,
            )),
            _ => None,
        };
        let alerting = Alerting::start(&world.config.alerts, &world.config.slo, supervisor.infos());
        // Each account is read on behalf of its provider's first session (its recording).
        let accounts = crate::account::poll::spawn_all(
            &world.config.providers,
            |provider| {
                let info = supervisor
                    .infos()
                    .iter()
                    .find(|info| info.provider == provider)?;
                Some(crate::account::poll::Target {
                    session: info.id,
                    tap: supervisor.tap(info.id),
                })
            },
            clock,
            &supervisor.event_sender(),
        );
        Ok((
            Run {
                world,
                started_at,
                clock,
                supervisor,
                recorder,
                canary,
                alerting,
                timings,
                accounts,
            },
            events,
        ))
    }

    pub fn world(&self) -> &'w World {
        self.world
    }

    /// When the run started (wall clock).
    pub fn started_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.started_at
    }

    /// The run's clock: every event's `at_us` is on it.
    pub fn clock(&self) -> RunClock {
        self.clock
    }

    /// The sessions: their infos, commands to them.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Each started session's timing, by id.
    pub fn timings(&self) -> &[Timing] {
        &self.timings
    }

    /// Starts a session after the run started (an agent's reload, `crate::fleet::reload`):
    /// recorded like the others (`key_env` names its key in the recording), shown to
    /// Prometheus. Returns its id.
    pub fn start_session(
        &mut self,
        mut spec: SessionSpec,
        key_env: Option<&str>,
    ) -> anyhow::Result<crate::session::SessionId> {
        spec.info.id = u32::try_from(self.supervisor.infos().len()).unwrap_or(u32::MAX);
        if let Some(recorder) = &self.recorder {
            recorder
                .attach(&mut spec, key_env)
                .with_context(|| format!("cannot record session {}", spec.info.name))?;
        }
        if let Some(exporter) = &self.world.prometheus {
            exporter.add_session(&spec.info);
        }
        self.timings.push(spec.timing);
        Ok(self.supervisor.start(spec))
    }

    /// Asks a session to close (an agent's reload removed it). False when it has ended.
    pub fn stop_session(&self, id: crate::session::SessionId) -> bool {
        self.supervisor
            .command(id, crate::session::SessionCommand::Close)
    }

    pub fn recorder(&self) -> Option<&Recorder> {
        self.recorder.as_ref()
    }

    pub fn canary(&self) -> Option<&CanaryDriver> {
        self.canary.as_ref()
    }

    /// Shows one event to the run-wide observers: the world's (Prometheus) and the canary.
    /// Every mode calls it once for each event it folds.
    pub fn observe(&self, event: &SessionEvent) {
        self.world.observe(event);
        if let Some(canary) = &self.canary {
            canary.observe(event);
        }
        if let Some(alerting) = &self.alerting {
            alerting.observe(event);
        }
    }

    /// The run's alerts, when the configuration has rules.
    pub fn alerting(&self) -> Option<&Alerting> {
        self.alerting.as_ref()
    }

    /// Evaluates the alert rules against `metrics` now (modes call it every `ALERT_TICK`):
    /// queues what is to be said for delivery, marks it in the recording (so a replay shows
    /// when each alert fired and resolved) and updates Prometheus. Returns what was said.
    pub fn evaluate_alerts(&self, metrics: &Metrics) -> Vec<Notice> {
        let Some(alerting) = &self.alerting else {
            return Vec::new();
        };
        let now_us = crate::session::event::micros(self.clock.now());
        let notices = alerting.evaluate(metrics, now_us);
        for n in &notices {
            tracing::info!(alert = %n.alert, scope = %n.scope, state = n.transition.label(), "{}", n.text);
            if let Some(recorder) = &self.recorder {
                recorder.marker(
                    crate::record::MarkerTarget::All,
                    &format!("alert {}: {} · {}", n.transition.label(), n.alert, n.scope),
                );
            }
        }
        record_failed_deliveries(self.recorder.as_ref(), alerting);
        self.world.observe_alerts(&alerting.states());
        notices
    }

    /// What the alerts show now; `None` without rules.
    pub fn alerts(&self, metrics: &Metrics) -> Option<AlertsView> {
        self.alerting.as_ref().map(|a| a.view(metrics))
    }

    /// Ends the run: stops the canary (`CANARY_GRACE`), closes the sessions
    /// (`SESSION_GRACE`), showing what they say meanwhile to the observers and then to
    /// `fold`, and finishes the recording with `ending`.
    pub async fn finish(
        self,
        mut events: EventReceiver,
        ending: Ending,
        mut fold: impl FnMut(&SessionEvent),
    ) -> anyhow::Result<Finished> {
        let Run {
            world,
            supervisor,
            recorder,
            canary,
            alerting,
            mut accounts,
            ..
        } = self;
        // No reading after the run's end.
        accounts.stop();
        if let Some(alerting) = &alerting {
            // The last alerts said get a moment to be delivered.
            alerting.flush(ALERT_GRACE).await;
            record_failed_deliveries(recorder.as_ref(), alerting);
        }
        if let Some(canary) = &canary {
            // Stops routing; gives a rollback or promotion notification time to be posted.
            canary.shutdown(CANARY_GRACE).await;
        }
        supervisor
            .shutdown(SESSION_GRACE, &mut events, |event| {
                world.observe(event);
                if let Some(canary) = &canary {
                    canary.observe(event);
                }
                fold(event);
            })
            .await;
        // Recording trouble never costs the run its end: it is reported, not returned.
        let (recorded_to, recording_failed) = match recorder {
            Some(recorder) => {
                let dir = recorder.dir().to_owned();
                // Joins the recorder's writer thread: off the async workers.
                let reason = ending.reason.clone();
                let duration = ending.duration;
                let failed =
                    match tokio::task::spawn_blocking(move || recorder.finish(&reason, duration))
                        .await
                    {
                        Ok(Ok(_)) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(e) => Some(format!("the recorder stopped: {e}")),
                    };
                world.set_recording_failure(failed.clone());
                (Some(dir), failed)
            }
            None => (None, None),
        };
        Ok(Finished {
            canary: canary.as_ref().map(CanaryDriver::report),
            recorded_to,
            recording_failed,
            ended_by: ending.reason,
            duration: ending.duration,
        })
    }
}

/// Writes a marker for each alert delivery given up on since the last call: a failed delivery
/// is recorded, not only shown.
fn record_failed_deliveries(recorder: Option<&Recorder>, alerting: &Alerting) {
    let Some(recorder) = recorder else {
        return;
    };
    for f in alerting.new_failures() {
        recorder.marker(
            crate::record::MarkerTarget::All,
            &format!(
                "alert not delivered: {} to {} ({})",
                f.alert,
                f.receiver,
                f.status
                    .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"))
            ),
        );
    }
}
