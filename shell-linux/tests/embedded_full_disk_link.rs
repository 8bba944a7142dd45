//! The serial link's atomic step on a full disk: [`Store::commit_link`] either writes a frame's
//! points to every outbox and the device's link state, or nothing. A full disk is simulated with
//! `RLIMIT_FSIZE` (see `embedded_full_disk.rs`); the limit is process-wide, hence one test in
//! this file.

mod full_disk;

use std::time::Duration;

use chouette_agent::store::embedded::EmbeddedStore;
use chouette_agent::store::{Queue, Store};
use full_disk::{all_ids, batch, catch_sigxfsz, eventually, set_file_size_limit};

#[test]
fn a_link_commit_that_fails_on_a_full_disk_writes_neither_points_nor_state() {
    catch_sigxfsz();
    let dir = std::env::temp_dir().join(format!("chouette-full-disk-link-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("chouette.redb");
    let outboxes = [Queue::WrappedMetrics, Queue::OpentsdbMetrics];
    let mut store = EmbeddedStore::open(&path).expect("open");
    store.commit_link(&outboxes, &batch(0, 100), "dev", b"seq-0").expect("first frame");

    let len = std::fs::metadata(&path).expect("metadata").len();
    set_file_size_limit(Some(len));
    let mut frames = 1;
    let error = loop {
        assert!(frames < 1000, "the store never filled the {len}-byte file");
        match store.commit_link(
            &outboxes,
            &batch(frames * 100, 100),
            "dev",
            format!("seq-{frames}").as_bytes(),
        ) {
            Ok(()) => frames += 1,
            Err(error) => break error,
        }
    };
    assert!(error.to_string().contains("File too large"), "{error}");
    set_file_size_limit(None);

    // Every frame committed before the failure, in both outboxes, and the state of the last one:
    // the failed frame left nothing (its retransmission will be taken, not counted twice).
    let expected: Vec<String> = (0..frames * 100).map(|i| format!("id-{i:07}")).collect();
    let state =
        eventually("reading after space is back", Duration::from_secs(20), || store.link_state("dev"));
    assert_eq!(state.as_deref(), Some(format!("seq-{}", frames - 1).as_bytes()));
    for queue in outboxes {
        assert_eq!(all_ids(&mut store, queue), expected, "{queue}");
    }
    // The retransmission goes through, then a fresh open sees it all.
    store
        .commit_link(&outboxes, &batch(frames * 100, 100), "dev", format!("seq-{frames}").as_bytes())
        .expect("retry");
    drop(store);
    let mut store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(store.link_state("dev").expect("state").as_deref(), Some(format!("seq-{frames}").as_bytes()));
    assert_eq!(store.len(Queue::OpentsdbMetrics).expect("len"), (frames as u64 + 1) * 100);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
