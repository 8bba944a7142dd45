//! The agent's steps: aggregate (raw → wrapped, one atomic commit per step), release (wrapped and
//! logs → the backend, draining the backlog), TTL cleanup, self-metrics and the status hash.
//!
//! Time is passed in (`now`, float Unix seconds), so tests drive the steps without sleeping.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use chouette_core::aggregate::{Aggregator, AggregatorConfig, Flushed, Refused};
use chouette_core::metric::{Sample, Timestamp};
use chouette_core::wire::raw::{
    encode_raw_metric, parse_raw_metric, raw_scratch_len, Number, RawRecord, RawValue,
};
use chouette_core::wire::wrapped::encode_wrapped;
use chouette_core::wire::EncodeError;
use chouette_core::wrap::WrapConfig;
use chouette_core::MetricType;

use crate::dispatch::{DestinationStats, Disposition, Outcome, Report};
use crate::dogstatsd::memory::{Memory, Merged};
use crate::limits::{
    MAX_LATENCIES, MAX_PAGE_BYTES, MAX_RAW_PER_STEP, RAW_PAGE, SMALL_STEP_KEY_BYTES, SMALL_STEP_RECORDS,
    SMALL_STEP_SERIES, SMALL_STEP_SKETCHES, STEP_KEY_BYTES, STEP_SERIES, STEP_SKETCHES,
};
use crate::store::{AggregationCommit, DeadRecord, NewRecord, Queue, Record, Store, StoreError};

/// The step's aggregator: 32,768 series-buckets (a bucket's app series plus the DogStatsD
/// listener's contexts, `DOGSTATSD_MAX_CONTEXTS`), 1024 pooled sketches, 2 MiB of names and
/// tags: about 7.3 MB, allocated for a run of steps and freed when idle. Its sizes are in
/// [`crate::limits`].
pub type StepAggregator = Aggregator<STEP_SERIES, STEP_SKETCHES, STEP_KEY_BYTES>;

/// The step's aggregator when the raw queue holds at most [`SMALL_STEP_RECORDS`] records and the
/// DogStatsD listener nothing (the agent's own self-metrics, a collector's samples): 256
/// series-buckets, 16 sketches, 32 KiB of names and tags, about 100 KB. Building
/// [`StepAggregator`] touches its 7.3 MB (on a thread's stack, then on the heap): about 8 ms of
/// CPU, at every aggregation tick of an idle agent. A step it has no room for is done again by
/// the full one.
pub type SmallStepAggregator = Aggregator<SMALL_STEP_SERIES, SMALL_STEP_SKETCHES, SMALL_STEP_KEY_BYTES>;

/// Counters the agent reports as self-metrics and in `chouette status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Raw records aggregated into wrapped points.
    pub aggregated: u64,
    /// Aggregated raw records whose bucket had already been emitted (folded into a later one).
    pub late: u64,
    /// Raw records refused, by reason (`not_json`, `non_finite`, ...), moved to the dead-letter queue.
    pub refused: BTreeMap<String, u64>,
    /// Raw ids without a value (orphans), deleted.
    pub orphans: u64,
    /// Wrapped points written.
    pub wrapped: u64,
    /// Points delivered to the backend.
    pub dispatched_metrics: u64,
    /// Compressed bytes of delivered metrics requests.
    pub dispatched_metrics_bytes: u64,
    /// Log records delivered.
    pub dispatched_logs: u64,
    /// Compressed bytes of delivered log requests.
    pub dispatched_logs_bytes: u64,
    /// Wrapped points refused by the backend or unparseable, dead-lettered.
    pub dead_metrics: u64,
    /// Logs refused by the intake or unparseable, dead-lettered.
    pub dead_logs: u64,
    /// Requests that failed and whose data was kept for a retry.
    pub retried: u64,
    /// Records deleted by the TTL cleanup (lost to age), per queue name.
    pub expired: BTreeMap<&'static str, u64>,
    /// TTL cleanups that failed (aggregation went on).
    pub cleanup_failures: u64,
    /// Whether the last TTL cleanup failed (the ERROR is written when it starts failing).
    pub cleanup_failing: bool,
    /// The last dispatch result, for `chouette status`.
    pub last_dispatch: Option<String>,
    /// Each destination's own counters, by name (`metrics`, `logs`, `influxdb`, `opentsdb`).
    pub destinations: BTreeMap<&'static str, DestinationStats>,
    /// Each destination's request durations in milliseconds since the last report (at most
    /// [`MAX_LATENCIES`] each), sent as the `chouette.dispatch.request.time` histogram.
    pub latencies: BTreeMap<&'static str, Vec<f64>>,
}

impl Counters {
    /// Keeps `durations_ms` of requests to `destination` for the next self-metrics.
    pub fn record_latencies(&mut self, destination: &'static str, durations_ms: &[f64]) {
        let kept = self.latencies.entry(destination).or_default();
        let room = MAX_LATENCIES.saturating_sub(kept.len());
        kept.extend(durations_ms.iter().take(room));
    }

    /// Adds what one committed aggregation step counted (aggregated, late, refused, orphans,
    /// wrapped).
    fn add_step(&mut self, step: &Counters) {
        self.aggregated += step.aggregated;
        self.late += step.late;
        self.orphans += step.orphans;
        self.wrapped += step.wrapped;
        for (reason, n) in &step.refused {
            *self.refused.entry(reason.clone()).or_default() += n;
        }
    }
}

/// Result of one aggregation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Committed a bucket (or part of one); call again to continue draining.
    Progress {
        /// Raw records consumed (aggregated, dead-lettered or orphans).
        consumed: usize,
    },
    /// Nothing to aggregate until the next bucket closes.
    Idle,
}

/// The aggregation step: raw records of the oldest closed bucket → wrapped points, committed
/// atomically with the deletion of the raw records and the new watermark.
pub struct Aggregation {
    wrap: WrapConfig,
    /// The bucket arithmetic (interval, grace, future horizon): the core's.
    config: AggregatorConfig,
    /// Allocated for a run of steps; [`Aggregation::release_memory`] frees the full one when
    /// idle and keeps the small one for the next tick.
    aggregator: Option<Box<dyn StepAggregate>>,
    /// The aggregator was kept through an idle tick: the next step checks it still fits.
    kept: bool,
    /// The small aggregator had no room for a step: the next one builds the full one.
    full_next: bool,
    watermark: Option<f64>,
    ids: IdGenerator,
    max_per_step: usize,
    /// Where each commit writes the bucket's points: the enabled outputs' outboxes.
    outboxes: Vec<Queue>,
    /// Whether the "watermark ahead of the clock" warning was written.
    warned_clock: bool,
    /// The DogStatsD listener's buckets, merged into the step's bucket (one point per series).
    memory: Option<Arc<Mutex<Memory>>>,
}

impl Aggregation {
    /// A step with `interval_secs` buckets closing `grace` (whole seconds) after their end;
    /// records stamped more than the core's 10 minutes ahead are dead-lettered.
    pub fn new(interval_secs: u32, grace: Duration, wrap: WrapConfig) -> Aggregation {
        let config = AggregatorConfig::new(interval_secs.max(1))
            .unwrap_or(AggregatorConfig::DEFAULT)
            .with_grace_secs(u32::try_from(grace.as_secs()).unwrap_or(u32::MAX));
        Aggregation {
            wrap,
            config,
            aggregator: None,
            kept: false,
            full_next: false,
            watermark: None,
            ids: id_generator(),
            max_per_step: MAX_RAW_PER_STEP,
            outboxes: vec![Queue::WrappedMetrics],
            warned_clock: false,
            memory: None,
        }
    }

    /// Merges the DogStatsD listener's buckets into each step's bucket: its lines and the apps'
    /// records of the same series and bucket become one point, in the same commit.
    pub fn with_memory(mut self, memory: Arc<Mutex<Memory>>) -> Aggregation {
        self.memory = Some(memory);
        self
    }

    /// Whether the listener's memory holds anything (the agent flushes it when stopping).
    pub fn memory_newest_end(&self) -> Option<f64> {
        let memory = self.memory.as_ref()?;
        lock(memory).newest_end()
    }

    /// Limits the raw records per step (tests use small values).
    pub fn with_max_per_step(mut self, max: usize) -> Aggregation {
        self.max_per_step = max.max(1);
        self
    }

    /// Writes each bucket's points to `outboxes` (default: Datadog's `chouette:metrics:wrapped`
    /// only), all in the step's one atomic commit.
    pub fn with_outboxes(mut self, outboxes: Vec<Queue>) -> Aggregation {
        self.outboxes = outboxes;
        self
    }

    /// Called when a tick has nothing more to aggregate. Frees the full aggregator (7.3 MB) until
    /// the next step needs it, so an idle agent stays small. Keeps the small one (100 KB), which
    /// the next tick reuses: building it again on a short-lived thread, then freeing it, cost an
    /// idle agent a thread, 1.5 MB of stack mapped and unmapped, and 100 KB faulted in and zeroed
    /// at every tick, about 7 % of its CPU (perf, host collection every second).
    pub fn release_memory(&mut self) {
        if aggregator_is_small(&self.aggregator) {
            self.kept = true;
        } else {
            self.aggregator = None;
        }
    }

    /// Runs one step at wall-clock `now`.
    ///
    /// A step that fails (a read between two pages, the commit refused by a Redis that answers
    /// reads but refuses writes: OOM, READONLY, NOREPLICAS, MISCONF) leaves no trace: the
    /// aggregator is dropped, `counters` are untouched and the watermark is read again from the
    /// store, so the next step aggregates the same records once.
    pub fn step(
        &mut self,
        store: &mut dyn Store,
        now: f64,
        counters: &mut Counters,
    ) -> Result<StepOutcome, StoreError> {
        let result = self.try_step(store, now, counters);
        if result.is_err() {
            self.aggregator = None;
            self.watermark = None;
        }
        result
    }

    fn try_step(
        &mut self,
        store: &mut dyn Store,
        now: f64,
        counters: &mut Counters,
    ) -> Result<StepOutcome, StoreError> {
        let swept = sweep_future(store, &self.config, now, counters)?;
        let stored = match self.watermark {
            Some(w) => w,
            None => {
                let w = store.aggregated_until()?.unwrap_or(f64::NEG_INFINITY);
                self.watermark = Some(w);
                w
            }
        };
        let config = self.config;
        let at = Timestamp::from_secs_f64;
        // A watermark written before the clock went back would hold every new record until the
        // clock catches up: ignored.
        let watermark = if !stored.is_finite() {
            None
        } else if config.is_ahead_of_clock(at(stored), at(now)) {
            if !self.warned_clock {
                log::warn!(
                    "watermark={stored:.0} now={now:.0}: the aggregation watermark is ahead of the clock (the clock went back); aggregating from the oldest record"
                );
                self.warned_clock = true;
            }
            None
        } else {
            Some(at(stored))
        };
        let oldest_raw = store.oldest_score(Queue::RawMetrics)?;
        let oldest_memory = self.memory.as_ref().and_then(|m| lock(m).oldest());
        let oldest = match (oldest_raw, oldest_memory) {
            (Some(raw), Some(memory)) => raw.min(memory),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => return Ok(Self::idle_unless(swept)),
        };
        // The bucket to emit: the oldest one present, but never one already emitted.
        let Some(bucket) = config.next_closed_bucket(at(oldest), watermark, at(now)) else {
            return Ok(Self::idle_unless(swept));
        };
        let end = bucket.end().as_secs_f64();
        let kept = std::mem::take(&mut self.kept);
        if self.aggregator.is_none() || kept {
            let small = !self.full_next
                && oldest_memory.is_none()
                && store.len(Queue::RawMetrics)? <= SMALL_STEP_RECORDS;
            // Kept through an idle tick: reused if a small one is what this step would build, and
            // it is as good as fresh: empty, and nothing closed after this bucket's start (a clock
            // that went back).
            let reusable = small
                && aggregator_is_small(&self.aggregator)
                && self.aggregator.as_ref().is_some_and(|a| {
                    a.is_empty() && a.open_from_secs().is_none_or(|open| open <= bucket.start_secs())
                });
            if !reusable {
                self.aggregator = if small {
                    new_aggregator(config, SmallStepAggregator::new).map(|a| a as Box<dyn StepAggregate>)
                } else {
                    self.full_next = false;
                    new_aggregator(config, StepAggregator::new).map(|a| a as Box<dyn StepAggregate>)
                };
            }
        }
        // The small aggregator without room for all of it: the step is done again by the full
        // one (nothing is committed; the listener's memory is merged again, as after a failure).
        let small = aggregator_is_small(&self.aggregator);
        let mut overflowed = false;
        let Some(aggregator) = self.aggregator.as_mut() else {
            return Ok(StepOutcome::Idle);
        };
        // Buckets before this one are closed: earlier records are late and fold into it.
        aggregator.close_before(bucket.start());
        // The listener's lines of this bucket (and older ones, late) first: they are in memory,
        // and the raw records fill what room is left (the rest waits for the next step).
        let merged = match &self.memory {
            Some(memory) => aggregator.merge_from(&mut lock(memory), now, end),
            None => Merged::default(),
        };
        overflowed |= small && !merged.deferred.is_empty();
        let mut commit = AggregationCommit {
            aggregated_until: end,
            outboxes: self.outboxes.clone(),
            ..AggregationCommit::default()
        };
        // Counted only once the commit is in the store.
        let mut step = Counters::default();
        let mut oversize = Vec::new();
        let mut scratch = Vec::new();
        let mut read = 0;
        // Pages can shift when records arrive meanwhile: a record seen twice is skipped (by a
        // hash of its id; a collision only leaves a record for the next step).
        let mut seen = std::collections::HashSet::with_hasher(chouette_core::hash::BuildPassThrough);
        let page_size = RAW_PAGE.min(self.max_per_step);
        while read < self.max_per_step {
            let want = page_size.min(self.max_per_step - read);
            let page = store.read_page(Queue::RawMetrics, end, read, want)?;
            read += page.len();
            // A short page is the last one unless the store cut it for bytes (`read_page`).
            let page_bytes: usize = page.iter().filter_map(|r| r.value.as_ref()).map(|v| v.len()).sum();
            let last_page =
                page.len() < want && page_bytes <= MAX_PAGE_BYTES - Queue::RawMetrics.max_record_bytes();
            for record in page {
                if !seen.insert(id_hash(&record.id)) {
                    continue;
                }
                if record.oversize.is_some() {
                    oversize.push(record);
                    continue;
                }
                let Some(value) = &record.value else {
                    step.orphans += 1;
                    commit.delete_raw.push(record.id);
                    continue;
                };
                // Grown, never cleared: the parser writes before it reads.
                if scratch.len() < raw_scratch_len(value.len()) {
                    scratch.resize(raw_scratch_len(value.len()), 0);
                }
                let raw = match parse_raw_metric(value, &mut scratch) {
                    Ok(raw) => raw,
                    Err(error) => {
                        refuse(&mut commit, &mut step, &record, value, error.reason());
                        continue;
                    }
                };
                let mut sample = raw.sample();
                // Bucketing and point timestamps both follow the ZSET score (the original
                // bucketed by score and stamped by the JSON timestamp; the client writes both).
                sample.timestamp = Timestamp::from_secs_f64(record.score);
                let before = aggregator.late();
                match aggregator.record(at(now), sample) {
                    Ok(()) => {
                        step.aggregated += 1;
                        step.late += aggregator.late() - before;
                        commit.delete_raw.push(record.id);
                    }
                    Err(refused) if refused.error.is_capacity() => {
                        // Valid, but no room in this step: left in the queue for the next one.
                        overflowed |= small;
                    }
                    Err(refused) => refuse(&mut commit, &mut step, &record, value, refused.error.as_str()),
                }
            }
            if last_page || overflowed {
                break;
            }
        }
        if overflowed {
            self.aggregator = None;
            self.full_next = true;
            return Ok(StepOutcome::Progress { consumed: swept });
        }
        if read == 0 && merged.contexts == 0 {
            if let (Some(memory), false) = (&self.memory, merged.refused.is_empty()) {
                // Nothing to commit, but the refusals are final: counted, and the buckets done.
                lock(memory).forget_through(end, &merged);
                return Ok(StepOutcome::Progress { consumed: swept });
            }
            return Ok(Self::idle_unless(swept));
        }

        aggregator.close_before(bucket.end());
        let mut buf = vec![0u8; 4096];
        while let Some(flushed) = aggregator.poll_flush() {
            for output in flushed.outputs(&self.wrap) {
                let point = flushed.wrapped(&output);
                let len = loop {
                    match encode_wrapped(&point, &mut buf) {
                        Ok(len) => break Some(len),
                        Err(chouette_core::wire::EncodeError::BufferTooSmall { required }) => {
                            buf.resize(required, 0)
                        }
                        Err(_) => break None, // non-finite aggregate: nothing sendable
                    }
                };
                if let Some(len) = len {
                    commit.wrapped.push(NewRecord {
                        id: self.ids.next_id().to_vec(),
                        score: point.timestamp.as_secs_f64(),
                        value: buf[..len].to_vec(),
                    });
                }
            }
        }
        let mut consumed = commit.delete_raw.len() + commit.dead.len();
        if consumed > 0 || !commit.wrapped.is_empty() {
            step.wrapped = commit.wrapped.len() as u64;
            store.commit_aggregation(&commit)?;
            self.watermark = Some(end);
            counters.add_step(&step);
        }
        if let Some(memory) = &self.memory {
            // Committed (or nothing to commit): the listener's buckets before `end` are done.
            lock(memory).forget_through(end, &merged);
        }
        if !oversize.is_empty() {
            // After the commit: moving them earlier would shift the pages read above.
            let moved = store.dead_letter_oversize(Queue::RawMetrics, &oversize)?;
            *counters.refused.entry("too_large".to_string()).or_default() += moved;
            log::warn!(
                "queue={} moved={moved} limit_bytes={}: raw records too large to load moved to the dead-letter queue",
                Queue::RawMetrics,
                Queue::RawMetrics.max_record_bytes()
            );
            consumed += oversize.len();
        }
        if consumed == 0 && commit.wrapped.is_empty() && merged.contexts == 0 {
            // Everything was refused for capacity (cannot happen with a fresh aggregator).
            return Ok(Self::idle_unless(swept));
        }
        if read >= page_size {
            // A backlog: the next step's first page is read while this step returns.
            store.read_soon(Queue::RawMetrics, page_size);
        }
        Ok(StepOutcome::Progress { consumed: consumed + swept })
    }

    fn idle_unless(swept: usize) -> StepOutcome {
        if swept > 0 {
            StepOutcome::Progress { consumed: swept }
        } else {
            StepOutcome::Idle
        }
    }
}

/// The memory, even if a receive thread panicked while holding it (its counters and buckets stay
/// usable: every update leaves them consistent).
pub fn lock(memory: &Mutex<Memory>) -> MutexGuard<'_, Memory> {
    memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Moves raw records stamped after the core's future horizon (10 minutes ahead of `now`) to the
/// dead-letter queue (reason `future`; too large to load: `too_large`), a page at a time;
/// returns how many. Left in the queue (a timestamp in milliseconds, a board whose clock is a
/// day off), they would wait until their bucket closes, days or centuries away.
fn sweep_future(
    store: &mut dyn Store,
    config: &AggregatorConfig,
    now: f64,
    counters: &mut Counters,
) -> Result<usize, StoreError> {
    let horizon = config.future_horizon(Timestamp::from_secs_f64(now)).as_secs_f64();
    let mut moved = 0;
    loop {
        let page = store.read_above(Queue::RawMetrics, horizon, RAW_PAGE)?;
        if page.is_empty() {
            break;
        }
        let (oversize, records): (Vec<Record>, Vec<Record>) =
            page.into_iter().partition(|r| r.oversize.is_some());
        let dead: Vec<DeadRecord> = records
            .into_iter()
            .map(|r| DeadRecord {
                id: r.id.to_vec(),
                score: r.score,
                value: r.value.map(Vec::from).unwrap_or_default(),
                reason: "future".to_string(),
            })
            .collect();
        store.dead_letter(Queue::RawMetrics, &dead)?;
        *counters.refused.entry("future".to_string()).or_default() += dead.len() as u64;
        let large = store.dead_letter_oversize(Queue::RawMetrics, &oversize)?;
        if large > 0 {
            *counters.refused.entry("too_large".to_string()).or_default() += large;
        }
        moved += dead.len() + oversize.len();
        log::warn!(
            "queue={} moved={} horizon={horizon:.0}: raw records stamped more than {} s ahead of the clock moved to the dead-letter queue",
            Queue::RawMetrics,
            dead.len() + oversize.len(),
            config.max_future_secs()
        );
    }
    Ok(moved)
}

/// What a step needs of its aggregator, whatever its capacity.
trait StepAggregate: Send {
    fn close_before(&mut self, at: Timestamp);
    fn late(&self) -> u64;
    fn record<'a>(&mut self, now: Timestamp, sample: Sample<'a>) -> Result<(), Refused<'a>>;
    fn poll_flush(&mut self) -> Option<Flushed<'_>>;
    fn merge_from(&mut self, memory: &mut Memory, now: f64, end: f64) -> Merged;
    /// Series-buckets it holds at most.
    fn capacity(&self) -> usize;
    fn is_empty(&self) -> bool;
    fn open_from_secs(&self) -> Option<i64>;
    /// Samples it has recorded since it was built.
    #[cfg(test)]
    fn recorded(&self) -> u64;
}

impl<const S: usize, const K: usize, const B: usize> StepAggregate for Aggregator<S, K, B> {
    fn close_before(&mut self, at: Timestamp) {
        Aggregator::close_before(self, at);
    }
    fn late(&self) -> u64 {
        self.stats().late
    }
    fn record<'a>(&mut self, now: Timestamp, sample: Sample<'a>) -> Result<(), Refused<'a>> {
        Aggregator::record(self, now, sample)
    }
    fn poll_flush(&mut self) -> Option<Flushed<'_>> {
        Aggregator::poll_flush(self)
    }
    fn merge_from(&mut self, memory: &mut Memory, now: f64, end: f64) -> Merged {
        memory.merge_into(self, now, end)
    }
    fn capacity(&self) -> usize {
        S
    }
    fn is_empty(&self) -> bool {
        Aggregator::is_empty(self)
    }
    fn open_from_secs(&self) -> Option<i64> {
        Aggregator::open_from_secs(self)
    }
    #[cfg(test)]
    fn recorded(&self) -> u64 {
        self.stats().recorded
    }
}

fn aggregator_is_small(aggregator: &Option<Box<dyn StepAggregate>>) -> bool {
    aggregator.as_ref().is_some_and(|a| a.capacity() <= SMALL_STEP_SERIES)
}

/// Builds an aggregator (7.3 MB, or 100 KB for a small step) on the heap. `Box::new` may build
/// the value on the stack first and copy it, and a frame that large is probed page by page: doing it on a short-lived thread keeps
/// those stack pages out of the agent's resident memory (no frame of the agent's own thread ever
/// holds an aggregator). `None` if the thread cannot be started (the step is retried next tick).
#[inline(never)]
fn new_aggregator<A: Send + 'static>(
    config: AggregatorConfig,
    new: fn(AggregatorConfig) -> A,
) -> Option<Box<A>> {
    let build = move || Box::new(new(config));
    let spawned = std::thread::Builder::new()
        .name("chouette-alloc".into())
        // Unoptimised builds keep up to three copies of the value in the frame: reserved, not
        // resident, so the margin costs nothing.
        .stack_size(std::mem::size_of::<A>() * 4 + (1 << 20))
        .spawn(build);
    match spawned.map(|handle| handle.join()) {
        Ok(Ok(aggregator)) => Some(aggregator),
        Ok(Err(_)) => None,
        Err(error) => {
            log::error!("{error}: cannot start a thread to build the aggregator; retrying next tick");
            None
        }
    }
}

fn refuse(commit: &mut AggregationCommit, step: &mut Counters, record: &Record, value: &[u8], reason: &str) {
    *step.refused.entry(reason.to_string()).or_default() += 1;
    commit.dead.push(DeadRecord {
        id: record.id.to_vec(),
        score: record.score,
        value: value.to_vec(),
        reason: reason.to_string(),
    });
}

fn id_hash(id: &[u8]) -> u64 {
    chouette_core::hash::hash_bytes(0, id)
}

/// What to do with one dispatched batch.
pub fn apply_report(
    store: &mut dyn Store,
    queue: Queue,
    records: &[Record],
    report: &Report,
) -> Result<(usize, usize, usize), StoreError> {
    let mut delivered = Vec::new();
    let mut dead = Vec::new();
    let mut oversize = Vec::new();
    let mut kept = 0;
    for (record, disposition) in records.iter().zip(&report.dispositions) {
        match disposition {
            Disposition::Delivered => delivered.push(record.id.clone()),
            // Not loaded by the read: moved inside the store, reason `too_large`.
            Disposition::Dead { .. } if record.oversize.is_some() => oversize.push(record.clone()),
            Disposition::Dead { reason } => dead.push(DeadRecord {
                id: record.id.to_vec(),
                score: record.score,
                value: record.value.as_deref().unwrap_or_default().to_vec(),
                reason: reason.clone(),
            }),
            Disposition::Kept => kept += 1,
        }
    }
    if !delivered.is_empty() {
        store.delete(queue, &delivered)?;
    }
    if !dead.is_empty() {
        store.dead_letter(queue, &dead)?;
    }
    if !oversize.is_empty() {
        store.dead_letter_oversize(queue, &oversize)?;
        log::warn!(
            "queue={queue} moved={} limit_bytes={}: records too large to load moved to the dead-letter queue",
            oversize.len(),
            queue.max_record_bytes()
        );
    }
    Ok((delivered.len(), dead.len() + oversize.len(), kept))
}

/// Uuid4-formatted ids for records the agent writes (the core's generator, seeded by
/// [`id_generator`]).
pub use chouette_core::id::IdGenerator;

/// An id generator seeded from the OS (through std's randomly keyed hasher), the clock and the
/// process id: unique, not secret.
pub fn id_generator() -> IdGenerator {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    IdGenerator::from_seed(hasher.finish())
}

/// One raw metric record as the Python client writes it (the core's encoder), for the agent's
/// self-metrics; `None` if it cannot be encoded (a non-finite float).
pub fn raw_record(
    metric: &str,
    kind: MetricType,
    value: Number,
    timestamp: f64,
    tags: &[(&str, &str)],
) -> Option<Vec<u8>> {
    let record = RawRecord { name: metric, kind, value: RawValue::Number(value), timestamp, tags };
    let mut buf = vec![0u8; 256];
    loop {
        match encode_raw_metric(&record, &mut buf) {
            Ok(len) => {
                buf.truncate(len);
                return Some(buf);
            }
            Err(EncodeError::BufferTooSmall { required }) => buf.resize(required, 0),
            Err(_) => return None,
        }
    }
}

/// Writes the self-metrics (compat §5.6 names, plus ours) as raw records, stamped `now`.
pub fn self_metrics(
    counters: &Counters,
    previous: &Counters,
    queued: u64,
    now: f64,
    ids: &mut IdGenerator,
) -> Vec<NewRecord> {
    let mut out = Vec::new();
    let mut push = |metric: &str, kind: MetricType, value: Number, tags: &[(&str, &str)]| {
        if let Some(value) = raw_record(metric, kind, value, now, tags) {
            out.push(NewRecord { id: ids.next_id().to_vec(), score: now, value });
        }
    };

    if queued > 0 {
        push("chouette.queued.metrics", MetricType::Gauge, Number::from(queued), &[]);
    }
    let delta = |a: u64, b: u64| a.saturating_sub(b);
    let counts = [
        (
            "chouette.dispatched.metrics.number",
            delta(counters.dispatched_metrics, previous.dispatched_metrics),
        ),
        (
            "chouette.dispatched.metrics.bytes",
            delta(counters.dispatched_metrics_bytes, previous.dispatched_metrics_bytes),
        ),
        ("chouette.dispatched.logs.number", delta(counters.dispatched_logs, previous.dispatched_logs)),
        (
            "chouette.dispatched.logs.bytes",
            delta(counters.dispatched_logs_bytes, previous.dispatched_logs_bytes),
        ),
        ("chouette.deadlettered.metrics", delta(counters.dead_metrics, previous.dead_metrics)),
        ("chouette.deadlettered.logs", delta(counters.dead_logs, previous.dead_logs)),
        ("chouette.retried.requests", delta(counters.retried, previous.retried)),
        ("chouette.late.metrics", delta(counters.late, previous.late)),
    ];
    for (metric, value) in counts {
        if value > 0 {
            push(metric, MetricType::Count, Number::from(value), &[]);
        }
    }
    for (reason, n) in &counters.refused {
        let value = delta(*n, previous.refused.get(reason).copied().unwrap_or(0));
        if value > 0 {
            push("chouette.refused.metrics", MetricType::Count, Number::from(value), &[("reason", reason)]);
        }
    }
    for (queue, n) in &counters.expired {
        let value = delta(*n, previous.expired.get(queue).copied().unwrap_or(0));
        if value > 0 {
            push("chouette.dropped.expired", MetricType::Count, Number::from(value), &[("queue", queue)]);
        }
    }
    for (name, now_stats) in &counters.destinations {
        let before = previous.destinations.get(name).cloned().unwrap_or_default();
        let per_destination = [
            ("chouette.dispatch.requests", now_stats.requests, before.requests),
            ("chouette.dispatch.failures", now_stats.failures, before.failures),
            ("chouette.dispatch.retried", now_stats.retried, before.retried),
            ("chouette.dispatch.delivered", now_stats.delivered, before.delivered),
            ("chouette.dispatch.deadlettered", now_stats.dead, before.dead),
            ("chouette.dispatch.points.sent", now_stats.points_sent, before.points_sent),
            ("chouette.dispatch.points.accepted", now_stats.points_delivered, before.points_delivered),
            ("chouette.dispatch.points.failed", now_stats.points_failed, before.points_failed),
        ];
        for (metric, a, b) in per_destination {
            let value = delta(a, b);
            if value > 0 {
                push(metric, MetricType::Count, Number::from(value), &[("destination", name)]);
            }
        }
    }
    for (name, durations) in &counters.latencies {
        for &ms in durations {
            push(
                "chouette.dispatch.request.time",
                MetricType::Histogram,
                Number::from(ms),
                &[("destination", name)],
            );
        }
    }
    out
}

/// Each destination's status fields (`dispatch.metrics.requests`...), for `chouette status`.
pub fn destination_status_fields(counters: &Counters) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, s) in &counters.destinations {
        let last = s.last_status.clone().unwrap_or_else(|| "none yet".into());
        for (field, value) in [
            ("requests", s.requests.to_string()),
            ("failures", s.failures.to_string()),
            ("retried", s.retried.to_string()),
            ("delivered", s.delivered.to_string()),
            ("deadlettered", s.dead.to_string()),
            ("points_sent", s.points_sent.to_string()),
            ("points_accepted", s.points_delivered.to_string()),
            ("points_failed", s.points_failed.to_string()),
            ("consecutive_failures", s.consecutive_failures.to_string()),
            ("last_status", last),
        ] {
            out.push((format!("dispatch.{name}.{field}"), value));
        }
    }
    out
}

/// The status fields written to `chouette:agent:status` for `chouette status`.
pub fn status_fields(counters: &Counters, now: f64) -> Vec<(&'static str, String)> {
    let refused: u64 = counters.refused.values().sum();
    let expired: u64 = counters.expired.values().sum();
    vec![
        ("updated_at", format!("{now:.3}")),
        ("aggregated_records", counters.aggregated.to_string()),
        ("late_records", counters.late.to_string()),
        ("refused_records", refused.to_string()),
        ("refused_by_reason", by_reason(&counters.refused)),
        ("orphan_records", counters.orphans.to_string()),
        ("dispatched_metrics", counters.dispatched_metrics.to_string()),
        ("dispatched_metrics_bytes", counters.dispatched_metrics_bytes.to_string()),
        ("dispatched_logs", counters.dispatched_logs.to_string()),
        ("deadlettered_metrics", counters.dead_metrics.to_string()),
        ("deadlettered_logs", counters.dead_logs.to_string()),
        ("retried_requests", counters.retried.to_string()),
        ("expired_records", expired.to_string()),
        ("cleanup_failures", counters.cleanup_failures.to_string()),
        ("last_dispatch", counters.last_dispatch.clone().unwrap_or_else(|| "none yet".into())),
    ]
}

/// `future=40 not_json=1`, or `none`.
fn by_reason(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> =
        counts.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}={n}")).collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(" ")
    }
}

/// Deletes records older than their TTL from every queue; counts them as expired.
pub fn cleanup(
    store: &mut dyn Store,
    now: f64,
    metric_ttl: Duration,
    log_ttl: Duration,
    counters: &mut Counters,
) -> Result<(), StoreError> {
    let plan = [
        (Queue::RawMetrics, metric_ttl),
        (Queue::WrappedMetrics, metric_ttl),
        (Queue::Logs, log_ttl),
        (Queue::DeadRawMetrics, metric_ttl),
        (Queue::DeadWrappedMetrics, metric_ttl),
        (Queue::DeadLogs, log_ttl),
        (Queue::InfluxMetrics, metric_ttl),
        (Queue::DeadInfluxMetrics, metric_ttl),
        (Queue::OpentsdbMetrics, metric_ttl),
        (Queue::DeadOpentsdbMetrics, metric_ttl),
        (Queue::Events, log_ttl),
        (Queue::DeadEvents, log_ttl),
        (Queue::ServiceChecks, log_ttl),
        (Queue::DeadServiceChecks, log_ttl),
    ];
    // Every queue is tried: one failing (WRONGTYPE on its key) does not keep the others full.
    let mut failure = None;
    for (queue, ttl) in plan {
        let removed = match store.cleanup(queue, now - ttl.as_secs_f64()) {
            Ok(removed) => removed,
            Err(error) => {
                failure.get_or_insert(error);
                continue;
            }
        };
        if removed > 0 {
            *counters.expired.entry(queue.prefix()).or_default() += removed;
            log::warn!(
                "queue={queue} removed={removed} ttl_s={}: records older than their TTL deleted",
                ttl.as_secs()
            );
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Drains `queue` through `send` in batches of `batch`, oldest first, until the queue is empty,
/// the sender keeps something after a failure (backing off), or `deadline` passes (then
/// [`DrainResult::more`] is set: come back as soon as the rest of the loop had its turn).
/// `send` should itself stop sending at `deadline` (the dispatcher's `send_until`), and ask its
/// gate (its second argument) before its first request ([`Dispatcher::send_gated`]): if the gate
/// answers false, it must send nothing (its report is dropped).
///
/// A backlog (a first page that is full, of at least [`OVERLAP_MIN_PAGE`] records) is sent on a
/// thread of its own while this one reads the next page and deletes what the page before it
/// delivered; a page is still posted only once the one before it is settled (its gate opens
/// then), so a store failure sends at most one page again later.
///
/// [`Dispatcher::send_gated`]: crate::dispatch::Dispatcher::send_gated
pub fn drain(
    store: &mut dyn Store,
    queue: Queue,
    batch: usize,
    deadline: Instant,
    mut send: impl FnMut(&[Record], &mut dyn FnMut() -> bool) -> Report + Send,
) -> Result<DrainResult, StoreError> {
    let mut result = DrainResult::default();
    loop {
        if Instant::now() >= deadline {
            result.more = true;
            break;
        }
        let records = store.read(queue, f64::INFINITY, batch)?;
        if records.is_empty() {
            break;
        }
        let records = if records.len() == batch && batch >= OVERLAP_MIN_PAGE {
            match drain_overlapped(store, queue, batch, deadline, &mut send, records, &mut result) {
                Overlapped::Done(go_on) => {
                    if go_on? {
                        continue;
                    }
                    break;
                }
                Overlapped::NoThread(records) => records,
            }
        } else {
            records
        };
        let report = send(&records, &mut || true);
        if !settle_page(store, queue, &records, &report, &mut result)? {
            break;
        }
    }
    Ok(result)
}

/// The smallest full page [`drain`] overlaps with reading the next: below it, a thread costs more
/// than the overlap saves.
pub const OVERLAP_MIN_PAGE: usize = 100;

/// How [`drain_overlapped`] ended.
enum Overlapped {
    /// The pages are settled: `Ok(true)` to read on from the queue's head, `Ok(false)` to stop.
    Done(Result<bool, StoreError>),
    /// No thread could be started: the first page, still to send.
    NoThread(Vec<Record>),
}

/// A page for the sending thread, and its gate: `None` to send at once, or what the drain
/// answers once the page before it is settled (`true`: send; `false`, or no answer: send nothing).
type Handed = (Vec<Record>, Option<std::sync::mpsc::Receiver<bool>>);

/// Drains a backlog starting with `first` (the queue's first page, full): `send` runs on a thread
/// of its own, and while it sends a page this thread reads the next one (the records after it,
/// by offset), then settles the page once its report is back. The next page is handed over at
/// once, so the sender encodes and compresses it while the page before is deleted; its gate
/// opens only once that delete is done. So the rules of the serial loop hold: a page goes out
/// only after the one before it is settled and its delivered records deleted (if the store
/// fails, at most one page is sent again later), and nothing is sent after a page that stopped
/// the drain, once `deadline` has passed, or after a store error (the page read ahead then stays
/// in the store, untouched, and its report is dropped). A record of a page read ahead that is
/// not after the page in flight in the queue's order (score, then id: one added meanwhile
/// shifts the pages) is left for a later read, never sent twice.
fn drain_overlapped(
    store: &mut dyn Store,
    queue: Queue,
    batch: usize,
    deadline: Instant,
    send: &mut (impl FnMut(&[Record], &mut dyn FnMut() -> bool) -> Report + Send),
    first: Vec<Record>,
    result: &mut DrainResult,
) -> Overlapped {
    use std::sync::mpsc::sync_channel;
    std::thread::scope(|scope| {
        let (to_sender, pages) = sync_channel::<Handed>(1);
        let (to_drain, reports) = sync_channel::<(Vec<Record>, Report)>(1);
        let spawned =
            std::thread::Builder::new().name("chouette-send".into()).spawn_scoped(scope, move || {
                for (page, gate) in pages {
                    let report =
                        send(&page, &mut || gate.as_ref().is_none_or(|gate| gate.recv() == Ok(true)));
                    if to_drain.send((page, report)).is_err() {
                        break;
                    }
                }
            });
        if let Err(error) = spawned {
            log::debug!("cannot start a sending thread ({error}): sending page by page");
            return Overlapped::NoThread(first);
        }
        let mut offset = first.len();
        let mut last = first.last().map(|r| (r.score, r.id.clone()));
        if to_sender.send((first, None)).is_err() {
            return Overlapped::Done(Ok(true)); // the thread ended: its panic is the scope's
        }
        loop {
            // Read ahead while the page in flight is sent.
            let next =
                (Instant::now() < deadline).then(|| store.read_page(queue, f64::INFINITY, offset, batch));
            let Ok((page, report)) = reports.recv() else {
                return Overlapped::Done(Ok(true));
            };
            let goes_on = report.outcome == Outcome::Settled
                && report.dispositions.iter().any(|d| *d != Disposition::Kept);
            let mut next = match next {
                Some(Err(error)) => {
                    let settled = settle_page(store, queue, &page, &report, result);
                    return Overlapped::Done(settled.and(Err(error)));
                }
                _ if !goes_on => return Overlapped::Done(settle_page(store, queue, &page, &report, result)),
                Some(Ok(next)) if Instant::now() < deadline => next,
                _ => {
                    let settled = settle_page(store, queue, &page, &report, result);
                    result.more = true; // the deadline passed: come back
                    return Overlapped::Done(settled.map(|_| false));
                }
            };
            next.retain(|record| last.as_ref().is_some_and(|last| is_after(record, last)));
            if next.is_empty() {
                // The queue's end (or only records to read again from its head).
                return Overlapped::Done(settle_page(store, queue, &page, &report, result));
            }
            offset = next.len();
            last = next.last().map(|r| (r.score, r.id.clone()));
            let (open, gate) = sync_channel(1);
            if to_sender.send((std::mem::take(&mut next), Some(gate))).is_err() {
                return Overlapped::Done(Ok(true));
            }
            let settled = settle_page(store, queue, &page, &report, result);
            let _ = open.send(matches!(settled, Ok(true)));
            if !matches!(settled, Ok(true)) {
                let _ = reports.recv(); // sent nothing: dropped
                return Overlapped::Done(settled);
            }
        }
    })
}

/// Whether `record` comes after `last` in a queue's order: by score, then by id.
fn is_after(record: &Record, last: &(f64, Bytes)) -> bool {
    match record.score.partial_cmp(&last.0) {
        Some(std::cmp::Ordering::Greater) => true,
        Some(std::cmp::Ordering::Equal) => record.id > last.1,
        _ => false,
    }
}

/// Applies one page's report and adds it to `result`: whether to read on.
fn settle_page(
    store: &mut dyn Store,
    queue: Queue,
    records: &[Record],
    report: &Report,
    result: &mut DrainResult,
) -> Result<bool, StoreError> {
    let (delivered, dead, _kept) = apply_report(store, queue, records, report)?;
    result.delivered += delivered as u64;
    result.dead += dead as u64;
    result.points += report.delivered_points;
    result.bytes += report.delivered_bytes;
    result.retried += report.retried;
    result.deferred += report.deferred;
    result.requests += u64::from(report.requests);
    if report.last_status.is_some() {
        result.last_status = report.last_status.clone();
    }
    Ok(match report.outcome {
        Outcome::Settled => delivered + dead > 0, // nothing settled, nothing failed: do not spin
        Outcome::OutOfTime => {
            result.more = true;
            false
        }
        Outcome::Stopped | Outcome::Refused { .. } => {
            result.backing_off = true;
            false
        }
    })
}

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrainResult {
    /// Records delivered (and deleted).
    pub delivered: u64,
    /// Records dead-lettered.
    pub dead: u64,
    /// Points (or logs) the backend accepted.
    pub points: u64,
    /// Compressed bytes accepted.
    pub bytes: u64,
    /// Records kept after a failed request.
    pub retried: u64,
    /// Records kept unsent because the deadline passed (not a failure).
    pub deferred: u64,
    /// HTTP requests made.
    pub requests: u64,
    /// Whether the dispatcher is backing off (data kept for later).
    pub backing_off: bool,
    /// Whether the deadline cut the drain short: records may remain, to send right away.
    pub more: bool,
    /// The last HTTP status or error seen.
    pub last_status: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    struct TempStore(std::path::PathBuf, EmbeddedStore);

    impl Drop for TempStore {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn store_with(n: usize) -> TempStore {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("chouette-drain-{}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut store = EmbeddedStore::open(&dir.join("chouette.redb")).expect("open");
        let records: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                id: format!("r{i:04}").into_bytes(),
                score: i as f64,
                value: b"{}".to_vec(),
            })
            .collect();
        store.add(Queue::Logs, &records).expect("add");
        TempStore(dir, store)
    }

    /// A report for `records` from one disposition per record and an outcome.
    fn report(records: &[Record], each: impl Fn(usize) -> Disposition, outcome: Outcome) -> Report {
        let dispositions: Vec<Disposition> = (0..records.len()).map(each).collect();
        let kept = dispositions.iter().filter(|d| **d == Disposition::Kept).count() as u64;
        let failed = matches!(outcome, Outcome::Stopped | Outcome::Refused { .. });
        Report {
            dispositions,
            requests: 1,
            retried: if failed { kept } else { 0 },
            deferred: if failed { 0 } else { kept },
            outcome,
            ..Report::default()
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// `n` gauges of distinct series `<prefix>.<i>` in the bucket [1000, 1010), each with two tags
    /// of its own of about `tag_bytes` bytes.
    fn gauges(store: &mut EmbeddedStore, prefix: &str, n: u64, tag_bytes: usize) {
        gauges_at(store, prefix, n, tag_bytes, 1001.0);
    }

    fn gauges_at(store: &mut EmbeddedStore, prefix: &str, n: u64, tag_bytes: usize, at: f64) {
        let tag = "x".repeat(tag_bytes);
        let mut ids = id_generator();
        let records: Vec<NewRecord> = (0..n)
            .map(|i| {
                let tag = format!("{i}{tag}");
                let tags = [("a", tag.as_str()), ("b", tag.as_str())];
                let value =
                    raw_record(&format!("{prefix}.{i}"), MetricType::Gauge, Number::from(i), at, &tags)
                        .expect("raw");
                NewRecord { id: ids.next_id().to_vec(), score: at, value }
            })
            .collect();
        store.add(Queue::RawMetrics, &records).expect("add");
    }

    #[test]
    fn the_small_aggregator_fits_its_budget() {
        let size = std::mem::size_of::<SmallStepAggregator>();
        assert!(size <= 128 * 1024, "{size}");
    }

    #[test]
    fn a_few_records_are_aggregated_by_the_small_aggregator() {
        let mut s = store_with(0);
        gauges(&mut s.1, "few", 3, 10);
        let mut agg = Aggregation::new(10, Duration::ZERO, WrapConfig::default());
        let mut counters = Counters::default();
        assert_eq!(
            agg.step(&mut s.1, 1020.0, &mut counters).expect("step"),
            StepOutcome::Progress { consumed: 3 }
        );
        assert!(aggregator_is_small(&agg.aggregator));
        assert_eq!((counters.aggregated, counters.late, counters.wrapped), (3, 0, 3));
        assert_eq!(agg.step(&mut s.1, 1020.0, &mut counters).expect("step"), StepOutcome::Idle);
        assert_eq!(
            (s.1.len(Queue::RawMetrics).expect("len"), s.1.len(Queue::WrappedMetrics).expect("len")),
            (0, 3)
        );
    }

    /// The samples the step's aggregator has recorded since it was built (a new one's count
    /// starts again; its address may well be the old one's).
    fn recorded(agg: &Aggregation) -> Option<u64> {
        agg.aggregator.as_ref().map(|a| a.recorded())
    }

    /// A store and an aggregation after one tick: 3 gauges of the bucket [1000, 1010)
    /// aggregated by the small aggregator, then idle, the aggregator kept.
    fn after_an_idle_tick() -> (TempStore, Aggregation) {
        let mut s = store_with(0);
        let mut agg = Aggregation::new(10, Duration::ZERO, WrapConfig::default());
        let mut counters = Counters::default();
        gauges_at(&mut s.1, "first", 3, 10, 1001.0);
        assert_eq!(
            agg.step(&mut s.1, 1020.0, &mut counters).expect("step"),
            StepOutcome::Progress { consumed: 3 }
        );
        assert_eq!(agg.step(&mut s.1, 1020.0, &mut counters).expect("step"), StepOutcome::Idle);
        agg.release_memory();
        assert_eq!(recorded(&agg), Some(3));
        assert!(aggregator_is_small(&agg.aggregator));
        (s, agg)
    }

    #[test]
    fn the_small_aggregator_is_kept_through_an_idle_tick_and_reused() {
        let (mut s, mut agg) = after_an_idle_tick();
        // The next tick's bucket: the same aggregator, and its records are on time.
        gauges_at(&mut s.1, "second", 4, 10, 1011.0);
        let mut second = Counters::default();
        assert_eq!(
            agg.step(&mut s.1, 1030.0, &mut second).expect("step"),
            StepOutcome::Progress { consumed: 4 }
        );
        assert_eq!(recorded(&agg), Some(7));
        assert_eq!((second.aggregated, second.late, second.wrapped), (4, 0, 4));
        let scores: Vec<f64> =
            s.1.read_page(Queue::WrappedMetrics, f64::MAX, 0, 100)
                .expect("read")
                .iter()
                .map(|r| r.score)
                .collect();
        assert_eq!(scores, [1000.0, 1000.0, 1000.0, 1010.0, 1010.0, 1010.0, 1010.0]);
    }

    #[test]
    fn a_kept_small_aggregator_gives_way_to_the_full_one_for_a_backlog() {
        let (mut s, mut agg) = after_an_idle_tick();
        // More than the small one takes: the full one does the first step, nothing is wasted.
        gauges_at(&mut s.1, "backlog", SMALL_STEP_RECORDS + 1, 10, 1011.0);
        let mut backlog = Counters::default();
        assert_eq!(
            agg.step(&mut s.1, 1030.0, &mut backlog).expect("step"),
            StepOutcome::Progress { consumed: SMALL_STEP_RECORDS as usize + 1 }
        );
        assert!(!aggregator_is_small(&agg.aggregator));
        assert_eq!((backlog.aggregated, backlog.late), (SMALL_STEP_RECORDS + 1, 0));
    }

    #[test]
    fn a_kept_small_aggregator_that_closed_a_later_bucket_is_not_reused() {
        let (mut s, mut agg) = after_an_idle_tick();
        // The watermark the step reads is gone (a fresh store's state, a clock gone back): the
        // next bucket starts before what the kept aggregator closed.
        agg.watermark = Some(f64::NEG_INFINITY);
        gauges_at(&mut s.1, "earlier", 2, 10, 991.0);
        let mut earlier = Counters::default();
        assert_eq!(
            agg.step(&mut s.1, 1030.0, &mut earlier).expect("step"),
            StepOutcome::Progress { consumed: 2 }
        );
        assert_eq!(recorded(&agg), Some(2));
        // On time in their own bucket, as a fresh aggregator has them, not folded in as late.
        assert_eq!((earlier.aggregated, earlier.late), (2, 0));
    }

    #[test]
    fn a_step_too_big_for_the_small_aggregator_is_done_whole_by_the_full_one() {
        let mut s = store_with(0);
        // 250 series with two 150-byte tags each: about 80 KB of names and tags, more than the
        // small aggregator's 32 KiB, all in one bucket.
        gauges(&mut s.1, "big", 250, 150);
        let mut agg = Aggregation::new(10, Duration::ZERO, WrapConfig::default());
        let mut counters = Counters::default();
        // The small aggregator runs out of room: nothing committed, nothing counted.
        assert_eq!(
            agg.step(&mut s.1, 1020.0, &mut counters).expect("step"),
            StepOutcome::Progress { consumed: 0 }
        );
        assert_eq!(counters, Counters::default());
        assert_eq!(
            (s.1.len(Queue::RawMetrics).expect("len"), s.1.len(Queue::WrappedMetrics).expect("len")),
            (250, 0)
        );
        // The full one takes the whole bucket in one step, none of it late.
        assert_eq!(
            agg.step(&mut s.1, 1020.0, &mut counters).expect("step"),
            StepOutcome::Progress { consumed: 250 }
        );
        assert!(!aggregator_is_small(&agg.aggregator));
        assert_eq!((counters.aggregated, counters.late, counters.wrapped), (250, 0, 250));
        assert_eq!(
            (s.1.len(Queue::RawMetrics).expect("len"), s.1.len(Queue::WrappedMetrics).expect("len")),
            (0, 250)
        );
        // Later small steps use the small one again.
        agg.release_memory();
        gauges(&mut s.1, "later", 2, 10);
        let mut later = Counters::default();
        assert_eq!(
            agg.step(&mut s.1, 1020.0, &mut later).expect("step"),
            StepOutcome::Progress { consumed: 2 }
        );
        assert!(aggregator_is_small(&agg.aggregator));
        assert_eq!((later.aggregated, later.late), (2, 2));
    }

    #[test]
    fn a_refused_endpoint_stops_the_drain_and_keeps_everything() {
        let mut s = store_with(25);
        let mut calls = 0;
        let result = drain(&mut s.1, Queue::Logs, 10, far(), |records, _| {
            calls += 1;
            report(records, |_| Disposition::Kept, Outcome::Refused { reason: "http_400".into() })
        })
        .expect("drain");
        assert_eq!(calls, 1);
        assert_eq!((result.delivered, result.dead, result.retried, result.deferred), (0, 0, 10, 0));
        assert!(result.backing_off && !result.more);
        assert_eq!(s.1.len(Queue::Logs).expect("len"), 25);
        assert_eq!(s.1.len(Queue::DeadLogs).expect("len"), 0);
    }

    #[test]
    fn out_of_time_applies_what_settled_and_asks_to_come_back() {
        let mut s = store_with(25);
        let mut calls = 0;
        let result = drain(&mut s.1, Queue::Logs, 10, far(), |records, _| {
            calls += 1;
            if calls == 1 {
                report(records, |_| Disposition::Delivered, Outcome::Settled)
            } else {
                // Half settled (one dead), then the budget ran out.
                let each = |i| match i {
                    0..=3 => Disposition::Delivered,
                    4 => Disposition::Dead { reason: "http_400".into() },
                    _ => Disposition::Kept,
                };
                report(records, each, Outcome::OutOfTime)
            }
        })
        .expect("drain");
        assert_eq!(calls, 2);
        assert_eq!((result.delivered, result.dead, result.retried, result.deferred), (14, 1, 0, 5));
        assert!(result.more && !result.backing_off);
        assert_eq!(s.1.len(Queue::Logs).expect("len"), 10);
        assert_eq!(s.1.len(Queue::DeadLogs).expect("len"), 1);
    }

    /// What [`drain_in_hundreds`] saw: the drain's result, the ids of each page sent, and the
    /// thread that sent it.
    type Drained = (Result<DrainResult, StoreError>, Vec<Vec<Bytes>>, Vec<Option<String>>);

    /// Drains `s` in pages of 100 (overlapped). `each(call, records)` answers each page.
    fn drain_in_hundreds(s: &mut TempStore, each: impl Fn(usize, &[Record]) -> Report + Sync) -> Drained {
        let (mut pages, mut threads) = (Vec::new(), Vec::new());
        let result = drain(&mut s.1, Queue::Logs, 100, far(), |records, gate| {
            if !gate() {
                return report(records, |_| Disposition::Kept, Outcome::OutOfTime);
            }
            pages.push(records.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
            threads.push(std::thread::current().name().map(str::to_owned));
            each(pages.len(), records)
        });
        (result, pages, threads)
    }

    #[test]
    fn a_backlog_is_sent_on_a_thread_of_its_own_each_record_once_in_order() {
        let mut s = store_with(1050);
        let (result, pages, threads) =
            drain_in_hundreds(&mut s, |_, r| report(r, |_| Disposition::Delivered, Outcome::Settled));
        let result = result.expect("drain");
        assert_eq!((result.delivered, result.requests, result.more), (1050, 11, false));
        assert_eq!(pages.len(), 11);
        assert_eq!(pages[10].len(), 50);
        let sent: Vec<Bytes> = pages.concat();
        let expected: Vec<Bytes> = (0..1050).map(|i| format!("r{i:04}").into()).collect();
        assert_eq!(sent, expected, "each record once, oldest first");
        assert!(threads.iter().all(|t| t.as_deref() == Some("chouette-send")), "{threads:?}");
        assert_eq!(s.1.len(Queue::Logs).expect("len"), 0);
    }

    #[test]
    fn a_refusal_in_a_backlog_sends_nothing_after_it_and_keeps_the_page_read_ahead() {
        let mut s = store_with(1050);
        let (result, pages, _) = drain_in_hundreds(&mut s, |call, r| match call {
            3 => report(r, |_| Disposition::Kept, Outcome::Refused { reason: "http_400".into() }),
            _ => report(r, |_| Disposition::Delivered, Outcome::Settled),
        });
        let result = result.expect("drain");
        assert_eq!(pages.len(), 3, "no page after the refused one");
        assert_eq!((result.delivered, result.retried, result.deferred), (200, 100, 0));
        assert!(result.backing_off && !result.more);
        let left = s.1.read(Queue::Logs, f64::INFINITY, 2000).expect("read");
        assert_eq!(left.len(), 850);
        assert_eq!(left[0].id, &b"r0200"[..], "the refused page and everything after it stay");
    }

    #[test]
    fn out_of_time_in_a_backlog_applies_the_page_in_flight_and_sends_no_more() {
        let mut s = store_with(1050);
        let (result, pages, _) = drain_in_hundreds(&mut s, |call, r| match call {
            2 => report(
                r,
                |i| if i < 40 { Disposition::Delivered } else { Disposition::Kept },
                Outcome::OutOfTime,
            ),
            _ => report(r, |_| Disposition::Delivered, Outcome::Settled),
        });
        let result = result.expect("drain");
        assert_eq!(pages.len(), 2);
        assert_eq!((result.delivered, result.deferred), (140, 60));
        assert!(result.more && !result.backing_off);
        assert_eq!(s.1.len(Queue::Logs).expect("len"), 910);
    }

    /// A queue in memory that logs its deletes (after a pause, so a page sent before its gate
    /// opened would show), and fails the `fail_at`-th one.
    struct Logged {
        records: Vec<Record>,
        log: Arc<Mutex<Vec<String>>>,
        deletes: usize,
        fail_at: usize,
    }

    impl Logged {
        fn new(n: usize, fail_at: usize) -> Self {
            let records = (0..n)
                .map(|i| Record {
                    id: format!("r{i:04}").into(),
                    score: i as f64,
                    value: Some(b"{}".to_vec().into()),
                    oversize: None,
                })
                .collect();
            Logged { records, log: Arc::default(), deletes: 0, fail_at }
        }
    }

    impl Store for Logged {
        fn describe(&self) -> String {
            "logged".into()
        }
        fn ping(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn read_page(
            &mut self,
            _: Queue,
            _: f64,
            offset: usize,
            limit: usize,
        ) -> Result<Vec<Record>, StoreError> {
            Ok(self.records.iter().skip(offset).take(limit).cloned().collect())
        }
        fn delete(&mut self, _: Queue, ids: &[Bytes]) -> Result<(), StoreError> {
            self.deletes += 1;
            if self.deletes == self.fail_at {
                return Err(StoreError::Unavailable {
                    store: "logged".into(),
                    op: "delete",
                    detail: "gone".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            let first = String::from_utf8_lossy(&ids[0]).into_owned();
            self.log.lock().expect("log").push(format!("delete {first}"));
            self.records.retain(|r| !ids.contains(&r.id));
            Ok(())
        }
        fn read_above(&mut self, _: Queue, _: f64, _: usize) -> Result<Vec<Record>, StoreError> {
            unimplemented!()
        }
        fn dead_letter_oversize(&mut self, _: Queue, _: &[Record]) -> Result<u64, StoreError> {
            unimplemented!()
        }
        fn oldest_score(&mut self, _: Queue) -> Result<Option<f64>, StoreError> {
            unimplemented!()
        }
        fn commit_aggregation(&mut self, _: &AggregationCommit) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn aggregated_until(&mut self) -> Result<Option<f64>, StoreError> {
            unimplemented!()
        }
        fn add(&mut self, _: Queue, _: &[NewRecord]) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn add_to_each(&mut self, _: &[Queue], _: &[NewRecord]) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn dead_letter(&mut self, _: Queue, _: &[DeadRecord]) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn cleanup(&mut self, _: Queue, _: f64) -> Result<u64, StoreError> {
            unimplemented!()
        }
        fn len(&mut self, _: Queue) -> Result<u64, StoreError> {
            Ok(self.records.len() as u64)
        }
        fn put_status(&mut self, _: &[(&str, String)]) -> Result<(), StoreError> {
            unimplemented!()
        }
        fn status(&mut self) -> Result<Vec<(String, String)>, StoreError> {
            unimplemented!()
        }
    }

    /// Drains `store` in pages of 100, logging each page posted after its gate; returns the
    /// drain's result and how many pages were handed to the sender.
    fn drain_logged(store: &mut Logged) -> (Result<DrainResult, StoreError>, usize) {
        let log = Arc::clone(&store.log);
        let mut handed = 0;
        let result = drain(store, Queue::Logs, 100, far(), |records, gate| {
            handed += 1;
            if !gate() {
                return report(records, |_| Disposition::Kept, Outcome::OutOfTime);
            }
            let first = String::from_utf8_lossy(&records[0].id).into_owned();
            log.lock().expect("log").push(format!("post {first}"));
            report(records, |_| Disposition::Delivered, Outcome::Settled)
        });
        (result, handed)
    }

    #[test]
    fn a_page_goes_out_only_after_the_one_before_it_is_deleted() {
        let mut store = Logged::new(400, 0);
        let (result, handed) = drain_logged(&mut store);
        assert_eq!(result.expect("drain").delivered, 400);
        assert_eq!(handed, 4);
        let log = store.log.lock().expect("log").clone();
        let expected: Vec<String> = (0..4)
            .flat_map(|k| [format!("post r{:04}", k * 100), format!("delete r{:04}", k * 100)])
            .collect();
        assert_eq!(log, expected);
    }

    #[test]
    fn a_failed_delete_keeps_the_next_page_unsent_though_it_was_prepared() {
        let mut store = Logged::new(400, 2);
        let (result, handed) = drain_logged(&mut store);
        assert!(matches!(result, Err(StoreError::Unavailable { .. })), "{result:?}");
        assert_eq!(handed, 3, "the third page was handed over, to be encoded meanwhile");
        let log = store.log.lock().expect("log").clone();
        assert_eq!(log, ["post r0000", "delete r0000", "post r0100"], "and never posted");
        assert_eq!(store.records.len(), 300, "the page whose delete failed stays, to be sent again");
    }

    #[test]
    fn a_page_read_ahead_keeps_only_what_comes_after_the_page_in_flight() {
        let record =
            |score: f64, id: &[u8]| Record { id: id.to_vec().into(), score, value: None, oversize: None };
        let last = (5.0, Bytes::from_static(b"m"));
        assert!(is_after(&record(6.0, b"a"), &last));
        assert!(is_after(&record(5.0, b"n"), &last));
        assert!(!is_after(&record(5.0, b"m"), &last), "the last one itself");
        assert!(!is_after(&record(5.0, b"l"), &last));
        assert!(!is_after(&record(4.0, b"z"), &last));
    }

    #[test]
    fn a_passed_deadline_reads_nothing_and_asks_to_come_back() {
        let mut s = store_with(5);
        let result =
            drain(&mut s.1, Queue::Logs, 10, Instant::now(), |_, _| unreachable!("no call")).expect("drain");
        assert!(result.more);
        assert_eq!(result.requests, 0);
        let empty = drain(&mut s.1, Queue::Logs, 10, far(), |r, _| {
            report(r, |_| Disposition::Delivered, Outcome::Settled)
        })
        .expect("drain");
        assert_eq!((empty.delivered, empty.more), (5, false));
    }

    #[test]
    fn each_destination_has_its_own_self_metrics_and_status_fields() {
        let mut counters = Counters::default();
        let stats = |requests, failures| DestinationStats {
            requests,
            failures,
            retried: 3 * failures,
            delivered: requests,
            dead: 0,
            points_sent: 10 * requests,
            points_delivered: 10 * requests,
            points_failed: 0,
            last_status: Some("404".into()),
            consecutive_failures: failures as u32,
        };
        counters.destinations.insert("metrics", stats(5, 2));
        counters.destinations.insert("logs", stats(7, 0));
        let mut previous = Counters::default();
        previous.destinations.insert("metrics", stats(4, 1));
        let mut ids = id_generator();
        let records = self_metrics(&counters, &previous, 0, 10.0, &mut ids);
        let texts: Vec<String> =
            records.iter().map(|r| String::from_utf8(r.value.clone()).expect("utf-8")).collect();
        let line = |metric: &str, value: u64, dest: &str| {
            format!(
                r#"{{"metric": "{metric}", "type": "count", "value": {value}, "timestamp": 10.0, "tags": {{"destination": "{dest}"}}}}"#
            )
        };
        for expected in [
            line("chouette.dispatch.requests", 1, "metrics"),
            line("chouette.dispatch.failures", 1, "metrics"),
            line("chouette.dispatch.retried", 3, "metrics"),
            line("chouette.dispatch.requests", 7, "logs"),
            line("chouette.dispatch.delivered", 7, "logs"),
        ] {
            assert!(texts.contains(&expected), "{expected} not in {texts:#?}");
        }
        assert!(!texts.iter().any(|t| t.contains("failures") && t.contains("logs")));
        let fields = destination_status_fields(&counters);
        assert!(fields.contains(&("dispatch.metrics.failures".into(), "2".into())));
        assert!(fields.contains(&("dispatch.metrics.consecutive_failures".into(), "2".into())));
        assert!(fields.contains(&("dispatch.logs.requests".into(), "7".into())));
        assert!(fields.contains(&("dispatch.logs.last_status".into(), "404".into())));
    }

    #[test]
    fn ids_are_uuid4_shaped_and_distinct() {
        let a = String::from_utf8(id_generator().next_id().to_vec()).unwrap();
        let b = String::from_utf8(id_generator().next_id().to_vec()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn raw_records_match_the_python_client() {
        let got = raw_record(
            "chouette.dispatched.metrics.number",
            MetricType::Count,
            12.into(),
            1600000000.25,
            &[],
        );
        assert_eq!(
            String::from_utf8(got.unwrap()).unwrap(),
            r#"{"metric": "chouette.dispatched.metrics.number", "type": "count", "value": 12, "timestamp": 1600000000.25, "tags": {}}"#
        );
        let got = raw_record("m", MetricType::Gauge, 0.5.into(), 10.0, &[("reason", "not_json")]);
        assert_eq!(
            String::from_utf8(got.unwrap()).unwrap(),
            r#"{"metric": "m", "type": "gauge", "value": 0.5, "timestamp": 10.0, "tags": {"reason": "not_json"}}"#
        );
    }
}
