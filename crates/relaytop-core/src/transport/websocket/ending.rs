//! How a WebSocket connection ends, and the waits between requests, for every WebSocket
//! protocol: socket errors and drops (close codes: the codec says which are for good, 1008
//! always), the session's commands (close, reconnect, cancel), the graceful close, and the
//! hold-back after a slow-down (`HoldBack`).

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::session::connect::RelaySocket;
use crate::session::driver::{Core, End};
use crate::session::event::{close_cause, micros};
use crate::session::handle::SessionCommand;
use crate::session::ratelimit::{RateLimitRetry, SlowDown};
use crate::session::tap::{Direction, Wire};
use crate::session::{ErrorKind, EventKind};
use crate::transport::websocket::codec::{HoldBack, WebSocketCodec};
use crate::transport::websocket::serve::WebSocketTransport;

/// Close 1008 (policy violation): the key or the policy, counted as an auth error.
pub(super) const CLOSE_POLICY: u16 = 1008;

impl<C: WebSocketCodec> WebSocketTransport<C> {
    /// The peer asked us to slow down (as the decoder read it). Under `HoldBack::Schedule` a
    /// rate limit follows the 1, 2, 4, 8, 16 s schedule unless the peer gave a wait, and gives
    /// up after 5 retries: the one-shot requests waiting are dropped. Anything else waits what
    /// the peer said (or a second). The wait decided here is the one reported
    /// (`RateLimited`, tapped: a replay shows it as it was).
    pub(super) fn hold_back(&mut self, core: &mut Core, now: Duration, slow_down: SlowDown) {
        let mut gave_up = None;
        let scheduled = self.codec.hold_back() == HoldBack::Schedule
            && slow_down.kind == ErrorKind::RateLimited;
        let (delay, cause) = if scheduled {
            let max = self.request_limited.max_retries();
            match self.request_limited.on_rate_limited(slow_down.retry_after) {
                RateLimitRetry::After { retry, delay } => (
                    delay,
                    format!("{} (retry {retry} of {max})", slow_down.cause),
                ),
                RateLimitRetry::GiveUp { retries } => {
                    gave_up = Some(retries);
                    (slow_down.wait(), format!("{} (gave up)", slow_down.cause))
                }
            }
        } else {
            (slow_down.wait(), slow_down.cause.clone())
        };
        core.workload.defer_until(now + delay);
        core.rate_limited(now, delay, cause);
        if let Some(retries) = gave_up {
            let dropped = core.workload.drop_oneshots();
            core.emit(
                now,
                EventKind::Error {
                    kind: ErrorKind::RateLimited,
                    message: format!(
                        "still rate limited after {retries} retries: gave up ({dropped} waiting requests dropped)"
                    ),
                    retryable: false,
                    retry_after_ms: slow_down.retry_after.map(|d| micros(d) / 1000),
                },
            );
        }
    }

    pub(super) fn on_socket_error(
        &mut self,
        core: &mut Core,
        error: &tokio_tungstenite::tungstenite::Error,
        now: Duration,
    ) -> End {
        use tokio_tungstenite::tungstenite::Error;
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        let (code, reason) = match error {
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
            | Error::ConnectionClosed
            | Error::AlreadyClosed => {
                return self.on_dropped(
                    core,
                    now,
                    1006,
                    "connection ended without a close frame",
                    ErrorKind::Network,
                );
            }
            Error::Capacity(e) => (
                1009,
                format!("refused a message over the size limit ({e}); reconnecting"),
            ),
            Error::Utf8(e) => (1007, format!("text frame is not valid UTF-8 ({e})")),
            Error::Protocol(e) => (1002, format!("protocol error: {e}")),
            Error::Io(e) => (1006, format!("connection lost: {e}")),
            other => (1006, other.to_string()),
        };
        let kind = if matches!(
            error,
            Error::Capacity(_) | Error::Utf8(_) | Error::Protocol(_)
        ) {
            ErrorKind::Protocol
        } else {
            ErrorKind::Network
        };
        core.emit(
            now,
            EventKind::Error {
                kind,
                message: reason.clone(),
                retryable: true,
                retry_after_ms: None,
            },
        );
        self.on_dropped(core, now, code, &reason, kind)
    }

    /// The connection ended without us asking, for a failure of `kind` (a dead peer is a
    /// timeout, a close 1008 the key or the policy). Fails the response under way with that
    /// kind, reports the close (a close 1008 as an auth error too: it is counted), and says
    /// whether to retry (not after a close the codec says is for good).
    pub(super) fn on_dropped(
        &mut self,
        core: &mut Core,
        now: Duration,
        code: u16,
        reason: &str,
        kind: ErrorKind,
    ) -> End {
        let cause = close_cause(code, reason);
        tracing::info!(session = %core.spec.info.name, %cause, "connection dropped");
        core.tap_wire(now, Direction::FromRelay, Wire::Close { code, reason });
        if let Some(failed) = self.codec.fail(kind, cause.clone()) {
            core.emit(now, failed);
            core.workload.on_failed();
        }
        core.emit(
            now,
            EventKind::Closed {
                code,
                reason: reason.to_owned(),
                requested: false,
            },
        );
        let verdict = self.codec.closed_for_good(code, reason);
        if code == CLOSE_POLICY {
            core.emit(
                now,
                EventKind::Error {
                    kind: ErrorKind::Auth,
                    message: cause.clone(),
                    retryable: verdict.is_none(),
                    retry_after_ms: None,
                },
            );
        }
        if let Some(verdict) = verdict {
            return End::Fatal(verdict);
        }
        End::Retry {
            cause,
            retry_after: None,
        }
    }

    pub(super) async fn on_command(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        command: Option<SessionCommand>,
    ) -> Option<End> {
        let now = core.clock.now();
        match command {
            None | Some(SessionCommand::Close) => {
                self.close_gracefully(core, socket, now, "closed by user", false)
                    .await;
                Some(End::Closed)
            }
            Some(SessionCommand::ReconnectNow) => {
                self.close_gracefully(core, socket, now, "reconnect asked by user", true)
                    .await;
                Some(End::Reconnect)
            }
            Some(SessionCommand::Cancel) => {
                if self.codec.in_flight().is_some() {
                    let cancel = vec![self.codec.cancel()];
                    if let Err(error) = self.send_frames(core, socket, now, cancel).await {
                        return Some(self.on_socket_error(core, &error, now));
                    }
                }
                None
            }
            // Chat turns, requests, transcriptions and history changes: the core queues them
            // (and says when it cannot).
            Some(command) => {
                core.queue(now, command);
                None
            }
        }
    }

    /// Closes with 1000 and waits briefly for the peer's answer.
    pub(super) async fn close_gracefully(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        now: Duration,
        reason: &str,
        cut_response: bool,
    ) {
        // A response cut by a reconnect the user asked for has failed (a chat offers a retry);
        // one under way when the session closes is abandoned, not a relay failure.
        if let Some(failed) = self.codec.fail(ErrorKind::Other, reason.to_owned()) {
            core.workload.on_failed();
            if cut_response {
                core.emit(now, failed);
            }
        }
        close_with_1000(socket, reason).await;
        core.emit(
            now,
            EventKind::Closed {
                code: 1000,
                reason: reason.to_owned(),
                requested: true,
            },
        );
    }

    /// The peer said retrying cannot help (`Reaction::Fatal`): closes with 1000 (the close
    /// that should follow from the peer says the same) and reports it.
    pub(super) async fn close_for_good(
        &mut self,
        core: &mut Core,
        socket: &mut RelaySocket,
        now: Duration,
        reason: &str,
    ) {
        close_with_1000(socket, "configuration failure").await;
        core.emit(
            now,
            EventKind::Closed {
                code: 1000,
                reason: reason.to_owned(),
                requested: true,
            },
        );
    }
}

/// Sends a close 1000 and waits up to a second for the peer's answer.
async fn close_with_1000(socket: &mut RelaySocket, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if socket.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = socket.next().await {}
        }
    })
    .await;
}
