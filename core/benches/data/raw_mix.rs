// Included by core/benches/parse.rs and json-eval/src/inputs.rs: one record mix for both.

/// What the Python client writes, in roughly the proportions an IoT app produces them.
pub const RAW_MIX: &[&str] = &[
    r#"{"metric": "app.requests", "type": "count", "value": 1, "timestamp": 1795310771.038424, "tags": {"endpoint": "/api/v1/items", "status": "200"}}"#,
    r#"{"metric": "app.requests", "type": "count", "value": 1, "timestamp": 1795310771.139871, "tags": {"endpoint": "/api/v1/items", "status": "500"}}"#,
    r#"{"metric": "sensor.temperature", "type": "gauge", "value": 21.375, "timestamp": 1795310771.5, "tags": {"zone": "cpu"}}"#,
    r#"{"metric": "app.latency", "type": "histogram", "value": 0.01234, "timestamp": 1795310771.25, "tags": {"endpoint": "/health"}}"#,
    r#"{"metric": "app.bytes", "type": "rate", "value": 512, "timestamp": 1795310772, "tags": {}}"#,
    r#"{"metric": "app.users", "type": "set", "value": ["alice", "bob"], "timestamp": 1795310772.75, "tags": {"app": "web"}}"#,
    r#"{"metric": "queue.depth", "type": "gauge", "value": 3, "timestamp": 1795310773.001, "tags": {"queue": "default", "host": "pi-4"}}"#,
    r#"{"metric": "app.errors", "type": "count", "value": 2, "timestamp": 1795310773.5, "tags": {"kind": "timeout"}}"#,
];
