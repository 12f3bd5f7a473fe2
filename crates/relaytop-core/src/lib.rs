//! relaytop-core: the engine of relaytop. Protocol codecs, sessions and their transports,
//! metrics and cost, configuration, recording and the replay source, the canary, the run.
//!
//! It knows no terminal: its dependency tree has no ratatui, crossterm or clap (the compiler
//! holds that line), so headless runs, benchmarks and tests drive it without a screen.

pub mod account;
pub mod alert;
pub mod canary;
pub mod compare;
pub mod config;
pub mod cost;
pub mod fleet;
pub mod metrics;
pub mod numbers;
pub mod ondemand;
pub mod prometheus;
pub mod protocol;
pub mod record;
pub mod report;
pub mod run;
pub mod session;
pub mod supervisor;
pub mod telemetry;
pub mod tokenize;
pub mod transcribe;
pub mod transport;
pub mod world;
