//! A session's figures: its counts, its latency histograms and how its last connection
//! ended; the fold of one event into them, and what it tells the session's provider (`Seen`).
//! The response under way is followed chunk by chunk (`Streaming`), so that when it ends its
//! output speed, inter-token gaps and longest stall are known (`RequestFigures`).

use serde::Serialize;

use crate::config::slo::{Measured, Slo};
use crate::cost::{ProviderPricing, Response};
use crate::session::{
    Completed, EventKind, RequestId, SessionEvent, SessionInfo, SessionState, Tokens,
};

use super::counts::*;
use super::latency::{
    LATENCY_METRICS, LatencyMetric, Quantiles, SessionLatency, Window, packed_all,
};

/// Most chunk gaps kept of one response; past it, neighbours are merged two by two (the
/// figures keep their sums; the gaps get coarser).
pub const MAX_GAPS: usize = 2048;

/// The response under way: when its last chunk came and the gaps between its chunks.
#[derive(Clone, Debug, Default)]
pub struct Streaming {
    request: RequestId,
    last_chunk_us: Option<u64>,
    /// (gap before the chunk in microseconds, the chunk's bytes).
    gaps: Vec<(u64, u64)>,
    longest_us: u64,
}

impl Streaming {
    /// A new request went out (0: none under way).
    pub fn start(&mut self, request: RequestId) {
        self.request = request;
        self.last_chunk_us = None;
        self.gaps.clear();
        if self.gaps.capacity() > 256 {
            self.gaps.shrink_to(64);
        }
        self.longest_us = 0;
    }

    /// A chunk of `bytes` of `request` came at `at_us`.
    pub fn chunk(&mut self, request: RequestId, at_us: u64, bytes: u64) {
        if request != self.request || bytes == 0 {
            return;
        }
        if let Some(last) = self.last_chunk_us {
            let gap = at_us.saturating_sub(last);
            self.longest_us = self.longest_us.max(gap);
            if self.gaps.len() >= MAX_GAPS {
                let merged: Vec<(u64, u64)> = self
                    .gaps
                    .chunks(2)
                    .map(|p| p.iter().fold((0, 0), |(g, b), (g2, b2)| (g + g2, b + b2)))
                    .collect();
                self.gaps = merged;
            }
            self.gaps.push((gap, bytes));
        }
        self.last_chunk_us = Some(at_us);
    }

    /// The request under way.
    pub fn request(&self) -> RequestId {
        self.request
    }

    /// The figures of `request`, done at `at_us` (its `good` left for the caller to judge).
    #[allow(clippy::too_many_arguments)]
    pub fn figures(
        &mut self,
        request: RequestId,
        at_us: u64,
        ttft_us: Option<u64>,
        answer_us: Option<u64>,
        total_us: u64,
        tokens: &Tokens,
        bytes: u64,
    ) -> RequestFigures {
        let ours = request == self.request;
        let mut f = RequestFigures {
            ttfa_us: ttft_us.map(|t| answer_us.unwrap_or(t)),
            ..RequestFigures::default()
        };
        if let Some(ttft) = ttft_us
            && tokens.output >= 2
        {
            f.tpot_us = Some(total_us.saturating_sub(ttft) / (tokens.output - 1));
        }
        if !ours {
            return f;
        }
        // The answer's tokens (hidden thinking is output the text never showed), split
        // over the chunks by their bytes.
        let answer_tokens = tokens.output.saturating_sub(tokens.reasoning_output) as f64;
        let per_byte = if bytes > 0 {
            answer_tokens / bytes as f64
        } else {
            0.0
        };
        f.itl = self
            .gaps
            .iter()
            .map(|&(gap, b)| {
                let k = (per_byte * b as f64).max(1.0);
                let n = k.round().max(1.0) as u64;
                ((gap as f64 / k).round() as u64, n)
            })
            .collect();
        let tail = self.last_chunk_us.map(|t| at_us.saturating_sub(t));
        let longest = self.longest_us.max(tail.unwrap_or(0));
        f.stall_us = (self.last_chunk_us.is_some()).then_some(longest);
        self.start(0);
        f
    }
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
    pub(super) info: SessionInfo,
    pub(super) provider: usize,
    /// Index of its model's figures (`Metrics::models`).
    pub(super) model: usize,
    /// Everything counted.
    pub counts: Counts,
    pub(super) state: SessionState,
    pub(super) state_since_us: u64,
    pub(super) connected: bool,
    pub(super) last_event_us: Option<u64>,
    pub(super) last_close: Option<LastClose>,
    pub(super) last_handshake_us: Option<u64>,
    /// The request whose time to first token was counted last (each request counts once).
    pub(super) ttft_request: Option<RequestId>,
    pub(super) latency: [Option<Box<SessionLatency>>; LATENCY_METRICS],
    pub(super) streaming: Streaming,
    /// When the connection up now came up.
    pub(super) connected_since_us: Option<u64>,
}

impl SessionStats {
    pub(super) fn new(info: SessionInfo, provider: usize, now_us: u64) -> Self {
        Self {
            info,
            provider,
            model: usize::MAX,
            counts: Counts::default(),
            state: SessionState::Connecting { attempt: 1 },
            state_since_us: now_us,
            connected: false,
            last_event_us: None,
            last_close: None,
            last_handshake_us: None,
            ttft_request: None,
            latency: Default::default(),
            streaming: Streaming::default(),
            connected_since_us: None,
        }
    }

    /// Connection time up to `now_us`, microseconds (the connection up now included).
    pub fn connected_us(&self, now_us: u64) -> u64 {
        self.counts.connected_us.saturating_add(
            self.connected_since_us
                .map_or(0, |since| now_us.saturating_sub(since)),
        )
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
    /// The time to the first answer is the time to first token's for a session whose
    /// responses never thought first.
    pub fn latency(&self, metric: LatencyMetric, window: Window, now_us: u64) -> Option<Quantiles> {
        let metric = match metric {
            LatencyMetric::TimeToFirstAnswer if self.latency[metric.index()].is_none() => {
                LatencyMetric::TimeToFirstToken
            }
            m => m,
        };
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
    pub(super) fn packed(&self) -> Self {
        Self {
            info: self.info.clone(),
            provider: self.provider,
            model: self.model,
            counts: self.counts.clone(),
            state: self.state.clone(),
            state_since_us: self.state_since_us,
            connected: self.connected,
            last_event_us: self.last_event_us,
            last_close: self.last_close,
            last_handshake_us: self.last_handshake_us,
            ttft_request: self.ttft_request,
            latency: packed_all(&self.latency),
            streaming: self.streaming.clone(),
            connected_since_us: self.connected_since_us,
        }
    }

    pub(super) fn record(&mut self, metric: LatencyMetric, at_us: u64, value_us: u64) {
        record_into(&mut self.latency, metric, at_us, value_us, 1);
    }

    fn went_down(&mut self, at: u64, seen: &mut Seen) {
        if self.connected {
            self.connected = false;
            seen.connection = -1;
        }
        if let Some(since) = self.connected_since_us.take() {
            self.counts.connected_us = self
                .counts
                .connected_us
                .saturating_add(at.saturating_sub(since));
            seen.connection_span = Some((since, at.max(since)));
        }
    }

    /// Folds one event into the session and says what its provider must know.
    pub(super) fn fold(&mut self, ev: &SessionEvent, pricing: &ProviderPricing, slo: &Slo) -> Seen {
        let at = ev.at_us;
        self.last_event_us = Some(self.last_event_us.map_or(at, |t| t.max(at)));
        let mut seen = Seen::default();
        match &ev.kind {
            EventKind::State(state) => {
                if !state.is_up() {
                    // A connection can only be lost through `Closed`; stay right if it was missed.
                    self.went_down(at, &mut seen);
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
                if self.connected_since_us.is_none() {
                    self.connected_since_us = Some(at);
                    seen.connection_up_at = Some(at);
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
                self.went_down(at, &mut seen);
            }
            EventKind::Error { .. } if matches!(self.state, SessionState::Connecting { .. }) => {
                // Refused before any request could go: an upgrade answered 401/429/503, a
                // connect refused. An error, though no request counts it.
                seen.refused = true;
            }
            EventKind::RequestSent { request, .. } => self.streaming.start(*request),
            EventKind::Chunk { request, text } => {
                self.streaming.chunk(*request, at, text.len() as u64);
            }
            EventKind::RequestFailed { request, .. } => {
                seen.responded = self.ttft_request == Some(*request);
                if *request == self.streaming.request {
                    self.streaming.start(0);
                }
            }
            EventKind::FirstToken { request, ttft_us } if self.ttft_request != Some(*request) => {
                self.ttft_request = Some(*request);
                seen.ttft_us = Some(*ttft_us);
            }
            EventKind::Done(done) => {
                let Completed {
                    request,
                    ttft_us,
                    answer_us,
                    total_us,
                    tokens,
                    bytes,
                    cut,
                    ..
                } = &**done;
                if let Some(ttft) = ttft_us
                    && self.ttft_request != Some(*request)
                {
                    self.ttft_request = Some(*request);
                    seen.ttft_us = Some(*ttft);
                }
                seen.responded = self.ttft_request == Some(*request);
                let mut figures = self.streaming.figures(
                    *request, at, *ttft_us, *answer_us, *total_us, tokens, *bytes,
                );
                figures.good = slo.is_good(&Measured {
                    completed: cut.is_none(),
                    ttft_us: *ttft_us,
                    tpot_us: figures.tpot_us,
                    e2e_us: *total_us,
                });
                // A session keeps the time to the first answer only for responses that
                // thought first (without thinking it is the time to first token, which it
                // keeps anyway): a session's figures stay within 32 KiB.
                let mut own = figures.clone();
                if answer_us.is_none() {
                    own.ttfa_us = None;
                }
                record_figures(&mut self.latency, at, &own);
                seen.request = Some(Box::new(figures));
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

/// Records `n` samples into a metric-indexed array of histograms, made on first use.
pub(super) fn record_into<L: Recordable>(
    latency: &mut [Option<Box<L>>; LATENCY_METRICS],
    metric: LatencyMetric,
    at_us: u64,
    value_us: u64,
    n: u64,
) {
    latency[metric.index()]
        .get_or_insert_with(|| Box::new(L::fresh()))
        .record_n(at_us, value_us, n);
}

/// Records a finished request's figures (all but TTFT and E2E, recorded on their own).
pub(super) fn record_figures<L: Recordable>(
    latency: &mut [Option<Box<L>>; LATENCY_METRICS],
    at_us: u64,
    f: &RequestFigures,
) {
    if let Some(v) = f.ttfa_us {
        record_into(latency, LatencyMetric::TimeToFirstAnswer, at_us, v, 1);
    }
    if let Some(v) = f.tpot_us {
        record_into(latency, LatencyMetric::TimePerOutputToken, at_us, v, 1);
    }
    for &(v, n) in &f.itl {
        record_into(latency, LatencyMetric::InterTokenLatency, at_us, v, n);
    }
    if let Some(v) = f.stall_us {
        record_into(latency, LatencyMetric::LongestStall, at_us, v, 1);
    }
}

/// A latency histogram set that can be made empty and recorded into.
pub(super) trait Recordable {
    fn fresh() -> Self;
    fn record_n(&mut self, at_us: u64, value_us: u64, n: u64);
}

impl Recordable for SessionLatency {
    fn fresh() -> Self {
        SessionLatency::new()
    }
    fn record_n(&mut self, at_us: u64, value_us: u64, n: u64) {
        SessionLatency::record_n(self, at_us, value_us, n);
    }
}

impl Recordable for super::latency::ProviderLatency {
    fn fresh() -> Self {
        super::latency::ProviderLatency::new()
    }
    fn record_n(&mut self, at_us: u64, value_us: u64, n: u64) {
        super::latency::ProviderLatency::record_n(self, at_us, value_us, n);
    }
}
