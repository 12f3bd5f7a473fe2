//! relaytop's own logs: a rolling file through tracing-appender, never the terminal.
//!
//! The TUI owns the terminal, so logs always go to a file (daily rotation, a week kept) under
//! the XDG state directory, at the level `RUST_LOG` asks for (default `relaytop=info`).

use std::path::PathBuf;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Where logs go: `$XDG_STATE_HOME/relaytop/logs` (or the platform's equivalent).
pub fn log_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .unwrap_or_else(std::env::temp_dir)
        .join("relaytop")
        .join("logs")
}

/// Starts file logging. Keep the guard alive until exit so the last lines are written.
/// Returns `None` (and logs nothing) when the directory cannot be created.
pub fn init(dir: Option<PathBuf>) -> Option<(WorkerGuard, PathBuf)> {
    let dir = dir.unwrap_or_else(log_dir);
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("relaytop")
        .filename_suffix("log")
        .max_log_files(7)
        .build(&dir)
        .ok()?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("relaytop=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init()
        .ok()?;
    Some((guard, dir))
}
