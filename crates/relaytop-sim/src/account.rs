//! The simulated station's account: a ledger whose balance goes down as responses complete
//! (their tokens at list price × the profile's `bill_multiplier`), served on the routes of the
//! profile's `account_kind` (OpenAI-legacy billing in cents, new-api quota units, OpenRouter,
//! LiteLLM, DeepSeek); and the relay errors of `shared/spec/RELAY-STATIONS.md` §4 in new-api's
//! words (`relay_error`, `no_channel_models`, and a spent balance).

use std::sync::{Mutex, PoisonError};

use relaytop_core::config::sim_profile::SimProfile;
use relaytop_core::session::Tokens;

use super::http::{self, RequestHead};

/// new-api quota units per dollar.
const QUOTA_PER_UNIT: f64 = 500_000.0;

/// What the station has granted and what it has charged, in US dollars.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ledger {
    pub granted_usd: f64,
    pub spent_usd: f64,
    /// Responses charged.
    pub charges: u64,
}

impl Ledger {
    pub fn balance_usd(&self) -> f64 {
        self.granted_usd - self.spent_usd
    }
}

/// The ledger the connection tasks share.
#[derive(Debug, Default)]
pub(crate) struct Account {
    ledger: Mutex<Ledger>,
}

impl Account {
    pub(crate) fn new(profile: &SimProfile) -> Self {
        Self {
            ledger: Mutex::new(Ledger {
                granted_usd: profile.account_balance_usd,
                ..Ledger::default()
            }),
        }
    }

    pub(crate) fn ledger(&self) -> Ledger {
        *self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn top_up(&self, usd: f64) {
        self.ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .granted_usd += usd;
    }

    /// Charges a completed response of `model`: its tokens at list price (relaytop's bundled
    /// table, as relaytop prices them) times the bill multiplier.
    pub(crate) fn charge(&self, profile: &SimProfile, model: &str, tokens: &Tokens) {
        if profile.account_kind.is_none() {
            return;
        }
        let list = relaytop_core::cost::default_price(model).map_or(0.0, |p| p.list_usd(tokens));
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        ledger.spent_usd += list * profile.bill_multiplier;
        ledger.charges += 1;
    }

    /// The answer to an account route of the profile's kind; `None` when `head` asks for none.
    pub(crate) fn answer(&self, head: &RequestHead, profile: &SimProfile) -> Option<String> {
        let kind = profile.account_kind.as_deref()?;
        if head.method != "GET" {
            return None;
        }
        let path = head.path.trim_end_matches('/');
        let path = path
            .strip_prefix("/v1")
            .filter(|p| p.starts_with("/dashboard"))
            .unwrap_or(path);
        let oneapi = matches!(kind, "new-api" | "openai-billing");
        let route = match (kind, path) {
            ("new-api", "/api/usage/token") => Route::NewApiToken,
            ("new-api" | "openai-billing", "/dashboard/billing/subscription") => {
                Route::Subscription
            }
            ("new-api" | "openai-billing", "/dashboard/billing/usage") => Route::Usage,
            ("openrouter", "/api/v1/key") => Route::OpenrouterKey,
            ("openrouter", "/api/v1/credits") => Route::OpenrouterCredits,
            ("litellm", "/key/info") => Route::LitellmKeyInfo,
            ("deepseek", "/user/balance") => Route::DeepseekBalance,
            _ => return None,
        };
        let id = request_id(self.ledger().charges);
        let headers: Vec<(&str, &str)> = if oneapi {
            vec![("X-Oneapi-Request-Id", id.as_str())]
        } else {
            Vec::new()
        };
        if http::check_request_key(head, profile.accepted_keys.as_deref()).is_err() {
            let body = new_api_error("无效的令牌", "new_api_error", None, &id);
            return Some(http::json_response(401, &headers, &body));
        }
        let l = self.ledger();
        let body = match route {
            Route::NewApiToken => serde_json::json!({
                "code": true,
                "message": "ok",
                "data": {
                    "object": "token_usage",
                    "name": "relaytop-sim",
                    "total_granted": (l.granted_usd * QUOTA_PER_UNIT).round() as i64,
                    "total_used": (l.spent_usd * QUOTA_PER_UNIT).round() as i64,
                    "total_available": (l.balance_usd() * QUOTA_PER_UNIT).round() as i64,
                    "unlimited_quota": false,
                    "model_limits": {},
                    "model_limits_enabled": false,
                    "expires_at": 0
                }
            }),
            Route::Subscription => serde_json::json!({
                "object": "billing_subscription",
                "has_payment_method": true,
                "soft_limit_usd": l.granted_usd,
                "hard_limit_usd": l.granted_usd,
                "system_hard_limit_usd": l.granted_usd,
                "access_until": 0
            }),
            Route::Usage => serde_json::json!({
                "object": "list",
                "total_usage": l.spent_usd * 100.0
            }),
            Route::OpenrouterKey => serde_json::json!({
                "data": {
                    "label": "sk-or-v1-sim...",
                    "usage": l.spent_usd,
                    "limit": l.granted_usd,
                    "limit_remaining": l.balance_usd(),
                    "is_free_tier": false
                }
            }),
            Route::OpenrouterCredits => serde_json::json!({
                "data": { "total_credits": l.granted_usd, "total_usage": l.spent_usd }
            }),
            Route::LitellmKeyInfo => serde_json::json!({
                "key": "sk-...sim",
                "info": {
                    "key_name": "sk-...sim",
                    "spend": l.spent_usd,
                    "max_budget": l.granted_usd,
                    "models": []
                }
            }),
            Route::DeepseekBalance => serde_json::json!({
                "is_available": l.balance_usd() > 0.0,
                "balance_infos": [{
                    "currency": "USD",
                    "total_balance": format!("{:.6}", l.balance_usd()),
                    "granted_balance": "0.00",
                    "topped_up_balance": format!("{:.6}", l.balance_usd())
                }]
            }),
        };
        Some(http::json_response(200, &headers, &body.to_string()))
    }

    /// The relay error this request gets, as a whole HTTP answer: the profile's
    /// `relay_error`, a model in `no_channel_models`, or a spent balance.
    pub(crate) fn relay_error(
        &self,
        profile: &SimProfile,
        head: &RequestHead,
        model: &str,
    ) -> Option<String> {
        let spent = profile.account_kind.is_some() && self.ledger().balance_usd() <= 0.0;
        let error = if profile.no_channel_models.iter().any(|m| m == model) {
            "no_channel"
        } else if let Some(error) = profile.relay_error.as_deref() {
            error
        } else if spent {
            "balance"
        } else {
            return None;
        };
        let id = request_id(self.ledger().charges);
        let (status, message, code, anthropic_type) = match error {
            "invalid_key" => (401, "无效的令牌".to_owned(), None, "authentication_error"),
            "expired_key" => (401, "该令牌已过期".to_owned(), None, "authentication_error"),
            "key_quota" => (403, "该令牌额度已用尽".to_owned(), None, "permission_error"),
            "balance" => (
                403,
                format!(
                    "用户额度不足, 剩余额度: ＄{:.6}",
                    self.ledger().balance_usd().max(0.0)
                ),
                Some("insufficient_user_quota"),
                "permission_error",
            ),
            "no_channel" => (
                503,
                format!("分组 default 下模型 {model} 无可用渠道（distributor）"),
                Some("model_not_found"),
                "api_error",
            ),
            "saturated" => (
                429,
                "当前分组上游负载已饱和，请稍后再试".to_owned(),
                None,
                "rate_limit_error",
            ),
            "overloaded" => (529, "Overloaded".to_owned(), None, "overloaded_error"),
            _ => (
                500,
                "upstream answered 502".to_owned(),
                Some("bad_response_status_code"),
                "api_error",
            ),
        };
        let headers = [("X-Oneapi-Request-Id", id.as_str())];
        let body = if head.path.ends_with("/messages") || error == "overloaded" {
            serde_json::json!({
                "type": "error",
                "error": { "type": anthropic_type, "message": format!("{message} (request id: {id})") }
            })
            .to_string()
        } else {
            new_api_error(&message, "new_api_error", code, &id)
        };
        Some(http::json_response(status, &headers, &body))
    }
}

impl Account {
    /// one-api and new-api send `X-Oneapi-Request-Id` on every answer: the header line (with
    /// its CRLF) for a station of those kinds, else nothing.
    pub(crate) fn request_id_header(&self, profile: &SimProfile) -> String {
        match profile.account_kind.as_deref() {
            Some("new-api" | "openai-billing") => {
                format!(
                    "X-Oneapi-Request-Id: {}\r\n",
                    request_id(self.ledger().charges)
                )
            }
            _ => String::new(),
        }
    }
}

enum Route {
    NewApiToken,
    Subscription,
    Usage,
    OpenrouterKey,
    OpenrouterCredits,
    LitellmKeyInfo,
    DeepseekBalance,
}

/// A request id in new-api's shape (a timestamp and a counter).
fn request_id(n: u64) -> String {
    format!("{}sim{n:08}", chrono::Utc::now().format("%Y%m%d%H%M%S"))
}

/// new-api's error body, with one-api's `(request id: X)` at the end of the message.
fn new_api_error(message: &str, kind: &str, code: Option<&str>, id: &str) -> String {
    serde_json::json!({
        "error": {
            "message": format!("{message} (request id: {id})"),
            "type": kind,
            "param": "",
            "code": code
        }
    })
    .to_string()
}
