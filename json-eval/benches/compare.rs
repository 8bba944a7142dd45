//! The core's scanner-based parsers against the serde-json-core prototype, on the records of the
//! core's own `parse` benchmark (core/benches/parse.rs), in one run so the ratio is fair.
//! Each group has a `scanner` and a `serde-json-core` function; `json-eval/bench.sh` prints the
//! ratio of their times.

use core::hint::black_box;

use chouette_core::wire::log::parse_log;
use chouette_core::wire::raw::parse_raw_metric;
use chouette_core::wire::wrapped::{encode_wrapped, parse_wrapped};
use chouette_core::{MetricName, OutputType, Tag, Timestamp, Wrapped};
use chouette_json_eval as proto;
use chouette_json_eval::inputs::{LOG, RAW_ESCAPED, RAW_MIX, WRAPPED};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn check_inputs() {
    let mut scratch = [0u8; 1024];
    for record in RAW_MIX.iter().chain([&RAW_ESCAPED]) {
        assert!(parse_raw_metric(record.as_bytes(), &mut scratch).is_ok(), "{record}");
        assert!(proto::parse_raw(record.as_bytes(), &mut scratch).is_ok(), "{record}");
    }
    assert!(parse_log(LOG.as_bytes()).is_ok() && proto::parse_log(LOG.as_bytes()).is_ok());
}

fn bench_raw(c: &mut Criterion) {
    check_inputs();
    let numbers: Vec<&str> = RAW_MIX.iter().copied().filter(|r| !r.contains("\"set\"")).collect();
    for (group, records) in [("raw mix of 8", RAW_MIX.to_vec()), ("raw mix without the set (7)", numbers)] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(records.len() as u64));
        g.bench_function("scanner", |b| {
            let mut scratch = [0u8; 1024];
            b.iter(|| {
                for record in &records {
                    black_box(parse_raw_metric(black_box(record.as_bytes()), &mut scratch).is_ok());
                }
            })
        });
        g.bench_function("serde-json-core", |b| {
            let mut scratch = [0u8; 1024];
            b.iter(|| {
                for record in &records {
                    black_box(proto::parse_raw(black_box(record.as_bytes()), &mut scratch).is_ok());
                }
            })
        });
        g.finish();
    }
    let mut g = c.benchmark_group("raw with escapes");
    g.throughput(Throughput::Elements(1));
    g.bench_function("scanner", |b| {
        let mut scratch = [0u8; 1024];
        b.iter(|| black_box(parse_raw_metric(black_box(RAW_ESCAPED.as_bytes()), &mut scratch).is_ok()))
    });
    g.bench_function("serde-json-core", |b| {
        let mut scratch = [0u8; 1024];
        b.iter(|| black_box(proto::parse_raw(black_box(RAW_ESCAPED.as_bytes()), &mut scratch).is_ok()))
    });
    g.finish();
}

fn bench_wrapped(c: &mut Criterion) {
    let tags = [Tag::new("endpoint", "/api/v1/items"), Tag::new("env", "prod")];
    let w = Wrapped {
        name: MetricName::plain("app.requests"),
        kind: OutputType::Count,
        tags: &tags,
        timestamp: Timestamp(1795310770.0),
        value: 42.0,
        interval: Some(10),
    };
    let mut buf = [0u8; 256];
    let n = encode_wrapped(&w, &mut buf).expect("fits");
    let line = buf[..n].to_vec();
    assert_eq!(line, WRAPPED.as_bytes());
    let mut g = c.benchmark_group("wrapped");
    g.throughput(Throughput::Elements(1));
    g.bench_function("scanner", |b| {
        let mut scratch = [0u8; 256];
        b.iter(|| black_box(parse_wrapped(black_box(&line), &mut scratch).is_ok()))
    });
    g.bench_function("serde-json-core", |b| {
        let mut scratch = [0u8; 256];
        b.iter(|| black_box(proto::parse_wrapped(black_box(&line), &mut scratch).is_ok()))
    });
    g.finish();
}

/// The scanner keeps every field's text; the prototype reads only `date` and `ddtags`.
fn bench_log(c: &mut Criterion) {
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Elements(1));
    g.bench_function("scanner", |b| b.iter(|| black_box(parse_log(black_box(LOG.as_bytes())).is_ok())));
    g.bench_function("serde-json-core", |b| {
        b.iter(|| black_box(proto::parse_log(black_box(LOG.as_bytes())).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, bench_raw, bench_wrapped, bench_log);
criterion_main!(benches);
