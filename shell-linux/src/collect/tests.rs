//! Runner tests: a hung, a failing and a good collector side by side; and the helpers the
//! plugins' parity tests share.

use super::*;
use crate::store::embedded::EmbeddedStore;
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
    let stored = runner.tick(&mut store, 1_700_000_000.0, true).expect("tick");
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
