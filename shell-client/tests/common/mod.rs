//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use redis::Commands;

use chouette_core::keys;

pub const METRICS_KEYS: &str = keys::RAW_METRICS.keys;
pub const METRICS_VALUES: &str = keys::RAW_METRICS.values;
pub const LOGS_KEYS: &str = keys::LOGS.keys;
pub const LOGS_VALUES: &str = keys::LOGS.values;

/// `(uuid, score, json)` of every record in a queue, sorted by JSON text.
pub fn records(con: &mut redis::Connection, keys: &str, values: &str) -> Vec<(String, f64, String)> {
    let members: Vec<(String, f64)> = con.zrange_withscores(keys, 0, -1).expect("zrange");
    let mut out: Vec<(String, f64, String)> = members
        .into_iter()
        .map(|(id, score)| {
            let json: String = con.hget(values, &id).expect("hget");
            (id, score, json)
        })
        .collect();
    out.sort_by(|a, b| a.2.cmp(&b.2));
    out
}

pub fn metrics(con: &mut redis::Connection) -> Vec<(String, f64, String)> {
    records(con, METRICS_KEYS, METRICS_VALUES)
}

/// The JSON texts of the app's metric records (meta metrics left out).
pub fn app_jsons(con: &mut redis::Connection) -> Vec<String> {
    metrics(con).into_iter().map(|r| r.2).filter(|j| !j.contains("\"chouette.client.")).collect()
}

pub fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}
