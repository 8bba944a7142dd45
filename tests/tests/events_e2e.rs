//! DogStatsD events and service checks end to end: records queued in `chouette:events` and
//! `chouette:service_checks` through the Redis store (as the listener queues them) reach the
//! fake Datadog intake with the exact JSON (HOST and GLOBAL_TAGS added), events one per
//! request to `/api/v1/events`, checks as one array to `/api/v1/check_run`; a 400 on one event
//! dead-letters that event alone; a 503 keeps everything until the intake accepts.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use chouette_agent::store::redis::{RedisStore, RedisTimeouts};
use chouette_agent::store::{NewRecord, Queue, Store};
use chouette_tests::agent_binary;
use chouette_tests::intake::{Answer, FakeIntake, Request, When};
use chouette_tests::{wait_until, Agent, RedisServer};
use redis::Commands;

const API_KEY: &str = "test-api-key-events-0123456789";

fn start_agent(redis: &RedisServer, intake: &FakeIntake) -> Agent {
    let vars: Vec<(&str, String)> = vec![
        ("REDIS_URL", redis.url()),
        ("API_KEY", API_KEY.into()),
        ("DATADOG_URL", format!("{}/api", intake.url())),
        ("DATADOG_LOGS_URL", intake.url()),
        ("GLOBAL_TAGS", r#"["env:e2e"]"#.into()),
        ("HOST", "e2e-host".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("SEND_SELF_METRICS", "false".into()),
        ("CHOUETTE_REQUEST_TIMEOUT", "5".into()),
    ];
    Agent::start(agent_binary!(), &vars)
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Queues `values` in `queue` through the store, as the listener does.
fn queue(redis: &RedisServer, queue: Queue, values: &[&str]) {
    let mut store = RedisStore::connect(&redis.url(), RedisTimeouts::default()).unwrap();
    let t = now().floor();
    let records: Vec<NewRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| NewRecord {
            id: format!("{}-{i}", queue.prefix()).into_bytes(),
            score: t + i as f64 * 0.001,
            value: v.as_bytes().to_vec(),
        })
        .collect();
    store.add(queue, &records).unwrap();
}

fn len(con: &mut redis::Connection, prefix: &str) -> u64 {
    con.zcard(format!("{prefix}.keys")).unwrap()
}

fn on(requests: &[Request], path: &str) -> Vec<Request> {
    requests.iter().filter(|r| r.path == path).cloned().collect()
}

/// `chouette dead list --queue <short> --json`: (reason, count) rows.
fn dead_rows(redis: &RedisServer, short: &str) -> Vec<(String, u64)> {
    let out = Command::new(agent_binary!())
        .env_clear()
        .env("REDIS_URL", redis.url())
        .args(["dead", "list", "--queue", short, "--json"])
        .output()
        .expect("run chouette dead list");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    doc["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["reason"].as_str().unwrap().to_owned(), row["count"].as_u64().unwrap()))
        .collect()
}

/// The refused one first: it must not block the queue behind it.
const EVENTS: [&str; 5] = [
    r#"{"title":"poison","text":"the intake refuses this one","date_happened":1700000002}"#,
    r#"{"title":"Deploy","text":"v2 is out\nall good","date_happened":1700000000,"host":"box-7","aggregation_key":"deploys","priority":"low","source_type_name":"jenkins","alert_type":"success","tags":["team:ops"]}"#,
    r#"{"title":"Reboot","date_happened":1700000001,"text":""}"#,
    r#"{"title":"no text"}"#,
    r#"{"title":"Caf\u00e9","text":"é ü","date_happened":1700000003,"alert_type":"error","tags":["a:b","c"]}"#,
];

const CHECKS: [&str; 3] = [
    r#"{"check":"app.up","status":0,"timestamp":1700000000,"tags":["svc:web"]}"#,
    r#"{"check":"app.disk","status":2,"timestamp":1700000001,"host_name":"gw","message":"disk full"}"#,
    r#"{"check":"app.db","status":3}"#,
];

#[test]
fn events_and_service_checks_reach_the_intake_and_a_refused_event_alone_is_dead() {
    let redis = RedisServer::start();
    let intake = FakeIntake::start();
    intake.add_rule(When::BodyContains("poison".into()), Answer::Status(400));
    queue(&redis, Queue::Events, &EVENTS);
    queue(&redis, Queue::ServiceChecks, &CHECKS);
    let mut con = redis.client();

    let agent = start_agent(&redis, &intake);
    wait_until("the events and service checks to be sent", Duration::from_secs(60), || {
        len(&mut con, "chouette:events") == 0 && len(&mut con, "chouette:service_checks") == 0
    });
    wait_until("the status to count them", Duration::from_secs(30), || {
        let status: BTreeMap<String, String> = con.hgetall("chouette:agent:status").unwrap();
        let field = |name: &str| status.get(name).map(String::as_str);
        field("dispatch.events.delivered") == Some("3")
            && field("dispatch.events.deadlettered") == Some("2")
            && field("dispatch.service_checks.delivered") == Some("3")
    });
    agent.wait_ready();
    let output = agent.output();
    assert!(agent.stop().success());
    assert!(!output.contains(API_KEY), "the API key never appears in the agent's output");

    let requests = intake.take_requests();
    let events = on(&requests, "/api/v1/events");
    for request in &events {
        assert_eq!(request.header("dd-api-key"), Some(API_KEY));
        assert_eq!(request.header("content-encoding"), None, "events go uncompressed");
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    let bodies: Vec<(&str, bool)> = events.iter().map(|r| (r.body.as_str(), r.accepted())).collect();
    assert_eq!(
        bodies,
        [
            (
                r#"{"title":"poison","text":"the intake refuses this one","date_happened":1700000002,"host":"e2e-host","tags":["env:e2e"]}"#,
                false
            ),
            (
                r#"{"title":"Deploy","text":"v2 is out\nall good","date_happened":1700000000,"host":"box-7","aggregation_key":"deploys","priority":"low","source_type_name":"jenkins","alert_type":"success","tags":["team:ops","env:e2e"]}"#,
                true
            ),
            (
                r#"{"title":"Reboot","date_happened":1700000001,"text":"","host":"e2e-host","tags":["env:e2e"]}"#,
                true
            ),
            (
                r#"{"title":"Caf\u00e9","text":"é ü","date_happened":1700000003,"alert_type":"error","tags":["a:b","c","env:e2e"],"host":"e2e-host"}"#,
                true
            ),
        ],
        "one request per event, in queue order, each exactly once; the shapeless one never sent"
    );

    let checks = on(&requests, "/api/v1/check_run");
    assert_eq!(checks.len(), 1, "the three checks in one array");
    assert_eq!(checks[0].header("dd-api-key"), Some(API_KEY));
    assert_eq!(checks[0].header("content-encoding"), Some("deflate"));
    assert_eq!(
        checks[0].body,
        concat!(
            r#"[{"check":"app.up","status":0,"timestamp":1700000000,"tags":["svc:web","env:e2e"],"host_name":"e2e-host"},"#,
            r#"{"check":"app.disk","status":2,"timestamp":1700000001,"host_name":"gw","message":"disk full","tags":["env:e2e"]},"#,
            r#"{"check":"app.db","status":3,"host_name":"e2e-host","tags":["env:e2e"]}]"#
        )
    );

    // Exactly the two bad events are dead, each with its reason; `chouette dead` lists them.
    let mut rows = dead_rows(&redis, "events");
    rows.sort();
    assert_eq!(rows, [("http_400".to_owned(), 1), ("missing_field:text".to_owned(), 1)]);
    assert_eq!(dead_rows(&redis, "service_checks"), []);
    let dead: BTreeMap<String, String> = con.hgetall("chouette:events.dead.values").unwrap();
    let mut originals: Vec<String> = dead
        .values()
        .map(|envelope| {
            let doc: serde_json::Value = serde_json::from_str(envelope).unwrap();
            assert_eq!(doc["queue"], "chouette:events");
            doc["value"].as_str().unwrap().to_owned()
        })
        .collect();
    originals.sort();
    assert_eq!(originals, [EVENTS[3], EVENTS[0]], "the exact bytes queued");
}

#[test]
fn a_503_keeps_events_and_checks_until_the_intake_accepts() {
    let redis = RedisServer::start();
    let intake = FakeIntake::start();
    intake.set_default(Answer::Status(503));
    queue(&redis, Queue::Events, &[EVENTS[1], EVENTS[2]]);
    queue(&redis, Queue::ServiceChecks, &CHECKS);
    let mut con = redis.client();

    let agent = start_agent(&redis, &intake);
    wait_until("both endpoints to be tried", Duration::from_secs(30), || {
        let requests = intake.take_requests();
        let tried = |path: &str| requests.iter().any(|r| r.path == path && r.answer == Answer::Status(503));
        tried("/api/v1/events") && tried("/api/v1/check_run")
    });
    assert_eq!(len(&mut con, "chouette:events"), 2, "nothing deleted on 503");
    assert_eq!(len(&mut con, "chouette:service_checks"), 3, "nothing deleted on 503");
    intake.set_default(Answer::Status(202));
    wait_until("delivery once the intake accepts", Duration::from_secs(60), || {
        len(&mut con, "chouette:events") == 0 && len(&mut con, "chouette:service_checks") == 0
    });
    agent.wait_ready();
    assert!(agent.stop().success());

    let requests = intake.take_requests();
    let accepted = |path: &str| -> Vec<String> {
        on(&requests, path).into_iter().filter(Request::accepted).map(|r| r.body).collect()
    };
    let events = accepted("/api/v1/events");
    assert_eq!(events.len(), 2, "each event delivered once: {events:?}");
    assert!(events[0].starts_with(r#"{"title":"Deploy","#) && events[1].starts_with(r#"{"title":"Reboot","#));
    let checks = accepted("/api/v1/check_run");
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].matches("\"check\":").count(), 3);
    assert_eq!(len(&mut con, "chouette:events.dead"), 0);
    assert_eq!(len(&mut con, "chouette:service_checks.dead"), 0);
}
