//! What the openai-sse and openai-realtime session tasks share: reporting (the event outbox,
//! the wire tap, state changes), the reconnect loop with its backoff, and the commands taken
//! while no connection is up. Each transport supplies only "connect, then serve until the
//! connection ends" (`Transport`); every timing rule stays in the pure state machines.
//!
//! relay/v1's task (`task.rs`) predates this and keeps its own copy of the same loop.

use std::future::Future;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::protocol::relay_v1::{ChatMessage, Role};
use crate::session::backoff::{Backoff, Retry};
use crate::session::event::micros;
use crate::session::tap::{Direction, Wire};
use crate::session::task::{RunClock, SessionCommand};
use crate::session::workload::{Outgoing, WorkloadState};
use crate::session::{ErrorKind, EventKind, SessionEvent, SessionSpec, SessionState, Workload};

/// How a connection (or an attempt at one) ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The user (or the run) closed the session.
    Closed,
    /// The user asked for a fresh connection now.
    Reconnect,
    /// Retrying cannot help.
    Fatal(String),
    /// Try again after backoff.
    Retry {
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
pub(crate) enum Offline {
    /// Nothing to do now (a chat turn was queued, a cancel had nothing to cancel).
    Nothing,
    /// Connect now.
    ReconnectNow,
    /// End the session.
    Close,
}

/// A session's reporting and shared state, owned by its task.
pub(crate) struct Core {
    pub spec: SessionSpec,
    pub clock: RunClock,
    events: mpsc::Sender<SessionEvent>,
    outbox: Vec<SessionEvent>,
    pub commands: mpsc::Receiver<SessionCommand>,
    pub backoff: Backoff,
    pub rng: SmallRng,
    pub workload: WorkloadState,
    state: Option<SessionState>,
    /// The consumer went away: stop quietly.
    pub orphaned: bool,
    /// Counted among the provider's requests waiting for a send slot.
    waiting_for_slot: bool,
}

impl Drop for Core {
    fn drop(&mut self) {
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
        events: mpsc::Sender<SessionEvent>,
        commands: mpsc::Receiver<SessionCommand>,
    ) -> Self {
        let rng = match spec.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        Self {
            backoff: Backoff::new(spec.timing.backoff, spec.timing.stable_after),
            workload: WorkloadState::new(&spec.workload),
            spec,
            clock,
            events,
            outbox: Vec::with_capacity(16),
            commands,
            rng,
            state: None,
            orphaned: false,
            waiting_for_slot: false,
        }
    }

    /// Takes a send slot from the provider's sliding window (`[providers.limits]`); when it
    /// is full, holds requests back until the next slot (reported once per wait) and returns
    /// false. Always true without limits.
    pub fn take_send_slot(&mut self, now: Duration) -> bool {
        let Some(limits) = self.spec.limits.clone() else {
            return true;
        };
        match limits.try_send() {
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
                    self.emit(
                        now,
                        EventKind::RateLimited {
                            wait_ms: micros(wait) / 1000,
                            cause: format!(
                                "local limit: {} sends per {:.0} s to {}",
                                view.requests_per_window,
                                view.window.as_secs_f64(),
                                view.provider
                            ),
                        },
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
        let wait = limits.connection();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                permit = &mut wait => return Some(permit),
                command = self.commands.recv() => {
                    if self.offline_command(command) == Offline::Close {
                        return None;
                    }
                }
            }
        }
    }

    /// Reports an event the session itself knows (not derived from frames): it is tapped.
    pub fn emit(&mut self, at: Duration, kind: EventKind) {
        if let Some(tap) = &self.spec.tap {
            tap.0.event(at, &kind);
        }
        self.outbox
            .push(SessionEvent::new(self.spec.info.id, at, kind));
    }

    /// Reports an event a decoder derived from frames: not tapped (a replay derives it again).
    pub fn derived(&mut self, at: Duration, kind: EventKind) {
        self.outbox
            .push(SessionEvent::new(self.spec.info.id, at, kind));
    }

    /// Shows a frame to the tap, if there is one.
    pub fn tap_wire(&self, at: Duration, direction: Direction, wire: Wire<'_>) {
        if let Some(tap) = &self.spec.tap {
            tap.0.wire(at, direction, wire);
        }
    }

    pub fn set_state(&mut self, at: Duration, state: SessionState) {
        if self.state.as_ref() != Some(&state) {
            self.state = Some(state.clone());
            self.emit(at, EventKind::State(state));
        }
    }

    /// Sends what the outbox holds. A consumer that went away ends the session.
    pub async fn flush(&mut self) {
        let mut outbox = std::mem::take(&mut self.outbox);
        for event in outbox.drain(..) {
            if self.events.send(event).await.is_err() {
                self.orphaned = true;
                break;
            }
        }
        outbox.clear();
        self.outbox = outbox;
    }

    /// How long the first probe of a fresh session waits (a random part of its interval).
    pub fn first_delay(&mut self) -> Duration {
        match &self.spec.workload {
            Workload::Probe { interval, .. } => interval.mul_f64(self.rng.random::<f64>()),
            _ => Duration::ZERO,
        }
    }

    /// Queues a chat turn (`Chat`) or a one-shot request (`Send`); says so when it cannot.
    /// Other commands are ignored here.
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
            _ => (true, ""),
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
    pub fn offline_command(&mut self, command: Option<SessionCommand>) -> Offline {
        let now = self.clock.now();
        match command {
            None | Some(SessionCommand::Close) => Offline::Close,
            Some(SessionCommand::ReconnectNow) => Offline::ReconnectNow,
            Some(command @ (SessionCommand::Chat { .. } | SessionCommand::Send { .. })) => {
                self.queue(now, command);
                Offline::Nothing
            }
            Some(SessionCommand::Cancel) => Offline::Nothing,
        }
    }

    /// Reports a connection that failed to open, and says how to go on.
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
        if matches!(kind, ErrorKind::RateLimited | ErrorKind::Overloaded)
            && let Some(wait) = retry_after
        {
            self.emit(
                now,
                EventKind::RateLimited {
                    wait_ms: micros(wait) / 1000,
                    cause: message.clone(),
                },
            );
        }
        if retryable {
            End::Retry {
                cause: message,
                retry_after,
            }
        } else {
            End::Fatal(message)
        }
    }

    /// A connection came up at `now` after `handshake`: reports it and starts the workload.
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
        let first_delay = self.first_delay();
        self.workload.on_connected(now, first_delay);
        self.set_state(now, SessionState::Open);
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
}

/// Runs a session on `transport` until it stops, is closed, or nobody listens any more.
pub(crate) async fn run<T: Transport>(mut core: Core, mut transport: T) {
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
            core.set_state(now, SessionState::Closed);
            core.flush().await;
            return;
        };
        let end = transport.connect_and_serve(&mut core, attempt).await;
        drop(slot);
        let now = core.clock.now();
        match end {
            End::Closed => {
                core.set_state(now, SessionState::Closed);
                core.flush().await;
                return;
            }
            End::Fatal(reason) => {
                tracing::warn!(session = %core.spec.info.name, %reason, "session stopped");
                core.set_state(now, SessionState::Stopped { reason });
                core.flush().await;
                return;
            }
            End::Reconnect => core.emit(
                now,
                EventKind::Marker {
                    label: "reconnect (asked)".into(),
                },
            ),
            End::Retry { cause, retry_after } => {
                let jitter = core.rng.random::<f64>();
                match core.backoff.on_failure(now, retry_after, jitter) {
                    Retry::GiveUp { attempts } => {
                        let reason = format!("gave up after {attempts} retries: {cause}");
                        tracing::warn!(session = %core.spec.info.name, %reason, "session stopped");
                        core.set_state(now, SessionState::Stopped { reason });
                        core.flush().await;
                        return;
                    }
                    Retry::After { attempt, delay } => {
                        let max_attempts = core.backoff.max_attempts();
                        core.emit(
                            now,
                            EventKind::BackingOff {
                                attempt,
                                max_attempts,
                                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                                cause,
                            },
                        );
                        core.set_state(
                            now,
                            SessionState::BackingOff {
                                attempt,
                                max_attempts,
                                until_us: micros(now + delay),
                            },
                        );
                        core.flush().await;
                        if core.wait_out_backoff(now + delay).await {
                            let now = core.clock.now();
                            core.set_state(now, SessionState::Closed);
                            core.flush().await;
                            return;
                        }
                    }
                }
            }
        }
        if core.orphaned {
            return;
        }
    }
}
