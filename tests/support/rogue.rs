//! A hand-made relay for the faults the simulator cannot make: raw HTTP answers to the upgrade
//! (401, 403, 429 with a `Retry-After` date, 503), hand-made WebSocket frames (invalid UTF-8
//! text, a 64 MiB length header, a frame cut short, any close code), a FIN with no close
//! frame. Loopback only (127.0.0.1 port 0).
//!
//! Each connection follows a script (`Act`s); connection n uses script n, the last one again
//! for any later connection. Client frames are read and unmasked; a `{"type":"ping"}` is
//! answered with `pong` and a WebSocket Ping with a Pong while a script waits or holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// One step of a connection's script.
#[derive(Clone, Debug)]
pub enum Act {
    /// Read the upgrade request and answer with this raw HTTP response (then close).
    Respond(String),
    /// Read the upgrade request and answer `101 Switching Protocols`.
    Upgrade,
    /// Send these bytes as they are.
    Send(Vec<u8>),
    /// Wait for a client text frame containing this text (answering pings meanwhile).
    AwaitText(&'static str),
    Sleep(Duration),
    /// Close the TCP connection (FIN), without a close frame.
    Fin,
    /// Keep the connection open and answer pings until the client goes.
    Hold,
}

/// A running hand-made relay.
pub struct Rogue {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Rogue {
    pub async fn start(scripts: Vec<Vec<Act>>) -> Rogue {
        assert!(!scripts.is_empty(), "a script for the first connection");
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("binds 127.0.0.1");
        let addr = listener.local_addr().expect("bound address");
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let scripts = Arc::new(scripts);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let n = counter.fetch_add(1, Ordering::Relaxed) as usize;
                let script = scripts[n.min(scripts.len() - 1)].clone();
                tokio::spawn(run(stream, script));
            }
        });
        Rogue {
            addr,
            connections,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/stream", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(mut stream: TcpStream, script: Vec<Act>) {
    let _ = stream.set_nodelay(true);
    let mut pending = Vec::new();
    for act in script {
        let ok = match act {
            Act::Respond(response) => {
                let _ = read_request(&mut stream, &mut pending).await;
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
                // Let the client read the answer before the socket goes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            Act::Upgrade => match read_request(&mut stream, &mut pending).await {
                Some(key) => {
                    let answer = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                        derive_accept_key(key.as_bytes())
                    );
                    stream.write_all(answer.as_bytes()).await.is_ok()
                }
                None => false,
            },
            Act::Send(bytes) => stream.write_all(&bytes).await.is_ok(),
            Act::AwaitText(needle) => await_text(&mut stream, &mut pending, Some(needle)).await,
            Act::Sleep(d) => {
                tokio::time::sleep(d).await;
                true
            }
            Act::Fin => {
                let _ = stream.shutdown().await;
                // Drain until the client closes its side too.
                let mut sink = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Ok(n) = stream.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
                return;
            }
            Act::Hold => {
                await_text(&mut stream, &mut pending, None).await;
                return;
            }
        };
        if !ok {
            return;
        }
    }
}

/// Reads an HTTP request head; returns its `Sec-WebSocket-Key`.
async fn read_request(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            return head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            });
        }
        let n = stream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Reads client frames, answering pings, until a text frame contains `needle` (true) or the
/// client goes (false). With no needle, until the client goes.
async fn await_text(stream: &mut TcpStream, pending: &mut Vec<u8>, needle: Option<&str>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        while let Some((opcode, payload)) = take_frame(pending) {
            match opcode {
                0x1 => {
                    let text = String::from_utf8_lossy(&payload);
                    if text.contains(r#""type":"ping""#) {
                        let _ = stream.write_all(&text_frame(r#"{"type":"pong"}"#)).await;
                    }
                    if needle.is_some_and(|n| text.contains(n)) {
                        return true;
                    }
                }
                0x8 => {
                    // Answer the close handshake, as a relay would.
                    let _ = stream.write_all(&frame(true, 0x8, &payload)).await;
                    return false;
                }
                0x9 => {
                    let _ = stream.write_all(&frame(true, 0xA, &payload)).await;
                }
                _ => {}
            }
        }
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
}

/// Takes one whole (masked) client frame off the front of `pending`.
fn take_frame(pending: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    if pending.len() < 2 {
        return None;
    }
    let opcode = pending[0] & 0x0F;
    let masked = pending[1] & 0x80 != 0;
    let (len, mut at) = match pending[1] & 0x7F {
        126 if pending.len() >= 4 => (u16::from_be_bytes([pending[2], pending[3]]) as usize, 4),
        127 if pending.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&pending[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let mask = if masked {
        if pending.len() < at + 4 {
            return None;
        }
        let m = [
            pending[at],
            pending[at + 1],
            pending[at + 2],
            pending[at + 3],
        ];
        at += 4;
        Some(m)
    } else {
        None
    };
    if pending.len() < at + len {
        return None;
    }
    let mut payload = pending[at..at + len].to_vec();
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    pending.drain(..at + len);
    Some((opcode, payload))
}

/// A frame header (server frames are not masked) for a payload of `len` bytes.
pub fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    if len < 126 {
        out.push(len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out
}

/// A whole frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(fin, opcode, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// A text frame (any bytes: the point is to send some that are not UTF-8).
pub fn text_bytes(payload: &[u8]) -> Vec<u8> {
    frame(true, 0x1, payload)
}

pub fn text_frame(text: &str) -> Vec<u8> {
    text_bytes(text.as_bytes())
}

/// A close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    frame(true, 0x8, &payload)
}

/// relay/v1 frames of one short response: `chunks` chunks ("w0 ", "w1 ", ...) and `done`.
pub fn response(chunks: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..chunks {
        out.extend(text_frame(&format!(
            r#"{{"type":"chunk","content":"w{i} "}}"#
        )));
    }
    out.extend(text_frame(&format!(
        r#"{{"type":"done","finish_reason":"stop","usage":{{"prompt_tokens":3,"completion_tokens":{chunks}}}}}"#
    )));
    out
}

/// A raw HTTP response with a JSON error body and extra header lines.
pub fn http_error(status: u16, reason: &str, headers: &[(&str, String)], message: &str) -> String {
    let body = format!(r#"{{"error":{{"message":"{message}"}}}}"#);
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    out
}

/// A hand-made HTTP relay on 127.0.0.1: `GET` (the models check) answers `models`, every
/// `POST` answers `post`; both raw HTTP responses, on keep-alive connections.
pub async fn http_relay(models: String, post: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (models, post) = (models.clone(), post.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head) = read_http_request(&mut stream, &mut buf).await else {
                        return;
                    };
                    let answer = if head.starts_with("get") {
                        &models
                    } else {
                        &post
                    };
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/v1"), task)
}

/// Reads one HTTP request (its head, then a `Content-Length` body) from a connection that
/// carries just that one; returns its head, lowercased, or `None` when it ended first.
#[allow(dead_code)] // not every test binary serves HTTP by hand
pub async fn read_one_request(stream: &mut tokio::net::TcpStream) -> Option<String> {
    read_http_request(stream, &mut Vec::new()).await
}

/// Reads the next HTTP request of a keep-alive connection, `buf` holding what was read past
/// the last one; returns its head, lowercased, or `None` when the connection ended first.
pub async fn read_http_request(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<String> {
    let mut piece = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut piece).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut piece).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
    }
    buf.drain(..head_end + length);
    Some(head)
}

/// A raw HTTP response.
pub fn http(status: &str, content_type: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}
