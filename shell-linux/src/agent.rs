//! The run loop: one readable loop that reads the clock, runs the steps that are due, and sleeps
//! until the next deadline or a signal.
//!
//! ```text
//! every AGGREGATE_INTERVAL: TTL cleanup, then aggregation steps until the closed buckets are done
//!                           (each bucket's points go to every enabled output's outbox at once)
//! per output (Datadog series and logs, InfluxDB, OpenTSDB), at RELEASE_INTERVAL or its own
//!                           backoff deadline: drain its outbox for at most RELEASE_BUDGET; one
//!                           cut short comes back right after the rest of the loop had its turn
//! every RELEASE_INTERVAL:   self-metrics and status
//! per source (the collectors, at CAPTURE_INTERVAL): one turn when it is due (see `source`)
//! SIGTERM / SIGINT:         finish the current step, let each source hand over what it holds,
//!                           exit 0 (raw records of open buckets stay queued)
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, StoreConfig};
use crate::dispatch::{Destination, DispatchConfig, Dispatcher, DryRunTransport, Transport, UreqTransport};
use crate::dogstatsd::memory::Memory;
use crate::limits::LOGS_PER_BATCH;
use crate::pipeline::{self, Aggregation, Counters, IdGenerator, StepOutcome};
use crate::source::{next_boundary, Sink};
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::RedisStore;
use crate::store::{Queue, Store, StoreError};

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store could not be opened at startup.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The HTTP client could not be built (a bad CA bundle, say).
    #[error("cannot set up dispatch: {0}")]
    Dispatch(String),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A collector plugin's variable is invalid.
    #[error("cannot set up the collectors: {0}")]
    Collectors(#[from] crate::collect::PluginConfigError),
    /// Nowhere to send to ([`Config::check_output`]).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Longest one release pass works on one destination before it returns to the loop, so that
/// aggregation, collectors and signals wait at most this long (plus one request in flight, bounded
/// by `CHOUETTE_REQUEST_TIMEOUT`) behind a backlog or a bisection. Unsettled records are kept and
/// the pass resumes right after the loop had its turn. 3 s: 10,000-point requests take well
/// under a second on a healthy uplink, so a pass still moves tens of thousands of points.
pub const RELEASE_BUDGET: Duration = Duration::from_secs(3);

/// Float Unix seconds now.
pub fn wall_clock() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Opens the configured store, logging which one is in use.
pub fn open_store(config: &Config) -> Result<Box<dyn Store>, StoreError> {
    let store: Box<dyn Store> = match &config.store {
        StoreConfig::Redis { url, implicit } => {
            let timeouts = crate::store::redis::RedisTimeouts::default();
            let store = RedisStore::connect_with_tls(url, timeouts, &config.redis_tls)?;
            if *implicit {
                log::warn!(
                    "store={}: no REDIS_URL/REDIS_HOST set, but the original's default host `redis` resolves: using it",
                    store.describe()
                );
            }
            Box::new(store)
        }
        StoreConfig::Embedded { path } => Box::new(EmbeddedStore::open(path)?),
    };
    log::info!("store={}: store in use", store.describe());
    Ok(store)
}

/// Installs SIGTERM and SIGINT handlers that set the returned flag.
pub fn shutdown_flag() -> Result<Arc<AtomicBool>, AgentError> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&flag)).map_err(AgentError::Signals)?;
    }
    Ok(flag)
}

/// Runs the agent until `shutdown` is set.
pub fn run(config: &Config, shutdown: &AtomicBool) -> Result<(), AgentError> {
    config.check_output()?;
    limit_malloc_arenas();
    let mut store = open_store(config)?;
    let waker = crate::source::Waker::new();
    let mut sources = crate::source::build(config, &waker)?;
    let Outputs { mut dispatcher, destinations, outboxes } = open_outputs(config)?;
    let interval_secs = config.aggregate_interval.as_secs().max(1) as u32;
    let mut aggregation =
        Aggregation::new(interval_secs, config.grace, config.wrap.clone()).with_outboxes(outboxes.clone());
    if config.dogstatsd.enabled() {
        let (listener, memory) = start_dogstatsd(config, interval_secs);
        aggregation = aggregation.with_memory(memory);
        sources.push(listener);
    }
    let mut counters = Counters::default();
    let mut reported = Counters::default();
    let mut ids = pipeline::id_generator();
    let aggregate_every = config.aggregate_interval.max(Duration::from_secs(1));
    let release_every = config.release_interval.max(Duration::from_secs(1));
    // First ticks right away (a backlog drains at once), then on interval boundaries.
    let mut next_aggregate = Instant::now();
    let mut next_release = Instant::now();
    // Each destination's next attempt: its own deadline (boundary, backoff, or now to resume).
    let mut next_send = vec![Instant::now(); destinations.len()];
    let mut store_down = false;
    // A signal wakes the loop at once, so it may sleep until its next deadline.
    let _signals = SignalWaker::start(&waker);
    let nap_max = if config.dogstatsd.enabled() { NAP_MAX_DOGSTATSD } else { NAP_MAX };
    crate::notify::ready("running");

    while !shutdown.load(Ordering::Relaxed) {
        crate::notify::watchdog();
        let now = Instant::now();
        if now >= next_aggregate {
            next_aggregate = next_boundary(aggregate_every);
            let result = aggregate_tick(store.as_mut(), &mut aggregation, config, &mut counters, shutdown);
            store_down = report_store(result, store_down);
        }
        for (slot, &destination) in next_send.iter_mut().zip(&destinations) {
            if shutdown.load(Ordering::Relaxed) || Instant::now() < *slot {
                continue;
            }
            let result = release_pass(store.as_mut(), &mut dispatcher, destination, config, &mut counters);
            let more = result.as_ref().is_ok_and(|more| *more);
            store_down = report_store(result.map(drop), store_down);
            *slot = match dispatcher.ready_at(destination) {
                Some(at) => at,
                None if more => Instant::now(),
                None => next_boundary(release_every),
            };
        }
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        if Instant::now() >= next_release {
            next_release = next_boundary(release_every);
            let result =
                report_tick(store.as_mut(), config, &outboxes, &mut counters, &mut reported, &mut ids);
            store_down = report_store(result, store_down);
        }
        for source in sources.iter_mut() {
            // next_due first: a source with work waiting answers "now", which must not be later
            // than the instant it is compared with (the serial source's requests waited for its
            // 10 s report otherwise).
            if !shutdown.load(Ordering::Relaxed) && source.next_due() <= Instant::now() {
                let mut sink = Sink::new(store.as_mut(), &outboxes, config.send_self_metrics);
                store_down = report_store(source.run(wall_clock(), &mut sink), store_down);
            }
        }
        let next_source_due = sources.iter().map(|s| s.next_due()).min().unwrap_or(next_release);
        let next_send_due = next_send.iter().copied().min().unwrap_or(next_release);
        let wake = next_aggregate.min(next_release).min(next_source_due).min(next_send_due);
        let nap = wake.saturating_duration_since(Instant::now()).min(nap_max);
        waker.sleep(nap);
    }
    crate::notify::stopping("stopping: signal received");
    stop_sources(sources, store.as_mut(), &outboxes, config);
    flush_memory(store.as_mut(), &mut aggregation, config, &mut counters);
    log::info!("signal received: stopped after the current step; queued data stays in the store");
    let _ = write_status(store.as_mut(), &counters, wall_clock());
    Ok(())
}

/// The DogStatsD listener, a source, and the memory its receive threads aggregate into, which the
/// aggregation step merges bucket by bucket.
fn start_dogstatsd(
    config: &Config,
    interval_secs: u32,
) -> (Box<dyn crate::source::Source>, Arc<Mutex<Memory>>) {
    let forward = crate::dispatch::events_enabled(config);
    let memory = Memory::new(interval_secs, config.dogstatsd.max_contexts).forward_events(forward);
    let memory = Arc::new(Mutex::new(memory));
    let listener = crate::dogstatsd::Listener::start(
        &config.dogstatsd,
        Arc::clone(&memory),
        interval_secs,
        config.release_interval,
    );
    (Box::new(listener), memory)
}

/// Lets each source hand over what it holds, then stops its threads and children (the
/// collectors' tegrastats) and reaps them.
fn stop_sources(
    sources: Vec<Box<dyn crate::source::Source>>,
    store: &mut dyn Store,
    outboxes: &[Queue],
    config: &Config,
) {
    for mut source in sources {
        let mut sink = Sink::new(store, outboxes, config.send_self_metrics);
        if let Err(error) = source.stop(&mut sink) {
            log::error!("source={}: {error}: could not hand over what it held when stopping", source.name());
        }
        drop(source);
    }
}

/// The longest sleep of the run loop: its deadlines, the sources' threads (the [`Waker`]) and
/// SIGTERM/SIGINT (`SignalWaker`) wake it earlier; waking more often only costs CPU (an idle
/// agent woke 4 times a second).
///
/// [`Waker`]: crate::source::Waker
pub const NAP_MAX: Duration = Duration::from_secs(1);

/// The longest sleep with the DogStatsD listener on: its events and `|T` points are polled (its
/// threads do not wake the loop).
pub const NAP_MAX_DOGSTATSD: Duration = Duration::from_millis(250);

/// Wakes the run loop when SIGTERM or SIGINT arrives: the handlers of [`shutdown_flag`] set the
/// flag (they run first, registered first), and a thread blocked on a socket pair this one writes
/// to wakes the loop, so that it stops at once rather than at its next deadline. Dropped: the
/// handlers are removed, and the thread ends.
struct SignalWaker {
    ids: Vec<signal_hook::SigId>,
}

impl SignalWaker {
    /// `None` (logged) if it cannot be set up: the loop then notices a signal within [`NAP_MAX`].
    fn start(waker: &crate::source::Waker) -> Option<SignalWaker> {
        use std::io::Read;
        let (mut read, write) = match std::os::unix::net::UnixStream::pair() {
            Ok(pair) => pair,
            Err(error) => {
                log::debug!("{error}: no socket pair for signals; a signal is noticed within {NAP_MAX:?}");
                return None;
            }
        };
        let mut waker_of_signals = SignalWaker { ids: Vec::new() };
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            let registered =
                write.try_clone().and_then(|write| signal_hook::low_level::pipe::register(signal, write));
            match registered {
                Ok(id) => waker_of_signals.ids.push(id),
                Err(error) => {
                    log::debug!("{error}: cannot wake on signals; a signal is noticed within {NAP_MAX:?}");
                    return None; // dropping it removes the handlers registered so far
                }
            }
        }
        drop(write);
        let waker = waker.clone();
        let spawned = std::thread::Builder::new().name("chouette-signals".into()).spawn(move || {
            let mut bytes = [0u8; 16];
            loop {
                match read.read(&mut bytes) {
                    Ok(0) => break, // the handlers were removed
                    Ok(_) => waker.wake(),
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        if let Err(error) = spawned {
            log::debug!("{error}: no thread to wake on signals; a signal is noticed within {NAP_MAX:?}");
            return None;
        }
        Some(waker_of_signals)
    }
}

impl Drop for SignalWaker {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Longest the agent spends, when stopping, aggregating what the DogStatsD listener holds.
pub const FLUSH_MEMORY_BUDGET: Duration = Duration::from_secs(10);

/// Stopping: the listener's buckets, the open ones included, go through the aggregation step now
/// (with a clock just past the newest bucket's close), so a SIGTERM loses nothing. Raw records of
/// those buckets already queued are aggregated with them; apps' records for them arriving later
/// are late and fold into the next bucket when the agent runs again (counted as late).
fn flush_memory(
    store: &mut dyn Store,
    aggregation: &mut Aggregation,
    config: &Config,
    counters: &mut Counters,
) {
    let Some(end) = aggregation.memory_newest_end() else { return };
    let now = end + config.grace.as_secs_f64();
    let deadline = Instant::now() + FLUSH_MEMORY_BUDGET;
    while aggregation.memory_newest_end().is_some() && Instant::now() < deadline {
        match aggregation.step(store, now, counters) {
            Ok(StepOutcome::Progress { .. }) => {}
            Ok(StepOutcome::Idle) => break,
            Err(error) => {
                log::error!("{error}: cannot aggregate what the DogStatsD listener holds");
                break;
            }
        }
    }
    if aggregation.memory_newest_end().is_some() {
        log::error!(
            "budget={FLUSH_MEMORY_BUDGET:?}: DogStatsD lines held in memory could not be aggregated before stopping; they are lost"
        );
    } else {
        log::info!("DogStatsD lines held in memory aggregated before stopping");
    }
    aggregation.release_memory();
}

/// The enabled outputs ([`crate::dispatch::outputs`]) behind one dispatcher, logged; their
/// destinations, and the metric outboxes every bucket and capture goes to.
fn open_outputs(config: &Config) -> Result<Outputs, AgentError> {
    let transport: Box<dyn Transport> = if config.dry_run {
        log::info!("dry_run=true: printing what would be sent, and deleting it from the store");
        Box::new(DryRunTransport::new(std::io::stdout()))
    } else {
        Box::new(UreqTransport::new(config).map_err(|e| AgentError::Dispatch(e.to_string()))?)
    };
    let dispatch = DispatchConfig::from_config(config);
    let outputs = crate::dispatch::outputs(config, &dispatch);
    let dispatcher = Dispatcher::with_outputs(transport, dispatch, outputs);
    let destinations = dispatcher.destinations();
    if !destinations.contains(&Destination::Logs) {
        log::warn!(
            "logs go to Datadog only (API_KEY or DATADOG_URL unset): logs the apps queue stay in {} until LOG_TTL",
            Queue::Logs.prefix()
        );
    }
    for &destination in &destinations {
        let url = crate::config::redact_url(dispatcher.url(destination));
        log::info!(
            "output={} url={url} outbox={}: sending",
            destination.name(),
            destination.queue().prefix()
        );
    }
    // Every bucket (and every capture) goes to each metric output's outbox, in one commit.
    let outboxes: Vec<Queue> =
        destinations.iter().map(|d| d.queue()).filter(|q| Queue::METRIC_OUTBOXES.contains(q)).collect();
    Ok(Outputs { dispatcher, destinations, outboxes })
}

/// What [`open_outputs`] sets up.
struct Outputs {
    dispatcher: Dispatcher<Box<dyn Transport>>,
    destinations: Vec<Destination>,
    outboxes: Vec<Queue>,
}

fn report_store(result: Result<(), StoreError>, was_down: bool) -> bool {
    match result {
        Ok(()) => {
            if was_down {
                log::info!("store reachable again: resuming");
            }
            false
        }
        Err(error) => {
            if !was_down || !error.is_transient() {
                log::error!("{error}: will retry at the next tick, nothing is deleted meanwhile");
            }
            true
        }
    }
}

fn aggregate_tick(
    store: &mut dyn Store,
    aggregation: &mut Aggregation,
    config: &Config,
    counters: &mut Counters,
    shutdown: &AtomicBool,
) -> Result<(), StoreError> {
    // A failing cleanup (WRONGTYPE on a queue key, a user without scripting rights before the
    // fallback kicks in) must not stop aggregation: report it and go on.
    // An unreachable store fails the whole tick (reported once by `report_store`).
    match pipeline::cleanup(store, wall_clock(), config.metric_ttl, config.log_ttl, counters) {
        Ok(()) => {
            if counters.cleanup_failing {
                log::info!("TTL cleanup works again");
            }
            counters.cleanup_failing = false;
        }
        Err(error) if error.is_transient() => return Err(error),
        Err(error) => {
            counters.cleanup_failures += 1;
            if !counters.cleanup_failing {
                log::error!(
                    "{error}: TTL cleanup failed; aggregating anyway, old records stay until it works"
                );
            }
            counters.cleanup_failing = true;
        }
    }
    while !shutdown.load(Ordering::Relaxed) {
        crate::notify::watchdog(); // a long backlog is progress, not a hang
        match aggregation.step(store, wall_clock(), counters)? {
            StepOutcome::Idle => {
                aggregation.release_memory();
                store.idle();
                return_freed_memory();
                break;
            }
            StepOutcome::Progress { consumed } => log::debug!("consumed={consumed}: aggregated a bucket"),
        }
    }
    Ok(())
}

/// One release pass for `destination`: drains its queue for at most [`RELEASE_BUDGET`].
/// `Ok(true)`: the budget ran out with work left (come back right away).
fn release_pass(
    store: &mut dyn Store,
    dispatcher: &mut Dispatcher<Box<dyn Transport>>,
    destination: Destination,
    config: &Config,
    counters: &mut Counters,
) -> Result<bool, StoreError> {
    if dispatcher.ready_at(destination).is_some() {
        return Ok(false);
    }
    let deadline = Instant::now() + RELEASE_BUDGET;
    let batch = match destination {
        Destination::Logs | Destination::Events | Destination::ServiceChecks => LOGS_PER_BATCH,
        _ => config.metrics_bulk_size.max(1),
    };
    let mut latencies = Vec::new();
    let drained = pipeline::drain(store, destination.queue(), batch, deadline, |records, gate| {
        let report = dispatcher.send_gated(destination, records, deadline, gate);
        latencies.extend(report.latencies.iter().map(|d| d.as_secs_f64() * 1000.0));
        report
    });
    // The destination's own counters, even when the store failed halfway.
    counters.destinations.insert(destination.name(), dispatcher.stats(destination));
    counters.record_latencies(destination.name(), &latencies);
    let result = drained?;
    if !result.more {
        // The outbox is empty (or waits for a backoff): the buffers sized for a batch go.
        dispatcher.release_buffers();
    }
    // The agent-wide counters (and their self-metrics) are Datadog's, as before there were
    // other outputs; every output has its own `dispatch.<name>.*` fields and metrics.
    match destination {
        Destination::Logs => {
            counters.dispatched_logs += result.delivered;
            counters.dispatched_logs_bytes += result.bytes;
            counters.dead_logs += result.dead;
        }
        Destination::Metrics => {
            counters.dispatched_metrics += result.points;
            counters.dispatched_metrics_bytes += result.bytes;
            counters.dead_metrics += result.dead;
        }
        _ => {}
    }
    counters.retried += result.retried;
    if let Some(status) = &result.last_status {
        counters.last_dispatch = Some(format!("{}: {status} at {:.0}", destination.name(), wall_clock()));
    }
    Ok(result.more)
}

/// Every RELEASE_INTERVAL: self-metrics, the status hash, and the embedded store's snapshot.
fn report_tick(
    store: &mut dyn Store,
    config: &Config,
    outboxes: &[Queue],
    counters: &mut Counters,
    reported: &mut Counters,
    ids: &mut IdGenerator,
) -> Result<(), StoreError> {
    let now = wall_clock();
    if config.send_self_metrics {
        // The deepest outbox: what the slowest output still has to send.
        let mut queued = 0;
        for &outbox in outboxes {
            queued = queued.max(store.len(outbox)?);
        }
        let records = pipeline::self_metrics(counters, reported, queued, now, ids);
        if !records.is_empty() {
            store.add(Queue::RawMetrics, &records)?;
        }
    }
    counters.latencies.clear();
    *reported = counters.clone();
    write_status(store, counters, now)?;
    if let StoreConfig::Embedded { path } = &config.store {
        write_status_snapshot(store, path);
    }
    Ok(())
}

/// The status hash: the agent's counters and each destination's.
fn write_status(store: &mut dyn Store, counters: &Counters, now: f64) -> Result<(), StoreError> {
    let per_destination = pipeline::destination_status_fields(counters);
    let mut fields = pipeline::status_fields(counters, now);
    fields.extend(per_destination.iter().map(|(k, v)| (k.as_str(), v.clone())));
    store.put_status(&fields)
}

/// Where the agent leaves a rendering of `chouette status` for the embedded store, whose file the
/// running agent holds locked (`chouette status` prints this snapshot instead).
pub fn status_snapshot_path(db: &std::path::Path) -> std::path::PathBuf {
    db.with_extension("status")
}

/// Rewrites the snapshot in place under an exclusive `flock`, which `chouette status` takes
/// shared to read it ([`read_status_snapshot`]): a reader never sees half of it. Writing a new
/// file and renaming it over the old one cost the ext4 journal a truncation, an allocation and a
/// directory update every tick: 7 % of an idle agent's CPU (perf, host collection every second).
/// The lock is not waited for: while another process holds it, this tick's snapshot is skipped
/// (a reader holds it for a read; anything holding it longer must not stall the agent's loop).
fn write_status_snapshot(store: &mut dyn Store, db: &std::path::Path) {
    let mut text = Vec::new();
    if crate::cli::render_status(store, &mut text).is_err() {
        return;
    }
    let path = status_snapshot_path(db);
    if let Err(error) = rewrite_locked(&path, &text) {
        log::debug!("path={}: cannot write the status snapshot: {error}", path.display());
    }
}

fn rewrite_locked(path: &std::path::Path, text: &[u8]) -> std::io::Result<()> {
    use rustix::fs::{flock, FlockOperation};
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    flock(&file, FlockOperation::NonBlockingLockExclusive)?;
    // Closing the file releases the lock, whatever fails.
    file.write_all_at(text, 0)?;
    file.set_len(text.len() as u64)
}

/// The running agent's last status snapshot, read under a shared `flock` (never while the agent
/// rewrites it).
pub fn read_status_snapshot(db: &std::path::Path) -> std::io::Result<String> {
    use rustix::fs::{flock, FlockOperation};
    use std::io::Read;
    let mut file = std::fs::File::open(status_snapshot_path(db))?;
    flock(&file, FlockOperation::LockShared)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// One malloc arena for every thread (glibc builds). glibc gives each thread that allocates its
/// own arena and keeps what is freed there, out of `malloc_trim`'s reach once fragmented: the
/// Redis read-ahead thread's pages alone left the agent at 13 MB after a drain instead of 8
/// (`scripts/bench-agent.sh`). The static builds use zig's libc allocator, whose per-CPU heaps
/// take from each other's free lists: nothing to set there.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: glibc's mallopt takes no pointers; called before the agent starts its threads.
        unsafe {
            mallopt(M_ARENA_MAX, 1);
        }
    }
}

/// Hands memory freed after a burst (a drained backlog) back to the OS. glibc keeps freed heap
/// for reuse, so an agent that drained a million records would otherwise stay at its peak RSS.
/// The shipped static builds use zig's libc allocator, which unmaps blocks of 64 KiB and more
/// when they are freed and keeps smaller ones in its 64 KiB slabs for reuse (nothing to call).
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and may be called at any time from any
        // thread; it only releases free heap pages.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_snapshot_is_rewritten_in_place_and_read_whole() {
        let dir = std::env::temp_dir().join(format!("chouette-snapshot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("chouette.redb");
        assert!(read_status_snapshot(&db).is_err(), "none yet");
        let path = status_snapshot_path(&db);
        rewrite_locked(&path, "a longer first status\nline two\n".as_bytes()).expect("write");
        assert_eq!(read_status_snapshot(&db).expect("read"), "a longer first status\nline two\n");
        // A shorter one leaves nothing of the first behind.
        rewrite_locked(&path, b"short\n").expect("rewrite");
        assert_eq!(read_status_snapshot(&db).expect("read"), "short\n");
        // A reader waits while the writer holds the lock.
        let held = std::fs::File::open(&path).expect("open");
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).expect("lock");
        let reader = std::thread::spawn(move || read_status_snapshot(&db).expect("read"));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!reader.is_finished(), "blocked behind the writer's lock");
        drop(held);
        assert_eq!(reader.join().expect("reader"), "short\n");
        // The writer never waits: while another process holds a lock, it skips, and the
        // snapshot stays whole.
        let held = std::fs::File::open(&path).expect("open");
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockShared).expect("lock");
        let error = rewrite_locked(&path, b"skipped\n").expect_err("locked");
        assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock);
        drop(held);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "short\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
