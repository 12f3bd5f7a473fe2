//! relaytop: a terminal monitor for AI-API relay stations.
//!
//! The engine (sessions, protocol, metrics, cost, recording, simulator) lives in this library
//! and never imports the terminal UI; `ui` folds the same session events onto the screen.

pub mod bench;
pub mod canary;
pub mod check;
pub mod config;
pub mod cost;
pub mod headless;
pub mod metrics;
pub mod prometheus;
pub mod protocol;
pub mod record;
pub mod report;
pub mod session;
pub mod sim;
pub mod supervisor;
pub mod telemetry;
pub mod ui;
pub mod world;
