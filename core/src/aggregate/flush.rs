//! Flushing: the entries of closed buckets handed out one by one as [`Flushed`] views, and the
//! points each becomes ([`Flushed::outputs`]).

use crate::limits::{INLINE_SAMPLES, MAX_TAGS};
use crate::metric::{MetricType, Tag, Timestamp, Wrapped};
use crate::sketch::Histogram;
use crate::wrap::{self, Outputs, Summary, WrapConfig};

use super::fold::{Slot, State};
use super::keys::{KEY_SEPARATOR, NO_OWNER, RECORD_HEADER};
use super::table::CTRL_FLUSHED;
use super::Aggregator;

impl<const SERIES: usize, const SKETCHES: usize, const KEY_BYTES: usize>
    Aggregator<SERIES, SKETCHES, KEY_BYTES>
{
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
                    if let State::Pooled { slot, .. } = self.table.0[index].state {
                        if let Slot::Histogram(histogram) = &mut self.pool[slot as usize] {
                            // Recording appends (`Histogram::push`): in order before it is read.
                            histogram.settle();
                        }
                    }
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

    pub(super) fn retire(&mut self, index: usize) {
        let entry = self.table.0[index];
        if let State::Pooled { slot, .. } = entry.state {
            self.release_slot(slot);
        }
        let start = entry.bucket as i64 * self.config.interval_secs() as i64;
        if let Some(bucket) = self.buckets.iter_mut().find(|b| b.start == start) {
            bucket.entries = bucket.entries.saturating_sub(1);
        }
        self.ctrl[index] = CTRL_FLUSHED;
        self.flushed_pending += 1;
        self.keys_dead += RECORD_HEADER + entry.key_len as usize;
        let header = entry.key_off as usize - RECORD_HEADER;
        self.keys[header..header + 4].copy_from_slice(&NO_OWNER.to_le_bytes());
    }

    pub(super) fn view(&self, index: usize) -> Flushed<'_> {
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
            timestamp: Timestamp::from_secs_f64(entry.bucket as f64 * self.config.interval_secs() as f64),
            interval_secs: self.config.interval_secs(),
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
pub(super) enum AggregateView<'a> {
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

pub(super) fn insertion_sort_f64(values: &mut [f64]) {
    for i in 1..values.len() {
        let mut j = i;
        while j > 0 && values[j - 1] > values[j] {
            values.swap(j - 1, j);
            j -= 1;
        }
    }
}
