//! Parse speed: each captured tegrastats line (target ≤ 5 µs, no allocation) and one full host capture
//! from the /proc fixtures (target ≤ 1 ms).

use core::hint::black_box;

use chouette_boards::{linux, tegrastats};
use criterion::{criterion_group, criterion_main, Criterion};

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn tegrastats_lines(c: &mut Criterion) {
    let mut names: Vec<String> = std::fs::read_dir(format!("{}/tests/data", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(|c: char| c.is_ascii_digit()) || n == "tegrastats_line.txt")
        .collect();
    names.sort();
    let mut group = c.benchmark_group("tegrastats");
    for name in names {
        let line = data(&name);
        group.bench_function(name.trim_end_matches(".txt"), |b| {
            b.iter(|| {
                let t = tegrastats::parse_line(black_box(&line)).unwrap();
                black_box(t.cpus.len() + t.temps.len())
            })
        });
    }
    let line = data("13-orin-nano8-jp6-root-timestamp.txt");
    group.bench_function("13+datadog_metrics", |b| {
        b.iter(|| {
            let t = tegrastats::parse_line(black_box(&line)).unwrap();
            let mut sum = 0.0;
            t.datadog_metrics(|m| sum += m.value);
            black_box(sum)
        })
    });
    group.finish();
}

fn host_capture(c: &mut Criterion) {
    let stat = data("linux/proc_stat.txt");
    let meminfo = data("linux/proc_meminfo.txt");
    let loadavg = data("linux/proc_loadavg.txt");
    let mounts = data("linux/proc_mounts.txt");
    let netdev = data("linux/proc_net_dev.txt");
    let prev = linux::CpuTimes::default();
    c.bench_function("host/full_capture", |b| {
        b.iter(|| {
            let cpu = linux::parse_stat_cpu(black_box(&stat)).unwrap();
            let pct = linux::busy_percent(&prev, &cpu);
            let mem = linux::parse_meminfo(black_box(&meminfo)).unwrap();
            let la = linux::parse_loadavg(black_box(&loadavg)).unwrap();
            let fs = linux::physical_mounts(black_box(&mounts)).count();
            let net: u64 = linux::net_dev(black_box(&netdev)).map(|i| i.unwrap().tx_bytes).sum();
            black_box((pct, mem.used_bytes(), la.one, fs, net))
        })
    });
}

criterion_group!(benches, tegrastats_lines, host_capture);
criterion_main!(benches);
