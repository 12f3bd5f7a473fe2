//! A fault-injection TCP proxy for tests, modelled on toxiproxy's toxics: latency with jitter,
//! bandwidth, timeout (a stalled peer), reset_peer (RST), slow_close, slicer, limit_data and
//! down. Loopback only: it listens on 127.0.0.1 port 0 and forwards to one upstream address.
//!
//! The toxics are one shared value (`Toxics`, behind a `watch` channel); `Proxy::set` changes
//! them and every open connection sees the change at once, so a fault can start or end in the
//! middle of a stream. Each direction ("upstream": client to relay, "downstream": relay to
//! client) has its own link toxics; `reset_peer` and `down` act on whole connections.
//!
//! Each direction of a connection is one loop that reads into a bounded queue (stamping each
//! piece with its arrival time) and writes the queue's front when the toxics allow: latency
//! delays a piece from its arrival, not from when the previous one left, as on a real link.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Latency added to every piece of data: `base` plus a uniform random part in `±jitter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    pub base: Duration,
    pub jitter: Duration,
}

/// toxiproxy's `timeout`: stop forwarding (the peer looks stalled) and keep the connection
/// open; with `close_after`, close it after that long, as toxiproxy does with a timeout > 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeout {
    pub close_after: Option<Duration>,
}

/// toxiproxy's `slicer`: split data into pieces of `size` bytes, each its own TCP write,
/// `delay` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slicer {
    pub size: usize,
    pub delay: Duration,
}

/// The toxics of one direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Link {
    pub latency: Option<Latency>,
    /// Bytes per second.
    pub bandwidth: Option<u64>,
    pub timeout: Option<Timeout>,
    /// Wait this long before passing an end of stream (FIN) on.
    pub slow_close: Option<Duration>,
    pub slicer: Option<Slicer>,
    /// Close the connection once this many bytes went this way (counted from when the toxic
    /// was set, or last changed).
    pub limit_data: Option<u64>,
}

/// Every toxic of a proxy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Toxics {
    /// Client to relay.
    pub upstream: Link,
    /// Relay to client.
    pub downstream: Link,
    /// Reset every connection (RST: SO_LINGER 0, then close), open ones and new ones.
    pub reset_peer: bool,
    /// The proxy is down: its port refuses connections and open connections are closed.
    pub down: bool,
}

/// What a proxy has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub accepted: u64,
    pub reset: u64,
    pub upstream_bytes: u64,
    pub downstream_bytes: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    reset: AtomicU64,
    upstream_bytes: AtomicU64,
    downstream_bytes: AtomicU64,
}

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    toxics: Arc<watch::Sender<Toxics>>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 (port 0) forwarding to `upstream`, with no toxics.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("the proxy binds 127.0.0.1");
        let addr = listener.local_addr().expect("bound address");
        let (toxics, _) = watch::channel(Toxics::default());
        let toxics = Arc::new(toxics);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(serve(listener, upstream, toxics.clone(), counters.clone()));
        Proxy {
            addr,
            toxics,
            counters,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://` URL of `path` through the proxy.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Changes the toxics; open connections see it at once.
    pub fn set(&self, change: impl FnOnce(&mut Toxics)) {
        self.toxics.send_modify(change);
    }

    /// Removes every toxic.
    pub fn clear(&self) {
        self.toxics.send_replace(Toxics::default());
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
            upstream_bytes: c.upstream_bytes.load(Ordering::Relaxed),
            downstream_bytes: c.downstream_bytes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Open connections end with their tasks' halves when `down` closes them.
        self.toxics.send_modify(|t| t.down = true);
        self.task.abort();
    }
}

/// Accepts until dropped; while `down`, the port is closed (connects are refused) and is
/// bound again when the proxy comes back up.
async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    toxics: Arc<watch::Sender<Toxics>>,
    counters: Arc<Counters>,
) {
    let addr = listener.local_addr().expect("bound address");
    let mut listener = Some(listener);
    let mut watch = toxics.subscribe();
    loop {
        let down = watch.borrow_and_update().down;
        match (&listener, down) {
            (Some(_), true) => listener = None,
            (None, false) => {
                // The port was ours a moment ago; binding it again can only race another
                // test's port 0, which the kernel does not hand out while we rebind.
                for _ in 0..50 {
                    if let Ok(l) = TcpListener::bind(addr).await {
                        listener = Some(l);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            _ => {}
        }
        let Some(l) = &listener else {
            if watch.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(client, upstream, toxics.subscribe(), counters.clone()));
            }
            changed = watch.changed() => if changed.is_err() { return },
        }
    }
}

/// Why a direction stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// Close both sides (FIN).
    Close,
    /// Reset both sides (RST).
    Reset,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Up,
    Down,
}

/// Sets SO_LINGER 0 and drops: the peer gets an RST, not a FIN. (tokio deprecates
/// `set_linger` because a non-zero linger blocks the thread on drop; zero never blocks.)
#[allow(deprecated)]
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut toxics: watch::Receiver<Toxics>,
    counters: Arc<Counters>,
) {
    let now = toxics.borrow_and_update().clone();
    if now.reset_peer {
        counters.reset.fetch_add(1, Ordering::Relaxed);
        reset(client);
        return;
    }
    if now.down {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let (kill_tx, kill_rx) = watch::channel(None::<Kill>);
    let up = pump(
        Way::Up,
        client_read,
        server_write,
        toxics.clone(),
        kill_tx.clone(),
        kill_rx.clone(),
        counters.clone(),
    );
    let down = pump(
        Way::Down,
        server_read,
        client_write,
        toxics,
        kill_tx,
        kill_rx.clone(),
        counters.clone(),
    );
    let ((client_read, server_write), (server_read, client_write)) = tokio::join!(up, down);
    if *kill_rx.borrow() == Some(Kill::Reset) {
        counters.reset.fetch_add(1, Ordering::Relaxed);
        if let Ok(client) = client_read.reunite(client_write) {
            reset(client);
        }
        if let Ok(server) = server_read.reunite(server_write) {
            reset(server);
        }
    }
}

/// One piece of data waiting to go on, or the end of the stream.
struct Piece {
    arrived: Instant,
    /// Position in [-1, 1] of this piece's jitter.
    jitter: f64,
    data: Option<Vec<u8>>,
    sent: usize,
}

/// What the writing side of a pump does next.
enum Step {
    /// Wait until then.
    Until(Instant),
    /// Wait for the toxics to change (a stall).
    Hold,
    /// Write these bytes of the front piece.
    Write(usize),
    /// Close the connection: limit_data reached, or a timeout toxic's time is up.
    Kill(Kill),
    /// Pass the end of the stream on.
    Finish,
    /// Nothing to write.
    Idle,
}

/// Forwards one direction until its stream ends or the connection is killed; returns the
/// halves so that a reset can reunite and RST them.
async fn pump(
    way: Way,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut toxics: watch::Receiver<Toxics>,
    kill_tx: watch::Sender<Option<Kill>>,
    mut kill_rx: watch::Receiver<Option<Kill>>,
    counters: Arc<Counters>,
) -> (OwnedReadHalf, OwnedWriteHalf) {
    let link = |t: &Toxics| match way {
        Way::Up => t.upstream.clone(),
        Way::Down => t.downstream.clone(),
    };
    let counter = match way {
        Way::Up => &counters.upstream_bytes,
        Way::Down => &counters.downstream_bytes,
    };
    let mut queue: VecDeque<Piece> = VecDeque::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut read_done = false;
    // When the next write may start (bandwidth and slicer pacing).
    let mut next_write = Instant::now();
    // limit_data: the setting it counts for, and the bytes counted.
    let mut limit: Option<(u64, u64)> = None;
    // timeout: when the current stall began.
    let mut stalled_since: Option<Instant> = None;
    loop {
        let toxic = toxics.borrow_and_update().clone();
        if toxic.reset_peer {
            let _ = kill_tx.send(Some(Kill::Reset));
        } else if toxic.down {
            let _ = kill_tx.send(Some(Kill::Close));
        }
        if kill_rx.borrow_and_update().is_some() {
            return (from, to);
        }
        let l = link(&toxic);
        match (l.limit_data, limit) {
            (Some(n), Some((set, _))) if n == set => {}
            (Some(n), _) => limit = Some((n, 0)),
            (None, _) => limit = None,
        }
        if l.timeout.is_none() {
            stalled_since = None;
        }
        let step = next_step(&l, &queue, next_write, limit, &mut stalled_since);
        if let Step::Kill(kill) = step {
            let _ = kill_tx.send(Some(kill));
            return (from, to);
        }
        if let Step::Finish = step {
            if let Some(delay) = l.slow_close {
                let until = queue.front().map_or(Instant::now(), |p| p.arrived) + delay;
                if Instant::now() < until {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = toxics.changed() => {}
                        _ = kill_rx.changed() => {}
                    }
                    continue;
                }
            }
            let _ = to.shutdown().await;
            return (from, to);
        }
        let can_read = !read_done && queue.len() < 64;
        tokio::select! {
            read = from.read(&mut buf), if can_read => match read {
                Ok(0) | Err(_) => {
                    read_done = true;
                    queue.push_back(Piece { arrived: Instant::now(), jitter: 0.0, data: None, sent: 0 });
                }
                Ok(n) => queue.push_back(Piece {
                    arrived: Instant::now(),
                    jitter: rand::random::<f64>() * 2.0 - 1.0,
                    data: Some(buf[..n].to_vec()),
                    sent: 0,
                }),
            },
            written = write_step(&step, &mut to, &mut queue), if matches!(step, Step::Write(_)) => {
                match written {
                    Some(n) => {
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        if let Some((_, counted)) = &mut limit {
                            *counted += n as u64;
                        }
                        let mut pause = Duration::ZERO;
                        if let Some(rate) = l.bandwidth.filter(|r| *r > 0) {
                            pause += Duration::from_secs_f64(n as f64 / rate as f64);
                        }
                        if let Some(slicer) = l.slicer {
                            pause += slicer.delay;
                        }
                        next_write = Instant::now() + pause;
                    }
                    None => {
                        let _ = kill_tx.send(Some(Kill::Close));
                        return (from, to);
                    }
                }
            }
            _ = sleep_step(&step) => {}
            _ = toxics.changed() => {}
            _ = kill_rx.changed() => {}
        }
    }
}

fn next_step(
    l: &Link,
    queue: &VecDeque<Piece>,
    next_write: Instant,
    limit: Option<(u64, u64)>,
    stalled_since: &mut Option<Instant>,
) -> Step {
    let now = Instant::now();
    if let Some((max, counted)) = limit
        && counted >= max
    {
        return Step::Kill(Kill::Close);
    }
    if let Some(timeout) = l.timeout {
        let since = *stalled_since.get_or_insert(now);
        return match timeout.close_after {
            Some(after) if now >= since + after => Step::Kill(Kill::Close),
            Some(after) => Step::Until(since + after),
            None => Step::Hold,
        };
    }
    let Some(front) = queue.front() else {
        return Step::Idle;
    };
    let Some(data) = &front.data else {
        return Step::Finish;
    };
    if let Some(lat) = l.latency {
        let spread = lat.jitter.as_secs_f64() * front.jitter;
        let delay = (lat.base.as_secs_f64() + spread).max(0.0);
        let due = front.arrived + Duration::from_secs_f64(delay);
        if now < due {
            return Step::Until(due);
        }
    }
    if now < next_write {
        return Step::Until(next_write);
    }
    let mut size = data.len() - front.sent;
    if let Some(rate) = l.bandwidth.filter(|r| *r > 0) {
        // At most a 20th of a second's worth at a time, so the pace is smooth.
        size = size.min((rate / 20).max(1) as usize);
    }
    if let Some(slicer) = l.slicer {
        size = size.min(slicer.size.max(1));
    }
    if let Some((max, counted)) = limit {
        size = size.min((max - counted) as usize);
    }
    Step::Write(size)
}

async fn sleep_step(step: &Step) {
    match step {
        Step::Until(at) => tokio::time::sleep_until(*at).await,
        // Idle, Hold and Write wait on the other branches.
        _ => std::future::pending().await,
    }
}

/// Writes up to `n` bytes of the front piece (one `write`: cancel-safe); the bytes written, or
/// `None` when the peer is gone.
async fn write_step(
    step: &Step,
    to: &mut OwnedWriteHalf,
    queue: &mut VecDeque<Piece>,
) -> Option<usize> {
    let Step::Write(n) = *step else {
        return Some(0);
    };
    let front = queue.front_mut()?;
    let data = front.data.as_ref()?;
    let end = front.sent + n;
    let written = to
        .write(&data[front.sent..end])
        .await
        .ok()
        .filter(|w| *w > 0)?;
    front.sent += written;
    if front.sent == data.len() {
        queue.pop_front();
    }
    Some(written)
}
