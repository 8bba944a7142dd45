//! End to end, with real servers: raw records in the original client's layout → the `chouette`
//! binary → VictoriaMetrics (which accepts Datadog's `/datadog/api/v1/series`), queried back.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use chouette_tests::agent_binary;
use chouette_tests::{write_raw, Agent, RedisServer, VictoriaMetrics};
use redis::Commands;

fn agent_env(redis: &RedisServer, vm: &VictoriaMetrics) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", redis.url()),
        ("DATADOG_URL", vm.datadog_url()),
        ("GLOBAL_TAGS", r#"["env:e2e"]"#.into()),
        ("HOST", "e2e-host".into()),
        ("AGGREGATE_INTERVAL", "10".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("SEND_SELF_METRICS", "false".into()),
        ("LOG_LEVEL", "DEBUG".into()),
    ]
}

fn zcard(con: &mut redis::Connection, key: &str) -> u64 {
    con.zcard(key).expect("zcard")
}

/// Waits until the raw and wrapped queues are empty.
fn wait_drained(con: &mut redis::Connection, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let raw = zcard(con, "chouette:metrics:raw.keys");
        let wrapped = zcard(con, "chouette:metrics:wrapped.keys");
        if raw == 0 && wrapped == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "not drained: raw={raw} wrapped={wrapped}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn raw_json(metric: &str, kind: &str, value: &str, ts: f64, tags: &str) -> String {
    format!(
        r#"{{"metric": "{metric}", "type": "{kind}", "value": {value}, "timestamp": {ts:?}, "tags": {tags}}}"#
    )
}

fn bucket_base() -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    ((now / 10.0).floor() * 10.0) - 600.0
}

#[test]
fn every_metric_type_reaches_victoria_metrics_exactly() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    let base = bucket_base();
    let mut records = Vec::new();
    let mut add = |metric: &str, kind: &str, value: &str, offset: f64, tags: &str| {
        let id = format!("00000000-0000-4000-8000-{:012}", records.len());
        records.push((id, base + offset, raw_json(metric, kind, value, base + offset, tags)));
    };
    add("e2e.req", "count", "1", 1.0, r#"{"ep": "a"}"#);
    add("e2e.req", "count", "2", 3.5, r#"{"ep": "a"}"#);
    add("e2e.req", "count", "4", 12.0, r#"{"ep": "a"}"#);
    add("e2e.temp", "gauge", "40", 1.0, "{}");
    add("e2e.temp", "gauge", "42.5", 5.0, "{}");
    add("e2e.rate", "rate", "5", 2.0, "{}");
    add("e2e.rate", "rate", "15", 4.0, "{}");
    for i in 1..=10 {
        add("e2e.lat", "histogram", &i.to_string(), i as f64 * 0.5, r#"{"route": "/x"}"#);
    }
    add("e2e.users", "set", r#"["alice", "bob"]"#, 1.0, "{}");
    add("e2e.users", "set", r#"["bob", "carol"]"#, 2.0, "{}");
    write_raw(&mut con, &records);

    let agent = Agent::start(agent_binary!(), &agent_env(&redis, &vm));
    wait_drained(&mut con, Duration::from_secs(60));
    assert!(agent.stop().success(), "exit 0 after SIGTERM");

    let ms = |offset: f64| ((base + offset) * 1000.0) as i64;
    let got = vm.series(r#"{__name__=~"e2e\\..*"}"#);
    let want: BTreeMap<String, Vec<(i64, f64)>> = [
        ("__name__=e2e.req,env=e2e,ep=a,host=e2e-host", vec![(ms(0.0), 3.0), (ms(10.0), 4.0)]),
        ("__name__=e2e.temp,env=e2e,host=e2e-host", vec![(ms(0.0), 42.5)]),
        ("__name__=e2e.rate,env=e2e,host=e2e-host", vec![(ms(0.0), 2.0)]),
        ("__name__=e2e.lat.avg,env=e2e,host=e2e-host,route=/x", vec![(ms(0.0), 5.5)]),
        ("__name__=e2e.lat.count,env=e2e,host=e2e-host,route=/x", vec![(ms(0.0), 1.0)]),
        ("__name__=e2e.lat.max,env=e2e,host=e2e-host,route=/x", vec![(ms(0.0), 10.0)]),
        ("__name__=e2e.lat.median,env=e2e,host=e2e-host,route=/x", vec![(ms(0.0), 5.5)]),
        // We send 9.549999999999999 (numpy's value); VictoriaMetrics stores 12 significant digits.
        ("__name__=e2e.lat.95percentile,env=e2e,host=e2e-host,route=/x", vec![(ms(0.0), 9.55)]),
        ("__name__=e2e.users,env=e2e,host=e2e-host", vec![(ms(0.0), 3.0)]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn records_written_by_the_python_client_are_delivered() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let base = bucket_base();
    let script = format!(
        r#"
from chouette_iot_client import ChouetteClient as C
futures = [
    C.count("py.count", 2, timestamp={b1}, tags={{"ep": "a"}}),
    C.count("py.count", 3, timestamp={b2}, tags={{"ep": "a"}}),
    C.count("py.count", -1, timestamp={b2}, tags={{"ep": "a"}}),
    C.gauge("py.gauge", 7.25, timestamp={b1}),
    C.histogram("py.hist", 3, timestamp={b1}),
    C.histogram("py.hist", 1, timestamp={b2}),
    C.set("py.set", ["x", "y", "x"], timestamp={b1}),
]
assert all(f.result() for f in futures)
"#,
        b1 = base + 1.25,
        b2 = base + 2.5,
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string())
        .status()
        .expect("python3");
    assert!(
        status.success(),
        "the Python chouette-iot-client wrote its records (scripts/install-test-deps.sh installs it)"
    );

    let mut con = redis.client();
    assert_eq!(zcard(&mut con, "chouette:metrics:raw.keys"), 7);
    let agent = Agent::start(agent_binary!(), &agent_env(&redis, &vm));
    wait_drained(&mut con, Duration::from_secs(60));
    assert!(agent.stop().success());

    let ms = ((base) * 1000.0) as i64;
    let got = vm.series(r#"{__name__=~"py\\..*"}"#);
    let value = |key: &str| got.get(key).cloned().unwrap_or_default();
    assert_eq!(value("__name__=py.count,env=e2e,ep=a,host=e2e-host"), vec![(ms, 4.0)]);
    assert_eq!(value("__name__=py.gauge,env=e2e,host=e2e-host"), vec![(ms, 7.25)]);
    assert_eq!(value("__name__=py.hist.max,env=e2e,host=e2e-host"), vec![(ms, 3.0)]);
    assert_eq!(value("__name__=py.hist.avg,env=e2e,host=e2e-host"), vec![(ms, 2.0)]);
    assert_eq!(value("__name__=py.set,env=e2e,host=e2e-host"), vec![(ms, 2.0)]);
}

#[test]
fn poison_records_are_dead_lettered_and_the_rest_delivered() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    let base = bucket_base();
    let long_name = "x".repeat(300);
    let poison = [
        "Not a JSON".to_string(),
        r#"{"msg": "no metric"}"#.to_string(),
        raw_json("p.string", "count", r#""five""#, base + 1.0, "{}"),
        raw_json("p.nan", "gauge", "NaN", base + 1.0, "{}"),
        raw_json(&long_name, "count", "1", base + 1.0, "{}"),
        raw_json("p.list", "count", "[1, 2]", base + 1.0, "{}"),
    ];
    let mut records: Vec<(String, f64, String)> =
        poison.iter().enumerate().map(|(i, v)| (format!("poison-{i}"), base + 1.0, v.clone())).collect();
    for i in 0..5 {
        records.push((format!("good-{i}"), base + 2.0, raw_json("p.good", "count", "1", base + 2.0, "{}")));
    }
    write_raw(&mut con, &records);
    // An orphan: an id in the ZSET with no value.
    let _: () = con.zadd("chouette:metrics:raw.keys", "orphan-1", base + 1.0).unwrap();

    let agent = Agent::start(agent_binary!(), &agent_env(&redis, &vm));
    wait_drained(&mut con, Duration::from_secs(60));
    assert!(agent.stop().success());

    let got = vm.series(r#"{__name__=~"p\\..*"}"#);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["__name__=p.good,env=e2e,host=e2e-host"]);
    assert_eq!(got["__name__=p.good,env=e2e,host=e2e-host"], vec![(((base) * 1000.0) as i64, 5.0)]);
    let dead: BTreeMap<String, String> = con.hgetall("chouette:metrics:raw.dead.values").unwrap();
    assert_eq!(dead.len(), poison.len(), "{dead:?}");
    let reasons: Vec<String> = dead
        .values()
        .map(|v| {
            serde_json::from_str::<serde_json::Value>(v).unwrap()["reason"].as_str().unwrap().to_string()
        })
        .collect();
    for reason in ["not_json", "missing_field", "non_numeric_value", "non_finite", "name_too_long"] {
        assert!(reasons.iter().any(|r| r == reason), "{reason} in {reasons:?}");
    }
    let status: BTreeMap<String, String> = con.hgetall("chouette:agent:status").unwrap();
    assert_eq!(status.get("refused_records").map(String::as_str), Some("6"), "{status:?}");
    assert_eq!(status.get("orphan_records").map(String::as_str), Some("1"), "{status:?}");
}

#[test]
fn kill_9_at_random_moments_loses_and_doubles_nothing() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    let base = bucket_base() - 3000.0;
    // Rounds: write 6000 count records spread over 300 buckets and 20 series (values 1..=7),
    // start the agent, kill -9 it at a random moment. Later rounds write records for buckets
    // already emitted: they must be folded in as late, never sent as second points.
    // At least 25 rounds, and more (up to 60) until 20 kills have landed while work was still
    // queued. A round whose agent finished before its kill narrows the window the next
    // moments are drawn from: the kills follow the agent's pace on a loaded machine.
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    let mut env = agent_env(&redis, &vm);
    env.retain(|(k, _)| *k != "LOG_LEVEL");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut window_ms = 150;
    let (mut kills, mut mid_work) = (0u64, 0u64);
    while kills < 25 || (mid_work < 20 && kills < 60) {
        let round: Vec<(String, f64, String)> = (kills * 6000..(kills + 1) * 6000)
            .map(|i| {
                let series = format!("k.s{}", i % 20);
                let value = (i % 7 + 1) as f64;
                let ts = base + ((i * 7919) % 3000) as f64 + 0.5;
                *want.entry(series.clone()).or_default() += value;
                (format!("r-{i:08}"), ts, raw_json(&series, "count", &value.to_string(), ts, "{}"))
            })
            .collect();
        write_raw(&mut con, &round);
        let agent = Agent::start(agent_binary!(), &env);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % window_ms));
        agent.kill9();
        kills += 1;
        if zcard(&mut con, "chouette:metrics:raw.keys") + zcard(&mut con, "chouette:metrics:wrapped.keys") > 0
        {
            mid_work += 1;
        } else {
            window_ms = (window_ms * 2 / 3).max(10);
        }
    }
    eprintln!("{kills} kills, {mid_work} with work still queued, last window {window_ms} ms");
    assert!(mid_work >= 20, "only {mid_work} of {kills} kills landed while work was queued");
    let agent = Agent::start(agent_binary!(), &env);
    wait_drained(&mut con, Duration::from_secs(120));
    assert!(agent.stop().success());

    let got = vm.series(r#"{__name__=~"k\\..*"}"#);
    let totals: BTreeMap<String, f64> = got
        .iter()
        .map(|(labels, points)| {
            let name = labels.split(',').next().unwrap().trim_start_matches("__name__=").to_string();
            (name, points.iter().map(|(_, v)| v).sum())
        })
        .collect();
    assert_eq!(totals, want, "totals after {kills} kill -9");
}

#[test]
fn a_redis_restart_mid_run_loses_nothing() {
    let redis = RedisServer::start_persistent();
    let vm = VictoriaMetrics::start();
    let base = bucket_base() - 1000.0;
    let mut total = 0.0;
    let mut records = Vec::new();
    for i in 0..20_000u64 {
        let ts = base + (i % 1000) as f64;
        total += 1.0;
        records.push((format!("r-{i:08}"), ts, raw_json("rr.count", "count", "1", ts, "{}")));
    }
    let env = agent_env(&redis, &vm);
    let agent = Agent::start(agent_binary!(), &env);
    {
        let mut con = redis.client();
        write_raw(&mut con, &records[..10_000]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let redis = redis.restart_persistent();
    {
        let mut con = redis.client();
        write_raw(&mut con, &records[10_000..]);
        wait_drained(&mut con, Duration::from_secs(120));
    }
    assert!(agent.stop().success());
    let got = vm.series(r#"{__name__="rr.count"}"#);
    let sum: f64 = got.values().flat_map(|p| p.iter().map(|(_, v)| v)).sum();
    assert_eq!(sum, total);
}

#[test]
fn runs_on_a_fresh_machine_with_the_embedded_store_and_prints_a_dry_run() {
    let dir = std::env::temp_dir().join(format!("chouette-fresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.display().to_string();
    let agent = Agent::start(
        agent_binary!(),
        &[
            ("CHOUETTE_STATE_DIR", state),
            ("CHOUETTE_STORAGE_TYPE", "embedded".into()),
            ("RELEASE_INTERVAL", "1".into()),
        ],
    );
    agent.wait_ready();
    std::thread::sleep(Duration::from_millis(1500));
    // `chouette status` works while the agent holds the embedded store (its snapshot).
    let status = Command::new(agent_binary!())
        .arg("status")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CHOUETTE_STATE_DIR", &dir)
        .env("CHOUETTE_STORAGE_TYPE", "embedded")
        .output()
        .expect("chouette status");
    let printed = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{printed}");
    assert!(printed.starts_with("(the running agent holds"), "read from its snapshot: {printed}");
    assert!(printed.contains("raw metrics") && printed.contains("last_dispatch"), "{printed}");
    let out = agent.output();
    assert!(agent.stop().success());
    assert!(out.contains("embedded"), "logs the store in use: {out}");
    assert!(out.contains("dry_run"), "says it is a dry run: {out}");
    assert!(dir.join("chouette.redb").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_ttl_cleanup_does_not_stop_aggregation() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    // A foreign key of the wrong type where the logs queue lives: every cleanup fails (WRONGTYPE).
    let _: () = con.set("chouette:logs:wrapped.keys", "not a zset").unwrap();
    let base = bucket_base();
    let records: Vec<_> = (0..30)
        .map(|i| {
            let ts = base + i as f64;
            (format!("cl-{i:03}"), ts, raw_json("cleanup.count", "count", "2", ts, "{}"))
        })
        .collect();
    write_raw(&mut con, &records);
    let agent = Agent::start(agent_binary!(), &agent_env(&redis, &vm));
    wait_drained(&mut con, Duration::from_secs(60));
    let output = agent.output();
    assert!(agent.stop().success());
    assert!(output.contains("TTL cleanup failed"), "{output}");
    let got = vm.series(r#"{__name__="cleanup.count"}"#);
    let sum: f64 = got.values().flat_map(|p| p.iter().map(|(_, v)| v)).sum();
    assert_eq!(sum, 60.0);
}

#[test]
fn one_second_buckets_of_a_backlog_reach_victoria_metrics_at_their_own_timestamps() {
    // AGGREGATE_INTERVAL=1 and four closed 1 s buckets waiting (the agent was down): each bucket
    // reaches the backend at its own start. The agent closed a bucket at `end + 1 s`, which with
    // 1 s buckets folded each bucket after the first into the next one: B+1 was missing and the
    // others arrived one second late.
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    let base = bucket_base();
    let mut records = Vec::new();
    for k in 0..4 {
        for i in 0..=k {
            let ts = base + k as f64 + 0.5;
            records.push((format!("s{k}-{i}"), ts, raw_json("e2e.second", "count", "1", ts, "{}")));
        }
    }
    write_raw(&mut con, &records);
    let mut env = agent_env(&redis, &vm);
    env.retain(|(name, _)| *name != "AGGREGATE_INTERVAL");
    env.push(("AGGREGATE_INTERVAL", "1".into()));
    let agent = Agent::start(agent_binary!(), &env);
    wait_drained(&mut con, Duration::from_secs(60));
    assert!(agent.stop().success(), "exit 0 after SIGTERM");

    let ms = |offset: f64| ((base + offset) * 1000.0) as i64;
    let got = vm.series(r#"{__name__="e2e.second"}"#);
    let want = BTreeMap::from([(
        "__name__=e2e.second,env=e2e,host=e2e-host".to_string(),
        vec![(ms(0.0), 1.0), (ms(1.0), 2.0), (ms(2.0), 3.0), (ms(3.0), 4.0)],
    )]);
    assert_eq!(got, want);
}
