//! One full `host` capture (cpu, fs, la, ram, network) through the public API, on this machine's
//! real `/proc` and on the fixture tree, plus the encoding of its points as wrapped records.
//! Prints wall and CPU time per capture (CPU from `/proc/thread-self/stat`, 10 ms ticks, over
//! enough iterations to make the tick resolution negligible). Target: ≤ 1 ms of CPU.
//!
//! `cargo bench -p chouette-agent --bench collect`

use std::path::{Path, PathBuf};
use std::time::Instant;

use chouette_agent::collect::host::{fixture_root, statvfs, Host, GROUPS};
use chouette_agent::collect::{encode_points, Collector};

const ITERATIONS: u32 = 5_000;

/// utime + stime of this thread, in seconds (USER_HZ = 100).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // After the command name: state is field 0, utime field 11, stime field 12.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn run(label: &str, root: PathBuf) {
    let groups = GROUPS.iter().map(|g| (*g).to_owned()).collect();
    let mut host = Host::new(root, groups, statvfs);
    let mut ids = chouette_agent::pipeline::id_generator();
    let mut points_per_capture = 0;
    let (wall, cpu) = (Instant::now(), thread_cpu_secs());
    for i in 0..ITERATIONS {
        let points = host.collect(f64::from(i)).unwrap_or_default();
        points_per_capture = points.len();
        let records = encode_points(&points, 1_700_000_000.0 + f64::from(i), &mut ids);
        std::hint::black_box(records);
    }
    let wall_us = wall.elapsed().as_secs_f64() * 1e6 / f64::from(ITERATIONS);
    let cpu_us = (thread_cpu_secs() - cpu) * 1e6 / f64::from(ITERATIONS);
    println!("| {label:<22} | {points_per_capture:>6} | {wall_us:>10.1} | {cpu_us:>10.1} |");
}

fn main() {
    let fixture = std::env::temp_dir().join(format!("chouette-bench-host-{}", std::process::id()));
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards/tests/data/linux");
    if let Err(e) = fixture_root(&data, &fixture) {
        eprintln!("cannot build the fixture tree: {e}");
        return;
    }
    println!("| host capture + encode  | points | wall µs    | CPU µs     |");
    println!("|------------------------|--------|------------|------------|");
    run("this machine (/)", PathBuf::from("/"));
    run("fixture tree", fixture.clone());
    let _ = std::fs::remove_dir_all(fixture);
}
