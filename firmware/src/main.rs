//! The demo firmware of issue 11 on QEMU's `lm3s6965evb`: every 100 ms of uptime it sends one
//! link frame on UART0; after `ticks` frames it waits for the gateway's ack of the last one, then
//! says `demo done: ticks=N` and exits 0 (non-zero when no ack comes, or on a panic or fault).
//!
//! The seam for the MCU crate: [`run`] takes the UART (any `embedded_io` Read + Write +
//! ReadReady), the uptime clock (a `Fn() -> u64` of milliseconds), the boot id and the options;
//! [`workload::workload`] says what each tick records. Replacing the placeholder body of [`run`]
//! with chouette-mcu's loop touches nothing else.

#![no_std]
#![no_main]

mod clock;
mod host;
mod uart;
// The metric names and the interval are for chouette-mcu's loop, which replaces the placeholder.
#[allow(dead_code)]
mod workload;

use chouette_core::link::{encode_frame, max_frame_bytes, Framer, Header, Kind, MAX_PAYLOAD};
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use embedded_io::{Read, ReadReady, Write};

use host::Options;

#[entry]
fn main() -> ! {
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        fail(format_args!("core peripherals already taken"));
    };
    let clock = clock::Clock::start(peripherals.SYST);
    let Some(uart) = uart::Uart0::take() else {
        fail(format_args!("UART0 already taken"));
    };
    let mut line = [0u8; 256];
    let options = Options::parse(host::cmdline(&mut line));
    let boot_id = host::boot_id();
    match run(uart, || clock.now_ms(), boot_id, options) {
        Ok(()) => {
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
    /// No ack of the last tick within `ack_timeout_ms` of uptime after it was sent.
    NoAck { ticks: u32, timeout_ms: u64, last_acked: Option<u16> },
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::NoAck { ticks, timeout_ms, last_acked } => write!(
                f,
                "ticks={ticks} timeout_ms={timeout_ms} last_acked={last_acked:?}, no ack of the last tick"
            ),
        }
    }
}

/// The demo's loop. Placeholder until chouette-mcu is plugged in: tick `t` (every
/// [`workload::TICK_MS`] of uptime) sends a Data frame with seq `t` and the tick as 4 LE bytes,
/// then the loop waits for an Ack frame whose seq is the last tick's.
fn run<U>(mut uart: U, now_ms: impl Fn() -> u64, boot_id: u32, options: Options) -> Result<(), Failure>
where
    U: Read + Write + ReadReady,
{
    let mut framer: Framer<{ max_frame_bytes(MAX_PAYLOAD) }> = Framer::new();
    let mut out = [0u8; max_frame_bytes(4)];
    let mut last_acked: Option<u16> = None;
    let start = now_ms();
    for tick in 0..options.ticks {
        let due = start + u64::from(tick) * workload::TICK_MS;
        while now_ms() < due {
            poll_acks(&mut uart, &mut framer, &mut last_acked);
        }
        let _sample = workload::workload(tick);
        let header = Header { kind: Kind::Data, boot_id, seq: tick as u16 };
        // A 4-byte payload always fits `out` (sized by max_frame_bytes(4)).
        if let Ok(n) = encode_frame(header, &tick.to_le_bytes(), &mut out) {
            // Infallible: the UART's error type has no value.
            let _ = uart.write_all(&out[..n]);
        }
    }
    let Some(last) = options.ticks.checked_sub(1) else {
        return Ok(());
    };
    let last = last as u16;
    let deadline = now_ms() + options.ack_timeout_ms;
    while now_ms() < deadline {
        poll_acks(&mut uart, &mut framer, &mut last_acked);
        if last_acked == Some(last) {
            return Ok(());
        }
    }
    Err(Failure::NoAck { ticks: options.ticks, timeout_ms: options.ack_timeout_ms, last_acked })
}

/// Reads what the UART holds without blocking; remembers the seq of the latest Ack frame.
fn poll_acks<U: Read + ReadReady, const N: usize>(
    uart: &mut U,
    framer: &mut Framer<N>,
    last_acked: &mut Option<u16>,
) {
    let mut buf = [0u8; 16];
    while let Ok(true) = uart.read_ready() {
        let Ok(n) = uart.read(&mut buf) else { return };
        framer.feed(&buf[..n], |frame| {
            if let Ok(frame) = frame {
                if frame.header.kind == Kind::Ack {
                    *last_acked = Some(frame.header.seq);
                }
            }
        });
    }
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
