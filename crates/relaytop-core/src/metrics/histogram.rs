//! Histograms: an HDR histogram with an exact count, sum and maximum beside it (whole, or
//! packed to the buckets that hold samples), and the sliding window made of time-sliced ones,
//! merged on query. How precise each is (`Precision`) bounds its size.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

use hdrhistogram::{Counter, Histogram};

use super::latency::{MAX_SAMPLE_US, Quantiles};

/// How precise a histogram is, and so how big.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Precision {
    /// The lowest discernible value: the resolution below `lowest_us * 2^(digits)`.
    lowest_us: u64,
    /// Significant decimal digits kept.
    digits: u8,
}

/// Providers: microseconds, 3 significant figures (0.1 %).
pub(crate) const PROVIDER_PRECISION: Precision = Precision {
    lowest_us: 1,
    digits: 3,
};

/// Sessions: 2 significant figures (under 1 %), half-millisecond steps below 131 ms.
pub(crate) const SESSION_PRECISION: Precision = Precision {
    lowest_us: 512,
    digits: 2,
};

// What `Histogram::new_with_bounds` requires, checked at compile time.
const _: () = {
    assert!(PROVIDER_PRECISION.lowest_us >= 1 && PROVIDER_PRECISION.digits <= 5);
    assert!(SESSION_PRECISION.lowest_us >= 1 && SESSION_PRECISION.digits <= 5);
    assert!(MAX_SAMPLE_US >= 2 * SESSION_PRECISION.lowest_us);
};

/// An HDR histogram with an exact sum and maximum beside it.
#[derive(Clone, Debug)]
pub(crate) struct Recorded<T: Counter> {
    counts: Store<T>,
    precision: Precision,
    sum_us: u64,
    max_us: u64,
}

/// Samples a histogram keeps as they came before it becomes an HDR histogram: a session
/// probing once a minute, or a slice of a window, holds a few samples in a few hundred bytes,
/// not an HDR histogram's 0.5 to 2 KiB each (`relaytop bench scale`: memory per session).
const FEW: usize = 16;

/// How a histogram's counts are held: a few samples as they came (each value and its count,
/// at most `FEW`; the HDR histogram they make is built when read whole, and they answer
/// quantiles exactly as it would), whole (an HDR histogram, ready to record into), or packed (only
/// the buckets that hold samples, and the range the whole one covered: what a replay
/// checkpoint keeps, a few KiB instead of tens). A packed histogram reads the same; changing
/// it unpacks it first.
#[derive(Clone, Debug)]
enum Store<T: Counter> {
    Few(Vec<(u64, T)>),
    /// Boxed, not shared: a record is on the hot path (every inter-token gap lands in up to
    /// 18 of them), and a shared one's copy-on-write check is an atomic operation per record
    /// (7 % of a replay's folding, issue #22). Copies are made for checkpoints, packed.
    Whole(Box<Histogram<T>>),
    Packed {
        /// The whole histogram's highest trackable value (so unpacking gives its size back).
        high: u64,
        buckets: Buckets<T>,
    },
}

/// The buckets of a packed histogram that hold samples, in the smaller of two forms. Shared:
/// copies of a packed histogram (a checkpoint restored) cost nothing.
#[derive(Clone, Debug)]
enum Buckets<T: Counter> {
    /// Each bucket with samples: a value in it, and its count; lowest first (a few samples
    /// spread out: a slice of a window).
    Sparse(Arc<[(u64, T)]>),
    /// Every bucket from the one holding `first` to the highest with samples, in order (many
    /// samples close together: a whole run's).
    Dense { first: u64, counts: Arc<[T]> },
}

impl<T: Counter> Recorded<T> {
    pub(crate) fn new(precision: Precision) -> Self {
        Self {
            counts: Store::Few(Vec::new()),
            precision,
            sum_us: 0,
            max_us: 0,
        }
    }

    fn empty(precision: Precision, high: u64) -> Histogram<T> {
        let mut hist = Histogram::new_with_bounds(
            precision.lowest_us,
            high.max(2 * precision.lowest_us),
            precision.digits,
        )
        .expect("bounds checked at compile time: lowest >= 1, high >= 2 * lowest, digits <= 5");
        // Grows to the largest sample seen (at most MAX_SAMPLE_US), and no further.
        hist.auto(true);
        hist
    }

    /// The counts as a whole histogram (built, when packed).
    fn whole(&self) -> std::borrow::Cow<'_, Histogram<T>> {
        match &self.counts {
            Store::Few(samples) => {
                let high = samples.iter().map(|&(v, _)| v).max().unwrap_or(0);
                let mut hist = Self::empty(self.precision, high);
                for &(value, count) in samples {
                    if hist.record_n(value, count).is_err() {
                        hist.saturating_record_n(value, count);
                    }
                }
                std::borrow::Cow::Owned(hist)
            }
            Store::Whole(hist) => std::borrow::Cow::Borrowed(&**hist),
            Store::Packed { high, buckets } => {
                let mut hist = Self::empty(self.precision, *high);
                let put = |hist: &mut Histogram<T>, value: u64, count: T| {
                    if count.as_u64() != 0 && hist.record_n(value, count).is_err() {
                        hist.saturating_record_n(value, count);
                    }
                };
                match buckets {
                    Buckets::Sparse(buckets) => {
                        for &(value, count) in buckets.iter() {
                            put(&mut hist, value, count);
                        }
                    }
                    Buckets::Dense { first, counts } => {
                        let mut value = *first;
                        for &count in counts.iter() {
                            put(&mut hist, value, count);
                            value = hist.next_non_equivalent(value);
                        }
                    }
                }
                std::borrow::Cow::Owned(hist)
            }
        }
    }

    /// The counts as a whole histogram to change (unpacked first, when packed).
    fn hist_mut(&mut self) -> &mut Histogram<T> {
        if !matches!(self.counts, Store::Whole(_)) {
            self.counts = Store::Whole(Box::new(self.whole().into_owned()));
        }
        match &mut self.counts {
            Store::Whole(hist) => hist,
            Store::Few(_) | Store::Packed { .. } => unreachable!("made whole just above"),
        }
    }

    fn is_empty(&self) -> bool {
        match &self.counts {
            Store::Few(samples) => samples.is_empty(),
            Store::Whole(hist) => hist.is_empty(),
            Store::Packed { buckets, .. } => match buckets {
                Buckets::Sparse(b) => b.is_empty(),
                Buckets::Dense { counts, .. } => counts.is_empty(),
            },
        }
    }

    /// A copy holding only the buckets with samples (see `Store`).
    pub(crate) fn packed(&self) -> Self {
        let counts = match &self.counts {
            Store::Few(samples) => Store::Few(samples.clone()),
            Store::Whole(hist) => Store::Packed {
                high: hist.high(),
                buckets: pack(hist),
            },
            packed @ Store::Packed { .. } => packed.clone(),
        };
        Self {
            counts,
            precision: self.precision,
            sum_us: self.sum_us,
            max_us: self.max_us,
        }
    }

    #[cfg(test)]
    pub(crate) fn record(&mut self, value_us: u64) {
        self.record_n(value_us, 1);
    }

    /// `n` samples of `value_us`.
    pub(crate) fn record_n(&mut self, value_us: u64, n: u64) {
        if n == 0 {
            return;
        }
        let v = value_us.min(MAX_SAMPLE_US);
        // A count past the counter's range (a session's 16-bit slices) counts as its most.
        let count = <T as num_traits::FromPrimitive>::from_u64(n)
            .or_else(|| <T as num_traits::FromPrimitive>::from_u16(u16::MAX))
            .unwrap_or_else(T::one);
        self.sum_us = self.sum_us.saturating_add(v.saturating_mul(n));
        self.max_us = self.max_us.max(v);
        if let Store::Few(samples) = &mut self.counts
            && samples.len() < FEW
        {
            samples.push((v, count));
            return;
        }
        let hist = self.hist_mut();
        let len = hist.distinct_values();
        if hist.record_n(v, count).is_err() {
            // Only a failed resize can fail a record; keep the sample at the top of the range.
            hist.saturating_record_n(v, count);
        }
        if hist.distinct_values() != len {
            // The histogram grew; a growing Vec may keep up to twice the room it needs, and a
            // clone holds exactly its length.
            *hist = hist.clone();
        }
    }

    fn add(&mut self, other: &Self) {
        if other.is_empty() {
            return;
        }
        if let (Store::Few(mine), Store::Few(theirs)) = (&mut self.counts, &other.counts)
            && mine.len() + theirs.len() <= FEW
        {
            mine.extend_from_slice(theirs);
            self.sum_us = self.sum_us.saturating_add(other.sum_us);
            self.max_us = self.max_us.max(other.max_us);
            return;
        }
        let theirs = other.whole();
        let hist = self.hist_mut();
        if hist.add(&*theirs).is_err() {
            // Only a failed resize can fail an addition; fall back to value by value.
            for v in theirs.iter_recorded() {
                hist.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Takes `other` (a part of `self`) out again. False when the histograms disagree (then
    /// `self` must be rebuilt).
    fn subtract(&mut self, other: &Self) -> bool {
        let theirs = other.whole();
        if self.hist_mut().subtract(&*theirs).is_err() {
            return false;
        }
        self.sum_us = self.sum_us.saturating_sub(other.sum_us);
        true
    }

    fn reset(&mut self) {
        match &mut self.counts {
            Store::Few(samples) => samples.clear(),
            _ => self.hist_mut().reset(),
        }
        self.sum_us = 0;
        self.max_us = 0;
    }

    pub(crate) fn quantiles(&self) -> Quantiles {
        if self.is_empty() {
            return Quantiles::default();
        }
        if let Store::Few(samples) = &self.counts {
            return self.few_quantiles(samples);
        }
        let hist = self.whole();
        let count = hist.len();
        if count == 0 {
            return Quantiles::default();
        }
        self.answer(count, |q| hist.value_at_quantile(q))
    }

    /// The quantiles of `count` samples, `at` giving the value at a quantile.
    fn answer(&self, count: u64, at: impl Fn(f64) -> u64) -> Quantiles {
        let at = |q: f64| at(q).min(self.max_us);
        Quantiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: self.max_us,
            mean: (self.sum_us + count / 2) / count,
            count,
        }
    }

    /// `quantiles` of a few samples, as their HDR histogram answers them (`value_at_quantile`:
    /// the highest value equivalent to the first sample whose running count reaches the
    /// quantile's), without building it.
    fn few_quantiles(&self, samples: &[(u64, T)]) -> Quantiles {
        let mut sorted: Vec<(u64, u64)> = samples.iter().map(|&(v, c)| (v, c.as_u64())).collect();
        sorted.sort_unstable_by_key(|&(v, _)| v);
        let count: u64 = sorted.iter().map(|&(_, c)| c).sum();
        if count == 0 {
            return Quantiles::default();
        }
        let buckets = buckets_of(self.precision);
        self.answer(count, |q| {
            let wanted = ((q * count as f64).ceil() as u64).max(1);
            let mut total = 0u64;
            for &(value, c) in &sorted {
                total += c;
                if total >= wanted {
                    return buckets.highest_equivalent(value);
                }
            }
            0
        })
    }

    /// Heap bytes held by the counts.
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.counts {
            Store::Few(samples) => samples.capacity() * std::mem::size_of::<(u64, T)>(),
            Store::Whole(hist) => hist.distinct_values() * std::mem::size_of::<T>(),
            Store::Packed { buckets, .. } => match buckets {
                Buckets::Sparse(b) => std::mem::size_of_val(&**b),
                Buckets::Dense { counts, .. } => std::mem::size_of_val(&**counts),
            },
        }
    }
}

/// An empty histogram of `precision`, for its bucket arithmetic (which values are
/// equivalent): one per precision (there are two), built once.
fn buckets_of(precision: Precision) -> &'static Histogram<u8> {
    static SESSION: std::sync::OnceLock<Histogram<u8>> = std::sync::OnceLock::new();
    static PROVIDER: std::sync::OnceLock<Histogram<u8>> = std::sync::OnceLock::new();
    let cell = if precision == SESSION_PRECISION {
        &SESSION
    } else {
        debug_assert_eq!(
            precision, PROVIDER_PRECISION,
            "a third precision needs its own"
        );
        &PROVIDER
    };
    cell.get_or_init(|| {
        Histogram::new_with_bounds(
            precision.lowest_us,
            2 * precision.lowest_us,
            precision.digits,
        )
        .expect("bounds checked at compile time: lowest >= 1, high >= 2 * lowest, digits <= 5")
    })
}

/// The buckets of `hist` that hold samples, in the smaller form.
fn pack<T: Counter>(hist: &Histogram<T>) -> Buckets<T> {
    if hist.is_empty() {
        return Buckets::Sparse(Arc::from(Vec::new()));
    }
    // Samples lie between the lowest and the highest recorded: walk those buckets only.
    let first = hist.lowest_equivalent(hist.min_nz());
    let top = hist.max();
    let mut dense = Vec::new();
    let mut sparse = Vec::new();
    let mut total = 0u64;
    let mut value = first;
    loop {
        let count = hist.count_at(value);
        dense.push(count);
        if count.as_u64() != 0 {
            sparse.push((value, count));
            total = total.saturating_add(count.as_u64());
        }
        let next = hist.next_non_equivalent(value);
        if next <= value || next > top {
            break;
        }
        value = next;
    }
    if total != hist.len() {
        // The minimum or maximum did not cover every sample after all: every bucket, then.
        let all: Vec<_> = hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        return Buckets::Sparse(all.into());
    }
    if std::mem::size_of_val(sparse.as_slice()) <= std::mem::size_of_val(dense.as_slice()) {
        Buckets::Sparse(sparse.into())
    } else {
        Buckets::Dense {
            first,
            counts: dense.into(),
        }
    }
}

/// One time slice of a window.
#[derive(Clone, Debug)]
struct Slice<T: Counter> {
    /// Start of the slice in multiples of the slice length.
    index: u64,
    data: Recorded<T>,
}

/// A sliding window: a ring of time-sliced histograms, optionally with their running sum
/// (which makes queries cheap at the price of one more histogram).
#[derive(Clone, Debug)]
pub(crate) struct SlicedWindow<T: Counter> {
    precision: Precision,
    slice_us: u64,
    /// Slices in the window's length; a query merges up to one more.
    slices_per_window: u64,
    ring: VecDeque<Slice<T>>,
    merged: Option<Recorded<T>>,
    /// Bumped by every sample recorded: with the window's first slice it says whether the
    /// last answer still holds.
    version: u64,
    /// The last answer of `quantiles`: (first slice, version, quantiles). A screen asks the
    /// same windows many times a second while they change a few times (the dashboard's
    /// sessions table and health pane: 13 % of its thread, `perf`).
    memo: Cell<Option<(u64, u64, Quantiles)>>,
}

impl<T: Counter> SlicedWindow<T> {
    /// A window of `length_us` made of slices of `slice_us` (`length_us` a multiple of it).
    pub(crate) fn new(precision: Precision, length_us: u64, slice_us: u64, keep_sum: bool) -> Self {
        let slice_us = slice_us.max(1);
        Self {
            precision,
            slice_us,
            slices_per_window: (length_us / slice_us).max(1),
            ring: VecDeque::new(),
            merged: keep_sum.then(|| Recorded::new(precision)),
            version: 0,
            memo: Cell::new(None),
        }
    }

    #[cfg(test)]
    pub(crate) fn record(&mut self, at_us: u64, value_us: u64) {
        self.record_n(at_us, value_us, 1);
    }

    pub(crate) fn record_n(&mut self, at_us: u64, value_us: u64, n: u64) {
        let index = at_us / self.slice_us;
        let newest = self.ring.back().map_or(index, |s| s.index.max(index));
        let oldest_kept = newest.saturating_sub(self.slices_per_window);
        if index < oldest_kept {
            // Older than any window this ring can still answer.
            return;
        }
        self.version += 1;

        // Retire slices that fell out of the window, keeping one allocation for reuse.
        let mut spare = None;
        let mut rebuild = false;
        while self.ring.front().is_some_and(|s| s.index < oldest_kept) {
            if let Some(old) = self.ring.pop_front() {
                if let Some(merged) = &mut self.merged {
                    rebuild |= !merged.subtract(&old.data);
                }
                spare = Some(old);
            }
        }
        if spare.is_some() && !rebuild {
            self.refresh_merged_max();
        }

        let pos = self.ring.iter().rposition(|s| s.index <= index);
        let slot = match pos {
            Some(p) if self.ring[p].index == index => p,
            _ => {
                let mut slice = spare.take().unwrap_or_else(|| Slice {
                    index,
                    data: Recorded::new(self.precision),
                });
                slice.index = index;
                slice.data.reset();
                let at = pos.map_or(0, |p| p + 1);
                self.ring.insert(at, slice);
                at
            }
        };
        self.ring[slot].data.record_n(value_us, n);
        if rebuild {
            self.rebuild_merged();
        } else if let Some(merged) = &mut self.merged {
            merged.record_n(value_us, n);
        }
    }

    fn refresh_merged_max(&mut self) {
        if let Some(merged) = &mut self.merged {
            merged.max_us = self.ring.iter().map(|s| s.data.max_us).max().unwrap_or(0);
        }
    }

    fn rebuild_merged(&mut self) {
        if let Some(merged) = &mut self.merged {
            let mut fresh = Recorded::new(self.precision);
            for s in &self.ring {
                fresh.add(&s.data);
            }
            *merged = fresh;
        }
    }

    /// Quantiles of the samples in the window ending at `now_us`.
    pub(crate) fn quantiles(&self, now_us: u64) -> Quantiles {
        let first = (now_us / self.slice_us).saturating_sub(self.slices_per_window);
        if let Some((at, version, answer)) = self.memo.get()
            && at == first
            && version == self.version
        {
            return answer;
        }
        let answer = self.quantiles_from(first);
        self.memo.set(Some((first, self.version, answer)));
        answer
    }

    /// Quantiles of the samples in the slices from `first` on.
    fn quantiles_from(&self, first: u64) -> Quantiles {
        let all_live = self.ring.front().is_none_or(|s| s.index >= first);
        if all_live && let Some(merged) = &self.merged {
            return merged.quantiles();
        }
        let mut live = self.ring.iter().filter(|s| s.index >= first);
        let Some(head) = live.next() else {
            return Quantiles::default();
        };
        let mut sum = head.data.clone();
        for s in live {
            sum.add(&s.data);
        }
        sum.quantiles()
    }

    /// A copy with every histogram packed (see `Store`).
    pub(crate) fn packed(&self) -> Self {
        Self {
            precision: self.precision,
            slice_us: self.slice_us,
            slices_per_window: self.slices_per_window,
            ring: self
                .ring
                .iter()
                .map(|s| Slice {
                    index: s.index,
                    data: s.data.packed(),
                })
                .collect(),
            merged: self.merged.as_ref().map(Recorded::packed),
            version: self.version,
            memo: self.memo.clone(),
        }
    }

    /// Heap bytes held by the slices and the running sum.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.ring.capacity() * std::mem::size_of::<Slice<T>>()
            + self.ring.iter().map(|s| s.data.heap_bytes()).sum::<usize>()
            + self.merged.as_ref().map_or(0, Recorded::heap_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    /// The exact q-quantile by the same rule as HDR: the smallest sample with at least
    /// q * n samples at or below it.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn empty_histogram_has_zero_count() {
        let r: Recorded<u64> = Recorded::new(PROVIDER_PRECISION);
        assert_eq!(r.quantiles(), Quantiles::default());
        let w: SlicedWindow<u32> = SlicedWindow::new(PROVIDER_PRECISION, 60 * S, 10 * S, true);
        assert_eq!(w.quantiles(0).count, 0);
    }

    #[test]
    fn exact_mean_and_max_and_quantiles_capped_at_max() {
        let mut r: Recorded<u32> = Recorded::new(SESSION_PRECISION);
        for v in [200, 200, 200] {
            r.record(v);
        }
        let q = r.quantiles();
        // The bucket is 512 µs wide, but nothing above the true maximum is reported.
        assert_eq!(
            (q.p50, q.p99, q.max, q.mean, q.count),
            (200, 200, 200, 200, 3)
        );
    }

    #[test]
    fn provider_precision_is_within_a_millisecond_at_400ms() {
        let mut r: Recorded<u64> = Recorded::new(PROVIDER_PRECISION);
        let mut samples = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            // xorshift64*: a seeded, dependency-free generator.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = 300_000 + (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) % 700_000;
            samples.push(v);
            r.record(v);
        }
        samples.sort_unstable();
        let q = r.quantiles();
        for (got, want) in [
            (q.p50, exact(&samples, 0.5)),
            (q.p99, exact(&samples, 0.99)),
        ] {
            assert!(got.abs_diff(want) <= 1000, "got {got} want {want}");
        }
        assert_eq!(q.max, *samples.last().expect("samples"));
    }

    #[test]
    fn a_few_samples_answer_as_their_hdr_histogram_does() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 20
        };
        for precision in [SESSION_PRECISION, PROVIDER_PRECISION] {
            for round in 0..200u64 {
                let mut few: Recorded<u32> = Recorded::new(precision);
                let mut whole: Recorded<u32> = Recorded::new(precision);
                whole.hist_mut();
                for i in 0..(round % 20 + 1) {
                    // Zero, below the lowest discernible value, milliseconds to minutes.
                    let v = match (round + i) % 4 {
                        0 => next() % 600,
                        1 => next() % 2_000_000,
                        2 => next() % 200_000_000,
                        _ => 0,
                    };
                    let n = 1 + next() % 3;
                    few.record_n(v, n);
                    whole.record_n(v, n);
                    assert_eq!(
                        few.quantiles(),
                        whole.quantiles(),
                        "{precision:?} round {round}"
                    );
                }
                let kept = few.quantiles();
                // Read whole (or grown past FEW), the same.
                assert_eq!(few.whole().len(), whole.whole().len());
                let mut sum: Recorded<u32> = Recorded::new(precision);
                sum.add(&few);
                sum.add(&whole);
                let mut twice = whole.clone();
                twice.add(&whole);
                assert_eq!(sum.quantiles(), twice.quantiles());
                assert_eq!(few.packed().quantiles(), kept);
            }
        }
    }

    #[test]
    fn a_new_histogram_holds_nothing_until_it_has_more_than_a_few_samples() {
        let mut r: Recorded<u32> = Recorded::new(SESSION_PRECISION);
        assert_eq!(r.heap_bytes(), 0);
        for i in 0..FEW as u64 {
            r.record(1_000 * (i + 1));
        }
        assert!(matches!(r.counts, Store::Few(_)));
        assert!(r.heap_bytes() <= FEW * 16, "{}", r.heap_bytes());
        r.record(50_000);
        assert!(matches!(r.counts, Store::Whole(_)));
        assert_eq!(r.quantiles().count, FEW as u64 + 1);
        r.reset();
        assert_eq!(r.quantiles().count, 0);
    }

    #[test]
    fn window_drops_samples_older_than_length_plus_a_slice() {
        let mut w: SlicedWindow<u32> = SlicedWindow::new(PROVIDER_PRECISION, 60 * S, 10 * S, true);
        w.record(5 * S, 1000);
        assert_eq!(w.quantiles(5 * S).count, 1);
        // Still within length + one slice.
        assert_eq!(w.quantiles(65 * S).count, 1);
        // Gone once the window has moved a whole length and a slice past it.
        assert_eq!(w.quantiles(70 * S).count, 0);
        // A newer sample evicts the old slice and the running sum forgets it.
        w.record(75 * S, 3000);
        let q = w.quantiles(75 * S);
        assert_eq!((q.count, q.max, q.p50), (1, 3000, 3000));
    }

    #[test]
    fn window_merges_slices_and_running_sum_agree() {
        let mut with_sum: SlicedWindow<u32> =
            SlicedWindow::new(PROVIDER_PRECISION, 60 * S, 10 * S, true);
        let mut without: SlicedWindow<u32> =
            SlicedWindow::new(PROVIDER_PRECISION, 60 * S, 10 * S, false);
        for i in 0..600u64 {
            let at = i * S / 2;
            let v = 1000 + (i * 7919) % 5000;
            with_sum.record(at, v);
            without.record(at, v);
            assert_eq!(with_sum.quantiles(at), without.quantiles(at), "at {at}");
        }
        // 600 samples, two a second for 300 s: the window holds the last 6 to 7 slices.
        let q = with_sum.quantiles(299 * S + S / 2);
        assert_eq!(q.count, 140);
        assert!(with_sum.ring.len() <= 7);
    }

    #[test]
    fn a_remembered_answer_is_never_stale() {
        let mut w: SlicedWindow<u16> = SlicedWindow::new(SESSION_PRECISION, 60 * S, 30 * S, false);
        w.record(10 * S, 10_000);
        assert_eq!(w.quantiles(10 * S).count, 1);
        assert_eq!(w.quantiles(10 * S).count, 1);
        // A sample in the same slice: a new answer at the same time.
        w.record(11 * S, 20_000);
        assert_eq!(w.quantiles(11 * S).count, 2);
        // The window moves past the slice with no sample: the answer follows the time.
        assert_eq!(w.quantiles(95 * S).count, 0);
        assert_eq!(w.quantiles(11 * S).count, 2);
        // A copy answers for itself.
        let mut copy = w.clone();
        copy.record(12 * S, 30_000);
        assert_eq!(copy.quantiles(12 * S).count, 3);
        assert_eq!(w.quantiles(12 * S).count, 2);
    }

    #[test]
    fn late_samples_land_in_their_slice_or_are_ignored() {
        let mut w: SlicedWindow<u16> = SlicedWindow::new(SESSION_PRECISION, 60 * S, 30 * S, false);
        w.record(100 * S, 10_000);
        w.record(40 * S, 20_000); // slice 1, newest slice 3: kept (3 - 2 = 1)
        w.record(10 * S, 30_000); // slice 0: too old
        assert_eq!(w.quantiles(100 * S).count, 2);
        assert_eq!(
            w.ring.iter().map(|s| s.index).collect::<Vec<_>>(),
            vec![1, 3]
        );
    }

    #[test]
    fn a_packed_histogram_reads_and_records_like_the_whole_one() {
        let mut whole: Recorded<u32> = Recorded::new(PROVIDER_PRECISION);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            whole.record(300_000 + (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) % 700_000);
        }
        let mut packed = whole.packed();
        assert!(matches!(packed.counts, Store::Packed { .. }));
        assert!(packed.heap_bytes() * 4 < whole.heap_bytes());
        assert_eq!(packed.quantiles(), whole.quantiles());
        assert_eq!(packed.packed().quantiles(), whole.quantiles());
        // Recording unpacks it, to the same size, and both go on the same.
        for v in [5, 1_000, 2_500_000] {
            packed.record(v);
            whole.record(v);
            assert_eq!(packed.quantiles(), whole.quantiles());
        }
        assert!(matches!(packed.counts, Store::Whole(_)));
        assert_eq!(
            packed.whole().distinct_values(),
            whole.whole().distinct_values()
        );
        let empty: Recorded<u64> = Recorded::new(PROVIDER_PRECISION);
        assert_eq!(empty.packed().quantiles(), Quantiles::default());
        assert_eq!(empty.packed().heap_bytes(), 0);
    }

    #[test]
    fn a_packed_window_slides_like_the_whole_one() {
        // Packed at every step, and the packed copy folded on: slices retire (subtracted from
        // the running sum) out of packed copies, late samples land in packed slices.
        let mut whole: SlicedWindow<u32> =
            SlicedWindow::new(PROVIDER_PRECISION, 60 * S, 10 * S, true);
        let mut packed = whole.packed();
        for i in 0..400u64 {
            let at = i * S / 2 - if i % 7 == 3 { 15 * S } else { 0 }.min(i * S / 2);
            let v = 1_000 + (i * 7919) % 900_000;
            whole.record(at, v);
            packed.record(at, v);
            if i % 5 == 0 {
                packed = packed.packed();
            }
            for now in [at, at + 30 * S, at + 65 * S] {
                assert_eq!(
                    packed.quantiles(now),
                    whole.quantiles(now),
                    "i {i} now {now}"
                );
            }
        }
        assert!(packed.packed().heap_bytes() * 4 < whole.heap_bytes());
    }

    #[test]
    fn samples_are_clamped_to_an_hour() {
        let mut r: Recorded<u32> = Recorded::new(SESSION_PRECISION);
        r.record(u64::MAX);
        assert_eq!(r.quantiles().max, MAX_SAMPLE_US);
    }
}
