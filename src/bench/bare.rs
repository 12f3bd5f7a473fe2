//! The reference client of `relaytop bench ingest`: the least a Rust client can do with a
//! relay/v1 stream. tokio-tungstenite with its default settings, serde_json into a borrowed
//! struct, a count of chunks and characters; no events, metrics or recording.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The one request the bare client sends.
const REQUEST: &str = r#"{"type":"chat.completion","model":"bench","messages":[{"role":"user","content":"stream"}],"stream":true}"#;

/// What the bare client reads of each frame.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// `relaytop bench bare URL`: the bare client as a process of its own.
#[derive(clap::Args, Debug, Clone)]
pub struct BareArgs {
    /// The blaster's relay/v1 URL (ws://…).
    pub url: String,
    /// Instead: open N connections that only heartbeat (a relay/v1 ping and a WebSocket ping
    /// in one write every `--heartbeat-s`, their pongs read and parsed), until killed: the
    /// reference for relaytop's idle sessions (`bench scale --cases process`).
    #[arg(long, value_name = "N")]
    pub idle: Option<u32>,
    /// `--idle`: seconds between two heartbeats of a connection.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    pub heartbeat_s: f64,
}

/// One bare run: what it read and how long it took (connect to `done`).
#[derive(Clone, Copy, Debug)]
pub struct BareRun {
    pub chunks: u64,
    pub chars: u64,
    /// It read the response's `done` (not merely the end of the connection).
    pub done: bool,
    pub elapsed: Duration,
}

/// Connects to `url`, asks for one response and reads it to its `done`.
pub async fn run(url: String) -> anyhow::Result<BareRun> {
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    ws.send(Message::text(REQUEST)).await?;
    let (mut chunks, mut chars, mut done) = (0u64, 0u64, false);
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let frame: Frame<'_> = serde_json::from_str(text.as_str())?;
        match frame.kind.as_ref() {
            "chunk" => {
                chunks += 1;
                chars += frame.content.map_or(0, |c| c.len() as u64);
            }
            "done" => {
                done = true;
                break;
            }
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    let _ = ws.close(None).await;
    Ok(BareRun {
        chunks,
        chars,
        done,
        elapsed,
    })
}

/// `--idle`: `n` connections to `url` that heartbeat every `every`, spread over the interval,
/// until the process is killed; returns only when one cannot connect or fails. With relaytop's
/// WebSocket settings: with tungstenite's defaults (a 128 KiB read buffer) the same client
/// takes 132 KiB and 1.7x the CPU of relaytop's idle session (docs/PERFORMANCE.md).
pub async fn idle(url: String, n: u32, every: Duration) -> anyhow::Result<()> {
    let every = every.max(Duration::from_millis(10));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", relaytop_core::world::SIMULATOR_KEY).parse()?,
        );
        // relaytop's own WebSocket settings (an 8 KiB read buffer), so the two differ only in
        // what relaytop does beyond reading and answering.
        let config = relaytop_core::session::connect::websocket_config();
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        let first = every.mul_f64(f64::from(i) / f64::from(n.max(1)));
        tasks.spawn(heartbeat(ws, first, every));
    }
    while let Some(ended) = tasks.join_next().await {
        ended??;
    }
    Ok(())
}

/// One idle connection: a ping pair every `every` (the first after `first`), pongs parsed.
async fn heartbeat(
    mut ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    first: Duration,
    every: Duration,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pongs = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                ws.feed(Message::text(r#"{"type":"ping"}"#)).await?;
                ws.feed(Message::Ping(Default::default())).await?;
                ws.flush().await?;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: Frame<'_> = serde_json::from_str(text.as_str())?;
                    pongs += u64::from(frame.kind == "pong");
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the relay closed the connection after {pongs} pongs"),
            },
        }
    }
}
