//! The reference client of `relaytop bench ingest`: the least a Rust client can do with a
//! relay/v1 stream. tokio-tungstenite with its default settings, serde_json into a borrowed
//! struct, a count of chunks and characters; no events, metrics or recording.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

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
