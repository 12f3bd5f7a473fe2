//! The canary driver: routes probe requests over the providers' connection pools and feeds
//! their outcomes to the controller.
//!
//! Its task ticks at the probe rate: it runs the controller's due checks, makes requests at
//! the plan's rate (in canary time), picks each one's provider with the smooth weighted
//! round-robin router, and sends it (`SessionCommand::Send`) to an idle session of that
//! provider's pool; a request with no idle session, or whose provider's sliding window is full,
//! waits and is counted as waiting. Whoever consumes the event stream (headless, dashboard)
//! calls `observe` for every event: completed and failed requests become outcomes, and weights
//! the controller changes reach the router at once (a rollback sets the canary to 0 %). Stage
//! changes, pauses, rollbacks and promotions are written to the event stream as markers (on
//! behalf of the first pool session still going, through its tap too, so that a recording has
//! them and a replay shows them), and rollbacks and promotions are posted to the webhook.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::canary::controller::{Canary, Decision, Outcome, Phase, describe};
use crate::canary::notify::{Notifier, NotifyOptions};
use crate::canary::plan::{CanaryPlan, LatencyKind, Role, human};
use crate::canary::router::Router;
use crate::canary::view::{Banner, BannerKind, CanaryReport, CanaryView, ProviderTraffic};
use crate::config::Provider;
use crate::session::ratelimit::ProviderLimits;
use crate::session::tap::TapHandle;
use crate::session::{
    ErrorKind, EventKind, RequestId, RunClock, SessionCommand, SessionEvent, SessionId,
    SessionState,
};
use crate::supervisor::{Commander, Supervisor};

/// Requests waiting per provider before the oldest are dropped (and counted).
pub const MAX_WAITING: usize = 10_000;
/// Decisions kept for the view's log.
const LOG_LINES: usize = 50;
/// Checks the view shows.
const VIEW_HISTORY: usize = 50;
/// Checks the report keeps.
const REPORT_HISTORY: usize = 200;
/// A request with no outcome after this long (real time) frees its session anyway.
const LOST_AFTER: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug)]
struct Busy {
    since: Duration,
    request: Option<RequestId>,
}

#[derive(Clone, Debug)]
struct PoolSession {
    id: SessionId,
    up: bool,
    /// Closed or stopped: its recording has ended.
    ended: bool,
    busy: Option<Busy>,
    /// Its tap (the recorder's), if the run is recorded: markers reported on its behalf.
    tap: Option<TapHandle>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Traffic {
    routed: u64,
    sent: u64,
    ok: u64,
    failed: u64,
    rate_limited: u64,
    dropped_waiting: u64,
}

struct Inner {
    controller: Canary,
    router: Router,
    clock: RunClock,
    scale: f64,
    commander: Commander,
    events: Option<crate::session::EventSender>,
    /// The session markers are reported under when every pool session has ended.
    marker_session: SessionId,
    roles: HashMap<SessionId, (Role, usize)>,
    pools: [Vec<PoolSession>; 2],
    next_idle: [usize; 2],
    queue: [VecDeque<Duration>; 2],
    traffic: [Traffic; 2],
    limits: [Option<ProviderLimits>; 2],
    credit: f64,
    last_tick: Duration,
    log: VecDeque<(Duration, String)>,
    notifier: Option<Notifier>,
    settled: watch::Sender<bool>,
    /// When routing stopped (real time): the canary's clock stops there too.
    stopped_at: Option<Duration>,
}

fn slot(role: Role) -> usize {
    match role {
        Role::Baseline => 0,
        Role::Canary => 1,
    }
}

const ROLES: [Role; 2] = [Role::Baseline, Role::Canary];

/// A running canary: cheap to clone; every clone drives the same canary.
#[derive(Clone)]
pub struct CanaryDriver {
    inner: Arc<Mutex<Inner>>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
    settled: watch::Receiver<bool>,
}

impl std::fmt::Debug for CanaryDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanaryDriver").finish_non_exhaustive()
    }
}

impl CanaryDriver {
    /// Starts driving `plan` over the canary pool sessions `supervisor` has started (workload
    /// `canary`). `providers` gives each side its shared limits. Call within a tokio runtime.
    pub fn start(plan: CanaryPlan, supervisor: &Supervisor, providers: &[Provider]) -> Self {
        Self::start_with(plan, supervisor, providers, NotifyOptions::default())
    }

    /// As `start`, with the webhook's timeout and retries.
    pub fn start_with(
        plan: CanaryPlan,
        supervisor: &Supervisor,
        providers: &[Provider],
        notify: NotifyOptions,
    ) -> Self {
        let clock = supervisor.clock();
        let scale = plan.time_scale.max(1.0);
        let mut roles = HashMap::new();
        let mut pools: [Vec<PoolSession>; 2] = [Vec::new(), Vec::new()];
        for info in supervisor.infos() {
            if info.workload != "canary" {
                continue;
            }
            if let Some(role) = plan.role_of(&info.provider) {
                let pool = &mut pools[slot(role)];
                roles.insert(info.id, (role, pool.len()));
                pool.push(PoolSession {
                    id: info.id,
                    up: false,
                    ended: false,
                    busy: None,
                    tap: supervisor.tap(info.id),
                });
            }
        }
        let limits = ROLES.map(|role| {
            providers
                .iter()
                .find(|p| p.name == plan.provider(role))
                .and_then(|p| p.limits.clone())
        });
        let notifier = plan
            .notify
            .as_ref()
            .and_then(|n| n.url.clone())
            .map(|url| Notifier::spawn(url, notify));
        let marker_session = pools[1].first().or(pools[0].first()).map_or(0, |s| s.id);
        let now = clock.now().mul_f64(scale);
        let controller = Canary::new(plan, now);
        let router = Router::new(&controller.weights());
        let (settled_tx, settled) = watch::channel(false);
        let mut inner = Inner {
            controller,
            router,
            clock,
            scale,
            commander: supervisor.commander(),
            events: Some(supervisor.event_sender()),
            marker_session,
            roles,
            pools,
            next_idle: [0, 0],
            queue: [VecDeque::new(), VecDeque::new()],
            traffic: [Traffic::default(); 2],
            limits,
            credit: 0.0,
            last_tick: clock.now(),
            log: VecDeque::new(),
            notifier,
            settled: settled_tx,
            stopped_at: None,
        };
        let start = inner.canary_now();
        let label = format!(
            "canary: {} starts at {} % against {}",
            inner.controller.plan().canary,
            inner.controller.canary_weight(),
            inner.controller.plan().baseline
        );
        inner.marker(&label);
        inner.push_log(start, label);
        let inner = Arc::new(Mutex::new(inner));
        let task = tokio::spawn(tick_loop(Arc::downgrade(&inner)));
        CanaryDriver {
            inner,
            task: Arc::new(Mutex::new(Some(task))),
            settled,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change under the lock leaves the state whole; a panic elsewhere cannot split it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds one event of the run's stream (call for every event, in order).
    pub fn observe(&self, event: &SessionEvent) {
        self.lock().observe(event);
    }

    /// A snapshot for the dashboard.
    pub fn view(&self) -> CanaryView {
        self.lock().view()
    }

    /// The `canary` object of the headless report.
    pub fn report(&self) -> CanaryReport {
        self.lock().report()
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.lock().controller.phase().clone()
    }

    /// Pause the rollout (traffic keeps its split; rollback triggers stay armed).
    pub fn pause(&self) {
        self.lock().manual(|c, now| c.pause(now));
    }

    /// Resume a paused rollout (and open a manual gate).
    pub fn resume(&self) {
        self.lock().manual(|c, now| c.resume(now));
    }

    /// Promote the canary to 100 % now.
    pub fn promote(&self) {
        self.lock().manual(|c, now| c.promote_by_hand(now));
    }

    /// Roll the canary back to 0 % now.
    pub fn roll_back(&self) {
        self.lock().manual(|c, now| c.roll_back_by_hand(now));
    }

    /// Resolves once the canary is rolled back, promoted or paused (nothing more happens
    /// without a person).
    pub async fn settled(&self) {
        let mut rx = self.settled.clone();
        let _ = rx.wait_for(|settled| *settled).await;
    }

    /// Stops routing and waits up to `grace` for notifications still being posted.
    pub async fn shutdown(&self, grace: Duration) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
        let notifier = {
            let mut inner = self.lock();
            inner.events = None;
            if inner.stopped_at.is_none() {
                inner.stopped_at = Some(inner.clock.now());
            }
            inner.notifier.take()
        };
        if let Some(notifier) = notifier {
            notifier.flush(grace).await;
            let counts = notifier.counts();
            let mut inner = self.lock();
            inner.notifier = Some(notifier);
            if counts.pending > 0 {
                tracing::warn!(
                    pending = counts.pending,
                    "notifications still unsent at exit"
                );
            }
        }
    }
}

async fn tick_loop(inner: std::sync::Weak<Mutex<Inner>>) {
    loop {
        let period = match inner.upgrade() {
            Some(inner) => {
                let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
                inner.tick();
                inner.tick_period()
            }
            None => return,
        };
        tokio::time::sleep(period).await;
    }
}

impl Inner {
    fn canary_now(&self) -> Duration {
        self.canary_at(self.stopped_at.unwrap_or_else(|| self.clock.now()))
    }

    fn canary_at(&self, real: Duration) -> Duration {
        real.mul_f64(self.scale)
    }

    /// How often the task wakes (real time): as often as requests are due, within bounds.
    fn tick_period(&self) -> Duration {
        let per_second = self.rate_per_real_second();
        let period = if per_second > 0.0 {
            1.0 / per_second
        } else {
            1.0
        };
        Duration::from_secs_f64(period.clamp(0.005, 0.25))
    }

    fn rate_per_real_second(&self) -> f64 {
        let weight = self.controller.canary_weight();
        self.controller.plan().probe_rate_per_minute(weight) / 60.0 * self.scale
    }

    fn tick(&mut self) {
        let real = self.clock.now();
        let now = self.canary_at(real);
        let decisions = self.controller.tick(now);
        self.apply(decisions, now);
        // New requests at the plan's rate, routed by weight.
        let elapsed = real.saturating_sub(self.last_tick).as_secs_f64();
        self.last_tick = real;
        let rate = self.rate_per_real_second();
        self.credit = (self.credit + rate * elapsed).min((rate * 0.5).max(2.0));
        while self.credit >= 1.0 {
            self.credit -= 1.0;
            let Some(provider) = self.router.pick().map(str::to_owned) else {
                break;
            };
            let Some(role) = self.controller.plan().role_of(&provider) else {
                break;
            };
            let i = slot(role);
            self.traffic[i].routed += 1;
            if self.queue[i].len() >= MAX_WAITING {
                self.queue[i].pop_front();
                self.traffic[i].dropped_waiting += 1;
            }
            self.queue[i].push_back(real);
        }
        // Requests that never ended free their session.
        for pool in &mut self.pools {
            for s in pool.iter_mut() {
                if s.busy
                    .is_some_and(|b| real.saturating_sub(b.since) > LOST_AFTER)
                {
                    s.busy = None;
                }
            }
        }
        self.dispatch();
    }

    /// Sends waiting requests to idle sessions while the rate limits allow.
    fn dispatch(&mut self) {
        let real = self.clock.now();
        for role in ROLES {
            let i = slot(role);
            while !self.queue[i].is_empty() {
                if let Some(limits) = &self.limits[i]
                    && !limits.next_slot_in().is_zero()
                {
                    break;
                }
                let pool = &self.pools[i];
                let n = pool.len();
                if n == 0 {
                    break;
                }
                let start = self.next_idle[i];
                let Some(k) = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&k| pool[k].up && pool[k].busy.is_none())
                else {
                    break;
                };
                self.next_idle[i] = (k + 1) % n;
                let plan = self.controller.plan();
                let command = SessionCommand::Send {
                    prompt: plan.prompt.clone(),
                    max_tokens: plan.max_tokens,
                };
                let id = self.pools[i][k].id;
                if self.commander.command(id, command) {
                    self.pools[i][k].busy = Some(Busy {
                        since: real,
                        request: None,
                    });
                    self.queue[i].pop_front();
                    self.traffic[i].sent += 1;
                } else {
                    // The session ended or is swamped: count it down until it says otherwise.
                    self.pools[i][k].up = false;
                }
            }
        }
    }

    fn observe(&mut self, event: &SessionEvent) {
        let Some(&(role, k)) = self.roles.get(&event.session) else {
            return;
        };
        let i = slot(role);
        let mut outcome: Option<Outcome> = None;
        match &event.kind {
            EventKind::State(state) => {
                let s = &mut self.pools[i][k];
                s.up = state.is_up();
                if matches!(state, SessionState::Stopped { .. } | SessionState::Closed) {
                    s.busy = None;
                    s.ended = true;
                }
            }
            EventKind::RequestSent { request, .. } => {
                if let Some(busy) = &mut self.pools[i][k].busy {
                    busy.request = Some(*request);
                }
            }
            EventKind::Done(done) => {
                if self.pools[i][k].busy.take().is_some() {
                    let us = match self.controller.plan().latency {
                        LatencyKind::Ttft => done.ttft_us.unwrap_or(done.total_us),
                        LatencyKind::Total => done.total_us,
                    };
                    outcome = Some(Outcome::ok(Duration::from_micros(us)));
                }
            }
            EventKind::RequestFailed { kind, .. } => {
                if self.pools[i][k].busy.take().is_some() {
                    if *kind == ErrorKind::RateLimited {
                        // The relay's limit on our probes, not the canary's health.
                        self.traffic[i].rate_limited += 1;
                    } else {
                        outcome = Some(Outcome::failed());
                    }
                }
            }
            _ => return,
        }
        if let Some(outcome) = outcome {
            if outcome.ok {
                self.traffic[i].ok += 1;
            } else {
                self.traffic[i].failed += 1;
            }
            let at = self.canary_at(event.at());
            let decisions = self.controller.on_outcome(role, outcome, at);
            self.apply(decisions, at);
        }
        self.dispatch();
    }

    fn manual(&mut self, action: impl FnOnce(&mut Canary, Duration) -> Vec<Decision>) {
        let now = self.canary_now();
        let decisions = action(&mut self.controller, now);
        self.apply(decisions, now);
    }

    fn apply(&mut self, decisions: Vec<Decision>, now: Duration) {
        if decisions.is_empty() {
            return;
        }
        let weights = self.controller.weights();
        if self
            .router
            .weights()
            .iter()
            .map(|(_, w)| *w)
            .ne(weights.iter().map(|(_, w)| *w))
        {
            self.router.set_weights(&weights);
        }
        let plan = self.controller.plan().clone();
        let elapsed = now.saturating_sub(self.controller.started());
        for decision in decisions {
            let label = match &decision {
                Decision::Check(_) => continue,
                Decision::Advanced { stage, percentage } => format!(
                    "canary: stage {} of {}: {} at {percentage} %",
                    stage + 1,
                    plan.stages.len(),
                    plan.canary
                ),
                Decision::Paused { reason } => format!("canary paused: {reason}"),
                Decision::Resumed => "canary resumed".to_owned(),
                Decision::RolledBack(trigger) => format!(
                    "canary rolled back: {} to 0 % ({}): {}",
                    plan.canary, trigger.rule, trigger.detail
                ),
                Decision::Promoted { how } => {
                    format!("canary promoted: {} at 100 % ({how})", plan.canary)
                }
            };
            self.marker(&label);
            self.push_log(elapsed, label.clone());
            tracing::info!(canary = %plan.canary, "{label}");
            if let Some(notify) = &plan.notify {
                let text = match &decision {
                    Decision::RolledBack(trigger) if notify.on_rollback => Some(format!(
                        ":rotating_light: relaytop canary: *{}* rolled back to 0 % by `{}`: {}. \
                         Traffic is back on {}. (stage {} of {}, {} into the rollout)",
                        plan.canary,
                        trigger.rule,
                        trigger.detail,
                        plan.baseline,
                        self.controller.stage() + 1,
                        plan.stages.len(),
                        human(elapsed)
                    )),
                    Decision::Promoted { how } if notify.on_promotion => Some(format!(
                        ":white_check_mark: relaytop canary: *{}* promoted to 100 % ({how}) \
                         after {}; {} checks passed, {} failed.",
                        plan.canary,
                        human(elapsed),
                        self.controller.counts().passed,
                        self.controller.counts().failed
                    )),
                    _ => None,
                };
                if let (Some(text), Some(notifier)) = (text, &self.notifier) {
                    notifier.notify(text);
                }
            }
        }
        let settled = !matches!(self.controller.phase(), Phase::Running);
        self.settled.send_if_modified(|s| {
            let changed = *s != settled;
            *s = settled;
            changed
        });
    }

    /// Reports a marker on behalf of the first pool session still going (the canary's
    /// first), on the event stream and to that session's tap (the recording), at the same
    /// time: a replay shows it as the run did.
    fn marker(&self, label: &str) {
        let Some(events) = &self.events else {
            return;
        };
        let on_behalf = self.pools[1]
            .iter()
            .chain(&self.pools[0])
            .find(|s| !s.ended);
        let at = self.clock.now();
        let kind = EventKind::Marker {
            label: label.to_owned(),
        };
        let session = on_behalf.map_or(self.marker_session, |s| s.id);
        let event = SessionEvent::new(session, at, kind.clone());
        // Never wait on the consumer: a marker lost to a full queue is only a marker (and is
        // then not recorded either).
        if events.try_send(event).is_ok()
            && let Some(tap) = on_behalf.and_then(|s| s.tap.as_ref())
        {
            tap.0.event(at, &kind);
        }
    }

    fn push_log(&mut self, at: Duration, line: String) {
        if self.log.len() >= LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back((at, line));
    }

    fn providers(&self) -> Vec<ProviderTraffic> {
        let weights = self.controller.weights();
        ROLES
            .iter()
            .map(|&role| {
                let i = slot(role);
                let pool = &self.pools[i];
                let limits = self.limits[i].as_ref().map(ProviderLimits::view);
                let t = self.traffic[i];
                ProviderTraffic {
                    provider: self.controller.plan().provider(role).to_owned(),
                    role,
                    weight: weights[i].1,
                    pool_size: u32::try_from(pool.len()).unwrap_or(u32::MAX),
                    pool_up: u32::try_from(pool.iter().filter(|s| s.up).count()).unwrap_or(0),
                    busy: u32::try_from(pool.iter().filter(|s| s.busy.is_some()).count())
                        .unwrap_or(0),
                    waiting: self.queue[i].len() as u64,
                    waiting_for_slot: limits.as_ref().map_or(0, |l| l.waiting),
                    next_slot_in: limits.as_ref().map_or(Duration::ZERO, |l| l.next_slot_in),
                    sends_in_window: limits.as_ref().map_or(0, |l| l.sends_in_window),
                    requests_per_window: limits.as_ref().map_or(0, |l| l.requests_per_window),
                    routed: t.routed,
                    sent: t.sent,
                    ok: t.ok,
                    failed: t.failed,
                    rate_limited: t.rate_limited,
                }
            })
            .collect()
    }

    fn view(&self) -> CanaryView {
        let c = &self.controller;
        let plan = c.plan();
        let now = self.canary_now();
        let phase = c.phase().clone();
        let banner = match &phase {
            Phase::Running => None,
            Phase::Paused { reason } => Some(Banner {
                kind: BannerKind::Paused,
                text: format!("PAUSED: {reason}"),
            }),
            Phase::RolledBack { .. } => Some(Banner {
                kind: BannerKind::RolledBack,
                text: format!("ROLLED BACK: {}", describe(&phase, plan, c.stage())),
            }),
            Phase::Promoted { .. } => Some(Banner {
                kind: BannerKind::Promoted,
                text: format!("PROMOTED: {}", describe(&phase, plan, c.stage())),
            }),
        };
        let running = !phase.is_final();
        let history_len = c.history().len();
        CanaryView {
            baseline: plan.baseline.clone(),
            canary: plan.canary.clone(),
            banner,
            stage: c.stage() + 1,
            stages: plan.stages.len(),
            stage_plan: plan
                .stages
                .iter()
                .map(|s| (s.percentage, s.duration))
                .collect(),
            weights: c
                .weights()
                .iter()
                .map(|(n, w)| ((*n).to_owned(), *w))
                .collect(),
            elapsed: now.saturating_sub(c.started()),
            stage_elapsed: now.saturating_sub(c.stage_started()),
            stage_time_left: (phase == Phase::Running).then(|| c.stage_ends().saturating_sub(now)),
            next_check_in: running.then(|| c.next_check().saturating_sub(now)),
            window: c.window_at(now),
            interval: plan.interval,
            time_scale: self.scale,
            readings: c.readings(now),
            failed_checks: c.failed_checks(),
            failed_checks_threshold: plan.failed_checks_threshold,
            consecutive_failures: c.consecutive_failures(),
            consecutive_failures_limit: plan.rollback.as_ref().and_then(|r| r.consecutive_failures),
            checks: c.counts(),
            history: c
                .history()
                .skip(history_len.saturating_sub(VIEW_HISTORY))
                .cloned()
                .collect(),
            providers: self.providers(),
            notifications: self.notifier.as_ref().map(Notifier::counts),
            log: self.log.iter().cloned().collect(),
            phase,
        }
    }

    fn report(&self) -> CanaryReport {
        let c = &self.controller;
        let plan = c.plan();
        let phase = c.phase();
        let (state, trigger, paused_reason) = match phase {
            Phase::Running => ("running", None, None),
            Phase::Paused { reason } => ("paused", None, Some(reason.clone())),
            Phase::RolledBack { trigger } => ("rolled_back", Some(trigger.clone()), None),
            Phase::Promoted { .. } => ("promoted", None, None),
        };
        let history_len = c.history().len();
        CanaryReport {
            baseline: plan.baseline.clone(),
            canary: plan.canary.clone(),
            state: state.into(),
            trigger,
            paused_reason,
            summary: describe(phase, plan, c.stage()),
            canary_weight: c.canary_weight(),
            stage: c.stage() + 1,
            stages: plan.stages.len(),
            stages_passed: c.stages().iter().filter(|s| s.passed_at.is_some()).count(),
            stage_history: c.stages().to_vec(),
            checks: c.counts(),
            failed_checks: c.failed_checks(),
            history: c
                .history()
                .skip(history_len.saturating_sub(REPORT_HISTORY))
                .cloned()
                .collect(),
            time_scale: self.scale,
            canary_time: self.canary_now().saturating_sub(c.started()),
            providers: self.providers(),
            notifications: self.notifier.as_ref().map(Notifier::counts),
        }
    }
}
