//! The terminal dashboard: live panes for every session of a world (sessions, stream,
//! health, cost, event log, and the canary when the run has one), the replay screen and
//! `relaytop chat`, all on one terminal loop (`terminal_loop`); and the fleet view
//! (`fleet`: `relaytop --prometheus URL`).
//!
//! The live dashboard is `dashboard.rs` (`run`, its settings); the loop `select!`s over
//! terminal events, session events, a frame deadline and SIGTERM/SIGINT/SIGHUP, and redraws at
//! most `fps` times a second and only when something changed. Drawing reads the `App` and
//! never awaits. The engine knows nothing of this crate.

pub mod app;
pub mod asciicast;
pub mod chat;
pub mod dashboard;
pub mod fleet;
pub mod format;
pub mod keys;
pub mod log;
pub mod render;
pub mod replay;
pub mod stream;
pub mod terminal;
pub mod terminal_loop;
pub mod theme;

pub use dashboard::{DEFAULT_FPS, Settings, UiOptions, run};

#[cfg(test)]
mod tests;
