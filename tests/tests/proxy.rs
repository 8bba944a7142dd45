//! The fault-injecting proxy (`chouette_tests::proxy`) on real Unix sockets: the test plays the
//! device (it listens on A, as QEMU does) and the gateway (it connects to B, as the agent does).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chouette_tests::proxy::{FaultProxy, Faults, LineFaults, LineStats, ProxyStats};
use chouette_tests::{wait_until, Direction, TempDir};

const WITHIN: Duration = Duration::from_secs(30);

struct Line {
    _dir: TempDir,
    a: PathBuf,
    b: PathBuf,
    device_listener: UnixListener,
}

/// A scratch directory with the device's socket A listening (as QEMU's `server=on`).
fn line(what: &str) -> Line {
    let dir = TempDir::new(what);
    let (a, b) = (dir.0.join("a.sock"), dir.0.join("b.sock"));
    let device_listener = UnixListener::bind(&a).expect("bind A");
    device_listener.set_nonblocking(true).expect("non-blocking");
    Line { _dir: dir, a, b, device_listener }
}

/// The proxy's connection to A, as the device sees it.
fn accept_device(listener: &UnixListener) -> UnixStream {
    let deadline = Instant::now() + WITHIN;
    loop {
        match listener.accept() {
            Ok((stream, _)) => return timeouts(stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the proxy did not connect to A within {WITHIN:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept on A: {e}"),
        }
    }
}

fn connect(b: &Path) -> UnixStream {
    timeouts(UnixStream::connect(b).expect("connect to B"))
}

fn timeouts(stream: UnixStream) -> UnixStream {
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(WITHIN)).expect("read timeout");
    stream.set_write_timeout(Some(WITHIN)).expect("write timeout");
    stream
}

fn read_n(mut stream: &UnixStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    stream.read_exact(&mut got).unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    got
}

/// Every byte value, in an order that does not repeat every 256 bytes.
fn pattern(len: usize, salt: u64) -> Vec<u8> {
    (0..len as u64).map(|i| (i.wrapping_mul(31) ^ (i >> 8) ^ salt) as u8).collect()
}

fn settled(proxy: &FaultProxy, done: impl Fn(&ProxyStats) -> bool) -> ProxyStats {
    wait_until("the proxy's counters", WITHIN, || done(&proxy.stats()));
    proxy.stats()
}

/// Every byte read is accounted for: dropped, forwarded, held or overflowed.
fn assert_conserved(line: &LineStats) {
    let f = line.faults;
    assert_eq!(
        line.received - f.dropped + f.duplicated_bytes,
        line.forwarded + line.held + line.overflowed,
        "{line:?}"
    );
}

#[test]
fn a_clean_line_carries_every_byte_value_both_ways_unaltered() {
    let line = line("proxy-clean");
    let proxy = FaultProxy::start(&line.a, &line.b, Faults::none());
    let device = accept_device(&line.device_listener);
    let gateway = connect(&line.b);
    wait_until("the client", WITHIN, || proxy.client_connected());

    const MIB: usize = 1 << 20;
    let (up, down) = (pattern(MIB, 0), pattern(MIB, 0x5a));
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| (&device).write_all(&up).expect("device writes"));
        s.spawn(|| (&gateway).write_all(&down).expect("gateway writes"));
        let at_device = s.spawn(|| read_n(&device, MIB));
        let at_gateway = read_n(&gateway, MIB);
        assert!(at_gateway == up, "device → gateway altered");
        assert!(at_device.join().expect("reader") == down, "gateway → device altered");
    });
    eprintln!("1 MiB each way through the proxy in {:?}", started.elapsed());

    let stats = settled(&proxy, |s| {
        s.device_to_gateway.forwarded == MIB as u64 && s.gateway_to_device.forwarded == MIB as u64
    });
    for line in [stats.device_to_gateway, stats.gateway_to_device] {
        assert_eq!(
            line,
            LineStats {
                received: MIB as u64,
                forwarded: MIB as u64,
                held_max: line.held_max,
                ..Default::default()
            }
        );
    }
    assert_eq!((stats.clients, stats.upstream_connects), (1, 1));
    let b = line.b.clone();
    proxy.stop();
    assert!(!b.exists(), "stop removes B");
}

fn faulty() -> Faults {
    let line = LineFaults {
        drop_per_byte: 2e-3,
        flip_per_byte: 2e-3,
        duplicate_per_chunk: 0.02,
        ..LineFaults::none()
    };
    Faults { seed: 0x0dd5_eed5, device_to_gateway: line, gateway_to_device: line, ..Faults::none() }
}

/// One run of `faults` over fixed input: what each end received, and the counters.
fn faulted_run(faults: Faults) -> (Vec<u8>, Vec<u8>, ProxyStats) {
    let line = line("proxy-seeded");
    let proxy = FaultProxy::start(&line.a, &line.b, faults);
    let device = accept_device(&line.device_listener);
    let gateway = connect(&line.b);
    wait_until("the client", WITHIN, || proxy.client_connected());

    let (up, down) = (pattern(256 * 1024, 1), pattern(64 * 1024, 2));
    // What the proxy must deliver, from the same seed by the pure transformer.
    let expect = |direction, input: &[u8]| {
        let mut stream = faults.stream(direction, proxy.seed());
        let mut out = Vec::new();
        stream.feed(input, &mut out);
        (out, stream.counts())
    };
    let (want_up, counts_up) = expect(Direction::DeviceToGateway, &up);
    let (want_down, counts_down) = expect(Direction::GatewayToDevice, &down);
    let (got_up, got_down) = std::thread::scope(|s| {
        // Written in pieces of varied sizes: the faults must not depend on the split.
        s.spawn(|| {
            for piece in up.chunks(777) {
                (&device).write_all(piece).expect("device writes");
            }
        });
        s.spawn(|| (&gateway).write_all(&down).expect("gateway writes"));
        let at_device = s.spawn(|| read_n(&device, want_down.len()));
        (read_n(&gateway, want_up.len()), at_device.join().expect("reader"))
    });
    let mut stats = settled(&proxy, |s| {
        s.device_to_gateway.forwarded == want_up.len() as u64
            && s.gateway_to_device.forwarded == want_down.len() as u64
    });
    eprintln!("{stats}");
    assert!(got_up == want_up, "device → gateway: not what the seed gives");
    assert!(got_down == want_down, "gateway → device: not what the seed gives");
    assert_eq!(stats.device_to_gateway.faults, counts_up);
    assert_eq!(stats.gateway_to_device.faults, counts_down);
    for line in [&mut stats.device_to_gateway, &mut stats.gateway_to_device] {
        assert_conserved(line);
        // The one figure that depends on timing.
        line.held_max = 0;
    }
    (got_up, got_down, stats)
}

#[test]
fn the_same_seed_on_the_same_bytes_gives_the_same_faults() {
    let first = faulted_run(faulty());
    let second = faulted_run(faulty());
    assert!(first.0 == second.0 && first.1 == second.1, "the outputs differ");
    assert_eq!(first.2, second.2);
    for line in [first.2.device_to_gateway, first.2.gateway_to_device] {
        let f = line.faults;
        assert!(f.dropped > 0 && f.flipped > 0 && f.duplicated_chunks > 0, "{f:?}");
        assert_eq!(line.overflowed, 0, "a connected client is never overrun");
    }
}

#[test]
fn a_killed_client_is_replaced_and_what_the_device_sent_meanwhile_arrives_in_order() {
    let line = line("proxy-kill");
    let proxy = FaultProxy::start(&line.a, &line.b, Faults::none());
    let device = accept_device(&line.device_listener);

    let first = connect(&line.b);
    (&device).write_all(b"before").expect("device writes");
    assert_eq!(read_n(&first, 6), b"before");
    (&first).write_all(b"ack-1").expect("gateway writes");
    assert_eq!(read_n(&device, 5), b"ack-1");
    drop(first);
    wait_until("the proxy to notice the client is gone", WITHIN, || !proxy.client_connected());

    let meanwhile = pattern(20_000, 3);
    for piece in meanwhile.chunks(100) {
        (&device).write_all(piece).expect("device writes");
    }
    let stats = settled(&proxy, |s| s.device_to_gateway.received == 6 + 20_000);
    assert_eq!(stats.device_to_gateway.held, 20_000);

    let second = connect(&line.b);
    assert!(read_n(&second, 20_000) == meanwhile, "held bytes arrive to the next client, in order");
    (&device).write_all(b"after").expect("device writes");
    assert_eq!(read_n(&second, 5), b"after");
    (&second).write_all(b"ack-2").expect("gateway writes");
    assert_eq!(read_n(&device, 5), b"ack-2", "the device's connection is the same one");

    let stats = settled(&proxy, |s| s.device_to_gateway.forwarded == 6 + 20_000 + 5);
    assert_eq!((stats.clients, stats.upstream_connects), (2, 1));
    assert_eq!(stats.device_to_gateway.overflowed, 0);
    assert_conserved(&stats.device_to_gateway);
    assert_conserved(&stats.gateway_to_device);
}

#[test]
fn a_new_client_replaces_one_still_connected() {
    let line = line("proxy-replace");
    let proxy = FaultProxy::start(&line.a, &line.b, Faults::none());
    let device = accept_device(&line.device_listener);
    let old = connect(&line.b);
    wait_until("the first client", WITHIN, || proxy.stats().clients == 1);
    let new = connect(&line.b);
    wait_until("the second client", WITHIN, || proxy.stats().clients == 2);
    let mut byte = [0u8; 1];
    assert_eq!((&old).read(&mut byte).expect("read the old client"), 0, "the old client is closed");
    (&device).write_all(b"to the new one").expect("device writes");
    assert_eq!(read_n(&new, 14), b"to the new one");
}

#[test]
fn pause_removes_b_and_resume_delivers_what_was_held() {
    let line = line("proxy-pause");
    let proxy = FaultProxy::start(&line.a, &line.b, Faults::none());
    let device = accept_device(&line.device_listener);
    let client = connect(&line.b);
    wait_until("the client", WITHIN, || proxy.client_connected());

    proxy.pause();
    assert!(!line.b.exists(), "B is gone while paused");
    assert!(UnixStream::connect(&line.b).is_err(), "a gateway cannot connect while paused");
    let mut byte = [0u8; 1];
    assert_eq!((&client).read(&mut byte).expect("read"), 0, "the connected client is closed");

    let away = pattern(5_000, 4);
    (&device).write_all(&away).expect("device writes");
    let stats = settled(&proxy, |s| s.device_to_gateway.received == 5_000);
    assert_eq!(stats.device_to_gateway.held, 5_000);
    assert_eq!(stats.device_to_gateway.forwarded, 0);

    proxy.resume();
    let client = connect(&line.b);
    assert!(read_n(&client, 5_000) == away);
    (&client).write_all(b"back").expect("gateway writes");
    assert_eq!(read_n(&device, 4), b"back");
    assert_eq!(proxy.stats().upstream_connects, 1);
}

#[test]
fn past_the_hold_limit_the_newest_bytes_are_dropped_and_counted() {
    let line = line("proxy-hold");
    let proxy = FaultProxy::start(&line.a, &line.b, Faults { hold_bytes: 4_096, ..Faults::none() });
    let device = accept_device(&line.device_listener);

    let sent = pattern(10_000, 5);
    for piece in sent.chunks(1_000) {
        (&device).write_all(piece).expect("device writes");
    }
    let stats = settled(&proxy, |s| s.device_to_gateway.received == 10_000);
    let d2g = stats.device_to_gateway;
    assert_eq!((d2g.held, d2g.held_max, d2g.overflowed, d2g.forwarded), (4_096, 4_096, 5_904, 0));
    assert_conserved(&d2g);

    let client = connect(&line.b);
    assert!(read_n(&client, 4_096) == sent[..4_096], "the oldest bytes are the ones kept");
    // Nothing else was kept: the next bytes are the device's next ones.
    (&device).write_all(b"next").expect("device writes");
    assert_eq!(read_n(&client, 4), b"next");
}

#[test]
fn a_zero_hold_limit_forwards_to_a_client_and_loses_all_sent_while_none_is_there() {
    let line = line("proxy-hold0");
    let proxy = FaultProxy::start(&line.a, &line.b, Faults { hold_bytes: 0, ..Faults::none() });
    let device = accept_device(&line.device_listener);
    (&device).write_all(&pattern(3_000, 7)).expect("device writes");
    let stats = settled(&proxy, |s| s.device_to_gateway.received == 3_000);
    assert_eq!((stats.device_to_gateway.held, stats.device_to_gateway.overflowed), (0, 3_000));

    let client = connect(&line.b);
    wait_until("the client", WITHIN, || proxy.client_connected());
    // More than the in-flight cap, so the proxy must wait for the client rather than drop.
    let sent = pattern(300_000, 8);
    std::thread::scope(|s| {
        s.spawn(|| (&device).write_all(&sent).expect("device writes"));
        assert!(read_n(&client, sent.len()) == sent, "a connected client loses nothing");
    });
    assert_eq!(proxy.stats().device_to_gateway.overflowed, 3_000);
}

#[test]
fn the_default_hold_limit_keeps_a_minute_of_the_demo_firmware() {
    let line = line("proxy-minute");
    let proxy = FaultProxy::start(&line.a, &line.b, Faults::none());
    let device = accept_device(&line.device_listener);
    // 60 s at the demo's ~100 B/s, sent at once (the rate does not matter to the limit).
    let minute = pattern(60 * 100, 6);
    for second in minute.chunks(100) {
        (&device).write_all(second).expect("device writes");
    }
    let stats = settled(&proxy, |s| s.device_to_gateway.received == 6_000);
    assert_eq!((stats.device_to_gateway.held, stats.device_to_gateway.overflowed), (6_000, 0));
    let client = connect(&line.b);
    assert!(read_n(&client, 6_000) == minute);
}

#[test]
fn the_device_may_come_after_the_proxy_and_come_back() {
    let dir = TempDir::new("proxy-late");
    let (a, b) = (dir.0.join("a.sock"), dir.0.join("b.sock"));
    let proxy = FaultProxy::start(&a, &b, Faults::none());
    let client = connect(&b);
    (&client).write_all(b"early").expect("gateway writes before the device exists");
    let stats = settled(&proxy, |s| s.gateway_to_device.received == 5);
    assert_eq!((stats.gateway_to_device.held, stats.upstream_connects), (5, 0));
    assert!(!proxy.upstream_connected());

    let listener = UnixListener::bind(&a).expect("bind A");
    listener.set_nonblocking(true).expect("non-blocking");
    let device = accept_device(&listener);
    assert_eq!(read_n(&device, 5), b"early", "held for the device until it came");
    (&device).write_all(b"boot 1").expect("device writes");
    assert_eq!(read_n(&client, 6), b"boot 1");

    // The emulator exits and starts again: the proxy reconnects, the client stays.
    drop(device);
    let device = accept_device(&listener);
    (&device).write_all(b"boot 2").expect("device writes");
    assert_eq!(read_n(&client, 6), b"boot 2", "the same client, no reconnect");
    let stats = proxy.stats();
    assert_eq!((stats.clients, stats.upstream_connects), (1, 2));
}

#[test]
fn a_delay_holds_each_byte_at_least_that_long() {
    let line = line("proxy-delay");
    let delay = Duration::from_millis(300);
    let faults = Faults { device_to_gateway: LineFaults { delay, ..LineFaults::none() }, ..Faults::none() };
    let proxy = FaultProxy::start(&line.a, &line.b, faults);
    let device = accept_device(&line.device_listener);
    let client = connect(&line.b);
    wait_until("the client", WITHIN, || proxy.client_connected());
    let sent = Instant::now();
    (&device).write_all(b"late").expect("device writes");
    assert_eq!(read_n(&client, 4), b"late");
    assert!(sent.elapsed() >= delay, "arrived after {:?}", sent.elapsed());
    // The other direction has no delay, and still works.
    (&client).write_all(b"ack").expect("gateway writes");
    assert_eq!(read_n(&device, 3), b"ack");
}

/// The harness's other helper for the serial link's end-to-end test: a gateway killed -9 and
/// started again, its log kept across the restart.
#[test]
fn an_agent_killed_9_restarts_with_the_same_settings_and_one_log() {
    let state = TempDir::new("proxy-agent");
    let mut agent = chouette_tests::Agent::start(
        chouette_tests::agent_binary!(),
        &[("CHOUETTE_STATE_DIR", state.0.display().to_string())],
    );
    agent.wait_ready();
    let first = agent.pid();
    agent.kill9_and_restart();
    assert_ne!(agent.pid(), first);
    wait_until("the restarted agent to open its store", WITHIN, || {
        agent.output().matches("store in use").count() == 2
    });
    assert!(agent.stop().success(), "the restarted agent stops on SIGTERM");
}
