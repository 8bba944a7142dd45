//! The output encoders against real servers: `encode_lines` (InfluxDB line protocol) against a
//! real InfluxDB 1.6, `encode_points` (OpenTSDB `/api/put`) against VictoriaMetrics' OpenTSDB
//! listener. What is written is read back and compared exactly: names and tags with spaces,
//! commas, `=`, quotes, backslashes and Unicode, and the documented replacements.

use std::collections::BTreeMap;

use chouette_core::wire::line::encode_lines;
use chouette_core::wire::opentsdb::{encode_points, Sanitize};
use chouette_core::wire::wrapped::{parse_wrapped, wrapped_scratch_len};
use chouette_core::wire::EncodeError;
use chouette_core::Tag;
use chouette_tests::{InfluxServer, VictoriaMetrics};

/// Encodes one wrapped record (JSON) with an encoder taking a buffer, sized from
/// `BufferTooSmall { required }` as the agent does.
fn encode(
    record: &serde_json::Value,
    f: impl Fn(&chouette_core::wire::wrapped::WrappedRecord<'_>, &mut [u8]) -> Result<usize, EncodeError>,
) -> Vec<u8> {
    let text = record.to_string();
    let mut scratch = vec![0u8; wrapped_scratch_len(text.len())];
    let rec = parse_wrapped(text.as_bytes(), &mut scratch).expect("parse wrapped record");
    let required = match f(&rec, &mut []) {
        Err(EncodeError::BufferTooSmall { required }) => required,
        other => panic!("expected BufferTooSmall, got {other:?}"),
    };
    let mut out = vec![0u8; required];
    assert_eq!(f(&rec, &mut out), Ok(required));
    out
}

/// Every row of `SELECT * FROM /.*/`: (measurement, time, {column: value}) with the null
/// columns (tags of other series) left out.
fn all_rows(influx: &InfluxServer, db: &str) -> Vec<(String, i64, BTreeMap<String, serde_json::Value>)> {
    let result = influx.query(db, "SELECT * FROM /.*/");
    let mut rows = Vec::new();
    for series in result["results"][0]["series"].as_array().cloned().unwrap_or_default() {
        let name = series["name"].as_str().expect("name").to_string();
        let columns: Vec<String> = series["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("column").into())
            .collect();
        for row in series["values"].as_array().expect("values") {
            let row = row.as_array().expect("row");
            let time = row[0].as_i64().expect("time");
            let fields = columns[1..]
                .iter()
                .zip(&row[1..])
                .filter(|(_, v)| !v.is_null())
                // Numbers as floats: InfluxDB writes a float field `3` as `3`.
                .map(|(c, v)| (c.clone(), v.as_f64().map_or_else(|| v.clone(), serde_json::Value::from)))
                .collect();
            rows.push((name.clone(), time, fields));
        }
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    rows
}

fn row(
    name: &str,
    time: i64,
    value: f64,
    tags: &[(&str, &str)],
) -> (String, i64, BTreeMap<String, serde_json::Value>) {
    let mut fields: BTreeMap<String, serde_json::Value> =
        tags.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
    fields.insert("value".into(), serde_json::Value::from(value));
    (name.into(), time, fields)
}

#[test]
fn encoded_lines_read_back_exactly_from_influxdb() {
    let influx = InfluxServer::start();
    influx.create_database("chouette");
    let globals = [Tag::new("env", "test"), Tag::new("ep", "global-loses")];
    let records = [
        // Separators and Unicode everywhere, a host argument with a space.
        (
            serde_json::json!({"metric": "cpu load,total=1 \"x\" é", "type": "gauge",
                "tags": ["a b:c d", "k,1:v,1", "e=q:x=y", "q\"t:\"v\"", "uni é:日本 🦉", "path:C:\\dir\\x"],
                "points": [[1795310770.7, 21.5]]}),
            Some("my host"),
        ),
        // The documented replacements: leading `#`, backslashes InfluxDB cannot read back,
        // newlines, the tag key `time`.
        (
            serde_json::json!({"metric": "#bs\\,name\\", "type": "gauge",
                "tags": ["trail\\:end\\", "time:t", "nl\nk:v\rv", "mid\\,:a\\,b"],
                "points": [[1795310771.0, 3]]}),
            None,
        ),
        // Several points, a histogram suffix, a repeated key (first wins), a bare tag, the
        // record's own host.
        (
            serde_json::json!({"metric": "req.95percentile", "type": "gauge", "host": "rec-host",
                "tags": ["ep:a", "ep:b", "bare"], "points": [[1795310770, 1], [1795310780, 2.5]]}),
            None,
        ),
        (
            serde_json::json!({"metric": "_internal", "type": "count", "interval": 10, "tags": ["_k:v"], "points": [[1795310770, 7]]}),
            None,
        ),
    ];
    let mut body = Vec::new();
    for (record, host) in &records {
        body.extend(encode(record, |rec, out| encode_lines(rec, &globals, *host, out)));
    }
    assert_eq!(influx.write("chouette", &body), (204, String::new()), "{}", String::from_utf8_lossy(&body));

    let want = vec![
        row(
            "_bs_,name_",
            1795310771,
            3.0,
            &[
                ("mid\\,", "a\\,b"),
                ("nl k", "v v"),
                ("time_", "t"),
                ("trail_", "end_"),
                ("env", "test"),
                ("ep", "global-loses"),
            ],
        ),
        row("_internal", 1795310770, 7.0, &[("_k", "v"), ("env", "test"), ("ep", "global-loses")]),
        row(
            "cpu load,total=1 \"x\" é",
            1795310770,
            21.5,
            &[
                ("a b", "c d"),
                ("e=q", "x=y"),
                ("env", "test"),
                ("ep", "global-loses"),
                ("host", "my host"),
                ("k,1", "v,1"),
                ("path", "C:\\dir\\x"),
                ("q\"t", "\"v\""),
                ("uni é", "日本 🦉"),
            ],
        ),
        row("req.95percentile", 1795310770, 1.0, &[("ep", "a"), ("env", "test"), ("host", "rec-host")]),
        row("req.95percentile", 1795310780, 2.5, &[("ep", "a"), ("env", "test"), ("host", "rec-host")]),
    ];
    assert_eq!(all_rows(&influx, "chouette"), want);
}

/// The answers the InfluxDB output's status policy matches on, exactly as InfluxDB 1.6.7 writes
/// them, and the reason the encoder writes every value as a float: an integral value after a
/// fractional one must not be a type conflict.
#[test]
fn influxdb_error_bodies_and_no_type_conflict() {
    let influx = InfluxServer::start();
    influx.create_database("t");
    let gauge = |value: f64, ts: f64| {
        encode(
            &serde_json::json!({"metric": "c", "type": "gauge", "tags": ["k:v"], "points": [[ts, value]]}),
            |rec, out| encode_lines(rec, &[], None, out),
        )
    };
    assert_eq!(influx.write("t", &gauge(2.5, 1600000000.0)), (204, String::new()));
    assert_eq!(influx.write("t", &gauge(3.0, 1600000001.0)), (204, String::new()));
    let values = influx.query("t", "SELECT value FROM c");
    assert_eq!(
        values["results"][0]["series"][0]["values"],
        serde_json::json!([[1600000000, 2.5], [1600000001, 3]])
    );

    assert_eq!(
        influx.write("t", b"c,k=v value=4i 1600000002\n"),
        (
            400,
            "{\"error\":\"partial write: field type conflict: input field \\\"value\\\" on measurement \\\"c\\\" is type integer, already exists as type float dropped=1\"}\n".into()
        )
    );
    assert_eq!(
        influx.write("t", b"p value=1 1600000000\np value= 1600000001\np value=3 1600000002\n"),
        (
            400,
            "{\"error\":\"partial write: unable to parse 'p value= 1600000001': missing field value dropped=0\"}\n".into()
        )
    );
    // The good lines of a partial write are stored.
    let stored = influx.query("t", "SELECT value FROM p");
    assert_eq!(
        stored["results"][0]["series"][0]["values"],
        serde_json::json!([[1600000000, 1], [1600000002, 3]])
    );
    assert_eq!(
        influx.write("t", b"bad\nalso bad\n"),
        (
            400,
            "{\"error\":\"unable to parse 'bad': missing fields\\nunable to parse 'also bad': invalid field format\"}\n".into()
        )
    );
    assert_eq!(
        influx.write("nope", b"m value=1 1600000000\n"),
        (404, "{\"error\":\"database not found: \\\"nope\\\"\"}\n".into())
    );
}

#[test]
fn opentsdb_points_read_back_exactly_from_victoria_metrics() {
    let vm = VictoriaMetrics::start_with_opentsdb();
    let url = format!("{}/api/put", vm.opentsdb_url().expect("opentsdb listener"));
    let globals = [Tag::new("env", "test")];
    let records = [
        (
            serde_json::json!({"metric": "req.95percentile", "type": "gauge",
                "tags": ["ep:a", "ep:b", "bare", "quote:say \"hi\"", "uni:日本 é"], "points": [[1795310770.9, 21.5], [1795310780, 3]]}),
            Some("myhost"),
            Sanitize::None,
        ),
        (
            serde_json::json!({"metric": "Température salle", "type": "gauge", "tags": ["zone é:a b", "9lives:y", "x  __y:z"], "points": [[1795310771, 19.25]]}),
            None,
            Sanitize::Apptuit,
        ),
        (
            serde_json::json!({"metric": "9 proc.cpu", "type": "count", "interval": 10, "tags": ["a.b:c", "host:tag"], "points": [[1795310772, 4]]}),
            None,
            Sanitize::Prometheus,
        ),
    ];
    let mut body = b"[".to_vec();
    for (i, (record, host, sanitize)) in records.iter().enumerate() {
        if i > 0 {
            body.extend(b", ");
        }
        body.extend(encode(record, |rec, out| encode_points(rec, &globals, *host, *sanitize, out)));
    }
    body.push(b']');
    // VictoriaMetrics answers 204 to anything: the proof is in the export below.
    let _ = ureq::post(&url).set("Content-Type", "application/json").send_bytes(&body);

    let want: BTreeMap<String, Vec<(i64, f64)>> = [
        ("__name__=Température_salle,env=test,zone_é=a b,9lives=y,x_y=z", vec![(1795310771000, 19.25)]),
        ("__name__=_9_proc_cpu,a_b=c,env=test,host=tag", vec![(1795310772000, 4.0)]),
        (
            "__name__=req.95percentile,env=test,ep=a,host=myhost,quote=say \"hi\",uni=日本 é",
            vec![(1795310770000, 21.5), (1795310780000, 3.0)],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (sorted_key(k), v))
    .collect();
    let mut got = BTreeMap::new();
    chouette_tests::wait_until(
        "the three OpenTSDB series in VictoriaMetrics",
        std::time::Duration::from_secs(30),
        || {
            got = vm.series(r#"{__name__=~"req.*|Temp.*|_9.*"}"#);
            got.len() >= 3
        },
    );
    assert_eq!(got, want, "{}", String::from_utf8_lossy(&body));
}

/// `VictoriaMetrics::series` keys are `label=value` joined by `,`, sorted by label.
fn sorted_key(key: &str) -> String {
    let mut parts: Vec<(&str, &str)> =
        key.split(',').map(|p| p.split_once('=').expect("label=value")).collect();
    parts.sort();
    parts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Seeded random records (names and tags drawn from separators, backslashes, quotes, `#`,
/// newlines and Unicode) written in one request and read back: each reads back as the documented
/// replacements of its input, sorted, the first occurrence of a key winning.
#[test]
fn random_records_read_back_as_documented() {
    const ALPHABET: &[&str] = &[
        "a", "b", " ", ",", "=", "\\", "\"", "#", "_", "\n", "\r", "\t", "\u{0}", "\u{1}", "\u{7f}", "é",
        "日", "🦉", ":",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut text = |min: usize, max: usize| -> String {
        let len = min + next(max - min + 1);
        (0..len).map(|_| ALPHABET[next(ALPHABET.len())]).collect()
    };
    let influx = InfluxServer::start();
    influx.create_database("r");
    let mut body = Vec::new();
    let mut want = Vec::new();
    for id in 0..1000 {
        let name = text(1, 8);
        let tags: Vec<String> = (0..text(0, 3).len()).map(|_| text(0, 6)).collect();
        let ts = 1_795_310_000 + id as i64;
        let record = serde_json::json!({"metric": name, "type": "gauge", "tags": tags, "points": [[ts as f64 + 0.5, id as f64 / 4.0]]});
        let id_text = id.to_string();
        let globals = [Tag::new("id", &id_text)];
        body.extend(encode(&record, |rec, out| encode_lines(rec, &globals, None, out)));
        // The model: the alphabet has no `i`, `d`, `t` or `v`, so no tag key is `id`, `time` or
        // `value`.
        let mut expected: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for tag in &tags {
            let tag = Tag::parse(tag);
            let Some(value) = tag.value.filter(|v| !v.is_empty()) else { continue };
            if tag.key.is_empty() {
                continue;
            }
            expected.entry(model_tag_part(tag.key)).or_insert_with(|| model_tag_part(value).into());
        }
        expected.insert("id".into(), id_text.clone().into());
        expected.insert("value".into(), serde_json::Value::from(id as f64 / 4.0));
        want.push((model_measurement(&name), ts, expected));
    }
    assert_eq!(influx.write("r", &body), (204, String::new()));
    let mut got = all_rows(&influx, "r");
    got.sort_by_key(|row| row.1);
    // A point InfluxDB skips still gets 204: name the lines that are not there.
    let lines: Vec<&str> = std::str::from_utf8(&body).expect("utf-8").split_inclusive('\n').collect();
    let dropped: Vec<&str> = want
        .iter()
        .zip(&lines)
        .filter(|(w, _)| !got.iter().any(|g| g.1 == w.1))
        .map(|(_, line)| *line)
        .collect();
    assert!(dropped.is_empty(), "InfluxDB skipped {} lines: {dropped:?}", dropped.len());
    assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(&want) {
        assert_eq!(got, want);
    }
}

/// A measurement as InfluxDB 1.x reads it back (the encoder's documented replacements).
fn model_measurement(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        out.push(match c {
            '\n' | '\r' => ' ',
            '#' | '\t' | '\0' if i == 0 => '_',
            '\\' if matches!(chars.get(i + 1), None | Some(',' | ' ' | '=' | '"' | '\n' | '\r')) => '_',
            c => c,
        });
    }
    out
}

/// A tag key or value as InfluxDB 1.x reads it back.
fn model_tag_part(text: &str) -> String {
    let spaced: Vec<char> = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    spaced
        .iter()
        .enumerate()
        .map(|(i, &c)| if c == '\\' && matches!(spaced.get(i + 1), None | Some(' ')) { '_' } else { c })
        .collect()
}
