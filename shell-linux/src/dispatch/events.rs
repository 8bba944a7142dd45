//! DogStatsD events and service checks to Datadog: the outboxes `chouette:events`
//! ([`Queue::Events`](crate::store::Queue::Events)) and `chouette:service_checks`
//! ([`Queue::ServiceChecks`](crate::store::Queue::ServiceChecks)).
//!
//! The DogStatsD listener queues each `_e{..}` and `_sc|..` line as one record holding the JSON
//! body Datadog expects (compact, absent fields omitted):
//!
//! - event: `{"title":"…","text":"…","date_happened":1700000000,"host":"…","aggregation_key":"…",
//!   "priority":"normal|low","source_type_name":"…","alert_type":"error|warning|info|success",
//!   "tags":["a:b",…]}` (`title` and `text` required);
//! - service check: `{"check":"…","status":0,"timestamp":1700000000,"host_name":"…",
//!   "message":"…","tags":["a:b",…]}` (`check` and `status` 0 to 3 required).
//!
//! Each output checks a record's shape (a record that is not such an object is dead-lettered
//! at once with the reason: `not_json`, `not_an_object`, `missing_field:title`,
//! `wrong_field_type:tags`, `bad_value:priority`, `duplicate_field:host`), then writes it back
//! with its members in their order and as written, `HOST` set as `host` / `host_name` when the
//! record has none (or an empty one), and `GLOBAL_TAGS` appended to `tags`. Members it does not
//! know are passed through (the v1 API has more: `device_name`, `related_event_id`).
//!
//! - **Events** go one per request to `{DATADOG_URL}/v1/events` (the v1 events API takes one
//!   event per POST), **uncompressed**: the Agent never posts there (it batches events to
//!   `/intake/`), and nothing we could check says this public API route accepts a compressed
//!   body, so the body is plain JSON, as the API clients send it.
//! - **Service checks** go as a JSON array to `{DATADOG_URL}/v1/check_run`, zlib-compressed
//!   (`Content-Encoding: deflate`), as the Agent's serializer sends them
//!   (`SendServiceChecks` → `SubmitV1CheckRuns` with its compression headers).
//!
//! Both carry the API key in `DD-API-KEY` only. Answers follow the shared table of
//! [`super`]: a 400 on one event dead-letters that event alone; a 400 on a batch of checks is
//! bisected down to the checks refused; 5xx and network errors keep everything for a retry.

use chouette_core::wire::write::Writer;

use super::datadog::headers;
use super::output::{Encoding, Framing, Limits, Output};
use super::{Destination, DispatchConfig};
use crate::collect::json::{Json, JsonDoc};
use crate::config::Config;
use crate::limits::{
    EVENT_MAX_BYTES, SERVICE_CHECKS_MAX_COMPRESSED_BYTES, SERVICE_CHECKS_MAX_ENTRIES,
    SERVICE_CHECKS_MAX_UNCOMPRESSED_BYTES,
};

/// Whether the agent sends DogStatsD events and service checks anywhere: when Datadog is an
/// output (`API_KEY` or `DATADOG_URL` set, or a dry run with no other output), exactly when the
/// series and logs go to Datadog. When false, the listener counts them as ignored instead of
/// queueing them.
pub fn events_enabled(config: &Config) -> bool {
    config.datadog || (config.influxdb.is_none() && config.opentsdb.is_none())
}

/// What a member's value must be.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A string.
    Text,
    /// A string, not empty.
    Name,
    /// A whole number from 0 (a Unix time in seconds).
    Seconds,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A whole number in this range.
    Range(i64, i64),
    /// An array of strings.
    Tags,
}

/// One known member.
struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn field(name: &'static str, kind: Kind, required: bool) -> Field {
    Field { name, kind, required }
}

/// The members of one kind of record that are checked, and which one names the host.
struct Shape {
    fields: &'static [Field],
    host: &'static str,
}

const EVENT: Shape = Shape {
    fields: &[
        field("title", Kind::Name, true),
        field("text", Kind::Text, true),
        field("date_happened", Kind::Seconds, false),
        field("host", Kind::Text, false),
        field("aggregation_key", Kind::Text, false),
        field("priority", Kind::OneOf(&["normal", "low"]), false),
        field("source_type_name", Kind::Text, false),
        field("alert_type", Kind::OneOf(&["error", "warning", "info", "success"]), false),
        field("tags", Kind::Tags, false),
    ],
    host: "host",
};

const SERVICE_CHECK: Shape = Shape {
    fields: &[
        field("check", Kind::Name, true),
        field("status", Kind::Range(0, 3), true),
        field("timestamp", Kind::Seconds, false),
        field("host_name", Kind::Text, false),
        field("message", Kind::Text, false),
        field("tags", Kind::Tags, false),
    ],
    host: "host_name",
};

/// Appends `text` as a JSON string (quotes included) to `out`.
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    let write = |buf: &mut [u8]| {
        let mut w = Writer::new(buf);
        w.json_str(text);
        w.len()
    };
    let start = out.len();
    out.resize(start + write(&mut []), 0);
    write(&mut out[start..]);
}

/// A whole number, if `value` is one (`12`, `12.0`).
fn whole(value: &Json<'_>) -> Option<i64> {
    let n = value.as_f64()?;
    (n.fract() == 0.0 && n.abs() < 9.0e15).then_some(n as i64)
}

/// Checks `value` against `field`; `Err(reason)`.
fn check(field: &Field, value: &Json<'_>) -> Result<(), String> {
    let wrong = || format!("wrong_field_type:{}", field.name);
    let bad = || format!("bad_value:{}", field.name);
    match field.kind {
        Kind::Text => value.as_str().map(drop).ok_or_else(wrong),
        Kind::Name => match value.as_str() {
            Some(text) if !text.is_empty() => Ok(()),
            Some(_) => Err(bad()),
            None => Err(wrong()),
        },
        Kind::OneOf(allowed) => match value.as_str() {
            Some(text) if allowed.contains(&text.as_ref()) => Ok(()),
            Some(_) => Err(bad()),
            None => Err(wrong()),
        },
        Kind::Seconds => match (value.as_f64(), whole(value)) {
            (_, Some(n)) if n >= 0 => Ok(()),
            (Some(_), _) => Err(bad()),
            (None, _) => Err(wrong()),
        },
        Kind::Range(low, high) => match (value.as_f64(), whole(value)) {
            (_, Some(n)) if (low..=high).contains(&n) => Ok(()),
            (Some(_), _) => Err(bad()),
            (None, _) => Err(wrong()),
        },
        Kind::Tags => {
            let tags = value.elements().ok_or_else(wrong)?;
            if tags.iter().all(|tag| tag.as_str().is_some()) {
                Ok(())
            } else {
                Err(wrong())
            }
        }
    }
}

/// Checks `value` against `shape` and appends it to `out` with `host` (when the record has no
/// host, or an empty one) and `global_tags` (appended to its tags). `Err(reason)` for a record
/// that can never be sent; `out` may then hold part of it (the dispatcher discards it).
fn encode_object(
    value: &[u8],
    shape: &Shape,
    host: Option<&str>,
    global_tags: &[String],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let doc = Json::parse(value).map_err(|_| "not_json".to_owned())?;
    let members = doc.members().ok_or_else(|| "not_an_object".to_owned())?;
    for (i, (key, _)) in members.iter().enumerate() {
        if members[..i].iter().any(|(k, _)| k == key) {
            return Err(format!("duplicate_field:{key}"));
        }
    }
    for field in shape.fields {
        match members.iter().find(|(k, _)| k == field.name) {
            Some((_, value)) => check(field, value)?,
            None if field.required => return Err(format!("missing_field:{}", field.name)),
            None => {}
        }
    }
    let tags_out = |out: &mut Vec<u8>, existing: &[Json<'_>]| {
        out.push(b'[');
        let mut first = true;
        for tag in existing {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(tag.raw().as_bytes());
        }
        for tag in global_tags {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            push_json_str(out, tag);
        }
        out.push(b']');
    };
    out.push(b'{');
    let (mut has_host, mut has_tags) = (false, false);
    for (i, (key, member)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, key);
        out.push(b':');
        if key == "tags" {
            has_tags = true;
            tags_out(out, &member.elements().unwrap_or_default());
        } else if key == shape.host {
            has_host = true;
            match host {
                Some(host) if member.as_str().is_some_and(|h| h.is_empty()) => push_json_str(out, host),
                _ => out.extend_from_slice(member.raw().as_bytes()),
            }
        } else {
            out.extend_from_slice(member.raw().as_bytes());
        }
    }
    if let Some(host) = host.filter(|_| !has_host) {
        out.push(b',');
        push_json_str(out, shape.host);
        out.push(b':');
        push_json_str(out, host);
    }
    if !has_tags && !global_tags.is_empty() {
        out.push(b',');
        push_json_str(out, "tags");
        out.push(b':');
        tags_out(out, &[]);
    }
    out.push(b'}');
    Ok(())
}

/// DogStatsD events to `{DATADOG_URL}/v1/events`, one per request, uncompressed.
pub struct DatadogEvents {
    config: DispatchConfig,
}

impl DatadogEvents {
    /// The events output of `config`.
    pub fn new(config: &DispatchConfig) -> Self {
        DatadogEvents { config: config.clone() }
    }
}

impl Output for DatadogEvents {
    fn destination(&self) -> Destination {
        Destination::Events
    }

    fn url(&self) -> &str {
        &self.config.events_url
    }

    fn limits(&self) -> Limits {
        Limits { max_units: 1, max_bytes: EVENT_MAX_BYTES, max_compressed: EVENT_MAX_BYTES }
    }

    fn framing(&self) -> Framing {
        Framing { open: b"", separator: b"", close: b"" }
    }

    fn encoding(&self) -> Encoding {
        Encoding::Identity
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        headers(&self.config)
    }

    fn encode(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<u64, String> {
        let host = self.config.host.as_deref();
        encode_object(value, &EVENT, host, &self.config.global_tags, out).map(|()| 1)
    }
}

/// DogStatsD service checks to `{DATADOG_URL}/v1/check_run`, a JSON array, zlib-compressed.
pub struct DatadogServiceChecks {
    config: DispatchConfig,
}

impl DatadogServiceChecks {
    /// The service checks output of `config`.
    pub fn new(config: &DispatchConfig) -> Self {
        DatadogServiceChecks { config: config.clone() }
    }
}

impl Output for DatadogServiceChecks {
    fn destination(&self) -> Destination {
        Destination::ServiceChecks
    }

    fn url(&self) -> &str {
        &self.config.check_run_url
    }

    fn limits(&self) -> Limits {
        Limits {
            max_units: SERVICE_CHECKS_MAX_ENTRIES as u64,
            max_bytes: SERVICE_CHECKS_MAX_UNCOMPRESSED_BYTES,
            max_compressed: SERVICE_CHECKS_MAX_COMPRESSED_BYTES,
        }
    }

    fn framing(&self) -> Framing {
        Framing { open: b"[", separator: b",", close: b"]" }
    }

    fn encoding(&self) -> Encoding {
        Encoding::Deflate
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        headers(&self.config)
    }

    fn encode(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<u64, String> {
        let host = self.config.host.as_deref();
        encode_object(value, &SERVICE_CHECK, host, &self.config.global_tags, out).map(|()| 1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::dispatch::{
        inflate, Dispatcher, Disposition, HttpResponse, Outcome, Transport, TransportError,
    };
    use crate::store::Record;

    fn config(host: Option<&str>, tags: &[&str]) -> DispatchConfig {
        let mut config = DispatchConfig::for_base_url("http://intake", Some("k"));
        config.host = host.map(str::to_owned);
        config.global_tags = tags.iter().map(|t| (*t).to_owned()).collect();
        config
    }

    fn encode(output: &mut dyn Output, value: &str) -> Result<String, String> {
        let mut out = b"prefix".to_vec();
        output.encode(value.as_bytes(), &mut out)?;
        assert!(out.starts_with(b"prefix"), "appends");
        Ok(String::from_utf8(out.split_off(6)).expect("utf-8"))
    }

    const EVENT_FULL: &str = r#"{"title":"Deploy","text":"line 1\nline 2","date_happened":1700000000,"host":"box-7","aggregation_key":"deploys","priority":"low","source_type_name":"jenkins","alert_type":"success","tags":["env:prod","team:ops"]}"#;

    #[test]
    fn an_event_is_sent_as_written_with_global_tags_added() {
        let mut events = DatadogEvents::new(&config(Some("board-1"), &["site:lyon", "é:x"]));
        assert_eq!(
            encode(&mut events, EVENT_FULL).unwrap(),
            r#"{"title":"Deploy","text":"line 1\nline 2","date_happened":1700000000,"host":"box-7","aggregation_key":"deploys","priority":"low","source_type_name":"jenkins","alert_type":"success","tags":["env:prod","team:ops","site:lyon","\u00e9:x"]}"#,
            "the record's host is kept; HOST only fills in"
        );
        // Unchanged without HOST or GLOBAL_TAGS.
        assert_eq!(encode(&mut DatadogEvents::new(&config(None, &[])), EVENT_FULL).unwrap(), EVENT_FULL);
    }

    #[test]
    fn host_and_tags_are_added_when_the_record_has_none() {
        let mut events = DatadogEvents::new(&config(Some("board-1"), &["site:lyon"]));
        assert_eq!(
            encode(&mut events, r#"{"title":"T","text":""}"#).unwrap(),
            r#"{"title":"T","text":"","host":"board-1","tags":["site:lyon"]}"#
        );
        assert_eq!(
            encode(&mut events, r#"{"title":"T","text":"x","host":"","tags":[]}"#).unwrap(),
            r#"{"title":"T","text":"x","host":"board-1","tags":["site:lyon"]}"#,
            "an empty host is HOST's"
        );
        // Unknown members pass through, whitespace between members is dropped.
        assert_eq!(
            encode(
                &mut DatadogEvents::new(&config(None, &[])),
                r#" { "title" : "T", "text":"x", "device_name": "d1" } "#
            )
            .unwrap(),
            r#"{"title":"T","text":"x","device_name":"d1"}"#
        );
    }

    #[test]
    fn a_service_check_gets_host_name_and_global_tags() {
        let mut checks = DatadogServiceChecks::new(&config(Some("board-1"), &["site:lyon"]));
        assert_eq!(
            encode(
                &mut checks,
                r#"{"check":"app.up","status":2,"timestamp":1700000000,"message":"disk full","tags":["a:b"]}"#
            )
            .unwrap(),
            r#"{"check":"app.up","status":2,"timestamp":1700000000,"message":"disk full","tags":["a:b","site:lyon"],"host_name":"board-1"}"#
        );
        assert_eq!(
            encode(&mut checks, r#"{"check":"app.up","status":0,"host_name":"gw"}"#).unwrap(),
            r#"{"check":"app.up","status":0,"host_name":"gw","tags":["site:lyon"]}"#
        );
        assert_eq!(
            encode(&mut DatadogServiceChecks::new(&config(None, &[])), r#"{"check":"c","status":3}"#)
                .unwrap(),
            r#"{"check":"c","status":3}"#
        );
    }

    #[test]
    fn records_of_the_wrong_shape_are_refused_with_a_reason() {
        let mut events = DatadogEvents::new(&config(Some("h"), &[]));
        let cases = [
            ("{\"title\":", "not_json"),
            ("[1]", "not_an_object"),
            (r#"{"text":"x"}"#, "missing_field:title"),
            (r#"{"title":"t"}"#, "missing_field:text"),
            (r#"{"title":"","text":"x"}"#, "bad_value:title"),
            (r#"{"title":1,"text":"x"}"#, "wrong_field_type:title"),
            (r#"{"title":"t","text":"x","priority":"urgent"}"#, "bad_value:priority"),
            (r#"{"title":"t","text":"x","alert_type":"fatal"}"#, "bad_value:alert_type"),
            (r#"{"title":"t","text":"x","date_happened":"now"}"#, "wrong_field_type:date_happened"),
            (r#"{"title":"t","text":"x","date_happened":1.5}"#, "bad_value:date_happened"),
            (r#"{"title":"t","text":"x","tags":"a:b"}"#, "wrong_field_type:tags"),
            (r#"{"title":"t","text":"x","tags":["a",2]}"#, "wrong_field_type:tags"),
            (r#"{"title":"t","text":"x","host":null}"#, "wrong_field_type:host"),
            (r#"{"title":"t","text":"x","host":"a","host":"b"}"#, "duplicate_field:host"),
        ];
        for (value, reason) in cases {
            assert_eq!(encode(&mut events, value), Err(reason.to_owned()), "{value}");
        }
        let mut checks = DatadogServiceChecks::new(&config(None, &[]));
        let cases = [
            (r#"{"status":0}"#, "missing_field:check"),
            (r#"{"check":"c"}"#, "missing_field:status"),
            (r#"{"check":"c","status":4}"#, "bad_value:status"),
            (r#"{"check":"c","status":-1}"#, "bad_value:status"),
            (r#"{"check":"c","status":"0"}"#, "wrong_field_type:status"),
            (r#"{"check":"c","status":0,"timestamp":-5}"#, "bad_value:timestamp"),
            (r#"{"check":"c","status":0,"message":["m"]}"#, "wrong_field_type:message"),
        ];
        for (value, reason) in cases {
            assert_eq!(encode(&mut checks, value), Err(reason.to_owned()), "{value}");
        }
    }

    /// One request seen: URL, headers, plain body.
    type Seen = (String, Vec<(String, String)>, String);

    /// A transport recording each request, answering 400 to a body holding `poison`, else
    /// `status`.
    #[derive(Default)]
    struct Recorder {
        requests: Vec<Seen>,
        poison: Option<&'static str>,
        status: u16,
    }

    impl Transport for Recorder {
        fn post(
            &mut self,
            url: &str,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> Result<HttpResponse, TransportError> {
            let deflated = headers.contains(&("Content-Encoding", "deflate"));
            let plain = if deflated { inflate(body).expect("zlib") } else { body.to_vec() };
            let plain = String::from_utf8(plain).expect("utf-8");
            let status = match self.poison {
                Some(poison) if plain.contains(poison) => 400,
                _ => self.status,
            };
            let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            self.requests.push((url.to_owned(), headers, plain));
            Ok(HttpResponse::new(status, String::new()))
        }
    }

    fn record(i: usize, value: &str) -> Record {
        Record::new(format!("id{i}"), 1700000000.0, value)
    }

    fn dispatcher(poison: Option<&'static str>, status: u16) -> Dispatcher<Recorder> {
        let config = config(Some("board-1"), &["site:lyon"]);
        let outputs: Vec<Box<dyn Output>> =
            vec![Box::new(DatadogEvents::new(&config)), Box::new(DatadogServiceChecks::new(&config))];
        Dispatcher::with_outputs(Recorder { poison, status, ..Recorder::default() }, config, outputs)
    }

    #[test]
    fn the_dispatcher_posts_each_event_alone_and_dead_letters_only_the_refused_one() {
        let mut d = dispatcher(Some("poison"), 202);
        let records = [
            record(0, r#"{"title":"poison","text":"x"}"#),
            record(1, r#"{"title":"a","text":"x"}"#),
            record(2, r#"{"title":"b"}"#),
            record(3, r#"{"title":"c","text":"y","host":"gw","tags":["k:v"]}"#),
        ];
        let report = d.send_at(Destination::Events, Instant::now(), None, &records);
        assert_eq!(
            report.dispositions,
            [
                Disposition::Dead { reason: "http_400".into() },
                Disposition::Delivered,
                Disposition::Dead { reason: "missing_field:text".into() },
                Disposition::Delivered,
            ]
        );
        let requests = &d.transport().requests;
        let bodies: Vec<&str> = requests.iter().map(|(_, _, body)| body.as_str()).collect();
        assert_eq!(
            bodies,
            [
                r#"{"title":"poison","text":"x","host":"board-1","tags":["site:lyon"]}"#,
                r#"{"title":"a","text":"x","host":"board-1","tags":["site:lyon"]}"#,
                r#"{"title":"c","text":"y","host":"gw","tags":["k:v","site:lyon"]}"#,
            ]
        );
        for (url, headers, _) in requests {
            assert_eq!(url, "http://intake/v1/events");
            assert!(!headers.iter().any(|(k, _)| k == "Content-Encoding"), "{headers:?}");
            assert!(headers.contains(&("DD-API-KEY".into(), "k".into())));
        }
        let stats = d.stats(Destination::Events);
        assert_eq!((stats.requests, stats.delivered, stats.dead), (3, 2, 2));
    }

    #[test]
    fn the_dispatcher_posts_checks_as_one_array_and_bisects_a_refusal() {
        let mut d = dispatcher(Some("\"check\":\"bad\""), 202);
        let records: Vec<Record> = (0..4)
            .map(|i| {
                let name = if i == 2 { "bad".to_owned() } else { format!("c{i}") };
                record(i, &format!(r#"{{"check":"{name}","status":{}}}"#, i % 4))
            })
            .collect();
        let report = d.send_at(Destination::ServiceChecks, Instant::now(), None, &records);
        let dead = Disposition::Dead { reason: "http_400".into() };
        assert_eq!(
            report.dispositions,
            [Disposition::Delivered, Disposition::Delivered, dead, Disposition::Delivered]
        );
        let (url, headers, body) = &d.transport().requests[0];
        assert_eq!(url, "http://intake/v1/check_run");
        assert!(headers.contains(&("Content-Encoding".into(), "deflate".into())));
        assert_eq!(
            body,
            concat!(
                r#"[{"check":"c0","status":0,"host_name":"board-1","tags":["site:lyon"]},"#,
                r#"{"check":"c1","status":1,"host_name":"board-1","tags":["site:lyon"]},"#,
                r#"{"check":"bad","status":2,"host_name":"board-1","tags":["site:lyon"]},"#,
                r#"{"check":"c3","status":3,"host_name":"board-1","tags":["site:lyon"]}]"#
            )
        );
    }

    #[test]
    fn an_endpoint_refusing_every_event_keeps_them_all_after_a_bounded_search() {
        let mut d = dispatcher(Some("\"title\""), 202);
        let records: Vec<Record> = (0..100).map(|i| record(i, r#"{"title":"a","text":"x"}"#)).collect();
        let report = d.send_at(Destination::Events, Instant::now(), None, &records);
        assert_eq!(report.outcome, Outcome::Refused { reason: "http_400".into() });
        assert!(report.dispositions.iter().all(|d| *d == Disposition::Kept));
        assert_eq!(report.requests, 22, "3·ceil(log2(100)) + 1 lone refusals, then it stops");
        assert!(d.ready_at(Destination::Events).is_some(), "backing off");
    }

    /// A `Write` whose bytes the test reads after the dispatcher wrote them.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_dry_run_prints_events_and_checks_as_sent() {
        let printed = Shared::default();
        let config = config(Some("h"), &[]);
        let outputs: Vec<Box<dyn Output>> =
            vec![Box::new(DatadogEvents::new(&config)), Box::new(DatadogServiceChecks::new(&config))];
        let transport = crate::dispatch::DryRunTransport::new(printed.clone());
        let mut d = Dispatcher::with_outputs(transport, config, outputs);
        let event = [record(0, r#"{"title":"t","text":"x"}"#)];
        let check = [record(1, r#"{"check":"c","status":1}"#)];
        let sent = d.send_at(Destination::Events, Instant::now(), None, &event);
        assert_eq!(sent.dispositions, [Disposition::Delivered]);
        let sent = d.send_at(Destination::ServiceChecks, Instant::now(), None, &check);
        assert_eq!(sent.dispositions, [Disposition::Delivered]);
        let text = String::from_utf8(printed.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [r#"{"title":"t","text":"x","host":"h"}"#, r#"[{"check":"c","status":1,"host_name":"h"}]"#]
        );
    }

    #[test]
    fn an_unavailable_endpoint_keeps_everything_and_backs_off() {
        let mut d = dispatcher(None, 503);
        let records = [record(0, r#"{"title":"a","text":"x"}"#), record(1, r#"{"title":"b","text":"x"}"#)];
        let report = d.send_at(Destination::Events, Instant::now(), None, &records);
        assert_eq!(report.dispositions, [Disposition::Kept, Disposition::Kept]);
        assert_eq!(report.requests, 1, "the first failure ends the call");
        assert!(d.ready_at(Destination::Events).is_some(), "backing off");
        assert_eq!(d.ready_at(Destination::ServiceChecks), None, "its own outbox");
    }

    #[test]
    fn events_go_one_per_request_uncompressed_and_checks_as_an_array() {
        let config = config(None, &[]);
        let events = DatadogEvents::new(&config);
        assert_eq!(events.url(), "http://intake/v1/events");
        assert_eq!(events.limits().max_units, 1);
        assert_eq!(events.encoding(), Encoding::Identity);
        assert_eq!(events.framing(), Framing { open: b"", separator: b"", close: b"" });
        assert!(events.headers().contains(&("DD-API-KEY", "k".to_owned())));
        let checks = DatadogServiceChecks::new(&config);
        assert_eq!(checks.url(), "http://intake/v1/check_run");
        assert_eq!(checks.encoding(), Encoding::Deflate);
        assert_eq!(checks.framing(), Framing { open: b"[", separator: b",", close: b"]" });
        assert!(checks.headers().contains(&("DD-API-KEY", "k".to_owned())));
    }
}
