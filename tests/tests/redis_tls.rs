//! The agent on a Redis that speaks TLS (`rediss://`), with a CA of its own and client
//! certificates, as Redis sets TLS up by default (`tls-auth-clients yes`): a real `redis-server`
//! with a TLS port beside its plain one (the tests write and check through the plain one), a CA
//! and certificates made by `openssl` for each test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chouette_tests::agent_binary;
use chouette_tests::{write_raw, Agent, RedisServer, VictoriaMetrics};
use redis::Commands;

/// The agent's variables for `redis`'s TLS port, VictoriaMetrics as the Datadog backend, with
/// `extra` (the TLS files) on top.
fn env(
    redis: &RedisServer,
    vm: &VictoriaMetrics,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("REDIS_URL", redis.tls_url()),
        ("DATADOG_URL", vm.datadog_url()),
        ("HOST", "tls-host".into()),
        ("AGGREGATE_INTERVAL", "10".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("SEND_SELF_METRICS", "false".into()),
    ];
    vars.extend(extra.iter().cloned());
    vars
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// `n` count records of 1 over three series, spread over two buckets ten minutes ago.
fn backlog(n: usize) -> (f64, Vec<(String, f64, String)>) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let base = (now / 10.0).floor() * 10.0 - 600.0;
    let records = (0..n)
        .map(|i| {
            let ts = base + if i % 2 == 0 { 1.0 } else { 11.0 };
            let value =
                format!(r#"{{"metric": "tls.req", "type": "count", "value": 1, "timestamp": {ts:?}, "tags": {{"ep": "e{}"}}}}"#, i % 3);
            (format!("00000000-0000-4000-8000-{i:012}"), ts, value)
        })
        .collect();
    (base, records)
}

/// Waits for the agent to exit by itself (a refused store at startup); its status and output.
fn exit_of(agent: &mut Agent, within: Duration) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = agent.try_wait() {
            return (status, agent.output());
        }
        assert!(Instant::now() < deadline, "the agent still runs after {within:?}:\n{}", agent.output());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_backlog_crosses_a_tls_redis_with_client_certificates_exactly() {
    let redis = RedisServer::start_tls(true);
    let tls = redis.tls.as_ref().unwrap();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    // More than a page of the raw queue and of the wrapped one (10,000 records).
    let (base, records) = backlog(24_000);
    write_raw(&mut con, &records);
    let vars = env(
        &redis,
        &vm,
        &[
            ("REDIS_TLS_CA_FILE", path(&tls.ca)),
            ("REDIS_TLS_CERT_FILE", path(&tls.client_cert)),
            ("REDIS_TLS_KEY_FILE", path(&tls.client_key)),
        ],
    );
    let mut agent = Agent::start(agent_binary!(), &vars);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let raw: u64 = con.zcard("chouette:metrics:raw.keys").unwrap();
        let wrapped: u64 = con.zcard("chouette:metrics:wrapped.keys").unwrap();
        if raw == 0 && wrapped == 0 {
            break;
        }
        assert!(agent.try_wait().is_none(), "the agent exited:\n{}", agent.output());
        assert!(Instant::now() < deadline, "not drained: raw={raw} wrapped={wrapped}\n{}", agent.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = agent.output();
    assert!(agent.stop().success(), "exit 0 after SIGTERM");
    let tls_port = redis.tls.as_ref().unwrap().port;
    assert!(
        output.contains(&format!("store=rediss://localhost:{tls_port}/0: store in use")),
        "the agent used the TLS port:\n{output}"
    );

    let ms = |offset: f64| ((base + offset) * 1000.0) as i64;
    let want: BTreeMap<String, Vec<(i64, f64)>> = (0..3)
        .map(|e| {
            (format!("__name__=tls.req,ep=e{e},host=tls-host"), vec![(ms(0.0), 4000.0), (ms(10.0), 4000.0)])
        })
        .collect();
    assert_eq!(vm.series(r#"{__name__="tls.req"}"#), want);
}

#[test]
fn a_redis_certificate_from_an_untrusted_ca_stops_the_agent_with_the_reason_and_keeps_the_queue() {
    let redis = RedisServer::start_tls(false);
    let tls = redis.tls.as_ref().unwrap();
    let vm = VictoriaMetrics::start();
    let mut con = redis.client();
    let (_, records) = backlog(10);
    write_raw(&mut con, &records);
    // The public roots only (no CA file), then a CA that signed nothing here.
    for (extra, hint) in [
        (vec![], "set REDIS_TLS_CA_FILE to the CA that signed it"),
        (vec![("REDIS_TLS_CA_FILE", path(&tls.other_ca))], "REDIS_TLS_CA_FILE holds no CA that signed"),
    ] {
        let mut agent = Agent::start(agent_binary!(), &env(&redis, &vm, &extra));
        let (status, output) = exit_of(&mut agent, Duration::from_secs(30));
        assert!(!status.success(), "{output}");
        assert!(
            output.contains("cannot open the store: rediss://localhost:")
                && output.contains("invalid peer certificate: UnknownIssuer")
                && output.contains(hint),
            "the reason is told:\n{output}"
        );
        let raw: u64 = con.zcard("chouette:metrics:raw.keys").unwrap();
        assert_eq!(raw, 10, "nothing was taken from the queue");
    }
}

#[test]
fn a_redis_that_asks_for_a_client_certificate_refuses_an_agent_without_one() {
    let redis = RedisServer::start_tls(true);
    let tls = redis.tls.as_ref().unwrap();
    let vm = VictoriaMetrics::start();
    let mut agent = Agent::start(agent_binary!(), &env(&redis, &vm, &[("REDIS_TLS_CA_FILE", path(&tls.ca))]));
    let (status, output) = exit_of(&mut agent, Duration::from_secs(30));
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("cannot open the store: rediss://localhost:")
            && output.contains(
                "received fatal alert: CertificateRequired (the server asks for a client certificate: \
                 set REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE)"
            ),
        "the reason is told:\n{output}"
    );
}
