//! Canary deployments: traffic split between a baseline relay and a canary relay by weight,
//! health checks over windows that hold enough samples, rollback triggers, progressive stages
//! and promotion, with notifications; read from the canary YAML users keep (`yaml`) or from
//! relaytop's own TOML (`[canary]`, `toml`).
//!
//! The engine parts are pure and take `now` (`controller`, `router`, the `plan` and its
//! notes); `setup` turns a configuration into a run (`--simulate`, `--time-scale`, the
//! connection pools); `driver` is the task that routes probes over the pools and feeds
//! outcomes to the controller; `notify` posts webhooks. Nothing here imports the terminal UI:
//! the dashboard reads a `CanaryView` and calls the driver's manual actions.

pub mod controller;
pub mod driver;
pub mod notify;
pub mod plan;
pub mod router;
pub mod setup;
pub mod toml;
pub mod view;
pub mod yaml;

pub use controller::{Canary, Decision, Outcome, Phase, Trigger, Verdict};
pub use driver::CanaryDriver;
pub use plan::{CanaryPlan, Note, NoteLevel, Role};
pub use setup::{RunOptions, limit_scale, prepare};
pub use view::{Banner, BannerKind, CanaryReport, CanaryView, ProviderTraffic};
