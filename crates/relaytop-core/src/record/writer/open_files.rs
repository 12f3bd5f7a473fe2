//! The bounded set of session files kept open: the least recently written are closed past
//! the cap (a session's file is reopened in append mode when it writes again), so that
//! 10,000 recorded sessions do not hold 10,000 files open beside their 10,000 sockets.

use std::collections::{HashMap, VecDeque};

/// Files kept open by default: a few hundred, far below the open-files limits relaytop meets
/// (1,024 soft on most systems, and it raises the soft limit to the hard one at start).
pub const DEFAULT_OPEN_FILES: usize = 256;

/// The open files by key (a session's index), least recently written first.
///
/// Each write is stamped; `order` holds (key, stamp) in stamp order, and an entry whose stamp
/// is no longer its key's latest is stale and skipped. Stale entries are dropped once they
/// outnumber the live ones, so the queue stays within twice the cap (plus a little).
#[derive(Debug)]
pub(super) struct OpenFiles<T> {
    cap: usize,
    clock: u64,
    open: HashMap<usize, (u64, T)>,
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

    /// Whether `key`'s file is open.
    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.open.get_mut(&key).map(|(_, file)| file)
    }

    /// `key`'s file was written: it becomes the most recently written (`opened` is its file
    /// when it was not open). Returns the files closed to stay within the cap, least recently
    /// written first (never `key`'s).
    pub(super) fn wrote(&mut self, key: usize, opened: Option<T>) -> Vec<(usize, T)> {
        self.clock += 1;
        let stamp = self.clock;
        match (self.open.get_mut(&key), opened) {
            (Some(entry), _) => entry.0 = stamp,
            (None, Some(file)) => {
                self.open.insert(key, (stamp, file));
            }
            (None, None) => return Vec::new(),
        }
        self.order.push_back((key, stamp));
        let mut closed = Vec::new();
        while self.open.len() > self.cap {
            let Some((oldest, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.open.get(&oldest).is_some_and(|(s, _)| *s == stamp)
                && let Some((_, file)) = self.open.remove(&oldest)
            {
                closed.push((oldest, file));
            }
        }
        if self.order.len() > 2 * self.open.len() + 64 {
            let open = &self.open;
            self.order
                .retain(|(key, stamp)| open.get(key).is_some_and(|(s, _)| s == stamp));
        }
        closed
    }

    /// Takes `key`'s file out of the set (a rotation ends it), if it was open.
    pub(super) fn close(&mut self, key: usize) -> Option<T> {
        self.open.remove(&key).map(|(_, file)| file)
    }

    /// Takes every file out of the set (the end of the recording).
    pub(super) fn close_all(&mut self) -> impl Iterator<Item = (usize, T)> + '_ {
        self.order.clear();
        self.open.drain().map(|(key, (_, file))| (key, file))
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

    #[test]
    fn the_least_recently_written_are_closed_past_the_cap() {
        let mut files = OpenFiles::new(3);
        let mut opened = Vec::new();
        let mut write = |files: &mut OpenFiles<usize>, key: usize| {
            let file = files.get_mut(key).is_none().then(|| {
                opened.push(key);
                key
            });
            files
                .wrote(key, file)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert!(write(&mut files, 1).is_empty());
        assert!(write(&mut files, 2).is_empty());
        assert!(write(&mut files, 3).is_empty());
        // 1 written again: 2 is now the least recently written.
        assert!(write(&mut files, 1).is_empty());
        assert_eq!(write(&mut files, 4), vec![2]);
        assert_eq!(write(&mut files, 5), vec![3]);
        assert_eq!(files.len(), 3);
        assert!(files.get_mut(1).is_some() && files.get_mut(2).is_none());
        // 2 reopens, closing 1 (written before 4 and 5).
        assert_eq!(write(&mut files, 2), vec![1]);
        assert_eq!(opened, vec![1, 2, 3, 4, 5, 2]);
        assert_eq!(files.close(4), Some(4));
        assert_eq!(files.close(4), None);
        let mut rest: Vec<usize> = files.close_all().map(|(k, _)| k).collect();
        rest.sort_unstable();
        assert_eq!(rest, vec![2, 5]);
    }

    #[test]
    fn the_queue_stays_bounded_when_one_file_writes_all_the_time() {
        let mut files = OpenFiles::new(4);
        for key in 0..4 {
            assert!(files.wrote(key, Some(())).is_empty());
        }
        for _ in 0..10_000 {
            assert!(files.wrote(0, None).is_empty());
        }
        assert!(files.order.len() <= 2 * 4 + 64 + 1, "{}", files.order.len());
        assert_eq!(files.len(), 4);
    }
}
