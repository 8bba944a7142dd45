//! Golden-file and property tests for the record formats: raw metrics, wrapped metrics, logs.
//! The golden files (`tests/data/`, listed in its README) were written by CPython's `json` module
//! the way the original Chouette-IoT writes them (`tests/data/gen_goldens.py`).

use chouette_core::wire::json::{Scanner, Token};
use chouette_core::wire::log::{encode_log_for_intake, parse_log, parse_log_date};
use chouette_core::wire::raw::{
    encode_raw_metric, parse_raw_metric, raw_scratch_len, Number, RawMetric, RawRecord, RawValue,
};
use chouette_core::wire::wrapped::{encode_wrapped, parse_wrapped};
use chouette_core::wire::EncodeError;
use chouette_core::wire::{Field, ParseError};
use chouette_core::{Member, MetricName, MetricType, OutputType, Tag, Timestamp, Value, Wrapped};
use proptest::prelude::*;

fn golden(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

fn with_raw<T>(input: &str, f: impl FnOnce(Result<RawMetric<'_>, ParseError>) -> T) -> T {
    let mut scratch = vec![0u8; raw_scratch_len(input.len())];
    f(parse_raw_metric(input.as_bytes(), &mut scratch))
}

fn members(value: &Value<'_>) -> Vec<Member<'static>> {
    let Value::Set(set) = value else { panic!("not a set: {value:?}") };
    set.iter()
        .map(|m| match m {
            Member::Str(s) => Member::Str(Box::leak(s.to_owned().into_boxed_str())),
            Member::Num(n) => Member::Num(n),
        })
        .collect()
}

#[test]
fn raw_shapes_parse_to_the_expected_fields() {
    let cases: &[(&str, &str, MetricType, f64, &[Tag<'_>])] = &[
        ("raw_int_ts.json", "my.count", MetricType::Count, 1600000000.0, &[Tag::new("k", "v")]),
        ("raw_float_ts.json", "my.gauge", MetricType::Gauge, 1600000000.25, &[Tag::new("k", "v")]),
        ("raw_no_tags.json", "my.rate", MetricType::Rate, 1600000000.5, &[]),
        ("raw_null_tags.json", "my.hist", MetricType::Histogram, 1600000001.0, &[]),
        ("raw_empty_tags.json", "my.count", MetricType::Count, 1600000002.125, &[]),
        (
            "raw_escapes_unicode.json",
            "café.\"quoted\"\\",
            MetricType::Distribution,
            1600000005.0,
            &[Tag::new("münchen", "🦉\n\t"), Tag::new("path", "a/b")],
        ),
        (
            "raw_tag_scalars.json",
            "t",
            MetricType::Gauge,
            1600000006.0,
            &[Tag::new("i", "1"), Tag::new("f", "1.0"), Tag::new("t", "True"), Tag::new("n", "None")],
        ),
        ("raw_extra_keys.json", "x", MetricType::Count, 1600000007.0, &[]),
        ("raw_keys_reordered.json", "reordered", MetricType::Gauge, 1600000008.0, &[Tag::new("k", "v")]),
        ("raw_compact.json", "c", MetricType::Count, 1.0, &[]),
        ("raw_set_strings.json", "users", MetricType::Set, 1600000003.0, &[Tag::new("app", "web")]),
        ("raw_set_mixed.json", "ids", MetricType::Set, 1600000004.0, &[]),
    ];
    for &(file, name, kind, ts, tags) in cases {
        with_raw(&golden(file), |m| {
            let m = m.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!((m.name, m.kind, m.timestamp), (name, kind, Timestamp(ts)), "{file}");
            assert_eq!(&m.tags[..], tags, "{file}");
            assert_eq!(m.sample().tags, tags, "{file}");
        });
    }
    let value = |file: &str| with_raw(&golden(file), |m| m.map(|m| format!("{:?}", m.value)));
    assert_eq!(value("raw_int_ts.json").unwrap(), "Number(2.0)");
    assert_eq!(value("raw_float_ts.json").unwrap(), "Number(0.25)");
    assert_eq!(value("raw_escapes_unicode.json").unwrap(), "Number(-1.5e-5)");
    with_raw(&golden("raw_set_strings.json"), |m| {
        let want = [Member::Str("Alice"), Member::Str("Bob"), Member::Str("Alice")];
        assert_eq!(members(&m.unwrap().value), want);
    });
    with_raw(&golden("raw_set_mixed.json"), |m| {
        let want = [Member::Num(1.0), Member::Str("2"), Member::Num(3.5), Member::Str("[1, 2]")];
        assert_eq!(members(&m.unwrap().value), want);
    });
}

#[test]
fn raw_poison_records_are_refused_with_their_reason() {
    let cases: &[(&str, &str)] = &[
        ("raw_poison_not_json.json", "not_json"),
        ("raw_poison_array.json", "not_an_object"),
        ("raw_poison_missing_field.json", "missing_field"),
        ("raw_poison_missing_timestamp.json", "missing_field"),
        ("raw_poison_nan_value.json", "non_finite"),
        ("raw_poison_infinity_ts.json", "non_finite"),
        ("raw_poison_string_value.json", "non_numeric_value"),
        ("raw_poison_list_value.json", "non_numeric_value"),
        ("raw_poison_set_not_list.json", "set_not_a_list"),
        ("raw_poison_set_nested.json", "bad_set_member"),
        ("raw_poison_unknown_type.json", "unknown_type"),
        ("raw_poison_negative_ts.json", "negative_timestamp"),
        ("raw_poison_string_ts.json", "wrong_field_type"),
        ("raw_poison_empty_name.json", "empty_name"),
        ("raw_poison_long_name.json", "name_too_long"),
        ("raw_poison_too_many_tags.json", "too_many_tags"),
        ("raw_poison_long_tag.json", "tag_too_long"),
        ("raw_poison_object_tag.json", "bad_tag"),
        ("raw_poison_trailing.json", "trailing_data"),
    ];
    for &(file, reason) in cases {
        let err = with_raw(&golden(file), |m| m.expect_err(file));
        assert_eq!(err.reason(), reason, "{file}: {err}");
    }
    let exact = |file: &str| with_raw(&golden(file), |m| m.expect_err(file));
    assert_eq!(exact("raw_poison_missing_field.json"), ParseError::MissingField(Field::Metric));
    assert_eq!(exact("raw_poison_missing_timestamp.json"), ParseError::MissingField(Field::Timestamp));
    assert_eq!(exact("raw_poison_nan_value.json"), ParseError::NonFinite(Field::Value));
    assert_eq!(exact("raw_poison_infinity_ts.json"), ParseError::NonFinite(Field::Timestamp));
    assert_eq!(exact("raw_poison_long_name.json"), ParseError::NameTooLong { len: 201 });
    assert_eq!(exact("raw_poison_long_tag.json"), ParseError::TagTooLong { len: 201 });
    assert!(matches!(
        exact("raw_poison_not_json.json"),
        ParseError::NotJson(e) if e.offset == 0
    ));
}

/// compat §8.2 `_cast_to_merged_metrics`.
#[test]
fn merger_cast_cases() {
    with_raw("Not a JSON...", |m| assert!(matches!(m, Err(ParseError::NotJson(_)))));
    with_raw(r#"{"msg": "Not a metric"}"#, |m| assert_eq!(m, Err(ParseError::MissingField(Field::Metric))));
    with_raw(r#"{"metric":"name","type":"count","value":1,"timestamp":1}"#, |m| {
        let m = m.unwrap();
        assert_eq!((m.name, m.kind), ("name", MetricType::Count));
        assert_eq!((m.value, m.timestamp), (Value::Number(1.0), Timestamp(1.0)));
        assert!(m.tags.is_empty());
    });
}

/// The five records of the original suite's `raw_metrics_fixture.json` (compat §8.2).
#[test]
fn original_raw_fixture_parses() {
    let text = golden("raw_metrics_fixture.json");
    // The fixture is a JSON array of {key, score, value}; read it with our own scanner.
    let mut values = Vec::new();
    let mut sc = Scanner::new(text.as_bytes()).unwrap();
    assert_eq!(sc.value().unwrap(), Token::ArrayStart);
    while sc.next_element().unwrap() {
        assert_eq!(sc.value().unwrap(), Token::ObjectStart);
        while let Some(key) = sc.next_key().unwrap() {
            match (key.as_raw(), sc.value().unwrap()) {
                ("value", Token::Str(s)) => {
                    let mut buf = vec![0u8; s.as_raw().len()];
                    values.push(s.decode(&mut buf).unwrap().to_owned());
                }
                (_, Token::ObjectStart | Token::ArrayStart) => sc.skip_container().unwrap(),
                _ => {}
            }
        }
    }
    sc.finish().unwrap();
    let expected: [(&str, MetricType, f64, f64, &[Tag<'_>]); 5] = [
        ("metric-1", MetricType::Count, 10.0, 10.0, &[]),
        ("metric-2", MetricType::Gauge, 7.0, 12.0, &[]),
        ("metric-3", MetricType::Gauge, 12.0, 23.0, &[Tag::new("very", "important")]),
        ("metric-4", MetricType::Gauge, 10.0, 31.0, &[]),
        ("metric-4", MetricType::Gauge, 6.0, 31.0, &[]),
    ];
    assert_eq!(values.len(), 5);
    for (value, (name, kind, v, ts, tags)) in values.iter().zip(expected) {
        with_raw(value, |m| {
            let m = m.unwrap();
            assert_eq!((m.name, m.kind, m.value), (name, kind, Value::Number(v)));
            assert_eq!((m.timestamp, &m.tags[..]), (Timestamp(ts), tags));
        });
    }
}

fn encode_wrapped_string(w: &Wrapped<'_>) -> String {
    let mut buf = vec![0u8; 1024];
    let n = encode_wrapped(w, &mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn wrapped_goldens_encode_and_decode() {
    // (file, name, type, tags, timestamp, value, interval)
    type Case<'a> = (&'a str, &'a str, OutputType, &'a [Tag<'a>], f64, f64, Option<u32>);
    let cases: &[Case<'_>] = &[
        ("wrapped_count.json", "req", OutputType::Count, &[Tag::new("ep", "a")], 1795310771.0, 1.0, Some(10)),
        (
            "wrapped_gauge.json",
            "req.avg",
            OutputType::Gauge,
            &[Tag::new("env", "test"), Tag::new("ep", "a")],
            1795310771.0,
            1.875,
            None,
        ),
        (
            "wrapped_rate.json",
            "req.count",
            OutputType::Rate,
            &[Tag { key: "bare", value: None }],
            1795310770.5,
            0.6,
            Some(10),
        ),
        (
            "wrapped_escapes.json",
            "café\"",
            OutputType::Gauge,
            &[Tag::new("münchen", "🦉"), Tag::new("q", "a\\b\n")],
            1600000000.25,
            -1e-05,
            None,
        ),
    ];
    for &(file, name, kind, tags, ts, value, interval) in cases {
        let text = golden(file);
        let w =
            Wrapped { name: MetricName::plain(name), kind, tags, timestamp: Timestamp(ts), value, interval };
        assert_eq!(encode_wrapped_string(&w), text, "encode {file}");
        let mut scratch = vec![0u8; text.len()];
        let rec = parse_wrapped(text.as_bytes(), &mut scratch).unwrap();
        assert_eq!(rec.wrapped(0), Some(w), "decode {file}");
        assert_eq!(rec.points().len(), 1);
    }
    // A suffixed name writes like the joined name.
    let tags = [Tag::new("env", "test"), Tag::new("ep", "a")];
    let suffixed = Wrapped {
        name: MetricName { base: "req", suffix: Some("avg") },
        kind: OutputType::Gauge,
        tags: &tags,
        timestamp: Timestamp(1795310771.0),
        value: 1.875,
        interval: None,
    };
    assert_eq!(encode_wrapped_string(&suffixed), golden("wrapped_gauge.json"));
}

#[test]
fn wrapped_poison_records_are_refused() {
    let cases: &[(&str, ParseError)] = &[
        ("wrapped_poison_dict_tags.json", ParseError::WrongFieldType(Field::Tags)),
        ("wrapped_poison_histogram.json", ParseError::UnknownType),
        ("wrapped_poison_not_object.json", ParseError::NotAnObject),
    ];
    for (file, want) in cases {
        let text = golden(file);
        assert_eq!(parse_wrapped(text.as_bytes(), &mut []).err(), Some(*want), "{file}");
    }
}

#[test]
fn log_goldens_encode_for_the_intake() {
    let global = [Tag::new("env", "test"), Tag::new("device", "pi")];
    for (name, date) in [
        ("basic", 1795310726.038424),
        ("no_micros", 1356048000.0),
        ("extras", 1600000000.123456),
        ("string_ddtags", 1600000000.5),
    ] {
        let input = golden(&format!("log_{name}.json"));
        let want = golden(&format!("log_{name}.intake.json"));
        let rec = parse_log(input.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rec.date(), Timestamp(date), "{name}");
        let mut buf = vec![0u8; 2048];
        let n = encode_log_for_intake(&rec, &global, Some("myhost"), &mut buf).unwrap();
        assert_eq!(core::str::from_utf8(&buf[..n]).unwrap(), want, "{name}");
        // The intake form is itself a record we read (its ddtags now a joined string).
        let again = parse_log(want.as_bytes()).unwrap();
        assert_eq!(again.date(), rec.date());
    }
    let basic = golden("log_basic.json");
    let rec = parse_log(basic.as_bytes()).unwrap();
    assert_eq!(rec.level().unwrap().borrowed(), Some("INFO"));
    assert_eq!(rec.service().unwrap().borrowed(), Some("svc"));
    assert_eq!(rec.ddsource().unwrap().borrowed(), Some("svc"));
    assert_eq!(rec.ddtags().iter().map(|t| t.as_raw()).collect::<Vec<_>>(), ["a:b"]);
    assert_eq!(rec.field("message"), Some(r#"{"msg": "hello %s"}"#));
    assert_eq!(rec.fields().count(), 6);
}

#[test]
fn log_poison_records_are_refused() {
    let cases: &[(&str, ParseError)] = &[
        ("log_poison_no_date.json", ParseError::MissingField(Field::Date)),
        ("log_poison_bad_date.json", ParseError::BadDate),
        ("log_poison_list_ddtags.json", ParseError::BadTag),
        ("log_poison_not_object.json", ParseError::NotAnObject),
    ];
    for (file, want) in cases {
        assert_eq!(parse_log(golden(file).as_bytes()).err(), Some(*want), "{file}");
    }
}

#[test]
fn log_sender_case_from_the_original_suite() {
    // compat §8.5: GLOBAL_TAGS ["host:pytest"], host "test_host".
    let input = br#"{"date": "2012-12-21T00:00:00+00:00", "message": {"msg": "Hello, world!"}, "level": "INFO", "ddsource": "test", "service": "test", "ddtags": []}"#;
    let rec = parse_log(input).unwrap();
    assert_eq!(rec.date(), parse_log_date("2012-12-21T00:00:00+00:00").unwrap());
    let mut buf = [0u8; 512];
    let n = encode_log_for_intake(&rec, &[Tag::new("host", "pytest")], Some("test_host"), &mut buf).unwrap();
    assert_eq!(
        core::str::from_utf8(&buf[..n]).unwrap(),
        r#"{"date": "2012-12-21T00:00:00+00:00", "message": {"msg": "Hello, world!"}, "level": "INFO", "ddsource": "test", "service": "test", "ddtags": "host:pytest", "host": "test_host"}"#
    );
    assert!(matches!(parse_log(b"So wrong!"), Err(ParseError::NotJson(_))));
}

fn encode_raw_string(record: &RawRecord<'_>) -> String {
    let mut buf = vec![0u8; 16];
    let len = match encode_raw_metric(record, &mut buf) {
        Err(EncodeError::BufferTooSmall { required }) => {
            buf.resize(required, 0);
            encode_raw_metric(record, &mut buf).expect("fits the size it asked for")
        }
        other => other.expect("encodes"),
    };
    String::from_utf8(buf[..len].to_vec()).expect("utf-8")
}

/// The record as the parser gives it back: every number a float, members and samples as
/// members, tags as `key:value` tags.
fn expected_value<'a>(value: &RawValue<'a>, members: &mut Vec<Member<'a>>) -> Option<f64> {
    match value {
        RawValue::Number(n) => return Some(n.as_f64()),
        RawValue::Members(m) => members.extend_from_slice(m),
        RawValue::Samples(s) => members.extend(s.iter().map(|n| Member::Num(n.as_f64()))),
        RawValue::MemberTexts(_) => unreachable!("not in these tests"),
    }
    None
}

/// `parse(encode(x)) == x`, field by field; `Err` names the field that differs.
fn check_parses_back(record: &RawRecord<'_>, text: &str) -> Result<(), String> {
    with_raw(text, |parsed| {
        let parsed = parsed.map_err(|e| format!("{e}: {text}"))?;
        let tags: Vec<Tag<'_>> = record.tags.iter().map(|(k, v)| Tag::new(k, v)).collect();
        let mut members = Vec::new();
        let want_number = expected_value(&record.value, &mut members);
        let value_ok = match (want_number, &parsed.value) {
            (Some(want), Value::Number(got)) => want == *got,
            (None, Value::Set(got) | Value::Samples(got)) => got.iter().eq(members.iter().copied()),
            _ => false,
        };
        let checks = [
            ("name", parsed.name == record.name),
            ("kind", parsed.kind == record.kind),
            ("timestamp", parsed.timestamp == Timestamp(record.timestamp)),
            ("tags", parsed.tags[..] == tags[..]),
            ("value", value_ok),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((field, _)) => Err(format!("{field} differs: {text} parsed as {parsed:?}")),
            None => Ok(()),
        }
    })
}

/// The real Python client's output (`gen_goldens.py`: `ChouetteClient._prepare_metric`, then
/// `json.dumps`), byte for byte.
#[test]
fn raw_encoder_matches_the_python_client_goldens() {
    let members = [
        Member::Str("Alice"),
        Member::Str("Bob"),
        Member::Num(3.0),
        Member::Num(2.5),
        Member::Str("caf\u{e9}"),
    ];
    let samples = [Number::Int(1), Number::Float(2.5), Number::Int(1000), Number::Float(-0.125)];
    let cases: &[(&str, RawRecord<'_>)] = &[
        (
            "raw_client_count.json",
            RawRecord {
                name: "my.count",
                kind: MetricType::Count,
                value: RawValue::Number(Number::Int(2)),
                timestamp: 1600000000.25,
                tags: &[("k", "v")],
            },
        ),
        (
            "raw_client_gauge_float.json",
            RawRecord {
                name: "sensor.temp",
                kind: MetricType::Gauge,
                value: RawValue::Number(Number::Float(0.1)),
                timestamp: 1763780437.123456,
                tags: &[("env", "prod"), ("host", "pi-kitchen")],
            },
        ),
        (
            "raw_client_rate_no_tags.json",
            RawRecord {
                name: "req.rate",
                kind: MetricType::Rate,
                value: RawValue::Number(Number::Float(1.5e-05)),
                timestamp: 1763780437.5,
                tags: &[],
            },
        ),
        (
            "raw_client_histogram_exponent.json",
            RawRecord {
                name: "big",
                kind: MetricType::Histogram,
                value: RawValue::Number(Number::Float(1e16)),
                timestamp: 1763780437.000001,
                tags: &[],
            },
        ),
        (
            "raw_client_negative_int.json",
            RawRecord {
                name: "delta",
                kind: MetricType::Count,
                value: RawValue::Number(Number::Int(-9007199254740993)),
                timestamp: 1763780437.0,
                tags: &[("sign", "minus")],
            },
        ),
        (
            "raw_client_subsecond_ts.json",
            RawRecord {
                name: "precise",
                kind: MetricType::Gauge,
                value: RawValue::Number(Number::Float(2.0)),
                timestamp: 1763780437.1234567,
                tags: &[],
            },
        ),
        (
            "raw_client_set_members.json",
            RawRecord {
                name: "users",
                kind: MetricType::Set,
                value: RawValue::Members(&members),
                timestamp: 1763780438.25,
                tags: &[("app", "web")],
            },
        ),
        (
            "raw_client_histogram_samples.json",
            RawRecord {
                name: "latency",
                kind: MetricType::Histogram,
                value: RawValue::Samples(&samples),
                timestamp: 1763780439.75,
                tags: &[("route", "/pay")],
            },
        ),
        (
            "raw_client_escapes.json",
            RawRecord {
                name: "caf\u{e9}.\"quoted\"\\",
                kind: MetricType::Distribution,
                value: RawValue::Number(Number::Int(-7)),
                timestamp: 1763780440.001,
                tags: &[("m\u{fc}nchen", "\u{1f989}\n\t"), ("path", "a/b"), ("ctl", "\u{1}\u{7f}")],
            },
        ),
    ];
    for (file, record) in cases {
        let text = encode_raw_string(record);
        assert_eq!(text, golden(file), "{file}");
        check_parses_back(record, &golden(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn raw_encoder_member_texts_are_written_as_given() {
    let texts = ["\"a\"", "1", "2.5"];
    let record = RawRecord {
        name: "s",
        kind: MetricType::Set,
        value: RawValue::MemberTexts(&texts),
        timestamp: 10.5,
        tags: &[],
    };
    assert_eq!(
        encode_raw_string(&record),
        r#"{"metric": "s", "type": "set", "value": ["a", 1, 2.5], "timestamp": 10.5, "tags": {}}"#
    );
}

#[test]
fn raw_encoder_refusals() {
    let record = |value, timestamp| RawRecord {
        name: "m",
        kind: MetricType::Gauge,
        value: RawValue::Number(value),
        timestamp,
        tags: &[],
    };
    let mut buf = [0u8; 256];
    assert_eq!(
        encode_raw_metric(&record(Number::Float(f64::NAN), 1.0), &mut buf),
        Err(EncodeError::NonFinite)
    );
    assert_eq!(
        encode_raw_metric(&record(Number::Int(1), f64::INFINITY), &mut buf),
        Err(EncodeError::NonFinite)
    );
    let ok = record(Number::Int(1), 1.0);
    let text = r#"{"metric": "m", "type": "gauge", "value": 1, "timestamp": 1.0, "tags": {}}"#;
    assert_eq!(
        encode_raw_metric(&ok, &mut buf[..10]),
        Err(EncodeError::BufferTooSmall { required: text.len() })
    );
    assert_eq!(encode_raw_metric(&ok, &mut buf[..text.len()]), Ok(text.len()));
}

fn text_strategy() -> impl Strategy<Value = String> {
    // Printable ASCII, escapes, controls, non-ASCII and astral characters; no colon.
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => proptest::sample::select(vec!['"', '\\', '\n', '\t', '\u{1}', '/', ' ', 'é', '€', '🦉', '\u{7f}', '.']),
            1 => any::<char>().prop_filter("no colon", |c| *c != ':'),
        ],
        1..20,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (-1_000_000i64..1_000_000).prop_map(|v| v as f64),
        (0u32..1_000_000).prop_map(|v| v as f64 / 1000.0),
    ]
}

fn number_strategy() -> impl Strategy<Value = Number> {
    prop_oneof![any::<i64>().prop_map(Number::Int), finite().prop_map(Number::Float)]
}

/// A type, its number or samples, and for a set its members (a string, or a number).
type RawValueParts = (MetricType, Vec<Number>, Vec<(String, Option<f64>)>);

fn raw_value_strategy() -> impl Strategy<Value = RawValueParts> {
    let kinds = vec![
        MetricType::Count,
        MetricType::Gauge,
        MetricType::Rate,
        MetricType::Histogram,
        MetricType::Distribution,
    ];
    prop_oneof![
        (proptest::sample::select(kinds), number_strategy()).prop_map(|(k, n)| (k, vec![n], vec![])),
        (
            proptest::sample::select(vec![MetricType::Histogram, MetricType::Distribution]),
            proptest::collection::vec(number_strategy(), 2..8)
        )
            .prop_map(|(k, s)| (k, s, vec![])),
        proptest::collection::vec(
            prop_oneof![
                text_strategy().prop_map(|t| (t, None)),
                finite().prop_map(|n| (String::new(), Some(n)))
            ],
            0..8
        )
        .prop_map(|m| (MetricType::Set, vec![], m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn raw_round_trips(
        name in text_strategy(),
        (kind, numbers, set) in raw_value_strategy(),
        tags in proptest::collection::btree_map(text_strategy(), text_strategy(), 0..6),
        ts in prop_oneof![0.0f64..4e9, (0u64..4_000_000_000_000_000).prop_map(|v| v as f64 / 1e6), finite().prop_map(f64::abs)],
    ) {
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let members: Vec<Member<'_>> =
            set.iter().map(|(t, n)| n.map_or(Member::Str(t), Member::Num)).collect();
        let value = match (kind, numbers.as_slice()) {
            (MetricType::Set, _) => RawValue::Members(&members),
            (_, [one]) => RawValue::Number(*one),
            (_, many) => RawValue::Samples(many),
        };
        let record = RawRecord { name: &name, kind, value, timestamp: ts, tags: &tags };
        let text = encode_raw_string(&record);
        prop_assert_eq!(check_parses_back(&record, &text), Ok(()));
    }

    #[test]
    fn wrapped_round_trips(
        name in text_strategy(),
        tags in proptest::collection::vec((text_strategy(), proptest::option::of(text_strategy())), 0..6),
        ts in prop_oneof![0.0f64..4e9, (0u64..4_000_000_000).prop_map(|v| v as f64)],
        value in finite(),
        kind in proptest::sample::select(vec![OutputType::Count, OutputType::Gauge, OutputType::Rate]),
        interval in proptest::option::of(1u32..100_000),
    ) {
        let tags: Vec<Tag<'_>> = tags.iter().map(|(k, v)| Tag { key: k, value: v.as_deref() }).collect();
        let w = Wrapped { name: MetricName::plain(&name), kind, tags: &tags, timestamp: Timestamp(ts), value, interval };
        let text = encode_wrapped_string(&w);
        let mut scratch = vec![0u8; text.len()];
        let rec = parse_wrapped(text.as_bytes(), &mut scratch);
        if name.len() > chouette_core::limits::MAX_NAME_BYTES {
            let too_long = matches!(rec, Err(ParseError::NameTooLong { .. }));
            prop_assert!(too_long);
        } else {
            let rec = rec.map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(rec.wrapped(0), Some(w));
        }
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut scratch = vec![0u8; raw_scratch_len(input.len())];
        let _ = parse_raw_metric(&input, &mut scratch);
        let _ = parse_wrapped(&input, &mut scratch);
        let _ = parse_log(&input);
    }

    #[test]
    fn parsers_never_panic_on_mutated_records(
        which in 0usize..3,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let file = ["raw_escapes_unicode.json", "wrapped_escapes.json", "log_extras.json"][which];
        let mut input = golden(file).into_bytes();
        let i = at.index(input.len());
        input[i] = byte;
        input.truncate(cut.index(input.len() + 1).max(i));
        let mut scratch = vec![0u8; raw_scratch_len(input.len())];
        let _ = parse_raw_metric(&input, &mut scratch);
        let _ = parse_wrapped(&input, &mut scratch);
        let _ = parse_log(&input);
    }

    #[test]
    fn small_scratch_is_refused_or_enough(len in 0usize..300) {
        let text = golden("raw_escapes_unicode.json");
        let mut scratch = vec![0u8; len];
        let outcome = match parse_raw_metric(text.as_bytes(), &mut scratch) {
            Ok(m) => Ok(m.name == "café.\"quoted\"\\"),
            Err(ParseError::ScratchTooSmall { required }) => Ok(required > len),
            Err(e) => Err(e),
        };
        prop_assert_eq!(outcome, Ok(true));
    }
}
