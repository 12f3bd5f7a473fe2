//! The replay clock: when the next recorded event is due, at a speed, paused or not, with long
//! silences shortened (asciinema's idle-time limit).
//!
//! Pure: every method takes `now`, the caller's monotonic time (any origin), so the controls
//! are tested without sleeping. Recording times are microseconds on the recording's timeline.

use std::time::Duration;

/// How fast a replay runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// This many times the recorded pace (0.25 to 64).
    Times(f64),
    /// Every event at once, no waiting.
    AsFastAsPossible,
}

impl Speed {
    /// The speeds `faster` and `slower` step through, before "as fast as possible".
    pub const STEPS: [f64; 9] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
    pub const MIN: f64 = 0.25;
    pub const MAX: f64 = 64.0;

    /// A speed factor, kept within 0.25x..64x.
    pub fn times(x: f64) -> Speed {
        if x.is_nan() {
            return Speed::Times(1.0);
        }
        Speed::Times(x.clamp(Self::MIN, Self::MAX))
    }

    /// The next step up (64x goes to as fast as possible).
    pub fn faster(self) -> Speed {
        match self {
            Speed::Times(x) => Self::STEPS
                .iter()
                .find(|s| **s > x + 1e-9)
                .map_or(Speed::AsFastAsPossible, |s| Speed::Times(*s)),
            Speed::AsFastAsPossible => Speed::AsFastAsPossible,
        }
    }

    /// The next step down (as fast as possible goes to 64x).
    pub fn slower(self) -> Speed {
        match self {
            Speed::Times(x) => Speed::Times(
                Self::STEPS
                    .iter()
                    .rev()
                    .find(|s| **s < x - 1e-9)
                    .copied()
                    .unwrap_or(Self::MIN),
            ),
            Speed::AsFastAsPossible => Speed::Times(Self::MAX),
        }
    }

    /// "1x", "0.25x", "max".
    pub fn label(self) -> String {
        match self {
            Speed::Times(x) => format!("{x}x"),
            Speed::AsFastAsPossible => "max".to_owned(),
        }
    }
}

impl std::str::FromStr for Speed {
    type Err = String;

    /// "2", "2x", "0.25x", or "max" (as fast as possible).
    fn from_str(s: &str) -> Result<Speed, String> {
        let s = s.trim();
        if matches!(s, "max" | "fast" | "afap") {
            return Ok(Speed::AsFastAsPossible);
        }
        let x: f64 = s
            .strip_suffix(['x', 'X'])
            .unwrap_or(s)
            .parse()
            .map_err(|_| format!("`{s}` is not a speed: say 0.25 to 64 (or 2x), or max"))?;
        if (Self::MIN..=Self::MAX).contains(&x) {
            Ok(Speed::Times(x))
        } else {
            Err(format!("speed {x} is out of range: 0.25 to 64, or max"))
        }
    }
}

/// Whether the next event may be played.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Now.
    Now,
    /// At this time of the caller's clock.
    At(Duration),
    /// Not while paused.
    Paused,
}

/// The replay clock.
#[derive(Clone, Debug)]
pub struct Player {
    speed: Speed,
    paused: bool,
    idle_limit_us: Option<u64>,
    /// The recording time reached: the last event played, or where a seek landed.
    pos_us: u64,
    /// The caller's time at which `pos_us` was reached; `None` until the first poll.
    anchor: Option<Duration>,
    /// While paused: recording time (idle-shortened) that had passed since `anchor`.
    frozen_us: f64,
}

impl Default for Player {
    fn default() -> Self {
        Self::new(Speed::Times(1.0), None)
    }
}

impl Player {
    pub fn new(speed: Speed, idle_limit: Option<Duration>) -> Self {
        Self {
            speed,
            paused: false,
            idle_limit_us: idle_limit.map(crate::session::event::micros),
            pos_us: 0,
            anchor: None,
            frozen_us: 0.0,
        }
    }

    pub fn speed(&self) -> Speed {
        self.speed
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn idle_limit(&self) -> Option<Duration> {
        self.idle_limit_us.map(Duration::from_micros)
    }

    /// Recording time since `pos_us` that has passed by `now` (idle-shortened).
    fn elapsed_us(&self, now: Duration) -> f64 {
        if self.paused {
            return self.frozen_us;
        }
        match (self.speed, self.anchor) {
            (Speed::Times(x), Some(anchor)) => now.saturating_sub(anchor).as_secs_f64() * 1e6 * x,
            _ => 0.0,
        }
    }

    /// The gap to `next_us` as it will be played (shortened to the idle limit).
    fn played_gap_us(&self, next_us: u64) -> u64 {
        let gap = next_us.saturating_sub(self.pos_us);
        self.idle_limit_us.map_or(gap, |limit| gap.min(limit))
    }

    /// Where the replay is on the recording's timeline at `now`, never past `next_us` (the
    /// next event's time, if any).
    pub fn position_us(&self, now: Duration, next_us: Option<u64>) -> u64 {
        let elapsed = self.elapsed_us(now).max(0.0) as u64;
        let pos = self.pos_us.saturating_add(elapsed);
        match next_us {
            Some(next) if next >= self.pos_us => pos.min(next),
            _ => pos,
        }
    }

    /// Whether the event at `next_us` may be played at `now`.
    pub fn due(&mut self, now: Duration, next_us: u64) -> Due {
        let Speed::Times(x) = self.speed else {
            return Due::Now;
        };
        if self.paused {
            return Due::Paused;
        }
        let anchor = *self.anchor.get_or_insert(now);
        let at = anchor + Duration::from_secs_f64(self.played_gap_us(next_us) as f64 / 1e6 / x);
        if now >= at { Due::Now } else { Due::At(at) }
    }

    /// The event at `next_us` was played: the clock moves there (without drift: from when it
    /// was due, not from when it was played).
    pub fn played(&mut self, now: Duration, next_us: u64) {
        if let (Speed::Times(x), Some(anchor), false) = (self.speed, self.anchor, self.paused) {
            let due =
                anchor + Duration::from_secs_f64(self.played_gap_us(next_us) as f64 / 1e6 / x);
            self.anchor = Some(due.min(now));
        } else {
            self.anchor = Some(now);
        }
        self.frozen_us = 0.0;
        self.pos_us = self.pos_us.max(next_us);
    }

    /// Jumps to `t_us` (a seek, a step): the clock starts from there at `now`.
    pub fn jump(&mut self, now: Duration, t_us: u64) {
        self.pos_us = t_us;
        self.anchor = Some(now);
        self.frozen_us = 0.0;
    }

    pub fn set_speed(&mut self, now: Duration, speed: Speed) {
        let elapsed = self.elapsed_us(now);
        self.speed = speed;
        self.reanchor(now, elapsed);
    }

    pub fn set_idle_limit(&mut self, limit: Option<Duration>) {
        self.idle_limit_us = limit.map(crate::session::event::micros);
    }

    pub fn pause(&mut self, now: Duration) {
        if !self.paused {
            self.frozen_us = self.elapsed_us(now);
            self.paused = true;
        }
    }

    pub fn resume(&mut self, now: Duration) {
        if self.paused {
            self.paused = false;
            let elapsed = self.frozen_us;
            self.reanchor(now, elapsed);
        }
    }

    /// Sets the anchor so that `elapsed_us` of recording time has passed at `now`.
    fn reanchor(&mut self, now: Duration, elapsed_us: f64) {
        if self.paused {
            self.frozen_us = elapsed_us;
            return;
        }
        self.anchor = Some(match self.speed {
            Speed::Times(x) => now.saturating_sub(Duration::from_secs_f64(elapsed_us / 1e6 / x)),
            Speed::AsFastAsPossible => now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn events_come_at_their_time_times_the_speed() {
        let mut p = Player::new(Speed::Times(2.0), None);
        // First poll anchors the clock.
        assert_eq!(p.due(ms(1000), 0), Due::Now);
        p.played(ms(1000), 0);
        // An event 1 s later in the recording is due 0.5 s later at 2x.
        assert_eq!(p.due(ms(1200), 1_000_000), Due::At(ms(1500)));
        assert_eq!(p.position_us(ms(1200), Some(1_000_000)), 400_000);
        assert_eq!(p.due(ms(1500), 1_000_000), Due::Now);
        // Played late: the next one is still timed from when this one was due.
        p.played(ms(1510), 1_000_000);
        assert_eq!(p.due(ms(1510), 2_000_000), Due::At(ms(2000)));
    }

    #[test]
    fn long_silences_are_shortened() {
        let mut p = Player::new(Speed::Times(1.0), Some(Duration::from_secs(2)));
        p.jump(ms(0), 0);
        // An hour of silence plays as two seconds.
        assert_eq!(p.due(ms(0), 3_600_000_000), Due::At(ms(2000)));
        assert_eq!(p.due(ms(2000), 3_600_000_000), Due::Now);
        p.played(ms(2000), 3_600_000_000);
        assert_eq!(p.position_us(ms(2000), None), 3_600_000_000);
    }

    #[test]
    fn pause_freezes_and_resume_goes_on() {
        let mut p = Player::new(Speed::Times(1.0), None);
        p.jump(ms(0), 0);
        p.pause(ms(300));
        assert_eq!(p.due(ms(5000), 1_000_000), Due::Paused);
        assert_eq!(p.position_us(ms(5000), Some(1_000_000)), 300_000);
        p.resume(ms(10_000));
        // 700 ms of recording left to the event.
        assert_eq!(p.due(ms(10_000), 1_000_000), Due::At(ms(10_700)));
    }

    #[test]
    fn changing_speed_keeps_the_position() {
        let mut p = Player::new(Speed::Times(1.0), None);
        p.jump(ms(0), 0);
        p.set_speed(ms(500), Speed::Times(4.0));
        assert_eq!(p.position_us(ms(500), None), 500_000);
        // The remaining 500 ms of recording take 125 ms at 4x.
        assert_eq!(p.due(ms(500), 1_000_000), Due::At(ms(625)));
        p.set_speed(ms(600), Speed::AsFastAsPossible);
        assert_eq!(p.due(ms(600), 1_000_000), Due::Now);
    }

    #[test]
    fn speed_steps() {
        assert_eq!(Speed::Times(1.0).faster(), Speed::Times(2.0));
        assert_eq!(Speed::Times(64.0).faster(), Speed::AsFastAsPossible);
        assert_eq!(Speed::AsFastAsPossible.slower(), Speed::Times(64.0));
        assert_eq!(Speed::Times(0.25).slower(), Speed::Times(0.25));
        assert_eq!(Speed::Times(3.0).slower(), Speed::Times(2.0));
        assert_eq!(Speed::times(1000.0), Speed::Times(64.0));
        assert_eq!(Speed::Times(0.5).label(), "0.5x");
        assert_eq!("2x".parse::<Speed>(), Ok(Speed::Times(2.0)));
        assert_eq!("0.25".parse::<Speed>(), Ok(Speed::Times(0.25)));
        assert_eq!("max".parse::<Speed>(), Ok(Speed::AsFastAsPossible));
        assert!("100".parse::<Speed>().is_err());
        assert!("fast-ish".parse::<Speed>().is_err());
    }
}
