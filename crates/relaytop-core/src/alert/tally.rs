//! The alerts' own per-window counts, fed from session events: good and bad requests as
//! `[slo]` judges them (`Slo::is_good`) and missed heartbeats, in 10-second buckets over the
//! last 6 hours, per scope. Bounded: at most 2,160 buckets a scope, and only the scopes the
//! rules ask for. The burn-rate rules and the goodput and heartbeat figures read them.

use std::collections::{BTreeMap, VecDeque};

use crate::config::slo::{Measured, Slos};
use crate::session::{Completed, EventKind, SessionEvent, SessionInfo};

use super::figure::{ScopeKey, ScopeKind};

/// One bucket's length.
pub const BUCKET_US: u64 = 10_000_000;
/// How far back the counts go: the slow burn-rate rule's long window.
pub const KEPT_US: u64 = 6 * 3600 * 1_000_000;
const BUCKETS: u64 = KEPT_US / BUCKET_US;

/// Counts over some stretch of time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests that met the objective's thresholds.
    pub good: u64,
    /// Requests that failed, or missed a threshold.
    pub bad: u64,
    pub heartbeats_missed: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.good += other.good;
        self.bad += other.bad;
        self.heartbeats_missed += other.heartbeats_missed;
    }

    pub fn requests(&self) -> u64 {
        self.good + self.bad
    }

    /// The share of bad requests; `None` without requests.
    pub fn bad_share(&self) -> Option<f64> {
        (self.requests() > 0).then(|| self.bad as f64 / self.requests() as f64)
    }
}

/// One scope's buckets and its whole-run count.
#[derive(Clone, Debug, Default)]
struct Series {
    buckets: VecDeque<(u64, Tally)>,
    run: Tally,
}

impl Series {
    fn add(&mut self, at_us: u64, t: &Tally) {
        let index = at_us / BUCKET_US;
        match self.buckets.back_mut() {
            Some((i, b)) if *i == index => b.add(t),
            // An event a little out of order lands in the newest bucket.
            Some((i, b)) if *i > index => b.add(t),
            _ => self.buckets.push_back((index, *t)),
        }
        while self
            .buckets
            .front()
            .is_some_and(|(i, _)| *i + BUCKETS <= index)
        {
            self.buckets.pop_front();
        }
        self.run.add(t);
    }

    fn over(&self, window_us: u64, now_us: u64) -> Tally {
        let now = now_us / BUCKET_US;
        let n = window_us.div_ceil(BUCKET_US).max(1);
        let mut sum = Tally::default();
        for (i, b) in self.buckets.iter().rev() {
            if *i + n <= now {
                break;
            }
            sum.add(b);
        }
        sum
    }
}

/// Every watched scope's counts.
#[derive(Clone, Debug, Default)]
pub struct Tallies {
    slos: Slos,
    /// Which kinds of scope are counted (all and provider always; model and session when a
    /// rule asks).
    kinds: Vec<ScopeKind>,
    series: BTreeMap<ScopeKey, Series>,
    /// Each provider's relay account, from its readings (balance and run-out alerts).
    accounts: BTreeMap<String, crate::account::AccountBook>,
}

impl Tallies {
    pub fn new(slos: Slos, mut kinds: Vec<ScopeKind>) -> Self {
        kinds.extend([ScopeKind::All, ScopeKind::Provider]);
        kinds.sort();
        kinds.dedup();
        Self {
            slos,
            kinds,
            series: BTreeMap::new(),
            accounts: BTreeMap::new(),
        }
    }

    /// The relay account of `provider`, when it was read.
    pub fn account(&self, provider: &str) -> Option<&crate::account::AccountBook> {
        self.accounts.get(provider)
    }

    /// Every relay account read.
    pub fn accounts(&self) -> impl Iterator<Item = &crate::account::AccountBook> {
        self.accounts.values()
    }

    /// Counts one event of the session `info`.
    pub fn observe(&mut self, event: &SessionEvent, info: &SessionInfo) {
        if let EventKind::Account(reading) = &event.kind {
            self.accounts
                .entry(info.provider.clone())
                .or_insert_with(|| crate::account::AccountBook::new(&info.provider))
                .on_reading(event.at_us, (**reading).clone());
            return;
        }
        let slo = self.slos.of(&info.provider);
        let t = match &event.kind {
            EventKind::Done(done) => {
                let Completed {
                    ttft_us,
                    total_us,
                    tokens,
                    cut,
                    ..
                } = &**done;
                let tpot_us = match ttft_us {
                    Some(ttft) if tokens.output >= 2 => {
                        Some(total_us.saturating_sub(*ttft) / (tokens.output - 1))
                    }
                    _ => None,
                };
                let good = slo.is_good(&Measured {
                    // A cut response is never good, however fast.
                    completed: cut.is_none(),
                    ttft_us: *ttft_us,
                    tpot_us,
                    e2e_us: *total_us,
                });
                Tally {
                    good: u64::from(good),
                    bad: u64::from(!good),
                    heartbeats_missed: 0,
                }
            }
            EventKind::RequestFailed { .. } => Tally {
                bad: 1,
                ..Tally::default()
            },
            EventKind::HeartbeatMissed { .. } => Tally {
                heartbeats_missed: 1,
                ..Tally::default()
            },
            _ => return,
        };
        for kind in &self.kinds {
            let key = ScopeKey::of(*kind, info);
            self.series.entry(key).or_default().add(event.at_us, &t);
        }
    }

    /// The counts of `scope` over the last `window_us` (`None`: the whole run).
    pub fn over(&self, scope: &ScopeKey, window_us: Option<u64>, now_us: u64) -> Tally {
        match self.series.get(scope) {
            None => Tally::default(),
            Some(s) => match window_us {
                Some(w) => s.over(w, now_us),
                None => s.run,
            },
        }
    }

    /// Whether the kind of `scope` is counted.
    pub fn counts(&self, kind: ScopeKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// The objective of `scope` (the run's, or its provider's).
    pub fn objective(&self, scope: &ScopeKey) -> f64 {
        match scope {
            ScopeKey::Provider(p) => self.slos.of(p).objective,
            _ => self.slos.default.objective,
        }
    }

    /// Error budget left over the run, as a share of the budget (1 untouched, below 0 spent).
    pub fn budget_left(&self, scope: &ScopeKey) -> Option<f64> {
        let budget = 1.0 - self.objective(scope);
        let share = self.over(scope, None, 0).bad_share()?;
        Some(1.0 - share / budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_sum_their_buckets_and_old_ones_go() {
        let mut s = Series::default();
        let one = Tally {
            bad: 1,
            ..Tally::default()
        };
        for second in 0..(7 * 3600) {
            s.add(second * 1_000_000, &one);
        }
        let now = (7 * 3600 - 1) * 1_000_000 + 500_000;
        assert!(s.buckets.len() as u64 <= BUCKETS);
        assert_eq!(s.over(60_000_000, now).bad, 60);
        assert_eq!(s.over(300_000_000, now).bad, 300);
        assert_eq!(s.run.bad, 7 * 3600);
    }
}
