//! Datadog v1 series payloads and zlib streams: golden files, splitting, and properties
//! (every payload is valid JSON within its limit; every point lands exactly once, in order).
//!
//! Regenerate the series golden files with `UPDATE_GOLDEN=1 cargo test --test wire_series`
//! (then review the diff; `SERIES.md` in `tests/data/` says how they were checked).

use std::path::PathBuf;
use std::string::String;
use std::vec::Vec;

use chouette_core::wire::series::{
    Payload, PushError, SeriesEncoder, SeriesLimits, DEFAULT_MAX_POINTS, EMPTY_PAYLOAD_BYTES,
};
use chouette_core::wire::zlib::{decompress_into, InflateError};
use chouette_core::{MetricName, OutputType, Tag, Timestamp, Wrapped};
use proptest::prelude::*;
use serde_json::Value as Json;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn check_golden(name: &str, got: &[u8]) {
    let path = data(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read(&path).unwrap();
    assert!(
        want == got,
        "{name} differs:\n got: {}\nwant: {}",
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(&want)
    );
}

const EP_A: &[Tag<'static>] = &[Tag::new("ep", "a")];
const CAFE: &[Tag<'static>] = &[Tag::new("lieu", "café"), Tag::new("q", "say \"hi\"")];
const ENV: &[Tag<'static>] = &[Tag::new("env", "test")];
const GLOBAL: &[Tag<'static>] = &[Tag::new("env", "test"), Tag::new("device", "pi")];

fn point(
    base: &'static str,
    suffix: Option<&'static str>,
    kind: OutputType,
    tags: &'static [Tag<'static>],
    ts: f64,
    value: f64,
    interval: Option<u32>,
) -> Wrapped<'static> {
    Wrapped { name: MetricName { base, suffix }, kind, tags, timestamp: Timestamp(ts), value, interval }
}

/// The fixed list behind `series_basic.json` and `series_split_*.json`, with the host of each.
fn basic_points() -> Vec<(Wrapped<'static>, Option<&'static str>)> {
    use OutputType::{Count, Gauge, Rate};
    let h = Some("myhost");
    vec![
        // One count series, two points: grouped into one entry.
        (point("req", None, Count, EP_A, 1795310770.0, 1.0, Some(10)), h),
        (point("req", None, Count, EP_A, 1795310780.0, 3.0, Some(10)), h),
        // Histogram aggregates: suffixed names, a rate with interval, gauges without.
        (point("req.latency", Some("avg"), Gauge, EP_A, 1795310770.0, 0.123, None), h),
        (point("req.latency", Some("count"), Rate, EP_A, 1795310770.0, 0.8, Some(10)), h),
        (point("req.latency", Some("95percentile"), Gauge, EP_A, 1795310770.0, 1e-05, None), h),
        // Unicode name and tag value, a quote to escape; a fractional timestamp, a negative value.
        (point("température.cpu", None, Gauge, CAFE, 1795310771.25, -21.5, None), h),
        // A tag equal to a global tag is written once.
        (point("disk.free", None, Gauge, ENV, 1795310770.0, 123456789.0, None), h),
        (point("disk.free", None, Gauge, ENV, 1795310780.0, 123456000.5, None), h),
        // A count without interval, a rate with interval 0 (omitted, as the original does).
        (point("jobs.done", None, Count, &[], 1795310770.0, 7.0, None), h),
        (point("jobs.rate", None, Rate, &[], 1795310770.0, 0.7, Some(0)), h),
        // No host.
        (point("chouette.dispatched", None, Count, &[], 1795310790.0, 2.0, Some(60)), None),
    ]
}

/// Pushes every point, starting a new payload on `Full`; returns the payloads (as owned bytes)
/// and the indices of points refused as too large or non-finite.
fn encode_all(
    points: &[(Wrapped<'_>, Option<&str>)],
    extra: &[Tag<'_>],
    limits: SeriesLimits,
    buf_len: usize,
) -> (Vec<Vec<u8>>, Vec<usize>) {
    let mut buf = vec![0u8; buf_len];
    let mut payloads = Vec::new();
    let mut refused = Vec::new();
    let mut enc = SeriesEncoder::new(&mut buf, limits);
    let mut i = 0;
    while i < points.len() {
        let (p, host) = &points[i];
        match enc.push(p, extra, *host) {
            Ok(()) => i += 1,
            Err(PushError::Full) => {
                assert!(!enc.is_empty(), "a fresh encoder refused point {i} as Full");
                payloads.push(enc.finish().unwrap().bytes().to_vec());
                enc = SeriesEncoder::new(&mut buf, limits);
            }
            Err(PushError::EntryTooLarge { required, limit }) => {
                assert!(required > limit);
                refused.push(i);
                i += 1;
            }
            Err(PushError::NonFinite) => {
                refused.push(i);
                i += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let last: Payload<'_> = enc.finish().unwrap();
    if !last.is_empty() || payloads.is_empty() {
        payloads.push(last.bytes().to_vec());
    }
    (payloads, refused)
}

#[test]
fn basic_payload_matches_golden() {
    let points = basic_points();
    let mut buf = [0u8; 4096];
    let mut enc = SeriesEncoder::new(&mut buf, SeriesLimits::default());
    for (p, host) in &points {
        enc.push(p, GLOBAL, *host).unwrap();
    }
    let payload = enc.finish().unwrap();
    assert_eq!(payload.points(), 11);
    assert_eq!(payload.entries(), 9);
    check_golden("series_basic.json", payload.bytes());
}

#[test]
fn split_payloads_match_golden() {
    let limits = SeriesLimits { max_payload_bytes: 900, max_points: DEFAULT_MAX_POINTS };
    let (payloads, refused) = encode_all(&basic_points(), GLOBAL, limits, 4096);
    assert!(refused.is_empty());
    assert_eq!(payloads.len(), 2);
    for payload in &payloads {
        assert!(payload.len() <= 900);
    }
    check_golden("series_split_1.json", &payloads[0]);
    check_golden("series_split_2.json", &payloads[1]);
    // Same content as the unsplit payload.
    let whole = std::fs::read(data("series_basic.json")).unwrap();
    assert_eq!(flatten(&payloads), flatten(&[whole]));
}

/// One point as it reads back from a payload: metric, tags, type, interval, host, ts, value.
type Flat = (String, Vec<String>, String, Option<u64>, Option<String>, f64, f64);

/// Parses payloads (each must be valid JSON of the v1 shape) into their points, in order.
fn flatten(payloads: &[Vec<u8>]) -> Vec<Flat> {
    let mut out = Vec::new();
    for payload in payloads {
        let json: Json = serde_json::from_slice(payload)
            .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(payload)));
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), 1);
        for entry in obj["series"].as_array().unwrap() {
            let entry = entry.as_object().unwrap();
            let metric = entry["metric"].as_str().unwrap().to_owned();
            let tags: Vec<String> =
                entry["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
            let kind = entry["type"].as_str().unwrap().to_owned();
            let interval = entry.get("interval").map(|i| i.as_u64().unwrap());
            let host = entry.get("host").map(|h| h.as_str().unwrap().to_owned());
            let points = entry["points"].as_array().unwrap();
            assert!(!points.is_empty());
            for pair in points {
                let pair = pair.as_array().unwrap();
                assert_eq!(pair.len(), 2);
                let ts = pair[0].as_f64().unwrap();
                let value = pair[1].as_f64().unwrap();
                out.push((metric.clone(), tags.clone(), kind.clone(), interval, host.clone(), ts, value));
            }
        }
    }
    out
}

/// What a point should read back as, computed independently of the encoder.
fn expected(p: &Wrapped<'_>, extra: &[Tag<'_>], host: Option<&str>) -> Flat {
    let mut tags: Vec<String> = p.tags.iter().map(|t| t.to_string()).collect();
    let mut seen: Vec<Tag<'_>> = p.tags.to_vec();
    for t in extra {
        if !seen.contains(t) {
            seen.push(*t);
            tags.push(t.to_string());
        }
    }
    (
        p.name.to_string(),
        tags,
        p.kind.as_str().to_owned(),
        p.interval.filter(|&i| i != 0).map(u64::from),
        host.map(str::to_owned),
        p.timestamp.0,
        p.value,
    )
}

#[test]
fn golden_reads_back_as_the_points() {
    let points = basic_points();
    let whole = std::fs::read(data("series_basic.json")).unwrap();
    let want: Vec<Flat> = points.iter().map(|(p, h)| expected(p, GLOBAL, *h)).collect();
    assert_eq!(flatten(&[whole]), want);
}

#[test]
fn empty_payload_is_valid_json() {
    let (payloads, _) = encode_all(&[], &[], SeriesLimits::default(), 64);
    assert_eq!(payloads, vec![b"{\"series\": []}".to_vec()]);
    assert_eq!(EMPTY_PAYLOAD_BYTES, 14);
    assert!(flatten(&payloads).is_empty());
}

// ---- properties ----

const NAMES: &[&str] = &["req", "req.latency", "température", "a\"b\\c", "x\u{1}\ttab", "🦉", ""];
const TAG_POOL: &[Tag<'static>] = &[
    Tag::new("env", "test"),
    Tag::new("ep", "a"),
    Tag::new("lieu", "café"),
    Tag::new("k", "v:with:colons"),
    Tag { key: "bare", value: None },
    Tag::new("long", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
];
const SUFFIXES: &[Option<&str>] = &[None, Some("avg"), Some("95percentile")];
const HOSTS: &[Option<&str>] = &[None, Some("myhost"), Some("hôte")];

/// A point described by indices into the pools, so a case shrinks well.
#[derive(Debug, Clone)]
struct Spec {
    name: usize,
    suffix: usize,
    kind: usize,
    tags: Vec<usize>,
    ts: f64,
    value: f64,
    interval: Option<u32>,
    host: usize,
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (-1000i64..1000).prop_map(|v| v as f64),
        4 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(-0.0),
    ]
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        0..NAMES.len(),
        0..SUFFIXES.len(),
        0..3usize,
        proptest::collection::vec(0..TAG_POOL.len(), 0..4),
        prop_oneof![
            (1_795_310_000u32..1_795_320_000).prop_map(f64::from),
            (1_795_310_000.0f64..1_795_320_000.0),
        ],
        value_strategy(),
        proptest::option::of(0u32..100),
        0..HOSTS.len(),
    )
        .prop_map(|(name, suffix, kind, tags, ts, value, interval, host)| Spec {
            name,
            suffix,
            kind,
            tags,
            ts,
            value,
            interval,
            host,
        })
}

/// Runs of one spec repeated (to exercise grouping), up to ~60 points.
fn specs_strategy() -> impl Strategy<Value = Vec<Spec>> {
    proptest::collection::vec((spec_strategy(), 1..5usize, value_strategy()), 0..20).prop_map(|runs| {
        let mut out = Vec::new();
        for (spec, n, value) in runs {
            for i in 0..n {
                let mut s = spec.clone();
                s.ts += 10.0 * i as f64;
                if i > 0 {
                    s.value = value;
                }
                out.push(s);
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn split_payloads_are_valid_within_limits_and_conserve_points(
        specs in specs_strategy(),
        extra in proptest::collection::vec(0..TAG_POOL.len(), 0..3),
        max_payload_bytes in 0usize..1500,
        max_points in 0usize..12,
        buf_len in 0usize..1600,
    ) {
        let kinds = [OutputType::Count, OutputType::Gauge, OutputType::Rate];
        let tag_sets: Vec<Vec<Tag<'static>>> =
            specs.iter().map(|s| s.tags.iter().map(|&i| TAG_POOL[i]).collect()).collect();
        let extra: Vec<Tag<'static>> = extra.iter().map(|&i| TAG_POOL[i]).collect();
        let points: Vec<(Wrapped<'_>, Option<&str>)> = specs
            .iter()
            .zip(&tag_sets)
            .map(|(s, tags)| {
                let p = Wrapped {
                    name: MetricName { base: NAMES[s.name], suffix: SUFFIXES[s.suffix] },
                    kind: kinds[s.kind],
                    tags,
                    timestamp: Timestamp(s.ts),
                    value: s.value,
                    interval: s.interval,
                };
                (p, HOSTS[s.host])
            })
            .collect();
        let limits = SeriesLimits { max_payload_bytes, max_points };
        if buf_len < EMPTY_PAYLOAD_BYTES {
            // Nothing fits; finish reports the size needed.
            let mut buf = vec![0u8; buf_len];
            let mut enc = SeriesEncoder::new(&mut buf, limits);
            for (p, host) in &points {
                prop_assert!(enc.push(p, &extra, *host).is_err());
            }
            prop_assert!(enc.finish().is_err());
            return Ok(());
        }
        let (payloads, refused) = encode_all(&points, &extra, limits, buf_len);
        let cap = max_payload_bytes.min(buf_len).max(EMPTY_PAYLOAD_BYTES);
        for payload in &payloads {
            prop_assert!(payload.len() <= cap, "{} > {cap}", payload.len());
        }
        let got = flatten(&payloads);
        let want: Vec<Flat> = points
            .iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains(i))
            .map(|(_, (p, h))| expected(p, &extra, *h))
            .collect();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            // -0.0 reads back as 0 or -0.0; compare numbers by value.
            prop_assert_eq!(&g.0, &w.0);
            prop_assert_eq!(&g.1, &w.1);
            prop_assert_eq!(&g.2, &w.2);
            prop_assert_eq!(g.3, w.3);
            prop_assert_eq!(&g.4, &w.4);
            prop_assert!(g.5 == w.5 && g.6 == w.6, "{g:?} != {w:?}");
        }
        // Refused points were non-finite, or too large for an empty payload.
        for &i in &refused {
            let (p, host) = &points[i];
            if p.value.is_finite() {
                let mut big = vec![0u8; 1 << 16];
                let mut enc = SeriesEncoder::new(&mut big, SeriesLimits::default());
                enc.push(p, &extra, *host).unwrap();
                prop_assert!(enc.finish().unwrap().len() > cap);
            }
        }
        // Points per payload respect max_points.
        for payload in &payloads {
            prop_assert!(flatten(core::slice::from_ref(payload)).len() <= max_points.max(1));
        }
    }
}

// ---- zlib ----

#[test]
fn inflates_the_python_golden_stream() {
    let packed = std::fs::read(data("zlib_python.bin")).unwrap();
    let text = std::fs::read(data("zlib_python.txt")).unwrap();
    let mut out = vec![0u8; text.len()];
    assert_eq!(decompress_into(&packed, &mut out), Ok(text.len()));
    assert_eq!(out, text);
    let mut short = vec![0u8; text.len() - 1];
    assert_eq!(
        decompress_into(&packed, &mut short),
        Err(InflateError::BufferTooSmall { filled: text.len() - 1 })
    );
    let mut corrupt = packed.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    assert!(decompress_into(&corrupt, &mut out).is_err());
}

#[cfg(feature = "alloc")]
#[test]
fn compressed_payload_round_trips() {
    use chouette_core::wire::zlib::{compress, DEFAULT_LEVEL};
    let whole = std::fs::read(data("series_basic.json")).unwrap();
    let packed = compress(&whole, DEFAULT_LEVEL);
    assert!(packed.len() < whole.len());
    let mut out = vec![0u8; whole.len()];
    assert_eq!(decompress_into(&packed, &mut out), Ok(whole.len()));
    assert_eq!(out, whole);
}
