//! Every fixed capacity of the core, in one place: what each number bounds, what it costs, why.
//!
//! Capacities that a user sizes per deployment (series, sketch slots, key bytes) are const
//! generics on the types that hold them (`Aggregator<SERIES, SKETCHES, KEY_BYTES>`); the numbers
//! here are the per-sample and per-format bounds that do not change between boards.

/// Longest metric name accepted, in bytes. Datadog truncates names at 200 characters, so a longer
/// name could never be stored faithfully; it is refused (`RecordError::NameTooLong`).
pub const MAX_NAME_BYTES: usize = 200;

/// Longest tag (`key:value` together, without the colon), in bytes. Datadog's limit is 200.
pub const MAX_TAG_BYTES: usize = 200;

/// Most tags on one sample. Costs `MAX_TAGS * size_of::<Tag>()` (32 B each on 64-bit) of stack
/// while a record is parsed; more is refused (`RecordError::TooManyTags`).
pub const MAX_TAGS: usize = 32;

/// Most distinct flush buckets open at once in one aggregator. Two or three are open in normal
/// running (the current bucket and the previous one during its grace delay); a sample that would
/// open a further bucket (a clock far in the future) is refused (`RecordError::TooManyBuckets`).
pub const MAX_OPEN_BUCKETS: usize = 8;

/// Samples kept inline in a series slot before a histogram or distribution takes a pooled sketch
/// (`4 * 8` bytes of each series entry, which is 64 bytes: one cache line).
pub const INLINE_SAMPLES: usize = 4;

/// Set members (as 64-bit hashes) kept inline in a series slot before a set takes a pooled sketch.
pub const INLINE_MEMBERS: usize = 4;

/// Samples a histogram keeps exactly (percentiles computed like numpy's linear interpolation)
/// before it switches to the quantile sketch: `256 * 8` = 2 KiB, the size of the sketch itself.
pub const EXACT_SAMPLES: usize = 256;

/// Bins of the relative-error quantile sketch. Its bins are `gamma = 2^(1/35)` = 1.0200 wide
/// (relative accuracy 0.99%, just inside the 1% target, 35 bins per octave), so 1000 bins span a
/// value ratio of `2^(1000/35)` = 4.0e8 (8.6 decades); the counts are `u16` so the bins cost
/// 2000 B and the whole `QuantileSketch<1000>` 2048 B.
pub const SKETCH_BINS: usize = 1000;

/// Distinct set members counted exactly (as 64-bit hashes: `384 * 8` = 3 KiB, the size of the
/// HyperLogLog that shares their memory) before switching to HyperLogLog.
pub const EXACT_MEMBERS: usize = 384;

/// HyperLogLog precision: `2^12` registers of 6 bits = 3 KiB, standard error `1.04/sqrt(4096)` = 1.6%.
pub const HLL_PRECISION: u32 = 12;

/// Datadog v1 series: largest accepted compressed payload (3.2 MB).
pub const V1_MAX_COMPRESSED_BYTES: usize = 3_200_000;

/// Datadog v1 series: largest accepted payload after decompression (62 MiB).
pub const V1_MAX_UNCOMPRESSED_BYTES: usize = 62_914_560;
