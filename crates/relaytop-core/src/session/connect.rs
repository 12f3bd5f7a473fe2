//! Opening a relay WebSocket: DNS, TCP, TLS (rustls) and the upgrade, each failure named.
//!
//! Every way a connection can fail to open becomes a `ConnectError` that says which step
//! failed, whether retrying can help, and how long the server asked us to wait. The session
//! task decides what to do with it; `relaytop check` will reuse the same steps.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::secret::Secret;
use crate::session::ErrorKind;

/// An open relay connection.
pub type RelaySocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer per connection: 8 KiB, not tungstenite's 128 KiB (measured: 135 KiB vs
/// 19 KiB resident per busy connection at 16 KiB, and less CPU at 1,000 streams). 8 KiB keeps
/// an idle session at about 21 KiB resident (`relaytop bench scale`) with no loss of ingest
/// speed (`relaytop bench ingest`); a larger message grows the buffer as it comes.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Largest message accepted from a relay; larger ones are refused, not buffered.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The longest wait a relay's `Retry-After` (or `retry_after_ms`) is honoured for: an hour.
/// A longer ask (or an absurd number) waits this long, never overflows a clock.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Frames written together are held up to this size until the writer flushes: a request's
/// frames, or a heartbeat's two pings, leave in one write (with 0 every frame was a write of
/// its own: 10,000 idle sessions made twice the sends, `relaytop bench scale`). Every send
/// flushes, so nothing waits in it.
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// The WebSocket settings every relay connection uses.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// Resolves a host name and port to addresses. The default is the system resolver; tests
/// (and `relaytop check`'s tests) inject their own so that no lookup leaves the machine.
pub type Resolver = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system resolver (`tokio::net::lookup_host`).
pub fn system_resolver() -> Resolver {
    Arc::new(|host, port| {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(addrs.collect())
        })
    })
}

/// A resolver as a session spec carries it (printable, so the spec stays `Debug`).
#[derive(Clone)]
pub struct ResolverHandle(pub Resolver);

impl std::fmt::Debug for ResolverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResolverHandle")
    }
}

/// The same resolver for reqwest (openai-sse, `check`'s HTTP steps): the URL's port wins over
/// the 0 asked for here, as reqwest documents.
impl reqwest::dns::Resolve for ResolverHandle {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = (self.0)(name.as_str().to_owned(), 0);
        Box::pin(async move {
            let addrs = lookup.await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot resolve {host}: {reason}")]
    Dns { host: String, reason: String },
    #[error("cannot connect to {addr}: {reason}")]
    Tcp { addr: String, reason: String },
    #[error("no answer to the upgrade within {0:?}")]
    Timeout(Duration),
    #[error("upgrade answered {status}: {message}")]
    Upgrade {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("handshake failed: {0}")]
    Handshake(String),
}

impl ConnectError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnectError::Url { .. } => ErrorKind::InvalidRequest,
            ConnectError::Dns { .. } | ConnectError::Tcp { .. } | ConnectError::Handshake(_) => {
                ErrorKind::Network
            }
            ConnectError::Timeout(_) => ErrorKind::Timeout,
            ConnectError::Upgrade { status, .. } => status_kind(*status),
        }
    }

    /// Whether trying again later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            ConnectError::Url { .. } => false,
            ConnectError::Upgrade { status, .. } => status_retryable(*status),
            _ => true,
        }
    }

    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectError::Upgrade { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The kind of failure an HTTP status means.
pub fn status_kind(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Auth,
        429 => ErrorKind::RateLimited,
        503 => ErrorKind::Overloaded,
        408 => ErrorKind::Timeout,
        500..=599 => ErrorKind::Upstream,
        _ => ErrorKind::InvalidRequest,
    }
}

/// Whether a request answered with `status` is worth retrying.
pub fn status_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429 | 500..=599)
}

/// Parses `Retry-After`: whole seconds, or an HTTP date (measured from `now`); at most
/// `MAX_RETRY_AFTER`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64()))
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A relay's wait in milliseconds, at most `MAX_RETRY_AFTER`.
pub fn retry_after_millis(ms: u64) -> Duration {
    Duration::from_millis(ms).min(MAX_RETRY_AFTER)
}

/// Retry-After from response headers (`retry-after-ms` wins, as OpenAI's clients do).
pub fn retry_after_from_headers(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(
            (ms / 1000.0).min(MAX_RETRY_AFTER.as_secs_f64()),
        ));
    }
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
}

/// The message in an error body `{"error":{"message":"..."}}`, or the body itself, short.
pub fn error_body_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: Option<String>,
        code: Option<serde_json::Value>,
    }
    if let Ok(Body { error }) = serde_json::from_slice::<Body>(body) {
        let code = error.code.map(|c| match c {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        return match (error.message, code) {
            (Some(m), Some(c)) => format!("{m} ({c})"),
            (Some(m), None) => m,
            (None, Some(c)) => c,
            (None, None) => "(no message)".into(),
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text.chars().take(200).collect()
    }
}

/// What to open: the URL, the key and the relay/v1 headers.
pub struct ConnectRequest<'a> {
    pub url: &'a str,
    pub api_key: Option<&'a Secret>,
    /// `X-Model`: the connection's default model.
    pub model: &'a str,
    pub timeout: Duration,
    /// How to resolve the host; `None`: the system resolver.
    pub resolver: Option<&'a Resolver>,
}

/// Which WebSocket protocol an upgrade is for (they differ in headers and in the advice a
/// wrong scheme gets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// relay/v1: `X-Model` and `X-Stream` on the upgrade.
    RelayV1,
    /// The OpenAI Realtime API: `Authorization` only, and no `OpenAI-Beta` (GA shape).
    Realtime,
}

/// Opens a relay/v1 WebSocket: DNS, TCP, TLS and the upgrade within `timeout` together.
pub async fn connect(req: &ConnectRequest<'_>) -> Result<(RelaySocket, Response), ConnectError> {
    connect_as(req, Flavor::RelayV1).await
}

/// Opens a WebSocket of either flavor: DNS, TCP, TLS and the upgrade within `timeout` together.
pub async fn connect_as(
    req: &ConnectRequest<'_>,
    flavor: Flavor,
) -> Result<(RelaySocket, Response), ConnectError> {
    match tokio::time::timeout(req.timeout, connect_inner(req, flavor)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(req.timeout)),
    }
}

async fn connect_inner(
    req: &ConnectRequest<'_>,
    flavor: Flavor,
) -> Result<(RelaySocket, Response), ConnectError> {
    let url_error = |reason: &str| ConnectError::Url {
        url: req.url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = url::Url::parse(req.url).map_err(|e| url_error(&e.to_string()))?;
    let default_port = match parsed.scheme() {
        "ws" => 80,
        "wss" => 443,
        "http" | "https" => {
            return Err(url_error(match flavor {
                Flavor::RelayV1 => {
                    "relay/v1 is a WebSocket protocol: use ws:// or wss://, not http(s)://"
                }
                Flavor::Realtime => {
                    "the Realtime API is a WebSocket protocol: use ws:// or wss://, not http(s)://"
                }
            }));
        }
        _ => return Err(url_error("the scheme must be ws:// or wss://")),
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| url_error("no host"))?
        .to_owned();
    let port = parsed.port().unwrap_or(default_port);

    let mut request = req
        .url
        .into_client_request()
        .map_err(|e| url_error(&e.to_string()))?;
    let headers = request.headers_mut();
    if let Some(key) = req.api_key {
        let value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| url_error("the API key has characters a header cannot carry"))?;
        headers.insert(header::AUTHORIZATION, value);
    }
    if flavor == Flavor::RelayV1 {
        if let Ok(model) = HeaderValue::from_str(req.model) {
            headers.insert("X-Model", model);
        }
        headers.insert("X-Stream", HeaderValue::from_static("true"));
    }

    let host_for_lookup = host.trim_start_matches('[').trim_end_matches(']');
    let lookup = match req.resolver {
        Some(resolver) => resolver(host_for_lookup.to_owned(), port),
        None => system_resolver()(host_for_lookup.to_owned(), port),
    };
    let addrs: Vec<_> = lookup.await.map_err(|e| ConnectError::Dns {
        host: host.clone(),
        reason: e.to_string(),
    })?;
    if addrs.is_empty() {
        return Err(ConnectError::Dns {
            host: host.clone(),
            reason: "no addresses".to_owned(),
        });
    }
    let mut last_error = None;
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some((addr.to_string(), e.to_string())),
        }
    }
    let stream = match stream {
        Some(s) => s,
        None => {
            let (addr, reason) =
                last_error.unwrap_or_else(|| (host.clone(), "no address".to_owned()));
            return Err(ConnectError::Tcp { addr, reason });
        }
    };
    // Small frames (pings, chunk-sized requests) must not wait for Nagle.
    let _ = stream.set_nodelay(true);

    tokio_tungstenite::client_async_tls_with_config(request, stream, Some(websocket_config()), None)
        .await
        .map_err(|e| handshake_error(e, SystemTime::now()))
}

fn handshake_error(e: tokio_tungstenite::tungstenite::Error, now: SystemTime) -> ConnectError {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(response) => {
            let status = response.status().as_u16();
            let retry_after = retry_after_from_headers(response.headers(), now);
            let message = response
                .body()
                .as_deref()
                .map(error_body_message)
                .unwrap_or_else(|| {
                    response
                        .status()
                        .canonical_reason()
                        .unwrap_or("no reason")
                        .to_owned()
                });
            // A success or a redirect instead of 101: an HTTP server, not a WebSocket one.
            let message = if (200..400).contains(&status) || status == 404 {
                format!("{message} (not a WebSocket endpoint: check the URL's path)")
            } else {
                message
            };
            ConnectError::Upgrade {
                status,
                message,
                retry_after,
            }
        }
        other => ConnectError::Handshake(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 2 ", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(12))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        for absurd in ["18446744073709551615", "1e300"] {
            assert_eq!(parse_retry_after(absurd, now), Some(MAX_RETRY_AFTER));
        }
        let next_year = httpdate::fmt_http_date(now + Duration::from_secs(365 * 86_400));
        assert_eq!(parse_retry_after(&next_year, now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_ms_header_wins() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        let now = SystemTime::now();
        assert_eq!(
            retry_after_from_headers(&headers, now),
            Some(Duration::from_secs(3))
        );
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(
            retry_after_from_headers(&headers, now),
            Some(Duration::from_millis(1500))
        );
        // A huge value is capped, not a panic in `Duration::from_secs_f64`.
        headers.insert("retry-after-ms", HeaderValue::from_static("1e300"));
        assert_eq!(
            retry_after_from_headers(&headers, now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(status_kind(401), ErrorKind::Auth);
        assert!(!status_retryable(401));
        assert!(!status_retryable(403));
        assert_eq!(status_kind(429), ErrorKind::RateLimited);
        assert!(status_retryable(429));
        assert_eq!(status_kind(503), ErrorKind::Overloaded);
        assert!(status_retryable(503));
        assert!(!status_retryable(404));
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            error_body_message(br#"{"error":{"message":"invalid key"}}"#),
            "invalid key"
        );
        assert_eq!(
            error_body_message(br#"{"error":{"message":"nope","code":"invalid_api_key"}}"#),
            "nope (invalid_api_key)"
        );
        assert_eq!(error_body_message(b"  plain text "), "plain text");
        assert_eq!(error_body_message(b""), "(empty body)");
    }

    #[tokio::test]
    async fn wrong_schemes_are_named() {
        let req = ConnectRequest {
            url: "https://relay.example/v1/stream",
            api_key: None,
            model: "gpt-4.1",
            timeout: Duration::from_secs(1),
            resolver: None,
        };
        let err = connect(&req).await.unwrap_err();
        assert!(!err.retryable());
        assert!(err.to_string().contains("use ws:// or wss://"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_retryable_tcp_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("ws://{addr}/v1/stream");
        let req = ConnectRequest {
            url: &url,
            api_key: None,
            model: "gpt-4.1",
            timeout: Duration::from_secs(2),
            resolver: None,
        };
        let err = connect(&req).await.unwrap_err();
        assert!(matches!(err, ConnectError::Tcp { .. }), "{err:?}");
        assert!(err.retryable());
    }
}
