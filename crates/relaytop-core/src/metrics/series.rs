//! Time series for sparklines and windowed rates: per-second buckets for the last 15 minutes
//! and per-minute buckets for the run (the last 24 hours of it), both of fixed size.

use std::collections::VecDeque;

use serde::Serialize;

use super::latency::Window;

const SECOND_US: u64 = 1_000_000;
const MINUTE_US: u64 = 60_000_000;
/// Per-second buckets kept: 15 minutes.
pub const SECONDS_KEPT: usize = 900;
/// Per-minute buckets kept: 24 hours.
pub const MINUTES_KEPT: usize = 1440;

/// What a series shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesMetric {
    /// Time to first token: count, mean and max of the samples in each bucket.
    TimeToFirstToken,
    /// Heartbeat round trip: count, mean and max, and heartbeats missed (`missed`).
    HeartbeatRtt,
    /// Completed responses (`count`).
    Responses,
    /// Errors reported (`count`).
    Errors,
    /// Connections dropped (`count`).
    Drops,
}

/// One bucket of a series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SeriesPoint {
    /// Start of the bucket, microseconds since the run started.
    pub start_us: u64,
    /// Samples (or events) in the bucket.
    pub count: u64,
    /// Mean of the samples in microseconds (0 without samples, or for counted events).
    pub mean_us: u64,
    /// Largest sample in microseconds.
    pub max_us: u64,
    /// Heartbeats missed in the bucket (for `HeartbeatRtt`; 0 otherwise).
    pub missed: u64,
}

/// Count, sum and max of the samples in a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Agg {
    count: u32,
    max_us: u32,
    sum_us: u64,
}

impl Agg {
    fn add(&mut self, v: u64) {
        self.count = self.count.saturating_add(1);
        self.max_us = self.max_us.max(u32::try_from(v).unwrap_or(u32::MAX));
        self.sum_us = self.sum_us.saturating_add(v);
    }
}

/// What happened to a provider in one second (or one minute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Which second (or minute) of the run; `u64::MAX` for a slot never used.
    index: u64,
    ttft: Agg,
    rtt: Agg,
    missed: u32,
    requests: u32,
    responses: u32,
    failed: u32,
    errors: u32,
    drops: u32,
    connects: u32,
    /// Responses cut short.
    cut: u32,
    /// Requests that met the service-level objective.
    good: u32,
    /// Requests that got at least one token.
    responded: u32,
    /// Connection attempts the relay refused (or that failed).
    refused: u32,
    /// Connection time in the bucket, microseconds (summed over connections).
    connected_us: u64,
    /// Connections up when the bucket began (for drop rates over a window).
    open_at_start: u32,
    /// Spend in nano-dollars (US).
    cost_nano_usd: u64,
}

impl Bucket {
    fn empty(index: u64, open: u32) -> Self {
        Self {
            index,
            ttft: Agg::default(),
            rtt: Agg::default(),
            missed: 0,
            requests: 0,
            responses: 0,
            failed: 0,
            errors: 0,
            drops: 0,
            connects: 0,
            cut: 0,
            good: 0,
            responded: 0,
            refused: 0,
            connected_us: 0,
            open_at_start: open,
            cost_nano_usd: 0,
        }
    }

    fn point(&self, metric: SeriesMetric, start_us: u64) -> SeriesPoint {
        let agg = |a: &Agg, missed: u32| SeriesPoint {
            start_us,
            count: u64::from(a.count),
            mean_us: if a.count == 0 {
                0
            } else {
                a.sum_us / u64::from(a.count)
            },
            max_us: u64::from(a.max_us),
            missed: u64::from(missed),
        };
        let events = |n: u32| SeriesPoint {
            start_us,
            count: u64::from(n),
            ..SeriesPoint::default()
        };
        match metric {
            SeriesMetric::TimeToFirstToken => agg(&self.ttft, 0),
            SeriesMetric::HeartbeatRtt => agg(&self.rtt, self.missed),
            SeriesMetric::Responses => events(self.responses),
            SeriesMetric::Errors => events(self.errors),
            SeriesMetric::Drops => events(self.drops),
        }
    }
}

/// One thing to add to the current bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tick {
    Ttft(u64),
    Rtt(u64),
    Missed,
    Request,
    Response { cost_nano_usd: u64 },
    Failed,
    Error,
    Drop,
    Connect,
    Cut,
    Good,
    Responded,
    Refused,
    Cost(u64),
}

impl Tick {
    fn apply(self, b: &mut Bucket) {
        let inc = |n: &mut u32| *n = n.saturating_add(1);
        match self {
            Tick::Ttft(v) => b.ttft.add(v),
            Tick::Rtt(v) => b.rtt.add(v),
            Tick::Missed => inc(&mut b.missed),
            Tick::Request => inc(&mut b.requests),
            Tick::Response { cost_nano_usd } => {
                inc(&mut b.responses);
                b.cost_nano_usd = b.cost_nano_usd.saturating_add(cost_nano_usd);
            }
            Tick::Failed => inc(&mut b.failed),
            Tick::Error => inc(&mut b.errors),
            Tick::Drop => inc(&mut b.drops),
            Tick::Connect => inc(&mut b.connects),
            Tick::Cut => inc(&mut b.cut),
            Tick::Good => inc(&mut b.good),
            Tick::Responded => inc(&mut b.responded),
            Tick::Refused => inc(&mut b.refused),
            Tick::Cost(nano) => b.cost_nano_usd = b.cost_nano_usd.saturating_add(nano),
        }
    }
}

/// Sums over a window, for rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WindowSums {
    pub requests: u64,
    pub responses: u64,
    pub failed: u64,
    pub errors: u64,
    pub drops: u64,
    pub connects: u64,
    /// Connections up when the window's first active bucket began.
    pub open_at_start: u64,
    pub cost_nano_usd: u64,
    pub cut: u64,
    pub good: u64,
    pub responded: u64,
    pub refused: u64,
    /// Connection time, microseconds (summed over connections).
    pub connected_us: u64,
}

/// A provider's series: a fixed ring of per-second buckets and a capped deque of per-minute
/// buckets.
#[derive(Clone, Debug, Default)]
pub(crate) struct Series {
    /// Slot `s % SECONDS_KEPT` holds second `s`; allocated on first use.
    seconds: Vec<Bucket>,
    /// Consecutive minutes, oldest first, at most `MINUTES_KEPT`.
    minutes: VecDeque<Bucket>,
}

impl Series {
    /// Adds `tick` at `at_us`; `open` is the number of connections up before it.
    pub(crate) fn add(&mut self, at_us: u64, open: u32, tick: Tick) {
        if self.seconds.is_empty() {
            self.seconds = vec![Bucket::empty(u64::MAX, 0); SECONDS_KEPT];
        }
        let second = at_us / SECOND_US;
        let slot = &mut self.seconds[(second % SECONDS_KEPT as u64) as usize];
        // A slot still holding an older second (or none) starts over; a late event for a
        // second already overwritten counts only in the minute series.
        if slot.index == u64::MAX || slot.index < second {
            *slot = Bucket::empty(second, open);
        }
        if slot.index == second {
            tick.apply(slot);
        }
        if let Some(b) = self.minute_mut(at_us / MINUTE_US, open) {
            tick.apply(b);
        }
    }

    /// Adds spend without a response (a cut response is billed all the same).
    pub(crate) fn add_cost(&mut self, at_us: u64, open: u32, cost_nano_usd: u64) {
        self.add(at_us, open, Tick::Cost(cost_nano_usd));
    }

    /// Adds `open` connections' time from `from_us` to `to_us`, spread over the seconds and
    /// minutes it spans (only the seconds still kept: the last 15 minutes of it).
    pub(crate) fn add_connected(&mut self, from_us: u64, to_us: u64, open: u32) {
        if open == 0 || to_us <= from_us {
            return;
        }
        if self.seconds.is_empty() {
            self.seconds = vec![Bucket::empty(u64::MAX, 0); SECONDS_KEPT];
        }
        let per = u64::from(open);
        let start = from_us.max(to_us.saturating_sub(SECONDS_KEPT as u64 * SECOND_US));
        let mut t = start;
        while t < to_us {
            let second = t / SECOND_US;
            let end = ((second + 1) * SECOND_US).min(to_us);
            let slot = &mut self.seconds[(second % SECONDS_KEPT as u64) as usize];
            if slot.index == u64::MAX || slot.index < second {
                *slot = Bucket::empty(second, open);
            }
            if slot.index == second {
                slot.connected_us = slot.connected_us.saturating_add((end - t) * per);
            }
            t = end;
        }
        let mut t = from_us.max(to_us.saturating_sub(MINUTES_KEPT as u64 * MINUTE_US));
        while t < to_us {
            let minute = t / MINUTE_US;
            let end = ((minute + 1) * MINUTE_US).min(to_us);
            if let Some(b) = self.minute_mut(minute, open) {
                b.connected_us = b.connected_us.saturating_add((end - t) * per);
            }
            t = end;
        }
    }

    fn minute_mut(&mut self, minute: u64, open: u32) -> Option<&mut Bucket> {
        let back = self.minutes.back().map(|b| b.index);
        match back {
            None => self.minutes.push_back(Bucket::empty(minute, open)),
            Some(last) if minute > last => {
                // Fill the gap with empty minutes (at most a day of them).
                let from = (last + 1).max(minute.saturating_sub(MINUTES_KEPT as u64 - 1));
                if from > last + 1 {
                    self.minutes.clear();
                }
                for m in from..=minute {
                    self.minutes.push_back(Bucket::empty(m, open));
                    if self.minutes.len() > MINUTES_KEPT {
                        self.minutes.pop_front();
                    }
                }
            }
            _ => {}
        }
        let front = self.minutes.front()?.index;
        let offset = usize::try_from(minute.checked_sub(front)?).ok()?;
        self.minutes.get_mut(offset)
    }

    /// One point per bucket of `window` ending at `now_us`, oldest first: seconds for the
    /// 1- and 15-minute windows, minutes for the run (at most the last 24 hours).
    pub(crate) fn points(
        &self,
        metric: SeriesMetric,
        window: Window,
        now_us: u64,
    ) -> Vec<SeriesPoint> {
        match window {
            Window::OneMinute | Window::FifteenMinutes => {
                let len = window.length_us().unwrap_or(0) / SECOND_US;
                let now = now_us / SECOND_US;
                let first = (now + 1).saturating_sub(len);
                (first..=now)
                    .map(|s| match self.second(s) {
                        Some(b) => b.point(metric, s * SECOND_US),
                        None => SeriesPoint {
                            start_us: s * SECOND_US,
                            ..SeriesPoint::default()
                        },
                    })
                    .collect()
            }
            Window::Run => {
                let now = now_us / MINUTE_US;
                let first = (now + 1).saturating_sub(MINUTES_KEPT as u64);
                let front = self.minutes.front().map_or(u64::MAX, |b| b.index);
                (first..=now)
                    .map(|m| {
                        let bucket = m
                            .checked_sub(front)
                            .and_then(|o| usize::try_from(o).ok())
                            .and_then(|o| self.minutes.get(o));
                        match bucket {
                            Some(b) => b.point(metric, m * MINUTE_US),
                            None => SeriesPoint {
                                start_us: m * MINUTE_US,
                                ..SeriesPoint::default()
                            },
                        }
                    })
                    .collect()
            }
        }
    }

    fn second(&self, s: u64) -> Option<&Bucket> {
        self.seconds
            .get((s % SECONDS_KEPT as u64) as usize)
            .filter(|b| b.index == s)
    }

    /// Sums over the last `len_s` seconds ending at `now_us` (at most 15 minutes).
    pub(crate) fn sums(&self, len_s: u64, now_us: u64) -> WindowSums {
        let now = now_us / SECOND_US;
        let first = (now + 1).saturating_sub(len_s.min(SECONDS_KEPT as u64));
        let mut sums = WindowSums::default();
        let mut seen_first = false;
        for b in (first..=now).filter_map(|s| self.second(s)) {
            if !seen_first {
                sums.open_at_start = u64::from(b.open_at_start);
                seen_first = true;
            }
            sums.requests += u64::from(b.requests);
            sums.responses += u64::from(b.responses);
            sums.failed += u64::from(b.failed);
            sums.errors += u64::from(b.errors);
            sums.drops += u64::from(b.drops);
            sums.connects += u64::from(b.connects);
            sums.cost_nano_usd = sums.cost_nano_usd.saturating_add(b.cost_nano_usd);
            sums.cut += u64::from(b.cut);
            sums.good += u64::from(b.good);
            sums.responded += u64::from(b.responded);
            sums.refused += u64::from(b.refused);
            sums.connected_us = sums.connected_us.saturating_add(b.connected_us);
        }
        sums
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.seconds.capacity() + self.minutes.capacity()) * std::mem::size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = SECOND_US;

    #[test]
    fn seconds_ring_forgets_after_fifteen_minutes() {
        let mut s = Series::default();
        s.add(3 * S, 0, Tick::Ttft(400_000));
        s.add(3 * S + 10, 0, Tick::Ttft(200_000));
        let p = s.points(SeriesMetric::TimeToFirstToken, Window::OneMinute, 10 * S);
        assert_eq!(p.len(), 11, "seconds 0..=10");
        assert_eq!(p[3].count, 2);
        assert_eq!((p[3].mean_us, p[3].max_us), (300_000, 400_000));
        assert_eq!(p[3].start_us, 3 * S);

        let p = s.points(
            SeriesMetric::TimeToFirstToken,
            Window::FifteenMinutes,
            1000 * S,
        );
        assert_eq!(p.len(), SECONDS_KEPT);
        assert!(p.iter().all(|p| p.count == 0));
        // A new second in the same slot replaces the old one.
        s.add(903 * S, 0, Tick::Ttft(1));
        let p = s.points(SeriesMetric::TimeToFirstToken, Window::OneMinute, 903 * S);
        assert_eq!(p.last().map(|p| p.count), Some(1));
    }

    #[test]
    fn minutes_fill_gaps_and_cap_at_a_day() {
        let mut s = Series::default();
        s.add(0, 0, Tick::Error);
        s.add(5 * 60 * S, 0, Tick::Error);
        s.add(5 * 60 * S + 1, 0, Tick::Drop);
        let p = s.points(SeriesMetric::Errors, Window::Run, 5 * 60 * S);
        assert_eq!(
            p.iter().map(|p| p.count).collect::<Vec<_>>(),
            vec![1, 0, 0, 0, 0, 1]
        );
        let p = s.points(SeriesMetric::Drops, Window::Run, 5 * 60 * S);
        assert_eq!(p[5].count, 1);

        let two_days = 2 * 1440 * 60 * S;
        s.add(two_days, 0, Tick::Error);
        assert!(s.minutes.len() <= MINUTES_KEPT);
        let p = s.points(SeriesMetric::Errors, Window::Run, two_days);
        assert_eq!(p.len(), MINUTES_KEPT);
        assert_eq!(p.iter().map(|p| p.count).sum::<u64>(), 1);
        for m in 0..3000u64 {
            s.add(two_days + m * 60 * S, 0, Tick::Error);
        }
        assert_eq!(s.minutes.len(), MINUTES_KEPT);
    }

    #[test]
    fn sums_cover_the_window_and_remember_open_connections() {
        let mut s = Series::default();
        s.add(S, 0, Tick::Connect);
        s.add(S, 1, Tick::Connect);
        s.add(50 * S, 2, Tick::Drop);
        s.add(70 * S, 1, Tick::Response { cost_nano_usd: 5 });
        let w = s.sums(60, 70 * S);
        assert_eq!(
            (w.connects, w.drops, w.open_at_start, w.responses),
            (0, 1, 2, 1)
        );
        assert_eq!(w.cost_nano_usd, 5);
        let w = s.sums(900, 70 * S);
        assert_eq!((w.connects, w.drops, w.open_at_start), (2, 1, 0));
    }
}
