//! The DogStatsD listener: apps using any Datadog client library report through the agent.
//!
//! ```text
//! UDP / Unix datagram ─► a receive thread per socket (socket.rs: batched reads, kernel drops)
//!                        └─► memory.rs: parse (the core's wire::dogstatsd) and aggregate per bucket
//! aggregation step ─────► merges each closed bucket into the apps' records of that bucket
//!                        (pipeline.rs, Aggregator::merge): one point per series, one commit
//! the run loop ─────────► Listener::run: status fields and self-metrics every RELEASE_INTERVAL
//! ```
//!
//! The receive threads never wait on the store: they take the memory's lock for one datagram at
//! a time, and the step holds it only while it merges a closed bucket.

pub mod events;
pub mod memory;
pub mod socket;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chouette_core::metric::{MetricName, OutputType, Tag, Timestamp, Wrapped};
use chouette_core::wire::raw::Number;
use chouette_core::wire::wrapped::encode_wrapped;
use chouette_core::wire::EncodeError;
use chouette_core::MetricType;

use crate::config::vars::{self, VarError};
use crate::limits::DOGSTATSD_BATCH;
use crate::pipeline::{lock, raw_record, IdGenerator};
use crate::source::{Sink, Source};
use crate::store::{NewRecord, Queue, StoreError};
use memory::{Event, Memory, MemoryStats, Timestamped};
use socket::{Endpoint, Receiver, SocketOptions, SocketStats};

/// How long a receive thread waits for datagrams before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Longest a receive thread spends reading what the kernel queued when the agent stops.
const DRAIN_BUDGET: Duration = Duration::from_millis(500);
/// How often a receive thread publishes its socket's counters (one system call each).
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Self-metric names' prefix.
pub const METRIC_PREFIX: &str = "chouette.dogstatsd.";

/// The listener's configuration (`DOGSTATSD_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// UDP address, `None` when `DOGSTATSD_PORT=0`.
    pub udp: Option<SocketAddr>,
    /// Unix datagram socket, if any.
    pub socket: Option<PathBuf>,
    /// The socket file's mode.
    pub socket_mode: u32,
    /// Largest datagram.
    pub max_datagram: usize,
    /// Receive buffer asked for.
    pub recv_buffer: usize,
    /// Most contexts per interval.
    pub max_contexts: usize,
}

impl Settings {
    /// Reads the `DOGSTATSD_*` variables.
    pub fn from_vars(src: &dyn vars::Source) -> Result<Settings, VarError> {
        let port = match vars::DOGSTATSD_PORT.read(src) {
            Some(raw) => raw
                .text
                .parse::<u16>()
                .map_err(|_| vars::DOGSTATSD_PORT.error(raw, "expected a UDP port, 0 to 65535 (0: off)"))?,
            None => 0,
        };
        let ip = if vars::DOGSTATSD_NON_LOCAL_TRAFFIC.boolean(src)? {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let socket_mode = match vars::DOGSTATSD_SOCKET_MODE.read(src) {
            Some(raw) => {
                u32::from_str_radix(raw.text, 8).ok().filter(|mode| *mode <= 0o777).ok_or_else(|| {
                    vars::DOGSTATSD_SOCKET_MODE.error(raw, "expected an octal mode, 0000 to 0777")
                })?
            }
            None => 0o622,
        };
        Ok(Settings {
            udp: (port != 0).then_some(SocketAddr::new(ip, port)),
            socket: vars::DOGSTATSD_SOCKET.path(src)?,
            socket_mode,
            max_datagram: vars::DOGSTATSD_BUFFER_SIZE.count(src)? as usize,
            recv_buffer: vars::DOGSTATSD_SO_RCVBUF.count(src)? as usize,
            max_contexts: vars::DOGSTATSD_MAX_CONTEXTS.count(src)? as usize,
        })
    }

    /// Whether any socket is configured.
    pub fn enabled(&self) -> bool {
        self.udp.is_some() || self.socket.is_some()
    }

    fn endpoints(&self) -> Vec<(&'static str, Endpoint)> {
        let mut out = Vec::new();
        if let Some(addr) = self.udp {
            out.push(("udp", Endpoint::Udp(addr)));
        }
        if let Some(path) = &self.socket {
            out.push(("uds", Endpoint::Unix { path: path.clone(), mode: self.socket_mode }));
        }
        out
    }
}

/// One socket's thread and counters.
struct Socket {
    name: &'static str,
    stats: Arc<Mutex<SocketStats>>,
    recv_buffer: usize,
    thread: Option<JoinHandle<()>>,
}

/// The listener, a [`Source`]: its threads fill the memory the aggregation step merges; its
/// turns write status fields and self-metrics.
pub struct Listener {
    memory: Arc<Mutex<Memory>>,
    sockets: Vec<Socket>,
    stop: Arc<AtomicBool>,
    next_report: Instant,
    reported: (MemoryStats, Vec<SocketStats>),
    ids: IdGenerator,
    /// The UDP port bound.
    udp_port: Option<u16>,
    /// `|T` points taken from the memory whose write failed: written first next turn.
    unsent: Vec<Timestamped>,
    /// Events and service checks taken from the memory whose write failed.
    unsent_events: Vec<Event>,
    /// The interval given to `|T` counts.
    interval_secs: u32,
    /// How often the status fields and self-metrics are written (`RELEASE_INTERVAL`).
    report_every: Duration,
    /// When the last report was written, with each socket's datagrams and the samples then
    /// (for the per-second rates).
    last_rates: Option<(Instant, Vec<u64>, u64)>,
    /// The rates of the last report: each socket's datagrams/s, and samples/s.
    rates: (Vec<f64>, f64),
}

impl Listener {
    /// Binds the configured sockets and starts a receive thread for each. A socket that cannot
    /// be bound is an ERROR line; the listener runs with the others.
    /// Status and self-metrics are written every `report_every` (`RELEASE_INTERVAL`), `|T`
    /// counts get `interval_secs` (`AGGREGATE_INTERVAL`).
    pub fn start(
        settings: &Settings,
        memory: Arc<Mutex<Memory>>,
        interval_secs: u32,
        report_every: Duration,
    ) -> Listener {
        let report_every = report_every.max(Duration::from_secs(1));
        let stop = Arc::new(AtomicBool::new(false));
        let options = SocketOptions {
            max_datagram: settings.max_datagram,
            recv_buffer: settings.recv_buffer,
            batch: DOGSTATSD_BATCH,
        };
        let mut sockets = Vec::new();
        let mut udp_port = None;
        for (name, endpoint) in settings.endpoints() {
            let receiver = match Receiver::bind(&endpoint, &options) {
                Ok(receiver) => receiver,
                Err(error) => {
                    log::error!(
                        "socket={name} {error}: DogStatsD lines sent there are lost until the agent restarts"
                    );
                    continue;
                }
            };
            let recv_buffer = receiver.recv_buffer();
            if name == "udp" {
                udp_port = receiver.local_port();
            }
            log::info!(
                "socket={} recv_buffer={recv_buffer} max_datagram={} max_contexts={}: DogStatsD listening",
                receiver.describe(),
                settings.max_datagram,
                settings.max_contexts
            );
            if settings.recv_buffer > 0 && recv_buffer > 0 && recv_buffer < settings.recv_buffer {
                log::warn!(
                    "socket={name} asked={} got={recv_buffer}: the kernel capped the receive buffer (raise net.core.rmem_max or grant CAP_NET_ADMIN); bursts may be dropped",
                    settings.recv_buffer
                );
            }
            let stats = Arc::new(Mutex::new(SocketStats::default()));
            let thread =
                spawn_receiver(name, receiver, Arc::clone(&memory), Arc::clone(&stats), Arc::clone(&stop));
            sockets.push(Socket { name, stats, recv_buffer, thread });
        }
        let reported = (MemoryStats::default(), vec![SocketStats::default(); sockets.len()]);
        Listener {
            memory,
            sockets,
            stop,
            next_report: Instant::now() + report_every,
            reported,
            ids: crate::pipeline::id_generator(),
            udp_port,
            unsent: Vec::new(),
            unsent_events: Vec::new(),
            interval_secs,
            report_every,
            last_rates: None,
            rates: (Vec::new(), 0.0),
        }
    }

    /// The UDP port bound, if UDP is on.
    pub fn udp_port(&self) -> Option<u16> {
        self.udp_port
    }

    /// The status fields (see `docs/dogstatsd.md`).
    pub fn status_fields(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for (i, socket) in self.sockets.iter().enumerate() {
            let stats = *lock_stats(&socket.stats);
            let prefix = format!("dogstatsd.{}", socket.name);
            fields.push((format!("{prefix}.datagrams"), stats.datagrams.to_string()));
            fields.push((format!("{prefix}.bytes"), stats.bytes.to_string()));
            fields.push((format!("{prefix}.kernel_drops"), stats.kernel_drops.to_string()));
            fields.push((format!("{prefix}.truncated"), stats.truncated.to_string()));
            fields.push((format!("{prefix}.recv_buffer"), socket.recv_buffer.to_string()));
            let rate = self.rates.0.get(i).copied().unwrap_or(0.0);
            fields.push((format!("{prefix}.datagrams_per_s"), format!("{rate:.1}")));
        }
        fields.push(("dogstatsd.samples_per_s".into(), format!("{:.1}", self.rates.1)));
        let memory = lock(&self.memory);
        let stats = memory.stats();
        fields.push(("dogstatsd.lines".into(), stats.lines.to_string()));
        fields.push(("dogstatsd.metric_lines".into(), stats.metric_lines.to_string()));
        fields.push(("dogstatsd.samples".into(), stats.samples.to_string()));
        fields.push(("dogstatsd.events".into(), stats.events.to_string()));
        fields.push(("dogstatsd.service_checks".into(), stats.service_checks.to_string()));
        fields.push(("dogstatsd.late".into(), stats.late.to_string()));
        fields.push(("dogstatsd.deferred".into(), stats.deferred.to_string()));
        fields.push(("dogstatsd.timestamped".into(), stats.timestamped.to_string()));
        fields.push(("dogstatsd.contexts".into(), stats.contexts.to_string()));
        fields.push(("dogstatsd.held_contexts".into(), memory.contexts().to_string()));
        for (reason, n) in &stats.refused {
            fields.push((format!("dogstatsd.refused.{reason}"), n.to_string()));
        }
        for (what, n) in &stats.ignored {
            fields.push((format!("dogstatsd.ignored.{what}"), n.to_string()));
        }
        if let Some(line) = &stats.last_bad_line {
            fields.push(("dogstatsd.last_bad_line".into(), line.clone()));
        }
        let top: Vec<String> = memory.top().iter().map(|(context, n)| format!("{context} {n}")).collect();
        fields.push(("dogstatsd.top".into(), top.join("; ")));
        fields
    }

    /// Self-metrics since the last report (deltas), as raw records at `now`.
    fn self_metrics(&mut self, now: f64) -> Vec<NewRecord> {
        let mut out = Vec::new();
        let ids = &mut self.ids;
        let mut push = |field: &str, delta: u64, tags: &[(&str, &str)]| {
            if delta == 0 {
                return;
            }
            let name = format!("{METRIC_PREFIX}{field}");
            if let Some(value) = raw_record(&name, MetricType::Count, Number::from(delta), now, tags) {
                out.push(NewRecord { id: ids.next_id().to_vec(), score: now, value });
            }
        };
        for (socket, before) in self.sockets.iter().zip(self.reported.1.iter_mut()) {
            let stats = *lock_stats(&socket.stats);
            let tags = [("socket", socket.name)];
            push("datagrams", stats.datagrams.saturating_sub(before.datagrams), &tags);
            push("kernel_drops", stats.kernel_drops.saturating_sub(before.kernel_drops), &tags);
            push("truncated", stats.truncated.saturating_sub(before.truncated), &tags);
            *before = stats;
        }
        let stats = lock(&self.memory).stats().clone();
        let before = &self.reported.0;
        push("samples", stats.samples.saturating_sub(before.samples), &[]);
        push("events", stats.events.saturating_sub(before.events), &[]);
        push("service_checks", stats.service_checks.saturating_sub(before.service_checks), &[]);
        push("deferred", stats.deferred.saturating_sub(before.deferred), &[]);
        for (reason, n) in &stats.refused {
            let was = before.refused.get(reason).copied().unwrap_or(0);
            push("refused", n.saturating_sub(was), &[("reason", reason)]);
        }
        self.reported.0 = stats;
        out
    }

    /// Writes the `|T` points to every outbox, as they are. On a store error they are kept for
    /// the next turn.
    fn pass_through(&mut self, sink: &mut Sink<'_>, before: f64) -> Result<(), StoreError> {
        let (taken, events) = {
            let mut memory = lock(&self.memory);
            (memory.take_timestamped(before), memory.take_events())
        };
        self.unsent.extend(taken);
        self.unsent_events.extend(events);
        if !self.unsent_events.is_empty() {
            let record = |e: &Event, ids: &mut IdGenerator| NewRecord {
                id: ids.next_id().to_vec(),
                score: e.received,
                value: e.record.clone(),
            };
            let ids = &mut self.ids;
            let events: Vec<NewRecord> =
                self.unsent_events.iter().filter(|e| !e.check).map(|e| record(e, ids)).collect();
            let checks: Vec<NewRecord> =
                self.unsent_events.iter().filter(|e| e.check).map(|e| record(e, ids)).collect();
            sink.add(Queue::Events, &events)?;
            // Events are in: a failure now would write them twice on the next turn.
            self.unsent_events.retain(|e| e.check);
            sink.add(Queue::ServiceChecks, &checks)?;
            self.unsent_events.clear();
        }
        if self.unsent.is_empty() {
            return Ok(());
        }
        let mut records = Vec::with_capacity(self.unsent.len());
        let mut buf = vec![0u8; 1024];
        for point in &self.unsent {
            let tags: Vec<Tag<'_>> = point.tags.iter().map(|t| Tag::parse(t)).collect();
            let wrapped = Wrapped {
                name: MetricName { base: &point.name, suffix: None },
                kind: point.kind,
                tags: &tags,
                timestamp: Timestamp::from_secs_f64(point.timestamp),
                value: point.value,
                interval: (point.kind == OutputType::Count).then_some(self.interval_secs),
            };
            let len = loop {
                match encode_wrapped(&wrapped, &mut buf) {
                    Ok(len) => break Some(len),
                    Err(EncodeError::BufferTooSmall { required }) => buf.resize(required, 0),
                    Err(_) => break None, // checked finite when received
                }
            };
            if let Some(len) = len {
                records.push(NewRecord {
                    id: self.ids.next_id().to_vec(),
                    score: point.timestamp,
                    value: buf[..len].to_vec(),
                });
            }
        }
        sink.points(&records)?;
        self.unsent.clear();
        Ok(())
    }

    /// Per-second rates since the last report.
    fn update_rates(&mut self) {
        let at = Instant::now();
        let datagrams: Vec<u64> = self.sockets.iter().map(|s| lock_stats(&s.stats).datagrams).collect();
        let samples = lock(&self.memory).stats().samples;
        if let Some((then, before, samples_before)) = &self.last_rates {
            let secs = at.duration_since(*then).as_secs_f64().max(1e-3);
            let per_socket =
                datagrams.iter().zip(before).map(|(n, b)| n.saturating_sub(*b) as f64 / secs).collect();
            self.rates = (per_socket, samples.saturating_sub(*samples_before) as f64 / secs);
        }
        self.last_rates = Some((at, datagrams, samples));
    }

    fn report(&mut self, now: f64, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        self.update_rates();
        let fields = self.status_fields();
        let fields: Vec<(&str, String)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        sink.put_status(&fields)?;
        if sink.self_metrics() {
            let samples = self.self_metrics(now);
            sink.samples(&samples)?;
        }
        Ok(())
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Release);
        for socket in &mut self.sockets {
            if let Some(thread) = socket.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Source for Listener {
    fn name(&self) -> &str {
        "dogstatsd"
    }

    fn next_due(&self) -> Instant {
        let (events, timestamped) = {
            let memory = lock(&self.memory);
            (memory.has_events(), memory.timestamped_due())
        };
        if !self.unsent.is_empty() || !self.unsent_events.is_empty() || events {
            return Instant::now();
        }
        match timestamped {
            Some(due) => {
                let wait = (due - crate::agent::wall_clock()).clamp(0.0, 60.0);
                self.next_report.min(Instant::now() + Duration::from_secs_f64(wait))
            }
            None => self.next_report,
        }
    }

    fn run(&mut self, now: f64, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        self.pass_through(sink, now - memory::TIMESTAMPED_HOLD)?;
        if Instant::now() >= self.next_report {
            self.next_report = Instant::now() + self.report_every;
            self.report(now, sink)?;
        }
        Ok(())
    }

    /// Stops the receive threads (what they read is in the memory, which the agent flushes
    /// through the aggregation step next) and writes the last status.
    fn stop(&mut self, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        self.stop_threads();
        let passed = self.pass_through(sink, f64::INFINITY);
        if !self.unsent.is_empty() {
            log::error!(
                "points={}: DogStatsD |T points could not be written before stopping; they are lost",
                self.unsent.len()
            );
        }
        self.report(crate::agent::wall_clock(), sink)?;
        passed
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn lock_stats(stats: &Mutex<SocketStats>) -> std::sync::MutexGuard<'_, SocketStats> {
    stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn spawn_receiver(
    name: &'static str,
    mut receiver: Receiver,
    memory: Arc<Mutex<Memory>>,
    stats: Arc<Mutex<SocketStats>>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let describe = receiver.describe();
    let work = move || {
        let mut failing = false;
        let mut published = Instant::now();
        while !stop.load(Ordering::Acquire) {
            let result = receiver.recv_batch(POLL, |datagram| {
                lock(&memory).record_datagram(crate::agent::wall_clock(), datagram);
            });
            match result {
                Ok(_) => failing = false,
                Err(error) => {
                    if !failing {
                        log::error!("{error}: DogStatsD reads fail; retrying every {POLL:?}");
                        failing = true;
                    }
                    std::thread::sleep(POLL);
                }
            }
            // `stats()` asks the kernel for its drop counter: at most every PUBLISH_EVERY.
            if published.elapsed() >= PUBLISH_EVERY {
                *lock_stats(&stats) = receiver.stats();
                published = Instant::now();
            }
        }
        // Stopping: what the kernel already queued is read too (for at most DRAIN_BUDGET, as
        // senders may keep sending), so a SIGTERM loses none of it.
        let draining = Instant::now();
        while draining.elapsed() < DRAIN_BUDGET {
            let read = receiver.recv_batch(Duration::ZERO, |datagram| {
                lock(&memory).record_datagram(crate::agent::wall_clock(), datagram);
            });
            if !matches!(read, Ok(n) if n > 0) {
                break;
            }
        }
        *lock_stats(&stats) = receiver.stats();
    };
    match std::thread::Builder::new().name(format!("dogstatsd-{name}")).spawn(work) {
        Ok(handle) => Some(handle),
        Err(error) => {
            log::error!("socket={describe} {error}: cannot start the DogStatsD receive thread");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn settings_default_to_udp_on_loopback_8125() {
        let s = Settings::from_vars(&env(&[])).expect("defaults");
        assert_eq!(s.udp, Some("127.0.0.1:8125".parse().expect("addr")));
        assert_eq!((s.socket.clone(), s.socket_mode, s.max_datagram), (None, 0o622, 8192));
        assert_eq!((s.recv_buffer, s.max_contexts), (8 << 20, 20_000));
        let s = Settings::from_vars(&env(&[
            ("DOGSTATSD_PORT", "0"),
            ("DOGSTATSD_SOCKET", "/run/dsd.sock"),
            ("DOGSTATSD_SOCKET_MODE", "0660"),
        ]))
        .expect("valid");
        assert_eq!(
            (s.udp, s.socket.as_deref(), s.socket_mode),
            (None, Some("/run/dsd.sock".as_ref()), 0o660)
        );
        let s =
            Settings::from_vars(&env(&[("DOGSTATSD_NON_LOCAL_TRAFFIC", "true"), ("DOGSTATSD_PORT", "9125")]))
                .expect("valid");
        assert_eq!(s.udp, Some("0.0.0.0:9125".parse().expect("addr")));
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (name, value) in [
            ("DOGSTATSD_PORT", "65536"),
            ("DOGSTATSD_PORT", "udp"),
            ("DOGSTATSD_SOCKET_MODE", "0999"),
            ("DOGSTATSD_SOCKET_MODE", "01777"),
            ("DOGSTATSD_MAX_CONTEXTS", "0"),
        ] {
            let error = Settings::from_vars(&env(&[(name, value)])).expect_err(value).to_string();
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn lines_over_udp_reach_the_memory_and_the_status() {
        let settings = Settings {
            udp: Some("127.0.0.1:0".parse().expect("addr")),
            socket: None,
            socket_mode: 0o622,
            max_datagram: 8192,
            recv_buffer: 0,
            max_contexts: 100,
        };
        let memory = Arc::new(Mutex::new(Memory::new(10, 100)));
        let listener = Listener::start(&settings, Arc::clone(&memory), 10, Duration::from_secs(10));
        let port = listener.udp_port().expect("bound");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender");
        for datagram in [&b"a:1|c\nb:2|g"[..], b"bad line", b"c:x|s"] {
            sender.send_to(datagram, ("127.0.0.1", port)).expect("sent");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut fields: BTreeMap<String, String>;
        loop {
            // The socket's counters are published every PUBLISH_EVERY.
            fields = listener.status_fields().into_iter().collect();
            if (fields["dogstatsd.lines"] == "4" && fields["dogstatsd.udp.datagrams"] == "3")
                || Instant::now() > deadline
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(fields["dogstatsd.lines"], "4");
        assert_eq!(fields["dogstatsd.samples"], "3");
        assert_eq!(fields["dogstatsd.udp.datagrams"], "3");
        assert_eq!(fields["dogstatsd.refused.missing_value"], "1", "{fields:?}");
        assert_eq!(fields["dogstatsd.last_bad_line"], "missing_value: bad line");
        assert_eq!(fields["dogstatsd.held_contexts"], "3");
    }
}
