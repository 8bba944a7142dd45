//! A full disk on which in-place writes still succeed: the redb file is sparse, so its header
//! (already on disk) can be rewritten while every page that needs a new block fails. Simulated
//! with `RLIMIT_FSIZE` at one page: past it, writes fail with `EFBIG` (SIGXFSZ caught). redb 2.6
//! may then leave the "recovery required" bit clear, and a later open without repair works on
//! stale allocator state ("Attempted to free page 52, order 0, which is not allocated" in 5 of 6
//! trials, a slice-index panic on read through the agent binary). The store sets that bit itself.
//!
//! The limit is process-wide: ONE test in this file (cargo runs each test file as its own process).

mod full_disk;

use std::time::{Duration, Instant};

use chouette_agent::store::embedded::EmbeddedStore;
use chouette_agent::store::{Bytes, Queue, Store};
use full_disk::{batch, catch_sigxfsz, eventually, set_file_size_limit};

fn ids(first: usize, n: usize) -> Vec<Bytes> {
    batch(first, n).into_iter().map(|r| r.id.into()).collect()
}

#[test]
fn failed_writes_and_repairs_on_a_full_disk_leave_a_store_that_reopens_whole() {
    catch_sigxfsz();
    // Three rounds: without the fix, one round failed in one trial of six, five in the others.
    for round in 0..3 {
        let dir =
            std::env::temp_dir().join(format!("chouette-full-disk-repair-{}-{round}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("chouette.redb");
        let mut store = EmbeddedStore::open(&path).expect("open");
        // Adds and deletes, so that the file has freed pages to reuse.
        for chunk in 0..5 {
            store.add(Queue::RawMetrics, &batch(chunk * 100, 100)).expect("add");
            store.delete(Queue::RawMetrics, &ids(chunk * 100, 50)).expect("delete");
        }

        // Full: only the first page (the header) can be written; the agent keeps calling.
        set_file_size_limit(Some(4096));
        let full_until = Instant::now() + Duration::from_secs(5); // tries to reopen at 1 s and 3 s
        while Instant::now() < full_until {
            assert!(
                store.add(Queue::RawMetrics, &batch(10_000, 10)).is_err(),
                "round {round}: the disk is full"
            );
            std::thread::sleep(Duration::from_millis(200));
        }

        // Free: every record committed before, once, nothing of the failed adds.
        set_file_size_limit(None);
        let records = eventually("reading after space is back", Duration::from_secs(30), || {
            store.read(Queue::RawMetrics, f64::INFINITY, 10_000)
        });
        let got: Vec<Bytes> = records.into_iter().map(|r| r.id).collect();
        let expected: Vec<Bytes> = (0..5).flat_map(|chunk| ids(chunk * 100 + 50, 50)).collect();
        assert!(got == expected, "round {round}: {} records, expected the 250 committed", got.len());
        store.add(Queue::RawMetrics, &batch(10_000, 10)).expect("write after space is back");
        drop(store);
        let mut store = EmbeddedStore::open(&path).expect("reopen");
        assert_eq!(store.len(Queue::RawMetrics).expect("len"), 260, "round {round}");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
