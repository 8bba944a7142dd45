//! What a refusal says: [`RecordError`], the sample handed back ([`Refused`]), and the counts
//! of what was offered, recorded and refused ([`AggregatorStats`]).

use core::fmt;

#[allow(unused_imports)] // linked from the docs
use crate::limits::{MAX_NAME_BYTES, MAX_OPEN_BUCKETS, MAX_TAGS, MAX_TAG_BYTES};
use crate::metric::Sample;

/// Why a sample was refused. The sample itself comes back in [`Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordError {
    /// Every series-bucket entry is in use.
    Full,
    /// The key arena has no room for this series' name and tags.
    KeysFull,
    /// The series needs a pooled sketch and every sketch is in use.
    SketchesFull,
    /// The name is empty.
    EmptyName,
    /// The name is longer than [`MAX_NAME_BYTES`].
    NameTooLong,
    /// More than [`MAX_TAGS`] tags.
    TooManyTags,
    /// A tag longer than [`MAX_TAG_BYTES`].
    TagTooLong,
    /// A set sample without members list, or members for a type that is not a set.
    WrongValueKind,
    /// The value is NaN or infinite.
    NonFinite,
    /// The timestamp is NaN, infinite or negative.
    InvalidTimestamp,
    /// The timestamp is further ahead of `now` than the configured skew allows.
    TooFarInFuture,
    /// The sample would open more than [`MAX_OPEN_BUCKETS`] buckets at once.
    TooManyBuckets,
    /// Added to its series, the sample would make the bucket's sum infinite (two counts of
    /// 1e308): no backend could take the point, so the sample is refused and the series keeps
    /// what it had.
    Overflow,
}

impl RecordError {
    /// Every reason, in a fixed order (for per-reason counters).
    pub const ALL: [RecordError; 13] = [
        RecordError::Full,
        RecordError::KeysFull,
        RecordError::SketchesFull,
        RecordError::EmptyName,
        RecordError::NameTooLong,
        RecordError::TooManyTags,
        RecordError::TagTooLong,
        RecordError::WrongValueKind,
        RecordError::NonFinite,
        RecordError::InvalidTimestamp,
        RecordError::TooFarInFuture,
        RecordError::TooManyBuckets,
        RecordError::Overflow,
    ];

    /// A short snake_case name, for self-metric tags (`reason:series_full`).
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordError::Full => "series_full",
            RecordError::KeysFull => "keys_full",
            RecordError::SketchesFull => "sketches_full",
            RecordError::EmptyName => "empty_name",
            RecordError::NameTooLong => "name_too_long",
            RecordError::TooManyTags => "too_many_tags",
            RecordError::TagTooLong => "tag_too_long",
            RecordError::WrongValueKind => "wrong_value_kind",
            RecordError::NonFinite => "non_finite",
            RecordError::InvalidTimestamp => "invalid_timestamp",
            RecordError::TooFarInFuture => "too_far_in_future",
            RecordError::TooManyBuckets => "too_many_buckets",
            RecordError::Overflow => "overflow",
        }
    }

    /// Whether the aggregator had no room for a sample that is itself valid (series table, key
    /// arena, sketch pool or open buckets full): the caller may keep it and offer it again once
    /// a flush made room. Every other reason is about the sample and holds whenever it is
    /// offered (`TooFarInFuture` until the clock catches up).
    pub const fn is_capacity(self) -> bool {
        matches!(
            self,
            RecordError::Full
                | RecordError::KeysFull
                | RecordError::SketchesFull
                | RecordError::TooManyBuckets
        )
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordError::Full => "series table full",
            RecordError::KeysFull => "key arena full",
            RecordError::SketchesFull => "sketch pool full",
            RecordError::EmptyName => "empty metric name",
            RecordError::NameTooLong => "metric name longer than 200 bytes",
            RecordError::TooManyTags => "more than 32 tags",
            RecordError::TagTooLong => "tag longer than 200 bytes",
            RecordError::WrongValueKind => "value does not fit the metric type",
            RecordError::NonFinite => "value is NaN or infinite",
            RecordError::InvalidTimestamp => "timestamp is not a finite, non-negative number",
            RecordError::TooFarInFuture => "timestamp too far in the future",
            RecordError::TooManyBuckets => "too many flush buckets open",
            RecordError::Overflow => "the series' sum would overflow to infinity",
        })
    }
}

impl core::error::Error for RecordError {}

/// A refused sample, handed back with the reason.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refused<'a> {
    /// The sample, unchanged.
    pub sample: Sample<'a>,
    /// Why it was refused.
    pub error: RecordError,
}

impl fmt::Display for Refused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sample {:?} refused: {}", self.sample.name, self.error)
    }
}

/// What the aggregator did with what it was offered. `offered == recorded + refused_total()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AggregatorStats {
    /// Samples passed to `record`.
    pub offered: u64,
    /// Samples accepted (late ones included).
    pub recorded: u64,
    /// Accepted samples whose bucket had closed, folded into the oldest open bucket.
    pub late: u64,
    /// Series-bucket summaries handed out by `poll_flush`.
    pub flushed: u64,
    pub(super) refused: [u64; RecordError::ALL.len()],
}

impl AggregatorStats {
    /// Samples refused for `reason`.
    pub fn refused(&self, reason: RecordError) -> u64 {
        self.refused[reason.index()]
    }

    /// Samples refused, for any reason.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}
