//! [`Histogram`]: the first [`EXACT_SAMPLES`] values kept exactly, then a [`QuantileSketch`].

use super::sketch::{QuantileSketch, SketchError};
use crate::limits::{EXACT_SAMPLES, SKETCH_BINS};

/// A histogram's values: exact up to [`EXACT_SAMPLES`], then a [`QuantileSketch`] in the same
/// memory (2064 bytes on 64-bit targets).
///
/// In exact mode the samples are kept sorted (binary search and a shift on insert, at most
/// `EXACT_SAMPLES` moves), so [`quantile`](Self::quantile) takes `&self`. (The aggregator appends
/// instead, and sorts a histogram's samples once, before it is flushed.) Percentiles are numpy's
/// linear interpolation, computed with the same floating-point operations as the original Python
/// agent: `idx = (n - 1) * p`; `sorted[idx]` when `idx` is integral, else
/// `sorted[floor] * (ceil - idx) + sorted[ceil] * (idx - floor)`. After the switch, the same
/// interpolation runs over the sketch's estimates, so results stay within 1% of numpy's for
/// same-signed data. `count`, `sum`, `min` and `max` are exact in both modes (the sum in arrival
/// order; merges add the two sums).
#[derive(Debug, Clone)]
pub struct Histogram(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// `samples[..len]`, of which `samples[..sorted]` are in order: the rest were
    /// [`push`](Histogram::push)ed and wait for [`settle`](Histogram::settle).
    Exact {
        samples: [f64; EXACT_SAMPLES],
        len: u16,
        sorted: u16,
        sum: f64,
    },
    Sketch(QuantileSketch<SKETCH_BINS>),
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram, in exact mode (usable in a `static`).
    pub const fn new() -> Self {
        const { assert!(EXACT_SAMPLES >= 1 && EXACT_SAMPLES <= u16::MAX as usize) };
        Histogram(Repr::Exact { samples: [0.0; EXACT_SAMPLES], len: 0, sorted: 0, sum: 0.0 })
    }

    /// Records one value. NaN and infinities are refused and change nothing.
    pub fn insert(&mut self, value: f64) -> Result<(), SketchError> {
        if !value.is_finite() {
            return Err(SketchError::NonFinite);
        }
        self.settle();
        if let Repr::Exact { samples, len, sorted, sum } = &mut self.0 {
            let n = usize::from(*len);
            if n < EXACT_SAMPLES {
                insert_sorted(samples, n, value);
                *len += 1;
                *sorted = *len;
                *sum += value;
                return Ok(());
            }
            self.switch_to_sketch();
        }
        match &mut self.0 {
            Repr::Sketch(sketch) => sketch.insert(value),
            Repr::Exact { .. } => unreachable!("switched to the sketch above"),
        }
    }

    /// Records one value as [`insert`](Self::insert) does, but in exact mode appends it,
    /// leaving it out of order until [`settle`](Self::settle): one store on one cache line
    /// instead of a binary search and a shift over up to 2 KiB, which cost the aggregator a
    /// cache miss a step on a table larger than the cache. Whoever pushes settles before the
    /// histogram is read (the aggregator, before it hands out a flushed view).
    #[inline]
    pub(crate) fn push(&mut self, value: f64) -> Result<(), SketchError> {
        if !value.is_finite() {
            return Err(SketchError::NonFinite);
        }
        if let Repr::Exact { samples, len, sorted, sum } = &mut self.0 {
            let n = usize::from(*len);
            if n < EXACT_SAMPLES {
                // Still in order when it comes after the last (in-order) sample.
                if *sorted == *len && (n == 0 || samples[n - 1] <= value) {
                    *sorted += 1;
                }
                samples[n] = value;
                *len += 1;
                *sum += value;
                return Ok(());
            }
            self.switch_to_sketch();
        }
        match &mut self.0 {
            Repr::Sketch(sketch) => sketch.insert(value),
            Repr::Exact { .. } => unreachable!("switched to the sketch above"),
        }
    }

    /// Puts [`push`](Self::push)ed samples in order: each, in arrival order, where
    /// [`insert`](Self::insert) would have put it (after equal values), so the result is the
    /// one `insert` gives.
    pub(crate) fn settle(&mut self) {
        if let Repr::Exact { samples, len, sorted, .. } = &mut self.0 {
            for n in usize::from(*sorted)..usize::from(*len) {
                let value = samples[n];
                insert_sorted(samples, n, value);
            }
            *sorted = *len;
        }
    }

    /// Starts fetching the memory [`push`](Self::push)`(value)` will write: the sketch's bin,
    /// or the exact sample's slot.
    #[inline(always)]
    pub(crate) fn prefetch_push(&self, value: f64) {
        match &self.0 {
            Repr::Exact { samples, len, .. } => {
                if let Some(slot) = samples.get(usize::from(*len)) {
                    crate::prefetch::prefetch(slot);
                }
            }
            Repr::Sketch(sketch) => sketch.prefetch_insert(value),
        }
    }

    /// Moves the exact samples into a sketch, keeping the exact sum.
    fn switch_to_sketch(&mut self) -> &mut QuantileSketch<SKETCH_BINS> {
        if let Repr::Exact { samples, len, sum, .. } = &self.0 {
            let mut sketch = QuantileSketch::new();
            for &value in &samples[..usize::from(*len)] {
                // Exact samples are finite.
                let _ = sketch.insert(value);
            }
            sketch.sum = *sum;
            self.0 = Repr::Sketch(sketch);
        }
        match &mut self.0 {
            Repr::Sketch(sketch) => sketch,
            Repr::Exact { .. } => unreachable!("switched to the sketch above"),
        }
    }

    /// The samples, sorted, while the histogram is exact.
    pub fn exact(&self) -> Option<&[f64]> {
        match &self.0 {
            Repr::Exact { samples, len, sorted, .. } => Some(settled(samples, *len, *sorted)),
            Repr::Sketch(_) => None,
        }
    }

    /// The sketch, once the histogram outgrew its exact samples.
    pub fn sketch(&self) -> Option<&QuantileSketch<SKETCH_BINS>> {
        match &self.0 {
            Repr::Sketch(sketch) => Some(sketch),
            Repr::Exact { .. } => None,
        }
    }

    /// A histogram holding `sketch` (for example rebuilt from the serial link).
    pub fn from_sketch(sketch: QuantileSketch<SKETCH_BINS>) -> Self {
        Histogram(Repr::Sketch(sketch))
    }

    /// Adds `other`'s values. Two exact histograms stay exact while their samples fit.
    pub fn merge(&mut self, other: &Histogram) {
        self.settle();
        match &other.0 {
            Repr::Exact { samples: their_samples, len: their_len, sorted: their_sorted, sum: their_sum } => {
                let theirs = settled(their_samples, *their_len, *their_sorted);
                let m = theirs.len();
                if let Repr::Exact { samples, len, sorted, sum } = &mut self.0 {
                    let n = usize::from(*len);
                    if n + m <= EXACT_SAMPLES {
                        merge_sorted(samples, n, theirs);
                        *len += *their_len;
                        *sorted = *len;
                        *sum += *their_sum;
                        return;
                    }
                }
                let sketch = self.switch_to_sketch();
                let sum = sketch.sum;
                for &value in theirs {
                    let _ = sketch.insert(value);
                }
                sketch.sum = sum + *their_sum;
            }
            Repr::Sketch(theirs) => self.switch_to_sketch().merge(theirs),
        }
    }

    /// The `p`-quantile by linear interpolation (see the type's docs), or `None` when empty or
    /// `p` is outside `[0, 1]`.
    pub fn quantile(&self, p: f64) -> Option<f64> {
        match &self.0 {
            Repr::Exact { samples, len, sorted, .. } => {
                let sorted = settled(samples, *len, *sorted);
                let n = sorted.len();
                if n == 0 || !(0.0..=1.0).contains(&p) {
                    return None;
                }
                let index = (n - 1) as f64 * p;
                let floor = index as usize;
                if floor as f64 == index {
                    return Some(sorted[floor]);
                }
                let ceil = floor + 1;
                Some(sorted[floor] * (ceil as f64 - index) + sorted[ceil] * (index - floor as f64))
            }
            Repr::Sketch(sketch) => sketch.quantile_interpolated(p),
        }
    }

    /// Values recorded (exact).
    pub fn count(&self) -> u64 {
        match &self.0 {
            Repr::Exact { len, .. } => u64::from(*len),
            Repr::Sketch(sketch) => sketch.count(),
        }
    }

    /// Sum of the values recorded (exact, in arrival order).
    pub fn sum(&self) -> f64 {
        match &self.0 {
            Repr::Exact { sum, .. } => *sum,
            Repr::Sketch(sketch) => sketch.sum(),
        }
    }

    /// Smallest value recorded.
    pub fn min(&self) -> Option<f64> {
        match &self.0 {
            Repr::Exact { samples, len, sorted, .. } => settled(samples, *len, *sorted).first().copied(),
            Repr::Sketch(sketch) => sketch.min(),
        }
    }

    /// Largest value recorded.
    pub fn max(&self) -> Option<f64> {
        match &self.0 {
            Repr::Exact { samples, len, sorted, .. } => settled(samples, *len, *sorted).last().copied(),
            Repr::Sketch(sketch) => sketch.max(),
        }
    }

    /// `sum / count`, or `None` when empty.
    pub fn avg(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum() / count as f64)
    }

    /// Whether the samples are still kept exactly.
    pub fn is_exact(&self) -> bool {
        matches!(self.0, Repr::Exact { .. })
    }

    /// Forgets every value and returns to exact mode.
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}

/// An exact histogram's `samples[..len]`, which every reader takes in order: checked, in debug
/// builds, to have been settled since the last push.
fn settled(samples: &[f64; EXACT_SAMPLES], len: u16, sorted: u16) -> &[f64] {
    debug_assert_eq!(len, sorted, "a pushed histogram is read before it is settled");
    &samples[..usize::from(len)]
}

/// Inserts `value` into the sorted `buf[..n]` (after equal values); `n < buf.len()`.
fn insert_sorted(buf: &mut [f64], n: usize, value: f64) {
    let at = buf[..n].partition_point(|&v| v <= value);
    buf.copy_within(at..n, at + 1);
    buf[at] = value;
}

/// Merges the sorted `theirs` into the sorted `buf[..n]`, from the back, in place.
fn merge_sorted(buf: &mut [f64], n: usize, theirs: &[f64]) {
    let (mut i, mut j, mut k) = (n, theirs.len(), n + theirs.len());
    while j > 0 {
        if i > 0 && buf[i - 1] > theirs[j - 1] {
            buf[k - 1] = buf[i - 1];
            i -= 1;
        } else {
            buf[k - 1] = theirs[j - 1];
            j -= 1;
        }
        k -= 1;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::sketch::quantile::test_support::{positive, sorted, within_one_percent, Rng, Sketch};
    use proptest::prelude::*;
    use std::vec::Vec;

    fn histogram_of(values: &[f64]) -> Histogram {
        let mut h = Histogram::new();
        for &v in values {
            h.insert(v).unwrap();
        }
        h
    }

    /// The original agent's percentile, computed from a full sort.
    fn numpy_percentile(values: &[f64], p: f64) -> f64 {
        let sorted = sorted(values);
        let index = (sorted.len() - 1) as f64 * p;
        let (floor, ceil) = (std::primitive::f64::floor(index), std::primitive::f64::ceil(index));
        if floor == ceil {
            return sorted[index as usize];
        }
        sorted[floor as usize] * (ceil - index) + sorted[ceil as usize] * (index - floor)
    }

    #[test]
    fn histogram_exact_percentiles_match_python() {
        let h = histogram_of(&[10.0, 3.0, 1.0, 2.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0]);
        assert_eq!(h.quantile(0.5), Some(5.5));
        assert_eq!(h.quantile(0.75), Some(7.75));
        assert_eq!(h.quantile(0.9), Some(9.1));
        assert_eq!(h.quantile(0.95), Some(9.549999999999999));
        assert_eq!(h.quantile(0.99), Some(9.91));
        assert_eq!(h.quantile(0.0), Some(1.0));
        assert_eq!(h.quantile(1.0), Some(10.0));
        assert_eq!(h.avg(), Some(5.5));
        let h = histogram_of(&[3.0, 1.0, 2.0, 1.0, 2.0, 3.0, 1.0, 2.0]);
        assert_eq!(h.quantile(0.5), Some(2.0));
        assert_eq!(h.quantile(0.95), Some(3.0));
        let h = histogram_of(&[5.0]);
        for p in [0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] {
            assert_eq!(h.quantile(p), Some(5.0));
        }
        assert_eq!((h.count(), h.sum(), h.min(), h.max()), (1, 5.0, Some(5.0), Some(5.0)));
        let empty = Histogram::new();
        assert_eq!((empty.quantile(0.5), empty.avg(), empty.min()), (None, None, None));
    }

    #[test]
    fn histogram_switches_to_the_sketch_keeping_stats_exact() {
        let mut rng = Rng(11);
        let values: Vec<f64> = (0..5_000).map(|_| 0.001 + rng.unit() * 3.7).collect();
        let mut h = Histogram::new();
        let mut sum = 0.0;
        for (i, &v) in values.iter().enumerate() {
            h.insert(v).unwrap();
            sum += v;
            assert_eq!(h.is_exact(), i < EXACT_SAMPLES);
            assert_eq!(h.sum(), sum);
            assert_eq!(h.count(), i as u64 + 1);
            if i == EXACT_SAMPLES - 1 || i == EXACT_SAMPLES {
                let seen = &values[..=i];
                let min = seen.iter().copied().fold(f64::INFINITY, f64::min);
                let max = seen.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                assert_eq!((h.min(), h.max()), (Some(min), Some(max)));
            }
        }
        assert_eq!(h.avg(), Some(sum / 5_000.0));
        for p in [0.5, 0.75, 0.9, 0.95, 0.99] {
            let truth = numpy_percentile(&values, p);
            assert!(within_one_percent(h.quantile(p).unwrap(), truth), "p={p}");
        }
        assert_eq!(h.insert(f64::NAN), Err(SketchError::NonFinite));
        assert_eq!(h.count(), 5_000);
        h.clear();
        assert!(h.is_exact() && h.count() == 0);
    }

    #[test]
    fn histogram_merges() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let b: Vec<f64> = (50..200).map(|i| f64::from(i) * 0.5).collect();
        let c: Vec<f64> = (0..1000).map(|i| f64::from(i) + 0.25).collect();
        let all_ab: Vec<f64> = a.iter().chain(&b).copied().collect();
        // Exact + exact, fits.
        let mut h = histogram_of(&a);
        h.merge(&histogram_of(&b));
        assert!(h.is_exact());
        let direct = histogram_of(&all_ab);
        for p in [0.0, 0.1, 0.5, 0.95, 0.99, 1.0] {
            assert_eq!(h.quantile(p), direct.quantile(p));
        }
        assert_eq!((h.count(), h.sum(), h.min(), h.max()), (250, direct.sum(), Some(0.0), Some(99.5)));
        // Exact + exact, overflows; exact + sketch; sketch + exact; sketch + sketch.
        let mut over = histogram_of(&all_ab);
        over.merge(&histogram_of(&all_ab));
        assert!(!over.is_exact());
        assert_eq!((over.count(), over.sum()), (500, 2.0 * direct.sum()));
        for (left, right) in [(&a, &c), (&c, &a), (&c, &c)] {
            let mut h = histogram_of(left);
            h.merge(&histogram_of(right));
            let all: Vec<f64> = left.iter().chain(right.iter()).copied().collect();
            assert!(!h.is_exact());
            assert_eq!(h.count(), all.len() as u64);
            assert_eq!(h.sum(), all.iter().sum::<f64>());
            assert_eq!(h.min(), Some(if left == &c && right == &c { 0.25 } else { 0.0 }));
            assert_eq!(h.max(), Some(999.25));
            for p in [0.5, 0.9, 0.95, 0.99] {
                assert!(within_one_percent(h.quantile(p).unwrap(), numpy_percentile(&all, p)), "p={p}");
            }
        }
    }

    #[test]
    fn sizes_fit_the_budget() {
        assert!(core::mem::size_of::<Sketch>() <= 2048);
        assert_eq!(core::mem::size_of::<Sketch>(), 2048);
        assert!(core::mem::size_of::<Histogram>() <= 2048 + 64);
        assert_eq!(core::mem::size_of::<Histogram>(), 2064);
        static EMPTY: QuantileSketch<SKETCH_BINS> = QuantileSketch::new();
        static EMPTY_HISTOGRAM: Histogram = Histogram::new();
        assert_eq!(EMPTY.count() + EMPTY_HISTOGRAM.count(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn histogram_exact_mode_is_numpy(
            values in proptest::collection::vec(-1e6f64..1e6, 1..=EXACT_SAMPLES),
            p in 0.0f64..=1.0,
        ) {
            let h = histogram_of(&values);
            prop_assert!(h.is_exact());
            prop_assert_eq!(h.quantile(p), Some(numpy_percentile(&values, p)));
        }

        #[test]
        fn pushed_then_settled_is_inserted(
            values in proptest::collection::vec(
                prop_oneof![4 => -1e3f64..1e3, 1 => Just(0.0), 1 => Just(-0.0), 1 => Just(1.5)],
                0..300,
            ),
            merged_at in 0usize..300,
            merged in proptest::collection::vec(-1e3f64..1e3, 0..40),
        ) {
            // Pushes, a merge part way (which settles first), more pushes, then `settle`:
            // the same histogram as `insert` one by one, to the bit.
            let other = histogram_of(&merged);
            let (mut pushed, mut inserted) = (Histogram::new(), Histogram::new());
            for (i, &v) in values.iter().enumerate() {
                if i == merged_at {
                    pushed.merge(&other);
                    inserted.merge(&other);
                }
                pushed.push(v).unwrap();
                inserted.insert(v).unwrap();
            }
            pushed.settle();
            let bits = |h: &Histogram| h.exact().map(|e| e.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            prop_assert_eq!(bits(&pushed), bits(&inserted));
            prop_assert_eq!(pushed.sum().to_bits(), inserted.sum().to_bits());
            prop_assert_eq!(pushed.count(), inserted.count());
            prop_assert_eq!(pushed.min(), inserted.min());
            prop_assert_eq!(pushed.max(), inserted.max());
            for p in [0.0, 0.5, 0.95, 1.0] {
                prop_assert_eq!(pushed.quantile(p).map(f64::to_bits), inserted.quantile(p).map(f64::to_bits));
            }
            prop_assert_eq!(pushed.push(f64::NAN), Err(SketchError::NonFinite));
        }

        #[test]
        fn histogram_merge_is_commutative(a in positive(), b in positive()) {
            let (ha, hb) = (histogram_of(&a), histogram_of(&b));
            let mut ab = ha.clone();
            ab.merge(&hb);
            let mut ba = hb.clone();
            ba.merge(&ha);
            prop_assert_eq!(ab.count(), ba.count());
            prop_assert_eq!(ab.sum(), ba.sum());
            prop_assert_eq!(ab.min(), ba.min());
            prop_assert_eq!(ab.max(), ba.max());
            if ab.is_exact() {
                for p in [0.5, 0.95, 0.99] {
                    prop_assert_eq!(ab.quantile(p), ba.quantile(p));
                }
            }
        }
    }
}
