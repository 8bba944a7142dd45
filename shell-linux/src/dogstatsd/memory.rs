//! The listener's memory: DogStatsD lines aggregated per flush bucket until the aggregation step
//! merges a closed bucket into the apps' records of the same bucket (one point per series).
//!
//! ```text
//! receive threads ── record_datagram(now, bytes) ──► buckets: start → contexts → partial state
//! aggregation step ── merge_into(aggregator, end) ──► Aggregator::merge (core), per context
//!                  └─ forget_through(end) after the commit: those buckets are done
//! ```
//!
//! A context is a name, a type and a set of tags (order-free, duplicates collapse), identified by
//! a 64-bit hash, as the Datadog Agent identifies its contexts. Its name and tags are kept once,
//! in a `Key`, for as long as a bucket holds it; each bucket keeps only the hash and the partial
//! state (56 bytes), so a line touches one table entry. Lines are stamped on receipt (`now`), or
//! by their `|T` timestamp; a line for a bucket the step already took folds into the newest open
//! bucket and is counted as late, as the core does with late samples. Nothing here waits on the
//! store: the step takes the lock to read closed buckets, the receive threads to record.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use chouette_core::aggregate::{AggregatorConfig, Partial};
use chouette_core::hash::{hash_key, hash_u64, BuildPassThrough};
use chouette_core::limits::{MAX_NAME_BYTES, MAX_TAGS, MAX_TAG_BYTES};
use chouette_core::metric::{Member, MetricType, OutputType, Sample, Tag, Timestamp, Value as CoreValue};
use chouette_core::sketch::{hash_member, Histogram, SetCounter};
use chouette_core::wire::dogstatsd::{
    parse_datagram, sample_weight, scaled_count, Kind, Message, Tags, Value,
};

use crate::limits::{
    DOGSTATSD_INLINE_MEMBERS, DOGSTATSD_INLINE_SAMPLES, MAX_EVENTS, MAX_HELD_BUCKETS, MAX_TIMESTAMPED,
    MAX_WEIGHT,
};

/// Longest bad line kept for `chouette status`, in bytes.
pub const LAST_BAD_LINE_BYTES: usize = 200;
/// `|T` timestamps further ahead of the receipt are refused (`timestamp_in_future`), as the
/// core refuses samples past its horizon.
pub const MAX_FUTURE_SECS: u32 = AggregatorConfig::DEFAULT.max_future_secs();
/// How long a `|T` point is held after its first line before it is written: lines of the same
/// series and second within it make one point.
pub const TIMESTAMPED_HOLD: f64 = 1.0;
/// Contexts listed by [`Memory::top`].
pub const TOP_CONTEXTS: usize = 10;

/// What the listener counted since it started (status fields and self-metrics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryStats {
    /// Lines read, good or bad.
    pub lines: u64,
    /// Metric values recorded (each packed value counts).
    pub samples: u64,
    /// Good metric lines recorded.
    pub metric_lines: u64,
    /// Events (`_e`) read.
    pub events: u64,
    /// Service checks (`_sc`) read.
    pub service_checks: u64,
    /// Lines (or, at merge time, contexts) refused, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// `<reason>: <line>` of the last refused line.
    pub last_bad_line: Option<String>,
    /// Lines whose bucket the step had already taken, folded into the newest open bucket.
    pub late: u64,
    /// Contexts a step had no room for, kept for the next step (counted at each deferral).
    pub deferred: u64,
    /// Contexts in the last bucket the step merged.
    pub contexts: usize,
    /// `|T` points (counts and gauges sent as they are).
    pub timestamped: u64,
    /// Good events and service checks not forwarded: `events` and `service_checks` (Datadog is
    /// not an output), `events_full` (too many waiting).
    pub ignored: BTreeMap<&'static str, u64>,
}

impl MemoryStats {
    /// Lines accounted for: good metric lines, events, service checks and refused lines
    /// (context refusals at merge time excluded). Equal to `lines`.
    pub fn accounted_lines(&self) -> u64 {
        let refused: u64 =
            self.refused.iter().filter(|(r, _)| !r.starts_with("merge_")).map(|(_, n)| n).sum();
        self.metric_lines + self.events + self.service_checks + refused
    }

    fn refuse(&mut self, reason: &'static str, line: &[u8]) {
        *self.refused.entry(reason).or_default() += 1;
        let end = line.len().min(LAST_BAD_LINE_BYTES);
        self.last_bad_line = Some(format!("{reason}: {}", String::from_utf8_lossy(&line[..end])));
    }
}

#[derive(Debug)]
enum State {
    Sum { sum: f64, n: u64 },
    Gauge { last: f64, last_ts: f64, sum: f64, n: u64 },
    Samples(Vec<f64>),
    Histogram(Box<Histogram>),
    Hashes { hashes: Vec<u64>, samples: u64 },
    Set { counter: Box<SetCounter>, samples: u64 },
}

/// A context's partial state in one bucket.
#[derive(Debug)]
struct Context {
    state: State,
    /// Values recorded (weights not counted), for [`Memory::top`].
    samples: u64,
}

/// A context's name, type and tags, kept once for all the buckets that hold it.
#[derive(Debug)]
struct Key {
    /// The name, then each tag after a `|` (which no name or tag holds), as sent, in order: the
    /// core sorts and deduplicates them when it merges.
    text: Box<str>,
    name_len: u8,
    kind: MetricType,
    /// Start of the newest bucket that holds the context: the key is dropped with that bucket.
    newest: i64,
}

impl Key {
    fn name(&self) -> &str {
        &self.text[..usize::from(self.name_len)]
    }

    fn tags(&self) -> impl Iterator<Item = &str> {
        self.text[usize::from(self.name_len)..].split('|').skip(1)
    }
}

/// One bucket's contexts, by context hash.
#[derive(Debug)]
struct Bucket {
    start: i64,
    contexts: HashMap<u64, Context, BuildPassThrough>,
}

/// What [`Memory::merge_into`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Merged {
    /// Contexts merged into the aggregator.
    pub contexts: usize,
    /// Contexts the aggregator refused, by reason (`merge_<RecordError>`): counted once the
    /// commit is in the store ([`Memory::forget_through`]).
    pub refused: BTreeMap<&'static str, u64>,
    /// Contexts the aggregator had no room for (series, names and tags, or sketches), as bucket
    /// start and context hash: kept for the next step, where they fold in late. Nothing is lost
    /// when a burst of contexts outgrows one step's aggregator.
    pub deferred: Vec<(i64, u64)>,
}

/// The listener's buckets. See the [module docs](self).
pub struct Memory {
    interval: u32,
    max_contexts: usize,
    /// Oldest first.
    buckets: Vec<Bucket>,
    /// Names and tags of the contexts the buckets hold, by context hash.
    keys: HashMap<u64, Key, BuildPassThrough>,
    /// Buckets starting before this were taken by the step: later lines for them are late.
    open_from: i64,
    stats: MemoryStats,
    top: Vec<(String, u64)>,
    timestamped: Vec<Timestamped>,
    /// `timestamped`'s positions by series and second.
    timestamped_index: HashMap<u64, usize, BuildPassThrough>,
    forward_events: bool,
    events: Vec<Event>,
}

/// An event or a service check, as the JSON body of Datadog's v1 API ([`super::events`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// A service check (`check_run`), else an event.
    pub check: bool,
    /// When it was received, Unix seconds.
    pub received: f64,
    /// The JSON record.
    pub record: Vec<u8>,
}

/// A `|T` count or gauge: not aggregated, a point of its own at its own timestamp, as the Datadog
/// Agent sends them.
#[derive(Debug, Clone, PartialEq)]
pub struct Timestamped {
    /// The metric name.
    pub name: String,
    /// `count` (the line's values summed, rates applied) or `gauge` (its last value).
    pub kind: OutputType,
    /// The tags as sent (and `container_id:`).
    pub tags: Vec<String>,
    /// The value.
    pub value: f64,
    /// Its `|T`, Unix seconds.
    pub timestamp: f64,
    /// When its first line was received, Unix seconds.
    pub received: f64,
}

impl Memory {
    /// Buckets of `interval_secs`, at most `max_contexts` contexts in each.
    pub fn new(interval_secs: u32, max_contexts: usize) -> Memory {
        Memory {
            interval: interval_secs.max(1),
            max_contexts,
            buckets: Vec::new(),
            keys: HashMap::default(),
            open_from: i64::MIN,
            stats: MemoryStats::default(),
            top: Vec::new(),
            timestamped: Vec::new(),
            timestamped_index: HashMap::default(),
            forward_events: false,
            events: Vec::new(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &MemoryStats {
        &self.stats
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Start of the oldest bucket held (float Unix seconds).
    pub fn oldest(&self) -> Option<f64> {
        self.buckets.first().map(|b| b.start as f64)
    }

    /// End of the newest bucket held.
    pub fn newest_end(&self) -> Option<f64> {
        self.buckets.last().map(|b| (b.start + i64::from(self.interval)) as f64)
    }

    /// Contexts held, all buckets together.
    pub fn contexts(&self) -> usize {
        self.buckets.iter().map(|b| b.contexts.len()).sum()
    }

    /// The contexts with the most samples in the last bucket merged, `name{tags}` and samples.
    pub fn top(&self) -> &[(String, u64)] {
        &self.top
    }

    fn bucket_start(&self, ts: f64) -> i64 {
        let interval = i64::from(self.interval);
        (ts.floor() as i64).div_euclid(interval) * interval
    }

    /// Parses one datagram received at `now` (float Unix seconds) and records its lines.
    pub fn record_datagram(&mut self, now: f64, datagram: &[u8]) {
        for line in parse_datagram(datagram) {
            self.stats.lines += 1;
            match line.result {
                Err(error) => self.stats.refuse(error.reason(), line.bytes),
                Ok(message @ Message::Event { .. }) => {
                    self.stats.events += 1;
                    self.keep_event(&message, now, false);
                }
                Ok(message @ Message::ServiceCheck { .. }) => {
                    self.stats.service_checks += 1;
                    self.keep_event(&message, now, true);
                }
                Ok(Message::Metric { name, values, kind, sample_rate, tags, container_id, timestamp }) => {
                    // `|T` on a count or gauge: a point of its own, as the Agent. On the other
                    // types the Agent drops the sample; this ignores `|T` and aggregates it.
                    let passthrough = matches!(kind, Kind::Count | Kind::Gauge);
                    let at = timestamp.filter(|_| passthrough).map_or(now, |t| t as f64);
                    let line_ = Line { name, kind, tags, container_id, sample_rate, at, now };
                    let result = if passthrough && timestamp.is_some() {
                        self.record_timestamped(&line_, values.iter())
                    } else {
                        self.record_metric(&line_, values.iter())
                    };
                    match result {
                        Ok(n) => {
                            self.stats.metric_lines += 1;
                            self.stats.samples += n;
                        }
                        Err(reason) => self.stats.refuse(reason, line.bytes),
                    }
                }
            }
        }
    }

    /// A `|T` count or gauge: its values make one point at its own time (a count's sum, a
    /// gauge's last value), queued for [`take_timestamped`](Self::take_timestamped).
    fn record_timestamped<'a>(
        &mut self,
        line: &Line<'a>,
        values: impl Iterator<Item = Value<'a>>,
    ) -> Result<u64, &'static str> {
        let context = identify(line)?;
        if self.timestamped.len() >= MAX_TIMESTAMPED {
            return Err("timestamped_full");
        }
        let (mut value, mut n) = (0.0, 0);
        for v in values {
            if let Value::Number(v) = v {
                value = match line.kind {
                    Kind::Count => value + scaled_count(v, line.sample_rate),
                    _ => v,
                };
                n += 1;
            }
        }
        if !value.is_finite() {
            return Err("overflow");
        }
        let mut tags: Vec<String> = line.tags.iter().map(String::from).collect();
        if let Some(id) = line.container_id {
            tags.push(format!("container_id:{id}"));
        }
        let kind = if line.kind == Kind::Count { OutputType::Count } else { OutputType::Gauge };
        // One point per series and second: a later line of the same ones within the hold adds
        // to it (a count) or replaces its value (a gauge).
        let key = hash_u64(context, line.at.to_bits());
        if let Some(point) = self.timestamped_index.get(&key).and_then(|&i| self.timestamped.get_mut(i)) {
            if point.name == line.name && point.kind == kind {
                let merged = if kind == OutputType::Count { point.value + value } else { value };
                if !merged.is_finite() {
                    return Err("overflow");
                }
                point.value = merged;
                return Ok(n);
            }
        }
        self.timestamped_index.insert(key, self.timestamped.len());
        self.timestamped.push(Timestamped {
            name: line.name.to_owned(),
            kind,
            tags,
            value,
            timestamp: line.at,
            received: line.now,
        });
        self.stats.timestamped += 1;
        Ok(n)
    }

    /// Queues an event's or a service check's record for Datadog, or counts it as ignored when
    /// Datadog is not an output. Counted in `events`/`service_checks` either way (the line is
    /// good); a full queue drops it, counted (`events_full`).
    fn keep_event(&mut self, message: &Message<'_>, now: f64, check: bool) {
        if !self.forward_events {
            *self.stats.ignored.entry(if check { "service_checks" } else { "events" }).or_default() += 1;
            return;
        }
        if self.events.len() >= MAX_EVENTS {
            *self.stats.ignored.entry("events_full").or_default() += 1;
            return;
        }
        if let Some(record) = super::events::record(message, now) {
            self.events.push(Event { check, received: now, record });
        }
    }

    /// Events and service checks are queued for Datadog (it is an output); otherwise they are
    /// counted as ignored.
    pub fn forward_events(mut self, on: bool) -> Memory {
        self.forward_events = on;
        self
    }

    /// The events and service checks received since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The `|T` points first received at or before `before` (Unix seconds), oldest first: a
    /// point is held [`TIMESTAMPED_HOLD`] after its first line, so that lines of the same series
    /// and second sent together become one point rather than two points a backend would keep
    /// one of.
    pub fn take_timestamped(&mut self, before: f64) -> Vec<Timestamped> {
        let ready = self.timestamped.iter().take_while(|p| p.received <= before).count();
        if ready == 0 {
            return Vec::new();
        }
        let rest = self.timestamped.split_off(ready);
        let taken = std::mem::replace(&mut self.timestamped, rest);
        self.timestamped_index.retain(|_, i| *i >= ready);
        for i in self.timestamped_index.values_mut() {
            *i -= ready;
        }
        taken
    }

    /// When the oldest `|T` point held is due (Unix seconds), if any.
    pub fn timestamped_due(&self) -> Option<f64> {
        self.timestamped.first().map(|p| p.received + TIMESTAMPED_HOLD)
    }

    /// Whether events or service checks wait for [`take_events`](Self::take_events).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Whether `|T` points wait for [`take_timestamped`](Self::take_timestamped).
    pub fn has_timestamped(&self) -> bool {
        !self.timestamped.is_empty()
    }

    fn record_metric<'a>(
        &mut self,
        line: &Line<'a>,
        values: impl Iterator<Item = Value<'a>> + Clone,
    ) -> Result<u64, &'static str> {
        let weight = match line.kind {
            Kind::Histogram | Kind::Timer | Kind::Distribution => sample_weight(line.sample_rate),
            _ => 1,
        };
        if weight > MAX_WEIGHT {
            return Err("sample_rate_too_low");
        }
        let hash = identify(line)?;
        let kind = line.kind.metric_type();
        let mut start = self.bucket_start(line.at);
        if start < self.open_from {
            start = self.open_from;
            self.stats.late += 1;
        }
        // The step is behind (the store is down): past MAX_HELD_BUCKETS, lines fold into the
        // newest bucket held, so memory stops growing with time (counted as late).
        if let Some(newest) = self.buckets.last() {
            if start > newest.start && self.buckets.len() >= MAX_HELD_BUCKETS {
                start = newest.start;
                self.stats.late += 1;
            }
        }
        let index = self.bucket(start);
        let Memory { buckets, keys, max_contexts, .. } = self;
        let contexts = &mut buckets[index].contexts;
        let held = contexts.len();
        let context = match contexts.entry(hash) {
            Entry::Occupied(context) => context.into_mut(),
            Entry::Vacant(vacant) => {
                if held >= *max_contexts {
                    if held == 0 {
                        buckets.remove(index);
                    }
                    return Err("contexts_full");
                }
                match keys.entry(hash) {
                    Entry::Occupied(key) => {
                        let key = key.into_mut();
                        if key.kind != kind || key.name() != line.name {
                            if held == 0 {
                                buckets.remove(index);
                            }
                            return Err("context_collision");
                        }
                        key.newest = key.newest.max(start);
                    }
                    Entry::Vacant(key) => {
                        key.insert(Key::new(line, kind, start));
                    }
                }
                let state = match kind {
                    MetricType::Count | MetricType::Rate => State::Sum { sum: 0.0, n: 0 },
                    MetricType::Gauge => {
                        State::Gauge { last: 0.0, last_ts: f64::NEG_INFINITY, sum: 0.0, n: 0 }
                    }
                    MetricType::Set => State::Hashes { hashes: Vec::new(), samples: 0 },
                    MetricType::Histogram | MetricType::Distribution => State::Samples(Vec::new()),
                };
                vacant.insert(Context { state, samples: 0 })
            }
        };
        let mut n = 0;
        for value in values {
            n += 1;
            apply(&mut context.state, value, line, weight);
        }
        context.samples += n;
        Ok(n)
    }

    /// The index of the bucket starting at `start`, opened if needed (the buckets stay oldest
    /// first). Lines mostly go to the newest bucket: looked at first.
    fn bucket(&mut self, start: i64) -> usize {
        match self.buckets.iter().rposition(|b| b.start <= start) {
            Some(i) if self.buckets[i].start == start => i,
            found => {
                let at = found.map_or(0, |i| i + 1);
                // Sized for as many contexts as the last bucket closed: the same apps send the
                // same contexts every interval, and a table grown by doubling holds two copies
                // of itself while it moves.
                let contexts = HashMap::with_capacity_and_hasher(self.stats.contexts, BuildPassThrough);
                self.buckets.insert(at, Bucket { start, contexts });
                at
            }
        }
    }

    /// Merges every context of the buckets starting before `end` into `aggregator` (the step's,
    /// whose bucket ends at `end`; older buckets fold into it as late). Nothing is removed: after
    /// the commit, [`forget_through`](Self::forget_through) drops them; if the commit fails, the
    /// next step merges them again. From now on, lines for those buckets are late.
    pub fn merge_into<const S: usize, const K: usize, const B: usize>(
        &mut self,
        aggregator: &mut chouette_core::aggregate::Aggregator<S, K, B>,
        now: f64,
        end: f64,
    ) -> Merged {
        let end = end.floor() as i64;
        self.open_from = self.open_from.max(self.bucket_start(end as f64));
        let now = Timestamp::from_secs_f64(now);
        let mut merged = Merged::default();
        let mut tags: Vec<Tag<'_>> = Vec::new();
        for bucket in self.buckets.iter_mut().take_while(|b| b.start < end) {
            for (hash, context) in bucket.contexts.iter_mut() {
                let Some(key) = self.keys.get(hash) else {
                    // Every context's key is kept until its newest bucket is forgotten.
                    debug_assert!(false, "a context without its key");
                    continue;
                };
                tags.clear();
                tags.extend(key.tags().map(Tag::parse));
                let sample = Sample {
                    name: key.name(),
                    kind: key.kind,
                    tags: &tags,
                    value: CoreValue::Number(0.0),
                    timestamp: Timestamp::from_secs_f64(bucket.start as f64),
                };
                let partial = match &mut context.state {
                    State::Sum { sum, n } => Partial::Sum { sum: *sum, n: *n },
                    State::Gauge { last, last_ts, sum, n } => Partial::Gauge {
                        last: *last,
                        last_ts: Timestamp::from_secs_f64(*last_ts),
                        sum: *sum,
                        n: *n,
                    },
                    State::Samples(values) => {
                        // Sorted, the core's exact histogram takes each one at its end.
                        values.sort_unstable_by(f64::total_cmp);
                        Partial::Samples(values)
                    }
                    State::Histogram(histogram) => Partial::Histogram(histogram),
                    State::Hashes { hashes, samples } => Partial::SetHashes { hashes, samples: *samples },
                    State::Set { counter, samples } => Partial::Set { counter, samples: *samples },
                };
                match aggregator.merge(now, &sample, partial) {
                    Ok(()) => merged.contexts += 1,
                    Err(error) if error.is_capacity() => merged.deferred.push((bucket.start, *hash)),
                    Err(error) => *merged.refused.entry(merge_reason(error)).or_default() += 1,
                }
            }
        }
        merged
    }

    /// The step committed the buckets starting before `end` (what [`merge_into`](Self::merge_into) merged, and
    /// `merged`'s refusals are counted now): drops them but for their deferred contexts, and the
    /// keys no bucket holds any more.
    pub fn forget_through(&mut self, end: f64, merged: &Merged) {
        let end = end.floor() as i64;
        for (reason, n) in &merged.refused {
            *self.stats.refused.entry(reason).or_default() += n;
        }
        let done = self.buckets.iter().take_while(|b| b.start < end).count();
        if done == 0 {
            return;
        }
        if let Some(last) = self.buckets.get(done - 1) {
            self.stats.contexts = last.contexts.len();
            let mut top: Vec<(&Key, u64)> = last
                .contexts
                .iter()
                .filter_map(|(hash, c)| Some((self.keys.get(hash)?, c.samples)))
                .collect();
            top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.name().cmp(b.0.name())));
            self.top = top
                .into_iter()
                .take(TOP_CONTEXTS)
                .map(|(key, n)| {
                    (format!("{}{{{}}}", key.name(), key.tags().collect::<Vec<_>>().join(",")), n)
                })
                .collect();
        }
        self.stats.deferred += merged.deferred.len() as u64;
        let deferred: std::collections::HashSet<(i64, u64)> = merged.deferred.iter().copied().collect();
        for bucket in &mut self.buckets[..done] {
            let start = bucket.start;
            bucket.contexts.retain(|&hash, _| deferred.contains(&(start, hash)));
        }
        self.buckets.retain(|bucket| bucket.start >= end || !bucket.contexts.is_empty());
        let deferred_hashes: std::collections::HashSet<u64> =
            deferred.iter().map(|&(_, hash)| hash).collect();
        self.keys.retain(|hash, key| key.newest >= end || deferred_hashes.contains(hash));
    }
}

/// A metric line's fields, what its values are recorded under.
struct Line<'a> {
    name: &'a str,
    kind: Kind,
    tags: Tags<'a>,
    container_id: Option<&'a str>,
    sample_rate: Option<f64>,
    /// When it counts: its `|T`, or its receipt.
    at: f64,
    /// Its receipt.
    now: f64,
}

/// The context of a metric line: its hash, once the line passed the checks every metric line
/// passes before it is kept (the core's limits on names and tags, its horizon on timestamps).
/// The hash covers the type, the name and the sorted, deduplicated tag hashes (the container id
/// is the tag `container_id:<id>`). One pass over the tags. The hashes are
/// [`hash_key`]'s, 16 bytes a multiply: they live in this memory only.
fn identify(line: &Line<'_>) -> Result<u64, &'static str> {
    if line.name.len() > MAX_NAME_BYTES {
        return Err("name_too_long");
    }
    // Not zeroed (a `[0; MAX_TAGS]` was 67 instructions a line at this crate's opt-level).
    let mut hashes: heapless::Vec<u64, MAX_TAGS> = heapless::Vec::new();
    let (mut count, mut too_long) = (0, false);
    for tag in line.tags.iter() {
        count += 1;
        too_long |= tag.len() > MAX_TAG_BYTES;
        // Past MAX_TAGS the line is refused below: its extra hashes are not needed.
        let _ = hashes.push(hash_key(TAG_SEED, tag.as_bytes()));
    }
    if let Some(id) = line.container_id {
        count += 1;
        too_long |= "container_id:".len() + id.len() > MAX_TAG_BYTES;
        let _ = hashes.push(container_tag_hash(id));
    }
    if count > MAX_TAGS {
        return Err("too_many_tags");
    }
    if too_long {
        return Err("tag_too_long");
    }
    if line.at > line.now + f64::from(MAX_FUTURE_SECS) {
        return Err("timestamp_in_future");
    }
    hashes.sort_unstable();
    let mut series = hash_key(line.kind.metric_type() as u64, line.name.as_bytes());
    let mut previous = None;
    for &h in hashes.iter() {
        if previous != Some(h) {
            series = hash_u64(series, h);
            previous = Some(h);
        }
    }
    Ok(series)
}

const TAG_SEED: u64 = 0x6473_645f_7461_6773;

/// The hash of the tag `container_id:<id>`, as [`identify`] hashes a tag sent as that text: one
/// context either way. The tag is written out first ([`hash_key`] reads its input whole); one
/// longer than [`MAX_TAG_BYTES`] gets 0, and its line is refused (`tag_too_long`).
fn container_tag_hash(id: &str) -> u64 {
    const PREFIX: &[u8] = b"container_id:";
    let mut written = [0u8; MAX_TAG_BYTES];
    let len = PREFIX.len() + id.len();
    let Some(tag) = written.get_mut(..len) else {
        return 0;
    };
    tag[..PREFIX.len()].copy_from_slice(PREFIX);
    tag[PREFIX.len()..].copy_from_slice(id.as_bytes());
    hash_key(TAG_SEED, tag)
}

impl Key {
    fn new(line: &Line<'_>, kind: MetricType, start: i64) -> Key {
        let mut text = String::with_capacity(line.name.len() + line.tags.as_str().len() + 1);
        text.push_str(line.name);
        for tag in line.tags.iter() {
            text.push('|');
            text.push_str(tag);
        }
        if let Some(id) = line.container_id {
            text.push_str("|container_id:");
            text.push_str(id);
        }
        // Checked by `identify`: at most MAX_NAME_BYTES (200).
        let name_len = u8::try_from(line.name.len()).unwrap_or(u8::MAX);
        Key { text: text.into_boxed_str(), name_len, kind, newest: start }
    }
}

fn apply(state: &mut State, value: Value<'_>, line: &Line<'_>, weight: u32) {
    match (state, value) {
        (State::Sum { sum, n }, Value::Number(v)) => {
            *sum += scaled_count(v, line.sample_rate);
            *n += 1;
        }
        (State::Gauge { last, last_ts, sum, n }, Value::Number(v)) => {
            if line.at >= *last_ts {
                *last = v;
                *last_ts = line.at;
            }
            *sum += v;
            *n += 1;
        }
        (state @ State::Samples(_), Value::Number(v)) => {
            if let State::Samples(values) = state {
                if values.len() + weight as usize <= DOGSTATSD_INLINE_SAMPLES {
                    values.extend(std::iter::repeat_n(v, weight as usize));
                    return;
                }
                // Sorted, each sample lands at the exact histogram's end.
                values.sort_unstable_by(f64::total_cmp);
                let mut histogram = Box::new(Histogram::new());
                for &old in values.iter() {
                    let _ = histogram.insert(old);
                }
                *state = State::Histogram(histogram);
            }
            apply(state, value, line, weight);
        }
        (State::Histogram(histogram), Value::Number(v)) => {
            for _ in 0..weight {
                let _ = histogram.insert(v);
            }
        }
        (state @ State::Hashes { .. }, Value::Member(member)) => {
            let h = hash_member(Member::Str(member));
            if let State::Hashes { hashes, samples } = state {
                *samples += 1;
                if hashes.contains(&h) {
                    return;
                }
                if hashes.len() < DOGSTATSD_INLINE_MEMBERS {
                    hashes.push(h);
                    return;
                }
                let mut counter = Box::new(SetCounter::new());
                for &old in hashes.iter() {
                    counter.insert_hash(old);
                }
                counter.insert_hash(h);
                *state = State::Set { counter, samples: *samples };
            }
        }
        (State::Set { counter, samples }, Value::Member(member)) => {
            counter.insert(Member::Str(member));
            *samples += 1;
        }
        // The parser gives members to sets only and numbers to every other kind.
        _ => {}
    }
}

fn merge_reason(error: chouette_core::aggregate::RecordError) -> &'static str {
    use chouette_core::aggregate::RecordError as E;
    match error {
        E::Full => "merge_series_full",
        E::KeysFull => "merge_keys_full",
        E::SketchesFull => "merge_sketches_full",
        E::EmptyName => "merge_empty_name",
        E::NameTooLong => "merge_name_too_long",
        E::TooManyTags => "merge_too_many_tags",
        E::TagTooLong => "merge_tag_too_long",
        E::WrongValueKind => "merge_wrong_value_kind",
        E::NonFinite => "merge_non_finite",
        E::InvalidTimestamp => "merge_invalid_timestamp",
        E::TooFarInFuture => "merge_too_far_in_future",
        E::TooManyBuckets => "merge_too_many_buckets",
        E::Overflow => "merge_overflow",
        _ => "merge_refused",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chouette_core::aggregate::{AggregatorConfig, BoardAggregator};
    use chouette_core::limits::EXACT_SAMPLES;
    use chouette_core::wrap::WrapConfig;

    use super::*;

    const NOW: f64 = 1_700_000_005.5;

    /// The memory's buckets before `end`, merged into a fresh aggregator, as `name.suffix{tags}@ts → value`.
    fn points(memory: &mut Memory, end: f64) -> BTreeMap<String, f64> {
        let config = AggregatorConfig::new(10).expect("interval").with_grace_secs(0);
        let mut aggregator = Box::new(BoardAggregator::new(config));
        // As the step does: the bucket ending at `end` is the oldest open one.
        aggregator.close_before(Timestamp::from_secs_f64(end - 10.0));
        let merged = memory.merge_into(&mut *aggregator, end, end);
        assert!(merged.refused.is_empty(), "{merged:?}");
        memory.forget_through(end, &merged);
        aggregator.close_all();
        let wrap = WrapConfig::default();
        let mut out = BTreeMap::new();
        while let Some(flushed) = aggregator.poll_flush() {
            for output in flushed.outputs(&wrap) {
                let tags: Vec<String> = flushed.tags.iter().map(|t| t.to_string()).collect();
                let suffix = output.suffix.map(|s| format!(".{s}")).unwrap_or_default();
                let key = format!(
                    "{}{suffix}{{{}}}@{}",
                    flushed.name,
                    tags.join(","),
                    flushed.timestamp.as_secs_f64()
                );
                out.insert(key, output.value);
            }
        }
        out
    }

    #[test]
    fn a_container_id_field_and_the_same_tag_are_one_context() {
        let mut memory = Memory::new(10, 100);
        let id = "3f1c0a9e5b7d2c4f6a8e0b1d3c5f7a9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";
        let lines = format!(
            "cid:1|c|#env:a,container_id:{id}\ncid:2|c|#env:a|c:{id}\ncid:4|c|#container_id:{id},env:a"
        );
        memory.record_datagram(NOW, lines.as_bytes());
        let p = points(&mut memory, 1_700_000_010.0);
        assert_eq!(memory.stats().contexts, 1, "the merge saw one context");
        assert_eq!(p[&format!("cid{{container_id:{id},env:a}}@1700000000")], 7.0);
        // An id too long for a tag is refused, not hashed past its buffer.
        let long = "x".repeat(MAX_TAG_BYTES);
        memory.record_datagram(NOW, format!("cid:1|c|c:{long}").as_bytes());
        assert_eq!(memory.stats().refused.get("tag_too_long"), Some(&1));
    }

    #[test]
    fn every_type_aggregates_with_rates_packing_and_tags() {
        let mut memory = Memory::new(10, 100);
        memory
            .record_datagram(NOW, b"hits:1|c|#b:2,a:1\nhits:2:3|c|@0.5|#a:1,b:2,a:1\ntemp:20|g\ntemp:21.5|g");
        memory.record_datagram(
            NOW + 1.0,
            b"lat:10|ms|@0.5\nlat:20:30|h\nsizes:4|d\nusers:alice|s\nusers:bob|s\nusers:alice|s",
        );
        memory.record_datagram(NOW, b"cid:1|c|c:abc123");
        let p = points(&mut memory, 1_700_000_010.0);
        let at = "@1700000000";
        // 1 + (2 + 3) / 0.5; tag order and duplicates do not matter.
        assert_eq!(p[&format!("hits{{a:1,b:2}}{at}")], 11.0);
        assert_eq!(p[&format!("temp{{}}{at}")], 21.5);
        assert_eq!(p[&format!("users{{}}{at}")], 2.0);
        // 10 weighs 2: samples 10, 10, 20, 30; `.count` is a rate over the 10 s interval, as
        // the original wraps histograms.
        assert_eq!(p[&format!("lat.count{{}}{at}")], 0.4);
        assert_eq!(p[&format!("lat.avg{{}}{at}")], 17.5);
        assert_eq!(p[&format!("lat.max{{}}{at}")], 30.0);
        assert_eq!(p[&format!("sizes.count{{}}{at}")], 0.1);
        assert_eq!(p[&format!("cid{{container_id:abc123}}{at}")], 1.0);
        let stats = memory.stats();
        assert_eq!((stats.lines, stats.metric_lines, stats.samples), (11, 11, 13));
        assert_eq!(stats.contexts, 6);
        // Ties by name: hits, lat and users have 3 samples each.
        let top: Vec<(&str, u64)> = memory.top().iter().map(|(c, n)| (c.as_str(), *n)).take(4).collect();
        assert_eq!(top, [("hits{b:2,a:1}", 3), ("lat{}", 3), ("users{}", 3), ("temp{}", 2)]);
        assert!(memory.is_empty());
    }

    #[test]
    fn every_line_is_accounted_for_and_the_last_bad_one_is_kept() {
        let mut memory = Memory::new(10, 2);
        let datagram =
            b"a:1|c\nbad\nb:x|g\n_e{1,1}:t|x\n_sc|chk|0\nc:1|c\nd:1|h|@0.00001\nlate:1|c|T9999999999";
        memory.record_datagram(NOW, datagram);
        let stats = memory.stats().clone();
        assert_eq!(stats.lines, 8);
        assert_eq!(stats.accounted_lines(), 8, "{stats:?}");
        assert_eq!((stats.metric_lines, stats.events, stats.service_checks), (2, 1, 1));
        assert_eq!(stats.refused.get("contexts_full"), None, "c fits: a and c are 2 contexts");
        assert_eq!(stats.refused["sample_rate_too_low"], 1);
        assert_eq!(stats.refused["timestamp_in_future"], 1);
        assert_eq!(stats.last_bad_line.as_deref(), Some("timestamp_in_future: late:1|c|T9999999999"));
        memory.record_datagram(NOW, b"e:1|c");
        assert_eq!(memory.stats().refused["contexts_full"], 1);
        assert_eq!(memory.stats().accounted_lines(), memory.stats().lines);
    }

    #[test]
    fn a_line_for_a_bucket_already_taken_is_late_and_folds_forward() {
        let mut memory = Memory::new(10, 100);
        memory.record_datagram(NOW, b"c:1|c");
        let config = AggregatorConfig::new(10).expect("interval");
        let mut aggregator = Box::new(BoardAggregator::new(config));
        let end = 1_700_000_010.0;
        let merged = memory.merge_into(&mut *aggregator, end + 1.0, end);
        // Between the merge and the commit, a line stamped in the taken bucket arrives (the
        // clock went back).
        memory.record_datagram(NOW, b"c:5|c");
        memory.forget_through(end, &merged);
        assert_eq!(memory.stats().late, 1);
        let p = points(&mut memory, end + 10.0);
        assert_eq!(p.values().copied().collect::<Vec<_>>(), vec![5.0], "{p:?}");
        assert!(p.keys().all(|k| k.ends_with("@1700000010")), "{p:?}");
    }

    #[test]
    fn timestamped_counts_and_gauges_are_points_of_their_own_other_types_ignore_t() {
        let mut memory = Memory::new(10, 100);
        memory.record_datagram(
            NOW,
            b"c:1:2|c|@0.5|#a:b|T1700000001\ng:3:4|g|c:x|T1699999990\nh:5|h|T1600000000",
        );
        // Within the hold, lines of the same series and second are one point.
        memory.record_datagram(NOW + 0.5, b"c:1|c|#a:b|T1700000001\ng:9|g|T1699999990");
        let passed = memory.take_timestamped(NOW);
        let want = [
            Timestamped {
                name: "c".into(),
                kind: OutputType::Count,
                tags: vec!["a:b".into()],
                value: 7.0,
                timestamp: 1_700_000_001.0,
                received: NOW,
            },
            Timestamped {
                name: "g".into(),
                kind: OutputType::Gauge,
                tags: vec!["container_id:x".into()],
                value: 4.0,
                timestamp: 1_699_999_990.0,
                received: NOW,
            },
        ];
        assert_eq!(passed, want);
        // `g:9` has no container tag: another series, first received later, still held.
        assert_eq!(memory.timestamped_due(), Some(NOW + 0.5 + TIMESTAMPED_HOLD));
        assert_eq!(memory.take_timestamped(NOW + 0.5).len(), 1);
        assert!(!memory.has_timestamped());
        assert_eq!(
            (memory.stats().timestamped, memory.stats().samples, memory.stats().metric_lines),
            (3, 7, 5)
        );
        // The histogram's |T is ignored: stamped on receipt.
        let p = points(&mut memory, 1_700_000_010.0);
        let names: Vec<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "h.95percentile{}@1700000000",
                "h.avg{}@1700000000",
                "h.count{}@1700000000",
                "h.max{}@1700000000",
                "h.median{}@1700000000"
            ]
        );
    }

    #[test]
    fn events_and_checks_are_queued_for_datadog_or_counted_as_ignored() {
        let datagram = b"_e{1,1}:t|x\n_sc|c|0\n_sc|d|1";
        let mut off = Memory::new(10, 100);
        off.record_datagram(NOW, datagram);
        assert_eq!(off.stats().ignored.get("events"), Some(&1));
        assert_eq!(off.stats().ignored.get("service_checks"), Some(&2));
        assert!(off.take_events().is_empty());
        let mut on = Memory::new(10, 100).forward_events(true);
        on.record_datagram(NOW, datagram);
        assert!(on.has_events());
        let events = on.take_events();
        assert_eq!(events.iter().map(|e| e.check).collect::<Vec<_>>(), [false, true, true]);
        assert_eq!(
            String::from_utf8_lossy(&events[1].record),
            r#"{"check":"c","status":0,"timestamp":1700000005}"#
        );
        assert!(on.stats().ignored.is_empty());
        assert_eq!(on.stats().accounted_lines(), 3);
    }

    #[test]
    fn while_the_step_is_behind_memory_stops_growing_with_time() {
        let mut memory = Memory::new(10, 100);
        for i in 0..20 {
            memory.record_datagram(NOW + 10.0 * f64::from(i), b"c:1|c");
        }
        assert_eq!(memory.buckets.len(), MAX_HELD_BUCKETS);
        assert_eq!(memory.stats().late, 20 - MAX_HELD_BUCKETS as u64);
        let p = points(&mut memory, NOW + 1000.0);
        assert_eq!(p.values().sum::<f64>(), 20.0, "{p:?}");
    }

    #[test]
    fn a_failed_commit_keeps_everything_for_the_next_step() {
        let mut memory = Memory::new(10, 100);
        memory.record_datagram(NOW, b"c:2|c\ns:x|s");
        let config = AggregatorConfig::new(10).expect("interval");
        let mut lost = Box::new(BoardAggregator::new(config));
        let merged = memory.merge_into(&mut *lost, NOW + 10.0, 1_700_000_010.0);
        assert_eq!(merged.contexts, 2);
        // No forget_through: the commit failed.
        let p = points(&mut memory, 1_700_000_010.0);
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn name_and_tag_limits_are_refused_on_receipt() {
        let mut memory = Memory::new(10, 100);
        let long = "n".repeat(201);
        memory.record_datagram(NOW, format!("{long}:1|c").as_bytes());
        let tags: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        memory.record_datagram(NOW, format!("m:1|c|#{}", tags.join(",")).as_bytes());
        memory.record_datagram(NOW, format!("m:1|c|#{}", "t".repeat(201)).as_bytes());
        let refused = &memory.stats().refused;
        assert_eq!((refused["name_too_long"], refused["too_many_tags"], refused["tag_too_long"]), (1, 1, 1));
        assert!(memory.is_empty());
    }

    #[test]
    fn names_and_tags_are_kept_once_and_dropped_with_their_newest_bucket() {
        let mut memory = Memory::new(10, 100);
        memory.record_datagram(NOW, b"a:1|c|#x:1\nb:1|g");
        memory.record_datagram(NOW + 10.0, b"a:2|c|#x:1");
        assert_eq!((memory.buckets.len(), memory.contexts(), memory.keys.len()), (2, 3, 2));
        let first = points(&mut memory, 1_700_000_010.0);
        assert_eq!(first.len(), 2, "{first:?}");
        // `b` was only in the bucket forgotten; `a` is still held by the next one.
        assert_eq!(memory.keys.len(), 1);
        let second = points(&mut memory, 1_700_000_020.0);
        assert_eq!(second, BTreeMap::from([("a{x:1}@1700000010".to_string(), 2.0)]));
        assert!(memory.keys.is_empty());
    }

    #[test]
    fn histogram_samples_in_any_order_give_the_exact_aggregates() {
        // 200 samples, kept as a list, then 300 more past the exact histogram's 256.
        for total in [200u32, 500] {
            let mut memory = Memory::new(10, 100);
            let mut lines = Vec::new();
            for i in 0..total {
                // A permutation of 1..=total.
                let v = (i * 7919) % total + 1;
                lines.push(format!("lat:{v}|ms"));
                if lines.len() == 50 {
                    memory.record_datagram(NOW, lines.join("\n").as_bytes());
                    lines.clear();
                }
            }
            let p = points(&mut memory, 1_700_000_010.0);
            let n = f64::from(total);
            assert_eq!(p["lat.count{}@1700000000"], n / 10.0);
            assert_eq!(p["lat.avg{}@1700000000"], (n + 1.0) / 2.0);
            assert_eq!(p["lat.max{}@1700000000"], n);
            if total <= EXACT_SAMPLES as u32 {
                // numpy's linear interpolation over 1..=200.
                assert_eq!(p["lat.median{}@1700000000"], 100.5);
                // 0.95 * 199 is 189.04999999999998 in f64, as numpy computes it.
                assert_eq!(p["lat.95percentile{}@1700000000"], 190.04999999999998);
            } else {
                let median = p["lat.median{}@1700000000"];
                assert!((median - 250.5).abs() / 250.5 < 0.02, "{median}");
            }
        }
    }

    #[test]
    fn contexts_a_step_has_no_room_for_wait_for_the_next_step_and_none_is_lost() {
        // 100 timers of 10 samples each: a board aggregator pools 64 histograms, so 36 wait.
        let mut memory = Memory::new(10, 1000);
        for i in 0..100 {
            let lines: Vec<String> = (0..10).map(|v| format!("t{i:03}:{v}|ms")).collect();
            memory.record_datagram(NOW, lines.join("\n").as_bytes());
        }
        memory.record_datagram(NOW + 10.0, b"t000:100|ms");
        let mut counts = BTreeMap::new();
        let mut end = 1_700_000_010.0;
        for _ in 0..3 {
            for (key, value) in points(&mut memory, end) {
                if let Some(name) = key.strip_suffix(&format!("{{}}@{}", end - 10.0)) {
                    if let Some(timer) = name.strip_suffix(".count") {
                        *counts.entry(timer.to_string()).or_insert(0.0) += value * 10.0;
                    }
                }
            }
            end += 10.0;
        }
        // Every timer's 10 samples, once; t000's late one too.
        assert_eq!(counts.len(), 100, "{counts:?}");
        assert_eq!(counts.values().sum::<f64>(), 1001.0);
        assert_eq!(memory.stats().deferred, 36);
        assert!(memory.stats().refused.is_empty(), "{:?}", memory.stats().refused);
        assert!(memory.is_empty() && memory.keys.is_empty());
    }
}
