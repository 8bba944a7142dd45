//! The bounded buffer between the app's threads and the writer thread.
//!
//! Records are rendered on the app's thread (outside the lock) and appended to one byte arena
//! plus an entry list under a short mutex; the writer thread swaps the whole arena out, so in
//! steady state nothing is allocated per call.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Which queue a record goes to, and whether it counts as the app's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An app metric: `chouette:metrics:raw.*`, as JSON.
    Metric,
    /// An app metric in the buffer, in the compact form of `compact.rs` (rendered by the writer).
    Compact,
    /// An app log: `chouette:logs:wrapped.*`.
    Log,
    /// The client's own meta or process metric (metrics queue, not counted as sent).
    Meta,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub kind: Kind,
    pub score: f64,
    pub end: usize,
}

/// Records as one byte arena and their entries.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    pub entries: Vec<Entry>,
}

impl Batch {
    pub fn push(&mut self, kind: Kind, score: f64, json: &[u8]) {
        self.bytes.extend_from_slice(json);
        self.entries.push(Entry { kind, score, end: self.bytes.len() });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes accounted against the byte bound: the arena's and each entry's overhead.
    #[inline]
    pub fn held_bytes(&self) -> usize {
        self.bytes.len() + self.entries.len() * ENTRY_OVERHEAD_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }

    /// Appends a record written by `write` into the arena.
    #[inline]
    pub fn push_with(&mut self, kind: Kind, score: f64, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        self.entries.push(Entry { kind, score, end: self.bytes.len() });
    }

    /// Entry `i` and its JSON bytes.
    pub fn get(&self, i: usize) -> (Entry, &[u8]) {
        let start = if i == 0 { 0 } else { self.entries[i - 1].end };
        let e = self.entries[i];
        (e, &self.bytes[start..e.end])
    }

    /// Records of the app (metrics and logs, not meta).
    pub fn app_records(&self, range: std::ops::Range<usize>) -> u64 {
        self.entries[range].iter().filter(|e| e.kind != Kind::Meta).count() as u64
    }
}

/// Bytes the client accounts per buffered record on top of its own bytes: its [`Entry`] and the
/// uuid4 (36 bytes) the writer gives it.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Entry>() + 36;

/// Why a record was refused by the buffer (the caller counts it under this reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The buffer holds `buffer_records` records.
    Records,
    /// The record does not fit in `buffer_bytes` (with what is held), or is bigger than it.
    Bytes,
    /// No writer drains the buffer any more (inert client, or after shutdown).
    Closed,
}

/// Counters, all monotonic. Drops are kept per reason (each reported on its own), their sum is
/// `StatsSnapshot::dropped`.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) sent: AtomicU64,
    pub(crate) dropped_other: AtomicU64,
    pub(crate) dropped_buffer_records: AtomicU64,
    pub(crate) dropped_buffer_bytes: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// A snapshot of the client's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// App records (metrics and logs) written to Redis.
    pub sent: u64,
    /// App records dropped, for any reason: buffer full (records or bytes), non-finite value,
    /// unsent at shutdown. Includes the two counters below.
    pub dropped: u64,
    /// Of `dropped`: refused because the buffer held `buffer_records` records.
    pub dropped_buffer_records: u64,
    /// Of `dropped`: refused because they did not fit in `buffer_bytes` (or were bigger).
    pub dropped_buffer_bytes: u64,
    /// Of `dropped`: the rest (non-finite value, unsent at shutdown, call after shutdown, full
    /// aggregation table).
    pub dropped_other: u64,
    /// Failed Redis writes (each retried while the buffer holds).
    pub errors: u64,
    /// The most bytes the buffer ever held, the writer's unsent batch included (see
    /// `ClientConfig::buffer_bytes`); never above that bound.
    pub peak_buffered_bytes: u64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let dropped_buffer_records = self.dropped_buffer_records.load(Ordering::Relaxed);
        let dropped_buffer_bytes = self.dropped_buffer_bytes.load(Ordering::Relaxed);
        let dropped_other = self.dropped_other.load(Ordering::Relaxed);
        StatsSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: dropped_buffer_records + dropped_buffer_bytes + dropped_other,
            dropped_buffer_records,
            dropped_buffer_bytes,
            dropped_other,
            errors: self.errors.load(Ordering::Relaxed),
            peak_buffered_bytes: 0,
        }
    }

    /// Counts `n` records dropped for another reason than a full buffer.
    pub(crate) fn add_dropped(&self, n: u64) {
        self.dropped_other.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one record the buffer refused, under its reason.
    #[cold]
    pub(crate) fn add_refused(&self, why: Refused) {
        let counter = match why {
            Refused::Records => &self.dropped_buffer_records,
            Refused::Bytes => &self.dropped_buffer_bytes,
            Refused::Closed => &self.dropped_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The buffer: capacity in records and in bytes, and a condition to wake the writer once a
/// batch is ready (`wake_at` records, or a quarter of the bytes; above the capacity, the writer
/// only drains on its timer).
///
/// The byte bound covers what the client holds for records not yet written: the arena's bytes
/// plus [`ENTRY_OVERHEAD_BYTES`] per record, and the same for the batch the writer took and has
/// not finished writing (`in_flight_bytes`, kept while Redis is down), so an outage holds at
/// most `max_bytes` however large the records.
#[derive(Debug)]
pub(crate) struct Buffer {
    batch: Mutex<Batch>,
    pub wake: Condvar,
    capacity: usize,
    max_bytes: usize,
    wake_at: usize,
    wake_at_bytes: usize,
    /// Bytes of the writer's unsent batch; written by the writer under the buffer's lock.
    in_flight_bytes: AtomicUsize,
    /// High-water mark of held bytes (buffer and in flight); written under the lock.
    peak_bytes: AtomicUsize,
}

impl Buffer {
    pub fn new(capacity: usize, max_bytes: usize, wake_at: usize) -> Self {
        Buffer {
            batch: Mutex::new(Batch::default()),
            wake: Condvar::new(),
            capacity,
            max_bytes,
            wake_at: wake_at.max(1),
            wake_at_bytes: max_bytes / 4,
            in_flight_bytes: AtomicUsize::new(0),
            peak_bytes: AtomicUsize::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the bytes of the batch the writer holds unsent (call with the lock held, `_batch`).
    pub fn set_in_flight(&self, _batch: &MutexGuard<'_, Batch>, bytes: usize) {
        self.in_flight_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The most bytes ever held (buffer and in flight).
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes.load(Ordering::Relaxed)
    }

    /// Appends a record of `len` bytes, which `write` appends to the arena, or refuses it and
    /// says why (the caller counts the drop).
    ///
    /// `closed` is read under the lock, so no record slips in after the writer's last drain.
    #[inline]
    pub fn try_push(
        &self,
        closed: &std::sync::atomic::AtomicBool,
        kind: Kind,
        score: f64,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), Refused> {
        let need = len.saturating_add(ENTRY_OVERHEAD_BYTES);
        if need > self.max_bytes {
            // Bigger than the whole bound: never buffered, never even locked for.
            return Err(if closed.load(Ordering::Relaxed) { Refused::Closed } else { Refused::Bytes });
        }
        let mut batch = self.lock();
        if closed.load(Ordering::Relaxed) {
            return Err(Refused::Closed);
        }
        if batch.entries.len() >= self.capacity {
            return Err(Refused::Records);
        }
        let before = batch.held_bytes();
        let held = before + self.in_flight_bytes.load(Ordering::Relaxed) + need;
        if held > self.max_bytes {
            return Err(Refused::Bytes);
        }
        if batch.bytes.capacity() - batch.bytes.len() < len {
            grow(&mut batch.bytes, len, self.max_bytes);
        }
        let start = batch.bytes.len();
        batch.push_with(kind, score, write);
        debug_assert_eq!(batch.bytes.len() - start, len, "try_push: len must be what write appends");
        if held > self.peak_bytes.load(Ordering::Relaxed) {
            self.peak_bytes.store(held, Ordering::Relaxed);
        }
        let after = before + need;
        if batch.entries.len() == self.wake_at || (before < self.wake_at_bytes && after >= self.wake_at_bytes)
        {
            drop(batch);
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// Grows the arena for `len` more bytes: doubling, as `Vec` does, but never past the byte bound,
/// so the arena's allocation stays within `max_bytes` too.
#[cold]
fn grow(bytes: &mut Vec<u8>, len: usize, max_bytes: usize) {
    let want = bytes.capacity().saturating_mul(2).clamp(bytes.len() + len, max_bytes.max(bytes.len() + len));
    bytes.reserve_exact(want - bytes.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn push(b: &Buffer, len: usize) -> Result<(), Refused> {
        b.try_push(&AtomicBool::new(false), Kind::Log, 1.0, len, |out| out.resize(out.len() + len, b'x'))
    }

    #[test]
    fn the_byte_bound_counts_record_bytes_and_entry_overhead() {
        let per = 100 + ENTRY_OVERHEAD_BYTES;
        let bound = 3 * per + ENTRY_OVERHEAD_BYTES + 5;
        let b = Buffer::new(1000, bound, 1000);
        for _ in 0..3 {
            assert_eq!(push(&b, 100), Ok(()));
        }
        assert_eq!(push(&b, 100), Err(Refused::Bytes));
        assert_eq!(push(&b, 6), Err(Refused::Bytes));
        // A smaller record still fits in what is left, exactly.
        assert_eq!(push(&b, 5), Ok(()));
        assert_eq!(b.lock().held_bytes(), bound);
        assert_eq!(b.peak_bytes(), bound);
        assert_eq!(push(&b, 0), Err(Refused::Bytes));
        assert!(b.lock().bytes.capacity() <= bound, "the arena never grows past the bound");
    }
    #[test]
    fn a_record_bigger_than_the_bound_is_refused_and_never_buffered() {
        let b = Buffer::new(1000, 1000, 1000);
        assert_eq!(push(&b, 1000 - ENTRY_OVERHEAD_BYTES + 1), Err(Refused::Bytes));
        assert!(b.lock().is_empty());
        assert_eq!(b.lock().bytes.capacity(), 0);
        assert_eq!(b.peak_bytes(), 0);
        assert_eq!(push(&b, 1000 - ENTRY_OVERHEAD_BYTES), Ok(()));
        assert_eq!(b.peak_bytes(), 1000);
    }

    #[test]
    fn the_count_bound_is_checked_first_and_closed_refuses_everything() {
        let b = Buffer::new(2, 10_000, 1000);
        assert_eq!(push(&b, 1), Ok(()));
        assert_eq!(push(&b, 1), Ok(()));
        assert_eq!(push(&b, 1), Err(Refused::Records));
        assert_eq!(push(&b, 20_000), Err(Refused::Bytes), "oversize is refused before the count");
        let closed = AtomicBool::new(true);
        let b = Buffer::new(2, 10_000, 1000);
        assert_eq!(b.try_push(&closed, Kind::Log, 1.0, 0, |_| {}), Err(Refused::Closed));
    }

    #[test]
    fn the_writers_unsent_batch_counts_against_the_bound() {
        let per = 100 + ENTRY_OVERHEAD_BYTES;
        let b = Buffer::new(1000, 4 * per, 1000);
        {
            let guard = b.lock();
            b.set_in_flight(&guard, 3 * per);
        }
        assert_eq!(push(&b, 100), Ok(()));
        assert_eq!(push(&b, 100), Err(Refused::Bytes));
        assert_eq!(b.peak_bytes(), 4 * per);
        {
            let guard = b.lock();
            b.set_in_flight(&guard, 0);
        }
        assert_eq!(push(&b, 100), Ok(()));
    }

    #[test]
    fn refusals_are_counted_per_reason() {
        let s = Stats::default();
        s.add_refused(Refused::Records);
        s.add_refused(Refused::Bytes);
        s.add_refused(Refused::Bytes);
        s.add_refused(Refused::Closed);
        s.add_dropped(2);
        let snap = s.snapshot();
        assert_eq!(
            (snap.dropped, snap.dropped_buffer_records, snap.dropped_buffer_bytes, snap.dropped_other),
            (6, 1, 2, 3)
        );
    }
}
