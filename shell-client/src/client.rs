//! The client: the calls the app makes, and the handle to the writer thread.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chouette_core::{Member, MetricType};

use crate::aggregate::Input;
use crate::buffer::{Kind, StatsSnapshot};
use crate::config::{ClientConfig, ConfigError};
use crate::render::{now_secs, Number, RawValue};
use crate::shared::{shared, Shared};
use crate::worker;

/// How long dropping the last [`Client`] clone waits for the buffer to be written.
pub const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(2);

/// What [`Client::shutdown`] could not do in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Records still unsent when the timeout passed; they are counted as dropped.
    #[error("{unsent} records were not written to Redis before the shutdown timeout")]
    Timeout {
        /// How many.
        unsent: u64,
    },
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = shutdown(&self.shared, &self.thread, DEFAULT_SHUTDOWN);
    }
}

/// A Chouette client: cheap to clone (clones share one buffer and one writer thread).
///
/// Every call renders its record on the calling thread, appends it to a bounded buffer and
/// returns; a background thread (`chouette-client`) writes batches to Redis. Dropping the last
/// clone flushes for up to [`DEFAULT_SHUTDOWN`]; [`Client::shutdown`] takes a timeout.
#[derive(Debug, Clone)]
pub struct Client(Arc<Inner>);

/// Metric calls stamped with an explicit timestamp: `client.at(ts).count("x", 1, &[])`.
#[derive(Debug, Clone, Copy)]
pub struct At<'c> {
    client: &'c Client,
    timestamp: f64,
}

/// Seconds or milliseconds, for timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Float seconds (the original's default).
    Seconds,
    /// Integer milliseconds, `int(round(1000 * duration))` as the original (`use_ms=True`).
    Milliseconds,
}

impl TimeUnit {
    fn value(self, elapsed: Duration) -> Number {
        match self {
            TimeUnit::Seconds => Number::Float(elapsed.as_secs_f64()),
            TimeUnit::Milliseconds => Number::Int((elapsed.as_secs_f64() * 1000.0).round_ties_even() as i64),
        }
    }
}

/// A running timer: records a histogram of the elapsed time when dropped (or [`Timed::stop`]).
/// Each guard has its own start, so timers nest and run on many threads at once.
#[derive(Debug)]
#[must_use = "the timer records when dropped: bind it (`let _t = …`), not `_`"]
pub struct Timed<'a> {
    client: &'a Client,
    name: &'a str,
    tags: &'a [(&'a str, &'a str)],
    unit: TimeUnit,
    start: Instant,
    done: bool,
}

impl Timed<'_> {
    /// Records now and returns the elapsed time.
    pub fn stop(mut self) -> Duration {
        self.finish()
    }

    fn finish(&mut self) -> Duration {
        let elapsed = self.start.elapsed();
        if !self.done {
            self.done = true;
            self.client.emit(
                None,
                MetricType::Histogram,
                self.name,
                RawValue::Number(self.unit.value(elapsed)),
                self.tags,
            );
        }
        elapsed
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

macro_rules! metric_methods {
    ($ts:ident => $stamp:expr) => {
        /// Records a `count`: `value` events.
        #[inline]
        pub fn count(&self, name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
            let $ts = self;
            $ts.client().emit($stamp, MetricType::Count, name, RawValue::Number(value.into()), tags)
        }

        /// Records a `count` of `value` (the original's `increment`).
        #[inline]
        pub fn increment(&self, name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
            self.count(name, value, tags)
        }

        /// Records a `count` of `-value` (the original's `decrement`).
        #[inline]
        pub fn decrement(&self, name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
            self.count(name, -value.into(), tags)
        }

        /// Records a `gauge`: the current level.
        #[inline]
        pub fn gauge(&self, name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
            let $ts = self;
            $ts.client().emit($stamp, MetricType::Gauge, name, RawValue::Number(value.into()), tags)
        }

        /// Records a `rate` sample (the agent divides the interval's sum by the interval).
        #[inline]
        pub fn rate(&self, name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
            let $ts = self;
            $ts.client().emit($stamp, MetricType::Rate, name, RawValue::Number(value.into()), tags)
        }

        /// Records a `histogram` sample.
        #[inline]
        pub fn histogram(&self, name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
            let $ts = self;
            $ts.client().emit($stamp, MetricType::Histogram, name, RawValue::Number(value.into()), tags)
        }

        /// Records a `set`: its members, strings or numbers (`Member::Str`, `Member::Num`).
        #[inline]
        pub fn set(&self, name: &str, members: &[Member<'_>], tags: &[(&str, &str)]) {
            let $ts = self;
            $ts.client().emit($stamp, MetricType::Set, name, RawValue::Members(members), tags)
        }
    };
}

impl<'c> At<'c> {
    fn client(&self) -> &'c Client {
        self.client
    }

    metric_methods!(s => Some(s.timestamp));
}

impl Client {
    /// Starts a client (and its writer thread). The connection is made lazily by the thread, so
    /// this never waits for Redis.
    pub fn new(config: ClientConfig) -> Result<Client, ConfigError> {
        let url = config.redis_url.as_str();
        let redis = if config.redis_tls.is_empty() {
            redis::Client::open(url)
        } else {
            redis::Client::build_with_tls(url, config.redis_tls.certificates()?)
        }
        .map_err(|source| ConfigError::RedisUrl { url: redact(&config.redis_url), source })?;
        let shared = Arc::new(shared(config, false));
        let worker_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(worker::THREAD_NAME.into())
            .spawn(move || worker::run(&worker_shared, redis))
            .map_err(ConfigError::Thread)?;
        Ok(Client(Arc::new(Inner { shared, thread: Mutex::new(Some(thread)) })))
    }

    /// A client from the environment (see [`ClientConfig::from_env`]).
    pub fn from_env() -> Result<Client, ConfigError> {
        Client::new(ClientConfig::from_env()?)
    }

    /// A client without a writer: every record is dropped and counted. What [`crate::global`]
    /// falls back to when its configuration cannot work.
    pub fn inert(config: ClientConfig) -> Client {
        Client(Arc::new(Inner { shared: Arc::new(shared(config, true)), thread: Mutex::new(None) }))
    }

    fn client(&self) -> &Client {
        self
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.0.shared
    }

    metric_methods!(_s => None);

    /// The same calls, stamped `timestamp` (float Unix seconds) instead of now.
    pub fn at(&self, timestamp: f64) -> At<'_> {
        At { client: self, timestamp }
    }

    /// A timer in float seconds: records a `histogram` when the guard drops.
    pub fn timed<'a>(&'a self, name: &'a str, tags: &'a [(&'a str, &'a str)]) -> Timed<'a> {
        self.timed_in(name, tags, TimeUnit::Seconds)
    }

    /// A timer in `unit`: records a `histogram` when the guard drops.
    pub fn timed_in<'a>(
        &'a self,
        name: &'a str,
        tags: &'a [(&'a str, &'a str)],
        unit: TimeUnit,
    ) -> Timed<'a> {
        Timed { client: self, name, tags, unit, start: Instant::now(), done: false }
    }

    /// Runs `work`, records its duration in seconds as a `histogram`, returns its result.
    pub fn time<R>(&self, name: &str, tags: &[(&str, &str)], work: impl FnOnce() -> R) -> R {
        self.time_in(name, tags, TimeUnit::Seconds, work)
    }

    /// Runs `work`, records its duration in `unit` as a `histogram`, returns its result.
    pub fn time_in<R>(
        &self,
        name: &str,
        tags: &[(&str, &str)],
        unit: TimeUnit,
        work: impl FnOnce() -> R,
    ) -> R {
        let _t = self.timed_in(name, tags, unit);
        work()
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        let shared = self.shared();
        StatsSnapshot { peak_buffered_bytes: shared.buffer.peak_bytes() as u64, ..shared.stats.snapshot() }
    }

    /// Writes what is buffered (aggregates included) and stops the writer thread, waiting at
    /// most `timeout`. Later calls are dropped and counted.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        shutdown(&self.0.shared, &self.0.thread, timeout)
    }

    /// The single entry point of every metric call.
    #[inline]
    pub(crate) fn emit(
        &self,
        ts: Option<f64>,
        kind: MetricType,
        name: &str,
        value: RawValue<'_>,
        tags: &[(&str, &str)],
    ) {
        let shared = self.shared();
        if let RawValue::Number(n) = value {
            if !n.is_finite() {
                shared.stats.add_dropped(1);
                return;
            }
        }
        if let Some(tables) = &shared.aggregates {
            let ts = ts.unwrap_or_else(crate::aggregate::now_whole_secs);
            let input = match value {
                RawValue::Number(n) => Input::Number(n),
                RawValue::Members(m) => Input::Members(m),
                RawValue::MemberTexts(_) | RawValue::Samples(_) => return,
            };
            let name = shared.config.sanitize.name(name);
            if !tables.record(&shared.closed, ts, kind, &name, tags, input) {
                shared.stats.add_dropped(1);
            }
            return;
        }
        let ts = ts.unwrap_or_else(now_secs);
        // A few copies on the app's thread; the JSON is rendered by the writer thread.
        let len = crate::compact::encoded_len(name, value, tags);
        let pushed = shared.buffer.try_push(&shared.closed, Kind::Compact, ts, len, |out| {
            crate::compact::encode(out, len, kind, name, value, tags)
        });
        if let Err(why) = pushed {
            shared.stats.add_refused(why);
        }
    }
}

fn shutdown(
    shared: &Shared,
    thread: &Mutex<Option<JoinHandle<()>>>,
    timeout: Duration,
) -> Result<(), ShutdownError> {
    let Some(handle) = thread.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        // No writer (inert, or already shut down): whatever is still buffered is lost.
        let mut batch = shared.buffer.lock();
        let unsent = batch.app_records(0..batch.len());
        batch.clear();
        shared.stats.add_dropped(unsent);
        return if unsent == 0 { Ok(()) } else { Err(ShutdownError::Timeout { unsent }) };
    };
    *shared.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + timeout);
    shared.stop.store(true, Ordering::SeqCst);
    {
        let _guard = shared.buffer.lock();
        shared.buffer.wake.notify_all();
    }
    let mut done = shared.done.lock().unwrap_or_else(|p| p.into_inner());
    let until = Instant::now() + timeout + Duration::from_millis(500);
    while done.is_none() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        done = shared.done_cv.wait_timeout(done, left).unwrap_or_else(|p| p.into_inner()).0;
    }
    let unsent = *done;
    drop(done);
    match unsent {
        Some(0) => {
            let _ = handle.join();
            Ok(())
        }
        Some(unsent) => {
            let _ = handle.join();
            Err(ShutdownError::Timeout { unsent })
        }
        // The thread is stuck in a Redis call beyond its timeout: leave it, it exits on its own.
        None => Err(ShutdownError::Timeout { unsent: shared.buffer.lock().len() as u64 }),
    }
}

/// The URL with any password replaced, for error messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}
