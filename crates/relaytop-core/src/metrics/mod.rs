//! Metrics: the pure fold of session events into figures (`fold`), the counts it keeps
//! (`counts`), a session's figures (`session`) and a provider's (`provider`), latency metrics,
//! windows and quantiles (`latency`) over HDR histograms and sliding windows (`histogram`),
//! and per-second and per-minute time series (`series`).

mod counts;
mod fold;
mod histogram;
mod latency;
mod model;
mod provider;
mod series;
mod session;

pub use counts::*;
pub use fold::*;
pub use model::*;
pub use provider::*;
pub use session::*;
