//! Folding: how each metric type's samples (and [`Partial`]s from another aggregator) fold into
//! an entry's state, inline while they fit, in a pooled sketch when they outgrow it.

use crate::limits::{INLINE_MEMBERS, INLINE_SAMPLES};
use crate::metric::{Member, MetricType, Sample, SetMembers, Timestamp, Value};
use crate::sketch::{hash_member, Histogram, SetCounter};

use super::{Aggregator, RecordError};

#[derive(Debug, Clone, Copy)]
pub(super) enum State {
    Sum {
        sum: f64,
        n: u64,
    },
    Gauge {
        last: f64,
        last_ts: f64,
        sum: f64,
        n: u32,
    },
    Samples {
        n: u8,
        values: [f64; INLINE_SAMPLES],
    },
    Members {
        samples: u32,
        n: u8,
        hashes: [u64; INLINE_MEMBERS],
    },
    /// A histogram or set in pool slot `slot`; `samples` counts set samples.
    Pooled {
        slot: u16,
        samples: u32,
    },
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // the pool holds the large variants on purpose
pub(super) enum Slot {
    Free,
    Histogram(Histogram),
    Set(SetCounter),
}

impl<const SERIES: usize, const SKETCHES: usize, const KEY_BYTES: usize>
    Aggregator<SERIES, SKETCHES, KEY_BYTES>
{
    /// Merges `partial` into `state` (a copy: on error the caller drops it, and any pool slot
    /// this call took is released).
    pub(super) fn merge_into(&mut self, state: &mut State, partial: Partial<'_>) -> Result<(), RecordError> {
        match (state, partial) {
            (State::Sum { sum, n }, Partial::Sum { sum: more, n: m }) => {
                *sum = finite_sum(*sum, more)?;
                *n = n.saturating_add(m);
            }
            (
                State::Gauge { last, last_ts, sum, n },
                Partial::Gauge { last: value, last_ts: at, sum: more, n: m },
            ) => {
                *sum = finite_sum(*sum, more)?;
                let at = at.as_secs_f64();
                if at >= *last_ts {
                    *last = value;
                    *last_ts = at;
                }
                *n = n.saturating_add(u32::try_from(m).unwrap_or(u32::MAX));
            }
            (state @ (State::Samples { .. } | State::Pooled { .. }), Partial::Samples(values)) => {
                let current = self.histogram_sum(state);
                finite_sum(current, values.iter().sum())?;
                if let State::Samples { n, values: inline } = state {
                    let have = usize::from(*n);
                    if have + values.len() <= INLINE_SAMPLES {
                        inline[have..have + values.len()].copy_from_slice(values);
                        *n += values.len() as u8;
                        return Ok(());
                    }
                }
                let slot = self.pooled_histogram(state)?;
                if let Slot::Histogram(histogram) = &mut self.pool[slot as usize] {
                    for &v in values {
                        let _ = histogram.push(v);
                    }
                }
            }
            (state @ (State::Samples { .. } | State::Pooled { .. }), Partial::Histogram(other)) => {
                finite_sum(self.histogram_sum(state), other.sum())?;
                let slot = self.pooled_histogram(state)?;
                if let Slot::Histogram(histogram) = &mut self.pool[slot as usize] {
                    histogram.merge(other);
                }
            }
            (
                state @ (State::Members { .. } | State::Pooled { .. }),
                Partial::SetHashes { hashes, samples: more },
            ) => {
                if let State::Members { samples, n, hashes: inline } = state {
                    let mut next = *inline;
                    let mut len = usize::from(*n);
                    let mut fits = true;
                    for &h in hashes {
                        if next[..len].contains(&h) {
                            continue;
                        }
                        if len == INLINE_MEMBERS {
                            fits = false;
                            break;
                        }
                        next[len] = h;
                        len += 1;
                    }
                    if fits {
                        *inline = next;
                        *n = len as u8;
                        *samples = samples.saturating_add(u32::try_from(more).unwrap_or(u32::MAX));
                        return Ok(());
                    }
                }
                let slot = self.pooled_set(state, more)?;
                if let Slot::Set(counter) = &mut self.pool[slot as usize] {
                    for &h in hashes {
                        counter.insert_hash(h);
                    }
                }
            }
            (
                state @ (State::Members { .. } | State::Pooled { .. }),
                Partial::Set { counter: other, samples: more },
            ) => {
                let slot = self.pooled_set(state, more)?;
                if let Slot::Set(counter) = &mut self.pool[slot as usize] {
                    counter.merge(other);
                }
            }
            _ => return Err(RecordError::WrongValueKind),
        }
        Ok(())
    }

    pub(super) fn histogram_sum(&self, state: &State) -> f64 {
        match state {
            State::Samples { n, values } => values[..usize::from(*n)].iter().sum(),
            State::Pooled { slot, .. } => match &self.pool[*slot as usize] {
                Slot::Histogram(histogram) => histogram.sum(),
                _ => 0.0,
            },
            _ => 0.0,
        }
    }

    /// The pool slot of a histogram state, moving inline samples into a new pooled histogram
    /// first.
    pub(super) fn pooled_histogram(&mut self, state: &mut State) -> Result<u16, RecordError> {
        match *state {
            State::Pooled { slot, .. } if matches!(self.pool[slot as usize], Slot::Histogram(_)) => Ok(slot),
            State::Samples { n, values } => {
                let slot = self.take_slot()?;
                let histogram = histogram_in(&mut self.pool[slot as usize]);
                for &v in &values[..usize::from(n)] {
                    let _ = histogram.push(v);
                }
                *state = State::Pooled { slot, samples: 0 };
                Ok(slot)
            }
            _ => Err(RecordError::WrongValueKind),
        }
    }

    /// The pool slot of a set state after adding `more` samples, moving inline members into a
    /// new pooled counter first.
    pub(super) fn pooled_set(&mut self, state: &mut State, more: u64) -> Result<u16, RecordError> {
        let more = u32::try_from(more).unwrap_or(u32::MAX);
        match state {
            State::Pooled { slot, samples } if matches!(self.pool[*slot as usize], Slot::Set(_)) => {
                *samples = samples.saturating_add(more);
                Ok(*slot)
            }
            State::Members { samples, n, hashes } => {
                let slot = self.take_slot()?;
                let counter = set_in(&mut self.pool[slot as usize]);
                for &h in &hashes[..usize::from(*n)] {
                    counter.insert_hash(h);
                }
                *state = State::Pooled { slot, samples: samples.saturating_add(more) };
                Ok(slot)
            }
            _ => Err(RecordError::WrongValueKind),
        }
    }

    pub(super) fn initial_state(&mut self, sample: &Sample<'_>) -> Result<State, RecordError> {
        let state = match (sample.kind, sample.value) {
            (MetricType::Count | MetricType::Rate, Value::Number(v)) => State::Sum { sum: v, n: 1 },
            (MetricType::Gauge, Value::Number(v)) => {
                State::Gauge { last: v, last_ts: sample.timestamp.as_secs_f64(), sum: v, n: 1 }
            }
            (MetricType::Histogram | MetricType::Distribution, Value::Number(v)) => {
                let mut values = [0.0; INLINE_SAMPLES];
                values[0] = v;
                State::Samples { n: 1, values }
            }
            (MetricType::Histogram | MetricType::Distribution, Value::Samples(samples)) => {
                let mut state = State::Samples { n: 0, values: [0.0; INLINE_SAMPLES] };
                self.add_samples(&mut state, samples)?;
                state
            }
            (MetricType::Set, Value::Set(members)) => {
                let mut state = State::Members { samples: 0, n: 0, hashes: [0; INLINE_MEMBERS] };
                self.add_members(&mut state, members)?;
                state
            }
            _ => return Err(RecordError::WrongValueKind),
        };
        Ok(state)
    }

    /// Adds several numeric samples (validated finite) to an inline or pooled histogram state,
    /// taking a pool slot when they do not fit inline. On error nothing changed.
    pub(super) fn add_samples(
        &mut self,
        state: &mut State,
        samples: SetMembers<'_>,
    ) -> Result<(), RecordError> {
        let numbers = || samples.iter().filter_map(|m| if let Member::Num(v) = m { Some(v) } else { None });
        let current = match state {
            State::Pooled { slot, .. } => match &self.pool[*slot as usize] {
                Slot::Histogram(histogram) => histogram.sum(),
                _ => 0.0,
            },
            State::Samples { n, values } => values[..*n as usize].iter().sum(),
            _ => 0.0,
        };
        finite_sum(current, numbers().sum())?;
        match state {
            State::Pooled { slot, .. } => {
                if let Slot::Histogram(histogram) = &mut self.pool[*slot as usize] {
                    for v in numbers() {
                        let _ = histogram.push(v);
                    }
                }
                Ok(())
            }
            State::Samples { n, values } => {
                let count = numbers().count();
                if *n as usize + count <= INLINE_SAMPLES {
                    for v in numbers() {
                        values[*n as usize] = v;
                        *n += 1;
                    }
                    return Ok(());
                }
                let slot = self.take_slot()?;
                let histogram = histogram_in(&mut self.pool[slot as usize]);
                for &v in &values[..*n as usize] {
                    let _ = histogram.push(v);
                }
                for v in numbers() {
                    let _ = histogram.push(v);
                }
                *state = State::Pooled { slot, samples: 0 };
                Ok(())
            }
            _ => Err(RecordError::WrongValueKind),
        }
    }

    /// Adds set members to an inline or pooled state (taking a pool slot when inline storage
    /// overflows). On error nothing changed.
    pub(super) fn add_members(
        &mut self,
        state: &mut State,
        members: crate::metric::SetMembers<'_>,
    ) -> Result<(), RecordError> {
        match state {
            State::Pooled { slot, samples } => {
                if let Slot::Set(counter) = &mut self.pool[*slot as usize] {
                    for member in members.iter() {
                        counter.insert(member);
                    }
                }
                *samples += 1;
                Ok(())
            }
            State::Members { samples, n, hashes } => {
                let mut next = *hashes;
                let mut len = *n as usize;
                let mut overflow = false;
                for member in members.iter() {
                    let h = hash_member(member);
                    if next[..len].contains(&h) {
                        continue;
                    }
                    if len == INLINE_MEMBERS {
                        overflow = true;
                        break;
                    }
                    next[len] = h;
                    len += 1;
                }
                if !overflow {
                    *hashes = next;
                    *n = len as u8;
                    *samples += 1;
                    return Ok(());
                }
                let slot = self.take_slot()?;
                let counter = set_in(&mut self.pool[slot as usize]);
                for &h in &hashes[..*n as usize] {
                    counter.insert_hash(h);
                }
                for member in members.iter() {
                    counter.insert(member);
                }
                *state = State::Pooled { slot, samples: *samples + 1 };
                Ok(())
            }
            _ => Err(RecordError::WrongValueKind),
        }
    }

    pub(super) fn take_slot(&mut self) -> Result<u16, RecordError> {
        if self.free_len == 0 {
            return Err(RecordError::SketchesFull);
        }
        self.free_len -= 1;
        Ok(self.free_slots[self.free_len])
    }

    pub(super) fn release_slot(&mut self, slot: u16) {
        self.pool[slot as usize] = Slot::Free;
        self.free_slots[self.free_len] = slot;
        self.free_len += 1;
    }

    pub(super) fn update(&mut self, index: usize, sample: &Sample<'_>) -> Result<(), RecordError> {
        match (&mut self.table.0[index].state, sample.value) {
            (State::Sum { sum, n }, Value::Number(v)) => {
                *sum = finite_sum(*sum, v)?;
                *n += 1;
            }
            (State::Gauge { last, last_ts, sum, n }, Value::Number(v)) => {
                *sum = finite_sum(*sum, v)?;
                let ts = sample.timestamp.as_secs_f64();
                if ts >= *last_ts {
                    *last = v;
                    *last_ts = ts;
                }
                *n = n.saturating_add(1);
            }
            (State::Samples { n, values }, Value::Number(v)) => {
                finite_sum(values[..*n as usize].iter().sum(), v)?;
                if (*n as usize) < INLINE_SAMPLES {
                    values[*n as usize] = v;
                    *n += 1;
                } else {
                    // Inline storage is full: move the samples into a pooled histogram.
                    let values = *values;
                    let slot = self.take_slot()?;
                    let histogram = histogram_in(&mut self.pool[slot as usize]);
                    for value in values {
                        let _ = histogram.push(value);
                    }
                    let _ = histogram.push(v);
                    self.table.0[index].state = State::Pooled { slot, samples: 0 };
                }
            }
            (State::Pooled { slot, .. }, Value::Number(v)) => {
                if let Slot::Histogram(histogram) = &mut self.pool[*slot as usize] {
                    finite_sum(histogram.sum(), v)?;
                    let _ = histogram.push(v);
                }
            }
            (State::Members { samples, n, hashes }, Value::Set(members))
                if members.iter().all(|m| hashes[..usize::from(*n)].contains(&hash_member(m))) =>
            {
                // Every member is already known (the common case): no copy of the state.
                *samples += 1;
            }
            (State::Members { .. } | State::Pooled { .. }, Value::Set(members)) => {
                // Works on a copy, so a refusal (no free sketch) changes nothing.
                let mut state = self.table.0[index].state;
                self.add_members(&mut state, members)?;
                self.table.0[index].state = state;
            }
            (State::Samples { .. } | State::Pooled { .. }, Value::Samples(samples)) => {
                let mut state = self.table.0[index].state;
                self.add_samples(&mut state, samples)?;
                self.table.0[index].state = state;
            }
            _ => return Err(RecordError::WrongValueKind),
        }
        Ok(())
    }
}

/// What [`Aggregator::merge`] takes: one series' samples aggregated elsewhere over part of a
/// bucket, in the form each type keeps.
#[derive(Debug, Clone, Copy)]
pub enum Partial<'a> {
    /// Counts and rates: the sum of `n` samples.
    Sum {
        /// The sum.
        sum: f64,
        /// Samples.
        n: u64,
    },
    /// Gauges: the latest value and when it was sampled (the later of two merged gauges wins),
    /// and the sum of `n` samples.
    Gauge {
        /// The latest value.
        last: f64,
        /// When it was sampled.
        last_ts: Timestamp,
        /// The sum.
        sum: f64,
        /// Samples.
        n: u64,
    },
    /// Histograms and distributions: a few samples.
    Samples(&'a [f64]),
    /// Histograms and distributions: more samples.
    Histogram(&'a Histogram),
    /// Sets: a few members, as [`hash_member`] hashes, over `samples`.
    SetHashes {
        /// Distinct member hashes.
        hashes: &'a [u64],
        /// Samples.
        samples: u64,
    },
    /// Sets: a counter, over `samples`.
    Set {
        /// The members.
        counter: &'a SetCounter,
        /// Samples.
        samples: u64,
    },
}

impl Partial<'_> {
    /// The state of a series that has folded nothing yet, of the kind this partial merges into.
    pub(super) fn empty_state(&self) -> State {
        match *self {
            Partial::Sum { .. } => State::Sum { sum: 0.0, n: 0 },
            Partial::Gauge { last, last_ts, .. } => {
                State::Gauge { last, last_ts: last_ts.as_secs_f64(), sum: 0.0, n: 0 }
            }
            Partial::Samples(_) | Partial::Histogram(_) => {
                State::Samples { n: 0, values: [0.0; INLINE_SAMPLES] }
            }
            Partial::SetHashes { .. } | Partial::Set { .. } => {
                State::Members { samples: 0, n: 0, hashes: [0; INLINE_MEMBERS] }
            }
        }
    }

    /// Whether this partial fits a series of type `kind`, with finite numbers.
    pub(super) fn check(&self, kind: MetricType) -> Result<(), RecordError> {
        let fits = match self {
            Partial::Sum { .. } => matches!(kind, MetricType::Count | MetricType::Rate),
            Partial::Gauge { .. } => kind == MetricType::Gauge,
            Partial::Samples(_) | Partial::Histogram(_) => {
                matches!(kind, MetricType::Histogram | MetricType::Distribution)
            }
            Partial::SetHashes { .. } | Partial::Set { .. } => kind == MetricType::Set,
        };
        if !fits {
            return Err(RecordError::WrongValueKind);
        }
        let finite = match self {
            Partial::Sum { sum, .. } => sum.is_finite(),
            Partial::Gauge { last, sum, .. } => last.is_finite() && sum.is_finite(),
            Partial::Samples(values) => values.iter().all(|v| v.is_finite()),
            Partial::Histogram(histogram) => histogram.sum().is_finite(),
            Partial::SetHashes { .. } | Partial::Set { .. } => true,
        };
        let empty = match self {
            Partial::Samples(values) => values.is_empty(),
            Partial::Histogram(histogram) => histogram.count() == 0,
            Partial::SetHashes { hashes, .. } => hashes.is_empty(),
            _ => false,
        };
        if empty {
            return Err(RecordError::WrongValueKind);
        }
        if finite {
            Ok(())
        } else {
            Err(RecordError::NonFinite)
        }
    }
}

/// A new, empty histogram in pool slot `slot`, built where it stays: built on the stack and
/// moved into the pool, its 2 KiB cost a `memset` and a `memcpy` on every spill.
fn histogram_in(slot: &mut Slot) -> &mut Histogram {
    *slot = Slot::Histogram(Histogram::new());
    match slot {
        Slot::Histogram(histogram) => histogram,
        _ => unreachable!("just written"),
    }
}

/// A new, empty set counter in pool slot `slot`, built where it stays (see [`histogram_in`]).
fn set_in(slot: &mut Slot) -> &mut SetCounter {
    *slot = Slot::Set(SetCounter::new());
    match slot {
        Slot::Set(counter) => counter,
        _ => unreachable!("just written"),
    }
}

/// `a + b`, or [`RecordError::Overflow`] when that is not finite (both are finite: validated).
pub(super) fn finite_sum(a: f64, b: f64) -> Result<f64, RecordError> {
    let sum = a + b;
    if sum.is_finite() {
        Ok(sum)
    } else {
        Err(RecordError::Overflow)
    }
}
