//! DogStatsD parser: each grammar feature and each malformed shape with exact expectations, and
//! parse(render(x)) == x over generated messages of every kind.

use chouette_core::wire::dogstatsd::{
    parse_datagram, parse_message, render, AlertType, Kind, Message, ParseError, Priority, Status, Tags,
    Value, Values,
};
use proptest::prelude::*;

fn ok(line: &str) -> Message<'_> {
    match parse_message(line.as_bytes()) {
        Ok(m) => m,
        Err(e) => panic!("{line:?} refused: {e}"),
    }
}

fn err(line: &[u8]) -> ParseError {
    match parse_message(line) {
        Ok(m) => panic!("{line:?} accepted: {m:?}"),
        Err(e) => e,
    }
}

fn numbers(m: &Message<'_>) -> Vec<f64> {
    match m {
        Message::Metric { values, .. } => values
            .iter()
            .map(|v| match v {
                Value::Number(n) => n,
                Value::Member(s) => panic!("member {s}"),
            })
            .collect(),
        _ => panic!("not a metric"),
    }
}

fn tags<'a>(m: &Message<'a>) -> Vec<&'a str> {
    match m {
        Message::Metric { tags, .. } | Message::Event { tags, .. } | Message::ServiceCheck { tags, .. } => {
            tags.iter().collect()
        }
    }
}

fn metric<'a>(name: &'a str, values: &'a str, kind: Kind) -> Message<'a> {
    Message::Metric {
        name,
        values: Values::new(values, kind).expect("valid values"),
        kind,
        sample_rate: None,
        tags: Tags::EMPTY,
        container_id: None,
        timestamp: None,
    }
}

// ---- grammar features ------------------------------------------------------------------------

#[test]
fn every_type() {
    for (line, kind) in [
        ("a:1|c", Kind::Count),
        ("a:1|g", Kind::Gauge),
        ("a:1|ms", Kind::Timer),
        ("a:1|h", Kind::Histogram),
        ("a:1|s", Kind::Set),
        ("a:1|d", Kind::Distribution),
    ] {
        assert_eq!(ok(line), metric("a", "1", kind), "{line}");
    }
}

#[test]
fn a_full_metric_line() {
    let m = ok("app.latency:12.5|ms|@0.5|#env:prod,endpoint:/api|c:abc123|T1700000000");
    assert_eq!(
        m,
        Message::Metric {
            name: "app.latency",
            values: Values::new("12.5", Kind::Timer).unwrap(),
            kind: Kind::Timer,
            sample_rate: Some(0.5),
            tags: Tags::new("env:prod,endpoint:/api"),
            container_id: Some("abc123"),
            timestamp: Some(1_700_000_000),
        }
    );
}

#[test]
fn fields_in_any_order() {
    assert_eq!(ok("a:1|c|T5|#x|@0.25|c:id"), ok("a:1|c|@0.25|#x|c:id|T5"));
}

#[test]
fn value_packing_skips_empty_values() {
    assert_eq!(numbers(&ok("a:21::22:-1.5e3|h")), [21.0, 22.0, -1500.0]);
    assert_eq!(numbers(&ok("a:1:2:3|d|@0.5")), [1.0, 2.0, 3.0]);
}

#[test]
fn a_set_member_keeps_its_colons() {
    let Message::Metric { values, .. } = ok("users:alice:x|s") else { panic!() };
    assert_eq!(values.iter().collect::<Vec<_>>(), [Value::Member("alice:x")]);
}

#[test]
fn signed_gauges_are_plain_numbers() {
    // The Agent has no relative gauges: `+3` is 3, `-3` is -3.
    assert_eq!(numbers(&ok("temp:+3|g")), [3.0]);
    assert_eq!(numbers(&ok("temp:-3|g")), [-3.0]);
}

#[test]
fn tags_with_colons_and_empty_tags() {
    assert_eq!(tags(&ok("a:1|c|#url:http://x:80,,canary,")), ["url:http://x:80", "canary"]);
    assert_eq!(tags(&ok("a:1|c|#")), Vec::<&str>::new());
    // Found by the fuzzer: a trailing comma is the same tag set, so the same message.
    assert_eq!(ok("a:1|c|#x,"), ok("a:1|c|#x"));
    assert_ne!(ok("a:1|c|#x,y"), ok("a:1|c|#y,x"));
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(ok("a:1|c|e:it-external|card:high|zzz|#t"), ok("a:1|c|#t"));
}

#[test]
fn container_id_in_both_shapes() {
    let Message::Metric { container_id, .. } = ok("a:1|c|c:ci-abc,in-123") else { panic!() };
    assert_eq!(container_id, Some("ci-abc,in-123"));
}

#[test]
fn a_datagram_of_several_lines() {
    let lines: Vec<_> = parse_datagram(b"a:1|c\nb:2|g\r\n\nbad\n_sc|x|0\n").collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0].bytes, b"a:1|c");
    assert_eq!(lines[1].bytes, b"b:2|g");
    assert_eq!(lines[1].result, Ok(metric("b", "2", Kind::Gauge)));
    assert_eq!(lines[2].bytes, b"bad");
    assert_eq!(lines[2].result, Err(ParseError::MissingValue));
    assert_eq!(lines[3].bytes, b"_sc|x|0");
    assert_eq!(parse_datagram(b"").count(), 0);
    assert_eq!(parse_datagram(b"\n\r\n").count(), 0);
}

#[test]
fn an_event_with_every_field() {
    let m = ok("_e{5,11}:Title|Text\\nline2|d:1700000000|h:pi-4|k:agg|p:low|s:app|t:warning|#a:b,c");
    assert_eq!(
        m,
        Message::Event {
            title: "Title",
            text: "Text\\nline2",
            timestamp: Some(1_700_000_000),
            hostname: Some("pi-4"),
            aggregation_key: Some("agg"),
            priority: Some(Priority::Low),
            source_type_name: Some("app"),
            alert_type: Some(AlertType::Warning),
            tags: Tags::new("a:b,c"),
        }
    );
}

#[test]
fn event_lengths_are_bytes_and_text_may_hold_pipes() {
    let Message::Event { title, text, .. } = ok("_e{5,5}:été|a|b|c") else { panic!() };
    assert_eq!((title, text), ("été", "a|b|c"));
    let Message::Event { text, .. } = ok("_e{1,0}:t|") else { panic!() };
    assert_eq!(text, "");
}

#[test]
fn a_service_check() {
    assert_eq!(
        ok("_sc|db.up|1|d:42|h:pi|#env:prod|m:slow | very"),
        Message::ServiceCheck {
            name: "db.up",
            status: Status::Warning,
            timestamp: Some(42),
            hostname: Some("pi"),
            tags: Tags::new("env:prod"),
            message: Some("slow | very"),
        }
    );
    let Message::ServiceCheck { status, message, .. } = ok("_sc|x|3") else { panic!() };
    assert_eq!((status, message), (Status::Unknown, None));
}

// ---- malformed shapes ------------------------------------------------------------------------

#[test]
fn malformed_metrics() {
    let cases: &[(&[u8], ParseError)] = &[
        (b"a:1|c\xff", ParseError::NotUtf8),
        (b"\xc3(:1|c", ParseError::NotUtf8),
        (b":1|c", ParseError::EmptyName),
        (b"abc", ParseError::MissingValue),
        (b"abc|c", ParseError::MissingValue),
        (b"abc:1", ParseError::MissingType),
        (b"a:1|", ParseError::UnknownType),
        (b"a:1|x", ParseError::UnknownType),
        (b"a:1|C", ParseError::UnknownType),
        (b"a:1|c |#t", ParseError::UnknownType),
        (b"a:|c", ParseError::EmptyValue),
        (b"a::|h", ParseError::EmptyValue),
        (b"a:|s", ParseError::EmptyValue),
        (b"a:abc|g", ParseError::BadValue),
        (b"a:1:x|h", ParseError::BadValue),
        (b"a:1,5|g", ParseError::BadValue),
        (b"a: 1|g", ParseError::BadValue),
        (b"a:NaN|g", ParseError::NonFinite),
        (b"a:inf|h", ParseError::NonFinite),
        (b"a:-infinity|d", ParseError::NonFinite),
        (b"a:1e999|c", ParseError::NonFinite),
        (b"a:1|c|@0", ParseError::BadSampleRate),
        (b"a:1|c|@1.5", ParseError::BadSampleRate),
        (b"a:1|c|@-0.5", ParseError::BadSampleRate),
        (b"a:1|c|@x", ParseError::BadSampleRate),
        (b"a:1|c|@NaN", ParseError::BadSampleRate),
        (b"a:1|c|@", ParseError::BadSampleRate),
        (b"a:1|g|T0", ParseError::BadTimestamp),
        (b"a:1|g|T-5", ParseError::BadTimestamp),
        (b"a:1|g|T1.5", ParseError::BadTimestamp),
        (b"a:1|g|T", ParseError::BadTimestamp),
    ];
    for (line, expected) in cases {
        assert_eq!(err(line), *expected, "{}", String::from_utf8_lossy(line));
    }
}

#[test]
fn malformed_events_and_checks() {
    let cases: &[(&str, ParseError)] = &[
        ("_e{5,4:title|text", ParseError::BadEventHeader),
        ("_e{5}:title|text", ParseError::BadEventHeader),
        ("_e{,4}:title|text", ParseError::BadEventHeader),
        ("_e{-1,4}:title|text", ParseError::BadEventHeader),
        ("_e{5,5}:title|text", ParseError::EventLengthMismatch),
        ("_e{4,4}:title|text", ParseError::EventLengthMismatch),
        ("_e{5,3}:title|text", ParseError::EventLengthMismatch),
        ("_e{1,1}:t|é", ParseError::EventLengthMismatch), // splits a character
        ("_e{99999999999999999999,1}:t|x", ParseError::BadEventHeader),
        ("_e{0,4}:|text", ParseError::EmptyTitle),
        ("_e{1,1}:t|x|p:urgent", ParseError::BadPriority),
        ("_e{1,1}:t|x|t:fatal", ParseError::BadAlertType),
        ("_e{1,1}:t|x|d:0", ParseError::BadTimestamp),
        ("_sc|", ParseError::BadServiceCheck),
        ("_sc||0", ParseError::BadServiceCheck),
        ("_sc|name|", ParseError::BadServiceCheck),
        ("_sc|name|4", ParseError::BadStatus),
        ("_sc|name|ok", ParseError::BadStatus),
        ("_sc|name|0|d:x", ParseError::BadTimestamp),
    ];
    for (line, expected) in cases {
        assert_eq!(err(line.as_bytes()), *expected, "{line}");
    }
}

#[test]
fn every_reason_is_distinct() {
    let mut reasons: Vec<_> = ParseError::ALL.iter().map(|e| e.reason()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), ParseError::ALL.len());
}

// ---- parse(render(x)) == x ------------------------------------------------------------------

const NAME: &str = "[a-zA-Z][a-zA-Z0-9_.]{0,20}";
const TEXT: &str = "[^|\n\r]{0,12}";
const TAGS: &str = "([a-z0-9_:./-]{1,10}(,[a-z0-9_:./-]{1,10}){0,3})?";

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (0u32..1000).prop_map(f64::from),
        -1e6..1e6f64
    ]
}

#[derive(Debug, Clone)]
enum Spec {
    Metric {
        name: String,
        values: String,
        kind: Kind,
        rate: Option<f64>,
        tags: String,
        container: Option<String>,
        ts: Option<u64>,
    },
    Event {
        title: String,
        text: String,
        ts: Option<u64>,
        host: Option<String>,
        key: Option<String>,
        prio: Option<Priority>,
        source: Option<String>,
        alert: Option<AlertType>,
        tags: String,
    },
    Check {
        name: String,
        status: Status,
        ts: Option<u64>,
        host: Option<String>,
        tags: String,
        message: Option<String>,
    },
}

impl Spec {
    fn message(&self) -> Message<'_> {
        match self {
            Spec::Metric { name, values, kind, rate, tags, container, ts } => Message::Metric {
                name,
                values: Values::new(values, *kind).expect("generated values are valid"),
                kind: *kind,
                sample_rate: *rate,
                tags: Tags::new(tags),
                container_id: container.as_deref(),
                timestamp: *ts,
            },
            Spec::Event { title, text, ts, host, key, prio, source, alert, tags } => Message::Event {
                title,
                text,
                timestamp: *ts,
                hostname: host.as_deref(),
                aggregation_key: key.as_deref(),
                priority: *prio,
                source_type_name: source.as_deref(),
                alert_type: *alert,
                tags: Tags::new(tags),
            },
            Spec::Check { name, status, ts, host, tags, message } => Message::ServiceCheck {
                name,
                status: *status,
                timestamp: *ts,
                hostname: host.as_deref(),
                tags: Tags::new(tags),
                message: message.as_deref(),
            },
        }
    }
}

fn field() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9_.:-]{0,10}")
}

fn ts() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(1u64..=u64::MAX)
}

fn spec() -> impl Strategy<Value = Spec> {
    let metric = (
        NAME,
        prop::sample::select(Kind::ALL.to_vec()),
        prop::collection::vec(finite(), 1..5),
        "[a-zA-Z0-9_.:/-]{1,12}",
        proptest::option::of(prop_oneof![Just(1.0), 1e-9..=1.0f64]),
        TAGS,
        proptest::option::of("[a-z0-9,-]{0,12}"),
        ts(),
    )
        .prop_map(|(name, kind, nums, member, rate, tags, container, ts)| {
            let values = if kind == Kind::Set {
                member
            } else {
                nums.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(":")
            };
            Spec::Metric { name, values, kind, rate, tags, container, ts }
        });
    let event = (
        "[^|\n\r]{1,12}",
        "[^\n\r]{0,20}",
        ts(),
        field(),
        field(),
        proptest::option::of(prop_oneof![Just(Priority::Normal), Just(Priority::Low)]),
        field(),
        proptest::option::of(prop::sample::select(vec![
            AlertType::Error,
            AlertType::Warning,
            AlertType::Info,
            AlertType::Success,
        ])),
        TAGS,
    )
        .prop_map(|(title, text, ts, host, key, prio, source, alert, tags)| Spec::Event {
            title,
            text,
            ts,
            host,
            key,
            prio,
            source,
            alert,
            tags,
        });
    let check = (
        "[a-zA-Z0-9_.]{1,12}",
        prop::sample::select(vec![Status::Ok, Status::Warning, Status::Critical, Status::Unknown]),
        ts(),
        field(),
        TAGS,
        proptest::option::of("[^\n\r]{0,20}"),
    )
        .prop_map(|(name, status, ts, host, tags, message)| Spec::Check {
            name,
            status,
            ts,
            host,
            tags,
            message,
        });
    let _ = TEXT;
    prop_oneof![metric, event, check]
}

proptest! {
    #[test]
    fn parse_of_render_is_identity(spec in spec()) {
        let message = spec.message();
        let mut buf = [0u8; 1024];
        let n = render(&message, &mut buf).expect("fits");
        let back = parse_message(&buf[..n]);
        prop_assert_eq!(back, Ok(message), "{}", String::from_utf8_lossy(&buf[..n]));
        // Rendering is canonical: a second round gives the same bytes.
        let mut again = [0u8; 1024];
        let m = render(&back.unwrap(), &mut again).expect("fits");
        prop_assert_eq!(&buf[..n], &again[..m]);
    }

    #[test]
    fn a_datagram_yields_its_lines_in_order(specs in prop::collection::vec(spec(), 1..6), crlf in any::<bool>()) {
        let mut datagram = Vec::new();
        for s in &specs {
            let mut buf = [0u8; 1024];
            let n = render(&s.message(), &mut buf).expect("fits");
            datagram.extend_from_slice(&buf[..n]);
            datagram.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        let parsed: Vec<_> = parse_datagram(&datagram).map(|l| l.result).collect();
        let expected: Vec<_> = specs.iter().map(|s| Ok(s.message())).collect();
        prop_assert_eq!(parsed, expected);
    }
}

proptest! {
    // The parser's fast path for short decimals gives exactly what the standard library's does.
    #[test]
    fn values_read_as_the_standard_parser_reads_them(int in -99_999_999i64..99_999_999, frac in "[0-9]{0,10}") {
        let text = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
        let line = format!("a:{text}|g");
        let expected: f64 = text.parse().expect("a decimal");
        prop_assert_eq!(numbers(&ok(&line))[0].to_bits(), expected.to_bits(), "{}", text);
    }
}
