//! What a session sends once connected: a probe on a schedule, or the user's chat turns.
//!
//! Pure: it is asked, with the time, whether a request is due and what it carries, and told
//! how each response ended. A chat's history lives here, so it survives reconnects.

use std::collections::VecDeque;
use std::time::Duration;

use crate::protocol::relay_v1::{ChatMessage, Role};
use crate::session::spec::Workload;

/// Most chat turns waiting to be sent while disconnected; more are refused.
pub const MAX_PENDING_TURNS: usize = 64;

/// A request ready to go out.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
}

/// The state of a session's workload.
#[derive(Clone, Debug)]
pub enum WorkloadState {
    Probe {
        interval: Duration,
        prompt: String,
        max_tokens: Option<u32>,
        /// When the next probe may go out; `None` until the first connection.
        next_due: Option<Duration>,
        last_sent: Option<Duration>,
    },
    Chat {
        system: Option<String>,
        /// The conversation so far (user and assistant turns, no system prompt).
        history: Vec<ChatMessage>,
        /// Turns typed but not yet sent.
        pending: VecDeque<String>,
        /// The reply streaming in.
        reply: String,
        /// Earliest time the next turn may go out (a rate limit asked us to wait).
        not_before: Duration,
    },
}

impl WorkloadState {
    pub fn new(workload: &Workload) -> Self {
        match workload {
            Workload::Probe {
                interval,
                prompt,
                max_tokens,
            } => WorkloadState::Probe {
                interval: *interval,
                prompt: prompt.clone(),
                max_tokens: *max_tokens,
                next_due: None,
                last_sent: None,
            },
            Workload::Chat { system } => WorkloadState::Chat {
                system: system.clone(),
                history: Vec::new(),
                pending: VecDeque::new(),
                reply: String::new(),
                not_before: Duration::ZERO,
            },
        }
    }

    /// A connection came up at `now`. The very first probe waits `first_delay` (spread
    /// across the interval, so that many probe sessions do not fire in step).
    pub fn on_connected(&mut self, now: Duration, first_delay: Duration) {
        if let WorkloadState::Probe { next_due, .. } = self
            && next_due.is_none()
        {
            *next_due = Some(now + first_delay);
        }
    }

    /// The request due at `now`, if one is (call only when no response is under way).
    pub fn take_due(&mut self, now: Duration) -> Option<Outgoing> {
        match self {
            WorkloadState::Probe {
                interval,
                prompt,
                max_tokens,
                next_due,
                last_sent,
            } => {
                let due = (*next_due)?;
                if now < due {
                    return None;
                }
                *last_sent = Some(now);
                // Start to start: the next probe is one interval after this one was due,
                // unless that is already past (a long outage): then one interval from now.
                let next = due + *interval;
                *next_due = Some(if next <= now { now + *interval } else { next });
                Some(Outgoing {
                    messages: vec![ChatMessage::new(Role::User, prompt.clone())],
                    max_tokens: *max_tokens,
                })
            }
            WorkloadState::Chat {
                system,
                history,
                pending,
                reply,
                not_before,
            } => {
                if now < *not_before {
                    return None;
                }
                let turn = pending.pop_front()?;
                history.push(ChatMessage::new(Role::User, turn));
                reply.clear();
                let mut messages = Vec::with_capacity(history.len() + 1);
                if let Some(system) = system {
                    messages.push(ChatMessage::new(Role::System, system.clone()));
                }
                messages.extend(history.iter().cloned());
                Some(Outgoing {
                    messages,
                    max_tokens: None,
                })
            }
        }
    }

    /// When a request may next become due, if ever (for the task's timer).
    pub fn next_wake(&self) -> Option<Duration> {
        match self {
            WorkloadState::Probe { next_due, .. } => *next_due,
            WorkloadState::Chat {
                pending,
                not_before,
                ..
            } => (!pending.is_empty()).then_some(*not_before),
        }
    }

    /// Text of the response under way arrived.
    pub fn on_text(&mut self, text: &str) {
        if let WorkloadState::Chat { reply, .. } = self {
            reply.push_str(text);
        }
    }

    /// The response completed: a chat keeps the reply in its history.
    pub fn on_done(&mut self) {
        if let WorkloadState::Chat { history, reply, .. } = self {
            history.push(ChatMessage::new(Role::Assistant, std::mem::take(reply)));
        }
    }

    /// The response failed. A chat keeps the user's turn (so a retry resends it) and drops
    /// the cut reply.
    pub fn on_failed(&mut self) {
        if let WorkloadState::Chat { reply, .. } = self {
            reply.clear();
        }
    }

    /// Hold requests back until `until` (the relay asked us to wait).
    pub fn defer_until(&mut self, until: Duration) {
        match self {
            WorkloadState::Probe { next_due, .. } => {
                *next_due = Some(next_due.map_or(until, |d| d.max(until)));
            }
            WorkloadState::Chat { not_before, .. } => *not_before = (*not_before).max(until),
        }
    }

    /// Queues a chat turn. Returns false when this is not a chat or the queue is full.
    pub fn push_turn(&mut self, text: String) -> bool {
        match self {
            WorkloadState::Chat { pending, .. } if pending.len() < MAX_PENDING_TURNS => {
                pending.push_back(text);
                true
            }
            _ => false,
        }
    }

    /// The chat history (empty for probes).
    pub fn history(&self) -> &[ChatMessage] {
        match self {
            WorkloadState::Chat { history, .. } => history,
            WorkloadState::Probe { .. } => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn probe(interval: u64) -> WorkloadState {
        WorkloadState::new(&Workload::Probe {
            interval: s(interval),
            prompt: "ping?".into(),
            max_tokens: Some(16),
        })
    }

    #[test]
    fn probes_go_out_every_interval_start_to_start() {
        let mut w = probe(10);
        assert_eq!(
            w.take_due(s(0)),
            None,
            "nothing before the first connection"
        );
        w.on_connected(s(0), s(3));
        assert_eq!(w.take_due(s(2)), None);
        assert!(w.take_due(s(3)).is_some());
        assert_eq!(w.next_wake(), Some(s(13)));
        assert_eq!(w.take_due(s(12)), None);
        assert!(w.take_due(s(14)).is_some(), "late by 1 s");
        assert_eq!(w.next_wake(), Some(s(23)), "the schedule does not drift");
    }

    #[test]
    fn a_long_outage_does_not_cause_a_burst() {
        let mut w = probe(10);
        w.on_connected(s(0), s(0));
        assert!(w.take_due(s(0)).is_some());
        assert!(w.take_due(s(100)).is_some());
        assert_eq!(w.take_due(s(100)), None, "one probe, not nine");
        assert_eq!(w.next_wake(), Some(s(110)));
    }

    #[test]
    fn the_first_delay_applies_once() {
        let mut w = probe(10);
        w.on_connected(s(0), s(5));
        w.on_connected(s(1), s(9));
        assert_eq!(w.next_wake(), Some(s(5)));
    }

    #[test]
    fn chat_history_carries_every_turn_and_survives_failures() {
        let mut w = WorkloadState::new(&Workload::Chat {
            system: Some("Be brief.".into()),
        });
        assert!(w.push_turn("hi".into()));
        let first = w.take_due(s(0)).unwrap();
        assert_eq!(first.messages.len(), 2);
        assert_eq!(first.messages[0].role, Role::System);
        w.on_text("Hel");
        w.on_text("lo");
        w.on_done();
        w.push_turn("again".into());
        let second = w.take_due(s(1)).unwrap();
        let texts: Vec<&str> = second.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["Be brief.", "hi", "Hello", "again"]);
        w.on_text("cut");
        w.on_failed();
        assert_eq!(
            w.history().len(),
            3,
            "the user's turn stays, the cut reply goes"
        );
    }

    #[test]
    fn deferral_holds_requests_back() {
        let mut w = WorkloadState::new(&Workload::Chat { system: None });
        w.push_turn("x".into());
        w.defer_until(s(5));
        assert_eq!(w.take_due(s(4)), None);
        assert_eq!(w.next_wake(), Some(s(5)));
        assert!(w.take_due(s(5)).is_some());
        let mut p = probe(1);
        p.on_connected(s(0), s(0));
        p.defer_until(s(8));
        assert_eq!(p.take_due(s(7)), None);
        assert!(p.take_due(s(8)).is_some());
    }

    #[test]
    fn the_pending_queue_is_bounded() {
        let mut w = WorkloadState::new(&Workload::Chat { system: None });
        for _ in 0..MAX_PENDING_TURNS {
            assert!(w.push_turn("x".into()));
        }
        assert!(!w.push_turn("one too many".into()));
        assert!(!probe(1).push_turn("not a chat".into()));
    }
}
