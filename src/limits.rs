//! The process's open-files limit: raised to the hard limit at start (10,000 sessions need
//! 10,000 sockets), and the share of it the recorder may keep open.

use relaytop_core::record::writer::DEFAULT_OPEN_FILES;

/// Raises this process's soft open-files limit to its hard limit; returns the limit in force
/// (0 when it cannot be read).
pub fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Most session files a recording keeps open under an open-files limit of `limit`: half
/// of it, at most `MOST_OPEN_FILES`; the recorder leaves room for the sessions' sockets
/// beside them (`RecordOptions::open_files_for`). An unknown limit (0) keeps the default.
pub fn recording_open_files(limit: u64) -> (usize, Option<u64>) {
    if limit == 0 {
        return (DEFAULT_OPEN_FILES, None);
    }
    let half = usize::try_from(limit / 2).unwrap_or(usize::MAX);
    (half.clamp(16, MOST_OPEN_FILES), Some(limit))
}

/// Session files kept open at most, whatever the limit.
pub const MOST_OPEN_FILES: usize = 16_384;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recording_leaves_the_sessions_their_sockets() {
        assert_eq!(recording_open_files(0), (DEFAULT_OPEN_FILES, None));
        assert_eq!(recording_open_files(20), (16, Some(20)));
        assert_eq!(recording_open_files(20_000), (10_000, Some(20_000)));
        assert_eq!(
            recording_open_files(1 << 20),
            (MOST_OPEN_FILES, Some(1 << 20))
        );
        let options = |limit| {
            let (open_files, open_files_limit) = recording_open_files(limit);
            relaytop_core::record::RecordOptions {
                open_files,
                open_files_limit,
                ..relaytop_core::record::RecordOptions::new("rec")
            }
        };
        // 10,000 sessions under 20,000: their sockets, an eighth more, 256 for the rest.
        assert_eq!(
            options(20_000).open_files_for(10_000),
            20_000 - 11_250 - 256
        );
        // Few sessions: half the limit.
        assert_eq!(options(20_000).open_files_for(10), 10_000);
        // More sessions than the limit leaves room for: 16 still.
        assert_eq!(options(1_024).open_files_for(2_000), 16);
        assert_eq!(options(0).open_files_for(10_000), DEFAULT_OPEN_FILES);
    }
}
