//! Per-call CPU time of the app's thread (user + system, from `/proc/thread-self/stat`), which
//! unlike wall time does not count waiting for a busy machine's cores.
//! `REDIS_URL=redis://127.0.0.1:6379/ cargo run --release -p chouette-client --example cpu_cost`

use std::time::{Duration, Instant};

use chouette_client::{Client, ClientConfig};

fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // After the state letter: fields 4.. ; utime and stime are fields 14 and 15 (indexes 10, 11).
    (f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)) / 100.0
}

fn measure(label: &str, n: u64, call: impl Fn(u64)) {
    let cpu = thread_cpu_secs();
    let wall = Instant::now();
    for i in 0..n {
        call(i);
    }
    let wall = wall.elapsed().as_secs_f64();
    let cpu = thread_cpu_secs() - cpu;
    println!(
        "{label}: {:.0} ns/call CPU ({:.1} M calls/s per core), {:.0} ns/call wall",
        cpu * 1e9 / n as f64,
        n as f64 / cpu / 1e6,
        wall * 1e9 / n as f64
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ClientConfig::from_env()?;
    const N: u64 = 2_000_000;
    let raw = Client::new(config.clone().with_buffer_records(N as usize + 1).with_buffer_bytes(usize::MAX))?;
    // Bursts of 500k calls, each drained before the next (the arena's pages are then warm, as
    // in an app whose writer keeps up); then one long burst that outruns Redis.
    for round in 0..4 {
        measure(&format!("raw count, 2 tags, 500k burst #{round}"), 500_000, |_| {
            raw.count("bench.requests", 1, &[("route", "/pay"), ("shop", "eu")])
        });
        while raw.stats().sent < (round + 1) * 500_000 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    measure("raw count, 2 tags, 2M burst", N, |_| {
        raw.count("bench.requests", 1, &[("route", "/pay"), ("shop", "eu")])
    });
    println!("  dropped: {}", raw.stats().dropped);
    let start = Instant::now();
    raw.shutdown(Duration::from_secs(120))?;
    let drained = start.elapsed();
    println!("  the 2M burst drained {drained:?} after its last call; sent {}", raw.stats().sent);
    if std::env::var_os("CPU_COST_RAW_ONLY").is_some() {
        return Ok(());
    }
    let agg = Client::new(config.aggregating(Duration::from_secs(10)))?;
    measure("aggregating count, 2 tags", 10 * N, |_| {
        agg.count("bench.requests", 1, &[("route", "/pay"), ("shop", "eu")])
    });
    measure("aggregating gauge, no tags", 10 * N, |i| agg.gauge("bench.level", i, &[]));
    agg.shutdown(Duration::from_secs(5))?;
    Ok(())
}
