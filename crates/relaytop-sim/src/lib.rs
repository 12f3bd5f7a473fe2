//! The embedded relay simulator: a real relay/v1 server on a local port, driven by a live
//! `SimProfile` of knobs (latency, token rate, drops, errors, rate limits, rejected upgrades,
//! keys, idle cut-offs, malformed frames, silent peers). Sessions, tests, the demo world and the
//! benchmarks connect to it like to any relay. The same port also speaks openai-sse
//! (`POST /v1/chat/completions`, `openai_chat`) and openai-realtime (`GET /v1/realtime`,
//! `openai_realtime`),
//! with the same knobs.
//!
//! `SimServer` owns the listener and one task per connection (`conn` reads its head and routes
//! it to the protocol's route: `relay_v1`, `openai_chat`, `openai_realtime`); the tasks share only
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

mod audio;
mod conn;
mod http;
mod openai_chat;
mod openai_realtime;
mod relay_v1;
mod server;

pub use server::{Embedded, MODELS_PATH, SimServer, SimStats};

pub use audio::{WavInfo, parse_wav, tone_wav, transcript_text};
pub use relaytop_core::config::sim_profile::{
    DropMode, LogNormalLatency, SimProfile, UpgradeRejection,
};
