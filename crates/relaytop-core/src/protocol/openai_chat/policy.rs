//! openai-sse's error classification and retry policy: the reference client policy of
//! spec/ADAPTERS.md (stop on a bad key and on `insufficient_quota`; retry 408, 409, 429 and 5xx
//! up to twice, honouring `retry-after-ms`, then `Retry-After` up to 120 s, else 0.5 s × 2^n up
//! to 8 s with jitter; `x-should-retry` overrides), the kind of an API error, and the
//! `x-ratelimit-*` headers as a `RateLimitStatus`. Pure.

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::protocol::openai_chat::wire::{ApiError, RateLimitHeaders};
use crate::session::connect::status_kind;
use crate::session::{ErrorKind, EventKind};

/// Retries of one request after a retryable status (the reference client's default).
pub const MAX_RETRIES: u32 = 2;
/// A server's `retry-after-ms`/`Retry-After` is honoured up to this long.
pub const MAX_SERVER_RETRY_AFTER: Duration = Duration::from_secs(120);

/// What to do about a failed HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Retrying cannot help: stop the session (a bad key, no quota).
    Stop,
    /// Retry the same request after `retry_delay`.
    Retry,
    /// The request failed; the session goes on.
    Fail,
}

/// Classifies a non-2xx answer by its status, its error body and `x-should-retry`.
pub fn classify(
    status: u16,
    error: Option<&ApiError<'_>>,
    should_retry: Option<bool>,
) -> (ErrorKind, Action) {
    if status == 401 || error.is_some_and(|e| e.is_bad_key()) {
        return (ErrorKind::Auth, Action::Stop);
    }
    if status == 403 {
        return (ErrorKind::Auth, Action::Stop);
    }
    if error.is_some_and(|e| e.is_insufficient_quota()) {
        return (ErrorKind::RateLimited, Action::Stop);
    }
    let kind = status_kind(status);
    let action = match should_retry {
        Some(true) => Action::Retry,
        Some(false) => Action::Fail,
        None if matches!(status, 408 | 409 | 429 | 500..=599) => Action::Retry,
        None => Action::Fail,
    };
    (kind, action)
}

/// The wait before retry number `retries_done + 1` of a request: the server's word when it is
/// at most 120 s, else 0.5 s × 2^retries_done, at most 8 s, less up to 25 % jitter
/// (`jitter` in `[0, 1)`).
pub fn retry_delay(retries_done: u32, server_says: Option<Duration>, jitter: f64) -> Duration {
    if let Some(wait) = server_says
        && wait <= MAX_SERVER_RETRY_AFTER
    {
        return wait;
    }
    let seconds = (0.5 * 2f64.powi(retries_done.min(16) as i32)).min(8.0);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::from_secs_f64(seconds * (1.0 - 0.25 * jitter))
}

/// `x-should-retry: true|false`.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The kind of a mid-stream (or body) error, from its type and code.
pub fn error_kind(error: &ApiError<'_>) -> ErrorKind {
    if error.is_bad_key() {
        return ErrorKind::Auth;
    }
    let code = error.code.as_deref().unwrap_or("");
    let kind = error.kind.as_deref().unwrap_or("");
    if error.is_insufficient_quota()
        || code.contains("rate_limit")
        || kind.contains("rate_limit")
        || matches!(kind, "requests" | "tokens")
    {
        ErrorKind::RateLimited
    } else if code.contains("overloaded") || kind.contains("overloaded") {
        ErrorKind::Overloaded
    } else if kind == "invalid_request_error" {
        ErrorKind::InvalidRequest
    } else {
        ErrorKind::Upstream
    }
}

/// The `RateLimitStatus` event of a response's headers, when it has any `x-ratelimit-*`.
pub fn rate_limit_event(headers: &HeaderMap) -> Option<EventKind> {
    let r = RateLimitHeaders::read(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    (!r.is_empty()).then_some(EventKind::RateLimitStatus {
        requests_limit: r.requests_limit,
        requests_remaining: r.requests_remaining,
        requests_reset_ms: r.requests_reset_ms,
        tokens_limit: r.tokens_limit,
        tokens_remaining: r.tokens_remaining,
        tokens_reset_ms: r.tokens_reset_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openai_chat::parse_error_body;
    use reqwest::header::HeaderValue;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_reference_retry_policy() {
        assert_eq!(classify(401, None, None), (ErrorKind::Auth, Action::Stop));
        assert_eq!(classify(403, None, None), (ErrorKind::Auth, Action::Stop));
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(classify(status, None, None).1, Action::Retry, "{status}");
        }
        for status in [400, 404, 422] {
            assert_eq!(classify(status, None, None).1, Action::Fail, "{status}");
        }
        assert_eq!(classify(400, None, Some(true)).1, Action::Retry);
        assert_eq!(classify(503, None, Some(false)).1, Action::Fail);
        let quota = parse_error_body(
            br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert_eq!(
            classify(429, quota.as_ref(), Some(true)),
            (ErrorKind::RateLimited, Action::Stop),
            "no quota: never retried"
        );
        let bad_key = parse_error_body(
            br#"{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}"#,
        );
        assert_eq!(
            classify(500, bad_key.as_ref(), None),
            (ErrorKind::Auth, Action::Stop),
            "a relay's 500 for a bad key"
        );
    }

    #[test]
    fn retry_delays() {
        assert_eq!(retry_delay(0, None, 0.0), ms(500));
        assert_eq!(retry_delay(1, None, 0.0), ms(1000));
        assert_eq!(retry_delay(5, None, 0.0), ms(8000), "capped at 8 s");
        assert_eq!(retry_delay(0, None, 1.0), ms(375), "up to 25 % jitter");
        assert_eq!(retry_delay(0, Some(ms(1500)), 0.5), ms(1500));
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(600)), 0.0),
            ms(500),
            "over 120 s: the server's word is not taken"
        );
    }

    #[test]
    fn should_retry_header() {
        let mut h = HeaderMap::new();
        assert_eq!(should_retry(&h), None);
        h.insert("x-should-retry", HeaderValue::from_static("false"));
        assert_eq!(should_retry(&h), Some(false));
    }
}
