//! The fault matrix of docs/RELIABILITY.md: one test per fault, against the simulator, the
//! fault-injection proxy (tests/support/proxy.rs) or a hand-made relay (tests/support/rogue.rs)
//! for what the simulator cannot do. Every row asserts that the session task did not panic,
//! the state it ends in, concrete event counts, what the user is told (the error, close,
//! backoff or stop text), and that the session's recording replays to exactly the events the
//! live session reported.
//!
//! Loopback only; names resolve through an injected resolver. Every wait is bounded.

mod case;

mod absurd_numbers;
mod against_simulator;
mod echoes_and_kinds;
mod hand_made_relay;
mod keep_watching;
mod names;
mod other_transports;
mod run_endings;
mod through_proxy;
mod upgrades;
