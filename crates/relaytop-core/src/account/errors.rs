//! The relay's error classes: a failed answer's status, code and words (Chinese and English;
//! one-api, new-api, OpenAI, Anthropic and Gemini bodies) read as what a person acts on, each
//! with a short label and a one-line fix; and the relay's request id a user quotes to the
//! station's support. Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};

use crate::session::ErrorKind;

/// What a failed request means for the person watching (`docs/ACCOUNTS.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// 401 `无效的令牌`, `该令牌已过期`, `invalid_api_key`.
    InvalidKey,
    /// `该令牌额度已用尽`: the key's own quota is spent (the account may still have money).
    KeyQuotaUsedUp,
    /// 403 `insufficient_user_quota`, `用户额度不足`, "user quota is not enough", 402.
    BalanceTooLow,
    /// 503 `model_not_found`, `无可用渠道`: no channel serves this model (others may work).
    NoChannel,
    /// 429 `当前分组上游负载已饱和`: the station's upstream for the group is full.
    UpstreamSaturated,
    /// 429 and `rate_limit` codes.
    RateLimited,
    /// Anthropic's 529 and `overloaded_error`.
    UpstreamOverloaded,
    /// 5xx, `bad_response_status_code`, `empty_response`, `channel:*`.
    UpstreamError,
    /// 400-class: the request itself.
    InvalidRequest,
    /// TCP, TLS, DNS: nothing answered.
    Network,
    /// Too slow: no answer in time.
    Timeout,
}

/// How far a class reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every request on this key fails until a person acts: stop probing, re-check slowly.
    Key,
    /// Only this model fails: the other models of the provider may work.
    Model,
    /// This request; the next may work.
    Request,
}

impl ErrorClass {
    /// Every class, in the order the docs list them.
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::InvalidKey,
        ErrorClass::KeyQuotaUsedUp,
        ErrorClass::BalanceTooLow,
        ErrorClass::NoChannel,
        ErrorClass::UpstreamSaturated,
        ErrorClass::RateLimited,
        ErrorClass::UpstreamOverloaded,
        ErrorClass::UpstreamError,
        ErrorClass::InvalidRequest,
        ErrorClass::Network,
        ErrorClass::Timeout,
    ];

    /// A few words: `account balance too low`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::InvalidKey => "invalid or expired key",
            ErrorClass::KeyQuotaUsedUp => "key quota used up",
            ErrorClass::BalanceTooLow => "account balance too low",
            ErrorClass::NoChannel => "no channel serves this model",
            ErrorClass::UpstreamSaturated => "upstream saturated",
            ErrorClass::RateLimited => "rate limited",
            ErrorClass::UpstreamOverloaded => "upstream overloaded",
            ErrorClass::UpstreamError => "upstream error",
            ErrorClass::InvalidRequest => "invalid request",
            ErrorClass::Network => "network",
            ErrorClass::Timeout => "timeout",
        }
    }

    /// The name in JSON and Prometheus labels: `balance_too_low`.
    pub fn slug(self) -> &'static str {
        match self {
            ErrorClass::InvalidKey => "invalid_key",
            ErrorClass::KeyQuotaUsedUp => "key_quota_used_up",
            ErrorClass::BalanceTooLow => "balance_too_low",
            ErrorClass::NoChannel => "no_channel",
            ErrorClass::UpstreamSaturated => "upstream_saturated",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::UpstreamOverloaded => "upstream_overloaded",
            ErrorClass::UpstreamError => "upstream_error",
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::Network => "network",
            ErrorClass::Timeout => "timeout",
        }
    }

    /// What a person does about it, in one line.
    pub fn fix(self) -> &'static str {
        match self {
            ErrorClass::InvalidKey => {
                "check the key in the provider's api_key_env variable; make a new one in the station's console if it expired"
            }
            ErrorClass::KeyQuotaUsedUp => {
                "raise this key's quota (or make it unlimited) in the station's token settings"
            }
            ErrorClass::BalanceTooLow => "top up the account at the station",
            ErrorClass::NoChannel => {
                "use another model, or ask the station to enable a channel for this one in your group"
            }
            ErrorClass::UpstreamSaturated => {
                "the station's upstream for your group is full: wait, or switch group or station"
            }
            ErrorClass::RateLimited => "send less often, or ask the station for a higher limit",
            ErrorClass::UpstreamOverloaded => {
                "the model's provider is overloaded: retry later or use another model"
            }
            ErrorClass::UpstreamError => {
                "the station's upstream failed: retry; quote the request id to the station if it persists"
            }
            ErrorClass::InvalidRequest => {
                "the station rejected the request: check the model name, max_tokens and format"
            }
            ErrorClass::Network => "check the URL, DNS, proxy and that the station is up",
            ErrorClass::Timeout => "the station answered too slowly: retry, or raise the timeouts",
        }
    }

    /// How far the failure reaches.
    pub fn scope(self) -> Scope {
        match self {
            ErrorClass::InvalidKey | ErrorClass::KeyQuotaUsedUp | ErrorClass::BalanceTooLow => {
                Scope::Key
            }
            ErrorClass::NoChannel => Scope::Model,
            _ => Scope::Request,
        }
    }

    /// The class of a failure no answer's words describe, from its kind.
    pub fn of_kind(kind: ErrorKind) -> ErrorClass {
        match kind {
            ErrorKind::Auth => ErrorClass::InvalidKey,
            ErrorKind::RateLimited => ErrorClass::RateLimited,
            ErrorKind::Overloaded => ErrorClass::UpstreamOverloaded,
            ErrorKind::InvalidRequest | ErrorKind::Protocol => ErrorClass::InvalidRequest,
            ErrorKind::Network => ErrorClass::Network,
            ErrorKind::Timeout => ErrorClass::Timeout,
            _ => ErrorClass::UpstreamError,
        }
    }
}

/// Words that name a class, lowercase, looked for in the body (code, type and message).
const WORDS: &[(&str, ErrorClass)] = &[
    // The key's own quota, before the account's (new-api says both with 额度).
    ("该令牌额度已用尽", ErrorClass::KeyQuotaUsedUp),
    ("令牌额度", ErrorClass::KeyQuotaUsedUp),
    ("token quota", ErrorClass::KeyQuotaUsedUp),
    ("token_quota", ErrorClass::KeyQuotaUsedUp),
    ("pre_consume_token_quota_failed", ErrorClass::KeyQuotaUsedUp),
    ("insufficient_user_quota", ErrorClass::BalanceTooLow),
    ("用户额度不足", ErrorClass::BalanceTooLow),
    ("余额不足", ErrorClass::BalanceTooLow),
    ("user quota is not enough", ErrorClass::BalanceTooLow),
    ("insufficient_quota", ErrorClass::BalanceTooLow),
    ("insufficient balance", ErrorClass::BalanceTooLow),
    ("credit balance is too low", ErrorClass::BalanceTooLow),
    ("exceeded your current quota", ErrorClass::BalanceTooLow),
    ("budget has been exceeded", ErrorClass::BalanceTooLow),
    ("无效的令牌", ErrorClass::InvalidKey),
    ("令牌已过期", ErrorClass::InvalidKey),
    ("令牌状态不可用", ErrorClass::InvalidKey),
    ("invalid_api_key", ErrorClass::InvalidKey),
    ("invalid api key", ErrorClass::InvalidKey),
    ("incorrect api key", ErrorClass::InvalidKey),
    ("api key not valid", ErrorClass::InvalidKey),
    ("invalid token", ErrorClass::InvalidKey),
    ("token has expired", ErrorClass::InvalidKey),
    ("authentication_error", ErrorClass::InvalidKey),
    ("无可用渠道", ErrorClass::NoChannel),
    ("model_not_found", ErrorClass::NoChannel),
    ("no available channel", ErrorClass::NoChannel),
    ("get_channel_failed", ErrorClass::NoChannel),
    ("负载已饱和", ErrorClass::UpstreamSaturated),
    ("saturated", ErrorClass::UpstreamSaturated),
    ("overloaded", ErrorClass::UpstreamOverloaded),
    ("rate_limit", ErrorClass::RateLimited),
    ("rate limit", ErrorClass::RateLimited),
    ("too many requests", ErrorClass::RateLimited),
    ("resource_exhausted", ErrorClass::RateLimited),
    ("bad_response_status_code", ErrorClass::UpstreamError),
    ("empty_response", ErrorClass::UpstreamError),
    ("do_request_failed", ErrorClass::UpstreamError),
    ("upstream_error", ErrorClass::UpstreamError),
    ("channel:", ErrorClass::UpstreamError),
    ("count_token_failed", ErrorClass::InvalidRequest),
    ("invalid_request", ErrorClass::InvalidRequest),
];

/// The class of a failed answer: its words first (they say more than a status: new-api
/// answers a spent quota with 401 or 403), else its status.
pub fn classify(status: u16, body: &[u8]) -> ErrorClass {
    let text = String::from_utf8_lossy(body).to_lowercase();
    if let Some(class) = classify_words(&text) {
        return class;
    }
    match status {
        401 | 403 => ErrorClass::InvalidKey,
        402 => ErrorClass::BalanceTooLow,
        408 | 504 => ErrorClass::Timeout,
        429 => ErrorClass::RateLimited,
        529 => ErrorClass::UpstreamOverloaded,
        400..=499 => ErrorClass::InvalidRequest,
        _ => ErrorClass::UpstreamError,
    }
}

/// The class a message's words name, if any (`text` lowercase).
pub fn classify_words(text: &str) -> Option<ErrorClass> {
    WORDS
        .iter()
        .find(|(word, _)| text.contains(word))
        .map(|(_, class)| *class)
}

/// The class of a failure reported as a message (an error event mid-stream), its words
/// first, else its kind.
pub fn classify_message(kind: ErrorKind, message: &str) -> ErrorClass {
    classify_words(&message.to_lowercase()).unwrap_or_else(|| ErrorClass::of_kind(kind))
}

/// Headers that carry the relay's request id, in the order they are believed.
const REQUEST_ID_HEADERS: [&str; 4] = [
    "x-oneapi-request-id",
    "x-request-id",
    "request-id",
    "x-litellm-call-id",
];

/// The relay's request id of an answer: a header (`X-Oneapi-Request-Id`, `x-request-id`,
/// `request-id`), else one-api's `(request id: X)` in the message.
pub fn request_id(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Option<String> {
    REQUEST_ID_HEADERS
        .iter()
        .find_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?.trim();
            (!value.is_empty()).then(|| value.to_owned())
        })
        .or_else(|| request_id_in_text(&String::from_utf8_lossy(body)))
}

/// one-api's `… (request id: 2025…)` at the end of a message.
pub fn request_id_in_text(text: &str) -> Option<String> {
    let start = text.find("request id:")? + "request id:".len();
    let id: String = text[start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn body(message: &str, code: &str) -> Vec<u8> {
        serde_json::json!({"error": {"message": message, "type": "new_api_error", "code": code}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_relay_errors_of_the_spec_are_classified_by_their_words() {
        let cases: &[(u16, Vec<u8>, ErrorClass)] = &[
            (401, body("无效的令牌", ""), ErrorClass::InvalidKey),
            (401, body("Incorrect API key", "invalid_api_key"), ErrorClass::InvalidKey),
            (401, body("该令牌已过期", ""), ErrorClass::InvalidKey),
            (401, body("该令牌额度已用尽", ""), ErrorClass::KeyQuotaUsedUp),
            (403, body("该令牌额度已用尽", ""), ErrorClass::KeyQuotaUsedUp),
            (
                403,
                body("用户额度不足, 剩余额度: ＄0.000000", "insufficient_user_quota"),
                ErrorClass::BalanceTooLow,
            ),
            (403, body("user quota is not enough", ""), ErrorClass::BalanceTooLow),
            (
                503,
                body("分组 default 下模型 gpt-9 无可用渠道（distributor）", "model_not_found"),
                ErrorClass::NoChannel,
            ),
            (
                503,
                body(
                    "当前分组 default 下对于模型 gpt-9 无可用渠道 (request id: 2025120601)",
                    "",
                ),
                ErrorClass::NoChannel,
            ),
            (429, body("当前分组上游负载已饱和，请稍后再试", ""), ErrorClass::UpstreamSaturated),
            (429, body("Rate limit reached", "rate_limit_exceeded"), ErrorClass::RateLimited),
            (
                529,
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                    .to_vec(),
                ErrorClass::UpstreamOverloaded,
            ),
            (500, body("bad status", "bad_response_status_code"), ErrorClass::UpstreamError),
            (500, body("empty", "empty_response"), ErrorClass::UpstreamError),
            (503, body("x", "get_channel_failed"), ErrorClass::NoChannel),
            (400, body("bad", "count_token_failed"), ErrorClass::InvalidRequest),
            (
                400,
                br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#.to_vec(),
                ErrorClass::InvalidKey,
            ),
            (429, br#"{"error":{"status":"RESOURCE_EXHAUSTED"}}"#.to_vec(), ErrorClass::RateLimited),
            (402, b"{}".to_vec(), ErrorClass::BalanceTooLow),
            (504, b"".to_vec(), ErrorClass::Timeout),
            (422, b"".to_vec(), ErrorClass::InvalidRequest),
        ];
        for (status, body, class) in cases {
            assert_eq!(
                classify(*status, body),
                *class,
                "{status} {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn every_class_has_its_own_words_and_fix() {
        let mut labels: Vec<_> = ErrorClass::ALL.iter().map(|c| c.label()).collect();
        labels.dedup();
        assert_eq!(labels.len(), ErrorClass::ALL.len());
        for class in ErrorClass::ALL {
            assert!(!class.fix().is_empty());
            assert!(!class.slug().contains(' '));
        }
        assert_eq!(ErrorClass::BalanceTooLow.scope(), Scope::Key);
        assert_eq!(ErrorClass::NoChannel.scope(), Scope::Model);
        assert_eq!(
            classify_message(ErrorKind::Overloaded, "overloaded_error: Overloaded"),
            ErrorClass::UpstreamOverloaded
        );
        assert_eq!(
            classify_message(ErrorKind::Network, "reset"),
            ErrorClass::Network
        );
    }

    #[test]
    fn the_request_id_comes_from_a_header_or_the_message() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            request_id(
                &headers,
                "无可用渠道 (request id: 20251206abcDEF12)".as_bytes()
            ),
            Some("20251206abcDEF12".to_owned())
        );
        headers.insert("x-request-id", HeaderValue::from_static("req_1"));
        assert_eq!(request_id(&headers, b""), Some("req_1".to_owned()));
        headers.insert("x-oneapi-request-id", HeaderValue::from_static("one_2"));
        assert_eq!(request_id(&headers, b""), Some("one_2".to_owned()));
        assert_eq!(request_id(&HeaderMap::new(), b"no id"), None);
    }
}
