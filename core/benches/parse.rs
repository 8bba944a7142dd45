//! Record parsing throughput: raw metrics (a realistic mix), wrapped metrics, logs, DogStatsD lines.
//!
//! Run: `cargo bench -p chouette-core --bench parse -- --warm-up-time 1 --measurement-time 3`.

use core::hint::black_box;

use chouette_core::aggregate::{Aggregator, AggregatorConfig};
use chouette_core::metric::{Member, Sample, SetMembers, Value as CoreValue};
use chouette_core::wire::dogstatsd::{parse_datagram, sample_weight, scaled_count, Kind, Message, Value};
use chouette_core::wire::log::parse_log;
use chouette_core::wire::raw::parse_raw_metric;
use chouette_core::wire::wrapped::{encode_wrapped, parse_wrapped};
use chouette_core::{MetricName, OutputType, Tag, Timestamp, Wrapped};
use criterion::{criterion_group, Criterion, Throughput};

// RAW_MIX, shared with json-eval/ (its comparison times both parsers on the same records).
include!("data/raw_mix.rs");

fn bench_raw(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_raw_metric");
    let bytes: usize = RAW_MIX.iter().map(|r| r.len()).sum();
    group.throughput(Throughput::Elements(RAW_MIX.len() as u64));
    group.bench_function(format!("mix of {} ({} B avg)", RAW_MIX.len(), bytes / RAW_MIX.len()), |b| {
        let mut scratch = [0u8; 1024];
        b.iter(|| {
            for record in RAW_MIX {
                let m = parse_raw_metric(black_box(record.as_bytes()), &mut scratch);
                black_box(m.is_ok());
            }
        })
    });
    group.finish();
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
    let n = encode_wrapped(&w, &mut buf).unwrap_or(0);
    let line = buf[..n].to_vec();
    let mut group = c.benchmark_group("wrapped");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_wrapped", |b| {
        let mut scratch = [0u8; 256];
        b.iter(|| black_box(parse_wrapped(black_box(&line), &mut scratch).is_ok()))
    });
    group.bench_function("encode_wrapped", |b| {
        let mut out = [0u8; 256];
        b.iter(|| black_box(encode_wrapped(black_box(&w), &mut out)))
    });
    group.finish();
}

fn bench_log(c: &mut Criterion) {
    let line = br#"{"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": ["env:prod"], "level": "INFO", "message": {"msg": "hello %s"}, "service": "svc"}"#;
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_log", |b| b.iter(|| black_box(parse_log(black_box(line)).is_ok())));
    group.finish();
}

/// Typical DogStatsD lines, 2–4 tags each, as client libraries write them.
const DSD_MIX: &[&str] = &[
    "app.requests:1|c|#endpoint:/api/v1/items,status:200,env:prod",
    "app.requests:1|c|@0.5|#endpoint:/api/v1/items,status:500,env:prod",
    "sensor.temperature:21.375|g|#zone:cpu,host:pi-4",
    "app.latency:12.5|ms|#endpoint:/health,env:prod,region:eu",
    "app.payload:512:1024:2048|h|#service:api,env:prod",
    "app.users:alice|s|#app:web,env:prod",
    "queue.depth:3|g|#queue:default,host:pi-4,env:prod,team:iot",
    "db.query:0.01234|d|#db:main,op:select,env:prod",
];

fn bench_dogstatsd(c: &mut Criterion) {
    let datagram = DSD_MIX.join("\n");
    let mut group = c.benchmark_group("dogstatsd");
    group.throughput(Throughput::Elements(DSD_MIX.len() as u64));
    let avg = datagram.len() / DSD_MIX.len();
    // Parse each line and walk its values and tags, as a caller recording them does.
    group.bench_function(format!("parse+walk mix of {} ({avg} B avg)", DSD_MIX.len()), |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let mut tags = 0usize;
            for line in parse_datagram(black_box(datagram.as_bytes())) {
                if let Ok(Message::Metric { values, tags: t, .. }) = line.result {
                    for v in values.iter() {
                        if let Value::Number(n) = v {
                            sum += n;
                        }
                    }
                    tags += t.iter().count();
                }
            }
            black_box((sum, tags))
        })
    });
    group.finish();
}

/// Parse + record: 100k lines over 10k contexts (100 names × 100 tag sets, 2–3 tags), every kind,
/// in 8 KiB datagrams, recorded into an aggregator with the sample-rate helpers (5,000 of the
/// contexts are histograms, timers or distributions: 8,192 sketches).
fn bench_dogstatsd_record(c: &mut Criterion) {
    const LINES: usize = 100_000;
    let kinds = ["c", "g", "ms", "h", "s", "d"];
    let mut datagrams: Vec<Vec<u8>> = vec![Vec::new()];
    for i in 0..LINES {
        let ctx = (i * 7919) % 10_000;
        let kind = kinds[ctx % kinds.len()];
        let value = if kind == "s" { format!("user-{}", i % 50) } else { format!("{}.25", i % 1000) };
        let rate = if i % 4 == 0 { "|@0.5" } else { "" };
        let line = format!(
            "app.metric_{}:{value}|{kind}{rate}|#host:board-{},endpoint:/api/v1/thing/{},env:prod",
            ctx / 100,
            ctx % 10,
            ctx % 100
        );
        if datagrams.last().map_or(0, Vec::len) + line.len() + 1 > 8192 {
            datagrams.push(Vec::new());
        }
        let d = datagrams.last_mut().expect("one datagram");
        if !d.is_empty() {
            d.push(b'\n');
        }
        d.extend_from_slice(line.as_bytes());
    }
    let now = Timestamp::from_secs_f64(1_000_001.0);
    let mut group = c.benchmark_group("dogstatsd");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("parse+record 100k lines, 10k contexts", |b| {
        let mut agg = Box::new(Aggregator::<16384, 8192, { 1 << 20 }>::new(AggregatorConfig::DEFAULT));
        b.iter(|| {
            for datagram in &datagrams {
                for line in parse_datagram(datagram) {
                    let Ok(Message::Metric { name, values, kind, sample_rate, tags, .. }) = line.result
                    else {
                        continue;
                    };
                    let mut tag_buf = [Tag::new("", ""); 8];
                    let mut n = 0;
                    for t in tags.parsed().take(tag_buf.len()) {
                        tag_buf[n] = t;
                        n += 1;
                    }
                    let weight = match kind {
                        Kind::Timer | Kind::Histogram | Kind::Distribution => sample_weight(sample_rate),
                        _ => 1,
                    };
                    for v in values.iter() {
                        let members;
                        let value = match v {
                            Value::Number(x) if kind == Kind::Count => {
                                CoreValue::Number(scaled_count(x, sample_rate))
                            }
                            Value::Number(x) => CoreValue::Number(x),
                            Value::Member(m) => {
                                members = [Member::Str(m)];
                                CoreValue::Set(SetMembers::from_slice(&members))
                            }
                        };
                        let sample = Sample {
                            name,
                            kind: kind.metric_type(),
                            tags: &tag_buf[..n],
                            value,
                            timestamp: now,
                        };
                        for _ in 0..weight {
                            let _ = black_box(agg.record(now, sample));
                        }
                    }
                }
            }
        });
        assert_eq!(agg.stats().refused_total(), 0);
    });
    group.finish();
}

criterion_group!(benches, bench_raw, bench_wrapped, bench_log, bench_dogstatsd, bench_dogstatsd_record);

fn main() {
    // The 10k-context aggregator (8192 pooled sketches) is built on the stack before it is
    // boxed: the main thread's 8 MiB overflowed (`bench.sh` stopped here). A thread with room.
    std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(|| {
            benches();
            Criterion::default().configure_from_args().final_summary();
        })
        .expect("spawn bench thread")
        .join()
        .expect("bench thread");
}
