//! Delivery: each receiver's message shape and signature (pure, `request`), the retry
//! schedule (pure, `retry_delay`), and the background task that posts behind a bounded queue
//! so that an alert never waits on a network (`Deliverer`). Failed deliveries are counted and
//! the last failure kept, for the dashboard and the report. URLs, tokens and signing secrets
//! are `Secret`s: never logged, and redacted from anything shown.
//!
//! Shapes, each from the service's published documentation:
//! - webhook: relaytop's own JSON (`WebhookBody`), for anything that takes JSON.
//! - Slack incoming webhooks (docs.slack.dev, "Sending messages using incoming webhooks"):
//!   `{"text": …}`; `text` is the notification and the message when there are no blocks.
//! - Discord "Execute Webhook" (discord.com/developers/docs/resources/webhook): `content` (up to
//!   2,000 characters) or `embeds`; we send `content`.
//! - Telegram Bot API `sendMessage` (core.telegram.org/bots/api#sendmessage):
//!   `POST https://api.telegram.org/bot<token>/sendMessage` with `chat_id` and `text` (up to
//!   4,096 characters).
//! - Feishu/Lark custom bot (open.feishu.cn, "Custom bot usage guide"):
//!   `{"msg_type":"text","content":{"text":…}}`; signed webhooks add `timestamp` (seconds) and
//!   `sign` = base64(HMAC-SHA256 keyed with `timestamp + "\n" + secret`, over an empty message).
//! - DingTalk custom robot (open.dingtalk.com, "Custom robot security settings" and "Message
//!   types"): `{"msgtype":"text","text":{"content":…}}`; signed webhooks append
//!   `&timestamp=<ms>&sign=<urlencode(base64(HMAC-SHA256 keyed with secret, over
//!   timestamp + "\n" + secret))>` to the URL.
//! - WeCom group robot (developer.work.weixin.qq.com/document/path/91770):
//!   `{"msgtype":"text","text":{"content":…}}` (content up to 2,048 bytes).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::engine::Notice;
use super::rule::{Receiver, ReceiverKind};

/// Messages waiting before new ones are dropped (and counted as failed).
pub const QUEUE: usize = 64;
/// Failures kept to show.
const FAILURES_KEPT: usize = 10;

/// relaytop's generic webhook body.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookBody<'a> {
    /// `firing`, `still firing`, `resolved` or `test`.
    pub status: &'a str,
    pub alert: &'a str,
    pub severity: &'a str,
    pub scope: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub text: &'a str,
    /// Seconds since the run started.
    pub at_s: f64,
    pub relaytop: &'static str,
}

/// A request ready to send: where and the JSON body. The URL holds tokens: its `Debug` prints
/// a redaction (the secrets it is made of are already scrubbed from the logs; the URL itself
/// is not registered, since DingTalk's changes with every timestamp).
#[derive(Clone)]
pub struct Outgoing {
    url: String,
    pub body: serde_json::Value,
}

impl Outgoing {
    /// The URL, for the wire. Do not format it anywhere else.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("url", &crate::config::secret::REDACTED)
            .field("body", &self.body)
            .finish()
    }
}

/// The HMAC-SHA256 of `message` keyed with `key`, in base64.
fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, message);
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// Feishu's signature for `timestamp` (seconds).
pub fn feishu_sign(timestamp_s: u64, secret: &str) -> String {
    hmac_base64(format!("{timestamp_s}\n{secret}").as_bytes(), b"")
}

/// DingTalk's signature for `timestamp` (milliseconds), URL-encoded.
pub fn dingtalk_sign(timestamp_ms: u64, secret: &str) -> String {
    let sign = hmac_base64(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    );
    url::form_urlencoded::byte_serialize(sign.as_bytes()).collect()
}

/// Cuts `text` to at most `max` bytes on a character boundary, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The request `receiver` takes for `notice`; `now_ms` is the wall clock (Unix milliseconds),
/// for the signed kinds.
pub fn request(receiver: &Receiver, notice: &Notice, status: &str, now_ms: u64) -> Outgoing {
    use serde_json::json;
    let text = notice.text.as_str();
    let url = || {
        receiver
            .url
            .as_ref()
            .map(|u| u.expose().to_owned())
            .unwrap_or_default()
    };
    match receiver.kind {
        ReceiverKind::Webhook => Outgoing {
            url: url(),
            body: serde_json::to_value(WebhookBody {
                status,
                alert: &notice.alert,
                severity: notice.severity.label(),
                scope: notice.scope.to_string(),
                value: notice.value,
                threshold: notice.threshold,
                text,
                at_s: notice.at_us as f64 / 1e6,
                relaytop: env!("CARGO_PKG_VERSION"),
            })
            .unwrap_or_default(),
        },
        ReceiverKind::Slack => Outgoing {
            url: url(),
            body: json!({ "text": text }),
        },
        ReceiverKind::Discord => Outgoing {
            url: url(),
            body: json!({ "content": cut(text, 2000) }),
        },
        ReceiverKind::Telegram => {
            let token = receiver.token.as_ref().map(|t| t.expose()).unwrap_or("");
            Outgoing {
                url: format!("{}/bot{token}/sendMessage", receiver.api_base),
                body: json!({
                    "chat_id": receiver.chat_id.clone().unwrap_or_default(),
                    "text": cut(text, 4096),
                }),
            }
        }
        ReceiverKind::Feishu => {
            let mut body = json!({ "msg_type": "text", "content": { "text": text } });
            if let Some(secret) = &receiver.secret {
                let ts = now_ms / 1000;
                body["timestamp"] = json!(ts.to_string());
                body["sign"] = json!(feishu_sign(ts, secret.expose()));
            }
            Outgoing { url: url(), body }
        }
        ReceiverKind::DingTalk => {
            let url = match &receiver.secret {
                Some(secret) => {
                    let base = url();
                    let sep = if base.contains('?') { '&' } else { '?' };
                    format!(
                        "{base}{sep}timestamp={now_ms}&sign={}",
                        dingtalk_sign(now_ms, secret.expose())
                    )
                }
                None => url(),
            };
            Outgoing {
                url,
                body: json!({ "msgtype": "text", "text": { "content": text } }),
            }
        }
        ReceiverKind::WeCom => Outgoing {
            url: url(),
            body: json!({ "msgtype": "text", "text": { "content": cut(text, 2048) } }),
        },
    }
}

/// The wait before retry `attempt` (1 = the first retry): 1 s, 2 s, 4 s … capped at 30 s.
pub fn retry_delay(attempt: u32) -> Duration {
    let base = Duration::from_secs(1);
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(5))
        .min(Duration::from_secs(30))
}

/// Whether an answer is worth trying again: 429 and 5xx.
pub fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

/// What a receiver answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status; `None` when no answer came (the error says why).
    pub status: Option<u16>,
    /// The body, or the error, with the receiver's secrets redacted.
    pub body: String,
}

impl Answer {
    /// Whether the receiver took the message. Services that answer 200 with an error code in
    /// the body (Feishu's `code`, DingTalk's and WeCom's `errcode`, Telegram's `ok`) are read.
    pub fn accepted(&self) -> bool {
        let Some(status) = self.status else {
            return false;
        };
        if !(200..300).contains(&status) {
            return false;
        }
        match serde_json::from_str::<serde_json::Value>(&self.body) {
            Ok(v) => {
                let zero = |k: &str| v.get(k).and_then(|c| c.as_i64()).is_none_or(|c| c == 0);
                zero("code")
                    && zero("errcode")
                    && v.get("ok").and_then(|o| o.as_bool()) != Some(false)
            }
            Err(_) => true,
        }
    }
}

/// The wall clock, Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Posts `notice` to `receiver` once and returns the answer (secrets redacted).
pub async fn send_once(
    client: &reqwest::Client,
    receiver: &Receiver,
    notice: &Notice,
    status: &str,
) -> Answer {
    let out = request(receiver, notice, status, now_ms());
    let sent = client
        .post(out.url())
        .timeout(receiver.timeout)
        .json(&out.body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            Answer {
                status: Some(status),
                body: receiver.redact(&cut(&body, 4096)),
            }
        }
        Err(e) => Answer {
            status: None,
            body: receiver.redact(&e.without_url().to_string()),
        },
    }
}

/// An HTTP client for receivers.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("relaytop/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// A delivery that failed, as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub receiver: String,
    pub alert: String,
    /// The last answer's status, if one came.
    pub status: Option<u16>,
    /// What went wrong, secrets redacted.
    pub reason: String,
}

/// What the deliverer has done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    pub sent: u64,
    pub failed: u64,
    pub pending: u64,
    /// The last failures, oldest first.
    pub failures: Vec<Failure>,
}

struct Job {
    receiver: usize,
    notice: Notice,
    status: &'static str,
}

/// The background deliverer: one task, one bounded queue.
pub struct Deliverer {
    receivers: Arc<Vec<Receiver>>,
    queue: mpsc::Sender<Job>,
    counts: Arc<Mutex<DeliveryCounts>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("receivers", &self.receivers.len())
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn record_failure(counts: &Mutex<DeliveryCounts>, failure: Failure) {
    let mut c = lock(counts);
    c.failed += 1;
    if c.failures.len() == FAILURES_KEPT {
        c.failures.remove(0);
    }
    c.failures.push(failure);
}

impl Deliverer {
    /// Starts the task (call within a tokio runtime).
    pub fn spawn(receivers: Vec<Receiver>) -> Deliverer {
        let receivers = Arc::new(receivers);
        let (queue, rx) = mpsc::channel(QUEUE);
        let counts = Arc::new(Mutex::new(DeliveryCounts::default()));
        let task = tokio::spawn(run(receivers.clone(), rx, counts.clone()));
        Deliverer {
            receivers,
            queue,
            counts,
            task,
        }
    }

    /// Queues `notice` for every receiver it names (all when it names none); never waits.
    pub fn deliver(&self, notice: &Notice) {
        let status = notice.transition.label();
        for (index, receiver) in self.receivers.iter().enumerate() {
            if !notice.receivers.is_empty() && !notice.receivers.contains(&receiver.name) {
                continue;
            }
            lock(&self.counts).pending += 1;
            let job = Job {
                receiver: index,
                notice: notice.clone(),
                status,
            };
            if self.queue.try_send(job).is_err() {
                lock(&self.counts).pending -= 1;
                tracing::warn!(receiver = %receiver.name, "alert dropped: the delivery queue is full");
                record_failure(
                    &self.counts,
                    Failure {
                        receiver: receiver.name.clone(),
                        alert: notice.alert.clone(),
                        status: None,
                        reason: "the delivery queue was full".into(),
                    },
                );
            }
        }
    }

    pub fn counts(&self) -> DeliveryCounts {
        lock(&self.counts).clone()
    }

    /// Waits up to `limit` for what is queued to be delivered (or given up on).
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while lock(&self.counts).pending > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    receivers: Arc<Vec<Receiver>>,
    mut rx: mpsc::Receiver<Job>,
    counts: Arc<Mutex<DeliveryCounts>>,
) {
    let client = client();
    while let Some(job) = rx.recv().await {
        let receiver = &receivers[job.receiver];
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            let answer = send_once(&client, receiver, &job.notice, job.status).await;
            let again = match answer.status {
                None => true,
                Some(s) => retryable(s),
            };
            if answer.accepted() || !again || attempt >= receiver.attempts {
                break answer;
            }
            tokio::time::sleep(retry_delay(attempt)).await;
        };
        if answer.accepted() {
            tracing::info!(receiver = %receiver.name, alert = %job.notice.alert, attempt, "alert delivered");
            lock(&counts).sent += 1;
        } else {
            tracing::warn!(receiver = %receiver.name, alert = %job.notice.alert, status = ?answer.status, "alert not delivered");
            record_failure(
                &counts,
                Failure {
                    receiver: receiver.name.clone(),
                    alert: job.notice.alert.clone(),
                    status: answer.status,
                    reason: cut(&answer.body, 200),
                },
            );
        }
        lock(&counts).pending -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_to_a_cap() {
        let s: Vec<u64> = (1..=8).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(s, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert!(retryable(503) && retryable(429) && !retryable(404) && !retryable(400));
    }

    #[test]
    fn signatures_match_the_documented_recipes() {
        // The values Python's hmac/hashlib/base64/urllib give for the recipes in the DingTalk
        // and Feishu docs (computed outside relaytop).
        assert_eq!(
            dingtalk_sign(1_577_263_886_000, "this is secret"),
            "m%2F3kUwNaT3MSURA7cP3VJXfc0wKfrEQvc1miJeP6%2F8U%3D"
        );
        assert_eq!(
            feishu_sign(1_599_360_473, "abc"),
            "cgtpJzI2j6bUDggbdGYjskCK3FPgKpTkwosfWsMzKqM="
        );
    }

    #[test]
    fn answers_with_error_codes_in_the_body_are_refusals() {
        let a = |status, body: &str| Answer {
            status: Some(status),
            body: body.into(),
        };
        assert!(a(200, "ok").accepted());
        assert!(a(200, r#"{"errcode":0,"errmsg":"ok"}"#).accepted());
        assert!(!a(200, r#"{"errcode":310000,"errmsg":"sign not match"}"#).accepted());
        assert!(!a(200, r#"{"code":19021,"msg":"sign match fail"}"#).accepted());
        assert!(!a(200, r#"{"ok":false}"#).accepted());
        assert!(!a(500, "").accepted());
    }
}
