//! What a session sends once connected: a probe on a schedule, the user's chat turns, or
//! one-shot requests it is told to send (the canary's routed probes).
//!
//! Pure: it is asked, with the time, whether a request is due and what it carries, and told
//! how each response ended. A chat's history lives here, so it survives reconnects; one-shot
//! requests wait here too (across reconnects) and never touch the history, and so does audio
//! waiting to be transcribed. A chat's history is changed only here: a new system prompt, a
//! cleared history, a cut turn sent again.

use std::collections::VecDeque;
use std::time::Duration;

use crate::protocol::relay_v1::{ChatMessage, Role};
use crate::session::spec::Workload;

/// Most chat turns waiting to be sent while disconnected; more are refused.
pub const MAX_PENDING_TURNS: usize = 64;

/// Most transcriptions waiting to be sent (audio can be large); more are refused.
pub const MAX_PENDING_AUDIO: usize = 4;

/// Audio waiting to be transcribed.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioJob {
    pub audio: Vec<u8>,
    pub model: String,
}

/// A request ready to go out.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
}

/// What the request under way came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UnderWay {
    /// The probe schedule.
    Probe,
    /// A chat turn: its reply joins the history.
    Turn,
    /// A one-shot `Send`: kept out of any history.
    OneShot,
    /// A transcription: kept out of any history.
    Transcription,
}

/// The schedule of a session's own requests.
#[derive(Clone, Debug)]
enum Schedule {
    Probe {
        interval: Duration,
        prompt: String,
        max_tokens: Option<u32>,
        /// When the next probe may go out; `None` until the first connection.
        next_due: Option<Duration>,
    },
    Chat {
        system: Option<String>,
        /// The conversation so far (user and assistant turns, no system prompt).
        history: Vec<ChatMessage>,
        /// Turns typed but not yet sent.
        pending: VecDeque<String>,
        /// The reply streaming in.
        reply: String,
    },
    /// Nothing of its own: only one-shot requests.
    OnDemand,
}

/// The state of a session's workload: its schedule, the one-shot requests waiting (sent
/// before anything else, for any workload), and how long a rate limit holds them all back.
#[derive(Clone, Debug)]
pub struct WorkloadState {
    schedule: Schedule,
    /// One-shot requests (`SessionCommand::Send`) not yet sent.
    oneshots: VecDeque<Outgoing>,
    /// Audio to transcribe (`SessionCommand::Transcribe`), not yet sent.
    audio: VecDeque<AudioJob>,
    /// Earliest time the next request may go out (a rate limit asked us to wait).
    not_before: Duration,
    under_way: Option<UnderWay>,
}

impl WorkloadState {
    pub fn new(workload: &Workload) -> Self {
        let schedule = match workload {
            Workload::Probe {
                interval,
                prompt,
                max_tokens,
            } => Schedule::Probe {
                interval: *interval,
                prompt: prompt.clone(),
                max_tokens: *max_tokens,
                next_due: None,
            },
            Workload::Chat { system } => Schedule::Chat {
                system: system.clone(),
                history: Vec::new(),
                pending: VecDeque::new(),
                reply: String::new(),
            },
            Workload::OnDemand => Schedule::OnDemand,
        };
        Self {
            schedule,
            oneshots: VecDeque::new(),
            audio: VecDeque::new(),
            not_before: Duration::ZERO,
            under_way: None,
        }
    }

    /// A connection came up at `now`. The very first probe waits `first_delay` (spread
    /// across the interval, so that many probe sessions do not fire in step).
    pub fn on_connected(&mut self, now: Duration, first_delay: Duration) {
        if let Schedule::Probe { next_due, .. } = &mut self.schedule
            && next_due.is_none()
        {
            *next_due = Some(now + first_delay);
        }
    }

    /// Whether `take_due(now)` would hand out a request.
    pub fn is_due(&self, now: Duration) -> bool {
        self.next_wake().is_some_and(|at| at <= now)
    }

    /// The request due at `now`, if one is (call only when no response is under way).
    /// One-shot requests go first.
    pub fn take_due(&mut self, now: Duration) -> Option<Outgoing> {
        if now < self.not_before {
            return None;
        }
        if let Some(outgoing) = self.oneshots.pop_front() {
            self.under_way = Some(UnderWay::OneShot);
            return Some(outgoing);
        }
        match &mut self.schedule {
            Schedule::Probe {
                interval,
                prompt,
                max_tokens,
                next_due,
            } => {
                let due = (*next_due)?;
                if now < due {
                    return None;
                }
                // Start to start: the next probe is one interval after this one was due,
                // unless that is already past (a long outage): then one interval from now.
                let next = due + *interval;
                *next_due = Some(if next <= now { now + *interval } else { next });
                self.under_way = Some(UnderWay::Probe);
                Some(Outgoing {
                    messages: vec![ChatMessage::new(Role::User, prompt.clone())],
                    max_tokens: *max_tokens,
                })
            }
            Schedule::Chat {
                system,
                history,
                pending,
                reply,
            } => {
                let turn = pending.pop_front()?;
                history.push(ChatMessage::new(Role::User, turn));
                reply.clear();
                let mut messages = Vec::with_capacity(history.len() + 1);
                if let Some(system) = system {
                    messages.push(ChatMessage::new(Role::System, system.clone()));
                }
                messages.extend(history.iter().cloned());
                self.under_way = Some(UnderWay::Turn);
                Some(Outgoing {
                    messages,
                    max_tokens: None,
                })
            }
            Schedule::OnDemand => None,
        }
    }

    /// The transcription due at `now`, if one is: it goes before anything else (call only when
    /// no response is under way, and only on a transport that can send audio).
    pub fn take_transcription(&mut self, now: Duration) -> Option<AudioJob> {
        if now < self.not_before {
            return None;
        }
        let job = self.audio.pop_front()?;
        self.under_way = Some(UnderWay::Transcription);
        Some(job)
    }

    /// Queues audio to transcribe. Returns false when too many are waiting.
    pub fn push_audio(&mut self, job: AudioJob) -> bool {
        if self.audio.len() >= MAX_PENDING_AUDIO {
            return false;
        }
        self.audio.push_back(job);
        true
    }

    /// A chat's system prompt from its next turn on. Returns false when this is not a chat.
    pub fn set_system(&mut self, text: Option<String>) -> bool {
        match &mut self.schedule {
            Schedule::Chat { system, .. } => {
                *system = text;
                true
            }
            _ => false,
        }
    }

    /// Forgets a chat's history (a reply streaming in is not kept either). Returns false when
    /// this is not a chat.
    pub fn clear_history(&mut self) -> bool {
        match &mut self.schedule {
            Schedule::Chat { history, reply, .. } => {
                history.clear();
                reply.clear();
                if self.under_way == Some(UnderWay::Turn) {
                    // The reply under way belongs to the forgotten conversation.
                    self.under_way = Some(UnderWay::OneShot);
                }
                true
            }
            _ => false,
        }
    }

    /// Sends a chat's last turn again when its reply was cut: the turn leaves the history
    /// and goes first in the queue. Returns false when there is nothing to retry (no turn
    /// without a reply, or one under way).
    pub fn retry(&mut self) -> bool {
        if self.under_way.is_some() {
            return false;
        }
        match &mut self.schedule {
            Schedule::Chat {
                history, pending, ..
            } if history.last().is_some_and(|m| m.role == Role::User) => {
                if let Some(turn) = history.pop() {
                    pending.push_front(turn.content);
                }
                true
            }
            _ => false,
        }
    }

    /// When a request may next become due, if ever (for the task's timer).
    pub fn next_wake(&self) -> Option<Duration> {
        let own = match &self.schedule {
            _ if !self.oneshots.is_empty() || !self.audio.is_empty() => Some(Duration::ZERO),
            Schedule::Probe { next_due, .. } => *next_due,
            Schedule::Chat { pending, .. } => (!pending.is_empty()).then_some(Duration::ZERO),
            Schedule::OnDemand => None,
        };
        own.map(|at| at.max(self.not_before))
    }

    /// Text of the response under way arrived.
    pub fn on_text(&mut self, text: &str) {
        if self.under_way == Some(UnderWay::Turn)
            && let Schedule::Chat { reply, .. } = &mut self.schedule
        {
            reply.push_str(text);
        }
    }

    /// The response completed: a chat keeps the reply in its history.
    pub fn on_done(&mut self) {
        if self.under_way.take() == Some(UnderWay::Turn)
            && let Schedule::Chat { history, reply, .. } = &mut self.schedule
        {
            history.push(ChatMessage::new(Role::Assistant, std::mem::take(reply)));
        }
    }

    /// The response failed. A chat keeps the user's turn (so a retry resends it) and drops
    /// the cut reply.
    pub fn on_failed(&mut self) {
        if self.under_way.take() == Some(UnderWay::Turn)
            && let Schedule::Chat { reply, .. } = &mut self.schedule
        {
            reply.clear();
        }
    }

    /// Hold requests back until `until` (the relay, or the local rate limit, asked us to wait).
    pub fn defer_until(&mut self, until: Duration) {
        self.not_before = self.not_before.max(until);
    }

    /// Until when requests are held back (zero when they are not).
    pub fn not_before(&self) -> Duration {
        self.not_before
    }

    /// Queues a chat turn. Returns false when this is not a chat or the queue is full.
    pub fn push_turn(&mut self, text: String) -> bool {
        match &mut self.schedule {
            Schedule::Chat { pending, .. } if pending.len() < MAX_PENDING_TURNS => {
                pending.push_back(text);
                true
            }
            _ => false,
        }
    }

    /// Queues a one-shot request (any workload): sent before the session's own requests and
    /// kept out of any chat history. Returns false when too many are waiting.
    pub fn push_oneshot(&mut self, outgoing: Outgoing) -> bool {
        if self.oneshots.len() >= MAX_PENDING_TURNS {
            return false;
        }
        self.oneshots.push_back(outgoing);
        true
    }

    /// Drops every one-shot request still waiting; returns how many there were.
    pub fn drop_oneshots(&mut self) -> usize {
        let n = self.oneshots.len();
        self.oneshots.clear();
        n
    }

    /// One-shot requests and chat turns waiting to be sent.
    pub fn waiting(&self) -> usize {
        let turns = match &self.schedule {
            Schedule::Chat { pending, .. } => pending.len(),
            _ => 0,
        };
        self.oneshots.len() + self.audio.len() + turns
    }

    /// The chat history (empty for probes).
    pub fn history(&self) -> &[ChatMessage] {
        match &self.schedule {
            Schedule::Chat { history, .. } => history,
            _ => &[],
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
    fn a_cut_turn_is_sent_again_on_retry() {
        let mut w = WorkloadState::new(&Workload::Chat { system: None });
        assert!(!w.retry(), "nothing to retry");
        w.push_turn("first".into());
        w.take_due(s(0)).unwrap();
        w.on_text("partial");
        assert!(!w.retry(), "not while the reply is under way");
        w.on_failed();
        assert!(w.retry());
        assert!(!w.retry(), "once");
        let again = w.take_due(s(1)).unwrap();
        let texts: Vec<&str> = again.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["first"], "the turn once, not twice");
        w.on_text("whole");
        w.on_done();
        assert_eq!(w.history().len(), 2);
        assert!(!w.retry(), "a turn with its reply is not retried");
    }

    #[test]
    fn the_system_prompt_and_the_history_can_change() {
        let mut w = WorkloadState::new(&Workload::Chat { system: None });
        w.push_turn("a".into());
        w.take_due(s(0)).unwrap();
        w.on_done();
        assert!(w.set_system(Some("Be terse.".into())));
        w.push_turn("b".into());
        let second = w.take_due(s(0)).unwrap();
        assert_eq!(second.messages[0].content, "Be terse.");
        assert_eq!(second.messages.len(), 4);
        assert!(w.clear_history());
        w.on_text("late text");
        w.on_done();
        assert!(
            w.history().is_empty(),
            "the reply under way is forgotten too"
        );
        w.push_turn("c".into());
        assert_eq!(w.take_due(s(0)).unwrap().messages.len(), 2);
        assert!(!probe(1).set_system(None));
        assert!(!probe(1).clear_history());
    }

    #[test]
    fn transcriptions_go_first_and_are_bounded() {
        let mut w = WorkloadState::new(&Workload::Chat { system: None });
        let job = AudioJob {
            audio: vec![1, 2, 3],
            model: "whisper-1".into(),
        };
        w.push_turn("hi".into());
        assert!(w.push_audio(job.clone()));
        assert_eq!(w.waiting(), 2);
        assert_eq!(w.take_transcription(s(0)), Some(job.clone()));
        w.on_done();
        assert!(w.history().is_empty());
        for _ in 0..MAX_PENDING_AUDIO {
            assert!(w.push_audio(job.clone()));
        }
        assert!(!w.push_audio(job));
        w.defer_until(s(3));
        assert_eq!(w.take_transcription(s(2)), None);
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

    fn oneshot(text: &str) -> Outgoing {
        Outgoing {
            messages: vec![ChatMessage::new(Role::User, text.to_owned())],
            max_tokens: Some(8),
        }
    }

    #[test]
    fn on_demand_sends_only_when_told() {
        let mut w = WorkloadState::new(&Workload::OnDemand);
        w.on_connected(s(0), s(0));
        assert_eq!(w.next_wake(), None, "nothing of its own");
        assert_eq!(w.take_due(s(100)), None);
        assert!(w.push_oneshot(oneshot("one")));
        assert!(w.push_oneshot(oneshot("two")));
        assert!(w.is_due(s(100)));
        assert_eq!(w.take_due(s(100)), Some(oneshot("one")), "in order");
        w.on_done();
        assert_eq!(w.take_due(s(100)), Some(oneshot("two")));
        w.on_failed();
        assert_eq!(w.take_due(s(100)), None);
        assert!(!w.is_due(s(100)));
    }

    #[test]
    fn one_shots_go_first_and_stay_out_of_the_chat_history() {
        let mut w = WorkloadState::new(&Workload::Chat { system: None });
        w.push_turn("hi".into());
        w.push_oneshot(oneshot("probe"));
        assert_eq!(w.waiting(), 2);
        assert_eq!(w.take_due(s(0)), Some(oneshot("probe")));
        w.on_text("not part of the chat");
        w.on_done();
        assert!(w.history().is_empty(), "a one-shot leaves no trace");
        let turn = w.take_due(s(0)).unwrap();
        assert_eq!(turn.messages.len(), 1);
        w.on_text("hello");
        w.on_done();
        assert_eq!(w.history().len(), 2);

        let mut p = probe(10);
        p.on_connected(s(0), s(5));
        p.push_oneshot(oneshot("routed"));
        assert_eq!(
            p.take_due(s(1)),
            Some(oneshot("routed")),
            "before the probe is due"
        );
        p.on_done();
        assert_eq!(p.next_wake(), Some(s(5)), "the probe schedule is untouched");
    }

    #[test]
    fn one_shots_wait_out_a_deferral_and_can_be_dropped() {
        let mut w = WorkloadState::new(&Workload::OnDemand);
        w.push_oneshot(oneshot("a"));
        w.defer_until(s(4));
        assert_eq!(w.next_wake(), Some(s(4)));
        assert_eq!(w.take_due(s(3)), None);
        assert_eq!(w.not_before(), s(4));
        w.push_oneshot(oneshot("b"));
        assert_eq!(w.drop_oneshots(), 2);
        assert_eq!(w.take_due(s(5)), None);
        for _ in 0..MAX_PENDING_TURNS {
            assert!(w.push_oneshot(oneshot("x")));
        }
        assert!(!w.push_oneshot(oneshot("one too many")));
    }
}
