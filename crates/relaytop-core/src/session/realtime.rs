//! The openai-realtime session: the Realtime API (GA shape) over one WebSocket, reported as
//! the same `SessionEvent`s as relay/v1.
//!
//! Two parts:
//! - `RealtimeDecoder` (pure, shared with replay) turns server events into session events:
//!   time to first token at the first `response.output_text.delta` (beta names read too),
//!   chunks, `done` from `response.done` with its usage (cached tokens apart, for their own
//!   price), failed and cancelled responses, `rate_limits.updated` as `RateLimitStatus`,
//!   `error` events, unknown and malformed events. A response failed by a rate limit or an
//!   overload comes back as a `SlowDown`: the session waits and reports `RateLimited` itself.
//! - The task: connects (`Authorization` only, no `OpenAI-Beta`), sends `session.update`
//!   (text output, the chat's system prompt as instructions), then for each request the
//!   messages the server has not seen (`conversation.item.create`) and `response.create`.
//!   A probe's two items are deleted after its response, so a long-running probe session does
//!   not grow its conversation. Liveness is WebSocket Ping/Pong only (never relay/v1's
//!   `ping`); the Ping→Pong round trip is the heartbeat shown. An upgrade followed by an
//!   `error` and a close 3000 (`invalid_api_key`) or 4000 (`beta_api_shape_disabled`) is a
//!   configuration failure: the session stops, it does not reconnect. Esc in a chat sends
//!   `response.cancel`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::protocol::openai_realtime::{
    CLOSE_BETA_SHAPE_DISABLED, CLOSE_INVALID_API_KEY, ClientEvent, MaxTokens, RealtimeError,
    ResponseConfig, ResponseStatus, ServerEvent, SessionConfig, url_with_model,
};
use crate::protocol::relay_v1::{Role, Usage as RelayUsage};
use crate::session::connect::{self, ConnectRequest, Flavor, RelaySocket};
use crate::session::driver::{self, Core, End, Transport};
use crate::session::event::{close_cause, micros};
use crate::session::handle::{RunClock, SessionCommand, SessionHandle};
use crate::session::heartbeat::{Heartbeat, HeartbeatAction};
use crate::session::ratelimit::SlowDown;
use crate::session::response::{ResponseTracker, estimate_tokens_from_chars};
use crate::session::tap::{Direction, Wire};
use crate::session::{ErrorKind, EventKind, RequestId, SessionSpec, SessionState, Workload};

// ------------------------------------------------------------------------------------------
// The decoder
// ------------------------------------------------------------------------------------------

/// What a server event meant for the session, beyond the events it produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RealtimeInbound {
    Nothing,
    /// Text of the response under way.
    Text,
    /// The response under way completed (or was cancelled, or is incomplete).
    ResponseDone,
    /// The response under way failed; `wait` is set when the server asked to slow down (the
    /// session decides the wait and reports it).
    ResponseFailed {
        wait: Option<SlowDown>,
    },
    /// An `error` event that did not fail a response.
    Error,
    /// An error retrying cannot fix (a bad key): stop the session.
    Fatal {
        reason: String,
    },
    /// The item the response under way writes into (to delete after a probe).
    OutputItem {
        item_id: String,
    },
}

/// Decodes one session's Realtime server events. Survives reconnects (request numbers go on).
#[derive(Clone, Debug, Default)]
pub struct RealtimeDecoder {
    tracker: ResponseTracker,
    /// `response.created` has come for the request under way.
    response_created: bool,
}

/// The kind of a Realtime error, from its type and code.
pub fn error_kind(error: &RealtimeError<'_>) -> ErrorKind {
    let code = error.code.as_deref().unwrap_or("");
    let kind = error.kind.as_deref().unwrap_or("");
    if is_fatal(error) {
        ErrorKind::Auth
    } else if code.contains("rate_limit") || kind.contains("rate_limit") {
        ErrorKind::RateLimited
    } else if code.contains("overloaded") || kind.contains("overloaded") {
        ErrorKind::Overloaded
    } else if kind == "invalid_request_error" {
        ErrorKind::InvalidRequest
    } else if kind == "server_error" || code.contains("upstream") {
        ErrorKind::Upstream
    } else {
        ErrorKind::Other
    }
}

/// Whether an error says the configuration is wrong (retrying cannot help).
fn is_fatal(error: &RealtimeError<'_>) -> bool {
    matches!(
        error.code.as_deref(),
        Some("invalid_api_key" | "beta_api_shape_disabled" | "insufficient_quota")
    ) || error.kind.as_deref() == Some("authentication_error")
}

impl RealtimeDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The request under way, if any.
    pub fn in_flight(&self) -> Option<RequestId> {
        self.tracker.in_flight()
    }

    /// When the request under way was sent.
    pub fn sent_at(&self) -> Option<Duration> {
        self.tracker.sent_at()
    }

    /// The number the next request will have (to name its items before it goes out).
    pub fn next_request(&self) -> RequestId {
        self.tracker.next_request()
    }

    /// A request went out at `now`: its number and its `RequestSent` event.
    pub fn request_sent(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind) {
        self.response_created = false;
        self.tracker.begin(now, model, prompt_tokens_estimate)
    }

    /// The request under way failed for a reason outside the events (a drop, a timeout).
    pub fn fail(&mut self, kind: ErrorKind, reason: impl Into<String>) -> Option<EventKind> {
        self.tracker.fail(kind, reason)
    }

    /// A text frame from the server, received at `now`. Its events go to `out`.
    pub fn on_text(
        &mut self,
        now: Duration,
        text: &str,
        out: &mut impl FnMut(EventKind),
    ) -> RealtimeInbound {
        let event = match ServerEvent::parse(text) {
            Ok(event) => event,
            Err(error) => {
                out(EventKind::Malformed {
                    reason: error.to_string(),
                });
                return RealtimeInbound::Nothing;
            }
        };
        match event {
            ServerEvent::SessionCreated | ServerEvent::Other { .. } => RealtimeInbound::Nothing,
            ServerEvent::ResponseCreated { .. } => {
                self.response_created = true;
                RealtimeInbound::Nothing
            }
            ServerEvent::OutputItemAdded { item_id } => match item_id {
                Some(id) if self.tracker.in_flight().is_some() => RealtimeInbound::OutputItem {
                    item_id: id.into_owned(),
                },
                _ => RealtimeInbound::Nothing,
            },
            ServerEvent::TextDelta { delta, .. } => {
                if delta.is_empty() {
                    return RealtimeInbound::Nothing;
                }
                self.tracker.on_chunk(now, &delta, &mut *out);
                RealtimeInbound::Text
            }
            ServerEvent::ResponseDone {
                status,
                reason,
                error,
                usage,
                ..
            } => {
                if self.tracker.in_flight().is_none() {
                    // A response this client did not ask for (server VAD): not ours to count.
                    return RealtimeInbound::Nothing;
                }
                if status == ResponseStatus::Failed {
                    let error = error.unwrap_or_else(|| RealtimeError {
                        message: "the response failed".into(),
                        ..RealtimeError::default()
                    });
                    let kind = error_kind(&error);
                    let message = error.summary();
                    if let Some(failed) = self.tracker.fail(kind, message.clone()) {
                        out(failed);
                    }
                    out(EventKind::Error {
                        kind,
                        message: message.clone(),
                        retryable: kind != ErrorKind::InvalidRequest && kind != ErrorKind::Auth,
                        retry_after_ms: None,
                    });
                    if is_fatal(&error) {
                        return RealtimeInbound::Fatal { reason: message };
                    }
                    let wait = matches!(kind, ErrorKind::RateLimited | ErrorKind::Overloaded)
                        .then_some(SlowDown {
                            kind,
                            retry_after: None,
                            cause: message,
                        });
                    return RealtimeInbound::ResponseFailed { wait };
                }
                let finish = match (status, reason.as_deref()) {
                    (ResponseStatus::Completed, _) => "stop",
                    (ResponseStatus::Cancelled, _) => "cancelled",
                    (ResponseStatus::Incomplete, Some("max_output_tokens")) => "length",
                    (ResponseStatus::Incomplete, Some("content_filter")) => "content_filter",
                    (ResponseStatus::Incomplete, _) => "incomplete",
                    (_, _) => status.label(),
                };
                let relay_usage = usage.map(|u| RelayUsage {
                    prompt_tokens: u.input_tokens,
                    completion_tokens: u.output_tokens,
                });
                let Some(mut done) = self.tracker.on_done(now, relay_usage, Some(finish)) else {
                    return RealtimeInbound::Nothing;
                };
                if let (EventKind::Done { tokens, .. }, Some(usage)) = (&mut done, usage) {
                    tokens.cached_input = usage.cached_tokens.min(usage.input_tokens);
                }
                out(done);
                RealtimeInbound::ResponseDone
            }
            ServerEvent::RateLimitsUpdated { limits } => {
                let mut event = EventKind::RateLimitStatus {
                    requests_limit: None,
                    requests_remaining: None,
                    requests_reset_ms: None,
                    tokens_limit: None,
                    tokens_remaining: None,
                    tokens_reset_ms: None,
                };
                let EventKind::RateLimitStatus {
                    requests_limit,
                    requests_remaining,
                    requests_reset_ms,
                    tokens_limit,
                    tokens_remaining,
                    tokens_reset_ms,
                } = &mut event
                else {
                    return RealtimeInbound::Nothing;
                };
                for limit in limits {
                    let reset_ms = limit
                        .reset_seconds
                        .filter(|s| *s >= 0.0)
                        .map(|s| (s * 1000.0).round() as u64);
                    match limit.name.as_ref() {
                        "requests" => {
                            *requests_limit = limit.limit;
                            *requests_remaining = limit.remaining;
                            *requests_reset_ms = reset_ms;
                        }
                        "tokens" => {
                            *tokens_limit = limit.limit;
                            *tokens_remaining = limit.remaining;
                            *tokens_reset_ms = reset_ms;
                        }
                        _ => {}
                    }
                }
                out(event);
                RealtimeInbound::Nothing
            }
            ServerEvent::Error(error) => {
                let kind = error_kind(&error);
                let message = error.summary();
                let fatal = is_fatal(&error);
                // An error before `response.created` is the answer to our request.
                let failed = if !self.response_created || fatal {
                    self.tracker.fail(kind, message.clone())
                } else {
                    None
                };
                let had_request = failed.is_some();
                if let Some(failed) = failed {
                    out(failed);
                }
                out(EventKind::Error {
                    kind,
                    message: message.clone(),
                    retryable: !fatal && kind != ErrorKind::InvalidRequest,
                    retry_after_ms: None,
                });
                if fatal {
                    RealtimeInbound::Fatal { reason: message }
                } else if had_request {
                    RealtimeInbound::ResponseFailed { wait: None }
                } else {
                    RealtimeInbound::Error
                }
            }
            ServerEvent::Unknown { kind } => {
                out(EventKind::UnknownFrame {
                    frame_type: kind.into_owned(),
                });
                RealtimeInbound::Nothing
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// The task
// ------------------------------------------------------------------------------------------

/// Starts an openai-realtime session task.
pub fn spawn(
    spec: SessionSpec,
    clock: RunClock,
    events: crate::session::EventSender,
) -> SessionHandle {
    let (tx, rx) = mpsc::channel(64);
    let id = spec.info.id;
    let transport = RealtimeTransport::new(&spec);
    let core = Core::new(spec, clock, events, rx);
    let task = tokio::spawn(driver::run(core, transport));
    SessionHandle {
        id,
        commands: tx,
        task,
    }
}

struct RealtimeTransport {
    url: String,
    decoder: RealtimeDecoder,
    /// Chat messages the server holds on this connection (its conversation).
    items_sent: usize,
    /// Items of the probe (or one-shot) under way, deleted once it is over.
    probe_items: Vec<String>,
    /// The request under way is a chat turn (its reply stays in the conversation).
    turn_under_way: bool,
    /// An `error` said the key (or the endpoint's shape) is wrong: the close that follows is
    /// a configuration failure.
    fatal: Option<String>,
}

impl RealtimeTransport {
    fn new(spec: &SessionSpec) -> Self {
        Self {
            url: url_with_model(&spec.info.url, &spec.info.model),
            decoder: RealtimeDecoder::new(),
            items_sent: 0,
            probe_items: Vec::new(),
            turn_under_way: false,
            fatal: None,
        }
    }

    /// Sends a client event, showing it to the tap as sent at `at` (the time the session acts
    /// on, so that a recording's lines and events stay in time order).
    async fn send_event(
        &self,
        core: &Core,
        socket: &mut RelaySocket,
        at: Duration,
        event: &ClientEvent,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let text = event.to_text();
        core.tap_wire(at, Direction::ToRelay, Wire::Text(&text));
        socket.send(Message::text(text)).await
    }

    async fn connect(&mut self, core: &mut Core, attempt: u32) -> Result<RelaySocket, End> {
        let started = core.clock.now();
        let api_key = core.spec.api_key.clone();
        let resolver = core.spec.resolver.clone();
        let model = core.spec.info.model.clone();
        let request = ConnectRequest {
            url: &self.url,
            api_key: api_key.as_ref(),
            model: &model,
            timeout: core.spec.timing.handshake_timeout,
            resolver: resolver.as_ref().map(|r| &r.0),
        };
        let connecting = connect::connect_as(&request, Flavor::Realtime);
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

    async fn serve(&mut self, core: &mut Core, mut socket: RelaySocket) -> End {
        self.items_sent = 0;
        self.probe_items.clear();
        self.fatal = None;
        let system = match &core.spec.workload {
            Workload::Chat { system } => system.clone(),
            _ => None,
        };
        let update = ClientEvent::SessionUpdate {
            session: SessionConfig {
                kind: Some("realtime".into()),
                instructions: system,
                output_modalities: Some(vec!["text".into()]),
                model: None,
            },
        };
        if let Err(error) = self
            .send_event(core, &mut socket, core.clock.now(), &update)
            .await
        {
            return self.on_socket_error(core, &error);
        }
        core.flush().await;
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
                        Some(Ok(message)) => self.on_message(core, &mut socket, message, &mut heartbeat, now).await,
                        Some(Err(error)) => Some(self.on_socket_error(core, &error)),
                        None => Some(self.on_dropped(core, now, 1006, "connection ended without a close frame")),
                    };
                    if let Some(end) = end {
                        return end;
                    }
                }
                command = core.commands.recv() => {
                    if let Some(end) = self.on_command(core, &mut socket, command).await {
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
        if self.decoder.in_flight().is_some()
            || !core.workload.is_due(now)
            || !core.take_send_slot(now)
        {
            return None;
        }
        let outgoing = core.workload.take_due(now)?;
        let conversation: Vec<_> = outgoing
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .collect();
        // A chat turn carries the whole history (the one-shots of `Send` do not): the server
        // already holds its first `items_sent` messages.
        let history = core.workload.history();
        let is_turn = matches!(core.spec.workload, Workload::Chat { .. })
            && !history.is_empty()
            && conversation.len() == history.len()
            && conversation.last().map(|m| &m.content) == history.last().map(|m| &m.content);
        // A probe's (or a one-shot's) items are deleted once it is over.
        let is_probe = !is_turn;
        let fresh = if is_turn && self.items_sent <= conversation.len() {
            &conversation[self.items_sent..]
        } else {
            &conversation[..]
        };
        let prompt_chars: u64 = conversation
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        let model = core.spec.info.model.clone();
        // The decoder learns of the request once it is out (as a replay does, from the
        // `RequestSent` event), so that a request that never went out takes no number.
        let request = self.decoder.next_request();
        let mut events = Vec::with_capacity(fresh.len() + 1);
        for (n, message) in fresh.iter().enumerate() {
            let role = match message.role {
                Role::Assistant => "assistant",
                _ => "user",
            };
            let id = is_probe.then(|| format!("relaytop_{request}_{n}"));
            if let Some(id) = &id {
                self.probe_items.push(id.clone());
            }
            events.push(ClientEvent::message(id, role, &message.content));
        }
        events.push(ClientEvent::ResponseCreate {
            response: Some(ResponseConfig {
                output_modalities: Some(vec!["text".into()]),
                instructions: None,
                max_output_tokens: outgoing.max_tokens.map(MaxTokens::Tokens),
            }),
        });
        for event in &events {
            if let Err(error) = self.send_event(core, socket, now, event).await {
                // Nothing was counted yet: the request never went out.
                core.workload.on_failed();
                return Some(self.on_socket_error(core, &error));
            }
        }
        if is_turn {
            self.items_sent = conversation.len();
        }
        self.turn_under_way = is_turn;
        let (request, sent_event) =
            self.decoder
                .request_sent(now, &model, estimate_tokens_from_chars(prompt_chars));
        core.emit(now, sent_event);
        core.set_state(now, SessionState::Streaming { request });
        heartbeat.set_awaiting_response(now, true);
        None
    }

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
                    // WebSocket Ping only: the Realtime API has no application ping.
                    if let Err(error) = socket.send(Message::Ping(Default::default())).await {
                        return Some(self.on_socket_error(core, &error));
                    }
                    heartbeat.on_ping_sent(now);
                }
                HeartbeatAction::Missed { waited } => core.emit(
                    now,
                    EventKind::HeartbeatMissed {
                        waited_us: micros(waited),
                    },
                ),
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
                    return Some(self.on_dropped(core, now, 1006, &reason));
                }
            }
        }
        None
    }

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
        let reason = format!("no `response.done` within {:.0} s", limit.as_secs_f64());
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
        let cancel = ClientEvent::ResponseCancel { response_id: None };
        if let Err(error) = self.send_event(core, socket, now, &cancel).await {
            return Some(self.on_socket_error(core, &error));
        }
        None
    }

    async fn on_message(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        message: Message,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        heartbeat.on_received(now);
        match message {
            Message::Text(text) => {
                self.on_text(core, socket, text.as_str(), heartbeat, now)
                    .await
            }
            Message::Binary(bytes) => {
                // The Realtime API sends JSON in text frames; read a binary one as UTF-8 JSON.
                core.tap_wire(now, Direction::FromRelay, Wire::Binary(&bytes));
                match std::str::from_utf8(&bytes) {
                    Ok(text) => self.on_text(core, socket, text, heartbeat, now).await,
                    Err(_) => {
                        core.emit(
                            now,
                            EventKind::UnknownFrame {
                                frame_type: format!("binary ({} bytes)", bytes.len()),
                            },
                        );
                        None
                    }
                }
            }
            Message::Pong(_) => {
                if let Some(rtt) = heartbeat.on_pong(now) {
                    core.emit(
                        now,
                        EventKind::Pong {
                            rtt_us: micros(rtt),
                        },
                    );
                }
                None
            }
            // tungstenite answers Pings by itself.
            Message::Ping(_) | Message::Frame(_) => None,
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(CloseFrame { code, reason }) => (u16::from(code), reason.to_string()),
                    None => (1005, String::new()),
                };
                Some(self.on_dropped(core, now, code, &reason))
            }
        }
    }

    async fn on_text(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        text: &str,
        heartbeat: &mut Heartbeat,
        now: Duration,
    ) -> Option<End> {
        core.tap_wire(now, Direction::FromRelay, Wire::Text(text));
        let mut derived = Vec::new();
        let inbound = self.decoder.on_text(now, text, &mut |k| derived.push(k));
        for kind in derived {
            if let EventKind::Chunk { text, .. } = &kind {
                core.workload.on_text(text);
            }
            core.derived(now, kind);
        }
        match inbound {
            RealtimeInbound::Nothing | RealtimeInbound::Text | RealtimeInbound::Error => None,
            RealtimeInbound::OutputItem { item_id } => {
                if !self.turn_under_way {
                    self.probe_items.push(item_id);
                }
                None
            }
            RealtimeInbound::ResponseDone => {
                core.workload.on_done();
                heartbeat.set_awaiting_response(now, false);
                core.set_state(now, SessionState::Open);
                if self.turn_under_way {
                    // The reply is an item on the server too.
                    self.items_sent += 1;
                }
                self.forget_probe_items(core, socket, now).await
            }
            RealtimeInbound::ResponseFailed { wait } => {
                core.workload.on_failed();
                heartbeat.set_awaiting_response(now, false);
                if let Some(slow_down) = wait {
                    let wait = slow_down.wait();
                    core.workload.defer_until(now + wait);
                    core.rate_limited(now, wait, slow_down.cause);
                }
                core.set_state(now, SessionState::Open);
                self.forget_probe_items(core, socket, now).await
            }
            RealtimeInbound::Fatal { reason } => {
                core.workload.on_failed();
                heartbeat.set_awaiting_response(now, false);
                // The close that should follow says the same; wait briefly for it.
                self.fatal = Some(reason.clone());
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "configuration failure".into(),
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
                        reason: reason.clone(),
                        requested: true,
                    },
                );
                Some(End::Fatal(format!(
                    "the Realtime endpoint refused this configuration: {reason}"
                )))
            }
        }
    }

    /// Deletes the items of the probe just over, so the conversation stays small.
    async fn forget_probe_items(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        now: Duration,
    ) -> Option<End> {
        for item_id in std::mem::take(&mut self.probe_items) {
            let delete = ClientEvent::ConversationItemDelete { item_id };
            if let Err(error) = self.send_event(core, socket, now, &delete).await {
                return Some(self.on_socket_error(core, &error));
            }
        }
        None
    }

    fn on_socket_error(
        &mut self,
        core: &mut Core,
        error: &tokio_tungstenite::tungstenite::Error,
    ) -> End {
        use tokio_tungstenite::tungstenite::Error;
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        let now = core.clock.now();
        let (code, reason) = match error {
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
            | Error::ConnectionClosed
            | Error::AlreadyClosed => {
                return self.on_dropped(core, now, 1006, "connection ended without a close frame");
            }
            Error::Capacity(e) => (1009, format!("refused a message over the size limit ({e})")),
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

    /// The connection ended without us asking: fails the response under way, reports the
    /// close, and says whether to retry (not after 3000/4000 or 1008: a configuration failure).
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
        let configuration = match code {
            CLOSE_INVALID_API_KEY => Some("invalid_api_key: check the key"),
            CLOSE_BETA_SHAPE_DISABLED => Some(
                "beta_api_shape_disabled: this endpoint speaks the GA shape only (no OpenAI-Beta header)",
            ),
            1008 => Some("policy violation: usually the key"),
            _ => None,
        };
        if let Some(what) = configuration {
            let said = self
                .fatal
                .take()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            return End::Fatal(format!(
                "the Realtime endpoint closed with {code} after the upgrade: {what}{said}; not retried"
            ));
        }
        if let Some(reason) = self.fatal.take() {
            return End::Fatal(reason);
        }
        End::Retry {
            cause,
            retry_after: None,
        }
    }

    async fn on_command(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        command: Option<SessionCommand>,
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
                    let cancel = ClientEvent::ResponseCancel { response_id: None };
                    if let Err(error) = self.send_event(core, socket, now, &cancel).await {
                        return Some(self.on_socket_error(core, &error));
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

    /// Closes with 1000 and waits briefly for the server's answer.
    async fn close_gracefully(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        now: Duration,
        reason: &str,
        cut_response: bool,
    ) {
        if let Some(failed) = self.decoder.fail(ErrorKind::Other, reason.to_owned()) {
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

impl Transport for RealtimeTransport {
    async fn connect_and_serve(&mut self, core: &mut Core, attempt: u32) -> End {
        let socket = match self.connect(core, attempt).await {
            Ok(socket) => socket,
            Err(end) => return end,
        };
        core.flush().await;
        self.serve(core, socket).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn decode(d: &mut RealtimeDecoder, at: u64, text: &str) -> (RealtimeInbound, Vec<EventKind>) {
        let mut events = Vec::new();
        let inbound = d.on_text(ms(at), text, &mut |e| events.push(e));
        (inbound, events)
    }

    #[test]
    fn a_response_with_cached_tokens() {
        let mut d = RealtimeDecoder::new();
        d.request_sent(ms(0), "gpt-realtime", 3);
        decode(
            &mut d,
            10,
            r#"{"type":"response.created","response":{"id":"r"}}"#,
        );
        let (i, e) = decode(
            &mut d,
            150,
            r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
        );
        assert_eq!(i, RealtimeInbound::Text);
        assert_eq!(
            e[0],
            EventKind::FirstToken {
                request: 1,
                ttft_us: 150_000
            }
        );
        let (i, e) = decode(
            &mut d,
            200,
            r#"{"type":"response.done","response":{"status":"completed","usage":{"input_tokens":100,"output_tokens":5,"input_token_details":{"cached_tokens":64}}}}"#,
        );
        assert_eq!(i, RealtimeInbound::ResponseDone);
        let EventKind::Done {
            tokens,
            finish_reason,
            ..
        } = &e[0]
        else {
            panic!("{e:?}")
        };
        assert_eq!(
            (tokens.input, tokens.cached_input, tokens.output),
            (100, 64, 5)
        );
        assert_eq!(finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn a_bad_key_error_is_fatal() {
        let mut d = RealtimeDecoder::new();
        let (i, e) = decode(
            &mut d,
            0,
            r#"{"type":"error","error":{"type":"invalid_request_error","code":"invalid_api_key","message":"Incorrect API key provided"}}"#,
        );
        assert!(matches!(i, RealtimeInbound::Fatal { .. }));
        assert!(matches!(
            e[0],
            EventKind::Error {
                kind: ErrorKind::Auth,
                retryable: false,
                ..
            }
        ));
    }

    #[test]
    fn an_error_after_the_response_started_does_not_fail_it() {
        let mut d = RealtimeDecoder::new();
        d.request_sent(ms(0), "m", 1);
        decode(&mut d, 1, r#"{"type":"response.created","response":{}}"#);
        let (i, _) = decode(
            &mut d,
            2,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"unknown parameter"}}"#,
        );
        assert_eq!(i, RealtimeInbound::Error);
        assert!(d.in_flight().is_some());
    }
}
