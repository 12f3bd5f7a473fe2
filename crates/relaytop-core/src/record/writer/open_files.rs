//! The bounded set of session files kept open: past the cap a file is written and closed at
//! once, unless the least recently written one has been quiet for `QUIET` (then that one is
//! closed instead, and reopened in append mode when it writes again). So 10,000 recorded
//! sessions do not hold 10,000 files open beside their 10,000 sockets, and sessions that all
//! write in turn (heartbeats) keep the files they have open instead of closing each other's.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Files kept open by default: a few hundred, far below the open-files limits relaytop meets
/// (1,024 soft on most systems, and it raises the soft limit to the hard one at start).
pub const DEFAULT_OPEN_FILES: usize = 256;

/// How long the least recently written file must have been quiet before a new one takes its
/// place. Least-recently-written alone closes every file under sessions writing in turn (N
/// sessions heartbeating, more than the cap: each write would open and close a file); past
/// the cap, files that are written keep their place, and one quiet this long gives it up.
pub const QUIET: Duration = Duration::from_secs(120);

/// The open files by key (a session's index), least recently written first.
///
/// Each write is stamped; `order` holds (key, stamp) in stamp order, and an entry whose stamp
/// is no longer its key's latest is stale and skipped. Stale entries are dropped once they
/// outnumber the live ones, so the queue stays within twice the cap (plus a little).
#[derive(Debug)]
pub(super) struct OpenFiles<T> {
    cap: usize,
    clock: u64,
    /// Per key: its latest stamp, when it was last written, its file.
    open: HashMap<usize, (u64, Duration, T)>,
    order: VecDeque<(usize, u64)>,
}

impl<T> OpenFiles<T> {
    /// At most `cap` files open (at least one).
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            clock: 0,
            open: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// At most `cap` files open from now on (at least one); the next write closes the least
    /// recently written past it.
    pub(super) fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
    }

    /// Whether `key`'s file is open.
    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.open.get_mut(&key).map(|(_, _, file)| file)
    }

    /// `key`'s file was written at `now`: it becomes the most recently written (`opened` is
    /// its file when it was not open). Returns the files to close, least recently written
    /// first: those past the cap, or `key`'s own just opened when the set is full of files
    /// written within `QUIET`.
    pub(super) fn wrote(
        &mut self,
        key: usize,
        opened: Option<T>,
        now: Duration,
    ) -> Vec<(usize, T)> {
        let mut closed = Vec::new();
        match (self.open.get_mut(&key), opened) {
            (Some(entry), _) => {
                self.clock += 1;
                (entry.0, entry.1) = (self.clock, now);
            }
            (None, Some(file)) => {
                if self.open.len() >= self.cap {
                    match self.least_recent() {
                        Some((_, written)) if now.saturating_sub(written) >= QUIET => {
                            closed.extend(self.close_least_recent());
                        }
                        _ => {
                            closed.push((key, file));
                            return closed;
                        }
                    }
                }
                self.clock += 1;
                self.open.insert(key, (self.clock, now, file));
            }
            (None, None) => return closed,
        }
        self.order.push_back((key, self.clock));
        while self.open.len() > self.cap {
            let Some(file) = self.close_least_recent() else {
                break;
            };
            closed.push(file);
        }
        if self.order.len() > 2 * self.open.len() + 64 {
            let open = &self.open;
            self.order
                .retain(|(key, stamp)| open.get(key).is_some_and(|(s, _, _)| s == stamp));
        }
        closed
    }

    /// The least recently written open file: its key and when it was written (stale queue
    /// entries in front are dropped on the way).
    fn least_recent(&mut self) -> Option<(usize, Duration)> {
        while let Some(&(key, stamp)) = self.order.front() {
            match self.open.get(&key) {
                Some(&(s, written, _)) if s == stamp => return Some((key, written)),
                _ => {
                    self.order.pop_front();
                }
            }
        }
        None
    }

    /// Takes the least recently written file out of the set.
    fn close_least_recent(&mut self) -> Option<(usize, T)> {
        let (key, _) = self.least_recent()?;
        self.order.pop_front();
        self.open.remove(&key).map(|(_, _, file)| (key, file))
    }

    /// Takes `key`'s file out of the set (a rotation ends it), if it was open.
    pub(super) fn close(&mut self, key: usize) -> Option<T> {
        self.open.remove(&key).map(|(_, _, file)| file)
    }

    /// Takes every file out of the set (the end of the recording).
    pub(super) fn close_all(&mut self) -> impl Iterator<Item = (usize, T)> + '_ {
        self.order.clear();
        self.open.drain().map(|(key, (_, _, file))| (key, file))
    }

    /// How many are open.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Writes `key` at `now` (opening its file when closed); the keys closed.
    fn write(
        files: &mut OpenFiles<usize>,
        opened: &mut Vec<usize>,
        key: usize,
        now: Duration,
    ) -> Vec<usize> {
        let file = files.get_mut(key).is_none().then(|| {
            opened.push(key);
            key
        });
        files
            .wrote(key, file, now)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn past_the_cap_the_least_recently_written_goes_once_it_is_quiet() {
        let mut files = OpenFiles::new(3);
        let mut opened = Vec::new();
        let t = Duration::ZERO;
        assert!(write(&mut files, &mut opened, 1, t).is_empty());
        assert!(write(&mut files, &mut opened, 2, t).is_empty());
        assert!(write(&mut files, &mut opened, 3, t).is_empty());
        // 1 written again: 2 is now the least recently written.
        assert!(write(&mut files, &mut opened, 1, t + S).is_empty());
        // Full of files written within QUIET: 4 is written and closed at once.
        assert_eq!(write(&mut files, &mut opened, 4, t + 2 * S), vec![4]);
        assert_eq!(files.len(), 3);
        // 2 has been quiet for QUIET: 5 takes its place.
        let later = QUIET + S;
        assert_eq!(write(&mut files, &mut opened, 5, later), vec![2]);
        assert_eq!(write(&mut files, &mut opened, 6, later), vec![3]);
        assert_eq!(files.len(), 3);
        assert!(files.get_mut(1).is_some() && files.get_mut(2).is_none());
        // 2 reopens, closing 1 (quiet since t + 1 s).
        assert_eq!(write(&mut files, &mut opened, 2, QUIET + 2 * S), vec![1]);
        assert_eq!(opened, vec![1, 2, 3, 4, 5, 6, 2]);
        assert_eq!(files.close(5), Some(5));
        assert_eq!(files.close(5), None);
        let mut rest: Vec<usize> = files.close_all().map(|(k, _)| k).collect();
        rest.sort_unstable();
        assert_eq!(rest, vec![2, 6]);
    }

    #[test]
    fn sessions_writing_in_turn_keep_the_files_they_have_open() {
        // 10 sessions heartbeating in turn, 4 files allowed: the first 4 stay open, the other
        // 6 open and close at each write (least-recently-written would open and close all 10).
        let mut files = OpenFiles::new(4);
        let mut opened = Vec::new();
        for round in 0..20u32 {
            for key in 0..10 {
                let now = S * (round * 10 + key as u32);
                let closed = write(&mut files, &mut opened, key, now);
                assert_eq!(
                    closed.is_empty(),
                    key < 4,
                    "round {round} key {key}: {closed:?}"
                );
            }
        }
        assert_eq!(opened.iter().filter(|&&k| k < 4).count(), 4);
        assert_eq!(opened.len(), 4 + 20 * 6);
    }

    #[test]
    fn a_lower_cap_closes_the_least_recently_written_at_the_next_write() {
        let mut files = OpenFiles::new(4);
        let mut opened = Vec::new();
        for key in 0..4 {
            assert!(write(&mut files, &mut opened, key, S * key as u32).is_empty());
        }
        files.set_cap(2);
        assert_eq!(write(&mut files, &mut opened, 3, 5 * S), vec![0, 1]);
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn the_queue_stays_bounded_when_one_file_writes_all_the_time() {
        let mut files = OpenFiles::new(4);
        for key in 0..4 {
            assert!(files.wrote(key, Some(()), Duration::ZERO).is_empty());
        }
        for i in 0..10_000u32 {
            assert!(
                files
                    .wrote(0, None, Duration::from_millis(u64::from(i)))
                    .is_empty()
            );
        }
        assert!(files.order.len() <= 2 * 4 + 64 + 1, "{}", files.order.len());
        assert_eq!(files.len(), 4);
    }
}
