//! Records written to a real Redis: byte compatibility with the Python client, every call,
//! tags, buffer limits, Redis outages and shutdown.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use chouette_client::{Client, ClientConfig, Member, TimeUnit};
use chouette_tests::RedisServer;
use common::*;

fn client(redis: &RedisServer) -> Client {
    Client::new(ClientConfig::new(redis.url())).expect("client")
}

const TS: f64 = 1600000000.25;

/// Writes the same metrics with the Python client (chouette_iot_client 0.0.1) and ours, into
/// two Redis servers, and compares keys, scores, JSON text and types (the uuids aside).
#[test]
fn records_are_byte_compatible_with_the_python_client() {
    let py_redis = RedisServer::start();
    let script = format!(
        r#"
from chouette_iot_client import ChouetteClient as C
futures = [
    C.count("app.count", 10, timestamp={TS}, tags={{"producer": "test", "k": "é\""}}),
    C.gauge("app.gauge", 0.5, timestamp={TS}, tags={{"producer": "test"}}),
    C.gauge("app.gauge_int", 3, timestamp={TS}),
    C.rate("app.rate", 7, timestamp={TS}, tags={{"a": "1", "b": "2"}}),
    C.histogram("app.hist", 0.1, timestamp={TS}, tags={{}}),
    C.histogram("app.hist_big", 1e-05, timestamp=1600000001.0),
    C.set("app.set", ["a", "b", 3, 2.5], timestamp={TS}, tags={{"producer": "test"}}),
    C.gauge("app.ctl", 1, timestamp=1763780437.123456, tags={{"ctl": "\x7f\x01~"}}),
]
assert all(f.result() for f in futures), [f.result() for f in futures]
"#
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", py_redis.port.to_string())
        .status()
        .expect("python3");
    assert!(status.success());

    let rs_redis = RedisServer::start();
    let c = client(&rs_redis);
    let at = c.at(TS);
    at.count("app.count", 10, &[("producer", "test"), ("k", "é\"")]);
    at.gauge("app.gauge", 0.5, &[("producer", "test")]);
    at.gauge("app.gauge_int", 3, &[]);
    at.rate("app.rate", 7, &[("a", "1"), ("b", "2")]);
    at.histogram("app.hist", 0.1, &[]);
    c.at(1600000001.0).histogram("app.hist_big", 1e-05, &[]);
    at.set(
        "app.set",
        &[Member::Str("a"), Member::Str("b"), Member::Num(3.0), Member::Num(2.5)],
        &[("producer", "test")],
    );
    // DEL is escaped (`\u007f`) by Python's json.dumps, like the other control characters.
    c.at(1763780437.123456).gauge("app.ctl", 1, &[("ctl", "\u{7f}\u{1}~")]);
    c.shutdown(Duration::from_secs(5)).expect("flushed");

    let mut py = py_redis.client();
    let mut rs = rs_redis.client();
    let keys = |con: &mut redis::Connection| {
        let mut k: Vec<String> = redis::cmd("KEYS").arg("*").query(con).expect("keys");
        k.sort();
        k
    };
    assert_eq!(keys(&mut py), keys(&mut rs));
    assert_eq!(keys(&mut rs), vec![METRICS_KEYS.to_owned(), METRICS_VALUES.to_owned()]);
    let py_records = metrics(&mut py);
    let rs_records: Vec<_> =
        metrics(&mut rs).into_iter().filter(|r| !r.2.contains("chouette.client.")).collect();
    assert_eq!(py_records.len(), 8);
    assert_eq!(rs_records.len(), 8);
    for (p, r) in py_records.iter().zip(&rs_records) {
        assert_eq!(p.2, r.2, "JSON text");
        assert_eq!(p.1, r.1, "score");
        assert_eq!(p.0.len(), 36);
        assert_eq!(r.0.len(), 36);
        assert_eq!(&r.0[14..15], "4", "uuid4");
    }
    // The texts above are equal byte for byte; spot-check what they are.
    assert!(rs_records.iter().any(|r| r.2
        == r#"{"metric": "app.count", "type": "count", "value": 10, "timestamp": 1600000000.25, "tags": {"producer": "test", "k": "\u00e9\""}}"#));
    assert!(rs_records.iter().any(|r| r.2
        == r#"{"metric": "app.ctl", "type": "gauge", "value": 1, "timestamp": 1763780437.123456, "tags": {"ctl": "\u007f\u0001~"}}"#));
}

#[test]
fn every_call_writes_its_record() {
    let redis = RedisServer::start();
    let c = Client::new(ClientConfig::new(redis.url()).with_tags([("env", "test"), ("k", "global")]))
        .expect("client");
    let at = c.at(100.5);
    at.count("c", 2, &[("k", "call")]);
    at.increment("i", 3, &[]);
    at.decrement("d", 2, &[]);
    at.decrement("df", 0.5, &[]);
    at.gauge("g", 1.5, &[]);
    at.rate("r", 4, &[]);
    at.histogram("h", 9, &[]);
    at.set("s", &[Member::Str("x")], &[]);
    {
        let _t = c.timed("t.s", &[("unit", "s")]);
        std::thread::sleep(Duration::from_millis(30));
    }
    let got = c.time_in("t.ms", &[], TimeUnit::Milliseconds, || {
        std::thread::sleep(Duration::from_millis(30));
        7
    });
    assert_eq!(got, 7);
    // The client stamps whole microseconds (as_secs_f64 would keep the nanoseconds, and a stamp
    // taken in the same microsecond would then read as earlier than this).
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as f64 / 1e6;
    c.count("now", 1, &[]);
    c.shutdown(Duration::from_secs(5)).expect("flushed");

    let mut con = redis.client();
    let records = metrics(&mut con);
    let find = |name: &str| {
        let r = records.iter().find(|r| json(&r.2)["metric"] == name).unwrap_or_else(|| panic!("{name}"));
        (r.1, json(&r.2))
    };
    let tags = serde_json::json!({"env": "test", "k": "global"});
    assert_eq!(find("c").1["tags"], serde_json::json!({"env": "test", "k": "call"}));
    assert_eq!(find("c").1["value"], 2);
    assert_eq!(find("c").0, 100.5);
    assert_eq!(find("i").1["type"], "count");
    assert_eq!(find("i").1["value"], 3);
    assert_eq!(find("d").1["type"], "count");
    assert_eq!(find("d").1["value"], -2);
    assert_eq!(find("df").1["value"], -0.5);
    assert_eq!(find("g").1["type"], "gauge");
    assert_eq!(find("g").1["tags"], tags);
    assert_eq!(find("r").1["type"], "rate");
    assert_eq!(find("h").1["type"], "histogram");
    assert_eq!(find("s").1["value"], serde_json::json!(["x"]));
    let ts = find("t.s").1;
    assert_eq!(ts["type"], "histogram");
    let secs = ts["value"].as_f64().unwrap();
    assert!(ts["value"].is_f64() && (0.03..1.0).contains(&secs), "{ts}");
    let ms = find("t.ms").1;
    assert!(ms["value"].is_i64() && (30..1000).contains(&ms["value"].as_i64().unwrap()), "{ms}");
    let (score, now) = find("now");
    assert!(score >= before && score < before + 5.0, "stamped {score}, clock read before it {before}");
    assert_eq!(now["timestamp"].as_f64(), Some(score));
}

#[test]
fn a_full_buffer_drops_and_counts_without_blocking() {
    // Nothing listens on this port; the writer sleeps on its timer, so the buffer only fills.
    let port = chouette_tests::free_port();
    let config = ClientConfig::new(format!("redis://127.0.0.1:{port}/"))
        .with_buffer_records(10)
        .with_batch_records(100)
        .with_flush_every(Duration::from_secs(60))
        .with_meta_every(Duration::from_secs(60));
    let c = Client::new(config).expect("client");
    // Let the writer reach its (60 s) wait first, so it takes nothing from the buffer.
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    for i in 0..100 {
        c.count("x", i, &[]);
    }
    assert!(start.elapsed() < Duration::from_secs(1), "calls must not wait for Redis");
    assert_eq!(c.stats().dropped, 90);
    assert_eq!(c.stats().dropped_buffer_records, 90);
    assert_eq!(c.stats().dropped_buffer_bytes, 0);
    assert_eq!(c.stats().sent, 0);
    let start = Instant::now();
    let err = c.shutdown(Duration::from_millis(300)).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3), "shutdown honours its timeout");
    assert_eq!(err, chouette_client::ShutdownError::Timeout { unsent: 10 });
    assert_eq!(c.stats().dropped, 100);
    assert_eq!((c.stats().dropped_buffer_records, c.stats().dropped_other), (90, 10));
    // After shutdown, calls are dropped and counted.
    c.count("x", 1, &[]);
    assert_eq!(c.stats().dropped, 101);
    assert_eq!(c.stats().dropped_other, 11);
}

#[test]
fn records_wait_for_redis_and_drops_are_reported_once_it_is_back() {
    let port = RedisServer::start().kill();
    let config = ClientConfig::new(format!("redis://127.0.0.1:{port}/"))
        .with_buffer_records(5)
        .with_batch_records(5)
        .with_flush_every(Duration::from_secs(3600))
        .with_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .with_meta_every(Duration::from_secs(3600));
    let c = Client::new(config).expect("client");
    // The writer reaches its wait, and is woken when the fifth record makes a batch: it takes
    // all five at once.
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..5 {
        c.at(10.0).count("early", i, &[]);
    }
    // The writer took those five and is retrying them.
    wait_until("a failed write", Duration::from_secs(10), || c.stats().errors > 0);
    for i in 0..8 {
        c.at(10.0).count("late", i, &[]);
    }
    assert_eq!(c.stats().dropped, 3, "five fit in the buffer, three are dropped");
    let redis = RedisServer::start_on(port);
    wait_until("the records to be written", Duration::from_secs(10), || c.stats().sent == 10);
    let mut con = redis.client();
    wait_until("the drops to be reported", Duration::from_secs(10), || {
        metrics(&mut con).iter().any(|r| r.2.contains("chouette.client.dropped"))
    });
    let all = metrics(&mut con);
    let dropped = all.iter().find(|r| r.2.contains("chouette.client.dropped")).unwrap();
    assert_eq!(json(&dropped.2)["value"], 3);
    assert_eq!(json(&dropped.2)["tags"], serde_json::json!({"reason": "buffer_records"}));
    assert_eq!(all.iter().filter(|r| r.2.contains("chouette.client.dropped")).count(), 1);
    assert_eq!(json(&dropped.2)["type"], "count");
    let errors = all.iter().find(|r| r.2.contains("chouette.client.errors")).unwrap();
    assert!(json(&errors.2)["value"].as_i64().unwrap() >= 1);
    assert_eq!(app_jsons(&mut con).len(), 10);
    c.shutdown(Duration::from_secs(5)).expect("flushed");
}

#[test]
fn shutdown_flushes_everything_within_its_timeout() {
    let redis = RedisServer::start();
    let c = Client::new(ClientConfig::new(redis.url()).with_flush_every(Duration::from_secs(60)))
        .expect("client");
    for i in 0..20_000 {
        c.at(50.0).histogram("h", i, &[("i", "x")]);
    }
    let start = Instant::now();
    c.shutdown(Duration::from_secs(10)).expect("flushed");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(c.stats().sent, 20_000);
    let mut con = redis.client();
    // 20 000 records, plus the meta metric `chouette.client.sent` written while stopping.
    assert_eq!(app_jsons(&mut con).len(), 20_000);
}

#[test]
fn sanitized_names_and_tag_keys_are_written() {
    let redis = RedisServer::start();
    let c =
        Client::new(ClientConfig::new(redis.url()).with_sanitize(chouette_client::SanitizeMode::Prometheus))
            .expect("client");
    c.at(1.0).gauge("app.req.latency", 1, &[("http.method", "GET")]);
    c.shutdown(Duration::from_secs(5)).expect("flushed");
    let mut con = redis.client();
    assert_eq!(
        app_jsons(&mut con),
        vec![
            r#"{"metric": "app_req_latency", "type": "gauge", "value": 1, "timestamp": 1.0, "tags": {"http_method": "GET"}}"#
        ]
    );
}

#[test]
fn aggregating_mode_writes_one_record_per_series_per_interval() {
    let redis = RedisServer::start();
    // Hour-long buckets: the test never straddles a flush boundary (flushes happen once per
    // interval, on the wall clock's multiples of it).
    let c =
        Client::new(ClientConfig::new(redis.url()).aggregating(Duration::from_secs(3600))).expect("client");
    for i in 0..10_000u32 {
        let at = c.at(7200.0 + (i % 20) as f64 * 0.5);
        at.count("agg.count", 1, &[("k", "v")]);
        at.rate("agg.rate", 2, &[]);
        at.gauge("agg.gauge", i, &[]);
        at.set("agg.set", &[Member::Num((i % 7) as f64), Member::Str("x")], &[]);
    }
    c.at(7201.0).histogram("agg.hist", 1.5, &[]);
    c.at(7202.0).histogram("agg.hist", 2, &[]);
    c.at(7202.0).histogram("agg.one", 3, &[]);
    c.at(10800.0).count("agg.count", 5, &[("k", "v")]);
    c.shutdown(Duration::from_secs(5)).expect("flushed");
    let mut con = redis.client();
    let got = metrics(&mut con);
    let app: Vec<_> =
        got.iter().filter(|r| !r.2.contains("chouette.client.")).map(|r| (r.1, r.2.as_str())).collect();
    assert_eq!(
        app,
        vec![
            (
                7200.0,
                r#"{"metric": "agg.count", "type": "count", "value": 10000, "timestamp": 7200.0, "tags": {"k": "v"}}"#
            ),
            (
                10800.0,
                r#"{"metric": "agg.count", "type": "count", "value": 5, "timestamp": 10800.0, "tags": {"k": "v"}}"#
            ),
            (
                7200.0,
                r#"{"metric": "agg.gauge", "type": "gauge", "value": 9999, "timestamp": 7200.0, "tags": {}}"#
            ),
            (
                7200.0,
                r#"{"metric": "agg.hist", "type": "histogram", "value": [1.5, 2], "timestamp": 7200.0, "tags": {}}"#
            ),
            (
                7200.0,
                r#"{"metric": "agg.one", "type": "histogram", "value": 3, "timestamp": 7200.0, "tags": {}}"#
            ),
            (
                7200.0,
                r#"{"metric": "agg.rate", "type": "rate", "value": 20000, "timestamp": 7200.0, "tags": {}}"#
            ),
            (
                7200.0,
                r#"{"metric": "agg.set", "type": "set", "value": ["x", 0, 1, 2, 3, 4, 5, 6], "timestamp": 7200.0, "tags": {}}"#
            ),
        ]
    );
    assert_eq!(c.stats().dropped, 0);
}

/// Calls from several threads on the same and on different series (spread over the client's
/// tables) all arrive, exactly once: one record per series with the exact sum.
#[test]
fn aggregating_mode_counts_calls_from_many_threads_exactly_once() {
    let redis = RedisServer::start();
    let c =
        Client::new(ClientConfig::new(redis.url()).aggregating(Duration::from_secs(3600))).expect("client");
    const THREADS: u64 = 4;
    const CALLS: u64 = 25_000;
    const SHOPS: [&str; 5] = ["eu", "us", "asia", "africa", "oceania"];
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let c = c.clone();
            scope.spawn(move || {
                for i in 0..CALLS {
                    let shop = SHOPS[((i + t) % 5) as usize];
                    c.at(7200.0 + (i % 60) as f64).count(
                        "agg.requests",
                        i % 3,
                        &[("route", "/pay"), ("shop", shop)],
                    );
                }
            });
        }
    });
    c.shutdown(Duration::from_secs(5)).expect("flushed");
    let mut con = redis.client();
    let mut got: Vec<(String, u64)> = app_jsons(&mut con)
        .iter()
        .map(|j| {
            let v = json(j);
            assert_eq!((v["metric"].as_str(), v["timestamp"].as_f64()), (Some("agg.requests"), Some(7200.0)));
            (v["tags"]["shop"].as_str().unwrap().to_owned(), v["value"].as_u64().unwrap())
        })
        .collect();
    got.sort();
    let mut expected: Vec<(String, u64)> = SHOPS
        .iter()
        .enumerate()
        .map(|(s, shop)| {
            let sum = (0..THREADS)
                .flat_map(|t| (0..CALLS).filter(move |i| (i + t) % 5 == s as u64))
                .map(|i| i % 3)
                .sum();
            (shop.to_string(), sum)
        })
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(c.stats().dropped, 0);
}

#[test]
fn process_metrics_are_written_on_their_timer() {
    let redis = RedisServer::start();
    let c = Client::new(ClientConfig::new(redis.url()).with_process_metrics(Duration::from_millis(50)))
        .expect("client");
    let mut con = redis.client();
    wait_until("process metrics", Duration::from_secs(10), || {
        let all = metrics(&mut con);
        ["cpu_seconds", "rss_bytes", "threads", "open_fds"]
            .iter()
            .all(|m| all.iter().any(|r| r.2.contains(&format!("\"chouette.client.process.{m}\""))))
    });
    let all = metrics(&mut con);
    let rss = all.iter().find(|r| r.2.contains("process.rss_bytes")).unwrap();
    let v = json(&rss.2);
    assert_eq!(v["type"], "gauge");
    assert!(v["value"].as_i64().unwrap() > 1 << 20);
    let threads = all.iter().find(|r| r.2.contains("process.threads")).unwrap();
    assert!(json(&threads.2)["value"].as_i64().unwrap() >= 2, "the app's thread and the writer");
    c.shutdown(Duration::from_secs(5)).expect("flushed");
}
