//! The OpenTSDB / Apptuit output (`OPENTSDB_URL`): wrapped metrics to `POST {url}/api/put?details`.
//!
//! - Body: a JSON array of `{"metric", "timestamp", "value", "tags"}` objects
//!   (`chouette_core::wire::opentsdb`), gzip (default) or deflate (`OPENTSDB_COMPRESSION`, as
//!   apptuit-py sends), `Authorization: Bearer <OPENTSDB_TOKEN>` when set (Apptuit).
//! - Names and tag keys rewritten by `OPENTSDB_SANITIZE` (none, apptuit, prometheus).
//! - A point without any tag (OpenTSDB requires one; `host` and `GLOBAL_TAGS` count) is
//!   dead-lettered at once (`no_tags`) rather than refused by the server.
//! - Answers: 200/204 delivered. **400 with `?details`**: OpenTSDB stores each point on its own
//!   and lists the refused ones (`errors[].datapoint`); exactly the records holding those points
//!   are dead-lettered (`opentsdb_refused`), the rest is delivered and never sent again. When
//!   nothing was stored, or a refused point matches no record, the shared bisection applies.

use chouette_core::wire::opentsdb::{encode_points, Sanitize};
use chouette_core::wire::write::Writer;

use super::output::{encode_wrapped_entry, Encoding, Entries, Framing, Limits, Output};
use super::{Destination, DispatchConfig, Verdict};
use crate::collect::json::{Json, JsonDoc};
use crate::config::{Compression, OpentsdbConfig, SanitizeMode};
use crate::limits::DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES;

/// Wrapped metrics to OpenTSDB or Apptuit.
pub struct OpentsdbOutput {
    url: String,
    token: Option<String>,
    sanitize: Sanitize,
    encoding: Encoding,
    global_tags: Vec<String>,
    host: Option<String>,
    max_points: u64,
    scratch: Vec<u8>,
}

impl OpentsdbOutput {
    /// The output for `tsdb`, with the global tags, host and bulk size of `dispatch`.
    pub fn new(tsdb: &OpentsdbConfig, dispatch: &DispatchConfig) -> Self {
        OpentsdbOutput {
            url: format!("{}/api/put?details", tsdb.url),
            token: tsdb.token.as_ref().map(|t| t.expose().to_owned()),
            sanitize: match tsdb.sanitize {
                SanitizeMode::None => Sanitize::None,
                SanitizeMode::Apptuit => Sanitize::Apptuit,
                SanitizeMode::Prometheus => Sanitize::Prometheus,
            },
            encoding: match tsdb.compression {
                Compression::Gzip => Encoding::Gzip,
                Compression::Deflate => Encoding::Deflate,
            },
            global_tags: dispatch.global_tags.clone(),
            host: dispatch.host.clone(),
            max_points: dispatch.max_points.max(1) as u64,
            scratch: Vec::new(),
        }
    }
}

impl Output for OpentsdbOutput {
    fn sorts_entries(&self) -> bool {
        true
    }

    fn destination(&self) -> Destination {
        Destination::Opentsdb
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn limits(&self) -> Limits {
        Limits {
            max_units: self.max_points,
            max_bytes: DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES,
            max_compressed: DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES,
        }
    }

    fn framing(&self) -> Framing {
        Framing { open: b"[", separator: b", ", close: b"]" }
    }

    fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("Content-Type", "application/json".to_owned())];
        if let Some(token) = &self.token {
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        headers
    }

    fn encode(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<u64, String> {
        let host = self.host.as_deref();
        let sanitize = self.sanitize;
        encode_wrapped_entry(value, &mut self.scratch, &self.global_tags, out, |rec, tags, buf| {
            encode_points(rec, tags, host, sanitize, buf)
        })
    }

    fn read_refusal(
        &self,
        status: u16,
        body: &str,
        entries: &Entries<'_>,
        group: &[usize],
    ) -> Option<Verdict> {
        if status != 400 {
            return None;
        }
        let doc = Json::parse(body.as_bytes()).ok()?;
        let success = doc.get("success")?.as_f64()?;
        let errors = doc.get("errors")?.elements()?;
        if success < 1.0 || errors.is_empty() {
            return None; // nothing stored: the shared rule (bisection, or a refusing endpoint)
        }
        let mut dead = Vec::new();
        for error in errors {
            let point = error.get("datapoint")?;
            let metric = point.get("metric")?.as_str()?.into_owned();
            let timestamp = point.get("timestamp")?.as_f64()?;
            let prefix = object_prefix(&metric, timestamp);
            // The point's tags narrow it down when several records hold the same metric and time.
            let tags: Vec<String> = point
                .get("tags")
                .and_then(|t| t.members())
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, v)| Some(json_pair(k, &v.as_str()?)))
                .collect();
            let holds = |i: usize| {
                let entry = entries.get(i);
                contains(entry, prefix.as_bytes()) && tags.iter().all(|t| contains(entry, t.as_bytes()))
            };
            let owner = group
                .iter()
                .copied()
                .find(|&i| holds(i) && !dead.contains(&i))
                .or_else(|| group.iter().copied().find(|&i| holds(i)))?;
            if !dead.contains(&owner) {
                dead.push(owner);
            }
        }
        Some(Verdict::Partial { dead, reason: "opentsdb_refused".to_owned() })
    }
}

/// How an encoded point starts: `{"metric": "<name>", "timestamp": <ts>, `.
fn object_prefix(metric: &str, timestamp: f64) -> String {
    let write = |buf: &mut [u8]| {
        let mut w = Writer::new(buf);
        w.str("{\"metric\": ");
        w.json_str(metric);
        w.str(", \"timestamp\": ");
        w.str(&format!("{}", timestamp as i64));
        w.str(", ");
        w.len()
    };
    let mut out = vec![0; write(&mut [])];
    write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `"key": "value"` as the encoder writes a tag.
fn json_pair(key: &str, value: &str) -> String {
    let write = |buf: &mut [u8]| {
        let mut w = Writer::new(buf);
        w.json_str(key);
        w.str(": ");
        w.json_str(value);
        w.len()
    };
    let mut out = vec![0; write(&mut [])];
    write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_the_encoder() {
        assert_eq!(
            object_prefix("req.é", 1795310770.0),
            "{\"metric\": \"req.\\u00e9\", \"timestamp\": 1795310770, "
        );
        assert!(contains(
            b"[{\"metric\": \"a\", \"timestamp\": 5, \"value\": 1}",
            object_prefix("a", 5.0).as_bytes()
        ));
        assert!(!contains(b"{\"metric\": \"a\", \"timestamp\": 50, ", object_prefix("a", 5.0).as_bytes()));
    }
}
