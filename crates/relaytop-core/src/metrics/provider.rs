//! A provider's figures (and the run's totals, folded the same way): counts, latency
//! quantiles over sliding windows, time series, rates over a window and the models it has no
//! price for.

use serde::Serialize;

use crate::cost::ProviderPricing;
use crate::session::{EventKind, SessionEvent};

use super::counts::*;
use super::latency::{
    LATENCY_METRICS, LatencyMetric, ProviderLatency, Quantiles, Window, packed_all,
};
use super::series::{Series, SeriesMetric, SeriesPoint, Tick};
use super::session::{record_figures, record_into};

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
    /// Errors per attempt: failed requests and refused connects over finished requests
    /// and refused connects (`Counts::error_rate`).
    pub error_rate: f64,
    /// Drops per connection: for the run `drops / connects`; for a window, drops per
    /// connection up at its start or made in it. Tends to 100 % for long-lived connections:
    /// read `drops_per_100_responses` and `connection_hours_per_drop` instead.
    pub drop_rate: f64,
    /// Responses cut short in the window.
    pub cut: u64,
    /// Cut responses per finished request.
    pub cut_rate: f64,
    /// Connection attempts refused in the window.
    pub refused: u64,
    /// Requests that got at least one token, per finished request.
    pub response_rate: f64,
    /// Requests that met the service-level objective in the window.
    pub good: u64,
    /// Requests per second that met the service-level objective (vLLM's goodput).
    pub goodput_per_sec: f64,
    /// Share of finished requests that met the service-level objective.
    pub good_rate: f64,
    /// Drops per 100 finished requests.
    pub drops_per_100_responses: f64,
    /// Connection hours in the window (summed over connections).
    pub connection_hours: f64,
    /// Mean time between drops, in connection hours (`None` without a drop).
    pub connection_hours_per_drop: Option<f64>,
}

/// Figures of one provider (or of the whole run: `Metrics::totals`).
#[derive(Clone, Debug)]
pub struct ProviderStats {
    pub(super) name: String,
    /// Everything counted, over all of the provider's sessions.
    pub counts: Counts,
    pub(super) sessions: u32,
    pub(super) connections_up: u32,
    pub(super) billing_currency: String,
    pub(super) fee_per_1000_calls_usd: Option<f64>,
    pub(super) unpriced_models: Vec<String>,
    pub(super) latency: [Option<Box<ProviderLatency>>; LATENCY_METRICS],
    pub(super) series: Series,
    /// The sum of the times the connections up now came up (their time so far is
    /// `connections_up * now - open_since_sum`, whatever order events came in).
    pub(super) open_since_sum: u64,
}

impl ProviderStats {
    pub(super) fn new(name: &str, pricing: &ProviderPricing) -> Self {
        Self {
            name: name.to_string(),
            counts: Counts::default(),
            sessions: 0,
            connections_up: 0,
            billing_currency: pricing.billing_currency.clone(),
            fee_per_1000_calls_usd: Some(pricing.per_1000_calls_usd),
            unpriced_models: Vec::new(),
            latency: Default::default(),
            series: Series::default(),
            open_since_sum: 0,
        }
    }

    /// Connection time up to `now_us`, microseconds, over every connection.
    pub fn connected_us(&self, now_us: u64) -> u64 {
        self.counts
            .connected_us
            .saturating_add(self.open_time(now_us))
    }

    /// Time so far of the connections up now.
    fn open_time(&self, now_us: u64) -> u64 {
        (u64::from(self.connections_up) * now_us).saturating_sub(self.open_since_sum)
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
                    cut: c.responses_cut,
                    good: c.good,
                    responded: c.responded,
                    refused: c.connects_refused,
                    connected_us: c.connected_us,
                };
                (elapsed_s, sums)
            }
        };
        // The connections up now count to `now_us` (from the window's start at most).
        let open = match window.length_us() {
            Some(len) => self
                .open_time(now_us)
                .min(u64::from(self.connections_up) * len.min(now_us)),
            None => self.open_time(now_us),
        };
        let connected_us = sums.connected_us.saturating_add(open);
        let connection_hours = connected_us as f64 / 3.6e9;
        let finished = sums.responses + sums.cut + sums.failed;
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
            error_rate: ratio(sums.failed + sums.refused, finished + sums.refused),
            drop_rate: ratio(sums.drops, sums.open_at_start + sums.connects),
            cut: sums.cut,
            cut_rate: ratio(sums.cut, finished),
            refused: sums.refused,
            response_rate: ratio(sums.responded, finished),
            good: sums.good,
            goodput_per_sec: sums.good as f64 / seconds,
            good_rate: ratio(sums.good, finished),
            drops_per_100_responses: 100.0 * ratio(sums.drops, finished),
            connection_hours,
            connection_hours_per_drop: (sums.drops > 0)
                .then(|| connection_hours / sums.drops as f64),
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
    pub(super) fn packed(&self) -> Self {
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
            open_since_sum: self.open_since_sum,
        }
    }

    pub(super) fn record(&mut self, metric: LatencyMetric, at_us: u64, value_us: u64) {
        record_into(&mut self.latency, metric, at_us, value_us, 1);
    }

    /// Folds one event of one of its sessions, with what the session saw.
    pub(super) fn absorb(&mut self, ev: &SessionEvent, seen: &Seen) {
        let at = ev.at_us;
        let open = self.connections_up;
        let tick = |s: &mut Self, t: Tick| s.series.add(at, open, t);
        match &ev.kind {
            EventKind::Connected { .. } => tick(self, Tick::Connect),
            EventKind::RequestSent { .. } => tick(self, Tick::Request),
            EventKind::Done(done) => {
                let cost = seen.cost.as_ref().map_or(0, |c| nano(c.total_usd));
                if done.cut.is_some() {
                    // Spend counts; the response does not count as completed.
                    self.series.add(at, open, Tick::Cut);
                    self.series.add_cost(at, open, cost);
                } else {
                    tick(
                        self,
                        Tick::Response {
                            cost_nano_usd: cost,
                        },
                    );
                }
                self.record(LatencyMetric::ResponseTime, at, done.total_us);
            }
            EventKind::RequestFailed {
                kind: crate::session::ErrorKind::Cut,
                ..
            } => tick(self, Tick::Cut),
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
        if seen.refused {
            tick(self, Tick::Refused);
        }
        if seen.responded {
            tick(self, Tick::Responded);
        }
        if let Some(figures) = &seen.request {
            if figures.good {
                tick(self, Tick::Good);
            }
            record_figures(&mut self.latency, at, figures);
        }
        if let Some(up_at) = seen.connection_up_at {
            self.open_since_sum = self.open_since_sum.saturating_add(up_at);
        }
        if let Some((since, until)) = seen.connection_span {
            self.open_since_sum = self.open_since_sum.saturating_sub(since);
            self.series.add_connected(since, until, 1);
            self.counts.connected_us = self.counts.connected_us.saturating_add(until - since);
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
