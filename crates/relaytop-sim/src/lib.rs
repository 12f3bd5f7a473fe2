//! The embedded relay simulator: a real relay/v1 server on a local port, driven by a live
//! `SimProfile` of knobs (latency, token rate, drops, errors, rate limits, rejected upgrades,
//! keys, idle cut-offs, malformed frames, silent peers). Sessions, tests, the demo world and the
//! benchmarks connect to it like to any relay. The same port also speaks openai-realtime
//! (`GET /v1/realtime`, `openai_realtime`) and, over one shared streaming schedule (`stream`),
//! every SSE format a relay station serves: chat completions (`openai_chat`), Anthropic
//! Messages (`anthropic_messages`), OpenAI Responses (`openai_responses`) and Gemini
//! (`gemini`), with the same knobs and ordinary keys (`sk-…`, `sk-ant-…`, `AIza…`, `hs_live_…`).
//!
//! `SimServer` owns the listener and one task per connection (`conn` reads its head and routes
//! it to the protocol's route: `relay_v1`, `openai_realtime`, or a `stream::Shape`); the tasks share only
//! the live profile (behind a lock never held across an await) and atomic stats counters.
//! This crate must not depend on the session engine or the UI: it speaks the wire protocols
//! through `relaytop_core::protocol`, and plays the profiles `relaytop_core::config::sim_profile`
//! describes, nothing else.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use relaytop_sim::{SimProfile, SimServer};
//! let profile = SimProfile::named("legacy").unwrap_or_default();
//! let server = SimServer::start("127.0.0.1:0".parse().unwrap(), profile).await?;
//! println!("relay at {}", server.url());
//! server.stop().await;
//! # Ok(())
//! # }
//! ```

mod account;
mod anthropic_messages;
mod audio;
mod conn;
mod gemini;
mod http;
mod openai_chat;
mod openai_realtime;
mod openai_responses;
mod relay_v1;
mod server;
mod stream;

pub use account::Ledger;
pub use server::{Embedded, MODELS_PATH, SimServer, SimStats};

pub use audio::{WavInfo, parse_wav, tone_wav, transcript_text};
pub use relaytop_core::config::sim_profile::{
    DropMode, LogNormalLatency, SimProfile, UpgradeRejection,
};
