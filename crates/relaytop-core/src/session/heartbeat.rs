//! Heartbeats and dead-peer detection for one connection, as a pure state machine.
//!
//! The session task tells it what was sent and received, and when; it answers when to send
//! the next `ping`, which `pong` closes which round trip, when a ping has gone unanswered for
//! a whole interval (missed), and when the peer is dead (nothing received for `dead_after`).
//! It never sleeps and never reads a clock.

use std::collections::VecDeque;
use std::time::Duration;

/// At most this many unanswered pings are remembered; older ones are forgotten.
const MAX_OUTSTANDING: usize = 4;

/// What the connection should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Send a heartbeat (`ping`), then call `on_ping_sent`.
    SendPing,
    /// The oldest ping has waited a whole interval without an answer.
    Missed { waited: Duration },
    /// Nothing has come back for `silent_for`: close without waiting and reconnect.
    Dead { silent_for: Duration },
}

/// Heartbeat state of one open connection.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    interval: Option<Duration>,
    dead_after: Duration,
    last_received: Duration,
    last_ping_sent: Duration,
    /// When each unanswered ping was sent, oldest first.
    outstanding: VecDeque<Duration>,
    /// Whether the oldest outstanding ping was already reported missed.
    missed_reported: bool,
    /// Whether something is expected from the peer even without heartbeats (a request is
    /// under way), so that silence means a dead peer.
    awaiting_response: bool,
}

impl Heartbeat {
    /// A connection opened at `now`. With `interval` `None`, no pings are sent, and silence
    /// only counts as death while a response is awaited.
    pub fn new(now: Duration, interval: Option<Duration>, dead_after: Duration) -> Self {
        Self {
            interval: interval.filter(|i| !i.is_zero()),
            dead_after,
            last_received: now,
            last_ping_sent: now,
            outstanding: VecDeque::with_capacity(MAX_OUTSTANDING),
            missed_reported: false,
            awaiting_response: false,
        }
    }

    /// Anything arrived from the peer (a frame, a WebSocket Pong).
    pub fn on_received(&mut self, now: Duration) {
        self.last_received = self.last_received.max(now);
    }

    /// A request went out (`true`) or its response ended (`false`).
    pub fn set_awaiting_response(&mut self, now: Duration, awaiting: bool) {
        if awaiting && !self.awaiting_response {
            // Silence is measured from the request, not from a quiet period before it.
            self.last_received = self.last_received.max(now);
        }
        self.awaiting_response = awaiting;
    }

    /// A ping went out at `now`.
    pub fn on_ping_sent(&mut self, now: Duration) {
        self.last_ping_sent = now;
        if self.outstanding.len() == MAX_OUTSTANDING {
            self.outstanding.pop_front();
            self.missed_reported = false;
        }
        self.outstanding.push_back(now);
    }

    /// A `pong` arrived at `now`: the round trip of the oldest unanswered ping, if any.
    pub fn on_pong(&mut self, now: Duration) -> Option<Duration> {
        self.on_received(now);
        let sent = self.outstanding.pop_front()?;
        self.missed_reported = false;
        Some(now.saturating_sub(sent))
    }

    /// Pings sent and not yet answered.
    pub fn unanswered(&self) -> usize {
        self.outstanding.len()
    }

    /// What is due at `now`, if anything. Call again until it answers `None`.
    pub fn poll(&mut self, now: Duration) -> Option<HeartbeatAction> {
        let silent_for = now.saturating_sub(self.last_received);
        let expecting = self.interval.is_some() || self.awaiting_response;
        if expecting && silent_for >= self.dead_after {
            return Some(HeartbeatAction::Dead { silent_for });
        }
        let interval = self.interval?;
        if !self.missed_reported
            && let Some(&oldest) = self.outstanding.front()
        {
            let waited = now.saturating_sub(oldest);
            if waited >= interval {
                self.missed_reported = true;
                return Some(HeartbeatAction::Missed { waited });
            }
        }
        if now >= self.last_ping_sent + interval {
            return Some(HeartbeatAction::SendPing);
        }
        None
    }

    /// The next time `poll` may have something to do.
    pub fn next_deadline(&self) -> Duration {
        let expecting = self.interval.is_some() || self.awaiting_response;
        let mut next = if expecting {
            self.last_received + self.dead_after
        } else {
            Duration::MAX
        };
        if let Some(interval) = self.interval {
            next = next.min(self.last_ping_sent + interval);
            if !self.missed_reported
                && let Some(&oldest) = self.outstanding.front()
            {
                next = next.min(oldest + interval);
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }
    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn standard(now: Duration) -> Heartbeat {
        Heartbeat::new(now, Some(s(30)), s(55))
    }

    #[test]
    fn pings_every_interval_and_measures_the_round_trip() {
        let mut hb = standard(s(0));
        assert_eq!(hb.poll(s(29)), None);
        assert_eq!(hb.next_deadline(), s(30));
        assert_eq!(hb.poll(s(30)), Some(HeartbeatAction::SendPing));
        hb.on_ping_sent(s(30));
        assert_eq!(hb.poll(s(30)), None);
        assert_eq!(hb.on_pong(s(30) + ms(46)), Some(ms(46)));
        assert_eq!(hb.unanswered(), 0);
        assert_eq!(hb.next_deadline(), s(60));
    }

    #[test]
    fn an_unexpected_pong_measures_nothing() {
        let mut hb = standard(s(0));
        assert_eq!(hb.on_pong(s(3)), None);
    }

    #[test]
    fn a_silent_peer_is_missed_then_dead() {
        let mut hb = standard(s(0));
        assert_eq!(hb.poll(s(30)), Some(HeartbeatAction::SendPing));
        hb.on_ping_sent(s(30));
        // At 55 s nothing has come back since 0 s: dead, before the miss at 60 s.
        assert_eq!(
            hb.poll(s(55)),
            Some(HeartbeatAction::Dead { silent_for: s(55) })
        );
    }

    #[test]
    fn a_late_pong_is_reported_missed_once() {
        let mut hb = Heartbeat::new(s(0), Some(s(10)), s(55));
        hb.poll(s(10));
        hb.on_ping_sent(s(10));
        hb.on_received(s(15)); // other traffic keeps the peer alive
        assert_eq!(
            hb.poll(s(20)),
            Some(HeartbeatAction::Missed { waited: s(10) })
        );
        assert_eq!(hb.poll(s(20)), Some(HeartbeatAction::SendPing));
        hb.on_ping_sent(s(20));
        assert_eq!(hb.poll(s(21)), None, "the miss is reported once");
        assert_eq!(
            hb.on_pong(s(22)),
            Some(s(12)),
            "the oldest ping is answered first"
        );
        assert_eq!(hb.on_pong(s(22)), Some(s(2)));
    }

    #[test]
    fn traffic_keeps_a_connection_alive() {
        let mut hb = standard(s(0));
        for t in (5..300).step_by(5) {
            hb.on_received(s(t));
            match hb.poll(s(t)) {
                Some(HeartbeatAction::SendPing) => {
                    hb.on_ping_sent(s(t));
                    hb.on_pong(s(t));
                }
                None => {}
                other => panic!("unexpected {other:?} at {t} s"),
            }
        }
    }

    #[test]
    fn without_heartbeats_silence_is_fine_until_a_response_is_awaited() {
        let mut hb = Heartbeat::new(s(0), None, s(55));
        assert_eq!(hb.poll(s(1000)), None);
        assert_eq!(hb.next_deadline(), Duration::MAX);
        hb.set_awaiting_response(s(1000), true);
        assert_eq!(hb.next_deadline(), s(1055));
        assert_eq!(hb.poll(s(1054)), None);
        assert_eq!(
            hb.poll(s(1055)),
            Some(HeartbeatAction::Dead { silent_for: s(55) })
        );
    }

    #[test]
    fn outstanding_pings_are_bounded() {
        let mut hb = Heartbeat::new(s(0), Some(s(1)), s(1000));
        for t in 1..100 {
            hb.on_ping_sent(s(t));
        }
        assert_eq!(hb.unanswered(), MAX_OUTSTANDING);
    }

    #[test]
    fn a_zero_interval_means_off() {
        let mut hb = Heartbeat::new(s(0), Some(Duration::ZERO), s(55));
        assert_eq!(hb.poll(s(10)), None);
    }
}
