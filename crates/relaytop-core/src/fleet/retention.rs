//! An agent's recordings within a size and age budget (`--record-max-bytes`,
//! `--record-max-age`): what is past the age is deleted, then the oldest until the rest fits;
//! what is being written (the run under way's `run.json` and each session's newest file) is
//! never deleted. `plan` is the decision, pure over a listing and `now`; `scan` lists a
//! recordings root, `sweep` does both and deletes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The budget; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

impl Budget {
    pub fn is_unlimited(&self) -> bool {
        self.max_bytes.is_none() && self.max_age.is_none()
    }
}

/// Something that can be deleted: a finished run's directory, or a part of the run under
/// way that is no longer written (a rotated session file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// When it was last written.
    pub modified: SystemTime,
    pub bytes: u64,
    /// Being written now: counted, never deleted.
    pub live: bool,
}

/// What to delete, oldest first, so that what stays is within `budget` at `now`.
pub fn plan(entries: &[Entry], budget: Budget, now: SystemTime) -> Vec<PathBuf> {
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by_key(|e| e.modified);
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut out = Vec::new();
    for e in order {
        if e.live {
            continue;
        }
        let too_old = budget
            .max_age
            .is_some_and(|age| now.duration_since(e.modified).unwrap_or_default() > age);
        let too_big = budget.max_bytes.is_some_and(|max| total > max);
        if too_old || too_big {
            total = total.saturating_sub(e.bytes);
            out.push(e.path.clone());
        }
    }
    out
}

/// Lists `root`: every run directory but `current` as one entry, and `current`'s files one
/// by one (its `run.json` and each session's newest file live).
pub fn scan(root: &Path, current: Option<&Path>) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root)? {
        let dir = dir?;
        let path = dir.path();
        let meta = dir.metadata()?;
        if !meta.is_dir() {
            continue;
        }
        if current.is_some_and(|c| c == path) {
            out.extend(current_files(&path)?);
            continue;
        }
        let (bytes, modified) = size_and_newest(&path)?;
        out.push(Entry {
            path,
            modified: modified.unwrap_or_else(|| meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
            bytes,
            live: false,
        });
    }
    Ok(out)
}

/// The files of the run under way: a session's files share the stem before the first dot
/// (`s1.jsonl`, `s1.1.jsonl`…); the newest of each is live.
fn current_files(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut files = Vec::new();
    for f in std::fs::read_dir(dir)? {
        let f = f?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let name = f.file_name().to_string_lossy().into_owned();
        files.push((name, f.path(), meta.modified()?, meta.len()));
    }
    let stem = |name: &str| name.split('.').next().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    for (name, path, modified, bytes) in &files {
        let newest = files
            .iter()
            .filter(|(other, ..)| stem(other) == stem(name))
            .all(|(_, _, m, _)| m <= modified);
        out.push(Entry {
            path: path.clone(),
            modified: *modified,
            bytes: *bytes,
            live: name == "run.json" || newest,
        });
    }
    Ok(out)
}

fn size_and_newest(dir: &Path) -> std::io::Result<(u64, Option<SystemTime>)> {
    let mut bytes = 0;
    let mut newest: Option<SystemTime> = None;
    for f in std::fs::read_dir(dir)? {
        let f = f?;
        let meta = f.metadata()?;
        if meta.is_dir() {
            let (b, m) = size_and_newest(&f.path())?;
            bytes += b;
            newest = newest.max(m);
        } else {
            bytes += meta.len();
            newest = newest.max(meta.modified().ok());
        }
    }
    Ok((bytes, newest))
}

/// What a sweep deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub deleted: Vec<PathBuf>,
    pub freed_bytes: u64,
}

/// Deletes what `plan` says under `root` now.
pub fn sweep(root: &Path, current: Option<&Path>, budget: Budget) -> std::io::Result<Swept> {
    if budget.is_unlimited() || !root.is_dir() {
        return Ok(Swept::default());
    }
    let entries = scan(root, current)?;
    let mut swept = Swept::default();
    for path in plan(&entries, budget, SystemTime::now()) {
        let bytes = entries
            .iter()
            .find(|e| e.path == path)
            .map_or(0, |e| e.bytes);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {
                swept.freed_bytes += bytes;
                swept.deleted.push(path);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an old recording")
            }
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn e(name: &str, modified: u64, bytes: u64, live: bool) -> Entry {
        Entry {
            path: PathBuf::from(name),
            modified: at(modified),
            bytes,
            live,
        }
    }

    #[test]
    fn the_oldest_go_first_until_the_rest_fits() {
        let entries = [
            e("c", 300, 100, false),
            e("a", 100, 100, false),
            e("b", 200, 100, false),
            e("live", 400, 100, true),
        ];
        let budget = Budget {
            max_bytes: Some(250),
            max_age: None,
        };
        assert_eq!(
            plan(&entries, budget, at(500)),
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
    }

    #[test]
    fn what_is_past_the_age_goes_and_what_is_written_stays() {
        let entries = [
            e("old", 100, 1, false),
            e("young", 950, 1, false),
            e("live-old", 10, 1, true),
        ];
        let budget = Budget {
            max_bytes: None,
            max_age: Some(Duration::from_secs(600)),
        };
        assert_eq!(plan(&entries, budget, at(1000)), vec![PathBuf::from("old")]);
    }

    #[test]
    fn a_budget_the_live_files_exceed_deletes_everything_else_and_stops() {
        let entries = [e("a", 1, 10, false), e("live", 2, 1000, true)];
        let budget = Budget {
            max_bytes: Some(100),
            max_age: None,
        };
        assert_eq!(plan(&entries, budget, at(3)), vec![PathBuf::from("a")]);
    }

    #[test]
    fn a_sweep_deletes_old_runs_and_rotated_parts_but_not_the_newest() {
        let root = tempfile::tempdir().expect("tempdir");
        let old = root.path().join("run-old");
        std::fs::create_dir(&old).expect("mkdir");
        std::fs::write(old.join("s.jsonl"), vec![b'x'; 1000]).expect("write");
        let current = root.path().join("run-now");
        std::fs::create_dir(&current).expect("mkdir");
        std::fs::write(current.join("run.json"), b"{}").expect("write");
        std::fs::write(current.join("s.1.jsonl"), vec![b'x'; 1000]).expect("write");
        std::fs::write(current.join("s.jsonl"), b"x").expect("write");
        // The rotated part was last written before the file written now.
        let touch = |path: PathBuf, s: u64| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(s)))
                .expect("touch");
        };
        touch(old.join("s.jsonl"), 300);
        touch(current.join("s.1.jsonl"), 200);
        let swept = sweep(
            root.path(),
            Some(&current),
            Budget {
                max_bytes: Some(500),
                max_age: None,
            },
        )
        .expect("sweep");
        assert_eq!(swept.deleted.len(), 2, "{swept:?}");
        assert!(!old.exists());
        assert!(!current.join("s.1.jsonl").exists());
        assert!(current.join("s.jsonl").exists() && current.join("run.json").exists());
    }
}
