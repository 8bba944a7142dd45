//! The aggregation step against a real Redis that misbehaves: writes refused while reads work
//! (OOM under `noeviction`, NOREPLICAS), a read failing between two pages, records stamped far
//! in the future, a watermark ahead of the clock, records too large to load, a cleanup that
//! fails. Each test drives `Aggregation::step` with an explicit clock and checks exact values:
//! a failed step leaves no trace, nothing is lost, nothing is counted twice.

use std::collections::BTreeMap;
use std::time::Duration;

use chouette_agent::limits;
use chouette_agent::pipeline::{self, Aggregation, Counters, StepOutcome};
use chouette_agent::store::redis::{RedisStore, RedisTimeouts};
use chouette_agent::store::{Bytes, Queue, Record, Store, StoreError};
use chouette_core::wrap::WrapConfig;
use chouette_tests::{write_raw, RedisServer};
use redis::Commands;

const INTERVAL: u32 = 10;

/// A bucket start well in the past, so every bucket of the tests has closed at `now()`.
fn bucket() -> f64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    ((t - 3600.0) / 10.0).floor() * 10.0
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn raw(metric: &str, kind: &str, value: f64, ts: f64) -> String {
    format!(
        r#"{{"metric": "{metric}", "type": "{kind}", "value": {value}, "timestamp": {ts}, "tags": {{"t": "x"}}}}"#
    )
}

fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::connect(&redis.url(), RedisTimeouts::uniform(Duration::from_secs(5))).unwrap()
}

fn aggregation() -> Aggregation {
    Aggregation::new(INTERVAL, Duration::ZERO, WrapConfig::default())
}

/// Steps until idle (at most 50 steps).
fn drain(agg: &mut Aggregation, store: &mut dyn Store, now: f64, counters: &mut Counters) {
    for _ in 0..50 {
        if agg.step(store, now, counters).unwrap() == StepOutcome::Idle {
            return;
        }
    }
    panic!("aggregation did not become idle in 50 steps");
}

/// `(metric, timestamp) -> [values]` of every wrapped point.
fn wrapped_points(con: &mut redis::Connection) -> BTreeMap<(String, u64), Vec<f64>> {
    let values: Vec<String> = con.hvals("chouette:metrics:wrapped.values").unwrap();
    let mut out: BTreeMap<(String, u64), Vec<f64>> = BTreeMap::new();
    for v in values {
        let json: serde_json::Value = serde_json::from_str(&v).unwrap();
        let metric = json["metric"].as_str().unwrap().to_string();
        for point in json["points"].as_array().unwrap() {
            let ts = point[0].as_f64().unwrap() as u64;
            out.entry((metric.clone(), ts)).or_default().push(point[1].as_f64().unwrap());
        }
    }
    out
}

fn counts(b: f64) -> Vec<(String, f64, String)> {
    let mut records = Vec::new();
    for i in 0..100 {
        let ts = b + (i % 10) as f64 + 0.5;
        records.push((format!("b-{i:04}"), ts, raw("faults.count", "count", 1.0, ts)));
    }
    for i in 0..50 {
        let ts = b + 10.0 + (i % 10) as f64 + 0.25;
        records.push((format!("c-{i:04}"), ts, raw("faults.count", "count", 1.0, ts)));
    }
    // One poison record and one orphan id in bucket B: counted once, whatever happens.
    records.push(("poison".into(), b + 1.0, "So wrong!".into()));
    records
}

fn refused_commits_leave_no_trace(refuse: &[(&str, &str)], allow: &[(&str, &str)]) {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let b = bucket();
    write_raw(&mut con, &counts(b));
    let _: () = con.zadd("chouette:metrics:raw.keys", "orphan", b + 2.0).unwrap();
    let mut store = store(&redis);
    let mut agg = aggregation();
    let mut counters = Counters::default();
    for (k, v) in refuse {
        let _: () = redis::cmd("CONFIG").arg("SET").arg(k).arg(v).query(&mut con).unwrap();
    }
    for attempt in 0..4 {
        let result = agg.step(&mut store, now(), &mut counters);
        assert!(result.is_err(), "attempt {attempt}: the commit should be refused, got {result:?}");
        assert_eq!(counters, Counters::default(), "attempt {attempt}: a failed step counted something");
    }
    let watermark: Option<String> = con.get("chouette:agent:aggregated_until").unwrap();
    assert_eq!(watermark, None, "the watermark moved while writes were refused");
    for (k, v) in allow {
        let _: () = redis::cmd("CONFIG").arg("SET").arg(k).arg(v).query(&mut con).unwrap();
    }
    drain(&mut agg, &mut store, now(), &mut counters);

    let points = wrapped_points(&mut con);
    let want = BTreeMap::from([
        (("faults.count".to_string(), b as u64), vec![100.0]),
        (("faults.count".to_string(), b as u64 + 10), vec![50.0]),
    ]);
    assert_eq!(points, want);
    assert_eq!(counters.aggregated, 150);
    assert_eq!(counters.late, 0);
    assert_eq!(counters.orphans, 1);
    assert_eq!(counters.refused, BTreeMap::from([("not_json".to_string(), 1)]));
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:raw.keys").unwrap(), 0);
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:raw.dead.keys").unwrap(), 1);
}

#[test]
fn a_commit_refused_for_noreplicas_leaves_no_trace() {
    refused_commits_leave_no_trace(&[("min-replicas-to-write", "1")], &[("min-replicas-to-write", "0")]);
}

#[test]
fn a_commit_refused_for_oom_leaves_no_trace() {
    refused_commits_leave_no_trace(
        &[("maxmemory-policy", "noeviction"), ("maxmemory", "1")],
        &[("maxmemory", "0")],
    );
}

/// A store whose `read_page` fails once at a given offset (a connection lost between pages).
struct FailingPage<S> {
    inner: S,
    fail_at_offset: Option<usize>,
}

impl<S: Store> Store for FailingPage<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn ping(&mut self) -> Result<(), StoreError> {
        self.inner.ping()
    }
    fn read_page(
        &mut self,
        q: Queue,
        max: f64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        if q == Queue::RawMetrics && self.fail_at_offset == Some(offset) {
            self.fail_at_offset = None;
            return Err(StoreError::Unavailable {
                store: "test".into(),
                op: "read",
                detail: "connection reset (injected)".into(),
            });
        }
        self.inner.read_page(q, max, offset, limit)
    }
    fn read_above(&mut self, q: Queue, min: f64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.inner.read_above(q, min, limit)
    }
    fn dead_letter_oversize(&mut self, q: Queue, records: &[Record]) -> Result<u64, StoreError> {
        self.inner.dead_letter_oversize(q, records)
    }
    fn oldest_score(&mut self, q: Queue) -> Result<Option<f64>, StoreError> {
        self.inner.oldest_score(q)
    }
    fn commit_aggregation(&mut self, c: &chouette_agent::store::AggregationCommit) -> Result<(), StoreError> {
        self.inner.commit_aggregation(c)
    }
    fn aggregated_until(&mut self) -> Result<Option<f64>, StoreError> {
        self.inner.aggregated_until()
    }
    fn add(&mut self, q: Queue, r: &[chouette_agent::store::NewRecord]) -> Result<(), StoreError> {
        self.inner.add(q, r)
    }
    fn add_to_each(&mut self, q: &[Queue], r: &[chouette_agent::store::NewRecord]) -> Result<(), StoreError> {
        self.inner.add_to_each(q, r)
    }
    fn delete(&mut self, q: Queue, ids: &[Bytes]) -> Result<(), StoreError> {
        self.inner.delete(q, ids)
    }
    fn dead_letter(&mut self, q: Queue, r: &[chouette_agent::store::DeadRecord]) -> Result<(), StoreError> {
        self.inner.dead_letter(q, r)
    }
    fn cleanup(&mut self, q: Queue, threshold: f64) -> Result<u64, StoreError> {
        self.inner.cleanup(q, threshold)
    }
    fn len(&mut self, q: Queue) -> Result<u64, StoreError> {
        self.inner.len(q)
    }
    fn put_status(&mut self, fields: &[(&str, String)]) -> Result<(), StoreError> {
        self.inner.put_status(fields)
    }
    fn status(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.status()
    }
}

#[test]
fn a_read_failing_between_two_pages_counts_the_first_page_once() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let b = bucket();
    let n = limits::RAW_PAGE + 5000;
    let records: Vec<_> = (0..n)
        .map(|i| {
            let ts = b + (i % 10) as f64;
            (format!("p-{i:06}"), ts, raw("pages.count", "count", 1.0, ts))
        })
        .collect();
    write_raw(&mut con, &records);
    let mut store = FailingPage { inner: store(&redis), fail_at_offset: Some(limits::RAW_PAGE) };
    let mut agg = aggregation();
    let mut counters = Counters::default();
    assert!(agg.step(&mut store, now(), &mut counters).is_err());
    assert_eq!(counters, Counters::default());
    drain(&mut agg, &mut store, now(), &mut counters);
    let points = wrapped_points(&mut con);
    assert_eq!(points, BTreeMap::from([(("pages.count".to_string(), b as u64), vec![n as f64])]));
    assert_eq!((counters.aggregated, counters.late), (n as u64, 0));
}

#[test]
fn records_far_in_the_future_are_dead_lettered_and_counted() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let b = bucket();
    let t = now();
    let mut records = Vec::new();
    for i in 0..20 {
        // Milliseconds, and a day ahead: never aggregated, never expired before the fix.
        records.push((
            format!("ms-{i}"),
            t * 1000.0 + i as f64,
            raw("future.count", "count", 1.0, t * 1000.0),
        ));
        records.push((
            format!("day-{i}"),
            t + 86_400.0 + i as f64,
            raw("future.count", "count", 1.0, t + 86_400.0),
        ));
    }
    // Five minutes ahead is within the horizon: it waits for its bucket.
    records.push(("soon".into(), t + 300.0, raw("soon.count", "count", 1.0, t + 300.0)));
    records.push(("good".into(), b + 1.0, raw("good.count", "count", 3.0, b + 1.0)));
    write_raw(&mut con, &records);

    let mut store = store(&redis);
    let mut agg = aggregation();
    let mut counters = Counters::default();
    drain(&mut agg, &mut store, t, &mut counters);
    assert_eq!(counters.refused, BTreeMap::from([("future".to_string(), 40)]));
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:raw.dead.keys").unwrap(), 40);
    let remaining: Vec<String> = con.zrange("chouette:metrics:raw.keys", 0, -1).unwrap();
    assert_eq!(remaining, ["soon"]);
    let envelope: String = con.hget("chouette:metrics:raw.dead.values", "day-3").unwrap();
    assert!(
        envelope.starts_with(r#"{"reason": "future", "queue": "chouette:metrics:raw", "value": "#),
        "{envelope}"
    );
    assert_eq!(wrapped_points(&mut con), BTreeMap::from([(("good.count".to_string(), b as u64), vec![3.0])]));
}

#[test]
fn a_watermark_ahead_of_the_clock_does_not_stall_aggregation() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let b = bucket();
    // The agent ran with a clock a day ahead, then the clock was set right.
    let _: () = con.set("chouette:agent:aggregated_until", format!("{:?}", now() + 86_400.0)).unwrap();
    write_raw(&mut con, &[("r".into(), b + 2.0, raw("clock.count", "count", 7.0, b + 2.0))]);
    let mut store = store(&redis);
    let mut agg = aggregation();
    let mut counters = Counters::default();
    drain(&mut agg, &mut store, now(), &mut counters);
    assert_eq!(
        wrapped_points(&mut con),
        BTreeMap::from([(("clock.count".to_string(), b as u64), vec![7.0])])
    );
    let watermark: String = con.get("chouette:agent:aggregated_until").unwrap();
    assert_eq!(watermark.parse::<f64>().unwrap(), b + 10.0);
}

#[test]
fn records_too_large_to_load_are_dead_lettered_whole_and_pages_stay_bounded() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let b = bucket();
    let limit = Queue::RawMetrics.max_record_bytes();
    // 200 records of 60 KiB each (12 MB: pages are cut by bytes), 3 of them over the limit.
    let mut records = Vec::new();
    let mut total = 0.0;
    for i in 0..200 {
        let ts = b + (i % 10) as f64;
        let pad = if i % 70 == 5 { limit + 1 } else { 60 * 1024 };
        let value = format!(
            r#"{{"metric": "big.count", "type": "count", "value": 1, "timestamp": {ts}, "tags": {{}}, "pad": "{}"}}"#,
            "x".repeat(pad)
        );
        if i % 70 != 5 {
            total += 1.0;
        }
        records.push((format!("big-{i:04}"), ts, value));
    }
    write_raw(&mut con, &records);
    let oversize_value = records[5].2.clone();
    let mut store = store(&redis);
    let page = store.read_page(Queue::RawMetrics, f64::INFINITY, 0, 10_000).unwrap();
    let loaded: usize = page.iter().filter_map(|r| r.value.as_ref()).map(|v| v.len()).sum();
    assert!(page.len() < 200 && loaded <= chouette_agent::limits::MAX_PAGE_BYTES, "{} {loaded}", page.len());
    let big = page.iter().find(|r| r.id == b"big-0005"[..]).expect("big-0005 is in the first page");
    assert!(big.value.is_none());
    assert_eq!(big.oversize, Some(oversize_value.len() as u64));

    let mut agg = aggregation();
    let mut counters = Counters::default();
    drain(&mut agg, &mut store, now(), &mut counters);
    assert_eq!(
        wrapped_points(&mut con),
        BTreeMap::from([(("big.count".to_string(), b as u64), vec![total])])
    );
    assert_eq!(counters.refused, BTreeMap::from([("too_large".to_string(), 3)]));
    let envelope: Vec<u8> = con.hget("chouette:metrics:raw.dead.values", "big-0005").unwrap();
    let json: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    assert_eq!(json["reason"], "too_large");
    assert_eq!(json["size"], oversize_value.len());
    assert!(json["value"].as_str() == Some(oversize_value.as_str()), "the value was not kept exactly");
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:raw.keys").unwrap(), 0);
}

#[test]
fn a_redis_user_without_scripting_still_cleans_up_and_moves_large_records() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("on")
        .arg(">app-password")
        .arg("~*")
        .arg("+@all")
        .arg("-@scripting")
        .query(&mut con)
        .unwrap();
    let b = bucket();
    let old = b - 30.0 * 86_400.0;
    let big = format!(
        r#"{{"metric": "m", "type": "count", "value": 1, "timestamp": {b}, "tags": {{}}, "pad": "{}"}}"#,
        "y".repeat(Queue::RawMetrics.max_record_bytes())
    );
    write_raw(
        &mut con,
        &[
            ("old".into(), old, raw("old.count", "count", 1.0, old)),
            ("big".into(), b + 1.0, big.clone()),
            ("ok".into(), b + 1.0, raw("ok.count", "count", 2.0, b + 1.0)),
        ],
    );
    let url = format!("redis://app:app-password@127.0.0.1:{}/0", redis.port);
    let mut store = RedisStore::connect(&url, RedisTimeouts::default()).unwrap();
    let mut counters = Counters::default();
    pipeline::cleanup(
        &mut store,
        now(),
        Duration::from_secs(14_400),
        Duration::from_secs(64_800),
        &mut counters,
    )
    .unwrap();
    assert_eq!(counters.expired.get("chouette:metrics:raw"), Some(&1));
    let mut agg = aggregation();
    drain(&mut agg, &mut store, now(), &mut counters);
    assert_eq!(wrapped_points(&mut con), BTreeMap::from([(("ok.count".to_string(), b as u64), vec![2.0])]));
    let envelope: Vec<u8> = con.hget("chouette:metrics:raw.dead.values", "big").unwrap();
    let json: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    assert_eq!(json["reason"].as_str(), Some("too_large"));
    assert!(json["value"].as_str() == Some(big.as_str()), "the value was not kept exactly");
}

#[test]
fn a_cleanup_failing_on_one_queue_still_cleans_the_others() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let b = bucket();
    let old = b - 30.0 * 86_400.0;
    // A foreign key of the wrong type where the logs queue lives.
    let _: () = con.set("chouette:logs:wrapped.keys", "not a zset").unwrap();
    write_raw(&mut con, &[("old".into(), old, raw("old.count", "count", 1.0, old))]);
    let mut store = store(&redis);
    let mut counters = Counters::default();
    let result = pipeline::cleanup(
        &mut store,
        now(),
        Duration::from_secs(14_400),
        Duration::from_secs(64_800),
        &mut counters,
    );
    let error = result.unwrap_err().to_string();
    assert!(error.contains("WRONGTYPE"), "{error}");
    assert_eq!(counters.expired.get("chouette:metrics:raw"), Some(&1));
}

#[test]
fn a_log_too_large_to_load_is_dead_lettered_whole_and_the_others_are_sent() {
    use chouette_agent::dispatch::{DispatchConfig, Dispatcher, DryRunTransport};
    let redis = RedisServer::start();
    let mut con = redis.client();
    let t = now() - 60.0;
    let log = |msg: &str| {
        format!(
            r#"{{"date": "2026-11-22T01:25:26.000001+00:00", "ddsource": "svc", "ddtags": ["a:b"], "level": "INFO", "message": {{"msg": "{msg}"}}, "service": "svc"}}"#
        )
    };
    let huge = log(&"z".repeat(Queue::Logs.max_record_bytes() + 10));
    let mut pipe = redis::pipe();
    for (i, value) in [log("first"), huge.clone(), log("last")].iter().enumerate() {
        pipe.zadd("chouette:logs:wrapped.keys", format!("log-{i}"), t + i as f64).ignore();
        pipe.hset("chouette:logs:wrapped.values", format!("log-{i}"), value).ignore();
    }
    let () = pipe.query(&mut con).unwrap();
    let mut store = store(&redis);
    let printed = SharedBuf::default();
    let mut dispatcher =
        Dispatcher::new(DryRunTransport::new(printed.clone()), DispatchConfig::for_base_url("", None));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let result =
        pipeline::drain(&mut store, Queue::Logs, 1000, deadline, |records, _| dispatcher.send_logs(records))
            .unwrap();
    assert_eq!((result.delivered, result.dead), (2, 1));
    let printed = String::from_utf8(printed.0.lock().unwrap().clone()).unwrap();
    assert!(printed.contains("first") && printed.contains("last") && !printed.contains("zzzz"));
    assert_eq!(con.zcard::<_, u64>("chouette:logs:wrapped.keys").unwrap(), 0);
    let envelope: Vec<u8> = con.hget("chouette:logs:wrapped.dead.values", "log-1").unwrap();
    let json: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    assert_eq!(
        (json["reason"].as_str(), json["size"].as_u64()),
        (Some("too_large"), Some(huge.len() as u64))
    );
    assert!(json["value"].as_str() == Some(huge.as_str()), "the log was not kept exactly");
}

/// A writer the test reads back while the dispatcher owns a clone.
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn one_second_buckets_drained_as_a_backlog_keep_their_own_timestamps() {
    // AGGREGATE_INTERVAL=1 and a backlog: one aggregator drains buckets B, B+1, B+2 (B+3 is
    // still open at the first `now`, closed at the second). Each point carries its own bucket's
    // start and nothing is late. The step used to close a bucket at `end + 1 s`, which with 1 s
    // buckets closed the next one too: B+1's records were folded into B+2 and counted late,
    // every later point was stamped a second late, and B+3 got two points (the second one
    // overwrites the first at the backend: 3 lost).
    let redis = RedisServer::start();
    let mut con = redis.client();
    let b = bucket();
    let mut records = Vec::new();
    for k in 0..4 {
        for i in 0..=k {
            let ts = b + k as f64 + 0.5;
            records.push((format!("s{k}-{i}"), ts, raw("second.count", "count", 1.0, ts)));
        }
    }
    write_raw(&mut con, &records);
    let mut store = store(&redis);
    let mut agg = Aggregation::new(1, Duration::ZERO, WrapConfig::default());
    let mut counters = Counters::default();
    drain(&mut agg, &mut store, b + 3.0, &mut counters);
    // The agent frees the aggregator once a tick is idle; the next tick starts afresh.
    agg.release_memory();
    drain(&mut agg, &mut store, b + 4.0, &mut counters);
    let point = |offset: u64, value: f64| (("second.count".to_string(), b as u64 + offset), vec![value]);
    assert_eq!(
        wrapped_points(&mut con),
        BTreeMap::from([point(0, 1.0), point(1, 2.0), point(2, 3.0), point(3, 4.0)])
    );
    assert_eq!((counters.aggregated, counters.late, counters.wrapped), (10, 0, 4));
    let watermark: String = con.get("chouette:agent:aggregated_until").unwrap();
    assert_eq!(watermark.parse::<f64>().unwrap(), b + 4.0);
}

#[test]
fn a_record_that_would_overflow_its_series_is_dead_lettered_not_lost() {
    // Two valid counts of 1e308 in one bucket: their sum is infinite, which no backend takes.
    // The step used to aggregate both (counted), fail to encode the point and write nothing:
    // both records gone, nothing dead-lettered, nothing logged. Now the one that would overflow
    // is refused (reason `overflow`, dead-lettered) and the series keeps the other.
    let redis = RedisServer::start();
    let mut con = redis.client();
    let b = bucket();
    write_raw(
        &mut con,
        &[
            ("a".into(), b + 1.0, raw("huge.count", "count", 1e308, b + 1.0)),
            ("b".into(), b + 2.0, raw("huge.count", "count", 1e308, b + 2.0)),
            ("c".into(), b + 3.0, raw("huge.count", "count", -1.0, b + 3.0)),
        ],
    );
    let mut store = store(&redis);
    let mut agg = aggregation();
    let mut counters = Counters::default();
    drain(&mut agg, &mut store, now(), &mut counters);
    assert_eq!(
        wrapped_points(&mut con),
        BTreeMap::from([(("huge.count".to_string(), b as u64), vec![1e308 - 1.0])])
    );
    assert_eq!((counters.aggregated, counters.wrapped), (2, 1));
    assert_eq!(counters.refused, BTreeMap::from([("overflow".to_string(), 1)]));
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:raw.keys").unwrap(), 0);
    let dead: Vec<String> = con.zrange("chouette:metrics:raw.dead.keys", 0, -1).unwrap();
    assert_eq!(dead, ["b"]);
}

#[test]
fn the_listeners_lines_join_the_apps_records_in_one_point_even_after_refused_commits() {
    use std::sync::{Arc, Mutex};

    use chouette_agent::dogstatsd::memory::Memory;

    let redis = RedisServer::start();
    let mut con = redis.client();
    let b = bucket();
    write_raw(&mut con, &counts(b));
    let memory = Arc::new(Mutex::new(Memory::new(INTERVAL, 100)));
    {
        let mut memory = memory.lock().unwrap();
        memory.record_datagram(
            b + 1.0,
            b"faults.count:2|c|#t:x\nfaults.count:2|c|#t:x\nfaults.count:1:1|c|#t:x",
        );
        memory.record_datagram(b + 11.0, b"faults.count:2|c|#t:x\nfaults.only_here:5|g");
    }
    let mut store = store(&redis);
    let mut agg = aggregation().with_memory(Arc::clone(&memory));
    let mut counters = Counters::default();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("min-replicas-to-write").arg("1").query(&mut con).unwrap();
    for attempt in 0..3 {
        assert!(agg.step(&mut store, now(), &mut counters).is_err(), "attempt {attempt}");
        assert!(
            !memory.lock().unwrap().is_empty(),
            "attempt {attempt}: a refused commit consumed the listener's lines"
        );
    }
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("min-replicas-to-write").arg("0").query(&mut con).unwrap();
    drain(&mut agg, &mut store, now(), &mut counters);

    let points = wrapped_points(&mut con);
    let want = BTreeMap::from([
        (("faults.count".to_string(), b as u64), vec![106.0]),
        (("faults.count".to_string(), b as u64 + 10), vec![52.0]),
        (("faults.only_here".to_string(), b as u64 + 10), vec![5.0]),
    ]);
    assert_eq!(points, want);
    assert_eq!(counters.aggregated, 150);
    let memory = memory.lock().unwrap();
    assert!(memory.is_empty());
    assert_eq!((memory.stats().metric_lines, memory.stats().samples), (5, 6));
    assert!(memory.stats().refused.is_empty(), "{:?}", memory.stats().refused);
}
