//! The source seam: what feeds the agent besides the apps' raw queue.
//!
//! Apps write raw samples to `chouette:metrics:raw` themselves; the aggregation step folds them
//! into buckets. Everything else that produces data inside the agent is a [`Source`] the run loop
//! gives a turn when it is due, with a [`Sink`] that takes either:
//!
//! - **samples** (raw records, the apps' own format): they join the raw queue and are aggregated
//!   with the apps' records (same series, same bucket, one point), or
//! - **finished points** (wrapped records): they go to every enabled output's outbox in one
//!   atomic write, so no output can have points another lacks.
//!
//! The collectors ([`crate::collect::Runner`]) and the serial link
//! ([`crate::serial::source::SerialSource`]: microcontrollers' closed intervals, committed with
//! each device's link state by [`Sink::commit_link`]) are sources of finished points. A
//! DogStatsD listener plugs in the same way: a file implementing [`Source`] and a line in
//! [`build`]. The main loop does not change. A source with threads of its own wakes the loop
//! through the [`Waker`] it was built with.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::store::{NewRecord, Queue, Store, StoreError};

/// Something that produces data inside the agent.
pub trait Source: Send {
    /// A short name for logs (`collectors`).
    fn name(&self) -> &str;

    /// When it next wants a turn; the loop sleeps at most until the earliest source's. A source
    /// with work waiting answers `Instant::now()`: the loop reads its own clock after this call,
    /// so that is already due.
    fn next_due(&self) -> Instant;

    /// One turn at wall-clock `now` (float Unix seconds): hands what it has to `sink`. A store
    /// error leaves the source's data with the source where it can (retried next turn).
    fn run(&mut self, now: f64, sink: &mut Sink<'_>) -> Result<(), StoreError>;

    /// The agent is stopping: hand over anything held in memory (open buckets) and stop threads
    /// and children. Called once, after the last turn.
    fn stop(&mut self, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        let _ = sink;
        Ok(())
    }
}

/// Where a source's data goes: the raw queue (samples) or every enabled outbox (points).
pub struct Sink<'a> {
    store: &'a mut dyn Store,
    outboxes: &'a [Queue],
    self_metrics: bool,
}

impl<'a> Sink<'a> {
    /// A sink writing to `store`, points to `outboxes` (the enabled metric outputs').
    pub fn new(store: &'a mut dyn Store, outboxes: &'a [Queue], self_metrics: bool) -> Self {
        Sink { store, outboxes, self_metrics }
    }

    /// Finished points (wrapped records) to every enabled output's outbox, atomically.
    pub fn points(&mut self, records: &[NewRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.store.add_to_each(self.outboxes, records)
    }

    /// Finished points to every enabled output's outbox and the link state of `device`, in one
    /// atomic step ([`Store::commit_link`]): what a serial source calls before it acknowledges
    /// a frame, so a retransmission after a crash is never counted twice.
    pub fn commit_link(
        &mut self,
        records: &[NewRecord],
        device: &str,
        state: &[u8],
    ) -> Result<(), StoreError> {
        self.store.commit_link(self.outboxes, records, device, state)
    }

    /// The link state last committed for `device` (read once when its link starts).
    pub fn link_state(&mut self, device: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.link_state(device)
    }

    /// Samples (raw records) to the raw queue, aggregated with the apps' records.
    pub fn samples(&mut self, records: &[NewRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.store.add(Queue::RawMetrics, records)
    }

    /// Records to one queue as they are: the DogStatsD listener's events ([`Queue::Events`])
    /// and service checks ([`Queue::ServiceChecks`]), each the JSON body Datadog expects
    /// (see [`crate::dispatch::events`]). Queue them only when
    /// [`crate::dispatch::events_enabled`]: nothing else sends them.
    pub fn add(&mut self, queue: Queue, records: &[NewRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.store.add(queue, records)
    }

    /// Status fields (`chouette status`), merged into the status the agent writes.
    pub fn put_status(&mut self, fields: &[(&str, String)]) -> Result<(), StoreError> {
        self.store.put_status(fields)
    }

    /// Whether sources should add their own self-metrics (`SEND_SELF_METRICS`).
    pub fn self_metrics(&self) -> bool {
        self.self_metrics
    }
}

/// Wakes the run loop from its sleep: a source's thread has something for its next turn (the
/// serial source's commits). Cheap to clone; waking a loop that is not asleep makes its next
/// sleep return at once.
#[derive(Clone, Default)]
pub struct Waker(Arc<(Mutex<bool>, Condvar)>);

impl Waker {
    /// A waker nobody waits on yet.
    pub fn new() -> Waker {
        Waker::default()
    }

    /// Wakes the loop.
    pub fn wake(&self) {
        let (woken, condvar) = &*self.0;
        if let Ok(mut woken) = woken.lock() {
            *woken = true;
            condvar.notify_all();
        }
    }

    /// Sleeps `nap` or until woken.
    pub fn sleep(&self, nap: Duration) {
        let (woken, condvar) = &*self.0;
        let Ok(guard) = woken.lock() else {
            std::thread::sleep(nap);
            return;
        };
        if let Ok((mut guard, _)) = condvar.wait_timeout_while(guard, nap, |woken| !*woken) {
            *guard = false;
        }
    }
}

/// The sources `config` turns on: the collectors when `COLLECTOR_PLUGINS` is set, the serial link
/// when `SERIAL_DEVICES` is.
pub fn build(
    config: &Config,
    waker: &Waker,
) -> Result<Vec<Box<dyn Source>>, crate::collect::PluginConfigError> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let i2c = &crate::config::vars::RPI_I2C_SENSORS;
    let i2c_listed = i2c.list(&config.plugin_vars).map_or(true, |sensors| !sensors.is_empty());
    if i2c_listed && !config.collector_plugins.iter().any(|p| p == "rpi") {
        log::warn!("{} lists sensors but COLLECTOR_PLUGINS does not list rpi: none is read", i2c.name);
    }
    if !config.collector_plugins.is_empty() {
        let every = config.capture_interval.max(Duration::from_secs(1));
        let runner = crate::collect::Runner::new(crate::collect::build(config)?, every);
        log::info!("plugins={:?} every={every:?}: collectors started", runner.names());
        sources.push(Box::new(runner));
    }
    let serial = &config.serial;
    if !serial.devices.is_empty() {
        let names: Vec<String> = serial.devices.iter().map(|d| d.name()).collect();
        log::info!("devices={names:?} baud={}: serial link started", serial.baud);
        let source = crate::serial::source::SerialSource::start(
            &serial.devices,
            serial.baud,
            config.wrap.clone(),
            waker.clone(),
        );
        sources.push(Box::new(source));
    }
    Ok(sources)
}

/// The instant of the next multiple of `every` in wall-clock time (as the original's scheduler).
pub fn next_boundary(every: Duration) -> Instant {
    let now = crate::agent::wall_clock();
    let period = every.as_secs_f64();
    let next = ((now / period).floor() + 1.0) * period;
    Instant::now() + Duration::from_secs_f64((next - now).max(0.0))
}
