//! openai-realtime's decoder, shared by live sessions and replay: Realtime server events
//! (GA shape) in, session events out. Time to first token at the first
//! `response.output_text.delta` (beta names read too), chunks, `done` from `response.done`
//! with its usage (cached tokens apart, for their own price), failed and cancelled responses,
//! `rate_limits.updated` as `RateLimitStatus`, `error` events, unknown and malformed events. A
//! response failed by a rate limit or an overload comes back as a `SlowDown`: the session
//! waits and reports `RateLimited` itself. Pure: no socket, no clock.

use std::time::Duration;

use crate::protocol::openai_realtime::wire::{RealtimeError, ResponseStatus, ServerEvent};
use crate::session::ratelimit::SlowDown;
use crate::session::response::ResponseTracker;
use crate::session::response::incomplete_cut;
use crate::session::{ErrorKind, EventKind, RateLimits, RequestId, Tokens};

/// What a server event meant for the session, beyond the events it produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RealtimeInbound {
    Nothing,
    /// Text of the response under way.
    Text,
    /// The response under way completed (or was cancelled, or is incomplete).
    ResponseDone,
    /// The response under way failed; `wait` is set when the server asked to slow down (the
    /// session decides the wait and reports it).
    ResponseFailed {
        wait: Option<SlowDown>,
    },
    /// An `error` event that did not fail a response.
    Error,
    /// An error retrying cannot fix (a bad key): stop the session.
    Fatal {
        reason: String,
    },
    /// The item the response under way writes into (to delete after a probe).
    OutputItem {
        item_id: String,
    },
}

/// Decodes one session's Realtime server events. Survives reconnects (request numbers go on).
#[derive(Clone, Debug, Default)]
pub struct RealtimeDecoder {
    tracker: ResponseTracker,
    /// `response.created` has come for the request under way.
    response_created: bool,
}

/// The kind of a Realtime error, from its type and code.
pub fn error_kind(error: &RealtimeError<'_>) -> ErrorKind {
    let code = error.code.as_deref().unwrap_or("");
    let kind = error.kind.as_deref().unwrap_or("");
    if is_fatal(error) {
        ErrorKind::Auth
    } else if code.contains("rate_limit") || kind.contains("rate_limit") {
        ErrorKind::RateLimited
    } else if code.contains("overloaded") || kind.contains("overloaded") {
        ErrorKind::Overloaded
    } else if kind == "invalid_request_error" {
        ErrorKind::InvalidRequest
    } else if kind == "server_error" || code.contains("upstream") {
        ErrorKind::Upstream
    } else {
        ErrorKind::Other
    }
}

/// Whether an error says the configuration is wrong (retrying cannot help).
fn is_fatal(error: &RealtimeError<'_>) -> bool {
    matches!(
        error.code.as_deref(),
        Some("invalid_api_key" | "beta_api_shape_disabled" | "insufficient_quota")
    ) || error.kind.as_deref() == Some("authentication_error")
}

impl RealtimeDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The request under way, if any.
    pub fn in_flight(&self) -> Option<RequestId> {
        self.tracker.in_flight()
    }

    /// When the request under way was sent.
    pub fn sent_at(&self) -> Option<Duration> {
        self.tracker.sent_at()
    }

    /// The number the next request will have (to name its items before it goes out).
    pub fn next_request(&self) -> RequestId {
        self.tracker.next_request()
    }

    /// A request went out at `now`: its number and its `RequestSent` event.
    pub fn request_sent(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind) {
        self.response_created = false;
        self.tracker.begin(now, model, prompt_tokens_estimate)
    }

    /// The request under way failed for a reason outside the events (a drop, a timeout).
    pub fn fail(&mut self, kind: ErrorKind, reason: impl Into<String>) -> Option<EventKind> {
        self.tracker.fail(kind, reason)
    }

    /// A text frame from the server, received at `now`. Its events go to `out`.
    pub fn on_text(
        &mut self,
        now: Duration,
        text: &str,
        out: &mut impl FnMut(EventKind),
    ) -> RealtimeInbound {
        let event = match ServerEvent::parse(text) {
            Ok(event) => event,
            Err(error) => {
                out(EventKind::Malformed {
                    reason: error.to_string(),
                });
                return RealtimeInbound::Nothing;
            }
        };
        match event {
            ServerEvent::SessionCreated | ServerEvent::Other { .. } => RealtimeInbound::Nothing,
            ServerEvent::ResponseCreated { .. } => {
                self.response_created = true;
                RealtimeInbound::Nothing
            }
            ServerEvent::OutputItemAdded { item_id } => match item_id {
                Some(id) if self.tracker.in_flight().is_some() => RealtimeInbound::OutputItem {
                    item_id: id.into_owned(),
                },
                _ => RealtimeInbound::Nothing,
            },
            ServerEvent::TextDelta { delta, .. } => {
                if delta.is_empty() {
                    return RealtimeInbound::Nothing;
                }
                self.tracker.on_chunk(now, &delta, &mut *out);
                RealtimeInbound::Text
            }
            ServerEvent::ResponseDone {
                status,
                reason,
                error,
                usage,
                ..
            } => {
                if self.tracker.in_flight().is_none() {
                    // A response this client did not ask for (server VAD): not ours to count.
                    return RealtimeInbound::Nothing;
                }
                if status == ResponseStatus::Failed {
                    let error = error.unwrap_or_else(|| RealtimeError {
                        message: "the response failed".into(),
                        ..RealtimeError::default()
                    });
                    let kind = error_kind(&error);
                    let message = error.summary();
                    if let Some(failed) = self.tracker.fail(kind, message.clone()) {
                        out(failed);
                    }
                    out(EventKind::Error {
                        kind,
                        message: message.clone(),
                        retryable: kind != ErrorKind::InvalidRequest && kind != ErrorKind::Auth,
                        retry_after_ms: None,
                    });
                    if is_fatal(&error) {
                        return RealtimeInbound::Fatal { reason: message };
                    }
                    let wait = matches!(kind, ErrorKind::RateLimited | ErrorKind::Overloaded)
                        .then_some(SlowDown {
                            kind,
                            retry_after: None,
                            cause: message,
                        });
                    return RealtimeInbound::ResponseFailed { wait };
                }
                let finish = match (status, reason.as_deref()) {
                    (ResponseStatus::Completed, _) => "stop",
                    (ResponseStatus::Cancelled, _) => "cancelled",
                    (ResponseStatus::Incomplete, Some("max_output_tokens")) => "length",
                    (ResponseStatus::Incomplete, Some("content_filter")) => "content_filter",
                    (ResponseStatus::Incomplete, _) => "incomplete",
                    (_, _) => status.label(),
                };
                let reported = usage.map(|u| Tokens {
                    input: u.input_tokens,
                    output: u.output_tokens,
                    cached_input: u.cached_tokens.min(u.input_tokens),
                    ..Tokens::default()
                });
                let Some(mut done) = self.tracker.on_done(now, reported, Some(finish)) else {
                    return RealtimeInbound::Nothing;
                };
                if let EventKind::Done(completed) = &mut done
                    && finish == "incomplete"
                {
                    // An `incomplete` that is no length limit or filter: not whole.
                    completed.cut = Some(incomplete_cut(reason.as_deref()));
                }
                out(done);
                RealtimeInbound::ResponseDone
            }
            ServerEvent::RateLimitsUpdated { limits } => {
                let mut status = RateLimits {
                    requests_limit: None,
                    requests_remaining: None,
                    requests_reset_ms: None,
                    tokens_limit: None,
                    tokens_remaining: None,
                    tokens_reset_ms: None,
                };
                let RateLimits {
                    requests_limit,
                    requests_remaining,
                    requests_reset_ms,
                    tokens_limit,
                    tokens_remaining,
                    tokens_reset_ms,
                } = &mut status;
                for limit in limits {
                    let reset_ms = limit
                        .reset_seconds
                        .filter(|s| *s >= 0.0)
                        .map(|s| (s * 1000.0).round() as u64);
                    match limit.name.as_ref() {
                        "requests" => {
                            *requests_limit = limit.limit;
                            *requests_remaining = limit.remaining;
                            *requests_reset_ms = reset_ms;
                        }
                        "tokens" => {
                            *tokens_limit = limit.limit;
                            *tokens_remaining = limit.remaining;
                            *tokens_reset_ms = reset_ms;
                        }
                        _ => {}
                    }
                }
                out(EventKind::RateLimitStatus(Box::new(status)));
                RealtimeInbound::Nothing
            }
            ServerEvent::Error(error) => {
                let kind = error_kind(&error);
                let message = error.summary();
                let fatal = is_fatal(&error);
                // An error before `response.created` is the answer to our request.
                let failed = if !self.response_created || fatal {
                    self.tracker.fail(kind, message.clone())
                } else {
                    None
                };
                let had_request = failed.is_some();
                if let Some(failed) = failed {
                    out(failed);
                }
                out(EventKind::Error {
                    kind,
                    message: message.clone(),
                    retryable: !fatal && kind != ErrorKind::InvalidRequest,
                    retry_after_ms: None,
                });
                if fatal {
                    RealtimeInbound::Fatal { reason: message }
                } else if had_request {
                    RealtimeInbound::ResponseFailed { wait: None }
                } else {
                    RealtimeInbound::Error
                }
            }
            ServerEvent::Unknown { kind } => {
                out(EventKind::UnknownFrame {
                    frame_type: kind.into_owned(),
                });
                RealtimeInbound::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Completed;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn decode(d: &mut RealtimeDecoder, at: u64, text: &str) -> (RealtimeInbound, Vec<EventKind>) {
        let mut events = Vec::new();
        let inbound = d.on_text(ms(at), text, &mut |e| events.push(e));
        (inbound, events)
    }

    #[test]
    fn a_response_with_cached_tokens() {
        let mut d = RealtimeDecoder::new();
        d.request_sent(ms(0), "gpt-realtime", 3);
        decode(
            &mut d,
            10,
            r#"{"type":"response.created","response":{"id":"r"}}"#,
        );
        let (i, e) = decode(
            &mut d,
            150,
            r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
        );
        assert_eq!(i, RealtimeInbound::Text);
        assert_eq!(
            e[0],
            EventKind::FirstToken {
                request: 1,
                ttft_us: 150_000
            }
        );
        let (i, e) = decode(
            &mut d,
            200,
            r#"{"type":"response.done","response":{"status":"completed","usage":{"input_tokens":100,"output_tokens":5,"input_token_details":{"cached_tokens":64}}}}"#,
        );
        assert_eq!(i, RealtimeInbound::ResponseDone);
        let EventKind::Done(done) = &e[0] else {
            panic!("{e:?}")
        };
        let Completed {
            tokens,
            finish_reason,
            ..
        } = &**done;
        assert_eq!(
            (tokens.input, tokens.cached_input, tokens.output),
            (100, 64, 5)
        );
        assert_eq!(finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn a_bad_key_error_is_fatal() {
        let mut d = RealtimeDecoder::new();
        let (i, e) = decode(
            &mut d,
            0,
            r#"{"type":"error","error":{"type":"invalid_request_error","code":"invalid_api_key","message":"Incorrect API key provided"}}"#,
        );
        assert!(matches!(i, RealtimeInbound::Fatal { .. }));
        assert!(matches!(
            e[0],
            EventKind::Error {
                kind: ErrorKind::Auth,
                retryable: false,
                ..
            }
        ));
    }

    #[test]
    fn an_error_after_the_response_started_does_not_fail_it() {
        let mut d = RealtimeDecoder::new();
        d.request_sent(ms(0), "m", 1);
        decode(&mut d, 1, r#"{"type":"response.created","response":{}}"#);
        let (i, _) = decode(
            &mut d,
            2,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"unknown parameter"}}"#,
        );
        assert_eq!(i, RealtimeInbound::Error);
        assert!(d.in_flight().is_some());
    }
}
