//! `Aggregator::merge`: samples aggregated elsewhere (a DogStatsD listener's memory) and merged
//! as partials give the same points as recording every sample in one aggregator.

use std::collections::BTreeMap;

use chouette_core::aggregate::{AggregatorConfig, BoardAggregator, Partial, RecordError};
use chouette_core::metric::{Member, MetricType, Sample, SetMembers, Tag, Timestamp, Value};
use chouette_core::sketch::{hash_member, Histogram, SetCounter};
use chouette_core::wrap::WrapConfig;
use proptest::prelude::*;

const KINDS: [MetricType; 5] =
    [MetricType::Count, MetricType::Gauge, MetricType::Histogram, MetricType::Distribution, MetricType::Set];
const MEMBERS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
const TAGS: [Tag<'static>; 2] = [Tag { key: "env", value: Some("prod") }, Tag { key: "host", value: None }];
const BUCKET: f64 = 1000.0;

/// Points of every flushed series: `name.suffix{tags} → value`.
fn points(aggregator: &mut BoardAggregator) -> BTreeMap<String, f64> {
    let config = WrapConfig::default();
    aggregator.close_all();
    let mut out = BTreeMap::new();
    while let Some(flushed) = aggregator.poll_flush() {
        for output in flushed.outputs(&config) {
            let point = flushed.wrapped(&output);
            let key = format!(
                "{}.{:?}{:?}@{}",
                flushed.name,
                output.suffix,
                point.tags,
                point.timestamp.as_secs_f64()
            );
            out.insert(key, output.value);
        }
    }
    out
}

fn sample<'a>(kind: MetricType, value: Value<'a>, at: f64) -> Sample<'a> {
    Sample { name: "m", kind, tags: &TAGS, value, timestamp: Timestamp::from_secs_f64(at) }
}

/// `values` (numbers, or member indexes for sets), each at its own time, split by `elsewhere`:
/// those go through a partial, merged `merge_first` or after the rest is recorded.
fn check(kind: MetricType, values: &[f64], elsewhere: &[bool], merge_first: bool) {
    let config = AggregatorConfig::new(10).expect("interval").with_grace_secs(0);
    let now = Timestamp::from_secs_f64(BUCKET + 5.0);
    let at = |i: usize| BUCKET + i as f64 * 0.01;
    let members: Vec<[Member<'static>; 1]> =
        values.iter().map(|v| [Member::Str(MEMBERS[v.abs() as usize % MEMBERS.len()])]).collect();
    let value_of = |i: usize| match kind {
        MetricType::Set => Value::Set(SetMembers::from_slice(&members[i])),
        _ => Value::Number(values[i]),
    };
    let mut reference = Box::new(BoardAggregator::new(config));
    for i in 0..values.len() {
        reference.record(now, sample(kind, value_of(i), at(i))).expect("room");
    }

    // The partial, as a listener's memory keeps it.
    let picked: Vec<usize> = (0..values.len()).filter(|&i| elsewhere[i]).collect();
    let numbers: Vec<f64> = picked.iter().map(|&i| values[i]).collect();
    let mut histogram = Histogram::new();
    numbers.iter().for_each(|&v| histogram.insert(v).expect("finite"));
    let mut hashes: Vec<u64> = picked.iter().map(|&i| hash_member(members[i][0])).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let mut counter = SetCounter::new();
    hashes.iter().for_each(|&h| counter.insert_hash(h));
    let partial = match kind {
        MetricType::Count => Partial::Sum { sum: numbers.iter().sum(), n: numbers.len() as u64 },
        MetricType::Gauge => Partial::Gauge {
            last: numbers.last().copied().unwrap_or(0.0),
            last_ts: Timestamp::from_secs_f64(picked.last().map(|&i| at(i)).unwrap_or(0.0)),
            sum: numbers.iter().sum(),
            n: numbers.len() as u64,
        },
        MetricType::Set if hashes.len() <= 4 => {
            Partial::SetHashes { hashes: &hashes, samples: numbers.len() as u64 }
        }
        MetricType::Set => Partial::Set { counter: &counter, samples: numbers.len() as u64 },
        _ if numbers.len() <= 4 => Partial::Samples(&numbers),
        _ => Partial::Histogram(&histogram),
    };
    let key = sample(kind, Value::Number(0.0), at(picked.first().copied().unwrap_or(0)));

    let mut merged = Box::new(BoardAggregator::new(config));
    let empty = picked.is_empty();
    let merge = |merged: &mut BoardAggregator| {
        let result = merged.merge(now, &key, partial);
        if empty {
            // Nothing aggregated elsewhere: an empty partial is refused (sums and gauges of
            // zero samples are not, and add nothing).
            assert!(
                matches!(kind, MetricType::Count | MetricType::Gauge)
                    || result == Err(RecordError::WrongValueKind)
            );
        } else {
            result.expect("merged");
        }
    };
    if merge_first {
        merge(&mut merged);
    }
    for i in (0..values.len()).filter(|&i| !elsewhere[i]) {
        merged.record(now, sample(kind, value_of(i), at(i))).expect("room");
    }
    if !merge_first {
        merge(&mut merged);
    }
    let (want, got) = (points(&mut reference), points(&mut merged));
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>(), "{kind:?}");
    for (name, w) in &want {
        let g = got[name];
        assert!((w - g).abs() <= 1e-9 * w.abs().max(1.0), "{kind:?} {name}: {w} vs {g}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn merging_a_partial_equals_recording_every_sample(
        kind in prop::sample::select(KINDS.to_vec()),
        split in prop::collection::vec((-1000i32..1000, any::<bool>()), 1..60),
        merge_first in any::<bool>(),
    ) {
        let values: Vec<f64> = split.iter().map(|(v, _)| f64::from(*v) / 4.0).collect();
        let elsewhere: Vec<bool> = split.iter().map(|(_, e)| *e).collect();
        check(kind, &values, &elsewhere, merge_first);
    }
}

#[test]
fn a_partial_of_the_wrong_type_or_not_finite_is_refused_and_changes_nothing() {
    let config = AggregatorConfig::new(10).expect("interval");
    let now = Timestamp::from_secs_f64(BUCKET + 5.0);
    let mut aggregator = Box::new(BoardAggregator::new(config));
    let count = sample(MetricType::Count, Value::Number(0.0), BUCKET);
    assert_eq!(aggregator.merge(now, &count, Partial::Samples(&[1.0])), Err(RecordError::WrongValueKind));
    assert_eq!(
        aggregator.merge(now, &count, Partial::Sum { sum: f64::NAN, n: 1 }),
        Err(RecordError::NonFinite)
    );
    aggregator.merge(now, &count, Partial::Sum { sum: 1e308, n: 1 }).expect("first");
    assert_eq!(aggregator.merge(now, &count, Partial::Sum { sum: 1e308, n: 1 }), Err(RecordError::Overflow));
    let histogram = sample(MetricType::Histogram, Value::Number(0.0), BUCKET);
    assert_eq!(aggregator.merge(now, &histogram, Partial::Samples(&[])), Err(RecordError::WrongValueKind));
    assert_eq!(aggregator.stats().offered, 5);
    assert_eq!(aggregator.stats().recorded, 1);
    assert_eq!(points(&mut aggregator).values().copied().collect::<Vec<_>>(), vec![1e308]);
}

#[test]
fn a_late_partial_folds_into_the_oldest_open_bucket_and_is_counted() {
    let config = AggregatorConfig::new(10).expect("interval");
    let now = Timestamp::from_secs_f64(BUCKET + 25.0);
    let mut aggregator = Box::new(BoardAggregator::new(config));
    aggregator.close_before(Timestamp::from_secs_f64(BUCKET + 10.0));
    let old = sample(MetricType::Count, Value::Number(0.0), BUCKET + 1.0);
    aggregator.merge(now, &old, Partial::Sum { sum: 3.0, n: 2 }).expect("late but kept");
    aggregator.record(now, sample(MetricType::Count, Value::Number(4.0), BUCKET + 12.0)).expect("room");
    assert_eq!(aggregator.stats().late, 1);
    let points = points(&mut aggregator);
    assert_eq!(points.values().copied().collect::<Vec<_>>(), vec![7.0], "{points:?}");
    assert!(points.keys().all(|k| k.ends_with("@1010")), "{points:?}");
}
