//! A dry run prints what it would send and deletes it: it is for the embedded store on a fresh
//! machine. With a Redis (whatever the apps queued) and no output configured, the agent refuses
//! to start (exit 2, one line saying what to set) and touches nothing, unless the dry run is
//! asked for (`CHOUETTE_DRY_RUN=true`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chouette_tests::agent_binary;
use chouette_tests::{free_port, Agent, RedisServer};
use redis::Commands;

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// One raw metric from 3 minutes ago (its bucket is closed: a running agent aggregates and
/// releases it at once) and one log.
fn seed(con: &mut redis::Connection) {
    let ts = now() - 180.0;
    let metric =
        format!(r#"{{"metric": "dry.check", "type": "count", "value": 1, "timestamp": {ts}, "tags": {{}}}}"#);
    let log = r#"{"date": "2026-11-22T01:25:26.000001+00:00", "ddsource": "svc", "ddtags": [], "level": "INFO", "message": {"msg": "hello"}, "service": "svc"}"#;
    let () = redis::pipe()
        .zadd("chouette:metrics:raw.keys", "m-1", ts)
        .hset("chouette:metrics:raw.values", "m-1", metric)
        .zadd("chouette:logs:wrapped.keys", "l-1", now() - 60.0)
        .hset("chouette:logs:wrapped.values", "l-1", log)
        .query(con)
        .expect("seed");
}

fn queued(con: &mut redis::Connection) -> [u64; 4] {
    [
        con.zcard("chouette:metrics:raw.keys").unwrap(),
        con.hlen("chouette:metrics:raw.values").unwrap(),
        con.zcard("chouette:logs:wrapped.keys").unwrap(),
        con.hlen("chouette:logs:wrapped.values").unwrap(),
    ]
}

/// Runs `chouette` with only `vars` (and PATH) until it exits, within 15 s (an agent that starts
/// instead of refusing fails here): exit code, stdout, stderr.
fn run_to_exit(vars: &[(&str, String)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(agent_binary!());
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    // No DogStatsD UDP socket (8125 by default), as the harness's agents.
    command.env("DOGSTATSD_PORT", "0");
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after 15 s (it should have refused to start):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_redis_without_output_is_refused_and_nothing_is_deleted() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    seed(&mut con);
    let port = redis.url().split(':').nth(2).and_then(|p| p.split('/').next()).unwrap().to_owned();
    let ways: [Vec<(&str, String)>; 3] = [
        vec![("REDIS_URL", redis.url())],
        vec![("REDIS_HOST", "127.0.0.1".into()), ("REDIS_PORT", port)],
        // An env file with every destination commented out, or set empty.
        vec![("REDIS_URL", redis.url()), ("API_KEY", String::new()), ("DATADOG_URL", " ".into())],
    ];
    for vars in ways {
        let (code, stdout, stderr) = run_to_exit(&vars);
        assert_eq!(code, Some(2), "{vars:?}: {stdout}{stderr}");
        assert_eq!(stdout, "", "{vars:?}");
        assert_eq!(stderr.lines().count(), 1, "{vars:?}: one line: {stderr}");
        assert!(stderr.starts_with("chouette: configuration error: store=redis://127.0.0.1:"), "{stderr}");
        assert!(
            stderr.ends_with(
                ": a Redis store and no output configured; a dry run would print and delete what the apps \
                 queued: set API_KEY (Datadog) or DATADOG_URL (a Datadog-compatible intake), or \
                 CHOUETTE_DRY_RUN=true to dry-run anyway\n"
            ),
            "{stderr}"
        );
        assert_eq!(queued(&mut con), [1, 1, 1, 1], "{vars:?}: nothing read, nothing deleted");
    }
    // `chouette status` still works with that configuration.
    let mut status = Command::new(agent_binary!());
    let out = status.arg("status").env_clear().env("REDIS_URL", redis.url()).output().expect("status");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dry_run_false_without_output_is_refused() {
    let state =
        std::env::temp_dir().join(format!("chouette-dry-false-{}-{}", std::process::id(), free_port()));
    let (code, stdout, stderr) = run_to_exit(&[
        ("CHOUETTE_DRY_RUN", "false".into()),
        ("CHOUETTE_STATE_DIR", state.display().to_string()),
    ]);
    assert_eq!((code, stdout.as_str()), (Some(2), ""));
    assert_eq!(
        stderr,
        "chouette: configuration error: CHOUETTE_DRY_RUN=false and no output configured: set API_KEY \
         (Datadog) or DATADOG_URL (a Datadog-compatible intake)\n"
    );
    assert!(!state.exists(), "the store was not even created");
}

#[test]
fn an_explicit_dry_run_on_a_redis_prints_and_empties_the_queues() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    seed(&mut con);
    let agent = Agent::start(
        agent_binary!(),
        &[
            ("REDIS_URL", redis.url()),
            ("CHOUETTE_DRY_RUN", "true".into()),
            ("RELEASE_INTERVAL", "1".into()),
            ("SEND_SELF_METRICS", "false".into()),
        ],
    );
    chouette_tests::wait_until("the dry run to empty the queues", Duration::from_secs(30), || {
        queued(&mut con) == [0, 0, 0, 0]
            && con.zcard::<_, u64>("chouette:metrics:wrapped.keys").unwrap() == 0
            && agent.output().contains("# dry run: POST https://http-intake.logs.datadoghq.com/v1/input")
    });
    let output = agent.output();
    assert!(output.contains("CHOUETTE_DRY_RUN=true: dry run on a Redis"), "{output}");
    assert!(output.lines().any(|l| l.starts_with("dry.check")), "{output}");
    assert!(agent.stop().success());
}

#[test]
fn the_embedded_store_on_a_fresh_machine_dry_runs() {
    let state =
        std::env::temp_dir().join(format!("chouette-dry-fresh-{}-{}", std::process::id(), free_port()));
    let agent = Agent::start(agent_binary!(), &[("CHOUETTE_STATE_DIR", state.display().to_string())]);
    agent.wait_ready();
    assert!(agent.output().contains("dry_run=true"), "{}", agent.output());
    assert!(agent.stop().success());
    let _ = std::fs::remove_dir_all(state);
}
