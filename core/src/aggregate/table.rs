//! The series table: open addressing with linear probing over a small array of control words
//! (a fingerprint per slot), one cache line per entry; backward-shift deletion.

use crate::hash::hash_u64;
use crate::metric::{MetricType, Sample, Timestamp};

use super::clock::{RecentBucket, EXACT_SECS};
use super::fold::State;
use super::identity;
use super::keys::RECORD_HEADER;
use super::{Aggregator, RecordError};

/// A slot's control word ([`Aggregator::ctrl`]): empty, flushed, or a live entry's fingerprint.
pub(super) type Ctrl = u16;
/// The slot holds no entry: a probe stops here.
pub(super) const CTRL_EMPTY: Ctrl = 0;
/// The entry was handed out by `poll_flush`; the sweep removes it once the flush is complete.
pub(super) const CTRL_FLUSHED: Ctrl = 1;

/// The fingerprint of a live entry whose probe hash (series and bucket, [`Aggregator::probe`]) is
/// `mixed`: 15 of its low bits, never [`CTRL_EMPTY`] or [`CTRL_FLUSHED`]. The slot index comes
/// from the high bits, so the two are nearly independent: a probe reads the entry itself for
/// about one in 32768 slots of another series.
#[inline(always)]
pub(super) const fn fingerprint(mixed: u64) -> Ctrl {
    (mixed as Ctrl) | 2
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) hash: u64,
    /// Bucket start divided by the interval (`u32`: up to year 2106 at a 1 s interval).
    pub(super) bucket: u32,
    pub(super) key_off: u32,
    pub(super) key_len: u16,
    pub(super) name_len: u16,
    pub(super) tag_count: u8,
    pub(super) kind: MetricType,
    pub(super) state: State,
}

impl Entry {
    pub(super) const EMPTY: Entry = Entry {
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
pub(super) struct Lines<const SERIES: usize>(pub(super) [Entry; SERIES]);

impl<const SERIES: usize, const SKETCHES: usize, const KEY_BYTES: usize>
    Aggregator<SERIES, SKETCHES, KEY_BYTES>
{
    /// Where `sample`'s series and bucket live: its entry, or the vacant place a new entry
    /// goes; and whether the bucket was late (folded into the oldest open one). Opens the bucket.
    /// `key` is the sample's [`series_key`](Self::series_key) when the caller already has it.
    pub(super) fn locate(
        &mut self,
        now: Timestamp,
        sample: &Sample<'_>,
        key: Option<SeriesKey>,
    ) -> Result<(Place, bool), RecordError> {
        let BucketAt { start, index: bucket_index, late } = self.bucket_for(now, sample.timestamp)?;
        let SeriesKey { series, distinct } = match key {
            Some(key) => key,
            None => self.series_key(sample),
        };
        let bucket_pos = self.bucket_position(start)?;
        let place = match self.find(series, bucket_index, sample, distinct) {
            Ok(index) => Place::Found(index),
            Err(free) => Place::Vacant(Vacant { free, series, bucket_index, bucket_pos, distinct }),
        };
        Ok((place, late))
    }

    /// The bucket a sample at `timestamp` goes to. Changes nothing but the cache of the last
    /// bucket seen: the same until the next [`close_before`](Self::close_before).
    #[inline]
    pub(super) fn bucket_for(
        &mut self,
        now: Timestamp,
        timestamp: Timestamp,
    ) -> Result<BucketAt, RecordError> {
        let ts = timestamp.as_secs_f64();
        // Finite and not negative (NaN fails both comparisons); `-0.0` is accepted.
        if !(0.0..f64::INFINITY).contains(&ts) {
            return Err(RecordError::InvalidTimestamp);
        }
        if ts > self.config.future_horizon(now).as_secs_f64() {
            return Err(RecordError::TooFarInFuture);
        }
        let interval = self.config.interval_secs() as i64;
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
        let index = index.ok_or(RecordError::InvalidTimestamp)?;
        Ok(BucketAt { start: bucket, index, late })
    }

    /// Series identity: name and type, then the sorted, deduplicated tag hashes
    /// ([`identity::series_key`]).
    #[inline(always)]
    pub(super) fn series_key(&self, sample: &Sample<'_>) -> SeriesKey {
        identity::series_key(sample)
    }

    /// Inserts a new entry with `state` at a place [`locate`](Self::locate) found vacant.
    pub(super) fn insert_vacant(
        &mut self,
        vacant: Vacant,
        sample: &Sample<'_>,
        state: State,
    ) -> Result<(), RecordError> {
        self.insert_at(vacant.free, vacant.series, vacant.bucket_index, sample, vacant.distinct, state)?;
        self.buckets[vacant.bucket_pos].entries += 1;
        Ok(())
    }

    /// The probe hash of a series in a bucket: its high bits pick the home slot
    /// ([`home`](Self::home)), its low bits the [`fingerprint`].
    #[inline(always)]
    pub(super) fn probe(hash: u64, bucket: u32) -> u64 {
        hash_u64(hash, bucket as u64)
    }

    #[inline(always)]
    pub(super) fn home(mixed: u64) -> usize {
        ((mixed as u128 * SERIES as u128) >> 64) as usize
    }

    /// Finds the live entry for this series and bucket, or the empty slot where it would go
    /// (`Err(None)` when the table is full).
    ///
    /// The hash is not keyed (the core has no random source): keys crafted to collide make
    /// their probes longer, up to a scan of the table, but never overflow anything, and the
    /// table's capacity bounds the work.
    pub(super) fn find(
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
    pub(super) fn is_live(&self, i: usize) -> bool {
        self.ctrl[i] > CTRL_FLUSHED
    }

    pub(super) fn insert_at(
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
        let (key_off, key_len) = match self.push_key(index, sample) {
            Ok(key) => key,
            Err(error) => {
                release(self, state);
                return Err(error);
            }
        };
        self.table.0[index] = Entry {
            hash,
            bucket,
            key_off,
            key_len,
            name_len: sample.name.len() as u16,
            tag_count,
            kind: sample.kind,
            state,
        };
        self.ctrl[index] = fingerprint(Self::probe(hash, bucket));
        self.occupied += 1;
        Ok(index)
    }

    /// Removes flushed entries from the table (backward-shift deletion keeps every probe chain
    /// intact) and compacts the key arena.
    pub(super) fn sweep(&mut self) {
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

    pub(super) fn delete_at(&mut self, hole: usize) {
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
}

/// Where a series-bucket goes ([`Aggregator::locate`]).
pub(super) enum Place {
    Found(usize),
    Vacant(Vacant),
}

/// The bucket a sample goes to ([`Aggregator::bucket_for`]): its start, its index (start over
/// the interval), and whether the sample was late (folded into the oldest open bucket).
#[derive(Debug, Clone, Copy)]
pub(super) struct BucketAt {
    pub(super) start: i64,
    pub(super) index: u32,
    pub(super) late: bool,
}

/// A series' identity ([`Aggregator::series_key`]): the hash of its name, type and sorted
/// tags, and how many distinct tags it has.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeriesKey {
    pub(super) series: u64,
    pub(super) distinct: u8,
}

pub(super) struct Vacant {
    pub(super) free: Option<usize>,
    pub(super) series: u64,
    pub(super) bucket_index: u32,
    pub(super) bucket_pos: usize,
    pub(super) distinct: u8,
}

/// `a == b`, a word at a time (the last word overlapping the one before): names are short, and
/// a call to `memcmp` cost more than the comparison.
#[inline(always)]
pub(super) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (Some(last_a), Some(last_b)) = (a.last_chunk::<8>(), b.last_chunk::<8>()) else {
        return a.iter().zip(b).all(|(x, y)| x == y);
    };
    let (mut a, mut b) = (a, b);
    while a.len() > 8 {
        let (Some((word_a, rest_a)), Some((word_b, rest_b))) =
            (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
        else {
            break;
        };
        if word_a != word_b {
            return false;
        }
        (a, b) = (rest_a, rest_b);
    }
    last_a == last_b
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
