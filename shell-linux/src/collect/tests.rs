//! Runner tests: a hung, a failing and a good collector side by side; and the helpers the
//! plugins' parity tests share.

use super::*;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::TlsFiles;
use crate::store::{Queue, Store};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// `(name, sorted "k:v" tags, value)` of each point, for comparing with an expected list.
pub(crate) fn flat(points: &[Point]) -> Vec<(String, Vec<String>, f64)> {
    points
        .iter()
        .map(|p| {
            let mut tags: Vec<String> = p.tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            tags.sort();
            (p.name.clone(), tags, p.value)
        })
        .collect()
}

/// The same triples from one of the original's generated `*.expected.json` lists
/// (`[{"metric", "tags", "value", ...}]`).
pub(crate) fn expected(list: &serde_json::Value) -> Vec<(String, Vec<String>, f64)> {
    list.as_array()
        .expect("list")
        .iter()
        .map(|m| {
            let tags =
                m["tags"].as_array().expect("tags").iter().map(|t| t.as_str().unwrap_or("").to_owned());
            (
                m["metric"].as_str().unwrap_or("").to_owned(),
                tags.collect(),
                m["value"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect()
}

struct Good;
impl Collector for Good {
    fn name(&self) -> &str {
        "good"
    }
    fn collect(&mut self, _now: f64) -> Result<Vec<Point>, CollectError> {
        Ok(vec![
            Point::new("Chouette.test.value", 0.0).tag("z", "1").tag("a", "2"),
            Point::new("Chouette.test.other", 2.5),
        ])
    }
}

struct Failing;
impl Collector for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    fn collect(&mut self, _now: f64) -> Result<Vec<Point>, CollectError> {
        Err(CollectError::Unavailable("broken on purpose".into()))
    }
}

/// Hangs on its first capture (for `hang`), then answers.
struct Hung {
    calls: Arc<AtomicUsize>,
    hang: Duration,
}
impl Collector for Hung {
    fn name(&self) -> &str {
        "hung"
    }
    fn timeout(&self) -> Duration {
        Duration::from_millis(200)
    }
    fn collect(&mut self, _now: f64) -> Result<Vec<Point>, CollectError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(self.hang);
        }
        Ok(vec![Point::new("Chouette.test.hung", 1.0)])
    }
}

fn store(tag: &str) -> (EmbeddedStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("chouette-runner-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    (EmbeddedStore::open(&dir.join("store.redb")).expect("store"), dir)
}

fn values(store: &mut EmbeddedStore) -> Vec<String> {
    let mut out: Vec<String> = store
        .read(Queue::WrappedMetrics, f64::MAX, 1000)
        .expect("read")
        .into_iter()
        .filter_map(|r| r.value.map(|v| String::from_utf8_lossy(&v).into_owned()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_hung_and_a_failing_collector_do_not_stop_the_good_one() {
    let calls = Arc::new(AtomicUsize::new(0));
    let hung = Hung { calls: Arc::clone(&calls), hang: Duration::from_millis(1500) };
    let collectors: Vec<Box<dyn Collector>> = vec![Box::new(hung), Box::new(Failing), Box::new(Good)];
    let mut runner = Runner::new(collectors, Duration::from_secs(5));
    assert_eq!(runner.names(), ["hung", "failing", "good"]);
    let (mut store, dir) = store("hung");

    let start = Instant::now();
    let outboxes = [crate::store::Queue::WrappedMetrics];
    let stored = runner
        .tick(&mut crate::source::Sink::new(&mut store, &outboxes, true), 1_700_000_000.0)
        .expect("tick");
    assert!(start.elapsed() < Duration::from_millis(1000), "the tick waited {:?}", start.elapsed());
    // good's 2 points + the errors self-metric for hung and failing.
    assert_eq!(stored, 4);
    let stored = values(&mut store);
    assert_eq!(
        stored,
        [
            r#"{"metric": "Chouette.test.other", "tags": [], "points": [[1700000000.0, 2.5]], "type": "gauge"}"#,
            r#"{"metric": "Chouette.test.value", "tags": ["a:2", "z:1"], "points": [[1700000000.0, 0]], "type": "gauge"}"#,
            r#"{"metric": "chouette.collector.errors", "tags": ["plugin:failing"], "points": [[1700000000.0, 1]], "type": "gauge"}"#,
            r#"{"metric": "chouette.collector.errors", "tags": ["plugin:hung"], "points": [[1700000000.0, 1]], "type": "gauge"}"#,
        ]
    );

    // Still hung at the next tick: skipped (not restarted), counted again; good goes on.
    let capture = runner.capture(1_700_000_001.0);
    assert_eq!(capture.points.len(), 2);
    assert!(
        capture.failures.iter().any(|(p, why)| p == "hung" && why.contains("still busy")),
        "{:?}",
        capture.failures
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a hung collector is not called again");

    // Once it answers, it is called again and its points come back.
    std::thread::sleep(Duration::from_millis(1600));
    let capture = runner.capture(1_700_000_002.0);
    assert!(capture.points.iter().any(|p| p.name == "Chouette.test.hung"), "{:?}", capture);
    assert_eq!(runner.errors().get("hung"), Some(&2));
    assert_eq!(runner.errors().get("failing"), Some(&3));
    drop(runner);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn zero_values_are_sent_and_tags_sorted_as_strings() {
    let mut ids = crate::pipeline::id_generator();
    let points = [Point::new("m", 0.0).tag("a.b", "1").tag("a", "2")];
    let records = encode_points(&points, 10.0, &mut ids);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].score, 10.0);
    assert_eq!(records[0].id.len(), 36);
    // "a.b:1" < "a:2" as strings ('.' < ':'), as Python's sorted() of "k:v".
    assert_eq!(
        String::from_utf8_lossy(&records[0].value),
        r#"{"metric": "m", "tags": ["a.b:1", "a:2"], "points": [[10.0, 0]], "type": "gauge"}"#
    );
    assert!(encode_points(&[Point::new("nan", f64::NAN)], 10.0, &mut ids).is_empty());
}

/// Each plugin's settings: the table's defaults when nothing is set, the values as set, and
/// errors naming the variable, the value and what is expected.
#[test]
fn plugin_settings_come_from_their_table_entries() {
    use std::path::PathBuf;
    let set = |pairs: &[(&str, &str)]| -> PluginVars {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let none = PluginVars::new();
    let h = host::Settings::from_vars(&none).unwrap();
    assert_eq!(
        (h.root, h.groups),
        (PathBuf::from("/"), vec!["cpu".into(), "fs".into(), "la".into(), "ram".into()])
    );
    let t = tegrastats::Settings::from_vars(&none).unwrap();
    assert_eq!(
        (t.path.as_str(), t.args, t.groups),
        ("/usr/bin/tegrastats", vec!["--interval".into(), "1000".into()], vec!["ram".into(), "temp".into()])
    );
    assert_eq!(docker::Settings::from_vars(&none).unwrap().socket, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(rpi::Settings::from_vars(&none).unwrap().vcgencmd, PathBuf::from("/usr/bin/vcgencmd"));
    let k8s_vars =
        set(&[("K8S_STATS_SERVICE_IP", "fd00::1"), ("K8S_CERT_PATH", "/c"), ("K8S_KEY_PATH", "/k")]);
    let k = k8s::Settings::from_vars(&k8s_vars).unwrap();
    assert_eq!(k.url, "https://[fd00::1]:10250/stats/summary");
    assert_eq!(
        k.metrics,
        k8s::K8sMetrics { node: vec!["inodes".into()], pods: vec!["memory".into(), "cpu".into()] }
    );
    assert_eq!(k.ca, None);
    // The store's Redis, with its TLS files; a broker of its own, without them.
    let tls = TlsFiles { ca: Some("/ca.pem".into()), ..TlsFiles::default() };
    let on_store = dramatiq::Settings::from_vars(&none, Some(("rediss://store:6379/0", &tls))).unwrap();
    assert_eq!((on_store.url.as_str(), &on_store.tls), ("rediss://store:6379/0", &tls));
    let own = set(&[("DRAMATIQ_REDIS_URL", "rediss://broker/1")]);
    let on_own = dramatiq::Settings::from_vars(&own, Some(("rediss://store/0", &tls))).unwrap();
    assert_eq!((on_own.url.as_str(), &on_own.tls), ("rediss://broker/1", &TlsFiles::default()));

    // Set values, any case where the table says so.
    let h = host::Settings::from_vars(&set(&[
        ("HOST_COLLECTOR_METRICS", r#"["Network"]"#),
        ("CHOUETTE_PROC_ROOT", "/r"),
    ]))
    .unwrap();
    assert_eq!((h.root, h.groups), (PathBuf::from("/r"), vec!["network".into()]));

    // Errors: variable, value, expected.
    let err = |e: PluginConfigError| e.to_string();
    assert_eq!(
        err(host::Settings::from_vars(&set(&[("HOST_COLLECTOR_METRICS", r#"["disk"]"#)])).unwrap_err()),
        r#"HOST_COLLECTOR_METRICS="[\"disk\"]": a JSON list of strings among cpu, fs, la, ram, network (any case) (default ["cpu","fs","la","ram"]) (unknown: "disk")"#
    );
    assert_eq!(
        err(tegrastats::Settings::from_vars(&set(&[("TEGRASTATS_METRICS", r#"["Ram"]"#)])).unwrap_err()),
        r#"TEGRASTATS_METRICS="[\"Ram\"]": a JSON list of strings among ram, temp, nvidia, datadog (case-sensitive) (default ["ram","temp"]) (unknown: "Ram")"#
    );
    assert_eq!(
        err(k8s::Settings::from_vars(&set(&[("K8S_CERT_PATH", "/c")])).unwrap_err()),
        r#"K8S_STATS_SERVICE_IP="": required by the k8s plugin (k8s: the kubelet's IP address)"#
    );
    let mut bad_port = k8s_vars.clone();
    bad_port.insert("K8S_STATS_SERVICE_PORT".into(), "0".into());
    assert_eq!(
        err(k8s::Settings::from_vars(&bad_port).unwrap_err()),
        r#"K8S_STATS_SERVICE_PORT="0": a TCP port, 1 to 65535 (default 10250)"#
    );
    assert!(err(dramatiq::Settings::from_vars(&none, None).unwrap_err())
        .starts_with("DRAMATIQ_REDIS_URL=\"\": dramatiq needs a Redis"));

    // RPI_I2C_SENSORS: none by default; a bad entry is named.
    assert!(rpi::Settings::from_vars(&none).unwrap().i2c_sensors.is_empty());
    let sensors = set(&[("RPI_I2C_SENSORS", r#"["tmp102@/dev/i2c-1:0x48", "bme280@/dev/i2c-1:0x76"]"#)]);
    assert_eq!(rpi::Settings::from_vars(&sensors).unwrap().i2c_sensors.len(), 2);
    assert_eq!(
        err(rpi::Settings::from_vars(&set(&[("RPI_I2C_SENSORS", r#"["tmp102@/dev/i2c-1:48"]"#)]))
            .unwrap_err()),
        r#"RPI_I2C_SENSORS="[\"tmp102@/dev/i2c-1:48\"]": a JSON list of MODEL@DEVICE:ADDRESS entries (default []) (entry "tmp102@/dev/i2c-1:48": address "48": write it in hexadecimal as i2cdetect shows it, e.g. 0x48)"#
    );
}

/// An I2C sensor on a bus device that does not exist: the rpi collector counts it (its own
/// `Chouette.rpi.i2c.errors`, not a failed capture) and the other collectors' points still come.
#[test]
fn an_absent_i2c_bus_is_counted_and_the_other_collectors_go_on() {
    let specs = rpi::i2c::parse_sensors(&["tmp102@/dev/i2c-nonexistent-99:0x48".to_owned()]).expect("entry");
    let rpi =
        rpi::Rpi::new("/nonexistent-root".into(), "/nonexistent/vcgencmd".into()).with_i2c_sensors(specs);
    let collectors: Vec<Box<dyn Collector>> = vec![Box::new(rpi), Box::new(Good)];
    let mut runner = Runner::new(collectors, Duration::from_secs(5));
    let (mut store, dir) = store("i2c");
    for (second, count) in [(0, 1), (1, 2)] {
        let outboxes = [crate::store::Queue::WrappedMetrics];
        let now = 1_700_000_000.0 + f64::from(second);
        runner.tick(&mut crate::source::Sink::new(&mut store, &outboxes, true), now).expect("tick");
        let stored = values(&mut store);
        let at = |metric: &str, tags: &str, value: &str| {
            format!(
                r#"{{"metric": "{metric}", "tags": [{tags}], "points": [[{now:.1}, {value}]], "type": "gauge"}}"#
            )
        };
        for expected in [
            at("Chouette.test.other", "", "2.5"),
            at(
                "Chouette.rpi.i2c.errors",
                r#""address:0x48", "bus:i2c-nonexistent-99", "model:tmp102", "reason:open""#,
                &count.to_string(),
            ),
        ] {
            assert!(stored.contains(&expected), "{expected} not in {stored:#?}");
        }
        // Not a failed capture: no chouette.collector.errors.
        assert!(runner.errors().is_empty(), "{:?}", runner.errors());
    }
    drop(runner);
    let _ = std::fs::remove_dir_all(dir);
}
