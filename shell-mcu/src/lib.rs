//! Chouette on a microcontroller: the core's aggregator behind the serial link's device side,
//! over `embedded-io` and a millisecond uptime clock the board passes in. The third shell beside
//! the Linux agent and the client library; `docs/link.md` ("The device") is the protocol.
//!
//! ```text
//! app ──record──▶ Aggregator ──closed intervals──▶ DATA payloads ──▶ ring ──▶ Sender<W> ──▶ UART
//!                                   │ new series                       (merge when full)   ▲
//!                                   ▼                                                      │
//!                             context table ──DEFINE (first, and again after a resync)──────┘
//! UART ──▶ Framer<64> ──▶ ACK / NACK / HELLO / TIME_REQ
//! ```
//!
//! Everything is fixed at compile time (no heap): the capacities are the [`Device`]'s const
//! parameters, and `size_of::<Device<..>>()` is the whole footprint.

#![no_std]
#![forbid(unsafe_code)]

mod contexts;
mod records;
mod ring;

pub use contexts::{ContextError, Contexts};
pub use ring::Ring;

use chouette_core::aggregate::{Aggregator, AggregatorConfig, RecordError};
use chouette_core::link::message::{
    self, Ack, DataHeader, DataWriter, DeviceCounters, Hello, Nack, TimeRequest, TimeResponse,
};
use chouette_core::link::window::{Sender, SenderStats};
use chouette_core::link::{
    encode_frame, max_frame_bytes, Frame, Framer, FramerStats, Header, Kind, MAX_PAYLOAD,
};
use chouette_core::metric::{MetricType, Sample, Tag, Timestamp, Value};
use chouette_core::sketch::Histogram;
use embedded_io::{Read, ReadReady, Write};

/// Bytes of the largest frame the device writes.
pub const TX_FRAME_BYTES: usize = max_frame_bytes(MAX_PAYLOAD);
/// Bytes read from the UART per `read` call (gateway frames are tiny).
const READ_CHUNK: usize = 32;
/// `read` calls per [`Device::poll`] at most, so a flood cannot starve the loop.
const READS_PER_POLL: usize = 16;

/// Why a [`DeviceConfig`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The boot id is 0 (the gateway reads 0 as "no session").
    ZeroBootId,
    /// The interval is 0 s, or its milliseconds overflow `u32`.
    Interval,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::ZeroBootId => f.write_str("boot id must be nonzero"),
            ConfigError::Interval => f.write_str("interval must be 1 s or more (and fit u32 milliseconds)"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// What the board tells the device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceConfig {
    boot_id: u32,
    device: &'static str,
    interval_secs: u32,
    aggregator: AggregatorConfig,
}

impl DeviceConfig {
    /// `boot_id`: nonzero, different on every boot (a hardware RNG, a persisted counter);
    /// `device`: the name the gateway knows it by; `interval_secs`: the aggregation interval.
    pub const fn new(boot_id: u32, device: &'static str, interval_secs: u32) -> Result<Self, ConfigError> {
        if boot_id == 0 {
            return Err(ConfigError::ZeroBootId);
        }
        if interval_secs == 0 || interval_secs > u32::MAX / 1000 {
            return Err(ConfigError::Interval);
        }
        let aggregator = match AggregatorConfig::new(interval_secs) {
            Ok(config) => config.with_grace_secs(0),
            Err(_) => return Err(ConfigError::Interval),
        };
        Ok(DeviceConfig { boot_id, device, interval_secs, aggregator })
    }
}

/// What the device did (besides [`DeviceCounters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// The send window's figures (frames sent, retransmitted, acked, timeouts).
    pub window: SenderStats,
    /// Frames written, every kind, retransmissions included.
    pub frames_written: u64,
    /// Bytes written to the UART.
    pub bytes_written: u64,
    /// Frames received (valid).
    pub frames_received: u64,
    /// Valid frames the device does not take (device-side kinds, bad payloads).
    pub frames_ignored: u64,
    /// What the receive framer refused.
    pub framer: FramerStats,
    /// DATA payloads built from closed intervals.
    pub data_payloads: u64,
    /// Records that found the context table full (their samples are counted as refused).
    pub contexts_full: u64,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Hello,
    Ack { boot_id: u32, seq: u16, window: u8 },
    Nack { header: Header, nack: Nack },
    Time { seq: u16, t0_ms: u64 },
}

impl Event {
    fn of(frame: &Frame<'_>) -> Option<Event> {
        let header = frame.header;
        match header.kind {
            Kind::Hello if frame.payload.is_empty() => Some(Event::Hello),
            Kind::Ack => message::decode::<Ack>(frame.payload).ok().map(|ack| Event::Ack {
                boot_id: header.boot_id,
                seq: header.seq,
                window: ack.window,
            }),
            Kind::Nack => {
                message::decode::<Nack>(frame.payload).ok().map(|nack| Event::Nack { header, nack })
            }
            Kind::TimeRequest => message::decode::<TimeRequest>(frame.payload)
                .ok()
                .map(|request| Event::Time { seq: header.seq, t0_ms: request.t0_ms }),
            _ => None,
        }
    }
}

/// The device: aggregator, context table (`CONTEXTS` ids, `CONTEXT_BYTES` of DEFINE payloads),
/// ring (`RING_BYTES`, `RING_ENTRIES` payloads) and send window (`W` frames).
pub struct Device<
    const SERIES: usize,
    const SKETCHES: usize,
    const KEY_BYTES: usize,
    const CONTEXTS: usize,
    const CONTEXT_BYTES: usize,
    const RING_BYTES: usize,
    const RING_ENTRIES: usize,
    const W: usize,
> {
    config: DeviceConfig,
    aggregator: Aggregator<SERIES, SKETCHES, KEY_BYTES>,
    contexts: Contexts<CONTEXTS, CONTEXT_BYTES>,
    ring: Ring<RING_BYTES, RING_ENTRIES>,
    sender: Sender<W>,
    framer: Framer<64>,
    /// The one scratch histogram (sketches built from samples, merges).
    scratch: Histogram,
    /// The DATA payload being built.
    build: [u8; MAX_PAYLOAD],
    /// A merge's output.
    merged: [u8; MAX_PAYLOAD],
    tx: [u8; TX_FRAME_BYTES],
    counters: DeviceCounters,
    /// Sessions started (0 = the boot's first); the session's boot id derives from it.
    session: u32,
    hello_due: bool,
    time_due: Option<(u16, u64)>,
    stats: DeviceStats,
}

/// The demo firmware's device: 16 series-buckets, 2 pooled histograms, 512 B of keys, 16
/// contexts in 512 B, a 4 KiB ring of 16 payloads, a window of 4 frames.
pub type DemoDevice = Device<16, 2, 512, 16, 512, 4096, 16, 4>;

/// The session boot id of `session` (0 = the boot's first): the board's boot id for the first,
/// then an odd-multiplier step per session, so it never repeats within a boot (a bijection on
/// `u32`) and skips 0.
const fn session_boot_id(boot_id: u32, session: u32) -> u32 {
    boot_id.wrapping_add(session.wrapping_mul(0x9E37_79B9))
}

fn timestamp(now_ms: u64) -> Timestamp {
    Timestamp::from_secs_f64(now_ms as f64 / 1000.0)
}

/// Stores `payload` in the ring: appended as the newest (`at: None`), or put back at position
/// `at` (a resync returns the window's unsent payloads, oldest first, to the front). Returns the
/// position after it (where the next put-back payload goes).
///
/// Until it fits: a put-back payload after another merges into that one (their order is kept);
/// otherwise the two oldest entries merge; when a merge does not fit one payload, the oldest
/// entry is dropped (its `intervals` counted in `dropped_intervals`).
fn store<const BYTES: usize, const ENTRIES: usize>(
    ring: &mut Ring<BYTES, ENTRIES>,
    at: Option<usize>,
    payload: &[u8],
    merged: &mut [u8; MAX_PAYLOAD],
    scratch: &mut Histogram,
    counters: &mut DeviceCounters,
) -> usize {
    let mut index = at.unwrap_or(usize::MAX);
    loop {
        let pos = index.min(ring.len());
        if ring.insert(pos, payload) {
            return pos + 1;
        }
        if ring.is_empty() {
            // Unreachable (an empty ring takes any payload: BYTES >= 2 * MAX_PAYLOAD), counted
            // rather than looped on.
            counters.dropped_intervals = counters.dropped_intervals.saturating_add(1);
            return 0;
        }
        let result = match (at, pos) {
            (Some(_), 1..) => {
                ring.get(pos - 1).map(|older| (pos - 1, records::merge(older, payload, merged, scratch)))
            }
            _ => match (ring.get(0), ring.get(1)) {
                (Some(older), Some(newer)) => Some((0, records::merge(older, newer, merged, scratch))),
                _ => None,
            },
        };
        match result {
            Some((into, Ok((len, coarsened)))) => {
                let absorbed = at.is_some() && pos >= 1;
                let stored = if absorbed {
                    ring.replace(into, &merged[..len])
                } else {
                    ring.replace_pair(into, &merged[..len])
                };
                if stored {
                    counters.merged_intervals = counters.merged_intervals.saturating_add(1);
                    counters.coarsened = counters.coarsened.saturating_add(coarsened);
                    if absorbed {
                        return pos;
                    }
                    if index >= 2 {
                        index -= 1;
                    }
                    continue;
                }
                drop_oldest(ring, counters);
                index = index.saturating_sub(1);
            }
            _ => {
                drop_oldest(ring, counters);
                index = index.saturating_sub(1);
            }
        }
    }
}

fn drop_oldest<const BYTES: usize, const ENTRIES: usize>(
    ring: &mut Ring<BYTES, ENTRIES>,
    counters: &mut DeviceCounters,
) {
    let intervals = ring
        .get(0)
        .and_then(|oldest| message::DataReader::new(oldest).ok())
        .map_or(1, |reader| u32::from(reader.header.intervals));
    ring.remove(0);
    counters.dropped_intervals = counters.dropped_intervals.saturating_add(intervals);
}

impl<
        const SERIES: usize,
        const SKETCHES: usize,
        const KEY_BYTES: usize,
        const CONTEXTS: usize,
        const CONTEXT_BYTES: usize,
        const RING_BYTES: usize,
        const RING_ENTRIES: usize,
        const W: usize,
    > Device<SERIES, SKETCHES, KEY_BYTES, CONTEXTS, CONTEXT_BYTES, RING_BYTES, RING_ENTRIES, W>
{
    /// A device that has sent nothing yet (its HELLO goes out on the first [`poll`](Self::poll)).
    pub const fn new(config: DeviceConfig) -> Self {
        Device {
            config,
            aggregator: Aggregator::new(config.aggregator),
            contexts: Contexts::new(),
            ring: Ring::new(),
            sender: Sender::new(config.boot_id),
            framer: Framer::new(),
            scratch: Histogram::new(),
            build: [0; MAX_PAYLOAD],
            merged: [0; MAX_PAYLOAD],
            tx: [0; TX_FRAME_BYTES],
            counters: DeviceCounters {
                merged_intervals: 0,
                dropped_intervals: 0,
                refused_samples: 0,
                coarsened: 0,
                resyncs: 0,
            },
            session: 0,
            hello_due: true,
            time_due: None,
            stats: DeviceStats {
                window: SenderStats { sent: 0, retransmitted: 0, acked: 0, timeouts: 0 },
                frames_written: 0,
                bytes_written: 0,
                frames_received: 0,
                frames_ignored: 0,
                framer: FramerStats {
                    frames: 0,
                    oversize: 0,
                    bad_encoding: 0,
                    short: 0,
                    bad_crc: 0,
                    unknown: 0,
                },
                data_payloads: 0,
                contexts_full: 0,
            },
        }
    }

    /// Records one sample at uptime `now_ms` (the sample's own timestamp is ignored). A refused
    /// sample is counted (`refused_samples`).
    pub fn record(&mut self, now_ms: u64, sample: Sample<'_>) -> Result<(), RecordError> {
        let now = timestamp(now_ms);
        let sample = Sample { timestamp: now, ..sample };
        self.aggregator.record(now, sample).map_err(|refused| {
            self.counters.refused_samples = self.counters.refused_samples.saturating_add(1);
            refused.error
        })
    }

    /// Records one number (every type but `set`) at uptime `now_ms`: [`record`](Self::record)
    /// for the common case. A firmware that records only through this links none of the core's
    /// set-member and multi-sample parsing (measured on the demo firmware: flash 76,304 bytes
    /// through `record`, 53,772 through this; the float parser's tables alone are 10 KB).
    pub fn record_number(
        &mut self,
        now_ms: u64,
        name: &str,
        kind: MetricType,
        tags: &[Tag<'_>],
        value: f64,
    ) -> Result<(), RecordError> {
        let now = timestamp(now_ms);
        let sample = Sample { name, kind, tags, value: Value::Number(value), timestamp: now };
        self.aggregator.record(now, sample).map_err(|refused| {
            self.counters.refused_samples = self.counters.refused_samples.saturating_add(1);
            refused.error
        })
    }

    /// One turn of the loop: reads what the UART has ready (never blocking), handles the
    /// gateway's frames, closes the intervals due at `now_ms`, moves payloads into the window
    /// and writes every frame due.
    pub fn poll<IO: Read + ReadReady + Write>(&mut self, now_ms: u64, io: &mut IO) -> Result<(), IO::Error> {
        self.receive(now_ms, io)?;
        self.aggregator.handle_timeout(timestamp(now_ms));
        self.drain();
        self.fill_window();
        self.transmit(now_ms, io)
    }

    /// The app is ending: closes the open interval now (its payloads go out on the next polls).
    pub fn close_all(&mut self, _now_ms: u64) {
        self.aggregator.close_all();
        self.drain();
    }

    /// When to poll again at the latest (uptime ms; at or before now: at once), `None` when
    /// nothing waits but the next sample.
    pub fn poll_timeout(&self) -> Option<u64> {
        let now_work = self.hello_due
            || self.time_due.is_some()
            || (self.sender.has_room() && (self.contexts.has_pending() || !self.ring.is_empty()));
        if now_work {
            return Some(0);
        }
        let close = self.aggregator.poll_timeout().map(|at| (at.as_secs_f64() * 1000.0).max(0.0) as u64);
        match (close, self.sender.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Nothing left to send: no open interval, the ring empty, every frame acknowledged.
    pub fn is_idle(&self) -> bool {
        self.aggregator.is_empty()
            && self.ring.is_empty()
            && self.sender.in_flight() == 0
            && !self.contexts.has_pending()
    }

    /// What the device counted (the figures its HELLO and TIME_RESP carry).
    pub fn counters(&self) -> DeviceCounters {
        self.counters
    }

    /// What it did.
    pub fn stats(&self) -> DeviceStats {
        DeviceStats { window: self.sender.stats(), framer: self.framer.stats(), ..self.stats }
    }

    /// The current session's boot id.
    pub fn session_boot_id(&self) -> u32 {
        self.sender.boot_id()
    }

    /// Payloads waiting in the ring.
    pub fn ring_len(&self) -> usize {
        self.ring.len()
    }

    /// Contexts defined.
    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    fn receive<IO: Read + ReadReady>(&mut self, now_ms: u64, io: &mut IO) -> Result<(), IO::Error> {
        let mut chunk = [0u8; READ_CHUNK];
        for _ in 0..READS_PER_POLL {
            if !io.read_ready()? {
                break;
            }
            let read = io.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            // A 32-byte chunk holds at most 3 frames (the smallest is 14 bytes on the wire).
            let mut events = heapless::Vec::<Option<Event>, 4>::new();
            self.framer.feed(&chunk[..read], |frame| {
                if let Ok(frame) = frame {
                    let _ = events.push(Event::of(&frame));
                }
            });
            for event in events {
                self.stats.frames_received += 1;
                match event {
                    Some(event) => self.handle(event, now_ms),
                    None => self.stats.frames_ignored += 1,
                }
            }
        }
        Ok(())
    }

    fn handle(&mut self, event: Event, now_ms: u64) {
        match event {
            Event::Hello => self.hello_due = true,
            Event::Time { seq, t0_ms } => self.time_due = Some((seq, t0_ms)),
            Event::Ack { boot_id, seq, window } => {
                self.sender.on_ack(boot_id, seq, window, now_ms);
            }
            Event::Nack { header, nack } => {
                let mut session = self.session.wrapping_add(1);
                if session_boot_id(self.config.boot_id, session) == 0 {
                    session = session.wrapping_add(1);
                }
                let new_boot_id = session_boot_id(self.config.boot_id, session);
                let Device { sender, ring, merged, scratch, counters, .. } = self;
                let mut index = 0;
                let resynced = sender.on_nack(header, nack, new_boot_id, now_ms, |kind, payload| {
                    // DEFINEs are dropped: every context is defined again below.
                    if kind == Kind::Data {
                        index = store(ring, Some(index), payload, merged, scratch, counters);
                    }
                });
                if resynced {
                    self.session = session;
                    self.counters.resyncs = self.counters.resyncs.saturating_add(1);
                    self.contexts.redefine_all();
                }
            }
        }
    }

    /// Turns closed intervals into DATA payloads in the ring.
    fn drain(&mut self) {
        let interval_ms = self.config.interval_secs * 1000;
        let Device { aggregator, contexts, ring, scratch, build, merged, counters, stats, .. } = self;
        let mut writer: Option<DataWriter<'_>> = None;
        let mut writer_header = None;
        while let Some(flushed) = aggregator.poll_flush() {
            let samples = u32::try_from(flushed.sample_count()).unwrap_or(u32::MAX);
            let Ok(ctx) = contexts.id_of(flushed.kind, flushed.name, &flushed.tags) else {
                counters.refused_samples = counters.refused_samples.saturating_add(samples);
                stats.contexts_full += 1;
                continue;
            };
            let header = DataHeader {
                start_ms: (flushed.timestamp.as_secs_f64() * 1000.0).max(0.0) as u64,
                interval_ms,
                intervals: 1,
            };
            if writer_header != Some(header) {
                if let Some(done) = writer.take() {
                    store(ring, None, done.payload(), merged, scratch, counters);
                    stats.data_payloads += 1;
                }
            }
            for _attempt in 0..2 {
                if writer.is_none() {
                    writer = DataWriter::new(&mut build[..], header).ok();
                    writer_header = Some(header);
                }
                let Some(current) = writer.as_mut() else { break };
                match records::push_state(current, ctx, flushed.state(), scratch) {
                    Ok(coarsened) => {
                        counters.coarsened = counters.coarsened.saturating_add(u32::from(coarsened));
                        break;
                    }
                    Err(_) if !current.is_empty() => {
                        if let Some(done) = writer.take() {
                            store(ring, None, done.payload(), merged, scratch, counters);
                            stats.data_payloads += 1;
                        }
                    }
                    Err(_) => {
                        // Not even a summary fits an empty payload: cannot happen with
                        // MAX_PAYLOAD = 500, counted if it ever does.
                        counters.refused_samples = counters.refused_samples.saturating_add(samples);
                        break;
                    }
                }
            }
        }
        if let Some(done) = writer.take() {
            if !done.is_empty() {
                store(ring, None, done.payload(), merged, scratch, counters);
                stats.data_payloads += 1;
            }
        }
    }

    /// DEFINEs first (a record never goes before its context's definition), then the ring.
    fn fill_window(&mut self) {
        while self.sender.has_room() {
            if let Some((ctx, define)) = self.contexts.next_pending() {
                if self.sender.send(Kind::Define, define).is_err() {
                    break;
                }
                self.contexts.sent(ctx);
                continue;
            }
            let Some(payload) = self.ring.get(0) else { break };
            if self.sender.send(Kind::Data, payload).is_err() {
                break;
            }
            self.ring.remove(0);
        }
    }

    fn write_frame<IO: Write>(&mut self, io: &mut IO, len: usize) -> Result<(), IO::Error> {
        io.write_all(&self.tx[..len])?;
        self.stats.frames_written += 1;
        self.stats.bytes_written += len as u64;
        Ok(())
    }

    /// An unsequenced frame (HELLO, TIME_RESP), written directly.
    fn write_unsequenced<IO: Write>(
        &mut self,
        io: &mut IO,
        kind: Kind,
        seq: u16,
        payload_len: usize,
    ) -> Result<(), IO::Error> {
        let header = Header { kind, boot_id: self.sender.boot_id(), seq };
        if let Ok(len) = encode_frame(header, &self.merged[..payload_len], &mut self.tx) {
            self.write_frame(io, len)?;
        }
        Ok(())
    }

    fn transmit<IO: Write>(&mut self, now_ms: u64, io: &mut IO) -> Result<(), IO::Error> {
        // `merged` is free outside a merge: the unsequenced payloads are built there.
        if self.hello_due {
            self.hello_due = false;
            let hello = Hello {
                device: self.config.device,
                uptime_ms: now_ms,
                interval_ms: self.config.interval_secs * 1000,
                counters: self.counters,
            };
            if let Ok(len) = message::encode(&hello, &mut self.merged) {
                self.write_unsequenced(io, Kind::Hello, 0, len)?;
            }
        }
        if let Some((seq, t0_ms)) = self.time_due.take() {
            let response = TimeResponse { t0_ms, uptime_ms: now_ms, counters: self.counters };
            if let Ok(len) = message::encode(&response, &mut self.merged) {
                self.write_unsequenced(io, Kind::TimeResponse, seq, len)?;
            }
        }
        while let Some(len) = self.sender.poll_transmit(now_ms, &mut self.tx) {
            self.write_frame(io, len)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_boot_ids_never_repeat_nor_hit_zero() {
        assert_eq!(session_boot_id(7, 0), 7);
        let ids: [u32; 4] = core::array::from_fn(|s| session_boot_id(7, s as u32));
        for (i, a) in ids.iter().enumerate() {
            assert!(ids[i + 1..].iter().all(|b| b != a));
        }
        assert!(DeviceConfig::new(0, "d", 1).is_err());
        assert!(DeviceConfig::new(1, "d", 0).is_err());
    }
}
