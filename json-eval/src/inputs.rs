//! The records both parsers are timed on (`benches/compare.rs`, `examples/instructions.rs`).

// core/benches/parse.rs's mix, the same file (one set of two strings: three parses for
// serde-json-core).
include!("../../core/benches/data/raw_mix.rs");

/// Escapes both can decode (no surrogate pair): non-ASCII names and tags as `json.dumps` writes
/// them, and a quote.
pub const RAW_ESCAPED: &str = r#"{"metric": "temp\u00e9rature.salle", "type": "gauge", "value": 19.25, "timestamp": 1795310771.5, "tags": {"pi\u00e8ce": "cuisine \"2\"", "zone": "r\u00e9seau"}}"#;

/// core/benches/parse.rs's wrapped record (what `encode_wrapped` writes for it).
pub const WRAPPED: &str = r#"{"metric": "app.requests", "tags": ["endpoint:/api/v1/items", "env:prod"], "points": [[1795310770.0, 42]], "type": "count", "interval": 10}"#;

/// core/benches/parse.rs's log record.
pub const LOG: &str = r#"{"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": ["env:prod"], "level": "INFO", "message": {"msg": "hello %s"}, "service": "svc"}"#;
