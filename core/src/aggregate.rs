//! The flush-bucket aggregator: samples in, one summary per series per bucket out.
//!
//! ```text
//! record(now, sample) ──► table of (series, bucket) entries ──► handle_timeout(now) closes buckets
//!                                                          └──► poll_flush() → Flushed views
//! ```
//!
//! Buckets are aligned to multiples of the flush interval, like the original (`[k·I, (k+1)·I)`).
//! A bucket closes once `now ≥ end + grace`; only then are its series flushed, each exactly once.
//! A sample for a bucket that already closed is *late*: it is folded into the oldest open bucket
//! and counted ([`AggregatorStats::late`]), never emitted as a second point for a flushed bucket.
//!
//! Bucket time lives here, in [`AggregatorConfig`]: which [`Bucket`] holds a timestamp
//! ([`bucket_of`](AggregatorConfig::bucket_of)), when it closes
//! ([`is_closed`](AggregatorConfig::is_closed)), what is too far in the future
//! ([`future_horizon`](AggregatorConfig::future_horizon)). Two ways to drive the clock:
//!
//! - live, as a client or a board does: `record(now, ..)` as samples come, `handle_timeout(now)`
//!   at [`poll_timeout`](Aggregator::poll_timeout), `poll_flush()`;
//! - bucket by bucket, as the agent does over a durable queue: it asks
//!   [`next_closed_bucket`](AggregatorConfig::next_closed_bucket) which bucket is due, calls
//!   [`close_before(bucket.start())`](Aggregator::close_before) (older samples are late and fold
//!   into it), records that bucket's samples, then `close_before(bucket.end())` and `poll_flush()`.
//!
//! ```
//! use chouette_core::aggregate::{AggregatorConfig, SmallAggregator};
//! use chouette_core::metric::{MetricType, Sample, Timestamp, Value};
//!
//! let at = Timestamp::from_secs_f64;
//! let config = AggregatorConfig::new(1).expect("1 s buckets").with_grace_secs(2);
//! // Counts waiting in a durable queue; the clock says 104.
//! let queued = [100.25, 100.75, 101.5, 102.5];
//! let mut aggregator = SmallAggregator::new(config);
//! let bucket = config.next_closed_bucket(at(queued[0]), None, at(104.0)).expect("closed");
//! assert_eq!((bucket.start(), bucket.end()), (at(100.0), at(101.0)));
//! aggregator.close_before(bucket.start());
//! for &ts in queued.iter().filter(|&&ts| ts < 101.0) {
//!     let one = Value::Number(1.0);
//!     let sample = Sample { name: "c", kind: MetricType::Count, tags: &[], value: one, timestamp: at(ts) };
//!     aggregator.record(at(104.0), sample).expect("room");
//! }
//! aggregator.close_before(bucket.end());
//! let point = aggregator.poll_flush().map(|flushed| (flushed.timestamp, flushed.sum()));
//! assert_eq!(point, Some((at(100.0), 2.0)));
//! assert!(aggregator.poll_flush().is_none());
//! // From the watermark on: [101, 102) is due; [102, 103) closes at 105.
//! let next = config.next_closed_bucket(at(101.5), Some(bucket.end()), at(104.0));
//! assert_eq!(next.map(|b| b.start()), Some(at(101.0)));
//! assert_eq!(config.next_closed_bucket(at(102.5), Some(at(102.0)), at(104.0)), None);
//! ```
//!
//! Capacity is in the type: `SERIES` (series-bucket entries, the hash table), `SKETCHES` (pooled
//! histogram sketches and set counters, for series that outgrow their inline storage) and
//! `KEY_BYTES` (the arena holding names and tags). Whatever does not fit is refused: `record`
//! hands the sample back with the reason, and the refusal is counted.
//!
//! Series identity is the name, the type and the set of tags (order-free, duplicates collapse),
//! compared by name and by a 64-bit hash of the sorted tags, as Datadog's agent does for its
//! context keys.

use core::fmt;

use crate::hash::{hash_bytes, hash_joined, hash_u64};
use crate::limits::{
    INLINE_MEMBERS, INLINE_SAMPLES, MAX_NAME_BYTES, MAX_OPEN_BUCKETS, MAX_TAGS, MAX_TAG_BYTES,
};
use crate::metric::{Member, MetricType, Sample, SetMembers, Tag, Timestamp, Value, Wrapped};
use crate::sketch::{hash_member, Histogram, SetCounter};
use crate::wrap::{self, Outputs, Summary, WrapConfig};

/// Separates the name and the tags in the key arena: never part of UTF-8 text.
const KEY_SEPARATOR: u8 = 0xFF;
/// Arena record header: owner entry index (`u32`) and key length (`u16`).
const RECORD_HEADER: usize = 6;
const NO_OWNER: u32 = u32::MAX;

/// How the aggregator buckets time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregatorConfig {
    interval_secs: u32,
    grace_secs: u32,
    max_future_secs: u32,
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The flush interval must be at least one second.
    ZeroInterval,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroInterval => f.write_str("the flush interval must be at least 1 second"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl AggregatorConfig {
    /// The original's default: 10 s buckets; plus 2 s of grace and 600 s of allowed clock skew.
    pub const DEFAULT: AggregatorConfig =
        AggregatorConfig { interval_secs: 10, grace_secs: 2, max_future_secs: 600 };

    /// Buckets of `interval_secs` (`AGGREGATE_INTERVAL`), with the default grace and skew.
    pub const fn new(interval_secs: u32) -> Result<Self, ConfigError> {
        if interval_secs == 0 {
            return Err(ConfigError::ZeroInterval);
        }
        Ok(AggregatorConfig { interval_secs, ..Self::DEFAULT })
    }

    /// How long after its end a bucket stays open for samples still on their way.
    pub const fn with_grace_secs(mut self, grace_secs: u32) -> Self {
        self.grace_secs = grace_secs;
        self
    }

    /// How far ahead of `now` a sample may be stamped (Datadog refuses points more than ten
    /// minutes in the future; millisecond timestamps written as seconds are caught here).
    pub const fn with_max_future_secs(mut self, max_future_secs: u32) -> Self {
        self.max_future_secs = max_future_secs;
        self
    }

    /// The flush interval in seconds.
    pub const fn interval_secs(&self) -> u32 {
        self.interval_secs
    }

    /// The grace delay in seconds.
    pub const fn grace_secs(&self) -> u32 {
        self.grace_secs
    }

    /// How far ahead of `now` a sample may be stamped, in seconds.
    pub const fn max_future_secs(&self) -> u32 {
        self.max_future_secs
    }

    /// The bucket holding `at`: `[k·I, (k+1)·I)` for the interval `I`. A timestamp beyond the
    /// range of `i64` seconds saturates (NaN gives the bucket at 0); such samples are refused
    /// before they reach a bucket.
    pub fn bucket_of(&self, at: Timestamp) -> Bucket {
        Bucket { start_secs: self.bucket_start(at.as_secs_f64()), interval_secs: self.interval_secs }
    }

    /// Start of the bucket holding `secs`, in whole seconds.
    fn bucket_start(&self, secs: f64) -> i64 {
        let interval = self.interval_secs as i64;
        let whole = secs as i64; // saturating
        let whole = if (whole as f64) > secs { whole.saturating_sub(1) } else { whole };
        whole.saturating_sub(whole.rem_euclid(interval))
    }

    /// When `bucket` closes: its end plus the grace delay.
    pub fn closes_at(&self, bucket: Bucket) -> Timestamp {
        Timestamp::from_secs_f64(bucket.end_secs() as f64 + self.grace_secs as f64)
    }

    /// Whether `bucket` is closed at `now` (`now ≥ end + grace`): no sample still on its way is
    /// waited for, its summaries can be emitted.
    pub fn is_closed(&self, bucket: Bucket, now: Timestamp) -> bool {
        self.closes_at(bucket).as_secs_f64() <= now.as_secs_f64()
    }

    /// The latest timestamp a sample may carry at `now`; later ones are refused
    /// ([`RecordError::TooFarInFuture`]): a clock far off, or milliseconds written as seconds.
    pub fn future_horizon(&self, now: Timestamp) -> Timestamp {
        Timestamp::from_secs_f64(now.as_secs_f64() + self.max_future_secs as f64)
    }

    /// Whether `watermark`, the end of the last bucket a caller emitted, is ahead of `now` by
    /// more than one bucket and its grace. With a clock that only moves forward it is at most
    /// `now - grace`; one interval more is tolerated (a clock stepped back a little), beyond that
    /// it was written before the clock went back, and honouring it would hold every new sample
    /// until the clock catches up.
    pub fn is_ahead_of_clock(&self, watermark: Timestamp, now: Timestamp) -> bool {
        watermark.as_secs_f64() > now.as_secs_f64() + self.interval_secs as f64 + self.grace_secs as f64
    }

    /// The bucket to aggregate next for a caller that keeps its samples durably and emits one
    /// bucket at a time: the bucket holding `oldest`, its oldest pending sample, but never one
    /// before `watermark`, the end of the last bucket it emitted (older samples are late and fold
    /// into this bucket). `None` while that bucket is still open at `now`.
    pub fn next_closed_bucket(
        &self,
        oldest: Timestamp,
        watermark: Option<Timestamp>,
        now: Timestamp,
    ) -> Option<Bucket> {
        let from = match watermark {
            Some(w) if w.as_secs_f64() > oldest.as_secs_f64() => w,
            _ => oldest,
        };
        let bucket = self.bucket_of(from);
        self.is_closed(bucket, now).then_some(bucket)
    }
}

/// One flush bucket, `[start, end)`: every series recorded in it gives one point stamped `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bucket {
    start_secs: i64,
    interval_secs: u32,
}

impl Bucket {
    /// The first second of the bucket: the timestamp of its points.
    pub fn start(&self) -> Timestamp {
        Timestamp::from_secs_f64(self.start_secs as f64)
    }

    /// The first second after the bucket (the start of the next one).
    pub fn end(&self) -> Timestamp {
        Timestamp::from_secs_f64(self.end_secs() as f64)
    }

    /// [`start`](Self::start) in whole seconds.
    pub const fn start_secs(&self) -> i64 {
        self.start_secs
    }

    /// [`end`](Self::end) in whole seconds.
    pub const fn end_secs(&self) -> i64 {
        self.start_secs.saturating_add(self.interval_secs as i64)
    }
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

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

    const fn index(self) -> usize {
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
    refused: [u64; RecordError::ALL.len()],
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

/// A slot's control word ([`Aggregator::ctrl`]): empty, flushed, or a live entry's fingerprint.
type Ctrl = u16;
/// The slot holds no entry: a probe stops here.
const CTRL_EMPTY: Ctrl = 0;
/// The entry was handed out by `poll_flush`; the sweep removes it once the flush is complete.
const CTRL_FLUSHED: Ctrl = 1;

/// The fingerprint of a live entry whose probe hash (series and bucket, [`Aggregator::probe`]) is
/// `mixed`: 15 of its low bits, never [`CTRL_EMPTY`] or [`CTRL_FLUSHED`]. The slot index comes
/// from the high bits, so the two are nearly independent: a probe reads the entry itself for
/// about one in 32768 slots of another series.
#[inline(always)]
const fn fingerprint(mixed: u64) -> Ctrl {
    (mixed as Ctrl) | 2
}

#[derive(Debug, Clone, Copy)]
enum State {
    Sum {
        sum: f64,
        n: u64,
    },
    Gauge {
        last: f64,
        last_ts: f64,
        sum: f64,
        n: u32,
    },
    Samples {
        n: u8,
        values: [f64; INLINE_SAMPLES],
    },
    Members {
        samples: u32,
        n: u8,
        hashes: [u64; INLINE_MEMBERS],
    },
    /// A histogram or set in pool slot `slot`; `samples` counts set samples.
    Pooled {
        slot: u16,
        samples: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    /// Bucket start divided by the interval (`u32`: up to year 2106 at a 1 s interval).
    bucket: u32,
    key_off: u32,
    key_len: u16,
    name_len: u16,
    tag_count: u8,
    kind: MetricType,
    state: State,
}

impl Entry {
    const EMPTY: Entry = Entry {
        hash: 0,
        bucket: 0,
        key_off: 0,
        key_len: 0,
        name_len: 0,
        tag_count: 0,
        kind: MetricType::Count,
        state: State::Sum { sum: 0.0, n: 0 },
    };
}

/// The entries, each on a cache line of its own (an entry is 64 bytes).
#[derive(Clone)]
#[repr(C, align(64))]
struct Lines<const SERIES: usize>([Entry; SERIES]);

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // the pool holds the large variants on purpose
enum Slot {
    Free,
    Histogram(Histogram),
    Set(SetCounter),
}

/// The bucket of the last timestamp that opened one, so that the samples of a bucket skip the
/// two integer divisions of [`AggregatorConfig::bucket_start`] and of its index: every `ts` in
/// `[lo, hi)` is in the bucket starting at `start`. Kept only for starts exact in `f64`
/// ([`EXACT_SECS`]); empty (`lo == hi`) until then.
#[derive(Debug, Clone, Copy)]
struct RecentBucket {
    lo: f64,
    hi: f64,
    start: i64,
    index: u32,
}

/// Whole seconds below which every integer is exact in `f64` (2^53).
const EXACT_SECS: i64 = 1 << 53;

#[derive(Debug, Clone, Copy)]
struct BucketInfo {
    start: i64,
    entries: u32,
    closed: bool,
}

/// The aggregator. See the [module docs](self).
///
/// Memory is `size_of::<Self>()`, fixed at compile time; the figures for the aliases are in
/// `docs/capacity.md` and checked by tests.
pub struct Aggregator<const SERIES: usize, const SKETCHES: usize, const KEY_BYTES: usize> {
    config: AggregatorConfig,
    /// One control word per table slot ([`CTRL_EMPTY`], [`CTRL_FLUSHED`] or a live entry's
    /// [`fingerprint`]): a probe scans this small array (2 bytes a slot, 32 slots a cache line)
    /// and reads an entry, a cache line of its own, only when the fingerprint matches.
    ctrl: [Ctrl; SERIES],
    table: Lines<SERIES>,
    occupied: usize,
    pool: [Slot; SKETCHES],
    free_slots: [u16; SKETCHES],
    free_len: usize,
    keys: [u8; KEY_BYTES],
    keys_used: usize,
    keys_dead: usize,
    buckets: heapless::Vec<BucketInfo, MAX_OPEN_BUCKETS>,
    recent: RecentBucket,
    /// Room for one sample's tag hashes while `record` sorts them (not zeroed on every call).
    tag_scratch: [u64; MAX_TAGS],
    /// Start of the oldest bucket still open: every bucket before it was closed.
    watermark: i64,
    cursor: usize,
    emitted: Option<usize>,
    flushed_pending: usize,
    stats: AggregatorStats,
}

/// 32 series-buckets, 2 pooled sketches, 4 KiB of names and tags: a microcontroller.
pub type SmallAggregator = Aggregator<32, 2, 4096>;

/// 1024 series-buckets, 64 pooled sketches, 64 KiB of names and tags: a small Linux board.
pub type BoardAggregator = Aggregator<1024, 64, 65536>;

/// 10240 series-buckets, 1024 pooled sketches, 1 MiB of names and tags: a gateway.
pub type GatewayAggregator = Aggregator<10240, 1024, { 1 << 20 }>;

impl<const SERIES: usize, const SKETCHES: usize, const KEY_BYTES: usize>
    Aggregator<SERIES, SKETCHES, KEY_BYTES>
{
    const CAPACITY_OK: () = {
        assert!(SERIES > 0 && SERIES < u32::MAX as usize, "SERIES must be in 1..u32::MAX");
        assert!(SKETCHES <= u16::MAX as usize, "SKETCHES must fit in u16");
        assert!(KEY_BYTES < u32::MAX as usize, "KEY_BYTES must fit in u32");
    };

    /// An empty aggregator. `const`, so it can live in a `static` on a board.
    pub const fn new(config: AggregatorConfig) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CAPACITY_OK;
        let mut free_slots = [0u16; SKETCHES];
        let mut i = 0;
        while i < SKETCHES {
            free_slots[i] = (SKETCHES - 1 - i) as u16;
            i += 1;
        }
        Aggregator {
            config,
            ctrl: [CTRL_EMPTY; SERIES],
            table: Lines([Entry::EMPTY; SERIES]),
            occupied: 0,
            pool: [const { Slot::Free }; SKETCHES],
            free_slots,
            free_len: SKETCHES,
            keys: [0; KEY_BYTES],
            keys_used: 0,
            keys_dead: 0,
            buckets: heapless::Vec::new(),
            recent: RecentBucket { lo: 0.0, hi: 0.0, start: 0, index: 0 },
            tag_scratch: [0; MAX_TAGS],
            watermark: i64::MIN,
            cursor: 0,
            emitted: None,
            flushed_pending: 0,
            stats: AggregatorStats {
                offered: 0,
                recorded: 0,
                late: 0,
                flushed: 0,
                refused: [0; RecordError::ALL.len()],
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AggregatorConfig {
        &self.config
    }

    /// What was offered, recorded, refused (per reason), folded late and flushed.
    pub fn stats(&self) -> &AggregatorStats {
        &self.stats
    }

    /// Series-bucket entries in use (live or awaiting the end of a flush).
    pub fn len(&self) -> usize {
        self.occupied
    }

    /// Whether no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.occupied == 0
    }

    /// Records one sample at `now`. A refused sample comes back with the reason, and is counted.
    pub fn record<'a>(&mut self, now: Timestamp, sample: Sample<'a>) -> Result<(), Refused<'a>> {
        self.stats.offered += 1;
        match self.try_record(now, &sample) {
            Ok(()) => {
                self.stats.recorded += 1;
                Ok(())
            }
            Err(error) => {
                self.stats.refused[error.index()] += 1;
                Err(Refused { sample, error })
            }
        }
    }

    fn try_record(&mut self, now: Timestamp, sample: &Sample<'_>) -> Result<(), RecordError> {
        check_key(sample)?;
        match (sample.kind, sample.value) {
            (MetricType::Set, Value::Set(_)) => {}
            (MetricType::Histogram | MetricType::Distribution, Value::Samples(samples)) => {
                let mut any = false;
                for member in samples.iter() {
                    match member {
                        Member::Num(v) if v.is_finite() => any = true,
                        Member::Num(_) => return Err(RecordError::NonFinite),
                        Member::Str(_) => return Err(RecordError::WrongValueKind),
                    }
                }
                if !any {
                    return Err(RecordError::WrongValueKind);
                }
            }
            (MetricType::Set, Value::Number(_)) | (_, Value::Set(_) | Value::Samples(_)) => {
                return Err(RecordError::WrongValueKind)
            }
            (_, Value::Number(v)) if !v.is_finite() => return Err(RecordError::NonFinite),
            (_, Value::Number(_)) => {}
        }
        let (place, late) = self.locate(now, sample)?;
        match place {
            Place::Found(index) => self.update(index, sample)?,
            Place::Vacant(vacant) => {
                let initial = self.initial_state(sample)?;
                self.insert_vacant(vacant, sample, initial)?;
            }
        }
        if late {
            self.stats.late += 1;
        }
        Ok(())
    }

    /// Merges `partial`, what another aggregator folded for this series (`key`: name, type and
    /// tags; its `timestamp` picks the bucket, its `value` is ignored), as if its samples had
    /// been recorded here one by one: sums add, the later gauge wins, histograms and set
    /// counters merge. Late partials fold into the oldest open bucket, as late samples do.
    ///
    /// This is how samples aggregated elsewhere (a DogStatsD listener's memory) join the samples
    /// of the same series and bucket recorded here: one point. Counted in the stats as one
    /// sample offered; a refusal changes nothing.
    pub fn merge(
        &mut self,
        now: Timestamp,
        key: &Sample<'_>,
        partial: Partial<'_>,
    ) -> Result<(), RecordError> {
        self.stats.offered += 1;
        match self.try_merge(now, key, partial) {
            Ok(()) => {
                self.stats.recorded += 1;
                Ok(())
            }
            Err(error) => {
                self.stats.refused[error.index()] += 1;
                Err(error)
            }
        }
    }

    fn try_merge(
        &mut self,
        now: Timestamp,
        key: &Sample<'_>,
        partial: Partial<'_>,
    ) -> Result<(), RecordError> {
        check_key(key)?;
        partial.check(key.kind)?;
        let (place, late) = self.locate(now, key)?;
        match place {
            Place::Found(index) => {
                // Works on a copy, so a refusal (no free sketch, overflow) changes nothing.
                let mut state = self.table.0[index].state;
                self.merge_into(&mut state, partial)?;
                self.table.0[index].state = state;
            }
            Place::Vacant(vacant) => {
                let mut state = match partial {
                    Partial::Sum { .. } => State::Sum { sum: 0.0, n: 0 },
                    Partial::Gauge { last, last_ts, .. } => {
                        State::Gauge { last, last_ts: last_ts.as_secs_f64(), sum: 0.0, n: 0 }
                    }
                    Partial::Samples(_) | Partial::Histogram(_) => {
                        State::Samples { n: 0, values: [0.0; INLINE_SAMPLES] }
                    }
                    Partial::SetHashes { .. } | Partial::Set { .. } => {
                        State::Members { samples: 0, n: 0, hashes: [0; INLINE_MEMBERS] }
                    }
                };
                self.merge_into(&mut state, partial)?;
                self.insert_vacant(vacant, key, state)?;
            }
        }
        if late {
            self.stats.late += 1;
        }
        Ok(())
    }

    /// Merges `partial` into `state` (a copy: on error the caller drops it, and any pool slot
    /// this call took is released).
    fn merge_into(&mut self, state: &mut State, partial: Partial<'_>) -> Result<(), RecordError> {
        match (state, partial) {
            (State::Sum { sum, n }, Partial::Sum { sum: more, n: m }) => {
                *sum = finite_sum(*sum, more)?;
                *n = n.saturating_add(m);
            }
            (
                State::Gauge { last, last_ts, sum, n },
                Partial::Gauge { last: value, last_ts: at, sum: more, n: m },
            ) => {
                *sum = finite_sum(*sum, more)?;
                let at = at.as_secs_f64();
                if at >= *last_ts {
                    *last = value;
                    *last_ts = at;
                }
                *n = n.saturating_add(u32::try_from(m).unwrap_or(u32::MAX));
            }
            (state @ (State::Samples { .. } | State::Pooled { .. }), Partial::Samples(values)) => {
                let current = self.histogram_sum(state);
                finite_sum(current, values.iter().sum())?;
                if let State::Samples { n, values: inline } = state {
                    let have = usize::from(*n);
                    if have + values.len() <= INLINE_SAMPLES {
                        inline[have..have + values.len()].copy_from_slice(values);
                        *n += values.len() as u8;
                        return Ok(());
                    }
                }
                let slot = self.pooled_histogram(state)?;
                if let Slot::Histogram(histogram) = &mut self.pool[slot as usize] {
                    for &v in values {
                        let _ = histogram.insert(v);
                    }
                }
            }
            (state @ (State::Samples { .. } | State::Pooled { .. }), Partial::Histogram(other)) => {
                finite_sum(self.histogram_sum(state), other.sum())?;
                let slot = self.pooled_histogram(state)?;
                if let Slot::Histogram(histogram) = &mut self.pool[slot as usize] {
                    histogram.merge(other);
                }
            }
            (
                state @ (State::Members { .. } | State::Pooled { .. }),
                Partial::SetHashes { hashes, samples: more },
            ) => {
                if let State::Members { samples, n, hashes: inline } = state {
                    let mut next = *inline;
                    let mut len = usize::from(*n);
                    let mut fits = true;
                    for &h in hashes {
                        if next[..len].contains(&h) {
                            continue;
                        }
                        if len == INLINE_MEMBERS {
                            fits = false;
                            break;
                        }
                        next[len] = h;
                        len += 1;
                    }
                    if fits {
                        *inline = next;
                        *n = len as u8;
                        *samples = samples.saturating_add(u32::try_from(more).unwrap_or(u32::MAX));
                        return Ok(());
                    }
                }
                let slot = self.pooled_set(state, more)?;
                if let Slot::Set(counter) = &mut self.pool[slot as usize] {
                    for &h in hashes {
                        counter.insert_hash(h);
                    }
                }
            }
            (
                state @ (State::Members { .. } | State::Pooled { .. }),
                Partial::Set { counter: other, samples: more },
            ) => {
                let slot = self.pooled_set(state, more)?;
                if let Slot::Set(counter) = &mut self.pool[slot as usize] {
                    counter.merge(other);
                }
            }
            _ => return Err(RecordError::WrongValueKind),
        }
        Ok(())
    }

    fn histogram_sum(&self, state: &State) -> f64 {
        match state {
            State::Samples { n, values } => values[..usize::from(*n)].iter().sum(),
            State::Pooled { slot, .. } => match &self.pool[*slot as usize] {
                Slot::Histogram(histogram) => histogram.sum(),
                _ => 0.0,
            },
            _ => 0.0,
        }
    }

    /// The pool slot of a histogram state, moving inline samples into a new pooled histogram
    /// first.
    fn pooled_histogram(&mut self, state: &mut State) -> Result<u16, RecordError> {
        match *state {
            State::Pooled { slot, .. } if matches!(self.pool[slot as usize], Slot::Histogram(_)) => Ok(slot),
            State::Samples { n, values } => {
                let slot = self.take_slot()?;
                let mut histogram = Histogram::new();
                for &v in &values[..usize::from(n)] {
                    let _ = histogram.insert(v);
                }
                self.pool[slot as usize] = Slot::Histogram(histogram);
                *state = State::Pooled { slot, samples: 0 };
                Ok(slot)
            }
            _ => Err(RecordError::WrongValueKind),
        }
    }

    /// The pool slot of a set state after adding `more` samples, moving inline members into a
    /// new pooled counter first.
    fn pooled_set(&mut self, state: &mut State, more: u64) -> Result<u16, RecordError> {
        let more = u32::try_from(more).unwrap_or(u32::MAX);
        match state {
            State::Pooled { slot, samples } if matches!(self.pool[*slot as usize], Slot::Set(_)) => {
                *samples = samples.saturating_add(more);
                Ok(*slot)
            }
            State::Members { samples, n, hashes } => {
                let slot = self.take_slot()?;
                let mut counter = SetCounter::new();
                for &h in &hashes[..usize::from(*n)] {
                    counter.insert_hash(h);
                }
                self.pool[slot as usize] = Slot::Set(counter);
                *state = State::Pooled { slot, samples: samples.saturating_add(more) };
                Ok(slot)
            }
            _ => Err(RecordError::WrongValueKind),
        }
    }

    /// Where `sample`'s series and bucket live: its entry, or the vacant place a new entry
    /// goes; and whether the bucket was late (folded into the oldest open one). Opens the bucket.
    fn locate(&mut self, now: Timestamp, sample: &Sample<'_>) -> Result<(Place, bool), RecordError> {
        let ts = sample.timestamp.as_secs_f64();
        // Finite and not negative (NaN fails both comparisons); `-0.0` is accepted.
        if !(0.0..f64::INFINITY).contains(&ts) {
            return Err(RecordError::InvalidTimestamp);
        }
        if ts > self.config.future_horizon(now).as_secs_f64() {
            return Err(RecordError::TooFarInFuture);
        }
        let interval = self.config.interval_secs as i64;
        let recent = self.recent;
        let (mut bucket, mut index) = if ts >= recent.lo && ts < recent.hi {
            (recent.start, Some(recent.index))
        } else {
            let start = self.config.bucket_start(ts);
            let index = u32::try_from(start / interval).ok();
            if let Some(index) = index {
                if (0..EXACT_SECS).contains(&start) && start + interval <= EXACT_SECS {
                    self.recent =
                        RecentBucket { lo: start as f64, hi: (start + interval) as f64, start, index };
                }
            }
            (start, index)
        };
        let late = bucket < self.watermark;
        if late {
            bucket = self.watermark;
            index = u32::try_from(bucket / interval).ok();
        }
        let bucket_index = index.ok_or(RecordError::InvalidTimestamp)?;
        let bucket_pos = self.bucket_position(bucket)?;

        // Series identity: name and type, then the sorted, deduplicated tag hashes.
        let tag_hashes = &mut self.tag_scratch[..sample.tags.len()];
        for (slot, tag) in tag_hashes.iter_mut().zip(sample.tags) {
            *slot = tag_hash(tag);
        }
        insertion_sort(tag_hashes);
        let mut series = hash_bytes(sample.kind as u64, sample.name.as_bytes());
        let mut distinct = 0u8;
        let mut previous = None;
        for &h in tag_hashes.iter() {
            if previous != Some(h) {
                series = hash_u64(series, h);
                distinct += 1;
                previous = Some(h);
            }
        }
        let place = match self.find(series, bucket_index, sample, distinct) {
            Ok(index) => Place::Found(index),
            Err(free) => Place::Vacant(Vacant { free, series, bucket_index, bucket_pos, distinct }),
        };
        Ok((place, late))
    }

    /// Inserts a new entry with `state` at a place [`locate`](Self::locate) found vacant.
    fn insert_vacant(
        &mut self,
        vacant: Vacant,
        sample: &Sample<'_>,
        state: State,
    ) -> Result<(), RecordError> {
        self.insert_at(vacant.free, vacant.series, vacant.bucket_index, sample, vacant.distinct, state)?;
        self.buckets[vacant.bucket_pos].entries += 1;
        Ok(())
    }

    /// The position of `bucket` in the open-bucket list, opening it if needed.
    fn bucket_position(&mut self, bucket: i64) -> Result<usize, RecordError> {
        if let Some(pos) = self.buckets.iter().rposition(|b| b.start == bucket) {
            return Ok(pos);
        }
        self.buckets
            .push(BucketInfo { start: bucket, entries: 0, closed: false })
            .map_err(|_| RecordError::TooManyBuckets)?;
        Ok(self.buckets.len() - 1)
    }

    /// The probe hash of a series in a bucket: its high bits pick the home slot
    /// ([`home`](Self::home)), its low bits the [`fingerprint`].
    #[inline(always)]
    fn probe(hash: u64, bucket: u32) -> u64 {
        hash_u64(hash, bucket as u64)
    }

    #[inline(always)]
    fn home(mixed: u64) -> usize {
        ((mixed as u128 * SERIES as u128) >> 64) as usize
    }

    /// Finds the live entry for this series and bucket, or the empty slot where it would go
    /// (`Err(None)` when the table is full).
    ///
    /// The hash is not keyed (the core has no random source): keys crafted to collide make
    /// their probes longer, up to a scan of the table, but never overflow anything, and the
    /// table's capacity bounds the work.
    fn find(
        &self,
        hash: u64,
        bucket: u32,
        sample: &Sample<'_>,
        tag_count: u8,
    ) -> Result<usize, Option<usize>> {
        let mixed = Self::probe(hash, bucket);
        let fingerprint = fingerprint(mixed);
        let mut i = Self::home(mixed);
        for _ in 0..SERIES {
            let ctrl = self.ctrl[i];
            if ctrl == CTRL_EMPTY {
                return Err(Some(i));
            }
            if ctrl == fingerprint {
                let entry = &self.table.0[i];
                if entry.hash == hash
                    && entry.bucket == bucket
                    && entry.kind == sample.kind
                    && entry.tag_count == tag_count
                    && bytes_eq(self.name_of(entry), sample.name.as_bytes())
                {
                    return Ok(i);
                }
            }
            i += 1;
            if i == SERIES {
                i = 0;
            }
        }
        Err(None)
    }

    /// Whether slot `i` holds a live entry (neither empty nor flushed).
    #[inline(always)]
    fn is_live(&self, i: usize) -> bool {
        self.ctrl[i] > CTRL_FLUSHED
    }

    fn name_of(&self, entry: &Entry) -> &[u8] {
        let start = entry.key_off as usize;
        &self.keys[start..start + entry.name_len as usize]
    }

    fn initial_state(&mut self, sample: &Sample<'_>) -> Result<State, RecordError> {
        let state = match (sample.kind, sample.value) {
            (MetricType::Count | MetricType::Rate, Value::Number(v)) => State::Sum { sum: v, n: 1 },
            (MetricType::Gauge, Value::Number(v)) => {
                State::Gauge { last: v, last_ts: sample.timestamp.as_secs_f64(), sum: v, n: 1 }
            }
            (MetricType::Histogram | MetricType::Distribution, Value::Number(v)) => {
                let mut values = [0.0; INLINE_SAMPLES];
                values[0] = v;
                State::Samples { n: 1, values }
            }
            (MetricType::Histogram | MetricType::Distribution, Value::Samples(samples)) => {
                let mut state = State::Samples { n: 0, values: [0.0; INLINE_SAMPLES] };
                self.add_samples(&mut state, samples)?;
                state
            }
            (MetricType::Set, Value::Set(members)) => {
                let mut state = State::Members { samples: 0, n: 0, hashes: [0; INLINE_MEMBERS] };
                self.add_members(&mut state, members)?;
                state
            }
            _ => return Err(RecordError::WrongValueKind),
        };
        Ok(state)
    }

    /// Adds several numeric samples (validated finite) to an inline or pooled histogram state,
    /// taking a pool slot when they do not fit inline. On error nothing changed.
    fn add_samples(&mut self, state: &mut State, samples: SetMembers<'_>) -> Result<(), RecordError> {
        let numbers = || samples.iter().filter_map(|m| if let Member::Num(v) = m { Some(v) } else { None });
        let current = match state {
            State::Pooled { slot, .. } => match &self.pool[*slot as usize] {
                Slot::Histogram(histogram) => histogram.sum(),
                _ => 0.0,
            },
            State::Samples { n, values } => values[..*n as usize].iter().sum(),
            _ => 0.0,
        };
        finite_sum(current, numbers().sum())?;
        match state {
            State::Pooled { slot, .. } => {
                if let Slot::Histogram(histogram) = &mut self.pool[*slot as usize] {
                    for v in numbers() {
                        let _ = histogram.insert(v);
                    }
                }
                Ok(())
            }
            State::Samples { n, values } => {
                let count = numbers().count();
                if *n as usize + count <= INLINE_SAMPLES {
                    for v in numbers() {
                        values[*n as usize] = v;
                        *n += 1;
                    }
                    return Ok(());
                }
                let slot = self.take_slot()?;
                let mut histogram = Histogram::new();
                for &v in &values[..*n as usize] {
                    let _ = histogram.insert(v);
                }
                for v in numbers() {
                    let _ = histogram.insert(v);
                }
                self.pool[slot as usize] = Slot::Histogram(histogram);
                *state = State::Pooled { slot, samples: 0 };
                Ok(())
            }
            _ => Err(RecordError::WrongValueKind),
        }
    }

    /// Adds set members to an inline or pooled state (taking a pool slot when inline storage
    /// overflows). On error nothing changed.
    fn add_members(
        &mut self,
        state: &mut State,
        members: crate::metric::SetMembers<'_>,
    ) -> Result<(), RecordError> {
        match state {
            State::Pooled { slot, samples } => {
                if let Slot::Set(counter) = &mut self.pool[*slot as usize] {
                    for member in members.iter() {
                        counter.insert(member);
                    }
                }
                *samples += 1;
                Ok(())
            }
            State::Members { samples, n, hashes } => {
                let mut next = *hashes;
                let mut len = *n as usize;
                let mut overflow = false;
                for member in members.iter() {
                    let h = hash_member(member);
                    if next[..len].contains(&h) {
                        continue;
                    }
                    if len == INLINE_MEMBERS {
                        overflow = true;
                        break;
                    }
                    next[len] = h;
                    len += 1;
                }
                if !overflow {
                    *hashes = next;
                    *n = len as u8;
                    *samples += 1;
                    return Ok(());
                }
                let slot = self.take_slot()?;
                let mut counter = SetCounter::new();
                for &h in &hashes[..*n as usize] {
                    counter.insert_hash(h);
                }
                for member in members.iter() {
                    counter.insert(member);
                }
                self.pool[slot as usize] = Slot::Set(counter);
                *state = State::Pooled { slot, samples: *samples + 1 };
                Ok(())
            }
            _ => Err(RecordError::WrongValueKind),
        }
    }

    fn take_slot(&mut self) -> Result<u16, RecordError> {
        if self.free_len == 0 {
            return Err(RecordError::SketchesFull);
        }
        self.free_len -= 1;
        Ok(self.free_slots[self.free_len])
    }

    fn release_slot(&mut self, slot: u16) {
        self.pool[slot as usize] = Slot::Free;
        self.free_slots[self.free_len] = slot;
        self.free_len += 1;
    }

    fn update(&mut self, index: usize, sample: &Sample<'_>) -> Result<(), RecordError> {
        match (&mut self.table.0[index].state, sample.value) {
            (State::Sum { sum, n }, Value::Number(v)) => {
                *sum = finite_sum(*sum, v)?;
                *n += 1;
            }
            (State::Gauge { last, last_ts, sum, n }, Value::Number(v)) => {
                *sum = finite_sum(*sum, v)?;
                let ts = sample.timestamp.as_secs_f64();
                if ts >= *last_ts {
                    *last = v;
                    *last_ts = ts;
                }
                *n = n.saturating_add(1);
            }
            (State::Samples { n, values }, Value::Number(v)) => {
                finite_sum(values[..*n as usize].iter().sum(), v)?;
                if (*n as usize) < INLINE_SAMPLES {
                    values[*n as usize] = v;
                    *n += 1;
                } else {
                    // Inline storage is full: move the samples into a pooled histogram.
                    let values = *values;
                    let slot = self.take_slot()?;
                    let mut histogram = Histogram::new();
                    for value in values {
                        let _ = histogram.insert(value);
                    }
                    let _ = histogram.insert(v);
                    self.pool[slot as usize] = Slot::Histogram(histogram);
                    self.table.0[index].state = State::Pooled { slot, samples: 0 };
                }
            }
            (State::Pooled { slot, .. }, Value::Number(v)) => {
                if let Slot::Histogram(histogram) = &mut self.pool[*slot as usize] {
                    finite_sum(histogram.sum(), v)?;
                    let _ = histogram.insert(v);
                }
            }
            (State::Members { .. } | State::Pooled { .. }, Value::Set(members)) => {
                // Works on a copy, so a refusal (no free sketch) changes nothing.
                let mut state = self.table.0[index].state;
                self.add_members(&mut state, members)?;
                self.table.0[index].state = state;
            }
            (State::Samples { .. } | State::Pooled { .. }, Value::Samples(samples)) => {
                let mut state = self.table.0[index].state;
                self.add_samples(&mut state, samples)?;
                self.table.0[index].state = state;
            }
            _ => return Err(RecordError::WrongValueKind),
        }
        Ok(())
    }

    fn insert_at(
        &mut self,
        free: Option<usize>,
        hash: u64,
        bucket: u32,
        sample: &Sample<'_>,
        tag_count: u8,
        state: State,
    ) -> Result<usize, RecordError> {
        let release = |this: &mut Self, state: State| {
            if let State::Pooled { slot, .. } = state {
                this.release_slot(slot);
            }
        };
        let Some(index) = free else {
            release(self, state);
            return Err(RecordError::Full);
        };
        // Tags sorted as their written form (`k:v` strings, as Python sorts them), deduplicated.
        let mut order = [0u8; MAX_TAGS];
        for (i, slot) in order.iter_mut().enumerate().take(sample.tags.len()) {
            *slot = i as u8;
        }
        let order = &mut order[..sample.tags.len()];
        order.sort_unstable_by(|&a, &b| cmp_written(&sample.tags[a as usize], &sample.tags[b as usize]));
        let mut key_len = sample.name.len();
        let mut previous: Option<&Tag<'_>> = None;
        for &i in order.iter() {
            let tag = &sample.tags[i as usize];
            if !previous.is_some_and(|p| cmp_written(p, tag).is_eq()) {
                key_len += 1 + tag.encoded_len();
            }
            previous = Some(tag);
        }
        // key_len <= 200 + 32 * 201: fits u16.
        let needed = RECORD_HEADER + key_len;
        if self.keys_used + needed > KEY_BYTES && self.keys_dead > 0 {
            self.compact_keys();
        }
        if self.keys_used + needed > KEY_BYTES {
            release(self, state);
            return Err(RecordError::KeysFull);
        }
        let start = self.keys_used;
        self.keys[start..start + 4].copy_from_slice(&(index as u32).to_le_bytes());
        self.keys[start + 4..start + 6].copy_from_slice(&(key_len as u16).to_le_bytes());
        let mut at = start + RECORD_HEADER;
        let mut put = |keys: &mut [u8; KEY_BYTES], bytes: &[u8]| {
            keys[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&mut self.keys, sample.name.as_bytes());
        let mut previous: Option<&Tag<'_>> = None;
        for &i in order.iter() {
            let tag = &sample.tags[i as usize];
            if previous.is_some_and(|p| cmp_written(p, tag).is_eq()) {
                continue;
            }
            previous = Some(tag);
            put(&mut self.keys, &[KEY_SEPARATOR]);
            put(&mut self.keys, tag.key.as_bytes());
            if let Some(value) = tag.value {
                put(&mut self.keys, b":");
                put(&mut self.keys, value.as_bytes());
            }
        }
        self.keys_used = start + needed;
        self.table.0[index] = Entry {
            hash,
            bucket,
            key_off: (start + RECORD_HEADER) as u32,
            key_len: key_len as u16,
            name_len: sample.name.len() as u16,
            tag_count,
            kind: sample.kind,
            state,
        };
        self.ctrl[index] = fingerprint(Self::probe(hash, bucket));
        self.occupied += 1;
        Ok(index)
    }

    /// Closes every bucket whose end plus grace is at or before `now`
    /// ([`AggregatorConfig::is_closed`]).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.close_before(Timestamp::from_secs_f64(now.as_secs_f64() - self.config.grace_secs as f64));
    }

    /// Closes every bucket that ends at or before `at`, whatever the clock and the grace: for a
    /// caller that decides itself when a bucket is complete (see the [module docs](self)).
    /// Samples later recorded for those buckets are late: they fold into the oldest open bucket.
    /// Closing never reopens: an earlier `at` than before changes nothing.
    pub fn close_before(&mut self, at: Timestamp) {
        let secs = at.as_secs_f64();
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        let open_from = self.config.bucket_start(secs);
        if open_from > self.watermark {
            self.watermark = open_from;
        }
        for bucket in self.buckets.iter_mut() {
            if bucket.start < self.watermark {
                bucket.closed = true;
            }
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the earliest moment an open
    /// bucket closes, or `None` when nothing is open.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.buckets.iter().filter(|b| !b.closed).map(|b| b.start).min().map(|start| {
            self.config.closes_at(Bucket { start_secs: start, interval_secs: self.config.interval_secs })
        })
    }

    /// Closes every open bucket now, whatever the time: for a shutdown, after which the open
    /// buckets are flushed rather than lost.
    pub fn close_all(&mut self) {
        if let Some(latest) = self.buckets.iter().map(|b| b.start).max() {
            let next = latest.saturating_add(self.config.interval_secs as i64);
            if next > self.watermark {
                self.watermark = next;
            }
        }
        for bucket in self.buckets.iter_mut() {
            bucket.closed = true;
        }
    }

    /// The next series-bucket summary of a closed bucket, oldest bucket first; `None` when
    /// every closed bucket has been handed out. Call until `None`: each summary is handed out
    /// exactly once and its entry is released on the next call.
    pub fn poll_flush(&mut self) -> Option<Flushed<'_>> {
        if let Some(index) = self.emitted.take() {
            self.retire(index);
        }
        loop {
            let Some(pos) = self.oldest_closed_bucket() else {
                self.sweep();
                return None;
            };
            let bucket = self.buckets[pos];
            if bucket.entries == 0 {
                self.buckets.remove(pos);
                self.cursor = 0;
                continue;
            }
            let index = self.index_of(bucket.start);
            let found = (self.cursor..SERIES).find(|&i| self.is_live(i) && self.table.0[i].bucket == index);
            match found {
                Some(index) => {
                    self.cursor = index + 1;
                    self.emitted = Some(index);
                    self.stats.flushed += 1;
                    return Some(self.view(index));
                }
                None => {
                    // Only reachable if the entry count drifted; never lose the bucket silently.
                    debug_assert!(
                        false,
                        "bucket {} lists {} entries not found",
                        bucket.start, bucket.entries
                    );
                    self.buckets.remove(pos);
                    self.cursor = 0;
                }
            }
        }
    }

    fn index_of(&self, start: i64) -> u32 {
        (start / self.config.interval_secs as i64) as u32
    }

    fn oldest_closed_bucket(&self) -> Option<usize> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| b.closed)
            .min_by_key(|(_, b)| b.start)
            .map(|(pos, _)| pos)
    }

    fn retire(&mut self, index: usize) {
        let entry = self.table.0[index];
        if let State::Pooled { slot, .. } = entry.state {
            self.release_slot(slot);
        }
        let start = entry.bucket as i64 * self.config.interval_secs as i64;
        if let Some(bucket) = self.buckets.iter_mut().find(|b| b.start == start) {
            bucket.entries = bucket.entries.saturating_sub(1);
        }
        self.ctrl[index] = CTRL_FLUSHED;
        self.flushed_pending += 1;
        self.keys_dead += RECORD_HEADER + entry.key_len as usize;
        let header = entry.key_off as usize - RECORD_HEADER;
        self.keys[header..header + 4].copy_from_slice(&NO_OWNER.to_le_bytes());
    }

    /// Removes flushed entries from the table (backward-shift deletion keeps every probe chain
    /// intact) and compacts the key arena.
    fn sweep(&mut self) {
        if self.flushed_pending > 0 {
            for i in 0..SERIES {
                while self.ctrl[i] == CTRL_FLUSHED {
                    self.delete_at(i);
                }
            }
            self.flushed_pending = 0;
        }
        if self.keys_dead > 0 {
            self.compact_keys();
        }
    }

    fn delete_at(&mut self, hole: usize) {
        let mut hole = hole;
        if self.ctrl[hole] != CTRL_EMPTY {
            self.occupied -= 1;
        }
        self.ctrl[hole] = CTRL_EMPTY;
        let mut j = hole;
        loop {
            j = if j + 1 == SERIES { 0 } else { j + 1 };
            let ctrl = self.ctrl[j];
            if ctrl == CTRL_EMPTY {
                return;
            }
            let entry = self.table.0[j];
            let home = Self::home(Self::probe(entry.hash, entry.bucket));
            // Move `j` into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if stays {
                continue;
            }
            self.table.0[hole] = entry;
            self.ctrl[hole] = ctrl;
            self.ctrl[j] = CTRL_EMPTY;
            if ctrl > CTRL_FLUSHED {
                let header = entry.key_off as usize - RECORD_HEADER;
                self.keys[header..header + 4].copy_from_slice(&(hole as u32).to_le_bytes());
            }
            hole = j;
        }
    }

    /// Moves every live key record to the front of the arena, fixing its owner's offset.
    fn compact_keys(&mut self) {
        let mut read = 0;
        let mut write = 0;
        while read + RECORD_HEADER <= self.keys_used {
            let owner = u32::from_le_bytes([
                self.keys[read],
                self.keys[read + 1],
                self.keys[read + 2],
                self.keys[read + 3],
            ]);
            let len = u16::from_le_bytes([self.keys[read + 4], self.keys[read + 5]]) as usize;
            let total = RECORD_HEADER + len;
            let live = (owner as usize) < SERIES
                && self.is_live(owner as usize)
                && self.table.0[owner as usize].key_off as usize == read + RECORD_HEADER;
            if live {
                if write != read {
                    self.keys.copy_within(read..read + total, write);
                    self.table.0[owner as usize].key_off = (write + RECORD_HEADER) as u32;
                }
                write += total;
            }
            read += total;
        }
        self.keys_used = write;
        self.keys_dead = 0;
    }

    fn view(&self, index: usize) -> Flushed<'_> {
        let entry = &self.table.0[index];
        let start = entry.key_off as usize;
        let key = &self.keys[start..start + entry.key_len as usize];
        let name = core::str::from_utf8(&key[..entry.name_len as usize]).unwrap_or("");
        let mut tags = heapless::Vec::new();
        if entry.key_len > entry.name_len {
            for part in key[entry.name_len as usize + 1..].split(|&b| b == KEY_SEPARATOR) {
                if let Ok(text) = core::str::from_utf8(part) {
                    let _ = tags.push(Tag::parse(text));
                }
            }
        }
        let aggregate = match entry.state {
            State::Sum { sum, n } => AggregateView::Sum { sum, n },
            State::Gauge { last, sum, n, .. } => AggregateView::Gauge { last, sum, n: n.into() },
            State::Samples { n, values } => {
                let mut sorted = values;
                let sorted_len = n as usize;
                insertion_sort_f64(&mut sorted[..sorted_len]);
                AggregateView::Samples { sorted, n }
            }
            State::Members { samples, n, .. } => {
                AggregateView::Members { distinct: n as u64, samples: samples as u64 }
            }
            State::Pooled { slot, samples } => match &self.pool[slot as usize] {
                Slot::Histogram(histogram) => AggregateView::Histogram(histogram),
                Slot::Set(counter) => {
                    AggregateView::Members { distinct: counter.estimate(), samples: samples as u64 }
                }
                Slot::Free => AggregateView::Sum { sum: 0.0, n: 0 },
            },
        };
        Flushed {
            name,
            tags,
            kind: entry.kind,
            timestamp: Timestamp::from_secs_f64(entry.bucket as f64 * self.config.interval_secs as f64),
            interval_secs: self.config.interval_secs,
            aggregate,
        }
    }
}

/// The summary of one series in one closed bucket, borrowed from the aggregator.
#[derive(Debug, Clone)]
pub struct Flushed<'a> {
    /// The metric name.
    pub name: &'a str,
    /// The tags, sorted as `k:v` strings, without duplicates.
    pub tags: heapless::Vec<Tag<'a>, MAX_TAGS>,
    /// The type the samples were recorded with.
    pub kind: MetricType,
    /// The bucket's start: the timestamp of every point emitted for it.
    pub timestamp: Timestamp,
    /// The flush interval in seconds.
    pub interval_secs: u32,
    aggregate: AggregateView<'a>,
}

/// What a closed bucket holds for one series ([`Flushed::state`]).
#[derive(Debug, Clone, Copy)]
pub enum FlushedState<'a> {
    /// Counts and rates: the sum of `n` samples.
    Sum {
        /// The sum.
        sum: f64,
        /// Samples.
        n: u64,
    },
    /// Gauges: the latest value, and the sum of `n` samples.
    Gauge {
        /// The latest value.
        last: f64,
        /// The sum.
        sum: f64,
        /// Samples.
        n: u64,
    },
    /// Histograms and distributions with few samples: every sample, sorted.
    Samples(&'a [f64]),
    /// Histograms and distributions with more: the exact-then-sketch histogram.
    Histogram(&'a Histogram),
    /// Sets: the distinct members (estimated past the exact limit) over `samples`.
    Set {
        /// Distinct members.
        distinct: u64,
        /// Samples.
        samples: u64,
    },
}

#[derive(Debug, Clone)]
enum AggregateView<'a> {
    Sum { sum: f64, n: u64 },
    Gauge { last: f64, sum: f64, n: u64 },
    Samples { sorted: [f64; INLINE_SAMPLES], n: u8 },
    Histogram(&'a Histogram),
    Members { distinct: u64, samples: u64 },
}

impl Summary for AggregateView<'_> {
    fn count(&self) -> u64 {
        match self {
            AggregateView::Sum { n, .. } | AggregateView::Gauge { n, .. } => *n,
            AggregateView::Samples { n, .. } => *n as u64,
            AggregateView::Histogram(h) => h.count(),
            AggregateView::Members { samples, .. } => *samples,
        }
    }

    fn sum(&self) -> f64 {
        match self {
            AggregateView::Sum { sum, .. } | AggregateView::Gauge { sum, .. } => *sum,
            AggregateView::Samples { sorted, n } => sorted[..*n as usize].iter().sum(),
            AggregateView::Histogram(h) => h.sum(),
            AggregateView::Members { distinct, .. } => *distinct as f64,
        }
    }

    fn min(&self) -> f64 {
        match self {
            AggregateView::Samples { sorted, .. } => sorted[0],
            AggregateView::Histogram(h) => h.min().unwrap_or(f64::NAN),
            _ => self.quantile(0.0),
        }
    }

    fn max(&self) -> f64 {
        match self {
            AggregateView::Samples { sorted, n } => sorted[*n as usize - 1],
            AggregateView::Histogram(h) => h.max().unwrap_or(f64::NAN),
            _ => self.quantile(1.0),
        }
    }

    fn quantile(&self, p: f64) -> f64 {
        match self {
            AggregateView::Samples { sorted, n } => wrap::interpolate_sorted(&sorted[..*n as usize], p),
            AggregateView::Histogram(h) => h.quantile(p).unwrap_or(f64::NAN),
            AggregateView::Sum { sum, n } => sum / *n as f64,
            AggregateView::Gauge { last, .. } => *last,
            AggregateView::Members { distinct, .. } => *distinct as f64,
        }
    }
}

impl<'a> Flushed<'a> {
    /// The points this summary becomes under `config`, without name, tags and timestamp
    /// (attach them with [`Flushed::wrapped`]).
    pub fn outputs<'c>(&self, config: &'c WrapConfig) -> Outputs<'c> {
        let interval = self.interval_secs;
        match (&self.aggregate, self.kind) {
            (AggregateView::Sum { sum, n }, kind) => {
                wrap::wrap_sum(config, kind == MetricType::Rate, *sum, *n, interval)
            }
            (AggregateView::Gauge { last, sum, n }, _) => wrap::wrap_gauge(config, *last, *sum, *n, interval),
            (AggregateView::Members { distinct, samples }, _) => {
                wrap::wrap_set(config, *distinct, *samples, interval)
            }
            (summary, _) => wrap::wrap_histogram(config, summary, interval),
        }
    }

    /// One output as a complete point of this series.
    pub fn wrapped<'s>(&'s self, output: &wrap::Output<'s>) -> Wrapped<'s> {
        Wrapped {
            name: crate::metric::MetricName { base: self.name, suffix: output.suffix },
            kind: output.kind,
            tags: &self.tags,
            timestamp: self.timestamp,
            value: output.value,
            interval: output.interval,
        }
    }

    /// What the bucket holds, in a form that merges with another bucket's (what a board sends
    /// over the serial link, see [`crate::link`]).
    pub fn state(&self) -> FlushedState<'_> {
        match &self.aggregate {
            AggregateView::Sum { sum, n } => FlushedState::Sum { sum: *sum, n: *n },
            AggregateView::Gauge { last, sum, n } => FlushedState::Gauge { last: *last, sum: *sum, n: *n },
            AggregateView::Samples { sorted, n } => FlushedState::Samples(&sorted[..usize::from(*n)]),
            AggregateView::Histogram(histogram) => FlushedState::Histogram(histogram),
            AggregateView::Members { distinct, samples } => {
                FlushedState::Set { distinct: *distinct, samples: *samples }
            }
        }
    }

    /// Number of samples in the bucket.
    pub fn sample_count(&self) -> u64 {
        self.aggregate.count()
    }

    /// Sum of the numeric samples (for sets, the distinct count).
    pub fn sum(&self) -> f64 {
        self.aggregate.sum()
    }

    /// The `p` quantile of a histogram or distribution (exact while few samples were seen).
    pub fn quantile(&self, p: f64) -> f64 {
        self.aggregate.quantile(p)
    }
}

/// What [`Aggregator::merge`] takes: one series' samples aggregated elsewhere over part of a
/// bucket, in the form each type keeps.
#[derive(Debug, Clone, Copy)]
pub enum Partial<'a> {
    /// Counts and rates: the sum of `n` samples.
    Sum {
        /// The sum.
        sum: f64,
        /// Samples.
        n: u64,
    },
    /// Gauges: the latest value and when it was sampled (the later of two merged gauges wins),
    /// and the sum of `n` samples.
    Gauge {
        /// The latest value.
        last: f64,
        /// When it was sampled.
        last_ts: Timestamp,
        /// The sum.
        sum: f64,
        /// Samples.
        n: u64,
    },
    /// Histograms and distributions: a few samples.
    Samples(&'a [f64]),
    /// Histograms and distributions: more samples.
    Histogram(&'a Histogram),
    /// Sets: a few members, as [`hash_member`] hashes, over `samples`.
    SetHashes {
        /// Distinct member hashes.
        hashes: &'a [u64],
        /// Samples.
        samples: u64,
    },
    /// Sets: a counter, over `samples`.
    Set {
        /// The members.
        counter: &'a SetCounter,
        /// Samples.
        samples: u64,
    },
}

impl Partial<'_> {
    /// Whether this partial fits a series of type `kind`, with finite numbers.
    fn check(&self, kind: MetricType) -> Result<(), RecordError> {
        let fits = match self {
            Partial::Sum { .. } => matches!(kind, MetricType::Count | MetricType::Rate),
            Partial::Gauge { .. } => kind == MetricType::Gauge,
            Partial::Samples(_) | Partial::Histogram(_) => {
                matches!(kind, MetricType::Histogram | MetricType::Distribution)
            }
            Partial::SetHashes { .. } | Partial::Set { .. } => kind == MetricType::Set,
        };
        if !fits {
            return Err(RecordError::WrongValueKind);
        }
        let finite = match self {
            Partial::Sum { sum, .. } => sum.is_finite(),
            Partial::Gauge { last, sum, .. } => last.is_finite() && sum.is_finite(),
            Partial::Samples(values) => values.iter().all(|v| v.is_finite()),
            Partial::Histogram(histogram) => histogram.sum().is_finite(),
            Partial::SetHashes { .. } | Partial::Set { .. } => true,
        };
        let empty = match self {
            Partial::Samples(values) => values.is_empty(),
            Partial::Histogram(histogram) => histogram.count() == 0,
            Partial::SetHashes { hashes, .. } => hashes.is_empty(),
            _ => false,
        };
        if empty {
            return Err(RecordError::WrongValueKind);
        }
        if finite {
            Ok(())
        } else {
            Err(RecordError::NonFinite)
        }
    }
}

/// Where a series-bucket goes ([`Aggregator::locate`]).
enum Place {
    Found(usize),
    Vacant(Vacant),
}

struct Vacant {
    free: Option<usize>,
    series: u64,
    bucket_index: u32,
    bucket_pos: usize,
    distinct: u8,
}

/// The checks on a sample's name and tags, whatever its value.
fn check_key(sample: &Sample<'_>) -> Result<(), RecordError> {
    if sample.name.is_empty() {
        return Err(RecordError::EmptyName);
    }
    if sample.name.len() > MAX_NAME_BYTES {
        return Err(RecordError::NameTooLong);
    }
    if sample.tags.len() > MAX_TAGS {
        return Err(RecordError::TooManyTags);
    }
    if sample.tags.iter().any(|t| t.encoded_len() > MAX_TAG_BYTES) {
        return Err(RecordError::TagTooLong);
    }
    Ok(())
}

/// `a + b`, or [`RecordError::Overflow`] when that is not finite (both are finite: validated).
fn finite_sum(a: f64, b: f64) -> Result<f64, RecordError> {
    let sum = a + b;
    if sum.is_finite() {
        Ok(sum)
    } else {
        Err(RecordError::Overflow)
    }
}

/// Hashes a tag by its written form (`key:value`, or the bare `key`), so `{key: "a", value: "b"}`
/// and the bare `"a:b"` are one tag: one pass over its bytes, with no search for a colon.
#[inline]
fn tag_hash(tag: &Tag<'_>) -> u64 {
    const TAG_SEED: u64 = 0x7461_6773;
    match tag.value {
        None => hash_bytes(TAG_SEED, tag.key.as_bytes()),
        Some(value) => hash_joined(TAG_SEED, tag.key.as_bytes(), b':', value.as_bytes()),
    }
}

/// Orders tags as Python orders their `k:v` strings (bytewise).
fn cmp_written(a: &Tag<'_>, b: &Tag<'_>) -> core::cmp::Ordering {
    fn bytes<'t>(tag: &Tag<'t>) -> impl Iterator<Item = u8> + 't {
        let value = tag.value;
        tag.key.bytes().chain(value.map(|_| b':')).chain(value.unwrap_or("").bytes())
    }
    bytes(a).cmp(bytes(b))
}

/// `a == b`, a word at a time (the last word overlapping the one before): names are short, and
/// a call to `memcmp` cost more than the comparison.
#[inline(always)]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    fn word(bytes: &[u8], at: usize) -> u64 {
        bytes.get(at..).and_then(|b| b.first_chunk()).map_or(0, |w| u64::from_le_bytes(*w))
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

fn insertion_sort(values: &mut [u64]) {
    for i in 1..values.len() {
        let mut j = i;
        while j > 0 && values[j - 1] > values[j] {
            values.swap(j - 1, j);
            j -= 1;
        }
    }
}

fn insertion_sort_f64(values: &mut [f64]) {
    for i in 1..values.len() {
        let mut j = i;
        while j > 0 && values[j - 1] > values[j] {
            values.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::OutputType;

    type Agg = Aggregator<64, 4, 4096>;

    fn ts(secs: f64) -> Timestamp {
        Timestamp::from_secs_f64(secs)
    }

    fn num<'a>(name: &'a str, kind: MetricType, tags: &'a [Tag<'a>], value: f64, at: f64) -> Sample<'a> {
        Sample { name, kind, tags, value: Value::Number(value), timestamp: ts(at) }
    }

    /// (name, suffix, type, tags, timestamp, value, interval) of every point flushed.
    type Point = (heapless::String<64>, OutputType, heapless::String<64>, f64, f64, Option<u32>);

    fn drain(agg: &mut Agg, config: &WrapConfig) -> heapless::Vec<Point, 64> {
        let mut points = heapless::Vec::new();
        while let Some(flushed) = agg.poll_flush() {
            for output in flushed.outputs(config) {
                let w = flushed.wrapped(&output);
                let mut name = heapless::String::new();
                let _ = fmt::write(&mut name, format_args!("{}", w.name));
                let mut tags: heapless::String<64> = heapless::String::new();
                for (i, tag) in w.tags.iter().enumerate() {
                    let _ = fmt::write(&mut tags, format_args!("{}{}", if i > 0 { "," } else { "" }, tag));
                }
                let _ = points.push((name, w.kind, tags, w.timestamp.as_secs_f64(), w.value, w.interval));
            }
        }
        points.sort_unstable_by(|a, b| (&a.0, &a.2, a.3.to_bits()).cmp(&(&b.0, &b.2, b.3.to_bits())));
        points
    }

    #[test]
    fn interleaved_series_give_exactly_one_point_per_bucket() {
        // compat §7 item 1: A, B, A in one bucket gave three points in the original.
        let mut agg = Agg::new(AggregatorConfig::DEFAULT);
        let a = [Tag::new("ep", "a")];
        let b = [Tag::new("ep", "b")];
        for (tags, value) in [(&a, 1.0), (&b, 10.0), (&a, 2.0), (&b, 20.0), (&a, 3.0)] {
            agg.record(ts(105.0), num("req", MetricType::Count, tags, value, 101.0)).unwrap();
        }
        agg.handle_timeout(ts(112.0));
        let points = drain(&mut agg, &WrapConfig::default());
        assert_eq!(points.len(), 2);
        assert_eq!(
            (points[0].2.as_str(), points[0].3, points[0].4, points[0].5),
            ("ep:a", 100.0, 6.0, Some(10))
        );
        assert_eq!((points[1].2.as_str(), points[1].3, points[1].4), ("ep:b", 100.0, 30.0));
        assert!(agg.is_empty());
    }

    #[test]
    fn tag_order_and_duplicates_do_not_split_a_series() {
        let mut agg = Agg::new(AggregatorConfig::DEFAULT);
        let one = [Tag::new("b", "2"), Tag::new("a", "1")];
        let two = [Tag::new("a", "1"), Tag::new("b", "2"), Tag::new("a", "1")];
        agg.record(ts(0.0), num("x", MetricType::Count, &one, 1.0, 1.0)).unwrap();
        agg.record(ts(0.0), num("x", MetricType::Count, &two, 1.0, 2.0)).unwrap();
        agg.handle_timeout(ts(100.0));
        let points = drain(&mut agg, &WrapConfig::default());
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].2.as_str(), points[0].4), ("a:1,b:2", 2.0));
    }

    #[test]
    fn types_are_part_of_the_series_identity() {
        let mut agg = Agg::new(AggregatorConfig::DEFAULT);
        agg.record(ts(0.0), num("x", MetricType::Count, &[], 1.0, 1.0)).unwrap();
        agg.record(ts(0.0), num("x", MetricType::Gauge, &[], 5.0, 1.0)).unwrap();
        agg.handle_timeout(ts(100.0));
        let points = drain(&mut agg, &WrapConfig::default());
        assert_eq!(points.len(), 2);
    }

    #[test]
    fn a_bucket_closes_only_after_its_grace_delay() {
        let config = AggregatorConfig::new(10).unwrap().with_grace_secs(3);
        let mut agg = Agg::new(config);
        agg.record(ts(15.0), num("g", MetricType::Gauge, &[], 1.0, 15.0)).unwrap();
        assert_eq!(agg.poll_timeout(), Some(ts(23.0)));
        agg.handle_timeout(ts(22.9));
        assert!(agg.poll_flush().is_none());
        // Still open: a sample on its way lands in the same bucket.
        agg.record(ts(22.9), num("g", MetricType::Gauge, &[], 2.0, 19.0)).unwrap();
        agg.handle_timeout(ts(23.0));
        let points = drain(&mut agg, &WrapConfig::default());
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].3, points[0].4), (10.0, 2.0));
        assert_eq!(agg.poll_timeout(), None);
    }

    #[test]
    fn a_late_sample_is_folded_into_the_oldest_open_bucket_and_counted() {
        let mut agg = Agg::new(AggregatorConfig::new(10).unwrap().with_grace_secs(0));
        agg.record(ts(5.0), num("c", MetricType::Count, &[], 1.0, 5.0)).unwrap();
        agg.handle_timeout(ts(10.0));
        let first = drain(&mut agg, &WrapConfig::default());
        assert_eq!((first[0].3, first[0].4), (0.0, 1.0));
        // Bucket 0 is emitted; a sample stamped 7 s arrives at 12 s.
        agg.record(ts(12.0), num("c", MetricType::Count, &[], 4.0, 7.0)).unwrap();
        agg.record(ts(12.0), num("c", MetricType::Count, &[], 5.0, 12.0)).unwrap();
        assert_eq!(agg.stats().late, 1);
        agg.handle_timeout(ts(20.0));
        let second = drain(&mut agg, &WrapConfig::default());
        assert_eq!(second.len(), 1);
        assert_eq!((second[0].3, second[0].4), (10.0, 9.0));
    }

    #[test]
    fn the_configured_interval_is_kept() {
        // compat §7 item 2: the original reset the interval to 10 after any merge.
        let mut agg = Agg::new(AggregatorConfig::new(15).unwrap());
        for v in [1.0, 2.0, 3.0] {
            agg.record(ts(0.0), num("r", MetricType::Rate, &[], v, 16.0)).unwrap();
        }
        agg.handle_timeout(ts(100.0));
        let points = drain(&mut agg, &WrapConfig::default());
        assert_eq!(
            (points[0].1, points[0].3, points[0].4, points[0].5),
            (OutputType::Rate, 15.0, 6.0 / 15.0, Some(15))
        );
    }

    #[test]
    fn gauge_keeps_the_latest_value_by_timestamp() {
        // compat §8.3: gauge [1,2,3,9] at [10,9,12,11] → 3 (shifted by 2 s into one bucket).
        let mut agg = Agg::new(AggregatorConfig::DEFAULT);
        for (v, at) in [(1.0, 12.0), (2.0, 11.0), (3.0, 14.0), (9.0, 13.0)] {
            agg.record(ts(0.0), num("g", MetricType::Gauge, &[], v, at)).unwrap();
        }
        agg.handle_timeout(ts(100.0));
        let points = drain(&mut agg, &WrapConfig::default());
        assert_eq!(
            (points[0].1, points[0].3, points[0].4, points[0].5),
            (OutputType::Gauge, 10.0, 3.0, None)
        );
    }

    #[test]
    fn sets_count_distinct_members_across_samples() {
        // compat §8.3: [["Alice","Bob"],["Bob","Carol"]] → count 3.
        let mut agg = Agg::new(AggregatorConfig::DEFAULT);
        let first = [Member::Str("Alice"), Member::Str("Bob")];
        let second = [Member::Str("Bob"), Member::Str("Carol"), Member::Num(1.0)];
        let third = [Member::Num(1.0), Member::Str("1")];
        for members in [&first[..], &second[..], &third[..]] {
            let sample = Sample {
                name: "users",
                kind: MetricType::Set,
                tags: &[],
                value: Value::Set(SetMembers::from_slice(members)),
                timestamp: ts(3.0),
            };
            agg.record(ts(0.0), sample).unwrap();
        }
        agg.handle_timeout(ts(100.0));
        let points = drain(&mut agg, &WrapConfig::default());
        assert_eq!((points[0].1, points[0].4, points[0].5), (OutputType::Count, 5.0, Some(10)));
    }

    #[test]
    fn a_samples_record_counts_as_its_samples() {
        // The aggregating client's shape: one record holding several histogram samples.
        let mut agg = Agg::new(AggregatorConfig::DEFAULT);
        let few = [Member::Num(1.0), Member::Num(2.0)];
        let many = [Member::Num(3.0), Member::Num(4.0), Member::Num(5.0), Member::Num(6.0)];
        for values in [&few[..], &many[..]] {
            let sample = Sample {
                name: "lat",
                kind: MetricType::Histogram,
                tags: &[],
                value: Value::Samples(SetMembers::from_slice(values)),
                timestamp: ts(1.0),
            };
            agg.record(ts(0.0), sample).unwrap();
        }
        let bad = [Member::Num(1.0), Member::Str("x")];
        let sample = Sample {
            name: "lat",
            kind: MetricType::Histogram,
            tags: &[],
            value: Value::Samples(SetMembers::from_slice(&bad)),
            timestamp: ts(1.0),
        };
        assert_eq!(agg.record(ts(0.0), sample).unwrap_err().error, RecordError::WrongValueKind);
        agg.handle_timeout(ts(100.0));
        let points = drain(&mut agg, &WrapConfig::default());
        let count = points.iter().find(|p| p.0.as_str() == "lat.count").unwrap();
        let max = points.iter().find(|p| p.0.as_str() == "lat.max").unwrap();
        assert_eq!((count.4, max.4), (0.6, 6.0));
    }

    #[test]
    fn histogram_outputs_match_the_original_example() {
        let mut agg = Agg::new(AggregatorConfig::DEFAULT);
        let tags = [Tag::new("type", "histogram")];
        let values = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0];
        let stamps = [10.0, 11.0, 12.0, 15.0, 13.0, 14.0, 19.0, 17.0];
        for (v, at) in values.iter().zip(stamps) {
            agg.record(ts(0.0), num("histogram.test", MetricType::Histogram, &tags, *v, at)).unwrap();
        }
        agg.handle_timeout(ts(100.0));
        let points = drain(&mut agg, &WrapConfig::default());
        let got: heapless::Vec<(&str, f64), 8> = points.iter().map(|p| (p.0.as_str(), p.4)).collect();
        assert_eq!(
            &got[..],
            &[
                ("histogram.test.95percentile", 3.0),
                ("histogram.test.avg", 1.875),
                ("histogram.test.count", 0.8),
                ("histogram.test.max", 3.0),
                ("histogram.test.median", 2.0),
            ]
        );
        assert!(points.iter().all(|p| p.3 == 10.0));
    }

    #[test]
    fn refusals_hand_the_sample_back_and_are_counted() {
        let mut agg = Aggregator::<2, 0, 256>::new(AggregatorConfig::DEFAULT);
        const LONG_BYTES: [u8; MAX_NAME_BYTES + 1] = [b'x'; MAX_NAME_BYTES + 1];
        const LONG: &str = match core::str::from_utf8(&LONG_BYTES) {
            Ok(text) => text,
            Err(_) => panic!(),
        };
        assert_eq!(LONG.len(), MAX_NAME_BYTES + 1);
        let cases: [(Sample<'_>, RecordError); 5] = [
            (num("", MetricType::Count, &[], 1.0, 1.0), RecordError::EmptyName),
            (num(LONG, MetricType::Count, &[], 1.0, 1.0), RecordError::NameTooLong),
            (num("n", MetricType::Count, &[], f64::NAN, 1.0), RecordError::NonFinite),
            (num("n", MetricType::Set, &[], 1.0, 1.0), RecordError::WrongValueKind),
            (num("n", MetricType::Count, &[], 1.0, 1.0e12), RecordError::TooFarInFuture),
        ];
        for (sample, error) in cases {
            let refused = agg.record(ts(0.0), sample).unwrap_err();
            assert_eq!(
                (refused.sample.name, refused.sample.timestamp, refused.error),
                (sample.name, sample.timestamp, error)
            );
        }
        agg.record(ts(0.0), num("a", MetricType::Count, &[], 1.0, 1.0)).unwrap();
        agg.record(ts(0.0), num("b", MetricType::Count, &[], 1.0, 1.0)).unwrap();
        let full = agg.record(ts(0.0), num("c", MetricType::Count, &[], 1.0, 1.0)).unwrap_err();
        assert_eq!(full.error, RecordError::Full);
        // Known series still record while the table is full.
        agg.record(ts(0.0), num("a", MetricType::Count, &[], 1.0, 2.0)).unwrap();
        let stats = agg.stats();
        assert_eq!((stats.offered, stats.recorded, stats.refused_total()), (9, 3, 6));
        assert_eq!(stats.refused(RecordError::Full), 1);
    }

    #[test]
    fn the_sketch_pool_is_shared_and_released_after_flush() {
        let mut agg = Aggregator::<8, 1, 1024>::new(AggregatorConfig::DEFAULT);
        for i in 0..10 {
            agg.record(ts(0.0), num("h1", MetricType::Histogram, &[], i as f64, 1.0)).unwrap();
        }
        for i in 0..INLINE_SAMPLES {
            agg.record(ts(0.0), num("h2", MetricType::Histogram, &[], i as f64, 1.0)).unwrap();
        }
        let refused = agg.record(ts(0.0), num("h2", MetricType::Histogram, &[], 9.0, 1.0)).unwrap_err();
        assert_eq!(refused.error, RecordError::SketchesFull);
        agg.handle_timeout(ts(100.0));
        while agg.poll_flush().is_some() {}
        // The slot came back: a new bucket can use it.
        for i in 0..10 {
            agg.record(ts(100.0), num("h2", MetricType::Histogram, &[], i as f64, 101.0)).unwrap();
        }
    }

    #[test]
    fn the_key_arena_is_compacted_after_a_flush() {
        // Room for about three keys: flushing frees them for the next bucket.
        let mut agg = Aggregator::<8, 0, 48>::new(AggregatorConfig::DEFAULT);
        for round in 0..20 {
            let base = round as f64 * 10.0;
            for name in ["alpha", "bravo", "delta"] {
                agg.record(ts(base), num(name, MetricType::Count, &[], 1.0, base + 1.0)).unwrap();
            }
            agg.handle_timeout(ts(base + 20.0));
            let mut names = 0;
            while let Some(flushed) = agg.poll_flush() {
                assert!(["alpha", "bravo", "delta"].contains(&flushed.name));
                names += 1;
            }
            assert_eq!(names, 3);
        }
    }

    #[test]
    fn close_all_flushes_open_buckets() {
        let mut agg = Agg::new(AggregatorConfig::DEFAULT);
        agg.record(ts(0.0), num("c", MetricType::Count, &[], 1.0, 1.0)).unwrap();
        agg.record(ts(0.0), num("c", MetricType::Count, &[], 1.0, 11.0)).unwrap();
        agg.close_all();
        assert_eq!(drain(&mut agg, &WrapConfig::default()).len(), 2);
        // Later samples for those buckets are late, not second points.
        agg.record(ts(12.0), num("c", MetricType::Count, &[], 1.0, 5.0)).unwrap();
        assert_eq!(agg.stats().late, 1);
    }

    #[test]
    fn buckets_are_aligned_to_the_interval() {
        let config = AggregatorConfig::new(10).unwrap();
        let bucket = config.bucket_of(ts(1_600_000_009.9));
        assert_eq!((bucket.start_secs(), bucket.end_secs()), (1_600_000_000, 1_600_000_010));
        assert_eq!((bucket.start(), bucket.end()), (ts(1_600_000_000.0), ts(1_600_000_010.0)));
        assert_eq!(config.bucket_of(ts(1_600_000_010.0)).start_secs(), 1_600_000_010);
        assert_eq!(config.bucket_of(ts(-0.5)).start_secs(), -10);
        let second = AggregatorConfig::new(1).unwrap();
        assert_eq!(second.bucket_of(ts(7.0)).start_secs(), 7);
        assert_eq!(second.bucket_of(ts(7.999)).end_secs(), 8);
        // Out of range saturates instead of overflowing.
        let far = config.bucket_of(ts(f64::INFINITY));
        assert_eq!(far.end_secs(), i64::MAX);
        for before in [f64::NEG_INFINITY, -1.0e300, i64::MIN as f64] {
            assert_eq!(config.bucket_of(ts(before)).start_secs(), i64::MIN, "{before}");
        }
        assert_eq!(config.bucket_of(ts(f64::NAN)).start_secs(), 0);
    }

    #[test]
    fn a_bucket_is_closed_from_its_end_plus_grace() {
        let config = AggregatorConfig::new(10).unwrap().with_grace_secs(3);
        let bucket = config.bucket_of(ts(15.0));
        assert_eq!(config.closes_at(bucket), ts(23.0));
        assert!(!config.is_closed(bucket, ts(22.999)));
        assert!(config.is_closed(bucket, ts(23.0)));
        assert!(AggregatorConfig::new(10).unwrap().with_grace_secs(0).is_closed(bucket, ts(20.0)));
    }

    #[test]
    fn the_future_horizon_is_where_record_starts_refusing() {
        let config = AggregatorConfig::new(10).unwrap().with_max_future_secs(600);
        assert_eq!(config.future_horizon(ts(1000.0)), ts(1600.0));
        let mut agg = Agg::new(config);
        agg.record(ts(1000.0), num("f", MetricType::Count, &[], 1.0, 1600.0)).unwrap();
        let refused = agg.record(ts(1000.0), num("f", MetricType::Count, &[], 1.0, 1600.001)).unwrap_err();
        assert_eq!(refused.error, RecordError::TooFarInFuture);
    }

    #[test]
    fn a_watermark_more_than_a_bucket_and_grace_ahead_is_ahead_of_the_clock() {
        let config = AggregatorConfig::new(10).unwrap().with_grace_secs(2);
        assert!(!config.is_ahead_of_clock(ts(1000.0), ts(1000.0)));
        assert!(!config.is_ahead_of_clock(ts(1012.0), ts(1000.0)));
        assert!(config.is_ahead_of_clock(ts(1012.5), ts(1000.0)));
    }

    #[test]
    fn the_next_closed_bucket_starts_at_the_oldest_sample_or_the_watermark() {
        let config = AggregatorConfig::new(10).unwrap().with_grace_secs(2);
        let at = |secs: i64| config.bucket_of(ts(secs as f64));
        // Nothing emitted yet: the oldest sample's bucket, once closed.
        assert_eq!(config.next_closed_bucket(ts(103.0), None, ts(112.0)), Some(at(100)));
        assert_eq!(config.next_closed_bucket(ts(103.0), None, ts(111.9)), None);
        // Samples older than the watermark belong to the bucket that starts there.
        assert_eq!(config.next_closed_bucket(ts(53.0), Some(ts(90.0)), ts(112.0)), Some(at(90)));
        assert_eq!(config.next_closed_bucket(ts(53.0), Some(ts(100.0)), ts(111.0)), None);
        // A watermark behind the oldest sample changes nothing.
        assert_eq!(config.next_closed_bucket(ts(103.0), Some(ts(60.0)), ts(112.0)), Some(at(100)));
    }

    #[test]
    fn close_before_closes_exactly_the_buckets_that_end_by_then() {
        // One-second buckets: closing bucket 7 must leave bucket 8 open (closing at `end + 1`
        // closed both, and bucket 8's samples were then folded into bucket 9).
        let config = AggregatorConfig::new(1).unwrap().with_grace_secs(5);
        let mut agg = Agg::new(config);
        let bucket = config.bucket_of(ts(7.5));
        agg.close_before(bucket.start());
        agg.record(ts(100.0), num("c", MetricType::Count, &[], 1.0, 6.5)).unwrap();
        agg.record(ts(100.0), num("c", MetricType::Count, &[], 2.0, 7.5)).unwrap();
        agg.record(ts(100.0), num("c", MetricType::Count, &[], 4.0, 8.5)).unwrap();
        assert_eq!(agg.stats().late, 1);
        agg.close_before(bucket.end());
        let points = drain(&mut agg, &WrapConfig::default());
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].3, points[0].4), (7.0, 3.0));
        // An earlier `at` reopens nothing; the grace plays no part.
        agg.close_before(ts(3.0));
        agg.close_before(ts(9.0));
        let points = drain(&mut agg, &WrapConfig::default());
        assert_eq!((points.len(), points[0].3, points[0].4), (1, 8.0, 4.0));
        assert_eq!(agg.stats().late, 1);
        assert!(agg.is_empty());
    }

    #[test]
    fn capacity_refusals_are_the_ones_a_flush_can_cure() {
        let capacity: heapless::Vec<RecordError, 12> =
            RecordError::ALL.iter().copied().filter(|e| e.is_capacity()).collect();
        assert_eq!(
            &capacity[..],
            &[
                RecordError::Full,
                RecordError::KeysFull,
                RecordError::SketchesFull,
                RecordError::TooManyBuckets
            ]
        );
        // Each capacity refusal, produced for real: the sample is valid, the room is not there.
        let mut agg = Aggregator::<1, 0, 64>::new(AggregatorConfig::DEFAULT);
        agg.record(ts(0.0), num("a", MetricType::Count, &[], 1.0, 1.0)).unwrap();
        let full = agg.record(ts(0.0), num("b", MetricType::Count, &[], 1.0, 1.0)).unwrap_err();
        assert!(full.error.is_capacity(), "{:?}", full.error);
        let refused = agg.record(ts(0.0), num("", MetricType::Count, &[], 1.0, 1.0)).unwrap_err();
        assert!(!refused.error.is_capacity());
        let refused = agg.record(ts(0.0), num("a", MetricType::Count, &[], f64::NAN, 1.0)).unwrap_err();
        assert!(!refused.error.is_capacity());
        let refused = agg.record(ts(0.0), num("a", MetricType::Count, &[], 1.0, 1.0e12)).unwrap_err();
        assert!(!refused.error.is_capacity());
    }

    #[test]
    fn a_sample_that_would_overflow_its_series_is_refused_and_the_series_kept() {
        let mut agg = Aggregator::<16, 1, 1024>::new(AggregatorConfig::DEFAULT);
        let big = f64::MAX / 1.5;
        for kind in [MetricType::Count, MetricType::Gauge, MetricType::Rate, MetricType::Histogram] {
            agg.record(ts(0.0), num("o", kind, &[], big, 1.0)).unwrap();
            let refused = agg.record(ts(0.0), num("o", kind, &[], big, 2.0)).unwrap_err();
            assert_eq!(refused.error, RecordError::Overflow, "{kind:?}");
            assert!(!refused.error.is_capacity());
            agg.record(ts(0.0), num("o", kind, &[], -big, 3.0)).unwrap();
        }
        // A histogram in a pooled sketch, and a record of several samples.
        for i in 0..8 {
            agg.record(ts(0.0), num("p", MetricType::Histogram, &[], i as f64, 1.0)).unwrap();
        }
        agg.record(ts(0.0), num("p", MetricType::Histogram, &[], big, 1.0)).unwrap();
        let refused = agg.record(ts(0.0), num("p", MetricType::Histogram, &[], big, 1.0)).unwrap_err();
        assert_eq!(refused.error, RecordError::Overflow);
        let both = [Member::Num(big), Member::Num(big)];
        let sample = Sample {
            name: "s",
            kind: MetricType::Histogram,
            tags: &[],
            value: Value::Samples(SetMembers::from_slice(&both)),
            timestamp: ts(1.0),
        };
        assert_eq!(agg.record(ts(0.0), sample).unwrap_err().error, RecordError::Overflow);
        assert_eq!(agg.stats().refused(RecordError::Overflow), 6);
        agg.handle_timeout(ts(100.0));
        let mut sums = heapless::Vec::<(MetricType, f64), 8>::new();
        while let Some(flushed) = agg.poll_flush() {
            assert!(flushed.name != "s");
            if flushed.name == "o" {
                let _ = sums.push((flushed.kind, flushed.sum()));
            }
            for output in flushed.outputs(&WrapConfig::default()) {
                assert!(output.value.is_finite(), "{}: {output:?}", flushed.name);
            }
        }
        sums.sort_unstable_by_key(|(kind, _)| *kind as u8);
        assert_eq!(
            &sums[..],
            &[
                (MetricType::Count, 0.0),
                (MetricType::Gauge, 0.0),
                (MetricType::Rate, 0.0),
                (MetricType::Histogram, 0.0)
            ]
        );
    }

    #[test]
    fn the_remembered_bucket_ends_exactly_at_the_next_bucket() {
        // Every timestamp lands in the bucket bucket_start gives, whatever came before it.
        let mut agg = Agg::new(AggregatorConfig::new(10).expect("10 s"));
        let times = [100.0, 109.999_999, 110.0, 99.999_999, 100.0, 119.5, 90.0, 110.25, 0.0, 9.999];
        for &at in &times {
            agg.record(ts(200.0), num("c", MetricType::Count, &[], 1.0, at)).unwrap();
        }
        agg.close_all();
        let mut counts = heapless::Vec::<(f64, f64), 8>::new();
        while let Some(flushed) = agg.poll_flush() {
            counts.push((flushed.timestamp.as_secs_f64(), flushed.sum())).unwrap();
        }
        counts.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(&counts[..], &[(0.0, 2.0), (90.0, 2.0), (100.0, 3.0), (110.0, 3.0)]);
    }

    #[test]
    fn word_at_a_time_equality_sees_every_byte() {
        let text: [u8; 24] = core::array::from_fn(|i| b'a' + i as u8);
        for n in 0..text.len() {
            assert!(bytes_eq(&text[..n], &text[..n]));
            assert!(!bytes_eq(&text[..n], &text[..n + 1]));
            for at in 0..n {
                let mut other = text;
                other[at] ^= 0x20;
                assert!(!bytes_eq(&text[..n], &other[..n]), "{n} {at}");
            }
        }
    }

    #[test]
    fn an_entry_is_one_cache_line() {
        assert!(core::mem::size_of::<Entry>() <= 64, "{}", core::mem::size_of::<Entry>());
    }

    #[test]
    fn aggregator_sizes_are_as_documented() {
        // docs/capacity.md quotes these figures.
        let small = core::mem::size_of::<SmallAggregator>();
        let board = core::mem::size_of::<BoardAggregator>();
        let gateway = core::mem::size_of::<GatewayAggregator>();
        assert!(small <= 16 * 1024, "{small}");
        assert!(board <= 512 * 1024, "{board}");
        assert!(gateway <= 5 * 1024 * 1024, "{gateway}");
    }

    #[test]
    fn small_aggregator_fits_its_memory_budget() {
        assert!(
            core::mem::size_of::<SmallAggregator>() <= 16 * 1024,
            "{}",
            core::mem::size_of::<SmallAggregator>()
        );
    }
}
