//! A session's figures: its counts, its latency histograms and how its last connection
//! ended; the fold of one event into them, and what it tells the session's provider (`Seen`).

use serde::Serialize;

use crate::cost::{ProviderPricing, Response};
use crate::session::{EventKind, RequestId, SessionEvent, SessionInfo, SessionState};

use super::counts::*;
use super::latency::{LatencyMetric, Quantiles, SessionLatency, Window, packed_all};

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
    pub(super) latency: [Option<Box<SessionLatency>>; 3],
}

impl SessionStats {
    pub(super) fn new(info: SessionInfo, provider: usize, now_us: u64) -> Self {
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
    pub(super) fn packed(&self) -> Self {
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

    pub(super) fn record(&mut self, metric: LatencyMetric, at_us: u64, value_us: u64) {
        self.latency[metric.index()]
            .get_or_insert_with(|| Box::new(SessionLatency::new()))
            .record(at_us, value_us);
    }

    /// Folds one event into the session and says what its provider must know.
    pub(super) fn fold(&mut self, ev: &SessionEvent, pricing: &ProviderPricing) -> Seen {
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
