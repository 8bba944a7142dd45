//! DogStatsD events and service checks as the JSON bodies of Datadog's v1 API (`/api/v1/events`,
//! one per request; `/api/v1/check_run`, in arrays): the records the listener queues for the
//! Datadog output, which adds `HOST` and `GLOBAL_TAGS` when it sends them.
//!
//! Absent fields are omitted. `\n` in an event's title or text becomes a newline; a check's
//! message is kept as sent: both as the Agent does (`parse_events.go`, `parse_service_checks.go`).
//! Without `d:`, the time of receipt is the event's date and the check's time.

use std::borrow::Cow;

use chouette_core::wire::dogstatsd::{unescape_newlines, Message, Tags};
use chouette_core::wire::write::Writer;

/// The JSON record for an event or a service check received at `now` (Unix seconds); `None` for
/// a metric message.
pub fn record(message: &Message<'_>, now: f64) -> Option<Vec<u8>> {
    let now = now.max(0.0) as u64;
    let mut fields: Vec<(&str, Field<'_>)> = Vec::new();
    let (text, tags) = match message {
        Message::Event {
            title,
            text,
            timestamp,
            hostname,
            aggregation_key,
            priority,
            source_type_name,
            alert_type,
            tags,
        } => {
            fields.push(("title", Field::Str(unescaped(title))));
            fields.push(("date_happened", Field::U64(timestamp.unwrap_or(now))));
            push_opt(&mut fields, "host", *hostname);
            push_opt(&mut fields, "aggregation_key", *aggregation_key);
            push_opt(&mut fields, "priority", priority.map(|p| p.as_str()));
            push_opt(&mut fields, "source_type_name", *source_type_name);
            push_opt(&mut fields, "alert_type", alert_type.map(|a| a.as_str()));
            (Some(("text", unescaped(text))), *tags)
        }
        Message::ServiceCheck { name, status, timestamp, hostname, tags, message } => {
            fields.push(("check", Field::Str(Cow::Borrowed(name))));
            fields.push(("status", Field::U64(u64::from(status.code()))));
            fields.push(("timestamp", Field::U64(timestamp.unwrap_or(now))));
            push_opt(&mut fields, "host_name", *hostname);
            (message.map(|m| ("message", Cow::Borrowed(m))), *tags)
        }
        Message::Metric { .. } => return None,
    };
    let text_len = text.as_ref().map_or(0, |(_, t)| t.len());
    let tags_len = tags.as_str().len();
    let size: usize = fields.iter().map(|(k, f)| k.len() + f.len()).sum::<usize>() + text_len + tags_len;
    let mut buf = vec![0u8; size * 6 + 256];
    let mut w = Writer::new(&mut buf);
    w.byte(b'{');
    let mut first = true;
    let mut key = |w: &mut Writer<'_>, name: &str| {
        if !first {
            w.byte(b',');
        }
        first = false;
        w.json_str(name);
        w.byte(b':');
    };
    for (name, field) in &fields {
        key(&mut w, name);
        match field {
            Field::Str(s) => w.json_str(s),
            Field::U64(n) => w.u64(*n),
        }
    }
    if let Some((name, text)) = &text {
        key(&mut w, name);
        w.json_str(text);
    }
    if !tags.is_empty() {
        key(&mut w, "tags");
        write_tags(&mut w, tags);
    }
    w.byte(b'}');
    let len = w.finish().ok()?;
    buf.truncate(len);
    Some(buf)
}

enum Field<'a> {
    Str(Cow<'a, str>),
    U64(u64),
}

/// `text` with each `\n` made a newline.
fn unescaped(text: &str) -> Cow<'_, str> {
    if !text.contains("\\n") {
        return Cow::Borrowed(text);
    }
    let mut out = vec![0u8; text.len()];
    let len = unescape_newlines(text, &mut out).unwrap_or(0);
    out.truncate(len);
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

impl Field<'_> {
    fn len(&self) -> usize {
        match self {
            Field::Str(s) => s.len(),
            Field::U64(_) => 20,
        }
    }
}

fn push_opt<'a>(fields: &mut Vec<(&'static str, Field<'a>)>, name: &'static str, value: Option<&'a str>) {
    if let Some(value) = value {
        fields.push((name, Field::Str(Cow::Borrowed(value))));
    }
}

fn write_tags(w: &mut Writer<'_>, tags: Tags<'_>) {
    w.byte(b'[');
    for (i, tag) in tags.iter().enumerate() {
        if i > 0 {
            w.byte(b',');
        }
        w.json_str(tag);
    }
    w.byte(b']');
}

#[cfg(test)]
mod tests {
    use chouette_core::wire::dogstatsd::parse_message;

    use super::*;

    fn json(line: &str) -> String {
        let message = parse_message(line.as_bytes()).expect("valid");
        String::from_utf8(record(&message, 1_700_000_123.7).expect("not a metric")).expect("utf-8")
    }

    #[test]
    fn events_carry_every_field_sent_and_the_receipt_date_by_default() {
        assert_eq!(
            json("_e{7,12}:Ti\\ntle|line1\\nline2|d:1700000000|h:pi|k:agg|p:low|s:src|t:error|#a:b,c"),
            r#"{"title":"Ti\ntle","date_happened":1700000000,"host":"pi","aggregation_key":"agg","priority":"low","source_type_name":"src","alert_type":"error","text":"line1\nline2","tags":["a:b","c"]}"#
        );
        assert_eq!(json("_e{3,0}:Hé|"), r#"{"title":"H\u00e9","date_happened":1700000123,"text":""}"#);
    }

    #[test]
    fn service_checks_carry_status_time_host_message_and_tags() {
        assert_eq!(
            json("_sc|db.up|2|d:1700000000|h:pi|#env:prod|m:down \"hard\"\\nagain"),
            r#"{"check":"db.up","status":2,"timestamp":1700000000,"host_name":"pi","message":"down \"hard\"\\nagain","tags":["env:prod"]}"#
        );
        assert_eq!(json("_sc|ok|0"), r#"{"check":"ok","status":0,"timestamp":1700000123}"#);
    }

    #[test]
    fn the_records_are_json_serde_reads() {
        for line in ["_e{1,1}:t|x|#a", "_sc|c|3|m:\u{7}bell"] {
            let value: serde_json::Value = serde_json::from_str(&json(line)).expect("json");
            assert!(value.is_object());
        }
        assert!(record(&parse_message(b"a:1|c").expect("metric"), 0.0).is_none());
    }
}
