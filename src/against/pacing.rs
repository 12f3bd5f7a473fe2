//! The pacing of re-sent requests: `schedule` (the recorded spacing, scaled and cut) and
//! `Pacer`, a pure state machine over `now` that also keeps to the target's rate limits and
//! holds back after a 429.

use std::fmt::Write as _;
use std::time::Duration;

use relaytop_core::session::ratelimit::SlidingWindow;

/// How the requests are spaced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// The recorded spacing, `speed` times faster; gaps longer than `idle_limit` shortened to
    /// it.
    Recorded {
        speed: f64,
        idle_limit: Option<Duration>,
    },
    /// Each request as soon as a connection is free and the target's rate limits allow.
    AsFastAsAllowed,
}

impl Pacing {
    pub(super) fn describe(&self) -> String {
        match self {
            Pacing::Recorded { speed, idle_limit } => {
                let mut s = if (*speed - 1.0).abs() < 1e-9 {
                    "with the recorded spacing".to_owned()
                } else {
                    format!("with the recorded spacing at {speed}x")
                };
                if let Some(limit) = idle_limit {
                    let _ = write!(s, ", silences cut to {:.1} s", limit.as_secs_f64());
                }
                s
            }
            Pacing::AsFastAsAllowed => "as fast as the target's rate limits allow".to_owned(),
        }
    }
}

/// When each request is due, from the first (at zero), for the recorded spacing.
pub fn schedule(at_us: &[u64], speed: f64, idle_limit: Option<Duration>) -> Vec<Duration> {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    let mut due = Vec::with_capacity(at_us.len());
    let mut t = Duration::ZERO;
    let mut previous = at_us.first().copied().unwrap_or(0);
    for &at in at_us {
        let mut gap = Duration::from_micros(at.saturating_sub(previous));
        if let Some(limit) = idle_limit {
            gap = gap.min(limit);
        }
        t += gap.div_f64(speed);
        due.push(t);
        previous = at;
    }
    due
}

/// What the pacer says at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Send request number `n` (in recorded order) now.
    Send(usize),
    /// Nothing before this time.
    WaitUntil(Duration),
    /// Every request has gone.
    Done,
}

/// The pacing of a re-sent recording, pure: times are offsets the caller passes in.
///
/// It hands out requests in recorded order, each no earlier than its due time (none in
/// `AsFastAsAllowed`), within the target's sliding window of sends, and none while a 429
/// (or a relay's `rate_limited`) asked to wait. The caller asks only when a connection is free.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Due times (empty: as fast as allowed).
    due: Vec<Duration>,
    total: usize,
    next: usize,
    window: SlidingWindow,
    hold_until: Duration,
}

impl Pacer {
    /// Requests due at `due` (from `schedule`, offset by the start), within `per_minute`
    /// sends in any `window`.
    pub fn recorded(due: Vec<Duration>, per_minute: u32, window: Duration) -> Self {
        Self {
            total: due.len(),
            due,
            next: 0,
            window: SlidingWindow::new(per_minute, window),
            hold_until: Duration::ZERO,
        }
    }

    /// `total` requests as fast as `per_minute` sends in any `window` allow.
    pub fn as_fast_as_allowed(total: usize, per_minute: u32, window: Duration) -> Self {
        Self {
            due: Vec::new(),
            total,
            next: 0,
            window: SlidingWindow::new(per_minute, window),
            hold_until: Duration::ZERO,
        }
    }

    /// The next request to send at `now`, or when to ask again. Takes a slot of the window
    /// when it says `Send`.
    pub fn poll(&mut self, now: Duration) -> Pace {
        if self.next >= self.total {
            return Pace::Done;
        }
        let mut at = self.hold_until;
        if let Some(&due) = self.due.get(self.next) {
            at = at.max(due);
        }
        if now < at {
            return Pace::WaitUntil(at);
        }
        match self.window.try_acquire(now) {
            Ok(()) => {
                self.next += 1;
                Pace::Send(self.next - 1)
            }
            Err(free_at) => Pace::WaitUntil(free_at.max(now)),
        }
    }

    /// The relay asked to wait (a 429, a `rate_limited` frame): nothing goes out before
    /// `until`.
    pub fn hold(&mut self, until: Duration) {
        self.hold_until = self.hold_until.max(until);
    }

    /// A request handed out could not be sent: it goes again next.
    pub fn give_back(&mut self) {
        self.next = self.next.saturating_sub(1);
    }

    /// Requests handed out so far.
    pub fn sent(&self) -> usize {
        self.next
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_schedule_keeps_the_recorded_spacing_scaled_and_cut() {
        let at = [1_000_000, 1_500_000, 11_500_000, 12_000_000];
        assert_eq!(
            schedule(&at, 1.0, None),
            [
                s(0),
                Duration::from_millis(500),
                Duration::from_millis(10_500),
                s(11)
            ]
        );
        assert_eq!(
            schedule(&at, 2.0, Some(s(2))),
            [
                s(0),
                Duration::from_millis(250),
                Duration::from_millis(1250),
                Duration::from_millis(1500)
            ]
        );
    }

    #[test]
    fn recorded_pacing_waits_for_each_due_time() {
        let mut p = Pacer::recorded(vec![s(0), s(2), s(2)], 6000, s(60));
        assert_eq!(p.poll(s(0)), Pace::Send(0));
        assert_eq!(p.poll(s(1)), Pace::WaitUntil(s(2)));
        assert_eq!(p.poll(s(2)), Pace::Send(1));
        assert_eq!(p.poll(s(2)), Pace::Send(2));
        assert_eq!(p.poll(s(3)), Pace::Done);
    }

    #[test]
    fn as_fast_as_allowed_honours_the_rate_limit() {
        // 3 a minute: three at once, then each as its slot frees.
        let mut p = Pacer::as_fast_as_allowed(6, 3, s(60));
        assert_eq!(p.poll(s(0)), Pace::Send(0));
        assert_eq!(p.poll(s(0)), Pace::Send(1));
        assert_eq!(p.poll(s(1)), Pace::Send(2));
        assert_eq!(p.poll(s(1)), Pace::WaitUntil(s(60)));
        assert_eq!(p.poll(s(59)), Pace::WaitUntil(s(60)));
        assert_eq!(p.poll(s(60)), Pace::Send(3));
        assert_eq!(
            p.poll(s(60)),
            Pace::Send(4),
            "both sends of second 0 left the window"
        );
        assert_eq!(
            p.poll(s(60)),
            Pace::WaitUntil(s(61)),
            "the one of second 1 has not"
        );
        assert_eq!(p.poll(s(61)), Pace::Send(5));
        assert_eq!(p.poll(s(61)), Pace::Done);
        assert_eq!(p.sent(), 6);
    }

    #[test]
    fn a_429_holds_every_request_back() {
        let mut p = Pacer::as_fast_as_allowed(3, 6000, s(60));
        assert_eq!(p.poll(s(0)), Pace::Send(0));
        p.hold(s(4));
        assert_eq!(p.poll(s(1)), Pace::WaitUntil(s(4)));
        p.hold(s(2));
        assert_eq!(
            p.poll(s(3)),
            Pace::WaitUntil(s(4)),
            "a shorter wait does not cut it"
        );
        assert_eq!(p.poll(s(4)), Pace::Send(1));
        p.give_back();
        assert_eq!(p.poll(s(4)), Pace::Send(1), "a request not sent goes again");
    }
}
