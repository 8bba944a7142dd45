//! The serial link above the frames: payload bytes (goldens, round trips), the Go-Back-N window
//! and the exactly-once receiver (conservation through a lossy line and gateway restarts), the
//! clock offset.

use std::collections::VecDeque;

use chouette_core::link::message::{
    self, Ack, DataHeader, DataReader, DataWriter, Define, DeviceCounters, Hello, Nack, Num, Record, Value,
};
use chouette_core::link::time::{ClockSync, TimeSample};
use chouette_core::link::window::{Disposition, LinkState, Receiver, Sender, RTO_MAX_MS};
use chouette_core::link::{encode_frame, max_frame_bytes, Framer, Header, Kind, MAX_PAYLOAD};
use chouette_core::metric::MetricType;
use chouette_core::sketch::QuantileSketch;
use proptest::prelude::*;

#[test]
fn numbers_take_their_shortest_exact_form() {
    let len = |v: f64| message::encode(&Num::of(v), &mut [0u8; 16]).expect("fits");
    assert_eq!(Num::of(10.0), Num::Int(10));
    assert_eq!(len(10.0), 2);
    assert_eq!(Num::of(20.3), Num::Dec1(203));
    assert_eq!(len(20.3), 3);
    assert_eq!(Num::of(-0.25), Num::Dec2(-25));
    assert_eq!(Num::of(0.5), Num::Dec1(5));
    assert_eq!(Num::of(1.0e300), Num::F64(1.0e300));
    assert_eq!(Num::of(1.5e-7), Num::F64(1.5e-7));
    assert_eq!(Num::of(2f64.powi(-15)), Num::F32(2f32.powi(-15)));
    assert_eq!(len(0.1 + 0.2), 9, "0.30000000000000004 has no shorter exact form");
    // -0.0 keeps its sign bit.
    assert_eq!(Num::of(-0.0).value().to_bits(), (-0.0f64).to_bits());
}

#[test]
fn golden_data_payload() {
    // postcard: varint u64 1000 = e8 07, u32 1000 = e8 07, u16 1 = 01; ctx 0, tag Count (0),
    // Num::Int (0) of 10 zigzag = 0x14, n = 10.
    let mut out = [0u8; MAX_PAYLOAD];
    let mut writer =
        DataWriter::new(&mut out, DataHeader { start_ms: 1000, interval_ms: 1000, intervals: 1 })
            .expect("header");
    writer.push(0, &Value::Count { sum: 10.0, n: 10 }).expect("fits");
    assert_eq!(writer.payload(), [0xe8, 0x07, 0xe8, 0x07, 0x01, 0x00, 0x00, 0x00, 0x14, 0x0a]);
}

#[test]
fn records_round_trip() {
    let mut out = [0u8; MAX_PAYLOAD];
    let header = DataHeader { start_ms: 123_456, interval_ms: 2000, intervals: 2 };
    let mut writer = DataWriter::new(&mut out, header).expect("header");
    writer.push(1, &Value::Count { sum: 7.0, n: 7 }).expect("fits");
    writer.push(2, &Value::Gauge { last: 20.3, sum: 203.7, n: 10 }).expect("fits");
    writer.push_samples(3, [1.0, 2.5, 7.0].into_iter()).expect("fits");
    writer.push(4, &Value::Summary { count: 5, sum: 10.0, min: 1.0, max: 3.0 }).expect("fits");
    writer.push(5, &Value::Set { distinct: 3, samples: 9 }).expect("fits");
    let len = writer.len();
    let mut reader = DataReader::new(&out[..len]).expect("header");
    assert_eq!(reader.header, header);
    let records: Vec<Record<'_>> = reader.by_ref().collect::<Result<_, _>>().expect("valid");
    assert_eq!(records.len(), 5);
    assert_eq!(records[0], Record { ctx: 1, value: Value::Count { sum: 7.0, n: 7 } });
    assert_eq!(records[1], Record { ctx: 2, value: Value::Gauge { last: 20.3, sum: 203.7, n: 10 } });
    let Value::Samples(samples) = records[2].value else { panic!("samples: {:?}", records[2]) };
    assert_eq!(samples.iter().collect::<Vec<_>>(), [1.0, 2.5, 7.0]);
    assert_eq!(records[3].value, Value::Summary { count: 5, sum: 10.0, min: 1.0, max: 3.0 });
    assert_eq!(records[4].value, Value::Set { distinct: 3, samples: 9 });
}

#[test]
fn a_sketch_crosses_the_link_unchanged() {
    let mut sketch = QuantileSketch::<1000>::new();
    for i in 0..1000 {
        sketch.insert(1.0 + f64::from(i % 97) * 0.37).expect("finite");
    }
    sketch.insert(0.0).expect("finite");
    sketch.insert(-3.5).expect("finite");
    let mut out = [0u8; MAX_PAYLOAD];
    let mut writer = DataWriter::new(&mut out, DataHeader { start_ms: 0, interval_ms: 1000, intervals: 1 })
        .expect("header");
    writer.push_sketch(9, &sketch).expect("fits");
    let len = writer.len();
    let record = DataReader::new(&out[..len]).expect("header").next().expect("one").expect("valid");
    let Value::Sketch(bins) = record.value else { panic!("sketch: {record:?}") };
    let back: QuantileSketch<1000> = bins.to_sketch().expect("consistent");
    assert_eq!(back.parts(), sketch.parts());
    assert_eq!(back.bins().collect::<Vec<_>>(), sketch.bins().collect::<Vec<_>>());
    for q in [0.0, 0.1, 0.5, 0.95, 0.99, 1.0] {
        assert_eq!(back.quantile(q), sketch.quantile(q), "q={q}");
    }
}

#[test]
fn a_full_payload_refuses_a_record_and_keeps_what_it_had() {
    let mut out = [0u8; MAX_PAYLOAD];
    let mut writer = DataWriter::new(&mut out, DataHeader { start_ms: 0, interval_ms: 1000, intervals: 1 })
        .expect("header");
    let mut pushed = 0;
    while writer.push(pushed, &Value::Gauge { last: 0.1 + 0.2, sum: 0.1 + 0.2, n: 1 }).is_ok() {
        pushed += 1;
    }
    let before = writer.payload().to_vec();
    assert!(before.len() <= MAX_PAYLOAD);
    assert_eq!(
        writer.push(999, &Value::Gauge { last: 1.0e300, sum: 1.0e300, n: 1 }),
        Err(message::MessageError::Full)
    );
    assert_eq!(writer.payload(), &before[..]);
    assert_eq!(DataReader::new(&before).expect("header").count(), usize::from(pushed));
}

#[test]
fn hello_and_define_round_trip() {
    let mut out = [0u8; MAX_PAYLOAD];
    let hello = Hello {
        device: "demo",
        uptime_ms: 5_000,
        interval_ms: 1000,
        counters: DeviceCounters { merged_intervals: 3, ..DeviceCounters::default() },
    };
    let n = message::encode(&hello, &mut out).expect("fits");
    assert_eq!(message::decode::<Hello<'_>>(&out[..n]), Ok(hello));
    let mut tags = heapless::Vec::new();
    tags.push("room:lab").expect("room");
    tags.push("bare").expect("room");
    let define = Define { ctx: 300, kind: MetricType::Histogram, name: "fw.demo.latency_ms", tags };
    let n = message::encode(&define, &mut out).expect("fits");
    assert_eq!(message::decode::<Define<'_>>(&out[..n]), Ok(define));
    // Trailing bytes and truncation are refused.
    assert!(message::decode::<Define<'_>>(&out[..n - 1]).is_err());
    out[n] = 7;
    assert!(message::decode::<Define<'_>>(&out[..=n]).is_err());
}

#[test]
fn wire_bytes_per_counter_or_gauge_point_stay_within_budget() {
    // 40 counters and 40 gauges of a board in one 1 s interval, contexts defined: bytes on the
    // wire (frames, COBS, delimiters) per point.
    let mut out = [0u8; MAX_PAYLOAD];
    let mut writer =
        DataWriter::new(&mut out, DataHeader { start_ms: 3_600_000, interval_ms: 1000, intervals: 1 })
            .expect("header");
    let mut frames = 0;
    let mut wire = 0;
    let mut points = 0;
    let flush = |writer: &DataWriter<'_>, frames: &mut usize, wire: &mut usize| {
        let mut frame = [0u8; 600];
        *wire += encode_frame(Header { kind: Kind::Data, boot_id: 7, seq: 1 }, writer.payload(), &mut frame)
            .expect("frame");
        *frames += 1;
    };
    for i in 0..80u16 {
        let value = if i % 2 == 0 {
            Value::Count { sum: f64::from(i % 13), n: u64::from(i % 13) }
        } else {
            let v = 20.0 + f64::from(i) / 10.0;
            Value::Gauge { last: v, sum: v * 10.0, n: 10 }
        };
        if writer.push(i, &value).is_err() {
            flush(&writer, &mut frames, &mut wire);
            writer = DataWriter::new(
                &mut out,
                DataHeader { start_ms: 3_600_000, interval_ms: 1000, intervals: 1 },
            )
            .expect("header");
            writer.push(i, &value).expect("fits an empty payload");
        }
        points += 1;
    }
    flush(&writer, &mut frames, &mut wire);
    let per_point = wire as f64 / f64::from(points);
    eprintln!("{points} points in {frames} frames, {wire} B on the wire: {per_point:.2} B per point");
    assert!(per_point <= 12.0, "{per_point:.2} B per counter or gauge point");
}

#[test]
fn link_state_bytes_round_trip() {
    let state = LinkState { boot_id: 0xdead_beef, seq: 65_535, retired: [1, 2, 3] };
    assert_eq!(LinkState::from_bytes(&state.to_bytes()), Some(state));
    assert_eq!(LinkState::from_bytes(&state.to_bytes()[1..]), None);
}

#[test]
fn the_receiver_accepts_in_order_once() {
    let header = |boot_id, seq| Header { kind: Kind::Data, boot_id, seq };
    let mut receiver = Receiver::new(None);
    assert_eq!(receiver.classify(header(5, 1)), Disposition::Unknown, "not a session's first frame");
    assert_eq!(receiver.resync(5), Nack::Resync { through: None });
    assert_eq!(receiver.classify(header(5, 0)), Disposition::Next);
    receiver.committed(receiver.state_after(header(5, 0)));
    assert_eq!(receiver.classify(header(5, 0)), Disposition::Duplicate);
    assert_eq!(receiver.classify(header(5, 2)), Disposition::Gap);
    assert_eq!(receiver.classify(header(5, 1)), Disposition::Next);
    receiver.committed(receiver.state_after(header(5, 1)));
    assert_eq!(receiver.ack(5), Some(1));
    assert_eq!(receiver.ack(6), None);
    // A new session retires the old one: its late frames are stale, not new.
    assert_eq!(receiver.classify(header(6, 0)), Disposition::Next);
    receiver.committed(receiver.state_after(header(6, 0)));
    assert_eq!(receiver.state().map(|s| s.retired[0]), Some(5));
    assert_eq!(receiver.classify(header(5, 2)), Disposition::Stale);
    assert_eq!(receiver.classify(header(5, 0)), Disposition::Stale);
    // Sequence numbers wrap.
    let mut receiver = Receiver::new(Some(LinkState { boot_id: 9, seq: u16::MAX, retired: [0; 3] }));
    assert_eq!(receiver.classify(header(9, 0)), Disposition::Next);
    assert_eq!(receiver.classify(header(9, u16::MAX - 3)), Disposition::Duplicate);
    let stats = receiver.stats();
    assert_eq!((stats.duplicates, stats.gaps, stats.unknown, stats.stale), (1, 0, 0, 0));
}

#[test]
fn the_sender_backs_off_and_resends_everything_unacknowledged() {
    let mut sender = Sender::<4>::new(11);
    let mut buf = [0u8; 600];
    for i in 0..5u8 {
        let sent = sender.send(Kind::Data, &[i]);
        assert_eq!(sent.is_ok(), i < 4, "the window holds 4");
    }
    let mut firsts = 0;
    while sender.poll_transmit(0, &mut buf).is_some() {
        firsts += 1;
    }
    assert_eq!(firsts, 4);
    assert_eq!(sender.poll_timeout(), Some(500));
    assert!(sender.poll_transmit(499, &mut buf).is_none());
    let mut again = 0;
    while sender.poll_transmit(500, &mut buf).is_some() {
        again += 1;
    }
    assert_eq!(again, 4, "go back N");
    assert_eq!(sender.poll_timeout(), Some(1500), "the timeout doubled");
    // Backoff caps at 8 s.
    let mut now = 1500;
    for _ in 0..10 {
        while sender.poll_transmit(now, &mut buf).is_some() {}
        now = sender.poll_timeout().expect("in flight");
    }
    assert_eq!(sender.poll_timeout().map(|t| t - now), Some(0));
    while sender.poll_transmit(now, &mut buf).is_some() {}
    assert_eq!(sender.poll_timeout().map(|t| t - now), Some(RTO_MAX_MS));
    // A cumulative ack releases through its seq and resets the timeout.
    assert_eq!(sender.on_ack(12, 1, 4, now), 0, "another session's ack");
    assert_eq!(sender.on_ack(11, 1, 4, now), 2);
    assert_eq!(sender.in_flight(), 2);
    assert_eq!(sender.poll_timeout(), Some(now + 500));
    assert_eq!(sender.on_ack(11, 1, 4, now), 0, "already released");
    // A resync hands back what is unacknowledged and restarts at seq 0.
    let mut unsent = Vec::new();
    assert!(sender.on_resync(11, Some(2), 99, |kind, payload| unsent.push((kind, payload.to_vec()))));
    assert_eq!(unsent, [(Kind::Data, vec![3])]);
    assert_eq!((sender.boot_id(), sender.in_flight()), (99, 0));
    assert_eq!(sender.send(Kind::Data, &[3]), Ok(0));
}

#[test]
fn the_clock_offset_comes_from_the_fastest_exchange() {
    let mut sync = ClockSync::<4>::new();
    assert_eq!(sync.to_wall_ms(0), None);
    // Truth: wall = uptime + 1_000_000. Symmetric 10 ms legs, then a slow answer (80 ms back).
    assert_eq!(
        sync.on_response(1_005_000, 1_005_020, 5_010),
        Some(TimeSample { offset_ms: 1_000_000, rtt_ms: 20 })
    );
    sync.on_response(1_006_000, 1_006_090, 6_010);
    assert_eq!(sync.best().map(|s| s.offset_ms), Some(1_000_000));
    assert_eq!(sync.to_wall_ms(7_000), Some(1_007_000));
    // A reboot (uptime back) forgets the samples.
    sync.observe_uptime(100);
    assert_eq!(sync.best(), None);
    assert_eq!(TimeSample::new(10, 5, 0), None, "the wall clock stepped back");
}

/// A line that drops bytes, flips bits and repeats chunks, seeded.
struct Line {
    rng: u64,
    drop: f64,
    flip: f64,
    dup: f64,
}

impl Line {
    fn next(&mut self) -> f64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn carry(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        for &byte in bytes {
            if self.next() < self.drop {
                continue;
            }
            let byte = if self.next() < self.flip { byte ^ (1 << (self.next() * 8.0) as u32) } else { byte };
            out.push(byte);
        }
        if self.next() < self.dup {
            let chunk = out[start..].to_vec();
            out.extend_from_slice(&chunk);
        }
    }
}

/// The gateway of the simulation: commits payloads in order, persists its state, may restart
/// (losing its contexts: the next new frame gets a resync).
struct Gateway {
    receiver: Receiver,
    persisted: Option<LinkState>,
    committed: Vec<u32>,
    lost_contexts: bool,
    boot: u32,
    framer: Framer<600>,
}

impl Gateway {
    fn frame(&mut self, kind: Kind, header: Header, payload: Option<&[u8]>, reply: &mut Vec<u8>) {
        let mut buf = [0u8; 64];
        let mut send = |kind, boot_id, seq, payload: &[u8], reply: &mut Vec<u8>| {
            let n = encode_frame(Header { kind, boot_id, seq }, payload, &mut buf).expect("frame");
            reply.extend_from_slice(&buf[..n]);
        };
        let Some(payload) = payload else {
            // Damaged: resend now.
            let n = message::encode(&Nack::Damaged, &mut [0u8; 8]).expect("fits");
            let mut body = [0u8; 8];
            message::encode(&Nack::Damaged, &mut body).expect("fits");
            send(Kind::Nack, self.boot, 0, &body[..n], reply);
            return;
        };
        assert_eq!(kind, Kind::Data);
        self.boot = header.boot_id;
        let mut body = [0u8; 16];
        match self.receiver.classify(header) {
            Disposition::Next
                if self.lost_contexts
                    && !(header.seq == 0 && self.receiver.ack(header.boot_id).is_none()) =>
            {
                let n = message::encode(&self.receiver.resync(header.boot_id), &mut body).expect("fits");
                send(Kind::Nack, header.boot_id, 0, &body[..n], reply);
            }
            Disposition::Next => {
                self.lost_contexts = false;
                let state = self.receiver.state_after(header);
                // The atomic commit: points and state together.
                self.committed.push(u32::from_le_bytes(payload[..4].try_into().expect("4 bytes")));
                self.persisted = Some(state);
                self.receiver.committed(state);
                let n = message::encode(&Ack { window: 4 }, &mut body).expect("fits");
                send(Kind::Ack, header.boot_id, header.seq, &body[..n], reply);
            }
            Disposition::Duplicate | Disposition::Gap => {
                if let Some(seq) = self.receiver.ack(header.boot_id) {
                    let n = message::encode(&Ack { window: 4 }, &mut body).expect("fits");
                    send(Kind::Ack, header.boot_id, seq, &body[..n], reply);
                }
            }
            Disposition::Unknown => {
                let n = message::encode(&self.receiver.resync(header.boot_id), &mut body).expect("fits");
                send(Kind::Nack, header.boot_id, 0, &body[..n], reply);
            }
            Disposition::Stale => {}
        }
    }

    fn feed(&mut self, bytes: &[u8], reply: &mut Vec<u8>) {
        let mut frames: Vec<(Header, Option<Vec<u8>>)> = Vec::new();
        self.framer.feed(bytes, |result| match result {
            Ok(frame) => frames.push((frame.header, Some(frame.payload.to_vec()))),
            Err(chouette_core::link::FrameError::BadCrc) => {
                frames.push((Header { kind: Kind::Nack, boot_id: 0, seq: 0 }, None))
            }
            Err(_) => {}
        });
        for (header, payload) in frames {
            self.frame(header.kind, header, payload.as_deref(), reply);
        }
    }

    fn restart(&mut self) {
        self.receiver = Receiver::new(self.persisted);
        self.lost_contexts = true;
        self.framer = Framer::new();
    }
}

/// Sends `n` payloads through a lossy line both ways with `restarts` gateway restarts; the
/// payloads committed, in order.
fn run(seed: u64, n: u32, lossy: f64, restarts: &[u64]) -> (Vec<u32>, u64) {
    let mut sender = Sender::<4>::new(1);
    let mut pending: VecDeque<Vec<u8>> = (0..n).map(|i| i.to_le_bytes().to_vec()).collect();
    let mut gateway = Gateway {
        receiver: Receiver::new(None),
        persisted: None,
        committed: Vec::new(),
        lost_contexts: false,
        boot: 1,
        framer: Framer::new(),
    };
    let mut down = Line { rng: seed, drop: lossy / 4.0, flip: lossy / 4.0, dup: lossy };
    let mut up = Line { rng: seed ^ 0xffff, drop: lossy / 4.0, flip: lossy / 4.0, dup: lossy };
    let mut device_framer = Framer::<64>::new();
    let mut buf = vec![0u8; max_frame_bytes(MAX_PAYLOAD)];
    let mut next_boot = 2;
    let mut now = 0u64;
    while (gateway.committed.len() as u32) < n || sender.in_flight() > 0 {
        assert!(now < 3_600_000, "no progress after an hour: committed {}", gateway.committed.len());
        if restarts.contains(&now) {
            gateway.restart();
        }
        while sender.has_room() {
            let Some(payload) = pending.pop_front() else { break };
            sender.send(Kind::Data, &payload).expect("room");
        }
        let mut wire = Vec::new();
        while let Some(len) = sender.poll_transmit(now, &mut buf) {
            down.carry(&buf[..len], &mut wire);
        }
        let mut reply = Vec::new();
        gateway.feed(&wire, &mut reply);
        let mut back = Vec::new();
        up.carry(&reply, &mut back);
        let mut frames = Vec::new();
        device_framer.feed(&back, |result| {
            if let Ok(frame) = result {
                frames.push((frame.header, frame.payload.to_vec()));
            }
        });
        for (header, payload) in frames {
            match header.kind {
                Kind::Ack => {
                    let ack: Ack = message::decode(&payload).expect("ack");
                    sender.on_ack(header.boot_id, header.seq, ack.window, now);
                }
                Kind::Nack => {
                    let nack: Nack = message::decode(&payload).expect("nack");
                    let mut unsent = Vec::new();
                    if sender.on_nack(header, nack, next_boot, now, |_, p| unsent.push(p.to_vec())) {
                        next_boot += 1;
                        for payload in unsent.into_iter().rev() {
                            pending.push_front(payload);
                        }
                    }
                }
                other => panic!("device got {other:?}"),
            }
        }
        now += 10;
    }
    (gateway.committed, sender.stats().retransmitted)
}

#[test]
fn a_clean_line_delivers_in_order_once() {
    let (committed, retransmitted) = run(1, 200, 0.0, &[]);
    assert_eq!(committed, (0..200).collect::<Vec<_>>());
    assert_eq!(retransmitted, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the line loses, damages or repeats, and however often the gateway restarts, every
    /// payload is committed exactly once, in order.
    #[test]
    fn conservation_through_the_window(
        seed in any::<u64>(),
        lossy in 0.0f64..0.05,
        restarts in prop::collection::vec((1u64..2000).prop_map(|t| t * 10), 0..4),
    ) {
        let (committed, _) = run(seed, 300, lossy, &restarts);
        prop_assert_eq!(committed, (0..300).collect::<Vec<_>>());
    }
}
