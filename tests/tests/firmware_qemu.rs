//! The demo firmware (issue 11) under QEMU's lm3s6965evb: its frames on UART0, read with the
//! core's `Framer`; the ack that ends the demo; the failure without it; its uptime against the
//! host's wall clock.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use chouette_core::link::{encode_frame, max_frame_bytes, Framer, Header, Kind, MAX_PAYLOAD};
use chouette_tests::{Firmware, FirmwareOptions};

/// One frame as the test saw it, with the host time it was complete.
#[derive(Debug)]
struct Seen {
    kind: Kind,
    boot_id: u32,
    seq: u16,
    payload: Vec<u8>,
    at: Instant,
}

/// Reads frames from the firmware's UART0 until `count` arrived; fails the test on a refused
/// frame or after 30 s.
fn read_frames(firmware: &mut Firmware, count: usize) -> Vec<Seen> {
    let mut framer: Framer<{ max_frame_bytes(MAX_PAYLOAD) }> = Framer::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    firmware.serial.set_read_timeout(Some(Duration::from_millis(200))).expect("set a read timeout");
    let mut buf = [0u8; 256];
    while seen.len() < count {
        assert!(Instant::now() < deadline, "{} of {count} frames within 30 s", seen.len());
        let n = match firmware.serial.read(&mut buf) {
            Ok(0) => panic!("UART0 closed after {} frames; QEMU said:\n{}", seen.len(), firmware.stdout()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                continue
            }
            Err(e) => panic!("read UART0: {e}"),
        };
        let at = Instant::now();
        framer.feed(&buf[..n], |frame| {
            let frame = frame.expect("every frame from the firmware is valid");
            seen.push(Seen {
                kind: frame.header.kind,
                boot_id: frame.header.boot_id,
                seq: frame.header.seq,
                payload: frame.payload.to_vec(),
                at,
            });
        });
    }
    seen
}

/// Checks the placeholder's frames: Data, one boot id, seq 0, 1, 2, ..., payload the tick.
fn check_ticks(seen: &[Seen]) {
    let boot_id = seen[0].boot_id;
    for (tick, frame) in seen.iter().enumerate() {
        assert_eq!(frame.kind, Kind::Data, "frame {tick}");
        assert_eq!(frame.boot_id, boot_id, "frame {tick}");
        assert_eq!(frame.seq, tick as u16, "frame {tick}");
        assert_eq!(frame.payload, (tick as u32).to_le_bytes(), "frame {tick}");
    }
}

fn ack(firmware: &mut Firmware, boot_id: u32, seq: u16) {
    let mut out = [0u8; max_frame_bytes(0)];
    let n = encode_frame(Header { kind: Kind::Ack, boot_id, seq }, &[], &mut out).expect("encode the ack");
    firmware.serial.write_all(&out[..n]).expect("write the ack to UART0");
}

#[test]
fn frames_arrive_in_order_and_the_ack_ends_the_demo() {
    let mut firmware = Firmware::start(FirmwareOptions { ticks: 10, ack_timeout_ms: None });
    let seen = read_frames(&mut firmware, 10);
    check_ticks(&seen);
    ack(&mut firmware, seen[0].boot_id, 9);
    let exit = firmware.wait(Duration::from_secs(30));
    assert_eq!(exit.status.code(), Some(0), "{exit:?}");
    assert_eq!(exit.stdout.trim_end(), "demo done: ticks=10", "{exit:?}");
}

#[test]
fn without_the_ack_the_demo_fails() {
    let mut firmware = Firmware::start(FirmwareOptions { ticks: 3, ack_timeout_ms: Some(500) });
    let seen = read_frames(&mut firmware, 3);
    check_ticks(&seen);
    // An ack of an earlier tick is not enough.
    ack(&mut firmware, seen[0].boot_id, 1);
    let exit = firmware.wait(Duration::from_secs(30));
    assert_eq!(exit.status.code(), Some(1), "{exit:?}");
    assert_eq!(
        exit.stdout.trim_end(),
        "demo failed: ticks=3 timeout_ms=500 last_acked=Some(1), no ack of the last tick",
        "{exit:?}"
    );
}

/// The gateway converts the firmware's uptime to wall time, so uptime must advance at real speed
/// under QEMU: 30 ticks of 100 ms of uptime (3 s) must take 3 s of the host's time. Measured from
/// tick 1 to tick 31 (tick 0 is sent while QEMU is still starting up).
#[test]
fn uptime_follows_wall_clock() {
    let mut firmware = Firmware::start(FirmwareOptions { ticks: 32, ack_timeout_ms: None });
    let seen = read_frames(&mut firmware, 32);
    check_ticks(&seen);
    let wall = seen[31].at - seen[1].at;
    let drift_ms = wall.as_secs_f64() * 1000.0 - 3000.0;
    let gaps: Vec<u128> = seen.windows(2).map(|w| (w[1].at - w[0].at).as_millis()).collect();
    println!(
        "uptime 3000 ms took {:.1} ms of wall time: drift {drift_ms:+.1} ms ({:+.2} %); gaps {gaps:?}",
        wall.as_secs_f64() * 1000.0,
        drift_ms / 30.0
    );
    // Frames are read as they come (no buffering in QEMU's chardev beyond a few bytes); the
    // bound leaves room for a loaded CI machine, and catches a wrong SysTick rate (12 vs 50 MHz
    // is a factor of 4, 1 MHz a factor of 12).
    assert!(drift_ms.abs() < 300.0, "uptime 3000 ms took {wall:?} of wall time");
    ack(&mut firmware, seen[0].boot_id, 31);
    let exit = firmware.wait(Duration::from_secs(30));
    assert_eq!(exit.status.code(), Some(0), "{exit:?}");
}
