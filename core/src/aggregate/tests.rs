//! The aggregator's behaviour through its public surface.

use super::*;
use crate::limits::INLINE_SAMPLES;
use crate::metric::OutputType;
use crate::metric::{SetMembers, Tag};
use crate::wrap::WrapConfig;
use core::fmt;

type Agg = Aggregator<64, 4, 4096>;

fn ts(secs: f64) -> Timestamp {
    Timestamp::from_secs_f64(secs)
}

fn num<'a>(name: &'a str, kind: MetricType, tags: &'a [Tag<'a>], value: f64, at: f64) -> Sample<'a> {
    Sample { name, kind, tags, value: Value::Number(value), timestamp: ts(at) }
}

/// (name, suffix, type, tags, timestamp, value, interval) of every point flushed.
type Point = (heapless::String<64>, OutputType, heapless::String<64>, f64, f64, Option<u32>);

fn drain(agg: &mut Agg, config: &WrapConfig) -> heapless::Vec<Point, 64> {
    let mut points = heapless::Vec::new();
    while let Some(flushed) = agg.poll_flush() {
        for output in flushed.outputs(config) {
            let w = flushed.wrapped(&output);
            let mut name = heapless::String::new();
            let _ = fmt::write(&mut name, format_args!("{}", w.name));
            let mut tags: heapless::String<64> = heapless::String::new();
            for (i, tag) in w.tags.iter().enumerate() {
                let _ = fmt::write(&mut tags, format_args!("{}{}", if i > 0 { "," } else { "" }, tag));
            }
            let _ = points.push((name, w.kind, tags, w.timestamp.as_secs_f64(), w.value, w.interval));
        }
    }
    points.sort_unstable_by(|a, b| (&a.0, &a.2, a.3.to_bits()).cmp(&(&b.0, &b.2, b.3.to_bits())));
    points
}

#[test]
fn interleaved_series_give_exactly_one_point_per_bucket() {
    // compat §7 item 1: A, B, A in one bucket gave three points in the original.
    let mut agg = Agg::new(AggregatorConfig::DEFAULT);
    let a = [Tag::new("ep", "a")];
    let b = [Tag::new("ep", "b")];
    for (tags, value) in [(&a, 1.0), (&b, 10.0), (&a, 2.0), (&b, 20.0), (&a, 3.0)] {
        agg.record(ts(105.0), num("req", MetricType::Count, tags, value, 101.0)).unwrap();
    }
    agg.handle_timeout(ts(112.0));
    let points = drain(&mut agg, &WrapConfig::default());
    assert_eq!(points.len(), 2);
    assert_eq!((points[0].2.as_str(), points[0].3, points[0].4, points[0].5), ("ep:a", 100.0, 6.0, Some(10)));
    assert_eq!((points[1].2.as_str(), points[1].3, points[1].4), ("ep:b", 100.0, 30.0));
    assert!(agg.is_empty());
}

#[test]
fn tag_order_and_duplicates_do_not_split_a_series() {
    let mut agg = Agg::new(AggregatorConfig::DEFAULT);
    let one = [Tag::new("b", "2"), Tag::new("a", "1")];
    let two = [Tag::new("a", "1"), Tag::new("b", "2"), Tag::new("a", "1")];
    agg.record(ts(0.0), num("x", MetricType::Count, &one, 1.0, 1.0)).unwrap();
    agg.record(ts(0.0), num("x", MetricType::Count, &two, 1.0, 2.0)).unwrap();
    agg.handle_timeout(ts(100.0));
    let points = drain(&mut agg, &WrapConfig::default());
    assert_eq!(points.len(), 1);
    assert_eq!((points[0].2.as_str(), points[0].4), ("a:1,b:2", 2.0));
}

#[test]
fn two_tags_take_a_short_path_that_agrees_with_the_general_one() {
    // Two tags are ordered without the sort loop; one and three tags take the loop.
    let mut agg = Agg::new(AggregatorConfig::DEFAULT);
    let (a, b) = (Tag::new("a", "1"), Tag::new("b", "2"));
    let shapes: [&[Tag<'_>]; 5] = [&[a], &[a, a], &[b, a], &[a, b], &[a, b, b]];
    for tags in shapes {
        agg.record(ts(0.0), num("x", MetricType::Count, tags, 1.0, 1.0)).unwrap();
    }
    agg.handle_timeout(ts(100.0));
    let mut points = drain(&mut agg, &WrapConfig::default());
    points.sort_unstable_by(|x, y| x.2.cmp(&y.2));
    let found: heapless::Vec<(&str, f64), 4> = points.iter().map(|p| (p.2.as_str(), p.4)).collect();
    assert_eq!(&found[..], &[("a:1", 2.0), ("a:1,b:2", 3.0)]);
}

#[test]
fn types_are_part_of_the_series_identity() {
    let mut agg = Agg::new(AggregatorConfig::DEFAULT);
    agg.record(ts(0.0), num("x", MetricType::Count, &[], 1.0, 1.0)).unwrap();
    agg.record(ts(0.0), num("x", MetricType::Gauge, &[], 5.0, 1.0)).unwrap();
    agg.handle_timeout(ts(100.0));
    let points = drain(&mut agg, &WrapConfig::default());
    assert_eq!(points.len(), 2);
}

#[test]
fn a_bucket_closes_only_after_its_grace_delay() {
    let config = AggregatorConfig::new(10).unwrap().with_grace_secs(3);
    let mut agg = Agg::new(config);
    agg.record(ts(15.0), num("g", MetricType::Gauge, &[], 1.0, 15.0)).unwrap();
    assert_eq!(agg.poll_timeout(), Some(ts(23.0)));
    agg.handle_timeout(ts(22.9));
    assert!(agg.poll_flush().is_none());
    // Still open: a sample on its way lands in the same bucket.
    agg.record(ts(22.9), num("g", MetricType::Gauge, &[], 2.0, 19.0)).unwrap();
    agg.handle_timeout(ts(23.0));
    let points = drain(&mut agg, &WrapConfig::default());
    assert_eq!(points.len(), 1);
    assert_eq!((points[0].3, points[0].4), (10.0, 2.0));
    assert_eq!(agg.poll_timeout(), None);
}

#[test]
fn a_late_sample_is_folded_into_the_oldest_open_bucket_and_counted() {
    let mut agg = Agg::new(AggregatorConfig::new(10).unwrap().with_grace_secs(0));
    agg.record(ts(5.0), num("c", MetricType::Count, &[], 1.0, 5.0)).unwrap();
    agg.handle_timeout(ts(10.0));
    let first = drain(&mut agg, &WrapConfig::default());
    assert_eq!((first[0].3, first[0].4), (0.0, 1.0));
    // Bucket 0 is emitted; a sample stamped 7 s arrives at 12 s.
    agg.record(ts(12.0), num("c", MetricType::Count, &[], 4.0, 7.0)).unwrap();
    agg.record(ts(12.0), num("c", MetricType::Count, &[], 5.0, 12.0)).unwrap();
    assert_eq!(agg.stats().late, 1);
    agg.handle_timeout(ts(20.0));
    let second = drain(&mut agg, &WrapConfig::default());
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].3, second[0].4), (10.0, 9.0));
}

#[test]
fn the_configured_interval_is_kept() {
    // compat §7 item 2: the original reset the interval to 10 after any merge.
    let mut agg = Agg::new(AggregatorConfig::new(15).unwrap());
    for v in [1.0, 2.0, 3.0] {
        agg.record(ts(0.0), num("r", MetricType::Rate, &[], v, 16.0)).unwrap();
    }
    agg.handle_timeout(ts(100.0));
    let points = drain(&mut agg, &WrapConfig::default());
    assert_eq!(
        (points[0].1, points[0].3, points[0].4, points[0].5),
        (OutputType::Rate, 15.0, 6.0 / 15.0, Some(15))
    );
}

#[test]
fn gauge_keeps_the_latest_value_by_timestamp() {
    // compat §8.3: gauge [1,2,3,9] at [10,9,12,11] → 3 (shifted by 2 s into one bucket).
    let mut agg = Agg::new(AggregatorConfig::DEFAULT);
    for (v, at) in [(1.0, 12.0), (2.0, 11.0), (3.0, 14.0), (9.0, 13.0)] {
        agg.record(ts(0.0), num("g", MetricType::Gauge, &[], v, at)).unwrap();
    }
    agg.handle_timeout(ts(100.0));
    let points = drain(&mut agg, &WrapConfig::default());
    assert_eq!((points[0].1, points[0].3, points[0].4, points[0].5), (OutputType::Gauge, 10.0, 3.0, None));
}

#[test]
fn sets_count_distinct_members_across_samples() {
    // compat §8.3: [["Alice","Bob"],["Bob","Carol"]] → count 3.
    let mut agg = Agg::new(AggregatorConfig::DEFAULT);
    let first = [Member::Str("Alice"), Member::Str("Bob")];
    let second = [Member::Str("Bob"), Member::Str("Carol"), Member::Num(1.0)];
    let third = [Member::Num(1.0), Member::Str("1")];
    for members in [&first[..], &second[..], &third[..]] {
        let sample = Sample {
            name: "users",
            kind: MetricType::Set,
            tags: &[],
            value: Value::Set(SetMembers::from_slice(members)),
            timestamp: ts(3.0),
        };
        agg.record(ts(0.0), sample).unwrap();
    }
    agg.handle_timeout(ts(100.0));
    let points = drain(&mut agg, &WrapConfig::default());
    assert_eq!((points[0].1, points[0].4, points[0].5), (OutputType::Count, 5.0, Some(10)));
}

#[test]
fn a_samples_record_counts_as_its_samples() {
    // The aggregating client's shape: one record holding several histogram samples.
    let mut agg = Agg::new(AggregatorConfig::DEFAULT);
    let few = [Member::Num(1.0), Member::Num(2.0)];
    let many = [Member::Num(3.0), Member::Num(4.0), Member::Num(5.0), Member::Num(6.0)];
    for values in [&few[..], &many[..]] {
        let sample = Sample {
            name: "lat",
            kind: MetricType::Histogram,
            tags: &[],
            value: Value::Samples(SetMembers::from_slice(values)),
            timestamp: ts(1.0),
        };
        agg.record(ts(0.0), sample).unwrap();
    }
    let bad = [Member::Num(1.0), Member::Str("x")];
    let sample = Sample {
        name: "lat",
        kind: MetricType::Histogram,
        tags: &[],
        value: Value::Samples(SetMembers::from_slice(&bad)),
        timestamp: ts(1.0),
    };
    assert_eq!(agg.record(ts(0.0), sample).unwrap_err().error, RecordError::WrongValueKind);
    agg.handle_timeout(ts(100.0));
    let points = drain(&mut agg, &WrapConfig::default());
    let count = points.iter().find(|p| p.0.as_str() == "lat.count").unwrap();
    let max = points.iter().find(|p| p.0.as_str() == "lat.max").unwrap();
    assert_eq!((count.4, max.4), (0.6, 6.0));
}

#[test]
fn histogram_outputs_match_the_original_example() {
    let mut agg = Agg::new(AggregatorConfig::DEFAULT);
    let tags = [Tag::new("type", "histogram")];
    let values = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0];
    let stamps = [10.0, 11.0, 12.0, 15.0, 13.0, 14.0, 19.0, 17.0];
    for (v, at) in values.iter().zip(stamps) {
        agg.record(ts(0.0), num("histogram.test", MetricType::Histogram, &tags, *v, at)).unwrap();
    }
    agg.handle_timeout(ts(100.0));
    let points = drain(&mut agg, &WrapConfig::default());
    let got: heapless::Vec<(&str, f64), 8> = points.iter().map(|p| (p.0.as_str(), p.4)).collect();
    assert_eq!(
        &got[..],
        &[
            ("histogram.test.95percentile", 3.0),
            ("histogram.test.avg", 1.875),
            ("histogram.test.count", 0.8),
            ("histogram.test.max", 3.0),
            ("histogram.test.median", 2.0),
        ]
    );
    assert!(points.iter().all(|p| p.3 == 10.0));
}

#[test]
fn refusals_hand_the_sample_back_and_are_counted() {
    let mut agg = Aggregator::<2, 0, 256>::new(AggregatorConfig::DEFAULT);
    const LONG_BYTES: [u8; MAX_NAME_BYTES + 1] = [b'x'; MAX_NAME_BYTES + 1];
    const LONG: &str = match core::str::from_utf8(&LONG_BYTES) {
        Ok(text) => text,
        Err(_) => panic!(),
    };
    assert_eq!(LONG.len(), MAX_NAME_BYTES + 1);
    let cases: [(Sample<'_>, RecordError); 5] = [
        (num("", MetricType::Count, &[], 1.0, 1.0), RecordError::EmptyName),
        (num(LONG, MetricType::Count, &[], 1.0, 1.0), RecordError::NameTooLong),
        (num("n", MetricType::Count, &[], f64::NAN, 1.0), RecordError::NonFinite),
        (num("n", MetricType::Set, &[], 1.0, 1.0), RecordError::WrongValueKind),
        (num("n", MetricType::Count, &[], 1.0, 1.0e12), RecordError::TooFarInFuture),
    ];
    for (sample, error) in cases {
        let refused = agg.record(ts(0.0), sample).unwrap_err();
        assert_eq!(
            (refused.sample.name, refused.sample.timestamp, refused.error),
            (sample.name, sample.timestamp, error)
        );
    }
    agg.record(ts(0.0), num("a", MetricType::Count, &[], 1.0, 1.0)).unwrap();
    agg.record(ts(0.0), num("b", MetricType::Count, &[], 1.0, 1.0)).unwrap();
    let full = agg.record(ts(0.0), num("c", MetricType::Count, &[], 1.0, 1.0)).unwrap_err();
    assert_eq!(full.error, RecordError::Full);
    // Known series still record while the table is full.
    agg.record(ts(0.0), num("a", MetricType::Count, &[], 1.0, 2.0)).unwrap();
    let stats = agg.stats();
    assert_eq!((stats.offered, stats.recorded, stats.refused_total()), (9, 3, 6));
    assert_eq!(stats.refused(RecordError::Full), 1);
}

#[test]
fn the_sketch_pool_is_shared_and_released_after_flush() {
    let mut agg = Aggregator::<8, 1, 1024>::new(AggregatorConfig::DEFAULT);
    for i in 0..10 {
        agg.record(ts(0.0), num("h1", MetricType::Histogram, &[], i as f64, 1.0)).unwrap();
    }
    for i in 0..INLINE_SAMPLES {
        agg.record(ts(0.0), num("h2", MetricType::Histogram, &[], i as f64, 1.0)).unwrap();
    }
    let refused = agg.record(ts(0.0), num("h2", MetricType::Histogram, &[], 9.0, 1.0)).unwrap_err();
    assert_eq!(refused.error, RecordError::SketchesFull);
    agg.handle_timeout(ts(100.0));
    while agg.poll_flush().is_some() {}
    // The slot came back: a new bucket can use it.
    for i in 0..10 {
        agg.record(ts(100.0), num("h2", MetricType::Histogram, &[], i as f64, 101.0)).unwrap();
    }
}

#[test]
fn the_key_arena_is_compacted_after_a_flush() {
    // Room for about three keys: flushing frees them for the next bucket.
    let mut agg = Aggregator::<8, 0, 48>::new(AggregatorConfig::DEFAULT);
    for round in 0..20 {
        let base = round as f64 * 10.0;
        for name in ["alpha", "bravo", "delta"] {
            agg.record(ts(base), num(name, MetricType::Count, &[], 1.0, base + 1.0)).unwrap();
        }
        agg.handle_timeout(ts(base + 20.0));
        let mut names = 0;
        while let Some(flushed) = agg.poll_flush() {
            assert!(["alpha", "bravo", "delta"].contains(&flushed.name));
            names += 1;
        }
        assert_eq!(names, 3);
    }
}

#[test]
fn close_all_flushes_open_buckets() {
    let mut agg = Agg::new(AggregatorConfig::DEFAULT);
    agg.record(ts(0.0), num("c", MetricType::Count, &[], 1.0, 1.0)).unwrap();
    agg.record(ts(0.0), num("c", MetricType::Count, &[], 1.0, 11.0)).unwrap();
    agg.close_all();
    assert_eq!(drain(&mut agg, &WrapConfig::default()).len(), 2);
    // Later samples for those buckets are late, not second points.
    agg.record(ts(12.0), num("c", MetricType::Count, &[], 1.0, 5.0)).unwrap();
    assert_eq!(agg.stats().late, 1);
}

#[test]
fn the_future_horizon_is_where_record_starts_refusing() {
    let config = AggregatorConfig::new(10).unwrap().with_max_future_secs(600);
    assert_eq!(config.future_horizon(ts(1000.0)), ts(1600.0));
    let mut agg = Agg::new(config);
    agg.record(ts(1000.0), num("f", MetricType::Count, &[], 1.0, 1600.0)).unwrap();
    let refused = agg.record(ts(1000.0), num("f", MetricType::Count, &[], 1.0, 1600.001)).unwrap_err();
    assert_eq!(refused.error, RecordError::TooFarInFuture);
}

#[test]
fn close_before_closes_exactly_the_buckets_that_end_by_then() {
    // One-second buckets: closing bucket 7 must leave bucket 8 open (closing at `end + 1`
    // closed both, and bucket 8's samples were then folded into bucket 9).
    let config = AggregatorConfig::new(1).unwrap().with_grace_secs(5);
    let mut agg = Agg::new(config);
    assert_eq!(agg.open_from_secs(), None);
    let bucket = config.bucket_of(ts(7.5));
    agg.close_before(bucket.start());
    assert_eq!(agg.open_from_secs(), Some(7));
    agg.record(ts(100.0), num("c", MetricType::Count, &[], 1.0, 6.5)).unwrap();
    agg.record(ts(100.0), num("c", MetricType::Count, &[], 2.0, 7.5)).unwrap();
    agg.record(ts(100.0), num("c", MetricType::Count, &[], 4.0, 8.5)).unwrap();
    assert_eq!(agg.stats().late, 1);
    agg.close_before(bucket.end());
    let points = drain(&mut agg, &WrapConfig::default());
    assert_eq!(points.len(), 1);
    assert_eq!((points[0].3, points[0].4), (7.0, 3.0));
    // An earlier `at` reopens nothing; the grace plays no part.
    agg.close_before(ts(3.0));
    assert_eq!(agg.open_from_secs(), Some(8));
    agg.close_before(ts(9.0));
    let points = drain(&mut agg, &WrapConfig::default());
    assert_eq!((points.len(), points[0].3, points[0].4), (1, 8.0, 4.0));
    assert_eq!(agg.stats().late, 1);
    assert!(agg.is_empty());
}

#[test]
fn capacity_refusals_are_the_ones_a_flush_can_cure() {
    let capacity: heapless::Vec<RecordError, 12> =
        RecordError::ALL.iter().copied().filter(|e| e.is_capacity()).collect();
    assert_eq!(
        &capacity[..],
        &[RecordError::Full, RecordError::KeysFull, RecordError::SketchesFull, RecordError::TooManyBuckets]
    );
    // Each capacity refusal, produced for real: the sample is valid, the room is not there.
    let mut agg = Aggregator::<1, 0, 64>::new(AggregatorConfig::DEFAULT);
    agg.record(ts(0.0), num("a", MetricType::Count, &[], 1.0, 1.0)).unwrap();
    let full = agg.record(ts(0.0), num("b", MetricType::Count, &[], 1.0, 1.0)).unwrap_err();
    assert!(full.error.is_capacity(), "{:?}", full.error);
    let refused = agg.record(ts(0.0), num("", MetricType::Count, &[], 1.0, 1.0)).unwrap_err();
    assert!(!refused.error.is_capacity());
    let refused = agg.record(ts(0.0), num("a", MetricType::Count, &[], f64::NAN, 1.0)).unwrap_err();
    assert!(!refused.error.is_capacity());
    let refused = agg.record(ts(0.0), num("a", MetricType::Count, &[], 1.0, 1.0e12)).unwrap_err();
    assert!(!refused.error.is_capacity());
}

#[test]
fn a_sample_that_would_overflow_its_series_is_refused_and_the_series_kept() {
    let mut agg = Aggregator::<16, 1, 1024>::new(AggregatorConfig::DEFAULT);
    let big = f64::MAX / 1.5;
    for kind in [MetricType::Count, MetricType::Gauge, MetricType::Rate, MetricType::Histogram] {
        agg.record(ts(0.0), num("o", kind, &[], big, 1.0)).unwrap();
        let refused = agg.record(ts(0.0), num("o", kind, &[], big, 2.0)).unwrap_err();
        assert_eq!(refused.error, RecordError::Overflow, "{kind:?}");
        assert!(!refused.error.is_capacity());
        agg.record(ts(0.0), num("o", kind, &[], -big, 3.0)).unwrap();
    }
    // A histogram in a pooled sketch, and a record of several samples.
    for i in 0..8 {
        agg.record(ts(0.0), num("p", MetricType::Histogram, &[], i as f64, 1.0)).unwrap();
    }
    agg.record(ts(0.0), num("p", MetricType::Histogram, &[], big, 1.0)).unwrap();
    let refused = agg.record(ts(0.0), num("p", MetricType::Histogram, &[], big, 1.0)).unwrap_err();
    assert_eq!(refused.error, RecordError::Overflow);
    let both = [Member::Num(big), Member::Num(big)];
    let sample = Sample {
        name: "s",
        kind: MetricType::Histogram,
        tags: &[],
        value: Value::Samples(SetMembers::from_slice(&both)),
        timestamp: ts(1.0),
    };
    assert_eq!(agg.record(ts(0.0), sample).unwrap_err().error, RecordError::Overflow);
    assert_eq!(agg.stats().refused(RecordError::Overflow), 6);
    agg.handle_timeout(ts(100.0));
    let mut sums = heapless::Vec::<(MetricType, f64), 8>::new();
    while let Some(flushed) = agg.poll_flush() {
        assert!(flushed.name != "s");
        if flushed.name == "o" {
            let _ = sums.push((flushed.kind, flushed.sum()));
        }
        for output in flushed.outputs(&WrapConfig::default()) {
            assert!(output.value.is_finite(), "{}: {output:?}", flushed.name);
        }
    }
    sums.sort_unstable_by_key(|(kind, _)| *kind as u8);
    assert_eq!(
        &sums[..],
        &[
            (MetricType::Count, 0.0),
            (MetricType::Gauge, 0.0),
            (MetricType::Rate, 0.0),
            (MetricType::Histogram, 0.0)
        ]
    );
}

#[test]
fn the_remembered_bucket_ends_exactly_at_the_next_bucket() {
    // Every timestamp lands in the bucket bucket_start gives, whatever came before it.
    let mut agg = Agg::new(AggregatorConfig::new(10).expect("10 s"));
    let times = [100.0, 109.999_999, 110.0, 99.999_999, 100.0, 119.5, 90.0, 110.25, 0.0, 9.999];
    for &at in &times {
        agg.record(ts(200.0), num("c", MetricType::Count, &[], 1.0, at)).unwrap();
    }
    agg.close_all();
    let mut counts = heapless::Vec::<(f64, f64), 8>::new();
    while let Some(flushed) = agg.poll_flush() {
        counts.push((flushed.timestamp.as_secs_f64(), flushed.sum())).unwrap();
    }
    counts.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(&counts[..], &[(0.0, 2.0), (90.0, 2.0), (100.0, 3.0), (110.0, 3.0)]);
}

#[test]
fn aggregator_sizes_are_as_documented() {
    // docs/capacity.md quotes these figures.
    let small = core::mem::size_of::<SmallAggregator>();
    let board = core::mem::size_of::<BoardAggregator>();
    let gateway = core::mem::size_of::<GatewayAggregator>();
    assert!(small <= 16 * 1024, "{small}");
    assert!(board <= 512 * 1024, "{board}");
    assert!(gateway <= 5 * 1024 * 1024, "{gateway}");
    // The exact figures of docs/capacity.md's table, on 64-bit targets.
    if cfg!(target_pointer_width = "64") {
        assert_eq!((small, board, gateway), (12_800, 330_816, 4_880_832));
    }
}

#[test]
fn small_aggregator_fits_its_memory_budget() {
    assert!(
        core::mem::size_of::<SmallAggregator>() <= 16 * 1024,
        "{}",
        core::mem::size_of::<SmallAggregator>()
    );
}
