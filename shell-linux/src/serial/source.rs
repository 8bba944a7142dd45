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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chouette_core::link::window::LinkState;
use chouette_core::wrap::WrapConfig;

use super::port::{Event, Reconnecting};
use super::session::{Action, Commit, Session};
use super::{DeviceStats, Endpoint};
use crate::limits::SERIAL_READ_BYTES;
use crate::source::{Sink, Source, Waker};
use crate::store::StoreError;

/// How often status fields and self-metrics are written.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Longest a device thread blocks reading when it has nothing due.
const READ_AT_MOST: Duration = Duration::from_millis(250);

enum Request {
    /// The link state the store holds for the device.
    Load { device: String, reply: Sender<Result<Option<LinkState>, ()>> },
    /// Points and link state, in one atomic write.
    Commit { device: String, commit: Commit, reply: Sender<bool> },
}

struct Device {
    name: String,
    stats: Arc<Mutex<DeviceStats>>,
    thread: Option<JoinHandle<()>>,
}

/// The serial source. See the [module docs](self).
pub struct SerialSource {
    devices: Vec<Device>,
    requests: Receiver<Request>,
    pending: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    next_report: Instant,
    reported: Vec<DeviceStats>,
    ids: crate::pipeline::IdGenerator,
}

impl SerialSource {
    /// Starts one thread per device (`SERIAL_DEVICES`, at `baud` for ttys).
    pub fn start(devices: &[Endpoint], baud: u32, wrap: WrapConfig, waker: Waker) -> SerialSource {
        let (to_loop, requests) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let devices = devices
            .iter()
            .map(|endpoint| {
                let name = endpoint.name();
                let stats = Arc::new(Mutex::new(DeviceStats::default()));
                let worker = Worker {
                    name: name.clone(),
                    port: Reconnecting::new(endpoint.clone(), baud),
                    to_loop: to_loop.clone(),
                    pending: Arc::clone(&pending),
                    stop: Arc::clone(&stop),
                    waker: waker.clone(),
                    stats: Arc::clone(&stats),
                    wrap: wrap.clone(),
                };
                let thread = std::thread::Builder::new()
                    .name(format!("serial {name}"))
                    .spawn(move || worker.run())
                    .map_err(|e| {
                        log::error!("device={name}: {e}: cannot start its thread; the device is not read")
                    })
                    .ok();
                Device { name, stats, thread }
            })
            .collect::<Vec<_>>();
        let reported = vec![DeviceStats::default(); devices.len()];
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

    /// Each device's name and counters.
    pub fn stats(&self) -> Vec<(String, DeviceStats)> {
        self.devices
            .iter()
            .map(|d| (d.name.clone(), d.stats.lock().map(|s| s.clone()).unwrap_or_default()))
            .collect()
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
            let Ok(stats) = device.stats.lock().map(|s| s.clone()) else { continue };
            fields.extend(stats.status_fields(&device.name));
            if sink.self_metrics() {
                samples.extend(stats.self_metrics(previous, &device.name, now, &mut self.ids));
            }
            *previous = stats;
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
    name: String,
    port: Reconnecting,
    to_loop: Sender<Request>,
    pending: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    waker: Waker,
    stats: Arc<Mutex<DeviceStats>>,
    wrap: WrapConfig,
}

fn now_ms() -> u64 {
    (crate::agent::wall_clock() * 1000.0) as u64
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Hands a request to the run loop and waits for its answer (`None`: stopping).
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
        // The state the store kept: without it nothing is known to be committed.
        let mut session = loop {
            if self.stopped() {
                return;
            }
            match self.ask(|reply| Request::Load { device: self.name.clone(), reply }) {
                Some(Ok(state)) => {
                    break Session::new(state, self.wrap.clone(), crate::pipeline::id_generator())
                }
                Some(Err(())) => std::thread::sleep(Duration::from_secs(1)),
                None => return,
            }
        };
        let mut buf = [0u8; SERIAL_READ_BYTES];
        while !self.stopped() {
            if self.port.is_connected() {
                self.act(&mut session);
            }
            // Closed, the port waits for its reopen (the session has nothing due without a line).
            let timeout = if self.port.is_connected() {
                let due = session.poll_timeout().saturating_sub(now_ms());
                Duration::from_millis(due.clamp(1, READ_AT_MOST.as_millis() as u64))
            } else {
                READ_AT_MOST
            };
            match self.port.read(&mut buf, timeout) {
                Event::Data(n) => session.receive(&buf[..n]),
                Event::Connected => session.connected(now_ms()),
                Event::Idle | Event::Disconnected => {}
            }
            self.update_stats(&session);
        }
    }

    /// Does what the session has due: writes, and commits through the run loop.
    fn act(&mut self, session: &mut Session) {
        while let Some(action) = session.poll(now_ms()) {
            let bytes = match action {
                Action::Write(bytes) => bytes,
                Action::Commit(commit) => {
                    let device = self.name.clone();
                    let done = self.ask(|reply| Request::Commit { device, commit: commit.clone(), reply });
                    if done != Some(true) {
                        // Not acknowledged: the device sends the frame again.
                        session.commit_failed();
                        return;
                    }
                    session.committed(&commit)
                }
            };
            if !self.port.write_all(&bytes) {
                return;
            }
        }
    }

    fn update_stats(&self, session: &Session) {
        let Ok(mut stats) = self.stats.lock() else { return };
        let s = session.stats();
        let port = self.port.counters();
        *stats = DeviceStats {
            connects: port.connects,
            disconnects: port.disconnects,
            bytes_in: port.bytes_in,
            frames_accepted: s.frames_accepted,
            crc_failures: s.crc_failures,
            resyncs: s.resyncs,
            duplicates: s.duplicates,
            gaps: s.gaps,
            time_fallbacks: s.time_fallbacks,
            merged_intervals: u64::from(s.device.merged_intervals),
            dropped_intervals: u64::from(s.device.dropped_intervals),
            points: s.points,
            resync_requests: s.resync_requests,
            malformed: s.malformed,
            refused_samples: u64::from(s.device.refused_samples),
            coarsened: u64::from(s.device.coarsened),
            clock_offset_ms: s.clock_offset_ms,
            last_error: self.port.last_error().map(str::to_owned),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::{UnixListener, UnixStream};

    use chouette_core::link::message::{
        self, Ack, DataHeader, DataWriter, Define, Hello, TimeRequest, TimeResponse, Value,
    };
    use chouette_core::link::window::Sender as Window;
    use chouette_core::link::{encode_frame, max_frame_bytes, Framer, Header, Kind, MAX_PAYLOAD};
    use chouette_core::metric::MetricType;

    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{Queue, Store};

    /// The device's end: accepts the agent's connection on a Unix socket.
    fn accept(listener: &UnixListener) -> UnixStream {
        listener.set_nonblocking(false).expect("blocking");
        let (stream, _) = listener.accept().expect("the agent connects");
        stream
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
        let path = dir.join("uart.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let endpoints = [Endpoint::Unix(path.clone())];
        let name = endpoints[0].name();
        let waker = Waker::new();
        let stop = Arc::new(AtomicBool::new(false));
        let source = SerialSource::start(&endpoints, 115_200, WrapConfig::default(), waker.clone());
        let running = run_loop(source, store, waker.clone(), Arc::clone(&stop));
        let mut device = accept(&listener);
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
        let state = store.link_state(&name).expect("read").expect("state");
        let state = LinkState::from_bytes(&state).expect("decodes");
        assert_eq!((state.boot_id, state.seq), (boot, 1));

        // A new agent: the same data frame again is a duplicate, acknowledged, not committed.
        let stop = Arc::new(AtomicBool::new(false));
        let source = SerialSource::start(&endpoints, 115_200, WrapConfig::default(), waker.clone());
        let running = run_loop(source, store, waker.clone(), Arc::clone(&stop));
        let mut device = accept(&listener);
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
