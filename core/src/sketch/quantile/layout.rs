//! Where the two windows of bins of a [`QuantileSketch`](super::QuantileSketch) sit: the plan
//! that places them over the occupied keys, and the map between keys and bin indices.

/// The lowest and highest key of some bins.
pub(super) type KeyRange = (i32, i32);

/// Where the two windows of a [`QuantileSketch`](super::QuantileSketch) sit (see its docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) neg_lo: i32,
    pub(super) pos_lo: i32,
    pub(super) split: usize,
}

impl Layout {
    /// Windows covering the negative key range `neg` and the positive key range `pos`, each
    /// centred in its share of the free bins; over `BINS` keys in all, the highest `BINS` occupied
    /// keys are kept.
    pub(super) fn plan<const BINS: usize>(neg: Option<KeyRange>, pos: Option<KeyRange>) -> Layout {
        let bins = BINS as i64;
        let span = |range: Option<KeyRange>| range.map_or(0, |(lo, hi)| i64::from(hi) - i64::from(lo) + 1);
        let (n, p) = (span(neg), span(pos));
        let (split, neg_lo, pos_lo) = if n + p <= bins {
            let free = bins - n - p;
            let split = match (neg, pos) {
                (Some(_), Some(_)) => n + free / 2,
                (Some(_), None) => bins,
                (None, _) => 0,
            };
            // The negative window ends at key -1 at most, the positive one starts at key 1 at least.
            let neg_lo = neg.map_or(-split, |(lo, _)| (i64::from(lo) - (split - n) / 2).min(-split));
            let pos_free = bins - split - p;
            let pos_lo = pos.map_or(1, |(lo, _)| (i64::from(lo) - pos_free / 2).max(1));
            (split, neg_lo, pos_lo)
        } else if let (Some((_, hi)), true) = (pos, p >= bins) {
            (0, 0, i64::from(hi) - bins + 1)
        } else {
            // Only negatives collapse: the positive window keeps its span exactly.
            let split = bins - p;
            let neg_hi = neg.map_or(-1, |(_, hi)| i64::from(hi));
            (split, neg_hi - split + 1, pos.map_or(1, |(lo, _)| i64::from(lo)))
        };
        Layout { neg_lo: neg_lo as i32, pos_lo: pos_lo as i32, split: split as usize }
    }

    /// The key of bin `index`.
    pub(super) fn key_at(&self, index: usize) -> i32 {
        if index < self.split {
            self.neg_lo + index as i32
        } else {
            self.pos_lo + (index - self.split) as i32
        }
    }

    /// Whether `key` has a bin of its own.
    pub(super) fn contains<const BINS: usize>(&self, key: i32) -> bool {
        let split = self.split as i64;
        if key < 0 {
            (0..split).contains(&(i64::from(key) - i64::from(self.neg_lo)))
        } else {
            (0..BINS as i64 - split).contains(&(i64::from(key) - i64::from(self.pos_lo)))
        }
    }

    /// The bin of `key`: its own, or the lowest kept bin for a key below the windows (collapsed).
    /// Monotone in `key`.
    pub(super) fn index_of<const BINS: usize>(&self, key: i32) -> usize {
        let split = self.split as i64;
        let index = if key < 0 && split > 0 {
            (i64::from(key) - i64::from(self.neg_lo)).clamp(0, split - 1)
        } else if key <= 0 || split == BINS as i64 {
            // Below the lowest window (collapsed), or no window for it (never asked).
            if key <= 0 {
                0
            } else {
                split - 1
            }
        } else {
            split + (i64::from(key) - i64::from(self.pos_lo)).clamp(0, BINS as i64 - split - 1)
        };
        index.clamp(0, BINS as i64 - 1) as usize
    }
}
