//! The openai-sse session: streamed Chat Completions over a pooled keep-alive HTTP client
//! (reqwest, rustls), reported as the same `SessionEvent`s as relay/v1.
//!
//! Three parts, the first two pure and tested without a socket:
//! - `SseDecoder` turns a response body (bytes, or recorded event data in a replay) into
//!   events: time to first token at the first content delta, chunks, `done` with the usage
//!   chunk's tokens (cached ones and `usage.cost` included) or an estimate, mid-stream errors.
//! - `classify` and `retry_delay`: the reference client policy of spec/ADAPTERS.md (stop on
//!   a bad key and on `insufficient_quota`; retry 408, 409, 429 and 5xx up to twice, honouring
//!   `retry-after-ms`, then `Retry-After` up to 120 s, else 0.5 s × 2^n up to 8 s with jitter;
//!   `x-should-retry` overrides).
//! - The task: "connecting" is a `GET /v1/models` with the key (it proves the relay is
//!   reachable and the key good, and warms the pooled connection; a relay without that route
//!   answering 404 is fine). Requests then go out as the workload asks. A network failure, a
//!   stream cut before it finished, or a stream silent for `dead_after` (SSE has no heartbeat)
//!   is a drop: the session reconnects with backoff, as relay/v1 does.
//!
//! The tap sees the request bodies (to the relay), each response's status (as `Upgrade`),
//! and what `SseDecoder` consumed of each body, in order: every event's data (with its
//! `event:` name when it has one), events the framing refused, and the body's end; a replay
//! feeds those to `SseDecoder` again. The headers that matter (`x-ratelimit-*`) the session
//! reports itself (`RateLimitStatus`), like the responses it ends itself (a cancel).

use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use tokio::sync::mpsc;

use crate::protocol::openai_sse::{
    ApiError, ChatRequest, RateLimitHeaders, SseBuffer, StreamData, Usage, chat_completions_url,
    models_url, parse_error_body,
};
use crate::session::connect::{retry_after_from_headers, status_kind};
use crate::session::driver::{self, Core, End, Transport};
use crate::session::event::micros;
use crate::session::handle::{RunClock, SessionCommand, SessionHandle};
use crate::session::response::{ResponseTracker, estimate_tokens_from_chars};
use crate::session::tap::{Direction, Wire};
use crate::session::workload::Outgoing;
use crate::session::{ErrorKind, EventKind, RequestId, SessionSpec, SessionState};

/// Retries of one request after a retryable status (the reference client's default).
pub const MAX_RETRIES: u32 = 2;
/// A server's `retry-after-ms`/`Retry-After` is honoured up to this long.
pub const MAX_SERVER_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Error bodies are read up to this size.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How long an error body may take to arrive.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------------------------------
// The policy
// ------------------------------------------------------------------------------------------

/// What to do about a failed HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Retrying cannot help: stop the session (a bad key, no quota).
    Stop,
    /// Retry the same request after `retry_delay`.
    Retry,
    /// The request failed; the session goes on.
    Fail,
}

/// Classifies a non-2xx answer by its status, its error body and `x-should-retry`.
pub fn classify(
    status: u16,
    error: Option<&ApiError<'_>>,
    should_retry: Option<bool>,
) -> (ErrorKind, Action) {
    if status == 401 || error.is_some_and(|e| e.is_bad_key()) {
        return (ErrorKind::Auth, Action::Stop);
    }
    if status == 403 {
        return (ErrorKind::Auth, Action::Stop);
    }
    if error.is_some_and(|e| e.is_insufficient_quota()) {
        return (ErrorKind::RateLimited, Action::Stop);
    }
    let kind = status_kind(status);
    let action = match should_retry {
        Some(true) => Action::Retry,
        Some(false) => Action::Fail,
        None if matches!(status, 408 | 409 | 429 | 500..=599) => Action::Retry,
        None => Action::Fail,
    };
    (kind, action)
}

/// The wait before retry number `retries_done + 1` of a request: the server's word when it is
/// at most 120 s, else 0.5 s × 2^retries_done, at most 8 s, less up to 25 % jitter
/// (`jitter` in `[0, 1)`).
pub fn retry_delay(retries_done: u32, server_says: Option<Duration>, jitter: f64) -> Duration {
    if let Some(wait) = server_says
        && wait <= MAX_SERVER_RETRY_AFTER
    {
        return wait;
    }
    let seconds = (0.5 * 2f64.powi(retries_done.min(16) as i32)).min(8.0);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::from_secs_f64(seconds * (1.0 - 0.25 * jitter))
}

/// `x-should-retry: true|false`.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The kind of a mid-stream (or body) error, from its type and code.
pub fn error_kind(error: &ApiError<'_>) -> ErrorKind {
    if error.is_bad_key() {
        return ErrorKind::Auth;
    }
    let code = error.code.as_deref().unwrap_or("");
    let kind = error.kind.as_deref().unwrap_or("");
    if error.is_insufficient_quota()
        || code.contains("rate_limit")
        || kind.contains("rate_limit")
        || matches!(kind, "requests" | "tokens")
    {
        ErrorKind::RateLimited
    } else if code.contains("overloaded") || kind.contains("overloaded") {
        ErrorKind::Overloaded
    } else if kind == "invalid_request_error" {
        ErrorKind::InvalidRequest
    } else {
        ErrorKind::Upstream
    }
}

/// The `RateLimitStatus` event of a response's headers, when it has any `x-ratelimit-*`.
pub fn rate_limit_event(headers: &HeaderMap) -> Option<EventKind> {
    let r = RateLimitHeaders::read(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    (!r.is_empty()).then_some(EventKind::RateLimitStatus {
        requests_limit: r.requests_limit,
        requests_remaining: r.requests_remaining,
        requests_reset_ms: r.requests_reset_ms,
        tokens_limit: r.tokens_limit,
        tokens_remaining: r.tokens_remaining,
        tokens_reset_ms: r.tokens_reset_ms,
    })
}

// ------------------------------------------------------------------------------------------
// The decoder
// ------------------------------------------------------------------------------------------

/// What a piece of the response body meant for the session, beyond the events it produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseInbound {
    Nothing,
    /// Text of the response under way.
    Text,
    /// The response completed (`[DONE]`, or the end of a stream that had finished).
    ResponseDone,
    /// An error event failed the response under way.
    ResponseFailed {
        kind: ErrorKind,
        message: String,
        /// The error says the key is bad, or the quota is gone: retrying cannot help.
        fatal: bool,
    },
    /// The body ended before the response finished (a broken stream).
    StreamCut,
}

impl SseInbound {
    /// The weightier of two outcomes of one batch of bytes.
    fn max(self, other: SseInbound) -> SseInbound {
        let weight = |i: &SseInbound| match i {
            SseInbound::Nothing => 0,
            SseInbound::Text => 1,
            _ => 2,
        };
        if weight(&other) > weight(&self) {
            other
        } else {
            self
        }
    }
}

/// The response under way, apart from the SSE framing.
#[derive(Clone, Debug, Default)]
struct ResponseState {
    tracker: ResponseTracker,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    /// `[DONE]` or an error ended the response; later events are ignored.
    over: bool,
}

impl ResponseState {
    fn on_event(
        &mut self,
        now: Duration,
        event: Option<&str>,
        data: &str,
        out: &mut impl FnMut(EventKind),
    ) -> SseInbound {
        if self.over {
            return SseInbound::Nothing;
        }
        let parsed = match StreamData::parse(event, data) {
            Ok(parsed) => parsed,
            Err(error) => {
                out(EventKind::Malformed {
                    reason: error.to_string(),
                });
                return SseInbound::Nothing;
            }
        };
        match parsed {
            StreamData::Done => self.finish(now, None, out),
            StreamData::Chunk(chunk) => {
                if let Some(usage) = chunk.usage {
                    self.usage = Some(usage);
                }
                if let Some(reason) = chunk.finish_reason {
                    self.finish_reason = Some(reason.into_owned());
                }
                match chunk.content {
                    Some(text) if !text.is_empty() => {
                        self.tracker.on_chunk(now, &text, &mut *out);
                        SseInbound::Text
                    }
                    _ => SseInbound::Nothing,
                }
            }
            StreamData::Error(error) => {
                self.over = true;
                let kind = error_kind(&error);
                let message = error.summary();
                let fatal = error.is_bad_key() || error.is_insufficient_quota();
                if let Some(failed) = self.tracker.fail(kind, message.clone()) {
                    out(failed);
                }
                out(EventKind::Error {
                    kind,
                    message: message.clone(),
                    retryable: !fatal && kind != ErrorKind::InvalidRequest,
                    retry_after_ms: None,
                });
                SseInbound::ResponseFailed {
                    kind,
                    message,
                    fatal,
                }
            }
        }
    }

    /// The response completed at `now` (`finish_reason` overrides the stream's own).
    fn finish(
        &mut self,
        now: Duration,
        finish_reason: Option<&str>,
        out: &mut impl FnMut(EventKind),
    ) -> SseInbound {
        self.over = true;
        let usage = self.usage.take();
        let reason = finish_reason.or(self.finish_reason.as_deref());
        let relay_usage = usage.map(|u| crate::protocol::relay_v1::Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        });
        let Some(mut done) = self.tracker.on_done(now, relay_usage, reason) else {
            return SseInbound::Nothing;
        };
        if let (
            EventKind::Done {
                tokens,
                reported_cost_usd,
                ..
            },
            Some(usage),
        ) = (&mut done, usage)
        {
            tokens.cached_input = usage.cached_tokens.min(usage.prompt_tokens);
            *reported_cost_usd = usage.cost_usd;
        }
        out(done);
        SseInbound::ResponseDone
    }
}

/// Decodes openai-sse response bodies into session events. Survives reconnects (request
/// numbers go on). Bounded: one event may hold at most 1 MiB (`MAX_EVENT_BYTES`).
///
/// Live, it takes the body's bytes (`on_bytes`, `on_end`) and shows its `tap` what it consumed,
/// in order: each event's data (`Wire::Text`, or `Wire::SseEvent` when the event has a name),
/// each event the framing refused (`Wire::SseRefused`), and the end of the body
/// (`Wire::BodyEnd`). A replay hands those back (`on_event`, `on_refused`, `on_body_end`) and
/// gets the same events.
#[derive(Clone, Debug, Default)]
pub struct SseDecoder {
    buffer: SseBuffer,
    state: ResponseState,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The request under way, if any.
    pub fn in_flight(&self) -> Option<RequestId> {
        self.state.tracker.in_flight()
    }

    /// When the request under way was sent.
    pub fn sent_at(&self) -> Option<Duration> {
        self.state.tracker.sent_at()
    }

    /// A request went out at `now`: its number and its `RequestSent` event.
    pub fn request_sent(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind) {
        self.buffer = SseBuffer::new();
        self.state.usage = None;
        self.state.finish_reason = None;
        self.state.over = false;
        self.state.tracker.begin(now, model, prompt_tokens_estimate)
    }

    /// The request under way failed for a reason outside the body (a status, a drop).
    pub fn fail(&mut self, kind: ErrorKind, reason: impl Into<String>) -> Option<EventKind> {
        self.state.over = true;
        self.state.tracker.fail(kind, reason)
    }

    /// The user cancelled the response under way: it is over, with the text so far
    /// (its tokens estimated: the usage chunk never comes). Nothing on the wire says so: the
    /// session reports the `done` itself (and a replay ends the decoder's copy on it).
    pub fn cancel(&mut self, now: Duration, out: &mut impl FnMut(EventKind)) -> SseInbound {
        self.state.usage = None;
        self.state.finish(now, Some("cancelled"), out)
    }

    /// Bytes of the response body arrived at `now`. `tap` sees what the decoder consumed.
    pub fn on_bytes(
        &mut self,
        now: Duration,
        bytes: &[u8],
        out: &mut impl FnMut(EventKind),
        tap: &mut impl FnMut(Wire<'_>),
    ) -> SseInbound {
        self.buffer.push(bytes);
        self.drain(now, out, tap)
    }

    /// The body ended at `now`.
    pub fn on_end(
        &mut self,
        now: Duration,
        out: &mut impl FnMut(EventKind),
        tap: &mut impl FnMut(Wire<'_>),
    ) -> SseInbound {
        self.buffer.finish();
        let inbound = self.drain(now, out, tap);
        tap(Wire::BodyEnd);
        inbound.max(self.on_body_end(now, out))
    }

    /// One event's data (`event` is its `event:` name): the same events as live. A replay
    /// calls it for each recorded one.
    pub fn on_event(
        &mut self,
        now: Duration,
        event: Option<&str>,
        data: &str,
        out: &mut impl FnMut(EventKind),
    ) -> SseInbound {
        self.state.on_event(now, event, data, out)
    }

    /// An event the framing refused (over 1 MiB, not UTF-8), and why.
    pub fn on_refused(&mut self, reason: &str, out: &mut impl FnMut(EventKind)) {
        out(EventKind::Malformed {
            reason: reason.to_owned(),
        });
    }

    /// The body ended at `now`, after every event in it: a response that finished without
    /// `[DONE]` is done, one that did not is cut. A replay calls it for the recorded end.
    pub fn on_body_end(&mut self, now: Duration, out: &mut impl FnMut(EventKind)) -> SseInbound {
        if self.state.over || self.state.tracker.in_flight().is_none() {
            return SseInbound::Nothing;
        }
        if self.state.finish_reason.is_some() || self.state.usage.is_some() {
            // A relay that never sends `[DONE]`: the stream had finished all the same.
            return self.state.finish(now, None, out);
        }
        SseInbound::StreamCut
    }

    fn drain(
        &mut self,
        now: Duration,
        out: &mut impl FnMut(EventKind),
        tap: &mut impl FnMut(Wire<'_>),
    ) -> SseInbound {
        let mut inbound = SseInbound::Nothing;
        let SseDecoder { buffer, state } = self;
        while let Some(event) = buffer.next_event() {
            match event {
                Ok(event) => {
                    tap(match event.event {
                        Some(name) => Wire::SseEvent {
                            event: name,
                            data: &event.data,
                        },
                        None => Wire::Text(&event.data),
                    });
                    let this = state.on_event(now, event.event, &event.data, out);
                    inbound = inbound.max(this);
                }
                Err(error) => {
                    let reason = error.to_string();
                    tap(Wire::SseRefused { reason: &reason });
                    out(EventKind::Malformed { reason });
                }
            }
        }
        inbound
    }
}

// ------------------------------------------------------------------------------------------
// The task
// ------------------------------------------------------------------------------------------

/// Starts an openai-sse session task.
pub fn spawn(
    spec: SessionSpec,
    clock: RunClock,
    events: crate::session::EventSender,
) -> SessionHandle {
    let (tx, rx) = mpsc::channel(64);
    let id = spec.info.id;
    let transport = SseTransport::new(&spec);
    let core = Core::new(spec, clock, events, rx);
    let task = tokio::spawn(driver::run(core, transport));
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

struct SseTransport {
    chat_url: String,
    models_url: String,
    /// `Bearer KEY`, marked sensitive; built once.
    authorization: Option<HeaderValue>,
    /// The pooled client; dropped (and its connections with it) on a drop or a reconnect.
    client: Option<reqwest::Client>,
    decoder: SseDecoder,
    retry: Option<PendingRetry>,
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

impl SseTransport {
    fn new(spec: &SessionSpec) -> Self {
        let authorization = spec.api_key.as_ref().and_then(|key| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Self {
            chat_url: chat_completions_url(&spec.info.url),
            models_url: models_url(&spec.info.url),
            authorization,
            client: None,
            decoder: SseDecoder::new(),
            retry: None,
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
        if let Some(failed) = self.decoder.fail(ErrorKind::Other, reason.to_owned()) {
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
        if let Some(failed) = self.decoder.fail(kind, message.clone()) {
            core.emit(now, failed);
            core.workload.on_failed();
        }
        core.emit(
            now,
            EventKind::Error {
                kind,
                message: message.clone(),
                retryable: true,
                retry_after_ms: None,
            },
        );
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
                if self.decoder.in_flight().is_none() {
                    return DuringRequest::Continue;
                }
                let mut done = Vec::new();
                self.decoder.cancel(now, &mut |k| done.push(k));
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

    /// `GET /v1/models` with the key: the connection's handshake.
    async fn open(&mut self, core: &mut Core, attempt: u32) -> Result<(), End> {
        let client = match self.client(core) {
            Ok(client) => client,
            Err(message) => return Err(End::Fatal(message)),
        };
        let started = core.clock.now();
        let mut request = client
            .get(&self.models_url)
            .timeout(core.spec.timing.handshake_timeout);
        if let Some(auth) = &self.authorization {
            request = request.header(header::AUTHORIZATION, auth.clone());
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
                let (kind, message) = describe_error(&error, core.spec.timing.handshake_timeout);
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
        let error = parse_error_body(&body);
        let (kind, action) = classify(status, error.as_ref(), should_retry(&headers));
        let message = http_failure_message("GET /v1/models", status, error.as_ref(), &body);
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
        let prompt_chars: u64 = outgoing
            .messages
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        let model = core.spec.info.model.clone();
        let body =
            ChatRequest::streamed(&model, outgoing.messages.clone(), outgoing.max_tokens).to_json();
        core.tap_wire(now, Direction::ToRelay, Wire::Text(&body));
        let (request, sent_event) =
            self.decoder
                .request_sent(now, &model, estimate_tokens_from_chars(prompt_chars));
        core.emit(now, sent_event);
        core.set_state(now, SessionState::Streaming { request });
        core.flush().await;
        let sent = now;

        let mut builder = client
            .post(&self.chat_url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .body(body);
        if let Some(auth) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, auth.clone());
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
                let (kind, message) = describe_error(&error, timing.handshake_timeout);
                return Exchange::End(self.dropped(core, kind, message));
            }
        };
        let now = core.clock.now();
        let status = response.status().as_u16();
        core.tap_wire(now, Direction::FromRelay, Wire::Upgrade { status });
        if let Some(limits) = rate_limit_event(response.headers()) {
            core.emit(now, limits);
        }
        if !response.status().is_success() {
            let headers = response.headers().clone();
            let body = read_bounded(response).await;
            return self.http_failure(core, request, status, &headers, &body, outgoing, retries);
        }

        // The stream.
        let mut last_received = now;
        loop {
            let idle_at = last_received + timing.dead_after;
            let give_up_at = sent + timing.response_timeout;
            let deadline = core.clock.instant_at(idle_at.min(give_up_at));
            tokio::select! {
                chunk = response.chunk() => {
                    let now = core.clock.now();
                    last_received = now;
                    let mut derived = Vec::new();
                    let inbound = match chunk {
                        Ok(Some(bytes)) => self.decoder.on_bytes(
                            now,
                            &bytes,
                            &mut |k| derived.push(k),
                            &mut |wire| core.tap_wire(now, Direction::FromRelay, wire),
                        ),
                        Ok(None) => self.decoder.on_end(
                            now,
                            &mut |k| derived.push(k),
                            &mut |wire| core.tap_wire(now, Direction::FromRelay, wire),
                        ),
                        Err(error) => {
                            let (kind, message) = describe_error(&error, timing.handshake_timeout);
                            return Exchange::End(self.dropped(core, kind, format!("the stream broke: {message}")));
                        }
                    };
                    for kind in derived {
                        if let EventKind::Chunk { text, .. } = &kind {
                            core.workload.on_text(text);
                        }
                        core.derived(now, kind);
                    }
                    match inbound {
                        SseInbound::Nothing | SseInbound::Text => {}
                        SseInbound::ResponseDone => {
                            core.workload.on_done();
                            core.set_state(now, SessionState::Open);
                            return Exchange::Finished;
                        }
                        SseInbound::ResponseFailed { kind, message, fatal } => {
                            core.workload.on_failed();
                            core.set_state(now, SessionState::Open);
                            if fatal {
                                return Exchange::End(End::Fatal(message));
                            }
                            if kind == ErrorKind::RateLimited {
                                let wait = retry_delay(0, None, 0.0);
                                core.workload.defer_until(now + wait);
                            }
                            return Exchange::Finished;
                        }
                        SseInbound::StreamCut => {
                            return Exchange::End(self.dropped(
                                core,
                                ErrorKind::Network,
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
                        if let Some(failed) = self.decoder.fail(ErrorKind::Timeout, reason.clone()) {
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

    /// A non-2xx answer to a request.
    #[allow(clippy::too_many_arguments)]
    fn http_failure(
        &mut self,
        core: &mut Core,
        request: RequestId,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        outgoing: Outgoing,
        retries: u32,
    ) -> Exchange {
        let now = core.clock.now();
        let error = parse_error_body(body);
        let (kind, action) = classify(status, error.as_ref(), should_retry(headers));
        let message =
            http_failure_message("POST /v1/chat/completions", status, error.as_ref(), body);
        let server_says = retry_after_from_headers(headers, SystemTime::now());
        let will_retry = action == Action::Retry && retries < MAX_RETRIES;
        let jitter = rand::Rng::random::<f64>(&mut core.rng);
        let delay = retry_delay(retries, server_says, jitter);
        if let Some(failed) = self.decoder.fail(kind, message.clone()) {
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
        core.set_state(now, SessionState::Open);
        tracing::debug!(session = %core.spec.info.name, request, status, ?action, "request failed");
        match action {
            Action::Stop => Exchange::End(End::Fatal(message)),
            Action::Fail => Exchange::Finished,
            Action::Retry => {
                if matches!(kind, ErrorKind::RateLimited | ErrorKind::Overloaded) {
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

impl Transport for SseTransport {
    async fn connect_and_serve(&mut self, core: &mut Core, attempt: u32) -> End {
        if let Err(end) = self.open(core, attempt).await {
            return end;
        }
        self.serve(core).await
    }
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

/// `POST /v1/chat/completions answered 429: message (code)`.
fn http_failure_message(
    what: &str,
    status: u16,
    error: Option<&ApiError<'_>>,
    body: &[u8],
) -> String {
    let detail = match error {
        Some(error) => error.summary(),
        None => crate::session::connect::error_body_message(body),
    };
    format!("{what} answered {status}: {detail}")
}

/// The kind and a readable message of a client error (its causes included, its URL not).
fn describe_error(error: &reqwest::Error, connect_timeout: Duration) -> (ErrorKind, String) {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Network
    };
    let mut message = error_chain(error);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_reference_retry_policy() {
        assert_eq!(classify(401, None, None), (ErrorKind::Auth, Action::Stop));
        assert_eq!(classify(403, None, None), (ErrorKind::Auth, Action::Stop));
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(classify(status, None, None).1, Action::Retry, "{status}");
        }
        for status in [400, 404, 422] {
            assert_eq!(classify(status, None, None).1, Action::Fail, "{status}");
        }
        assert_eq!(classify(400, None, Some(true)).1, Action::Retry);
        assert_eq!(classify(503, None, Some(false)).1, Action::Fail);
        let quota = parse_error_body(
            br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert_eq!(
            classify(429, quota.as_ref(), Some(true)),
            (ErrorKind::RateLimited, Action::Stop),
            "no quota: never retried"
        );
        let bad_key = parse_error_body(
            br#"{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}"#,
        );
        assert_eq!(
            classify(500, bad_key.as_ref(), None),
            (ErrorKind::Auth, Action::Stop),
            "a relay's 500 for a bad key"
        );
    }

    #[test]
    fn retry_delays() {
        assert_eq!(retry_delay(0, None, 0.0), ms(500));
        assert_eq!(retry_delay(1, None, 0.0), ms(1000));
        assert_eq!(retry_delay(5, None, 0.0), ms(8000), "capped at 8 s");
        assert_eq!(retry_delay(0, None, 1.0), ms(375), "up to 25 % jitter");
        assert_eq!(retry_delay(0, Some(ms(1500)), 0.5), ms(1500));
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(600)), 0.0),
            ms(500),
            "over 120 s: the server's word is not taken"
        );
    }

    #[test]
    fn should_retry_header() {
        let mut h = HeaderMap::new();
        assert_eq!(should_retry(&h), None);
        h.insert("x-should-retry", HeaderValue::from_static("false"));
        assert_eq!(should_retry(&h), Some(false));
    }

    fn decode(d: &mut SseDecoder, at: u64, bytes: &[u8]) -> (SseInbound, Vec<EventKind>) {
        let mut events = Vec::new();
        let inbound = d.on_bytes(ms(at), bytes, &mut |e| events.push(e), &mut |_| {});
        (inbound, events)
    }

    #[test]
    fn ttft_is_the_first_content_delta_not_the_role_delta() {
        let mut d = SseDecoder::new();
        d.request_sent(ms(0), "gpt-4o-mini", 3);
        let (i, e) = decode(
            &mut d,
            50,
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        );
        assert_eq!(i, SseInbound::Nothing);
        assert!(e.is_empty(), "{e:?}");
        let (i, e) = decode(
            &mut d,
            200,
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        );
        assert_eq!(i, SseInbound::Text);
        assert_eq!(
            e[0],
            EventKind::FirstToken {
                request: 1,
                ttft_us: 200_000
            }
        );
    }

    #[test]
    fn a_cut_stream_and_a_stream_without_done() {
        let mut d = SseDecoder::new();
        d.request_sent(ms(0), "m", 1);
        decode(
            &mut d,
            1,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        );
        let inbound = d.on_end(ms(2), &mut |_| {}, &mut |_| {});
        assert_eq!(inbound, SseInbound::StreamCut);

        d.request_sent(ms(10), "m", 1);
        decode(
            &mut d,
            11,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
        );
        let mut events = Vec::new();
        let inbound = d.on_end(ms(12), &mut |e| events.push(e), &mut |_| {});
        assert_eq!(inbound, SseInbound::ResponseDone);
        assert!(matches!(
            &events[0],
            EventKind::Done { tokens, finish_reason: Some(f), .. } if tokens.estimated && f == "stop"
        ));
    }

    #[test]
    fn a_cancel_ends_the_response_with_an_estimate() {
        let mut d = SseDecoder::new();
        d.request_sent(ms(0), "m", 4);
        decode(
            &mut d,
            1,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hello there\"}}]}\n\n",
        );
        let mut events = Vec::new();
        assert_eq!(
            d.cancel(ms(5), &mut |e| events.push(e)),
            SseInbound::ResponseDone
        );
        assert!(matches!(
            &events[0],
            EventKind::Done { finish_reason: Some(f), tokens, .. } if f == "cancelled" && tokens.estimated
        ));
        assert_eq!(d.in_flight(), None);
    }
}
