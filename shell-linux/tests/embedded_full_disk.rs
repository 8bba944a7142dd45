//! The embedded store on a full disk, at the store level: write, fill, fail, free, write again.
//!
//! A full disk is simulated with `RLIMIT_FSIZE` (no root, no tmpfs): past the limit a write fails
//! with `EFBIG` (SIGXFSZ is caught, so it does not kill the process), as it fails with `ENOSPC` on
//! a full file system. The limit is process-wide: this file holds ONE test, so that no other test
//! writes files while it is lowered (cargo runs each test file as its own process).

mod full_disk;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chouette_agent::store::embedded::EmbeddedStore;
use chouette_agent::store::{AggregationCommit, Queue, Store};
use full_disk::{all_ids, batch, catch_sigxfsz, eventually, set_file_size_limit};

#[test]
fn a_full_disk_loses_nothing_committed_and_the_store_works_again_once_space_is_back() {
    // Past the limit, write(2) fails with EFBIG instead of the process being killed.
    catch_sigxfsz();
    let dir = std::env::temp_dir().join(format!("chouette-full-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path: PathBuf = dir.join("chouette.redb");
    let mut store = EmbeddedStore::open(&path).expect("open");
    store.add(Queue::RawMetrics, &batch(0, 100)).expect("first batch");

    // Fill: the file may not grow any more; add batches until a commit fails.
    let len = std::fs::metadata(&path).expect("metadata").len();
    set_file_size_limit(Some(len));
    let mut committed = 100;
    let error = loop {
        assert!(committed < 100_000, "the store never filled the {len}-byte file");
        match store.add(Queue::RawMetrics, &batch(committed, 100)) {
            Ok(()) => committed += 100,
            Err(error) => break error,
        }
    };
    assert!(error.to_string().contains("File too large"), "{error}");
    assert!(error.is_transient(), "an I/O error closes the file and is retried: {error}");
    // Still full: the same batch fails again, and reads fail too (redb could reopen and read,
    // but a dispatcher that reads and sends, then cannot delete, would send the same batch at
    // every tick): the store stays closed until a probe write commits.
    let deadline = Instant::now() + Duration::from_secs(4); // spans tries to reopen at 1 s and 3 s
    while Instant::now() < deadline {
        let read = store.read(Queue::RawMetrics, f64::INFINITY, 10);
        assert!(read.is_err(), "reads fail while writes cannot commit: {read:?}");
        let again = store.add(Queue::RawMetrics, &batch(committed, 100));
        assert!(again.is_err(), "the disk is still full");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Free: the same handle works again (reopened), with every committed record, once.
    set_file_size_limit(None);
    let ids = eventually("reading after space is back", Duration::from_secs(20), || {
        store.read(Queue::RawMetrics, f64::INFINITY, usize::MAX)
    });
    let expected: Vec<String> = (0..committed).map(|i| format!("id-{i:07}")).collect();
    assert_eq!(ids.len(), committed);
    assert_eq!(all_ids(&mut store, Queue::RawMetrics), expected);

    // Write again: the failed batch and a new one, and an aggregation step.
    let commit = AggregationCommit {
        wrapped: batch(900_000, 10),
        outboxes: vec![Queue::WrappedMetrics],
        delete_raw: batch(0, 50).into_iter().map(|r| r.id.into()).collect(),
        dead: Vec::new(),
        aggregated_until: 50.0,
    };
    store.add(Queue::RawMetrics, &batch(committed, 200)).expect("write after space is back");
    store.commit_aggregation(&commit).expect("aggregation after space is back");
    let expected: Vec<String> = (50..committed + 200).map(|i| format!("id-{i:07}")).collect();
    assert_eq!(all_ids(&mut store, Queue::RawMetrics), expected);
    assert_eq!(store.len(Queue::WrappedMetrics).expect("len"), 10);

    // And it is all on disk: a fresh open sees the same.
    drop(store);
    let mut store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(all_ids(&mut store, Queue::RawMetrics), expected);
    assert_eq!(store.len(Queue::WrappedMetrics).expect("len"), 10);
    assert_eq!(store.aggregated_until().expect("watermark"), Some(50.0));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
