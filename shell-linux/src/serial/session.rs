//! One device's link, gateway side, sans-IO: bytes in, frames to write and commits out.
//!
//! ```text
//! receive(bytes) ─► framer ─► queue of frames ─► poll(now) ─► Action::Write(bytes)  (hello, time request, ack, nack)
//!                                                         └─► Action::Commit(points + link state)
//!                                   committed(commit) ◄── the store wrote both atomically ──┘ → the ack's bytes
//! ```
//!
//! A data frame is acknowledged only after the store committed its points together with the
//! device's [`LinkState`], so a retransmission after a lost ack or a gateway crash is a
//! duplicate (acknowledged again, never counted twice). Contexts (`DEFINE`) live in memory for
//! the device's session; after a gateway restart the first data frame that needs one gets a
//! `NACK resync` and the device starts a new session, defining its contexts again.
//!
//! Data waits (queued, not acknowledged) until the time exchange gave a clock offset, at most
//! [`SYNC_WAIT_MS`] after the connection; after that, points are stamped with the time they
//! arrived (counted in `time_fallbacks`).

use std::collections::{HashMap, VecDeque};

use chouette_core::limits::SKETCH_BINS;
use chouette_core::link::message::{
    self, Ack, DataReader, Define, DeviceCounters, Hello, Nack, Record, TimeRequest, TimeResponse, Value,
};
use chouette_core::link::time::ClockSync;
use chouette_core::link::window::{Disposition, LinkState, Receiver};
use chouette_core::link::{encode_frame, max_frame_bytes, FrameError, Framer, Header, Kind, MAX_PAYLOAD};
use chouette_core::metric::{MetricName, MetricType, Tag, Timestamp, Wrapped};
use chouette_core::sketch::{Histogram, QuantileSketch};
use chouette_core::wire::wrapped::encode_wrapped;
use chouette_core::wrap::{self, Outputs, Summary, WrapConfig};

use crate::limits::{MAX_QUEUED_FRAMES, SERIAL_WINDOW_FRAMES, TIME_SAMPLES};
use crate::pipeline::IdGenerator;
use crate::store::NewRecord;

/// How long data waits for the first clock offset after a connection before it is stamped on
/// receipt.
pub const SYNC_WAIT_MS: u64 = 3_000;
/// Time requests: every second until the first answer, then every minute.
pub const TIME_RETRY_MS: u64 = 1_000;
/// Time requests once synced.
pub const TIME_EVERY_MS: u64 = 60_000;
/// The gateway's hello is repeated this often until the device's hello arrives.
pub const HELLO_RETRY_MS: u64 = 2_000;
/// Damaged frames get at most one `NACK damaged` this often.
pub const DAMAGED_NACK_EVERY_MS: u64 = 200;
/// The offset used to stamp points moves only when the best estimate moved further than this:
/// consecutive intervals then stay exactly one interval apart (a backend keeping one point per
/// series and second would merge two intervals stamped into the same second), while a clock
/// that drifts is still followed.
pub const RESTAMP_AFTER_MS: i64 = 100;

/// What one device's link counted (since the agent started).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStats {
    /// Frames read whole.
    pub frames: u64,
    /// Data and define frames committed.
    pub frames_accepted: u64,
    /// Byte runs refused for a bad CRC.
    pub crc_failures: u64,
    /// Other refused byte runs (bad COBS, too short or too long, unknown kind): resynchronised.
    pub resyncs: u64,
    /// Frames already committed, received again.
    pub duplicates: u64,
    /// Frames dropped after a gap in the sequence (a frame before them was lost on the line).
    pub gaps: u64,
    /// Resync nacks sent (unknown session, unknown context).
    pub resync_requests: u64,
    /// Frames whose payload could not be read (dropped unacknowledged and counted).
    pub malformed: u64,
    /// Points committed.
    pub points: u64,
    /// Data frames stamped on receipt (no clock offset).
    pub time_fallbacks: u64,
    /// The device's own counters, as last reported.
    pub device: DeviceCounters,
    /// The clock offset in use (wall ms minus device uptime ms) and its round trip.
    pub clock_offset_ms: Option<i64>,
    /// The round trip of that offset's exchange.
    pub clock_rtt_ms: Option<u64>,
    /// The device's name, from its hello.
    pub name: Option<String>,
}

/// Points and the link state to write in one atomic step, then acknowledge.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// Wrapped records for every outbox (empty for a define).
    pub records: Vec<NewRecord>,
    /// The device's [`LinkState`] after this frame, as bytes.
    pub state: Vec<u8>,
    header: Header,
    link_state: LinkState,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write these bytes to the device.
    Write(Vec<u8>),
    /// Commit, then call [`Session::committed`] (or [`Session::commit_failed`]).
    Commit(Commit),
}

#[derive(Debug, Clone)]
struct Context {
    name: String,
    kind: MetricType,
    tags: Vec<String>,
}

enum Event {
    Frame(Header, Vec<u8>),
    Damaged,
}

/// One device's link, gateway side. See the [module docs](self).
pub struct Session {
    framer: Framer<{ max_frame_bytes(MAX_PAYLOAD) }>,
    receiver: Receiver,
    clock: ClockSync<TIME_SAMPLES>,
    /// The offset points are stamped with (see [`RESTAMP_AFTER_MS`]).
    stamp_offset_ms: Option<i64>,
    contexts: HashMap<u16, Context>,
    contexts_boot: Option<u32>,
    events: VecDeque<Event>,
    wrap: WrapConfig,
    ids: IdGenerator,
    connected_at_ms: u64,
    hello_seen: bool,
    next_hello_ms: u64,
    next_time_ms: u64,
    time_seq: u16,
    pending_time: Option<(u16, u64)>,
    last_boot: u32,
    last_damaged_nack_ms: Option<u64>,
    commit_pending: bool,
    stats: SessionStats,
}

impl Session {
    /// A session resuming from the state the store kept for this device.
    pub fn new(state: Option<LinkState>, wrap: WrapConfig, ids: IdGenerator) -> Session {
        Session {
            framer: Framer::new(),
            receiver: Receiver::new(state),
            clock: ClockSync::new(),
            stamp_offset_ms: None,
            contexts: HashMap::new(),
            contexts_boot: None,
            events: VecDeque::new(),
            wrap,
            ids,
            connected_at_ms: 0,
            hello_seen: false,
            next_hello_ms: 0,
            next_time_ms: 0,
            time_seq: 0,
            pending_time: None,
            last_boot: state.map_or(0, |s| s.boot_id),
            last_damaged_nack_ms: None,
            commit_pending: false,
            stats: SessionStats::default(),
        }
    }

    /// What it counted.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The committed state.
    pub fn link_state(&self) -> Option<LinkState> {
        self.receiver.state()
    }

    /// The line (re)connected at wall `now_ms`: partial frames are forgotten, the hello and a
    /// time request go out at the next [`poll`](Self::poll).
    pub fn connected(&mut self, now_ms: u64) {
        self.framer = Framer::new();
        self.events.clear();
        self.connected_at_ms = now_ms;
        self.hello_seen = false;
        self.next_hello_ms = now_ms;
        self.next_time_ms = now_ms;
        self.pending_time = None;
    }

    /// Bytes read from the device.
    pub fn receive(&mut self, bytes: &[u8]) {
        let Session { framer, events, stats, .. } = self;
        framer.feed(bytes, |result| match result {
            Ok(frame) => {
                stats.frames += 1;
                events.push_back(Event::Frame(frame.header, frame.payload.to_vec()));
            }
            Err(FrameError::BadCrc) => {
                stats.crc_failures += 1;
                events.push_back(Event::Damaged);
            }
            Err(_) => stats.resyncs += 1,
        });
        while self.events.len() > MAX_QUEUED_FRAMES {
            self.events.pop_front();
        }
    }

    /// When [`poll`](Self::poll) next has something to do without new bytes.
    pub fn poll_timeout(&self) -> u64 {
        let mut due = self.next_time_ms;
        if !self.hello_seen {
            due = due.min(self.next_hello_ms);
        }
        if !self.events.is_empty() && self.clock.best().is_none() {
            due = due.min(self.connected_at_ms + SYNC_WAIT_MS);
        }
        due
    }

    /// The next thing to do at wall `now_ms`, if any. While a commit is out, only writes come.
    pub fn poll(&mut self, now_ms: u64) -> Option<Action> {
        if !self.hello_seen && now_ms >= self.next_hello_ms {
            self.next_hello_ms = now_ms + HELLO_RETRY_MS;
            return Some(Action::Write(frame(Kind::Hello, 0, 0, &[])));
        }
        if now_ms >= self.next_time_ms {
            let synced = self.clock.best().is_some();
            self.next_time_ms = now_ms + if synced { TIME_EVERY_MS } else { TIME_RETRY_MS };
            self.time_seq = self.time_seq.wrapping_add(1);
            self.pending_time = Some((self.time_seq, now_ms));
            let payload = encode(&TimeRequest { t0_ms: now_ms });
            return Some(Action::Write(frame(Kind::TimeRequest, 0, self.time_seq, &payload)));
        }
        if self.commit_pending {
            return None;
        }
        // Frames in order, except that data waiting for the clock (and the sequenced frames
        // behind it) let the unsequenced ones (hello, time response, damage) through.
        'scan: loop {
            let waiting = self.clock.best().is_none() && now_ms < self.connected_at_ms + SYNC_WAIT_MS;
            let mut blocked = false;
            for i in 0..self.events.len() {
                if let Event::Frame(header, _) = &self.events[i] {
                    if matches!(header.kind, Kind::Data | Kind::Define) {
                        let wait =
                            header.kind == Kind::Data && self.receiver.peek(*header) == Disposition::Next;
                        if blocked || (waiting && wait) {
                            blocked = true;
                            continue;
                        }
                    }
                }
                let Some(event) = self.events.remove(i) else { break 'scan };
                match self.handle(event, now_ms) {
                    Some(action) => return Some(action),
                    None => continue 'scan,
                }
            }
            return None;
        }
        None
    }

    /// The store committed `commit`: the acknowledgement to write.
    pub fn committed(&mut self, commit: &Commit) -> Vec<u8> {
        self.commit_pending = false;
        self.receiver.committed(commit.link_state);
        self.stats.frames_accepted += 1;
        self.stats.points += commit.records.len() as u64;
        self.ack_frame(commit.header.boot_id, commit.header.seq)
    }

    /// The store could not commit: nothing is acknowledged; the device sends the frame again.
    pub fn commit_failed(&mut self) {
        self.commit_pending = false;
    }

    fn handle(&mut self, event: Event, now_ms: u64) -> Option<Action> {
        let (header, payload) = match event {
            Event::Damaged => {
                let due = self.last_damaged_nack_ms.is_none_or(|at| now_ms >= at + DAMAGED_NACK_EVERY_MS);
                if !due || self.last_boot == 0 {
                    return None;
                }
                self.last_damaged_nack_ms = Some(now_ms);
                return Some(Action::Write(frame(Kind::Nack, self.last_boot, 0, &encode(&Nack::Damaged))));
            }
            Event::Frame(header, payload) => (header, payload),
        };
        match header.kind {
            Kind::Hello => {
                let hello: Hello<'_> = match message::decode(&payload) {
                    Ok(hello) => hello,
                    Err(_) => {
                        self.stats.malformed += 1;
                        return None;
                    }
                };
                self.hello_seen = true;
                self.observe_uptime(hello.uptime_ms);
                self.stats.device = hello.counters;
                if self.stats.name.as_deref() != Some(hello.device) {
                    log::info!("device={} boot_id={:#x}: device said hello", hello.device, header.boot_id);
                    self.stats.name = Some(hello.device.to_owned());
                }
                self.last_boot = header.boot_id;
                None
            }
            Kind::TimeResponse => {
                let response: TimeResponse = message::decode(&payload).ok()?;
                let (seq, t0) = self.pending_time?;
                if header.seq != seq || response.t0_ms != t0 {
                    return None;
                }
                self.pending_time = None;
                self.stats.device = response.counters;
                if let Some(sample) = self.clock.on_response(t0, now_ms, response.uptime_ms) {
                    let best = self.clock.best().unwrap_or(sample);
                    self.stats.clock_offset_ms = Some(best.offset_ms);
                    self.stats.clock_rtt_ms = Some(best.rtt_ms);
                }
                None
            }
            Kind::Define | Kind::Data => self.sequenced(header, &payload, now_ms),
            // Gateway-bound kinds only; a device never sends these.
            Kind::Ack | Kind::Nack | Kind::TimeRequest => None,
        }
    }

    fn sequenced(&mut self, header: Header, payload: &[u8], now_ms: u64) -> Option<Action> {
        self.last_boot = header.boot_id;
        match self.receiver.classify(header) {
            Disposition::Next => {}
            Disposition::Duplicate => {
                self.stats.duplicates += 1;
                return self
                    .receiver
                    .ack(header.boot_id)
                    .map(|seq| Action::Write(self.ack_frame(header.boot_id, seq)));
            }
            Disposition::Gap => {
                self.stats.gaps += 1;
                return self
                    .receiver
                    .ack(header.boot_id)
                    .map(|seq| Action::Write(self.ack_frame(header.boot_id, seq)));
            }
            Disposition::Unknown => return Some(self.resync(header.boot_id)),
            Disposition::Stale => return None,
        }
        if self.contexts_boot != Some(header.boot_id) {
            // A new session: its contexts are defined again.
            self.contexts.clear();
            self.contexts_boot = Some(header.boot_id);
        }
        let link_state = self.receiver.state_after(header);
        let records = match header.kind {
            Kind::Define => {
                let Ok(define) = message::decode::<Define<'_>>(payload) else {
                    return self.malformed(header);
                };
                let context = Context {
                    name: define.name.to_owned(),
                    kind: define.kind,
                    tags: define.tags.iter().map(|t| (*t).to_owned()).collect(),
                };
                self.contexts.insert(define.ctx, context);
                Vec::new()
            }
            _ => match self.points(payload, now_ms) {
                Ok(records) => records,
                Err(PointsError::Malformed) => return self.malformed(header),
                Err(PointsError::UnknownContext) => return Some(self.resync(header.boot_id)),
            },
        };
        self.commit_pending = true;
        Some(Action::Commit(Commit { records, state: link_state.to_bytes().to_vec(), header, link_state }))
    }

    /// The device's uptime seen: a reboot (uptime back) forgets the clock.
    fn observe_uptime(&mut self, uptime_ms: u64) {
        self.clock.observe_uptime(uptime_ms);
        if self.clock.best().is_none() {
            self.stamp_offset_ms = None;
        }
    }

    /// The offset to stamp with: the best estimate, kept while it moves less than
    /// [`RESTAMP_AFTER_MS`].
    fn stamp_offset(&mut self) -> Option<i64> {
        let best = self.clock.best()?.offset_ms;
        let offset = match self.stamp_offset_ms {
            Some(current) if (best - current).abs() <= RESTAMP_AFTER_MS => current,
            _ => best,
        };
        self.stamp_offset_ms = Some(offset);
        Some(offset)
    }

    fn malformed(&mut self, header: Header) -> Option<Action> {
        // A payload that passed the CRC but does not parse: a device bug, or a version this agent
        // does not read. Acknowledging it would lose it silently; resync asks for it again.
        self.stats.malformed += 1;
        log::warn!(
            "boot_id={:#x} seq={}: malformed payload, asking the device to resync",
            header.boot_id,
            header.seq
        );
        Some(self.resync(header.boot_id))
    }

    fn resync(&mut self, boot_id: u32) -> Action {
        self.stats.resync_requests += 1;
        Action::Write(frame(Kind::Nack, boot_id, 0, &encode(&self.receiver.resync(boot_id))))
    }

    fn ack_frame(&self, boot_id: u32, seq: u16) -> Vec<u8> {
        frame(Kind::Ack, boot_id, seq, &encode(&Ack { window: SERIAL_WINDOW_FRAMES }))
    }

    fn points(&mut self, payload: &[u8], now_ms: u64) -> Result<Vec<NewRecord>, PointsError> {
        let mut reader = DataReader::new(payload).map_err(|_| PointsError::Malformed)?;
        let header = reader.header;
        let wall_ms = match self.stamp_offset() {
            Some(offset) => (header.start_ms as i64).saturating_add(offset) as f64,
            None => {
                self.stats.time_fallbacks += 1;
                now_ms.saturating_sub(u64::from(header.interval_ms)) as f64
            }
        };
        let timestamp = Timestamp::from_secs_f64(wall_ms / 1000.0);
        let interval = (header.interval_ms / 1000).max(1);
        let mut records = Vec::new();
        let mut buf = vec![0u8; 512];
        let now = now_ms as f64 / 1000.0;
        for record in reader.by_ref() {
            let Record { ctx, value } = record.map_err(|_| PointsError::Malformed)?;
            let context = self.contexts.get(&ctx).ok_or(PointsError::UnknownContext)?;
            let outputs = outputs(&self.wrap, context.kind, &value, interval)?;
            let tags: Vec<Tag<'_>> = context.tags.iter().map(|t| Tag::parse(t)).collect();
            for output in outputs.iter().filter(|o| o.value.is_finite()) {
                let wrapped = Wrapped {
                    name: MetricName { base: &context.name, suffix: output.suffix },
                    kind: output.kind,
                    tags: &tags,
                    timestamp,
                    value: output.value,
                    interval: output.interval,
                };
                let len = loop {
                    match encode_wrapped(&wrapped, &mut buf) {
                        Ok(len) => break len,
                        Err(chouette_core::wire::EncodeError::BufferTooSmall { required }) => {
                            buf.resize(required, 0)
                        }
                        Err(_) => return Err(PointsError::Malformed),
                    }
                };
                records.push(NewRecord {
                    id: self.ids.next_id().to_vec(),
                    score: now,
                    value: buf[..len].to_vec(),
                });
            }
        }
        Ok(records)
    }
}

#[derive(Debug)]
enum PointsError {
    Malformed,
    UnknownContext,
}

/// A histogram summary without quantiles (`Value::Summary`): quantiles are NaN, so skipped.
struct Coarse {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Summary for Coarse {
    fn count(&self) -> u64 {
        self.count
    }
    fn sum(&self) -> f64 {
        self.sum
    }
    fn min(&self) -> f64 {
        self.min
    }
    fn max(&self) -> f64 {
        self.max
    }
    fn quantile(&self, p: f64) -> f64 {
        match p {
            0.0 => self.min,
            1.0 => self.max,
            _ => f64::NAN,
        }
    }
}

fn outputs<'c>(
    config: &'c WrapConfig,
    kind: MetricType,
    value: &Value<'_>,
    interval: u32,
) -> Result<Outputs<'c>, PointsError> {
    Ok(match *value {
        Value::Count { sum, n } => wrap::wrap_sum(config, kind == MetricType::Rate, sum, n, interval),
        Value::Gauge { last, sum, n } => wrap::wrap_gauge(config, last, sum, n, interval),
        Value::Set { distinct, samples } => wrap::wrap_set(config, distinct, samples, interval),
        Value::Samples(samples) => {
            let mut histogram = Histogram::new();
            for sample in samples.iter() {
                histogram.insert(sample).map_err(|_| PointsError::Malformed)?;
            }
            wrap::wrap_histogram(config, &histogram, interval)
        }
        Value::Sketch(bins) => {
            let sketch: QuantileSketch<SKETCH_BINS> = bins.to_sketch().map_err(|_| PointsError::Malformed)?;
            wrap::wrap_histogram(config, &Histogram::from_sketch(sketch), interval)
        }
        Value::Summary { count, sum, min, max } => {
            wrap::wrap_histogram(config, &Coarse { count, sum, min, max }, interval)
        }
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let len = message::encode(value, &mut buf).unwrap_or(0);
    buf[..len].to_vec()
}

fn frame(kind: Kind, boot_id: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; max_frame_bytes(payload.len())];
    let len = encode_frame(Header { kind, boot_id, seq }, payload, &mut out).unwrap_or(0);
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use chouette_core::link::message::{DataHeader, DataWriter};
    use chouette_core::link::window::Sender;

    use super::*;

    const BOOT: u32 = 0x00c0_ffee;

    /// The device side, built from the core's pieces.
    struct Device {
        sender: Sender<4>,
        framer: Framer<64>,
    }

    impl Device {
        fn new() -> Device {
            Device { sender: Sender::new(BOOT), framer: Framer::new() }
        }

        fn sequenced(&mut self, kind: Kind, payload: &[u8], now: u64) -> Vec<u8> {
            self.sender.send(kind, payload).expect("room");
            let mut out = Vec::new();
            let mut buf = [0u8; 600];
            while let Some(n) = self.sender.poll_transmit(now, &mut buf) {
                out.extend_from_slice(&buf[..n]);
            }
            out
        }

        fn hello(&self, uptime_ms: u64) -> Vec<u8> {
            let hello =
                Hello { device: "demo", uptime_ms, interval_ms: 1000, counters: DeviceCounters::default() };
            frame(Kind::Hello, BOOT, 0, &encode(&hello))
        }

        /// Frames the gateway wrote, decoded.
        fn read(&mut self, bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
            let mut frames = Vec::new();
            self.framer.feed(bytes, |r| {
                if let Ok(f) = r {
                    frames.push((f.header, f.payload.to_vec()))
                }
            });
            frames
        }
    }

    fn define(ctx: u16, kind: MetricType, name: &str, tags: &[&'static str]) -> Vec<u8> {
        let mut list = heapless::Vec::new();
        for tag in tags {
            list.push(*tag).expect("room");
        }
        let mut buf = [0u8; MAX_PAYLOAD];
        let n = message::encode(&Define { ctx, kind, name, tags: list }, &mut buf).expect("fits");
        buf[..n].to_vec()
    }

    fn data(start_ms: u64, values: &[(u16, Value<'_>)]) -> Vec<u8> {
        let mut buf = [0u8; MAX_PAYLOAD];
        let mut writer = DataWriter::new(&mut buf, DataHeader { start_ms, interval_ms: 1000, intervals: 1 })
            .expect("header");
        for (ctx, value) in values {
            writer.push(*ctx, value).expect("fits");
        }
        writer.payload().to_vec()
    }

    fn session(state: Option<LinkState>) -> Session {
        Session::new(state, WrapConfig::default(), IdGenerator::from_seed(7))
    }

    /// Polls until idle; commits succeed. The bytes written and the records committed.
    fn drive(session: &mut Session, now: u64) -> (Vec<u8>, Vec<NewRecord>) {
        let (mut written, mut records) = (Vec::new(), Vec::new());
        while let Some(action) = session.poll(now) {
            match action {
                Action::Write(bytes) => written.extend(bytes),
                Action::Commit(commit) => {
                    records.extend(commit.records.iter().cloned());
                    written.extend(session.committed(&commit));
                }
            }
        }
        (written, records)
    }

    /// Answers the gateway's time request as a device whose uptime is `wall - offset`.
    fn answer_time(device: &mut Device, written: &[u8], wall: u64, offset: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for (header, payload) in device.read(written) {
            if header.kind == Kind::TimeRequest {
                let request: TimeRequest = message::decode(&payload).expect("request");
                let response = TimeResponse {
                    t0_ms: request.t0_ms,
                    uptime_ms: wall - offset,
                    counters: DeviceCounters::default(),
                };
                out.extend(frame(Kind::TimeResponse, BOOT, header.seq, &encode(&response)));
            }
        }
        out
    }

    fn values(records: &[NewRecord]) -> Vec<(String, f64, f64)> {
        records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
                (
                    v["metric"].as_str().expect("metric").to_owned(),
                    v["points"][0][0].as_f64().expect("timestamp"),
                    v["points"][0][1].as_f64().expect("value"),
                )
            })
            .collect()
    }

    #[test]
    fn data_is_stamped_through_the_time_exchange_committed_then_acknowledged() {
        let mut device = Device::new();
        let mut session = session(None);
        let wall = 1_700_000_000_000u64;
        let offset = wall - 50_000; // device uptime 50 s
        session.connected(wall);
        let (first, _) = drive(&mut session, wall);
        let kinds: Vec<Kind> = device.read(&first).iter().map(|(h, _)| h.kind).collect();
        assert_eq!(kinds, [Kind::Hello, Kind::TimeRequest]);
        // The device's hello, a define and a data frame arrive before the time answer: data waits.
        session.receive(&device.hello(50_000));
        session.receive(&device.sequenced(
            Kind::Define,
            &define(0, MetricType::Count, "fw.ticks", &["room:lab"]),
            0,
        ));
        session.receive(&device.sequenced(
            Kind::Data,
            &data(40_000, &[(0, Value::Count { sum: 10.0, n: 10 })]),
            0,
        ));
        let (written, records) = drive(&mut session, wall + 5);
        let acks: Vec<u16> =
            device.read(&written).iter().filter(|(h, _)| h.kind == Kind::Ack).map(|(h, _)| h.seq).collect();
        assert_eq!(acks, [0], "the define is committed; the data waits for the clock");
        assert!(records.is_empty());
        // The answer to the request sent at `wall`, read by the device at wall + 5, arrives at
        // wall + 10.
        let mut replay = Device::new();
        session.receive(&answer_time(&mut replay, &first, wall + 5, offset));
        let (written, records) = drive(&mut session, wall + 10);
        let acks: Vec<u16> =
            device.read(&written).iter().filter(|(h, _)| h.kind == Kind::Ack).map(|(h, _)| h.seq).collect();
        assert_eq!(acks, [1]);
        // Uptime 40 s is wall - 10 s, within the exchange's half round trip.
        let points = values(&records);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].0, "fw.ticks");
        assert_eq!(points[0].2, 10.0);
        let expected = (offset + 40_000) as f64 / 1000.0;
        assert!((points[0].1 - expected).abs() <= 0.01, "{} vs {expected}", points[0].1);
        assert_eq!(session.stats().time_fallbacks, 0);
        // The same frame again (a lost ack): acknowledged, not committed again.
        session.receive(&frame(
            Kind::Data,
            BOOT,
            1,
            &data(40_000, &[(0, Value::Count { sum: 10.0, n: 10 })]),
        ));
        let (written, records) = drive(&mut session, wall + 20);
        assert!(records.is_empty());
        let acks: Vec<u16> =
            device.read(&written).iter().filter(|(h, _)| h.kind == Kind::Ack).map(|(h, _)| h.seq).collect();
        assert_eq!(acks, [1]);
        assert_eq!(session.stats().duplicates, 1);
    }

    #[test]
    fn without_a_clock_data_is_stamped_on_receipt_after_the_wait() {
        let mut device = Device::new();
        let mut session = session(None);
        session.connected(1_000_000);
        drive(&mut session, 1_000_000);
        session.receive(&device.sequenced(Kind::Define, &define(3, MetricType::Gauge, "t", &[]), 0));
        session.receive(&device.sequenced(
            Kind::Data,
            &data(1, &[(3, Value::Gauge { last: 20.5, sum: 41.0, n: 2 })]),
            0,
        ));
        let (_, records) = drive(&mut session, 1_000_000 + SYNC_WAIT_MS - 1);
        assert!(records.is_empty());
        let (_, records) = drive(&mut session, 1_000_000 + SYNC_WAIT_MS);
        assert_eq!(
            values(&records),
            [("t".to_owned(), (1_000_000 + SYNC_WAIT_MS - 1000) as f64 / 1000.0, 20.5)]
        );
        assert_eq!(session.stats().time_fallbacks, 1);
    }

    #[test]
    fn after_a_gateway_restart_unknown_contexts_ask_for_a_resync_and_nothing_counts_twice() {
        let mut device = Device::new();
        let mut session = session(None);
        session.connected(0);
        session.clock.on_response(0, 0, 0);
        drive(&mut session, 0);
        session.receive(&device.sequenced(Kind::Define, &define(0, MetricType::Count, "c", &[]), 0));
        session.receive(&device.sequenced(Kind::Data, &data(0, &[(0, Value::Count { sum: 1.0, n: 1 })]), 0));
        let (_, records) = drive(&mut session, 1);
        assert_eq!(records.len(), 1);
        // The gateway restarts from the stored state: frame 1 again is a duplicate (acked),
        // frame 2 needs context 0, which the new process does not know: resync through 1.
        let state = session.link_state();
        let mut session = self::session(state);
        session.connected(10);
        session.clock.on_response(10, 10, 10);
        drive(&mut session, 10);
        session.receive(&frame(Kind::Data, BOOT, 1, &data(0, &[(0, Value::Count { sum: 1.0, n: 1 })])));
        session.receive(&frame(Kind::Data, BOOT, 2, &data(1000, &[(0, Value::Count { sum: 2.0, n: 2 })])));
        let (written, records) = drive(&mut session, 11);
        assert!(records.is_empty());
        let replies = device.read(&written);
        assert_eq!(replies[0].0.kind, Kind::Ack);
        assert_eq!(replies[0].0.seq, 1);
        assert_eq!(replies[1].0.kind, Kind::Nack);
        assert_eq!(message::decode::<Nack>(&replies[1].1), Ok(Nack::Resync { through: Some(1) }));
        // The device's new session: define again, then the data, from seq 0.
        let new_boot = BOOT + 1;
        session.receive(&frame(Kind::Define, new_boot, 0, &define(0, MetricType::Count, "c", &[])));
        session.receive(&frame(
            Kind::Data,
            new_boot,
            1,
            &data(1000, &[(0, Value::Count { sum: 2.0, n: 2 })]),
        ));
        let (_, records) = drive(&mut session, 12);
        assert_eq!(values(&records).iter().map(|p| p.2).collect::<Vec<_>>(), [2.0]);
        assert_eq!(session.link_state().map(|s| (s.boot_id, s.seq, s.retired[0])), Some((new_boot, 1, BOOT)));
        assert_eq!(session.stats().resync_requests, 1);
    }

    #[test]
    fn histograms_become_the_configured_aggregates() {
        let mut device = Device::new();
        let mut session = session(None);
        session.connected(0);
        session.clock.on_response(0, 0, 0);
        drive(&mut session, 0);
        session.receive(&device.sequenced(Kind::Define, &define(1, MetricType::Histogram, "lat", &[]), 0));
        let mut buf = [0u8; MAX_PAYLOAD];
        let mut writer =
            DataWriter::new(&mut buf, DataHeader { start_ms: 0, interval_ms: 1000, intervals: 1 })
                .expect("header");
        writer.push_samples(1, [1.0, 2.0, 3.0, 4.0].into_iter()).expect("fits");
        let payload = writer.payload().to_vec();
        session.receive(&device.sequenced(Kind::Data, &payload, 0));
        let (_, records) = drive(&mut session, 1);
        let mut points: Vec<(String, f64)> = values(&records).into_iter().map(|(n, _, v)| (n, v)).collect();
        points.sort_by(|a, b| a.0.cmp(&b.0));
        // numpy's interpolation gives 3.8499999999999996 for the 95th percentile; serde_json
        // reads it back exactly only with its float_roundtrip feature (on when the workspace
        // builds together), hence the tolerance.
        let expected = [
            ("lat.95percentile", 3.8499999999999996),
            ("lat.avg", 2.5),
            ("lat.count", 4.0),
            ("lat.max", 4.0),
            ("lat.median", 2.5),
        ];
        assert_eq!(points.len(), expected.len(), "{points:?}");
        for ((name, value), (want_name, want)) in points.iter().zip(expected) {
            assert_eq!(name, want_name);
            assert!((value - want).abs() < 1e-12, "{name}: {value} vs {want}");
        }
    }

    #[test]
    fn damaged_frames_get_a_nack_at_most_every_200_ms() {
        let mut device = Device::new();
        let mut session = session(None);
        session.connected(0);
        drive(&mut session, 0);
        session.receive(&device.hello(1));
        let mut bad = device.sequenced(Kind::Define, &define(0, MetricType::Count, "c", &[]), 0);
        bad[3] ^= 0x10;
        session.receive(&bad);
        session.receive(&bad);
        let (written, _) = drive(&mut session, 50);
        let nacks: Vec<_> = device.read(&written).into_iter().filter(|(h, _)| h.kind == Kind::Nack).collect();
        assert_eq!(nacks.len(), 1);
        assert_eq!(nacks[0].0.boot_id, BOOT);
        assert_eq!(message::decode::<Nack>(&nacks[0].1), Ok(Nack::Damaged));
        assert_eq!(session.stats().crc_failures, 2);
    }
}
