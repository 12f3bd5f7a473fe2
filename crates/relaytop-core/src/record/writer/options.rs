//! Where and how runs are recorded (`RecordOptions`), what a run says of itself (`RunMeta`),
//! and the limits of the buffers and files.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::secret::Secret;
use crate::cost::ProviderPricing;
use crate::session::SessionId;

/// A session file is rotated once it grows past this many bytes (256 MiB).
pub const DEFAULT_ROTATE_BYTES: u64 = 256 << 20;
/// How often buffered lines are written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Most bytes a session's buffer holds while the disk is behind; later lines are dropped.
pub const MAX_BUFFERED_BYTES: usize = 64 << 20;
/// A session's buffer past this size asks the writer thread for a write now instead of at
/// the next quarter second: a fast stream then writes through two buffers of about this size
/// that keep their allocation (and stay in the CPU's cache), instead of growing a fresh one of
/// tens of MiB every quarter second (`relaytop bench ingest`: docs/PERFORMANCE.md).
pub const EARLY_FLUSH_BYTES: usize = 1 << 20;

/// Where and how runs are recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    /// The directory run directories are made in.
    pub root: PathBuf,
    /// A session's file is rotated past this size (`<session>.1.jsonl`, ...).
    pub rotate_bytes: u64,
    /// Whether binary frames keep their bodies (base64) or only their length.
    pub binary_bodies: bool,
    /// Write `<session>.jsonl.gz` files (gzip, one whole member a write) instead of
    /// `.jsonl`. `rotate_bytes` then counts the lines' bytes before compression.
    pub gzip: bool,
    /// Most session files kept open at once (past it a file is written and closed at once, or
    /// takes the place of one quiet for a while: `open_files::QUIET`).
    pub open_files: usize,
    /// The process's open-files limit, when known: the files kept open are then also at most
    /// what the sessions' sockets leave of it (one a session, an eighth more for reconnects,
    /// and `RESERVED_FILES` for everything else), and at least 16.
    pub open_files_limit: Option<u64>,
}

/// Open files left for what is neither a session's socket nor its recording (logs, the
/// listener, DNS, TLS roots, the terminal).
pub const RESERVED_FILES: u64 = 256;

impl RecordOptions {
    /// How many session files a recording of `sessions` sessions keeps open.
    pub fn open_files_for(&self, sessions: usize) -> usize {
        let Some(limit) = self.open_files_limit else {
            return self.open_files;
        };
        let sockets = sessions as u64 + sessions as u64 / 8;
        let left = limit.saturating_sub(sockets + RESERVED_FILES);
        usize::try_from(left)
            .unwrap_or(usize::MAX)
            .clamp(16, self.open_files.max(16))
    }

    /// Recording under `root`, with the default rotation size and binary bodies kept.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            binary_bodies: true,
            gzip: false,
            open_files: super::open_files::DEFAULT_OPEN_FILES,
            open_files_limit: None,
        }
    }

    /// The default root: `$XDG_STATE_HOME/relaytop/recordings` (or the platform's equivalent).
    pub fn default_root() -> PathBuf {
        dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .unwrap_or_else(std::env::temp_dir)
            .join("relaytop")
            .join("recordings")
    }
}

/// What the recording of a run must know about the run.
#[derive(Clone, Debug)]
pub struct RunMeta {
    /// The run's wall-clock start (the zero of every `t_us`).
    pub started_at: DateTime<Utc>,
    /// Where the sessions came from ("default world" or a config path).
    pub source: String,
    /// Every provider's prices, by name.
    pub pricing: std::collections::BTreeMap<String, ProviderPricing>,
    /// Every secret the configuration loaded: scrubbed from everything written.
    pub secrets: Vec<Secret>,
    /// The run's objectives, so that a replay judges requests good as the run did.
    pub slo: crate::config::slo::Slos,
}

/// Which sessions a marker goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerTarget {
    All,
    Session(SessionId),
}
