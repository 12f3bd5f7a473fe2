//! The exit statuses of `relaytop` (one place; README "Exit status" and `relaytop headless
//! --help` list the same table).
//!
//! A headless run that printed its summary exits with the first of these that applies, in
//! this order: a session refused for its key or quota (3: stopped, or still refused and
//! re-checked at the end), every session down at the end (4),
//! the recording failed (5); else 0. Errors that stop relaytop before it can run (a bad
//! configuration, a file that cannot be read) exit 1, and a bad command line 2 (clap).

use std::process::ExitCode;

/// Everything went as asked.
pub const OK: u8 = 0;
/// relaytop could not do what was asked (the message on stderr says why).
pub const ERROR: u8 = 1;
/// The command line is wrong (clap's own status).
pub const USAGE: u8 = 2;
/// At least one session stopped because of its key or its quota (401, 403, close 1008, an
/// exhausted quota): retrying cannot help until the key or the account is fixed.
pub const SESSIONS_STOPPED_AUTH_OR_QUOTA: u8 = 3;
/// Every session was down when the run ended (stopped, backing off or still connecting).
pub const ALL_SESSIONS_DOWN: u8 = 4;
/// The recording failed (a full disk): the summary is whole, the recording partial.
pub const RECORDING_FAILED: u8 = 5;

/// The table, as `relaytop headless --help` prints it.
pub const TABLE: &str = "Exit status:
  0  the run ended and every session was fine
  1  relaytop could not run (bad configuration, unreadable file; the message says why)
  2  bad command line
  3  a session was refused for its key or quota (401, 403, close 1008, quota exhausted)
  4  every session was down at the end (stopped, backing off or connecting)
  5  the recording failed (disk full); the summary is whole, the recording partial
When several apply, the lowest of 3, 4, 5 is the status.";

/// How a headless run ended, for its exit status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStatus {
    /// Sessions stopped for their key or quota, by name.
    pub stopped_auth_or_quota: Vec<String>,
    /// Every session was down at the end (false when there were none).
    pub all_down: bool,
    /// Why the recording failed, when it did.
    pub recording_failed: Option<String>,
}

impl RunStatus {
    /// The exit status: see the module's table.
    pub fn code(&self) -> u8 {
        if !self.stopped_auth_or_quota.is_empty() {
            SESSIONS_STOPPED_AUTH_OR_QUOTA
        } else if self.all_down {
            ALL_SESSIONS_DOWN
        } else if self.recording_failed.is_some() {
            RECORDING_FAILED
        } else {
            OK
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_that_applies_is_the_status() {
        let mut status = RunStatus::default();
        assert_eq!(status.code(), OK);
        status.recording_failed = Some("disk full".into());
        assert_eq!(status.code(), RECORDING_FAILED);
        status.all_down = true;
        assert_eq!(status.code(), ALL_SESSIONS_DOWN);
        status.stopped_auth_or_quota.push("probe-1".into());
        assert_eq!(status.code(), SESSIONS_STOPPED_AUTH_OR_QUOTA);
    }

    #[test]
    fn the_table_names_every_code() {
        for code in [
            OK,
            ERROR,
            USAGE,
            SESSIONS_STOPPED_AUTH_OR_QUOTA,
            ALL_SESSIONS_DOWN,
            RECORDING_FAILED,
        ] {
            assert!(TABLE.contains(&format!("\n  {code}  ")), "{code}");
        }
    }
}
