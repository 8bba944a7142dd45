//! A file that makes redb panic: the panic hook marks the store files in use, and the next open
//! moves the file aside. One test only: a panic in redb marks every store file this process has
//! open, which would disturb other tests' stores running beside it.

use chouette_agent::store::embedded::{panic_marker_path, EmbeddedStore};
use chouette_agent::store::{NewRecord, Queue, Store};

#[test]
fn a_panic_in_redb_marks_the_store_in_use_and_the_next_open_moves_it_aside() {
    let dir = std::env::temp_dir().join(format!("chouette-redb-panic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("chouette.redb");
    let mut store = EmbeddedStore::open(&path).expect("open");
    let records: Vec<NewRecord> = (0..10)
        .map(|i| NewRecord { id: format!("id-{i}").into_bytes(), score: f64::from(i), value: b"{}".to_vec() })
        .collect();
    store.add(Queue::RawMetrics, &records).expect("add");

    // A real panic inside redb while the store is open: redb 2.6 asserts, rather than reports,
    // that a file is at least as long as its header says (the store itself checks headers first,
    // so call redb directly on a truncated copy).
    let copy = dir.join("copy.redb");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&copy, &bytes[..bytes.len() / 2]).expect("write");
    let outcome = std::panic::catch_unwind(|| redb::Database::create(&copy).map(drop));
    assert!(outcome.is_err(), "redb panics on a truncated file");
    let marker = panic_marker_path(&path);
    let written = std::fs::read_to_string(&marker).expect("the panic marker");
    assert!(written.contains("redb-") && written.contains("panicked at"), "{written}");

    // The next open (the restarted agent) moves the file aside, with its records, and starts
    // fresh; the marker is gone.
    drop(store);
    let on_disk = std::fs::read(&path).expect("read");
    let mut store = EmbeddedStore::open(&path).expect("open after the panic");
    assert_eq!(store.len(Queue::RawMetrics).expect("len"), 0);
    assert!(!marker.exists());
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("chouette.redb.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(std::fs::read(&aside[0]).expect("read aside") == on_disk, "kept as it was");
    let mut old = EmbeddedStore::open(&aside[0]).expect("the moved file is a good store");
    assert_eq!(old.len(Queue::RawMetrics).expect("len"), 10);
    drop((store, old));
    let _ = std::fs::remove_dir_all(&dir);
}
