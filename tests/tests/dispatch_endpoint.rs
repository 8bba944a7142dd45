//! Endpoint faults, end to end with the `chouette` binary, a real Redis and a real
//! VictoriaMetrics (a fake intake only for the Datadog logs intake, which cannot run here):
//!
//! - a typo in `DATADOG_URL` (VictoriaMetrics answers 400 "unsupported path" to every request)
//!   dead-letters nothing, logs one ERROR, and once the URL is fixed everything arrives;
//! - the metrics endpoint down (connection refused) does not hold the logs back;
//! - a long bisection (many poison records, a slow intake) does not stall the loop: SIGTERM is
//!   served within the release budget, and only poison is dead-lettered.

use std::time::Duration;

use chouette_tests::agent_binary;
use chouette_tests::intake::{Answer, FakeIntake, When};
use chouette_tests::{free_port, wait_until, Agent, RedisServer, VictoriaMetrics};
use redis::Commands;

const WRAPPED: &str = "chouette:metrics:wrapped";

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64()
}

fn zcard(con: &mut redis::Connection, key: &str) -> u64 {
    con.zcard(key).expect("zcard")
}

fn hlen(con: &mut redis::Connection, key: &str) -> u64 {
    con.hlen(key).expect("hlen")
}

/// Writes `(id, score, value)` records to `queue` as the original does: ZADD + HSET.
fn write(con: &mut redis::Connection, queue: &str, records: &[(String, f64, String)]) {
    for chunk in records.chunks(5000) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, score, value) in chunk {
            pipe.zadd(format!("{queue}.keys"), id, *score).ignore();
            pipe.hset(format!("{queue}.values"), id, value).ignore();
        }
        let () = pipe.query(con).expect("write records");
    }
}

/// A field of the agent's status hash, if written yet.
fn status_field(con: &mut redis::Connection, field: &str) -> Option<String> {
    con.hget("chouette:agent:status", field).ok().flatten()
}

fn base_env(redis: &RedisServer, datadog_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", redis.url()),
        ("DATADOG_URL", datadog_url),
        ("AGGREGATE_INTERVAL", "10".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("SEND_SELF_METRICS", "false".into()),
        ("CHOUETTE_CONNECT_TIMEOUT", "2".into()),
        ("CHOUETTE_REQUEST_TIMEOUT", "5".into()),
    ]
}

/// Lines the agent logged at `level` whose message contains `text`.
fn lines_with(output: &str, level: &str, text: &str) -> usize {
    output.lines().filter(|l| l.contains(&format!("\"levelname\": \"{level}\"")) && l.contains(text)).count()
}

#[test]
fn a_typo_in_datadog_url_keeps_everything_and_delivers_it_once_fixed() {
    const N: usize = 20_000;
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    // 20,000 wrapped counts of 1: 100 series × 200 timestamps, so no two share a sample.
    let base = (now() / 10.0).floor() * 10.0 - 3000.0;
    let records: Vec<(String, f64, String)> = (0..N)
        .map(|i| {
            let ts = base + (i / 100) as f64 * 10.0;
            let value = format!(
                r#"{{"metric": "typo.count", "tags": ["i:{}"], "points": [[{ts:?}, 1]], "type": "count", "interval": 10}}"#,
                i % 100
            );
            (format!("w{i:05}"), ts, value)
        })
        .collect();
    write(&mut con, WRAPPED, &records);

    // `/datadog/apii`: VictoriaMetrics answers 400 "unsupported path" to every request.
    let typo = format!("http://127.0.0.1:{}/datadog/apii", vm.port);
    let agent = Agent::start(agent_binary!(), &base_env(&redis, typo.clone()));
    wait_until("three failed attempts (or a dead letter)", Duration::from_secs(40), || {
        let failures =
            status_field(&mut con, "dispatch.metrics.failures").and_then(|v| v.parse::<u64>().ok());
        hlen(&mut con, &format!("{WRAPPED}.dead.values")) > 0 || failures.is_some_and(|f| f >= 3)
    });
    let output = agent.output();
    assert!(agent.stop().success());
    assert_eq!(hlen(&mut con, &format!("{WRAPPED}.dead.values")), 0, "nothing dead-lettered");
    assert_eq!(zcard(&mut con, &format!("{WRAPPED}.keys")), N as u64, "every record kept");
    let errors = lines_with(&output, "ERROR", "check DATADOG_URL");
    assert_eq!(errors, 1, "one ERROR naming the URL, not one per attempt:\n{output}");
    assert!(lines_with(&output, "ERROR", &format!("url={typo}/v1/series")) == 1, "{output}");
    assert!(lines_with(&output, "ERROR", "status=400") == 1, "{output}");

    // The URL fixed, the agent restarted: exactly 20,000 arrive.
    let agent = Agent::start(agent_binary!(), &base_env(&redis, vm.datadog_url()));
    wait_until("the wrapped queue to drain", Duration::from_secs(60), || {
        zcard(&mut con, &format!("{WRAPPED}.keys")) == 0
    });
    assert!(agent.stop().success());
    assert_eq!(hlen(&mut con, &format!("{WRAPPED}.dead.values")), 0);
    let series = vm.series(r#"{__name__="typo.count"}"#);
    let samples: usize = series.values().map(Vec::len).sum();
    let sum: f64 = series.values().flatten().map(|(_, v)| v).sum();
    assert_eq!((series.len(), samples, sum), (100, N, N as f64));
}

fn log_json(i: usize) -> String {
    format!(
        r#"{{"date": "2026-11-22T01:25:26.{:06}+00:00", "ddsource": "svc", "ddtags": ["app:x"], "level": "INFO", "message": {{"msg": "log-{i}"}}, "service": "svc"}}"#,
        i + 1
    )
}

#[test]
fn logs_are_delivered_while_the_metrics_endpoint_is_down() {
    let redis = RedisServer::start();
    let intake = FakeIntake::start();
    let mut con = redis.client();
    let t = now() - 60.0;
    let logs: Vec<_> = (0..200).map(|i| (format!("log-{i:03}"), t + i as f64 * 0.01, log_json(i))).collect();
    write(&mut con, "chouette:logs:wrapped", &logs);
    let metrics: Vec<_> = (0..50)
        .map(|i| {
            let ts = t - i as f64 * 10.0;
            let value =
                format!(r#"{{"metric": "down.m", "tags": [], "points": [[{ts:?}, {i}]], "type": "gauge"}}"#);
            (format!("m{i}"), ts, value)
        })
        .collect();
    write(&mut con, WRAPPED, &metrics);

    // Nothing listens on the metrics port: every metrics request is refused at once.
    let closed = format!("http://127.0.0.1:{}/api", free_port());
    let mut env = base_env(&redis, closed);
    env.push(("API_KEY", "logs-key-0123456789".into()));
    env.push(("DATADOG_LOGS_URL", intake.url()));
    let agent = Agent::start(agent_binary!(), &env);
    agent.wait_ready();
    wait_until("the 200 logs delivered", Duration::from_secs(15), || {
        zcard(&mut con, "chouette:logs:wrapped.keys") == 0
    });
    assert!(agent.stop().success());
    let delivered: usize = intake
        .take_requests()
        .iter()
        .filter(|r| r.path == "/v1/input" && r.accepted())
        .map(|r| r.body.matches("\"date\"").count())
        .sum();
    assert_eq!(delivered, 200, "each log delivered once");
    assert_eq!(zcard(&mut con, &format!("{WRAPPED}.keys")), 50, "the metrics are kept");
    assert_eq!(hlen(&mut con, &format!("{WRAPPED}.dead.values")), 0);
}

#[test]
fn a_long_bisection_does_not_stall_the_loop() {
    const N: usize = 2000;
    let redis = RedisServer::start();
    let intake = FakeIntake::start();
    // Every answer takes 200 ms; records named "poison" are refused. 200 poison records among
    // 2000 need thousands of requests: far more than one release pass may take.
    let slow = |status| Answer::Slow { delay: Duration::from_millis(200), status };
    intake.add_rule(When::BodyContains("poison".into()), slow(400));
    intake.add_rule(When::Always, slow(202));
    let mut con = redis.client();
    let t = now() - 600.0;
    let records: Vec<_> = (0..N)
        .map(|i| {
            let name = if i % 10 == 3 { "poison" } else { "good" };
            let value = format!(
                r#"{{"metric": "{name}", "tags": ["i:{i}"], "points": [[{t:?}, 1]], "type": "gauge"}}"#
            );
            (format!("w{i:05}"), t, value)
        })
        .collect();
    write(&mut con, WRAPPED, &records);

    let mut env = base_env(&redis, format!("{}/api", intake.url()));
    env.retain(|(k, _)| *k != "RELEASE_INTERVAL");
    env.push(("RELEASE_INTERVAL", "60".into()));
    env.push(("API_KEY", "stall-key-0123456789".into()));
    let agent = Agent::start(agent_binary!(), &env);
    wait_until("the bisection under way (20 requests)", Duration::from_secs(30), || {
        intake.request_count() >= 20
    });
    // The loop turns every few seconds: SIGTERM is served well within the 20 s `stop` allows
    // (before, one release tick drained for up to RELEASE_INTERVAL, here 60 s).
    let asked = std::time::Instant::now();
    assert!(agent.stop().success());
    let took = asked.elapsed();
    eprintln!("SIGTERM served in {took:?} during the bisection");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");

    // Conservation: every record is delivered once, dead (poison only) or still queued.
    let accepted: usize = intake
        .take_requests()
        .iter()
        .filter(|r| r.accepted())
        .map(|r| r.body.matches("\"points\"").count())
        .sum();
    let dead: std::collections::BTreeMap<String, String> =
        con.hgetall(format!("{WRAPPED}.dead.values")).expect("dead letters");
    assert!(dead.values().all(|v| v.contains("poison") && v.contains("http_400")), "only poison is dead");
    let queued = zcard(&mut con, &format!("{WRAPPED}.keys")) as usize;
    assert!(queued > 0, "the bisection was cut short, the rest kept");
    assert_eq!(accepted + dead.len() + queued, N);
}
