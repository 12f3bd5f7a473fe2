//! The session task: one tokio task per session, owning its relay/v1 socket.
//!
//! It connects, runs the workload, answers to heartbeats and dead peers, reconnects with
//! backoff, and reports everything as `SessionEvent`s; it takes `SessionCommand`s. All the
//! timing rules live in the pure state machines (`backoff`, `heartbeat`, `workload`,
//! `response`); this file only does the I/O and the waiting. It holds no lock and shares no
//! mutable state with anyone.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::protocol::relay_v1::{ChatMessage, ClientFrame, Role};
use crate::session::backoff::{Backoff, Retry};
use crate::session::connect::{self, ConnectRequest, RelaySocket};
use crate::session::decode::{Decoder, Inbound};
use crate::session::event::micros;
use crate::session::heartbeat::{Heartbeat, HeartbeatAction};
use crate::session::ratelimit::{RateLimitBackoff, RateLimitRetry};
use crate::session::response::estimate_tokens_from_chars;
use crate::session::tap::{Direction, Wire};
use crate::session::workload::{Outgoing, WorkloadState};
use crate::session::{
    ErrorKind, EventKind, SessionEvent, SessionId, SessionSpec, SessionState, Workload,
};

/// What a session can be asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionCommand {
    /// Send a chat turn (chat sessions); queued while disconnected.
    Chat { text: String },
    /// Send one request now (any workload): queued like chat turns, sent before the session's
    /// own requests, and never added to a chat history. The canary routes its probes so.
    Send {
        prompt: String,
        max_tokens: Option<u32>,
    },
    /// Stop the response under way (relay/v1 `cancel`).
    Cancel,
    /// Close the connection and connect again at once, without backoff.
    ReconnectNow,
    /// Close the connection (code 1000) and end the session.
    Close,
}

/// The run's monotonic clock: every event time is an offset from its start.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Time since the run started, in whole microseconds (the unit of every event time), so
    /// that a replay computing from recorded times gets exactly what the live run got.
    pub fn now(&self) -> Duration {
        Duration::from_micros(micros(self.start.elapsed()))
    }

    /// The instant at offset `at` (for timers).
    pub fn instant_at(&self, at: Duration) -> Instant {
        self.start.checked_add(at).unwrap_or_else(far_future)
    }
}

impl Default for RunClock {
    fn default() -> Self {
        Self::new()
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// A running session: its command channel and its task.
#[derive(Debug)]
pub struct SessionHandle {
    pub id: SessionId,
    pub commands: mpsc::Sender<SessionCommand>,
    pub task: JoinHandle<()>,
}

/// Starts a session task. It reports on `events` until it stops, is closed, or `events`
/// has no receiver any more.
pub fn spawn(
    spec: SessionSpec,
    clock: RunClock,
    events: mpsc::Sender<SessionEvent>,
) -> SessionHandle {
    // Each protocol has its own task; they all report the same events.
    match spec.info.protocol {
        crate::session::Protocol::RelayV1 => {}
        crate::session::Protocol::OpenaiSse => {
            return crate::session::sse::spawn(spec, clock, events);
        }
        crate::session::Protocol::OpenaiRealtime => {
            return crate::session::realtime::spawn(spec, clock, events);
        }
    }
    let (tx, rx) = mpsc::channel(64);
    let id = spec.info.id;
    let task = tokio::spawn(Session::new(spec, clock, events, rx).run());
    SessionHandle {
        id,
        commands: tx,
        task,
    }
}

/// How a connection (or an attempt at one) ended.
enum End {
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
        /// The relay answered 429: the rate-limit schedule applies, not the reconnect one.
        rate_limited: bool,
    },
}

struct Session {
    spec: SessionSpec,
    clock: RunClock,
    events: mpsc::Sender<SessionEvent>,
    outbox: Vec<SessionEvent>,
    commands: mpsc::Receiver<SessionCommand>,
    backoff: Backoff,
    rng: SmallRng,
    workload: WorkloadState,
    decoder: Decoder,
    state: Option<SessionState>,
    /// The consumer went away: stop quietly.
    orphaned: bool,
    /// 429s at the upgrade, in a row.
    connect_limited: RateLimitBackoff,
    /// `rate_limited` answers to requests, in a row.
    request_limited: RateLimitBackoff,
    /// Counted among the provider's requests waiting for a send slot.
    waiting_for_slot: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.waiting_for_slot
            && let Some(limits) = &self.spec.limits
        {
            limits.set_waiting(false);
        }
    }
}

/// Whether a command queued a request; emits nothing (the caller reports refusals).
fn queue_request(workload: &mut WorkloadState, command: SessionCommand) -> bool {
    match command {
        SessionCommand::Chat { text } => workload.push_turn(text),
        SessionCommand::Send { prompt, max_tokens } => workload.push_oneshot(Outgoing {
            messages: vec![ChatMessage::new(Role::User, prompt)],
            max_tokens,
        }),
        _ => true,
    }
}

impl Session {
    fn new(
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
            decoder: Decoder::new(),
            state: None,
            orphaned: false,
            connect_limited: RateLimitBackoff::default(),
            request_limited: RateLimitBackoff::default(),
            waiting_for_slot: false,
        }
    }

    /// Reports an event the session itself knows (not derived from frames): it is tapped.
    fn emit(&mut self, at: Duration, kind: EventKind) {
        if let Some(tap) = &self.spec.tap {
            tap.0.event(at, &kind);
        }
        self.outbox
            .push(SessionEvent::new(self.spec.info.id, at, kind));
    }

    /// Shows a frame to the tap, if there is one.
    fn tap_wire(&self, at: Duration, direction: Direction, wire: Wire<'_>) {
        if let Some(tap) = &self.spec.tap {
            tap.0.wire(at, direction, wire);
        }
    }

    /// Sends a text frame, showing it to the tap as sent at `at` (the time the session acts
    /// on, so that a recording's lines and events stay in time order).
    async fn send_text(
        &mut self,
        socket: &mut RelaySocket,
        at: Duration,
        text: String,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.tap_wire(at, Direction::ToRelay, Wire::Text(&text));
        socket.send(Message::text(text)).await
    }

    fn set_state(&mut self, at: Duration, state: SessionState) {
        if self.state.as_ref() != Some(&state) {
            self.state = Some(state.clone());
            self.emit(at, EventKind::State(state));
        }
    }

    /// Sends what the outbox holds. A consumer that went away ends the session.
    async fn flush(&mut self) {
        let mut outbox = std::mem::take(&mut self.outbox);
        for event in outbox.drain(..) {
            if self.events.send(event).await.is_err() {
                self.orphaned = true;
                break;
            }
        }
        outbox.clear();
        // Keep the allocation for the next batch.
        self.outbox = outbox;
    }

    async fn run(mut self) {
        loop {
            let now = self.clock.now();
            let attempt = self.backoff.attempt() + 1;
            self.set_state(now, SessionState::Connecting { attempt });
            self.flush().await;
            if self.orphaned {
                return;
            }
            let Some(slot) = self.connection_slot().await else {
                let now = self.clock.now();
                self.set_state(now, SessionState::Closed);
                self.flush().await;
                return;
            };
            let end = self.connect_and_serve(attempt).await;
            drop(slot);
            let now = self.clock.now();
            match end {
                End::Closed => {
                    self.set_state(now, SessionState::Closed);
                    self.flush().await;
                    return;
                }
                End::Fatal(reason) => {
                    self.set_state(now, SessionState::Stopped { reason });
                    self.flush().await;
                    return;
                }
                End::Reconnect => {
                    self.emit(
                        now,
                        EventKind::Marker {
                            label: "reconnect (asked)".into(),
                        },
                    );
                }
                End::Retry {
                    cause,
                    retry_after,
                    rate_limited: true,
                } => match self.connect_limited.on_rate_limited(retry_after) {
                    RateLimitRetry::GiveUp { retries } => {
                        let reason = format!(
                            "rate limited: the relay answered 429 again after {retries} retries ({cause})"
                        );
                        tracing::warn!(session = %self.spec.info.name, %reason, "session stopped");
                        self.set_state(now, SessionState::Stopped { reason });
                        self.flush().await;
                        return;
                    }
                    RateLimitRetry::After { retry, delay } => {
                        let max_attempts = self.connect_limited.max_retries();
                        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                        self.emit(
                            now,
                            EventKind::RateLimited {
                                wait_ms: delay_ms,
                                cause: format!("{cause} (retry {retry} of {max_attempts})"),
                            },
                        );
                        self.emit(
                            now,
                            EventKind::BackingOff {
                                attempt: retry,
                                max_attempts,
                                delay_ms,
                                cause,
                            },
                        );
                        self.set_state(
                            now,
                            SessionState::BackingOff {
                                attempt: retry,
                                max_attempts,
                                until_us: micros(now + delay),
                            },
                        );
                        self.flush().await;
                        if self.wait_out_backoff(now + delay).await {
                            let now = self.clock.now();
                            self.set_state(now, SessionState::Closed);
                            self.flush().await;
                            return;
                        }
                    }
                },
                End::Retry {
                    cause, retry_after, ..
                } => {
                    let jitter = self.rng.random::<f64>();
                    match self.backoff.on_failure(now, retry_after, jitter) {
                        Retry::GiveUp { attempts } => {
                            let reason = format!("gave up after {attempts} retries: {cause}");
                            tracing::warn!(session = %self.spec.info.name, %reason, "session stopped");
                            self.set_state(now, SessionState::Stopped { reason });
                            self.flush().await;
                            return;
                        }
                        Retry::After { attempt, delay } => {
                            let max_attempts = self.backoff.max_attempts();
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
                                },
                            );
                            self.flush().await;
                            if self.wait_out_backoff(now + delay).await {
                                let now = self.clock.now();
                                self.set_state(now, SessionState::Closed);
                                self.flush().await;
                                return;
                            }
                        }
                    }
                }
            }
            if self.orphaned {
                return;
            }
        }
    }

    /// Waits until `until`, taking commands. Returns true when asked to close.
    async fn wait_out_backoff(&mut self, until: Duration) -> bool {
        let deadline = self.clock.instant_at(until);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                command = self.commands.recv() => match command {
                    None | Some(SessionCommand::Close) => return true,
                    Some(SessionCommand::ReconnectNow) => return false,
                    Some(command @ (SessionCommand::Chat { .. } | SessionCommand::Send { .. })) => {
                        queue_request(&mut self.workload, command);
                    }
                    Some(SessionCommand::Cancel) => {}
                },
            }
        }
    }

    async fn connect_and_serve(&mut self, attempt: u32) -> End {
        let started = self.clock.now();
        let request = ConnectRequest {
            url: &self.spec.info.url,
            api_key: self.spec.api_key.as_ref(),
            model: &self.spec.info.model,
            timeout: self.spec.timing.handshake_timeout,
        };
        let connected = tokio::select! {
            result = connect::connect(&request) => result,
            command = self.commands.recv() => {
                // Only a close interrupts a connection attempt; anything else waits for it.
                match command {
                    None | Some(SessionCommand::Close) => return End::Closed,
                    Some(command) => { queue_request(&mut self.workload, command); }
                }
                connect::connect(&request).await
            }
        };
        let now = self.clock.now();
        match connected {
            Ok((socket, _response)) => {
                tracing::info!(session = %self.spec.info.name, attempt, "connected");
                self.tap_wire(now, Direction::FromRelay, Wire::Upgrade { status: 101 });
                self.emit(
                    now,
                    EventKind::Connected {
                        attempt,
                        handshake_us: micros(now.saturating_sub(started)),
                    },
                );
                self.backoff.on_connected(now);
                self.connect_limited.on_success();
                let first_delay = match &self.spec.workload {
                    Workload::Probe { interval, .. } => interval.mul_f64(self.rng.random::<f64>()),
                    Workload::Chat { .. } | Workload::OnDemand => Duration::ZERO,
                };
                self.workload.on_connected(now, first_delay);
                self.set_state(now, SessionState::Open);
                self.flush().await;
                self.serve(socket).await
            }
            Err(error) => {
                let kind = error.kind();
                let retryable = error.retryable();
                let retry_after = error.retry_after();
                let message = error.to_string();
                tracing::warn!(session = %self.spec.info.name, attempt, %message, retryable, "connection failed");
                self.emit(
                    now,
                    EventKind::Error {
                        kind,
                        message: message.clone(),
                        retryable,
                        retry_after_ms: retry_after.map(|d| micros(d) / 1000),
                    },
                );
                // A 429's wait is reported where the rate-limit schedule picks it (`run`).
                if kind == ErrorKind::Overloaded
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
                        rate_limited: kind == ErrorKind::RateLimited,
                    }
                } else {
                    End::Fatal(message)
                }
            }
        }
    }

    /// Runs one open connection until it ends.
    async fn serve(&mut self, mut socket: RelaySocket) -> End {
        let timing = self.spec.timing;
        let mut heartbeat = Heartbeat::new(self.clock.now(), timing.heartbeat, timing.dead_after);
        loop {
            let now = self.clock.now();
            if let Some(end) = self
                .send_due_request(&mut socket, &mut heartbeat, now)
                .await
            {
                return end;
            }
            if let Some(end) = self.tend_heartbeat(&mut socket, &mut heartbeat, now).await {
                return end;
            }
            if let Some(end) = self
                .check_response_timeout(&mut socket, &mut heartbeat, now)
                .await
            {
                return end;
            }
            self.flush().await;
            if self.orphaned {
                return End::Closed;
            }

            let mut wake = heartbeat.next_deadline();
            if self.decoder.in_flight().is_none()
                && let Some(due) = self.workload.next_wake()
            {
                wake = wake.min(due);
            }
            if let Some(sent) = self.decoder.sent_at() {
                wake = wake.min(sent + timing.response_timeout);
            }
            let deadline = self.clock.instant_at(wake);

            tokio::select! {
                message = socket.next() => {
                    let now = self.clock.now();
                    let end = match message {
                        Some(Ok(message)) => self.on_message(message, &mut heartbeat, now),
                        Some(Err(error)) => Some(self.on_socket_error(&error, now)),
                        None => Some(self.on_dropped(now, 1006, "connection ended without a close frame")),
                    };
                    if let Some(end) = end {
                        return end;
                    }
                    // Drain what is already buffered before going round the loop again, so a
                    // fast stream is handled in batches.
                    while let Some(Some(message)) = futures_util::FutureExt::now_or_never(socket.next()) {
                        let now = self.clock.now();
                        let end = match message {
                            Ok(message) => self.on_message(message, &mut heartbeat, now),
                            Err(error) => Some(self.on_socket_error(&error, now)),
                        };
                        if let Some(end) = end {
                            return end;
                        }
                        if self.outbox.len() >= 256 {
                            break;
                        }
                    }
                }
                command = self.commands.recv() => {
                    if let Some(end) = self.on_command(command, &mut socket).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn send_due_request(
        &mut self,
        socket: &mut RelaySocket,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        if self.decoder.in_flight().is_some() || !self.workload.is_due(now) {
            return None;
        }
        if !self.take_send_slot(now) {
            return None;
        }
        let outgoing = self.workload.take_due(now)?;
        let prompt_chars: u64 = outgoing
            .messages
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        let model = self.spec.info.model.clone();
        let frame = ClientFrame::ChatCompletion {
            model: model.clone(),
            messages: outgoing.messages,
            stream: true,
            temperature: None,
            max_tokens: outgoing.max_tokens,
            id: None,
        };
        if let Err(error) = self.send_text(socket, now, frame.to_text()).await {
            self.workload.on_failed();
            return Some(self.on_socket_error(&error, self.clock.now()));
        }
        let (request, sent) =
            self.decoder
                .request_sent(now, &model, estimate_tokens_from_chars(prompt_chars));
        self.emit(now, sent);
        self.set_state(now, SessionState::Streaming { request });
        heartbeat.set_awaiting_response(now, true);
        None
    }

    async fn tend_heartbeat(
        &mut self,
        socket: &mut RelaySocket,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        while let Some(action) = heartbeat.poll(now) {
            match action {
                HeartbeatAction::SendPing => {
                    let sent = self
                        .send_text(socket, now, ClientFrame::Ping.to_text())
                        .await;
                    let sent = match sent {
                        Ok(()) if self.spec.timing.ws_ping => {
                            socket.send(Message::Ping(Default::default())).await
                        }
                        other => other,
                    };
                    if let Err(error) = sent {
                        return Some(self.on_socket_error(&error, now));
                    }
                    heartbeat.on_ping_sent(now);
                }
                HeartbeatAction::Missed { waited } => {
                    self.emit(
                        now,
                        EventKind::HeartbeatMissed {
                            waited_us: micros(waited),
                        },
                    );
                }
                HeartbeatAction::Dead { silent_for } => {
                    let reason = format!(
                        "dead peer: nothing received for {:.1} s",
                        silent_for.as_secs_f64()
                    );
                    self.emit(
                        now,
                        EventKind::Error {
                            kind: ErrorKind::Timeout,
                            message: reason.clone(),
                            retryable: true,
                            retry_after_ms: None,
                        },
                    );
                    // Close without waiting: the peer will not answer a close handshake.
                    return Some(self.on_dropped(now, 1006, &reason));
                }
            }
        }
        None
    }

    async fn check_response_timeout(
        &mut self,
        socket: &mut RelaySocket,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        let sent = self.decoder.sent_at()?;
        let limit = self.spec.timing.response_timeout;
        if now.saturating_sub(sent) < limit {
            return None;
        }
        let reason = format!("no `done` within {:.0} s", limit.as_secs_f64());
        if let Some(failed) = self.decoder.fail(ErrorKind::Timeout, reason.clone()) {
            self.emit(now, failed);
        }
        self.workload.on_failed();
        heartbeat.set_awaiting_response(now, false);
        self.emit(
            now,
            EventKind::Error {
                kind: ErrorKind::Timeout,
                message: reason,
                retryable: true,
                retry_after_ms: None,
            },
        );
        self.set_state(now, SessionState::Open);
        let cancel = ClientFrame::Cancel { id: None }.to_text();
        if let Err(error) = self.send_text(socket, now, cancel).await {
            return Some(self.on_socket_error(&error, now));
        }
        None
    }

    /// Handles one message from the relay. Returns how the connection ended, if it did.
    fn on_message(
        &mut self,
        message: Message,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        heartbeat.on_received(now);
        match message {
            Message::Text(text) => self.on_text(text.as_str(), heartbeat, now),
            Message::Binary(bytes) => {
                self.tap_wire(now, Direction::FromRelay, Wire::Binary(&bytes));
                self.emit(
                    now,
                    EventKind::UnknownFrame {
                        frame_type: format!("binary ({} bytes)", bytes.len()),
                    },
                );
            }
            // tungstenite answers Pings by itself; both kinds prove the peer is alive.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(CloseFrame { code, reason }) => (u16::from(code), reason.to_string()),
                    None => (1005, String::new()),
                };
                return Some(self.on_dropped(now, code, &reason));
            }
        }
        None
    }

    fn on_text(&mut self, text: &str, heartbeat: &mut Heartbeat, now: Duration) {
        self.tap_wire(now, Direction::FromRelay, Wire::Text(text));
        let first_new = self.outbox.len();
        let Session {
            decoder,
            outbox,
            spec,
            ..
        } = self;
        let session = spec.info.id;
        let inbound = decoder.on_text(now, text, &mut |kind| {
            outbox.push(SessionEvent::new(session, now, kind));
        });
        match inbound {
            Inbound::Nothing => {}
            Inbound::Text => {
                for event in &self.outbox[first_new..] {
                    if let EventKind::Chunk { text, .. } = &event.kind {
                        self.workload.on_text(text);
                    }
                }
            }
            Inbound::ResponseDone => {
                self.request_limited.on_success();
                self.workload.on_done();
                heartbeat.set_awaiting_response(now, false);
                self.set_state(now, SessionState::Open);
            }
            Inbound::ResponseFailed { wait } => {
                self.workload.on_failed();
                heartbeat.set_awaiting_response(now, false);
                self.set_state(now, SessionState::Open);
                if let Some(wait) = wait {
                    self.hold_back(now, wait, first_new);
                }
            }
            Inbound::Error { wait } => {
                if let Some(wait) = wait {
                    self.hold_back(now, wait, first_new);
                }
            }
            Inbound::Pong => {
                if let Some(rtt) = heartbeat.on_pong(now) {
                    self.emit(
                        now,
                        EventKind::Pong {
                            rtt_us: micros(rtt),
                        },
                    );
                }
            }
        }
    }

    /// The relay asked us to slow down (`rate_limited` or `overloaded`, with `wait` as the
    /// decoder read it). A rate limit follows the 1, 2, 4, 8, 16 s schedule unless the relay
    /// gave `retry_after_ms`, and gives up after 5 retries: the one-shot requests waiting are
    /// dropped. The `RateLimited` event the decoder just reported is corrected to the real wait.
    fn hold_back(&mut self, now: Duration, wait: Duration, first_new: usize) {
        let rate_limited = self.outbox[first_new..].iter().find_map(|e| match &e.kind {
            EventKind::Error {
                kind: ErrorKind::RateLimited,
                retry_after_ms,
                ..
            } => Some(*retry_after_ms),
            _ => None,
        });
        let Some(retry_after_ms) = rate_limited else {
            self.workload.defer_until(now + wait);
            return;
        };
        let max = self.request_limited.max_retries();
        let (delay, note) = match self
            .request_limited
            .on_rate_limited(retry_after_ms.map(Duration::from_millis))
        {
            RateLimitRetry::After { retry, delay } => (delay, format!("retry {retry} of {max}")),
            RateLimitRetry::GiveUp { retries } => {
                let dropped = self.workload.drop_oneshots();
                self.emit(
                    now,
                    EventKind::Error {
                        kind: ErrorKind::RateLimited,
                        message: format!(
                            "still rate limited after {retries} retries: gave up ({dropped} waiting requests dropped)"
                        ),
                        retryable: false,
                        retry_after_ms,
                    },
                );
                (wait, "gave up".to_owned())
            }
        };
        self.workload.defer_until(now + delay);
        for event in &mut self.outbox[first_new..] {
            if let EventKind::RateLimited { wait_ms, cause } = &mut event.kind {
                *wait_ms = micros(delay) / 1000;
                cause.push_str(&format!(" ({note})"));
            }
        }
    }

    /// Takes a send slot from the provider's sliding window; when it is full, holds requests
    /// back until the next slot (reported once per wait) and returns false.
    fn take_send_slot(&mut self, now: Duration) -> bool {
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
                                "local limit: {} sends per {} s to {}",
                                view.requests_per_window,
                                fmt_secs(view.window),
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
                command = self.commands.recv() => match command {
                    None | Some(SessionCommand::Close) => return None,
                    Some(command) => { queue_request(&mut self.workload, command); }
                },
            }
        }
    }

    fn on_socket_error(
        &mut self,
        error: &tokio_tungstenite::tungstenite::Error,
        now: Duration,
    ) -> End {
        use tokio_tungstenite::tungstenite::Error;
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        let (code, reason) = match error {
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
            | Error::ConnectionClosed => {
                return self.on_dropped(now, 1006, "connection ended without a close frame");
            }
            Error::Capacity(e) => (
                1009,
                format!("refused a message over the size limit ({e}); reconnecting"),
            ),
            Error::Utf8(e) => (1007, format!("text frame is not valid UTF-8 ({e})")),
            Error::Protocol(e) => (1002, format!("protocol error: {e}")),
            Error::Io(e) => (1006, format!("connection lost: {e}")),
            other => (1006, other.to_string()),
        };
        let kind = if matches!(
            error,
            Error::Capacity(_) | Error::Utf8(_) | Error::Protocol(_)
        ) {
            ErrorKind::Protocol
        } else {
            ErrorKind::Network
        };
        self.emit(
            now,
            EventKind::Error {
                kind,
                message: reason.clone(),
                retryable: true,
                retry_after_ms: None,
            },
        );
        self.on_dropped(now, code, &reason)
    }

    /// The connection ended without us asking. Fails the response under way, reports the
    /// close, and says whether to retry.
    fn on_dropped(&mut self, now: Duration, code: u16, reason: &str) -> End {
        let cause = if reason.is_empty() {
            format!("close {code} ({})", close_code_meaning(code))
        } else {
            format!("close {code} ({}): {reason}", close_code_meaning(code))
        };
        tracing::info!(session = %self.spec.info.name, %cause, "connection dropped");
        self.tap_wire(now, Direction::FromRelay, Wire::Close { code, reason });
        if let Some(failed) = self.decoder.fail(ErrorKind::Network, cause.clone()) {
            self.emit(now, failed);
            self.workload.on_failed();
        }
        self.emit(
            now,
            EventKind::Closed {
                code,
                reason: reason.to_owned(),
                requested: false,
            },
        );
        if code == 1008 {
            return End::Fatal(format!(
                "the relay closed with 1008 (policy violation: usually the key): {reason}"
            ));
        }
        End::Retry {
            cause,
            retry_after: None,
            rate_limited: false,
        }
    }

    async fn on_command(
        &mut self,
        command: Option<SessionCommand>,
        socket: &mut RelaySocket,
    ) -> Option<End> {
        let now = self.clock.now();
        match command {
            None | Some(SessionCommand::Close) => {
                self.close_gracefully(socket, now, "closed by user", false)
                    .await;
                Some(End::Closed)
            }
            Some(SessionCommand::ReconnectNow) => {
                self.close_gracefully(socket, now, "reconnect asked by user", true)
                    .await;
                Some(End::Reconnect)
            }
            Some(command @ (SessionCommand::Chat { .. } | SessionCommand::Send { .. })) => {
                let message = match &command {
                    SessionCommand::Chat { .. } => "not a chat session, or too many turns waiting",
                    _ => "too many requests waiting to be sent",
                };
                if !queue_request(&mut self.workload, command) {
                    self.emit(
                        now,
                        EventKind::Error {
                            kind: ErrorKind::InvalidRequest,
                            message: message.into(),
                            retryable: false,
                            retry_after_ms: None,
                        },
                    );
                }
                None
            }
            Some(SessionCommand::Cancel) => {
                if self.decoder.in_flight().is_some() {
                    let cancel = ClientFrame::Cancel { id: None }.to_text();
                    if let Err(error) = self.send_text(socket, now, cancel).await {
                        return Some(self.on_socket_error(&error, now));
                    }
                }
                None
            }
        }
    }

    /// Closes with 1000 and waits briefly for the relay's answer.
    async fn close_gracefully(
        &mut self,
        socket: &mut RelaySocket,
        now: Duration,
        reason: &str,
        cut_response: bool,
    ) {
        // A response cut by a reconnect the user asked for has failed (a chat offers a retry);
        // one under way when the session closes is abandoned, not a relay failure.
        let abandoned = self.decoder.fail(ErrorKind::Other, reason.to_owned());
        if let Some(failed) = abandoned {
            self.workload.on_failed();
            if cut_response {
                self.emit(now, failed);
            }
        }
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            if socket.close(Some(frame)).await.is_ok() {
                while let Some(Ok(_)) = socket.next().await {}
            }
        })
        .await;
        self.emit(
            now,
            EventKind::Closed {
                code: 1000,
                reason: reason.to_owned(),
                requested: true,
            },
        );
    }
}

/// Seconds, without a fraction when there is none (60, 0.5).
fn fmt_secs(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0}")
    } else {
        format!("{secs:.2}")
    }
}

/// What a WebSocket close code means, in a few words.
pub fn close_code_meaning(code: u16) -> &'static str {
    match code {
        1000 => "normal",
        1001 => "going away",
        1002 => "protocol error",
        1005 => "no code given",
        1006 => "abnormal: no close frame",
        1007 => "invalid data",
        1008 => "policy violation",
        1009 => "message too big",
        1011 => "server error",
        1012 => "service restart",
        1013 => "try again later",
        3000..=3999 => "application (registered)",
        4000..=4999 => "application",
        _ => "unknown code",
    }
}
