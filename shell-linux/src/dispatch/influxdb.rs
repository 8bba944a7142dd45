//! The InfluxDB output (`INFLUXDB_URL`): wrapped metrics as line protocol, gzip bodies.
//!
//! - v1: `POST {url}/write?db=<INFLUXDB_DATABASE>&precision=s`, basic auth when
//!   `INFLUXDB_USERNAME` is set. v2: `POST {url}/api/v2/write?org=&bucket=&precision=s` with
//!   `Authorization: Token <INFLUXDB_TOKEN>`.
//! - One line per point (`chouette_core::wire::line`): measurement = metric name, one float field
//!   `value`, tags = the point's + `GLOBAL_TAGS` + `host`, timestamp in seconds.
//! - Answers: 204 delivered. **400 `partial write`**: InfluxDB stored the good lines; the error
//!   quotes each line it could not parse (`unable to parse '<line>': <why>`) or names the
//!   measurement of a field type conflict, so exactly those records are dead-lettered
//!   (`influxdb_unparseable`, `influxdb_type_conflict`, `influxdb_refused`) and the rest is
//!   delivered, never sent again. A refusal that names nothing the agent can match falls back to
//!   the shared bisection (re-sending a stored line is harmless: InfluxDB overwrites a point with
//!   the same series and time). 401/403 (credentials), 404 (`database not found`) are endpoint
//!   problems: kept, one ERROR, backoff. 413 splits. 429/503 honour `Retry-After`.

use chouette_core::wire::line::encode_lines;

use super::output::{encode_wrapped_entry, Encoding, Entries, Framing, Limits, Output};
use super::{Destination, DispatchConfig, Verdict};
use crate::collect::json::{Json, JsonDoc};
use crate::config::{InfluxApi, InfluxConfig};
use crate::limits::DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES;

/// Wrapped metrics to InfluxDB.
pub struct InfluxOutput {
    url: String,
    authorization: Option<String>,
    global_tags: Vec<String>,
    host: Option<String>,
    max_points: u64,
    scratch: Vec<u8>,
}

impl InfluxOutput {
    /// The output for `influx`, with the global tags, host and bulk size of `dispatch`.
    pub fn new(influx: &InfluxConfig, dispatch: &DispatchConfig) -> Self {
        let (url, authorization) = match &influx.api {
            InfluxApi::V1 { database, username, password } => (
                format!("{}/write?db={}&precision=s", influx.url, query_escape(database)),
                username.as_ref().map(|user| {
                    let password = password.as_ref().map_or("", |p| p.expose());
                    format!("Basic {}", crate::store::encode_base64(format!("{user}:{password}").as_bytes()))
                }),
            ),
            InfluxApi::V2 { org, bucket, token } => (
                format!(
                    "{}/api/v2/write?org={}&bucket={}&precision=s",
                    influx.url,
                    query_escape(org),
                    query_escape(bucket)
                ),
                token.as_ref().map(|t| format!("Token {}", t.expose())),
            ),
        };
        InfluxOutput {
            url,
            authorization,
            global_tags: dispatch.global_tags.clone(),
            host: dispatch.host.clone(),
            max_points: dispatch.max_points.max(1) as u64,
            scratch: Vec::new(),
        }
    }
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Output for InfluxOutput {
    fn sorts_entries(&self) -> bool {
        true
    }

    fn destination(&self) -> Destination {
        Destination::Influxdb
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn limits(&self) -> Limits {
        // InfluxDB 1.x takes bodies up to 25 MB (`max-body-size`); 5 MB keeps a retry small.
        Limits {
            max_units: self.max_points,
            max_bytes: DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES,
            max_compressed: DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES,
        }
    }

    fn framing(&self) -> Framing {
        // Every line ends with `\n`: nothing between or around them.
        Framing { open: b"", separator: b"", close: b"" }
    }

    fn encoding(&self) -> Encoding {
        Encoding::Gzip
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("Content-Type", "text/plain; charset=utf-8".to_owned())];
        if let Some(auth) = &self.authorization {
            headers.push(("Authorization", auth.clone()));
        }
        headers
    }

    fn encode(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<u64, String> {
        let host = self.host.as_deref();
        encode_wrapped_entry(value, &mut self.scratch, &self.global_tags, out, |rec, tags, buf| {
            encode_lines(rec, tags, host, buf)
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
        let error = doc.get("error")?.as_str()?.into_owned();
        if !error.starts_with("partial write") {
            return None; // nothing was stored: the shared rule applies
        }
        let mut dead = Vec::new();
        let mut reason = None;
        let mut named = 0;
        for line in quoted_lines(&error) {
            named += 1;
            let owner = group
                .iter()
                .copied()
                .find(|&i| entries.get(i).split(|&b| b == b'\n').any(|l| l == line.as_bytes()));
            match owner {
                Some(i) => {
                    if !dead.contains(&i) {
                        dead.push(i);
                    }
                    reason.get_or_insert("influxdb_unparseable");
                }
                None => return None,
            }
        }
        if let Some(measurement) = conflict_measurement(&error) {
            named += 1;
            let escaped = escape_measurement(&measurement);
            let before = dead.len();
            for &i in group {
                let hit = entries.get(i).split(|&b| b == b'\n').any(|l| {
                    l.strip_prefix(escaped.as_bytes())
                        .is_some_and(|rest| rest.first().is_some_and(|&b| b == b',' || b == b' '))
                });
                if hit && !dead.contains(&i) {
                    dead.push(i);
                }
            }
            if dead.len() == before {
                return None;
            }
            reason.get_or_insert("influxdb_type_conflict");
        }
        if named == 0 {
            // A partial write that names no line (points beyond the retention policy...): one
            // record alone is dead; a group is split to find it (resending is harmless).
            return (group.len() == 1)
                .then(|| Verdict::Partial { dead: group.to_vec(), reason: "influxdb_refused".to_owned() });
        }
        Some(Verdict::Partial { dead, reason: reason.unwrap_or("influxdb_refused").to_owned() })
    }
}

/// The lines an InfluxDB 1.x error quotes: `unable to parse '<line>': <why>`.
fn quoted_lines(error: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = error;
    while let Some(at) = rest.find("unable to parse '") {
        rest = &rest[at + "unable to parse '".len()..];
        // The line ends at the last `': ` before the next "unable to parse" (a line may hold `'`).
        let next = rest.find("unable to parse '").unwrap_or(rest.len());
        let Some(end) = rest[..next].rfind("': ") else { break };
        out.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    out
}

/// The measurement of `field type conflict: input field "value" on measurement "<m>" is type ...`.
fn conflict_measurement(error: &str) -> Option<String> {
    let at = error.find("field type conflict")?;
    let rest = &error[at..];
    let start = rest.find("on measurement \"")? + "on measurement \"".len();
    let end = rest[start..].find("\" is type")?;
    Some(rest[start..start + end].to_owned())
}

/// A measurement as the line protocol writes it (`,` and space escaped).
fn escape_measurement(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == ',' || c == ' ' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_lines_are_found_even_with_quotes_inside() {
        let error = "partial write: unable to parse 'a,b=1 value=x 1': invalid number\nunable to parse 'it's value=1 2': bad timestamp dropped=2";
        assert_eq!(quoted_lines(error), ["a,b=1 value=x 1", "it's value=1 2"]);
        assert!(quoted_lines("partial write: points beyond retention policy dropped=1").is_empty());
    }

    #[test]
    fn conflicts_name_their_measurement() {
        let error = "partial write: field type conflict: input field \"value\" on measurement \"req count\" is type float, already exists as type integer dropped=1";
        assert_eq!(conflict_measurement(error).as_deref(), Some("req count"));
        assert_eq!(escape_measurement("req count,x"), "req\\ count\\,x");
    }

    #[test]
    fn v1_and_v2_urls_and_credentials() {
        use crate::config::Secret;
        let dispatch = DispatchConfig::for_base_url("", None);
        let v1 = InfluxConfig {
            url: "http://i:8086".into(),
            api: InfluxApi::V1 {
                database: "my db".into(),
                username: Some("u".into()),
                password: Some(Secret::new("p:w".into())),
            },
        };
        let out = InfluxOutput::new(&v1, &dispatch);
        assert_eq!(out.url(), "http://i:8086/write?db=my%20db&precision=s");
        // base64("u:p:w")
        assert!(out.headers().contains(&("Authorization", "Basic dTpwOnc=".to_owned())));
        let v2 = InfluxConfig {
            url: "http://i:8086".into(),
            api: InfluxApi::V2 {
                org: "o&x".into(),
                bucket: "b".into(),
                token: Some(Secret::new("t0k".into())),
            },
        };
        let out = InfluxOutput::new(&v2, &dispatch);
        assert_eq!(out.url(), "http://i:8086/api/v2/write?org=o%26x&bucket=b&precision=s");
        assert!(out.headers().contains(&("Authorization", "Token t0k".to_owned())));
        assert_eq!(out.encoding(), Encoding::Gzip);
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("my db&x=1"), "my%20db%26x%3D1");
    }
}
