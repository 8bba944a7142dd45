//! End to end against a fake Datadog intake (the only part that cannot run here), injecting
//! faults: logs through 500s, a 400 on one series, 413 on large bodies, 403 until the key is
//! fixed. Every test checks conservation: what was written = what was accepted + dead-lettered.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chouette_tests::agent_binary;
use chouette_tests::intake::{Answer, FakeIntake, When};
use chouette_tests::{wait_until, Agent, RedisServer};
use redis::Commands;

const API_KEY: &str = "test-api-key-0123456789";

fn start_agent(redis: &RedisServer, intake: &FakeIntake, extra: &[(&str, &str)]) -> Agent {
    let mut vars: Vec<(&str, String)> = vec![
        ("REDIS_URL", redis.url()),
        ("API_KEY", API_KEY.into()),
        ("DATADOG_URL", format!("{}/api", intake.url())),
        ("DATADOG_LOGS_URL", intake.url()),
        ("GLOBAL_TAGS", r#"["env:e2e"]"#.into()),
        ("HOST", "e2e-host".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("AGGREGATE_INTERVAL", "10".into()),
        ("SEND_SELF_METRICS", "false".into()),
        ("CHOUETTE_REQUEST_TIMEOUT", "5".into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Agent::start(agent_binary!(), &vars)
}

/// SIGTERM; the exit status and everything the agent printed.
fn stop(agent: Agent) -> (std::process::ExitStatus, String) {
    agent.wait_ready();
    let output = agent.output();
    let status = agent.stop();
    (status, output)
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn write(con: &mut redis::Connection, queue: &str, records: &[(String, f64, String)]) {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (id, score, value) in records {
        pipe.zadd(format!("{queue}.keys"), id, *score).ignore();
        pipe.hset(format!("{queue}.values"), id, value).ignore();
    }
    let () = pipe.query(con).unwrap();
}

#[test]
fn logs_reach_the_intake_once_through_server_errors() {
    let redis = RedisServer::start();
    let intake = FakeIntake::start();
    intake.push_answers([Answer::Status(500), Answer::Status(503)]);
    let mut con = redis.client();
    let t = now() - 60.0;
    let mut logs = Vec::new();
    for i in 0..50 {
        let date = if i == 7 {
            "2026-11-22T01:25:26+00:00".to_string()
        } else {
            format!("2026-11-22T01:25:26.{:06}+00:00", i + 1)
        };
        let value = format!(
            r#"{{"date": "{date}", "ddsource": "svc", "ddtags": ["app:x"], "level": "INFO", "message": {{"msg": "log-{i}"}}, "service": "svc"}}"#
        );
        logs.push((format!("log-{i:03}"), t + i as f64 * 0.01, value));
    }
    logs.push(("log-bad".into(), t, "So wrong!".into()));
    write(&mut con, "chouette:logs:wrapped", &logs);

    let agent = start_agent(&redis, &intake, &[]);
    wait_until("the logs queue to drain", Duration::from_secs(60), || {
        con.zcard::<_, u64>("chouette:logs:wrapped.keys").unwrap() == 0
    });
    let (status, output) = stop(agent);
    assert!(status.success());
    assert!(!output.contains(API_KEY), "the API key never appears in the agent's output");

    let requests = intake.take_requests();
    let mut delivered = Vec::new();
    for request in requests.iter().filter(|r| r.path == "/v1/input") {
        assert_eq!(request.header("dd-api-key"), Some(API_KEY));
        assert!(!request.query.contains(API_KEY));
        assert_eq!(request.header("content-encoding"), Some("deflate"));
        if request.accepted() {
            let entries: Vec<serde_json::Value> = serde_json::from_str(&request.body).expect("a JSON array");
            for entry in entries {
                assert_eq!(entry["ddtags"], "app:x,env:e2e");
                assert_eq!(entry["host"], "e2e-host");
                delivered.push(entry["message"]["msg"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(requests.iter().any(|r| !r.accepted()), "the 500 and 503 were seen");
    let unique: BTreeSet<&String> = delivered.iter().collect();
    assert_eq!(delivered.len(), 50, "each log delivered exactly once");
    assert_eq!(unique.len(), 50);
    let dead: BTreeMap<String, String> = con.hgetall("chouette:logs:wrapped.dead.values").unwrap();
    assert_eq!(dead.len(), 1, "the unparseable log is dead-lettered");
}

/// `(metric, timestamp)` of every point in accepted series requests, and the request count.
fn accepted_points(intake: &FakeIntake) -> (Vec<(String, i64)>, usize) {
    let mut points = Vec::new();
    let mut refused = 0;
    for request in intake.take_requests().iter().filter(|r| r.path == "/api/v1/series") {
        if !request.accepted() {
            refused += 1;
            continue;
        }
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        for series in body["series"].as_array().unwrap() {
            for point in series["points"].as_array().unwrap() {
                points.push((
                    series["metric"].as_str().unwrap().to_string(),
                    point[0].as_f64().unwrap() as i64,
                ));
            }
        }
    }
    (points, refused)
}

#[test]
fn a_poison_series_is_isolated_and_large_bodies_are_split() {
    let redis = RedisServer::start();
    let intake = FakeIntake::start();
    intake.add_rule(When::BodyContains("poison.metric".into()), Answer::Status(400));
    intake.add_rule(When::BodyOver(4000), Answer::Status(413));
    let mut con = redis.client();
    let base = ((now() / 10.0).floor() * 10.0) - 600.0;
    let mut raw = Vec::new();
    for bucket in 0..30 {
        for series in ["good.a", "good.b", "good.c", "poison.metric"] {
            let ts = base + bucket as f64 * 10.0 + 1.0;
            raw.push((
                format!("{series}-{bucket}"),
                ts,
                format!(r#"{{"metric": "{series}", "type": "count", "value": 1, "timestamp": {ts:?}, "tags": {{}}}}"#),
            ));
        }
    }
    write(&mut con, "chouette:metrics:raw", &raw);

    let agent = start_agent(&redis, &intake, &[]);
    wait_until("both metric queues to drain", Duration::from_secs(60), || {
        con.zcard::<_, u64>("chouette:metrics:raw.keys").unwrap() == 0
            && con.zcard::<_, u64>("chouette:metrics:wrapped.keys").unwrap() == 0
    });
    let (status, _) = stop(agent);
    assert!(status.success());

    let (points, refused) = accepted_points(&intake);
    assert!(refused > 0, "the 400s and 413s were exercised");
    let unique: BTreeSet<&(String, i64)> = points.iter().collect();
    assert_eq!(points.len(), unique.len(), "no point delivered twice");
    assert_eq!(points.len(), 90, "every good point delivered");
    assert!(points.iter().all(|(m, _)| m.starts_with("good.")));
    let dead: BTreeMap<String, String> = con.hgetall("chouette:metrics:wrapped.dead.values").unwrap();
    assert_eq!(dead.len(), 30, "every poison point dead-lettered, nothing else");
    assert!(dead.values().all(|v| v.contains("http_400") && v.contains("poison.metric")));
}

#[test]
fn a_403_keeps_everything_until_the_key_is_accepted() {
    let redis = RedisServer::start();
    let intake = FakeIntake::start();
    intake.set_default(Answer::Status(403));
    let mut con = redis.client();
    let base = ((now() / 10.0).floor() * 10.0) - 600.0;
    let raw: Vec<_> = (0..20)
        .map(|i| {
            let ts = base + i as f64 * 10.0;
            (format!("r{i}"), ts, format!(r#"{{"metric": "k403", "type": "gauge", "value": {i}, "timestamp": {ts:?}, "tags": {{}}}}"#))
        })
        .collect();
    write(&mut con, "chouette:metrics:raw", &raw);

    let agent = start_agent(&redis, &intake, &[]);
    wait_until("the raw queue to be aggregated", Duration::from_secs(30), || {
        con.zcard::<_, u64>("chouette:metrics:raw.keys").unwrap() == 0
    });
    wait_until("a refused request", Duration::from_secs(30), || intake.request_count() > 0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(con.zcard::<_, u64>("chouette:metrics:wrapped.keys").unwrap(), 20, "nothing deleted on 403");
    assert!(agent.output().contains("API_KEY"), "an error an operator can act on");
    intake.set_default(Answer::Status(202));
    wait_until("delivery after the key is accepted", Duration::from_secs(60), || {
        con.zcard::<_, u64>("chouette:metrics:wrapped.keys").unwrap() == 0
    });
    let (status, output) = stop(agent);
    assert!(status.success());
    let (points, refused) = accepted_points(&intake);
    assert_eq!(points.len(), 20);
    assert!(refused >= 2, "the key was refused more than once ({refused})");
    // One ERROR when the refusals start (not one per attempt), one INFO when they end.
    let errors =
        output.lines().filter(|l| l.contains(r#""levelname": "ERROR""#) && l.contains("check API_KEY"));
    assert_eq!(errors.count(), 1, "{refused} refused requests:\n{output}");
    let recovered =
        output.lines().filter(|l| l.contains(r#""levelname": "INFO""#) && l.contains("accepts again"));
    assert_eq!(recovered.count(), 1, "{output}");
}
