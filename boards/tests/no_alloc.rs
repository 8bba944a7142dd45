//! The parsers and metric helpers never touch the heap: a counting global allocator (per thread, so the
//! test harness's own threads do not interfere) sees zero allocations while they run.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use std::alloc::System;

use chouette_boards::{linux, rpi, tegrastats};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn tegrastats_lines_do_not_allocate() {
    let lines: Vec<String> = [
        "01-nano-jp4-root.txt",
        "04-tx2-older-rails.txt",
        "07-agx-xavier-jp4-root.txt",
        "10-orin-nx16-jp5-mw.txt",
        "13-orin-nano8-jp6-root-timestamp.txt",
        "tegrastats_line.txt",
    ]
    .iter()
    .map(|n| data(n))
    .collect();
    let n = allocations_during(|| {
        for line in &lines {
            let t = tegrastats::parse_line(line).unwrap();
            let mut sum = 0.0;
            t.datadog_metrics(|m| sum += m.value);
            t.chouette_ram_metrics(|m| sum += m.value);
            t.chouette_temperature_metrics(|m| sum += m.value);
            assert!(sum > 0.0);
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn host_and_rpi_parsers_do_not_allocate() {
    let files: Vec<String> =
        ["linux/proc_stat.txt", "linux/proc_meminfo.txt", "linux/proc_loadavg.txt", "linux/proc_mounts.txt"]
            .iter()
            .map(|n| data(n))
            .collect();
    let netdev = data("linux/proc_net_dev.txt");
    let w1 = data("rpi/w1_slave_ok.txt");
    let n = allocations_during(|| {
        assert!(linux::parse_stat_cpu(&files[0]).is_ok());
        assert!(linux::stat_cores(&files[0]).all(|r| r.is_ok()));
        assert!(linux::parse_meminfo(&files[1]).is_ok());
        assert!(linux::parse_loadavg(&files[2]).is_ok());
        assert_eq!(linux::physical_mounts(&files[3]).count(), 1);
        assert_eq!(linux::net_dev(&netdev).count(), 3);
        assert!(rpi::parse_w1_slave(&w1).is_ok());
        assert!(rpi::parse_throttled("throttled=0x50005").is_ok());
    });
    assert_eq!(n, 0);
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations_during(|| {
        core::hint::black_box(Vec::<u8>::with_capacity(8));
    });
    assert_eq!(n, 1);
}
