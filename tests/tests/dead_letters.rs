//! `chouette dead list|requeue|purge` against a real Redis (records dead-lettered by the agent
//! itself and by `Store::dead_letter`), the embedded store, and end to end: a requeued dead
//! letter reaches VictoriaMetrics.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chouette_agent::store::embedded::EmbeddedStore;
use chouette_agent::store::redis::{RedisStore, RedisTimeouts};
use chouette_agent::store::{DeadRecord, NewRecord, Queue, Store};
use chouette_tests::agent_binary;
use chouette_tests::{wait_until, Agent, RedisServer, TempDir, VictoriaMetrics};
use redis::Commands;

/// Runs the binary with only `vars` (and PATH) set: (exit code, stdout, stderr).
fn chouette(vars: &[(&str, String)], args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(agent_binary!());
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    // No DogStatsD UDP socket (8125 by default), as the harness's agents.
    command.env("DOGSTATSD_PORT", "0");
    for (name, value) in vars {
        command.env(name, value);
    }
    let out = command.args(args).output().expect("run chouette");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A bucket start 10 minutes ago (closed, well inside every TTL).
fn base() -> f64 {
    (now() / 10.0).floor() * 10.0 - 600.0
}

fn rec(id: &str, score: f64, value: &[u8]) -> NewRecord {
    NewRecord { id: id.as_bytes().to_vec(), score, value: value.to_vec() }
}

/// `(id, score, exact value)` of every record of a Redis queue, by id.
fn redis_queue(con: &mut redis::Connection, prefix: &str) -> Vec<(String, f64, Vec<u8>)> {
    let members: Vec<(String, f64)> = con.zrange_withscores(format!("{prefix}.keys"), 0, -1).unwrap();
    let mut values: std::collections::HashMap<String, Vec<u8>> =
        con.hgetall(format!("{prefix}.values")).unwrap();
    let mut out: Vec<(String, f64, Vec<u8>)> = members
        .into_iter()
        .map(|(id, score)| {
            let value = values.remove(&id).unwrap_or_default();
            (id, score, value)
        })
        .collect();
    assert!(values.is_empty(), "HASH fields without a ZSET member in {prefix}: {:?}", values.keys());
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn summary(json: &str) -> Vec<(String, String, u64, u64)> {
    let doc: serde_json::Value = serde_json::from_str(json.trim()).expect("list --json is one JSON document");
    doc["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["queue"].as_str().unwrap().to_string(),
                row["reason"].as_str().unwrap().to_string(),
                row["count"].as_u64().unwrap(),
                row["requeueable"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn row(queue: &str, reason: &str, count: u64, requeueable: u64) -> (String, String, u64, u64) {
    (queue.to_string(), reason.to_string(), count, requeueable)
}

const TOO_LARGE: &str = r#"{"reason": "too_large", "queue": "chouette:logs:wrapped", "size": 2000000}"#;

#[test]
fn redis_dead_letters_are_listed_requeued_by_reason_and_purged() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    let t = base();
    // Raw records as the Python client writes them; three are poison.
    let good =
        format!(r#"{{"metric": "dl.ok", "type": "count", "value": 1, "timestamp": {t:?}, "tags": {{}}}}"#);
    let truncated = br#"{"metric": "dl.bad", "type": "count", "value": "#.to_vec();
    let mut not_utf8 = br#"{"metric": "dl."#.to_vec();
    not_utf8.extend_from_slice(b"\xff\xfe");
    not_utf8.extend_from_slice(
        format!(r#"", "type": "count", "value": 1, "timestamp": {t:?}, "tags": {{}}}}"#).as_bytes(),
    );
    let bogus =
        format!(r#"{{"metric": "dl.x", "type": "bogus", "value": 1, "timestamp": {t:?}, "tags": {{}}}}"#);
    let raw: Vec<(&str, f64, Vec<u8>)> = vec![
        ("r-good", t + 1.0, good.into_bytes()),
        ("r-truncated", t + 2.0, truncated.clone()),
        ("r-not-utf8", t + 3.25, not_utf8.clone()),
        ("r-bogus", t + 4.0, bogus.clone().into_bytes()),
    ];
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (id, score, value) in &raw {
        pipe.zadd("chouette:metrics:raw.keys", *id, *score).ignore();
        pipe.hset("chouette:metrics:raw.values", *id, value.as_slice()).ignore();
    }
    let () = pipe.query(&mut con).unwrap();

    // The agent refuses the poison: the real path into chouette:metrics:raw.dead.
    let agent = Agent::start(
        agent_binary!(),
        &[
            ("REDIS_URL", redis.url()),
            ("DATADOG_URL", vm.datadog_url()),
            ("AGGREGATE_INTERVAL", "10".into()),
            ("RELEASE_INTERVAL", "1".into()),
            ("SEND_SELF_METRICS", "false".into()),
        ],
    );
    wait_until("the agent to consume the raw queue", Duration::from_secs(60), || {
        con.zcard::<_, u64>("chouette:metrics:raw.keys").unwrap() == 0
            && con.zcard::<_, u64>("chouette:metrics:wrapped.keys").unwrap() == 0
    });
    assert!(agent.stop().success());
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:raw.dead.keys").unwrap(), 3);

    // Wrapped points dead-lettered through Store::dead_letter (as the dispatcher does), and a
    // too_large envelope without a value (as the size limit writes it).
    let mut store = RedisStore::connect(&redis.url(), RedisTimeouts::default()).unwrap();
    let point = |name: &str| {
        format!(r#"{{"metric": "{name}", "tags": [], "points": [[{t:?}, 1]], "type": "gauge"}}"#)
    };
    let wrapped = [
        rec("w1", t, point("dl.w1").as_bytes()),
        rec("w2", t, point("dl.w2").as_bytes()),
        rec("w3", t, point("dl.w3").as_bytes()),
    ];
    store.add(Queue::WrappedMetrics, &wrapped).unwrap();
    let dead = |r: &NewRecord, reason: &str| DeadRecord {
        id: r.id.clone(),
        score: r.score,
        value: r.value.clone(),
        reason: reason.to_string(),
    };
    store
        .dead_letter(
            Queue::WrappedMetrics,
            &[
                dead(&wrapped[0], "fake_reason"),
                dead(&wrapped[1], "fake_reason"),
                dead(&wrapped[2], "http_400"),
            ],
        )
        .unwrap();
    let () = con.zadd("chouette:logs:wrapped.dead.keys", "l-big", t).unwrap();
    let () = con.hset("chouette:logs:wrapped.dead.values", "l-big", TOO_LARGE).unwrap();

    let env = [("REDIS_URL", redis.url())];
    let (code, out, err) = chouette(&env, &["dead", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        summary(&out),
        [
            row("raw", "not_json", 2, 2),
            row("raw", "unknown_type", 1, 1),
            row("wrapped", "fake_reason", 2, 2),
            row("wrapped", "http_400", 1, 1),
            row("logs", "too_large", 1, 0),
        ]
    );
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["total"], 7);
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.len(), 7);
    let by_id = |id: &str| records.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(by_id("r-not-utf8")["value_base64"], chouette_agent::store::encode_base64(&not_utf8));
    assert_eq!(by_id("r-truncated")["value"].as_str().unwrap().as_bytes(), truncated.as_slice());
    assert_eq!(by_id("r-truncated")["score"], t + 2.0);
    assert_eq!(by_id("l-big")["size"], 2_000_000);
    assert_eq!(by_id("l-big")["requeueable"], false);
    assert_eq!(by_id("l-big")["why_not"], "the envelope holds no value (size 2000000 bytes)");
    let (code, out, _) =
        chouette(&env, &["dead", "list", "--queue", "wrapped", "--reason", "fake_reason", "--limit", "1"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("store: {}", redis.url()));
    assert!(lines[2].starts_with("wrapped  fake_reason        2            2  "), "{out}");
    assert!(out.contains("records (1 of 2,"), "{out}");
    assert!(out.contains(r#"w1  "#) && out.contains(r#"{"metric": "dl.w1", "tags": []"#), "{out}");

    // Requeue by reason; a dry run first changes nothing.
    let before = redis_queue(&mut con, "chouette:metrics:wrapped.dead");
    let (code, out, _) =
        chouette(&env, &["dead", "requeue", "--queue", "wrapped", "--reason", "fake_reason", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("would requeue 2 wrapped record(s) with reason fake_reason to wrapped metrics"),
        "{out}"
    );
    assert_eq!(redis_queue(&mut con, "chouette:metrics:wrapped.dead"), before);
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:wrapped.keys").unwrap(), 0);
    let (code, out, _) =
        chouette(&env, &["dead", "requeue", "--queue", "wrapped", "--reason", "fake_reason"]);
    assert_eq!(code, 0);
    assert!(out.contains("requeued 2 wrapped record(s) with reason fake_reason to wrapped metrics"), "{out}");
    assert_eq!(
        redis_queue(&mut con, "chouette:metrics:wrapped"),
        [("w1".to_string(), t, wrapped[0].value.clone()), ("w2".to_string(), t, wrapped[1].value.clone())]
    );
    let left: Vec<String> =
        redis_queue(&mut con, "chouette:metrics:wrapped.dead").into_iter().map(|r| r.0).collect();
    assert_eq!(left, ["w3"]);

    // Raw poison goes back byte for byte (the non-UTF-8 one through value_base64).
    let (code, out, _) = chouette(&env, &["dead", "requeue", "--queue", "raw", "--reason", "not_json"]);
    assert_eq!(code, 0);
    assert!(out.contains("requeued 2 raw record(s) with reason not_json to raw metrics"), "{out}");
    assert!(out.contains("note: 2 raw record(s) are older than the aggregation watermark"), "{out}");
    assert_eq!(
        redis_queue(&mut con, "chouette:metrics:raw"),
        [("r-not-utf8".to_string(), t + 3.25, not_utf8), ("r-truncated".to_string(), t + 2.0, truncated)]
    );
    let left: Vec<String> =
        redis_queue(&mut con, "chouette:metrics:raw.dead").into_iter().map(|r| r.0).collect();
    assert_eq!(left, ["r-bogus"]);

    // A record without a value cannot be requeued: reported, counted, kept.
    let (code, out, _) = chouette(&env, &["dead", "requeue", "--queue", "logs"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "kept 1 logs record(s) with reason too_large: cannot be requeued (the envelope holds no value (size 2000000 bytes))"
        ),
        "{out}"
    );
    assert_eq!(con.zcard::<_, u64>("chouette:logs:wrapped.keys").unwrap(), 0);
    assert_eq!(
        redis_queue(&mut con, "chouette:logs:wrapped.dead"),
        [("l-big".to_string(), t, TOO_LARGE.as_bytes().to_vec())]
    );

    // Purge asks for --yes (exit 2, nothing deleted), then deletes only that reason.
    let (code, out, _) = chouette(&env, &["dead", "purge", "--queue", "all", "--reason", "http_400"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("would delete 1 wrapped record(s) with reason http_400"), "{out}");
    assert!(out.contains("run again with --yes"), "{out}");
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:wrapped.dead.keys").unwrap(), 1);
    let (code, out, _) =
        chouette(&env, &["dead", "purge", "--queue", "all", "--reason", "http_400", "--yes"]);
    assert_eq!(code, 0);
    assert!(out.contains("deleted 1 wrapped record(s) with reason http_400"), "{out}");
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:wrapped.dead.keys").unwrap(), 0);
    assert_eq!(con.hlen::<_, u64>("chouette:metrics:wrapped.dead.values").unwrap(), 0);
    let (_, out, _) = chouette(&env, &["dead", "list", "--json"]);
    assert_eq!(summary(&out), [row("raw", "unknown_type", 1, 1), row("logs", "too_large", 1, 0)]);
    // The requeued wrapped points are still queued, untouched by the purge.
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:wrapped.keys").unwrap(), 2);
}

fn embedded_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![("CHOUETTE_STORAGE_TYPE", "embedded".into()), ("CHOUETTE_STATE_DIR", dir.display().to_string())]
}

#[test]
fn embedded_dead_letters_round_trip_exact_bytes() {
    let dir = TempDir::new("dead-embedded");
    let path = dir.0.join("chouette.redb");
    let t = base();
    let binary = b"{\"metric\": \"e.\xff\"}".to_vec();
    {
        let mut store = EmbeddedStore::open(&path).unwrap();
        store.add(Queue::RawMetrics, &[rec("r1", t + 0.5, &binary), rec("r2", t + 1.0, b"[]")]).unwrap();
        store
            .dead_letter(
                Queue::RawMetrics,
                &[
                    DeadRecord {
                        id: b"r1".to_vec(),
                        score: t + 0.5,
                        value: binary.clone(),
                        reason: "not_json".into(),
                    },
                    DeadRecord {
                        id: b"r2".to_vec(),
                        score: t + 1.0,
                        value: b"[]".to_vec(),
                        reason: "not_an_object".into(),
                    },
                ],
            )
            .unwrap();
        store.add(Queue::Logs, &[rec("l1", t, br#"{"message": "x"}"#)]).unwrap();
        store
            .dead_letter(
                Queue::Logs,
                &[DeadRecord {
                    id: b"l1".to_vec(),
                    score: t,
                    value: br#"{"message": "x"}"#.to_vec(),
                    reason: "http_400".into(),
                }],
            )
            .unwrap();
    }
    let env = embedded_env(&dir.0);
    let (code, out, err) = chouette(&env, &["dead", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        summary(&out),
        [row("raw", "not_an_object", 1, 1), row("raw", "not_json", 1, 1), row("logs", "http_400", 1, 1)]
    );
    let (code, out, _) = chouette(&env, &["dead", "requeue", "--queue", "raw", "--reason", "not_json"]);
    assert_eq!(code, 0);
    assert!(out.contains("requeued 1 raw record(s) with reason not_json to raw metrics"), "{out}");
    let (code, _, _) = chouette(&env, &["dead", "purge", "--queue", "logs", "--yes"]);
    assert_eq!(code, 0);
    let mut store = EmbeddedStore::open(&path).unwrap();
    let live = store.read(Queue::RawMetrics, f64::INFINITY, 10).unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(
        (&live[0].id[..], live[0].score, live[0].value.as_deref()),
        (&b"r1"[..], t + 0.5, Some(binary.as_slice()))
    );
    let dead = store.read(Queue::DeadRawMetrics, f64::INFINITY, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, &b"r2"[..]);
    assert_eq!(store.len(Queue::DeadLogs).unwrap(), 0);
    assert_eq!(store.len(Queue::Logs).unwrap(), 0);
}

#[test]
fn embedded_store_held_by_the_agent_is_a_clear_error() {
    let dir = TempDir::new("dead-locked");
    let agent = Agent::start(
        agent_binary!(),
        &[embedded_env(&dir.0), vec![("RELEASE_INTERVAL", "1".into())]].concat(),
    );
    agent.wait_ready();
    let started = std::time::Instant::now();
    for args in [
        &["dead", "list"][..],
        &["dead", "requeue", "--queue", "raw"],
        &["dead", "purge", "--queue", "all", "--yes"],
    ] {
        let (code, out, err) = chouette(&embedded_env(&dir.0), args);
        assert_eq!(code, 1, "{args:?}: {out} {err}");
        assert!(err.contains("held by a running agent; stop the agent first"), "{args:?}: {err}");
        assert!(err.contains(&dir.0.join("chouette.redb").display().to_string()), "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(agent.stop().success());
    // Once the agent is stopped, the same command works.
    let (code, out, err) = chouette(&embedded_env(&dir.0), &["dead", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no dead letters"), "{out}");
}

#[test]
fn usage_errors_exit_2_and_missing_embedded_store_is_not_created() {
    let dir = TempDir::new("dead-usage");
    let env = embedded_env(&dir.0);
    for args in [
        &["dead"][..],
        &["dead", "requeue"],
        &["dead", "list", "--queue", "nope"],
        &["dead", "purge", "--queue", "raw", "--dry-run"],
    ] {
        let (code, out, err) = chouette(&env, args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains("chouette dead --help"), "{args:?}: {err}");
    }
    let (code, out, _) = chouette(&env, &["dead", "--help"]);
    assert_eq!(code, 0);
    assert_eq!(out, chouette_agent::cli::dead::HELP);
    let (code, out, _) = chouette(&env, &["dead", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("does not exist yet"), "{out}");
    assert!(!dir.0.join("chouette.redb").exists(), "listing created the store");
}

#[test]
fn a_requeued_dead_letter_reaches_victoria_metrics() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    let t = base();
    let mut store = RedisStore::connect(&redis.url(), RedisTimeouts::default()).unwrap();
    let point =
        format!(r#"{{"metric": "dlq.point", "tags": ["k:v"], "points": [[{t:?}, 42.5]], "type": "gauge"}}"#);
    let raw =
        format!(r#"{{"metric": "dlq.raw", "type": "count", "value": 7, "timestamp": {t:?}, "tags": {{}}}}"#);
    store.add(Queue::WrappedMetrics, &[rec("w", t, point.as_bytes())]).unwrap();
    store.add(Queue::RawMetrics, &[rec("r", t + 1.0, raw.as_bytes())]).unwrap();
    let fake = |id: &str, score: f64, value: &str| DeadRecord {
        id: id.as_bytes().to_vec(),
        score,
        value: value.as_bytes().to_vec(),
        reason: "fake".into(),
    };
    store.dead_letter(Queue::WrappedMetrics, &[fake("w", t, &point)]).unwrap();
    store.dead_letter(Queue::RawMetrics, &[fake("r", t + 1.0, &raw)]).unwrap();

    let agent = Agent::start(
        agent_binary!(),
        &[
            ("REDIS_URL", redis.url()),
            ("DATADOG_URL", vm.datadog_url()),
            ("HOST", String::new()), // no host label: the series keys below have none
            ("AGGREGATE_INTERVAL", "1".into()),
            ("RELEASE_INTERVAL", "1".into()),
            ("SEND_SELF_METRICS", "false".into()),
        ],
    );
    agent.wait_ready();
    // Requeued while the agent runs.
    let (code, out, err) =
        chouette(&[("REDIS_URL", redis.url())], &["dead", "requeue", "--queue", "all", "--reason", "fake"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("requeued 1 raw record(s) with reason fake to raw metrics"), "{out}");
    assert!(out.contains("requeued 1 wrapped record(s) with reason fake to wrapped metrics"), "{out}");
    wait_until("both series in VictoriaMetrics", Duration::from_secs(60), || {
        vm.series(r#"{__name__=~"dlq\\..*"}"#).len() == 2
    });
    wait_until("the queues to drain", Duration::from_secs(30), || {
        con.zcard::<_, u64>("chouette:metrics:raw.keys").unwrap() == 0
            && con.zcard::<_, u64>("chouette:metrics:wrapped.keys").unwrap() == 0
    });
    assert!(agent.stop().success());
    let got = vm.series(r#"{__name__=~"dlq\\..*"}"#);
    assert_eq!(got["__name__=dlq.point,k=v"], [((t * 1000.0) as i64, 42.5)]);
    // The raw count was older than the watermark: folded into an open bucket, value exact.
    let raw_points = &got["__name__=dlq.raw"];
    assert_eq!(raw_points.len(), 1, "{got:?}");
    assert_eq!(raw_points[0].1, 7.0);
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:raw.dead.keys").unwrap(), 0);
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:wrapped.dead.keys").unwrap(), 0);
}

/// 1,000 dead letters sharing one score (a bucket's points do), two reasons interleaved: a
/// requeue of one reason pages through the queue (16, 32, ... records a page) while it moves records out of
/// it, and moves exactly that reason's 500, byte for byte.
fn requeue_pages_through_a_queue(store: &mut dyn Store) {
    use chouette_agent::cli::dead::{self, Action, DeadArgs};
    let t = base();
    let records: Vec<NewRecord> =
        (0..1000).map(|i| rec(&format!("id{i:04}"), t, format!("{{\"n\": {i}}}").as_bytes())).collect();
    store.add(Queue::Logs, &records).unwrap();
    let refused: Vec<DeadRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| DeadRecord {
            id: r.id.clone(),
            score: r.score,
            value: r.value.clone(),
            reason: if i % 2 == 0 { "even" } else { "odd" }.into(),
        })
        .collect();
    store.dead_letter(Queue::Logs, &refused).unwrap();
    let args = DeadArgs {
        action: Action::Requeue,
        queues: vec![Queue::DeadLogs],
        reason: Some("odd".into()),
        older_than_secs: None,
        limit: 0,
        json: false,
        dry_run: false,
        yes: false,
    };
    let mut out = Vec::new();
    let outcome = dead::requeue(store, &args, now(), &mut out).unwrap();
    assert_eq!(outcome.total(), 500);
    assert_eq!(outcome.skipped, 0);
    let live = store.read(Queue::Logs, f64::INFINITY, 2000).unwrap();
    let want: Vec<(Vec<u8>, f64, Option<Vec<u8>>)> =
        records.iter().skip(1).step_by(2).map(|r| (r.id.clone(), r.score, Some(r.value.clone()))).collect();
    let got: Vec<(Vec<u8>, f64, Option<Vec<u8>>)> =
        live.into_iter().map(|r| (r.id.to_vec(), r.score, r.value.map(Vec::from))).collect();
    assert_eq!(got, want);
    assert_eq!(store.len(Queue::DeadLogs).unwrap(), 500);
    // Purge the other reason, older than 60 s: all of them (10 minutes old).
    let purge = DeadArgs {
        action: Action::Purge,
        reason: Some("even".into()),
        older_than_secs: Some(60),
        yes: true,
        ..args
    };
    assert_eq!(dead::purge(store, &purge, now(), &mut out).unwrap().total(), 500);
    assert_eq!(store.len(Queue::DeadLogs).unwrap(), 0);
    assert_eq!(store.len(Queue::Logs).unwrap(), 500);
}

#[test]
fn redis_requeue_pages_through_a_queue() {
    let redis = RedisServer::start();
    let mut store = RedisStore::connect(&redis.url(), RedisTimeouts::default()).unwrap();
    requeue_pages_through_a_queue(&mut store);
}

#[test]
fn embedded_requeue_pages_through_a_queue() {
    let dir = TempDir::new("dead-pages");
    let mut store = EmbeddedStore::open(&dir.0.join("chouette.redb")).unwrap();
    requeue_pages_through_a_queue(&mut store);
}

#[test]
fn a_requeue_killed_mid_way_loses_and_duplicates_nothing() {
    const N: usize = 30_000;
    let redis = RedisServer::start();
    let mut con = redis.client();
    let mut store = RedisStore::connect(&redis.url(), RedisTimeouts::default()).unwrap();
    let t = base();
    let records: Vec<NewRecord> = (0..N)
        .map(|i| {
            rec(
                &format!("00000000-0000-4000-8000-{i:012}"),
                t + i as f64 / 1000.0,
                format!(r#"{{"message": "log {i}"}}"#).as_bytes(),
            )
        })
        .collect();
    store.add(Queue::Logs, &records).unwrap();
    let refused: Vec<DeadRecord> = records
        .iter()
        .map(|r| DeadRecord {
            id: r.id.clone(),
            score: r.score,
            value: r.value.clone(),
            reason: "http_400".into(),
        })
        .collect();
    store.dead_letter(Queue::Logs, &refused).unwrap();

    let mut child = Command::new(agent_binary!())
        .env_clear()
        .env("REDIS_URL", redis.url())
        .args(["dead", "requeue", "--queue", "logs"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the first batch to move", Duration::from_secs(30), || {
        con.zcard::<_, u64>("chouette:logs:wrapped.keys").unwrap() > 0
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let live = redis_queue(&mut con, "chouette:logs:wrapped");
    let dead = redis_queue(&mut con, "chouette:logs:wrapped.dead");
    assert!(!live.is_empty() && live.len() < N, "killed mid-way: {} of {N} moved", live.len());
    assert_eq!(live.len() + dead.len(), N, "lost or duplicated");
    assert_eq!(con.hlen::<_, usize>("chouette:logs:wrapped.values").unwrap(), live.len());
    assert_eq!(con.hlen::<_, usize>("chouette:logs:wrapped.dead.values").unwrap(), dead.len());
    let live_ids: std::collections::HashSet<&str> = live.iter().map(|r| r.0.as_str()).collect();
    assert!(dead.iter().all(|r| !live_ids.contains(r.0.as_str())), "a record in both queues");

    // Run again: the rest moves; every record is back once, byte for byte.
    let (code, out, err) = chouette(&[("REDIS_URL", redis.url())], &["dead", "requeue", "--queue", "logs"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("requeued {} logs record(s) with reason http_400 to logs", dead.len())),
        "{out}"
    );
    let want: Vec<(String, f64, Vec<u8>)> = records
        .iter()
        .map(|r| (String::from_utf8(r.id.clone()).unwrap(), r.score, r.value.clone()))
        .collect();
    assert_eq!(redis_queue(&mut con, "chouette:logs:wrapped"), want);
    assert_eq!(con.zcard::<_, u64>("chouette:logs:wrapped.dead.keys").unwrap(), 0);
    assert_eq!(con.hlen::<_, u64>("chouette:logs:wrapped.dead.values").unwrap(), 0);
}

#[test]
fn redis_requeue_while_the_dead_letter_queue_is_written() {
    use chouette_agent::cli::dead::{self, Action, DeadArgs};
    const N: usize = 10_000;
    let redis = RedisServer::start();
    let mut store = RedisStore::connect(&redis.url(), RedisTimeouts::default()).unwrap();
    let t = base();
    let refused: Vec<DeadRecord> = (0..N)
        .map(|i| DeadRecord {
            id: format!("a{i:05}").into_bytes(),
            score: t + (i % 100) as f64,
            value: format!("{{\"n\": {i}}}").into_bytes(),
            reason: "http_400".into(),
        })
        .collect();
    store.dead_letter(Queue::Logs, &refused).unwrap();
    // Meanwhile another writer dead-letters 2,000 records with another reason, interleaved in
    // score with the ones being requeued: WATCHed transactions abort and are retried.
    let writer = {
        let url = redis.url();
        std::thread::spawn(move || {
            let mut other = RedisStore::connect(&url, RedisTimeouts::default()).unwrap();
            for batch in 0..200 {
                let records: Vec<DeadRecord> = (0..10)
                    .map(|i| DeadRecord {
                        id: format!("b{batch:03}{i}").into_bytes(),
                        score: t + f64::from(batch % 100) + 0.5,
                        value: b"{}".to_vec(),
                        reason: "other".into(),
                    })
                    .collect();
                other.dead_letter(Queue::Logs, &records).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let args = DeadArgs {
        action: Action::Requeue,
        queues: vec![Queue::DeadLogs],
        reason: Some("http_400".into()),
        older_than_secs: None,
        limit: 0,
        json: false,
        dry_run: false,
        yes: false,
    };
    let mut printed = Vec::new();
    let outcome = dead::requeue(&mut store, &args, now(), &mut printed).unwrap();
    writer.join().unwrap();
    let mut con = redis.client();
    let live = redis_queue(&mut con, "chouette:logs:wrapped");
    let want: Vec<(String, f64, Vec<u8>)> = refused
        .iter()
        .map(|r| (String::from_utf8(r.id.clone()).unwrap(), r.score, r.value.clone()))
        .collect();
    // What moved first, then what the run counted: a miscount and a record left behind are
    // told apart, with what it printed and who else was connected.
    let printed = String::from_utf8_lossy(&printed);
    let clients =
        || redis::cmd("CLIENT").arg("LIST").query::<String>(&mut redis.client()).unwrap_or_default();
    assert!(live == want, "{} of {N} requeued; it printed:\n{printed}\nclients:\n{}", live.len(), clients());
    assert_eq!(
        (outcome.total(), outcome.skipped),
        (N as u64, 0),
        "it printed:\n{printed}\nclients:\n{}",
        clients()
    );
    let left = redis_queue(&mut con, "chouette:logs:wrapped.dead");
    assert_eq!(left.len(), 2000);
    assert!(left.iter().all(|r| r.0.starts_with('b')));
}
