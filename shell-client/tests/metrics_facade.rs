//! The `metrics` facade through [`ChouetteRecorder`] into a real Redis.

mod common;

use std::time::Duration;

use chouette_client::{ChouetteRecorder, Client, ClientConfig};
use chouette_tests::RedisServer;
use common::*;

#[test]
fn counters_gauges_and_histograms_land_in_redis() {
    let redis = RedisServer::start();
    let client = Client::new(ClientConfig::new(redis.url())).expect("client");
    ChouetteRecorder::new(client.clone()).install().expect("install");

    metrics::counter!("jobs.done", "queue" => "q1").increment(3);
    metrics::counter!("jobs.done", "queue" => "q1").increment(2);
    let total = metrics::counter!("bytes.total");
    total.absolute(100);
    total.absolute(150);
    let g = metrics::gauge!("queue.depth");
    g.set(10.0);
    g.increment(2.5);
    g.decrement(1.0);
    metrics::histogram!("latency", "ep" => "a").record(0.25);
    client.shutdown(Duration::from_secs(5)).expect("flushed");

    let mut con = redis.client();
    let got: Vec<(String, String, serde_json::Value, serde_json::Value)> = app_jsons(&mut con)
        .iter()
        .map(|j| {
            let v = json(j);
            (
                v["metric"].as_str().unwrap().to_owned(),
                v["type"].as_str().unwrap().to_owned(),
                v["value"].clone(),
                v["tags"].clone(),
            )
        })
        .collect();
    let find = |name: &str| -> Vec<(String, serde_json::Value, serde_json::Value)> {
        let mut v: Vec<_> =
            got.iter().filter(|g| g.0 == name).map(|g| (g.1.clone(), g.2.clone(), g.3.clone())).collect();
        v.sort_by_key(|x| x.1.to_string());
        v
    };
    let q1 = serde_json::json!({"queue": "q1"});
    let none = serde_json::json!({});
    assert_eq!(
        find("jobs.done"),
        vec![("count".into(), 2.into(), q1.clone()), ("count".into(), 3.into(), q1)]
    );
    assert_eq!(
        find("bytes.total"),
        vec![("count".into(), 100.into(), none.clone()), ("count".into(), 50.into(), none.clone())]
    );
    assert_eq!(
        find("queue.depth"),
        vec![
            ("gauge".into(), 10.0.into(), none.clone()),
            ("gauge".into(), 11.5.into(), none.clone()),
            ("gauge".into(), 12.5.into(), none)
        ]
    );
    assert_eq!(find("latency"), vec![("histogram".into(), 0.25.into(), serde_json::json!({"ep": "a"}))]);
}
