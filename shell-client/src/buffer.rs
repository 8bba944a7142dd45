//! The bounded buffer between the app's threads and the writer thread.
//!
//! Records are rendered on the app's thread (outside the lock) and appended to one byte arena
//! plus an entry list under a short mutex; the writer thread swaps the whole arena out, so in
//! steady state nothing is allocated per call.

use std::sync::atomic::{AtomicU64, Ordering};
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

/// Counters, all monotonic.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// A snapshot of the client's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// App records (metrics and logs) written to Redis.
    pub sent: u64,
    /// App records dropped: buffer full, non-finite value, or unsent at shutdown.
    pub dropped: u64,
    /// Failed Redis writes (each retried while the buffer holds).
    pub errors: u64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// The buffer: capacity in records, and a condition to wake the writer once a batch is ready
/// (`wake_at` records; above the capacity, the writer only drains on its timer).
#[derive(Debug)]
pub(crate) struct Buffer {
    batch: Mutex<Batch>,
    pub wake: Condvar,
    capacity: usize,
    wake_at: usize,
}

impl Buffer {
    pub fn new(capacity: usize, wake_at: usize) -> Self {
        Buffer {
            batch: Mutex::new(Batch::default()),
            wake: Condvar::new(),
            capacity,
            wake_at: wake_at.max(1),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a record, or refuses it (buffer full): `false`, and the caller counts the drop.
    #[inline]
    /// `closed` is read under the lock, so no record slips in after the writer's last drain.
    pub fn try_push(
        &self,
        closed: &std::sync::atomic::AtomicBool,
        kind: Kind,
        score: f64,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let mut batch = self.lock();
        if batch.entries.len() >= self.capacity || closed.load(Ordering::Relaxed) {
            return false;
        }
        batch.push_with(kind, score, write);
        if batch.entries.len() == self.wake_at {
            drop(batch);
            self.wake.notify_one();
        }
        true
    }
}
