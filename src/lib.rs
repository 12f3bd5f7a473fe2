//! relaytop: a terminal monitor for AI-API relay stations. This library is the binary's run
//! modes (headless, agent, check, alert test, export, replay headless and against, bench, starting from a URL
//! or the environment); the engine is
//! `relaytop_core`, the simulator `relaytop_sim`, the screen `relaytop_tui`.

pub mod against;
pub mod agent;
pub mod alert_cmd;
pub mod bench;
pub mod check;
pub mod compare;
pub mod exit;
pub mod export;
pub mod headless;
// libc: the open-files limit.
#[allow(unsafe_code)]
pub mod limits;
pub mod replay_headless;
pub mod start;
