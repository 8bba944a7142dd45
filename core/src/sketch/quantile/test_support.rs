//! Test data and exact references shared by the tests of the quantile files (tests only).

extern crate std;

use proptest::prelude::*;
use std::vec::Vec;

use super::QuantileSketch;
use crate::limits::SKETCH_BINS;

pub(super) type Sketch = QuantileSketch<SKETCH_BINS>;

/// splitmix64: a small deterministic generator for test data.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub(super) fn within_one_percent(estimate: f64, truth: f64) -> bool {
    (estimate - truth).abs() <= 0.01 * truth.abs()
}

pub(super) fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

pub(super) fn positive() -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec((1u32..1_000_000_000).prop_map(|v| f64::from(v) * 1e-6), 0..300)
}
