//! Headless runs: the same engine with no terminal UI, ending in a summary.
//!
//! Runs the sessions of a world until a duration passes, a number of responses complete,
//! every session has ended, or Ctrl-C; folds every event into the metrics; and prints a
//! summary (text or JSON), or streams one JSON event a line (ndjson) while running. When the
//! world records (`World::recording`), the run is recorded and its recording finished with
//! the run's end (`relaytop replay` prints the same summary from it).

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use relaytop_core::canary::{CanaryDriver, Phase};
use relaytop_core::metrics::Metrics;
use relaytop_core::report::{Report, RunInfo};
use relaytop_core::run::{Ending, Run, RunSetup};
use relaytop_core::session::{ErrorKind, EventKind, SessionEvent, SessionState};
use relaytop_core::world::World;

use crate::exit::RunStatus;

/// How the summary is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned tables for people.
    Text,
    /// One JSON document at the end (schema: docs/headless-schema.json).
    Json,
    /// One JSON event per line while running, then the summary as the last line.
    Ndjson,
}

/// When a headless run ends, and how it reports.
#[derive(Clone, Debug)]
pub struct HeadlessOptions {
    pub duration: Option<Duration>,
    /// Stop after this many completed responses (all sessions together).
    pub requests: Option<u64>,
    pub format: OutputFormat,
}

/// A batch smaller than this, with nothing more queued, is a quiet stream: the loop pauses
/// `QUIET_PAUSE` before it looks again (one wake-up per pause, not one per session's batch).
const QUIET_BATCH: usize = 64;
/// How long a quiet stream gathers (ndjson lines and stops come at most this much later).
const QUIET_PAUSE: Duration = Duration::from_millis(20);

/// One ndjson line.
#[derive(Serialize)]
struct EventLine<'a> {
    at_ms: f64,
    session: &'a str,
    provider: &'a str,
    #[serde(flatten)]
    event: &'a EventKind,
}

/// Runs the world's sessions headless and returns the summary (already printed to `out`).
pub async fn run(
    world: &World,
    options: &HeadlessOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    run_with_status(world, options, out)
        .await
        .map(|(report, _)| report)
}

/// `run`, and how it ended for the exit status (`crate::exit`). A recording that fails is
/// said on stderr when it happens; the run goes on, and the status says it.
pub async fn run_with_status(
    world: &World,
    options: &HeadlessOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<(Report, RunStatus)> {
    let (run, mut events) = Run::start(world, RunSetup::default())?;
    let clock = run.clock();
    let started_at = run.started_at();
    let infos = run.supervisor().infos().to_vec();
    // A canary routes its probes over its pools and ends the run once it has decided.
    let canary = run.canary();
    let mut metrics = Metrics::new(infos.clone(), world.config.pricing().into())
        .with_slos(world.config.slo.clone());
    let mut accounts =
        relaytop_core::account::Accounts::new(infos.clone(), world.config.pricing().into());
    let total_sessions = infos.len();
    let mut ended = vec![false; total_sessions];
    let mut ended_count = 0usize;
    let mut completed = 0u64;
    // Each session's last state and last error kind during the run (not its closing).
    let mut last_state: Vec<Option<SessionState>> = vec![None; total_sessions];
    let mut last_error: Vec<Option<ErrorKind>> = vec![None; total_sessions];
    let mut recording_warned = false;

    let deadline = options
        .duration
        .map(|d| clock.instant_at(d))
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
    let stop_signal = stop_signal();
    tokio::pin!(stop_signal);
    // The alert rules are evaluated once a tick (only when there are rules).
    let mut alert_tick = tokio::time::interval(relaytop_core::run::ALERT_TICK);
    alert_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let alerts_on = run.alerting().is_some();

    let handle_event = |event: &SessionEvent,
                        metrics: &mut Metrics,
                        accounts: &mut relaytop_core::account::Accounts,
                        out: &mut (dyn Write + Send)|
     -> anyhow::Result<()> {
        metrics.apply(event);
        // The warnings are in the summary's accounts (and the ndjson lines' account events).
        let _alerts = accounts.apply(event);
        if options.format == OutputFormat::Ndjson {
            let info = &infos[event.session as usize];
            let line = EventLine {
                at_ms: event.at_us as f64 / 1000.0,
                session: &info.name,
                provider: &info.provider,
                event: &event.kind,
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    };

    // Events are taken in batches (as the dashboard does): one wake-up of this loop and one
    // poll of its timers per batch, not per event, which is what a fast stream needs.
    // Taken whole, as the sessions handed them over; emptied batches go back to them.
    let mut rest = Vec::new();
    let ended_by = if total_sessions == 0 {
        "no sessions configured".to_owned()
    } else {
        'run: loop {
            tokio::select! {
                received = events.recv_batch() => {
                    let Some(mut batch) = received else {
                        break "all sessions ended".to_owned();
                    };
                    let mut stop = None;
                    let mut folded = 0;
                    for event in &batch {
                        folded += 1;
                        run.observe(event);
                        handle_event(event, &mut metrics, &mut accounts, out)?;
                        let id = event.session as usize;
                        match &event.kind {
                            EventKind::State(state) if id < total_sessions => {
                                last_state[id] = Some(state.clone());
                            }
                            EventKind::Error { kind, .. } if id < total_sessions => {
                                last_error[id] = Some(*kind);
                            }
                            _ => {}
                        }
                        match &event.kind {
                            EventKind::Done(_) => completed += 1,
                            EventKind::State(SessionState::Stopped { .. } | SessionState::Closed) => {
                                let slot = &mut ended[event.session as usize];
                                if !*slot {
                                    *slot = true;
                                    ended_count += 1;
                                }
                            }
                            _ => {}
                        }
                        if options.requests.is_some_and(|n| completed >= n) {
                            stop = Some(format!("{completed} responses completed"));
                            break;
                        }
                        if ended_count == total_sessions {
                            stop = Some("every session ended".to_owned());
                            break;
                        }
                    }
                    // The rest of the batch is folded after the run (below), as the events
                    // still queued are.
                    rest.extend(batch.drain(folded..));
                    events.recycle(batch);
                    if !recording_warned
                        && let Some(failure) = run.recorder().and_then(|r| r.failure())
                    {
                        recording_warned = true;
                        eprintln!(
                            "relaytop: warning: recording stopped: {failure}; the run goes on \
                             unrecorded and its summary is unaffected"
                        );
                    }
                    if let Some(stop) = stop {
                        break 'run stop;
                    }
                    if options.format == OutputFormat::Ndjson && events.is_empty() {
                        out.flush()?;
                    }
                    if events.is_empty() && folded < QUIET_BATCH {
                        // A quiet stream (heartbeats, probes) gathers for a moment instead of
                        // waking this thread for every session's batch: 10,000 idle sessions'
                        // pongs woke it 600 times a second (`bench scale`, futex calls).
                        // Events carry their own times: nothing measured moves.
                        tokio::time::sleep(QUIET_PAUSE).await;
                    } else if events.is_empty() {
                        // Let the sessions add to the queue before looking at it again, rather
                        // than park this worker at once and be woken by the next batch.
                        tokio::task::yield_now().await;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    break format!("duration {} elapsed", humantime::format_duration(options.duration.unwrap_or_default()));
                }
                signal = &mut stop_signal => break signal,
                _ = settled(canary) => break canary_ended(canary),
                _ = alert_tick.tick(), if alerts_on => {
                    run.evaluate_alerts(&metrics);
                }
            }
        }
    };
    // What was taken with the last batch but not folded yet still happened during the run.
    for event in rest.drain(..) {
        run.observe(&event);
        handle_event(&event, &mut metrics, &mut accounts, out)?;
    }

    let duration = clock.now();
    // The alerts as the run ended (evaluated once more over everything folded).
    run.evaluate_alerts(&metrics);
    if let Some(alerting) = run.alerting() {
        // What was just said gets its moment to be delivered before the report counts it.
        alerting.flush(relaytop_core::run::ALERT_GRACE).await;
    }
    let alerts = run.alerts(&metrics);
    // Fold what the sessions said while closing (their close events), but stop the clock
    // at the moment the run ended.
    let mut written = Ok(());
    let ending = Ending {
        reason: ended_by.clone(),
        duration,
    };
    let finished = run
        .finish(events, ending, |event| {
            if written.is_ok() {
                written = handle_event(event, &mut metrics, &mut accounts, out);
            }
        })
        .await?;
    written?;
    let mut report = Report::build(
        &metrics,
        RunInfo {
            started_at,
            duration_us: relaytop_core::session::event::micros(duration),
            source: world.config.source.clone(),
            ended_by,
        },
    );
    report.canary = finished.canary;
    report.alerts = alerts;
    report.accounts = accounts.summaries();
    match options.format {
        OutputFormat::Text => write!(out, "{}", report.to_text())?,
        OutputFormat::Json => writeln!(out, "{}", report.to_json_pretty())?,
        OutputFormat::Ndjson => {
            #[derive(Serialize)]
            struct Summary<'a> {
                summary: &'a Report,
            }
            serde_json::to_writer(&mut *out, &Summary { summary: &report })?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    let status = RunStatus {
        stopped_auth_or_quota: infos
            .iter()
            .zip(last_state.iter().zip(&last_error))
            .filter(|(_, (state, error))| {
                // Stopped for it, or still refused and waiting for the next check.
                let refused = matches!(
                    state,
                    Some(SessionState::BackingOff {
                        watch: Some(relaytop_core::session::Watch {
                            refused: Some(_),
                            ..
                        }),
                        ..
                    })
                );
                (refused || matches!(state, Some(SessionState::Stopped { .. })))
                    && matches!(error, Some(ErrorKind::Auth | ErrorKind::RateLimited))
            })
            .map(|(info, _)| info.name.clone())
            .collect(),
        all_down: total_sessions > 0
            && last_state.iter().all(|state| {
                !matches!(
                    state,
                    Some(
                        SessionState::Open | SessionState::Streaming { .. } | SessionState::Closed
                    )
                )
            }),
        recording_failed: finished.recording_failed.clone(),
    };
    Ok((report, status))
}

/// Resolves once the canary (if any) is rolled back, promoted or paused.
async fn settled(canary: Option<&CanaryDriver>) {
    match canary {
        Some(canary) => canary.settled().await,
        None => std::future::pending().await,
    }
}

/// What ended a run the canary ended.
fn canary_ended(canary: Option<&CanaryDriver>) -> String {
    match canary.map(CanaryDriver::phase) {
        Some(Phase::RolledBack { trigger }) => format!("canary rolled back ({})", trigger.rule),
        Some(Phase::Promoted { .. }) => "canary promoted to 100 %".to_owned(),
        Some(Phase::Paused { reason }) => format!("canary paused: {reason}"),
        _ => "canary settled".to_owned(),
    }
}

/// The first of Ctrl-C, SIGTERM (how systemd, docker and `timeout` stop things) and SIGHUP
/// (a closed terminal): each ends the run as Ctrl-C does, summary printed and recording
/// finished; the answer is what `ended_by` says.
async fn stop_signal() -> String {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        async fn one(kind: SignalKind) {
            match signal(kind) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)".to_owned(),
            _ = one(SignalKind::terminate()) => "terminated (SIGTERM)".to_owned(),
            _ = one(SignalKind::hangup()) => "hung up (SIGHUP)".to_owned(),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupted (Ctrl-C)".to_owned()
    }
}
