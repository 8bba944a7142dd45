//! The writer thread: drains the buffer in batches, writes them with `MULTI; ZADD; HSET; EXEC`,
//! retries with exponential backoff while Redis is down, flushes aggregates, writes the meta and
//! process metrics.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chouette_core::id::IdGenerator;
use chouette_core::keys;
use chouette_core::wire::write::Writer;
use chouette_core::MetricType;

use crate::aggregate::{Series, State};
use crate::buffer::{Batch, Entry, Kind, StatsSnapshot};
use crate::render::{id_seed, now_secs, raw_metric, render, Number, RawValue};
use crate::shared::Shared;

/// The writer thread's name; the log bridge ignores records logged on it.
pub(crate) const THREAD_NAME: &str = "chouette-client";

/// Grace after a bucket's end before aggregating mode flushes it (late calls on other threads).
const AGGREGATE_GRACE_SECS: f64 = 0.2;

/// Most histogram samples in one aggregating-mode record (`"value": [v1, v2, …]`): about 20 kB.
const SAMPLES_PER_RECORD: usize = 1000;

/// A batch taken from the buffer, its ids (stable across retries: a retried write that had in
/// fact succeeded overwrites the same members, no duplicates) and how far it has been written.
///
/// The batch keeps the buffer's compact form while Redis is down; only the transaction being
/// written is rendered (`chunk`), so an outage holds no more than the buffer's byte bound.
struct Pending {
    batch: Batch,
    ids: Vec<[u8; 36]>,
    written: usize,
    /// Records `written..` of the transaction being written, rendered; `chunk_index` gives each
    /// one's index in `batch` (a call that cannot be rendered has none).
    chunk: Batch,
    chunk_index: Vec<usize>,
}

impl Pending {
    fn unsent(&self) -> u64 {
        self.batch.app_records(self.written..self.batch.len())
    }
}

pub(crate) fn run(shared: &Shared, redis: redis::Client) {
    let config = &shared.config;
    let mut conn: Option<redis::Connection> = None;
    let mut uuids = IdGenerator::from_seed(id_seed());
    let mut pending = Pending {
        batch: Batch::default(),
        ids: Vec::new(),
        written: 0,
        chunk: Batch::default(),
        chunk_index: Vec::new(),
    };
    let mut backoff = config.min_backoff;
    let mut failing = false;
    let mut next_meta = Instant::now() + config.meta_every;
    let mut next_process = config.process_metrics.map(|every| Instant::now() + every);
    let mut reported = StatsSnapshot::default();
    let mut process = crate::process::ProcessReader::new();
    let agg_interval = match config.mode {
        crate::Mode::Aggregating { interval } => Some(interval.as_secs().max(1) as f64),
        crate::Mode::Raw => None,
    };
    let mut next_agg = agg_interval.map(next_boundary);

    loop {
        let stopping = shared.stop.load(Ordering::SeqCst);
        if pending.written == pending.batch.len() {
            // Take what the app buffered (waiting for it unless stopping).
            pending.batch.clear();
            pending.ids.clear();
            pending.written = 0;
            {
                let mut buffer = shared.buffer.lock();
                shared.buffer.set_in_flight(&buffer, 0);
                if buffer.is_empty() && !stopping {
                    let wait = next_wake(shared, next_meta, next_process.into_iter().chain(next_agg).min());
                    buffer =
                        shared.buffer.wake.wait_timeout(buffer, wait).unwrap_or_else(|p| p.into_inner()).0;
                }
                std::mem::swap(&mut *buffer, &mut pending.batch);
                shared.buffer.set_in_flight(&buffer, pending.batch.held_bytes());
            }
            let stopping = shared.stop.load(Ordering::SeqCst);
            let agg_due = next_agg.is_some_and(|at| Instant::now() >= at);
            if let (Some(tables), true) = (&shared.aggregates, agg_due || stopping) {
                next_agg = agg_interval.map(next_boundary);
                let closed = tables.take_closed(now_secs(), AGGREGATE_GRACE_SECS, stopping);
                for series in &closed {
                    render_series(shared, series, &mut pending.batch);
                }
            }
            let now = Instant::now();
            if next_process.is_some_and(|at| now >= at) || (stopping && next_process.is_some()) {
                next_process = config.process_metrics.map(|every| now + every);
                for (name, value) in process.read() {
                    meta(shared, name, MetricType::Gauge, value, &[], &mut pending.batch);
                }
            }
            if now >= next_meta || stopping {
                next_meta = now + config.meta_every;
                write_meta(shared, &mut reported, &mut pending.batch);
            }
            pending.ids.extend((0..pending.batch.len()).map(|_| uuids.next_id()));
        }

        if pending.written < pending.batch.len() {
            match write(&redis, &mut conn, shared, &mut pending) {
                Ok(()) => {
                    backoff = config.min_backoff;
                    if failing {
                        failing = false;
                        next_meta = Instant::now(); // report the drops now that Redis is back
                    }
                }
                Err(error) => {
                    shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                    if !failing {
                        log::warn!(target: "chouette_client", "error={error}; cannot write to Redis, retrying with backoff");
                    }
                    failing = true;
                    if sleep_unless_past_deadline(shared, backoff) {
                        backoff = (backoff * 2).min(config.max_backoff);
                        continue;
                    }
                }
            }
        }

        if shared.stop.load(Ordering::SeqCst) {
            let past = deadline(shared).is_some_and(|d| Instant::now() >= d);
            let empty = pending.written == pending.batch.len()
                && shared.buffer.lock().is_empty()
                && shared.aggregates.as_ref().is_none_or(|t| t.next_close(0.0).is_none());
            if empty || past {
                let mut unsent = pending.unsent();
                {
                    let mut buffer = shared.buffer.lock();
                    shared.closed.store(true, Ordering::SeqCst);
                    unsent += buffer.app_records(0..buffer.len());
                    buffer.clear();
                }
                if let Some(tables) = &shared.aggregates {
                    // Calls that raced with the last flush: counted per series. `closed` is set
                    // above, and read by calls under their shard's lock: none lands after this.
                    unsent += tables.discard();
                }
                shared.stats.add_dropped(unsent);
                *shared.done.lock().unwrap_or_else(|p| p.into_inner()) = Some(unsent);
                shared.done_cv.notify_all();
                return;
            }
        }
    }
}

fn deadline(shared: &Shared) -> Option<Instant> {
    *shared.deadline.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sleeps `backoff`, cut short by the shutdown deadline. `false` when the deadline has passed.
fn sleep_unless_past_deadline(shared: &Shared, backoff: Duration) -> bool {
    let until = Instant::now() + backoff;
    let until = match deadline(shared) {
        Some(d) if d <= until => {
            std::thread::sleep(d.saturating_duration_since(Instant::now()));
            return false;
        }
        _ => until,
    };
    // Wake early on shutdown so the deadline is honoured.
    let mut guard = shared.buffer.lock();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        guard = shared.buffer.wake.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0;
        if shared.stop.load(Ordering::SeqCst) {
            drop(guard);
            let d = deadline(shared);
            if d.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            std::thread::sleep(until.min(d.unwrap_or(until)).saturating_duration_since(Instant::now()));
            return true;
        }
    }
}

/// The `Instant` of the next multiple of `interval` seconds of wall-clock time, plus the grace:
/// aggregates are flushed once per interval, all together, so a series gets one record per
/// interval even when the app stamps its calls with past times.
fn next_boundary(interval: f64) -> Instant {
    let now = now_secs();
    let next = ((now / interval).floor() + 1.0) * interval + AGGREGATE_GRACE_SECS;
    Instant::now() + Duration::from_secs_f64((next - now).max(0.0))
}

fn next_wake(shared: &Shared, next_meta: Instant, next_process: Option<Instant>) -> Duration {
    let now = Instant::now();
    let mut wait = shared.config.flush_every.min(next_meta.saturating_duration_since(now));
    if let Some(at) = next_process {
        wait = wait.min(at.saturating_duration_since(now));
    }
    wait.max(Duration::from_millis(1))
}

fn connect(redis: &redis::Client, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let conn = redis.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// Writes the rest of `pending` in transactions of at most `batch_records` records.
fn write(
    redis: &redis::Client,
    conn: &mut Option<redis::Connection>,
    shared: &Shared,
    pending: &mut Pending,
) -> redis::RedisResult<()> {
    let config = &shared.config;
    let conn = match conn {
        Some(c) => c,
        None => conn.insert(connect(redis, config.redis_timeout)?),
    };
    let (mut members, mut tags) = (Vec::new(), Vec::new());
    while pending.written < pending.batch.len() {
        let end = (pending.written + config.batch_records.max(1)).min(pending.batch.len());
        // Rendered again on a retry: cheap, and the batch stays in its compact form meanwhile.
        let (chunk, index) = (&mut pending.chunk, &mut pending.chunk_index);
        chunk.clear();
        index.clear();
        for i in pending.written..end {
            let (entry, bytes) = pending.batch.get(i);
            if render_entry(config, entry, bytes, chunk, &mut members, &mut tags) {
                index.push(i);
            }
        }
        if !chunk.is_empty() {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for logs in [false, true] {
                let queue = if logs { keys::LOGS } else { keys::RAW_METRICS };
                let (keys, values) = (queue.keys, queue.values);
                let mine = |j: &usize| (chunk.get(*j).0.kind == Kind::Log) == logs;
                if !(0..chunk.len()).any(|j| mine(&j)) {
                    continue;
                }
                let zadd = pipe.cmd("ZADD").arg(keys);
                for j in (0..chunk.len()).filter(mine) {
                    let mut buf = [0u8; 32];
                    let mut w = Writer::new(&mut buf);
                    w.python_float(chunk.get(j).0.score);
                    let len = w.finish().unwrap_or(0);
                    zadd.arg(&buf[..len]).arg(&pending.ids[index[j]][..]);
                }
                let hset = pipe.cmd("HSET").arg(values);
                for j in (0..chunk.len()).filter(mine) {
                    hset.arg(&pending.ids[index[j]][..]).arg(chunk.get(j).1);
                }
            }
            pipe.query::<()>(conn)?;
        }
        // Counted once written: a later failure does not un-send these.
        let sent = chunk.app_records(0..chunk.len());
        shared.stats.sent.fetch_add(sent, Ordering::Relaxed);
        shared.stats.add_dropped(pending.batch.app_records(pending.written..end) - sent);
        pending.written = end;
    }
    Ok(())
}

/// Appends one buffered record to `to`, rendering a compact call as the original's JSON;
/// `false` for a call that cannot be rendered (the caller counts it as dropped).
fn render_entry<'a>(
    config: &crate::ClientConfig,
    entry: Entry,
    bytes: &'a [u8],
    to: &mut Batch,
    members: &mut Vec<chouette_core::Member<'a>>,
    tags: &mut Vec<(&'a str, &'a str)>,
) -> bool {
    if entry.kind != Kind::Compact {
        to.push(entry.kind, entry.score, bytes);
        return true;
    }
    crate::compact::decode(bytes, members, tags)
        .and_then(|call| {
            render(
                |w| {
                    raw_metric(
                        w,
                        config.sanitize,
                        call.name,
                        call.kind,
                        call.value(members),
                        entry.score,
                        &config.global_tags,
                        tags,
                    )
                },
                |json| to.push(Kind::Metric, entry.score, json),
            )
        })
        .is_some()
}

/// Renders one of the client's own metrics (meta, process), stamped now.
fn meta(
    shared: &Shared,
    name: &str,
    kind: MetricType,
    value: Number,
    tags: &[(&str, &str)],
    batch: &mut Batch,
) {
    let ts = now_secs();
    let config = &shared.config;
    render(
        |w| {
            raw_metric(w, config.sanitize, name, kind, RawValue::Number(value), ts, &config.global_tags, tags)
        },
        |json| batch.push(Kind::Meta, ts, json),
    );
}

/// `chouette.client.sent`, `.dropped` (one record per `reason`: `buffer_records`, `buffer_bytes`,
/// `other`), `.errors` as counts of what happened since the last report (only those that moved).
fn write_meta(shared: &Shared, reported: &mut StatsSnapshot, batch: &mut Batch) {
    let now = shared.stats.snapshot();
    let deltas = [
        ("chouette.client.sent", None, now.sent - reported.sent),
        (
            "chouette.client.dropped",
            Some("buffer_records"),
            now.dropped_buffer_records - reported.dropped_buffer_records,
        ),
        (
            "chouette.client.dropped",
            Some("buffer_bytes"),
            now.dropped_buffer_bytes - reported.dropped_buffer_bytes,
        ),
        ("chouette.client.dropped", Some("other"), now.dropped_other - reported.dropped_other),
        ("chouette.client.errors", None, now.errors - reported.errors),
    ];
    for (name, reason, delta) in deltas {
        if delta > 0 {
            let tags = reason.map(|r| [("reason", r)]);
            meta(
                shared,
                name,
                MetricType::Count,
                Number::from(delta),
                tags.as_ref().map_or(&[], |t| &t[..]),
                batch,
            );
        }
    }
    *reported = now;
}

/// Renders a closed aggregate as the records the agent reads (see the README).
fn render_series(shared: &Shared, series: &Series, batch: &mut Batch) {
    let config = &shared.config;
    let ts = series.bucket as f64;
    let tags: Vec<(&str, &str)> = series.tags.iter().map(|(k, v)| (&**k, &**v)).collect();
    let mut one = |value: RawValue<'_>| {
        let done = render(
            |w| {
                raw_metric(
                    w,
                    config.sanitize,
                    &series.name,
                    series.kind,
                    value,
                    ts,
                    &config.global_tags,
                    &tags,
                )
            },
            |json| batch.push(Kind::Metric, ts, json),
        );
        if done.is_none() {
            shared.stats.add_dropped(1);
        }
    };
    match &series.state {
        State::Sum { int, float, any_float } => one(RawValue::Number(Series::sum(*int, *float, *any_float))),
        State::Last(n) => one(RawValue::Number(*n)),
        State::Members(members) => {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            one(RawValue::MemberTexts(&members));
        }
        State::Samples(samples) => match samples.as_slice() {
            [single] => one(RawValue::Number(*single)),
            many => {
                for chunk in many.chunks(SAMPLES_PER_RECORD) {
                    one(RawValue::Samples(chunk));
                }
            }
        },
    }
}
