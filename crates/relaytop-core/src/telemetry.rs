//! relaytop's own logs: a rolling file through tracing-appender, never the terminal.
//!
//! The TUI owns the terminal, so logs always go to a file (daily rotation, a week kept) under
//! the XDG state directory, at the level `RUST_LOG` asks for (default `relaytop=info`).
//!
//! Every line is scrubbed of the keys relaytop holds (`Secret`s register themselves here)
//! before it is written: dependencies log what they send at trace level (tungstenite the whole
//! upgrade request, `Authorization` included), and `RUST_LOG=trace` must not put a key on disk.

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

/// Log lines queued for the log writer thread, at most.
const LOG_QUEUE_LINES: usize = 4_096;

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
    // tracing-appender's default queue holds 128,000 lines and is allocated (and zeroed) up
    // front: tens of milliseconds at every start. relaytop logs a few lines a second; past
    // this many queued (a `RUST_LOG=trace` burst) lines are dropped rather than a session
    // made to wait for the disk.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .finish(appender);
    let writer = Scrubbing(writer);
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

/// Keys longer than this are scrubbed from the logs (shorter ones would garble every line).
const MIN_SCRUBBED_LEN: usize = 6;
/// The most keys remembered; a run has a handful (one per provider).
const MAX_SCRUBBED: usize = 256;

static SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Makes sure `value` (a key) never appears in a log line. Called by `Secret::new`.
pub fn scrub_from_logs(value: &str) {
    if value.len() < MIN_SCRUBBED_LEN {
        return;
    }
    if let Ok(mut secrets) = SECRETS.write()
        && !secrets.iter().any(|s| s == value)
        && secrets.len() < MAX_SCRUBBED
    {
        secrets.push(value.to_owned());
    }
}

/// `bytes` with every registered key replaced by `[REDACTED]`.
pub fn scrub(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let Ok(secrets) = SECRETS.read() else {
        return std::borrow::Cow::Borrowed(bytes);
    };
    let mut out = std::borrow::Cow::Borrowed(bytes);
    for secret in secrets.iter() {
        let finder = memchr::memmem::Finder::new(secret.as_bytes());
        if finder.find(&out).is_none() {
            continue;
        }
        let mut scrubbed = Vec::with_capacity(out.len());
        let mut rest: &[u8] = &out;
        while let Some(i) = finder.find(rest) {
            scrubbed.extend_from_slice(&rest[..i]);
            scrubbed.extend_from_slice(crate::config::secret::REDACTED.as_bytes());
            rest = &rest[i + secret.len()..];
        }
        scrubbed.extend_from_slice(rest);
        out = std::borrow::Cow::Owned(scrubbed);
    }
    out
}

/// A log writer that scrubs keys out of each line (the fmt layer writes a line at a time).
#[derive(Clone)]
struct Scrubbing<W>(W);

impl<W: std::io::Write> std::io::Write for Scrubbing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&scrub(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a, W: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for Scrubbing<W>
{
    type Writer = Scrubbing<W::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        Scrubbing(self.0.make_writer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_keys_are_scrubbed_from_log_lines() {
        let key = "hs_live_TELEMETRYscrub0001";
        scrub_from_logs(key);
        scrub_from_logs("abc");
        let line =
            format!("Request: \"GET / HTTP/1.1\\r\\nauthorization: Bearer {key}\\r\\n{key}\"");
        let out = scrub(line.as_bytes());
        let out = String::from_utf8_lossy(&out);
        assert!(!out.contains(key), "{out}");
        assert_eq!(out.matches("[REDACTED]").count(), 2, "{out}");
        assert!(matches!(
            scrub(b"abc nothing"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
