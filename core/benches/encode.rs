//! Encoding Datadog v1 series payloads, and compressing them (with `--features alloc`); encoding
//! raw records.
//!
//! `cargo bench -p chouette-core --features alloc --bench encode -- --warm-up-time 1 --measurement-time 3`
//!
//! 100,000 points: 1000 series (realistic names and tags) x 100 timestamps, pushed either series
//! by series (points of one series are grouped into one entry) or timestamp by timestamp (every
//! point is its own entry, as the aggregator's flush order gives them).

use core::hint::black_box;

use chouette_core::wire::series::{SeriesEncoder, SeriesLimits};
use chouette_core::{MetricName, OutputType, Tag, Timestamp, Wrapped};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SERIES: usize = 1000;
const STEPS: usize = 100;

struct Fixture {
    names: Vec<(String, Option<&'static str>, OutputType, Option<u32>)>,
    tags: Vec<Vec<(String, String)>>,
}

fn fixture() -> Fixture {
    let bases = ["http.requests", "http.latency", "system.cpu.user", "disk.free", "queue.depth"];
    let suffixes = [None, Some("avg"), Some("count"), Some("max"), Some("95percentile")];
    let mut names = Vec::new();
    let mut tags = Vec::new();
    for i in 0..SERIES {
        let base = format!("chouette.{}.{}", bases[i % bases.len()], i / 50);
        let suffix = suffixes[(i / 5) % suffixes.len()];
        let (kind, interval) = match i % 3 {
            0 => (OutputType::Count, Some(10)),
            1 => (OutputType::Gauge, None),
            _ => (OutputType::Rate, Some(10)),
        };
        names.push((base, suffix, kind, interval));
        tags.push(vec![
            ("endpoint".to_owned(), format!("/api/v1/items/{}", i % 20)),
            ("status".to_owned(), ["200", "404", "500"][i % 3].to_owned()),
            ("worker".to_owned(), format!("w{}", i % 8)),
        ]);
    }
    Fixture { names, tags }
}

/// Encodes all points in the given order, splitting at the default limits; returns the payload
/// bytes and the total body bytes.
fn encode(
    fx: &Fixture,
    tag_views: &[Vec<Tag<'_>>],
    series_major: bool,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]),
) -> usize {
    let global = [Tag::new("env", "prod"), Tag::new("device", "pi-42")];
    let host = Some("pi-42.example.com");
    let mut total = 0;
    let mut enc = SeriesEncoder::new(buf, SeriesLimits::default());
    let mut order =
        (0..SERIES * STEPS).map(
            |k| {
                if series_major {
                    (k / STEPS, k % STEPS)
                } else {
                    (k % SERIES, k / SERIES)
                }
            },
        );
    let mut next = order.next();
    while let Some((s, t)) = next {
        let (base, suffix, kind, interval) = &fx.names[s];
        let point = Wrapped {
            name: MetricName { base, suffix: *suffix },
            kind: *kind,
            tags: &tag_views[s],
            timestamp: Timestamp(1_795_310_770.0 + 10.0 * t as f64),
            value: (s * 7 + t) as f64 * 0.25,
            interval: *interval,
        };
        match enc.push(&point, &global, host) {
            Ok(()) => next = order.next(),
            Err(_) => {
                let payload = enc.finish().expect("buffer holds the empty payload");
                total += payload.len();
                sink(payload.bytes());
                enc = SeriesEncoder::new(buf, SeriesLimits::default());
            }
        }
    }
    let payload = enc.finish().expect("buffer holds the empty payload");
    total += payload.len();
    sink(payload.bytes());
    total
}

fn bench_encode(c: &mut Criterion) {
    let fx = fixture();
    let tag_views: Vec<Vec<Tag<'_>>> =
        fx.tags.iter().map(|t| t.iter().map(|(k, v)| Tag::new(k, v)).collect()).collect();
    let mut buf = vec![0u8; 4 << 20];
    let mut group = c.benchmark_group("series");
    group.throughput(Throughput::Elements((SERIES * STEPS) as u64));
    group.bench_function("encode_100k_points_series_major", |b| {
        b.iter(|| {
            encode(&fx, &tag_views, true, &mut buf, |p| {
                black_box(p);
            })
        })
    });
    group.bench_function("encode_100k_points_time_major", |b| {
        b.iter(|| {
            encode(&fx, &tag_views, false, &mut buf, |p| {
                black_box(p);
            })
        })
    });
    group.finish();

    #[cfg(feature = "alloc")]
    {
        use chouette_core::wire::zlib::{compress, DEFAULT_LEVEL};
        for (label, series_major) in [("series_major", true), ("time_major", false)] {
            let mut payloads: Vec<Vec<u8>> = Vec::new();
            let bytes = encode(&fx, &tag_views, series_major, &mut buf, |p| payloads.push(p.to_vec()));
            let compressed: usize = payloads.iter().map(|p| compress(p, DEFAULT_LEVEL).len()).sum();
            let points = (SERIES * STEPS) as f64;
            eprintln!(
                "{label}: {} payloads, {bytes} B uncompressed ({:.1} B/point), {compressed} B at zlib level {DEFAULT_LEVEL} ({:.2} B/point)",
                payloads.len(),
                bytes as f64 / points,
                compressed as f64 / points
            );
            // One typical payload: the default point limit (10,000 points).
            let typical = payloads[0].clone();
            let mut group = c.benchmark_group("zlib");
            group.throughput(Throughput::Bytes(typical.len() as u64));
            group.bench_function(format!("compress_level6_{label}_payload"), |b| {
                b.iter(|| compress(black_box(&typical), DEFAULT_LEVEL))
            });
            group.finish();
        }
    }
}

/// Raw records as the clients write them (`wire::raw`): 10,000 counts with two tags and clock
/// timestamps (whole microseconds), into one reused buffer.
fn bench_raw(c: &mut Criterion) {
    use chouette_core::wire::raw::{encode_raw_metric, Number, RawRecord, RawValue};
    use chouette_core::MetricType;
    const RECORDS: usize = 10_000;
    let names: Vec<String> = (0..RECORDS).map(|i| format!("app.requests.m{}", i % 100)).collect();
    let mut buf = vec![0u8; 1024];
    let mut group = c.benchmark_group("raw");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("encode_raw_metric_10k", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for (i, name) in names.iter().enumerate() {
                let record = RawRecord {
                    name,
                    kind: MetricType::Count,
                    value: RawValue::Number(Number::Int(i as i64)),
                    timestamp: (1_763_780_437_000_000 + i as u64 * 137) as f64 / 1e6,
                    tags: &[("route", "/pay"), ("shop", "eu")],
                };
                bytes += encode_raw_metric(black_box(&record), &mut buf).unwrap_or(0);
            }
            bytes
        })
    });
    group.finish();
}

criterion_group!(benches, bench_encode, bench_raw);
criterion_main!(benches);
