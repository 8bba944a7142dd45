//! Bucket time: which bucket holds a timestamp and when it closes ([`AggregatorConfig`],
//! [`Bucket`]), and the aggregator's open buckets: opening, closing, the watermark.

use core::fmt;

use crate::metric::Timestamp;

use super::{Aggregator, RecordError};

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
    pub(super) fn bucket_start(&self, secs: f64) -> i64 {
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

/// The bucket of the last timestamp that opened one, so that the samples of a bucket skip the
/// two integer divisions of [`AggregatorConfig::bucket_start`] and of its index: every `ts` in
/// `[lo, hi)` is in the bucket starting at `start`. Kept only for starts exact in `f64`
/// ([`EXACT_SECS`]); empty (`lo == hi`) until then.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecentBucket {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) start: i64,
    pub(super) index: u32,
}

/// Whole seconds below which every integer is exact in `f64` (2^53).
pub(super) const EXACT_SECS: i64 = 1 << 53;

#[derive(Debug, Clone, Copy)]
pub(super) struct BucketInfo {
    pub(super) start: i64,
    pub(super) entries: u32,
    pub(super) closed: bool,
}

impl<const SERIES: usize, const SKETCHES: usize, const KEY_BYTES: usize>
    Aggregator<SERIES, SKETCHES, KEY_BYTES>
{
    /// The position of `bucket` in the open-bucket list, opening it if needed.
    pub(super) fn bucket_position(&mut self, bucket: i64) -> Result<usize, RecordError> {
        if let Some(pos) = self.buckets.iter().rposition(|b| b.start == bucket) {
            return Ok(pos);
        }
        self.buckets
            .push(BucketInfo { start: bucket, entries: 0, closed: false })
            .map_err(|_| RecordError::TooManyBuckets)?;
        Ok(self.buckets.len() - 1)
    }

    /// Closes every bucket whose end plus grace is at or before `now`
    /// ([`AggregatorConfig::is_closed`]).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.close_before(Timestamp::from_secs_f64(now.as_secs_f64() - self.config.grace_secs as f64));
    }

    /// Closes every bucket that ends at or before `at`, whatever the clock and the grace: for a
    /// caller that decides itself when a bucket is complete (see the [module docs](super)).
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

    pub(super) fn index_of(&self, start: i64) -> u32 {
        (start / self.config.interval_secs as i64) as u32
    }

    pub(super) fn oldest_closed_bucket(&self) -> Option<usize> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| b.closed)
            .min_by_key(|(_, b)| b.start)
            .map(|(pos, _)| pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: f64) -> Timestamp {
        Timestamp::from_secs_f64(secs)
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
}
