//! Aggregator throughput through the public API, `record` one by one and `record_batch`: 10k
//! series, mixed types; and the same samples folded into 100 series, whose table, keys and
//! sketches stay in cache: the ceiling that `scripts/bench.sh` prints the 10k-series rate
//! against (how much of `record` is memory).

use core::hint::black_box;
use core::ops::Range;
use core::time::Duration;

use chouette_core::aggregate::{Aggregator, AggregatorConfig};
use chouette_core::metric::{Member, MetricType, Sample, SetMembers, Tag, Timestamp, Value};
use chouette_core::wrap::WrapConfig;
use criterion::{Criterion, Throughput};

const SERIES: usize = 10_000;
/// The in-cache ceiling's series.
const CACHED_SERIES: usize = 100;
const SAMPLES: usize = 100_000;
/// Samples per `record_batch` call: a few hundred, as a caller with a page of records has.
const BATCH: usize = 256;
type Big = Aggregator<16384, 4096, { 1 << 20 }>;

/// The strings of every sample, back to back in one buffer in the order they are recorded, as
/// records lie in a page a pipeline parses and records; the series visited are still spread
/// over 10k series, so the aggregator's own table is what is measured. (Each string was once
/// an allocation of its own, 400k of them spread over the heap: the samples' own strings
/// missed the cache, and `record` was measured waiting for its input.)
struct Corpus {
    text: String,
    /// Per sample: its name, host, endpoint and set member, as ranges of `text`.
    spans: Vec<[Range<usize>; 4]>,
}

impl Corpus {
    fn field(&self, i: usize, field: usize) -> &str {
        &self.text[self.spans[i][field].clone()]
    }
}

fn corpus(series_count: usize) -> Corpus {
    let series = |i: usize| (i * 7919) % series_count;
    let mut text = String::new();
    let mut push = |part: String| {
        let start = text.len();
        text.push_str(&part);
        start..text.len()
    };
    let spans = (0..SAMPLES)
        .map(|i| {
            [
                push(format!("chouette.app.metric_{}", series(i) / 100)),
                push(format!("board-{}", series(i) % 10)),
                push(format!("/api/v1/thing/{}", series(i) % 100)),
                push(format!("user-{}", i % 50)),
            ]
        })
        .collect();
    Corpus { text, spans }
}

fn samples(c: &Corpus) -> (Vec<[Tag<'_>; 2]>, Vec<[Member<'_>; 1]>) {
    let tags = (0..SAMPLES)
        .map(|i| [Tag::new("host", c.field(i, 1)), Tag::new("endpoint", c.field(i, 2))])
        .collect();
    let members = (0..SAMPLES).map(|i| [Member::Str(c.field(i, 3))]).collect();
    (tags, members)
}

fn build<'a>(
    c: &'a Corpus,
    tags: &'a [[Tag<'a>; 2]],
    members: &'a [[Member<'a>; 1]],
    series_count: usize,
) -> Vec<Sample<'a>> {
    (0..SAMPLES)
        .map(|i| {
            let s = (i * 7919) % series_count;
            let kind = MetricType::ALL[s % 5]; // count, gauge, rate, histogram, set
            let value = if kind == MetricType::Set {
                Value::Set(SetMembers::from_slice(&members[i]))
            } else {
                Value::Number((i % 1000) as f64 * 0.25)
            };
            Sample {
                name: c.field(i, 0),
                kind,
                tags: &tags[i],
                value,
                timestamp: Timestamp::from_secs_f64(1_000_000.5),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (spread_corpus, cached_corpus) = (corpus(SERIES), corpus(CACHED_SERIES));
    let ((tags, members), (cached_tags, cached_members)) = (samples(&spread_corpus), samples(&cached_corpus));
    let samples = build(&spread_corpus, &tags, &members, SERIES);
    let cached = build(&cached_corpus, &cached_tags, &cached_members, CACHED_SERIES);
    let now = Timestamp::from_secs_f64(1_000_001.0);
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    for (id, samples) in
        [("record_mixed_10k_series", &samples), ("record_mixed_100_series_in_cache", &cached)]
    {
        group.bench_function(id, |b| {
            let mut agg = Box::new(Big::new(AggregatorConfig::DEFAULT));
            b.iter(|| {
                for sample in samples {
                    let _ = black_box(agg.record(now, *sample));
                }
            });
            assert_eq!(agg.stats().refused_total(), 0);
        });
    }
    for (id, samples) in
        [("record_batch_mixed_10k_series", &samples), ("record_batch_mixed_100_series_in_cache", &cached)]
    {
        group.bench_function(id, |b| {
            let mut agg = Box::new(Big::new(AggregatorConfig::DEFAULT));
            b.iter(|| {
                for batch in samples.chunks(BATCH) {
                    agg.record_batch(now, black_box(batch), |_, refused| panic!("{refused}"));
                }
            });
            assert_eq!(agg.stats().refused_total(), 0);
        });
    }
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

/// Records the 10k-series samples `passes` times over, one by one (`record`) or in batches
/// (`record_batch`), for an instruction count: this machine has no hardware counters, so
/// cachegrind counts them, and a run of 0 passes counts the set-up to subtract.
///
/// ```text
/// CHOUETTE_RECORD_PASSES=record_batch:10 valgrind --tool=cachegrind --cache-sim=no target/release/deps/aggregate-* --bench
/// ```
fn count_passes(spec: &str) {
    let (mode, passes) = spec.split_once(':').expect("CHOUETTE_RECORD_PASSES=record|record_batch:N");
    let passes: usize = passes.parse().expect("a number of passes");
    let c = corpus(SERIES);
    let (tags, members) = samples(&c);
    let samples = build(&c, &tags, &members, SERIES);
    let now = Timestamp::from_secs_f64(1_000_001.0);
    let mut agg = Box::new(Big::new(AggregatorConfig::DEFAULT));
    for _ in 0..passes {
        match mode {
            "record" => samples.iter().for_each(|sample| {
                let _ = black_box(agg.record(now, *sample));
            }),
            "record_batch" => samples.chunks(BATCH).for_each(|batch| {
                agg.record_batch(now, black_box(batch), |_, refused| panic!("{refused}"));
            }),
            other => panic!("{other}: record or record_batch"),
        }
    }
    println!("{} samples recorded", agg.stats().recorded);
}

fn main() {
    // The 10k-series aggregator is ~20 MB: build it on a thread with a stack to match.
    std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(|| {
            if let Ok(spec) = std::env::var("CHOUETTE_RECORD_PASSES") {
                return count_passes(&spec);
            }
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
