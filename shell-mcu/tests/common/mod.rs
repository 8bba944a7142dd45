//! The test gateway and a lossy in-memory line, shared by the device's in-memory tests
//! (`shell-mcu/tests/link.rs`) and the firmware's QEMU suite (`tests/tests/firmware_qemu.rs`,
//! through `#[path]`): the core's exactly-once `Receiver`, its `ClockSync`, a define table, and
//! the totals the gateway committed per metric name.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};

use chouette_core::link::message::{
    self, Ack, DataReader, Define, DeviceCounters, Hello, Nack, TimeRequest, TimeResponse, Value as WireValue,
};
use chouette_core::link::time::{ClockSync, TimeSample};
use chouette_core::link::window::{Disposition, Receiver};
use chouette_core::link::{encode_frame, max_frame_bytes, Framer, Header, Kind};
use chouette_core::metric::{MetricType, OutputType};
use chouette_core::wrap::{wrap_gauge, wrap_sum, WrapConfig};

/// A point as the agent would emit it: the core's `wrap` functions applied to a record, stamped
/// with the wall time of the interval's start (`None` before any time exchange).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub kind: OutputType,
    pub value: f64,
    pub interval: Option<u32>,
    pub wall_ms: Option<i64>,
}

/// xorshift64*: the channel's faults, reproducible from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One direction of the line: each chunk written may lose a byte, get a bit flipped or arrive
/// twice (percentages per chunk); `down` drops everything (the gateway unplugged).
pub struct Line {
    pub bytes: VecDeque<u8>,
    pub rng: Rng,
    pub faults: u64,
    pub down: bool,
    pub carried: u64,
}

impl Line {
    pub fn new(seed: u64, faults: u64) -> Self {
        Line { bytes: VecDeque::new(), rng: Rng(seed | 1), faults, down: false, carried: 0 }
    }

    pub fn send(&mut self, chunk: &[u8]) {
        if self.down {
            return;
        }
        let mut chunk = chunk.to_vec();
        if self.faults > 0 && !chunk.is_empty() {
            if self.rng.chance(self.faults) {
                let at = (self.rng.next() % chunk.len() as u64) as usize;
                chunk.remove(at);
            }
            if self.rng.chance(self.faults) && !chunk.is_empty() {
                let at = (self.rng.next() % chunk.len() as u64) as usize;
                chunk[at] ^= 1 << (self.rng.next() % 8);
            }
        }
        self.carried += chunk.len() as u64;
        self.bytes.extend(&chunk);
        if self.faults > 0 && self.rng.chance(self.faults / 2) {
            self.bytes.extend(&chunk);
        }
    }
}

/// What the gateway committed, per metric name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub count_sum: f64,
    pub count_n: u64,
    pub gauge_last: Option<(u64, f64)>,
    pub gauge_n: u64,
    pub histogram_count: u64,
    pub histogram_sum: f64,
    pub intervals: u64,
}

/// The test gateway: the core's exactly-once receiver, the clock exchange and a define table.
pub struct Gateway {
    pub framer: Framer<1024>,
    pub receiver: Receiver,
    pub clock: ClockSync<8>,
    pub defines: HashMap<u16, (MetricType, String, Vec<String>)>,
    pub totals: HashMap<String, Totals>,
    pub last_boot: Option<u32>,
    pub hellos: Vec<(String, u64)>,
    pub next_time_request_ms: u64,
    pub time_seq: u16,
    pub wall_offset_ms: u64,
    pub last_counters: Option<DeviceCounters>,
    pub frames: u64,
    pub resyncs_sent: u64,
    /// Count and gauge records turned into points (Datadog wrapper).
    pub points: Vec<Point>,
    /// Every time exchange: the device's uptime and what it gave.
    pub time_samples: Vec<(u64, TimeSample)>,
}

impl Gateway {
    pub fn new() -> Self {
        Gateway {
            framer: Framer::new(),
            receiver: Receiver::new(None),
            clock: ClockSync::new(),
            defines: HashMap::new(),
            totals: HashMap::new(),
            last_boot: None,
            hellos: Vec::new(),
            next_time_request_ms: 0,
            time_seq: 0,
            wall_offset_ms: 1_700_000_000_000,
            last_counters: None,
            frames: 0,
            resyncs_sent: 0,
            time_samples: Vec::new(),
            points: Vec::new(),
        }
    }

    /// A restart: the define table and the framer are gone, the committed `LinkState` stays (it
    /// is persisted with the points); the gateway says HELLO.
    pub fn restart(&mut self, line: &mut Line) {
        self.framer = Framer::new();
        self.receiver = Receiver::new(self.receiver.state());
        self.defines.clear();
        self.reply(line, Kind::Hello, 0, 0, &[]);
    }

    pub fn reply(&self, line: &mut Line, kind: Kind, boot_id: u32, seq: u16, payload: &[u8]) {
        let mut out = [0u8; max_frame_bytes(64)];
        let len = encode_frame(Header { kind, boot_id, seq }, payload, &mut out).expect("small frame");
        line.send(&out[..len]);
    }

    pub fn ack(&self, line: &mut Line, boot_id: u32) {
        if let Some(seq) = self.receiver.ack(boot_id) {
            let mut payload = [0u8; 8];
            let len = message::encode(&Ack { window: 4 }, &mut payload).expect("fits");
            self.reply(line, Kind::Ack, boot_id, seq, &payload[..len]);
        }
    }

    pub fn nack(&mut self, line: &mut Line, boot_id: u32, nack: Nack) {
        let mut payload = [0u8; 16];
        let len = message::encode(&nack, &mut payload).expect("fits");
        if matches!(nack, Nack::Resync { .. }) {
            self.resyncs_sent += 1;
        }
        self.reply(line, Kind::Nack, boot_id, 0, &payload[..len]);
    }

    pub fn poll(&mut self, now_ms: u64, rx: &mut Line, tx: &mut Line) {
        let bytes: Vec<u8> = rx.bytes.drain(..).collect();
        let mut frames = Vec::new();
        let mut damaged = false;
        self.framer.feed(&bytes, |frame| match frame {
            Ok(frame) => frames.push((frame.header, frame.payload.to_vec())),
            Err(_) => damaged = true,
        });
        if damaged {
            if let Some(boot_id) = self.last_boot {
                self.nack(tx, boot_id, Nack::Damaged);
            }
        }
        for (header, payload) in frames {
            self.frames += 1;
            self.handle(now_ms, header, &payload, tx);
        }
        if now_ms >= self.next_time_request_ms {
            self.next_time_request_ms = now_ms + 1000;
            self.time_seq = self.time_seq.wrapping_add(1);
            let mut payload = [0u8; 16];
            let request = TimeRequest { t0_ms: self.wall_offset_ms + now_ms };
            let len = message::encode(&request, &mut payload).expect("fits");
            self.reply(tx, Kind::TimeRequest, 0, self.time_seq, &payload[..len]);
        }
    }

    pub fn handle(&mut self, now_ms: u64, header: Header, payload: &[u8], tx: &mut Line) {
        match header.kind {
            Kind::Hello => {
                let hello: Hello<'_> = message::decode(payload).expect("a valid hello");
                self.hellos.push((hello.device.to_string(), hello.uptime_ms));
                self.last_counters = Some(hello.counters);
            }
            Kind::TimeResponse => {
                let response: TimeResponse = message::decode(payload).expect("a valid time response");
                let t1_ms = self.wall_offset_ms + now_ms;
                if let Some(sample) = self.clock.on_response(response.t0_ms, t1_ms, response.uptime_ms) {
                    self.time_samples.push((response.uptime_ms, sample));
                }
                self.last_counters = Some(response.counters);
            }
            Kind::Define | Kind::Data => {
                self.last_boot = Some(header.boot_id);
                match self.receiver.classify(header) {
                    Disposition::Next => self.commit(header, payload, tx),
                    Disposition::Duplicate | Disposition::Gap => self.ack(tx, header.boot_id),
                    Disposition::Unknown => {
                        let nack = self.receiver.resync(header.boot_id);
                        self.nack(tx, header.boot_id, nack);
                    }
                    Disposition::Stale => {}
                }
            }
            other => panic!("the device sent a {other:?} frame"),
        }
    }

    pub fn commit(&mut self, header: Header, payload: &[u8], tx: &mut Line) {
        if header.kind == Kind::Define {
            let define: Define<'_> = message::decode(payload).expect("a valid define");
            let tags = define.tags.iter().map(|t| t.to_string()).collect();
            self.defines.insert(define.ctx, (define.kind, define.name.to_string(), tags));
        } else {
            let reader = DataReader::new(payload).expect("a data header");
            let records: Vec<_> = reader.map(|r| r.expect("a valid record")).collect();
            if records.iter().any(|r| !self.defines.contains_key(&r.ctx)) {
                // The define table is gone (restart): a new session defines every context again.
                let nack = self.receiver.resync(header.boot_id);
                self.nack(tx, header.boot_id, nack);
                return;
            }
            let data = DataReader::new(payload).expect("a data header").header;
            let end_ms = data.start_ms + u64::from(data.interval_ms);
            for record in records {
                let (kind, name, _) = &self.defines[&record.ctx];
                let totals = self.totals.entry(name.clone()).or_default();
                totals.intervals += u64::from(data.intervals);
                let interval_secs = data.interval_ms / 1000;
                let wall_ms = self.clock.to_wall_ms(data.start_ms);
                let wrap = WrapConfig::default();
                let outputs = match record.value {
                    WireValue::Count { sum, n } => {
                        wrap_sum(&wrap, *kind == MetricType::Rate, sum, n, interval_secs)
                    }
                    WireValue::Gauge { last, sum, n } => wrap_gauge(&wrap, last, sum, n, interval_secs),
                    _ => Default::default(),
                };
                for output in outputs {
                    let name = match output.suffix {
                        Some(suffix) => format!("{name}.{suffix}"),
                        None => name.clone(),
                    };
                    let point = Point {
                        name,
                        kind: output.kind,
                        value: output.value,
                        interval: output.interval,
                        wall_ms,
                    };
                    self.points.push(point);
                }
                match (kind, record.value) {
                    (MetricType::Count, WireValue::Count { sum, n }) => {
                        totals.count_sum += sum;
                        totals.count_n += n;
                    }
                    (MetricType::Gauge, WireValue::Gauge { last, n, .. }) => {
                        totals.gauge_n += n;
                        if totals.gauge_last.is_none_or(|(end, _)| end <= end_ms) {
                            totals.gauge_last = Some((end_ms, last));
                        }
                    }
                    (MetricType::Histogram, WireValue::Samples(samples)) => {
                        totals.histogram_count += samples.len() as u64;
                        totals.histogram_sum += samples.iter().sum::<f64>();
                    }
                    (MetricType::Histogram, WireValue::Sketch(sketch)) => {
                        totals.histogram_count += sketch.parts.count;
                        totals.histogram_sum += sketch.parts.sum;
                    }
                    (MetricType::Histogram, WireValue::Summary { count, sum, .. }) => {
                        totals.histogram_count += count;
                        totals.histogram_sum += sum;
                    }
                    (kind, value) => panic!("{name}: a {kind:?} context carried {value:?}"),
                }
            }
        }
        let state = self.receiver.state_after(header);
        self.receiver.committed(state);
        self.ack(tx, header.boot_id);
    }
}
