//! Aggregating mode: one entry per series per bucket, flushed as raw records (see the README).
//!
//! chouette-core's aggregator keeps set members as 64-bit hashes (then HyperLogLog) and
//! histograms as sketches, so it cannot give back the members and samples that the agent's raw
//! shape needs; this table keeps them exactly, with the same series identity (name, type, tags)
//! and the same buckets (`[k·I, (k+1)·I)`, from the core's `AggregatorConfig::bucket_of`).

use std::collections::{BTreeSet, HashMap};

use chouette_core::aggregate::AggregatorConfig;
use chouette_core::hash::{hash_bytes, BuildPassThrough};
use chouette_core::wire::write::Writer;
use chouette_core::{Member, MetricType, Timestamp};

use crate::render::{write_member, Number};

/// Most histogram samples one series keeps per interval (16 B each: 1.6 MB); further samples are
/// dropped and counted.
pub(crate) const MAX_SAMPLES_PER_SERIES: usize = 100_000;

#[derive(Debug)]
pub(crate) enum State {
    Sum { int: i64, float: f64, any_float: bool },
    Last(Number),
    Members(BTreeSet<String>),
    Samples(Vec<Number>),
}

/// One closed series-bucket.
#[derive(Debug)]
pub(crate) struct Series {
    pub bucket: i64,
    pub kind: MetricType,
    pub name: Box<str>,
    pub tags: Box<[(Box<str>, Box<str>)]>,
    pub state: State,
}

impl Series {
    fn matches(&self, bucket: i64, kind: MetricType, name: &str, tags: &[(&str, &str)]) -> bool {
        self.bucket == bucket
            && self.kind == kind
            && &*self.name == name
            && self.tags.len() == tags.len()
            && self.tags.iter().zip(tags).all(|((a, b), (c, d))| &**a == *c && &**b == *d)
    }

    /// The aggregated value of a `Sum`.
    pub fn sum(int: i64, float: f64, any_float: bool) -> Number {
        if any_float {
            Number::Float(int as f64 + float)
        } else {
            Number::Int(int)
        }
    }
}

/// The value handed to [`Table::record`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    Number(Number),
    Members(&'a [Member<'a>]),
}

#[derive(Debug)]
pub(crate) struct Table {
    /// The bucket arithmetic: the core's, so the client's buckets are the agent's.
    buckets: AggregatorConfig,
    interval: i64,
    capacity: usize,
    len: usize,
    map: HashMap<u64, Vec<Series>, BuildPassThrough>,
}

fn hash(bucket: i64, kind: MetricType, name: &str, tags: &[(&str, &str)]) -> u64 {
    let mut h = hash_bytes(bucket as u64 ^ ((kind as u64) << 56), name.as_bytes());
    for (k, v) in tags {
        h = hash_bytes(h ^ 0x6b, k.as_bytes());
        h = hash_bytes(h ^ 0x76, v.as_bytes());
    }
    h
}

impl Table {
    pub fn new(interval_secs: u64, capacity: usize) -> Self {
        let interval = u32::try_from(interval_secs).unwrap_or(u32::MAX).max(1);
        let buckets = AggregatorConfig::new(interval).unwrap_or(AggregatorConfig::DEFAULT);
        let interval = i64::from(buckets.interval_secs());
        Table { buckets, interval, capacity, len: 0, map: HashMap::default() }
    }

    pub fn bucket_of(&self, secs: f64) -> i64 {
        self.buckets.bucket_of(Timestamp::from_secs_f64(secs)).start_secs()
    }

    /// Adds one call. `false` when the table is full (the caller counts the drop).
    pub fn record(
        &mut self,
        ts: f64,
        kind: MetricType,
        name: &str,
        tags: &[(&str, &str)],
        input: Input<'_>,
    ) -> bool {
        let bucket = self.bucket_of(ts);
        let h = hash(bucket, kind, name, tags);
        let chain = self.map.entry(h).or_default();
        let series = match chain.iter_mut().position(|s| s.matches(bucket, kind, name, tags)) {
            Some(i) => &mut chain[i],
            None => {
                if self.len >= self.capacity {
                    return false;
                }
                self.len += 1;
                let state = match kind {
                    MetricType::Count | MetricType::Rate => {
                        State::Sum { int: 0, float: 0.0, any_float: false }
                    }
                    MetricType::Gauge => State::Last(Number::Int(0)),
                    MetricType::Set => State::Members(BTreeSet::new()),
                    MetricType::Histogram | MetricType::Distribution => State::Samples(Vec::new()),
                };
                chain.push(Series {
                    bucket,
                    kind,
                    name: name.into(),
                    tags: tags.iter().map(|(k, v)| (Box::from(*k), Box::from(*v))).collect(),
                    state,
                });
                let last = chain.len() - 1;
                &mut chain[last]
            }
        };
        match (&mut series.state, input) {
            (State::Sum { int, float, any_float }, Input::Number(n)) => match n {
                Number::Int(i) => match int.checked_add(i) {
                    Some(s) => *int = s,
                    None => {
                        *float += i as f64;
                        *any_float = true;
                    }
                },
                Number::Float(f) => {
                    *float += f;
                    *any_float = true;
                }
            },
            (State::Last(last), Input::Number(n)) => *last = n,
            (State::Samples(samples), Input::Number(_)) if samples.len() >= MAX_SAMPLES_PER_SERIES => {
                return false
            }
            (State::Samples(samples), Input::Number(n)) => samples.push(n),
            (State::Members(set), Input::Members(members)) => {
                for m in members {
                    let mut buf = [0u8; 128];
                    let mut w = Writer::new(&mut buf);
                    write_member(&mut w, *m);
                    match w.finish() {
                        Ok(len) => {
                            let text = std::str::from_utf8(&buf[..len]).unwrap_or("");
                            if !set.contains(text) {
                                set.insert(text.to_owned());
                            }
                        }
                        Err(_) => {
                            if let Some(text) = crate::render::render(
                                |w| write_member(w, *m),
                                |b| String::from_utf8_lossy(b).into_owned(),
                            ) {
                                set.insert(text);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// Removes and returns every series whose bucket ended at or before `now - grace_secs`
    /// (everything when `all`).
    pub fn take_closed(&mut self, now: f64, grace_secs: f64, all: bool) -> Vec<Series> {
        let mut out = Vec::new();
        let limit = now - grace_secs;
        let interval = self.interval;
        self.map.retain(|_, chain| {
            let mut i = 0;
            while i < chain.len() {
                if all || ((chain[i].bucket + interval) as f64) <= limit {
                    out.push(chain.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            !chain.is_empty()
        });
        self.len -= out.len();
        out
    }

    /// Removes every open series, for a client that will not flush any more; gives their number.
    pub fn discard(&mut self) -> u64 {
        let n = self.len as u64;
        self.map.clear();
        self.len = 0;
        n
    }

    /// The earliest time (Unix seconds) at which a bucket closes, if any is open.
    pub fn next_close(&self, grace_secs: f64) -> Option<f64> {
        self.map.values().flatten().map(|s| (s.bucket + self.interval) as f64 + grace_secs).reduce(f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_series_per_bucket_with_exact_sums() {
        let mut t = Table::new(10, 100);
        for i in 0..1000 {
            assert!(t.record(
                100.0 + (i % 10) as f64 * 0.5,
                MetricType::Count,
                "c",
                &[("k", "v")],
                Input::Number(Number::Int(2))
            ));
        }
        t.record(101.0, MetricType::Count, "c", &[("k", "w")], Input::Number(Number::Float(0.5)));
        t.record(101.0, MetricType::Gauge, "g", &[], Input::Number(Number::Int(1)));
        t.record(102.0, MetricType::Gauge, "g", &[], Input::Number(Number::Float(7.5)));
        t.record(102.0, MetricType::Set, "s", &[], Input::Members(&[Member::Str("a"), Member::Num(1.0)]));
        t.record(103.0, MetricType::Set, "s", &[], Input::Members(&[Member::Num(1.0), Member::Str("b")]));
        assert!(t.take_closed(109.0, 1.0, false).is_empty());
        let mut got = t.take_closed(111.0, 1.0, false);
        got.sort_by(|a, b| (&a.name, &a.tags).cmp(&(&b.name, &b.tags)));
        assert_eq!(got.len(), 4);
        assert!(matches!(got[0].state, State::Sum { int: 2000, any_float: false, .. }));
        assert!(matches!(got[1].state, State::Sum { float, any_float: true, .. } if float == 0.5));
        assert!(matches!(got[2].state, State::Last(Number::Float(f)) if f == 7.5));
        match &got[3].state {
            State::Members(m) => assert_eq!(m.iter().cloned().collect::<Vec<_>>(), ["\"a\"", "\"b\"", "1"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(got[0].bucket, 100);
        assert_eq!(t.len, 0);
    }

    #[test]
    fn histogram_samples_are_bounded_per_series() {
        let mut t = Table::new(10, 10);
        for _ in 0..MAX_SAMPLES_PER_SERIES {
            assert!(t.record(1.0, MetricType::Histogram, "h", &[], Input::Number(Number::Int(1))));
        }
        assert!(!t.record(1.0, MetricType::Histogram, "h", &[], Input::Number(Number::Int(1))));
    }

    #[test]
    fn buckets_are_the_cores_and_any_timestamp_has_one() {
        let t = Table::new(10, 10);
        assert_eq!((t.bucket_of(1_600_000_009.9), t.bucket_of(-0.5)), (1_600_000_000, -10));
        // `client.at(f64::NEG_INFINITY)`: the bucket arithmetic overflowed (a panic in the app's
        // thread in a debug build); it saturates now.
        let mut t = Table::new(10, 10);
        assert!(t.record(f64::NEG_INFINITY, MetricType::Count, "c", &[], Input::Number(Number::Int(1))));
        assert_eq!(t.bucket_of(f64::NEG_INFINITY), i64::MIN);
    }

    #[test]
    fn a_full_table_refuses_new_series_only() {
        let mut t = Table::new(10, 1);
        assert!(t.record(1.0, MetricType::Count, "a", &[], Input::Number(Number::Int(1))));
        assert!(!t.record(1.0, MetricType::Count, "b", &[], Input::Number(Number::Int(1))));
        assert!(t.record(2.0, MetricType::Count, "a", &[], Input::Number(Number::Int(1))));
    }
}
