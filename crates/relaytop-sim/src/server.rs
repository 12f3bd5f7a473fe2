//! `SimServer`: the listener on a local port, one task per connection, the live profile they
//! share and the stats; and `Embedded`, the simulator the engine's `World` starts.

use std::fmt;

use crate::conn;
use relaytop_core::config::sim_profile::{SimProfile, UpgradeRejection};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use relaytop_core::protocol::openai_realtime::REALTIME_PATH;
use relaytop_core::protocol::relay_v1::STREAM_PATH;

/// The REST path that lists models beside the stream.
pub const MODELS_PATH: &str = "/v1/models";

/// Pending connections the kernel queues for us: a thousand clients connecting at once must
/// not wait on each other (tokio's default of 128 makes that take a second).
const LISTEN_BACKLOG: u32 = 4096;

/// A snapshot of what the simulator has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// WebSocket upgrades answered with `101`.
    pub connections_accepted: u64,
    /// WebSocket upgrades answered with an HTTP error (a profile's rejection, a bad key, a
    /// malformed upgrade).
    pub upgrades_rejected: u64,
    /// `chat.completion` and `audio.transcription` frames received (refused ones included).
    pub requests: u64,
    /// Completions that ended with `done` (cancelled ones included).
    pub responses_completed: u64,
    /// Completions cut short because their connection ended: a simulated drop, an idle
    /// cut-off, `kill_connections`, `stop`, or the client going away.
    pub responses_dropped: u64,
    /// Application `ping`s and WebSocket Pings answered.
    pub pings_answered: u64,
    /// Transcripts sent.
    pub transcriptions: u64,
    /// WebSocket connections open now.
    pub open_connections: u64,
}

/// The live counters behind `SimStats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) upgrades_rejected: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) responses_completed: AtomicU64,
    pub(crate) responses_dropped: AtomicU64,
    pub(crate) pings_answered: AtomicU64,
    pub(crate) transcriptions: AtomicU64,
    pub(crate) open_connections: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The profile in force, with the count of upgrades it has rejected so far (a new profile
/// starts counting afresh).
#[derive(Debug)]
pub(crate) struct LiveProfile {
    pub(crate) profile: Arc<SimProfile>,
    pub(crate) upgrades_rejected: AtomicU64,
}

impl LiveProfile {
    fn new(profile: SimProfile) -> Self {
        Self {
            profile: Arc::new(profile),
            upgrades_rejected: AtomicU64::new(0),
        }
    }

    /// The rejection to answer this upgrade with, if the profile rejects it (and counts it).
    pub(crate) fn take_upgrade_rejection(&self) -> Option<&UpgradeRejection> {
        let rejection = self.profile.reject_upgrades.as_ref()?;
        let rejected_before = self.upgrades_rejected.fetch_add(1, Ordering::Relaxed);
        rejection
            .first
            .is_none_or(|first| rejected_before < first)
            .then_some(rejection)
    }
}

/// What the connection tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) live: RwLock<Arc<LiveProfile>>,
    pub(crate) stats: Counters,
    /// The station's account ledger (`account`).
    pub(crate) account: crate::account::Account,
}

impl Shared {
    pub(crate) fn live_profile(&self) -> Arc<LiveProfile> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Orders to the accept task.
#[derive(Debug)]
enum Command {
    /// End every open connection, keep listening.
    KillConnections,
    /// Stop listening and end every connection.
    Stop,
}

/// A running simulated relay. Dropping it stops it too (without waiting).
pub struct SimServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    accept_task: Option<JoinHandle<()>>,
}

impl fmt::Debug for SimServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimServer")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SimServer {
    /// Listens on `listen` (port 0: any free port) and serves relay/v1 there.
    pub async fn start(listen: SocketAddr, profile: SimProfile) -> std::io::Result<SimServer> {
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // So that a stopped server's address can be bound again at once.
        socket.set_reuseaddr(true)?;
        socket.bind(listen)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            account: crate::account::Account::new(&profile),
            live: RwLock::new(Arc::new(LiveProfile::new(profile))),
            stats: Counters::default(),
        });
        let (commands, orders) = mpsc::unbounded_channel();
        let accept_task = tokio::spawn(accept_loop(listener, orders, shared.clone()));
        tracing::debug!(%addr, "relay simulator listening");
        Ok(SimServer {
            addr,
            shared,
            commands,
            accept_task: Some(accept_task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay/v1 stream URL: `ws://127.0.0.1:PORT/v1/stream` (loopback when it listens on
    /// every address).
    pub fn url(&self) -> String {
        format!("ws://{}{STREAM_PATH}", self.reachable_addr())
    }

    /// The `GET /v1/models` URL beside the stream.
    pub fn models_url(&self) -> String {
        format!("http://{}{MODELS_PATH}", self.reachable_addr())
    }

    /// The openai-sse base URL, as OpenAI's SDKs take it: `http://127.0.0.1:PORT/v1`
    /// (chat completions are at `/v1/chat/completions` below it).
    pub fn sse_base_url(&self) -> String {
        format!("http://{}/v1", self.reachable_addr())
    }

    /// The station's root, `http://127.0.0.1:PORT`: Gemini's base (its codec adds
    /// `/v1beta/models/…`).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.reachable_addr())
    }

    /// The openai-realtime URL: `ws://127.0.0.1:PORT/v1/realtime` (a client adds `?model=`).
    pub fn realtime_url(&self) -> String {
        format!("ws://{}{REALTIME_PATH}", self.reachable_addr())
    }

    fn reachable_addr(&self) -> SocketAddr {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        addr
    }

    /// The profile in force.
    pub fn profile(&self) -> Arc<SimProfile> {
        self.shared.live_profile().profile.clone()
    }

    /// Replaces the profile, live: new connections and new requests follow it, as do open
    /// connections from their next frame (a response under way keeps the profile it started with).
    pub fn set_profile(&self, profile: SimProfile) {
        let live = Arc::new(LiveProfile::new(profile));
        *self
            .shared
            .live
            .write()
            .unwrap_or_else(PoisonError::into_inner) = live;
    }

    /// The account's ledger: granted, charged, balance (US dollars).
    pub fn ledger(&self) -> crate::account::Ledger {
        self.shared.account.ledger()
    }

    /// Adds `usd` to the account's balance (a top-up).
    pub fn top_up(&self, usd: f64) {
        self.shared.account.top_up(usd);
    }

    /// What it has done so far.
    pub fn stats(&self) -> SimStats {
        let c = &self.shared.stats;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SimStats {
            connections_accepted: get(&c.connections_accepted),
            upgrades_rejected: get(&c.upgrades_rejected),
            requests: get(&c.requests),
            responses_completed: get(&c.responses_completed),
            responses_dropped: get(&c.responses_dropped),
            pings_answered: get(&c.pings_answered),
            transcriptions: get(&c.transcriptions),
            open_connections: get(&c.open_connections),
        }
    }

    /// Ends every open connection abruptly (the TCP connection closes, no close frame), and
    /// keeps listening. Takes effect at once, asynchronously.
    pub fn kill_connections(&self) {
        // Fails only when the accept task is gone, and then there is nothing to kill.
        let _ = self.commands.send(Command::KillConnections);
    }

    /// Stops listening and ends every open connection abruptly; when it returns, the address
    /// can be bound again.
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// Accepts connections and runs one task each, until told to stop (or the `SimServer` is gone).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    mut orders: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
) {
    let mut connections = JoinSet::new();
    let mut connection_number: u64 = 0;
    loop {
        tokio::select! {
            biased;
            order = orders.recv() => match order {
                Some(Command::KillConnections) => connections.abort_all(),
                Some(Command::Stop) | None => break,
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = ended
                    && e.is_panic()
                {
                    tracing::error!("relay simulator connection task panicked: {e}");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(conn::serve(tcp, connection_number, shared.clone()));
                    connection_number += 1;
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("relay simulator cannot accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    tracing::debug!("relay simulator stopped");
}

/// The embedded simulator as the engine's `World` starts it: one `SimServer` on 127.0.0.1
/// for each simulated provider.
#[derive(Clone, Copy, Debug, Default)]
pub struct Embedded;

impl relaytop_core::world::Simulator for Embedded {
    fn start(
        &self,
        profile: SimProfile,
    ) -> futures_util::future::BoxFuture<
        '_,
        std::io::Result<Box<dyn relaytop_core::world::SimulatedRelay>>,
    > {
        Box::pin(async move {
            let listen: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
            let server = SimServer::start(listen, profile).await?;
            Ok(Box::new(server) as Box<dyn relaytop_core::world::SimulatedRelay>)
        })
    }
}

impl relaytop_core::world::SimulatedRelay for SimServer {
    fn url(&self, protocol: relaytop_core::session::Protocol) -> String {
        use relaytop_core::session::Protocol;
        match protocol {
            Protocol::RelayV1 => SimServer::url(self),
            Protocol::OpenaiSse | Protocol::AnthropicMessages | Protocol::OpenaiResponses => {
                self.sse_base_url()
            }
            Protocol::Gemini => self.root_url(),
            Protocol::OpenaiRealtime => self.realtime_url(),
        }
    }

    fn profile(&self) -> Arc<SimProfile> {
        SimServer::profile(self)
    }

    fn set_profile(&self, profile: SimProfile) {
        SimServer::set_profile(self, profile);
    }

    fn stop(self: Box<Self>) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move { SimServer::stop(*self).await })
    }
}
