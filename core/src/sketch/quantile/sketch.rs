//! The quantile sketch: [`QuantileSketch`], its bins and exact statistics, the [`SketchParts`] it
//! is sent as, and [`SketchError`].

use core::fmt;

#[cfg(test)]
extern crate std;

use super::layout::{KeyRange, Layout};
use super::mapping::{key_of, value_of_key};

/// Why a value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SketchError {
    /// The value was NaN or infinite; it was not recorded anywhere (count, sum, bins).
    NonFinite,
    /// [`QuantileSketch::from_parts`]: parts no sketch could have (units without a count,
    /// non-finite or inverted bounds, key 0 among the bins).
    Inconsistent,
}

impl fmt::Display for SketchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SketchError::NonFinite => f.write_str("value is NaN or infinite"),
            SketchError::Inconsistent => f.write_str("sketch parts are inconsistent"),
        }
    }
}

impl core::error::Error for SketchError {}

/// A DDSketch-style relative-error quantile sketch in `2 * BINS + 48` bytes.
///
/// The `BINS` bins are two windows of consecutive keys, in key order: `bins[..split]` for
/// negative keys (starting at key `neg_lo`) and `bins[split..]` for positive keys (starting at
/// `pos_lo`); the zero key (`|x| < 1e-9`) has a `u32` counter of its own, between the two. Data
/// of one sign uses one window of all `BINS` bins: 35 bins cover a factor of 2, so
/// `SKETCH_BINS` = 1000 bins cover a value ratio of `2^(1000/35)` = 4.0e8 (8.6 decades). Data of
/// both signs shares the bins between the two windows, so the empty keys of the magnitudes
/// between the smallest negative and the smallest positive value (about 1040 keys between 1e-9
/// and 1 alone) cost nothing: -5 to 30 with values down to 0.1 in magnitude needs under 500 bins.
///
/// A key outside the windows re-plans them (centred, sharing the free bins). When the occupied
/// keys of both windows together would span more than `BINS`, the lowest keys (the most negative
/// values, then the smallest positive ones) are collapsed into the lowest kept bin (DDSketch's
/// collapsing-lowest store): only the quantiles that fall in that collapsed bin (the lowest ones)
/// lose their accuracy. Each later value below it takes the slow path (a scan of the bins).
///
/// # Guarantee
///
/// With the rank convention "lower nearest rank", `quantile(q)` estimates
/// `sorted[floor(q * (n - 1))]`; while no bin was collapsed and no bin count overflowed, the
/// estimate `x~` of the true `x` satisfies `|x~ - x| <= 0.0099 |x|` for `|x| >= 1e-9` (and
/// `|x~ - x| < 1e-9` below that). Estimates are clamped to the exact `[min, max]`;
/// `quantile(0)` is the exact minimum, `quantile(1)` the exact maximum.
///
/// # Count overflow
///
/// Bins count in `u16` units. When one would overflow, every bin is halved (odd counts of 3 and
/// more round alternately up and down, a count of 1 stays 1 so no occupied bin disappears) and
/// `scale` grows by one; from then on an insert adds a unit with probability `2^-scale`, decided
/// by a hash of the exact count (deterministic, unbiased). `count`, `sum`, `min`, `max` stay
/// exact. Each halving moves any rank by at most half a unit per bin holding a single unit, plus
/// half a unit, against at least 32768 units in the overflowing bin alone: at most 1.5% of the
/// total with 999 single-unit bins (a pathological shape), typically a few hundredths of a
/// percent; the thinning afterwards adds an unbiased statistical rank error of order
/// `sqrt(units)`. None of this happens before some bin has seen 65535 values.
#[derive(Debug, Clone)]
pub struct QuantileSketch<const BINS: usize> {
    bins: [u16; BINS],
    /// Key of `bins[0]`, the first of the negative window `bins[..split]` (keys `< 0`).
    neg_lo: i32,
    /// Key of `bins[split]`, the first of the positive window (keys `>= 1`).
    pos_lo: i32,
    /// Bins of the negative window.
    split: u16,
    /// Units of the zero key (`|x| < 1e-9`), which sits between the two windows.
    zero: u32,
    /// Each unit of a bin stands for about `2^scale` values.
    scale: u8,
    count: u64,
    pub(super) sum: f64,
    min: f64,
    max: f64,
}

impl<const BINS: usize> Default for QuantileSketch<BINS> {
    fn default() -> Self {
        Self::new()
    }
}

/// A [`QuantileSketch`] besides its bins: what [`QuantileSketch::parts`] gives and
/// [`QuantileSketch::from_parts`] takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SketchParts {
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest (`+inf` when empty).
    pub min: f64,
    /// The largest (`-inf` when empty).
    pub max: f64,
    /// Units of the zero key (`|x| < 1e-9`).
    pub zero: u32,
    /// Each unit stands for about `2^scale` values.
    pub scale: u8,
}

/// Seed of the hash that thins inserts once bins were halved.
const THIN_SEED: u64 = 0x5ca1_ab1e_0dd5_eed5;

impl<const BINS: usize> QuantileSketch<BINS> {
    /// An empty sketch (usable in a `static`).
    pub const fn new() -> Self {
        const { assert!(BINS >= 2 && BINS <= u16::MAX as usize, "QuantileSketch needs 2..=65535 bins") };
        QuantileSketch {
            bins: [0; BINS],
            neg_lo: 0,
            pos_lo: 1,
            split: 0,
            zero: 0,
            scale: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Records one value. NaN and infinities are refused and change nothing.
    #[inline]
    pub fn insert(&mut self, value: f64) -> Result<(), SketchError> {
        if !value.is_finite() {
            return Err(SketchError::NonFinite);
        }
        let key = key_of(value);
        if self.count == 0 {
            let range = Some((key, key));
            if key < 0 {
                self.set_layout(Layout::plan::<BINS>(range, None));
            } else if key > 0 {
                self.set_layout(Layout::plan::<BINS>(None, range));
            }
        }
        self.count += 1;
        self.sum += value;
        if value < self.min {
            self.min = value;
        }
        if value > self.max {
            self.max = value;
        }
        if self.scale != 0 && !self.keep_insert() {
            return Ok(());
        }
        if key == 0 {
            if self.zero == u32::MAX {
                self.halve();
            }
            self.zero += 1;
            return Ok(());
        }
        match self.bin_index(key) {
            Some(index) if self.bins[index] < u16::MAX => self.bins[index] += 1,
            _ => self.add_units(key, 1),
        }
        Ok(())
    }

    /// Where non-zero key `key` is counted in `bins` under the present layout, if it has a bin.
    #[inline(always)]
    fn bin_index(&self, key: i32) -> Option<usize> {
        let split = usize::from(self.split);
        if key < 0 {
            let i = key.wrapping_sub(self.neg_lo) as u32 as usize;
            (i < split).then_some(i)
        } else {
            let i = key.wrapping_sub(self.pos_lo) as u32 as usize;
            (i < BINS - split).then_some(split + i)
        }
    }

    /// Starts fetching the bin [`insert`](Self::insert)`(value)` will most likely count in
    /// (for the aggregator's [`record_batch`](crate::aggregate::Aggregator::record_batch)).
    #[inline]
    pub(crate) fn prefetch_insert(&self, value: f64) {
        let key = key_of(value);
        if value.is_finite() && key != 0 {
            if let Some(index) = self.bin_index(key) {
                crate::prefetch::prefetch(&self.bins[index]);
            }
        }
    }

    #[cold]
    fn keep_insert(&self) -> bool {
        let mask = 1u64.checked_shl(u32::from(self.scale)).map_or(u64::MAX, |v| v - 1);
        crate::hash::hash_u64(THIN_SEED, self.count) & mask == 0
    }

    /// Adds `other`'s values: count, sum, min and max exactly, bins key by key.
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.clone_from(other);
            return;
        }
        while self.scale < other.scale {
            self.halve();
        }
        let shift = u32::from(self.scale - other.scale);
        let thin = |units: u32| if shift >= 32 { 1 } else { units.div_ceil(1 << shift) };
        if other.zero != 0 {
            let mut units = u64::from(thin(other.zero));
            while u64::from(self.zero) + units > u64::from(u32::MAX) {
                self.halve();
                units = units.div_ceil(2);
            }
            self.zero += units as u32;
        }
        let (neg, pos) = other.occupied();
        self.make_room(neg, pos);
        for (index, &bin) in other.bins.iter().enumerate() {
            if bin != 0 {
                self.add_units(other.layout().key_at(index), thin(u32::from(bin)));
            }
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The estimated `q`-quantile (`q` in `[0, 1]`, lower nearest rank), or `None` when the sketch
    /// is empty or `q` is out of range.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let rank = (q * (self.units() - 1) as f64) as u64;
        Some(self.value_at_rank(rank))
    }

    /// Numpy-style interpolated quantile over the bin units (used by
    /// [`Histogram`](super::Histogram)): the interpolation between two estimates within 1% of two
    /// same-signed values is itself within 1% of the interpolation of the values.
    pub(super) fn quantile_interpolated(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let index = (self.units() - 1) as f64 * q;
        let floor = index as u64;
        if floor as f64 == index {
            return Some(self.value_at_rank(floor));
        }
        let ceil = floor + 1;
        Some(
            self.value_at_rank(floor) * (ceil as f64 - index)
                + self.value_at_rank(ceil) * (index - floor as f64),
        )
    }

    /// Values recorded (exact).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values recorded (exact, in arrival order; merges add the two sums).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest value recorded (exact).
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value recorded (exact).
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Forgets every value.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// The parts besides the bins, to send the sketch elsewhere (the serial link) and rebuild it
    /// there with [`from_parts`](Self::from_parts).
    pub fn parts(&self) -> SketchParts {
        SketchParts {
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            zero: self.zero,
            scale: self.scale,
        }
    }

    /// Every non-empty bin as `(key, units)`, in increasing key order (negative keys first).
    pub fn bins(&self) -> impl Iterator<Item = (i32, u16)> + '_ {
        let layout = self.layout();
        self.bins
            .iter()
            .enumerate()
            .filter(|&(_, &units)| units != 0)
            .map(move |(index, &units)| (layout.key_at(index), units))
    }

    /// Rebuilds a sketch from [`parts`](Self::parts) and [`bins`](Self::bins) (from this sketch
    /// size or another: bins outside the windows collapse as in a merge). Refuses parts no sketch
    /// could have: an empty sketch with units, non-finite or inverted bounds, key 0 among the bins
    /// (zero has its own count).
    pub fn from_parts(
        parts: SketchParts,
        bins: impl Iterator<Item = (i32, u16)> + Clone,
    ) -> Result<Self, SketchError> {
        let mut sketch = Self::new();
        if parts.count == 0 {
            return if parts.zero == 0 && bins.clone().next().is_none() {
                Ok(sketch)
            } else {
                Err(SketchError::Inconsistent)
            };
        }
        if !(parts.sum.is_finite() && parts.min.is_finite() && parts.max.is_finite()) || parts.min > parts.max
        {
            return Err(SketchError::Inconsistent);
        }
        let mut neg: Option<KeyRange> = None;
        let mut pos: Option<KeyRange> = None;
        for (key, units) in bins.clone() {
            if key == 0 || units == 0 {
                return Err(SketchError::Inconsistent);
            }
            let window = if key < 0 { &mut neg } else { &mut pos };
            *window = Some(window.map_or((key, key), |(lo, hi)| (lo.min(key), hi.max(key))));
        }
        match (neg, pos) {
            (Some(_), _) | (_, Some(_)) => sketch.set_layout(Layout::plan::<BINS>(neg, pos)),
            (None, None) => {}
        }
        sketch.scale = parts.scale;
        sketch.zero = parts.zero;
        for (key, units) in bins {
            sketch.add_units(key, u32::from(units));
        }
        sketch.count = parts.count;
        sketch.sum = parts.sum;
        sketch.min = parts.min;
        sketch.max = parts.max;
        Ok(sketch)
    }

    /// Total units in the bins (equals `count` until a halving).
    fn units(&self) -> u64 {
        self.bins.iter().map(|&b| u64::from(b)).sum::<u64>() + u64::from(self.zero)
    }

    /// The estimate of the value at `rank` (0-based, in units), clamped to `[min, max]`.
    fn value_at_rank(&self, rank: u64) -> f64 {
        let layout = self.layout();
        let mut seen = 0u64;
        for (index, &bin) in self.bins.iter().enumerate() {
            if index == layout.split {
                seen += u64::from(self.zero);
                if seen > rank {
                    return 0f64.clamp(self.min, self.max);
                }
            }
            seen += u64::from(bin);
            if seen > rank {
                return value_of_key(layout.key_at(index)).clamp(self.min, self.max);
            }
        }
        if layout.split == BINS && seen + u64::from(self.zero) > rank {
            return 0f64.clamp(self.min, self.max);
        }
        self.max
    }

    /// The nonzero bins as `(key, units)`, lowest key first.
    #[cfg(test)]
    fn nonzero_bins(&self) -> std::vec::Vec<(i32, u32)> {
        let layout = self.layout();
        let mut bins: std::vec::Vec<(i32, u32)> = self
            .bins
            .iter()
            .enumerate()
            .filter(|(_, &b)| b != 0)
            .map(|(i, &b)| (layout.key_at(i), u32::from(b)))
            .collect();
        if self.zero != 0 {
            bins.push((0, self.zero));
        }
        bins.sort_unstable();
        bins
    }

    fn layout(&self) -> Layout {
        Layout { neg_lo: self.neg_lo, pos_lo: self.pos_lo, split: usize::from(self.split) }
    }

    fn set_layout(&mut self, layout: Layout) {
        self.neg_lo = layout.neg_lo;
        self.pos_lo = layout.pos_lo;
        self.split = layout.split as u16;
    }

    /// The lowest and highest occupied keys of each window: (negative, zero and positive).
    fn occupied(&self) -> (Option<KeyRange>, Option<KeyRange>) {
        let layout = self.layout();
        let range = |bins: &[u16], base: usize| {
            let lo = bins.iter().position(|&b| b != 0)?;
            let hi = bins.iter().rposition(|&b| b != 0)?;
            Some((layout.key_at(base + lo), layout.key_at(base + hi)))
        };
        let (neg, pos) = self.bins.split_at(layout.split);
        (range(neg, 0), range(pos, layout.split))
    }

    /// Adds `units` to bin `key`, re-planning the windows (or collapsing below them) and halving
    /// as needed.
    #[cold]
    fn add_units(&mut self, key: i32, mut units: u32) {
        let range = Some((key, key));
        if key < 0 {
            self.make_room(range, None);
        } else {
            self.make_room(None, range);
        }
        let index = self.layout().index_of::<BINS>(key);
        while u32::from(self.bins[index]) + units > u32::from(u16::MAX) {
            self.halve();
            units = units.div_ceil(2);
        }
        self.bins[index] += units as u16;
    }

    /// Re-plans the windows, if needed, to cover the occupied keys and the given key ranges.
    fn make_room(&mut self, neg: Option<KeyRange>, pos: Option<KeyRange>) {
        let layout = self.layout();
        let covered = |range: Option<KeyRange>| {
            range.is_none_or(|(lo, hi)| layout.contains::<BINS>(lo) && layout.contains::<BINS>(hi))
        };
        if covered(neg) && covered(pos) {
            return;
        }
        let union = |a: Option<KeyRange>, b: Option<KeyRange>| match (a, b) {
            (Some((l1, h1)), Some((l2, h2))) => Some((l1.min(l2), h1.max(h2))),
            (a, b) => a.or(b),
        };
        let (own_neg, own_pos) = self.occupied();
        let plan = Layout::plan::<BINS>(union(own_neg, neg), union(own_pos, pos));
        if plan != layout {
            self.relayout(plan);
        }
    }

    /// Moves every bin to its place in `new` (collapsing keys below it into its first bin), in
    /// place: the map from old to new index is monotone, so bins moving down are moved in
    /// increasing order and bins moving up in decreasing order, each onto a free or final slot.
    fn relayout(&mut self, new: Layout) {
        let old = self.layout();
        let target = |index: usize| new.index_of::<BINS>(old.key_at(index));
        // Collapsed bins add up: halve first if a sum would overflow.
        loop {
            let (mut run_target, mut run_sum, mut overflow) = (usize::MAX, 0u64, false);
            for (index, &bin) in self.bins.iter().enumerate() {
                if bin != 0 {
                    let t = target(index);
                    if t != run_target {
                        (run_target, run_sum) = (t, 0);
                    }
                    run_sum += u64::from(bin);
                    overflow |= run_sum > u64::from(u16::MAX);
                }
            }
            if !overflow {
                break;
            }
            self.halve();
        }
        for index in 0..BINS {
            if self.bins[index] == 0 {
                continue;
            }
            let t = target(index);
            if t < index {
                let units = core::mem::take(&mut self.bins[index]);
                self.bins[t] += units;
            }
        }
        for index in (0..BINS).rev() {
            if self.bins[index] == 0 {
                continue;
            }
            let t = target(index);
            if t > index {
                let units = core::mem::take(&mut self.bins[index]);
                self.bins[t] += units;
            }
        }
        self.set_layout(new);
    }

    /// Halves every bin (see the type's docs) and records the new scale.
    fn halve(&mut self) {
        let mut round_up = true;
        for bin in self.bins.iter_mut() {
            let odd = *bin & 1;
            if odd == 1 && *bin > 1 {
                *bin = (*bin >> 1) + u16::from(round_up);
                round_up = !round_up;
            } else {
                *bin = (*bin >> 1) + odd;
            }
        }
        self.zero = (self.zero >> 1) + (self.zero & 1);
        self.scale = self.scale.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::limits::SKETCH_BINS;
    use crate::sketch::quantile::test_support::{positive, sorted, within_one_percent, Rng, Sketch};
    use proptest::prelude::*;
    use std::vec::Vec;

    /// `sorted[floor(q * (n - 1))]`: the rank convention of `QuantileSketch::quantile`.
    fn lower_rank(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64) as usize]
    }

    fn sketch_of(values: &[f64]) -> Sketch {
        let mut sketch = Sketch::new();
        for &v in values {
            sketch.insert(v).unwrap();
        }
        sketch
    }

    /// p50/p95/p99 (and a few more) of the sketch against an exact sort.
    fn assert_quantiles_within_bound(values: &[f64]) {
        let sketch = sketch_of(values);
        let sorted = sorted(values);
        assert_eq!(sketch.count(), values.len() as u64);
        assert_eq!(sketch.min(), Some(sorted[0]));
        assert_eq!(sketch.max(), Some(*sorted.last().unwrap()));
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let estimate = sketch.quantile(q).unwrap();
            let truth = lower_rank(&sorted, q);
            assert!(within_one_percent(estimate, truth), "q={q} n={}: {estimate} vs {truth}", values.len());
        }
    }

    #[test]
    fn quantiles_within_one_percent_over_distributions() {
        let mut rng = Rng(42);
        for n in [1_000, 10_000, 100_000] {
            // Uniform in log space over 6 decades.
            let log_uniform: Vec<f64> =
                (0..n).map(|_| std::primitive::f64::powf(10.0, rng.unit() * 6.0 - 3.0)).collect();
            assert_quantiles_within_bound(&log_uniform);
            // Exponential, mean 250 ms.
            let exponential: Vec<f64> =
                (0..n).map(|_| -0.25 * std::primitive::f64::ln(1.0 - rng.unit())).collect();
            assert_quantiles_within_bound(&exponential);
            // Constant (100k of one value also overflows a u16 bin).
            assert_quantiles_within_bound(&std::vec![3.3; n]);
            // Two values.
            let two: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { 20.0 } else { 0.5 }).collect();
            assert_quantiles_within_bound(&two);
            // Both signs, within the window (mixed signs need about 2 * 35 * log2(max / 1e-9) keys).
            let mixed: Vec<f64> = (0..n).map(|_| (rng.unit() - 0.3) * 1e-6).collect();
            assert_quantiles_within_bound(&mixed);
        }
    }

    #[test]
    fn six_decades_fit_without_collapsing() {
        for (lo, hi) in [(1e-3, 1e3), (1.0, 1e6), (1e-9, 1e-1)] {
            let mut sketch = Sketch::new();
            // Extremes first, then everything in between: no order may cause a collapse.
            sketch.insert(hi).unwrap();
            sketch.insert(lo).unwrap();
            let mut x = lo;
            while x < hi {
                sketch.insert(x).unwrap();
                x *= 1.005;
            }
            // No collapse: every value still sits in its own bin.
            let keys: Vec<i32> = sketch.nonzero_bins().iter().map(|&(k, _)| k).collect();
            assert_eq!(keys.first(), Some(&key_of(lo)));
            assert_eq!(keys.last(), Some(&key_of(hi)));
            assert_eq!(sketch.units(), sketch.count());
            assert!(within_one_percent(sketch.value_at_rank(0), lo));
        }
        assert!(key_of(1e3) - key_of(1e-3) < SKETCH_BINS as i32);
    }

    #[test]
    fn collapse_keeps_upper_quantiles_and_counts() {
        // 14 decades: more than the window, the lowest keys collapse.
        let mut rng = Rng(3);
        let values: Vec<f64> =
            (0..20_000).map(|_| std::primitive::f64::powf(10.0, rng.unit() * 14.0 - 7.0)).collect();
        let sketch = sketch_of(&values);
        let sorted = sorted(&values);
        assert_eq!(sketch.units(), sketch.count());
        let keys: Vec<i32> = sketch.nonzero_bins().iter().map(|&(k, _)| k).collect();
        assert!(keys.last().unwrap() - keys.first().unwrap() < SKETCH_BINS as i32);
        // The window keeps the top 8.6 decades: quantiles above 1e-7 * 10^(14-8.6) are exact-ish.
        for q in [0.5, 0.9, 0.95, 0.99] {
            let estimate = sketch.quantile(q).unwrap();
            assert!(within_one_percent(estimate, lower_rank(&sorted, q)), "q={q}");
        }
        // The lowest quantile is the collapsed bin, clamped to the exact minimum.
        let low = sketch.quantile(0.01).unwrap();
        assert!(low >= sorted[0]);
        // Collapsing when a value arrives below the window, too.
        let mut sketch = Sketch::new();
        sketch.insert(1e6).unwrap();
        sketch.insert(1e-6).unwrap();
        sketch.insert(1e-8).unwrap();
        assert_eq!(sketch.units(), 3);
        assert_eq!(sketch.quantile(1.0), Some(1e6));
        assert_eq!(sketch.quantile(0.0), Some(1e-8));
    }

    #[test]
    fn mixed_signs_share_the_bins() {
        // Temperatures from -5 to 30 (and an exact zero): keys from -key(5) to key(30) would span
        // about 2300 bins in one window, the two windows need under 600.
        let values: Vec<f64> = (0..700).map(|i| f64::from(i) * 0.05 - 5.0).chain([0.0, -0.0]).collect();
        assert_quantiles_within_bound(&values);
        let sketch = sketch_of(&values);
        assert_eq!(sketch.units(), 702);
        assert!(sketch.nonzero_bins().iter().any(|&(key, _)| key == 0));
    }

    #[test]
    fn mixed_signs_collapse_the_most_negative_values_first() {
        // -1e3..-1e-3 and 1e-3..1e3: about 1400 keys, more than the 1000 bins.
        let mut rng = Rng(5);
        let values: Vec<f64> = (0..4_000)
            .map(|i| {
                let magnitude = std::primitive::f64::powf(10.0, rng.unit() * 6.0 - 3.0);
                if i % 4 == 0 {
                    -magnitude
                } else {
                    magnitude
                }
            })
            .collect();
        let sketch = sketch_of(&values);
        let sorted = sorted(&values);
        assert_eq!(sketch.units(), 4_000);
        assert_eq!((sketch.min(), sketch.max()), (Some(sorted[0]), Some(sorted[3_999])));
        // The positive window keeps its whole span: every quantile from the negatives' top up.
        for q in [0.3, 0.5, 0.9, 0.99] {
            assert!(within_one_percent(sketch.quantile(q).unwrap(), lower_rank(&sorted, q)), "q={q}");
        }
        // The most negative values were collapsed into the lowest kept bin: too high, still < 0.
        let p01 = sketch.quantile(0.01).unwrap();
        assert!(p01 < 0.0 && p01 > lower_rank(&sorted, 0.01) * 0.5, "{p01}");
    }

    #[test]
    fn bin_overflow_halves_and_keeps_counts_exact() {
        let mut sketch = Sketch::new();
        let mut values = Vec::new();
        for i in 0..200_000u32 {
            // Mostly one value, some spread above it.
            let v = if i % 10 == 0 { 1.0 + f64::from(i % 1000) } else { 0.5 };
            sketch.insert(v).unwrap();
            values.push(v);
        }
        assert!(sketch.scale >= 1);
        assert_eq!(sketch.count(), 200_000);
        assert_eq!(sketch.sum(), values.iter().sum::<f64>());
        let sorted = sorted(&values);
        for q in [0.5, 0.85, 0.89] {
            assert!(within_one_percent(sketch.quantile(q).unwrap(), lower_rank(&sorted, q)), "q={q}");
        }
        // Upper quantiles: a small rank error (here the ranks of 0.95 +- 0.002).
        for q in [0.95, 0.99] {
            let estimate = sketch.quantile(q).unwrap();
            let (lo, hi) = (lower_rank(&sorted, q - 0.002), lower_rank(&sorted, q + 0.002));
            assert!(estimate >= lo * 0.99 && estimate <= hi * 1.01, "{estimate} not in [{lo}, {hi}]");
        }
    }

    #[test]
    fn refuses_non_finite_and_bad_quantiles() {
        let mut sketch = Sketch::new();
        assert_eq!(sketch.quantile(0.5), None);
        assert_eq!(sketch.min(), None);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(sketch.insert(bad), Err(SketchError::NonFinite));
        }
        assert_eq!(sketch.count(), 0);
        sketch.insert(2.0).unwrap();
        assert_eq!(sketch.quantile(-0.1), None);
        assert_eq!(sketch.quantile(1.1), None);
        assert_eq!(sketch.quantile(f64::NAN), None);
        assert_eq!(sketch.quantile(0.5), Some(2.0));
        sketch.clear();
        assert_eq!(sketch.count(), 0);
        assert_eq!(sketch.quantile(0.5), None);
        assert_eq!(std::format!("{}", SketchError::NonFinite), "value is NaN or infinite");
    }

    fn ints() -> impl Strategy<Value = Vec<f64>> {
        // Integers (and their negatives) so that sums are exact in any order.
        proptest::collection::vec((-1_000_000i32..1_000_000).prop_map(f64::from), 0..300)
    }

    /// Both signs and zeros, magnitudes 1e-2..1e2: about 930 keys, no collapse.
    fn mixed_small() -> impl Strategy<Value = Vec<f64>> {
        let value = (1e-2f64..1e2, any::<bool>(), 0u8..20).prop_map(|(m, negative, z)| match (z, negative) {
            (0, _) => 0.0,
            (_, true) => -m,
            (_, false) => m,
        });
        proptest::collection::vec(value, 1..300)
    }

    fn merged(a: &Sketch, b: &Sketch) -> Sketch {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    fn same(a: &Sketch, b: &Sketch) {
        assert_eq!(a.count(), b.count());
        assert_eq!(a.sum(), b.sum());
        assert_eq!(a.min(), b.min());
        assert_eq!(a.max(), b.max());
        assert!(a.nonzero_bins() == b.nonzero_bins());
        for q in [0.0, 0.5, 0.95, 0.99, 1.0] {
            assert_eq!(a.quantile(q), b.quantile(q));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn merge_equals_inserting_everything(a in positive(), b in positive()) {
            let all: Vec<f64> = a.iter().chain(&b).copied().collect();
            let (sa, sb) = (sketch_of(&a), sketch_of(&b));
            let m = merged(&sa, &sb);
            let direct = sketch_of(&all);
            prop_assert_eq!(m.count(), direct.count());
            prop_assert_eq!(m.min(), direct.min());
            prop_assert_eq!(m.max(), direct.max());
            prop_assert!((m.sum() - direct.sum()).abs() <= 1e-9 * direct.sum().abs());
            prop_assert!(m.nonzero_bins() == direct.nonzero_bins());
            if !all.is_empty() {
                let sorted = sorted(&all);
                for q in [0.5, 0.95, 0.99] {
                    prop_assert!(within_one_percent(m.quantile(q).unwrap(), lower_rank(&sorted, q)));
                }
            }
        }

        #[test]
        fn mixed_signs_without_collapse_are_order_independent(
            values in mixed_small(),
            cut in 0usize..300,
        ) {
            let cut = cut.min(values.len());
            let direct = sketch_of(&values);
            let mut reversed = values.clone();
            reversed.reverse();
            let mut merged = sketch_of(&values[..cut]);
            merged.merge(&sketch_of(&values[cut..]));
            prop_assert_eq!(direct.nonzero_bins(), sketch_of(&reversed).nonzero_bins());
            prop_assert_eq!(direct.nonzero_bins(), merged.nonzero_bins());
            prop_assert_eq!(direct.units(), values.len() as u64);
            let sorted = sorted(&values);
            for q in [0.0, 0.1, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0] {
                let truth = lower_rank(&sorted, q);
                prop_assert!(within_one_percent(merged.quantile(q).unwrap(), truth), "q={}", q);
            }
        }

        #[test]
        fn merge_is_commutative_and_associative(a in ints(), b in ints(), c in ints()) {
            let (sa, sb, sc) = (sketch_of(&a), sketch_of(&b), sketch_of(&c));
            same(&merged(&sa, &sb), &merged(&sb, &sa));
            same(&merged(&merged(&sa, &sb), &sc), &merged(&sa, &merged(&sb, &sc)));
            let all: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
            let direct = sketch_of(&all);
            let m = merged(&merged(&sa, &sb), &sc);
            prop_assert_eq!(m.sum(), direct.sum());
            prop_assert_eq!(m.count(), direct.count());
            prop_assert_eq!(m.units(), m.count());
        }

        #[test]
        fn quantiles_within_bound_for_any_data(values in proptest::collection::vec(-1e12f64..1e12, 1..400)) {
            let sketch = sketch_of(&values);
            let sorted = sorted(&values);
            // Mixed signs may span more keys than the window: only quantiles at or above the
            // lowest kept bin are guaranteed.
            let lowest_kept = sketch.layout().key_at(0);
            for q in [0.5, 0.9, 0.95, 0.99] {
                let truth = lower_rank(&sorted, q);
                if key_of(truth) > lowest_kept {
                    prop_assert!(within_one_percent(sketch.quantile(q).unwrap(), truth),
                        "q={} lowest kept {}", q, lowest_kept);
                }
            }
        }
    }
}
