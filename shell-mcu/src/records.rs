//! A closed interval's records into DATA payloads, and two payloads merged into one when the
//! ring is full.

use chouette_core::aggregate::FlushedState;
use chouette_core::limits::SKETCH_BINS;
use chouette_core::link::message::{DataHeader, DataReader, DataWriter, MessageError, Record, Value};
use chouette_core::sketch::{Histogram, QuantileSketch};

/// A histogram's values as the writer takes them.
enum Dist<'a> {
    Samples(&'a [f64]),
    Sketch(&'a QuantileSketch<SKETCH_BINS>),
}

/// Appends `state` as `ctx`'s record. Histograms go as samples while they fit, else as a sketch;
/// when `alone` (the payload holds nothing else) and not even the sketch fits, as a summary.
/// Returns whether the record was coarsened to a summary; [`MessageError::Full`] leaves the
/// payload unchanged (start the next payload and call again with `alone`).
pub(crate) fn push_state(
    writer: &mut DataWriter<'_>,
    ctx: u16,
    state: FlushedState<'_>,
    scratch: &mut Histogram,
) -> Result<bool, MessageError> {
    let alone = writer.is_empty();
    match state {
        FlushedState::Sum { sum, n } => writer.push(ctx, &Value::Count { sum, n }).map(|()| false),
        FlushedState::Gauge { last, sum, n } => {
            writer.push(ctx, &Value::Gauge { last, sum, n }).map(|()| false)
        }
        FlushedState::Set { distinct, samples } => {
            writer.push(ctx, &Value::Set { distinct, samples }).map(|()| false)
        }
        FlushedState::Samples(samples) => push_dist(writer, ctx, Dist::Samples(samples), alone, scratch),
        FlushedState::Histogram(histogram) => match (histogram.exact(), histogram.sketch()) {
            (Some(samples), _) => push_dist(writer, ctx, Dist::Samples(samples), alone, scratch),
            (None, Some(sketch)) => push_dist(writer, ctx, Dist::Sketch(sketch), alone, scratch),
            (None, None) => Err(MessageError::Malformed),
        },
    }
}

fn push_dist(
    writer: &mut DataWriter<'_>,
    ctx: u16,
    dist: Dist<'_>,
    alone: bool,
    scratch: &mut Histogram,
) -> Result<bool, MessageError> {
    let sketch = match dist {
        Dist::Samples(samples) => {
            if writer.push_samples(ctx, samples.iter().copied()).is_ok() {
                return Ok(false);
            }
            *scratch = Histogram::from_sketch(QuantileSketch::new());
            for &value in samples {
                // Samples out of the aggregator are finite.
                let _ = scratch.insert(value);
            }
            match scratch.sketch() {
                Some(sketch) => sketch,
                None => return Err(MessageError::Malformed),
            }
        }
        Dist::Sketch(sketch) => sketch,
    };
    if writer.push_sketch(ctx, sketch).is_ok() {
        return Ok(false);
    }
    if !alone {
        return Err(MessageError::Full);
    }
    let parts = sketch.parts();
    writer
        .push(ctx, &Value::Summary { count: parts.count, sum: parts.sum, min: parts.min, max: parts.max })
        .map(|()| true)
}

/// Count, sum, min and max of a histogram's record.
fn summary_of(value: &Value<'_>) -> Option<(u64, f64, f64, f64)> {
    match value {
        Value::Samples(samples) => {
            let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
            for v in samples.iter() {
                sum += v;
                min = min.min(v);
                max = max.max(v);
            }
            Some((samples.len() as u64, sum, min, max))
        }
        Value::Sketch(sketch) => {
            Some((sketch.parts.count, sketch.parts.sum, sketch.parts.min, sketch.parts.max))
        }
        Value::Summary { count, sum, min, max } => Some((*count, *sum, *min, *max)),
        _ => None,
    }
}

fn add_to(histogram: &mut Histogram, value: &Value<'_>) -> Result<(), MessageError> {
    match value {
        Value::Samples(samples) => {
            for v in samples.iter() {
                histogram.insert(v).map_err(|_| MessageError::Malformed)?;
            }
            Ok(())
        }
        Value::Sketch(sketch) => {
            histogram.merge(&Histogram::from_sketch(sketch.to_sketch::<SKETCH_BINS>()?));
            Ok(())
        }
        _ => Err(MessageError::Malformed),
    }
}

/// Writes the merge of one context's records of two payloads (`older` first). Returns whether
/// a histogram was coarsened to a summary here.
fn push_merged(
    writer: &mut DataWriter<'_>,
    ctx: u16,
    older: &Value<'_>,
    newer: &Value<'_>,
    scratch: &mut Histogram,
) -> Result<bool, MessageError> {
    match (older, newer) {
        (Value::Count { sum: s1, n: n1 }, Value::Count { sum: s2, n: n2 }) => {
            writer.push(ctx, &Value::Count { sum: s1 + s2, n: n1 + n2 }).map(|()| false)
        }
        (Value::Gauge { sum: s1, n: n1, .. }, Value::Gauge { last, sum: s2, n: n2 }) => {
            writer.push(ctx, &Value::Gauge { last: *last, sum: s1 + s2, n: n1 + n2 }).map(|()| false)
        }
        // The wire carries no set members: the larger distinct count is a lower bound of the
        // union's (documented in docs/link.md).
        (Value::Set { distinct: d1, samples: m1 }, Value::Set { distinct: d2, samples: m2 }) => {
            writer.push(ctx, &Value::Set { distinct: (*d1).max(*d2), samples: m1 + m2 }).map(|()| false)
        }
        (Value::Summary { .. }, _) | (_, Value::Summary { .. }) => {
            let (c1, s1, lo1, hi1) = summary_of(older).ok_or(MessageError::Malformed)?;
            let (c2, s2, lo2, hi2) = summary_of(newer).ok_or(MessageError::Malformed)?;
            let value = Value::Summary { count: c1 + c2, sum: s1 + s2, min: lo1.min(lo2), max: hi1.max(hi2) };
            writer.push(ctx, &value).map(|()| false)
        }
        _ => {
            *scratch = Histogram::new();
            add_to(scratch, older)?;
            add_to(scratch, newer)?;
            if let Some(samples) = scratch.exact() {
                if writer.push_samples(ctx, samples.iter().copied()).is_ok() {
                    return Ok(false);
                }
                let exact = core::mem::replace(scratch, Histogram::from_sketch(QuantileSketch::new()));
                scratch.merge(&exact);
            }
            let sketch = scratch.sketch().ok_or(MessageError::Malformed)?;
            if writer.push_sketch(ctx, sketch).is_ok() {
                return Ok(false);
            }
            let parts = sketch.parts();
            writer
                .push(
                    ctx,
                    &Value::Summary { count: parts.count, sum: parts.sum, min: parts.min, max: parts.max },
                )
                .map(|()| true)
        }
    }
}

fn find(payload: &[u8], ctx: u16) -> Result<Option<Record<'_>>, MessageError> {
    for record in DataReader::new(payload)? {
        let record = record?;
        if record.ctx == ctx {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// Merges two data payloads (`older`, then `newer`) into `out`: counts add, gauges keep the
/// newer `last`, histograms merge (samples while they fit, else a sketch, else a summary), sets
/// keep the larger distinct count. The header starts at the older start and ends at the later
/// end; `intervals` adds up (or, for two payloads of one interval, stays). Returns the merged
/// length and how many histograms were coarsened; [`MessageError::Full`] when the merge does not
/// fit one payload.
pub(crate) fn merge(
    older: &[u8],
    newer: &[u8],
    out: &mut [u8],
    scratch: &mut Histogram,
) -> Result<(usize, u32), MessageError> {
    let a = DataReader::new(older)?.header;
    let b = DataReader::new(newer)?.header;
    let end = |h: &DataHeader| h.start_ms.saturating_add(u64::from(h.interval_ms));
    let start_ms = a.start_ms.min(b.start_ms);
    let end_ms = end(&a).max(end(&b));
    let overlap = b.start_ms < end(&a) && a.start_ms < end(&b);
    let header = DataHeader {
        start_ms,
        interval_ms: u32::try_from(end_ms - start_ms).map_err(|_| MessageError::Full)?,
        intervals: if overlap {
            a.intervals.max(b.intervals)
        } else {
            a.intervals.saturating_add(b.intervals)
        },
    };
    let mut writer = DataWriter::new(out, header)?;
    let mut coarsened = 0;
    for record in DataReader::new(older)? {
        let record = record?;
        coarsened += match find(newer, record.ctx)? {
            Some(other) => push_merged(&mut writer, record.ctx, &record.value, &other.value, scratch)?,
            None => {
                writer.push(record.ctx, &record.value)?;
                false
            }
        } as u32;
    }
    for record in DataReader::new(newer)? {
        let record = record?;
        if find(older, record.ctx)?.is_none() {
            writer.push(record.ctx, &record.value)?;
        }
    }
    Ok((writer.len(), coarsened))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chouette_core::link::MAX_PAYLOAD;

    fn payload(header: DataHeader, fill: impl FnOnce(&mut DataWriter<'_>)) -> ([u8; MAX_PAYLOAD], usize) {
        let mut buf = [0u8; MAX_PAYLOAD];
        let mut writer = DataWriter::new(&mut buf, header).expect("header fits");
        fill(&mut writer);
        let len = writer.len();
        (buf, len)
    }

    fn records(payload: &[u8]) -> ([Option<Value<'_>>; 8], DataHeader) {
        let mut out = [None; 8];
        let reader = DataReader::new(payload).expect("header");
        let header = reader.header;
        for record in reader {
            let record = record.expect("valid");
            out[usize::from(record.ctx)] = Some(record.value);
        }
        (out, header)
    }

    #[test]
    fn merges_counts_gauges_sets_and_samples_exactly() {
        let h1 = DataHeader { start_ms: 1000, interval_ms: 1000, intervals: 1 };
        let h2 = DataHeader { start_ms: 3000, interval_ms: 1000, intervals: 2 };
        let (a, a_len) = payload(h1, |w| {
            w.push(0, &Value::Count { sum: 3.0, n: 3 }).unwrap();
            w.push(1, &Value::Gauge { last: 20.5, sum: 41.0, n: 2 }).unwrap();
            w.push_samples(2, [1.0, 2.5].into_iter()).unwrap();
            w.push(3, &Value::Set { distinct: 4, samples: 9 }).unwrap();
            w.push(5, &Value::Count { sum: 1.0, n: 1 }).unwrap();
        });
        let (b, b_len) = payload(h2, |w| {
            w.push(1, &Value::Gauge { last: 19.0, sum: 19.0, n: 1 }).unwrap();
            w.push(0, &Value::Count { sum: 2.0, n: 2 }).unwrap();
            w.push_samples(2, [0.5].into_iter()).unwrap();
            w.push(3, &Value::Set { distinct: 6, samples: 7 }).unwrap();
            w.push(4, &Value::Summary { count: 2, sum: 3.0, min: 1.0, max: 2.0 }).unwrap();
        });
        let mut out = [0u8; MAX_PAYLOAD];
        let mut scratch = Histogram::new();
        let (len, coarsened) = merge(&a[..a_len], &b[..b_len], &mut out, &mut scratch).expect("fits");
        assert_eq!(coarsened, 0);
        let (values, header) = records(&out[..len]);
        assert_eq!(header, DataHeader { start_ms: 1000, interval_ms: 3000, intervals: 3 });
        assert_eq!(values[0], Some(Value::Count { sum: 5.0, n: 5 }));
        assert_eq!(values[1], Some(Value::Gauge { last: 19.0, sum: 60.0, n: 3 }));
        match values[2] {
            Some(Value::Samples(samples)) => {
                let mut got = [0.0; 3];
                samples.iter().zip(got.iter_mut()).for_each(|(v, slot)| *slot = v);
                assert_eq!((samples.len(), got), (3, [0.5, 1.0, 2.5]));
            }
            other => panic!("expected samples, got {other:?}"),
        }
        assert_eq!(values[3], Some(Value::Set { distinct: 6, samples: 16 }));
        assert_eq!(values[4], Some(Value::Summary { count: 2, sum: 3.0, min: 1.0, max: 2.0 }));
        assert_eq!(values[5], Some(Value::Count { sum: 1.0, n: 1 }));
    }

    #[test]
    fn many_samples_merge_into_a_sketch_with_exact_count_and_sum() {
        let h1 = DataHeader { start_ms: 0, interval_ms: 1000, intervals: 1 };
        let h2 = DataHeader { start_ms: 1000, interval_ms: 1000, intervals: 1 };
        let values = |base: f64| (0..100).map(move |i| base + f64::from(i) * 0.37);
        let (a, a_len) = payload(h1, |w| w.push_samples(0, values(1.0)).unwrap());
        let (b, b_len) = payload(h2, |w| w.push_samples(0, values(100.0)).unwrap());
        let mut out = [0u8; MAX_PAYLOAD];
        let mut scratch = Histogram::new();
        let (len, _) = merge(&a[..a_len], &b[..b_len], &mut out, &mut scratch).expect("fits");
        let (values_out, header) = records(&out[..len]);
        assert_eq!(header.intervals, 2);
        match values_out[0] {
            Some(Value::Sketch(sketch)) => {
                let expected: f64 = values(1.0).chain(values(100.0)).sum();
                assert_eq!(sketch.parts.count, 200);
                assert!((sketch.parts.sum - expected).abs() < 1e-6, "{} vs {expected}", sketch.parts.sum);
                assert_eq!((sketch.parts.min, sketch.parts.max), (1.0, 100.0 + 99.0 * 0.37));
            }
            other => panic!("expected a sketch, got {other:?}"),
        }
    }

    #[test]
    fn two_payloads_of_one_interval_keep_its_interval_count() {
        let h = DataHeader { start_ms: 5000, interval_ms: 1000, intervals: 1 };
        let (a, a_len) = payload(h, |w| w.push(0, &Value::Count { sum: 1.0, n: 1 }).unwrap());
        let (b, b_len) = payload(h, |w| w.push(1, &Value::Count { sum: 2.0, n: 1 }).unwrap());
        let mut out = [0u8; MAX_PAYLOAD];
        let (len, _) = merge(&a[..a_len], &b[..b_len], &mut out, &mut Histogram::new()).expect("fits");
        assert_eq!(records(&out[..len]).1, h);
    }
}
