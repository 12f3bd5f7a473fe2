//! The new run: a pool of on-demand sessions against the target (a `Run` of their own,
//! recorded when asked), paced by a `Pacer`, folded into the new run's `Report`.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use relaytop_core::config::file::Provider;
use relaytop_core::metrics::Metrics;
use relaytop_core::record::RecordOptions;
use relaytop_core::report::{Report, RunInfo, count, human_duration};
use relaytop_core::run::{Ending, Run, RunSetup};
use relaytop_core::session::{
    EventKind, SessionCommand, SessionInfo, SessionSpec, SessionState, Timing, Workload,
};
use relaytop_core::world::World;

use super::{MAX_POOL, Pace, Pacer, Pacing, Recorded, schedule};

/// With no connection up for this long, the run ends (the comparison says why).
const NO_CONNECTION_LIMIT: Duration = Duration::from_secs(60);
/// A request with no outcome after this long frees its session anyway.
const LOST_AFTER: Duration = Duration::from_secs(180);

/// How `run` goes.
#[derive(Clone, Debug)]
pub struct AgainstOptions {
    pub pacing: Pacing,
    /// Record the new run too (its own run directory).
    pub record: Option<RecordOptions>,
    /// A one-line progress indicator on stderr (when it is a terminal).
    pub progress: bool,
    /// After the last request went out, how long to wait for the outstanding responses.
    pub drain: Duration,
    /// How long the pool may take to connect before the requests start anyway.
    pub connect_wait: Duration,
}

impl Default for AgainstOptions {
    fn default() -> Self {
        Self {
            pacing: Pacing::Recorded {
                speed: 1.0,
                idle_limit: None,
            },
            record: None,
            progress: false,
            drain: Duration::from_secs(120),
            connect_wait: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct PoolSession {
    up: bool,
    ended: bool,
    busy: Option<Duration>,
}

/// What the new run did.
#[derive(Clone, Debug)]
pub struct NowRun {
    pub report: Report,
    /// Connections in the pool.
    pub pool: u32,
    /// Requests sent, of those to send.
    pub sent: u64,
    pub to_send: u64,
    /// Ctrl-C ended it early.
    pub interrupted: bool,
    /// Where the new run was recorded.
    pub recorded_to: Option<PathBuf>,
    pub notes: Vec<String>,
}

/// The target provider of `world`, or an error naming the ones it has.
pub fn target<'w>(world: &'w World, name: &str) -> anyhow::Result<&'w Provider> {
    world
        .config
        .providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = world
                .config
                .providers
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            anyhow::anyhow!(
                "no provider `{name}` in {} (it has: {}); name one of them, or pass the \
                 configuration that has it with --config FILE",
                world.config.source,
                names.join(", ")
            )
        })
}

/// Re-sends `recorded`'s requests to provider `target` of `world` and reports the new run.
pub async fn run(
    recorded: &Recorded,
    world: &World,
    target_name: &str,
    options: &AgainstOptions,
) -> anyhow::Result<NowRun> {
    let provider = target(world, target_name)?.clone();
    let mut notes = Vec::new();
    let wanted = recorded.concurrency.max(1);
    let pool = wanted.min(provider.max_connections.max(1)).min(MAX_POOL);
    if pool < wanted {
        notes.push(format!(
            "the recording had {wanted} requests in flight at once; {} allows {pool} \
             connections, so the pool has {pool}",
            provider.name
        ));
    }
    let mut pool_specs = Vec::new();
    for n in 1..=pool {
        pool_specs.push(SessionSpec {
            info: SessionInfo {
                id: n - 1,
                name: format!("{}-against-{n}", provider.name),
                provider: provider.name.clone(),
                model: provider.model.clone(),
                protocol: provider.protocol,
                url: provider.url.clone(),
                workload: "replay".into(),
            },
            api_key: provider.api_key.clone(),
            auth: Default::default(),
            workload: Workload::OnDemand,
            timing: Timing::default(),
            seed: None,
            tap: None,
            limits: provider.limits.clone(),
            resolver: None,
        });
    }
    let source = format!("replay --against {}", provider.name);
    let setup = RunSetup::own_pool(pool_specs, options.record.as_ref(), &source);
    let (run, mut events) = Run::start(world, setup)?;
    let clock = run.clock();
    let started_at = run.started_at();
    let infos = run.supervisor().infos().to_vec();
    let mut metrics =
        Metrics::new(infos, world.config.pricing().into()).with_slos(world.config.slo.clone());
    let mut sessions = vec![PoolSession::default(); pool as usize];
    let mut stop_reason: Option<String> = None;
    let progress = options.progress && std::io::stderr().is_terminal();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;

    let fold = |event: relaytop_core::session::SessionEvent,
                metrics: &mut Metrics,
                sessions: &mut [PoolSession],
                stop_reason: &mut Option<String>,
                pacer: Option<&mut Pacer>| {
        metrics.apply(&event);
        let Some(s) = sessions.get_mut(event.session as usize) else {
            return;
        };
        match &event.kind {
            EventKind::State(state) => {
                s.up = state.is_up();
                if let SessionState::Stopped { reason } = state {
                    stop_reason.get_or_insert_with(|| reason.clone());
                }
                if matches!(state, SessionState::Stopped { .. } | SessionState::Closed) {
                    s.ended = true;
                    s.busy = None;
                }
            }
            EventKind::Done(_) | EventKind::RequestFailed { .. } => s.busy = None,
            EventKind::RateLimited { wait_ms, .. } => {
                if let Some(pacer) = pacer {
                    pacer.hold(event.at() + Duration::from_millis(*wait_ms));
                }
            }
            _ => {}
        }
    };

    // The pool connects first: the recorded requests went over open connections.
    let connect_deadline = tokio::time::Instant::now() + options.connect_wait;
    while !sessions.iter().all(|s| s.up || s.ended) {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    run.observe(&event);
                    fold(event, &mut metrics, &mut sessions, &mut stop_reason, None);
                }
                None => break,
            },
            _ = tokio::time::sleep_until(connect_deadline) => break,
            _ = &mut ctrl_c => { interrupted = true; break; }
        }
    }

    let start = clock.now();
    let per_minute = provider.requests_per_minute;
    let minute = Duration::from_secs(60);
    let mut pacer = match options.pacing {
        Pacing::Recorded { speed, idle_limit } => {
            let at: Vec<u64> = recorded.requests.iter().map(|r| r.at_us).collect();
            let due = schedule(&at, speed, idle_limit)
                .into_iter()
                .map(|d| start + d)
                .collect();
            Pacer::recorded(due, per_minute, minute)
        }
        Pacing::AsFastAsAllowed => {
            Pacer::as_fast_as_allowed(recorded.requests.len(), per_minute, minute)
        }
    };
    let commander = run.supervisor().commander();
    let mut next_session = 0usize;
    let mut last_send = clock.now();
    let mut last_progress = Duration::ZERO;
    let mut last_up = clock.now();
    while !interrupted {
        let now = clock.now();
        // Free sessions whose request never ended.
        for s in &mut sessions {
            if s.busy
                .is_some_and(|since| now.saturating_sub(since) > LOST_AFTER)
            {
                s.busy = None;
            }
        }
        let mut wake = now + Duration::from_millis(250);
        loop {
            let n = sessions.len();
            let Some(k) = (0..n)
                .map(|k| (next_session + k) % n)
                .find(|&k| sessions[k].up && sessions[k].busy.is_none())
            else {
                break;
            };
            match pacer.poll(now) {
                Pace::Send(i) => {
                    let request = &recorded.requests[i];
                    let command = SessionCommand::SendMessages {
                        messages: request.messages.clone(),
                        max_tokens: request.max_tokens,
                    };
                    let id = u32::try_from(k).unwrap_or(u32::MAX);
                    if commander.command(id, command) {
                        sessions[k].busy = Some(now);
                        next_session = (k + 1) % n;
                        last_send = now;
                    } else {
                        sessions[k].up = false;
                        pacer.give_back();
                    }
                }
                Pace::WaitUntil(at) => {
                    wake = wake.min(at);
                    break;
                }
                Pace::Done => break,
            }
        }
        let all_sent = pacer.sent() >= pacer.total();
        let none_busy = sessions.iter().all(|s| s.busy.is_none());
        if all_sent && none_busy {
            break;
        }
        if all_sent && now.saturating_sub(last_send) > options.drain {
            notes.push(format!(
                "some responses had not ended {} after the last request; the figures leave \
                 them out",
                human_duration(options.drain.as_micros() as u64)
            ));
            break;
        }
        if sessions.iter().any(|s| s.up) {
            last_up = now;
        } else if now.saturating_sub(last_up) > NO_CONNECTION_LIMIT {
            notes.push(format!(
                "no connection to {} for {}{}: {} of {} requests sent",
                provider.name,
                human_duration(NO_CONNECTION_LIMIT.as_micros() as u64),
                stop_reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                pacer.sent(),
                pacer.total()
            ));
            break;
        }
        if sessions.iter().all(|s| s.ended) {
            notes.push(format!(
                "every connection to {} ended{}: {} of {} requests sent",
                provider.name,
                stop_reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                pacer.sent(),
                pacer.total()
            ));
            break;
        }
        if progress && now.saturating_sub(last_progress) >= Duration::from_millis(250) {
            last_progress = now;
            let c = &metrics.totals().counts;
            eprint!(
                "\rrelaytop: {} of {} sent to {}, {} completed, {} failed   ",
                count(pacer.sent() as u64),
                count(pacer.total() as u64),
                provider.name,
                count(c.responses_completed),
                count(c.requests_failed)
            );
        }
        let sleep = tokio::time::sleep_until(clock.instant_at(wake.max(now)));
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                run.observe(&event);
                fold(event, &mut metrics, &mut sessions, &mut stop_reason, Some(&mut pacer));
                while let Ok(event) = events.try_recv() {
                    run.observe(&event);
                    fold(event, &mut metrics, &mut sessions, &mut stop_reason, Some(&mut pacer));
                }
            }
            _ = sleep => {}
            _ = &mut ctrl_c => interrupted = true,
        }
    }
    if progress {
        eprint!("\r{:78}\r", "");
    }
    let duration = clock.now().saturating_sub(start);
    let ended_by = if interrupted {
        "ctrl-c".to_owned()
    } else if pacer.sent() >= pacer.total() {
        "every recorded request re-sent".to_owned()
    } else {
        "the target's connections ended".to_owned()
    };
    let ending = Ending {
        reason: ended_by.clone(),
        duration: clock.now(),
    };
    let mut closing = Vec::new();
    let finished = run
        .finish(events, ending, |event| closing.push(event.clone()))
        .await?;
    for event in closing {
        fold(event, &mut metrics, &mut sessions, &mut stop_reason, None);
    }
    let recorded_to = finished.recorded_to;
    let info = RunInfo {
        started_at,
        duration_us: relaytop_core::session::event::micros(duration),
        source,
        ended_by,
    };
    Ok(NowRun {
        report: Report::build(&metrics, info),
        pool,
        sent: pacer.sent() as u64,
        to_send: pacer.total() as u64,
        interrupted,
        recorded_to,
        notes,
    })
}
