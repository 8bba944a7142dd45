//! What the full-disk test files share (`embedded_full_disk*.rs`): a full disk simulated with
//! `RLIMIT_FSIZE` (no root, no tmpfs): past the limit a write fails with `EFBIG` instead of the
//! process being killed by SIGXFSZ, as it fails with `ENOSPC` on a full file system. The limit is
//! process-wide, so each of those files holds ONE test (cargo runs each test file as its own
//! process).

// Each test file uses its own subset.
#![allow(dead_code)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chouette_agent::store::embedded::EmbeddedStore;
use chouette_agent::store::{NewRecord, Queue, Store, StoreError};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Writes past the limit fail with `EFBIG` instead of SIGXFSZ killing the process.
pub fn catch_sigxfsz() {
    signal_hook::flag::register(signal_hook::consts::SIGXFSZ, Arc::new(AtomicBool::new(false)))
        .expect("catch SIGXFSZ");
}

/// Sets (`Some`) or lifts (`None`) the file size limit.
pub fn set_file_size_limit(bytes: Option<u64>) {
    let hard = getrlimit(Resource::Fsize).maximum;
    setrlimit(Resource::Fsize, Rlimit { current: bytes, maximum: hard }).expect("setrlimit RLIMIT_FSIZE");
}

/// Records `id-<first>` .. with 200-byte values, scored by their number.
pub fn batch(first: usize, n: usize) -> Vec<NewRecord> {
    (first..first + n)
        .map(|i| NewRecord { id: format!("id-{i:07}").into_bytes(), score: i as f64, value: vec![b'x'; 200] })
        .collect()
}

/// Every id in `queue`, in order.
pub fn all_ids(store: &mut EmbeddedStore, queue: Queue) -> Vec<String> {
    let records = store.read(queue, f64::INFINITY, usize::MAX).expect("read");
    records.into_iter().map(|r| String::from_utf8(r.id.to_vec()).expect("utf-8 id")).collect()
}

/// Retries `f` until it succeeds (the store reopens with a backoff), for at most `within`.
pub fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Result<T, StoreError>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "{what} still fails after {within:?}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
