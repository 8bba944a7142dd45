//! Bounded-memory summaries of many values: quantiles and distinct counts.
//!
//! - [`QuantileSketch`]: a DDSketch-style relative-error quantile sketch over fixed windows of
//!   `u16` bins (one for negative keys, one for positive keys). Any quantile estimate is within
//!   1% (relative) of the true value, for data whose bins fit; only the lowest quantiles lose
//!   accuracy once the windows collapse.
//! - [`Histogram`]: the first [`EXACT_SAMPLES`](crate::limits::EXACT_SAMPLES) samples kept
//!   exactly (percentiles by numpy-style linear interpolation, bit-for-bit as the original Python
//!   agent), then the quantile sketch in the same memory.
//! - [`SetCounter`]: distinct members counted exactly up to
//!   [`EXACT_MEMBERS`](crate::limits::EXACT_MEMBERS) 64-bit hashes (3 KiB), then by a dense
//!   HyperLogLog in the same memory (`2^HLL_PRECISION` 6-bit registers, 1.6% standard error).
//!
//! Nothing here allocates or reads a clock; every structure has a fixed size, checked by tests:
//!
//! | type | bytes (64-bit) |
//! |---|---|
//! | `QuantileSketch<SKETCH_BINS>` | 2048 |
//! | `Histogram` | 2064 |
//! | `SetCounter` | 3080 |

mod quantile;
mod set;

pub use quantile::{Histogram, QuantileSketch, SketchError, SketchParts, RELATIVE_ACCURACY};
pub use set::{hash_member, SetCounter};
