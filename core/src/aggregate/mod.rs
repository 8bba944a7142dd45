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
//!
//! ## Where things are
//!
//! - `clock.rs`: [`AggregatorConfig`] and [`Bucket`] (bucket time), and the
//!   aggregator's open buckets (closing, the watermark, the last bucket seen).
//! - `table.rs`: the series table: where a series-bucket lives (`locate`, probing by fingerprint),
//!   inserting and deleting entries.
//! - `keys.rs`: the key arena holding each entry's name and sorted tags, and its compaction.
//! - `fold.rs`: per-type folding of samples and [`Partial`]s into an entry's state, and the
//!   pool of sketches for the entries that outgrow their inline storage.
//! - `flush.rs`: closed buckets handed out as [`Flushed`] views, and what they become as points.
//! - `errors.rs`: [`RecordError`], [`Refused`], [`AggregatorStats`].
//! - `tests.rs`: the aggregator's behaviour through its public surface.

mod clock;
mod errors;
mod flush;
mod fold;
mod identity;
mod keys;
mod table;
#[cfg(test)]
mod tests;

pub use clock::{AggregatorConfig, Bucket, ConfigError};
pub use errors::{AggregatorStats, RecordError, Refused};
pub use flush::{Flushed, FlushedState};
pub use fold::Partial;

use crate::limits::{MAX_NAME_BYTES, MAX_OPEN_BUCKETS, MAX_TAGS, MAX_TAG_BYTES};
use crate::metric::{Member, MetricType, Sample, Timestamp, Value};

use crate::prefetch::prefetch;
use clock::{BucketInfo, RecentBucket};
use fold::Slot;
use table::{Ctrl, Entry, Lines, Place, SeriesKey, CTRL_EMPTY};

/// A sample [`Aggregator::record_batch`] will record a few samples on: its series key (when it
/// has one), the slot its probe starts at, and the slot it was found at (`usize::MAX` until
/// then). A fingerprint of [`CTRL_EMPTY`] means there is nothing to fetch.
#[derive(Clone, Copy)]
struct Ahead {
    series: u64,
    /// The key's distinct tags, or `u8::MAX` for no key (more tags than a key may have).
    distinct: u8,
    fingerprint: Ctrl,
    home: usize,
    slot: usize,
}

impl Ahead {
    const NOTHING: Ahead =
        Ahead { series: 0, distinct: u8::MAX, fingerprint: CTRL_EMPTY, home: 0, slot: usize::MAX };

    #[inline(always)]
    fn key(&self) -> Option<SeriesKey> {
        (self.distinct != u8::MAX).then_some(SeriesKey { series: self.series, distinct: self.distinct })
    }
}

/// How many samples ahead of the one being recorded [`Aggregator::record_batch`] hashes a
/// series key, and fetches its control word and home entry;
const HASH_AHEAD: usize = 8;
/// finds its slot among the control words, and fetches the entry there;
const FIND_AHEAD: usize = 6;
/// fetches the entry's name and pooled sketch;
const KEY_AHEAD: usize = 4;
/// fetches what the value changes in the sketch.
const PUSH_AHEAD: usize = 2;
/// How many control words from a home slot `record_batch` looks at to find a slot.
const FIND_SLOTS: usize = 8;

/// The aggregator. See the [module docs](self).
///
/// Memory is `size_of::<Self>()`, fixed at compile time; the figures for the aliases are in
/// `docs/capacity.md` and checked by tests.
pub struct Aggregator<const SERIES: usize, const SKETCHES: usize, const KEY_BYTES: usize> {
    config: AggregatorConfig,
    /// One control word per table slot ([`CTRL_EMPTY`], [`CTRL_FLUSHED`](table::CTRL_FLUSHED) or a live entry's
    /// [`fingerprint`](table::fingerprint)): a probe scans this small array (2 bytes a slot, 32 slots a cache line)
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

    /// Start (seconds) of the oldest bucket still open: every earlier bucket is closed, and
    /// samples for them are late. `None` until something was closed.
    pub fn open_from_secs(&self) -> Option<i64> {
        (self.watermark != i64::MIN).then_some(self.watermark)
    }

    /// Records one sample at `now`. A refused sample comes back with the reason, and is counted.
    pub fn record<'a>(&mut self, now: Timestamp, sample: Sample<'a>) -> Result<(), Refused<'a>> {
        self.stats.offered += 1;
        match self.try_record(now, &sample, None) {
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

    /// Records `samples` in order, as [`record`](Self::record) would one by one: the same
    /// entries, the same stats, the same refusals, each handed to `refused` with its index.
    ///
    /// Faster on a table larger than the cache: each sample's series is hashed a few samples
    /// ahead of its turn (once, for both), and the memory its turn will touch is fetched
    /// meanwhile, one dependent step at a time: its slot's control word and entry, then its
    /// name and pooled sketch, then what its value changes in the sketch. A caller with
    /// samples at hand (a page of records, a burst of datagrams) gives them here rather than
    /// one by one.
    pub fn record_batch<'a>(
        &mut self,
        now: Timestamp,
        samples: &[Sample<'a>],
        mut refused: impl FnMut(usize, Refused<'a>),
    ) {
        let mut ahead = [Ahead::NOTHING; HASH_AHEAD];
        for (slot, sample) in ahead.iter_mut().zip(samples) {
            self.prepare(now, sample, slot);
        }
        let n = samples.len();
        for (i, sample) in samples.iter().enumerate() {
            // Each stage works on lines the stage before it fetched.
            if i + FIND_AHEAD < n {
                self.find_ahead(&mut ahead[(i + FIND_AHEAD) % HASH_AHEAD]);
            }
            if i + KEY_AHEAD < n {
                self.fetch_key_and_sketch(&ahead[(i + KEY_AHEAD) % HASH_AHEAD]);
            }
            if let Some(near) = samples.get(i + PUSH_AHEAD) {
                self.fetch_push(&ahead[(i + PUSH_AHEAD) % HASH_AHEAD], near);
            }
            let slot = &mut ahead[i % HASH_AHEAD];
            let key = slot.key();
            if let Some(next) = samples.get(i + HASH_AHEAD) {
                self.prepare(now, next, slot);
            }
            self.stats.offered += 1;
            match self.try_record(now, sample, key) {
                Ok(()) => self.stats.recorded += 1,
                Err(error) => {
                    self.stats.refused[error.index()] += 1;
                    refused(i, Refused { sample: *sample, error });
                }
            }
        }
    }

    /// The first stage of [`record_batch`](Self::record_batch), into `ahead`: the sample's
    /// series key, and the control word and entry of the slot its probe starts at fetched.
    /// No key for a sample that will be refused before its key is needed.
    #[inline(always)]
    fn prepare(&mut self, now: Timestamp, sample: &Sample<'_>, ahead: &mut Ahead) {
        *ahead = Ahead::NOTHING;
        if sample.tags.len() > MAX_TAGS {
            return;
        }
        let key = self.series_key(sample);
        (ahead.series, ahead.distinct) = (key.series, key.distinct);
        let Ok(bucket) = self.bucket_for(now, sample.timestamp) else {
            return; // Refused at its turn: nothing to fetch.
        };
        let mixed = Self::probe(key.series, bucket.index);
        let home = Self::home(mixed);
        prefetch(&self.ctrl[home]);
        prefetch(&self.table.0[home]);
        (ahead.home, ahead.fingerprint) = (home, table::fingerprint(mixed));
    }

    /// Finds the slot whose control word is the sample's fingerprint, among the few from its
    /// home slot on (a probe's usual length), and fetches its entry if it is not the home's.
    #[inline(always)]
    fn find_ahead(&self, ahead: &mut Ahead) {
        if ahead.fingerprint == CTRL_EMPTY {
            return;
        }
        let mut i = ahead.home;
        for _ in 0..FIND_SLOTS.min(SERIES) {
            match self.ctrl[i] {
                ctrl if ctrl == ahead.fingerprint => {
                    if i != ahead.home {
                        prefetch(&self.table.0[i]);
                    }
                    ahead.slot = i;
                    return;
                }
                CTRL_EMPTY => return,
                _ => i = if i + 1 == SERIES { 0 } else { i + 1 },
            }
        }
    }

    /// The entry [`find_ahead`](Self::find_ahead) found, while it still has the fingerprint.
    #[inline(always)]
    fn entry_ahead(&self, ahead: &Ahead) -> Option<&Entry> {
        let slot = ahead.slot;
        (slot < SERIES && self.ctrl[slot] == ahead.fingerprint).then(|| &self.table.0[slot])
    }

    /// Fetches the name (compared on every hit) and the pooled sketch of the sample's entry.
    #[inline(always)]
    fn fetch_key_and_sketch(&self, ahead: &Ahead) {
        if let Some(entry) = self.entry_ahead(ahead) {
            prefetch(&self.keys[entry.key_off as usize]);
            if let fold::State::Pooled { slot, .. } = entry.state {
                prefetch(&self.pool[slot as usize]);
            }
        }
    }

    /// Fetches what the sample's value changes in its pooled histogram: an exact sample's
    /// slot, or the sketch's bin.
    #[inline(always)]
    fn fetch_push(&self, ahead: &Ahead, sample: &Sample<'_>) {
        if let (Some(entry), Value::Number(value)) = (self.entry_ahead(ahead), sample.value) {
            if let fold::State::Pooled { slot, .. } = entry.state {
                if let fold::Slot::Histogram(histogram) = &self.pool[slot as usize] {
                    histogram.prefetch_push(value);
                }
            }
        }
    }

    fn try_record(
        &mut self,
        now: Timestamp,
        sample: &Sample<'_>,
        key: Option<SeriesKey>,
    ) -> Result<(), RecordError> {
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
        let (place, late) = self.locate(now, sample, key)?;
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
        let (place, late) = self.locate(now, key, None)?;
        match place {
            Place::Found(index) => {
                // Works on a copy, so a refusal (no free sketch, overflow) changes nothing.
                let mut state = self.table.0[index].state;
                self.merge_into(&mut state, partial)?;
                self.table.0[index].state = state;
            }
            Place::Vacant(vacant) => {
                let mut state = partial.empty_state();
                self.merge_into(&mut state, partial)?;
                self.insert_vacant(vacant, key, state)?;
            }
        }
        if late {
            self.stats.late += 1;
        }
        Ok(())
    }
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
