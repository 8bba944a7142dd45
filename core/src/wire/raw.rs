//! The original client's raw-metric JSON (compat §2.2), one record per Redis hash value, both
//! ways: [`encode_raw_metric`] writes it exactly as the Python client does (key order, `", "` and
//! `": "` separators, `\uXXXX` escapes, Python's float `repr`), and [`parse_raw_metric`] reads it:
//!
//! ```text
//! {"metric": "my.count", "type": "count", "value": 2, "timestamp": 1600000000.25, "tags": {"k": "v"}}
//! ```
//!
//! [`parse_raw_metric`] accepts every shape the Python client and agent accept: keys in any order
//! (a repeated key: the last one wins, as in Python), extra keys ignored, `tags` missing, `null` or
//! `{}` for no tags, integer or float timestamps, set values as a list of strings and numbers.
//! What the original agent skipped silently, or crashed on, is refused with one distinct
//! [`ParseError`] per reason, so the agent can count and dead-letter it:
//!
//! | input | error |
//! |---|---|
//! | not JSON / not UTF-8 | [`ParseError::NotJson`] (with byte offset) |
//! | an array, string, number | [`ParseError::NotAnObject`] |
//! | no `metric`, `type`, `value` or `timestamp` | [`ParseError::MissingField`] |
//! | `metric`/`type` not a string, `timestamp` not a number, `tags` not an object | [`ParseError::WrongFieldType`] |
//! | `NaN`/`Infinity` value, timestamp or set member | [`ParseError::NonFinite`] |
//! | string, list, object or `null` value of a numeric type | [`ParseError::NonNumericValue`] |
//! | `set` value not a list / member a list or object | [`ParseError::SetNotAList`] / [`ParseError::BadSetMember`] |
//! | `histogram`/`distribution` value a list with a non-number or empty (a list of numbers is several samples: the aggregating client's shape) | [`ParseError::NonNumericValue`] |
//! | empty name / name over [`MAX_NAME_BYTES`] | [`ParseError::EmptyName`] / [`ParseError::NameTooLong`] |
//! | over [`MAX_TAGS`] tags / a tag over [`MAX_TAG_BYTES`] / a list or object tag value | [`ParseError::TooManyTags`] / [`ParseError::TagTooLong`] / [`ParseError::BadTag`] |
//! | `type` not count/gauge/rate/histogram/set/distribution | [`ParseError::UnknownType`] |
//! | negative timestamp | [`ParseError::NegativeTimestamp`] |
//! | scratch too small | [`ParseError::ScratchTooSmall`] |
//! | anything but whitespace after the object | [`ParseError::TrailingData`] |
//!
//! Timestamps must be finite and non-negative: the original kept records with negative scores
//! forever (its TTL cleanup never reached them, compat §7 item 21), and a non-finite time cannot
//! be placed in a flush bucket.
//!
//! Values follow Python: `true`/`false` count as 1 and 0 (Python's `bool` is an `int`).
//! Tag values become what Python's `str()` prints, so series keep their original names:
//! strings as they are, numbers as their JSON text, `true`/`false`/`null` as `True`/`False`/
//! `None`, `NaN`/`Infinity`/`-Infinity` as `nan`/`inf`/`-inf`. Set members: strings and numbers
//! as they are, `true`/`false` as the numbers 1 and 0 (Python hashes `True == 1`), `null` as the
//! string `None`.

use heapless::Vec;

use super::json::{Arena, JsonStr, Scanner, Token};
use super::write::Writer;
use super::{EncodeError, Field, ParseError};
use crate::limits::{MAX_NAME_BYTES, MAX_TAGS, MAX_TAG_BYTES};
use crate::metric::{pack_member, PackedKind};
use crate::{Member, MetricType, Sample, SetMembers, Tag, Timestamp, Value};

/// Scratch bytes that always suffice to parse a raw record of `input_len` bytes.
///
/// Scratch holds the decoded form of strings with escapes (never longer than their JSON text) and
/// a `set`'s packed members (at most twice their JSON text). A record without escapes and
/// without a set needs no scratch at all.
pub const fn raw_scratch_len(input_len: usize) -> usize {
    2 * input_len + 8
}

/// One raw metric record, borrowed from the input and the scratch buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMetric<'a> {
    /// The metric name (`metric`).
    pub name: &'a str,
    /// The metric type (`type`).
    pub kind: MetricType,
    /// The tags, in the order written.
    pub tags: Vec<Tag<'a>, MAX_TAGS>,
    /// The value: a number, or for `set` the members.
    pub value: Value<'a>,
    /// When it was measured (`timestamp`).
    pub timestamp: Timestamp,
}

impl RawMetric<'_> {
    /// The record as a sample for the aggregator.
    pub fn sample(&self) -> Sample<'_> {
        Sample {
            name: self.name,
            kind: self.kind,
            tags: &self.tags,
            value: self.value,
            timestamp: self.timestamp,
        }
    }
}

/// The fields of a record this parser reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Metric,
    Type,
    Value,
    Timestamp,
    Tags,
    Other,
}

fn classify(key: &JsonStr<'_>) -> Key {
    let mut buf = [0u8; 12];
    let text = if let Some(text) = key.borrowed() {
        text
    } else if key.as_raw().len() > 64 {
        return Key::Other;
    } else {
        match key.decode(&mut buf) {
            Ok(text) => text,
            Err(_) => return Key::Other,
        }
    };
    match text {
        "metric" => Key::Metric,
        "type" => Key::Type,
        "value" => Key::Value,
        "timestamp" => Key::Timestamp,
        "tags" => Key::Tags,
        _ => Key::Other,
    }
}

/// What the `value` field held, before the type is known.
#[derive(Clone, Copy)]
enum Seen {
    Number(f64),
    NonFinite,
    List(usize),
    Other,
}

/// Parses one raw-metric record (see the module docs for what is accepted and refused).
///
/// Strings with escapes and set members are decoded into `scratch`;
/// [`raw_scratch_len`]`(input.len())` bytes always suffice, and a smaller buffer gives
/// [`ParseError::ScratchTooSmall`] only when the record needs more.
pub fn parse_raw_metric<'a>(input: &'a [u8], scratch: &'a mut [u8]) -> Result<RawMetric<'a>, ParseError> {
    let too_small = ParseError::ScratchTooSmall { required: raw_scratch_len(input.len()) };
    let scratch_err = |e: super::json::JsonError| match e.kind {
        super::json::JsonErrorKind::ScratchTooSmall => too_small,
        _ => ParseError::NotJson(e),
    };
    let mut arena = Arena::new(scratch);
    let mut sc = Scanner::new(input)?;
    if sc.value()? != Token::ObjectStart {
        return Err(ParseError::NotAnObject);
    }
    let mut name: Option<&'a str> = None;
    let mut kind: Option<MetricType> = None;
    let mut value: Option<Seen> = None;
    let mut timestamp: Option<f64> = None;
    let mut tags: Vec<Tag<'a>, MAX_TAGS> = Vec::new();

    while let Some(key) = sc.next_key()? {
        match classify(&key) {
            Key::Metric => match sc.value()? {
                Token::Str(s) => name = Some(arena.decode(&s).map_err(scratch_err)?),
                Token::ObjectStart | Token::ArrayStart => {
                    return Err(ParseError::WrongFieldType(Field::Metric))
                }
                _ => return Err(ParseError::WrongFieldType(Field::Metric)),
            },
            Key::Type => match sc.value()? {
                Token::Str(s) => {
                    let mut buf = [0u8; 16];
                    let text = s.decode(&mut buf).map_err(|_| ParseError::UnknownType)?;
                    kind = Some(MetricType::parse(text).ok_or(ParseError::UnknownType)?);
                }
                _ => return Err(ParseError::WrongFieldType(Field::Type)),
            },
            Key::Value => {
                let start = sc.offset();
                value = Some(match sc.value()? {
                    Token::Number(text) => Seen::Number(number(text)),
                    Token::Bool(b) => Seen::Number(if b { 1.0 } else { 0.0 }),
                    Token::NonFinite(_) => Seen::NonFinite,
                    Token::ArrayStart => {
                        sc.skip_container()?;
                        Seen::List(start)
                    }
                    Token::ObjectStart => {
                        sc.skip_container()?;
                        Seen::Other
                    }
                    Token::Str(_) | Token::Null => Seen::Other,
                });
            }
            Key::Timestamp => match sc.value()? {
                Token::Number(text) => timestamp = Some(number(text)),
                Token::NonFinite(v) => timestamp = Some(v),
                _ => return Err(ParseError::WrongFieldType(Field::Timestamp)),
            },
            Key::Tags => {
                tags.clear();
                match sc.value()? {
                    Token::Null => {}
                    Token::ObjectStart => read_tags(&mut sc, &mut arena, &mut tags, too_small)?,
                    _ => return Err(ParseError::WrongFieldType(Field::Tags)),
                }
            }
            Key::Other => sc.skip_value()?,
        }
    }
    sc.finish()?;

    let name = name.ok_or(ParseError::MissingField(Field::Metric))?;
    let kind = kind.ok_or(ParseError::MissingField(Field::Type))?;
    let value = value.ok_or(ParseError::MissingField(Field::Value))?;
    let timestamp = timestamp.ok_or(ParseError::MissingField(Field::Timestamp))?;
    if name.is_empty() {
        return Err(ParseError::EmptyName);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ParseError::NameTooLong { len: name.len() });
    }
    if !timestamp.is_finite() {
        return Err(ParseError::NonFinite(Field::Timestamp));
    }
    if timestamp < 0.0 {
        return Err(ParseError::NegativeTimestamp);
    }
    let value = match (kind, value) {
        (_, Seen::NonFinite) => return Err(ParseError::NonFinite(Field::Value)),
        (MetricType::Set, Seen::List(start)) => {
            Value::Set(read_set(sc.text(), start, &mut arena, too_small, false)?)
        }
        (MetricType::Histogram | MetricType::Distribution, Seen::List(start)) => {
            let samples = read_set(sc.text(), start, &mut arena, too_small, true)?;
            if samples.is_empty() {
                return Err(ParseError::NonNumericValue);
            }
            Value::Samples(samples)
        }
        (MetricType::Set, _) => return Err(ParseError::SetNotAList),
        (_, Seen::Number(v)) if !v.is_finite() => return Err(ParseError::NonFinite(Field::Value)),
        (_, Seen::Number(v)) => Value::Number(v),
        (_, Seen::List(_) | Seen::Other) => return Err(ParseError::NonNumericValue),
    };
    Ok(RawMetric { name, kind, tags, value, timestamp: Timestamp(timestamp) })
}

/// A JSON number's value (`1e400` reads as infinity, refused by the callers).
#[inline]
fn number(text: &str) -> f64 {
    text.parse::<f64>().unwrap_or(f64::NAN)
}

fn read_tags<'a>(
    sc: &mut Scanner<'a>,
    arena: &mut Arena<'a>,
    tags: &mut Vec<Tag<'a>, MAX_TAGS>,
    too_small: ParseError,
) -> Result<(), ParseError> {
    let scratch_err = |e: super::json::JsonError| match e.kind {
        super::json::JsonErrorKind::ScratchTooSmall => too_small,
        _ => ParseError::NotJson(e),
    };
    while let Some(key) = sc.next_key()? {
        let key = arena.decode(&key).map_err(scratch_err)?;
        let value: &'a str = match sc.value()? {
            Token::Str(s) => arena.decode(&s).map_err(scratch_err)?,
            Token::Number(text) => text,
            Token::Bool(true) => "True",
            Token::Bool(false) => "False",
            Token::Null => "None",
            Token::NonFinite(v) if v.is_nan() => "nan",
            Token::NonFinite(v) if v > 0.0 => "inf",
            Token::NonFinite(_) => "-inf",
            Token::ObjectStart | Token::ArrayStart => return Err(ParseError::BadTag),
        };
        let tag = Tag::new(key, value);
        let len = tag.encoded_len() - 1;
        if len > MAX_TAG_BYTES {
            return Err(ParseError::TagTooLong { len });
        }
        // A repeated key keeps its first position and its last value, as a Python dict does.
        if let Some(existing) = tags.iter_mut().find(|t| t.key == key) {
            *existing = tag;
        } else if tags.push(tag).is_err() {
            return Err(ParseError::TooManyTags);
        }
    }
    Ok(())
}

fn read_set<'a>(
    text: &'a str,
    start: usize,
    arena: &mut Arena<'a>,
    too_small: ParseError,
    numbers_only: bool,
) -> Result<SetMembers<'a>, ParseError> {
    let mut sc = Scanner::from_str(text);
    sc.seek(start);
    let free = arena.free();
    let mut at = 0;
    if sc.value()? != Token::ArrayStart {
        return Err(ParseError::SetNotAList);
    }
    while sc.next_element()? {
        let out = free.get_mut(at..).ok_or(too_small)?;
        let token = sc.value()?;
        if numbers_only && !matches!(token, Token::Number(_) | Token::NonFinite(_)) {
            return Err(ParseError::NonNumericValue);
        }
        let written = match token {
            Token::Str(s) if !s.has_escapes() => {
                pack_member(PackedKind::Str, s.as_raw().as_bytes(), out).ok_or(too_small)?
            }
            Token::Str(s) => {
                let body = out.get_mut(3..).ok_or(too_small)?;
                let n = s.decode_into(body).map_err(|e| match e.kind {
                    super::json::JsonErrorKind::ScratchTooSmall => too_small,
                    _ => ParseError::NotJson(e),
                })?;
                let len = u16::try_from(n).map_err(|_| ParseError::BadSetMember)?;
                out[0] = b'S';
                out[1..3].copy_from_slice(&len.to_le_bytes());
                3 + n
            }
            Token::Number(num) => {
                if !number(num).is_finite() {
                    return Err(ParseError::NonFinite(Field::Value));
                }
                if num.len() > u8::MAX as usize {
                    return Err(ParseError::BadSetMember);
                }
                pack_member(PackedKind::Num, num.as_bytes(), out).ok_or(too_small)?
            }
            Token::Bool(b) => {
                pack_member(PackedKind::Num, if b { b"1" } else { b"0" }, out).ok_or(too_small)?
            }
            Token::Null => pack_member(PackedKind::Str, b"None", out).ok_or(too_small)?,
            Token::NonFinite(_) => return Err(ParseError::NonFinite(Field::Value)),
            Token::ObjectStart | Token::ArrayStart => return Err(ParseError::BadSetMember),
        };
        at += written;
    }
    let packed: &'a [u8] = arena.alloc(at).ok_or(too_small)?;
    Ok(SetMembers::from_packed(packed))
}

// ---------------------------------------------------------------------------------------------
// Encoding: what the Python client writes, byte for byte.

/// A number as Python holds it: an `int` is written `2`, a `float` as its `repr` (`2.0`, `0.1`,
/// `1e-05`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer value.
    Int(i64),
    /// A float value (a non-finite one cannot be encoded: [`EncodeError::NonFinite`]).
    Float(f64),
}

impl Number {
    /// The value as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// Whether the value can be written as JSON (every `Int`, a finite `Float`).
    pub fn is_finite(self) -> bool {
        match self {
            Number::Int(_) => true,
            Number::Float(f) => f.is_finite(),
        }
    }
}

macro_rules! number_from {
    ($variant:ident as $as:ty: $($t:ty),*) => {$(
        impl From<$t> for Number {
            fn from(v: $t) -> Number {
                Number::$variant(v as $as)
            }
        }
    )*};
}
number_from!(Int as i64: i8, i16, i32, i64, u8, u16, u32, isize);
number_from!(Float as f64: f32, f64);

impl From<u64> for Number {
    /// An `Int` when it fits in an `i64`, else the nearest `Float`.
    fn from(v: u64) -> Number {
        i64::try_from(v).map_or(Number::Float(v as f64), Number::Int)
    }
}

impl From<usize> for Number {
    fn from(v: usize) -> Number {
        Number::from(v as u64)
    }
}

impl core::ops::Neg for Number {
    type Output = Number;
    /// `-i64::MIN` saturates to `i64::MAX`.
    fn neg(self) -> Number {
        match self {
            Number::Int(i) => Number::Int(i.saturating_neg()),
            Number::Float(f) => Number::Float(-f),
        }
    }
}

/// The `value` of a raw record to encode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue<'a> {
    /// One number, for every type but `set` ([`parse_raw_metric`] refuses a `set` record whose
    /// value is a number: use [`RawValue::Members`]).
    Number(Number),
    /// A `set`'s members, in the order given (strings as JSON strings, numbers as
    /// [`Writer::f64`] writes them).
    Members(&'a [Member<'a>]),
    /// Several histogram or distribution samples in one record (`[1, 2.5]`: the aggregating
    /// client's shape, read back as [`Value::Samples`]).
    Samples(&'a [Number]),
    /// A `set`'s members already written as JSON, each by [`write_member`] (the aggregating client
    /// keeps them so, sorted and deduplicated); written as they are, so they must be JSON.
    MemberTexts(&'a [&'a str]),
}

/// One raw record to encode: the Python client's `{"metric", "type", "value", "timestamp",
/// "tags"}`. `tags` is the Python dict, in its order (a key given twice is written twice: the
/// caller merges, as [`write_raw_metric`]'s docs show).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawRecord<'a> {
    /// `metric`.
    pub name: &'a str,
    /// `type`.
    pub kind: MetricType,
    /// `value`.
    pub value: RawValue<'a>,
    /// `timestamp`, float Unix seconds (written as Python's `repr(time.time())`).
    pub timestamp: f64,
    /// `tags`, `(key, value)` in order.
    pub tags: &'a [(&'a str, &'a str)],
}

/// Encodes one raw record into `out`, exactly as the Python client writes it (compat §2.2):
///
/// ```
/// use chouette_core::wire::raw::{encode_raw_metric, Number, RawRecord, RawValue};
/// use chouette_core::MetricType;
///
/// let record = RawRecord {
///     name: "my.count",
///     kind: MetricType::Count,
///     value: RawValue::Number(Number::Int(2)),
///     timestamp: 1600000000.25,
///     tags: &[("k", "v")],
/// };
/// let mut out = [0u8; 128];
/// let len = encode_raw_metric(&record, &mut out).unwrap();
/// assert_eq!(
///     &out[..len],
///     br#"{"metric": "my.count", "type": "count", "value": 2, "timestamp": 1600000000.25, "tags": {"k": "v"}}"#
/// );
/// ```
///
/// Errors: [`EncodeError::BufferTooSmall`] with the bytes needed, [`EncodeError::NonFinite`] for
/// a NaN or infinite value, member or timestamp (which JSON cannot carry).
pub fn encode_raw_metric(record: &RawRecord<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Writer::new(out);
    write_raw_metric(
        &mut w,
        record.name,
        record.kind,
        record.value,
        record.timestamp,
        record.tags.iter().copied(),
    );
    w.finish()
}

/// Writes one raw record at the writer's cursor; [`encode_raw_metric`] for callers whose tags
/// are not a slice of pairs. Tags are written in the order `tags` yields them, keys as given:
/// a client with global tags passes them first, skipping those a call's own tag of the same key
/// replaces (as the Python dict `{**global_tags, **tags}` would keep them).
pub fn write_raw_metric<K: AsRef<str>, V: AsRef<str>>(
    w: &mut Writer<'_>,
    name: &str,
    kind: MetricType,
    value: RawValue<'_>,
    timestamp: f64,
    tags: impl IntoIterator<Item = (K, V)>,
) {
    w.str("{\"metric\": ");
    w.json_str(name);
    w.str(", \"type\": \"");
    w.str(kind.as_str());
    w.str("\", \"value\": ");
    match value {
        RawValue::Number(n) => write_number(w, n),
        RawValue::Members(members) => write_list(w, members, |w, m| write_member(w, *m)),
        RawValue::Samples(samples) => write_list(w, samples, |w, n| write_number(w, *n)),
        RawValue::MemberTexts(texts) => write_list(w, texts, |w, t| w.str(t)),
    }
    w.str(", \"timestamp\": ");
    w.python_float(timestamp);
    w.str(", \"tags\": {");
    for (i, (k, v)) in tags.into_iter().enumerate() {
        if i > 0 {
            w.str(", ");
        }
        w.json_str(k.as_ref());
        w.str(": ");
        w.json_str(v.as_ref());
    }
    w.str("}}");
}

fn write_list<T>(w: &mut Writer<'_>, items: &[T], mut one: impl FnMut(&mut Writer<'_>, &T)) {
    w.byte(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            w.str(", ");
        }
        one(w, item);
    }
    w.byte(b']');
}

/// Writes a number as Python does: an `Int` as an integer, a `Float` as its `repr`.
#[inline]
pub fn write_number(w: &mut Writer<'_>, n: Number) {
    match n {
        Number::Int(i) => w.i64(i),
        Number::Float(f) => w.python_float(f),
    }
}

/// Writes a set member: a string as a JSON string, a number as [`Writer::f64`] does (an
/// integral value as an integer).
#[inline]
pub fn write_member(w: &mut Writer<'_>, m: Member<'_>) {
    match m {
        Member::Str(s) => w.json_str(s),
        Member::Num(n) => w.f64(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Member;

    fn parse(input: &str) -> Result<RawMetric<'static>, ParseError> {
        extern crate std;
        let scratch = std::boxed::Box::leak(std::vec![0u8; raw_scratch_len(input.len())].into_boxed_slice());
        let input = std::boxed::Box::leak(std::string::String::from(input).into_boxed_str());
        parse_raw_metric(input.as_bytes(), scratch)
    }

    #[test]
    fn parses_the_client_shape() {
        let m = parse(r#"{"metric": "my.count", "type": "count", "value": 2, "timestamp": 1600000000.25, "tags": {"k": "v"}}"#).unwrap();
        assert_eq!(m.name, "my.count");
        assert_eq!(m.kind, MetricType::Count);
        assert_eq!(m.value, Value::Number(2.0));
        assert_eq!(m.timestamp, Timestamp(1600000000.25));
        assert_eq!(&m.tags[..], &[Tag::new("k", "v")]);
        let s = m.sample();
        assert_eq!(s.tags, &[Tag::new("k", "v")]);
    }

    #[test]
    fn merger_cases_from_the_original_suite() {
        assert!(matches!(parse("Not a JSON..."), Err(ParseError::NotJson(_))));
        assert_eq!(parse(r#"{"msg": "Not a metric"}"#), Err(ParseError::MissingField(Field::Metric)));
        let m = parse(r#"{"metric":"name","type":"count","value":1,"timestamp":1}"#).unwrap();
        assert_eq!((m.name, m.value, m.timestamp), ("name", Value::Number(1.0), Timestamp(1.0)));
        assert!(m.tags.is_empty());
    }

    #[test]
    fn tag_values_print_like_python_str() {
        let m = parse(
            r#"{"tags": {"s": "x", "i": 1, "f": 1.0, "t": true, "n": null, "b": false}, "metric": "m", "type": "gauge", "value": 1, "timestamp": 1}"#,
        )
        .unwrap();
        let want = [
            Tag::new("s", "x"),
            Tag::new("i", "1"),
            Tag::new("f", "1.0"),
            Tag::new("t", "True"),
            Tag::new("n", "None"),
            Tag::new("b", "False"),
        ];
        assert_eq!(&m.tags[..], &want);
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let m = parse(r#"{"metric": "a", "metric": "b", "type": "gauge", "value": 1, "timestamp": 1, "tags": {"k": "1", "j": "2", "k": "3"}}"#).unwrap();
        assert_eq!(m.name, "b");
        assert_eq!(&m.tags[..], &[Tag::new("k", "3"), Tag::new("j", "2")]);
    }

    #[test]
    fn set_members_are_packed_into_scratch() {
        let m = parse(r#"{"metric": "s", "type": "set", "value": ["Alice", 1, 2.5, "\u00e9", true, null], "timestamp": 1}"#).unwrap();
        let Value::Set(members) = m.value else { panic!() };
        let got: Vec<Member<'_>, 8> = members.iter().collect();
        assert_eq!(
            &got[..],
            &[
                Member::Str("Alice"),
                Member::Num(1.0),
                Member::Num(2.5),
                Member::Str("é"),
                Member::Num(1.0),
                Member::Str("None")
            ]
        );
    }

    #[test]
    fn value_before_type_still_reads_sets() {
        let m = parse(r#"{"value": [], "type": "set", "metric": "s", "timestamp": 1}"#).unwrap();
        assert!(matches!(m.value, Value::Set(s) if s.is_empty()));
    }

    #[test]
    fn refusals_are_distinct() {
        let base = |v: &str| {
            extern crate std;
            std::format!(r#"{{"metric": "m", "type": "count", "value": {v}, "timestamp": 1}}"#)
        };
        assert_eq!(parse(&base("NaN")), Err(ParseError::NonFinite(Field::Value)));
        assert_eq!(parse(&base("1e400")), Err(ParseError::NonFinite(Field::Value)));
        assert_eq!(parse(&base("\"3\"")), Err(ParseError::NonNumericValue));
        assert_eq!(parse(&base("[1]")), Err(ParseError::NonNumericValue));
        let hist = |value: &str| {
            extern crate std;
            std::format!(
                r#"{{"metric": "h", "type": "histogram", "value": {value}, "timestamp": 1, "tags": {{}}}}"#
            )
        };
        let mut scratch = [0u8; 256];
        let input = hist("[1, 2.5, 1e3]");
        let raw = parse_raw_metric(input.as_bytes(), &mut scratch).unwrap();
        let Value::Samples(samples) = raw.value else { panic!("{:?}", raw.value) };
        let got: Vec<Member<'_>, 4> = samples.iter().collect();
        assert_eq!(&got[..], &[Member::Num(1.0), Member::Num(2.5), Member::Num(1000.0)]);
        assert_eq!(parse(&hist("[]")), Err(ParseError::NonNumericValue));
        assert_eq!(parse(&hist(r#"[1, "2"]"#)), Err(ParseError::NonNumericValue));
        assert_eq!(parse(&hist("[1, NaN]")), Err(ParseError::NonFinite(Field::Value)));
        assert_eq!(parse(&base("null")), Err(ParseError::NonNumericValue));
        assert_eq!(parse(&base("true")).unwrap().value, Value::Number(1.0));
        assert_eq!(parse("[1, 2]"), Err(ParseError::NotAnObject));
        assert_eq!(
            parse(r#"{"metric": "m", "type": "set", "value": 1, "timestamp": 1}"#),
            Err(ParseError::SetNotAList)
        );
        assert_eq!(
            parse(r#"{"metric": "m", "type": "set", "value": [[1]], "timestamp": 1}"#),
            Err(ParseError::BadSetMember)
        );
        assert_eq!(
            parse(r#"{"metric": "m", "type": "timer", "value": 1, "timestamp": 1}"#),
            Err(ParseError::UnknownType)
        );
        assert_eq!(
            parse(r#"{"metric": "m", "type": "count", "value": 1, "timestamp": -1}"#),
            Err(ParseError::NegativeTimestamp)
        );
        assert_eq!(
            parse(r#"{"metric": "m", "type": "count", "value": 1, "timestamp": Infinity}"#),
            Err(ParseError::NonFinite(Field::Timestamp))
        );
        assert_eq!(
            parse(r#"{"metric": "m", "type": "count", "value": 1, "timestamp": "1"}"#),
            Err(ParseError::WrongFieldType(Field::Timestamp))
        );
        assert_eq!(
            parse(r#"{"metric": "", "type": "count", "value": 1, "timestamp": 1}"#),
            Err(ParseError::EmptyName)
        );
        assert_eq!(
            parse(r#"{"metric": "m", "type": "count", "value": 1, "timestamp": 1, "tags": {"k": []}}"#),
            Err(ParseError::BadTag)
        );
        assert_eq!(
            parse(r#"{"metric": "m", "type": "count", "value": 1, "timestamp": 1, "tags": ["a"]}"#),
            Err(ParseError::WrongFieldType(Field::Tags))
        );
        assert_eq!(
            parse(r#"{"metric": "m", "type": "count", "value": 1, "timestamp": 1} x"#),
            Err(ParseError::TrailingData { offset: 61 })
        );
    }

    #[test]
    fn scratch_too_small_says_what_suffices() {
        let input = br#"{"metric": "caf\u00e9", "type": "count", "value": 1, "timestamp": 1}"#;
        let mut scratch = [0u8; 2];
        assert_eq!(
            parse_raw_metric(input, &mut scratch),
            Err(ParseError::ScratchTooSmall { required: raw_scratch_len(input.len()) })
        );
        let plain = br#"{"metric": "m", "type": "count", "value": 1, "timestamp": 1}"#;
        assert!(parse_raw_metric(plain, &mut []).is_ok());
    }
}
