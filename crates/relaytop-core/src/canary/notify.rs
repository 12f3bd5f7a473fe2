//! Webhook notifications: a Slack-compatible JSON message POSTed on rollback and promotion.
//!
//! The notifier is its own task behind a bounded queue: `notify` never waits (a full queue
//! drops the message and counts it), each POST has a timeout, and failures that retrying can
//! fix (connection errors, timeouts, 429, 5xx) are retried with a doubling delay. The URL is a
//! secret of sorts (a Slack webhook URL is a credential): it is never logged or printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Messages waiting to be posted before new ones are dropped.
pub const QUEUE: usize = 16;

/// How hard a notifier tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyOptions {
    /// Limit on one POST, connection included.
    pub timeout: Duration,
    /// Tries per message (the first and the retries).
    pub attempts: u32,
    /// Wait before the first retry; each further one doubles.
    pub retry_delay: Duration,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// What a notifier has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NotifyCounts {
    /// Messages the webhook accepted (2xx).
    pub sent: u64,
    /// Messages given up on (after the retries, or refused for good, or dropped from a full queue).
    pub failed: u64,
    /// Messages queued or being posted.
    pub pending: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    pending: AtomicU64,
}

/// The body Slack's incoming webhooks (and Mattermost's, and many others) accept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlackMessage {
    pub text: String,
}

/// A running notifier.
pub struct Notifier {
    queue: mpsc::Sender<SlackMessage>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts posting to `url` (call within a tokio runtime).
    pub fn spawn(url: String, options: NotifyOptions) -> Notifier {
        let (queue, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(url, options, rx, counters.clone()));
        Notifier {
            queue,
            counters,
            task,
        }
    }

    /// Queues `text` for posting; never waits. False when the queue was full (counted as failed).
    pub fn notify(&self, text: impl Into<String>) -> bool {
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(SlackMessage { text: text.into() }) {
            Ok(()) => true,
            Err(_) => {
                self.counters.pending.fetch_sub(1, Ordering::Relaxed);
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("notification dropped: the webhook queue is full");
                false
            }
        }
    }

    pub fn counts(&self) -> NotifyCounts {
        NotifyCounts {
            sent: self.counters.sent.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            pending: self.counters.pending.load(Ordering::Relaxed),
        }
    }

    /// Waits up to `limit` for the messages queued so far to be posted (or given up on).
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.counters.pending.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the task (messages still queued are dropped).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    url: String,
    options: NotifyOptions,
    mut rx: mpsc::Receiver<SlackMessage>,
    counters: Arc<Counters>,
) {
    let client = match reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        .user_agent(concat!("relaytop/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the webhook client: notifications are off");
            while rx.recv().await.is_some() {
                counters.pending.fetch_sub(1, Ordering::Relaxed);
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    };
    while let Some(message) = rx.recv().await {
        let ok = post_with_retries(&client, &url, &message, options).await;
        if ok {
            counters.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        counters.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Posts one message, retrying what can be retried. True when the webhook accepted it.
async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    message: &SlackMessage,
    options: NotifyOptions,
) -> bool {
    let mut delay = options.retry_delay;
    for attempt in 1..=options.attempts.max(1) {
        let result = client.post(url).json(message).send().await;
        let retry = match result {
            Ok(response) if response.status().is_success() => {
                tracing::info!(attempt, "notification posted");
                return true;
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let retryable = status == 429 || status >= 500;
                // The URL is a credential: only the status is logged.
                tracing::warn!(
                    attempt,
                    status,
                    retryable,
                    "the webhook refused the notification"
                );
                retryable
            }
            Err(e) => {
                tracing::warn!(
                    attempt,
                    timeout = e.is_timeout(),
                    connect = e.is_connect(),
                    "cannot post the notification"
                );
                true
            }
        };
        if !retry || attempt == options.attempts {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A webhook on 127.0.0.1 that answers each request with the next status of `statuses`
    /// (then 200) and reports each body it received.
    async fn webhook(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks/test", listener.local_addr().expect("addr"));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break Some(text[end + 4..end + 4 + length].to_owned());
                        }
                    }
                };
                let status = statuses.next().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                if let Some(body) = body {
                    let _ = tx.send(body);
                }
            }
        });
        (url, rx)
    }

    fn quick() -> NotifyOptions {
        NotifyOptions {
            timeout: Duration::from_secs(2),
            attempts: 3,
            retry_delay: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn posts_slack_json_and_retries_a_server_error() {
        let (url, mut bodies) = webhook(vec![503]).await;
        let notifier = Notifier::spawn(url, quick());
        assert!(notifier.notify("holysheep rolled back"));
        notifier.flush(Duration::from_secs(5)).await;
        let first = bodies.recv().await.expect("the first try");
        let second = bodies.recv().await.expect("the retry");
        assert_eq!(first, second);
        let json: serde_json::Value = serde_json::from_str(&second).expect("JSON");
        assert_eq!(json["text"], "holysheep rolled back");
        assert_eq!(
            notifier.counts(),
            NotifyCounts {
                sent: 1,
                failed: 0,
                pending: 0
            }
        );
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried_and_nothing_blocks() {
        let (url, mut bodies) = webhook(vec![404, 404, 404]).await;
        let notifier = Notifier::spawn(url, quick());
        notifier.notify("promoted");
        notifier.flush(Duration::from_secs(5)).await;
        assert!(bodies.recv().await.is_some());
        assert!(bodies.try_recv().is_err(), "a 404 is not retried");
        assert_eq!(notifier.counts().failed, 1);
    }

    #[tokio::test]
    async fn an_unreachable_webhook_gives_up_after_the_retries() {
        // A port nothing listens on (bound, then closed).
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        drop(listener);
        let notifier = Notifier::spawn(url, quick());
        let started = std::time::Instant::now();
        notifier.notify("x");
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "notify never waits"
        );
        notifier.flush(Duration::from_secs(5)).await;
        assert_eq!(notifier.counts().failed, 1);
        assert_eq!(notifier.counts().sent, 0);
    }
}
