//! Aggregating mode: one entry per series per bucket, flushed as raw records (see the README).
//!
//! chouette-core's aggregator keeps set members as 64-bit hashes (then HyperLogLog) and
//! histograms as sketches, so it cannot give back the members and samples that the agent's raw
//! shape needs; this table keeps them exactly, with the same series identity (name, type, tags)
//! and the same buckets (`[k·I, (k+1)·I)`, from the core's `AggregatorConfig::bucket_of`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use chouette_core::aggregate::AggregatorConfig;
use chouette_core::hash::BuildPassThrough;
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
            && same(&self.name, name)
            && self.tags.len() == tags.len()
            && self.tags.iter().zip(tags).all(|((a, b), (c, d))| same(a, c) && same(b, d))
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

/// Whole Unix seconds now: all the aggregating mode needs of the clock for a call's bucket.
#[inline]
pub(crate) fn now_whole_secs() -> f64 {
    crate::render::wall_clock().0 as f64
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
    /// Series held here (the limit on all tables is [`Tables`]').
    len: usize,
    map: HashMap<u64, Vec<Series>, BuildPassThrough>,
    /// The last whole second seen and its bucket start (see [`Table::bucket_of_cached`]).
    last_second: (i64, i64),
}

/// The series' key hash (name, type, tags; the bucket is mixed in by [`in_bucket`]): each part
/// (name, every tag key and value) is hashed on its own, seeded by its position, and the results
/// summed, so the multiplies of the parts run in parallel instead of in one chain. Short parts
/// (up to 16 bytes, most names and tags) are read as two overlapping words, without the byte copy
/// into a stack word that made the core's `hash_bytes` stall here (a store-forwarding miss per
/// part). Only the map's buckets and the shard depend on it: equal hashes are told apart by
/// [`Series::matches`].
#[inline]
fn key_hash(kind: MetricType, name: &str, tags: &[(&str, &str)]) -> u64 {
    let mut sum = part_hash((kind as u64) << 56, name.as_bytes());
    let mut seed = P0;
    for (k, v) in tags {
        seed = seed.wrapping_add(P2);
        sum = sum.wrapping_add(part_hash(seed, k.as_bytes()));
        sum = sum.wrapping_add(part_hash(seed ^ P1, v.as_bytes()));
    }
    mum(sum ^ P0, P1 ^ tags.len() as u64)
}

/// The map key of a series-bucket: its key hash with the bucket mixed in.
#[inline]
fn in_bucket(key: u64, bucket: i64) -> u64 {
    mum(key ^ P2, bucket as u64 ^ P1)
}

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a).wrapping_mul(u128::from(b));
    (r as u64) ^ ((r >> 64) as u64)
}

/// The first 8 bytes of `b` (at least 8), as a little-endian word.
#[inline(always)]
fn word_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map_or(0, u64::from_le_bytes)
}

#[inline(always)]
fn half_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4)
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
}

/// Two words that together hold every byte of `b` (`b.len() <= 16`); with the length, they
/// identify `b` exactly (overlapping reads, as wyhash does).
#[inline(always)]
fn short_words(b: &[u8]) -> (u64, u64) {
    let len = b.len();
    if len >= 8 {
        (word_at(b, 0), word_at(b, len - 8))
    } else if len >= 4 {
        (half_at(b, 0), half_at(b, len - 4))
    } else if len > 0 {
        ((u64::from(b[0]) << 16) | (u64::from(b[len / 2]) << 8) | u64::from(b[len - 1]), 0)
    } else {
        (0, 0)
    }
}

#[inline(always)]
fn part_hash(seed: u64, b: &[u8]) -> u64 {
    let len = b.len() as u64;
    if b.len() <= 16 {
        let (x, y) = short_words(b);
        return mum(x ^ P1 ^ len, y ^ seed ^ P0);
    }
    let mut state = seed ^ P0;
    let mut chunks = b.chunks_exact(16);
    for chunk in &mut chunks {
        state = mum(word_at(chunk, 0) ^ P1, word_at(chunk, 8) ^ state);
    }
    // The last 16 bytes (overlapping what the loop read), so no byte copy here either.
    let tail = b.len() - 16;
    mum(word_at(b, tail) ^ P1 ^ len, word_at(b, tail + 8) ^ state)
}

/// `a == b`, inline for short strings (two overlapping word compares instead of a `memcmp`
/// call); exact, since [`short_words`] covers every byte.
#[inline(always)]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    if a.len() <= 16 {
        short_words(a) == short_words(b)
    } else {
        a == b
    }
}

impl Table {
    pub fn new(interval_secs: u64) -> Self {
        let interval = u32::try_from(interval_secs).unwrap_or(u32::MAX).max(1);
        let buckets = AggregatorConfig::new(interval).unwrap_or(AggregatorConfig::DEFAULT);
        let interval = i64::from(buckets.interval_secs());
        Table { buckets, interval, len: 0, map: HashMap::default(), last_second: (-1, -1) }
    }

    pub fn bucket_of(&self, secs: f64) -> i64 {
        self.buckets.bucket_of(Timestamp::from_secs_f64(secs)).start_secs()
    }

    /// [`Table::bucket_of`], remembering the last whole second's bucket: calls come many per
    /// second, and this spares each the core's division.
    #[inline]
    fn bucket_of_cached(&mut self, secs: f64) -> i64 {
        // For non-negative `secs`, truncation is the floor the core takes.
        let whole = secs as i64;
        if secs >= 0.0 && whole == self.last_second.0 {
            return self.last_second.1;
        }
        let bucket = self.bucket_of(secs);
        if secs >= 0.0 {
            self.last_second = (whole, bucket);
        }
        bucket
    }

    /// Adds one call. `false` when a new series finds `limit` reached (the caller counts the drop).
    #[cfg(test)]
    pub fn record(
        &mut self,
        limit: &Limit,
        ts: f64,
        kind: MetricType,
        name: &str,
        tags: &[(&str, &str)],
        input: Input<'_>,
    ) -> bool {
        self.record_keyed(limit, key_hash(kind, name, tags), ts, kind, name, tags, input)
    }

    /// [`Table::record`] with the series' [`key_hash`] already computed.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn record_keyed(
        &mut self,
        limit: &Limit,
        key: u64,
        ts: f64,
        kind: MetricType,
        name: &str,
        tags: &[(&str, &str)],
        input: Input<'_>,
    ) -> bool {
        let bucket = self.bucket_of_cached(ts);
        let chain = self.map.entry(in_bucket(key, bucket)).or_default();
        let series = match chain.iter_mut().position(|s| s.matches(bucket, kind, name, tags)) {
            Some(i) => &mut chain[i],
            None => {
                if !limit.admit() {
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

/// The bound on open series over all of a client's tables (`ClientConfig::buffer_records`): taken
/// by a new series, given back when it is flushed or discarded. Touched only when a series
/// starts or ends, never by a call to an existing one.
#[derive(Debug)]
pub(crate) struct Limit {
    open: AtomicUsize,
    capacity: usize,
}

impl Limit {
    pub fn new(capacity: usize) -> Self {
        Limit { open: AtomicUsize::new(0), capacity }
    }

    /// Takes one place; `false` (and nothing taken) when all are taken.
    fn admit(&self) -> bool {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.capacity).then_some(n + 1))
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.open.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Tables a client's series are spread over, by their key hash: app threads recording different
/// series take different locks, so they rarely wait for one another (one lock for all was the
/// aggregating mode's bottleneck on several threads). A series lives in exactly one shard, so a
/// flush never has to merge.
pub(crate) const SHARDS: usize = 8;

/// The aggregating mode's state: [`SHARDS`] tables under their own locks, one series limit.
#[derive(Debug)]
pub(crate) struct Tables {
    shards: Box<[Mutex<Table>]>,
    limit: Limit,
}

impl Tables {
    pub fn new(interval_secs: u64, capacity: usize) -> Self {
        Tables {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::new(interval_secs))).collect(),
            limit: Limit::new(capacity),
        }
    }

    fn lock(shard: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one call. `false` when it is dropped (the caller counts it): the series limit is
    /// reached, a histogram series is full, or `closed` (read under the shard's lock, so no call
    /// slips in after the writer's last [`Tables::discard`]).
    #[inline]
    pub fn record(
        &self,
        closed: &AtomicBool,
        ts: f64,
        kind: MetricType,
        name: &str,
        tags: &[(&str, &str)],
        input: Input<'_>,
    ) -> bool {
        let key = key_hash(kind, name, tags);
        // The high half picks the shard; the map inside mixes the bucket in again.
        let shard = &self.shards[(key >> 32) as usize % self.shards.len()];
        let mut table = Self::lock(shard);
        if closed.load(Ordering::Relaxed) {
            return false;
        }
        table.record_keyed(&self.limit, key, ts, kind, name, tags, input)
    }

    /// [`Table::take_closed`] over every shard.
    pub fn take_closed(&self, now: f64, grace_secs: f64, all: bool) -> Vec<Series> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let taken = Self::lock(shard).take_closed(now, grace_secs, all);
            self.limit.release(taken.len());
            out.extend(taken);
        }
        out
    }

    /// [`Table::discard`] over every shard.
    pub fn discard(&self) -> u64 {
        let mut n = 0;
        for shard in &self.shards {
            let discarded = Self::lock(shard).discard();
            self.limit.release(discarded as usize);
            n += discarded;
        }
        n
    }

    /// [`Table::next_close`] over every shard.
    pub fn next_close(&self, grace_secs: f64) -> Option<f64> {
        self.shards.iter().filter_map(|s| Self::lock(s).next_close(grace_secs)).reduce(f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_series_per_bucket_with_exact_sums() {
        let limit = Limit::new(100);
        let mut t = Table::new(10);
        for i in 0..1000 {
            assert!(t.record(
                &limit,
                100.0 + (i % 10) as f64 * 0.5,
                MetricType::Count,
                "c",
                &[("k", "v")],
                Input::Number(Number::Int(2))
            ));
        }
        t.record(&limit, 101.0, MetricType::Count, "c", &[("k", "w")], Input::Number(Number::Float(0.5)));
        t.record(&limit, 101.0, MetricType::Gauge, "g", &[], Input::Number(Number::Int(1)));
        t.record(&limit, 102.0, MetricType::Gauge, "g", &[], Input::Number(Number::Float(7.5)));
        t.record(
            &limit,
            102.0,
            MetricType::Set,
            "s",
            &[],
            Input::Members(&[Member::Str("a"), Member::Num(1.0)]),
        );
        t.record(
            &limit,
            103.0,
            MetricType::Set,
            "s",
            &[],
            Input::Members(&[Member::Num(1.0), Member::Str("b")]),
        );
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
    fn short_string_compare_and_hash_see_every_byte() {
        let base: Vec<u8> = (b'a'..=b'z').chain(b'A'..=b'Z').collect();
        for len in 0..=40 {
            let a = std::str::from_utf8(&base[..len]).unwrap();
            assert!(same(a, a));
            assert!(!same(a, std::str::from_utf8(&base[..len + 1]).unwrap()));
            for at in 0..len {
                let mut other = base[..len].to_vec();
                other[at] = b'_';
                let b = std::str::from_utf8(&other).unwrap();
                assert!(!same(a, b), "{a} vs {b}");
                assert_ne!(part_hash(1, a.as_bytes()), part_hash(1, b.as_bytes()), "{a} vs {b}");
            }
        }
        // Tag order, key/value swaps and splits between the name and a tag give other series.
        let hash = |bucket, kind, name, tags| in_bucket(key_hash(kind, name, tags), bucket);
        let h = |name, tags| hash(0, MetricType::Count, name, tags);
        let one = h("m", &[("a", "b"), ("c", "d")]);
        assert_ne!(one, h("m", &[("c", "d"), ("a", "b")]));
        assert_ne!(one, h("m", &[("b", "a"), ("c", "d")]));
        assert_ne!(h("ab", &[]), h("a", &[("b", "")]));
        assert_ne!(one, hash(10, MetricType::Count, "m", &[("a", "b"), ("c", "d")]));
        assert_ne!(one, hash(0, MetricType::Rate, "m", &[("a", "b"), ("c", "d")]));
    }

    #[test]
    fn histogram_samples_are_bounded_per_series() {
        let limit = Limit::new(10);
        let mut t = Table::new(10);
        for _ in 0..MAX_SAMPLES_PER_SERIES {
            assert!(t.record(&limit, 1.0, MetricType::Histogram, "h", &[], Input::Number(Number::Int(1))));
        }
        assert!(!t.record(&limit, 1.0, MetricType::Histogram, "h", &[], Input::Number(Number::Int(1))));
    }

    #[test]
    fn buckets_are_the_cores_and_any_timestamp_has_one() {
        let t = Table::new(10);
        assert_eq!((t.bucket_of(1_600_000_009.9), t.bucket_of(-0.5)), (1_600_000_000, -10));
        // `client.at(f64::NEG_INFINITY)`: the bucket arithmetic overflowed (a panic in the app's
        // thread in a debug build); it saturates now.
        let limit = Limit::new(10);
        let mut t = Table::new(10);
        assert!(t.record(
            &limit,
            f64::NEG_INFINITY,
            MetricType::Count,
            "c",
            &[],
            Input::Number(Number::Int(1))
        ));
        assert_eq!(t.bucket_of(f64::NEG_INFINITY), i64::MIN);
    }

    #[test]
    fn a_full_table_refuses_new_series_only() {
        let limit = Limit::new(1);
        let mut t = Table::new(10);
        assert!(t.record(&limit, 1.0, MetricType::Count, "a", &[], Input::Number(Number::Int(1))));
        assert!(!t.record(&limit, 1.0, MetricType::Count, "b", &[], Input::Number(Number::Int(1))));
        assert!(t.record(&limit, 2.0, MetricType::Count, "a", &[], Input::Number(Number::Int(1))));
    }

    #[test]
    fn the_series_limit_holds_over_all_shards_and_is_given_back_at_flush() {
        let tables = Tables::new(10, 20);
        let open = AtomicBool::new(false);
        let names: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let count = |name: &str, ts| {
            tables.record(&open, ts, MetricType::Count, name, &[], Input::Number(Number::Int(1)))
        };
        let admitted = names.iter().filter(|n| count(n, 5.0)).count();
        assert_eq!(admitted, 20);
        // The 20 admitted series sit in several shards.
        let used = tables.shards.iter().filter(|s| Tables::lock(s).len > 0).count();
        assert!(used > 1, "{used} shards used");
        assert_eq!(tables.take_closed(100.0, 0.0, false).len(), 20);
        assert_eq!(names.iter().filter(|n| count(n, 15.0)).count(), 20);
        assert_eq!(tables.discard(), 20);
        assert_eq!(tables.next_close(0.0), None);
        let closed = AtomicBool::new(true);
        assert!(!tables.record(&closed, 15.0, MetricType::Count, "s0", &[], Input::Number(Number::Int(1))));
        assert_eq!(tables.take_closed(100.0, 0.0, true).len(), 0);
    }

    #[test]
    fn calls_from_many_threads_are_each_counted_once() {
        let tables = Tables::new(10, 1000);
        let open = AtomicBool::new(false);
        const THREADS: i64 = 4;
        const CALLS: i64 = 20_000;
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (tables, open) = (&tables, &open);
                scope.spawn(move || {
                    for i in 0..CALLS {
                        // Every thread on every series, in a thread-dependent order.
                        let route = ["/a", "/b", "/c"][((i + t) % 3) as usize];
                        let input = Input::Number(Number::Int(i % 5));
                        assert!(tables.record(
                            open,
                            12.0,
                            MetricType::Count,
                            "req",
                            &[("route", route)],
                            input
                        ));
                    }
                });
            }
        });
        let mut sums: Vec<(String, i64)> = tables
            .take_closed(100.0, 0.0, false)
            .into_iter()
            .map(|s| match s.state {
                State::Sum { int, any_float: false, .. } => (s.tags[0].1.to_string(), int),
                other => panic!("{other:?}"),
            })
            .collect();
        sums.sort();
        // Per thread, series `route` gets the calls i with (i + t) % 3 == its index; the sum of
        // i % 5 over them, summed over threads, computed the slow way.
        let expected: Vec<(String, i64)> = ["/a", "/b", "/c"]
            .iter()
            .enumerate()
            .map(|(r, route)| {
                let sum = (0..THREADS)
                    .flat_map(|t| (0..CALLS).filter(move |i| (i + t) % 3 == r as i64))
                    .map(|i| i % 5)
                    .sum();
                (route.to_string(), sum)
            })
            .collect();
        assert_eq!(sums, expected);
        assert_eq!(tables.limit.open.load(Ordering::Relaxed), 0);
    }
}
