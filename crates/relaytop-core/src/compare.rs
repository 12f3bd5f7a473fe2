//! The statistics of `relaytop compare`, pure: bounded per-relay sample reservoirs, bootstrap
//! confidence intervals on medians (seeded, so deterministic), whether two relays are
//! distinguishable and how many more samples would decide it, the ranking, and the knee (the
//! highest load level that still meets the SLO).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Samples kept per relay and load level, at most (reservoir sampling past it).
pub const RESERVOIR: usize = 10_000;
/// Bootstrap resamples.
pub const RESAMPLES: usize = 1000;

/// A bounded uniform sample of a stream of values (Vitter's algorithm R), seeded.
#[derive(Clone, Debug)]
pub struct Reservoir {
    values: Vec<f64>,
    seen: u64,
    cap: usize,
    rng: SmallRng,
}

impl Reservoir {
    pub fn new(cap: usize, seed: u64) -> Self {
        Self {
            values: Vec::new(),
            seen: 0,
            cap: cap.max(1),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.seen += 1;
        if self.values.len() < self.cap {
            self.values.push(value);
        } else {
            let j = self.rng.random_range(0..self.seen);
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| self.values.get_mut(j)) {
                *slot = value;
            }
        }
    }

    /// The samples kept.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Values seen (kept or not).
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// The `q` quantile (0..=1) of `values` by the nearest rank on a sorted copy; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(sorted_quantile(&v, q))
}

fn sorted_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// The median of `values` (the lower middle for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// p10 (the slow end of a speed), p50, p90, p99, the mean and the count of a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub count: u64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Summary {
            p10: sorted_quantile(&v, 0.1),
            p50: sorted_quantile(&v, 0.5),
            p90: sorted_quantile(&v, 0.9),
            p99: sorted_quantile(&v, 0.99),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            count: v.len() as u64,
        }
    }
}

/// A median with its bootstrap confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MedianCi {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    /// The confidence level (0.95).
    pub level: f64,
    pub samples: u64,
}

impl MedianCi {
    /// Whether the two intervals overlap.
    pub fn overlaps(&self, other: &MedianCi) -> bool {
        self.low <= other.high && other.low <= self.high
    }

    fn half_width(&self) -> f64 {
        (self.high - self.low) / 2.0
    }
}

/// The percentile bootstrap interval of the median of `values` at `level` (0.95), with
/// `resamples` resamples drawn from a generator seeded with `seed`; `None` when empty.
pub fn bootstrap_median(
    values: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<MedianCi> {
    let n = values.len();
    let median = median(values)?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut medians = Vec::with_capacity(resamples.max(1));
    let mut buffer = vec![0.0; n];
    let middle = (n - 1) / 2;
    for _ in 0..resamples.max(1) {
        for slot in buffer.iter_mut() {
            *slot = values[rng.random_range(0..n)];
        }
        let (_, m, _) = buffer.select_nth_unstable_by(middle, f64::total_cmp);
        medians.push(*m);
    }
    medians.sort_by(f64::total_cmp);
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
    Some(MedianCi {
        median,
        low: sorted_quantile(&medians, tail.max(1e-9)),
        high: sorted_quantile(&medians, 1.0 - tail),
        level,
        samples: n as u64,
    })
}

/// About how many samples per relay would make the two intervals stop overlapping, when they
/// overlap: intervals narrow as 1/√n, so with the medians `d` apart and the half-widths summing
/// to `w`, n' = n·(w/d)². `None` when the medians are equal (no number of samples decides it
/// from the interval alone) or when the intervals already do not overlap.
pub fn samples_to_decide(a: &MedianCi, b: &MedianCi) -> Option<u64> {
    if !a.overlaps(b) {
        return None;
    }
    let d = (a.median - b.median).abs();
    let w = a.half_width() + b.half_width();
    if d <= f64::EPSILON * a.median.abs().max(1.0) || w <= 0.0 {
        return None;
    }
    let n = a.samples.max(b.samples).max(1) as f64;
    let needed = (n * (w / d).powi(2) * 1.1 - 1e-6).ceil();
    Some(needed.min(1e12) as u64)
}

/// One relay in the ranking.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranked {
    /// 1 for the best; relays not distinguishable from the one above share its rank.
    pub rank: usize,
    pub relay: String,
    pub ci: MedianCi,
    /// Not distinguishable from the relay ranked just above it.
    pub tied_with_above: bool,
    /// With a tie: about how many samples per relay would decide it (`None`: the medians are
    /// equal, more samples would not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_to_decide: Option<u64>,
}

/// Ranks relays by their median (lower is better), best first; relays with no samples last.
/// A relay whose interval overlaps the one above it shares its rank.
pub fn rank(relays: &[(String, Option<MedianCi>)]) -> (Vec<Ranked>, Vec<String>) {
    let mut with: Vec<(&String, MedianCi)> = relays
        .iter()
        .filter_map(|(name, ci)| ci.map(|ci| (name, ci)))
        .collect();
    with.sort_by(|a, b| a.1.median.total_cmp(&b.1.median).then(a.0.cmp(b.0)));
    let without = relays
        .iter()
        .filter(|(_, ci)| ci.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    let mut out: Vec<Ranked> = Vec::new();
    for (i, (name, ci)) in with.iter().enumerate() {
        let above = i.checked_sub(1).and_then(|j| with.get(j));
        let tied = above.is_some_and(|(_, a)| a.overlaps(ci));
        let rank = match (tied, out.last()) {
            (true, Some(last)) => last.rank,
            _ => i + 1,
        };
        out.push(Ranked {
            rank,
            relay: (*name).clone(),
            ci: *ci,
            tied_with_above: tied,
            samples_to_decide: if tied {
                above.and_then(|(_, a)| samples_to_decide(a, ci))
            } else {
                None
            },
        });
    }
    (out, without)
}

/// Whether one load level met the SLO: its share of good requests against the objective,
/// with at least `min_samples` finished requests.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LevelOutcome {
    pub load: f64,
    pub good_rate: f64,
    pub finished: u64,
}

/// The knee: the highest load whose level met `objective` (good share at least it, over at
/// least `min_samples` finished requests), with every lower level meeting it too. `None` when
/// even the lowest level did not.
pub fn knee(levels: &[LevelOutcome], objective: f64, min_samples: u64) -> Option<f64> {
    let mut sorted: Vec<&LevelOutcome> = levels.iter().collect();
    sorted.sort_by(|a, b| a.load.total_cmp(&b.load));
    let mut best = None;
    for level in sorted {
        if level.finished >= min_samples.max(1) && level.good_rate >= objective {
            best = Some(level.load);
        } else {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalish(seed: u64, n: usize, centre: f64, spread: f64) -> Vec<f64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let u: f64 = (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0;
                centre + spread * u
            })
            .collect()
    }

    #[test]
    fn compare_bootstrap_is_deterministic_and_covers_the_median() {
        let v = normalish(1, 400, 100.0, 10.0);
        let a = bootstrap_median(&v, RESAMPLES, 0.95, 7).unwrap();
        let b = bootstrap_median(&v, RESAMPLES, 0.95, 7).unwrap();
        assert_eq!(a, b);
        assert!(a.low <= a.median && a.median <= a.high, "{a:?}");
        assert!(a.low > 97.0 && a.high < 103.0, "{a:?}");
        // Wider with fewer samples.
        let small = bootstrap_median(&v[..40], RESAMPLES, 0.95, 7).unwrap();
        assert!(small.high - small.low > a.high - a.low);
        assert!(bootstrap_median(&[], 10, 0.95, 1).is_none());
    }

    #[test]
    fn compare_ranking_separates_distinct_relays_and_ties_identical_ones() {
        let fast = bootstrap_median(&normalish(2, 300, 180.0, 30.0), RESAMPLES, 0.95, 1);
        let slow = bootstrap_median(&normalish(3, 300, 420.0, 80.0), RESAMPLES, 0.95, 1);
        let (ranked, none) = rank(&[
            ("legacy".into(), slow),
            ("holysheep".into(), fast),
            ("down".into(), None),
        ]);
        assert_eq!(none, vec!["down".to_owned()]);
        assert_eq!(ranked[0].relay, "holysheep");
        assert_eq!((ranked[0].rank, ranked[1].rank), (1, 2));
        assert!(!ranked[1].tied_with_above);

        let a = bootstrap_median(&normalish(4, 100, 200.0, 40.0), RESAMPLES, 0.95, 1);
        let b = bootstrap_median(&normalish(5, 100, 201.0, 40.0), RESAMPLES, 0.95, 1);
        let (ranked, _) = rank(&[("a".into(), a), ("b".into(), b)]);
        assert!(ranked[1].tied_with_above);
        assert_eq!(ranked[1].rank, 1);
        let more = ranked[1].samples_to_decide.unwrap();
        assert!(more > 100, "{more}");
    }

    #[test]
    fn compare_samples_to_decide_scales_with_the_gap() {
        let a = MedianCi {
            median: 100.0,
            low: 90.0,
            high: 110.0,
            level: 0.95,
            samples: 100,
        };
        let b = MedianCi {
            median: 110.0,
            low: 100.0,
            high: 120.0,
            level: 0.95,
            samples: 100,
        };
        // w = 20, d = 10: 4× the samples, plus a tenth.
        assert_eq!(samples_to_decide(&a, &b), Some(440));
        assert_eq!(samples_to_decide(&a, &a), None);
        let far = MedianCi {
            median: 200.0,
            low: 190.0,
            high: 210.0,
            ..b
        };
        assert_eq!(samples_to_decide(&a, &far), None);
    }

    #[test]
    fn compare_knee_is_the_highest_level_meeting_the_slo_from_below() {
        let l = |load, good_rate, finished| LevelOutcome {
            load,
            good_rate,
            finished,
        };
        let levels = [
            l(8.0, 0.80, 100),
            l(1.0, 1.0, 50),
            l(2.0, 0.995, 80),
            l(4.0, 0.99, 90),
        ];
        assert_eq!(knee(&levels, 0.99, 10), Some(4.0));
        assert_eq!(knee(&levels, 0.999, 10), Some(1.0));
        assert_eq!(knee(&[l(1.0, 0.5, 50)], 0.99, 10), None);
        // Too few samples at a level stops the climb.
        assert_eq!(
            knee(&[l(1.0, 1.0, 50), l(2.0, 1.0, 3)], 0.99, 10),
            Some(1.0)
        );
    }

    #[test]
    fn compare_reservoir_is_bounded() {
        let mut r = Reservoir::new(100, 3);
        for i in 0..10_000 {
            r.push(i as f64);
        }
        assert_eq!(r.values().len(), 100);
        assert_eq!(r.seen(), 10_000);
        let s = Summary::of(r.values());
        assert!(s.p50 > 2000.0 && s.p50 < 8000.0, "{s:?}");
        assert_eq!(Summary::of(&[1.0, 2.0, 3.0, 4.0]).p50, 2.0);
    }
}
