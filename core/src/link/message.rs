//! What frames carry: postcard-encoded payloads (serde's compact `no_std` format: varints, no
//! field names, no schema on the wire). `docs/link.md` lists every byte.
//!
//! | kind | direction | payload |
//! |---|---|---|
//! | hello | device → gateway | [`Hello`] |
//! | hello | gateway → device | empty: "I (re)started: tell me who you are, resend what I lack" |
//! | define | device → gateway, sequenced | [`Define`]: a context (name, type, tags) gets an id |
//! | data | device → gateway, sequenced | [`DataHeader`] then [`Record`]s to the end |
//! | ack | gateway → device | [`Ack`]; the header's seq acknowledges it and every frame before |
//! | nack | gateway → device | [`Nack`] |
//! | time request | gateway → device | [`TimeRequest`] |
//! | time response | device → gateway | [`TimeResponse`] |
//!
//! Numbers ([`Num`]) take the shortest exact form: a small integer is one byte, `20.3` three,
//! only values no shorter form reproduces bit for bit take nine.

use serde::{Deserialize, Serialize};

use crate::limits::MAX_TAGS;
use crate::metric::MetricType;
use crate::sketch::{QuantileSketch, SketchParts};

/// Why a payload could not be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The output buffer is full.
    Full,
    /// The bytes are not a payload of this kind (truncated, bad varint, bad variant, bad UTF-8).
    Malformed,
}

impl core::fmt::Display for MessageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MessageError::Full => f.write_str("payload buffer full"),
            MessageError::Malformed => f.write_str("malformed payload"),
        }
    }
}

/// Writes `value` at `out[*at..]`, advancing `at`.
pub fn put<T: Serialize + ?Sized>(value: &T, out: &mut [u8], at: &mut usize) -> Result<(), MessageError> {
    let rest = out.get_mut(*at..).ok_or(MessageError::Full)?;
    let used = postcard::to_slice(value, rest).map_err(|_| MessageError::Full)?.len();
    *at += used;
    Ok(())
}

/// Reads one `T` from the front of `input`, advancing it.
pub fn take<'a, T: Deserialize<'a>>(input: &mut &'a [u8]) -> Result<T, MessageError> {
    let (value, rest) = postcard::take_from_bytes(input).map_err(|_| MessageError::Malformed)?;
    *input = rest;
    Ok(value)
}

/// Encodes a whole payload into `out`; returns its length.
pub fn encode<T: Serialize + ?Sized>(value: &T, out: &mut [u8]) -> Result<usize, MessageError> {
    let mut at = 0;
    put(value, out, &mut at)?;
    Ok(at)
}

/// Decodes a whole payload (trailing bytes are refused).
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, MessageError> {
    let mut input = payload;
    let value = take(&mut input)?;
    if input.is_empty() {
        Ok(value)
    } else {
        Err(MessageError::Malformed)
    }
}

/// What a device counts about itself and reports in [`Hello`] and [`TimeResponse`] (totals
/// since boot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounters {
    /// Closed intervals merged into an older one because the ring was full.
    pub merged_intervals: u32,
    /// Closed intervals dropped: they could neither be kept nor merged.
    pub dropped_intervals: u32,
    /// Samples the aggregator refused (capacity, invalid values).
    pub refused_samples: u32,
    /// Histograms sent without their quantiles (their sketch did not fit in a frame).
    pub coarsened: u32,
    /// Times the device restarted its sequence numbers on the gateway's request.
    pub resyncs: u32,
}

/// The device's hello: who it is and what it counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello<'a> {
    /// The device's name (a `device:` tag is the device's business: it sends it as a tag).
    pub device: &'a str,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// Its aggregation interval.
    pub interval_ms: u32,
    /// What it counted.
    pub counters: DeviceCounters,
}

/// A context: the series a record's `ctx` id stands for, until the next boot or resync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Define<'a> {
    /// The id records use.
    pub ctx: u16,
    /// The metric type.
    pub kind: MetricType,
    /// The metric name.
    pub name: &'a str,
    /// The tags, `key:value` or bare.
    #[serde(borrow)]
    pub tags: heapless::Vec<&'a str, MAX_TAGS>,
}

/// The start of a data payload: the interval its records cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataHeader {
    /// The device's uptime at the interval's start, in milliseconds.
    pub start_ms: u64,
    /// The interval's length (a multiple of the device's interval once intervals merged).
    pub interval_ms: u32,
    /// How many closed intervals this one holds: 1, or more once the ring merged them.
    pub intervals: u16,
}

/// The gateway's acknowledgement: the header's seq and every frame before it are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Frames the device may have in flight beyond the acknowledged one (the credit).
    pub window: u8,
}

/// Why the gateway refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Nack {
    /// A damaged frame arrived: resend every unacknowledged frame now.
    Damaged,
    /// The gateway lacks what the frames build on (a context's definition, or its record of this
    /// boot): start a new session (new boot id, seq 0, contexts defined again) and send the
    /// unacknowledged data in it.
    Resync {
        /// Every frame through this seq is committed (release them first: resending them in the
        /// new session would count them twice); `None` when nothing of the session is.
        through: Option<u16>,
    },
}

/// The gateway asks the device's uptime (the header's seq numbers the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRequest {
    /// The gateway's wall clock when it sent the request (ms since the Unix epoch), echoed back.
    pub t0_ms: u64,
}

/// The device's answer to a [`TimeRequest`] (same seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeResponse {
    /// The request's `t0_ms`.
    pub t0_ms: u64,
    /// The device's uptime when it answered, in milliseconds.
    pub uptime_ms: u64,
    /// What it counted.
    pub counters: DeviceCounters,
}

/// A number in its shortest exact form.
///
/// `Int` (zigzag varint) for integers below 2^53, `Dec1`..`Dec3` for `m / 10^k` (`20.3` is
/// `Dec1(203)`), `F32` when a single-precision float holds the value exactly, else `F64`. The
/// encoder picks a form only if decoding it gives back the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Num {
    /// An integer.
    Int(i64),
    /// Tenths.
    Dec1(i64),
    /// Hundredths.
    Dec2(i64),
    /// Thousandths.
    Dec3(i64),
    /// A single-precision float.
    F32(f32),
    /// Anything else.
    F64(f64),
}

impl Num {
    /// The shortest exact form of `value`.
    pub fn of(value: f64) -> Num {
        const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
        let exact = |num: Num| num.value().to_bits() == value.to_bits();
        if value.is_finite() && value.abs() < LIMIT {
            // `as` saturates; the round trip below decides.
            let int = value as i64;
            if exact(Num::Int(int)) {
                return Num::Int(int);
            }
            for (scale, make) in
                [(10.0, Num::Dec1 as fn(i64) -> Num), (100.0, Num::Dec2), (1000.0, Num::Dec3)]
            {
                let scaled = value * scale;
                if scaled.abs() < LIMIT {
                    let m = if scaled < 0.0 { (scaled - 0.5) as i64 } else { (scaled + 0.5) as i64 };
                    if exact(make(m)) {
                        return make(m);
                    }
                }
            }
        }
        let single = value as f32;
        if f64::from(single).to_bits() == value.to_bits() {
            return Num::F32(single);
        }
        Num::F64(value)
    }

    /// The value.
    pub fn value(self) -> f64 {
        match self {
            Num::Int(v) => v as f64,
            Num::Dec1(m) => m as f64 / 10.0,
            Num::Dec2(m) => m as f64 / 100.0,
            Num::Dec3(m) => m as f64 / 1000.0,
            Num::F32(v) => f64::from(v),
            Num::F64(v) => v,
        }
    }
}

/// One series' value over a data payload's interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Counts and rates: the sum of `n` samples.
    Count {
        /// The sum.
        sum: f64,
        /// Samples.
        n: u64,
    },
    /// Gauges: the latest value, and the sum of `n` samples (for the mean).
    Gauge {
        /// The latest value.
        last: f64,
        /// The sum.
        sum: f64,
        /// Samples.
        n: u64,
    },
    /// Histograms and distributions: every sample, sorted ([`Samples`] reads them).
    Samples(Samples<'a>),
    /// Histograms and distributions past what fits as samples: the sketch ([`SketchBins`]).
    Sketch(SketchBins<'a>),
    /// A histogram whose sketch did not fit in a frame: count, sum, min and max only (counted as
    /// `coarsened` on the device).
    Summary {
        /// Samples.
        count: u64,
        /// Their sum.
        sum: f64,
        /// The smallest.
        min: f64,
        /// The largest.
        max: f64,
    },
    /// Sets: distinct members over `samples`.
    Set {
        /// Distinct members (the device's estimate).
        distinct: u64,
        /// Samples.
        samples: u64,
    },
}

/// One record of a data payload: a context id and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// The context, as a [`Define`] introduced it.
    pub ctx: u16,
    /// The value.
    pub value: Value<'a>,
}

/// Tags of [`Value`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Tag {
    Count,
    Gauge,
    Samples,
    Sketch,
    Summary,
    Set,
}

/// Exact samples as they sit in a payload: a count and that many [`Num`]s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Samples<'a> {
    len: u16,
    bytes: &'a [u8],
}

impl<'a> Samples<'a> {
    /// How many samples.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The samples (already validated when the record was read).
    pub fn iter(&self) -> impl Iterator<Item = f64> + 'a {
        let mut bytes = self.bytes;
        (0..self.len).map_while(move |_| take::<Num>(&mut bytes).ok().map(Num::value))
    }
}

/// A sketch as it sits in a payload: its parts, then `(key delta, units)` per non-empty bin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SketchBins<'a> {
    /// Count, sum, bounds, zero units, scale.
    pub parts: SketchParts,
    len: u16,
    bytes: &'a [u8],
}

impl<'a> SketchBins<'a> {
    /// Non-empty bins.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether every value sat at zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(key, units)` of every non-empty bin, in increasing key order.
    pub fn bins(&self) -> impl Iterator<Item = (i32, u16)> + Clone + 'a {
        let mut bytes = self.bytes;
        let mut key = 0i32;
        (0..self.len).map_while(move |i| {
            let delta: i32 = take(&mut bytes).ok()?;
            let units: u16 = take(&mut bytes).ok()?;
            key = if i == 0 { delta } else { key.wrapping_add(delta) };
            Some((key, units))
        })
    }

    /// The sketch rebuilt.
    pub fn to_sketch<const BINS: usize>(&self) -> Result<QuantileSketch<BINS>, MessageError> {
        QuantileSketch::from_parts(self.parts, self.bins()).map_err(|_| MessageError::Malformed)
    }
}

/// Writes a data payload into a buffer: [`DataHeader`], then records while they fit.
pub struct DataWriter<'b> {
    out: &'b mut [u8],
    len: usize,
    records: usize,
}

impl<'b> DataWriter<'b> {
    /// Starts a payload in `out` (at most [`MAX_PAYLOAD`](super::MAX_PAYLOAD) bytes are used).
    pub fn new(out: &'b mut [u8], header: DataHeader) -> Result<Self, MessageError> {
        let limit = out.len().min(super::MAX_PAYLOAD);
        let out = &mut out[..limit];
        let mut len = 0;
        put(&header, out, &mut len)?;
        Ok(DataWriter { out, len, records: 0 })
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no record was written yet.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Records written so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The payload so far.
    pub fn payload(&self) -> &[u8] {
        &self.out[..self.len]
    }

    /// Appends a counter's or gauge's or set's record; [`MessageError::Full`] leaves the payload
    /// as it was.
    pub fn push(&mut self, ctx: u16, value: &Value<'_>) -> Result<(), MessageError> {
        self.append(|out, at| {
            put(&ctx, out, at)?;
            match *value {
                Value::Count { sum, n } => {
                    put(&Tag::Count, out, at)?;
                    put(&Num::of(sum), out, at)?;
                    put(&n, out, at)
                }
                Value::Gauge { last, sum, n } => {
                    put(&Tag::Gauge, out, at)?;
                    put(&Num::of(last), out, at)?;
                    put(&Num::of(sum), out, at)?;
                    put(&n, out, at)
                }
                Value::Samples(samples) => {
                    put(&Tag::Samples, out, at)?;
                    put(&samples.len, out, at)?;
                    let bytes = out.get_mut(*at..*at + samples.bytes.len()).ok_or(MessageError::Full)?;
                    bytes.copy_from_slice(samples.bytes);
                    *at += samples.bytes.len();
                    Ok(())
                }
                Value::Sketch(sketch) => {
                    put(&Tag::Sketch, out, at)?;
                    put_parts(&sketch.parts, out, at)?;
                    put(&sketch.len, out, at)?;
                    let bytes = out.get_mut(*at..*at + sketch.bytes.len()).ok_or(MessageError::Full)?;
                    bytes.copy_from_slice(sketch.bytes);
                    *at += sketch.bytes.len();
                    Ok(())
                }
                Value::Summary { count, sum, min, max } => {
                    put(&Tag::Summary, out, at)?;
                    put(&count, out, at)?;
                    put(&Num::of(sum), out, at)?;
                    put(&Num::of(min), out, at)?;
                    put(&Num::of(max), out, at)
                }
                Value::Set { distinct, samples } => {
                    put(&Tag::Set, out, at)?;
                    put(&distinct, out, at)?;
                    put(&samples, out, at)
                }
            }
        })
    }

    /// Appends exact samples (sorted or not: they are written as given).
    pub fn push_samples(
        &mut self,
        ctx: u16,
        samples: impl Iterator<Item = f64> + Clone,
    ) -> Result<(), MessageError> {
        let count = samples.clone().count();
        let len = u16::try_from(count).map_err(|_| MessageError::Full)?;
        self.append(|out, at| {
            put(&ctx, out, at)?;
            put(&Tag::Samples, out, at)?;
            put(&len, out, at)?;
            for sample in samples {
                put(&Num::of(sample), out, at)?;
            }
            Ok(())
        })
    }

    /// Appends a sketch: its parts and its non-empty bins.
    pub fn push_sketch<const BINS: usize>(
        &mut self,
        ctx: u16,
        sketch: &QuantileSketch<BINS>,
    ) -> Result<(), MessageError> {
        let len = u16::try_from(sketch.bins().count()).map_err(|_| MessageError::Full)?;
        self.append(|out, at| {
            put(&ctx, out, at)?;
            put(&Tag::Sketch, out, at)?;
            put_parts(&sketch.parts(), out, at)?;
            put(&len, out, at)?;
            let mut previous = 0i32;
            for (i, (key, units)) in sketch.bins().enumerate() {
                let delta = if i == 0 { key } else { key.wrapping_sub(previous) };
                previous = key;
                put(&delta, out, at)?;
                put(&units, out, at)?;
            }
            Ok(())
        })
    }

    fn append(
        &mut self,
        write: impl FnOnce(&mut [u8], &mut usize) -> Result<(), MessageError>,
    ) -> Result<(), MessageError> {
        let mut at = self.len;
        write(self.out, &mut at)?;
        self.len = at;
        self.records += 1;
        Ok(())
    }
}

fn put_parts(parts: &SketchParts, out: &mut [u8], at: &mut usize) -> Result<(), MessageError> {
    put(&parts.count, out, at)?;
    put(&Num::of(parts.sum), out, at)?;
    put(&Num::of(parts.min), out, at)?;
    put(&Num::of(parts.max), out, at)?;
    put(&parts.zero, out, at)?;
    put(&parts.scale, out, at)
}

fn take_parts(input: &mut &[u8]) -> Result<SketchParts, MessageError> {
    Ok(SketchParts {
        count: take(input)?,
        sum: take::<Num>(input)?.value(),
        min: take::<Num>(input)?.value(),
        max: take::<Num>(input)?.value(),
        zero: take(input)?,
        scale: take(input)?,
    })
}

/// Reads a data payload: its header, then its records one by one (validated as they are read).
pub struct DataReader<'a> {
    /// The interval.
    pub header: DataHeader,
    rest: &'a [u8],
}

impl<'a> DataReader<'a> {
    /// Reads the header of `payload`.
    pub fn new(payload: &'a [u8]) -> Result<Self, MessageError> {
        let mut rest = payload;
        let header = take(&mut rest)?;
        Ok(DataReader { header, rest })
    }

    /// The next record, `None` at the end, or why the rest is malformed.
    pub fn next_record(&mut self) -> Option<Result<Record<'a>, MessageError>> {
        if self.rest.is_empty() {
            return None;
        }
        let result = Self::read(&mut self.rest);
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }

    fn read(input: &mut &'a [u8]) -> Result<Record<'a>, MessageError> {
        let ctx = take(input)?;
        let value = match take::<Tag>(input)? {
            Tag::Count => Value::Count { sum: take::<Num>(input)?.value(), n: take(input)? },
            Tag::Gauge => Value::Gauge {
                last: take::<Num>(input)?.value(),
                sum: take::<Num>(input)?.value(),
                n: take(input)?,
            },
            Tag::Samples => {
                let len: u16 = take(input)?;
                let start = *input;
                for _ in 0..len {
                    if !take::<Num>(input)?.value().is_finite() {
                        return Err(MessageError::Malformed);
                    }
                }
                let used = start.len() - input.len();
                Value::Samples(Samples { len, bytes: &start[..used] })
            }
            Tag::Sketch => {
                let parts = take_parts(input)?;
                let len: u16 = take(input)?;
                let start = *input;
                for _ in 0..len {
                    take::<i32>(input)?;
                    take::<u16>(input)?;
                }
                let used = start.len() - input.len();
                Value::Sketch(SketchBins { parts, len, bytes: &start[..used] })
            }
            Tag::Summary => Value::Summary {
                count: take(input)?,
                sum: take::<Num>(input)?.value(),
                min: take::<Num>(input)?.value(),
                max: take::<Num>(input)?.value(),
            },
            Tag::Set => Value::Set { distinct: take(input)?, samples: take(input)? },
        };
        Ok(Record { ctx, value })
    }
}

impl<'a> Iterator for DataReader<'a> {
    type Item = Result<Record<'a>, MessageError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}
