//! Configuration: relaytop's own TOML, the canary YAML users already have, and secrets.

pub mod secret;
