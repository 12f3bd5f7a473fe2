//! Metrics: the pure fold of session events into figures (`fold`), latency histograms over
//! sliding windows (`latency`) and per-second and per-minute time series (`series`).

mod fold;
mod latency;
mod series;

pub use fold::*;
