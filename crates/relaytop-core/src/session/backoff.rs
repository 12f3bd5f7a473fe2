//! Reconnect backoff: full-jitter exponential delays, attempt counting and its reset, and
//! the watch that follows when the attempts run out.
//!
//! A pure state machine: it is told when connections come up, fail and prove healthy, with
//! the time and a jitter sample, and answers how long to wait. It never sleeps and never
//! reads a clock, so every rule is tested without waiting.
//!
//! The reset rule: the count (and the "down since" time) starts again only on proof of
//! health: a connection that stayed up `stable_after`, or a response that completed on it
//! (`on_healthy`). A relay that accepts connections and drops them at once proves nothing,
//! so it stays counted (and, once the attempts are used up, watched at the slow interval).

use std::time::Duration;

use crate::session::spec::BackoffPolicy;

/// What to do after a connection failed or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Wait `delay`, then make retry number `attempt` (counting from 1).
    After { attempt: u32, delay: Duration },
    /// The relay is down (`attempt - 1` retries failed in a row, since `down_since`): look
    /// again after `delay` (the watch interval), as retry number `attempt`.
    Watch {
        attempt: u32,
        delay: Duration,
        down_since: Duration,
    },
    /// `attempts` retries failed in a row and there is no watch: stop.
    GiveUp { attempts: u32 },
}

/// Reconnect state of one session.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// A connection that stays up this long resets the count.
    stable_after: Duration,
    /// Retries since the last stable connection.
    attempt: u32,
    /// When the current connection came up, if one is up.
    connected_at: Option<Duration>,
    /// After the attempts run out, look again this often; `None`: give up.
    watch: Option<Duration>,
    /// When the current run of failures began (reset with the count).
    failing_since: Option<Duration>,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy, stable_after: Duration) -> Self {
        Self {
            policy,
            stable_after,
            attempt: 0,
            connected_at: None,
            watch: None,
            failing_since: None,
        }
    }

    /// Keeps watching every `watch` once the attempts run out (`None`: give up then).
    pub fn with_watch(mut self, watch: Option<Duration>) -> Self {
        self.watch = watch;
        self
    }

    /// A response completed on the current connection: the relay is healthy, the count
    /// starts again.
    pub fn on_healthy(&mut self) {
        self.attempt = 0;
        self.failing_since = None;
    }

    /// When the current run of failures began, marking `now` if none is under way (a
    /// refusal or a 429 starts one too).
    pub fn failing_since(&mut self, now: Duration) -> Duration {
        self.settle(now);
        *self.failing_since.get_or_insert(now)
    }

    /// A connection that was up `stable_after` by `now` resets the count.
    fn settle(&mut self, now: Duration) {
        if let Some(up_since) = self.connected_at
            && now.saturating_sub(up_since) >= self.stable_after
        {
            self.on_healthy();
        }
    }

    /// Retries made since the last stable connection.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn max_attempts(&self) -> u32 {
        self.policy.max_attempts
    }

    /// A connection came up at `now`.
    pub fn on_connected(&mut self, now: Duration) {
        self.connected_at = Some(now);
    }

    /// The longest wait before retry `attempt`: `min(cap, base * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let factor = 1u32 << exponent;
        self.policy
            .base
            .checked_mul(factor)
            .unwrap_or(self.policy.cap)
            .min(self.policy.cap)
    }

    /// A connection failed (or dropped) at `now`. `jitter` is a uniform sample in `[0, 1)`;
    /// `retry_after` is the server's `Retry-After`, which wins when it is longer.
    pub fn on_failure(
        &mut self,
        now: Duration,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Retry {
        self.settle(now);
        self.connected_at = None;
        let down_since = *self.failing_since.get_or_insert(now);
        if self.attempt >= self.policy.max_attempts {
            let Some(every) = self.watch else {
                return Retry::GiveUp {
                    attempts: self.attempt,
                };
            };
            self.attempt = self.attempt.saturating_add(1);
            return Retry::Watch {
                attempt: self.attempt,
                delay: retry_after.map_or(every, |asked| asked.max(every)),
                down_since,
            };
        }
        self.attempt += 1;
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let delay = self.ceiling(self.attempt).mul_f64(jitter);
        let delay = match retry_after {
            Some(server_says) if server_says > delay => server_says,
            _ => delay,
        };
        Retry::After {
            attempt: self.attempt,
            delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn backoff() -> Backoff {
        Backoff::new(BackoffPolicy::default(), secs(30))
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = backoff();
        let ceilings: Vec<u64> = (1..=7).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.ceiling(100), secs(30), "no overflow on huge attempts");
    }

    #[test]
    fn full_jitter_scales_the_ceiling() {
        let mut b = backoff();
        assert_eq!(
            b.on_failure(secs(0), None, 0.5),
            Retry::After {
                attempt: 1,
                delay: Duration::from_millis(500)
            }
        );
        assert_eq!(
            b.on_failure(secs(1), None, 0.25),
            Retry::After {
                attempt: 2,
                delay: Duration::from_millis(500)
            }
        );
        assert_eq!(
            b.on_failure(secs(2), None, 0.0),
            Retry::After {
                attempt: 3,
                delay: Duration::ZERO
            }
        );
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let mut b = backoff();
        for n in 1..=10 {
            assert!(matches!(
                b.on_failure(secs(n), None, 0.9),
                Retry::After { attempt, .. } if attempt == n as u32
            ));
        }
        assert_eq!(
            b.on_failure(secs(11), None, 0.9),
            Retry::GiveUp { attempts: 10 }
        );
    }

    #[test]
    fn a_short_lived_connection_does_not_reset_the_count() {
        let mut b = backoff();
        b.on_failure(secs(0), None, 0.5);
        b.on_failure(secs(1), None, 0.5);
        b.on_connected(secs(2));
        // Dropped 5 s later: not stable, so this is retry 3.
        assert!(matches!(
            b.on_failure(secs(7), None, 0.5),
            Retry::After { attempt: 3, .. }
        ));
    }

    #[test]
    fn a_stable_connection_resets_the_count() {
        let mut b = backoff();
        b.on_failure(secs(0), None, 0.5);
        b.on_failure(secs(1), None, 0.5);
        b.on_connected(secs(2));
        assert!(matches!(
            b.on_failure(secs(40), None, 0.5),
            Retry::After { attempt: 1, .. }
        ));
    }

    fn watching() -> Backoff {
        Backoff::new(
            BackoffPolicy {
                base: secs(1),
                cap: secs(30),
                max_attempts: 3,
            },
            secs(30),
        )
        .with_watch(Some(secs(60)))
    }

    #[test]
    fn after_the_attempts_run_out_it_keeps_watching_at_the_watch_interval() {
        let mut b = watching();
        for n in 1..=3 {
            assert!(matches!(
                b.on_failure(secs(10 + n), None, 0.9),
                Retry::After { attempt, .. } if u64::from(attempt) == n
            ));
        }
        for (n, at) in [(4, 20), (5, 80), (6, 140), (100, 200)] {
            if n == 100 {
                b.attempt = 99;
            }
            assert_eq!(
                b.on_failure(secs(at), None, 0.9),
                Retry::Watch {
                    attempt: n,
                    delay: secs(60),
                    down_since: secs(11)
                }
            );
        }
        // A longer Retry-After wins over the watch interval.
        assert!(matches!(
            b.on_failure(secs(300), Some(secs(90)), 0.9),
            Retry::Watch { delay, .. } if delay == secs(90)
        ));
    }

    #[test]
    fn a_connection_that_drops_at_once_keeps_the_watch_and_a_healthy_one_ends_it() {
        let mut b = watching();
        for n in 0..4 {
            b.on_failure(secs(n), None, 0.5);
        }
        // Accepted, then dropped a second later: still down since 0 s.
        b.on_connected(secs(100));
        assert_eq!(
            b.on_failure(secs(101), None, 0.5),
            Retry::Watch {
                attempt: 5,
                delay: secs(60),
                down_since: secs(0)
            }
        );
        // A completed response proves health, however short the connection.
        b.on_connected(secs(161));
        b.on_healthy();
        assert_eq!(
            b.on_failure(secs(162), None, 0.5),
            Retry::After {
                attempt: 1,
                delay: Duration::from_millis(500)
            }
        );
        // So does a connection that stayed up `stable_after`.
        for n in 0..5 {
            b.on_failure(secs(170 + n), None, 0.5);
        }
        b.on_connected(secs(200));
        assert!(matches!(
            b.on_failure(secs(230), None, 0.5),
            Retry::After { attempt: 1, .. }
        ));
        assert_eq!(b.failing_since(secs(231)), secs(230));
    }

    #[test]
    fn retry_after_wins_only_when_longer() {
        let mut b = backoff();
        assert_eq!(
            b.on_failure(secs(0), Some(secs(5)), 0.5),
            Retry::After {
                attempt: 1,
                delay: secs(5)
            }
        );
        let mut b = Backoff::new(
            BackoffPolicy {
                base: secs(10),
                cap: secs(30),
                max_attempts: 3,
            },
            secs(30),
        );
        assert_eq!(
            b.on_failure(secs(0), Some(secs(2)), 0.5),
            Retry::After {
                attempt: 1,
                delay: secs(5)
            }
        );
    }

    #[test]
    fn bad_jitter_samples_are_clamped() {
        let mut b = backoff();
        assert_eq!(
            b.on_failure(secs(0), None, f64::NAN),
            Retry::After {
                attempt: 1,
                delay: Duration::ZERO
            }
        );
        assert_eq!(
            b.on_failure(secs(0), None, 7.0),
            Retry::After {
                attempt: 2,
                delay: secs(2)
            }
        );
    }
}
