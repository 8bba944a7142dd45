//! The device wired in memory to a test gateway (the core's `Receiver`, `ClockSync`, a define
//! table) through a seeded lossy channel: exactly-once counts through loss, corruption,
//! duplication, a gateway restart and a gateway away longer than the ring holds; the wire cost
//! per point; the device's memory at the demo's capacities.

mod common;

use core::convert::Infallible;

use chouette_core::metric::{MetricType, OutputType, Sample, Tag, Timestamp, Value};
use chouette_mcu::{DemoDevice, Device, DeviceConfig};
use common::{Gateway, Line};
use proptest::prelude::*;

/// The device's end of the wire.
struct DeviceEnd<'a> {
    rx: &'a mut Line,
    tx: &'a mut Line,
}

impl embedded_io::ErrorType for DeviceEnd<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for DeviceEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.rx.bytes.len());
        for (slot, byte) in buf.iter_mut().zip(self.rx.bytes.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for DeviceEnd<'_> {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(!self.rx.bytes.is_empty())
    }
}

impl embedded_io::Write for DeviceEnd<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.tx.send(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

const TICKS: &str = "fw.demo.ticks";
const TEMPERATURE: &str = "fw.demo.temperature";
const LATENCY: &str = "fw.demo.latency_ms";

fn temperature(tick: u64) -> f64 {
    20.0 + (tick % 10) as f64 / 10.0
}

fn latency(tick: u64) -> f64 {
    1.0 + ((tick * 7) % 13) as f64 * 0.25
}

/// The demo's workload for one tick.
fn record_tick(device: &mut DemoDevice, now_ms: u64, tick: u64) {
    let tags = [Tag::new("board", "qemu")];
    let sample = |name, kind, value| Sample {
        name,
        kind,
        tags: &tags,
        value: Value::Number(value),
        timestamp: Timestamp::from_secs_f64(0.0),
    };
    device.record(now_ms, sample(TICKS, MetricType::Count, 1.0)).expect("recorded");
    device.record(now_ms, sample(TEMPERATURE, MetricType::Gauge, temperature(tick))).expect("recorded");
    device.record(now_ms, sample(LATENCY, MetricType::Histogram, latency(tick))).expect("recorded");
}

struct Scenario {
    seed: u64,
    faults: u64,
    ticks: u64,
    /// Gateway restarts at these uptimes.
    restarts: Vec<u64>,
    /// The gateway unplugged over this uptime range (both directions).
    away: Option<(u64, u64)>,
}

struct Outcome {
    gateway: Gateway,
    device: Box<DemoDevice>,
    end_ms: u64,
}

fn run(scenario: &Scenario) -> Outcome {
    const STEP_MS: u64 = 10;
    let config =
        DeviceConfig::new(0x5eed_0000 | (scenario.seed as u32 & 0xffff) | 1, "demo", 1).expect("valid");
    let mut device = Box::new(DemoDevice::new(config));
    let mut gateway = Gateway::new();
    let mut up = Line::new(scenario.seed, scenario.faults);
    let mut down = Line::new(scenario.seed.rotate_left(17) ^ 0x9e37, scenario.faults);
    let mut now_ms = 0;
    let mut tick = 0;
    let mut restarts = scenario.restarts.clone();
    let deadline_ms = scenario.ticks * 100 + 300_000;
    loop {
        let away = scenario.away.is_some_and(|(from, to)| (from..to).contains(&now_ms));
        up.down = away;
        down.down = away;
        if tick < scenario.ticks && now_ms >= tick * 100 {
            record_tick(&mut device, now_ms, tick);
            tick += 1;
            if tick == scenario.ticks {
                device.close_all(now_ms);
            }
        }
        device.poll(now_ms, &mut DeviceEnd { rx: &mut down, tx: &mut up }).expect("in memory");
        if restarts.first().is_some_and(|&at| now_ms >= at) {
            restarts.remove(0);
            gateway.restart(&mut down);
        }
        gateway.poll(now_ms, &mut up, &mut down);
        if tick == scenario.ticks && device.is_idle() {
            break;
        }
        assert!(
            now_ms < deadline_ms,
            "not idle after {now_ms} ms: {:?} {:?}",
            device.stats(),
            device.counters()
        );
        now_ms += STEP_MS;
    }
    Outcome { gateway, device, end_ms: now_ms }
}

fn assert_exact(outcome: &Outcome, ticks: u64) {
    let totals = &outcome.gateway.totals;
    let t = &totals[TICKS];
    assert_eq!((t.count_sum, t.count_n), (ticks as f64, ticks), "every tick counted exactly once");
    let h = &totals[LATENCY];
    assert_eq!(h.histogram_count, ticks, "every latency sample counted exactly once");
    let expected: f64 = (0..ticks).map(latency).sum();
    assert!((h.histogram_sum - expected).abs() < 1e-6, "latency sum {} vs {expected}", h.histogram_sum);
    let g = &totals[TEMPERATURE];
    assert_eq!(g.gauge_n, ticks);
    assert_eq!(
        g.gauge_last.map(|(_, last)| last),
        Some(temperature(ticks - 1)),
        "the gauge ends at the last value"
    );
    let counters = outcome.device.counters();
    assert_eq!((counters.refused_samples, counters.dropped_intervals), (0, 0));
}

#[test]
fn a_clean_line_delivers_every_interval_once_and_syncs_the_clock() {
    let outcome = run(&Scenario { seed: 1, faults: 0, ticks: 100, restarts: vec![], away: None });
    assert_exact(&outcome, 100);
    let gw = &outcome.gateway;
    assert_eq!(gw.hellos.first(), Some(&("demo".to_string(), 0)));
    assert_eq!(gw.totals[TICKS].intervals, 10, "10 s of ticks in 1 s intervals");
    // The device answers on its next poll (10 ms later): a 10 ms round trip, and the offset
    // within half of it of the truth (device uptime 0 is the gateway's `wall_offset_ms`).
    let best = gw.clock.best().expect("time exchanged");
    assert_eq!((best.offset_ms, best.rtt_ms), (gw.wall_offset_ms as i64 - 5, 10));
    // The points the agent would emit (the core's wrap functions): one count of 10 per second,
    // stamped with the interval's start in wall time.
    let ticks: Vec<_> = gw.points.iter().filter(|p| p.name == TICKS).collect();
    assert_eq!(ticks.len(), 10);
    for (i, point) in ticks.iter().enumerate() {
        assert_eq!((point.kind, point.value, point.interval), (OutputType::Count, 10.0, Some(1)));
        assert_eq!(point.wall_ms, Some(best.offset_ms + 1000 * i as i64), "point {i}");
    }
    let last_gauge = gw.points.iter().rev().find(|p| p.name == TEMPERATURE).expect("gauge points");
    assert_eq!((last_gauge.kind, last_gauge.value), (OutputType::Gauge, temperature(99)));
    let stats = outcome.device.stats();
    assert_eq!((stats.window.retransmitted, outcome.device.counters().resyncs), (0, 0));
    assert_eq!(outcome.device.contexts(), 3);
    println!("clean: {stats:?}, idle at {} ms", outcome.end_ms);
}

#[test]
fn a_gateway_restart_resyncs_and_counts_stay_exact() {
    let outcome =
        run(&Scenario { seed: 2, faults: 0, ticks: 200, restarts: vec![5_050, 12_020], away: None });
    assert_exact(&outcome, 200);
    let counters = outcome.device.counters();
    assert_eq!(counters.resyncs, 2, "one new session per restart");
    assert_eq!(outcome.gateway.hellos.len(), 3, "a hello at boot and after each gateway hello");
    assert_eq!(outcome.gateway.defines.len(), 3, "every context defined again after the last restart");
}

#[test]
fn a_lossy_line_retransmits_and_still_counts_exactly_once() {
    let outcome = run(&Scenario { seed: 77, faults: 10, ticks: 300, restarts: vec![], away: None });
    assert_exact(&outcome, 300);
    let stats = outcome.device.stats();
    assert!(
        stats.window.retransmitted > 0
            && stats.framer.bad_crc + stats.framer.bad_encoding + stats.framer.short > 0
    );
    println!("10% faults: {stats:?}, idle at {} ms", outcome.end_ms);
}

#[test]
fn a_gateway_away_longer_than_the_ring_merges_intervals_and_totals_stay_exact() {
    let outcome =
        run(&Scenario { seed: 3, faults: 0, ticks: 600, restarts: vec![], away: Some((2_000, 50_000)) });
    assert_exact(&outcome, 600);
    let counters = outcome.device.counters();
    assert!(counters.merged_intervals > 0, "48 s away with a 16-payload ring: {counters:?}");
    let intervals = outcome.gateway.totals[TICKS].intervals;
    assert_eq!(intervals, 60, "merged payloads still account for every interval");
    println!("away 48 s: {counters:?}, {:?}", outcome.device.stats());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_lossy_line_with_a_restart_counts_exactly_once(seed in any::<u64>(), faults in 1u64..15, restart in 2_000u64..9_000) {
        let outcome = run(&Scenario { seed, faults, ticks: 150, restarts: vec![restart], away: None });
        assert_exact(&outcome, 150);
    }
}

#[test]
fn wire_bytes_per_counter_or_gauge_point_stay_within_budget() {
    // 10 counters and 10 gauges, 60 intervals, a clean line; measured once every context is
    // defined (after the first interval).
    let config = DeviceConfig::new(9, "demo", 1).expect("valid");
    let mut device: Box<Device<64, 2, 2048, 32, 2048, 4096, 16, 4>> = Box::new(Device::new(config));
    let mut gateway = Gateway::new();
    gateway.next_time_request_ms = u64::MAX;
    let mut up = Line::new(1, 0);
    let mut down = Line::new(2, 0);
    let names: Vec<String> = (0..10).map(|i| format!("app.sensor{i}")).collect();
    let mut baseline = None;
    let mut now_ms = 0;
    while now_ms <= 61_000 {
        if now_ms % 100 == 0 && now_ms < 60_000 {
            for (i, name) in names.iter().enumerate() {
                let tags = [Tag::new("unit", "a")];
                let count = Sample {
                    name,
                    kind: MetricType::Count,
                    tags: &tags,
                    value: Value::Number(1.0),
                    timestamp: Timestamp::from_secs_f64(0.0),
                };
                device.record(now_ms, count).expect("recorded");
                let level = 20.0 + ((now_ms / 100 + i as u64) % 50) as f64 / 10.0;
                let gauge = Sample { kind: MetricType::Gauge, value: Value::Number(level), ..count };
                device.record(now_ms, gauge).expect("recorded");
            }
        }
        device.poll(now_ms, &mut DeviceEnd { rx: &mut down, tx: &mut up }).expect("in memory");
        gateway.poll(now_ms, &mut up, &mut down);
        if now_ms == 1_500 {
            baseline = Some(device.stats().bytes_written);
        }
        now_ms += 10;
    }
    let bytes = device.stats().bytes_written - baseline.expect("taken");
    let points = 59 * 20;
    let per_point = bytes as f64 / points as f64;
    println!("wire bytes per counter/gauge point: {per_point:.2} ({bytes} B for {points} points)");
    assert_eq!(gateway.totals["app.sensor0"].count_n, 600);
    assert!(per_point <= 12.0, "{per_point} B per point");
}

#[test]
fn the_demo_device_fits_the_firmware_budget() {
    let size = core::mem::size_of::<DemoDevice>();
    println!("size_of::<DemoDevice>() = {size} B");
    assert!(size <= 24 * 1024, "the device leaves the firmware room under 32 KiB: {size}");
}

/// Runs `device` against a clean gateway until idle (after `record` fed it up to `until_ms`).
fn drive<
    const A: usize,
    const B: usize,
    const C: usize,
    const D: usize,
    const E: usize,
    const F: usize,
    const G: usize,
    const H: usize,
>(
    device: &mut Device<A, B, C, D, E, F, G, H>,
    until_ms: u64,
    mut record: impl FnMut(&mut Device<A, B, C, D, E, F, G, H>, u64),
) -> Gateway {
    let mut gateway = Gateway::new();
    let (mut up, mut down) = (Line::new(5, 0), Line::new(6, 0));
    let mut now_ms = 0;
    loop {
        if now_ms < until_ms {
            record(device, now_ms);
        } else if now_ms == until_ms {
            device.close_all(now_ms);
        }
        device.poll(now_ms, &mut DeviceEnd { rx: &mut down, tx: &mut up }).expect("in memory");
        gateway.poll(now_ms, &mut up, &mut down);
        if now_ms > until_ms && device.is_idle() {
            return gateway;
        }
        assert!(now_ms < until_ms + 60_000, "not idle: {:?}", device.stats());
        now_ms += 10;
    }
}

#[test]
fn a_full_context_table_drops_the_series_and_counts_its_samples() {
    let config = DeviceConfig::new(11, "demo", 1).expect("valid");
    let mut device: Box<Device<16, 2, 512, 1, 128, 2048, 8, 4>> = Box::new(Device::new(config));
    let gateway = drive(&mut device, 2_000, |device, now_ms| {
        if now_ms % 100 == 0 {
            device.record_number(now_ms, "kept", MetricType::Count, &[], 1.0).expect("recorded");
            device.record_number(now_ms, "refused", MetricType::Count, &[], 1.0).expect("recorded");
        }
    });
    assert_eq!(gateway.totals["kept"].count_n, 20);
    assert!(!gateway.totals.contains_key("refused"));
    assert_eq!(device.counters().refused_samples, 20, "the second series' samples, counted");
    assert_eq!(device.stats().contexts_full, 2, "one record per interval");
}

#[test]
fn a_histogram_too_wide_for_a_frame_goes_as_a_sketch_or_a_summary_with_its_count_exact() {
    let config = DeviceConfig::new(12, "demo", 1).expect("valid");
    let mut device: Box<Device<16, 2, 512, 4, 256, 2048, 8, 4>> = Box::new(Device::new(config));
    let mut n = 0u64;
    let mut sum = 0.0;
    let gateway = drive(&mut device, 2_000, |device, now_ms| {
        // First second: 300 values over 12 decades (hundreds of bins: a summary); second: 300
        // values in a narrow band (a sketch that fits).
        for i in 0..30 {
            let k = (now_ms / 10) * 30 + i;
            let value = if now_ms < 1_000 {
                10f64.powf((k % 1200) as f64 / 100.0 - 3.0)
            } else {
                100.0 + (k % 50) as f64
            };
            device.record_number(now_ms, "wide", MetricType::Histogram, &[], value).expect("recorded");
            n += 1;
            sum += value;
        }
    });
    let totals = &gateway.totals["wide"];
    assert_eq!(totals.histogram_count, n);
    assert!((totals.histogram_sum - sum).abs() <= sum * 1e-12, "{} vs {sum}", totals.histogram_sum);
    assert_eq!(device.counters().coarsened, 1, "the first second's sketch did not fit a frame");
}

#[test]
fn a_restart_after_a_long_absence_puts_the_window_back_into_a_full_ring_and_counts_stay_exact() {
    // The gateway comes back at 40 s having lost its define table: the first data frame it sees
    // has an unknown context, so the device's four unacknowledged payloads go back to the front
    // of a full ring (merging there), and a new session defines everything again.
    let outcome = run(&Scenario {
        seed: 4,
        faults: 0,
        ticks: 500,
        restarts: vec![40_000],
        away: Some((2_000, 40_000)),
    });
    assert_exact(&outcome, 500);
    let counters = outcome.device.counters();
    assert_eq!(counters.resyncs, 1, "{counters:?}");
    assert!(counters.merged_intervals > 0, "{counters:?}");
    assert_eq!(outcome.gateway.totals[TICKS].intervals, 50);
    println!("away then restart: {counters:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Loss, an absence of up to 40 s (the ring merges), and a restart as the gateway returns.
    #[test]
    fn any_absence_and_restart_keeps_counts_and_intervals_exact(
        seed in any::<u64>(),
        faults in 0u64..10,
        away_from in 500u64..8_000,
        away_ms in 0u64..40_000,
        restart in any::<bool>(),
    ) {
        let back = away_from + away_ms;
        let restarts = if restart { vec![back] } else { vec![] };
        let outcome = run(&Scenario { seed, faults, ticks: 200, restarts, away: Some((away_from, back)) });
        assert_exact(&outcome, 200);
        prop_assert_eq!(outcome.gateway.totals[TICKS].intervals, 20);
    }
}

#[test]
fn poll_timeout_names_the_next_thing_due() {
    let config = DeviceConfig::new(21, "demo", 1).expect("valid");
    let mut device = Box::new(DemoDevice::new(config));
    let (mut up, mut down) = (Line::new(1, 0), Line::new(2, 0));
    assert_eq!(device.poll_timeout(), Some(0), "the boot hello is due at once");
    device.poll(0, &mut DeviceEnd { rx: &mut down, tx: &mut up }).expect("in memory");
    assert_eq!(device.poll_timeout(), None, "nothing open, nothing in flight");
    assert!(device.is_idle());
    record_tick(&mut device, 250, 0);
    assert_eq!(device.poll_timeout(), Some(1_000), "the interval closes at 1 s of uptime");
    assert!(!device.is_idle());
    device.poll(1_000, &mut DeviceEnd { rx: &mut down, tx: &mut up }).expect("in memory");
    // Three DEFINEs and one DATA in flight, nobody acknowledging: the retransmission timer.
    assert_eq!(device.stats().window.sent, 4);
    assert_eq!(device.poll_timeout(), Some(1_500));
    device.poll(1_500, &mut DeviceEnd { rx: &mut down, tx: &mut up }).expect("in memory");
    assert_eq!(device.stats().window.retransmitted, 4);
    assert_eq!(device.poll_timeout(), Some(2_500), "the timeout doubled");
}
