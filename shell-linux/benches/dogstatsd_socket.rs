//! The DogStatsD socket's read path through the public API: a sender thread blasts one-line
//! datagrams at a loopback UDP socket as fast as it can while this thread reads them with
//! `recv_batch`, for `batch` 1 and 64 (and 16, 256). Prints, per batch size, the datagrams sent,
//! read and dropped by the kernel (a full receive queue: the reader fell behind), the read rate,
//! and the reader's CPU per datagram (from `/proc/thread-self/stat`, 10 ms ticks). Checks
//! conservation: sent = read + kernel drops, exactly.
//!
//! A second table measures the reader alone: the queue is filled first (20,000 datagrams, a
//! 64 MiB receive buffer: forced with CAP_NET_ADMIN), then timed while it is drained, in rounds.
//!
//! `cargo bench -p chouette-agent --bench dogstatsd_socket` (`SECONDS=5` to run longer)

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chouette_agent::dogstatsd::socket::{Endpoint, Receiver, SocketOptions};

/// utime + stime of this thread, in seconds (USER_HZ = 100).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

struct Run {
    sent: u64,
    read: u64,
    kernel_drops: u64,
    seconds: f64,
    cpu: f64,
    calls: u64,
}

fn run(batch: usize, seconds: f64) -> Run {
    let options = SocketOptions { batch, ..SocketOptions::default() };
    let endpoint = Endpoint::Udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let mut receiver = Receiver::bind(&endpoint, &options).expect("bind");
    let port = receiver.local_port().expect("port");
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("sender");
            socket.connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
            let line = b"bench.requests:1|c|#env:prod,service:api";
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    if socket.send(line).is_ok() {
                        sent += 1;
                    }
                }
            }
            sent
        })
    };
    let mut bytes = 0usize;
    let mut calls = 0u64;
    let cpu_start = thread_cpu_secs();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        if receiver.recv_batch(Duration::from_millis(100), |d| bytes += d.len()).expect("recv") > 0 {
            calls += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_secs() - cpu_start;
    let read_in_time = receiver.stats().datagrams;
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    // Drain what is queued, then one more datagram brings the drops stamped after the last one.
    while receiver.recv_batch(Duration::from_millis(200), |_| {}).expect("recv") > 0 {}
    let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("probe");
    probe.send_to(b"last:1|c", (Ipv4Addr::LOCALHOST, port)).expect("send");
    while receiver.recv_batch(Duration::from_millis(200), |_| {}).expect("recv") > 0 {}
    let stats = receiver.stats();
    assert_eq!(stats.datagrams + stats.kernel_drops, sent + 1, "conservation, batch {batch}: {stats:?}");
    Run { sent, read: read_in_time, kernel_drops: stats.kernel_drops, seconds: elapsed, cpu, calls }
}

const FILL: usize = 20_000;
const ROUNDS: usize = 25;

/// Datagrams read, kernel drops, wall seconds and CPU seconds spent draining.
fn drain(batch: usize) -> (u64, u64, f64, f64) {
    let options = SocketOptions { batch, recv_buffer: 64 << 20, ..SocketOptions::default() };
    let endpoint = Endpoint::Udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let mut receiver = Receiver::bind(&endpoint, &options).expect("bind");
    let port = receiver.local_port().expect("port");
    let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("sender");
    sender.connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    let (mut wall, mut cpu) = (0.0, 0.0);
    for _ in 0..ROUNDS {
        for _ in 0..FILL {
            sender.send(b"bench.requests:1|c|#env:prod,service:api").expect("send");
        }
        let (start, cpu_start) = (Instant::now(), thread_cpu_secs());
        while receiver.recv_batch(Duration::ZERO, |_| {}).expect("recv") > 0 {}
        wall += start.elapsed().as_secs_f64();
        cpu += thread_cpu_secs() - cpu_start;
    }
    let stats = receiver.stats();
    (stats.datagrams, stats.kernel_drops, wall, cpu)
}

fn main() {
    let seconds: f64 = std::env::var("SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    println!("one-line datagrams on loopback UDP, one sender thread flat out, {seconds} s per row");
    println!(
        "{:>6} {:>11} {:>11} {:>11} {:>12} {:>10} {:>13}",
        "batch", "sent", "read", "dropped", "read/s", "per call", "CPU ns/dgram"
    );
    for batch in [1, 16, 64, 256] {
        let r = run(batch, seconds);
        println!(
            "{:>6} {:>11} {:>11} {:>11} {:>12.0} {:>10.1} {:>13.0}",
            batch,
            r.sent,
            r.read,
            r.kernel_drops,
            r.read as f64 / r.seconds,
            r.read as f64 / r.calls.max(1) as f64,
            r.cpu * 1e9 / r.read.max(1) as f64,
        );
    }

    println!();
    println!("the reader alone: {FILL} datagrams queued, then drained; {ROUNDS} rounds");
    println!("{:>6} {:>11} {:>11} {:>12} {:>13}", "batch", "read", "dropped", "read/s", "CPU ns/dgram");
    for batch in [1, 16, 64, 256] {
        let (read, dropped, wall, cpu) = drain(batch);
        println!(
            "{:>6} {:>11} {:>11} {:>12.0} {:>13.0}",
            batch,
            read,
            dropped,
            read as f64 / wall,
            cpu * 1e9 / read.max(1) as f64
        );
    }
}
