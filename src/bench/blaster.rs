//! The fast relay/v1 server of `relaytop bench ingest`: answers every `chat.completion` with
//! a fixed number of pre-serialized chunk frames (fed in batches, one flush each), then
//! `done`; answers `ping` with `pong`. Both ingest clients read from it, one after the other.
//!
//! `Answer::Blocks` (`bench ingest --blocks`) is a faster server: the chunk frames go out
//! already encoded as WebSocket frames, packed into a buffer of about 64 KiB built once and
//! written straight to the socket block after block, past tokio-tungstenite; only the
//! handshake, `done`, `pong` and the client's close go through tokio-tungstenite.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Every chunk the blaster sends: one small token, as a relay streams them.
pub const CHUNK_FRAME: &str = r#"{"type":"chunk","content":" token"}"#;

/// Frames fed between two flushes (and two looks at the client).
const FRAMES_PER_FLUSH: u64 = 256;

/// `Answer::Blocks`: the most bytes of one block of pre-encoded frames (whole frames only).
pub const BLOCK_BYTES: usize = 64 * 1024;

/// What the blaster answers a `chat.completion` with.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// This many chunk frames, as fast as it can, then `done`.
    Blast { frames: u64 },
    /// The first of `frames` chunks after `delay` from the request (the time to first token
    /// it injects), then the rest and `done` at once; each delay as it was (from the request
    /// read to the first chunk written) is kept for `Blaster::delays`.
    Delay { delay: Duration, frames: u64 },
    /// This many chunk frames pre-encoded as WebSocket frames, written straight to the socket
    /// in blocks of about 64 KiB (`BLOCK_BYTES`, the last one partial), then `done`: a
    /// faster server than `Blast`, which writes each frame through tokio-tungstenite.
    Blocks { frames: u64 },
}

/// A running blaster, on a thread and runtime of its own (as a server in another process
/// would be), so that it never takes the workers of the client under test.
pub struct Blaster {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The serving thread's id, for its CPU (Linux).
    tid: Arc<std::sync::OnceLock<u32>>,
    /// Chunk frames sent by every connection so far.
    sent: Arc<AtomicU64>,
    /// `Answer::Delay`: every delay injected, in microseconds, as measured here.
    delays: Arc<Mutex<Vec<u64>>>,
}

impl Blaster {
    /// Listens on `listen` (port 0 for any) and streams `frames` chunks a request.
    pub async fn start(listen: SocketAddr, frames: u64) -> std::io::Result<Blaster> {
        Self::start_answering(listen, Answer::Blast { frames }).await
    }

    /// Listens on `listen` (port 0 for any) and writes `frames` chunks a request as
    /// pre-encoded frames in 64 KiB blocks (`Answer::Blocks`).
    pub async fn start_blocks(listen: SocketAddr, frames: u64) -> std::io::Result<Blaster> {
        Self::start_answering(listen, Answer::Blocks { frames }).await
    }

    /// Listens on `listen` (port 0 for any) and answers every request with `answer`.
    pub async fn start_answering(listen: SocketAddr, answer: Answer) -> std::io::Result<Blaster> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let delays = Arc::new(Mutex::new(Vec::new()));
        let injected = delays.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tid = Arc::new(std::sync::OnceLock::new());
        let own_tid = tid.clone();
        let thread = std::thread::Builder::new()
            .name("blaster".into())
            .spawn(move || {
                // "PID/task/TID": where the kernel counts this thread's CPU.
                if let Some(t) = std::fs::read_link("/proc/thread-self")
                    .ok()
                    .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok())
                {
                    let _ = own_tid.set(t);
                }
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let accept = async {
                        while let Ok((tcp, _)) = listener.accept().await {
                            let _ = tcp.set_nodelay(true);
                            tokio::spawn(serve(tcp, answer, counter.clone(), injected.clone()));
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Blaster {
            addr,
            tid,
            stop: Some(stop),
            thread: Some(thread),
            sent,
            delays,
        })
    }

    /// CPU the blaster's thread has used so far (the kernel's count, in clock ticks: 10 ms
    /// here); `None` where `/proc` does not say.
    pub fn cpu(&self) -> Option<Duration> {
        let tid = self.tid.get()?;
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        let ticks = crate::bench::scale::stat_ticks(&stat);
        Some(Duration::from_secs_f64(
            ticks / crate::bench::scale::clock_ticks_per_s(),
        ))
    }

    /// The relay/v1 URL to connect to.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/stream", self.addr)
    }

    /// Chunk frames sent so far, by every connection.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// `Answer::Delay`: the delays injected so far, in microseconds, as measured here.
    pub fn delays(&self) -> Vec<u64> {
        self.delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops the server and its connections.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Blaster {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Serves one connection until the client closes it.
async fn serve(tcp: TcpStream, answer: Answer, sent: Arc<AtomicU64>, delays: Arc<Mutex<Vec<u64>>>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let flow = if text.contains(r#""chat.completion""#) {
            match answer {
                Answer::Blast { frames } => stream(&mut ws, frames, &sent, false).await,
                Answer::Blocks { frames } => stream(&mut ws, frames, &sent, true).await,
                Answer::Delay { delay, frames } => {
                    delayed(&mut ws, Instant::now(), delay, frames, &delays).await
                }
            }
        } else if text.contains(r#""ping""#) {
            ws.send(Message::text(r#"{"type":"pong"}"#)).await.is_ok()
        } else {
            true
        };
        if !flow {
            break;
        }
    }
}

/// Answers one request read at `received`: the first chunk after `delay`, then the rest.
async fn delayed(
    ws: &mut WebSocketStream<TcpStream>,
    received: Instant,
    delay: Duration,
    frames: u64,
    delays: &Mutex<Vec<u64>>,
) -> bool {
    tokio::time::sleep_until((received + delay).into()).await;
    let injected = received.elapsed();
    if ws.send(Message::text(CHUNK_FRAME)).await.is_err() {
        return false;
    }
    delays
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(u64::try_from(injected.as_micros()).unwrap_or(u64::MAX));
    for _ in 1..frames {
        if ws.feed(Message::text(CHUNK_FRAME)).await.is_err() {
            return false;
        }
    }
    ws.send(Message::text(done_frame(frames))).await.is_ok()
}

/// The `done` frame ending a response of `frames` chunks.
fn done_frame(frames: u64) -> String {
    format!(
        r#"{{"type":"done","usage":{{"prompt_tokens":1,"completion_tokens":{frames}}},"finish_reason":"stop"}}"#
    )
}

/// Reads what the client sent meanwhile without waiting; false when it closed or went away
/// (its close is answered at once). Reading is independent of writing: tokio-tungstenite
/// writes here only a reply it owes (close, pong), between two whole frames or blocks.
async fn client_still_there(ws: &mut WebSocketStream<TcpStream>) -> bool {
    while let Some(next) = ws.next().now_or_never() {
        match next {
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                let _ = ws.flush().await;
                return false;
            }
            Some(Ok(_)) => {}
        }
    }
    true
}

/// One block of `Answer::Blocks`: as many whole chunk frames as fit in `BLOCK_BYTES`, each
/// encoded as a server's WebSocket text frame (unmasked: FIN and the text opcode, the
/// 7-bit length, the payload), and the count of frames in it.
fn encoded_block() -> (Vec<u8>, u64) {
    const _: () = assert!(CHUNK_FRAME.len() < 126, "one byte of length");
    let mut frame = Vec::with_capacity(2 + CHUNK_FRAME.len());
    frame.push(0x81);
    frame.push(CHUNK_FRAME.len() as u8);
    frame.extend_from_slice(CHUNK_FRAME.as_bytes());
    let count = BLOCK_BYTES / frame.len();
    (frame.repeat(count), count as u64)
}

/// Streams one response in batches, then `done`; false when the client went away or closed
/// meanwhile. Through tokio-tungstenite (`FRAMES_PER_FLUSH` frames fed, one flush), or
/// (`blocks`) as pre-encoded frames written straight to the socket, a block at a time.
async fn stream(
    ws: &mut WebSocketStream<TcpStream>,
    frames: u64,
    sent: &AtomicU64,
    blocks: bool,
) -> bool {
    static BLOCK: std::sync::OnceLock<(Vec<u8>, u64)> = std::sync::OnceLock::new();
    let (block, per_block) = BLOCK.get_or_init(encoded_block);
    let chunk = Utf8Bytes::from_static(CHUNK_FRAME);
    let per_batch = if blocks { *per_block } else { FRAMES_PER_FLUSH };
    let mut left = frames;
    while left > 0 {
        let batch = left.min(per_batch);
        let written = if blocks {
            // Nothing of tokio-tungstenite's (a reply it owes the client) is left half
            // written before raw bytes follow; nothing to write costs no system call.
            let bytes = &block[..batch as usize * (block.len() / *per_block as usize)];
            ws.flush().await.is_ok() && ws.get_mut().write_all(bytes).await.is_ok()
        } else {
            let mut fed = true;
            for _ in 0..batch {
                fed = fed && ws.feed(Message::Text(chunk.clone())).await.is_ok();
            }
            fed && ws.flush().await.is_ok()
        };
        if !written {
            return false;
        }
        left -= batch;
        sent.fetch_add(batch, Ordering::Relaxed);
        // A client that closes mid-stream (a session shutting down) is answered at once.
        if !client_still_there(ws).await {
            return false;
        }
    }
    ws.send(Message::text(done_frame(frames))).await.is_ok()
}
