//! A model's figures at one provider: the counts and latency quantiles of the sessions that
//! ask for it, kept at a session's precision (2 significant figures, the last minute and the
//! run), so that a provider serving many models costs little more than its sessions.

use crate::session::{EventKind, SessionEvent};

use super::counts::*;
use super::latency::{
    LATENCY_METRICS, LatencyMetric, Quantiles, SessionLatency, Window, packed_all,
};
use super::session::{record_figures, record_into};

/// Figures of one model at one provider.
#[derive(Clone, Debug)]
pub struct ModelStats {
    pub(super) provider: String,
    pub(super) model: String,
    pub(super) sessions: u32,
    /// Everything counted, over the sessions asking for this model.
    pub counts: Counts,
    pub(super) latency: [Option<Box<SessionLatency>>; LATENCY_METRICS],
}

impl ModelStats {
    pub(super) fn new(provider: &str, model: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            sessions: 0,
            counts: Counts::default(),
            latency: Default::default(),
        }
    }

    /// The provider serving it.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The model, as the sessions ask for it.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Sessions asking for it.
    pub fn sessions(&self) -> u32 {
        self.sessions
    }

    /// Quantiles of `metric` over the last minute or the run (`None` for 15 minutes).
    pub fn latency(&self, metric: LatencyMetric, window: Window, now_us: u64) -> Option<Quantiles> {
        match &self.latency[metric.index()] {
            Some(l) => l.quantiles(window, now_us),
            None => (window != Window::FifteenMinutes).then(Quantiles::default),
        }
    }

    /// A copy with its histograms packed.
    pub(super) fn packed(&self) -> Self {
        Self {
            provider: self.provider.clone(),
            model: self.model.clone(),
            sessions: self.sessions,
            counts: self.counts.clone(),
            latency: packed_all(&self.latency),
        }
    }

    /// Folds one event of one of its sessions, with what the session saw.
    pub(super) fn absorb(&mut self, ev: &SessionEvent, seen: &Seen) {
        let at = ev.at_us;
        match &ev.kind {
            EventKind::Done(done) => {
                record_into(
                    &mut self.latency,
                    LatencyMetric::ResponseTime,
                    at,
                    done.total_us,
                    1,
                );
            }
            EventKind::Pong { rtt_us } => {
                record_into(
                    &mut self.latency,
                    LatencyMetric::HeartbeatRtt,
                    at,
                    *rtt_us,
                    1,
                );
            }
            _ => {}
        }
        if let Some(ttft) = seen.ttft_us {
            record_into(
                &mut self.latency,
                LatencyMetric::TimeToFirstToken,
                at,
                ttft,
                1,
            );
        }
        if let Some(figures) = &seen.request {
            record_figures(&mut self.latency, at, figures);
        }
        self.counts.add(at, &ev.kind, seen);
    }
}
