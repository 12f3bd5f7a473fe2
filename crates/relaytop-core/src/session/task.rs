//! The relay/v1 transport (spec/PROTOCOL.md): one WebSocket per session, on `driver`.
//!
//! It connects (`connect`), then serves the socket: sends the requests the workload has due
//! (`chat.completion`), keeps the application `ping` (and, when asked, WebSocket Pings) going,
//! decodes the relay's frames (`decode::Decoder`, shared with replay), fails a response that
//! takes longer than `response_timeout`, reads close codes (1008 stops the session), holds
//! requests back after `rate_limited` error frames (`RateLimitBackoff`), cancels, and closes
//! gracefully. Reporting, limits, offline commands and the reconnect loop are `driver`'s; all
//! the timing rules live in the pure state machines. It holds no lock and shares no mutable
//! state with anyone.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::protocol::relay_v1::ClientFrame;
use crate::session::connect::{self, ConnectRequest, RelaySocket};
use crate::session::decode::{Decoder, Inbound};
use crate::session::driver::{self, Core, End, Transport};
use crate::session::event::{close_cause, micros};
use crate::session::handle::{RunClock, SessionCommand, SessionHandle};
use crate::session::heartbeat::{Heartbeat, HeartbeatAction};
use crate::session::ratelimit::{RateLimitBackoff, RateLimitRetry, SlowDown};
use crate::session::response::estimate_tokens_from_chars;
use crate::session::tap::{Direction, Wire};
use crate::session::workload::AudioJob;
use crate::session::{ErrorKind, EventKind, SessionSpec, SessionState};

/// Events reported from buffered frames before they are handed over (one wake of the
/// consumer a batch) and the loop looks at its timers and commands again.
const DRAIN_BATCH: usize = 1_024;

/// Frames handled in a row, from what one read brought in, between two looks at the clock
/// (a look costs as much as handling a small frame; 32 frames take a few microseconds).
const CLOCK_EVERY: u32 = 32;

/// Starts a relay/v1 session task (`session::spawn` picks the task by protocol).
pub(crate) fn spawn(
    spec: SessionSpec,
    clock: RunClock,
    events: crate::session::EventSender,
) -> SessionHandle {
    let (tx, rx) = mpsc::channel(64);
    let id = spec.info.id;
    let core = Core::new(spec, clock, events, rx);
    let task = tokio::spawn(driver::run(core, RelayV1Transport::new()));
    SessionHandle {
        id,
        commands: tx,
        task,
    }
}

/// The largest binary frame of a transcription's audio.
const AUDIO_FRAME_BYTES: usize = 64 * 1024;

struct RelayV1Transport {
    decoder: Decoder,
    /// `rate_limited` answers to requests, in a row.
    request_limited: RateLimitBackoff,
}

impl Transport for RelayV1Transport {
    async fn connect_and_serve(&mut self, core: &mut Core, attempt: u32) -> End {
        let socket = match self.connect(core, attempt).await {
            Ok(socket) => socket,
            Err(end) => return end,
        };
        core.flush().await;
        self.serve(core, socket).await
    }
}

impl RelayV1Transport {
    fn new() -> Self {
        Self {
            decoder: Decoder::new(),
            request_limited: RateLimitBackoff::default(),
        }
    }

    /// Sends a text frame, showing it to the tap as sent at `at` (the time the session acts
    /// on, so that a recording's lines and events stay in time order).
    async fn send_text(
        &self,
        core: &Core,
        socket: &mut RelaySocket,
        at: Duration,
        text: String,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        core.tap_wire(at, Direction::ToRelay, Wire::Text(&text));
        socket.send(Message::text(text)).await
    }

    async fn connect(&mut self, core: &mut Core, attempt: u32) -> Result<RelaySocket, End> {
        let started = core.clock.now();
        let api_key = core.spec.api_key.clone();
        let resolver = core.spec.resolver.clone();
        let url = core.spec.info.url.clone();
        let model = core.spec.info.model.clone();
        let request = ConnectRequest {
            url: &url,
            api_key: api_key.as_ref(),
            model: &model,
            timeout: core.spec.timing.handshake_timeout,
            resolver: resolver.as_ref().map(|r| &r.0),
        };
        // Boxed: the connect (TCP, TLS, upgrade) is most of a session's state machine while it
        // runs, and kept inline it would be part of every session's task for its whole life
        // (measured with `relaytop bench scale`: docs/PERFORMANCE.md).
        let connecting = Box::pin(connect::connect(&request));
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

    /// Runs one open connection until it ends.
    async fn serve(&mut self, core: &mut Core, mut socket: RelaySocket) -> End {
        let timing = core.spec.timing;
        let mut heartbeat = Heartbeat::new(core.clock.now(), timing.heartbeat, timing.dead_after);
        loop {
            let now = core.clock.now();
            if let Some(end) = self
                .send_due_request(core, &mut socket, &mut heartbeat, now)
                .await
            {
                return end;
            }
            if let Some(end) = self
                .tend_heartbeat(core, &mut socket, &mut heartbeat, now)
                .await
            {
                return end;
            }
            if let Some(end) = self
                .check_response_timeout(core, &mut socket, &mut heartbeat, now)
                .await
            {
                return end;
            }
            core.flush().await;
            if core.orphaned {
                return End::Closed;
            }

            let mut wake = heartbeat.next_deadline();
            if self.decoder.in_flight().is_none()
                && let Some(due) = core.workload.next_wake()
            {
                wake = wake.min(due);
            }
            if let Some(sent) = self.decoder.sent_at() {
                wake = wake.min(sent + timing.response_timeout);
            }
            let deadline = core.clock.instant_at(wake);

            tokio::select! {
                message = socket.next() => {
                    let now = core.clock.now();
                    let end = match message {
                        Some(Ok(message)) => self.on_message(core, message, &mut heartbeat, now),
                        Some(Err(error)) => Some(self.on_socket_error(core, &error, now)),
                        None => Some(self.on_dropped(core, now, 1006, "connection ended without a close frame")),
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
                            Ok(message) => self.on_message(core, message, &mut heartbeat, now),
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
                    if let Some(end) = self.on_command(core, command, &mut socket).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn send_due_request(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        if self.decoder.in_flight().is_some() || !core.workload.is_due(now) {
            return None;
        }
        if !core.take_send_slot(now) {
            return None;
        }
        if let Some(job) = core.workload.take_transcription(now) {
            return self
                .send_transcription(core, socket, heartbeat, now, job)
                .await;
        }
        let outgoing = core.workload.take_due(now)?;
        let prompt_chars: u64 = outgoing
            .messages
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        let model = core.spec.info.model.clone();
        let frame = ClientFrame::ChatCompletion {
            model: model.clone(),
            messages: outgoing.messages,
            stream: true,
            temperature: None,
            max_tokens: outgoing.max_tokens,
            id: None,
        };
        if let Err(error) = self.send_text(core, socket, now, frame.to_text()).await {
            core.workload.on_failed();
            let now = core.clock.now();
            return Some(self.on_socket_error(core, &error, now));
        }
        let (request, sent) =
            self.decoder
                .request_sent(now, &model, estimate_tokens_from_chars(prompt_chars));
        core.emit(now, sent);
        core.set_state(now, SessionState::Streaming { request });
        heartbeat.set_awaiting_response(now, true);
        None
    }

    /// Starts a transcription: `audio.transcription`, the audio in binary frames of at most
    /// `AUDIO_FRAME_BYTES`, then `audio.end`. The relay answers `transcript` and `done`.
    async fn send_transcription(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        heartbeat: &mut Heartbeat,
        now: Duration,
        job: AudioJob,
    ) -> Option<End> {
        let start = ClientFrame::AudioTranscription {
            model: job.model.clone(),
            stream: true,
            id: None,
        };
        let mut sent = self.send_text(core, socket, now, start.to_text()).await;
        for chunk in job.audio.chunks(AUDIO_FRAME_BYTES) {
            if sent.is_err() {
                break;
            }
            core.tap_wire(now, Direction::ToRelay, Wire::Binary(chunk));
            sent = socket.send(Message::binary(chunk.to_vec())).await;
        }
        if sent.is_ok() {
            sent = self
                .send_text(core, socket, now, ClientFrame::AudioEnd.to_text())
                .await;
        }
        if let Err(error) = sent {
            core.workload.on_failed();
            let now = core.clock.now();
            return Some(self.on_socket_error(core, &error, now));
        }
        let (request, sent) = self.decoder.request_sent(now, &job.model, 0);
        core.emit(now, sent);
        core.set_state(now, SessionState::Streaming { request });
        heartbeat.set_awaiting_response(now, true);
        None
    }

    /// Sends the application `ping` (and a WebSocket Ping when `ws_ping` is on) when due,
    /// reports late pongs, and closes on a dead peer.
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
                    let sent = self
                        .send_text(core, socket, now, ClientFrame::Ping.to_text())
                        .await;
                    let sent = match sent {
                        Ok(()) if core.spec.timing.ws_ping => {
                            socket.send(Message::Ping(Default::default())).await
                        }
                        other => other,
                    };
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
                    return Some(self.on_dropped(core, now, 1006, &reason));
                }
            }
        }
        None
    }

    /// Fails the response under way when its `done` is later than `response_timeout`, and
    /// cancels it.
    async fn check_response_timeout(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        let sent = self.decoder.sent_at()?;
        let limit = core.spec.timing.response_timeout;
        if now.saturating_sub(sent) < limit {
            return None;
        }
        let reason = format!("no `done` within {:.0} s", limit.as_secs_f64());
        if let Some(failed) = self.decoder.fail(ErrorKind::Timeout, reason.clone()) {
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
        let cancel = ClientFrame::Cancel { id: None }.to_text();
        if let Err(error) = self.send_text(core, socket, now, cancel).await {
            return Some(self.on_socket_error(core, &error, now));
        }
        None
    }

    /// Handles one message from the relay. Returns how the connection ended, if it did.
    fn on_message(
        &mut self,
        core: &mut Core,
        message: Message,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        heartbeat.on_received(now);
        match message {
            Message::Text(text) => self.on_text(core, text.as_str(), heartbeat, now),
            Message::Binary(bytes) => {
                core.tap_wire(now, Direction::FromRelay, Wire::Binary(&bytes));
                core.emit(
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
                return Some(self.on_dropped(core, now, code, &reason));
            }
        }
        None
    }

    fn on_text(&mut self, core: &mut Core, text: &str, heartbeat: &mut Heartbeat, now: Duration) {
        core.tap_wire(now, Direction::FromRelay, Wire::Text(text));
        let inbound = self.decoder.on_text(now, text, &mut |kind| {
            // Chunks come only with `Inbound::Text`: the workload keeps a chat's reply.
            if let EventKind::Chunk { text, .. } = &kind {
                core.workload.on_text(text);
            }
            core.derived(now, kind);
        });
        match inbound {
            Inbound::Nothing | Inbound::Text => {}
            Inbound::ResponseDone => {
                self.request_limited.on_success();
                core.workload.on_done();
                heartbeat.set_awaiting_response(now, false);
                core.set_state(now, SessionState::Open);
            }
            Inbound::ResponseFailed { wait } => {
                core.workload.on_failed();
                heartbeat.set_awaiting_response(now, false);
                if let Some(wait) = wait {
                    self.hold_back(core, now, wait);
                }
                core.set_state(now, SessionState::Open);
            }
            Inbound::Error { wait } => {
                if let Some(wait) = wait {
                    self.hold_back(core, now, wait);
                }
            }
            Inbound::Pong => {
                if let Some(rtt) = heartbeat.on_pong(now) {
                    core.emit(
                        now,
                        EventKind::Pong {
                            rtt_us: micros(rtt),
                        },
                    );
                }
            }
        }
    }

    /// The relay asked us to slow down (`rate_limited` or `overloaded`, as the decoder read
    /// it). A rate limit follows the 1, 2, 4, 8, 16 s schedule unless the relay gave
    /// `retry_after_ms`, and gives up after 5 retries: the one-shot requests waiting are
    /// dropped; an overload waits what the relay said (or a second). The wait decided here is
    /// the one reported (`RateLimited`, tapped: a replay shows it as it was).
    fn hold_back(&mut self, core: &mut Core, now: Duration, slow_down: SlowDown) {
        let mut gave_up = None;
        let (delay, cause) = if slow_down.kind == ErrorKind::RateLimited {
            let max = self.request_limited.max_retries();
            match self.request_limited.on_rate_limited(slow_down.retry_after) {
                RateLimitRetry::After { retry, delay } => (
                    delay,
                    format!("{} (retry {retry} of {max})", slow_down.cause),
                ),
                RateLimitRetry::GiveUp { retries } => {
                    gave_up = Some(retries);
                    (slow_down.wait(), format!("{} (gave up)", slow_down.cause))
                }
            }
        } else {
            (slow_down.wait(), slow_down.cause.clone())
        };
        core.workload.defer_until(now + delay);
        core.rate_limited(now, delay, cause);
        if let Some(retries) = gave_up {
            let dropped = core.workload.drop_oneshots();
            core.emit(
                now,
                EventKind::Error {
                    kind: ErrorKind::RateLimited,
                    message: format!(
                        "still rate limited after {retries} retries: gave up ({dropped} waiting requests dropped)"
                    ),
                    retryable: false,
                    retry_after_ms: slow_down.retry_after.map(|d| micros(d) / 1000),
                },
            );
        }
    }

    fn on_socket_error(
        &mut self,
        core: &mut Core,
        error: &tokio_tungstenite::tungstenite::Error,
        now: Duration,
    ) -> End {
        use tokio_tungstenite::tungstenite::Error;
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        let (code, reason) = match error {
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
            | Error::ConnectionClosed => {
                return self.on_dropped(core, now, 1006, "connection ended without a close frame");
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
        core.emit(
            now,
            EventKind::Error {
                kind,
                message: reason.clone(),
                retryable: true,
                retry_after_ms: None,
            },
        );
        self.on_dropped(core, now, code, &reason)
    }

    /// The connection ended without us asking. Fails the response under way, reports the
    /// close, and says whether to retry (not after 1008: usually the key).
    fn on_dropped(&mut self, core: &mut Core, now: Duration, code: u16, reason: &str) -> End {
        let cause = close_cause(code, reason);
        tracing::info!(session = %core.spec.info.name, %cause, "connection dropped");
        core.tap_wire(now, Direction::FromRelay, Wire::Close { code, reason });
        if let Some(failed) = self.decoder.fail(ErrorKind::Network, cause.clone()) {
            core.emit(now, failed);
            core.workload.on_failed();
        }
        core.emit(
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
        }
    }

    async fn on_command(
        &mut self,
        core: &mut Core,
        command: Option<SessionCommand>,
        socket: &mut RelaySocket,
    ) -> Option<End> {
        let now = core.clock.now();
        match command {
            None | Some(SessionCommand::Close) => {
                self.close_gracefully(core, socket, now, "closed by user", false)
                    .await;
                Some(End::Closed)
            }
            Some(SessionCommand::ReconnectNow) => {
                self.close_gracefully(core, socket, now, "reconnect asked by user", true)
                    .await;
                Some(End::Reconnect)
            }
            Some(SessionCommand::Cancel) => {
                if self.decoder.in_flight().is_some() {
                    let cancel = ClientFrame::Cancel { id: None }.to_text();
                    if let Err(error) = self.send_text(core, socket, now, cancel).await {
                        return Some(self.on_socket_error(core, &error, now));
                    }
                }
                None
            }
            // Chat turns, requests, transcriptions and history changes: the core queues them
            // (and says when it cannot).
            Some(command) => {
                core.queue(now, command);
                None
            }
        }
    }

    /// Closes with 1000 and waits briefly for the relay's answer.
    async fn close_gracefully(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        now: Duration,
        reason: &str,
        cut_response: bool,
    ) {
        // A response cut by a reconnect the user asked for has failed (a chat offers a retry);
        // one under way when the session closes is abandoned, not a relay failure.
        let abandoned = self.decoder.fail(ErrorKind::Other, reason.to_owned());
        if let Some(failed) = abandoned {
            core.workload.on_failed();
            if cut_response {
                core.emit(now, failed);
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
        core.emit(
            now,
            EventKind::Closed {
                code: 1000,
                reason: reason.to_owned(),
                requested: true,
            },
        );
    }
}
