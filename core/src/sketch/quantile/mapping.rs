//! The key mapping: the bin key of a value, and the estimate of a key.
//!
//! DDSketch's logarithmic mapping with `gamma = 2^(1/35)` (1.0200), computed without any
//! logarithm: a positive value `x = 2^e * m` (`m` in `[1, 2)`) gets the raw key
//! `ceil(log_gamma x) = 35 * e + #{ i in 0..35 : 2^(i/35) < m }`, where the 35 thresholds
//! `2^(i/35)` are a table of 52-bit mantissas built at compile time. A 128-entry table on the top
//! 7 mantissa bits gives the candidate threshold, and one integer comparison settles it (two
//! thresholds are never within 1/128 of each other). Integer comparisons on the bit pattern make
//! the mapping exactly monotone over all finite `f64`:
//!
//! - `x >= MIN_POSITIVE` (1e-9): key `raw - raw(1e-9) + 1`, so keys are `>= 1`;
//! - `|x| < 1e-9`, zero included: key 0 (estimated as 0, an absolute error below 1e-9);
//! - negative values mirror: `key(-x) = -key(x)`.
//!
//! A bin `k` holds the values in `(gamma^(k-1), gamma^k]` and is estimated by its midpoint
//! `2 * gamma^k / (gamma + 1)`, whose relative error is at most
//! `(gamma - 1) / (gamma + 1)` = 0.990% ([`RELATIVE_ACCURACY`]) for every value of the bin: the
//! 1% guarantee with a little room for rounding.

/// Bins per octave: `gamma = 2^(1/35)`.
const PER_OCTAVE: i32 = 35;
/// Smallest magnitude with a logarithmic bin; smaller magnitudes share the zero bin.
const MIN_POSITIVE: f64 = 1e-9;
const MANT_BITS: u32 = 52;
const MANT_MASK: u64 = (1 << MANT_BITS) - 1;
const EXP_ONE: u64 = 1023 << MANT_BITS;
/// Bits of the mantissa used to index [`CHUNK_FIRST`].
const CHUNK_BITS: u32 = 7;

/// `e^x` by its Taylor series (only used at compile time, for `x` in `[0, ln 2)`).
const fn exp_series(x: f64) -> f64 {
    // Horner form from the smallest term up: 1 + x (1 + x/2 (1 + x/3 (...))).
    let mut sum = 1.0;
    let mut n = 30;
    while n > 0 {
        sum = 1.0 + x * sum / n as f64;
        n -= 1;
    }
    sum
}

/// Mantissa bits of the thresholds `2^(i/35)`, `i = 0..35`, then `2^52` (above every mantissa).
const THRESHOLDS: [u64; PER_OCTAVE as usize + 1] = {
    let mut t = [0u64; PER_OCTAVE as usize + 1];
    let mut i = 1;
    while i < PER_OCTAVE as usize {
        let v = exp_series(core::f64::consts::LN_2 * i as f64 / PER_OCTAVE as f64);
        t[i] = v.to_bits() & MANT_MASK;
        i += 1;
    }
    t[PER_OCTAVE as usize] = 1 << MANT_BITS;
    t
};

/// The thresholds as values in `[1, 2)`.
const THRESHOLD_VALUES: [f64; PER_OCTAVE as usize] = {
    let mut t = [0f64; PER_OCTAVE as usize];
    let mut i = 0;
    while i < PER_OCTAVE as usize {
        t[i] = f64::from_bits(THRESHOLDS[i] | EXP_ONE);
        i += 1;
    }
    t
};

/// For each chunk of `2^52 / 128` mantissas: the number of thresholds strictly below the chunk.
const CHUNK_FIRST: [u8; 1 << CHUNK_BITS] = {
    let mut lut = [0u8; 1 << CHUNK_BITS];
    let mut c = 0;
    while c < lut.len() {
        let start = (c as u64) << (MANT_BITS - CHUNK_BITS);
        let mut n = 0;
        while n < PER_OCTAVE as usize && THRESHOLDS[n] < start {
            n += 1;
        }
        lut[c] = n as u8;
        c += 1;
    }
    lut
};

/// `gamma`, the ratio between consecutive bin bounds.
const GAMMA: f64 = THRESHOLD_VALUES[1];
/// The midpoint of a bin is `hi * 2 / (1 + gamma)`; doubled so that `hi / 2` stays normal.
const MIDPOINT_FACTOR: f64 = 4.0 / (1.0 + GAMMA);

/// Worst-case relative error of a bin's estimate, `(gamma - 1) / (gamma + 1)` = 0.0099017.
pub const RELATIVE_ACCURACY: f64 = (GAMMA - 1.0) / (GAMMA + 1.0);

// Checked at compile time: the accuracy target, and at most one threshold per lookup chunk.
const _: () = {
    assert!(RELATIVE_ACCURACY < 0.01 && RELATIVE_ACCURACY > 0.0098);
    let mut i = 1;
    while i < THRESHOLDS.len() {
        assert!(THRESHOLDS[i] - THRESHOLDS[i - 1] > 1 << (MANT_BITS - CHUNK_BITS));
        i += 1;
    }
};

/// `ceil(log_gamma a)` for a positive normal `a`.
#[inline(always)]
const fn raw_key(a: f64) -> i32 {
    let bits = a.to_bits();
    let exponent = (bits >> MANT_BITS) as i32 - 1023;
    let mant = bits & MANT_MASK;
    let first = CHUNK_FIRST[(mant >> (MANT_BITS - CHUNK_BITS)) as usize] as usize;
    let within = first as i32 + (mant > THRESHOLDS[first]) as i32;
    exponent * PER_OCTAVE + within
}

/// Raw key of `MIN_POSITIVE`; stored keys are shifted so that it becomes 1.
const RAW_KEY_MIN: i32 = raw_key(MIN_POSITIVE);

/// The bin key of a finite value (monotone over all finite `f64`).
#[inline(always)]
pub(super) fn key_of(value: f64) -> i32 {
    let a = value.abs();
    if a < MIN_POSITIVE {
        return 0;
    }
    let key = raw_key(a) - RAW_KEY_MIN + 1;
    if value < 0.0 {
        -key
    } else {
        key
    }
}

/// `2^n` for `n` in the normal exponent range.
fn pow2(n: i32) -> f64 {
    f64::from_bits(((n + 1023) as u64) << MANT_BITS)
}

/// The estimate of every value in bin `key`: its midpoint `2 * gamma^k / (gamma + 1)`.
pub(super) fn value_of_key(key: i32) -> f64 {
    if key == 0 {
        return 0.0;
    }
    let raw = key.abs() + RAW_KEY_MIN - 1;
    let exponent = raw.div_euclid(PER_OCTAVE);
    let within = raw.rem_euclid(PER_OCTAVE) as usize;
    // hi = 2^exponent * THRESHOLD_VALUES[within]; exponent can be 1024 for the top bin.
    let v = THRESHOLD_VALUES[within] * MIDPOINT_FACTOR * pow2(exponent - 1);
    if key < 0 {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::sketch::quantile::test_support::Rng;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn next_up(x: f64) -> f64 {
        assert!(x > 0.0);
        f64::from_bits(x.to_bits() + 1)
    }

    fn next_down(x: f64) -> f64 {
        assert!(x > 0.0);
        f64::from_bits(x.to_bits() - 1)
    }

    #[test]
    fn mapping_tables_are_consistent() {
        // gamma = 2^(1/35), and the accuracy is just under 1%.
        assert!((std::primitive::f64::powi(GAMMA, 35) - 2.0).abs() < 1e-12);
        // Thresholds strictly increase, never two in one chunk of the lookup table.
        for pair in THRESHOLDS.windows(2) {
            assert!(pair[1] - pair[0] > 1 << (MANT_BITS - CHUNK_BITS));
        }
        for (i, &t) in THRESHOLD_VALUES.iter().enumerate() {
            let exact = std::primitive::f64::exp2(i as f64 / 35.0);
            assert!((t - exact).abs() <= 2.0 * f64::EPSILON, "{i}: {t} vs {exact}");
        }
        assert_eq!(key_of(MIN_POSITIVE), 1);
        assert_eq!(key_of(next_down(MIN_POSITIVE)), 0);
        assert_eq!(key_of(0.0), 0);
        assert_eq!(key_of(-0.0), 0);
        assert_eq!(key_of(-MIN_POSITIVE), -1);
        assert!(key_of(f64::MAX) > 0 && key_of(f64::MAX) < 40_000);
        assert!(value_of_key(key_of(f64::MAX)).is_finite());
    }

    #[test]
    fn keys_match_the_exact_logarithm() {
        let mut rng = Rng(1);
        for _ in 0..20_000 {
            let x = std::primitive::f64::exp2(rng.unit() * 120.0 - 30.0);
            let exact = std::primitive::f64::ceil(std::primitive::f64::log2(x) * 35.0) as i32;
            let ours = raw_key(x);
            // Equal except within rounding of a bin boundary.
            assert!((ours - exact).abs() <= 1, "{x}");
            if ours != exact {
                let bound = std::primitive::f64::exp2(f64::from(ours.min(exact)) / 35.0);
                assert!((x / bound - 1.0).abs() < 1e-12, "{x}");
            }
        }
    }

    #[test]
    fn keys_are_monotone_across_boundaries_and_signs() {
        let mut values = Vec::new();
        for exponent in [-40, -31, -30, -29, -1, 0, 1, 20, 1023] {
            for &t in &THRESHOLD_VALUES {
                let b = t * std::primitive::f64::exp2(f64::from(exponent));
                if b.is_finite() && b > 0.0 {
                    values.extend([next_down(b), b, next_up(b)]);
                }
            }
        }
        values.extend([0.0, f64::MIN_POSITIVE, 5e-324, MIN_POSITIVE, next_down(MIN_POSITIVE), f64::MAX]);
        let negatives: Vec<f64> = values.iter().map(|v| -v).collect();
        values.extend(negatives);
        values.sort_by(f64::total_cmp);
        for pair in values.windows(2) {
            assert!(key_of(pair[0]) <= key_of(pair[1]), "{} {}", pair[0], pair[1]);
        }
        // A boundary is the top of its bin: the next value up starts a new one.
        let b = THRESHOLD_VALUES[7];
        assert_eq!(key_of(next_down(b)), key_of(b));
        assert_eq!(key_of(next_up(b)), key_of(b) + 1);
    }

    #[test]
    fn every_value_is_within_accuracy_of_its_bin_estimate() {
        let check = |x: f64| {
            let estimate = value_of_key(key_of(x));
            let error = (estimate - x).abs() / x.abs();
            assert!(error <= RELATIVE_ACCURACY * (1.0 + 1e-9), "{x}: {estimate} ({error})");
            assert!(error <= 0.01);
        };
        // Both ends of every bin in a range of octaves, including the extremes of f64.
        for exponent in (-30..=1023).step_by(7).chain([-30, 1022, 1023]) {
            for &t in &THRESHOLD_VALUES {
                let hi = t * std::primitive::f64::exp2(f64::from(exponent));
                if hi >= MIN_POSITIVE && hi.is_finite() {
                    check(hi);
                    check(next_up(hi));
                    check(-hi);
                }
            }
        }
        check(f64::MAX);
        check(MIN_POSITIVE);
        // Random values over every magnitude from 1e-9 up.
        let mut rng = Rng(7);
        for _ in 0..100_000 {
            let x = std::primitive::f64::exp2(rng.unit() * 1050.0 - 29.8);
            if x.is_finite() {
                check(x);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn keys_are_monotone(a in any::<f64>(), b in any::<f64>()) {
            prop_assume!(a.is_finite() && b.is_finite());
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(key_of(lo) <= key_of(hi));
        }
    }
}
