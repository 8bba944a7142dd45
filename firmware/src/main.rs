//! The demo firmware of issue 11 on QEMU's `lm3s6965evb`: chouette-mcu's device aggregates the
//! workload (every 100 ms of uptime: `fw.demo.ticks` +1, `fw.demo.temperature`,
//! `fw.demo.latency_ms`) in 1 s intervals and forwards them over UART0 to the gateway; after
//! `ticks` ticks it closes the open interval, polls until everything is acknowledged, says
//! `demo done: ticks=N` and exits 0 (non-zero when the gateway does not acknowledge everything
//! within `ack_timeout_ms` of uptime, or on a panic or fault).
//!
//! [`run`] takes the UART (any `embedded_io` Read + Write + ReadReady), the uptime clock (a
//! `Fn() -> u64` of milliseconds), the boot id and the options.

#![no_std]
#![no_main]

mod clock;
mod host;
mod stack;
mod uart;
mod workload;

use chouette_core::metric::MetricType;
use chouette_mcu::{ConfigError, DeviceConfig};
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use embedded_io::{Read, ReadReady, Write};

use host::Options;

#[entry]
fn main() -> ! {
    stack::paint();
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        fail(format_args!("core peripherals already taken"));
    };
    let clock = clock::Clock::start(peripherals.SYST);
    let Some(uart) = uart::Uart0::take() else {
        fail(format_args!("UART0 already taken"));
    };
    let mut line = [0u8; 256];
    let options = Options::parse(host::cmdline(&mut line));
    let boot_id = host::boot_id(cortex_m::peripheral::SYST::get_current());
    match run(uart, || clock.now_ms(), boot_id, options) {
        Ok(()) => {
            if options.report_stack {
                let (used, size) = stack::used();
                hprintln!("stack used: {} of {} bytes", used, size);
            }
            hprintln!("demo done: ticks={}", options.ticks);
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(why) => fail(format_args!("demo failed: {why}")),
    }
    // Only without a semihosting host (exit returned): sleep.
    loop {
        cortex_m::asm::wfi();
    }
}

/// Why [`run`] stopped early.
#[derive(Debug)]
enum Failure {
    /// The device's configuration was refused (a zero boot id).
    Config(ConfigError),
    /// The device's static storage was already taken.
    Taken,
    /// Not idle (every interval closed, sent and acknowledged) within `timeout_ms` of uptime
    /// after the last tick.
    NotIdle { ticks: u32, timeout_ms: u64, queued: usize, sent: u32, acked: u32, retransmitted: u32 },
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Config(why) => write!(f, "config: {why}"),
            Failure::Taken => f.write_str("the device's static storage was already taken"),
            Failure::NotIdle { ticks, timeout_ms, queued, sent, acked, retransmitted } => write!(
                f,
                "ticks={ticks} timeout_ms={timeout_ms} queued={queued} sent={sent} acked={acked} \
                 retransmitted={retransmitted}, not idle: the gateway did not acknowledge everything"
            ),
        }
    }
}

/// The device at the demo's capacities (chouette-mcu's `DemoDevice`: 16 series-buckets, 16
/// contexts, a 4 KiB ring, a window of 4 frames).
type FirmwareDevice = chouette_mcu::DemoDevice;

/// The device, in .bss (counted as static RAM by `scripts/firmware-qemu.sh --size`). `singleton!`
/// builds the value on the stack before moving it there (twice its 19 KB at the peak): in a frame
/// of its own that is popped before the loop runs, not in `run`'s frame, where it stayed for the
/// whole run and let a deep merge overflow the stack into .bss.
#[inline(never)]
fn make_device(config: DeviceConfig) -> Option<&'static mut FirmwareDevice> {
    cortex_m::singleton!(: FirmwareDevice = FirmwareDevice::new(config))
}

/// The demo's loop: every [`workload::TICK_MS`] of uptime the tick's samples go into the device
/// (1 s intervals, device name `demo`); the device is polled continuously (UART reads never block:
/// `ReadReady` first). After the last tick the open interval is closed and the loop polls until
/// every payload is acknowledged (`is_idle`), or fails after `ack_timeout_ms` of uptime.
fn run<U>(mut uart: U, now_ms: impl Fn() -> u64, boot_id: u32, options: Options) -> Result<(), Failure>
where
    U: Read + Write + ReadReady,
{
    let interval_secs = (workload::INTERVAL_MS / 1000) as u32;
    let config = DeviceConfig::new(boot_id, "demo", interval_secs).map_err(Failure::Config)?;
    let device = make_device(config).ok_or(Failure::Taken)?;
    if options.report_stack {
        // The building of the device is the deepest moment of the boot; the loop's own depth is
        // measured from here (the stack below is painted again).
        hprintln!("stack used at boot: {} bytes", stack::used().0);
        stack::paint();
    }
    let start = now_ms();
    let mut tick = 0u32;
    let mut deadline = None;
    if options.ticks == 0 {
        device.close_all(start);
        deadline = Some(start + options.ack_timeout_ms);
    }
    loop {
        let now = now_ms();
        if tick < options.ticks && now >= start + u64::from(tick) * workload::TICK_MS {
            record(device, now, workload::workload(tick));
            tick += 1;
            if tick == options.ticks {
                device.close_all(now);
                deadline = Some(now + options.ack_timeout_ms);
            }
        }
        // Infallible: the UART's error type has no value.
        let _ = device.poll(now, &mut uart);
        if deadline.is_some() && device.is_idle() {
            let stats = device.stats();
            let counters = device.counters();
            hprintln!(
                "demo stats: frames={} bytes={} sent={} retransmitted={} acked={} resyncs={} merged={} dropped={} refused={} uptime_ms={}",
                stats.frames_written,
                stats.bytes_written,
                stats.window.sent,
                stats.window.retransmitted,
                stats.window.acked,
                counters.resyncs,
                counters.merged_intervals,
                counters.dropped_intervals,
                counters.refused_samples,
                now
            );
            return Ok(());
        }
        if deadline.is_some_and(|deadline| now >= deadline) {
            let window = device.stats().window;
            return Err(Failure::NotIdle {
                ticks: options.ticks,
                timeout_ms: options.ack_timeout_ms,
                queued: device.ring_len(),
                sent: window.sent as u32,
                acked: window.acked as u32,
                retransmitted: window.retransmitted as u32,
            });
        }
    }
}

/// One tick's samples into the device (a refused sample is counted by the device).
fn record(device: &mut FirmwareDevice, now_ms: u64, sample: workload::Sample) {
    let _ = device.record_number(now_ms, workload::TICKS, MetricType::Count, &[], sample.ticks);
    let _ = device.record_number(now_ms, workload::TEMPERATURE, MetricType::Gauge, &[], sample.temperature);
    let _ = device.record_number(now_ms, workload::LATENCY_MS, MetricType::Histogram, &[], sample.latency_ms);
}

/// Prints why through semihosting and exits QEMU with a failure status.
fn fail(why: core::fmt::Arguments<'_>) -> ! {
    hprintln!("{}", why);
    debug::exit(debug::EXIT_FAILURE);
    // Only without a semihosting host (exit returned): sleep.
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail(format_args!("panic: {info}"))
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    fail(format_args!("hard fault: {frame:?}"))
}
