//! The fleet: many relaytops (agents) in many places, with Prometheus as their engine.
//!
//! `rules` turns a configuration's `[[alerts]]` and `[slo]` into Prometheus alerting and
//! recording rules; `promql` asks a Prometheus server for what the fleet sees (the fleet
//! view); `retention` keeps an agent's recordings within a size and age budget; `reload`
//! says which sessions a new configuration keeps, starts and stops (SIGHUP). The pure parts
//! take `now` and data, never the clock or the network.

pub mod promql;
pub mod reload;
pub mod retention;
pub mod rules;
