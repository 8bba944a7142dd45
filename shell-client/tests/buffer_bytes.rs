//! The buffer's byte bound against a real Redis: an outage with large logs holds at most the
//! bound, counts every drop by reason, and delivers exactly what it kept once Redis is back.

mod common;

use std::time::Duration;

use chouette_client::{ChouetteLogger, Client, ClientConfig, DEFAULT_BUFFER_BYTES};
use chouette_tests::RedisServer;
use common::*;
use log::Log;

/// What the client accounts per record on top of its bytes (its entry and its uuid).
const ENTRY_OVERHEAD_BYTES: u64 = 24 + 36;

fn log(logger: &ChouetteLogger, message: std::fmt::Arguments<'_>) {
    logger.log(&log::Record::builder().level(log::Level::Info).target("app").args(message).build());
}

/// The `chouette.client.dropped` counts written to Redis, by `reason` tag.
fn dropped_reported(con: &mut redis::Connection) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = metrics(con)
        .iter()
        .map(|r| json(&r.2))
        .filter(|v| v["metric"] == "chouette.client.dropped")
        .map(|v| (v["tags"]["reason"].as_str().unwrap_or("").to_owned(), v["value"].as_i64().unwrap_or(-1)))
        .collect();
    out.sort();
    out
}

#[test]
fn an_outage_with_100k_logs_of_10kb_holds_at_most_the_byte_bound_then_delivers_what_it_kept() {
    let port = RedisServer::start().kill();
    let config = ClientConfig::new(format!("redis://127.0.0.1:{port}/"))
        .with_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .with_meta_every(Duration::from_secs(3600));
    assert_eq!(config.buffer_bytes, 16 * 1024 * 1024);
    let c = Client::new(config).expect("client");
    let logger = ChouetteLogger::new(c.clone(), "svc").expect("logger");
    let filler = "x".repeat(10_000);
    const OFFERED: u64 = 100_000;
    let mut kept = Vec::new();
    for i in 0..OFFERED {
        let before = c.stats().dropped;
        log(&logger, format_args!("{i:06} {filler}"));
        if c.stats().dropped == before {
            kept.push(i);
        }
        if i % 1000 == 0 {
            assert!(c.stats().peak_buffered_bytes <= DEFAULT_BUFFER_BYTES as u64, "{:?}", c.stats());
        }
    }
    let during = c.stats();
    // Each record holds at least its 10 000 bytes of message and the entry overhead.
    let held_at_least = kept.len() as u64 * (10_000 + ENTRY_OVERHEAD_BYTES);
    assert!(held_at_least <= DEFAULT_BUFFER_BYTES as u64, "{} records kept: {during:?}", kept.len());
    assert!(during.errors > 0, "Redis was down: {during:?}");
    assert_eq!(during.sent, 0);
    assert_eq!(during.dropped_buffer_records, 0);
    assert_eq!(during.dropped_other, 0);
    assert_eq!(during.dropped, during.dropped_buffer_bytes);
    assert_eq!(kept.len() as u64 + during.dropped, OFFERED);
    // Every record has the same size, so what was kept is the first ones, until the bound.
    assert_eq!(kept, (0..kept.len() as u64).collect::<Vec<_>>());

    let redis = RedisServer::start_on(port);
    wait_until("the kept logs to be written", Duration::from_secs(60), || {
        c.stats().sent == kept.len() as u64
    });
    let mut con = redis.client();
    // Meta metrics are written as soon as Redis is back.
    wait_until("the drops to be reported", Duration::from_secs(30), || {
        !dropped_reported(&mut con).is_empty()
    });
    let after = c.stats();
    assert_eq!(after.sent + after.dropped, OFFERED, "offered = written + dropped: {after:?}");
    assert_eq!(after.dropped, during.dropped);
    assert_eq!(dropped_reported(&mut con), vec![("buffer_bytes".to_owned(), during.dropped as i64)]);

    let logs = records(&mut con, LOGS_KEYS, LOGS_VALUES);
    assert_eq!(logs.len(), kept.len());
    let record_bytes = logs[0].2.len() as u64;
    for (i, (_, _, text)) in logs.iter().enumerate() {
        // Sorted by JSON text, so by the zero-padded index.
        assert_eq!(json(text)["message"]["msg"], format!("{i:06} {filler}"));
        assert_eq!(text.len() as u64, record_bytes);
    }
    // The client held exactly as many as fit: each costs its JSON plus the entry overhead.
    let per_record = record_bytes + ENTRY_OVERHEAD_BYTES;
    assert_eq!(kept.len() as u64, DEFAULT_BUFFER_BYTES as u64 / per_record);
    assert_eq!(after.peak_buffered_bytes, kept.len() as u64 * per_record);
    eprintln!(
        "kept {} of {OFFERED} logs of {record_bytes} bytes, peak {} bytes held, {} dropped for the byte bound",
        kept.len(),
        after.peak_buffered_bytes,
        after.dropped_buffer_bytes
    );
    c.shutdown(Duration::from_secs(5)).expect("flushed");
}

#[test]
fn a_record_bigger_than_the_bound_is_dropped_and_counted_never_buffered() {
    let redis = RedisServer::start();
    let c = Client::new(ClientConfig::new(redis.url()).with_buffer_bytes(64 * 1024)).expect("client");
    let logger = ChouetteLogger::new(c.clone(), "svc").expect("logger");
    log(&logger, format_args!("{}", "y".repeat(100_000)));
    assert_eq!(c.stats().dropped_buffer_bytes, 1);
    assert_eq!(c.stats().peak_buffered_bytes, 0, "never buffered");
    log(&logger, format_args!("small"));
    c.shutdown(Duration::from_secs(5)).expect("flushed");
    let stats = c.stats();
    assert_eq!((stats.sent, stats.dropped, stats.dropped_buffer_bytes), (1, 1, 1));
    let mut con = redis.client();
    let logs = records(&mut con, LOGS_KEYS, LOGS_VALUES);
    assert_eq!(logs.len(), 1);
    assert_eq!(json(&logs[0].2)["message"]["msg"], "small");
    assert_eq!(dropped_reported(&mut con), vec![("buffer_bytes".to_owned(), 1)]);
}
