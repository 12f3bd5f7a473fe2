//! `relaytop check URL`: the error playbook as a command. It walks the way from a URL to a
//! streamed answer one step at a time (the URL and its scheme, DNS, TCP, TLS with the
//! certificate, the upgrade or first request, `GET /v1/models` for the key, one short
//! completion with its time to first token, a heartbeat round trip, and with `--idle` how
//! long an idle connection survives), times each step, gives it a verdict and, when it fails,
//! the fix. The first failure ends the walk: later steps are shown as not run.
//!
//! The network steps reuse the session engine (`session::connect` for upgrades, a session
//! task for the completion, the heartbeat and the idle test), so `check` sees what a session
//! would. DNS goes through an injectable resolver and the key through an injectable
//! environment, so tests stay on loopback and never change the process environment.

mod completion;
mod first_request;
mod key;
mod network;
mod options;
mod report;
mod target;
mod tls;
mod walk;

pub use options::{CheckOptions, Env, Resolver, process_env, system_resolver};
pub use report::{CheckReport, Step, Verdict};
pub use walk::run;
