//! The supervisor: starts session tasks, routes commands to them, and shuts them down.
//!
//! Every session reports on one shared event channel; the supervisor hands its receiving end
//! to whoever consumes the run (headless report, TUI). It holds no session state itself.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::session::tap::TapHandle;
use crate::session::{
    self, RunClock, SessionCommand, SessionHandle, SessionId, SessionInfo, SessionSpec,
};

/// Events waiting for the consumer before sessions wait for it.
pub const EVENT_QUEUE: usize = 16_384;

/// The running sessions of one run.
pub struct Supervisor {
    clock: RunClock,
    events: crate::session::EventSender,
    sessions: Vec<SessionHandle>,
    infos: Vec<SessionInfo>,
    /// Each session's tap (the recorder), if it has one.
    taps: Vec<Option<TapHandle>>,
}

impl Supervisor {
    /// A supervisor with no sessions, and the receiving end of its event stream.
    pub fn new(clock: RunClock) -> (Self, crate::session::EventReceiver) {
        let (tx, rx) = session::stream::channel(EVENT_QUEUE);
        (
            Self {
                clock,
                events: tx,
                sessions: Vec::new(),
                infos: Vec::new(),
                taps: Vec::new(),
            },
            rx,
        )
    }

    pub fn clock(&self) -> RunClock {
        self.clock
    }

    /// Starts a session; its id is assigned here (the next free index).
    pub fn start(&mut self, mut spec: SessionSpec) -> SessionId {
        let id = SessionId::try_from(self.sessions.len()).unwrap_or(SessionId::MAX);
        spec.info.id = id;
        self.infos.push(spec.info.clone());
        self.taps.push(spec.tap.clone());
        self.sessions
            .push(session::spawn(spec, self.clock, self.events.clone()));
        id
    }

    /// Every session started so far, by id.
    pub fn infos(&self) -> &[SessionInfo] {
        &self.infos
    }

    /// Sends a command to a session. False when it has ended or is too busy to take it.
    pub fn command(&self, id: SessionId, command: SessionCommand) -> bool {
        self.sessions
            .get(id as usize)
            .is_some_and(|s| s.commands.try_send(command).is_ok())
    }

    /// The tap of a session (the recorder's, when the run is recorded): what reports on its
    /// behalf (the canary's markers) go through, so that a replay has them too.
    pub fn tap(&self, id: SessionId) -> Option<TapHandle> {
        self.taps.get(id as usize).cloned().flatten()
    }

    /// A handle that sends commands to the sessions started so far, from any task.
    pub fn commander(&self) -> Commander {
        Commander {
            senders: self.sessions.iter().map(|s| s.commands.clone()).collect(),
        }
    }

    /// A sender on the run's event stream, for reports that belong to no session's socket
    /// (the canary's markers; they go to the session's `tap` too). Dropping it matters: the
    /// stream ends when every sender is gone.
    pub fn event_sender(&self) -> crate::session::EventSender {
        self.events.clone()
    }

    /// Asks every session to close, and waits up to `grace` for them; the rest are aborted.
    /// What they report meanwhile (their close events, and anything they were handing over)
    /// is taken from `events` and given to `fold`, then what is still queued: a session
    /// waiting for room in a full event stream sees the close only once it has handed its
    /// batch over.
    pub async fn shutdown(
        self,
        grace: Duration,
        events: &mut crate::session::EventReceiver,
        mut fold: impl FnMut(&crate::session::SessionEvent),
    ) {
        let closing = self.close_all(grace);
        tokio::pin!(closing);
        loop {
            tokio::select! {
                () = &mut closing => break,
                batch = events.recv_batch() => match batch {
                    Some(batch) => {
                        batch.iter().for_each(&mut fold);
                        events.recycle(batch);
                    }
                    None => {
                        closing.as_mut().await;
                        break;
                    }
                },
            }
        }
        while let Ok(event) = events.try_recv() {
            fold(&event);
        }
    }

    async fn close_all(self, grace: Duration) {
        for s in &self.sessions {
            // A full queue means the session is busy; it is aborted below if it overstays.
            let _ = s.commands.try_send(SessionCommand::Close);
        }
        let deadline = tokio::time::Instant::now() + grace;
        for s in self.sessions {
            let abort = s.task.abort_handle();
            if tokio::time::timeout_at(deadline, s.task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// Sends commands to sessions without holding the supervisor (the canary driver's task).
#[derive(Clone, Debug)]
pub struct Commander {
    senders: Vec<mpsc::Sender<SessionCommand>>,
}

impl Commander {
    /// Sends a command to a session. False when it has ended or is too busy to take it.
    pub fn command(&self, id: SessionId, command: SessionCommand) -> bool {
        self.senders
            .get(id as usize)
            .is_some_and(|s| s.try_send(command).is_ok())
    }
}
