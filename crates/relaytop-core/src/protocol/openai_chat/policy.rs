//! openai-sse's error classification: the reference client policy of spec/ADAPTERS.md (stop
//! on a bad key and on `insufficient_quota`; retry 408, 409, 429 and 5xx; `x-should-retry`
//! overrides; the waits are the shared `transport::http_stream::retry`), the kind of an API
//! error, and the `x-ratelimit-*` headers as a `RateLimitStatus`. Pure.

use reqwest::header::HeaderMap;

use crate::protocol::openai_chat::wire::{ApiError, RateLimitHeaders};
use crate::session::connect::status_kind;
use crate::session::{ErrorKind, EventKind, RateLimits};
use crate::transport::http_stream::Action;

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
    (!r.is_empty()).then(|| {
        EventKind::RateLimitStatus(Box::new(RateLimits {
            requests_limit: r.requests_limit,
            requests_remaining: r.requests_remaining,
            requests_reset_ms: r.requests_reset_ms,
            tokens_limit: r.tokens_limit,
            tokens_remaining: r.tokens_remaining,
            tokens_reset_ms: r.tokens_reset_ms,
        }))
    })
}

/// A failed answer to `what`, as OpenAI's reference client reads it (chat completions and
/// Responses share it): the error body, the status, `x-should-retry`.
pub fn classify_answer(
    what: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> crate::transport::http_stream::HttpFailure {
    let error = crate::protocol::openai_chat::parse_error_body(body);
    let (kind, action) = classify(status, error.as_ref(), should_retry(headers));
    crate::transport::http_stream::HttpFailure::new(
        kind,
        action,
        what,
        status,
        error.map(|e| e.summary()),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openai_chat::parse_error_body;
    use reqwest::header::HeaderValue;

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
    fn should_retry_header() {
        let mut h = HeaderMap::new();
        assert_eq!(should_retry(&h), None);
        h.insert("x-should-retry", HeaderValue::from_static("false"));
        assert_eq!(should_retry(&h), Some(false));
    }
}
