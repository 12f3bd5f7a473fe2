//! The tap of one session: each event formatted, redacted and appended to its buffer.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::record::format::{self, json_string};
use crate::session::tap::{Direction, Staged, Tap, Wire};
use crate::session::{EventKind, SessionState};

use super::recorder::{Inner, SessionFile};

/// The tap of one session.
pub(super) struct SessionTap {
    pub(super) inner: Arc<Inner>,
    pub(super) file: Arc<SessionFile>,
}

impl SessionTap {
    pub(super) fn push(&self, at: Duration, dir: &str, kind: &str, data: &str) {
        self.inner.push(&self.file, at, dir, kind, data);
    }

    pub(super) fn marker(&self, at: Duration, label: &str) {
        self.push(at, "=", "marker", &json_string(label));
    }
}

impl Tap for SessionTap {
    fn wire(&self, at: Duration, direction: Direction, wire: Wire<'_>) {
        let dir = match direction {
            Direction::ToRelay => ">",
            Direction::FromRelay => "<",
        };
        match wire {
            Wire::Text(text) => self.inner.push_text(&self.file, at, dir, text),
            Wire::SseEvent { event, data } => {
                let data = format!(
                    "{{\"event\":{},\"data\":{}}}",
                    json_string(event),
                    json_string(data)
                );
                self.push(at, dir, "sse", &data);
            }
            Wire::SseRefused { reason } => {
                let data = format!("{{\"reason\":{}}}", json_string(reason));
                self.push(at, dir, "refused", &data);
            }
            Wire::BodyEnd => self.push(at, dir, "body_end", "{}"),
            Wire::Binary(bytes) => {
                let data = if self.inner.options.binary_bodies {
                    let body = self.inner.redactor.redact_bytes(bytes);
                    format!(
                        "{{\"len\":{},\"b64\":\"{}\"}}",
                        bytes.len(),
                        base64::engine::general_purpose::STANDARD.encode(&*body)
                    )
                } else {
                    format!("{{\"len\":{},\"omitted\":true}}", bytes.len())
                };
                self.push(at, dir, "binary", &data);
            }
            Wire::Upgrade { status } => {
                self.push(at, dir, "upgrade", &format!("{{\"status\":{status}}}"));
            }
            Wire::Close { code, reason } => {
                let data = format!(
                    "{{\"code\":{code},\"reason\":{},\"requested\":{}}}",
                    json_string(reason),
                    direction == Direction::ToRelay
                );
                self.push(at, dir, "close", &data);
            }
        }
    }

    fn staged(&self, frames: &Staged) {
        self.inner.push_staged(&self.file, frames);
    }

    fn event(&self, at: Duration, kind: &EventKind) {
        let (line_kind, data) = format::encode_event(kind);
        self.push(at, "=", line_kind, &data);
        match kind {
            EventKind::BackingOff { attempt, .. } => {
                self.marker(at, &format!("reconnect {attempt}"));
            }
            EventKind::RateLimited { wait_ms, .. } => {
                self.marker(at, &format!("rate limited: wait {wait_ms} ms"));
            }
            EventKind::Marker { label } => self.marker(at, label),
            EventKind::State(SessionState::Closed) => {
                self.inner
                    .push_line(&self.file, at, "=", "end", r#"{"reason":"closed"}"#, true);
            }
            EventKind::State(SessionState::Stopped { reason }) => {
                let data = format!(
                    "{{\"reason\":\"stopped\",\"detail\":{}}}",
                    json_string(reason)
                );
                self.inner
                    .push_line(&self.file, at, "=", "end", &data, true);
            }
            _ => {}
        }
    }
}
