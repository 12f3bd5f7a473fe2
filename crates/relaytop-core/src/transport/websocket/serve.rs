//! The shared WebSocket serve loop, one for every WebSocket protocol: connects (the codec's
//! URL and upgrade flavor), sends the codec's opening frames, then sends the requests the
//! workload has due, tends the heartbeat (the codec's `Liveness`), fails a response later
//! than `response_timeout` and cancels it, and hands every received frame to the codec's
//! decoder, acting on its `Reaction`. How a connection ends is `ending`'s. Reporting, limits,
//! offline commands and the reconnect loop are `session::driver`'s.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::session::connect::{self, ConnectRequest, RelaySocket};
use crate::session::driver::{self, Core, End, Transport};
use crate::session::event::micros;
use crate::session::handle::{RunClock, SessionHandle};
use crate::session::heartbeat::{Heartbeat, HeartbeatAction};
use crate::session::ratelimit::RateLimitBackoff;
use crate::session::tap::{Direction, Wire};
use crate::session::{ErrorKind, EventKind, SessionSpec, SessionState};
use crate::transport::websocket::codec::{Frame, Liveness, Reaction, Request, WebSocketCodec};

/// Events reported from buffered frames before they are handed over (one wake of the
/// consumer a batch) and the loop looks at its timers and commands again.
pub(crate) const DRAIN_BATCH: usize = 1_024;

/// Frames handled in a row, from what one read brought in, between two looks at the clock
/// (a look costs as much as handling a small frame; 32 frames take a few microseconds).
const CLOCK_EVERY: u32 = 32;

/// Starts a session task speaking `codec` over a WebSocket.
pub(crate) fn spawn<C: WebSocketCodec>(
    spec: SessionSpec,
    clock: RunClock,
    events: crate::session::EventSender,
    codec: C,
) -> SessionHandle {
    let (tx, rx) = mpsc::channel(64);
    let id = spec.info.id;
    let core = Core::new(spec, clock, events, rx);
    let task = tokio::spawn(driver::run(
        Box::new(core),
        Box::new(WebSocketTransport::new(codec)),
    ));
    SessionHandle {
        id,
        commands: tx,
        task,
    }
}

/// One session's WebSocket: the codec and what the shared half keeps across connections.
pub(crate) struct WebSocketTransport<C> {
    pub(super) codec: C,
    /// Slow-down answers to requests, in a row (`HoldBack::Schedule`).
    pub(super) request_limited: RateLimitBackoff,
}

impl<C: WebSocketCodec> Transport for WebSocketTransport<C> {
    async fn connect_and_serve(&mut self, core: &mut Core, attempt: u32) -> End {
        let mut socket = match self.connect(core, attempt).await {
            Ok(socket) => socket,
            Err(end) => return end,
        };
        core.flush().await;
        let opening = self.codec.opening(&core.spec);
        if !opening.is_empty() {
            let now = core.clock.now();
            if let Err(error) = self.send_frames(core, &mut socket, now, opening).await {
                let now = core.clock.now();
                return self.on_socket_error(core, &error, now);
            }
            core.flush().await;
        }
        self.serve(core, &mut socket).await
    }
}

impl<C: WebSocketCodec> WebSocketTransport<C> {
    fn new(codec: C) -> Self {
        Self {
            codec,
            request_limited: RateLimitBackoff::default(),
        }
    }

    /// Sends frames in order, showing each to the tap as sent at `at` (the time the session
    /// acts on, so that a recording's lines and events stay in time order), in one write when
    /// they fit the socket's buffer.
    pub(super) async fn send_frames(
        &self,
        core: &mut Core,
        socket: &mut RelaySocket,
        at: Duration,
        frames: Vec<Frame>,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.feed_frames(core, socket, at, frames).await?;
        socket.flush().await
    }

    /// Queues frames on the socket in order, tapped as `send_frames` taps them, without
    /// flushing: the caller adds what goes in the same write, then flushes.
    async fn feed_frames(
        &self,
        core: &mut Core,
        socket: &mut RelaySocket,
        at: Duration,
        frames: Vec<Frame>,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        for frame in frames {
            match frame {
                Frame::Text(text) => {
                    core.tap_wire(at, Direction::ToRelay, Wire::Text(&text));
                    socket.feed(Message::text(text)).await?;
                }
                Frame::Binary(bytes) => {
                    core.tap_wire(at, Direction::ToRelay, Wire::Binary(&bytes));
                    socket.feed(Message::binary(bytes)).await?;
                }
            }
        }
        Ok(())
    }

    async fn connect(&mut self, core: &mut Core, attempt: u32) -> Result<RelaySocket, End> {
        let started = core.clock.now();
        let api_key = core.spec.api_key.clone();
        let resolver = core.spec.resolver.clone();
        let model = core.spec.info.model.clone();
        let request = ConnectRequest {
            url: self.codec.url(),
            api_key: api_key.as_ref(),
            model: &model,
            timeout: core.spec.timing.handshake_timeout,
            resolver: resolver.as_ref().map(|r| &r.0),
        };
        // Boxed: the connect (TCP, TLS, upgrade) is most of a session's state machine while it
        // runs, and kept inline it would be part of every session's task for its whole life
        // (measured with `relaytop bench scale`: docs/PERFORMANCE.md).
        let connecting = Box::pin(connect::connect_as(&request, self.codec.flavor()));
        let Some(connected) = core.wait_offline(connecting).await else {
            return Err(End::Closed);
        };
        let now = core.clock.now();
        match connected {
            Ok((socket, _response)) => {
                core.tap_wire(now, Direction::FromRelay, Wire::Upgrade { status: 101 });
                core.connected(now, attempt, now.saturating_sub(started));
                Ok(socket)
            }
            Err(error) => {
                let (kind, retryable, retry_after) =
                    (error.kind(), error.retryable(), error.retry_after());
                Err(core.connect_failed(now, kind, error.to_string(), retryable, retry_after))
            }
        }
    }

    /// Runs one open connection until it ends. The socket is borrowed, not moved in: a moved
    /// argument is kept twice in the future's state (1.4 KiB each, every session's task).
    async fn serve(&mut self, core: &mut Core, socket: &mut RelaySocket) -> End {
        let timing = core.spec.timing;
        let mut heartbeat = Heartbeat::new(core.clock.now(), timing.heartbeat, timing.dead_after);
        loop {
            let now = core.clock.now();
            if let Some(end) = self
                .send_due_request(core, socket, &mut heartbeat, now)
                .await
            {
                return end;
            }
            if let Some(end) = self.tend_heartbeat(core, socket, &mut heartbeat, now).await {
                return end;
            }
            if let Some(end) = self
                .check_response_timeout(core, socket, &mut heartbeat, now)
                .await
            {
                return end;
            }
            core.flush().await;
            if core.orphaned {
                return End::Closed;
            }

            let mut wake = heartbeat.next_deadline();
            if self.codec.in_flight().is_none()
                && let Some(due) = core.workload.next_wake()
            {
                wake = wake.min(due);
            }
            if let Some(sent) = self.codec.sent_at() {
                wake = wake.min(sent + timing.response_timeout);
            }
            let deadline = core.clock.instant_at(wake);

            tokio::select! {
                message = socket.next() => {
                    let now = core.clock.now();
                    let end = match message {
                        Some(Ok(message)) => {
                            let then = self.on_message(core, message, &mut heartbeat, now);
                            self.then(core, socket, now, then).await
                        }
                        Some(Err(error)) => Some(self.on_socket_error(core, &error, now)),
                        None => Some(self.on_dropped(core, now, 1006, "connection ended without a close frame", ErrorKind::Network)),
                    };
                    if let Some(end) = end {
                        return end;
                    }
                    // Drain what is already buffered before going round the loop again, so a
                    // fast stream is handled in batches. Those frames came in together: the
                    // clock is read again every `CLOCK_EVERY` of them, not for each.
                    let mut now = now;
                    let mut drained = 0u32;
                    while let Some(Some(message)) = futures_util::FutureExt::now_or_never(socket.next()) {
                        drained += 1;
                        if drained.is_multiple_of(CLOCK_EVERY) {
                            now = core.clock.now();
                        }
                        let end = match message {
                            Ok(message) => match self.on_message(core, message, &mut heartbeat, now) {
                                Then::Nothing => None,
                                then => self.then(core, socket, now, then).await,
                            },
                            Err(error) => Some(self.on_socket_error(core, &error, now)),
                        };
                        if let Some(end) = end {
                            return end;
                        }
                        if core.pending() >= DRAIN_BATCH {
                            break;
                        }
                    }
                }
                command = core.commands.recv() => {
                    if let Some(end) = self.on_command(core, socket, command).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Sends the request the workload has due, if any (the codec builds it).
    async fn send_due_request(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        if self.codec.in_flight().is_some() || !core.workload.is_due(now) {
            return None;
        }
        if !core.take_send_slot(now) {
            return None;
        }
        let transcription = if self.codec.carries_audio() {
            core.workload.take_transcription(now)
        } else {
            None
        };
        let request: Request = match transcription {
            Some(job) => self.codec.transcription(job),
            None => {
                let outgoing = core.workload.take_due(now)?;
                let history = core.workload.history();
                self.codec.request(&core.spec, history, outgoing)
            }
        };
        let Request {
            frames,
            model,
            prompt_tokens_estimate,
        } = request;
        if let Err(error) = self.send_frames(core, socket, now, frames).await {
            // Nothing was counted yet: the request never went out.
            core.workload.on_failed();
            let now = core.clock.now();
            return Some(self.on_socket_error(core, &error, now));
        }
        self.codec.request_out();
        let (request, sent) = self.codec.request_sent(now, &model, prompt_tokens_estimate);
        core.emit(now, sent);
        core.set_state(now, SessionState::Streaming { request });
        heartbeat.set_awaiting_response(now, true);
        None
    }

    /// Sends the ping the codec's liveness asks for when due, reports late pongs, and closes
    /// on a dead peer.
    async fn tend_heartbeat(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        while let Some(action) = heartbeat.poll(now) {
            match action {
                HeartbeatAction::SendPing => {
                    let ws_ping = match self.codec.liveness() {
                        Liveness::AppPing => core.spec.timing.ws_ping,
                        Liveness::WebSocketPing => true,
                    };
                    // The codec's ping and the WebSocket one leave in one write: one
                    // segment, one wake of the relay (10,000 idle sessions: half the sends).
                    let mut sent = match self.codec.ping() {
                        Some(ping) => self.feed_frames(core, socket, now, vec![ping]).await,
                        None => Ok(()),
                    };
                    if sent.is_ok() && ws_ping {
                        sent = socket.feed(Message::Ping(Default::default())).await;
                    }
                    if sent.is_ok() {
                        sent = socket.flush().await;
                    }
                    if let Err(error) = sent {
                        return Some(self.on_socket_error(core, &error, now));
                    }
                    heartbeat.on_ping_sent(now);
                }
                HeartbeatAction::Missed { waited } => {
                    core.emit(
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
                    core.emit(
                        now,
                        EventKind::Error {
                            kind: ErrorKind::Timeout,
                            message: reason.clone(),
                            retryable: true,
                            retry_after_ms: None,
                        },
                    );
                    // Close without waiting: the peer will not answer a close handshake.
                    return Some(self.on_dropped(core, now, 1006, &reason, ErrorKind::Timeout));
                }
            }
        }
        None
    }

    /// Fails the response under way when its end is later than `response_timeout`, and
    /// cancels it.
    async fn check_response_timeout(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        let sent = self.codec.sent_at()?;
        let limit = core.spec.timing.response_timeout;
        if now.saturating_sub(sent) < limit {
            return None;
        }
        let reason = format!(
            "no `{}` within {:.0} s",
            self.codec.done_name(),
            limit.as_secs_f64()
        );
        if let Some(failed) = self.codec.fail(ErrorKind::Timeout, reason.clone()) {
            core.emit(now, failed);
        }
        core.workload.on_failed();
        heartbeat.set_awaiting_response(now, false);
        core.emit(
            now,
            EventKind::Error {
                kind: ErrorKind::Timeout,
                message: reason,
                retryable: true,
                retry_after_ms: None,
            },
        );
        core.set_state(now, SessionState::Open);
        let cancel = vec![self.codec.cancel()];
        if let Err(error) = self.send_frames(core, socket, now, cancel).await {
            return Some(self.on_socket_error(core, &error, now));
        }
        None
    }

    /// Handles one message from the peer. Returns how the connection ended, if it did.
    ///
    /// Synchronous: a stream's every frame passes here, and an `async fn` would build and poll
    /// a future (the size of everything it might await) per frame. What needs the socket
    /// afterwards (rare) is returned as `Then` for `then`.
    fn on_message(
        &mut self,
        core: &mut Core,
        message: Message,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Then {
        heartbeat.on_received(now);
        match message {
            Message::Text(text) => self.on_text(core, text.as_str(), heartbeat, now),
            Message::Binary(bytes) => {
                core.tap_wire(now, Direction::FromRelay, Wire::Binary(&bytes));
                match std::str::from_utf8(&bytes) {
                    Ok(text) if self.codec.binary_is_text() => {
                        self.on_text(core, text, heartbeat, now)
                    }
                    _ => {
                        core.emit(
                            now,
                            EventKind::UnknownFrame {
                                frame_type: format!("binary ({} bytes)", bytes.len()),
                            },
                        );
                        Then::Nothing
                    }
                }
            }
            Message::Pong(_) => {
                if self.codec.liveness() == Liveness::WebSocketPing {
                    self.on_pong(core, heartbeat, now);
                }
                Then::Nothing
            }
            // tungstenite answers Pings by itself; every frame proves the peer is alive.
            Message::Ping(_) | Message::Frame(_) => Then::Nothing,
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(frame) => (u16::from(frame.code), frame.reason.to_string()),
                    None => (1005, String::new()),
                };
                let kind = if code == super::ending::CLOSE_POLICY {
                    ErrorKind::Auth
                } else {
                    ErrorKind::Network
                };
                Then::End(self.on_dropped(core, now, code, &reason, kind))
            }
        }
    }

    fn on_pong(&mut self, core: &mut Core, heartbeat: &mut Heartbeat, now: Duration) {
        if let Some(rtt) = heartbeat.on_pong(now) {
            core.emit(
                now,
                EventKind::Pong {
                    rtt_us: micros(rtt),
                },
            );
        }
    }

    /// A text frame: the codec decodes it, the session acts on what it meant (synchronously;
    /// what needs the socket comes back as `Then`).
    fn on_text(
        &mut self,
        core: &mut Core,
        text: &str,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Then {
        core.tap_wire(now, Direction::FromRelay, Wire::Text(text));
        // The codec reads the frame with the key scrubbed, as a replay reads the recording.
        let scrubbed = match core.scrub() {
            Some(scrub) => scrub.scrub(text),
            None => std::borrow::Cow::Borrowed(text),
        };
        let text: &str = &scrubbed;
        let reaction = self.codec.on_text(now, text, &mut |kind| {
            // Chunks come only with text of a response: the workload keeps a chat's reply.
            if let EventKind::Chunk { text, .. } = &kind {
                core.workload.on_text(text);
            }
            core.derived(now, kind);
        });
        let after = match reaction {
            Reaction::Nothing => return Then::Nothing,
            Reaction::Pong => {
                self.on_pong(core, heartbeat, now);
                return Then::Nothing;
            }
            Reaction::ResponseDone => {
                self.request_limited.on_success();
                core.workload.on_done();
                heartbeat.set_awaiting_response(now, false);
                core.set_state(now, SessionState::Open);
                self.codec.response_over(true)
            }
            Reaction::ResponseFailed { wait } => {
                core.workload.on_failed();
                heartbeat.set_awaiting_response(now, false);
                if let Some(wait) = wait {
                    self.hold_back(core, now, wait);
                }
                core.set_state(now, SessionState::Open);
                self.codec.response_over(false)
            }
            Reaction::Error { wait } => {
                if let Some(wait) = wait {
                    self.hold_back(core, now, wait);
                }
                return Then::Nothing;
            }
            Reaction::Fatal { reason, verdict } => {
                core.workload.on_failed();
                heartbeat.set_awaiting_response(now, false);
                return Then::CloseForGood { reason, verdict };
            }
        };
        if after.is_empty() {
            Then::Nothing
        } else {
            Then::Send(after)
        }
    }

    /// Does what a message left for the socket. Returns how the connection ended, if it did.
    async fn then(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        now: Duration,
        then: Then,
    ) -> Option<End> {
        match then {
            Then::Nothing => None,
            Then::End(end) => Some(end),
            Then::Send(frames) => match self.send_frames(core, socket, now, frames).await {
                Ok(()) => None,
                Err(error) => Some(self.on_socket_error(core, &error, now)),
            },
            Then::CloseForGood { reason, verdict } => {
                self.close_for_good(core, socket, now, &reason).await;
                Some(End::Fatal(verdict))
            }
        }
    }
}

/// What a received message leaves to do that needs the socket: most leave nothing.
enum Then {
    Nothing,
    /// The connection ended (a close frame).
    End(End),
    /// Frames to send after a response (e.g. deleting a probe's items).
    Send(Vec<Frame>),
    /// The peer said retrying cannot help: close, and stop with `verdict`.
    CloseForGood {
        reason: String,
        verdict: String,
    },
}
