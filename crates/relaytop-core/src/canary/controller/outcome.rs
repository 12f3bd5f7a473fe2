//! How routed requests ended (`Outcome`), the samples kept of them per provider, and their
//! figures over a window (`WindowStats`: error rate, p50, p99).

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use super::canary::MAX_SAMPLES;

/// How one routed request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// The latency the plan judges (time to first token or total), for completed requests.
    pub latency: Option<Duration>,
}

impl Outcome {
    pub fn ok(latency: Duration) -> Self {
        Self {
            ok: true,
            latency: Some(latency),
        }
    }
    pub fn failed() -> Self {
        Self {
            ok: false,
            latency: None,
        }
    }
}

/// Requests of one provider, as the controller saw their outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub ok: u64,
    pub failed: u64,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    pub(super) at: Duration,
    pub(super) ok: bool,
    pub(super) latency_us: Option<u64>,
}

/// Figures of one provider over one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    /// Outcomes (completed and failed).
    pub n: u64,
    pub errors: u64,
    /// Latency samples.
    pub latency_n: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl WindowStats {
    pub fn error_rate(&self) -> Option<f64> {
        (self.n > 0).then(|| self.errors as f64 / self.n as f64)
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Samples(pub(super) VecDeque<Sample>);

impl Samples {
    pub(super) fn push(&mut self, sample: Sample) {
        if self.0.len() >= MAX_SAMPLES {
            self.0.pop_front();
        }
        // Outcomes may arrive slightly out of order; keep the deque sorted by time.
        let pos = self
            .0
            .iter()
            .rposition(|s| s.at <= sample.at)
            .map_or(0, |p| p + 1);
        self.0.insert(pos, sample);
    }

    pub(super) fn prune(&mut self, before: Duration) {
        while self.0.front().is_some_and(|s| s.at < before) {
            self.0.pop_front();
        }
    }

    /// Figures over `[from, to]`.
    pub(super) fn stats(&self, from: Duration, to: Duration) -> WindowStats {
        let mut stats = WindowStats::default();
        let mut latencies: Vec<u64> = Vec::new();
        for s in self.0.iter().filter(|s| s.at >= from && s.at <= to) {
            stats.n += 1;
            if !s.ok {
                stats.errors += 1;
            }
            if let Some(l) = s.latency_us {
                latencies.push(l);
            }
        }
        latencies.sort_unstable();
        stats.latency_n = latencies.len() as u64;
        stats.p50_ms = quantile(&latencies, 0.50);
        stats.p99_ms = quantile(&latencies, 0.99);
        stats
    }
}

/// Nearest-rank quantile of sorted microseconds, in milliseconds.
pub(super) fn quantile(sorted_us: &[u64], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    Some(sorted_us[index] as f64 / 1000.0)
}
