//! The harness: a session under test recorded to a temporary directory, waits on its
//! events, and the checks every row ends with (no panic, the recording replays the same).

use std::time::Duration;

use crate::support::rogue::Act;
use crate::support::{TEST_KEY, Watched, fast_timing};
use relaytop_core::config::secret::Secret;
use relaytop_core::record::{RecordOptions, Recorder, Replay, RunMeta};
use relaytop_core::session::{
    self, BackoffPolicy, ErrorKind, EventKind, RunClock, SessionCommand, SessionEvent, SessionSpec,
    SessionState, Timing,
};
use relaytop_sim::SimProfile;

pub(super) const LONG: Duration = Duration::from_secs(10);

/// A session under test, recorded to a temporary directory.
pub(super) struct Case {
    pub(super) s: Watched,
    pub(super) recorder: Recorder,
    pub(super) _root: tempfile::TempDir,
}

pub(super) fn start(mut spec: SessionSpec) -> Case {
    let root = tempfile::tempdir().expect("temp dir");
    let clock = RunClock::new();
    let meta = RunMeta {
        started_at: chrono::Utc::now(),
        source: "fault matrix".into(),
        pricing: Default::default(),
        secrets: vec![Secret::new(TEST_KEY)],
        slo: Default::default(),
    };
    let recorder =
        Recorder::start(&RecordOptions::new(root.path()), meta, clock).expect("recorder starts");
    recorder
        .attach(&mut spec, Some("RELAYTOP_TEST_KEY"))
        .expect("session file");
    let (tx, rx) = relaytop_core::session::stream::channel(4096);
    let handle = session::spawn(spec, clock, tx);
    Case {
        s: Watched {
            handle,
            rx,
            seen: Vec::new(),
            clock,
        },
        recorder,
        _root: root,
    }
}

pub(super) fn is_end(k: &EventKind) -> bool {
    matches!(
        k,
        EventKind::State(SessionState::Stopped { .. } | SessionState::Closed)
    )
}

impl Case {
    /// Waits for an event matching `pred`; fails the test with the story if none comes.
    pub(super) async fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&EventKind) -> bool,
    ) -> SessionEvent {
        match self.s.wait_for(LONG, pred).await {
            Some(event) => event,
            None => panic!("no {what}:\n{}", self.s.story()),
        }
    }

    pub(super) fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.s.count(pred)
    }

    pub(super) fn story(&self) -> String {
        self.s.story()
    }

    /// Ends the session (closing it unless it ended itself), checks that its task did not
    /// panic, and that its recording replays to exactly the events it reported. Returns the
    /// state it ended in.
    pub(super) async fn finish(mut self) -> SessionState {
        if !self.s.seen.iter().any(|e| is_end(&e.kind)) {
            let _ = self.s.handle.commands.send(SessionCommand::Close).await;
            self.expect("end of the session", is_end).await;
        }
        let Case {
            s, recorder, _root, ..
        } = self;
        let Watched {
            handle,
            mut rx,
            mut seen,
            clock,
        } = s;
        tokio::time::timeout(LONG, handle.task)
            .await
            .expect("the session task ends")
            .expect("the session task did not panic");
        while let Ok(event) = rx.try_recv() {
            seen.push(event);
        }
        let dir = recorder
            .finish("test", clock.now())
            .expect("recording ends");
        let mut replay = Replay::open(std::slice::from_ref(&dir)).expect("the recording opens");
        let replayed: Vec<SessionEvent> = std::iter::from_fn(|| replay.next_event()).collect();
        assert!(
            replay.read_stats().warnings().is_empty(),
            "{:?}",
            replay.read_stats()
        );
        assert_eq!(replayed.len(), seen.len(), "events replayed");
        for (i, (live, again)) in seen.iter().zip(&replayed).enumerate() {
            assert_eq!(live, again, "event {i} replays as it happened");
        }
        for entry in std::fs::read_dir(&dir).expect("run dir") {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!text.contains(TEST_KEY), "the key is not in the recording");
        }
        seen.iter()
            .rev()
            .find_map(|e| match &e.kind {
                EventKind::State(state) => Some(state.clone()),
                _ => None,
            })
            .expect("a state")
    }
}

pub(super) fn quick(backoff_ms: u64) -> Timing {
    Timing {
        backoff: BackoffPolicy {
            base: Duration::from_millis(backoff_ms),
            cap: Duration::from_millis(backoff_ms),
            max_attempts: 10,
        },
        ..fast_timing()
    }
}

pub(super) fn quiet(mut timing: Timing) -> Timing {
    timing.heartbeat = None;
    timing.ws_ping = false;
    timing
}

pub(super) fn steady(ttft_ms: f64, tokens: u32, tokens_per_second: f64) -> SimProfile {
    SimProfile {
        ttft_p50_ms: ttft_ms,
        ttft_p99_ms: ttft_ms,
        tokens_per_response: tokens,
        tokens_per_second,
        ..SimProfile::default()
    }
}

pub(super) fn closed(k: &EventKind) -> bool {
    matches!(
        k,
        EventKind::Closed {
            requested: false,
            ..
        }
    )
}

pub(super) fn connected(k: &EventKind) -> bool {
    matches!(k, EventKind::Connected { .. })
}

pub(super) fn backing_off(k: &EventKind) -> bool {
    matches!(k, EventKind::BackingOff { .. })
}

pub(super) fn error(k: &EventKind) -> bool {
    matches!(k, EventKind::Error { .. })
}

pub(super) fn done(k: &EventKind) -> bool {
    matches!(k, EventKind::Done(_))
}

/// The cause of the one backoff so far.
pub(super) fn only_backoff_cause(case: &Case) -> String {
    let causes: Vec<String> = case
        .s
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::BackingOff { cause, .. } => Some(cause.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(causes.len(), 1, "one backoff:\n{}", case.story());
    causes[0].clone()
}

/// The messages of the errors so far.
pub(super) fn error_messages(case: &Case) -> Vec<(ErrorKind, String)> {
    case.s
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Error { kind, message, .. } => Some((*kind, message.clone())),
            _ => None,
        })
        .collect()
}

/// A relay that upgrades and then only answers pings.
pub(super) fn healthy() -> Vec<Act> {
    vec![Act::Upgrade, Act::Hold]
}
