//! Drain throughput of both stores through the public `Store` API: 100k raw records (uuid ids,
//! ~110-byte JSON values) read in chunks of 10k, each chunk followed by one aggregation commit
//! that deletes its ids and adds 100 wrapped points. Prints records/s for read + commit.
//!
//! `cargo bench -p chouette-agent --bench store` (needs `redis-server` on the PATH).

use std::time::{Duration, Instant};

use chouette_agent::store::embedded::EmbeddedStore;
use chouette_agent::store::redis::{RedisStore, RedisTimeouts};
use chouette_agent::store::{AggregationCommit, NewRecord, Queue, Store};

const RECORDS: usize = 100_000;
const CHUNK: usize = 10_000;

fn fill(store: &mut dyn Store) {
    for start in (0..RECORDS).step_by(CHUNK) {
        let records: Vec<NewRecord> = (start..start + CHUNK)
            .map(|i| {
                let ts = 1_700_000_000.0 + i as f64 / 1000.0;
                NewRecord {
                    id: format!("{:08x}-2fa1-41d2-883f-{:012x}", i, i * 7919).into_bytes(),
                    score: ts,
                    value: format!(
                        r#"{{"metric": "req.count", "type": "count", "value": 1, "timestamp": {ts}, "tags": {{"ep": "e{}"}}}}"#,
                        i % 50
                    )
                    .into_bytes(),
                }
            })
            .collect();
        store.add(Queue::RawMetrics, &records).expect("fill");
    }
}

fn drain(store: &mut dyn Store) -> Duration {
    let start = Instant::now();
    let mut drained = 0;
    let mut round = 0;
    loop {
        let records = store.read(Queue::RawMetrics, f64::INFINITY, CHUNK).expect("read");
        let Some(last) = records.last() else { break };
        let commit = AggregationCommit {
            wrapped: (0..100)
                .map(|i| NewRecord {
                    id: format!("w{round}-{i}").into_bytes(),
                    score: last.score,
                    value: br#"{"metric": "req.count", "tags": ["ep:e1"], "points": [[1700000000.0, 3]], "type": "count", "interval": 10}"#.to_vec(),
                })
                .collect(),
            outboxes: vec![Queue::WrappedMetrics],
            delete_raw: records.iter().map(|r| r.id.clone()).collect(),
            dead: Vec::new(),
            aggregated_until: last.score,
        };
        store.commit_aggregation(&commit).expect("commit");
        drained += records.len();
        round += 1;
    }
    assert_eq!(drained, RECORDS);
    start.elapsed()
}

fn report(name: &str, store: &mut dyn Store) {
    fill(store);
    let took = drain(store);
    println!(
        "{name:<10} {RECORDS} records in {:>7.1} ms: {:>9.0} records/s (read + commit, chunks of {CHUNK})",
        took.as_secs_f64() * 1e3,
        RECORDS as f64 / took.as_secs_f64()
    );
}

fn main() {
    let server = chouette_tests::RedisServer::start();
    let mut redis = RedisStore::connect(&server.url(), RedisTimeouts::default()).expect("connect");
    report("redis", &mut redis);

    let dir = std::env::temp_dir().join(format!("chouette-bench-{}", std::process::id()));
    let mut embedded = EmbeddedStore::open(&dir.join("chouette.redb")).expect("open");
    report("embedded", &mut embedded);
    drop(embedded);
    let _ = std::fs::remove_dir_all(&dir);
}
