//! The simulator's plain-HTTP side: reading a request head byte-exact (httparse), checking the
//! API key, and writing the few HTTP answers it gives (101, errors, `/v1/models`). It knows
//! nothing of WebSocket frames.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A request head larger than this is answered with 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// The key prefix of relay/v1 keys.
const KEY_PREFIX: &str = "hs_live_";
/// The key shapes people have: relay/v1's own, OpenAI's and the relays' `sk-…` (`sk-proj-…`,
/// `sk-or-v1-…`, new-api's `sk-` + 48), Anthropic's `sk-ant-…`, Google's `AIza…`; each
/// followed by at least `KEY_MIN_TAIL` letters, digits, `-` or `_`.
const KEY_PREFIXES: [&str; 3] = [KEY_PREFIX, "sk-", "AIza"];
const KEY_MIN_TAIL: usize = 16;

/// The models `/v1/models` lists (those of the price table in spec/PROTOCOL.md).
const MODELS: &[&str] = &[
    "gpt-4.1",
    "claude-sonnet-4.5",
    "gemini-2.5-flash",
    "deepseek-v3.2",
    "whisper-1",
    "gpt-4o-mini",
    "gpt-realtime",
    "gpt-5-mini",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gemini-2.5-pro",
    "deepseek-chat",
];

/// What the simulator needs from a request head, owned.
#[derive(Debug, Default)]
pub(crate) struct RequestHead {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub authorization: Option<String>,
    /// `x-api-key` (Anthropic's way of sending the key).
    pub x_api_key: Option<String>,
    /// `x-goog-api-key` (Gemini's).
    pub x_goog_api_key: Option<String>,
    /// `anthropic-version`, when given.
    pub anthropic_version: Option<String>,
    /// The query string, without `?` (Gemini's `alt=sse` and `key=`).
    pub query: Option<String>,
    /// `Upgrade: websocket` and `Connection: upgrade` were both present.
    pub wants_websocket: bool,
    pub websocket_key: Option<String>,
    pub websocket_version: Option<String>,
    /// `Content-Length`, when given.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The client asked to close after this request (`Connection: close`, or HTTP/1.0).
    pub close: bool,
    /// `OpenAI-Beta`, when given (a Realtime beta client).
    pub openai_beta: Option<String>,
}

/// Why no request head could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The connection ended, failed or stalled before a whole head came: nothing to answer.
    Gone,
    /// Not HTTP/1.x, or larger than we take: answer with this status, then close.
    Bad { status: u16, why: &'static str },
}

/// Reads a request head. Returns it with the bytes that came after it (the start of the
/// WebSocket stream, if the client did not wait for `101`).
pub(crate) async fn read_head(
    stream: &mut TcpStream,
    within: Duration,
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    read_head_after(stream, Vec::with_capacity(1024), within).await
}

/// Reads a request head that may have begun in `buf` (bytes a keep-alive connection already
/// received after the previous request).
pub(crate) async fn read_head_after(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    within: Duration,
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    let read = async {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let head = RequestHead::from_parsed(&request);
                    return Ok((head, buf[head_len..].to_vec()));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HeadError::Bad {
                        status: 431,
                        why: "too many request headers",
                    });
                }
                Err(_) => {
                    return Err(HeadError::Bad {
                        status: 400,
                        why: "not an HTTP/1.1 request",
                    });
                }
            }
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(HeadError::Bad {
                    status: 431,
                    why: "request head too large",
                });
            }
            let mut chunk = [0u8; 2048];
            let room = (MAX_HEAD_BYTES - buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return Err(HeadError::Gone),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(HeadError::Gone))
}

impl RequestHead {
    fn from_parsed(request: &httparse::Request<'_, '_>) -> Self {
        let mut head = RequestHead {
            method: request.method.unwrap_or_default().to_owned(),
            path: request
                .path
                .unwrap_or_default()
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_owned(),
            query: request
                .path
                .unwrap_or_default()
                .split('#')
                .next()
                .and_then(|p| p.split_once('?'))
                .map(|(_, q)| q.to_owned()),
            ..RequestHead::default()
        };
        let mut upgrade_websocket = false;
        let mut connection_upgrade = false;
        for header in request.headers.iter() {
            let Ok(value) = std::str::from_utf8(header.value) else {
                continue;
            };
            let value = value.trim_matches([' ', '\t']);
            let name = header.name;
            if name.eq_ignore_ascii_case("authorization") {
                head.authorization = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("x-api-key") {
                head.x_api_key = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("x-goog-api-key") {
                head.x_goog_api_key = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("anthropic-version") {
                head.anthropic_version = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade_websocket |= has_token(value, "websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection_upgrade |= has_token(value, "upgrade");
                head.close |= has_token(value, "close");
            } else if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked |= has_token(value, "chunked");
            } else if name.eq_ignore_ascii_case("openai-beta") {
                head.openai_beta = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                head.websocket_key = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                head.websocket_version = Some(value.to_owned());
            }
        }
        head.wants_websocket = upgrade_websocket && connection_upgrade;
        head.close |= request.version == Some(0);
        head
    }
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks the `Authorization` header against the accepted keys (`None` = any well-shaped
/// key). The error is the message of a 401 answer; it never repeats the key.
pub(crate) fn check_key(
    authorization: Option<&str>,
    accepted_keys: Option<&[String]>,
) -> Result<(), String> {
    let Some(value) = authorization else {
        return Err(
            "missing Authorization header: send `Authorization: Bearer KEY` (or `x-api-key`, \
             `x-goog-api-key`)"
                .to_owned(),
        );
    };
    let Some((scheme, key)) = value.split_once(' ') else {
        return Err("Authorization must be `Bearer <key>`".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("Authorization must be `Bearer <key>`".to_owned());
    }
    let key = key.trim_matches([' ', '\t']);
    if let Some(accepted) = accepted_keys
        && accepted.iter().any(|k| k == key)
    {
        return Ok(());
    }
    if !key_is_well_shaped(key) {
        return Err(format!(
            "malformed API key: expected sk-…, sk-ant-…, AIza… or {KEY_PREFIX}… followed by \
             {KEY_MIN_TAIL} or more letters and digits"
        ));
    }
    match accepted_keys {
        None => Ok(()),
        Some(_) => Err("unknown API key: this relay does not know it".to_owned()),
    }
}

fn key_is_well_shaped(key: &str) -> bool {
    KEY_PREFIXES.iter().any(|prefix| {
        key.strip_prefix(prefix).is_some_and(|tail| {
            let allowed = |b: u8| {
                b.is_ascii_alphanumeric() || (*prefix != KEY_PREFIX && (b == b'-' || b == b'_'))
            };
            tail.len() >= KEY_MIN_TAIL && tail.bytes().all(allowed)
        })
    })
}

/// The key a request carries, wherever its format puts it: `Authorization: Bearer`,
/// `x-api-key`, `x-goog-api-key` or `?key=`, checked like `check_key`.
pub(crate) fn check_request_key(
    head: &RequestHead,
    accepted_keys: Option<&[String]>,
) -> Result<(), String> {
    let bare = head
        .x_api_key
        .as_deref()
        .or(head.x_goog_api_key.as_deref())
        .map(str::to_owned)
        .or_else(|| query_param(head.query.as_deref()?, "key"));
    match (&head.authorization, bare) {
        (Some(_), _) | (None, None) => check_key(head.authorization.as_deref(), accepted_keys),
        (None, Some(key)) => check_key(Some(&format!("Bearer {key}")), accepted_keys),
    }
}

/// A query parameter's value (percent-decoding `%2D`-style escapes is not needed for keys).
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_owned())
    })
}

/// The reason phrase of the statuses the simulator sends.
fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// Reads a request body (`Content-Length` or chunked) whose first bytes may be in `buf`.
/// Returns the body and leaves in `buf` what came after it; `Err` holds the status to answer.
pub(crate) async fn read_body(
    stream: &mut TcpStream,
    head: &RequestHead,
    buf: &mut Vec<u8>,
    max: usize,
    within: Duration,
) -> Result<Vec<u8>, u16> {
    let read = async {
        if head.chunked {
            return read_chunked(stream, buf, max).await;
        }
        let len = head.content_length.unwrap_or(0);
        if len > max {
            return Err(413);
        }
        while buf.len() < len {
            fill(stream, buf).await?;
        }
        let rest = buf.split_off(len);
        Ok(std::mem::replace(buf, rest))
    };
    tokio::time::timeout(within, read).await.unwrap_or(Err(408))
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), u16> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => Err(400),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

async fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Vec<u8>, u16> {
    let mut body = Vec::new();
    loop {
        let (size, header_len) = loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => break (size, used),
                Ok(httparse::Status::Partial) => fill(stream, buf).await?,
                Err(_) => return Err(400),
            }
        };
        let size = usize::try_from(size).map_err(|_| 413u16)?;
        if body.len() + size > max {
            return Err(413);
        }
        // The chunk's data and its CRLF.
        while buf.len() < header_len + size + 2 {
            fill(stream, buf).await?;
        }
        body.extend_from_slice(&buf[header_len..header_len + size]);
        buf.drain(..header_len + size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
}

/// The JSON error body relays send: `{"error":{"message":"..."}}`.
pub(crate) fn error_body(message: &str) -> String {
    serde_json::json!({ "error": { "message": message } }).to_string()
}

/// An OpenAI-style error body: `{"error":{"message","type","param","code"}}`.
pub(crate) fn openai_error_body(message: &str, kind: &str, code: Option<&str>) -> String {
    serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    })
    .to_string()
}

/// The model list in the shape the request asked for: Gemini's (`/v1beta/models`),
/// Anthropic's (`anthropic-version` sent), else OpenAI's.
pub(crate) fn models_body_for(head: &RequestHead) -> String {
    if head.path.starts_with("/v1beta") {
        let models: Vec<_> = MODELS
            .iter()
            .filter(|id| id.starts_with("gemini"))
            .map(|id| {
                serde_json::json!({
                    "name": format!("models/{id}"),
                    "displayName": id,
                    "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
                })
            })
            .collect();
        return serde_json::json!({ "models": models }).to_string();
    }
    if head.anthropic_version.is_some() {
        let data: Vec<_> = MODELS
            .iter()
            .filter(|id| id.starts_with("claude"))
            .map(|id| {
                serde_json::json!({
                    "type": "model", "id": id, "display_name": id,
                    "created_at": "2025-09-29T00:00:00Z",
                })
            })
            .collect();
        return serde_json::json!({
            "data": data, "has_more": false, "first_id": data.first().map(|m| m["id"].clone()),
            "last_id": data.last().map(|m| m["id"].clone()),
        })
        .to_string();
    }
    models_body()
}

/// The `/v1/models` body.
pub(crate) fn models_body() -> String {
    let data: Vec<_> = MODELS
        .iter()
        .map(|id| serde_json::json!({ "id": id, "object": "model", "owned_by": "relaytop-sim" }))
        .collect();
    serde_json::json!({ "object": "list", "data": data }).to_string()
}

/// A whole HTTP/1.1 response with a JSON body; the connection closes after it.
pub(crate) fn json_response(status: u16, extra_headers: &[(&str, &str)], body: &str) -> String {
    let mut response = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in extra_headers {
        // Control characters would split the header; a validated profile has none.
        let value: String = value.chars().filter(|c| !c.is_control()).collect();
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    response
}

/// The `101` answer to a WebSocket upgrade with this `Sec-WebSocket-Key`.
pub(crate) fn switching_protocols(websocket_key: &str) -> String {
    let accept =
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(websocket_key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

/// Writes a response and closes politely: half-close, then wait a little for the client to
/// close, so that unread bytes from it do not turn the close into a reset that eats the answer.
pub(crate) async fn respond_and_close(mut stream: TcpStream, response: &str) {
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "hs_live_abcdefghij012345";

    #[test]
    fn keys_are_checked_and_the_reason_is_given() {
        let bearer = format!("Bearer {GOOD}");
        assert_eq!(check_key(Some(&bearer), None), Ok(()));
        assert_eq!(check_key(Some(&format!("bearer  {GOOD} ")), None), Ok(()));
        let missing = check_key(None, None).unwrap_err();
        assert!(missing.contains("missing Authorization"), "{missing}");
        let scheme = check_key(Some(&format!("Basic {GOOD}")), None).unwrap_err();
        assert!(scheme.contains("Bearer"), "{scheme}");
        let short = check_key(Some("Bearer hs_live_short"), None).unwrap_err();
        assert!(short.contains("malformed"), "{short}");
        let punct = check_key(Some("Bearer hs_live_abcdefghij01234-"), None).unwrap_err();
        assert!(punct.contains("malformed"), "{punct}");
        let accepted = vec!["hs_live_0000000000000000".to_owned(), "test-key".to_owned()];
        let unknown = check_key(Some(&bearer), Some(&accepted)).unwrap_err();
        assert!(unknown.contains("unknown API key"), "{unknown}");
        assert!(!unknown.contains(GOOD));
        assert_eq!(check_key(Some("Bearer test-key"), Some(&accepted)), Ok(()));
    }

    #[test]
    fn heads_are_parsed() {
        let raw = b"GET /v1/stream?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\n\
            Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\nAuthorization: Bearer k\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(raw).unwrap().is_complete());
        let head = RequestHead::from_parsed(&request);
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/v1/stream");
        assert!(head.wants_websocket);
        assert_eq!(head.authorization.as_deref(), Some("Bearer k"));
        assert_eq!(head.websocket_version.as_deref(), Some("13"));
        // The RFC 6455 example.
        assert!(
            switching_protocols(head.websocket_key.as_deref().unwrap())
                .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")
        );
    }

    #[test]
    fn responses_are_well_formed() {
        let body = error_body("slow \"down\"");
        assert_eq!(body, r#"{"error":{"message":"slow \"down\""}}"#);
        let response = json_response(429, &[("Retry-After", "3\r\nX: y")], &body);
        assert!(response.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(response.contains("Retry-After: 3X: y\r\n"));
        assert!(response.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(response.ends_with(&format!("\r\n\r\n{body}")));
        let models: serde_json::Value = serde_json::from_str(&models_body()).unwrap();
        assert_eq!(models["object"], "list");
        assert_eq!(models["data"][0]["id"], "gpt-4.1");
    }
}
