//! The account endpoints' answers, read tolerantly (numbers as strings, missing fields):
//! OpenAI-legacy billing (subscription in dollars, usage in cents), new-api's
//! `/api/usage/token` (raw quota units), OpenRouter's `/api/v1/key` and `/api/v1/credits`,
//! LiteLLM's `/key/info`, DeepSeek's `/user/balance` (`shared/spec/RELAY-STATIONS.md` §3).
//! Pure: JSON in, a `Balance` out.

use serde_json::Value;

/// What the OpenAI-legacy billing routes report as "no limit" (one-api, new-api).
pub const UNLIMITED_HARD_LIMIT_USD: f64 = 100_000_000.0;

/// One reading of an account, in the station's unit (`currency`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Balance {
    /// `USD`, `CNY`, or the station's word; quota units are converted before this.
    pub currency: String,
    /// What is left; `None` when the key is unlimited or the answer did not say.
    pub remaining: Option<f64>,
    /// The limit or credits granted, when said.
    pub granted: Option<f64>,
    /// What was spent, when said.
    pub used: Option<f64>,
    /// The key has no limit (new-api `unlimited_quota`, a 100000000 hard limit).
    pub unlimited: bool,
}

/// Why an answer was not an account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("no {0} in the answer")]
    Missing(&'static str),
    #[error("the station says: {0}")]
    Refused(String),
}

/// A number, or a string holding one.
pub fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

fn json(body: &[u8]) -> Result<Value, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::NotJson(e.to_string().chars().take(80).collect()))?;
    // new-api's `{"success":false,"message":"…"}`, OpenAI's `{"error":{…}}`.
    if value.get("success").and_then(Value::as_bool) == Some(false) {
        let message = value.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(ParseError::Refused(message.to_owned()));
    }
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_owned);
        return Err(ParseError::Refused(message));
    }
    Ok(value)
}

fn field(value: &Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(number)
}

/// `/dashboard/billing/subscription`: the hard limit in dollars (`None` when unlimited).
pub fn openai_subscription(body: &[u8]) -> Result<Option<f64>, ParseError> {
    let value = json(body)?;
    let limit = field(&value, &["hard_limit_usd"])
        .or_else(|| field(&value, &["system_hard_limit_usd"]))
        .ok_or(ParseError::Missing("hard_limit_usd"))?;
    Ok((limit < UNLIMITED_HARD_LIMIT_USD).then_some(limit))
}

/// `/dashboard/billing/usage`: what was used, in dollars (`total_usage` is in cents).
pub fn openai_usage_usd(body: &[u8]) -> Result<f64, ParseError> {
    let value = json(body)?;
    let cents = field(&value, &["total_usage"]).ok_or(ParseError::Missing("total_usage"))?;
    Ok(cents / 100.0)
}

/// The two OpenAI-legacy answers together: remaining = hard limit − usage.
pub fn openai_billing(hard_limit_usd: Option<f64>, used_usd: Option<f64>) -> Balance {
    Balance {
        currency: "USD".to_owned(),
        remaining: hard_limit_usd.map(|limit| limit - used_usd.unwrap_or(0.0)),
        granted: hard_limit_usd,
        used: used_usd,
        unlimited: hard_limit_usd.is_none(),
    }
}

/// new-api `/api/usage/token`: `data.total_granted`, `total_used`, `total_available`,
/// `unlimited_quota`, in raw quota units, divided by `quota_per_unit` (500,000 = $1).
pub fn new_api_token(body: &[u8], quota_per_unit: f64) -> Result<Balance, ParseError> {
    let value = json(body)?;
    let data = value.get("data").unwrap_or(&value);
    let per = if quota_per_unit > 0.0 {
        quota_per_unit
    } else {
        super::DEFAULT_QUOTA_PER_UNIT
    };
    let units = |name: &str| field(data, &[name]).map(|q| q / per);
    let unlimited = data
        .get("unlimited_quota")
        .is_some_and(|v| v.as_bool() == Some(true) || number(v) == Some(1.0));
    let available = units("total_available");
    let granted = units("total_granted");
    let used = units("total_used");
    if available.is_none() && granted.is_none() && !unlimited {
        return Err(ParseError::Missing("data.total_available"));
    }
    Ok(Balance {
        currency: "USD".to_owned(),
        remaining: if unlimited {
            None
        } else {
            available.or_else(|| granted.map(|g| g - used.unwrap_or(0.0)))
        },
        granted,
        used,
        unlimited,
    })
}

/// OpenRouter `/api/v1/key`: `data.limit` (null: no limit) and `data.usage`, in dollars;
/// `limit_remaining` when given.
pub fn openrouter_key(body: &[u8]) -> Result<Balance, ParseError> {
    let value = json(body)?;
    let data = value.get("data").ok_or(ParseError::Missing("data"))?;
    let limit = field(data, &["limit"]);
    let used = field(data, &["usage"]);
    let remaining =
        field(data, &["limit_remaining"]).or_else(|| limit.map(|l| l - used.unwrap_or(0.0)));
    Ok(Balance {
        currency: "USD".to_owned(),
        remaining,
        granted: limit,
        used,
        unlimited: limit.is_none(),
    })
}

/// OpenRouter `/api/v1/credits`: `data.total_credits − data.total_usage`, in dollars.
pub fn openrouter_credits(body: &[u8]) -> Result<Balance, ParseError> {
    let value = json(body)?;
    let data = value.get("data").ok_or(ParseError::Missing("data"))?;
    let credits = field(data, &["total_credits"]).ok_or(ParseError::Missing("total_credits"))?;
    let used = field(data, &["total_usage"]).unwrap_or(0.0);
    Ok(Balance {
        currency: "USD".to_owned(),
        remaining: Some(credits - used),
        granted: Some(credits),
        used: Some(used),
        unlimited: false,
    })
}

/// LiteLLM `/key/info`: `info.max_budget` (null: no budget) and `info.spend`, in dollars.
pub fn litellm_key_info(body: &[u8]) -> Result<Balance, ParseError> {
    let value = json(body)?;
    let info = value.get("info").ok_or(ParseError::Missing("info"))?;
    let budget = field(info, &["max_budget"]);
    let spend = field(info, &["spend"]);
    if budget.is_none() && spend.is_none() {
        return Err(ParseError::Missing("info.spend"));
    }
    Ok(Balance {
        currency: "USD".to_owned(),
        remaining: budget.map(|b| b - spend.unwrap_or(0.0)),
        granted: budget,
        used: spend,
        unlimited: budget.is_none(),
    })
}

/// DeepSeek `/user/balance`: `balance_infos[{currency, total_balance}]`, the USD entry
/// first, else the first; `is_available: false` with nothing left reads 0.
pub fn deepseek_balance(body: &[u8]) -> Result<Balance, ParseError> {
    let value = json(body)?;
    let infos = value
        .get("balance_infos")
        .and_then(Value::as_array)
        .ok_or(ParseError::Missing("balance_infos"))?;
    let currency_of = |info: &Value| {
        info.get("currency")
            .and_then(Value::as_str)
            .unwrap_or("CNY")
            .to_uppercase()
    };
    let info = infos
        .iter()
        .find(|i| currency_of(i) == "USD")
        .or_else(|| infos.first())
        .ok_or(ParseError::Missing("balance_infos[0]"))?;
    let total = field(info, &["total_balance"]).ok_or(ParseError::Missing("total_balance"))?;
    Ok(Balance {
        currency: currency_of(info),
        remaining: Some(total),
        granted: None,
        used: None,
        unlimited: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_legacy_billing_is_dollars_minus_cents() {
        let sub = br#"{"object":"billing_subscription","has_payment_method":true,"soft_limit_usd":"20","hard_limit_usd":25.5,"system_hard_limit_usd":25.5,"access_until":0}"#;
        let usage = br#"{"object":"list","total_usage":"1050"}"#;
        let limit = openai_subscription(sub).unwrap();
        let used = openai_usage_usd(usage).unwrap();
        let balance = openai_billing(limit, Some(used));
        assert_eq!(balance.remaining, Some(15.0));
        assert_eq!(balance.used, Some(10.5));
        assert!(!balance.unlimited);
        let unlimited = openai_subscription(br#"{"hard_limit_usd":100000000}"#).unwrap();
        assert_eq!(unlimited, None);
        assert!(openai_billing(unlimited, Some(1.0)).unlimited);
        assert_eq!(
            openai_subscription(
                r#"{"error":{"message":"无效的令牌","type":"new_api_error"}}"#.as_bytes()
            ),
            Err(ParseError::Refused("无效的令牌".into()))
        );
        assert!(matches!(
            openai_usage_usd(b"{}"),
            Err(ParseError::Missing(_))
        ));
        assert!(matches!(
            openai_usage_usd(b"<html>"),
            Err(ParseError::NotJson(_))
        ));
    }

    #[test]
    fn new_api_token_usage_is_quota_units() {
        let body = br#"{"code":true,"message":"ok","data":{"object":"token_usage","name":"k","total_granted":5000000,"total_used":"1000000","total_available":4000000,"unlimited_quota":false,"model_limits":{},"model_limits_enabled":false,"expires_at":0}}"#;
        let b = new_api_token(body, 500_000.0).unwrap();
        assert_eq!(b.remaining, Some(8.0));
        assert_eq!(b.granted, Some(10.0));
        assert_eq!(b.used, Some(2.0));
        let b = new_api_token(body, 1_000_000.0).unwrap();
        assert_eq!(b.remaining, Some(4.0));
        let unlimited = br#"{"data":{"total_granted":0,"total_used":250000,"total_available":-250000,"unlimited_quota":true}}"#;
        let b = new_api_token(unlimited, 500_000.0).unwrap();
        assert!(b.unlimited);
        assert_eq!(b.remaining, None);
        assert_eq!(b.used, Some(0.5));
        assert!(
            new_api_token(
                r#"{"success":false,"message":"无效的令牌"}"#.as_bytes(),
                500_000.0
            )
            .is_err()
        );
        assert!(new_api_token(br#"{"data":{}}"#, 500_000.0).is_err());
    }

    #[test]
    fn openrouter_key_and_credits() {
        let key = br#"{"data":{"label":"sk-or-v1-abc...","usage":1.25,"limit":10,"is_free_tier":false,"limit_remaining":8.75}}"#;
        let b = openrouter_key(key).unwrap();
        assert_eq!(b.remaining, Some(8.75));
        assert_eq!(b.used, Some(1.25));
        let b = openrouter_key(br#"{"data":{"usage":"3.5","limit":null}}"#).unwrap();
        assert!(b.unlimited);
        assert_eq!(b.remaining, None);
        let credits = br#"{"data":{"total_credits":"50","total_usage":12.5}}"#;
        assert_eq!(openrouter_credits(credits).unwrap().remaining, Some(37.5));
        assert!(openrouter_credits(br#"{"data":{}}"#).is_err());
    }

    #[test]
    fn litellm_key_info_is_budget_minus_spend() {
        let body = br#"{"key":"sk-...","info":{"key_name":"sk-...abcd","spend":0.42,"max_budget":"5.0","models":[]}}"#;
        let b = litellm_key_info(body).unwrap();
        assert!((b.remaining.unwrap() - 4.58).abs() < 1e-9);
        let b = litellm_key_info(br#"{"info":{"spend":1.0,"max_budget":null}}"#).unwrap();
        assert!(b.unlimited);
        assert!(litellm_key_info(br#"{"info":{}}"#).is_err());
    }

    #[test]
    fn deepseek_balance_takes_usd_first() {
        let body = br#"{"is_available":true,"balance_infos":[{"currency":"CNY","total_balance":"110.00","granted_balance":"10.00","topped_up_balance":"100.00"},{"currency":"USD","total_balance":"15.20","granted_balance":"0","topped_up_balance":"15.20"}]}"#;
        let b = deepseek_balance(body).unwrap();
        assert_eq!(b.currency, "USD");
        assert_eq!(b.remaining, Some(15.2));
        let cny = br#"{"is_available":false,"balance_infos":[{"currency":"CNY","total_balance":"0.00"}]}"#;
        let b = deepseek_balance(cny).unwrap();
        assert_eq!((b.currency.as_str(), b.remaining), ("CNY", Some(0.0)));
        assert!(deepseek_balance(br#"{"balance_infos":[]}"#).is_err());
    }
}
