//! The demo firmware (issue 11) under QEMU's lm3s6965evb, chouette-mcu's device inside: the
//! test gateway (`shell-mcu/tests/common`: the core's exactly-once `Receiver`, `ClockSync`, a
//! define table) on its UART0 receives every tick exactly once, the demo ends idle; without a
//! gateway it fails; its uptime follows the host's wall clock.

#[path = "../../shell-mcu/tests/common/mod.rs"]
mod gateway;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chouette_tests::{Firmware, FirmwareOptions};
use gateway::{Gateway, Line};

/// Serves the firmware's UART0 with the test gateway until the firmware says it is done or
/// failed (or 60 s pass), restarting the gateway (define table lost, `LinkState` kept) once at
/// `restart_at` if given; returns the gateway.
fn serve(firmware: &mut Firmware, mut restart_at: Option<Duration>) -> Gateway {
    let mut gateway = Gateway::new();
    let start = Instant::now();
    gateway.wall_offset_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as u64;
    let mut up = Line::new(1, 0);
    let mut down = Line::new(2, 0);
    firmware.serial.set_nonblocking(true).expect("a nonblocking UART0 socket");
    let mut buf = [0u8; 1024];
    loop {
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(60), "no end within 60 s; QEMU said:\n{}", firmware.stdout());
        match firmware.serial.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => up.send(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let stdout = firmware.stdout();
                if stdout.contains("demo done") || stdout.contains("demo failed") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("read UART0: {e}"),
        }
        if restart_at.is_some_and(|at| elapsed >= at) {
            restart_at = None;
            gateway.restart(&mut down);
        }
        gateway.poll(elapsed.as_millis() as u64, &mut up, &mut down);
        let out: Vec<u8> = down.bytes.drain(..).collect();
        if !out.is_empty() {
            firmware.serial.set_nonblocking(false).expect("blocking for the write");
            // QEMU may have exited once the demo is done: its socket is then closed.
            let _ = firmware.serial.write_all(&out);
            firmware.serial.set_nonblocking(true).expect("nonblocking again");
        }
    }
    gateway
}

#[test]
fn the_demo_forwards_every_tick_exactly_once_and_ends_idle() {
    const TICKS: u64 = 40;
    let mut firmware =
        Firmware::start(FirmwareOptions { ticks: TICKS as u32, ack_timeout_ms: None, report_stack: true });
    let gateway = serve(&mut firmware, None);
    let exit = firmware.wait(Duration::from_secs(30));
    assert_eq!(exit.status.code(), Some(0), "{exit:?}");
    let last_line = exit.stdout.trim_end().lines().last().unwrap_or("");
    assert_eq!(last_line, "demo done: ticks=40", "{exit:?}");
    println!("{}", exit.stdout.trim_end());
    // The deepest the stack went (painted at boot), within the RAM the statics leave.
    let stack = exit.stdout.lines().find_map(|l| l.strip_prefix("stack used: ")).expect("stack report");
    let mut words = stack.split_whitespace();
    let used: u64 = words.next().and_then(|w| w.parse().ok()).expect("bytes used");
    let size: u64 = words.nth(1).and_then(|w| w.parse().ok()).expect("stack size");
    assert!(used < size, "stack {used} of {size} bytes");

    assert_totals(&gateway, TICKS);
    assert_eq!(gateway.resyncs_sent, 0);

    // Uptime at real speed: every time exchange (one a second) maps uptime to the same wall
    // time, within the round trips and a loaded machine's scheduling.
    let offsets: Vec<i64> = gateway.time_samples.iter().map(|(_, sample)| sample.offset_ms).collect();
    let rtts: Vec<u64> = gateway.time_samples.iter().map(|(_, sample)| sample.rtt_ms).collect();
    assert!(offsets.len() >= 3, "time exchanges: {:?}", gateway.time_samples);
    let spread = offsets.iter().max().expect("some") - offsets.iter().min().expect("some");
    println!("clock offsets spread {spread} ms over {} exchanges, round trips {rtts:?} ms", offsets.len());
    assert!(spread < 300, "offsets {offsets:?}, round trips {rtts:?}");
}

/// What the gateway committed: every tick once (the firmware's workload: latency `tick % 7 + 1`,
/// temperature `20 + (tick % 10) / 10`).
fn assert_totals(gateway: &Gateway, ticks: u64) {
    assert_eq!(gateway.hellos.first().map(|(device, _)| device.as_str()), Some("demo"));
    let count = &gateway.totals["fw.demo.ticks"];
    assert_eq!((count.count_sum, count.count_n), (ticks as f64, ticks), "every tick exactly once");
    let latency = &gateway.totals["fw.demo.latency_ms"];
    let expected: f64 = (0..ticks).map(|tick| (tick % 7 + 1) as f64).sum();
    assert_eq!((latency.histogram_count, latency.histogram_sum), (ticks, expected));
    let temperature = &gateway.totals["fw.demo.temperature"];
    assert_eq!(temperature.gauge_n, ticks);
    let last = 20.0 + ((ticks - 1) % 10) as f64 / 10.0;
    assert_eq!(temperature.gauge_last.map(|(_, value)| value), Some(last), "the last tick's temperature");
}

#[test]
fn a_gateway_restart_resyncs_the_firmware_and_counts_stay_exact() {
    const TICKS: u64 = 30;
    let mut firmware =
        Firmware::start(FirmwareOptions { ticks: TICKS as u32, ack_timeout_ms: None, report_stack: true });
    let gateway = serve(&mut firmware, Some(Duration::from_millis(1_500)));
    let exit = firmware.wait(Duration::from_secs(30));
    assert_eq!(exit.status.code(), Some(0), "{exit:?}");
    println!("{}", exit.stdout.trim_end());
    assert!(exit.stdout.contains(" resyncs=1 "), "one new session after the restart: {exit:?}");
    assert_eq!(exit.stdout.trim_end().lines().last(), Some("demo done: ticks=30"));
    assert_totals(&gateway, TICKS);
    assert_eq!(gateway.hellos.len(), 2, "a hello at boot, another after the gateway's");
}

#[test]
fn without_a_gateway_the_demo_fails() {
    let mut firmware =
        Firmware::start(FirmwareOptions { ticks: 3, ack_timeout_ms: Some(500), report_stack: false });
    // Read and drop what it sends: nobody acknowledges.
    firmware.serial.set_read_timeout(Some(Duration::from_millis(100))).expect("a read timeout");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1024];
    while !firmware.stdout().contains("demo failed") {
        assert!(Instant::now() < deadline, "no failure within 30 s: {}", firmware.stdout());
        match firmware.serial.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read UART0: {e}"),
        }
    }
    let exit = firmware.wait(Duration::from_secs(30));
    assert_eq!(exit.status.code(), Some(1), "{exit:?}");
    let line = exit.stdout.trim_end();
    assert!(
        line.starts_with("demo failed: ticks=3 timeout_ms=500 queued=")
            && line.ends_with("not idle: the gateway did not acknowledge everything"),
        "{exit:?}"
    );
}
