//! The serial source: one thread per device moves bytes and runs the device's [`Session`]; the
//! run loop commits what the sessions hand over (points and link state, atomically) and the
//! threads acknowledge once it did.
//!
//! ```text
//! device thread:  line ⇄ Session ── Commit ──► channel ──► run loop: Sink::commit_link ─┐
//!                        ▲   └── ack written ◄── result ◄────────────────────────────────┘
//! ```
//!
//! A device thread never touches the store, so the store has one user (the embedded store
//! allows no other); it wakes the run loop ([`Waker`]) when it has something to commit. A line
//! that fails or closes is reopened with a backoff (100 ms doubling to 5 s): a USB device
//! unplugged and plugged back, an emulator restarted. While a commit waits for the loop (an output
//! busy sending), the device keeps its frames and sends them again: the ring on the device holds
//! the intervals meanwhile.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chouette_core::link::window::LinkState;
use chouette_core::wrap::WrapConfig;

use super::session::{Action, Commit, Session, SessionStats};
use crate::source::{Sink, Source, Waker};
use crate::store::StoreError;

/// A byte stream to one device.
pub trait Line: Send {
    /// Reads what arrives within `timeout` into `buf`: `Ok(0)` when nothing did; an error
    /// (`UnexpectedEof` when the other end closed) drops the line.
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;
    /// Writes every byte.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// Opens the line to one device, again after each failure.
pub trait Connect: Send {
    /// The device as configured (`/dev/ttyUSB0`, `unix:/run/fw.sock`): its name in logs, status
    /// and self-metrics, and the key of its link state.
    fn device(&self) -> &str;
    /// Opens the line.
    fn connect(&mut self) -> io::Result<Box<dyn Line>>;
}

/// First reconnection delay, doubling up to [`RECONNECT_MAX`].
pub const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Longest reconnection delay.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often status fields and self-metrics are written.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Longest a device thread blocks reading when it has nothing due.
const READ_AT_MOST: Duration = Duration::from_millis(250);

/// What one device's thread shares with the run loop.
#[derive(Debug, Default)]
pub struct DeviceReport {
    /// The session's counters.
    pub session: SessionStats,
    /// Lines opened.
    pub connects: u64,
    /// Lines lost (errors, closes).
    pub disconnects: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Whether the line is open now.
    pub connected: bool,
    /// The last line error.
    pub last_error: Option<String>,
}

enum Request {
    /// The link state the store holds for the device.
    Load { device: String, reply: Sender<Result<Option<LinkState>, ()>> },
    /// Points and link state, in one atomic write.
    Commit { device: String, commit: Commit, reply: Sender<bool> },
}

struct Device {
    name: String,
    report: Arc<Mutex<DeviceReport>>,
    thread: Option<JoinHandle<()>>,
}

/// The serial source. See the [module docs](self).
pub struct SerialSource {
    devices: Vec<Device>,
    requests: Receiver<Request>,
    pending: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    next_report: Instant,
    reported: Vec<super::Reported>,
    ids: crate::pipeline::IdGenerator,
}

impl SerialSource {
    /// Starts one thread per device.
    pub fn start(connectors: Vec<Box<dyn Connect>>, wrap: WrapConfig, waker: Waker) -> SerialSource {
        let (to_loop, requests) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let devices = connectors
            .into_iter()
            .map(|connector| {
                let name = connector.device().to_owned();
                let report = Arc::new(Mutex::new(DeviceReport::default()));
                let worker = Worker {
                    connector,
                    to_loop: to_loop.clone(),
                    pending: Arc::clone(&pending),
                    stop: Arc::clone(&stop),
                    waker: waker.clone(),
                    report: Arc::clone(&report),
                    wrap: wrap.clone(),
                };
                let thread = std::thread::Builder::new()
                    .name(format!("serial {name}"))
                    .spawn(move || worker.run())
                    .map_err(|e| {
                        log::error!("device={name}: {e}: cannot start its thread; the device is not read")
                    })
                    .ok();
                Device { name, report, thread }
            })
            .collect::<Vec<_>>();
        let reported = vec![super::Reported::default(); devices.len()];
        SerialSource {
            devices,
            requests,
            pending,
            stop,
            next_report: Instant::now() + REPORT_EVERY,
            reported,
            ids: crate::pipeline::id_generator(),
        }
    }

    /// Each device's report (for tests and `chouette status`).
    pub fn reports(&self) -> Vec<(String, Arc<Mutex<DeviceReport>>)> {
        self.devices.iter().map(|d| (d.name.clone(), Arc::clone(&d.report))).collect()
    }

    fn serve(&mut self, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        while let Ok(request) = self.requests.try_recv() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            match request {
                Request::Load { device, reply } => {
                    let result = sink.link_state(&device);
                    let state = result.as_ref().map(|bytes| bytes.as_deref().and_then(LinkState::from_bytes));
                    let _ = reply.send(state.map_err(drop));
                    result?;
                }
                Request::Commit { device, commit, reply } => {
                    let result = sink.commit_link(&commit.records, &device, &commit.state);
                    let _ = reply.send(result.is_ok());
                    result?;
                }
            }
        }
        Ok(())
    }

    fn report(&mut self, now: f64, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut samples = Vec::new();
        for (device, previous) in self.devices.iter().zip(self.reported.iter_mut()) {
            let Ok(report) = device.report.lock() else { continue };
            fields.extend(super::status_fields(&device.name, &report));
            if sink.self_metrics() {
                samples.extend(super::self_metric_records(
                    &device.name,
                    &report,
                    previous,
                    now,
                    &mut self.ids,
                ));
            }
        }
        let fields: Vec<(&str, String)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        sink.put_status(&fields)?;
        sink.samples(&samples)
    }
}

impl Source for SerialSource {
    fn name(&self) -> &str {
        "serial"
    }

    fn next_due(&self) -> Instant {
        if self.pending.load(Ordering::Acquire) > 0 {
            Instant::now()
        } else {
            self.next_report
        }
    }

    fn run(&mut self, now: f64, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        self.serve(sink)?;
        if Instant::now() >= self.next_report {
            self.next_report = Instant::now() + REPORT_EVERY;
            self.report(now, sink)?;
        }
        Ok(())
    }

    fn stop(&mut self, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        // Commits already asked for are done (their frames are acknowledged next time: the device
        // sends them again and they are duplicates), then the threads stop.
        let served = self.serve(sink);
        self.stop.store(true, Ordering::Release);
        served
    }
}

impl Drop for SerialSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for device in &mut self.devices {
            if let Some(thread) = device.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

struct Worker {
    connector: Box<dyn Connect>,
    to_loop: Sender<Request>,
    pending: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    waker: Waker,
    report: Arc<Mutex<DeviceReport>>,
    wrap: WrapConfig,
}

fn now_ms() -> u64 {
    (crate::agent::wall_clock() * 1000.0) as u64
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Request) -> Option<T> {
        let (reply, answer) = mpsc::channel();
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.to_loop.send(make(reply)).is_err() {
            return None;
        }
        self.waker.wake();
        loop {
            match answer.recv_timeout(Duration::from_millis(100)) {
                Ok(value) => return Some(value),
                Err(RecvTimeoutError::Timeout) if !self.stopped() => continue,
                Err(_) => return None,
            }
        }
    }

    fn run(mut self) {
        let device = self.connector.device().to_owned();
        // The state the store kept: without it nothing is known to be committed.
        let mut session = loop {
            if self.stopped() {
                return;
            }
            match self.ask(|reply| Request::Load { device: device.clone(), reply }) {
                Some(Ok(state)) => {
                    break Session::new(state, self.wrap.clone(), crate::pipeline::id_generator())
                }
                Some(Err(())) => std::thread::sleep(Duration::from_secs(1)),
                None => return,
            }
        };
        let mut delay = RECONNECT_MIN;
        let mut failing = false;
        while !self.stopped() {
            let mut line = match self.connector.connect() {
                Ok(line) => line,
                Err(error) => {
                    if !failing {
                        log::warn!("device={device} error={error}: cannot open the device; retrying");
                        failing = true;
                    }
                    self.with_report(|r| r.last_error = Some(error.to_string()));
                    self.sleep(delay);
                    delay = (delay * 2).min(RECONNECT_MAX);
                    continue;
                }
            };
            if failing {
                log::info!("device={device}: device open again");
            }
            failing = false;
            delay = RECONNECT_MIN;
            session.connected(now_ms());
            self.with_report(|r| {
                r.connects += 1;
                r.connected = true;
            });
            let error = self.serve_line(&mut session, line.as_mut());
            log::warn!("device={device} error={error}: line lost; reopening");
            self.with_report(|r| {
                r.disconnects += 1;
                r.connected = false;
                r.last_error = Some(error.to_string());
                r.session = session.stats().clone();
            });
            self.sleep(RECONNECT_MIN);
        }
    }

    /// Runs the session over `line` until it fails or the source stops.
    fn serve_line(&self, session: &mut Session, line: &mut dyn Line) -> io::Error {
        let device = self.connector.device().to_owned();
        let mut buf = [0u8; 4096];
        while !self.stopped() {
            while let Some(action) = session.poll(now_ms()) {
                let written = match action {
                    Action::Write(bytes) => line.write_all(&bytes),
                    Action::Commit(commit) => {
                        let ok = self.ask(|reply| Request::Commit {
                            device: device.clone(),
                            commit: commit.clone(),
                            reply,
                        });
                        if ok == Some(true) {
                            line.write_all(&session.committed(&commit))
                        } else {
                            session.commit_failed();
                            Ok(())
                        }
                    }
                };
                if let Err(error) = written {
                    return error;
                }
            }
            let due = session.poll_timeout().saturating_sub(now_ms());
            let timeout = Duration::from_millis(due.clamp(1, READ_AT_MOST.as_millis() as u64));
            match line.read_timeout(&mut buf, timeout) {
                Ok(n) => {
                    session.receive(&buf[..n]);
                    self.with_report(|r| {
                        r.bytes_in += n as u64;
                        r.session = session.stats().clone();
                    });
                }
                Err(error) => return error,
            }
        }
        io::Error::other("stopping")
    }

    fn with_report(&self, f: impl FnOnce(&mut DeviceReport)) {
        if let Ok(mut report) = self.report.lock() {
            f(&mut report);
        }
    }

    fn sleep(&self, total: Duration) {
        let until = Instant::now() + total;
        while !self.stopped() && Instant::now() < until {
            std::thread::sleep(
                until.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use chouette_core::link::message::{
        self, Ack, DataHeader, DataWriter, Define, Hello, TimeRequest, TimeResponse, Value,
    };
    use chouette_core::link::window::Sender as Window;
    use chouette_core::link::{encode_frame, max_frame_bytes, Framer, Header, Kind, MAX_PAYLOAD};
    use chouette_core::metric::MetricType;

    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{Queue, Store};

    impl Line for UnixStream {
        fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
            use std::io::Read;
            self.set_read_timeout(Some(timeout))?;
            match Read::read(self, buf) {
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => Ok(n),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(0),
                Err(e) => Err(e),
            }
        }

        fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            std::io::Write::write_all(self, bytes)
        }
    }

    /// Hands out the gateway ends of socket pairs, one per connection; the device ends go to
    /// the test through a channel.
    struct Pairs(mpsc::Sender<UnixStream>);

    impl Connect for Pairs {
        fn device(&self) -> &str {
            "pair"
        }

        fn connect(&mut self) -> io::Result<Box<dyn Line>> {
            let (gateway, device) = UnixStream::pair()?;
            self.0.send(device).map_err(|_| io::Error::other("test gone"))?;
            Ok(Box::new(gateway))
        }
    }

    fn frame(kind: Kind, boot_id: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; max_frame_bytes(payload.len())];
        let n = encode_frame(Header { kind, boot_id, seq }, payload, &mut out).expect("frame");
        out.truncate(n);
        out
    }

    fn payload<T: serde::Serialize>(value: &T) -> Vec<u8> {
        let mut buf = [0u8; MAX_PAYLOAD];
        let n = message::encode(value, &mut buf).expect("fits");
        buf[..n].to_vec()
    }

    /// Reads frames from the gateway until `want` says stop (10 s at most).
    fn read_until(
        device: &mut UnixStream,
        framer: &mut Framer<64>,
        mut want: impl FnMut(Header, &[u8]) -> bool,
    ) {
        use std::io::Read;
        device.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 256];
        let mut done = false;
        while !done {
            assert!(Instant::now() < deadline, "the gateway did not answer");
            let n = match device.read(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            framer.feed(&buf[..n], |r| {
                if let Ok(f) = r {
                    done |= want(f.header, f.payload);
                }
            });
        }
    }

    /// The run loop's part on a thread: serves the source until `stop`; gives the store back.
    fn run_loop(
        mut source: SerialSource,
        mut store: EmbeddedStore,
        waker: Waker,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<EmbeddedStore> {
        std::thread::spawn(move || {
            let outboxes = [Queue::WrappedMetrics];
            while !stop.load(Ordering::SeqCst) {
                waker.sleep(Duration::from_millis(50));
                if source.next_due() <= Instant::now() {
                    let mut sink = Sink::new(&mut store, &outboxes, false);
                    source.run(0.0, &mut sink).expect("store");
                }
            }
            drop(source);
            store
        })
    }

    fn data_payload(sum: f64) -> Vec<u8> {
        let mut data = [0u8; MAX_PAYLOAD];
        let header = DataHeader { start_ms: 0, interval_ms: 1000, intervals: 1 };
        let mut writer = DataWriter::new(&mut data, header).expect("header");
        writer.push(0, &Value::Count { sum, n: 5 }).expect("fits");
        writer.payload().to_vec()
    }

    #[test]
    fn frames_are_committed_with_the_link_state_then_acknowledged_and_resumed_after_a_restart() {
        let dir = std::env::temp_dir().join(format!("chouette-serial-source-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = EmbeddedStore::open(&dir.join("store.redb")).expect("store");
        let (to_test, devices) = mpsc::channel();
        let waker = Waker::new();
        let stop = Arc::new(AtomicBool::new(false));
        let source =
            SerialSource::start(vec![Box::new(Pairs(to_test))], WrapConfig::default(), waker.clone());
        let running = run_loop(source, store, waker.clone(), Arc::clone(&stop));
        let mut device = devices.recv_timeout(Duration::from_secs(10)).expect("connected");
        // The gateway says hello and asks the time; the device answers both, then sends a define
        // and a data frame.
        let mut framer = Framer::<64>::new();
        let boot = 77;
        let mut request = None;
        read_until(&mut device, &mut framer, |h, p| {
            if h.kind == Kind::TimeRequest {
                request = Some((h.seq, message::decode::<TimeRequest>(p).expect("request").t0_ms));
            }
            request.is_some()
        });
        let (seq, t0) = request.expect("time request");
        let hello = Hello { device: "d", uptime_ms: 1000, interval_ms: 1000, counters: Default::default() };
        let response = TimeResponse { t0_ms: t0, uptime_ms: 1000, counters: Default::default() };
        let mut window = Window::<4>::new(boot);
        let define =
            payload(&Define { ctx: 0, kind: MetricType::Count, name: "fw.c", tags: heapless::Vec::new() });
        let data = data_payload(5.0);
        window.send(Kind::Define, &define).expect("room");
        window.send(Kind::Data, &data).expect("room");
        let mut bytes = frame(Kind::Hello, boot, 0, &payload(&hello));
        bytes.extend(frame(Kind::TimeResponse, boot, seq, &payload(&response)));
        let mut buf = [0u8; 600];
        while let Some(n) = window.poll_transmit(0, &mut buf) {
            bytes.extend_from_slice(&buf[..n]);
        }
        std::io::Write::write_all(&mut device, &bytes).expect("write");
        let mut last_ack = None;
        read_until(&mut device, &mut framer, |h, p| {
            if h.kind == Kind::Ack && message::decode::<Ack>(p).is_ok() {
                last_ack = Some(h.seq);
            }
            last_ack == Some(1)
        });
        stop.store(true, Ordering::SeqCst);
        let mut store = running.join().expect("loop");
        assert_eq!(store.len(Queue::WrappedMetrics).expect("len"), 1);
        let state = store.link_state("pair").expect("read").expect("state");
        let state = LinkState::from_bytes(&state).expect("decodes");
        assert_eq!((state.boot_id, state.seq), (boot, 1));

        // A new agent: the same data frame again is a duplicate, acknowledged, not committed.
        let (to_test, devices) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let source =
            SerialSource::start(vec![Box::new(Pairs(to_test))], WrapConfig::default(), waker.clone());
        let running = run_loop(source, store, waker.clone(), Arc::clone(&stop));
        let mut device = devices.recv_timeout(Duration::from_secs(10)).expect("connected");
        std::io::Write::write_all(&mut device, &frame(Kind::Data, boot, 1, &data)).expect("write");
        let mut framer = Framer::<64>::new();
        let mut ack = None;
        read_until(&mut device, &mut framer, |h, _| {
            if h.kind == Kind::Ack {
                ack = Some(h.seq);
            }
            ack.is_some()
        });
        assert_eq!(ack, Some(1));
        stop.store(true, Ordering::SeqCst);
        let mut store = running.join().expect("loop");
        assert_eq!(store.len(Queue::WrappedMetrics).expect("len"), 1, "not committed twice");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
