//! Aggregator throughput through the public API: 10k series, mixed types.

use core::hint::black_box;
use core::time::Duration;

use chouette_core::aggregate::{Aggregator, AggregatorConfig};
use chouette_core::metric::{Member, MetricType, Sample, SetMembers, Tag, Timestamp, Value};
use chouette_core::wrap::WrapConfig;
use criterion::{Criterion, Throughput};

const SERIES: usize = 10_000;
const SAMPLES: usize = 100_000;
type Big = Aggregator<16384, 4096, { 1 << 20 }>;

struct Corpus {
    names: Vec<String>,
    tags: Vec<[Tag<'static>; 2]>,
    members: Vec<[Member<'static>; 1]>,
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn corpus() -> Corpus {
    let hosts: Vec<&'static str> = (0..10).map(|i| leak(format!("board-{i}"))).collect();
    let eps: Vec<&'static str> = (0..100).map(|i| leak(format!("/api/v1/thing/{i}"))).collect();
    let users: Vec<&'static str> = (0..50).map(|i| leak(format!("user-{i}"))).collect();
    Corpus {
        names: (0..SERIES).map(|i| format!("chouette.app.metric_{}", i / 100)).collect(),
        tags: (0..SERIES)
            .map(|i| [Tag::new("host", hosts[i % 10]), Tag::new("endpoint", eps[i % 100])])
            .collect(),
        members: (0..SAMPLES).map(|i| [Member::Str(users[i % 50])]).collect(),
    }
}

fn samples(c: &Corpus) -> Vec<Sample<'_>> {
    (0..SAMPLES)
        .map(|i| {
            let s = (i * 7919) % SERIES;
            let kind = MetricType::ALL[s % 5]; // count, gauge, rate, histogram, set
            let value = if kind == MetricType::Set {
                Value::Set(SetMembers::from_slice(&c.members[i]))
            } else {
                Value::Number((i % 1000) as f64 * 0.25)
            };
            Sample {
                name: &c.names[s],
                kind,
                tags: &c.tags[s],
                value,
                timestamp: Timestamp::from_secs_f64(1_000_000.5),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let corpus = corpus();
    let samples = samples(&corpus);
    let now = Timestamp::from_secs_f64(1_000_001.0);
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.bench_function("record_mixed_10k_series", |b| {
        let mut agg = Box::new(Big::new(AggregatorConfig::DEFAULT));
        b.iter(|| {
            for sample in &samples {
                let _ = black_box(agg.record(now, *sample));
            }
        });
        assert_eq!(agg.stats().refused_total(), 0);
    });
    group.bench_function("record_then_flush_10k_series", |b| {
        let mut agg = Box::new(Big::new(AggregatorConfig::DEFAULT));
        let wrap = WrapConfig::default();
        let mut bucket = 0.0;
        b.iter(|| {
            bucket += 10.0;
            let at = Timestamp::from_secs_f64(1_000_000.5 + bucket);
            for sample in &samples {
                let mut sample = *sample;
                sample.timestamp = at;
                let _ = black_box(agg.record(at, sample));
            }
            agg.handle_timeout(Timestamp::from_secs_f64(at.as_secs_f64() + 20.0));
            let mut points = 0;
            while let Some(flushed) = agg.poll_flush() {
                points += flushed.outputs(&wrap).len();
            }
            black_box(points)
        });
    });
    group.finish();
}

fn main() {
    // The 10k-series aggregator is ~20 MB: build it on a thread with a stack to match.
    std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(|| {
            let mut c = Criterion::default()
                .configure_from_args()
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(3));
            bench(&mut c);
            c.final_summary();
        })
        .expect("spawn bench thread")
        .join()
        .expect("bench thread");
}
