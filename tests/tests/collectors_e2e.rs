//! Collectors with real servers: `dramatiq` against a real Redis, and the `chouette` binary
//! running the `host` and `tegrastats` collectors on a fixture tree and a fake tegrastats, with
//! the values read back from VictoriaMetrics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chouette_agent::collect::dramatiq::Dramatiq;
use chouette_agent::collect::Collector;
use chouette_agent::store::redis::TlsFiles;
use chouette_tests::agent_binary;
use chouette_tests::{RedisServer, VictoriaMetrics};
use redis::Commands;

/// The board captures, kept once, in `chouette-boards`.
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../boards/tests/data/");

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chouette-collectors-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn dramatiq_queue_sizes_with_scan_on_a_real_redis() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let _: () = con.hset_multiple("dramatiq:fake.msgs", &[("a", "1"), ("b", "2")]).expect("hset");
    let _: () = con.hset("dramatiq:pizza.DQ.msgs", "a", "1").expect("hset");
    // Many unrelated keys: SCAN pages through them (KEYS is never sent).
    for i in 0..2000 {
        let _: () = con.set(format!("other:{i}"), i).expect("set");
    }
    let mut dramatiq = Dramatiq::new(&redis.url()).expect("url");
    let mut got: Vec<(String, f64)> = dramatiq
        .collect(0.0)
        .expect("collect")
        .into_iter()
        .map(|p| {
            assert_eq!(p.name, "Chouette.dramatiq.queue_size");
            (format!("{}:{}", p.tags[0].0, p.tags[0].1), p.value)
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, [("queue:fake".to_owned(), 2.0), ("queue:pizza.DQ".to_owned(), 1.0)]);

    // Redis goes away: an error, then it reconnects when Redis is back.
    let port = redis.kill();
    assert!(dramatiq.collect(1.0).is_err());
    let redis = RedisServer::start_on(port);
    assert!(dramatiq.collect(2.0).expect("reconnected").is_empty());
    drop(redis);
}

/// The store's TLS files serve the collector too: a Redis that asks for client certificates,
/// with a CA of its own, answers it.
#[test]
fn dramatiq_reads_a_tls_redis_with_the_store_files() {
    let redis = RedisServer::start_tls(true);
    let tls = redis.tls.as_ref().unwrap();
    let _: () = redis.client().hset("dramatiq:mail.msgs", "a", "1").expect("hset");
    let files = TlsFiles {
        ca: Some(tls.ca.clone()),
        cert: Some(tls.client_cert.clone()),
        key: Some(tls.client_key.clone()),
    };
    let mut dramatiq = Dramatiq::with_tls(&redis.tls_url(), &files).expect("TLS files");
    let got = dramatiq.collect(0.0).expect("collect over TLS");
    assert_eq!((got.len(), got[0].value), (1, 1.0));
    assert_eq!(got[0].tags[0], ("queue".into(), "mail".into()));
    // Without them, the handshake is refused: an error, no points.
    let mut bare = Dramatiq::new(&redis.tls_url()).expect("url");
    assert!(bare.collect(0.0).is_err());
}

/// A fake `tegrastats` printing the original's test line every 100 ms.
fn fake_tegrastats(dir: &Path) -> PathBuf {
    let script = dir.join("tegrastats");
    let line = format!("{DATA}tegrastats_line.txt");
    std::fs::write(&script, format!("#!/bin/sh\nwhile true; do cat {line}; echo; sleep 0.1; done\n"))
        .expect("script");
    let _ = Command::new("chmod").arg("+x").arg(&script).status();
    script
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `{series labels} -> last value` of the export of `selector`.
fn last_values(vm: &VictoriaMetrics, selector: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in vm.export(selector).lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line).expect("export line");
        let mut labels: Vec<String> = row["metric"]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        labels.sort();
        let value =
            row["values"].as_array().and_then(|v| v.last()).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        out.push((labels.join(","), value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn host_and_tegrastats_values_reach_victoria_metrics() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let dir = scratch("e2e");
    let root = dir.join("root");
    chouette_agent::collect::host::fixture_root(&Path::new(DATA).join("linux"), &root).expect("fixture root");
    let tegrastats = fake_tegrastats(&dir);
    let log = std::fs::File::create(dir.join("agent.log")).expect("log");
    let child = Command::new(agent_binary!())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // No DogStatsD UDP socket (8125 by default), as the harness's agents.
        .env("DOGSTATSD_PORT", "0")
        .env("REDIS_URL", redis.url())
        .env("DATADOG_URL", vm.datadog_url())
        .env("API_KEY", "e2e")
        .env("GLOBAL_TAGS", r#"["env:e2e"]"#)
        .env("HOST", "e2e-host")
        .env("RELEASE_INTERVAL", "1")
        .env("CAPTURE_INTERVAL", "1")
        .env("COLLECTOR_PLUGINS", r#"["host","tegrastats"]"#)
        .env("HOST_COLLECTOR_METRICS", r#"["cpu","la","ram","network"]"#)
        .env("CHOUETTE_PROC_ROOT", &root)
        .env("TEGRASTATS_PATH", &tegrastats)
        .stdout(log)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start chouette");
    let agent = Agent(child);

    let mem = "Chouette.host.memory.available";
    let deadline = Instant::now() + Duration::from_secs(30);
    let (host, temps) = loop {
        let host = last_values(&vm, &format!("{{__name__=\"{mem}\"}}"));
        let temps = last_values(&vm, r#"{__name__="Chouette.tegrastats.temperature"}"#);
        if !host.is_empty() && temps.len() == 7 {
            break (host, temps);
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
            panic!(
                "no collected values in VictoriaMetrics within 30 s: {host:?} {temps:?}\nagent log:\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(host[0].1, 23157764.0 * 1024.0, "{host:?}");
    assert!(host[0].0.contains("env=e2e") && host[0].0.contains("host=e2e-host"), "{host:?}");
    let gpu = temps.iter().find(|(labels, _)| labels.contains("zone=GPU")).expect("GPU zone");
    assert_eq!(gpu.1, 51.5);
    assert!(!temps.iter().any(|(labels, _)| labels.contains("zone=PMIC")));
    let la = last_values(&vm, r#"{__name__="Chouette.host.la"}"#);
    assert_eq!(la.first().map(|(l, v)| (l.contains("period=1m"), *v)), Some((true, 1.46)));
    let ram = last_values(&vm, r#"{__name__="Chouette.tegrastats.ram.used"}"#);
    assert_eq!(ram.first().map(|(_, v)| *v), Some(6570377216.0));

    // SIGTERM: the agent stops and its tegrastats child is reaped with it.
    let pid = agent.0.id();
    // Children of every thread of the agent (the supervisor thread spawned tegrastats).
    let children: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
        .flat_map(|t| {
            let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            text.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(children.len(), 1, "one long-lived tegrastats child: {children:?}");
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
    let mut agent = agent;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = agent.0.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the agent did not stop within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The child was killed and reaped by the agent, not left running or as a zombie.
    assert!(!Path::new(&format!("/proc/{}", children[0])).exists(), "tegrastats outlived the agent");
    let _ = std::fs::remove_dir_all(dir);
}
