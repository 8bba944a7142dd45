//! Golden-file and property tests for the output encoders: InfluxDB line protocol
//! (`wire::line`) and OpenTSDB `/api/put` JSON (`wire::opentsdb`). The golden files
//! (`tests/data/out_*`, listed in `tests/data/outputs.cases.json`) are written by
//! `tests/data/gen_outputs.py`, an independent Python implementation of the same rules (with
//! CPython's `re` for apptuit-py's sanitize modes).

use std::collections::BTreeMap;

use chouette_core::wire::line::encode_lines;
use chouette_core::wire::opentsdb::{encode_points, Sanitize};
use chouette_core::wire::wrapped::{parse_wrapped, wrapped_scratch_len};
use chouette_core::wire::EncodeError;
use chouette_core::Tag;
use proptest::prelude::*;

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn line_text(record: &str, extra: &[Tag<'_>], host: Option<&str>) -> Result<String, EncodeError> {
    let mut scratch = vec![0u8; wrapped_scratch_len(record.len())];
    let rec = parse_wrapped(record.as_bytes(), &mut scratch).expect("parse");
    // Size from the error, as a caller would.
    let required = match encode_lines(&rec, extra, host, &mut []) {
        Ok(0) => 0,
        Err(EncodeError::BufferTooSmall { required }) => required,
        other => return other.map(|_| String::new()),
    };
    let mut out = vec![0u8; required];
    let n = encode_lines(&rec, extra, host, &mut out)?;
    assert_eq!(n, required, "BufferTooSmall.required is exact");
    Ok(String::from_utf8(out).expect("utf-8"))
}

fn opentsdb_text(
    record: &str,
    extra: &[Tag<'_>],
    host: Option<&str>,
    mode: Sanitize,
) -> Result<String, EncodeError> {
    let mut scratch = vec![0u8; wrapped_scratch_len(record.len())];
    let rec = parse_wrapped(record.as_bytes(), &mut scratch).expect("parse");
    let required = match encode_points(&rec, extra, host, mode, &mut []) {
        Err(EncodeError::BufferTooSmall { required }) => required,
        other => return other.map(|_| String::new()),
    };
    let mut out = vec![0u8; required];
    let n = encode_points(&rec, extra, host, mode, &mut out)?;
    assert_eq!(n, required, "BufferTooSmall.required is exact");
    Ok(String::from_utf8(out).expect("utf-8"))
}

#[test]
fn outputs_match_the_goldens() {
    let cases: serde_json::Value = serde_json::from_str(&data("outputs.cases.json")).expect("manifest");
    let cases = cases.as_array().expect("a list");
    assert!(cases.len() >= 15, "{} cases", cases.len());
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let record = data(case["input"].as_str().expect("input"));
        let record = record.trim_end_matches('\n');
        let extra_text: Vec<&str> = case["extra_tags"]
            .as_array()
            .expect("extra_tags")
            .iter()
            .map(|t| t.as_str().expect("tag"))
            .collect();
        let extra: Vec<Tag<'_>> = extra_text.iter().map(|t| Tag::parse(t)).collect();
        let host = case["host"].as_str();
        assert_eq!(
            line_text(record, &extra, host).as_deref(),
            Ok(data(case["line"].as_str().expect("line")).as_str()),
            "{name}.line"
        );
        checked += 1;
        for (mode, expected) in case["opentsdb"].as_object().expect("opentsdb") {
            let sanitize = Sanitize::parse(mode).expect("mode");
            let got = opentsdb_text(record, &extra, host, sanitize);
            match (expected.get("file"), expected.get("error")) {
                (Some(file), _) => {
                    assert_eq!(
                        got.as_deref(),
                        Ok(data(file.as_str().expect("file")).as_str()),
                        "{name}.{mode}"
                    )
                }
                (None, Some(error)) => {
                    let err = got.expect_err(name);
                    assert_eq!(err.reason(), error.as_str().expect("reason"), "{name}.{mode}");
                    assert_eq!(err, EncodeError::NoTags);
                }
                _ => panic!("{name}.{mode}: neither file nor error"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 35, "{checked} goldens checked");
}

/// Splits at bytes InfluxDB 1.x treats as unescaped separators (not preceded by a backslash).
fn split_unescaped(text: &str, sep: u8) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 0..bytes.len() {
        if bytes[i] == sep && (i == 0 || bytes[i - 1] != b'\\') {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Where InfluxDB 1.x's `scanLine` (models/points.go) thinks the fields start: the first space
/// not skipped as the byte after a backslash.
fn fields_start_as_scan_line_sees_it(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 2 < bytes.len() {
            i += 2;
            continue;
        }
        if bytes[i] == b' ' {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// What InfluxDB 1.x reads from an escaped part: `\` before one of `specials` is dropped,
/// any other backslash is literal.
fn unescape(text: &str, specials: &[char]) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if specials.contains(&next) {
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// The model: what a measurement / tag key / tag value should read back as.
fn expected_measurement(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        out.push(match c {
            '\n' | '\r' => ' ',
            '#' | '\t' | '\0' if i == 0 => '_',
            '\\' if matches!(next, None | Some(',' | ' ' | '=' | '"' | '\n' | '\r')) => '_',
            c => c,
        });
    }
    out
}

fn expected_tag_part(text: &str, is_key: bool) -> String {
    let spaced: Vec<char> = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    let mut out: String = spaced
        .iter()
        .enumerate()
        .map(|(i, &c)| if c == '\\' && matches!(spaced.get(i + 1), None | Some(' ')) { '_' } else { c })
        .collect();
    if is_key && text == "time" {
        out.push('_');
    }
    out
}

fn expected_tags(own: &[String], extra: &[String], host: Option<&str>) -> Vec<(String, String)> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for text in own.iter().chain(extra) {
        let tag = Tag::parse(text);
        let Some(value) = tag.value else { continue };
        if value.is_empty() || tag.key.is_empty() || (host.is_some() && tag.key == "host") {
            continue;
        }
        map.entry(expected_tag_part(tag.key, true)).or_insert_with(|| expected_tag_part(value, false));
    }
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        map.entry("host".into()).or_insert_with(|| expected_tag_part(host, false));
    }
    map.into_iter().collect()
}

fn text_strategy(min: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ab ,=\\\\\"#_:\n\r\t\x00\x01\x7fé日🦉]{{{min},10}}"))
        .expect("regex")
}

/// A record's name, tags, `(timestamp, value)` points and own `host`.
type RecordParts = (String, Vec<String>, Vec<(f64, f64)>, Option<String>);

fn record_strategy() -> impl Strategy<Value = RecordParts> {
    (
        text_strategy(1),
        proptest::collection::vec(text_strategy(0), 0..6),
        proptest::collection::vec((0.0..4e9f64, -1e20..1e20f64), 1..5),
        proptest::option::of(text_strategy(0)),
    )
}

fn record_json(name: &str, tags: &[String], points: &[(f64, f64)], record_host: Option<&str>) -> String {
    let mut record = serde_json::json!({"metric": name, "tags": tags, "points": points, "type": "gauge"});
    if let Some(h) = record_host {
        record["host"] = serde_json::Value::from(h);
    }
    record.to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every record encodes to one line per point: no newline but the terminators, exactly two
    /// unescaped spaces per line (measurement+tags / field / timestamp), tags separated by
    /// unescaped commas into key=value pairs, and everything reads back (with InfluxDB 1.x's
    /// unescaping) as the documented replacements of the input: sorted, first key wins.
    #[test]
    fn lines_have_no_stray_separators(
        (name, tags, points, record_host) in record_strategy(),
        extra in proptest::collection::vec(text_strategy(0), 0..4),
        host in proptest::option::of(text_strategy(0)),
    ) {
        let json = record_json(&name, &tags, &points, record_host.as_deref());
        let extra_tags: Vec<Tag<'_>> = extra.iter().map(|t| Tag::parse(t)).collect();
        let text = line_text(&json, &extra_tags, host.as_deref()).expect("encode");
        prop_assert!(text.ends_with('\n'));
        prop_assert!(!text.contains('\r'));
        let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
        prop_assert_eq!(lines.len(), points.len());
        let effective_host = host.as_deref().filter(|h| !h.is_empty()).or(record_host.as_deref().filter(|h| !h.is_empty()));
        let want_tags = expected_tags(&tags, &extra, effective_host);
        for (line, &(ts, value)) in lines.iter().zip(&points) {
            let sections = split_unescaped(line, b' ');
            prop_assert_eq!(sections.len(), 3, "{:?}", line);
            // InfluxDB 1.x's line splitter finds the fields its own way (skipping a backslash and
            // the byte after it): it must agree, or a later `"` swallows the newline.
            prop_assert_eq!(fields_start_as_scan_line_sees_it(line), Some(sections[0].len()), "{:?}", line);
            let series = split_unescaped(sections[0], b',');
            prop_assert_eq!(unescape(series[0], &[',', ' ']), expected_measurement(&name));
            let mut got_tags = Vec::new();
            for pair in &series[1..] {
                let kv = split_unescaped(pair, b'=');
                prop_assert_eq!(kv.len(), 2, "{:?}", pair);
                prop_assert!(!kv[0].is_empty() && !kv[1].is_empty());
                prop_assert!(!kv[0].ends_with('\\') && !kv[1].ends_with('\\'));
                got_tags.push((unescape(kv[0], &[',', '=', ' ']), unescape(kv[1], &[',', '=', ' '])));
            }
            prop_assert_eq!(&got_tags, &want_tags);
            let field = sections[1].strip_prefix("value=").expect("value field");
            prop_assert!(!field.ends_with('i') && !field.ends_with('u'));
            prop_assert_eq!(field.parse::<f64>().expect("float"), value);
            prop_assert_eq!(sections[2].parse::<u64>().expect("seconds"), ts.floor() as u64);
        }
    }

    /// Every record encodes to objects that, inside brackets, are a JSON array of one object per
    /// point, with the point's value and whole seconds, and tags whose keys the mode allows.
    #[test]
    fn opentsdb_points_are_json(
        (name, tags, points, record_host) in record_strategy(),
        extra in proptest::collection::vec(text_strategy(0), 0..4),
        host in proptest::option::of(text_strategy(0)),
        mode in prop_oneof![Just(Sanitize::None), Just(Sanitize::Apptuit), Just(Sanitize::Prometheus)],
    ) {
        let json = record_json(&name, &tags, &points, record_host.as_deref());
        let extra_tags: Vec<Tag<'_>> = extra.iter().map(|t| Tag::parse(t)).collect();
        let effective_host = host.as_deref().filter(|h| !h.is_empty()).or(record_host.as_deref().filter(|h| !h.is_empty()));
        let any_tag = tags.iter().chain(&extra).any(|t| {
            let tag = Tag::parse(t);
            !tag.key.is_empty() && tag.value.is_some_and(|v| !v.is_empty()) && !(effective_host.is_some() && tag.key == "host")
        }) || effective_host.is_some_and(|h| !h.is_empty());
        let text = match opentsdb_text(&json, &extra_tags, host.as_deref(), mode) {
            Err(EncodeError::NoTags) => { prop_assert!(!any_tag); return Ok(()); }
            other => other.expect("encode"),
        };
        prop_assert!(any_tag);
        let array: serde_json::Value = serde_json::from_str(&format!("[{text}]")).expect("JSON");
        let array = array.as_array().expect("array");
        prop_assert_eq!(array.len(), points.len());
        for (object, &(ts, value)) in array.iter().zip(&points) {
            prop_assert_eq!(object["value"].as_f64(), Some(value));
            prop_assert_eq!(object["timestamp"].as_u64(), Some(ts.floor() as u64));
            let tags = object["tags"].as_object().expect("tags");
            prop_assert!(!tags.is_empty());
            let keys: Vec<&String> = tags.keys().collect();
            for key in core::iter::once(&object["metric"].as_str().expect("metric").to_string()).chain(keys.iter().copied()) {
                match mode {
                    Sanitize::Prometheus => prop_assert!(
                        key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !key.contains("__")
                            && !key.starts_with(|c: char| c.is_ascii_digit()), "{:?}", key),
                    Sanitize::Apptuit => prop_assert!(
                        key.chars().all(|c| c.is_alphanumeric() || "-_./".contains(c)) && !key.contains("__"), "{:?}", key),
                    _ => {}
                }
            }
        }
    }
}
