//! What every session task shares, whatever its protocol: reporting (the event outbox, the
//! wire tap, state changes), the provider's limits (send slots, connection slots), the
//! commands taken while no connection is up, and the reconnect loop (`run`) with its two
//! schedules: `Backoff` after a drop or a failed connect, `RateLimitBackoff` after a 429 at the
//! connect (1, 2, 4, 8, 16 s or `Retry-After`).
//!
//! A monitor keeps watching: when the retries (or the 429 retries) are used up the relay is
//! "down" and the session looks again every `Timing::watch`; when the relay refused the key
//! or the policy it checks again every `Timing::recheck`. Only a close the user (or the run)
//! asked for ends a session, unless the timing turns the watch off (then it stops).
//!
//! Each transport (relay/v1 in `task`, `sse`, `realtime`) supplies only "connect, then serve
//! until the connection ends" (`Transport`); every timing rule stays in the pure state
//! machines. Nothing here touches a socket.

use std::future::Future;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::numbers::seconds as fmt_secs;
use crate::protocol::relay_v1::{ChatMessage, Role};
use crate::session::backoff::{Backoff, Retry};
use crate::session::event::micros;
use crate::session::handle::{RunClock, SessionCommand};
use crate::session::ratelimit::{RateLimitBackoff, RateLimitRetry};
use crate::session::tap::{Direction, Staged, Wire};
use crate::session::workload::{AudioJob, Outgoing, WorkloadState};
use crate::session::{
    ErrorKind, EventKind, SessionEvent, SessionSpec, SessionState, Watch, Workload,
};

/// How long a send waits when another session holds the provider's window at that instant.
const LIMITS_BUSY_RETRY: Duration = Duration::from_millis(1);

/// The most room an outbox reserves up front (it still grows past it when needed): a full
/// batch from buffered frames (`transport::websocket::serve::DRAIN_BATCH`) and the few events around it.
const MAX_OUTBOX_RESERVE: usize = 1_100;

/// How a connection (or an attempt at one) ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The user (or the run) closed the session.
    Closed,
    /// The user asked for a fresh connection now.
    Reconnect,
    /// Retrying cannot help.
    Fatal(String),
    /// Try again after the reconnect backoff.
    Retry {
        cause: String,
        retry_after: Option<Duration>,
    },
    /// The relay answered 429 to the connect: try again on the rate-limit schedule, not the
    /// reconnect one (`Core::connect_failed` says which).
    RateLimited {
        cause: String,
        retry_after: Option<Duration>,
    },
}

/// One transport: opens a connection and serves it until it ends.
pub(crate) trait Transport: Send {
    fn connect_and_serve(
        &mut self,
        core: &mut Core,
        attempt: u32,
    ) -> impl Future<Output = End> + Send;
}

/// What a command asked of a session that has no connection to act on.
#[derive(Debug, PartialEq, Eq)]
enum Offline {
    /// Nothing to do now (a chat turn was queued, a cancel had nothing to cancel).
    Nothing,
    /// Connect now.
    ReconnectNow,
    /// End the session.
    Close,
}

/// What the reconnect loop does after a connection ended.
enum Next {
    /// Connect again at once.
    Connect,
    /// Wait, then connect again.
    Pause(Pause),
    /// End the session: closed.
    Close,
    /// End the session: stopped, for this reason.
    Stop(String),
}

/// A wait before the next connection attempt.
struct Pause {
    attempt: u32,
    max_attempts: u32,
    delay: Duration,
    cause: String,
    /// Set when the session is watching a relay that is down or refused it.
    watch: Option<Watch>,
}

/// A session's reporting and shared state, owned by its task.
pub(crate) struct Core {
    pub spec: SessionSpec,
    pub clock: RunClock,
    events: crate::session::EventSender,
    outbox: Vec<SessionEvent>,
    /// Events in the last batch flushed: the next outbox's size.
    last_batch: u16,
    pub commands: mpsc::Receiver<SessionCommand>,
    pub backoff: Backoff,
    /// 429s at the connect, in a row.
    connect_limited: RateLimitBackoff,
    pub rng: SmallRng,
    pub workload: WorkloadState,
    state: Option<SessionState>,
    /// The consumer went away: stop quietly.
    pub orphaned: bool,
    /// Counted among the provider's requests waiting for a send slot.
    waiting_for_slot: bool,
    /// The session's key, scrubbed from every event before it leaves the session (so every
    /// consumer, the recorder and a replay see the same text).
    scrub: Option<crate::session::event::Scrub>,
    /// Frames waiting to be shown to the tap (with the next batch of events, or before
    /// anything else the tap is shown).
    staged: Staged,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.show_staged();
        if self.waiting_for_slot
            && let Some(limits) = &self.spec.limits
        {
            limits.set_waiting(false);
        }
    }
}

impl Core {
    pub fn new(
        spec: SessionSpec,
        clock: RunClock,
        events: crate::session::EventSender,
        commands: mpsc::Receiver<SessionCommand>,
    ) -> Self {
        let rng = match spec.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        Self {
            backoff: Backoff::new(spec.timing.backoff, spec.timing.stable_after)
                .with_watch(spec.timing.watch),
            connect_limited: RateLimitBackoff::default(),
            workload: WorkloadState::new(&spec.workload),
            scrub: spec
                .api_key
                .as_ref()
                .and_then(crate::session::event::Scrub::new),
            spec,
            clock,
            events,
            // Grows with the first batch and keeps its size; an idle session holds none.
            outbox: Vec::new(),
            last_batch: 0,
            commands,
            rng,
            state: None,
            orphaned: false,
            waiting_for_slot: false,
            staged: Staged::default(),
        }
    }

    /// Takes a send slot from the provider's sliding window (`[providers.limits]`); when it
    /// is full, holds requests back until the next slot (reported once per wait) and returns
    /// false. Always true without limits.
    pub fn take_send_slot(&mut self, now: Duration) -> bool {
        let Some(limits) = self.spec.limits.clone() else {
            return true;
        };
        let Some(slot) = limits.try_send_now() else {
            // Another session is at the window this instant: look again in a moment.
            self.workload.defer_until(now + LIMITS_BUSY_RETRY);
            return false;
        };
        match slot {
            Ok(()) => {
                if self.waiting_for_slot {
                    self.waiting_for_slot = false;
                    limits.set_waiting(false);
                }
                true
            }
            Err(wait) => {
                self.workload.defer_until(now + wait);
                if !self.waiting_for_slot {
                    self.waiting_for_slot = true;
                    limits.set_waiting(true);
                    let view = limits.view();
                    self.rate_limited(
                        now,
                        wait,
                        format!(
                            "local limit: {} sends per {} s to {}",
                            view.requests_per_window,
                            fmt_secs(view.window),
                            view.provider
                        ),
                    );
                }
                false
            }
        }
    }

    /// A connection slot of the provider (`Some(None)` when it has no cap); `None` when the
    /// session was closed while waiting for one.
    async fn connection_slot(&mut self) -> Option<Option<tokio::sync::OwnedSemaphorePermit>> {
        let Some(limits) = self.spec.limits.clone() else {
            return Some(None);
        };
        if let Some(permit) = limits.try_connection() {
            return Some(Some(permit));
        }
        let now = self.clock.now();
        self.emit(
            now,
            EventKind::Marker {
                label: format!(
                    "waiting for a connection slot: {} of {} open to {}",
                    limits.max_connections(),
                    limits.max_connections(),
                    limits.provider()
                ),
            },
        );
        self.flush().await;
        self.wait_offline(limits.connection()).await
    }

    /// Waits for `work` (a connection attempt, a free connection slot), taking the commands
    /// that come meanwhile as a session with no connection does. `None` when asked to close
    /// (`work` is dropped); a reconnect asked for meanwhile changes nothing.
    pub async fn wait_offline<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => return Some(output),
                command = self.commands.recv() => {
                    if self.offline_command(command) == Offline::Close {
                        return None;
                    }
                }
            }
        }
    }

    /// Reports an event the session itself knows (not derived from frames): it is tapped.
    pub fn emit(&mut self, at: Duration, mut kind: EventKind) {
        if let Some(scrub) = &self.scrub {
            kind.scrub(scrub);
        }
        self.show_staged();
        if let Some(tap) = &self.spec.tap {
            tap.0.event(at, &kind);
        }
        self.report(SessionEvent::new(self.spec.info.id, at, kind));
    }

    /// The session's key, to scrub frames with before a decoder reads them (`None`: no key).
    pub fn scrub(&self) -> Option<&crate::session::event::Scrub> {
        self.scrub.as_ref()
    }

    /// Reports an event a decoder derived from frames: not tapped (a replay derives it again).
    /// Never to be changed afterwards: what the session decides (a wait, a cancel) it reports
    /// itself with `emit`.
    pub fn derived(&mut self, at: Duration, mut kind: EventKind) {
        if let Some(scrub) = &self.scrub {
            kind.scrub(scrub);
        }
        self.report(SessionEvent::new(self.spec.info.id, at, kind));
    }

    /// Reports a wait the session decided (`RateLimited`, tapped).
    pub fn rate_limited(&mut self, at: Duration, wait: Duration, cause: String) {
        self.emit(
            at,
            EventKind::RateLimited {
                wait_ms: micros(wait) / 1000,
                cause,
            },
        );
    }

    /// How many reported events wait for the next `flush`: a measure of a batch.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// The events reported since `mark` (a `pending()`) and not flushed yet.
    #[cfg(test)]
    fn pending_since(&self, mark: usize) -> &[SessionEvent] {
        self.outbox.get(mark..).unwrap_or_default()
    }

    /// Shows a frame to the tap, if there is one: a text frame or an SSE event is staged, to
    /// be shown with the next batch (`flush`), anything else now, after what was staged.
    pub fn tap_wire(&mut self, at: Duration, direction: Direction, wire: Wire<'_>) {
        if self.spec.tap.is_none() {
            return;
        }
        if self.staged.stage(at, direction, wire) {
            if self.staged.is_full() {
                self.show_staged();
            }
            return;
        }
        self.show_staged();
        if let Some(tap) = &self.spec.tap {
            tap.0.wire(at, direction, wire);
        }
    }

    /// Shows the tap the frames staged for it.
    fn show_staged(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        if let Some(tap) = &self.spec.tap {
            tap.0.staged(&self.staged);
        }
        self.staged.clear();
    }

    pub fn set_state(&mut self, at: Duration, state: SessionState) {
        if self.state.as_ref() != Some(&state) {
            self.state = Some(state.clone());
            self.emit(at, EventKind::State(state));
        }
    }

    /// Hands what the outbox holds to the consumer as one batch (one wake of the consumer,
    /// however many events). A consumer that went away ends the session.
    pub async fn flush(&mut self) {
        self.show_staged();
        if self.outbox.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.outbox);
        self.last_batch = u16::try_from(batch.len()).unwrap_or(u16::MAX);
        if self.events.send_batch(batch).await.is_err() {
            self.orphaned = true;
        }
    }

    /// Adds an event to the outbox. The outbox is taken with the first event after a flush
    /// (a batch the consumer has emptied, or a new one as large as the last batch was): an
    /// idle session holds none.
    fn report(&mut self, event: SessionEvent) {
        if matches!(event.kind, EventKind::Done(_)) {
            // A completed response is proof of health (backoff.rs: the reset rule).
            self.backoff.on_healthy();
        }
        if self.outbox.capacity() == 0 {
            self.outbox = self
                .events
                .new_batch(usize::from(self.last_batch).clamp(4, MAX_OUTBOX_RESERVE));
        }
        self.outbox.push(event);
    }

    /// How long the first probe of a fresh session waits (a random part of its interval).
    pub fn first_delay(&mut self) -> Duration {
        match &self.spec.workload {
            Workload::Probe { interval, .. } => interval.mul_f64(self.rng.random::<f64>()),
            _ => Duration::ZERO,
        }
    }

    /// Takes a command that changes what the session sends: queues a chat turn (`Chat`), a
    /// one-shot request (`Send`) or audio (`Transcribe`), or changes the model, the system
    /// prompt or the history; says so when it cannot. Other commands are ignored here.
    pub fn queue(&mut self, now: Duration, command: SessionCommand) {
        let (queued, refusal) = match command {
            SessionCommand::Chat { text } => (
                self.workload.push_turn(text),
                "not a chat session, or too many turns waiting",
            ),
            SessionCommand::Send { prompt, max_tokens } => (
                self.workload.push_oneshot(Outgoing {
                    messages: vec![ChatMessage::new(Role::User, prompt)],
                    max_tokens,
                }),
                "too many requests waiting to be sent",
            ),
            SessionCommand::SendMessages {
                messages,
                max_tokens,
            } => (
                self.workload.push_oneshot(Outgoing {
                    messages,
                    max_tokens,
                }),
                "too many requests waiting to be sent",
            ),
            SessionCommand::Transcribe { audio, model } => {
                if self.spec.info.protocol == crate::session::Protocol::RelayV1 {
                    (
                        self.workload.push_audio(AudioJob { audio, model }),
                        "too many transcriptions waiting to be sent",
                    )
                } else {
                    (
                        false,
                        "transcription needs a relay-v1 provider (relay/v1 `audio.transcription`); \
                         this session speaks another protocol",
                    )
                }
            }
            SessionCommand::SetModel { model } => {
                self.spec.info.model = model;
                (true, "")
            }
            SessionCommand::SetSystem { text } => {
                (self.workload.set_system(text), "not a chat session")
            }
            SessionCommand::ClearHistory => (self.workload.clear_history(), "not a chat session"),
            SessionCommand::Retry => (
                self.workload.retry(),
                "nothing to retry: the last turn has its reply, or one is under way",
            ),
            SessionCommand::Cancel | SessionCommand::ReconnectNow | SessionCommand::Close => {
                (true, "")
            }
        };
        if !queued {
            self.emit(
                now,
                EventKind::Error {
                    kind: ErrorKind::InvalidRequest,
                    message: refusal.into(),
                    retryable: false,
                    retry_after_ms: None,
                },
            );
        }
    }

    /// Takes a command while no connection is up.
    fn offline_command(&mut self, command: Option<SessionCommand>) -> Offline {
        let now = self.clock.now();
        match command {
            None | Some(SessionCommand::Close) => Offline::Close,
            Some(SessionCommand::ReconnectNow) => Offline::ReconnectNow,
            Some(SessionCommand::Cancel) => Offline::Nothing,
            // Chat turns, requests, transcriptions and history changes: the core queues them
            // (and says when it cannot).
            Some(command) => {
                self.queue(now, command);
                Offline::Nothing
            }
        }
    }

    /// Reports a connection that failed to open, and says how to go on: a retryable 429
    /// follows the rate-limit schedule (which reports its wait), anything else retryable the
    /// reconnect backoff.
    pub fn connect_failed(
        &mut self,
        now: Duration,
        kind: ErrorKind,
        message: String,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> End {
        tracing::warn!(session = %self.spec.info.name, %message, retryable, "connection failed");
        self.emit(
            now,
            EventKind::Error {
                kind,
                message: message.clone(),
                retryable,
                retry_after_ms: retry_after.map(|d| micros(d) / 1000),
            },
        );
        // An overloaded relay's `Retry-After` is a reconnect wait (the error says it), not a
        // rate-limit wait: only a 429 is.
        let rate_limited = retryable && kind == ErrorKind::RateLimited;
        if !rate_limited
            && kind == ErrorKind::RateLimited
            && let Some(wait) = retry_after
        {
            self.rate_limited(now, wait, message.clone());
        }
        if rate_limited {
            End::RateLimited {
                cause: message,
                retry_after,
            }
        } else if retryable {
            End::Retry {
                cause: message,
                retry_after,
            }
        } else {
            End::Fatal(message)
        }
    }

    /// A connection came up at `now` after `handshake`: reports it, resets the 429 count and
    /// starts the workload.
    pub fn connected(&mut self, now: Duration, attempt: u32, handshake: Duration) {
        tracing::info!(session = %self.spec.info.name, attempt, "connected");
        self.emit(
            now,
            EventKind::Connected {
                attempt,
                handshake_us: micros(handshake),
            },
        );
        self.backoff.on_connected(now);
        self.connect_limited.on_success();
        let first_delay = self.first_delay();
        self.workload.on_connected(now, first_delay);
        self.set_state(now, SessionState::Open);
    }

    /// Ends the session in `state` (closed or stopped), reporting what is left.
    async fn finish(&mut self, at: Duration, state: SessionState) {
        self.set_state(at, state);
        self.flush().await;
    }

    /// Stops the session: retrying cannot help, or the retries are used up.
    async fn stop(&mut self, at: Duration, reason: String) {
        tracing::warn!(session = %self.spec.info.name, %reason, "session stopped");
        self.finish(at, SessionState::Stopped { reason }).await;
    }

    /// Reports `pause` and waits it out, taking commands. Returns true when asked to close.
    async fn back_off(&mut self, now: Duration, pause: Pause) -> bool {
        let Pause {
            attempt,
            max_attempts,
            delay,
            cause,
            watch,
        } = pause;
        self.emit(
            now,
            EventKind::BackingOff {
                attempt,
                max_attempts,
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                cause,
            },
        );
        self.set_state(
            now,
            SessionState::BackingOff {
                attempt,
                max_attempts,
                until_us: micros(now + delay),
                watch,
            },
        );
        self.flush().await;
        self.wait_out_backoff(now + delay).await
    }

    /// Waits until `until`, taking commands. Returns true when asked to close.
    async fn wait_out_backoff(&mut self, until: Duration) -> bool {
        let deadline = self.clock.instant_at(until);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                command = self.commands.recv() => match self.offline_command(command) {
                    Offline::Close => return true,
                    Offline::ReconnectNow => return false,
                    Offline::Nothing => {}
                },
            }
        }
    }

    /// What comes after a connection ended with `end` at `now`.
    fn next_after(&mut self, now: Duration, end: End) -> Next {
        match end {
            End::Closed => Next::Close,
            End::Fatal(reason) => match self.spec.timing.recheck {
                Some(every) => {
                    let since = self.backoff.failing_since(now);
                    Next::Pause(Pause {
                        // Not a retry: `0 of 0` tells the panes it is a re-check.
                        attempt: 0,
                        max_attempts: 0,
                        delay: every,
                        cause: reason.clone(),
                        watch: Some(Watch {
                            since_us: micros(since),
                            refused: Some(reason),
                        }),
                    })
                }
                None => Next::Stop(reason),
            },
            End::Reconnect => {
                self.emit(
                    now,
                    EventKind::Marker {
                        label: "reconnect (asked)".into(),
                    },
                );
                Next::Connect
            }
            End::Retry { cause, retry_after } => {
                let jitter = self.rng.random::<f64>();
                match self.backoff.on_failure(now, retry_after, jitter) {
                    Retry::GiveUp { attempts } => {
                        Next::Stop(format!("gave up after {attempts} retries: {cause}"))
                    }
                    Retry::After { attempt, delay } => Next::Pause(Pause {
                        attempt,
                        max_attempts: self.backoff.max_attempts(),
                        delay,
                        cause,
                        watch: None,
                    }),
                    Retry::Watch {
                        attempt,
                        delay,
                        down_since,
                    } => Next::Pause(Pause {
                        attempt,
                        max_attempts: self.backoff.max_attempts(),
                        delay,
                        cause,
                        watch: Some(Watch {
                            since_us: micros(down_since),
                            refused: None,
                        }),
                    }),
                }
            }
            End::RateLimited { cause, retry_after } => {
                // The first 429 in a row starts the "down since" time.
                let since = self.backoff.failing_since(now);
                match self.connect_limited.on_rate_limited(retry_after) {
                    RateLimitRetry::GiveUp { retries } => {
                        let reason = format!(
                            "rate limited: the relay answered 429 again after {retries} retries ({cause})"
                        );
                        let Some(every) = self.spec.timing.watch else {
                            return Next::Stop(reason);
                        };
                        let delay = retry_after.map_or(every, |asked| asked.max(every));
                        self.rate_limited(now, delay, reason.clone());
                        Next::Pause(Pause {
                            attempt: retries + 1,
                            max_attempts: retries,
                            delay,
                            cause: reason,
                            watch: Some(Watch {
                                since_us: micros(since),
                                refused: None,
                            }),
                        })
                    }
                    RateLimitRetry::After { retry, delay } => {
                        let max_attempts = self.connect_limited.max_retries();
                        self.rate_limited(
                            now,
                            delay,
                            format!("{cause} (retry {retry} of {max_attempts})"),
                        );
                        Next::Pause(Pause {
                            attempt: retry,
                            max_attempts,
                            delay,
                            cause,
                            watch: None,
                        })
                    }
                }
            }
        }
    }
}

/// Runs a session on `transport` until it stops, is closed, or nobody listens any more. Both
/// come boxed: an async fn keeps its arguments twice in its state (as given and as moved in),
/// and this state is every session's task (docs/PERFORMANCE.md: memory per session).
pub(crate) async fn run<T: Transport>(mut core: Box<Core>, mut transport: Box<T>) {
    loop {
        let now = core.clock.now();
        let attempt = core.backoff.attempt() + 1;
        core.set_state(now, SessionState::Connecting { attempt });
        core.flush().await;
        if core.orphaned {
            return;
        }
        let Some(slot) = core.connection_slot().await else {
            let now = core.clock.now();
            core.finish(now, SessionState::Closed).await;
            return;
        };
        let end = transport.connect_and_serve(&mut core, attempt).await;
        drop(slot);
        let now = core.clock.now();
        match core.next_after(now, end) {
            Next::Connect => {}
            Next::Pause(pause) => {
                if core.back_off(now, pause).await {
                    let now = core.clock.now();
                    core.finish(now, SessionState::Closed).await;
                    return;
                }
            }
            Next::Close => {
                core.finish(now, SessionState::Closed).await;
                return;
            }
            Next::Stop(reason) => {
                core.stop(now, reason).await;
                return;
            }
        }
        if core.orphaned {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Completed, Protocol, SessionInfo, Timing};

    fn core() -> Core {
        core_with(Timing::default())
    }

    fn core_with(timing: Timing) -> Core {
        let (events, _) = crate::session::stream::channel(16);
        let (_, commands) = mpsc::channel(1);
        let spec = SessionSpec {
            info: SessionInfo {
                id: 0,
                name: "test".into(),
                provider: "test".into(),
                model: "m".into(),
                protocol: Protocol::RelayV1,
                url: "ws://127.0.0.1:9/v1/stream".into(),
                workload: "canary".into(),
            },
            api_key: None,
            auth: Default::default(),
            workload: Workload::OnDemand,
            timing,
            seed: Some(7),
            tap: None,
            limits: None,
            resolver: None,
        };
        Core::new(spec, RunClock::new(), events, commands)
    }

    fn pause(next: Next) -> Pause {
        match next {
            Next::Pause(pause) => pause,
            Next::Connect => panic!("connect at once"),
            Next::Close => panic!("closed"),
            Next::Stop(reason) => panic!("stopped: {reason}"),
        }
    }

    fn rate_limited(events: &[SessionEvent]) -> Vec<(u64, String)> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::RateLimited { wait_ms, cause } => Some((*wait_ms, cause.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_429_at_the_connect_follows_the_rate_limit_schedule_then_stops_without_a_watch() {
        let mut core = core_with(Timing {
            watch: None,
            ..Timing::default()
        });
        let now = Duration::from_secs(1);
        for retry in 1..=5u32 {
            let end = core.connect_failed(now, ErrorKind::RateLimited, "429".into(), true, None);
            assert!(matches!(end, End::RateLimited { .. }), "{end:?}");
            let mark = core.pending();
            let pause = pause(core.next_after(now, end));
            assert_eq!((pause.attempt, pause.max_attempts), (retry, 5));
            assert_eq!(pause.delay, Duration::from_secs(1 << (retry - 1)));
            let waits = rate_limited(core.pending_since(mark));
            assert_eq!(
                waits,
                vec![(1000 << (retry - 1), format!("429 (retry {retry} of 5)"))]
            );
        }
        let end = core.connect_failed(now, ErrorKind::RateLimited, "429".into(), true, None);
        match core.next_after(now, end) {
            Next::Stop(reason) => assert!(reason.contains("after 5 retries (429)"), "{reason}"),
            _ => panic!("a sixth 429 stops the session"),
        }
    }

    #[test]
    fn retry_after_wins_and_a_connection_resets_the_429_count() {
        let mut core = core();
        let now = Duration::from_secs(1);
        let wait = Some(Duration::from_millis(2500));
        let end = core.connect_failed(now, ErrorKind::RateLimited, "429".into(), true, wait);
        // The schedule reports the wait, not the failed connect.
        assert_eq!(rate_limited(core.pending_since(0)), vec![]);
        assert_eq!(
            pause(core.next_after(now, end)).delay,
            Duration::from_millis(2500)
        );
        core.connected(now, 1, Duration::from_millis(10));
        let end = core.connect_failed(now, ErrorKind::RateLimited, "429".into(), true, None);
        assert_eq!(pause(core.next_after(now, end)).attempt, 1);
    }

    #[test]
    fn other_connect_failures_follow_the_reconnect_backoff() {
        let mut core = core();
        let now = Duration::from_secs(1);
        let wait = Some(Duration::from_secs(3));
        let end = core.connect_failed(now, ErrorKind::Overloaded, "503".into(), true, wait);
        assert!(matches!(end, End::Retry { .. }), "{end:?}");
        // Overload, not a rate limit: the wait is the error's, no rate-limit wait is reported.
        assert_eq!(rate_limited(core.pending_since(0)), vec![]);
        assert!(core.pending_since(0).iter().any(|e| matches!(
            e.kind,
            EventKind::Error {
                kind: ErrorKind::Overloaded,
                retry_after_ms: Some(3000),
                ..
            }
        )));
        let pause = pause(core.next_after(now, end));
        assert_eq!(pause.max_attempts, Timing::default().backoff.max_attempts);
        let end = core.connect_failed(now, ErrorKind::RateLimited, "quota".into(), false, None);
        assert!(matches!(end, End::Fatal(_)), "{end:?}");
    }

    #[test]
    fn a_sixth_429_watches_the_relay_instead_of_stopping() {
        let mut core = core();
        let start = Duration::from_secs(1);
        for _ in 1..=5u32 {
            let end = core.connect_failed(start, ErrorKind::RateLimited, "429".into(), true, None);
            pause(core.next_after(start, end));
        }
        let now = Duration::from_secs(40);
        let end = core.connect_failed(now, ErrorKind::RateLimited, "429".into(), true, None);
        let pause = pause(core.next_after(now, end));
        assert_eq!(pause.delay, Duration::from_secs(60));
        assert_eq!(
            pause.watch,
            Some(Watch {
                since_us: 1_000_000,
                refused: None
            })
        );
        // A connection and a completed response: healthy again.
        core.connected(now, 7, Duration::from_millis(10));
        core.backoff.on_healthy();
        let end = core.connect_failed(now, ErrorKind::RateLimited, "429".into(), true, None);
        let again = self::pause(core.next_after(now, end));
        assert_eq!((again.attempt, again.watch), (1, None));
    }

    #[test]
    fn a_refused_key_is_checked_again_at_the_recheck_interval() {
        let mut core = core();
        let now = Duration::from_secs(3);
        let end = core.connect_failed(
            now,
            ErrorKind::Auth,
            "upgrade answered 401".into(),
            false,
            None,
        );
        let pause = pause(core.next_after(now, end));
        assert_eq!(pause.delay, Duration::from_secs(300));
        assert_eq!((pause.attempt, pause.max_attempts), (0, 0));
        assert_eq!(
            pause.watch,
            Some(Watch {
                since_us: 3_000_000,
                refused: Some("upgrade answered 401".into())
            })
        );
        let mut stopping = core_with(Timing {
            recheck: None,
            ..Timing::default()
        });
        let end = stopping.connect_failed(now, ErrorKind::Auth, "401".into(), false, None);
        assert!(matches!(stopping.next_after(now, end), Next::Stop(reason) if reason == "401"));
    }

    #[test]
    fn a_completed_response_resets_the_reconnect_count() {
        let mut core = core();
        let now = Duration::from_secs(1);
        for _ in 0..3 {
            let end = core.connect_failed(now, ErrorKind::Network, "refused".into(), true, None);
            pause(core.next_after(now, end));
        }
        assert_eq!(core.backoff.attempt(), 3);
        core.connected(now, 4, Duration::from_millis(1));
        core.derived(
            now,
            EventKind::Done(Box::new(Completed {
                request: 1,
                model: "m".into(),
                ttft_us: None,
                answer_us: None,
                total_us: 1,
                tokens: Default::default(),
                reported_cost_usd: None,
                finish_reason: None,
                chunks: 0,
                bytes: 0,
                cut: None,
                text_tokens: None,
            })),
        );
        assert_eq!(core.backoff.attempt(), 0);
    }

    #[test]
    fn seconds_print_without_a_needless_fraction() {
        assert_eq!(fmt_secs(Duration::from_secs(60)), "60");
        assert_eq!(fmt_secs(Duration::from_millis(500)), "0.50");
    }
}
