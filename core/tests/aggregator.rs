//! Property tests of the aggregator: conservation, one point per series per bucket, nothing
//! emitted twice, whatever the order, lateness and capacity pressure of the input.

use std::collections::{BTreeSet, HashMap};

use chouette_core::aggregate::{Aggregator, AggregatorConfig, RecordError};
use chouette_core::metric::{Member, MetricType, Sample, SetMembers, Tag, Timestamp, Value};
use chouette_core::wrap::WrapConfig;
use proptest::prelude::*;

const NAMES: [&str; 5] = ["req", "req.latency", "users", "temp", "errors"];
const TAGS: [Tag<'static>; 5] = [
    Tag { key: "ep", value: Some("a") },
    Tag { key: "ep", value: Some("b") },
    Tag { key: "env", value: Some("prod") },
    Tag { key: "bare", value: None },
    Tag { key: "ep:a", value: None },
];
const MEMBERS: [Member<'static>; 4] =
    [Member::Str("alice"), Member::Str("bob"), Member::Num(1.0), Member::Str("1")];

#[derive(Debug, Clone)]
struct Op {
    name: usize,
    kind: MetricType,
    tags: Vec<usize>,
    value: f64,
    members: Vec<usize>,
    /// Seconds before `now` the sample was stamped (negative: in the future).
    age: f64,
    /// Seconds `now` advances after this sample.
    advance: f64,
    flush: bool,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0..NAMES.len(),
        prop::sample::select(MetricType::ALL.to_vec()),
        prop::collection::vec(0..TAGS.len(), 0..4),
        prop_oneof![8 => (-1000i32..1000).prop_map(|v| v as f64 / 4.0), 1 => Just(f64::NAN)],
        prop::collection::vec(0..MEMBERS.len(), 0..4),
        prop_oneof![8 => 0.0..30.0f64, 1 => -5.0..0.0f64, 1 => 30.0..200.0f64],
        0.0..4.0f64,
        prop::bool::weighted(0.2),
    )
        .prop_map(|(name, kind, tags, value, members, age, advance, flush)| Op {
            name,
            kind,
            tags,
            value,
            members,
            age,
            advance,
            flush,
        })
}

/// What the test expects per (series, bucket): samples, and for counts their total.
#[derive(Default, Debug)]
struct Expect {
    offered: u64,
    count_total: f64,
    count_samples: u64,
}

fn series_key(name: &str, kind: MetricType, tags: &[Tag<'_>]) -> String {
    let set: BTreeSet<String> = tags.iter().map(|t| t.to_string()).collect();
    format!("{name}|{kind}|{}", set.into_iter().collect::<Vec<_>>().join(","))
}

fn run<const S: usize, const K: usize, const B: usize>(ops: &[Op], interval: u32, grace: u32) {
    let config = AggregatorConfig::new(interval).unwrap().with_grace_secs(grace);
    let mut agg = Box::new(Aggregator::<S, K, B>::new(config));
    let wrap = WrapConfig::default();
    let mut now = 1_000_000.0;
    let mut expect = Expect::default();
    let mut seen: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut flushed_count_total = 0.0;
    let mut flushed_count_samples = 0;
    let mut refused = HashMap::<RecordError, u64>::new();

    let mut drain = |agg: &mut Aggregator<S, K, B>, seen: &mut BTreeSet<(String, i64)>| {
        while let Some(flushed) = agg.poll_flush() {
            let key = series_key(flushed.name, flushed.kind, &flushed.tags);
            let bucket = flushed.timestamp.as_secs_f64() as i64;
            assert_eq!(bucket % interval as i64, 0, "bucket start aligned");
            assert!(seen.insert((key.clone(), bucket)), "second flush of {key} @ {bucket}");
            let outputs = flushed.outputs(&wrap);
            if flushed.kind == MetricType::Count {
                assert_eq!(outputs.len(), 1);
                flushed_count_total += outputs[0].value;
                flushed_count_samples += flushed.sample_count();
            }
            for output in &outputs {
                let w = flushed.wrapped(output);
                assert_eq!(w.timestamp, flushed.timestamp);
                assert!(w.value.is_finite(), "{key}: {w:?}");
            }
        }
    };

    for op in ops {
        let members: Vec<Member<'_>> = op.members.iter().map(|&i| MEMBERS[i]).collect();
        let tags: Vec<Tag<'_>> = op.tags.iter().map(|&i| TAGS[i]).collect();
        let value = if op.kind == MetricType::Set {
            Value::Set(SetMembers::from_slice(&members))
        } else {
            Value::Number(op.value)
        };
        let sample = Sample {
            name: NAMES[op.name],
            kind: op.kind,
            tags: &tags,
            value,
            timestamp: Timestamp::from_secs_f64(now - op.age),
        };
        expect.offered += 1;
        match agg.record(Timestamp::from_secs_f64(now), sample) {
            Ok(()) => {
                if op.kind == MetricType::Count {
                    expect.count_total += op.value;
                    expect.count_samples += 1;
                }
            }
            Err(refused_sample) => {
                assert_eq!(refused_sample.sample.name, sample.name);
                *refused.entry(refused_sample.error).or_default() += 1;
            }
        }
        now += op.advance;
        if op.flush {
            agg.handle_timeout(Timestamp::from_secs_f64(now));
            drain(&mut agg, &mut seen);
        }
    }
    agg.close_all();
    drain(&mut agg, &mut seen);
    assert!(agg.is_empty(), "entries left after a complete flush");

    let stats = agg.stats();
    assert_eq!(stats.offered, expect.offered);
    assert_eq!(stats.offered, stats.recorded + stats.refused_total(), "conservation");
    for (reason, n) in refused {
        assert_eq!(stats.refused(reason), n, "{reason:?}");
    }
    assert_eq!(flushed_count_samples, expect.count_samples, "every recorded count sample flushed once");
    assert!((flushed_count_total - expect.count_total).abs() < 1e-6, "count totals");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn roomy_aggregator_conserves_and_flushes_once(ops in prop::collection::vec(op(), 1..300), interval in 1u32..20, grace in 0u32..5) {
        run::<256, 64, 16384>(&ops, interval, grace);
    }

    #[test]
    fn cramped_aggregator_conserves_under_refusals(ops in prop::collection::vec(op(), 1..300), interval in 1u32..20, grace in 0u32..5) {
        run::<7, 1, 96>(&ops, interval, grace);
    }
}

/// The agent's way to drive the clock: samples wait in a durable queue, one closed bucket is
/// aggregated per step by the same aggregator. Every count lands in its own bucket, stamped with
/// its start, none late, whatever the interval (1 s included) and the spread of timestamps.
fn drain_bucket_by_bucket(stamps: &[(f64, u8)], interval: u32, grace: u32) {
    let config = AggregatorConfig::new(interval).unwrap().with_grace_secs(grace);
    let mut agg = Box::new(Aggregator::<64, 0, 1024>::new(config));
    let now = Timestamp::from_secs_f64(1_000_400.0);
    let mut queue: Vec<(f64, u8)> = stamps.iter().map(|&(at, v)| (1_000_000.0 + at, v)).collect();
    let mut expected: HashMap<i64, f64> = HashMap::new();
    for &(at, value) in &queue {
        if config.is_closed(config.bucket_of(Timestamp::from_secs_f64(at)), now) {
            *expected.entry(config.bucket_of(Timestamp::from_secs_f64(at)).start_secs()).or_default() +=
                value as f64;
        }
    }
    let mut watermark = None;
    let mut got: HashMap<i64, f64> = HashMap::new();
    while let Some(oldest) = queue.iter().map(|&(at, _)| at).reduce(f64::min) {
        let Some(bucket) = config.next_closed_bucket(Timestamp::from_secs_f64(oldest), watermark, now) else {
            break;
        };
        agg.close_before(bucket.start());
        let end = bucket.end().as_secs_f64();
        for &(at, value) in queue.iter().filter(|(at, _)| *at < end) {
            let sample = Sample {
                name: "c",
                kind: MetricType::Count,
                tags: &[],
                value: Value::Number(value as f64),
                timestamp: Timestamp::from_secs_f64(at),
            };
            agg.record(now, sample).unwrap();
        }
        queue.retain(|(at, _)| *at >= end);
        agg.close_before(bucket.end());
        let mut points = 0;
        while let Some(flushed) = agg.poll_flush() {
            assert_eq!(flushed.timestamp, bucket.start());
            assert!(got.insert(bucket.start_secs(), flushed.sum()).is_none(), "second point");
            points += 1;
        }
        assert_eq!(points, 1);
        watermark = Some(bucket.end());
    }
    assert_eq!(got, expected);
    assert_eq!(agg.stats().late, 0);
    assert!(agg.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn bucket_by_bucket_every_sample_keeps_its_bucket(
        stamps in prop::collection::vec((0.0..500.0f64, 1u8..10), 1..60),
        interval in 1u32..20,
        grace in 0u32..5,
    ) {
        drain_bucket_by_bucket(&stamps, interval, grace);
    }
}

#[test]
fn many_flush_cycles_keep_every_series_findable() {
    // Fill the table close to capacity, flush, repeat: backward-shift deletion must keep every
    // probe chain intact, or a series would show up twice in one bucket.
    let config = AggregatorConfig::new(10).unwrap().with_grace_secs(0);
    let mut agg = Box::new(Aggregator::<97, 0, 8192>::new(config));
    let names: Vec<String> = (0..90).map(|i| format!("series.{i}")).collect();
    for round in 0..50u64 {
        let base = round as f64 * 10.0;
        let mut recorded = 0;
        for (i, name) in names.iter().enumerate() {
            if (i as u64 + round).is_multiple_of(3) {
                continue;
            }
            for _ in 0..3 {
                let sample = Sample {
                    name,
                    kind: MetricType::Count,
                    tags: &[],
                    value: Value::Number(1.0),
                    timestamp: Timestamp::from_secs_f64(base + 1.0),
                };
                agg.record(Timestamp::from_secs_f64(base + 1.0), sample).unwrap();
            }
            recorded += 1;
        }
        agg.handle_timeout(Timestamp::from_secs_f64(base + 10.0));
        let mut flushed = 0;
        while let Some(f) = agg.poll_flush() {
            assert_eq!(f.sample_count(), 3, "{}", f.name);
            flushed += 1;
        }
        assert_eq!(flushed, recorded);
        assert!(agg.is_empty());
    }
}

/// A flushed series: its key, its bucket, and each output's name and value as bits (so a sum
/// added in another order would show).
type FlushedPoints = (String, i64, Vec<(String, u64)>);

/// Every point an aggregator flushes, in the order it flushes them.
fn flush_all<const S: usize, const K: usize, const B: usize>(
    agg: &mut Aggregator<S, K, B>,
    wrap: &WrapConfig,
) -> Vec<FlushedPoints> {
    let mut points = Vec::new();
    while let Some(flushed) = agg.poll_flush() {
        let outputs = flushed
            .outputs(wrap)
            .iter()
            .map(|output| {
                let w = flushed.wrapped(output);
                (format!("{}{:?}", w.name, w.kind), w.value.to_bits())
            })
            .collect();
        let key = series_key(flushed.name, flushed.kind, &flushed.tags);
        points.push((key, flushed.timestamp.as_secs_f64() as i64, outputs));
    }
    points
}

/// `record_batch` against `record` one by one, on two aggregators fed the same ops: the same
/// refusals (index and reason), the same stats, the same points in the same order. A batch runs
/// up to each op that flushes, all at one `now`; some samples carry more tags than allowed.
fn batch_is_record_one_by_one<const S: usize, const K: usize, const B: usize>(ops: &[Op], too_many: &[bool]) {
    let config = AggregatorConfig::new(5).unwrap().with_grace_secs(1);
    let (mut one, mut batch) =
        (Box::new(Aggregator::<S, K, B>::new(config)), Box::new(Aggregator::<S, K, B>::new(config)));
    let wrap = WrapConfig::default();
    let mut now = 1_000_000.0;
    let crowd = [TAGS[0]; chouette_core::limits::MAX_TAGS + 1];
    let mut start = 0;
    while start < ops.len() {
        let end = ops[start..].iter().position(|op| op.flush).map_or(ops.len(), |at| start + at + 1);
        let chunk = &ops[start..end];
        let members: Vec<Vec<Member<'_>>> =
            chunk.iter().map(|op| op.members.iter().map(|&i| MEMBERS[i]).collect()).collect();
        let tags: Vec<Vec<Tag<'_>>> =
            chunk.iter().map(|op| op.tags.iter().map(|&i| TAGS[i]).collect()).collect();
        let samples: Vec<Sample<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, op)| Sample {
                name: NAMES[op.name],
                kind: op.kind,
                tags: if too_many[(start + i) % too_many.len()] { &crowd } else { &tags[i] },
                value: if op.kind == MetricType::Set {
                    Value::Set(SetMembers::from_slice(&members[i]))
                } else {
                    Value::Number(op.value)
                },
                timestamp: Timestamp::from_secs_f64(now - op.age),
            })
            .collect();
        let at = Timestamp::from_secs_f64(now);
        let expected: Vec<(usize, RecordError)> = samples
            .iter()
            .enumerate()
            .filter_map(|(i, sample)| one.record(at, *sample).err().map(|refused| (i, refused.error)))
            .collect();
        let mut got = Vec::new();
        batch.record_batch(at, &samples, |i, refused| {
            assert_eq!(refused.sample.name, samples[i].name);
            got.push((i, refused.error));
        });
        assert_eq!(got, expected);
        now += chunk.iter().map(|op| op.advance).sum::<f64>();
        one.handle_timeout(Timestamp::from_secs_f64(now));
        batch.handle_timeout(Timestamp::from_secs_f64(now));
        assert_eq!(flush_all(&mut batch, &wrap), flush_all(&mut one, &wrap));
        start = end;
    }
    one.close_all();
    batch.close_all();
    assert_eq!(flush_all(&mut batch, &wrap), flush_all(&mut one, &wrap));
    let (a, b) = (one.stats(), batch.stats());
    assert_eq!((a.offered, a.recorded, a.late, a.flushed), (b.offered, b.recorded, b.late, b.flushed));
    for reason in RecordError::ALL {
        assert_eq!(a.refused(reason), b.refused(reason), "{reason:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn record_batch_is_record_one_by_one(
        ops in prop::collection::vec(op(), 1..400),
        too_many in prop::collection::vec(prop::bool::weighted(0.03), 1..50),
    ) {
        batch_is_record_one_by_one::<256, 64, 16384>(&ops, &too_many);
    }

    #[test]
    fn record_batch_is_record_one_by_one_under_refusals(
        ops in prop::collection::vec(op(), 1..400),
        too_many in prop::collection::vec(prop::bool::weighted(0.03), 1..50),
    ) {
        batch_is_record_one_by_one::<7, 1, 96>(&ops, &too_many);
    }
}
