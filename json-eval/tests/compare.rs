//! Every golden record file of the core (`core/tests/data/`) and every shape the Python client and
//! agent write (compat §2.2–2.4), through the core's parsers and through the serde-json-core
//! prototype, side by side. `cargo test --manifest-path json-eval/Cargo.toml --test compare --
//! --nocapture` prints the table; the test fails if the set of disagreements changes.

use chouette_core::wire::log::parse_log;
use chouette_core::wire::raw::{parse_raw_metric, raw_scratch_len, RawMetric};
use chouette_core::wire::wrapped::parse_wrapped;
use chouette_core::{Member, Value};
use chouette_json_eval as proto;

fn data_dir() -> String {
    format!("{}/../core/tests/data", env!("CARGO_MANIFEST_DIR"))
}

fn golden(name: &str) -> String {
    let path = format!("{}/{name}", data_dir());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

fn show_raw(m: &RawMetric<'_>) -> String {
    let tags: Vec<String> = m.tags.iter().map(|t| t.to_string()).collect();
    let value = match m.value {
        Value::Number(v) => format!("{v:?}"),
        Value::Set(s) => format!("set{:?}", s.iter().map(member).collect::<Vec<_>>()),
        Value::Samples(s) => format!("samples{:?}", s.iter().map(member).collect::<Vec<_>>()),
    };
    format!("{:?} {} {value} @{:?} {tags:?}", m.name, m.kind, m.timestamp.as_secs_f64())
}

fn member(m: Member<'_>) -> String {
    match m {
        Member::Str(s) => format!("{s:?}"),
        Member::Num(n) => format!("{n:?}"),
    }
}

/// One input's outcome through both parsers, each rendered as text.
struct Row {
    case: String,
    input: String,
    scanner: Result<String, String>,
    serde: Result<String, String>,
}

impl Row {
    fn verdict(&self) -> &'static str {
        match (&self.scanner, &self.serde) {
            (Ok(a), Ok(b)) if a == b => "same",
            (Err(_), Err(_)) => "both refuse",
            (Ok(_), Err(_)) => "serde refuses",
            (Err(_), Ok(_)) => "serde accepts",
            (Ok(_), Ok(_)) => "values differ",
        }
    }

    fn agrees(&self) -> bool {
        matches!(self.verdict(), "same" | "both refuse")
    }
}

fn raw_row(case: &str, input: &str) -> Row {
    raw_row_bytes(case, input.as_bytes())
}

fn raw_row_bytes(case: &str, input: &[u8]) -> Row {
    let mut scratch = vec![0u8; raw_scratch_len(input.len())];
    let scanner = parse_raw_metric(input, &mut scratch)
        .map(|m| show_raw(&m))
        .map_err(|e| format!("{} ({e})", e.reason()));
    let mut scratch = vec![0u8; raw_scratch_len(input.len())];
    let serde = proto::parse_raw(input, &mut scratch).map(|m| show_raw(&m)).map_err(|e| format!("{e:?}"));
    Row { case: case.into(), input: String::from_utf8_lossy(input).into_owned(), scanner, serde }
}

fn wrapped_row(case: &str, input: &str) -> Row {
    let mut scratch = vec![0u8; input.len()];
    let scanner = parse_wrapped(input.as_bytes(), &mut scratch)
        .map(|r| {
            let tags: Vec<String> = r.tags().iter().map(|t| t.to_string()).collect();
            let points: Vec<(f64, f64)> = r.points().iter().map(|(t, v)| (t.as_secs_f64(), *v)).collect();
            format!("{:?} {:?} {tags:?} {points:?} {:?} {:?}", r.name(), r.kind(), r.interval(), r.host())
        })
        .map_err(|e| format!("{} ({e})", e.reason()));
    let mut scratch = vec![0u8; input.len()];
    let serde = proto::parse_wrapped(input.as_bytes(), &mut scratch)
        .map(|r| {
            let tags: Vec<String> = r.tags.iter().map(|t| t.to_string()).collect();
            let points: Vec<(f64, f64)> = r.points.iter().map(|(t, v)| (t.as_secs_f64(), *v)).collect();
            format!("{:?} {:?} {tags:?} {points:?} {:?} {:?}", r.name, r.kind, r.interval, r.host)
        })
        .map_err(|e| format!("{e:?}"));
    Row { case: case.into(), input: input.into(), scanner, serde }
}

/// Logs: only what both can give (the date and the `ddtags` entries); the scanner also keeps every
/// field's text for the intake, which the prototype cannot.
fn log_row(case: &str, input: &str) -> Row {
    let scanner = parse_log(input.as_bytes())
        .map(|r| {
            let tags: Vec<&str> = r.ddtags().iter().map(|t| t.as_raw()).collect();
            format!("{:?} {:?} {tags:?}", r.date().as_secs_f64(), r.date_text())
        })
        .map_err(|e| format!("{} ({e})", e.reason()));
    let serde = proto::parse_log(input.as_bytes())
        .map(|r| format!("{:?} {:?} {:?}", r.date.as_secs_f64(), r.date_text, &r.ddtags[..]))
        .map_err(|e| format!("{e:?}"));
    Row { case: case.into(), input: input.into(), scanner, serde }
}

/// `{"metric": "m", "type": TYPE, "value": VALUE, "timestamp": 1600000000.25, "tags": TAGS}`.
fn raw(kind: &str, value: &str, tags: &str) -> String {
    format!(
        r#"{{"metric": "m", "type": "{kind}", "value": {value}, "timestamp": 1600000000.25, "tags": {tags}}}"#
    )
}

/// Shapes beyond the golden files: what Python's `json.dumps` writes for the client's and the
/// agent's records (compat §2.2–2.4, §3.2–3.3), and what a strict parser must refuse.
fn shape_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut r = |case: &str, input: String| rows.push(raw_row(case, &input));
    r("value int", raw("count", "2", "{}"));
    r("value float", raw("gauge", "0.1", "{}"));
    r("value exponent", raw("gauge", "1.5e-05", "{}"));
    r("value big exponent", raw("histogram", "1e+16", "{}"));
    r("value -0.0", raw("gauge", "-0.0", "{}"));
    r("value int > 2^53", raw("count", "-9007199254740993", "{}"));
    r("value 1e400 (inf)", raw("gauge", "1e400", "{}"));
    r("value NaN", raw("gauge", "NaN", "{}"));
    r("value Infinity", raw("gauge", "Infinity", "{}"));
    r("value -Infinity", raw("gauge", "-Infinity", "{}"));
    r("value true (Python bool is int)", raw("count", "true", "{}"));
    r("value null", raw("count", "null", "{}"));
    r("value string", raw("count", "\"3\"", "{}"));
    r("value object", raw("count", "{\"a\": 1}", "{}"));
    r("set of strings", raw("set", "[\"Alice\", \"Bob\"]", "{}"));
    r("set of numbers", raw("set", "[1, 2.5, 3]", "{}"));
    r("set mixed (client set {\"Alice\", 3})", raw("set", "[\"Alice\", 3, 2.5]", "{}"));
    r("set with null member", raw("set", "[\"a\", null]", "{}"));
    r("set with bool member", raw("set", "[true, 1]", "{}"));
    r("set empty", raw("set", "[]", "{}"));
    r("set nested list", raw("set", "[[1]]", "{}"));
    r("set of 65 strings", raw("set", &format!("[{}]", vec!["\"x\""; 65].join(", ")), "{}"));
    r("histogram samples", raw("histogram", "[1, 2.5, 1000, -0.125]", "{}"));
    r("histogram samples with string", raw("histogram", "[1, \"2\"]", "{}"));
    r(
        "string escapes \\\" \\\\ \\/ \\b \\f \\n \\r \\t",
        raw("count", "1", r#"{"k": "a\"b\\c\/d\be\ff\ng\rh\ti"}"#),
    );
    r("string \\u00e9 (BMP)", raw("count", "1", r#"{"m\u00fcnchen": "caf\u00e9"}"#));
    r("string \\u0000 and \\u007f", raw("count", "1", r#"{"k": "\u0000\u007f"}"#));
    r("string surrogate pair (emoji)", raw("count", "1", r#"{"k": "\ud83e\udd89"}"#));
    r("string lone surrogate", raw("count", "1", r#"{"k": "\ud83e"}"#));
    r("string raw control char (invalid JSON)", raw("count", "1", "{\"k\": \"a\u{1}b\"}"));
    r("string raw UTF-8 (ensure_ascii=False)", raw("count", "1", r#"{"k": "café 🦉"}"#));
    r(
        "name with escapes",
        r#"{"metric": "caf\u00e9.\"q\"", "type": "count", "value": 1, "timestamp": 1}"#.into(),
    );
    r(
        "escaped key (m\\u0065tric)",
        r#"{"m\u0065tric": "m", "type": "count", "value": 1, "timestamp": 1}"#.into(),
    );
    r("tag int", raw("gauge", "1", r#"{"i": 1}"#));
    r("tag float", raw("gauge", "1", r#"{"f": 1.0}"#));
    r("tag bool", raw("gauge", "1", r#"{"t": true}"#));
    r("tag null", raw("gauge", "1", r#"{"n": null}"#));
    r("tag list value", raw("gauge", "1", r#"{"k": []}"#));
    r("tags as a list (client given a list)", raw("gauge", "1", r#"["a:b"]"#));
    r("tags null", raw("gauge", "1", "null"));
    r("tags missing", r#"{"metric": "m", "type": "gauge", "value": 1, "timestamp": 1}"#.into());
    r("tags duplicate key (last wins)", raw("gauge", "1", r#"{"k": "1", "j": "2", "k": "3"}"#));
    r(
        "duplicate top-level key (last wins)",
        r#"{"metric": "a", "metric": "b", "type": "gauge", "value": 1, "timestamp": 1}"#.into(),
    );
    r("unknown keys, nested", r#"{"metric": "m", "type": "gauge", "value": 1, "timestamp": 1, "x": {"a": [1, {"b": null}]}, "y": "z"}"#.into());
    r(
        "unknown key, invalid literal",
        r#"{"metric": "m", "type": "gauge", "value": 1, "timestamp": 1, "x": tru}"#.into(),
    );
    r(
        "unknown key, NaN (Python extra)",
        r#"{"metric": "m", "type": "gauge", "value": 1, "timestamp": 1, "x": NaN}"#.into(),
    );
    r("timestamp int", raw("gauge", "1", "{}").replace("1600000000.25", "1600000000"));
    r("timestamp null", raw("gauge", "1", "{}").replace("1600000000.25", "null"));
    r("timestamp string", raw("gauge", "1", "{}").replace("1600000000.25", "\"1\""));
    r("number 01 (invalid JSON)", raw("gauge", "01", "{}"));
    r("number 1. (invalid JSON)", raw("gauge", "1.", "{}"));
    r("number .5 (invalid JSON)", raw("gauge", ".5", "{}"));
    r("number +1 (invalid JSON)", raw("gauge", "+1", "{}"));
    r("number 1e (invalid JSON)", raw("gauge", "1e", "{}"));
    r("trailing comma", r#"{"metric": "m", "type": "gauge", "value": 1, "timestamp": 1,}"#.into());
    r("trailing data", format!("{} {{}}", raw("gauge", "1", "{}")));
    r("not an object", "[1, 2]".into());
    r("unknown type", raw("timer", "1", "{}"));
    r(
        "type with escape (\\u0063ount)",
        r#"{"metric": "m", "type": "\u0063ount", "value": 1, "timestamp": 1}"#.into(),
    );
    r(
        "nesting 40 deep in an unknown key",
        format!(
            r#"{{"metric": "m", "type": "gauge", "value": 1, "timestamp": 1, "x": {}{}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        ),
    );
    r(
        "whitespace everywhere",
        " {\n\t\"metric\" :\"m\" ,\r\n\"type\":\"gauge\",\"value\":1,\"timestamp\":1 } \n".into(),
    );

    rows.push(raw_row_bytes(
        "not UTF-8 in a string",
        b"{\"metric\": \"\xff\", \"type\": \"count\", \"value\": 1, \"timestamp\": 1}",
    ));
    rows.push(raw_row_bytes(
        "not UTF-8 in an unknown key's number",
        b"{\"metric\": \"m\", \"type\": \"count\", \"value\": 1, \"timestamp\": 1, \"x\": 1\xff}",
    ));
    let mut w = |case: &str, input: &str| rows.push(wrapped_row(case, input));
    w("wrapped: interval 10.0", r#"{"metric": "m", "points": [[1, 1]], "type": "rate", "interval": 10.0}"#);
    w("wrapped: interval null", r#"{"metric": "m", "points": [[1, 1]], "type": "rate", "interval": null}"#);
    w("wrapped: interval 1.5", r#"{"metric": "m", "points": [[1, 1]], "type": "rate", "interval": 1.5}"#);
    w("wrapped: host null", r#"{"metric": "m", "points": [[1, 1]], "type": "gauge", "host": null}"#);
    w("wrapped: point NaN", r#"{"metric": "m", "points": [[1, NaN]], "type": "gauge"}"#);
    w("wrapped: point null", r#"{"metric": "m", "points": [[1, null]], "type": "gauge"}"#);
    w("wrapped: point [1, 2, 3]", r#"{"metric": "m", "points": [[1, 2, 3]], "type": "gauge"}"#);
    w(
        "wrapped: 9 points",
        r#"{"metric": "m", "points": [[1,1],[1,1],[1,1],[1,1],[1,1],[1,1],[1,1],[1,1],[1,1]], "type": "count"}"#,
    );
    w("wrapped: tags null", r#"{"metric": "m", "tags": null, "points": [[1, 1]], "type": "gauge"}"#);
    w("wrapped: tag not a string", r#"{"metric": "m", "tags": [1], "points": [[1, 1]], "type": "gauge"}"#);
    w("wrapped: no points", r#"{"metric": "m", "type": "gauge"}"#);
    w(
        "wrapped: duplicate tags key",
        r#"{"metric": "m", "tags": ["a:b"], "tags": ["c:d"], "points": [[1, 1]], "type": "gauge"}"#,
    );

    let mut l = |case: &str, input: &str| rows.push(log_row(case, input));
    l("log: ddtags null", r#"{"date": "2012-12-21T00:00:00+00:00", "ddtags": null}"#);
    l("log: ddtags empty string", r#"{"date": "2012-12-21T00:00:00+00:00", "ddtags": ""}"#);
    l("log: ddtags object", r#"{"date": "2012-12-21T00:00:00+00:00", "ddtags": {}}"#);
    l("log: date a number", r#"{"date": 1, "ddtags": []}"#);
    l(
        "log: extras overriding message (string)",
        r#"{"date": "2012-12-21T00:00:00+00:00", "message": "formatted", "asctime": "x", "taskName": null}"#,
    );
    l("log: duplicate key", r#"{"date": "2012-12-21T00:00:00+00:00", "level": "INFO", "level": "ERROR"}"#);
    l(
        "log: extra with emoji",
        r#"{"date": "2012-12-21T00:00:00+00:00", "message": {"msg": "\ud83e\udd89"}}"#,
    );
    rows
}

fn golden_rows() -> Vec<Row> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .expect("data dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8 name"))
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut rows = Vec::new();
    for name in names {
        let text = golden(&name);
        if name == "raw_metrics_fixture.json" {
            // The original suite's fixture: an array of {key, score, value}; each value a record.
            let records: Vec<serde_json_records::Entry> = serde_json_records::entries(&text);
            for (i, e) in records.iter().enumerate() {
                rows.push(raw_row(&format!("{name}[{i}]"), &e.value));
            }
        } else if name.starts_with("raw_") {
            rows.push(raw_row(&name, &text));
        } else if name.starts_with("wrapped_") {
            rows.push(wrapped_row(&name, &text));
        } else if name.starts_with("log_") {
            rows.push(log_row(&name, &text));
        }
    }
    rows
}

/// The fixture's `value` strings, read with the core's scanner (the fixture is not a record).
mod serde_json_records {
    use chouette_core::wire::json::{Scanner, Token};

    pub struct Entry {
        pub value: String,
    }

    pub fn entries(text: &str) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut sc = Scanner::new(text.as_bytes()).expect("utf-8");
        assert_eq!(sc.value().expect("array"), Token::ArrayStart);
        while sc.next_element().expect("element") {
            assert_eq!(sc.value().expect("object"), Token::ObjectStart);
            while let Some(key) = sc.next_key().expect("key") {
                match (key.as_raw(), sc.value().expect("value")) {
                    ("value", Token::Str(s)) => {
                        let mut buf = vec![0u8; s.as_raw().len()];
                        out.push(Entry { value: s.decode(&mut buf).expect("decodes").to_owned() });
                    }
                    (_, Token::ObjectStart | Token::ArrayStart) => sc.skip_container().expect("skip"),
                    _ => {}
                }
            }
        }
        out
    }
}

/// `not_json` → `NotJson`: how a `ParseError` variant named by its reason prints in `Debug`.
fn reason_variant(reason: &str) -> String {
    reason
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn cell(r: &Result<String, String>) -> String {
    let text = match r {
        Ok(v) => format!("ok {v}"),
        Err(e) => format!("**refused** {e}"),
    };
    text.replace('|', "\\|").replace('\n', "\\n")
}

fn shorten(s: &str, max: usize) -> String {
    let s = s.replace('|', "\\|").replace('\n', "\\n").replace('\r', "\\r").replace('\t', "\\t");
    if s.chars().count() <= max {
        s
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}…")
    }
}

/// Cases where the two disagree, as measured when the comparison was written (serde-json-core
/// 0.7.0). A change here means a parser's behaviour changed: update the README's figures too.
const EXPECTED_DISAGREEMENTS: &[&str] = &[
    "raw_client_escapes.json",
    "raw_client_set_members.json",
    "raw_escapes_unicode.json",
    "raw_set_mixed.json",
    "raw_tag_scalars.json",
    "wrapped_escapes.json",
    "value true (Python bool is int)",
    "set mixed (client set {\"Alice\", 3})",
    "set with null member",
    "set with bool member",
    "set of 65 strings",
    "string surrogate pair (emoji)",
    "string raw control char (invalid JSON)",
    "escaped key (m\\u0065tric)",
    "tag int",
    "tag float",
    "tag bool",
    "duplicate top-level key (last wins)",
    "unknown key, invalid literal",
    "number 01 (invalid JSON)",
    "number 1. (invalid JSON)",
    "number .5 (invalid JSON)",
    "number +1 (invalid JSON)",
    "nesting 40 deep in an unknown key",
    "not UTF-8 in an unknown key's number",
    "wrapped: duplicate tags key",
];

#[test]
fn scanner_and_serde_json_core_side_by_side() {
    let golden = golden_rows();
    let shapes = shape_rows();
    let mut differ = Vec::new();
    for (title, rows) in [("Golden files (core/tests/data)", &golden), ("Shapes", &shapes)] {
        println!("\n### {title}\n");
        println!("| case | input | scanner (core) | serde-json-core | verdict |");
        println!("|---|---|---|---|---|");
        for row in rows.iter() {
            println!(
                "| {} | `{}` | {} | {} | {} |",
                row.case,
                shorten(&row.input, 60),
                cell(&row.scanner),
                cell(&row.serde),
                row.verdict()
            );
            if !row.agrees() {
                differ.push(row.case.clone());
            }
        }
        let agree = rows.iter().filter(|r| r.agrees()).count();
        let refused: Vec<&Row> = rows.iter().filter(|r| r.verdict() == "both refuse").collect();
        // The agent counts and dead-letters refusals by reason; serde-json-core's errors name none.
        let same_reason = refused
            .iter()
            .filter(|r| match (&r.scanner, &r.serde) {
                (Err(a), Err(b)) => {
                    a.split(' ').next().is_some_and(|reason| b.contains(&reason_variant(reason)))
                }
                _ => false,
            })
            .count();
        println!(
            "\n{agree} of {} agree; of the {} both refuse, {same_reason} with the core's reason.",
            rows.len(),
            refused.len()
        );
    }
    let expected: Vec<String> = EXPECTED_DISAGREEMENTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(differ, expected, "the set of disagreements changed");
}

/// serde-json-core skips an unknown value by recursion, one stack frame per level, with no limit;
/// the scanner refuses past 32 levels. A record nesting 100,000 deep in an unknown key overflows a
/// 1 MiB stack: run in a child process, which dies.
#[test]
fn deep_nesting_overflows_serde_json_core() {
    if std::env::var_os("JSON_EVAL_NESTING_CHILD").is_some() {
        let depth = 100_000;
        let input = format!(
            r#"{{"metric": "m", "type": "gauge", "value": 1, "timestamp": 1, "x": {}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let mut scratch = vec![0u8; raw_scratch_len(input.len())];
        assert_eq!(parse_raw_metric(input.as_bytes(), &mut scratch).unwrap_err().reason(), "not_json");
        let outcome = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let mut scratch = vec![0u8; raw_scratch_len(input.len())];
                let ok = proto::parse_raw(input.as_bytes(), &mut scratch).is_ok();
                ok
            })
            .expect("thread")
            .join();
        println!("serde-json-core returned: {outcome:?}");
        return;
    }
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "deep_nesting_overflows_serde_json_core", "--nocapture", "--test-threads=1"])
        .env("JSON_EVAL_NESTING_CHILD", "1")
        .output()
        .expect("child runs");
    let stderr = String::from_utf8_lossy(&child.stderr);
    println!("child: {:?}, stderr: {}", child.status, stderr.trim());
    assert!(!child.status.success() && stderr.contains("overflowed its stack"), "{stderr}");
}
