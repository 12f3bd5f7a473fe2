//! One alert's life, a pure state machine over `now`: inactive → pending (the condition
//! holds, `for` has not passed) → firing → resolved (back to inactive), with hysteresis (a
//! firing alert resolves only once the figure is back past the resolve threshold, so a value
//! wavering around the threshold neither resolves nor fires again), deduplication (a
//! transition is said once) and reminders every `renotify` while firing.

use serde::Serialize;

/// Where an alert stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    Inactive,
    /// The condition holds since `since_us`; fires once it held `for`.
    Pending {
        since_us: u64,
    },
    /// Fired at `since_us`; last said at `notified_us`.
    Firing {
        since_us: u64,
        notified_us: u64,
    },
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending { .. } => "pending",
            Phase::Firing { .. } => "firing",
        }
    }
}

/// What one evaluation of the condition found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Past the threshold: the alert should fire.
    Breach,
    /// Between the threshold and the resolve threshold: nothing changes.
    Hold,
    /// Back past the resolve threshold: a firing alert resolves.
    Clear,
    /// No value (no samples): a pending alert goes back to inactive, a firing one stays.
    NoData,
}

/// What is said about an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Fired,
    /// Still firing: a reminder.
    Renotified,
    Resolved,
}

impl Transition {
    pub fn label(self) -> &'static str {
        match self {
            Transition::Fired => "firing",
            Transition::Renotified => "still firing",
            Transition::Resolved => "resolved",
        }
    }
}

/// How long the condition must hold and how often a firing alert is said again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub for_us: u64,
    /// `None`: never again.
    pub renotify_us: Option<u64>,
}

/// One alert (a rule over one scope).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub phase: Phase,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            phase: Phase::Inactive,
        }
    }
}

impl Tracker {
    /// Takes one evaluation at `now_us`; returns what is to be said, if anything.
    pub fn step(&mut self, check: Check, timing: Timing, now_us: u64) -> Option<Transition> {
        match (self.phase, check) {
            (Phase::Inactive, Check::Breach) => {
                if timing.for_us == 0 {
                    self.fire(now_us)
                } else {
                    self.phase = Phase::Pending { since_us: now_us };
                    None
                }
            }
            (Phase::Inactive, _) => None,
            (Phase::Pending { since_us }, Check::Breach) => {
                if now_us.saturating_sub(since_us) >= timing.for_us {
                    self.fire(now_us)
                } else {
                    None
                }
            }
            // The condition stopped holding before `for` passed.
            (Phase::Pending { .. }, _) => {
                self.phase = Phase::Inactive;
                None
            }
            (Phase::Firing { .. }, Check::Clear) => {
                self.phase = Phase::Inactive;
                Some(Transition::Resolved)
            }
            (
                Phase::Firing {
                    since_us,
                    notified_us,
                },
                _,
            ) => match timing.renotify_us {
                Some(every) if now_us.saturating_sub(notified_us) >= every => {
                    self.phase = Phase::Firing {
                        since_us,
                        notified_us: now_us,
                    };
                    Some(Transition::Renotified)
                }
                _ => None,
            },
        }
    }

    fn fire(&mut self, now_us: u64) -> Option<Transition> {
        self.phase = Phase::Firing {
            since_us: now_us,
            notified_us: now_us,
        };
        Some(Transition::Fired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn timing(for_s: u64, renotify_s: Option<u64>) -> Timing {
        Timing {
            for_us: for_s * S,
            renotify_us: renotify_s.map(|r| r * S),
        }
    }

    /// Steps a tracker through `(second, check)` pairs and collects what was said.
    fn run(t: Timing, steps: &[(u64, Check)]) -> Vec<(u64, Transition)> {
        let mut tracker = Tracker::default();
        steps
            .iter()
            .filter_map(|&(s, c)| tracker.step(c, t, s * S).map(|tr| (s, tr)))
            .collect()
    }

    #[test]
    fn fires_once_after_for_and_resolves_once() {
        let mut steps: Vec<(u64, Check)> = (0..=20).map(|s| (s, Check::Breach)).collect();
        steps.extend((21..=30).map(|s| (s, Check::Clear)));
        let said = run(timing(10, None), &steps);
        assert_eq!(
            said,
            vec![(10, Transition::Fired), (21, Transition::Resolved)]
        );
    }

    #[test]
    fn a_breach_shorter_than_for_never_fires() {
        let steps: Vec<(u64, Check)> = (0..40)
            .map(|s| {
                (
                    s,
                    if s % 10 < 5 {
                        Check::Breach
                    } else {
                        Check::Hold
                    },
                )
            })
            .collect();
        assert!(run(timing(10, None), &steps).is_empty());
    }

    #[test]
    fn renotifies_on_schedule_while_firing() {
        let steps: Vec<(u64, Check)> = (0..=125).map(|s| (s, Check::Breach)).collect();
        let said = run(timing(0, Some(60)), &steps);
        assert_eq!(
            said,
            vec![
                (0, Transition::Fired),
                (60, Transition::Renotified),
                (120, Transition::Renotified)
            ]
        );
    }

    #[test]
    fn flapping_inside_the_hysteresis_says_nothing_more() {
        // Above the threshold, then wavering between it and the resolve threshold (Hold) and
        // back above it, for ten minutes: one firing, no resolution, no second firing.
        let mut steps = vec![(0, Check::Breach)];
        steps.extend((1..600).map(|s| {
            (
                s,
                if s % 2 == 0 {
                    Check::Breach
                } else {
                    Check::Hold
                },
            )
        }));
        let said = run(timing(0, None), &steps);
        assert_eq!(said, vec![(0, Transition::Fired)]);
    }

    #[test]
    fn no_data_keeps_a_firing_alert_and_drops_a_pending_one() {
        let t = timing(5, None);
        let mut tracker = Tracker::default();
        assert_eq!(tracker.step(Check::Breach, t, 0), None);
        assert_eq!(tracker.step(Check::NoData, t, S), None);
        assert_eq!(tracker.phase, Phase::Inactive);
        tracker.step(Check::Breach, t, 2 * S);
        assert_eq!(
            tracker.step(Check::Breach, t, 7 * S),
            Some(Transition::Fired)
        );
        assert_eq!(tracker.step(Check::NoData, t, 8 * S), None);
        assert!(matches!(tracker.phase, Phase::Firing { .. }));
    }
}
