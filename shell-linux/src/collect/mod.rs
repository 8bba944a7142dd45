//! Collectors: the original's plugins (`host`, `tegrastats`, `docker`, `k8s`, `dramatiq`) and `rpi`.
//!
//! Each configured plugin is a [`Collector`]. The [`Runner`] runs every collector on its own
//! worker thread fed by a channel, so a collector that hangs cannot stall the agent: at each
//! capture tick the runner asks every idle worker for a capture and waits at most each
//! collector's timeout. A collector still busy from an earlier tick is skipped (and counted) until
//! it answers; it is never restarted in a loop. Failures are logged and counted per plugin
//! ([`Runner::errors`], self-metric `chouette.collector.errors` with tag `plugin:<name>`), and never
//! stop the other collectors or the agent.
//!
//! Points become wrapped `gauge` records with no interval, sorted tags and score = timestamp,
//! handed to the run loop's [`Sink`] as finished points: one atomic write per tick to every
//! enabled output's outbox (the original's collector wrote the one wrapped queue). The runner is
//! a [`Source`].
//!
//! Unlike the original (compat §7 item 24), **zero values are sent**: an idle CPU, an empty
//! queue, a full disk or 0 °C are zeros, not gaps. One exception: `Chouette.tegrastats.ram.used` and
//! `.ram.free` come from `chouette_boards`, which keeps the original's rule (a 0 is not sent).

pub mod docker;
pub mod dramatiq;
pub mod host;
pub mod json;
pub mod k8s;
pub mod rpi;
pub mod tegrastats;

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chouette_core::metric::{MetricName, OutputType, Tag, Timestamp, Wrapped};
use chouette_core::wire::wrapped::encode_wrapped;

use crate::config::{Config, StoreConfig};
use crate::pipeline::IdGenerator;
use crate::source::{Sink, Source};
use crate::store::{NewRecord, StoreError};

/// Default longest time one capture may take before it is reported as timed out (capped at the
/// capture interval).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the self-metric counting failed or timed-out captures per plugin.
pub const ERRORS_METRIC: &str = "chouette.collector.errors";

/// One collected value: a gauge named `name` with `tags` (`key`, `value`) at the capture time.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The metric name, e.g. `Chouette.host.la`.
    pub name: String,
    /// Tags as (key, value) pairs; sorted as `key:value` strings when written.
    pub tags: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Point {
    /// An untagged point.
    pub fn new(name: impl Into<String>, value: f64) -> Point {
        Point { name: name.into(), tags: Vec::new(), value }
    }

    /// Adds a tag.
    pub fn tag(mut self, key: &str, value: impl Into<String>) -> Point {
        self.tags.push((key.to_owned(), value.into()));
        self
    }
}

/// Why one capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A file or device could not be read.
    #[error("{context}: {source}")]
    Io {
        /// What was being read (a path, a socket).
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Input was read but not understood.
    #[error("{context}: cannot parse: {detail}")]
    Parse {
        /// Where the input came from.
        context: String,
        /// What was wrong.
        detail: String,
    },
    /// A remote endpoint (Docker, kubelet, Redis) failed or answered an error.
    #[error("{context}: {detail}")]
    Remote {
        /// Which endpoint.
        context: String,
        /// What happened (status, transport error).
        detail: String,
    },
    /// The source is not available yet or any more (no tegrastats line yet, say).
    #[error("{0}")]
    Unavailable(String),
}

impl CollectError {
    /// An [`CollectError::Io`] with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> CollectError {
        CollectError::Io { context: context.into(), source }
    }

    /// A [`CollectError::Parse`] with its context.
    pub fn parse(context: impl Into<String>, detail: impl Into<String>) -> CollectError {
        CollectError::Parse { context: context.into(), detail: detail.into() }
    }

    /// A [`CollectError::Remote`] with its context.
    pub fn remote(context: impl Into<String>, detail: impl ToString) -> CollectError {
        CollectError::Remote { context: context.into(), detail: detail.to_string() }
    }
}

/// A plugin variable that cannot be used; names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?}: {expected}")]
pub struct PluginConfigError {
    /// The variable, e.g. `K8S_CERT_PATH`.
    pub variable: String,
    /// Its value as given (empty when missing).
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl From<crate::config::vars::VarError> for PluginConfigError {
    fn from(e: crate::config::vars::VarError) -> PluginConfigError {
        let value = if e.secret {
            "(not shown)".to_owned()
        } else {
            crate::config::shown_plugin_value(&e.name, &e.value)
        };
        PluginConfigError { variable: e.name, value, expected: e.expected }
    }
}

impl PluginConfigError {
    /// An error for `variable`.
    pub fn new(variable: &str, value: &str, expected: impl Into<String>) -> PluginConfigError {
        PluginConfigError {
            variable: variable.to_owned(),
            value: value.to_owned(),
            expected: expected.into(),
        }
    }
}

/// One source of points, called at each capture tick on its own worker thread.
pub trait Collector: Send {
    /// The plugin name (`host`, `docker`, ...), used in logs and the `plugin:` tag.
    fn name(&self) -> &str;

    /// Captures the current values. `now` is the capture time in Unix seconds.
    fn collect(&mut self, now: f64) -> Result<Vec<Point>, CollectError>;

    /// The longest one capture may take.
    fn timeout(&self) -> Duration {
        DEFAULT_TIMEOUT
    }
}

/// The plugin variables: `Config::plugin_vars` (canonical upper-case names).
pub type PluginVars = BTreeMap<String, String>;

/// Builds the collectors named in `config.collector_plugins`, from `config.plugin_vars`: each
/// plugin parses its own typed `Settings` from its entries of the table of variables
/// ([`crate::config::vars`]), which give the defaults and the errors' expected text.
pub fn build(config: &Config) -> Result<Vec<Box<dyn Collector>>, PluginConfigError> {
    let vars = &config.plugin_vars;
    let mut out: Vec<Box<dyn Collector>> = Vec::new();
    for name in &config.collector_plugins {
        let collector: Box<dyn Collector> = match name.as_str() {
            "host" => Box::new(host::Host::from_vars(vars)?),
            "tegrastats" => Box::new(tegrastats::Tegrastats::from_vars(vars)?),
            "docker" => Box::new(docker::Docker::from_vars(vars)?),
            "k8s" => Box::new(k8s::K8s::from_vars(vars)?),
            "rpi" => Box::new(rpi::Rpi::from_vars(vars)?),
            "dramatiq" => {
                let store = match &config.store {
                    StoreConfig::Redis { url, .. } => Some((url.as_str(), &config.redis_tls)),
                    StoreConfig::Embedded { .. } => None,
                };
                let settings = dramatiq::Settings::from_vars(vars, store)?;
                Box::new(dramatiq::Dramatiq::with_tls(&settings.url, &settings.tls)?)
            }
            other => {
                return Err(PluginConfigError::new("COLLECTOR_PLUGINS", other, "a known plugin name"));
            }
        };
        out.push(collector);
    }
    Ok(out)
}

/// What one capture tick produced.
#[derive(Debug, Default)]
pub struct Capture {
    /// Every point of the collectors that answered in time, stamped with the tick's time.
    pub points: Vec<Point>,
    /// Per plugin that failed this tick, why.
    pub failures: Vec<(String, String)>,
}

struct Worker {
    name: String,
    timeout: Duration,
    requests: Option<Sender<(u64, f64)>>,
    thread: Option<JoinHandle<()>>,
    /// The tick this worker is still busy with, if it has not answered.
    busy_with: Option<u64>,
}

type Answer = (usize, u64, Result<Vec<Point>, CollectError>);

/// Runs collectors on worker threads with per-collector timeouts; see the module docs.
pub struct Runner {
    workers: Vec<Worker>,
    answers: Receiver<Answer>,
    tick: u64,
    errors: BTreeMap<String, u64>,
    ids: IdGenerator,
    cap: Duration,
    /// The next capture tick (a [`Source`] turn).
    next: Instant,
}

impl Runner {
    /// Starts one worker thread per collector. Each capture waits at most
    /// `min(collector.timeout(), cap)`.
    pub fn new(collectors: Vec<Box<dyn Collector>>, cap: Duration) -> Runner {
        let (answer_tx, answers) = mpsc::channel::<Answer>();
        let mut workers = Vec::new();
        for (index, mut collector) in collectors.into_iter().enumerate() {
            let name = collector.name().to_owned();
            let timeout = collector.timeout().min(cap);
            let (requests, inbox) = mpsc::channel::<(u64, f64)>();
            let answer_tx = answer_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("collect-{name}"))
                .spawn(move || {
                    while let Ok((tick, now)) = inbox.recv() {
                        let result = collector.collect(now);
                        if answer_tx.send((index, tick, result)).is_err() {
                            break;
                        }
                    }
                })
                .ok();
            if thread.is_none() {
                log::error!("plugin={name}: cannot start its worker thread; it will not collect");
            }
            workers.push(Worker { name, timeout, requests: Some(requests), thread, busy_with: None });
        }
        Runner {
            workers,
            answers,
            tick: 0,
            errors: BTreeMap::new(),
            ids: crate::pipeline::id_generator(),
            cap,
            next: Instant::now(),
        }
    }

    /// The names of the collectors, in configuration order.
    pub fn names(&self) -> Vec<&str> {
        self.workers.iter().map(|w| w.name.as_str()).collect()
    }

    /// Failed or timed-out captures so far, per plugin.
    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }

    fn fail(&mut self, index: usize, why: String, capture: &mut Capture) {
        let name = self.workers[index].name.clone();
        log::warn!("plugin={name}: {why}; the other collectors go on");
        *self.errors.entry(name.clone()).or_default() += 1;
        capture.failures.push((name, why));
    }

    /// Runs one capture on every idle collector at `now` (Unix seconds); waits for their answers
    /// at most their timeouts.
    pub fn capture(&mut self, now: f64) -> Capture {
        self.tick += 1;
        let tick = self.tick;
        let start = Instant::now();
        let mut capture = Capture::default();
        let mut waiting = 0usize;
        // Answers that arrived late, after their tick's wait ended: free the worker.
        while let Ok((index, old, result)) = self.answers.try_recv() {
            self.late(index, old, result);
        }
        for index in 0..self.workers.len() {
            let worker = &mut self.workers[index];
            if let Some(old) = worker.busy_with {
                let why = format!("still busy with the capture of tick {old} (hung?): skipped");
                self.fail(index, why, &mut capture);
                continue;
            }
            let sent = worker.requests.as_ref().is_some_and(|tx| tx.send((tick, now)).is_ok());
            if sent {
                worker.busy_with = Some(tick);
                waiting += 1;
            } else {
                self.fail(index, "its worker thread has stopped".to_owned(), &mut capture);
            }
        }
        while waiting > 0 {
            // Wait for the latest deadline among the collectors still running this tick.
            let left = self
                .workers
                .iter()
                .filter(|w| w.busy_with == Some(tick))
                .map(|w| w.timeout.saturating_sub(start.elapsed()))
                .max()
                .unwrap_or_default();
            if left.is_zero() {
                break;
            }
            match self.answers.recv_timeout(left) {
                Ok((index, answered, result)) if answered == tick => {
                    waiting -= 1;
                    self.workers[index].busy_with = None;
                    if start.elapsed() > self.workers[index].timeout {
                        let why = format!("timed out ({:?}): capture discarded", self.workers[index].timeout);
                        self.fail(index, why, &mut capture);
                        continue;
                    }
                    match result {
                        Ok(points) => capture.points.extend(points),
                        Err(error) => self.fail(index, format!("capture failed: {error}"), &mut capture),
                    }
                }
                Ok((index, old, result)) => self.late(index, old, result),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        for index in 0..self.workers.len() {
            if self.workers[index].busy_with == Some(tick) {
                let why = format!("timed out after {:?}: skipped this tick", self.workers[index].timeout);
                self.fail(index, why, &mut capture);
            }
        }
        capture
    }

    fn late(&mut self, index: usize, old: u64, result: Result<Vec<Point>, CollectError>) {
        if let Some(worker) = self.workers.get_mut(index) {
            if worker.busy_with == Some(old) {
                worker.busy_with = None;
            }
            log::info!(
                "plugin={} tick={old} ok={}: a late capture finished; its points are discarded",
                worker.name,
                result.is_ok()
            );
        }
    }

    /// One capture tick: captures, encodes the points (plus the error self-metric when
    /// `self_metrics`) as wrapped gauges stamped `now`, and hands them to `sink` as finished
    /// points (every enabled outbox, one atomic write). Returns how many records were stored.
    pub fn tick(&mut self, sink: &mut Sink<'_>, now: f64) -> Result<usize, StoreError> {
        let mut capture = self.capture(now);
        if sink.self_metrics() {
            for (plugin, count) in &self.errors {
                capture.points.push(Point::new(ERRORS_METRIC, *count as f64).tag("plugin", plugin.clone()));
            }
        }
        let records = encode_points(&capture.points, now, &mut self.ids);
        sink.points(&records)?;
        Ok(records.len())
    }

    /// The cap given to [`Runner::new`].
    pub fn cap(&self) -> Duration {
        self.cap
    }
}

/// The collectors are a source of finished points, one capture every `cap` (CAPTURE_INTERVAL),
/// on wall-clock boundaries.
impl Source for Runner {
    fn name(&self) -> &str {
        "collectors"
    }

    fn next_due(&self) -> Instant {
        self.next
    }

    fn run(&mut self, now: f64, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        self.next = crate::source::next_boundary(self.cap);
        self.tick(sink, now).map(drop)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            // Closing the channel ends an idle worker; a hung one is left detached.
            worker.requests = None;
            if worker.busy_with.is_none() {
                if let Some(thread) = worker.thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

/// Encodes points as wrapped gauge records (no interval, tags sorted as `key:value` strings,
/// score = `now`). Non-finite values are skipped (nothing sendable).
pub fn encode_points(points: &[Point], now: f64, ids: &mut IdGenerator) -> Vec<NewRecord> {
    let mut out = Vec::with_capacity(points.len());
    let mut buf = vec![0u8; 512];
    for point in points {
        let mut joined: Vec<(String, usize)> =
            point.tags.iter().enumerate().map(|(i, (k, v))| (format!("{k}:{v}"), i)).collect();
        joined.sort();
        joined.dedup_by(|a, b| a.0 == b.0);
        let tags: Vec<Tag<'_>> = joined
            .iter()
            .map(|(_, i)| {
                let (k, v) = &point.tags[*i];
                Tag::new(k, v)
            })
            .collect();
        let wrapped = Wrapped {
            name: MetricName::plain(&point.name),
            kind: OutputType::Gauge,
            tags: &tags,
            timestamp: Timestamp::from_secs_f64(now),
            value: point.value,
            interval: None,
        };
        let len = loop {
            match encode_wrapped(&wrapped, &mut buf) {
                Ok(len) => break Some(len),
                Err(chouette_core::wire::EncodeError::BufferTooSmall { required }) => buf.resize(required, 0),
                Err(_) => break None,
            }
        };
        if let Some(len) = len {
            out.push(NewRecord { id: ids.next_id().to_vec(), score: now, value: buf[..len].to_vec() });
        }
    }
    out
}

/// The root under which `/proc` and `/sys` are read: `CHOUETTE_PROC_ROOT`.
pub(crate) fn root(vars: &PluginVars) -> Result<std::path::PathBuf, PluginConfigError> {
    let var = &crate::config::vars::CHOUETTE_PROC_ROOT;
    var.path(vars)?.ok_or_else(|| var.missing("").into())
}

/// `root` joined with an absolute path such as `/proc/stat`.
pub(crate) fn under(root: &std::path::Path, absolute: &str) -> std::path::PathBuf {
    root.join(absolute.trim_start_matches('/'))
}

#[cfg(test)]
mod tests;
