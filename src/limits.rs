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

/// How many session files a recording keeps open under an open-files limit of `limit`: a
/// sixteenth of it, at most `DEFAULT_OPEN_FILES` and at least 16 (the rest is for sockets).
pub fn recording_open_files(limit: u64) -> usize {
    let share = usize::try_from(limit / 16).unwrap_or(usize::MAX);
    if limit == 0 {
        DEFAULT_OPEN_FILES
    } else {
        share.clamp(16, DEFAULT_OPEN_FILES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recording_takes_a_small_share_of_the_limit() {
        assert_eq!(recording_open_files(0), DEFAULT_OPEN_FILES);
        assert_eq!(recording_open_files(256), 16);
        assert_eq!(recording_open_files(1024), 64);
        assert_eq!(recording_open_files(1 << 20), DEFAULT_OPEN_FILES);
    }
}
