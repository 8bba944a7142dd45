//! The records both parsers are timed on (`benches/compare.rs`, `examples/instructions.rs`).

/// core/benches/parse.rs's mix: what the Python client writes, in roughly the proportions an IoT
/// app produces them (one set of two strings: three parses for serde-json-core).
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

/// Escapes both can decode (no surrogate pair): non-ASCII names and tags as `json.dumps` writes
/// them, and a quote.
pub const RAW_ESCAPED: &str = r#"{"metric": "temp\u00e9rature.salle", "type": "gauge", "value": 19.25, "timestamp": 1795310771.5, "tags": {"pi\u00e8ce": "cuisine \"2\"", "zone": "r\u00e9seau"}}"#;

/// core/benches/parse.rs's wrapped record (what `encode_wrapped` writes for it).
pub const WRAPPED: &str = r#"{"metric": "app.requests", "tags": ["endpoint:/api/v1/items", "env:prod"], "points": [[1795310770.0, 42]], "type": "count", "interval": 10}"#;

/// core/benches/parse.rs's log record.
pub const LOG: &str = r#"{"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": ["env:prod"], "level": "INFO", "message": {"msg": "hello %s"}, "service": "svc"}"#;
