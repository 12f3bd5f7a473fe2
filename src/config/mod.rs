//! Configuration: relaytop's own TOML, the canary YAML users already have, and secrets.

pub mod file;
pub mod secret;
pub mod ui;

pub use file::{Config, ConfigError, Provider};
pub use ui::UiConfig;
