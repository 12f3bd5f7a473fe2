//! What a configuration reload (SIGHUP to `relaytop agent`) does to the running sessions:
//! sessions whose spec did not change keep running (their connections, counters and
//! recordings untouched), new ones start, removed or changed ones stop (a changed one is
//! stopped and started anew). Sessions are matched by name and compared by a fingerprint
//! of everything that makes them (`fingerprint`).

use crate::session::SessionSpec;

/// A session as a reload compares it: its name and its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub name: String,
    pub fingerprint: String,
}

/// What a reload does, by index into the old and the new lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// (old, new): the same session, left running.
    pub keep: Vec<(usize, usize)>,
    /// New sessions (or changed ones) to start.
    pub start: Vec<usize>,
    /// Old sessions (removed or changed) to stop.
    pub stop: Vec<usize>,
}

impl ReloadPlan {
    /// Whether the reload changes nothing.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty()
    }

    /// "2 kept, 1 started, 1 stopped".
    pub fn describe(&self) -> String {
        format!(
            "{} kept, {} started, {} stopped",
            self.keep.len(),
            self.start.len(),
            self.stop.len()
        )
    }
}

/// Compares the running sessions (`old`; `None` for the ones already stopped) with the new
/// configuration's.
pub fn diff(old: &[Option<Known>], new: &[Known]) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    let mut taken = vec![false; new.len()];
    for (i, o) in old.iter().enumerate() {
        let Some(o) = o else { continue };
        let same = new
            .iter()
            .enumerate()
            .find(|(j, n)| !taken[*j] && n.name == o.name && n.fingerprint == o.fingerprint);
        match same {
            Some((j, _)) => {
                taken[j] = true;
                plan.keep.push((i, j));
            }
            None => plan.stop.push(i),
        }
    }
    plan.start = (0..new.len()).filter(|j| !taken[*j]).collect();
    plan
}

/// Everything that makes a session, but its id and recorder: its identity (provider, model,
/// protocol, URL), key, auth, workload and timing. The key is hashed, never kept.
pub fn fingerprint(spec: &SessionSpec) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut info = spec.info.clone();
    info.id = 0;
    let mut key = std::collections::hash_map::DefaultHasher::new();
    spec.api_key
        .as_ref()
        .map(crate::config::secret::Secret::expose)
        .hash(&mut key);
    format!(
        "{info:?}|{:x}|{:?}|{:?}|{:?}",
        key.finish(),
        spec.auth,
        spec.workload,
        spec.timing
    )
}

/// The reload's view of specs.
pub fn known(specs: &[SessionSpec]) -> Vec<Known> {
    specs
        .iter()
        .map(|s| Known {
            name: s.info.name.clone(),
            fingerprint: fingerprint(s),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str, f: &str) -> Known {
        Known {
            name: name.into(),
            fingerprint: f.into(),
        }
    }

    #[test]
    fn unchanged_sessions_are_kept_added_start_removed_and_changed_stop() {
        let old = [
            Some(k("a", "1")),
            Some(k("b", "1")),
            Some(k("c", "1")),
            None,
        ];
        let new = [k("a", "1"), k("c", "2"), k("d", "1")];
        let plan = diff(&old, &new);
        assert_eq!(plan.keep, vec![(0, 0)]);
        assert_eq!(plan.stop, vec![1, 2]);
        assert_eq!(plan.start, vec![1, 2]);
        assert_eq!(plan.describe(), "1 kept, 2 started, 2 stopped");
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let old = [Some(k("a", "1")), Some(k("b", "2"))];
        let new = [k("a", "1"), k("b", "2")];
        let plan = diff(&old, &new);
        assert!(plan.is_empty());
        assert_eq!(plan.keep, vec![(0, 0), (1, 1)]);
    }
}
