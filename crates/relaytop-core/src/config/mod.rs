//! Configuration: relaytop's own TOML, the canary YAML users already have, secrets, and the
//! profiles simulated relays are described by (`sim_profile`; relaytop-sim plays them), and a
//! station's addresses (`station`: one base URL, every protocol's endpoint).

pub mod file;
pub mod secret;
pub mod sim_profile;
pub mod slo;
pub mod starter;
pub mod station;
pub mod ui;

pub use file::{Config, ConfigError, Provider};
pub use ui::UiConfig;
