//! The event log: the connection-level story of every session (connects, drops with close
//! codes, backoffs, 401s and 429s, missed heartbeats, stops), newest last, bounded, filterable.
//!
//! Streamed text, pongs and completed responses are not logged here: they belong to the
//! stream and health panes and would bury the events a person is looking for.

use std::collections::VecDeque;

use crate::format;
use relaytop_core::session::{ErrorKind, EventKind, SessionEvent, SessionId, SessionState};

/// The session id of entries about every session (markers): shown as `all`.
pub const ALL_SESSIONS: SessionId = SessionId::MAX;

/// Entries kept.
pub const EVENT_LOG_ENTRIES: usize = 5_000;

/// What kind of thing an entry reports; decides its colour and label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Connect,
    Close,
    Drop,
    Backoff,
    Auth,
    RateLimit,
    Error,
    Failed,
    Heartbeat,
    Stopped,
    Frame,
    Note,
}

impl Category {
    /// The label in the log's middle column.
    pub fn label(self) -> &'static str {
        match self {
            Category::Connect => "connect",
            Category::Close => "close",
            Category::Drop => "drop",
            Category::Backoff => "backoff",
            Category::Auth => "auth",
            Category::RateLimit => "429",
            Category::Error => "error",
            Category::Failed => "failed",
            Category::Heartbeat => "heartbeat",
            Category::Stopped => "stopped",
            Category::Frame => "frame",
            Category::Note => "note",
        }
    }
}

/// One entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Microseconds since the run started.
    pub at_us: u64,
    pub session: SessionId,
    pub category: Category,
    pub text: String,
    /// Lower-case session name, category and text: what the filter searches.
    search: String,
}

impl LogEntry {
    /// Whether every word of `words` (lower case) occurs in the entry.
    pub fn matches(&self, words: &[String]) -> bool {
        words.iter().all(|w| self.search.contains(w.as_str()))
    }
}

/// The newest `EVENT_LOG_ENTRIES` entries, numbered from the run's first.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    entries: VecDeque<LogEntry>,
    pushed: u64,
}

impl EventLog {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `seq` of the oldest entry held.
    pub fn first_seq(&self) -> u64 {
        self.pushed - self.entries.len() as u64
    }

    /// One past the newest entry's `seq`.
    pub fn end_seq(&self) -> u64 {
        self.pushed
    }

    /// The entry numbered `seq`, if still held.
    pub fn get(&self, seq: u64) -> Option<&LogEntry> {
        let index = seq.checked_sub(self.first_seq())?;
        self.entries.get(usize::try_from(index).ok()?)
    }

    /// Adds an entry about `session` (called `session_name`).
    pub fn push(
        &mut self,
        at_us: u64,
        session: SessionId,
        session_name: &str,
        category: Category,
        text: String,
    ) {
        if self.entries.len() == EVENT_LOG_ENTRIES {
            self.entries.pop_front();
        }
        let search = format!("{session_name} {} {text}", category.label()).to_lowercase();
        self.entries.push_back(LogEntry {
            at_us,
            session,
            category,
            text,
            search,
        });
        self.pushed += 1;
    }

    /// Logs `event` of session `session_name` when it is worth a line.
    pub fn fold(&mut self, event: &SessionEvent, session_name: &str) {
        let Some((category, text)) = describe(&event.kind) else {
            return;
        };
        self.push(event.at_us, event.session, session_name, category, text);
    }
}

/// The log line of an event, or `None` for events the log leaves out.
pub fn describe(kind: &EventKind) -> Option<(Category, String)> {
    Some(match kind {
        EventKind::Connected {
            attempt,
            handshake_us,
        } => (
            Category::Connect,
            format!(
                "connected (attempt {attempt}, handshake {})",
                format::latency(*handshake_us)
            ),
        ),
        EventKind::Closed {
            code,
            reason,
            requested,
        } => {
            let reason = if reason.is_empty() {
                close_meaning(*code).to_string()
            } else {
                reason.clone()
            };
            if *requested {
                (Category::Close, format!("closed {code}: {reason}"))
            } else {
                (Category::Drop, format!("dropped {code}: {reason}"))
            }
        }
        EventKind::BackingOff {
            attempt,
            max_attempts,
            delay_ms,
            cause,
        } => {
            let next = format::duration_short(delay_ms.saturating_mul(1000));
            let text = if *max_attempts == 0 {
                format!("refused, next check in {next}: {cause}")
            } else if attempt > max_attempts {
                format!("down, next look in {next}: {cause}")
            } else {
                format!("attempt {attempt}/{max_attempts} in {next}: {cause}")
            };
            (Category::Backoff, text)
        }
        EventKind::Error { kind, message, .. } => {
            let category = match kind {
                ErrorKind::Auth => Category::Auth,
                ErrorKind::RateLimited => Category::RateLimit,
                _ => Category::Error,
            };
            (category, format!("{}: {message}", kind.label()))
        }
        EventKind::RequestFailed {
            request,
            kind,
            reason,
        } => (
            Category::Failed,
            format!("request #{request} {}: {reason}", kind.label()),
        ),
        EventKind::RateLimited { wait_ms, cause } => (
            Category::RateLimit,
            format!(
                "held back {}: {cause}",
                format::duration_short(wait_ms.saturating_mul(1000))
            ),
        ),
        EventKind::HeartbeatMissed { waited_us } => (
            Category::Heartbeat,
            format!("missed: no pong for {}", format::duration_short(*waited_us)),
        ),
        EventKind::State(SessionState::Stopped { reason }) => {
            (Category::Stopped, format!("stopped: {reason}"))
        }
        EventKind::Malformed { reason } => (Category::Frame, format!("malformed: {reason}")),
        EventKind::UnknownFrame { frame_type } => (
            Category::Frame,
            format!("unknown frame type `{frame_type}`"),
        ),
        EventKind::Marker { label } => (Category::Note, label.clone()),
        EventKind::RelayError(e) => {
            let mut text = format!("relay: {}", e.class.label());
            if let Some(id) = &e.relay_request_id {
                text.push_str(&format!(" (request id {id})"));
            }
            text.push_str(&format!(": {}", e.class.fix()));
            (Category::Failed, text)
        }
        // Text, requests, pongs, other states and whatever else sessions report: not logged.
        _ => return None,
    })
}

/// What a WebSocket close code means, for closes that came without a reason.
pub fn close_meaning(code: u16) -> &'static str {
    match code {
        1000 => "normal",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1006 => "connection lost without a close frame",
        1007 => "invalid data",
        1008 => "policy violation",
        1009 => "message too big",
        1011 => "server error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        _ => "no reason given",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_name_their_close_code() {
        let (category, text) = describe(&EventKind::Closed {
            code: 1006,
            reason: String::new(),
            requested: false,
        })
        .unwrap();
        assert_eq!(category, Category::Drop);
        assert_eq!(text, "dropped 1006: connection lost without a close frame");
        assert!(describe(&EventKind::Pong { rtt_us: 1 }).is_none());
    }

    #[test]
    fn the_log_is_bounded_and_filterable() {
        let mut log = EventLog::default();
        for i in 0..(EVENT_LOG_ENTRIES as u64 + 10) {
            log.push(i, 0, "probe-1", Category::Note, format!("n{i}"));
        }
        assert_eq!(log.len(), EVENT_LOG_ENTRIES);
        assert_eq!(log.first_seq(), 10);
        assert_eq!(log.get(10).unwrap().text, "n10");
        let entry = log.get(log.end_seq() - 1).unwrap();
        assert!(entry.matches(&["probe".into(), "note".into()]));
        assert!(!entry.matches(&["probe".into(), "drop".into()]));
        assert!(entry.matches(&[]));
    }
}
