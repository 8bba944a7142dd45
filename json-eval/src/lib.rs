//! Issue 14's prototype: the core's record parsers (`wire::raw`, `wire::wrapped`, `wire::log`)
//! rebuilt on serde derive + serde-json-core 0.7, giving the same borrowed structs where
//! serde-json-core can express the record, and saying where it cannot.
//!
//! What serde-json-core allows, and what that costs here:
//! - No `deserialize_any`: a field whose JSON type varies cannot be one serde type. A raw
//!   record's `value` (a number, or a list for sets and multi-sample histograms) is read by trying
//!   up to three derived structs in turn (`f64`, then a list of `f64`, then a list of strings),
//!   each parse starting over from the first byte. A list mixing strings and numbers (a set the
//!   Python client writes from `{"Alice", 3}`) fits none of them and is refused.
//! - Scalars other than strings keep no text: `deserialize_ignored_any` (the only way to accept
//!   "any" value) reports a number, `true` or `false` as a bare unit. A tag value `1`, `1.0` or
//!   `true` (which the core keeps as Python's `str()` of it: `1`, `1.0`, `True`) is refused.
//! - `null` read as an `f64` is NaN, `true` read as an `f64` is an error: refusals move between
//!   reasons (the core's `non_numeric_value` becomes `non_finite`).
//! - Strings: a `&'a str` field fails on any escape once an unescape buffer is given (serde-json-core
//!   then hands the field a transient string), and the buffer is reused for every string. So every
//!   string is read as [`EscapedStr`] (borrowed, escapes as written) and decoded here into the
//!   caller's scratch with serde-json-core's own unescaper (`EscapedStr::fragments`), which refuses
//!   UTF-16 surrogate pairs (`\ud83e\udd89`, how Python's `json.dumps` writes every character
//!   outside the BMP, such as an emoji).
//! - Errors carry no byte offset and no field; missing and repeated fields are one
//!   `CustomError` (derive refuses a repeated key, where Python and the core keep the last).
//! - A log record is kept verbatim, field by field (each value's JSON text), so the logs sender
//!   can write it back unchanged: serde-json-core has no raw-value type and hides its position, so
//!   [`parse_log`] reads only `date` and `ddtags` and cannot feed `encode_log_for_intake`.
//! - Lists need a capacity in the type (`heapless::Vec<_, N>`): [`MAX_LIST`] values per record
//!   (the core's scanner packs set members into the scratch, with no count limit).

#![no_std]

pub mod inputs;

use chouette_core::limits::{MAX_NAME_BYTES, MAX_TAGS, MAX_TAG_BYTES};
#[cfg(not(feature = "refuse-numeric-members"))]
use chouette_core::metric::{pack_member, PackedKind};
use chouette_core::wire::json::Arena;
use chouette_core::wire::log::parse_log_date;
use chouette_core::wire::raw::{raw_scratch_len, RawMetric};
use chouette_core::wire::wrapped::MAX_POINTS;
#[cfg(not(feature = "refuse-numeric-members"))]
use chouette_core::wire::write::Writer;
use chouette_core::wire::{Field, ParseError};
use chouette_core::{MetricType, OutputType, SetMembers, Tag, Timestamp, Value};
use heapless::Vec;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json_core::de::{from_slice, Error as JsonError};
use serde_json_core::str::{EscapedStr, EscapedStringFragment};

/// Most values in one record's list (set members, histogram samples) serde can hold: a list
/// needs a fixed capacity in its type.
pub const MAX_LIST: usize = 64;

/// Why the prototype refused a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SerdeError {
    /// serde-json-core's error: no byte offset, no field name.
    Json(JsonError),
    /// A string serde-json-core's unescaper refuses (a UTF-16 surrogate pair, `\ud83e\udd89`).
    Unescape,
    /// A shape serde-json-core cannot express (the text of a number or a boolean).
    Unsupported(&'static str),
    /// Past the deserializer: refused by the same checks the core makes after parsing.
    Record(ParseError),
}

impl From<ParseError> for SerdeError {
    fn from(e: ParseError) -> Self {
        SerdeError::Record(e)
    }
}

/// Decodes `s` into the arena with serde-json-core's unescaper; borrows when there is no escape.
fn decode<'a>(
    s: EscapedStr<'a>,
    arena: &mut Arena<'a>,
    too_small: ParseError,
) -> Result<&'a str, SerdeError> {
    if !s.0.as_bytes().contains(&b'\\') {
        return Ok(s.0);
    }
    let free = arena.free();
    let mut n = 0;
    for fragment in s.fragments() {
        let mut buf = [0u8; 4];
        let bytes = match fragment.map_err(|_| SerdeError::Unescape)? {
            EscapedStringFragment::NotEscaped(text) => text.as_bytes(),
            EscapedStringFragment::Escaped(c) => c.encode_utf8(&mut buf).as_bytes(),
        };
        free.get_mut(n..n + bytes.len()).ok_or(too_small)?.copy_from_slice(bytes);
        n += bytes.len();
    }
    let out: &'a [u8] = arena.alloc(n).ok_or(too_small)?;
    core::str::from_utf8(out).map_err(|_| SerdeError::Unescape)
}

// ---------------------------------------------------------------------------------------------
// Raw records.

/// A tag value: a string, `null`, or a scalar whose text serde-json-core does not give.
#[derive(Debug, Clone, Copy)]
enum TagValue<'a> {
    Str(EscapedStr<'a>),
    Null,
    TextLost,
    Container,
}

impl<'de: 'a, 'a> Deserialize<'de> for TagValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Outer;
        struct Inner;
        impl<'de> Visitor<'de> for Inner {
            type Value = TagValue<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a tag value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(TagValue::Str(EscapedStr(s)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(TagValue::TextLost)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TagValue::Container)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TagValue::Container)
            }
        }
        impl<'de> Visitor<'de> for Outer {
            type Value = TagValue<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a tag value")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(TagValue::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                // The only entry point that accepts strings, lists, objects and other scalars alike.
                d.deserialize_ignored_any(Inner)
            }
        }
        d.deserialize_option(Outer)
    }
}

/// A raw record's `tags` object, in order, a repeated key keeping its first position and its last
/// value (as a Python dict); `overflow` when there were more than [`MAX_TAGS`].
#[derive(Debug, Default)]
struct Tags<'a> {
    tags: Vec<(EscapedStr<'a>, TagValue<'a>), MAX_TAGS>,
    overflow: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for Tags<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tags<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a tags object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Tags::default();
                // Keys as `&str`: an `EscapedStr` key reaches `unreachable!()` in serde-json-core's
                // map-key deserializer (a panic). Without an unescape buffer, the text as written.
                while let Some(key) = map.next_key::<&'de str>()? {
                    let key = EscapedStr(key);
                    let value = map.next_value::<TagValue<'de>>()?;
                    if let Some(existing) = out.tags.iter_mut().find(|(k, _)| k.0 == key.0) {
                        existing.1 = value;
                    } else if out.tags.push((key, value)).is_err() {
                        out.overflow = true;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// The raw record, its `value` as `V` (one derived struct per shape the value can take).
#[derive(Deserialize)]
struct RawDe<'a, V> {
    #[serde(borrow)]
    metric: EscapedStr<'a>,
    #[serde(rename = "type", borrow)]
    kind: EscapedStr<'a>,
    value: V,
    timestamp: f64,
    #[serde(default, borrow)]
    tags: Option<Tags<'a>>,
}

// A list read through serde lives in a fixed-capacity `Vec` on the stack (1 KiB for 64 strings),
// where the scanner packs members straight into the caller's scratch: part of what is measured.
#[allow(clippy::large_enum_variant)]
enum Seen<'a> {
    Number(f64),
    Numbers(Vec<f64, MAX_LIST>),
    Strings(Vec<EscapedStr<'a>, MAX_LIST>),
}

/// Parses one raw-metric record with serde-json-core (see the crate docs for what it cannot read).
pub fn parse_raw<'a>(input: &'a [u8], scratch: &'a mut [u8]) -> Result<RawMetric<'a>, SerdeError> {
    match from_slice::<RawDe<'a, f64>>(input) {
        Ok((de, _)) => {
            finish_raw(de.metric, de.kind, Seen::Number(de.value), de.timestamp, de.tags, scratch, input)
        }
        // The value may be a list: read the whole record again, then a third time.
        Err(first @ (JsonError::InvalidNumber | JsonError::InvalidType)) => {
            if let Ok((de, _)) = from_slice::<RawDe<'a, Vec<f64, MAX_LIST>>>(input) {
                return finish_raw(
                    de.metric,
                    de.kind,
                    Seen::Numbers(de.value),
                    de.timestamp,
                    de.tags,
                    scratch,
                    input,
                );
            }
            match from_slice::<RawDe<'a, Vec<EscapedStr<'a>, MAX_LIST>>>(input) {
                Ok((de, _)) => finish_raw(
                    de.metric,
                    de.kind,
                    Seen::Strings(de.value),
                    de.timestamp,
                    de.tags,
                    scratch,
                    input,
                ),
                Err(_) => Err(SerdeError::Json(first)),
            }
        }
        Err(e) => Err(SerdeError::Json(e)),
    }
}

fn finish_raw<'a>(
    metric: EscapedStr<'a>,
    kind: EscapedStr<'a>,
    value: Seen<'a>,
    timestamp: f64,
    tags: Option<Tags<'a>>,
    scratch: &'a mut [u8],
    input: &[u8],
) -> Result<RawMetric<'a>, SerdeError> {
    let too_small = ParseError::ScratchTooSmall { required: raw_scratch_len(input.len()) };
    let mut arena = Arena::new(scratch);
    let name = decode(metric, &mut arena, too_small)?;
    let mut buf = [0u8; 16];
    let kind = {
        let mut small = Arena::new(&mut buf);
        let text = decode(kind, &mut small, ParseError::UnknownType)?;
        MetricType::parse(text).ok_or(ParseError::UnknownType)?
    };
    let mut out_tags: Vec<Tag<'a>, MAX_TAGS> = Vec::new();
    if let Some(tags) = tags {
        if tags.overflow {
            return Err(ParseError::TooManyTags.into());
        }
        for (key, value) in tags.tags {
            let key = decode(key, &mut arena, too_small)?;
            let value = match value {
                TagValue::Str(s) => decode(s, &mut arena, too_small)?,
                TagValue::Null => "None",
                TagValue::TextLost => return Err(SerdeError::Unsupported("number or bool tag value")),
                TagValue::Container => return Err(ParseError::BadTag.into()),
            };
            let tag = Tag::new(key, value);
            let len = tag.encoded_len() - 1;
            if len > MAX_TAG_BYTES {
                return Err(ParseError::TagTooLong { len }.into());
            }
            let _ = out_tags.push(tag);
        }
    }
    if name.is_empty() {
        return Err(ParseError::EmptyName.into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ParseError::NameTooLong { len: name.len() }.into());
    }
    if !timestamp.is_finite() {
        return Err(ParseError::NonFinite(Field::Timestamp).into());
    }
    if timestamp < 0.0 {
        return Err(ParseError::NegativeTimestamp.into());
    }
    let value = match (kind, value) {
        (MetricType::Set, Seen::Number(_)) => return Err(ParseError::SetNotAList.into()),
        (_, Seen::Number(v)) if !v.is_finite() => return Err(ParseError::NonFinite(Field::Value).into()),
        (_, Seen::Number(v)) => Value::Number(v),
        (MetricType::Set, Seen::Numbers(list)) => Value::Set(pack_numbers(&list, &mut arena, too_small)?),
        (MetricType::Histogram | MetricType::Distribution, Seen::Numbers(list)) => {
            if list.is_empty() {
                return Err(ParseError::NonNumericValue.into());
            }
            Value::Samples(pack_numbers(&list, &mut arena, too_small)?)
        }
        (MetricType::Set, Seen::Strings(list)) => {
            let free = arena.free();
            let mut at = 0;
            for s in list {
                // Decoded in place after the 3-byte header, which is written once the length is known.
                let out = free.get_mut(at..).ok_or(too_small)?;
                let body = out.get_mut(3..).ok_or(too_small)?;
                let n = decode_into(s, body, too_small)?;
                let len = u16::try_from(n).map_err(|_| ParseError::BadSetMember)?;
                out[0] = b'S';
                out[1..3].copy_from_slice(&len.to_le_bytes());
                at += 3 + n;
            }
            let packed: &'a [u8] = arena.alloc(at).ok_or(too_small)?;
            Value::Set(SetMembers::from_packed(packed))
        }
        (_, Seen::Numbers(_) | Seen::Strings(_)) => return Err(ParseError::NonNumericValue.into()),
    };
    Ok(RawMetric { name, kind, tags: out_tags, value, timestamp: Timestamp(timestamp) })
}

fn decode_into(s: EscapedStr<'_>, out: &mut [u8], too_small: ParseError) -> Result<usize, SerdeError> {
    let mut n = 0;
    for fragment in s.fragments() {
        let mut buf = [0u8; 4];
        let bytes = match fragment.map_err(|_| SerdeError::Unescape)? {
            EscapedStringFragment::NotEscaped(text) => text.as_bytes(),
            EscapedStringFragment::Escaped(c) => c.encode_utf8(&mut buf).as_bytes(),
        };
        out.get_mut(n..n + bytes.len()).ok_or(too_small)?.copy_from_slice(bytes);
        n += bytes.len();
    }
    Ok(n)
}

/// Packs numbers as set members (their text is gone: written back as Python's `repr`).
#[cfg(not(feature = "refuse-numeric-members"))]
fn pack_numbers<'a>(
    list: &[f64],
    arena: &mut Arena<'a>,
    too_small: ParseError,
) -> Result<SetMembers<'a>, SerdeError> {
    let free = arena.free();
    let mut at = 0;
    for &v in list {
        if !v.is_finite() {
            return Err(ParseError::NonFinite(Field::Value).into());
        }
        let mut text = [0u8; 32];
        let mut w = Writer::new(&mut text);
        w.python_float(v);
        let len = w.finish().map_err(|_| too_small)?;
        at += pack_member(PackedKind::Num, &text[..len], free.get_mut(at..).ok_or(too_small)?)
            .ok_or(too_small)?;
    }
    let packed: &'a [u8] = arena.alloc(at).ok_or(too_small)?;
    Ok(SetMembers::from_packed(packed))
}

/// With `refuse-numeric-members`, lists of numbers are refused rather than re-formatted, so that
/// size.sh can tell the deserializer's own size from that of the float formatting it forces.
#[cfg(feature = "refuse-numeric-members")]
fn pack_numbers<'a>(_: &[f64], _: &mut Arena<'a>, _: ParseError) -> Result<SetMembers<'a>, SerdeError> {
    Err(SerdeError::Unsupported("numeric members (refuse-numeric-members)"))
}

// ---------------------------------------------------------------------------------------------
// Wrapped records.

#[derive(Deserialize)]
struct WrappedDe<'a> {
    #[serde(borrow)]
    metric: EscapedStr<'a>,
    #[serde(default, borrow)]
    tags: Vec<EscapedStr<'a>, MAX_TAGS>,
    points: Vec<(f64, f64), MAX_POINTS>,
    #[serde(rename = "type", borrow)]
    kind: EscapedStr<'a>,
    #[serde(default)]
    interval: Option<f64>,
    #[serde(default, borrow)]
    host: Option<EscapedStr<'a>>,
}

/// A wrapped record as the prototype reads it: what `WrappedRecord`'s accessors give.
#[derive(Debug, Clone, PartialEq)]
pub struct WrappedView<'a> {
    /// `metric`.
    pub name: &'a str,
    /// `type`.
    pub kind: OutputType,
    /// `tags`, split at the first colon.
    pub tags: Vec<Tag<'a>, MAX_TAGS>,
    /// `points`.
    pub points: Vec<(Timestamp, f64), MAX_POINTS>,
    /// `interval`, if present and non-zero.
    pub interval: Option<u32>,
    /// `host`.
    pub host: Option<&'a str>,
}

/// Parses one wrapped record with serde-json-core.
pub fn parse_wrapped<'a>(input: &'a [u8], scratch: &'a mut [u8]) -> Result<WrappedView<'a>, SerdeError> {
    let (de, _) = from_slice::<WrappedDe<'a>>(input).map_err(SerdeError::Json)?;
    let too_small = ParseError::ScratchTooSmall { required: input.len() };
    let mut arena = Arena::new(scratch);
    let name = decode(de.metric, &mut arena, too_small)?;
    let mut buf = [0u8; 8];
    let kind = {
        let mut small = Arena::new(&mut buf);
        let text = decode(de.kind, &mut small, ParseError::UnknownType)?;
        OutputType::parse(text).ok_or(ParseError::UnknownType)?
    };
    let mut tags: Vec<Tag<'a>, MAX_TAGS> = Vec::new();
    for s in de.tags {
        let text = decode(s, &mut arena, too_small)?;
        let tag = Tag::parse(text);
        let len = text.len() - usize::from(tag.value.is_some());
        if len > MAX_TAG_BYTES {
            return Err(ParseError::TagTooLong { len }.into());
        }
        let _ = tags.push(tag);
    }
    let mut points: Vec<(Timestamp, f64), MAX_POINTS> = Vec::new();
    for (ts, value) in de.points {
        if !ts.is_finite() || !value.is_finite() {
            return Err(ParseError::NonFinite(Field::Points).into());
        }
        if ts < 0.0 {
            return Err(ParseError::NegativeTimestamp.into());
        }
        let _ = points.push((Timestamp(ts), value));
    }
    if points.is_empty() {
        return Err(ParseError::BadPoint.into());
    }
    let interval = match de.interval {
        None => None,
        Some(v) if !(0.0..=u32::MAX as f64).contains(&v) || v != (v as u32) as f64 => {
            return Err(ParseError::BadInterval.into())
        }
        Some(v) => Some(v as u32).filter(|&i| i != 0),
    };
    let host = match de.host {
        Some(h) => Some(decode(h, &mut arena, too_small)?),
        None => None,
    };
    if name.is_empty() {
        return Err(ParseError::EmptyName.into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ParseError::NameTooLong { len: name.len() }.into());
    }
    Ok(WrappedView { name, kind, tags, points, interval, host })
}

// ---------------------------------------------------------------------------------------------
// Log records: only `date` and `ddtags` (the other fields' text cannot be kept).

/// `ddtags`: `null`, a string (one joined list), or a list of strings.
#[derive(Debug, Default)]
struct DdTags<'a>(Vec<EscapedStr<'a>, MAX_TAGS>);

impl<'de: 'a, 'a> Deserialize<'de> for DdTags<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Outer;
        struct Inner;
        impl<'de> Visitor<'de> for Inner {
            type Value = DdTags<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("ddtags")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                let mut tags = Vec::new();
                if !s.is_empty() {
                    let _ = tags.push(EscapedStr(s));
                }
                Ok(DdTags(tags))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut tags = Vec::new();
                while let Some(s) = seq.next_element::<EscapedStr<'de>>()? {
                    tags.push(s).map_err(|_| de::Error::custom("too many tags"))?;
                }
                Ok(DdTags(tags))
            }
        }
        impl<'de> Visitor<'de> for Outer {
            type Value = DdTags<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("ddtags")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(DdTags::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_ignored_any(Inner)
            }
        }
        d.deserialize_option(Outer)
    }
}

#[derive(Deserialize)]
struct LogDe<'a> {
    #[serde(borrow)]
    date: EscapedStr<'a>,
    #[serde(default, borrow)]
    ddtags: DdTags<'a>,
}

/// What the prototype reads of a log record: the date and the `ddtags` entries (escapes as
/// written), not the fields the logs sender writes back.
#[derive(Debug, Clone, PartialEq)]
pub struct LogView<'a> {
    /// `date`, parsed.
    pub date: Timestamp,
    /// `date` as written.
    pub date_text: &'a str,
    /// `ddtags` entries, escapes as written.
    pub ddtags: Vec<&'a str, MAX_TAGS>,
}

/// Parses a log record's `date` and `ddtags` with serde-json-core.
pub fn parse_log(input: &[u8]) -> Result<LogView<'_>, SerdeError> {
    let (de, _) = from_slice::<LogDe<'_>>(input).map_err(SerdeError::Json)?;
    let mut buf = [0u8; 40];
    let mut small = Arena::new(&mut buf);
    let text = decode(de.date, &mut small, ParseError::BadDate)?;
    let date = parse_log_date(text).ok_or(ParseError::BadDate)?;
    let mut ddtags = Vec::new();
    for s in de.ddtags.0 {
        let _ = ddtags.push(s.0);
    }
    Ok(LogView { date, date_text: de.date.0, ddtags })
}
