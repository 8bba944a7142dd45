//! The relative-error quantile sketch ([`QuantileSketch`]) and the exact-then-sketch
//! [`Histogram`] built on it.
//!
//! - [`mapping`]: value to bin key and key to estimate (the log mapping), [`RELATIVE_ACCURACY`].
//! - [`sketch`]: [`QuantileSketch`] (bins, insert, merge, quantiles, parts), [`SketchError`].
//! - [`layout`]: where the sketch's two windows of bins sit over the keys, and their re-planning.
//! - [`histogram`]: [`Histogram`], exact samples up to a limit, then the sketch.
//! - `test_support` (tests only): test data and exact references shared by the files' tests.

mod histogram;
mod layout;
mod mapping;
mod sketch;
#[cfg(test)]
mod test_support;

pub use histogram::Histogram;
pub use mapping::RELATIVE_ACCURACY;
pub use sketch::{QuantileSketch, SketchError, SketchParts};
