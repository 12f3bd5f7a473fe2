//! anthropic-messages's error classification and rate-limit headers: Anthropic's error types
//! (`overloaded_error`, `rate_limit_error`, `authentication_error`, …), relays' OpenAI-shaped
//! bodies and new-api's own words (`无效的令牌`, `该令牌额度已用尽`, `无可用渠道`, …), HTTP 529,
//! the reference retry policy (`x-should-retry` overrides, as for openai-sse), and the
//! `anthropic-ratelimit-*` headers as a `RateLimitStatus`. Pure: the time the resets are
//! measured from is an argument.

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;

use crate::protocol::anthropic_messages::wire::MessagesError;
use crate::session::connect::status_kind;
use crate::session::{ErrorKind, EventKind, RateLimits};
use crate::transport::http_stream::Action;

pub use crate::protocol::openai_chat::policy::should_retry;

/// What an error's type, code and message say, beyond its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Says {
    /// The key is invalid, expired or not allowed.
    BadKey,
    /// The key's or the account's quota is used up.
    NoQuota,
    /// No channel of the relay serves the model.
    NoChannel,
    RateLimited,
    Overloaded,
    InvalidRequest,
    Upstream,
    Nothing,
}

fn says(error: &MessagesError<'_>) -> Says {
    let kind = error.kind.as_deref().unwrap_or("");
    let code = error.code.as_deref().unwrap_or("");
    let message = error.message.as_ref();
    let lower = message.to_ascii_lowercase();
    let any = |needles: &[&str]| {
        needles
            .iter()
            .any(|n| kind == *n || code == *n || message.contains(n))
    };
    if any(&[
        "该令牌额度已用尽",
        "用户额度不足",
        "insufficient_user_quota",
        "insufficient_quota",
        "pre_consume_token_quota_failed",
    ]) || kind == "billing_error"
        || lower.contains("quota is not enough")
    {
        return Says::NoQuota;
    }
    let key_message = (lower.contains("api key") || lower.contains("api_key"))
        && (lower.contains("invalid") || lower.contains("incorrect"));
    if any(&["无效的令牌", "该令牌已过期", "令牌已被禁用"])
        || matches!(kind, "authentication_error" | "permission_error")
        || matches!(
            code,
            "invalid_api_key" | "incorrect_api_key" | "invalid_authentication"
        )
        || key_message
    {
        return Says::BadKey;
    }
    if code == "model_not_found" || message.contains("无可用渠道") {
        return Says::NoChannel;
    }
    if message.contains("负载已饱和") || kind == "rate_limit_error" || code.contains("rate_limit")
    {
        return Says::RateLimited;
    }
    match kind {
        "overloaded_error" => Says::Overloaded,
        "invalid_request_error" | "not_found_error" | "request_too_large" => Says::InvalidRequest,
        "api_error" | "timeout_error" => Says::Upstream,
        _ => Says::Nothing,
    }
}

/// The kind of a mid-stream error, and whether it is fatal (a bad key, no quota).
pub fn stream_error_kind(error: &MessagesError<'_>) -> (ErrorKind, bool) {
    match says(error) {
        Says::BadKey | Says::NoQuota => (ErrorKind::Auth, true),
        Says::NoChannel | Says::InvalidRequest => (ErrorKind::InvalidRequest, false),
        Says::RateLimited => (ErrorKind::RateLimited, false),
        Says::Overloaded => (ErrorKind::Overloaded, false),
        Says::Upstream | Says::Nothing => (ErrorKind::Upstream, false),
    }
}

/// Classifies a non-2xx answer by its status, its error body and `x-should-retry`: a bad key
/// or no quota stops the session whatever the status; no channel for the model fails the
/// request (retrying cannot help); 429 is a rate limit and 529 (or `overloaded_error`) an
/// overload, both retried; other statuses follow the reference policy (retry 408, 409, 429
/// and 5xx, fail the rest).
pub fn classify(
    status: u16,
    error: Option<&MessagesError<'_>>,
    should_retry: Option<bool>,
) -> (ErrorKind, Action) {
    let said = error.map_or(Says::Nothing, says);
    match said {
        Says::BadKey | Says::NoQuota => return (ErrorKind::Auth, Action::Stop),
        _ if matches!(status, 401 | 403) => return (ErrorKind::Auth, Action::Stop),
        Says::NoChannel => return (ErrorKind::InvalidRequest, Action::Fail),
        _ => {}
    }
    let kind = match said {
        Says::RateLimited => ErrorKind::RateLimited,
        _ if status == 429 => ErrorKind::RateLimited,
        Says::Overloaded => ErrorKind::Overloaded,
        _ if status == 529 => ErrorKind::Overloaded,
        Says::Upstream => ErrorKind::Upstream,
        Says::InvalidRequest if status < 500 => ErrorKind::InvalidRequest,
        _ => status_kind(status),
    };
    let action = match should_retry {
        Some(true) => Action::Retry,
        Some(false) => Action::Fail,
        None if matches!(status, 408 | 409 | 429 | 500..=599) => Action::Retry,
        None if matches!(kind, ErrorKind::RateLimited | ErrorKind::Overloaded) => Action::Retry,
        None => Action::Fail,
    };
    (kind, action)
}

/// The `RateLimitStatus` event of an answer's `anthropic-ratelimit-*` headers, when it has
/// any: `requests-*`, and `tokens-*` (or `input-tokens-*` when a relay sends only those).
/// Resets are RFC 3339 times, measured from `now`; a reset that is a plain number is read as
/// seconds, and `retry-after` stands in for a reset that cannot be read.
pub fn rate_limit_event(headers: &HeaderMap, now: DateTime<Utc>) -> Option<EventKind> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let number = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
    let retry_after_ms = header("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s.min(3600.0) * 1000.0).round() as u64);
    let reset = |name: &str| -> Option<u64> {
        let value = header(name)?.trim();
        if let Ok(seconds) = value.parse::<f64>() {
            return (seconds.is_finite() && seconds >= 0.0)
                .then(|| (seconds.min(1e9) * 1000.0).round() as u64);
        }
        match DateTime::parse_from_rfc3339(value) {
            Ok(at) => {
                let ms = at
                    .with_timezone(&Utc)
                    .signed_duration_since(now)
                    .num_milliseconds();
                Some(u64::try_from(ms).unwrap_or(0))
            }
            Err(_) => retry_after_ms,
        }
    };
    let group = |prefix: &str| {
        (
            number(&format!("{prefix}-limit")),
            number(&format!("{prefix}-remaining")),
            reset(&format!("{prefix}-reset")),
        )
    };
    let requests = group("anthropic-ratelimit-requests");
    let mut tokens = group("anthropic-ratelimit-tokens");
    if tokens == (None, None, None) {
        tokens = group("anthropic-ratelimit-input-tokens");
    }
    if requests == (None, None, None) && tokens == (None, None, None) {
        return None;
    }
    Some(EventKind::RateLimitStatus(Box::new(RateLimits {
        requests_limit: requests.0,
        requests_remaining: requests.1,
        requests_reset_ms: requests.2,
        tokens_limit: tokens.0,
        tokens_remaining: tokens.1,
        tokens_reset_ms: tokens.2,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::anthropic_messages::wire::parse_error_body;
    use reqwest::header::HeaderValue;

    fn body(status: u16, body: &str) -> (ErrorKind, Action) {
        classify(status, parse_error_body(body.as_bytes()).as_ref(), None)
    }

    #[test]
    fn anthropic_error_bodies() {
        let e = |t: &str| format!(r#"{{"type":"error","error":{{"type":"{t}","message":"m"}}}}"#);
        assert_eq!(
            body(529, &e("overloaded_error")),
            (ErrorKind::Overloaded, Action::Retry)
        );
        assert_eq!(body(529, "<html>"), (ErrorKind::Overloaded, Action::Retry));
        assert_eq!(
            body(429, &e("rate_limit_error")),
            (ErrorKind::RateLimited, Action::Retry)
        );
        assert_eq!(
            body(401, &e("authentication_error")),
            (ErrorKind::Auth, Action::Stop)
        );
        assert_eq!(
            body(400, &e("authentication_error")),
            (ErrorKind::Auth, Action::Stop),
            "a relay's 400 for a bad key"
        );
        assert_eq!(
            body(403, &e("permission_error")),
            (ErrorKind::Auth, Action::Stop)
        );
        assert_eq!(
            body(400, &e("invalid_request_error")),
            (ErrorKind::InvalidRequest, Action::Fail)
        );
        assert_eq!(
            body(500, &e("api_error")),
            (ErrorKind::Upstream, Action::Retry)
        );
        assert_eq!(body(502, ""), (ErrorKind::Upstream, Action::Retry));
        assert_eq!(body(404, ""), (ErrorKind::InvalidRequest, Action::Fail));
    }

    #[test]
    fn new_api_words() {
        let openai = |status: u16, message: &str, code: &str| {
            body(
                status,
                &format!(
                    r#"{{"error":{{"message":"{message}","type":"new_api_error","code":"{code}"}}}}"#
                ),
            )
        };
        let wrapped = |status: u16, message: &str| {
            body(
                status,
                &format!(
                    r#"{{"type":"error","error":{{"type":"new_api_error","message":"{message}"}}}}"#
                ),
            )
        };
        assert_eq!(wrapped(401, "无效的令牌"), (ErrorKind::Auth, Action::Stop));
        assert_eq!(wrapped(500, "无效的令牌"), (ErrorKind::Auth, Action::Stop));
        assert_eq!(
            wrapped(401, "该令牌已过期"),
            (ErrorKind::Auth, Action::Stop)
        );
        assert_eq!(
            wrapped(429, "该令牌额度已用尽 tokenId=3"),
            (ErrorKind::Auth, Action::Stop)
        );
        assert_eq!(
            openai(
                403,
                "用户额度不足, 剩余额度: $0.01",
                "insufficient_user_quota"
            ),
            (ErrorKind::Auth, Action::Stop)
        );
        assert_eq!(
            openai(400, "quota", "insufficient_user_quota"),
            (ErrorKind::Auth, Action::Stop)
        );
        assert_eq!(
            openai(
                503,
                "分组 default 下模型 claude-x 无可用渠道（distributor）",
                ""
            ),
            (ErrorKind::InvalidRequest, Action::Fail)
        );
        assert_eq!(
            openai(503, "no channel", "model_not_found"),
            (ErrorKind::InvalidRequest, Action::Fail)
        );
        assert_eq!(
            wrapped(429, "当前分组上游负载已饱和，请稍后再试"),
            (ErrorKind::RateLimited, Action::Retry)
        );
        assert_eq!(
            wrapped(500, "当前分组上游负载已饱和，请稍后再试"),
            (ErrorKind::RateLimited, Action::Retry)
        );
    }

    #[test]
    fn should_retry_overrides() {
        let e = parse_error_body(br#"{"type":"error","error":{"type":"api_error","message":"m"}}"#);
        assert_eq!(
            classify(500, e.as_ref(), Some(false)),
            (ErrorKind::Upstream, Action::Fail)
        );
        assert_eq!(
            classify(400, None, Some(true)),
            (ErrorKind::InvalidRequest, Action::Retry)
        );
        let bad_key = parse_error_body(br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#);
        assert_eq!(
            classify(401, bad_key.as_ref(), Some(true)),
            (ErrorKind::Auth, Action::Stop),
            "a bad key is never retried"
        );
    }

    #[test]
    fn stream_errors() {
        let kind = |body: &str| stream_error_kind(&parse_error_body(body.as_bytes()).unwrap());
        let e = |t: &str| format!(r#"{{"type":"error","error":{{"type":"{t}","message":"m"}}}}"#);
        assert_eq!(kind(&e("overloaded_error")), (ErrorKind::Overloaded, false));
        assert_eq!(
            kind(&e("rate_limit_error")),
            (ErrorKind::RateLimited, false)
        );
        assert_eq!(kind(&e("authentication_error")), (ErrorKind::Auth, true));
        assert_eq!(kind(&e("permission_error")), (ErrorKind::Auth, true));
        assert_eq!(
            kind(&e("invalid_request_error")),
            (ErrorKind::InvalidRequest, false)
        );
        assert_eq!(kind(&e("api_error")), (ErrorKind::Upstream, false));
        assert_eq!(kind(&e("something_new")), (ErrorKind::Upstream, false));
    }

    #[test]
    fn rate_limit_headers() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_event(&h, now), None);
        for (name, value) in [
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            (
                "anthropic-ratelimit-requests-reset",
                "2026-01-01T00:00:01.5Z",
            ),
            ("anthropic-ratelimit-tokens-limit", "40000"),
            ("anthropic-ratelimit-tokens-remaining", "not a number"),
            ("anthropic-ratelimit-tokens-reset", "2025-12-31T23:59:00Z"),
            ("anthropic-ratelimit-input-tokens-limit", "30000"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        assert_eq!(
            rate_limit_event(&h, now),
            Some(EventKind::RateLimitStatus(Box::new(RateLimits {
                requests_limit: Some(50),
                requests_remaining: Some(49),
                requests_reset_ms: Some(1500),
                tokens_limit: Some(40000),
                tokens_remaining: None,
                tokens_reset_ms: Some(0),
            })))
        );
        // Input tokens stand in for tokens; retry-after for a reset that cannot be read.
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("anthropic-ratelimit-input-tokens-limit", "30000"),
            ("anthropic-ratelimit-input-tokens-remaining", "0"),
            ("anthropic-ratelimit-input-tokens-reset", "soon"),
            ("retry-after", "7"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        assert_eq!(
            rate_limit_event(&h, now),
            Some(EventKind::RateLimitStatus(Box::new(RateLimits {
                requests_limit: None,
                requests_remaining: None,
                requests_reset_ms: None,
                tokens_limit: Some(30000),
                tokens_remaining: Some(0),
                tokens_reset_ms: Some(7000),
            })))
        );
        // retry-after alone is not a rate-limit status.
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_event(&h, now), None);
    }
}
