//! Latency: the metrics (response time, time to first token, heartbeat round trip), the
//! windows (1 min, 15 min, whole run), the quantiles read from them, and what a provider and a
//! session keep of each metric (the histograms themselves are `histogram`'s).
//!
//! A window is a ring of time-sliced histograms merged on query: a sample lands in the slice
//! that holds its time, and a query at `now` merges the slices that overlap the last window
//! length. Slices are aligned to multiples of their length, so a window may hold up to one
//! slice more than its length (a 1-minute window of 10-second slices covers between 60 and
//! 70 seconds); a sample older than `length + slice` never counts. Next to each histogram an
//! exact count, sum and maximum are kept, so `mean` and `max` are exact and no quantile is
//! reported above the true maximum.

use serde::Serialize;

use super::histogram::{PROVIDER_PRECISION, Recorded, SESSION_PRECISION, SlicedWindow};

/// Samples above one hour are recorded as one hour (a bound on histogram size).
pub const MAX_SAMPLE_US: u64 = 3_600_000_000;

/// A time window for quantiles, rates and series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The last minute.
    OneMinute,
    /// The last 15 minutes.
    FifteenMinutes,
    /// The whole run.
    Run,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 3] = [Window::OneMinute, Window::FifteenMinutes, Window::Run];

    /// The window's length in microseconds; `None` for the whole run.
    pub fn length_us(self) -> Option<u64> {
        match self {
            Window::OneMinute => Some(60_000_000),
            Window::FifteenMinutes => Some(900_000_000),
            Window::Run => None,
        }
    }

    /// A short label: "1m", "15m", "run".
    pub fn label(self) -> &'static str {
        match self {
            Window::OneMinute => "1m",
            Window::FifteenMinutes => "15m",
            Window::Run => "run",
        }
    }
}

/// A latency that relaytop measures (definitions: spec/RELAY-STATIONS.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyMetric {
    /// Time to first token (TTFT): from sending a request to its first streamed token,
    /// thinking included.
    TimeToFirstToken,
    /// Whole-response time (E2E): from sending a request to its `done`.
    ResponseTime,
    /// Heartbeat round trip: from `ping` to `pong`.
    HeartbeatRtt,
    /// Time to the first answer token, after any thinking (the TTFT when there was none).
    TimeToFirstAnswer,
    /// Time per output token (TPOT): `(E2E − TTFT) / (output tokens − 1)`; output speed is
    /// its inverse.
    TimePerOutputToken,
    /// Inter-token latency (ITL): the gaps between streamed tokens (a chunk of k tokens
    /// counts as k gaps of gap/k).
    InterTokenLatency,
    /// The longest stall of a response: its largest gap between chunks (or before `done`).
    LongestStall,
}

/// How many latency metrics there are.
pub const LATENCY_METRICS: usize = 7;

impl LatencyMetric {
    /// Every latency metric.
    pub const ALL: [LatencyMetric; LATENCY_METRICS] = [
        LatencyMetric::TimeToFirstToken,
        LatencyMetric::ResponseTime,
        LatencyMetric::HeartbeatRtt,
        LatencyMetric::TimeToFirstAnswer,
        LatencyMetric::TimePerOutputToken,
        LatencyMetric::InterTokenLatency,
        LatencyMetric::LongestStall,
    ];

    /// A short label, as the user says it.
    pub fn label(self) -> &'static str {
        match self {
            LatencyMetric::TimeToFirstToken => "time to first token",
            LatencyMetric::ResponseTime => "response time",
            LatencyMetric::HeartbeatRtt => "heartbeat rtt",
            LatencyMetric::TimeToFirstAnswer => "time to first answer token",
            LatencyMetric::TimePerOutputToken => "time per output token",
            LatencyMetric::InterTokenLatency => "inter-token latency",
            LatencyMetric::LongestStall => "longest stall",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            LatencyMetric::TimeToFirstToken => 0,
            LatencyMetric::ResponseTime => 1,
            LatencyMetric::HeartbeatRtt => 2,
            LatencyMetric::TimeToFirstAnswer => 3,
            LatencyMetric::TimePerOutputToken => 4,
            LatencyMetric::InterTokenLatency => 5,
            LatencyMetric::LongestStall => 6,
        }
    }
}

/// Output speed in tokens per second from a time per output token in microseconds.
pub fn tokens_per_second(tpot_us: u64) -> f64 {
    if tpot_us == 0 {
        0.0
    } else {
        1e6 / tpot_us as f64
    }
}

/// Latency quantiles of one metric over one window, in microseconds.
///
/// Every figure comes with `count`, the number of samples behind it; all figures are 0 when
/// `count` is 0. Quantiles are within the histogram's precision (0.1 % for providers, 1 %
/// for sessions) and never above `max`; `max` and `mean` are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample (exact).
    pub max: u64,
    /// Arithmetic mean, rounded to the microsecond.
    pub mean: u64,
    /// Samples behind these figures.
    pub count: u64,
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Quantiles {
    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Median in milliseconds.
    pub fn p50_ms(&self) -> f64 {
        ms(self.p50)
    }
    /// 90th percentile in milliseconds.
    pub fn p90_ms(&self) -> f64 {
        ms(self.p90)
    }
    /// 99th percentile in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        ms(self.p99)
    }
    /// 99.9th percentile in milliseconds.
    pub fn p999_ms(&self) -> f64 {
        ms(self.p999)
    }
    /// Largest sample in milliseconds.
    pub fn max_ms(&self) -> f64 {
        ms(self.max)
    }
    /// Mean in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        ms(self.mean)
    }
}

/// One latency metric of a provider: full precision, 1-minute window of 10-second slices,
/// 15-minute window of 1-minute slices, and the whole run.
#[derive(Clone, Debug)]
pub(crate) struct ProviderLatency {
    run: Recorded<u64>,
    one_minute: SlicedWindow<u32>,
    fifteen_minutes: SlicedWindow<u32>,
}

impl ProviderLatency {
    pub(crate) fn new() -> Self {
        Self {
            run: Recorded::new(PROVIDER_PRECISION),
            one_minute: SlicedWindow::new(PROVIDER_PRECISION, 60_000_000, 10_000_000, true),
            fifteen_minutes: SlicedWindow::new(PROVIDER_PRECISION, 900_000_000, 60_000_000, true),
        }
    }

    /// `n` samples of `value_us` at once.
    pub(crate) fn record_n(&mut self, at_us: u64, value_us: u64, n: u64) {
        self.run.record_n(value_us, n);
        self.one_minute.record_n(at_us, value_us, n);
        self.fifteen_minutes.record_n(at_us, value_us, n);
    }

    pub(crate) fn quantiles(&self, window: Window, now_us: u64) -> Quantiles {
        match window {
            Window::OneMinute => self.one_minute.quantiles(now_us),
            Window::FifteenMinutes => self.fifteen_minutes.quantiles(now_us),
            Window::Run => self.run.quantiles(),
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.run.heap_bytes() + self.one_minute.heap_bytes() + self.fifteen_minutes.heap_bytes()
    }
}

impl Packable for ProviderLatency {
    fn packed(&self) -> Self {
        Self {
            run: self.run.packed(),
            one_minute: self.one_minute.packed(),
            fifteen_minutes: self.fifteen_minutes.packed(),
        }
    }
}

/// Latency histograms that can be copied packed (for replay checkpoints). A packed histogram
/// is unpacked when something is recorded into it (or it is subtracted from), so a copy that
/// goes on folding only unpacks what it touches: the run's and the running sums, the newest
/// slices.
pub(crate) trait Packable: Sized {
    /// A copy holding only the buckets with samples: reads the same, a fraction of the size.
    fn packed(&self) -> Self;
}

/// `packed` over a metric-indexed array of histograms.
pub(crate) fn packed_all<L: Packable>(
    all: &[Option<Box<L>>; LATENCY_METRICS],
) -> [Option<Box<L>>; LATENCY_METRICS] {
    all.each_ref()
        .map(|l| l.as_ref().map(|l| Box::new(l.packed())))
}

/// One latency metric of a session: 2 significant figures, the whole run and a 1-minute
/// window of three 30-second slices (covering 60 to 90 seconds), merged on query.
#[derive(Clone, Debug)]
pub(crate) struct SessionLatency {
    run: Recorded<u32>,
    one_minute: SlicedWindow<u16>,
}

impl SessionLatency {
    pub(crate) fn new() -> Self {
        Self {
            run: Recorded::new(SESSION_PRECISION),
            one_minute: SlicedWindow::new(SESSION_PRECISION, 60_000_000, 30_000_000, false),
        }
    }

    pub(crate) fn record_n(&mut self, at_us: u64, value_us: u64, n: u64) {
        self.run.record_n(value_us, n);
        self.one_minute.record_n(at_us, value_us, n);
    }

    /// `None` for the 15-minute window, which sessions do not keep.
    pub(crate) fn quantiles(&self, window: Window, now_us: u64) -> Option<Quantiles> {
        match window {
            Window::OneMinute => Some(self.one_minute.quantiles(now_us)),
            Window::FifteenMinutes => None,
            Window::Run => Some(self.run.quantiles()),
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.run.heap_bytes() + self.one_minute.heap_bytes()
    }
}

impl Packable for SessionLatency {
    fn packed(&self) -> Self {
        Self {
            run: self.run.packed(),
            one_minute: self.one_minute.packed(),
        }
    }
}
