//! The shared HTTP streaming half, for every protocol that answers a POST with a streamed body
//! (openai-sse today): the pooled keep-alive client (reqwest, rustls), the check that stands
//! for "connecting" (the codec's check URL with the key: it proves the relay is reachable and
//! the key good, and warms the pool; 404 and 405 count as reachable), requests as the workload
//! asks, the reference client's retries (`retry`), and drops: a network failure, a stream cut
//! before its terminal mark, or a stream silent for `dead_after` (SSE has no heartbeat) is a
//! drop and the session reconnects with backoff, as a WebSocket session does.
//!
//! The tap sees the request bodies (to the relay), each answer's status (as `Upgrade`), and
//! what the codec's decoder consumed of each body, in order: every event's data (with its
//! `event:` name when it has one), events the framing refused, and the body's end; a replay
//! feeds those to the same decoder. The headers that matter (rate limits) the session reports
//! itself (`RateLimitStatus`), like the responses it ends itself (a cancel).

use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap};
use tokio::sync::mpsc;

use crate::session::connect::retry_after_from_headers;
use crate::session::driver::{self, Core, End, Transport};
use crate::session::event::micros;
use crate::session::handle::{RunClock, SessionCommand, SessionHandle};
use crate::session::tap::{Direction, Wire};
use crate::session::workload::Outgoing;
use crate::session::{ErrorKind, EventKind, RequestId, SessionSpec, SessionState};
use crate::transport::http_stream::codec::{
    Action, HttpFailure, HttpStreamCodec, SseInbound, StreamRequest,
};
use crate::transport::http_stream::retry::{MAX_RETRIES, retry_delay};

/// Error bodies are read up to this size.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How long an error body may take to arrive.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a session task speaking `codec` over HTTP streams.
pub(crate) fn spawn<C: HttpStreamCodec>(
    spec: SessionSpec,
    clock: RunClock,
    events: crate::session::EventSender,
    codec: C,
) -> SessionHandle {
    let (tx, rx) = mpsc::channel(64);
    let id = spec.info.id;
    let transport = HttpStreamTransport::new(codec);
    let core = Core::new(spec, clock, events, rx);
    let task = tokio::spawn(driver::run(Box::new(core), Box::new(transport)));
    SessionHandle {
        id,
        commands: tx,
        task,
    }
}

/// A request to send again after a retryable status.
struct PendingRetry {
    outgoing: Outgoing,
    retries: u32,
    due: Duration,
}

/// A non-2xx answer to a request, as `http_failure` takes it.
struct Failed<'a> {
    request: RequestId,
    status: u16,
    headers: &'a HeaderMap,
    body: &'a [u8],
    model: &'a str,
}

/// The relay's explanation of a failed answer (`EventKind::RelayError`), and the action its
/// class asks for in place of the codec's: `Stop` for a spent balance or key quota, `Fail`
/// (no retry, the session goes on) for a model no channel serves.
fn relay_error(
    request: RequestId,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    model: &str,
    action: Action,
) -> (EventKind, Action) {
    use crate::account::{ErrorClass, RelayError, errors};
    let class = errors::classify(status, body);
    let action = match class {
        ErrorClass::KeyQuotaUsedUp | ErrorClass::BalanceTooLow => Action::Stop,
        ErrorClass::NoChannel => Action::Fail,
        _ => action,
    };
    let event = EventKind::RelayError(Box::new(RelayError {
        request: Some(request),
        class,
        status: Some(status),
        relay_request_id: errors::request_id(headers, body),
        model: (!model.is_empty()).then(|| model.to_owned()),
    }));
    (event, action)
}

/// The relay's explanation of an error event mid-stream, and whether it ends the session
/// (the codec's word, or a spent balance or key quota).
fn stream_relay_error(
    request: RequestId,
    kind: ErrorKind,
    message: &str,
    relay_request_id: Option<&str>,
    model: &str,
    fatal: bool,
) -> (EventKind, bool) {
    use crate::account::{ErrorClass, RelayError, errors};
    let class = errors::classify_message(kind, message);
    let fatal = fatal
        || matches!(
            class,
            ErrorClass::KeyQuotaUsedUp | ErrorClass::BalanceTooLow
        );
    let event = EventKind::RelayError(Box::new(RelayError {
        request: Some(request),
        class,
        status: None,
        relay_request_id: relay_request_id
            .map(str::to_owned)
            .or_else(|| errors::request_id_in_text(message)),
        model: (!model.is_empty()).then(|| model.to_owned()),
    }));
    (event, fatal)
}

/// One session's HTTP streams: the codec, the pooled client and the retry waiting.
struct HttpStreamTransport<C> {
    codec: C,
    /// The pooled client; dropped (and its connections with it) on a drop or a reconnect.
    client: Option<reqwest::Client>,
    retry: Option<PendingRetry>,
    /// The events of one piece of the body, handed over once the decoder is done with it
    /// (kept: no allocation per chunk).
    derived: Vec<EventKind>,
}

/// How one exchange ended.
enum Exchange {
    /// The request is over (done, failed, or scheduled for a retry); the session goes on.
    Finished,
    /// The connection (or the session) ended.
    End(End),
}

/// What a command during a request asks for.
enum DuringRequest {
    Continue,
    Cancelled,
    End(End),
}

impl<C: HttpStreamCodec> HttpStreamTransport<C> {
    fn new(codec: C) -> Self {
        Self {
            codec,
            client: None,
            retry: None,
            derived: Vec::new(),
        }
    }

    fn client(&mut self, core: &Core) -> Result<reqwest::Client, String> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder();
        if let Some(resolver) = &core.spec.resolver {
            builder = builder.dns_resolver(std::sync::Arc::new(resolver.clone()));
        }
        let client = builder
            .connect_timeout(core.spec.timing.handshake_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            .tcp_nodelay(true)
            .user_agent(concat!("relaytop/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// The request due now: a retry first, then the workload's; each takes a send slot of
    /// the provider's limits, when it has any.
    fn take_due(&mut self, core: &mut Core, now: Duration) -> Option<(Outgoing, u32)> {
        if let Some(retry) = &self.retry {
            if retry.due <= now && core.take_send_slot(now) {
                let retry = self.retry.take()?;
                return Some((retry.outgoing, retry.retries));
            }
            return None;
        }
        if !core.workload.is_due(now) || !core.take_send_slot(now) {
            return None;
        }
        core.workload.take_due(now).map(|o| (o, 0))
    }

    /// The cut request, the close this client asked for, and a fresh pool next time.
    fn close_requested(&mut self, core: &mut Core, reason: &str, cut_response: bool) {
        let now = core.clock.now();
        if let Some(failed) = self.codec.fail(ErrorKind::Other, reason.to_owned()) {
            core.workload.on_failed();
            if cut_response {
                core.emit(now, failed);
            }
        }
        self.retry = None;
        self.client = None;
        core.emit(
            now,
            EventKind::Closed {
                code: 1000,
                reason: reason.to_owned(),
                requested: true,
            },
        );
    }

    /// The connection failed under a request (or was found dead): a drop.
    fn dropped(&mut self, core: &mut Core, kind: ErrorKind, message: String) -> End {
        let now = core.clock.now();
        tracing::info!(session = %core.spec.info.name, %message, "stream dropped");
        core.tap_wire(
            now,
            Direction::FromRelay,
            Wire::Close {
                code: 1006,
                reason: &message,
            },
        );
        if let Some(failed) = self.codec.fail(kind, message.clone()) {
            core.emit(now, failed);
            core.workload.on_failed();
        }
        // A cut stream is said by its failed request and the close, as a WebSocket drop
        // mid-response is: the same fault counts the same in every protocol.
        if kind != ErrorKind::Cut {
            core.emit(
                now,
                EventKind::Error {
                    kind,
                    message: message.clone(),
                    retryable: true,
                    retry_after_ms: None,
                },
            );
        }
        core.emit(
            now,
            EventKind::Closed {
                code: 1006,
                reason: message.clone(),
                requested: false,
            },
        );
        self.client = None;
        End::Retry {
            cause: message,
            retry_after: None,
        }
    }

    fn on_command(&mut self, core: &mut Core, command: Option<SessionCommand>) -> DuringRequest {
        let now = core.clock.now();
        match command {
            None | Some(SessionCommand::Close) => {
                self.close_requested(core, "closed by user", false);
                DuringRequest::End(End::Closed)
            }
            Some(SessionCommand::ReconnectNow) => {
                self.close_requested(core, "reconnect asked by user", true);
                DuringRequest::End(End::Reconnect)
            }
            Some(SessionCommand::Cancel) => {
                if self.codec.in_flight().is_none() {
                    return DuringRequest::Continue;
                }
                let mut done = Vec::new();
                self.codec.cancel(now, &mut |k| done.push(k));
                for kind in done {
                    core.emit(now, kind);
                }
                core.workload.on_done();
                core.set_state(now, SessionState::Open);
                DuringRequest::Cancelled
            }
            // Chat turns, requests, transcriptions and history changes: the core queues them
            // (and says when it cannot).
            Some(command) => {
                core.queue(now, command);
                DuringRequest::Continue
            }
        }
    }

    /// The codec's check with the key: the connection's handshake.
    async fn open(&mut self, core: &mut Core, attempt: u32) -> Result<(), End> {
        // The decoder reads each event's data with the key scrubbed, as a replay reads it.
        self.codec.decoder_mut().set_scrub(core.scrub().cloned());
        let client = match self.client(core) {
            Ok(client) => client,
            Err(message) => return Err(End::Fatal(message)),
        };
        let started = core.clock.now();
        let mut request = client
            .get(self.codec.check_url())
            .timeout(core.spec.timing.handshake_timeout);
        if let Some((name, value)) = self.codec.auth() {
            request = request.header(name, value.clone());
        }
        for (name, value) in self.codec.extra_headers() {
            request = request.header(name, value.clone());
        }
        let check = async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = if response.status().is_success() {
                Vec::new()
            } else {
                read_bounded(response).await
            };
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        let Some(answer) = core.wait_offline(check).await else {
            return Err(End::Closed);
        };
        let now = core.clock.now();
        let (status, headers, body) = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let (kind, message) = describe_error(error, core.spec.timing.handshake_timeout);
                return Err(core.connect_failed(now, kind, message, true, None));
            }
        };
        core.tap_wire(now, Direction::FromRelay, Wire::Upgrade { status });
        // 404/405: a relay without the models route is still a reachable relay.
        if (200..300).contains(&status) || matches!(status, 404 | 405) {
            core.connected(now, attempt, now.saturating_sub(started));
            core.flush().await;
            return Ok(());
        }
        let HttpFailure {
            kind,
            action,
            message,
        } = self.codec.classify(status, &headers, &body, true);
        // The relay's words on the refused check: its class and request id (the model has
        // not been asked for yet, so a missing channel is not the check's to say).
        let class = crate::account::errors::classify(status, &body);
        if !matches!(action, Action::Fail) && class != crate::account::ErrorClass::NoChannel {
            core.emit(
                now,
                EventKind::RelayError(Box::new(crate::account::RelayError {
                    request: None,
                    class,
                    status: Some(status),
                    relay_request_id: crate::account::errors::request_id(&headers, &body),
                    model: None,
                })),
            );
        }
        let retry_after = retry_after_from_headers(&headers, SystemTime::now());
        Err(match action {
            Action::Stop => core.connect_failed(now, kind, message, false, None),
            // A 400 or the like on the models route: the relay answers; go on.
            Action::Fail => {
                core.connected(now, attempt, now.saturating_sub(started));
                core.flush().await;
                return Ok(());
            }
            Action::Retry => core.connect_failed(now, kind, message, true, retry_after),
        })
    }

    async fn serve(&mut self, core: &mut Core) -> End {
        loop {
            let now = core.clock.now();
            if let Some((outgoing, retries)) = self.take_due(core, now) {
                match self.exchange(core, outgoing, retries).await {
                    Exchange::Finished => continue,
                    Exchange::End(end) => return end,
                }
            }
            core.flush().await;
            if core.orphaned {
                return End::Closed;
            }
            let mut wake = core.workload.next_wake().unwrap_or(Duration::MAX);
            if let Some(retry) = &self.retry {
                wake = wake.min(retry.due);
            }
            let deadline = core.clock.instant_at(wake);
            tokio::select! {
                command = core.commands.recv() => {
                    if let DuringRequest::End(end) = self.on_command(core, command) {
                        core.flush().await;
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Sends one request and follows its answer to the end.
    async fn exchange(&mut self, core: &mut Core, outgoing: Outgoing, retries: u32) -> Exchange {
        let client = match self.client(core) {
            Ok(client) => client,
            Err(message) => return Exchange::End(End::Fatal(message)),
        };
        let now = core.clock.now();
        let timing = core.spec.timing;
        let StreamRequest {
            body,
            model,
            prompt_tokens_estimate,
        } = self.codec.request(&core.spec, &outgoing);
        core.tap_wire(now, Direction::ToRelay, Wire::Text(&body));
        let (request, sent_event) = self.codec.request_sent(now, &model, prompt_tokens_estimate);
        core.emit(now, sent_event);
        core.set_state(now, SessionState::Streaming { request });
        core.flush().await;
        let sent = now;

        let mut builder = client
            .post(self.codec.stream_url(&model).as_ref())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .body(body);
        if let Some((name, value)) = self.codec.auth() {
            builder = builder.header(name, value.clone());
        }
        for (name, value) in self.codec.extra_headers() {
            builder = builder.header(name, value.clone());
        }
        let send = builder.send();
        tokio::pin!(send);

        // The answer's head.
        let response = loop {
            let idle_at = sent + timing.dead_after;
            let give_up_at = sent + timing.response_timeout;
            let deadline = core.clock.instant_at(idle_at.min(give_up_at));
            tokio::select! {
                answer = &mut send => break answer,
                command = core.commands.recv() => match self.on_command(core, command) {
                    DuringRequest::Continue => {}
                    DuringRequest::Cancelled => return Exchange::Finished,
                    DuringRequest::End(end) => return Exchange::End(end),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let silent = core.clock.now().saturating_sub(sent);
                    return Exchange::End(self.dropped(
                        core,
                        ErrorKind::Timeout,
                        format!("no answer for {:.1} s (SSE has no heartbeat: a silent relay is dead)", silent.as_secs_f64()),
                    ));
                }
            }
        };
        let mut response = match response {
            Ok(response) => response,
            Err(error) => {
                let (kind, message) = describe_error(error, timing.handshake_timeout);
                return Exchange::End(self.dropped(core, kind, message));
            }
        };
        let now = core.clock.now();
        let status = response.status().as_u16();
        core.tap_wire(now, Direction::FromRelay, Wire::Upgrade { status });
        if let Some(limits) = self.codec.rate_limits(response.headers()) {
            core.emit(now, limits);
        }
        if !response.status().is_success() {
            let headers = response.headers().clone();
            let body = read_bounded(response).await;
            let failed = Failed {
                request,
                status,
                headers: &headers,
                body: &body,
                model: &model,
            };
            return self.http_failure(core, failed, outgoing, retries);
        }

        // The relay's request id, for an error the stream may still bring.
        let relay_request_id = crate::account::errors::request_id(response.headers(), b"");

        // The stream. Until the decoder sees an event, the body's first bytes are kept: a 200
        // whose body is no event stream at all is the relay's protocol error, not a drop.
        let mut last_received = now;
        let mut saw_event = false;
        let mut head: Vec<u8> = Vec::new();
        loop {
            let idle_at = last_received + timing.dead_after;
            let give_up_at = sent + timing.response_timeout;
            let deadline = core.clock.instant_at(idle_at.min(give_up_at));
            tokio::select! {
                chunk = response.chunk() => {
                    let now = core.clock.now();
                    last_received = now;
                    let mut derived = std::mem::take(&mut self.derived);
                    let inbound = match chunk {
                        Ok(Some(bytes)) => {
                            if !saw_event && head.len() < NOT_A_STREAM_HEAD {
                                let room = NOT_A_STREAM_HEAD - head.len();
                                head.extend_from_slice(&bytes[..bytes.len().min(room)]);
                            }
                            self.codec.on_bytes(
                                now,
                                &bytes,
                                &mut |k| derived.push(k),
                                &mut |wire| {
                                    saw_event |= is_event(&wire);
                                    core.tap_wire(now, Direction::FromRelay, wire)
                                },
                            )
                        }
                        Ok(None) => self.codec.on_end(
                            now,
                            &mut |k| derived.push(k),
                            &mut |wire| {
                                saw_event |= is_event(&wire);
                                core.tap_wire(now, Direction::FromRelay, wire)
                            },
                        ),
                        Err(error) => {
                            let (kind, message) = describe_error(error, timing.handshake_timeout);
                            return Exchange::End(self.dropped(core, kind, format!("the stream broke: {message}")));
                        }
                    };
                    for kind in derived.drain(..) {
                        if let EventKind::Chunk { text, .. } = &kind {
                            core.workload.on_text(text);
                        }
                        core.derived(now, kind);
                    }
                    self.derived = derived;
                    match inbound {
                        SseInbound::Nothing | SseInbound::Text => {}
                        SseInbound::ResponseDone => {
                            core.workload.on_done();
                            core.set_state(now, SessionState::Open);
                            return Exchange::Finished;
                        }
                        SseInbound::ResponseFailed { kind, message, fatal } => {
                            core.workload.on_failed();
                            // A mid-stream error in the relay's words (Anthropic's
                            // `overloaded_error`, a spent quota): its class and request id.
                            let (relay_error, fatal) = stream_relay_error(
                                request,
                                kind,
                                &message,
                                relay_request_id.as_deref(),
                                &model,
                                fatal,
                            );
                            core.emit(now, relay_error);
                            core.set_state(now, SessionState::Open);
                            if fatal {
                                return Exchange::End(End::Fatal(message));
                            }
                            if kind == ErrorKind::RateLimited {
                                let wait = self.codec.rate_limited_wait();
                                core.workload.defer_until(now + wait);
                            }
                            return Exchange::Finished;
                        }
                        SseInbound::StreamCut if !saw_event && !head.is_empty() => {
                            self.not_a_stream(core, now, status, &head);
                            return Exchange::Finished;
                        }
                        SseInbound::StreamCut => {
                            return Exchange::End(self.dropped(
                                core,
                                ErrorKind::Cut,
                                "the stream ended before the response finished".into(),
                            ));
                        }
                    }
                    core.flush().await;
                    if core.orphaned {
                        return Exchange::End(End::Closed);
                    }
                }
                command = core.commands.recv() => match self.on_command(core, command) {
                    DuringRequest::Continue => {}
                    DuringRequest::Cancelled => return Exchange::Finished,
                    DuringRequest::End(end) => return Exchange::End(end),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let now = core.clock.now();
                    if now >= give_up_at {
                        let reason = format!("no end of stream within {:.0} s", timing.response_timeout.as_secs_f64());
                        if let Some(failed) = self.codec.fail(ErrorKind::Timeout, reason.clone()) {
                            core.emit(now, failed);
                        }
                        core.workload.on_failed();
                        core.emit(now, EventKind::Error {
                            kind: ErrorKind::Timeout,
                            message: reason,
                            retryable: true,
                            retry_after_ms: None,
                        });
                        core.set_state(now, SessionState::Open);
                        return Exchange::Finished;
                    }
                    let silent = now.saturating_sub(last_received);
                    return Exchange::End(self.dropped(
                        core,
                        ErrorKind::Timeout,
                        format!("stream silent for {:.1} s (SSE has no heartbeat: a silent stream is dead)", silent.as_secs_f64()),
                    ));
                }
            }
        }
    }

    /// A 2xx answer whose whole body held no event (`{malformed json: ...`, an HTML page):
    /// the relay broke the protocol. The request fails as a protocol error and the body counts
    /// as malformed; the connection is fine, so the session goes on without a reconnect.
    fn not_a_stream(&mut self, core: &mut Core, now: Duration, status: u16, head: &[u8]) {
        let message = format!(
            "the relay answered {status} with a body that is not an event stream: {}",
            String::from_utf8_lossy(head).trim_end()
        );
        tracing::info!(session = %core.spec.info.name, %message, "not an event stream");
        if let Some(failed) = self.codec.fail(ErrorKind::Protocol, message.clone()) {
            core.emit(now, failed);
        }
        core.workload.on_failed();
        core.emit(
            now,
            EventKind::Malformed {
                reason: message.clone(),
            },
        );
        core.emit(
            now,
            EventKind::Error {
                kind: ErrorKind::Protocol,
                message,
                retryable: true,
                retry_after_ms: None,
            },
        );
        core.set_state(now, SessionState::Open);
    }

    /// A non-2xx answer to a request.
    fn http_failure(
        &mut self,
        core: &mut Core,
        failed: Failed<'_>,
        outgoing: Outgoing,
        retries: u32,
    ) -> Exchange {
        let Failed {
            request,
            status,
            headers,
            body,
            model,
        } = failed;
        let now = core.clock.now();
        let HttpFailure {
            kind,
            action,
            message,
        } = self.codec.classify(status, headers, body, false);
        // The relay's own words decide what its error reaches: a spent balance or key quota
        // stops the session (re-checked slowly), a missing channel fails only this model's
        // request.
        let (relay_error, action) = relay_error(request, status, headers, body, model, action);
        let server_says = retry_after_from_headers(headers, SystemTime::now());
        let will_retry = action == Action::Retry && retries < MAX_RETRIES;
        let jitter = rand::Rng::random::<f64>(&mut core.rng);
        let delay = retry_delay(retries, server_says, jitter);
        if let Some(failed) = self.codec.fail(kind, message.clone()) {
            core.emit(now, failed);
        }
        core.workload.on_failed();
        core.emit(
            now,
            EventKind::Error {
                kind,
                message: message.clone(),
                retryable: action == Action::Retry,
                retry_after_ms: (action == Action::Retry).then(|| micros(delay) / 1000),
            },
        );
        core.emit(now, relay_error);
        core.set_state(now, SessionState::Open);
        tracing::debug!(session = %core.spec.info.name, request, status, ?action, "request failed");
        match action {
            Action::Stop => Exchange::End(End::Fatal(message)),
            Action::Fail => Exchange::Finished,
            Action::Retry => {
                if kind == ErrorKind::RateLimited {
                    core.emit(
                        now,
                        EventKind::RateLimited {
                            wait_ms: micros(delay) / 1000,
                            cause: message,
                        },
                    );
                }
                if will_retry {
                    self.retry = Some(PendingRetry {
                        outgoing,
                        retries: retries + 1,
                        due: now + delay,
                    });
                } else {
                    core.workload.defer_until(now + delay);
                }
                Exchange::Finished
            }
        }
    }
}

impl<C: HttpStreamCodec> Transport for HttpStreamTransport<C> {
    async fn connect_and_serve(&mut self, core: &mut Core, attempt: u32) -> End {
        if let Err(end) = self.open(core, attempt).await {
            return end;
        }
        self.serve(core).await
    }
}

/// How many bytes of a body that is not an event stream its error quotes.
const NOT_A_STREAM_HEAD: usize = 80;

/// Whether the decoder consumed an event of the stream (not just its end).
fn is_event(wire: &Wire<'_>) -> bool {
    matches!(
        wire,
        Wire::Text(_) | Wire::SseEvent { .. } | Wire::SseRefused { .. }
    )
}

/// Reads an error body, up to `MAX_ERROR_BODY` bytes and `ERROR_BODY_TIMEOUT`.
async fn read_bounded(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = MAX_ERROR_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_TIMEOUT, read).await;
    body
}

/// The kind and a readable message of a client error (its causes included, its URL not).
fn describe_error(error: reqwest::Error, connect_timeout: Duration) -> (ErrorKind, String) {
    // The URL may hold a key (Gemini's `?key=`): it never reaches a message.
    let error = error.without_url();
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Network
    };
    let mut message = error_chain(&error);
    if error.is_connect() {
        message = format!("cannot connect: {message}");
    } else if error.is_timeout() {
        message = format!(
            "timed out (connect limit {:.0} s): {message}",
            connect_timeout.as_secs_f64()
        );
    }
    (kind, message)
}

/// An error and its causes, `: `-separated, without repeating itself.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
