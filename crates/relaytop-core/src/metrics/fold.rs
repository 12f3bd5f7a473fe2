//! Metrics: the pure fold of session events into per-session, per-provider and run-wide
//! figures (counts, cost, latency quantiles over sliding windows, time series and rates).
//!
//! Nothing here reads a clock or does I/O: an event's `at_us` is its time, and every query
//! that depends on the present takes `now_us`. Live runs, replays and tests fold the same
//! events into the same figures. Everything that grows is bounded: histograms by their range,
//! windows and series by their length, messages by their length.
//!
//! Memory: a session keeps 2-significant-figure histograms (whole run and a 1-minute window),
//! allocated only once a sample of that metric arrives; a provider (and the run totals) keeps
//! 3-significant-figure histograms over 1 minute, 15 minutes and the run, and the time series.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cost::{Cost, Pricing, ProviderPricing, Response};
use crate::session::{
    ErrorKind, EventKind, RequestId, SessionEvent, SessionId, SessionInfo, SessionState,
};

pub use super::latency::{LatencyMetric, MAX_SAMPLE_US, Quantiles, Window, ms};
pub use super::series::{MINUTES_KEPT, SECONDS_KEPT, SeriesMetric, SeriesPoint};

use super::latency::{ProviderLatency, SessionLatency, packed_all};
use super::series::{Series, Tick};

/// Longest error message or stop reason kept, in characters.
pub const MAX_MESSAGE_CHARS: usize = 240;
/// Most models remembered as having no price, per provider.
pub const MAX_UNPRICED_MODELS: usize = 8;
/// The name of the run-wide totals.
pub const TOTALS_NAME: &str = "all";

/// Counts of errors by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; ErrorCounts::KINDS.len()]);

impl ErrorCounts {
    /// Every error kind, in the order `iter` yields them.
    pub const KINDS: [ErrorKind; 9] = [
        ErrorKind::Auth,
        ErrorKind::RateLimited,
        ErrorKind::Overloaded,
        ErrorKind::Upstream,
        ErrorKind::InvalidRequest,
        ErrorKind::Network,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
        ErrorKind::Other,
    ];

    fn slot(kind: ErrorKind) -> usize {
        match kind {
            ErrorKind::Auth => 0,
            ErrorKind::RateLimited => 1,
            ErrorKind::Overloaded => 2,
            ErrorKind::Upstream => 3,
            ErrorKind::InvalidRequest => 4,
            ErrorKind::Network => 5,
            ErrorKind::Timeout => 6,
            ErrorKind::Protocol => 7,
            ErrorKind::Other => 8,
        }
    }

    /// How many errors of `kind`.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[Self::slot(kind)]
    }

    fn add(&mut self, kind: ErrorKind) {
        let n = &mut self.0[Self::slot(kind)];
        *n = n.saturating_add(1);
    }

    /// Every kind with its count (zeros included), in `KINDS` order.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        Self::KINDS.iter().map(|k| (*k, self.get(*k)))
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Token counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TokenCounts {
    /// Prompt tokens (cached ones included).
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
    /// Prompt tokens served from a cache.
    pub cached_input: u64,
    /// Input and output tokens that were estimated because the relay sent no usage.
    pub estimated: u64,
    /// Responses whose tokens were estimated.
    pub estimated_responses: u64,
}

/// Spend, summed exactly in nano-dollars so that many small costs add up to the exact total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CostTotals {
    list_nano_usd: u64,
    fee_nano_usd: u64,
    billed_nano: u64,
    /// Responses priced from estimated tokens.
    pub estimated_responses: u64,
    /// Responses of a model with no price (counted at 0).
    pub unpriced_responses: u64,
}

fn nano(x: f64) -> u64 {
    // Costs are finite and not negative (cost.rs); `as` saturates anything else.
    (x * 1e9).round() as u64
}

impl CostTotals {
    fn add(&mut self, c: &Cost) {
        self.list_nano_usd = self.list_nano_usd.saturating_add(nano(c.list_usd));
        self.fee_nano_usd = self.fee_nano_usd.saturating_add(nano(c.fee_usd));
        self.billed_nano = self.billed_nano.saturating_add(nano(c.billed));
        self.estimated_responses += u64::from(c.estimated);
        self.unpriced_responses += u64::from(!c.priced);
    }

    /// Token cost at list price (or as the relay reported it), US $.
    pub fn list_usd(&self) -> f64 {
        self.list_nano_usd as f64 / 1e9
    }
    /// Per-call fees, US $.
    pub fn fees_usd(&self) -> f64 {
        self.fee_nano_usd as f64 / 1e9
    }
    /// Tokens and fees, US $.
    pub fn total_usd(&self) -> f64 {
        self.total_nano_usd() as f64 / 1e9
    }
    /// Tokens and fees in nano-dollars (exact).
    pub fn total_nano_usd(&self) -> u64 {
        self.list_nano_usd.saturating_add(self.fee_nano_usd)
    }
    /// What it costs in the provider's billing currency.
    pub fn billed(&self) -> f64 {
        self.billed_nano as f64 / 1e9
    }
    /// Whether any of it was priced from estimated tokens.
    pub fn is_estimated(&self) -> bool {
        self.estimated_responses > 0
    }
}

/// The last heartbeat answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// Round trip, microseconds.
    pub rtt_us: u64,
    /// When the `pong` came, microseconds since the run started.
    pub at_us: u64,
}

/// The last error reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// When, microseconds since the run started.
    pub at_us: u64,
    pub kind: ErrorKind,
    /// The message, cut to `MAX_MESSAGE_CHARS`.
    pub message: String,
}

/// Everything counted, alike for a session, a provider and the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Requests sent.
    pub requests_sent: u64,
    /// Responses that completed (`done`).
    pub responses_completed: u64,
    /// Requests that ended without `done`.
    pub requests_failed: u64,
    /// Failed requests by kind.
    pub failures_by_kind: ErrorCounts,
    /// Errors reported (by the relay or the connection).
    pub errors: u64,
    /// Errors by kind.
    pub errors_by_kind: ErrorCounts,
    /// Connections established.
    pub connects: u64,
    /// Connections after a session's first.
    pub reconnects: u64,
    /// Closes this client did not ask for.
    pub drops: u64,
    /// Streamed chunks received.
    pub chunks: u64,
    /// Bytes of streamed text (and transcripts) received.
    pub bytes: u64,
    /// Transcription results received.
    pub transcripts: u64,
    /// Frames that could not be parsed.
    pub malformed_frames: u64,
    /// Well-formed frames of an unknown type.
    pub unknown_frames: u64,
    /// Heartbeats answered (`pong`).
    pub heartbeats_answered: u64,
    /// Heartbeats left unanswered for a whole interval.
    pub heartbeats_missed: u64,
    /// The last heartbeat answered.
    pub last_heartbeat: Option<Heartbeat>,
    /// Tokens of completed responses.
    pub tokens: TokenCounts,
    /// Spend on completed responses.
    pub cost: CostTotals,
    /// Times sending was held back by a rate limit.
    pub rate_limit_waits: u64,
    /// Milliseconds of those waits, added up.
    pub rate_limit_wait_ms: u64,
    /// Reconnect waits (backoffs) begun.
    pub backoffs: u64,
    /// The last error or failed request.
    pub last_error: Option<LastError>,
}

impl Counts {
    /// Drops per connection: `drops / connects` (0 without connections).
    pub fn drop_rate(&self) -> f64 {
        ratio(self.drops, self.connects)
    }

    /// Failed requests per finished request: `failed / (completed + failed)`.
    pub fn error_rate(&self) -> f64 {
        ratio(
            self.requests_failed,
            self.responses_completed + self.requests_failed,
        )
    }

    /// Effective spend per 1,000 completed calls, US $ (`None` before the first).
    pub fn cost_per_1000_calls_usd(&self) -> Option<f64> {
        (self.responses_completed > 0)
            .then(|| self.cost.total_usd() * 1000.0 / self.responses_completed as f64)
    }

    fn add(&mut self, at_us: u64, kind: &EventKind, seen: &Seen) {
        let inc = |n: &mut u64| *n = n.saturating_add(1);
        match kind {
            EventKind::State(_) | EventKind::Marker { .. } | EventKind::RateLimitStatus { .. } => {}
            EventKind::Connected { .. } => {
                inc(&mut self.connects);
                if seen.reconnect {
                    inc(&mut self.reconnects);
                }
            }
            EventKind::RequestSent { .. } => inc(&mut self.requests_sent),
            EventKind::FirstToken { .. } => {}
            EventKind::Chunk { text, .. } => {
                inc(&mut self.chunks);
                self.bytes = self.bytes.saturating_add(text.len() as u64);
            }
            EventKind::Done { tokens, .. } => {
                inc(&mut self.responses_completed);
                let t = &mut self.tokens;
                t.input = t.input.saturating_add(tokens.input);
                t.output = t.output.saturating_add(tokens.output);
                t.cached_input = t.cached_input.saturating_add(tokens.cached_input);
                if tokens.estimated {
                    t.estimated = t
                        .estimated
                        .saturating_add(tokens.input.saturating_add(tokens.output));
                    inc(&mut t.estimated_responses);
                }
                if let Some(cost) = &seen.cost {
                    self.cost.add(cost);
                }
            }
            EventKind::RequestFailed { kind, reason, .. } => {
                inc(&mut self.requests_failed);
                self.failures_by_kind.add(*kind);
                self.last_error = Some(last_error(at_us, *kind, reason));
            }
            EventKind::Error { kind, message, .. } => {
                inc(&mut self.errors);
                self.errors_by_kind.add(*kind);
                self.last_error = Some(last_error(at_us, *kind, message));
            }
            EventKind::Pong { rtt_us } => {
                inc(&mut self.heartbeats_answered);
                self.last_heartbeat = Some(Heartbeat {
                    rtt_us: *rtt_us,
                    at_us,
                });
            }
            EventKind::HeartbeatMissed { .. } => inc(&mut self.heartbeats_missed),
            EventKind::Closed { requested, .. } => {
                if !requested {
                    inc(&mut self.drops);
                }
            }
            EventKind::BackingOff { .. } => inc(&mut self.backoffs),
            EventKind::RateLimited { wait_ms, .. } => {
                inc(&mut self.rate_limit_waits);
                self.rate_limit_wait_ms = self.rate_limit_wait_ms.saturating_add(*wait_ms);
            }
            EventKind::Malformed { .. } => inc(&mut self.malformed_frames),
            EventKind::UnknownFrame { .. } => inc(&mut self.unknown_frames),
            EventKind::Transcript { text, .. } => {
                inc(&mut self.transcripts);
                self.bytes = self.bytes.saturating_add(text.len() as u64);
            }
        }
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// `s` cut to `MAX_MESSAGE_CHARS` characters (with "…" when cut).
fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

fn last_error(at_us: u64, kind: ErrorKind, message: &str) -> LastError {
    LastError {
        at_us,
        kind,
        message: bounded(message),
    }
}

/// What the session's own history says about an event, shared with its provider and the run.
#[derive(Debug, Default)]
struct Seen {
    /// A connect after the session's first.
    reconnect: bool,
    /// A time-to-first-token sample not counted before for this request.
    ttft_us: Option<u64>,
    /// The priced response.
    cost: Option<Cost>,
    /// The model of a response without a price.
    unpriced_model: Option<String>,
    /// +1 when a connection came up, -1 when one went away.
    connection: i8,
}

/// How a session's last connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LastClose {
    /// The WebSocket close code.
    pub code: u16,
    /// Whether this client asked for it (false: a drop).
    pub requested: bool,
    /// When, microseconds since the run started.
    pub at_us: u64,
}

/// Figures of one session.
#[derive(Clone, Debug)]
pub struct SessionStats {
    info: SessionInfo,
    provider: usize,
    /// Everything counted.
    pub counts: Counts,
    state: SessionState,
    state_since_us: u64,
    connected: bool,
    last_event_us: Option<u64>,
    last_close: Option<LastClose>,
    last_handshake_us: Option<u64>,
    /// The request whose time to first token was counted last (each request counts once).
    ttft_request: Option<RequestId>,
    latency: [Option<Box<SessionLatency>>; 3],
}

impl SessionStats {
    fn new(info: SessionInfo, provider: usize, now_us: u64) -> Self {
        Self {
            info,
            provider,
            counts: Counts::default(),
            state: SessionState::Connecting { attempt: 1 },
            state_since_us: now_us,
            connected: false,
            last_event_us: None,
            last_close: None,
            last_handshake_us: None,
            ttft_request: None,
            latency: [None, None, None],
        }
    }

    /// The session's identity.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// What the session is doing (connecting until its first state event).
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// When the current state was entered, microseconds since the run started.
    pub fn state_since_us(&self) -> u64 {
        self.state_since_us
    }

    /// The reason the session stopped, when it did.
    pub fn stop_reason(&self) -> Option<&str> {
        match &self.state {
            SessionState::Stopped { reason } => Some(reason),
            _ => None,
        }
    }

    /// When the session last reported anything.
    pub fn last_event_us(&self) -> Option<u64> {
        self.last_event_us
    }

    /// How the last connection ended.
    pub fn last_close(&self) -> Option<LastClose> {
        self.last_close
    }

    /// Handshake time of the last connection, microseconds.
    pub fn last_handshake_us(&self) -> Option<u64> {
        self.last_handshake_us
    }

    /// Quantiles of `metric` over `window` ending at `now_us`, 2 significant figures.
    /// Sessions keep the last minute and the whole run; `None` for 15 minutes.
    pub fn latency(&self, metric: LatencyMetric, window: Window, now_us: u64) -> Option<Quantiles> {
        match &self.latency[metric.index()] {
            Some(l) => l.quantiles(window, now_us),
            None => (window != Window::FifteenMinutes).then(Quantiles::default),
        }
    }

    /// Approximate heap bytes held by this session's figures (histograms and strings).
    pub fn heap_bytes(&self) -> usize {
        let info = &self.info;
        let strings = info.name.capacity()
            + info.provider.capacity()
            + info.model.capacity()
            + info.url.capacity()
            + info.workload.capacity();
        let hist: usize = self
            .latency
            .iter()
            .flatten()
            .map(|l| std::mem::size_of::<SessionLatency>() + l.heap_bytes())
            .sum();
        strings
            + hist
            + self
                .counts
                .last_error
                .as_ref()
                .map_or(0, |e| e.message.capacity())
    }

    /// A copy with its histograms packed (`Metrics::packed`).
    fn packed(&self) -> Self {
        Self {
            info: self.info.clone(),
            provider: self.provider,
            counts: self.counts.clone(),
            state: self.state.clone(),
            state_since_us: self.state_since_us,
            connected: self.connected,
            last_event_us: self.last_event_us,
            last_close: self.last_close,
            last_handshake_us: self.last_handshake_us,
            ttft_request: self.ttft_request,
            latency: packed_all(&self.latency),
        }
    }

    fn record(&mut self, metric: LatencyMetric, at_us: u64, value_us: u64) {
        self.latency[metric.index()]
            .get_or_insert_with(|| Box::new(SessionLatency::new()))
            .record(at_us, value_us);
    }

    /// Folds one event into the session and says what its provider must know.
    fn fold(&mut self, ev: &SessionEvent, pricing: &ProviderPricing) -> Seen {
        let at = ev.at_us;
        self.last_event_us = Some(self.last_event_us.map_or(at, |t| t.max(at)));
        let mut seen = Seen::default();
        match &ev.kind {
            EventKind::State(state) => {
                if !state.is_up() && self.connected {
                    // A connection can only be lost through `Closed`; stay right if it was missed.
                    self.connected = false;
                    seen.connection = -1;
                }
                self.state = match state {
                    SessionState::Stopped { reason } => SessionState::Stopped {
                        reason: bounded(reason),
                    },
                    other => other.clone(),
                };
                self.state_since_us = at;
            }
            EventKind::Connected { handshake_us, .. } => {
                seen.reconnect = self.counts.connects > 0;
                self.last_handshake_us = Some(*handshake_us);
                if !self.connected {
                    self.connected = true;
                    seen.connection = 1;
                }
            }
            EventKind::Closed {
                code, requested, ..
            } => {
                self.last_close = Some(LastClose {
                    code: *code,
                    requested: *requested,
                    at_us: at,
                });
                if self.connected {
                    self.connected = false;
                    seen.connection = -1;
                }
            }
            EventKind::FirstToken { request, ttft_us } if self.ttft_request != Some(*request) => {
                self.ttft_request = Some(*request);
                seen.ttft_us = Some(*ttft_us);
            }
            EventKind::Done {
                request,
                ttft_us,
                total_us,
                ..
            } => {
                if let Some(ttft) = ttft_us
                    && self.ttft_request != Some(*request)
                {
                    self.ttft_request = Some(*request);
                    seen.ttft_us = Some(*ttft);
                }
                if let Some(response) = Response::of_session(&ev.kind, &self.info.model) {
                    let cost = pricing.cost(&response);
                    if !cost.priced {
                        seen.unpriced_model = Some(response.model.to_owned());
                    }
                    seen.cost = Some(cost);
                }
                self.record(LatencyMetric::ResponseTime, at, *total_us);
            }
            EventKind::Pong { rtt_us } => self.record(LatencyMetric::HeartbeatRtt, at, *rtt_us),
            _ => {}
        }
        if let Some(ttft) = seen.ttft_us {
            self.record(LatencyMetric::TimeToFirstToken, at, ttft);
        }
        self.counts.add(at, &ev.kind, &seen);
        seen
    }
}

/// Rates over a window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rates {
    /// The window.
    pub window: Window,
    /// Seconds the rates are over (the window, or less early in the run).
    pub seconds: f64,
    /// Requests sent in the window.
    pub requests: u64,
    /// Responses completed in the window.
    pub responses: u64,
    /// Requests failed in the window.
    pub failed: u64,
    /// Errors reported in the window.
    pub errors: u64,
    /// Connections dropped in the window.
    pub drops: u64,
    /// Connections established in the window.
    pub connects: u64,
    /// Completed responses per second.
    pub responses_per_sec: f64,
    /// Spend in the window, US $.
    pub cost_usd: f64,
    /// Spend per hour at the window's rate, US $.
    pub cost_per_hour_usd: f64,
    /// Failed requests per finished request: `failed / (responses + failed)`.
    pub error_rate: f64,
    /// Drops per connection: for the run `drops / connects`; for a window, drops per
    /// connection up at its start or made in it.
    pub drop_rate: f64,
}

/// Figures of one provider (or of the whole run: `Metrics::totals`).
#[derive(Clone, Debug)]
pub struct ProviderStats {
    name: String,
    /// Everything counted, over all of the provider's sessions.
    pub counts: Counts,
    sessions: u32,
    connections_up: u32,
    billing_currency: String,
    fee_per_1000_calls_usd: Option<f64>,
    unpriced_models: Vec<String>,
    latency: [Option<Box<ProviderLatency>>; 3],
    series: Series,
}

impl ProviderStats {
    fn new(name: &str, pricing: &ProviderPricing) -> Self {
        Self {
            name: name.to_string(),
            counts: Counts::default(),
            sessions: 0,
            connections_up: 0,
            billing_currency: pricing.billing_currency.clone(),
            fee_per_1000_calls_usd: Some(pricing.per_1000_calls_usd),
            unpriced_models: Vec::new(),
            latency: [None, None, None],
            series: Series::default(),
        }
    }

    /// The provider's name (`TOTALS_NAME` for the run's totals).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many sessions use this provider.
    pub fn sessions(&self) -> u32 {
        self.sessions
    }

    /// Connections up now.
    pub fn connections_up(&self) -> u32 {
        self.connections_up
    }

    /// The currency of `counts.cost.billed()` ("mixed" for totals over providers that differ).
    pub fn billing_currency(&self) -> &str {
        &self.billing_currency
    }

    /// The configured fee per 1,000 calls, US $ (`None` for totals over providers that differ).
    pub fn fee_per_1000_calls_usd(&self) -> Option<f64> {
        self.fee_per_1000_calls_usd
    }

    /// Models seen in responses that have no price (at most `MAX_UNPRICED_MODELS`).
    pub fn unpriced_models(&self) -> &[String] {
        &self.unpriced_models
    }

    /// Quantiles of `metric` over `window` ending at `now_us` (3 significant figures).
    pub fn latency(&self, metric: LatencyMetric, window: Window, now_us: u64) -> Quantiles {
        self.latency[metric.index()]
            .as_ref()
            .map_or_else(Quantiles::default, |l| l.quantiles(window, now_us))
    }

    /// A series for sparklines: one point per second over the 1- or 15-minute window, or one
    /// per minute over the run (at most its last 24 hours), oldest first, ending at `now_us`.
    pub fn series(&self, metric: SeriesMetric, window: Window, now_us: u64) -> Vec<SeriesPoint> {
        self.series.points(metric, window, now_us)
    }

    /// Rates over `window` ending at `now_us`.
    pub fn rates(&self, window: Window, now_us: u64) -> Rates {
        let elapsed_s = (now_us as f64 / 1e6).max(1.0);
        let (seconds, sums) = match window.length_us() {
            Some(len) => {
                let len_s = len / 1_000_000;
                (elapsed_s.min(len_s as f64), self.series.sums(len_s, now_us))
            }
            None => {
                let c = &self.counts;
                let sums = super::series::WindowSums {
                    requests: c.requests_sent,
                    responses: c.responses_completed,
                    failed: c.requests_failed,
                    errors: c.errors,
                    drops: c.drops,
                    connects: c.connects,
                    open_at_start: 0,
                    cost_nano_usd: c.cost.total_nano_usd(),
                };
                (elapsed_s, sums)
            }
        };
        let cost_usd = sums.cost_nano_usd as f64 / 1e9;
        Rates {
            window,
            seconds,
            requests: sums.requests,
            responses: sums.responses,
            failed: sums.failed,
            errors: sums.errors,
            drops: sums.drops,
            connects: sums.connects,
            responses_per_sec: sums.responses as f64 / seconds,
            cost_usd,
            cost_per_hour_usd: cost_usd / seconds * 3600.0,
            error_rate: ratio(sums.failed, sums.responses + sums.failed),
            drop_rate: ratio(sums.drops, sums.open_at_start + sums.connects),
        }
    }

    /// Approximate heap bytes held by this provider's figures.
    pub fn heap_bytes(&self) -> usize {
        let hist: usize = self
            .latency
            .iter()
            .flatten()
            .map(|l| std::mem::size_of::<ProviderLatency>() + l.heap_bytes())
            .sum();
        self.name.capacity()
            + self.billing_currency.capacity()
            + self
                .unpriced_models
                .iter()
                .map(String::capacity)
                .sum::<usize>()
            + hist
            + self.series.heap_bytes()
    }

    /// A copy with its histograms packed (`Metrics::packed`).
    fn packed(&self) -> Self {
        Self {
            name: self.name.clone(),
            counts: self.counts.clone(),
            sessions: self.sessions,
            connections_up: self.connections_up,
            billing_currency: self.billing_currency.clone(),
            fee_per_1000_calls_usd: self.fee_per_1000_calls_usd,
            unpriced_models: self.unpriced_models.clone(),
            latency: packed_all(&self.latency),
            series: self.series.clone(),
        }
    }

    fn record(&mut self, metric: LatencyMetric, at_us: u64, value_us: u64) {
        self.latency[metric.index()]
            .get_or_insert_with(|| Box::new(ProviderLatency::new()))
            .record(at_us, value_us);
    }

    /// Folds one event of one of its sessions, with what the session saw.
    fn absorb(&mut self, ev: &SessionEvent, seen: &Seen) {
        let at = ev.at_us;
        let open = self.connections_up;
        let tick = |s: &mut Self, t: Tick| s.series.add(at, open, t);
        match &ev.kind {
            EventKind::Connected { .. } => tick(self, Tick::Connect),
            EventKind::RequestSent { .. } => tick(self, Tick::Request),
            EventKind::Done { total_us, .. } => {
                let cost = seen.cost.as_ref().map_or(0, |c| nano(c.total_usd));
                tick(
                    self,
                    Tick::Response {
                        cost_nano_usd: cost,
                    },
                );
                self.record(LatencyMetric::ResponseTime, at, *total_us);
            }
            EventKind::RequestFailed { .. } => tick(self, Tick::Failed),
            EventKind::Error { .. } => tick(self, Tick::Error),
            EventKind::Pong { rtt_us } => {
                tick(self, Tick::Rtt(*rtt_us));
                self.record(LatencyMetric::HeartbeatRtt, at, *rtt_us);
            }
            EventKind::HeartbeatMissed { .. } => tick(self, Tick::Missed),
            EventKind::Closed {
                requested: false, ..
            } => tick(self, Tick::Drop),
            _ => {}
        }
        if let Some(ttft) = seen.ttft_us {
            tick(self, Tick::Ttft(ttft));
            self.record(LatencyMetric::TimeToFirstToken, at, ttft);
        }
        if let Some(model) = &seen.unpriced_model
            && self.unpriced_models.len() < MAX_UNPRICED_MODELS
            && !self.unpriced_models.contains(model)
        {
            self.unpriced_models.push(model.clone());
        }
        self.connections_up = self
            .connections_up
            .saturating_add_signed(i32::from(seen.connection));
        self.counts.add(at, &ev.kind, seen);
    }
}

/// The fold: every session's, every provider's and the run's figures.
#[derive(Clone, Debug)]
pub struct Metrics {
    pricing: Pricing,
    sessions: BTreeMap<SessionId, SessionStats>,
    providers: Vec<ProviderStats>,
    totals: ProviderStats,
    events: u64,
    unknown_session_events: u64,
    last_event_us: u64,
}

impl Metrics {
    /// Metrics for `sessions`, priced by `pricing`.
    pub fn new(sessions: Vec<SessionInfo>, pricing: Pricing) -> Self {
        let mut totals = ProviderStats::new(TOTALS_NAME, &ProviderPricing::default());
        totals.fee_per_1000_calls_usd = None;
        totals.billing_currency.clear();
        let mut m = Self {
            pricing,
            sessions: BTreeMap::new(),
            providers: Vec::new(),
            totals,
            events: 0,
            unknown_session_events: 0,
            last_event_us: 0,
        };
        for info in sessions {
            m.add_session(info);
        }
        m
    }

    /// Adds a session that appeared at run time (a chat pane, say). Adding an id again
    /// relabels it and keeps its figures.
    pub fn add_session(&mut self, info: SessionInfo) {
        let provider = self.provider_index(&info.provider);
        let now = self.last_event_us;
        match self.sessions.get_mut(&info.id) {
            Some(s) => {
                if s.provider != provider {
                    let old = &mut self.providers[s.provider].sessions;
                    *old = old.saturating_sub(1);
                    self.providers[provider].sessions += 1;
                }
                s.provider = provider;
                s.info = info;
            }
            None => {
                self.providers[provider].sessions += 1;
                self.totals.sessions += 1;
                self.sessions
                    .insert(info.id, SessionStats::new(info, provider, now));
            }
        }
    }

    fn provider_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.providers.iter().position(|p| p.name == name) {
            return i;
        }
        let pricing = self.pricing.provider(name);
        self.providers.push(ProviderStats::new(name, pricing));
        // The totals bill in a currency, and charge a fee, only while all providers agree.
        let first = &self.providers[0];
        let same_currency = self
            .providers
            .iter()
            .all(|p| p.billing_currency == first.billing_currency);
        let same_fee = self
            .providers
            .iter()
            .all(|p| p.fee_per_1000_calls_usd == first.fee_per_1000_calls_usd);
        self.totals.billing_currency = if same_currency {
            first.billing_currency.clone()
        } else {
            "mixed".to_string()
        };
        self.totals.fee_per_1000_calls_usd = if same_fee {
            first.fee_per_1000_calls_usd
        } else {
            None
        };
        self.providers.len() - 1
    }

    /// Folds one event. Events of unknown sessions are counted and otherwise ignored.
    pub fn apply(&mut self, ev: &SessionEvent) {
        self.events += 1;
        self.last_event_us = self.last_event_us.max(ev.at_us);
        let Some(session) = self.sessions.get_mut(&ev.session) else {
            self.unknown_session_events += 1;
            return;
        };
        let provider = &mut self.providers[session.provider];
        let pricing = self.pricing.provider(&provider.name);
        let seen = session.fold(ev, pricing);
        provider.absorb(ev, &seen);
        self.totals.absorb(ev, &seen);
    }

    /// A copy whose latency histograms keep only the buckets that hold samples (what replay
    /// checkpoints keep): tens of KiB instead of megabytes. It reads the same, and folds the
    /// same: recording into a histogram unpacks that one (copies of it stay packed).
    pub fn packed(&self) -> Metrics {
        Metrics {
            pricing: self.pricing.clone(),
            sessions: self
                .sessions
                .iter()
                .map(|(id, s)| (*id, s.packed()))
                .collect(),
            providers: self.providers.iter().map(ProviderStats::packed).collect(),
            totals: self.totals.packed(),
            events: self.events,
            unknown_session_events: self.unknown_session_events,
            last_event_us: self.last_event_us,
        }
    }

    /// One session's figures.
    pub fn session(&self, id: SessionId) -> Option<&SessionStats> {
        self.sessions.get(&id)
    }

    /// Every session, by id.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionStats> + '_ {
        self.sessions.values()
    }

    /// One provider's figures.
    pub fn provider(&self, name: &str) -> Option<&ProviderStats> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// Every provider, in the order they were first seen.
    pub fn providers(&self) -> &[ProviderStats] {
        &self.providers
    }

    /// The provider a session belongs to.
    pub fn provider_of(&self, session: &SessionStats) -> &ProviderStats {
        &self.providers[session.provider]
    }

    /// The whole run's figures, over every provider.
    pub fn totals(&self) -> &ProviderStats {
        &self.totals
    }

    /// The price table.
    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// Events folded so far.
    pub fn events_applied(&self) -> u64 {
        self.events
    }

    /// Events that named a session not in the table.
    pub fn unknown_session_events(&self) -> u64 {
        self.unknown_session_events
    }

    /// The latest event time seen, microseconds since the run started.
    pub fn last_event_us(&self) -> u64 {
        self.last_event_us
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
