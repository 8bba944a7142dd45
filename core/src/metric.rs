//! The metric model: what one sample is, independent of where it came from (a raw Redis record,
//! the Rust client, a serial frame) and of where it goes.

use core::fmt;

/// Seconds since the Unix epoch, as a float, as the original Python client writes them.
///
/// The core never reads a clock: every `now` is handed in by the caller.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Timestamp(pub f64);

impl Timestamp {
    /// A timestamp from float Unix seconds.
    pub const fn from_secs_f64(secs: f64) -> Self {
        Timestamp(secs)
    }

    /// Float Unix seconds.
    pub const fn as_secs_f64(self) -> f64 {
        self.0
    }
}

/// The kind of a metric sample, as the original client's `type` field names it.
///
/// Serialized (the serial link's [`Define`](crate::link::message::Define)) as its variant index:
/// 0 count, 1 gauge, 2 rate, 3 histogram, 4 set, 5 distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MetricType {
    /// A number of events in the interval; flushed as their sum.
    Count,
    /// A level; flushed as the latest value in the interval.
    Gauge,
    /// Events per second; flushed as the sum divided by the interval.
    Rate,
    /// A distribution of values summarised on the agent (avg, count, max, median, percentiles).
    Histogram,
    /// Distinct members; flushed as their number.
    Set,
    /// Like a histogram, summarised with the same sketch (the original dropped these).
    Distribution,
}

impl MetricType {
    /// Every type, in a fixed order.
    pub const ALL: [MetricType; 6] = [
        MetricType::Count,
        MetricType::Gauge,
        MetricType::Rate,
        MetricType::Histogram,
        MetricType::Set,
        MetricType::Distribution,
    ];

    /// Parses the `type` field of a raw record (exact, lower-case, as the client writes it).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "count" => MetricType::Count,
            "gauge" => MetricType::Gauge,
            "rate" => MetricType::Rate,
            "histogram" => MetricType::Histogram,
            "set" => MetricType::Set,
            "distribution" => MetricType::Distribution,
            _ => return None,
        })
    }

    /// The name written in the `type` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricType::Count => "count",
            MetricType::Gauge => "gauge",
            MetricType::Rate => "rate",
            MetricType::Histogram => "histogram",
            MetricType::Set => "set",
            MetricType::Distribution => "distribution",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tag. `value` is `None` for a bare tag (`"env"`, no colon). Written as `key:value`.
///
/// A raw record's tag object `{"k": v}` gives `key = "k"` and `value` = `v` as Python's `str()`
/// would print it (`"True"`, `"None"`, the number's text), so series keep their original names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag<'a> {
    /// Everything before the first colon.
    pub key: &'a str,
    /// Everything after the first colon, if there is one.
    pub value: Option<&'a str>,
}

impl<'a> Tag<'a> {
    /// A `key:value` tag.
    pub const fn new(key: &'a str, value: &'a str) -> Self {
        Tag { key, value: Some(value) }
    }

    /// Splits `key:value` at the first colon, as Datadog does; no colon gives a bare tag.
    pub fn parse(text: &'a str) -> Self {
        match text.split_once(':') {
            Some((key, value)) => Tag { key, value: Some(value) },
            None => Tag { key: text, value: None },
        }
    }

    /// Length of the written form (`key:value` or `key`), in bytes.
    pub fn encoded_len(&self) -> usize {
        self.key.len() + self.value.map_or(0, |v| v.len() + 1)
    }
}

impl fmt::Display for Tag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key)?;
        if let Some(value) = self.value {
            f.write_str(":")?;
            f.write_str(value)?;
        }
        Ok(())
    }
}

/// One member of a set sample: a string or a number.
///
/// Numbers compare by value, as in Python (`1` and `1.0` are one member); strings by content;
/// a string never equals a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Member<'a> {
    /// A string member.
    Str(&'a str),
    /// A numeric member.
    Num(f64),
}

/// The members of one set sample, without copying them.
///
/// Built from a slice by API users, or by the raw-record parser in its packed form:
/// a sequence of entries, each `b'S'`, a `u16` little-endian byte length and the UTF-8 bytes of a
/// string member, or `b'N'`, a `u8` length and the JSON text of a number member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetMembers<'a>(MembersRepr<'a>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum MembersRepr<'a> {
    Slice(&'a [Member<'a>]),
    Packed(&'a [u8]),
}

impl<'a> SetMembers<'a> {
    /// Members given as a slice.
    pub const fn from_slice(members: &'a [Member<'a>]) -> Self {
        SetMembers(MembersRepr::Slice(members))
    }

    /// Members in the packed form described on the type. Malformed packed bytes end the
    /// iteration early; the parser in `wire` only produces well-formed ones.
    pub const fn from_packed(packed: &'a [u8]) -> Self {
        SetMembers(MembersRepr::Packed(packed))
    }

    /// The members, in the order given (duplicates included).
    #[inline]
    pub fn iter(&self) -> MembersIter<'a> {
        MembersIter(self.0)
    }

    /// The number of members given (duplicates included).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no member was given.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// Iterator over [`SetMembers`].
#[derive(Debug, Clone)]
pub struct MembersIter<'a>(MembersRepr<'a>);

impl<'a> Iterator for MembersIter<'a> {
    type Item = Member<'a>;

    #[inline]
    fn next(&mut self) -> Option<Member<'a>> {
        match &mut self.0 {
            MembersRepr::Slice(slice) => {
                let (first, rest) = slice.split_first()?;
                *slice = rest;
                Some(*first)
            }
            MembersRepr::Packed(bytes) => {
                let (member, rest) = next_packed(bytes)?;
                *bytes = rest;
                Some(member)
            }
        }
    }
}

fn next_packed(bytes: &[u8]) -> Option<(Member<'_>, &[u8])> {
    match *bytes.first()? {
        b'S' => {
            let len = u16::from_le_bytes([*bytes.get(1)?, *bytes.get(2)?]) as usize;
            let text = bytes.get(3..3 + len)?;
            let text = core::str::from_utf8(text).ok()?;
            Some((Member::Str(text), &bytes[3 + len..]))
        }
        b'N' => {
            let len = *bytes.get(1)? as usize;
            let text = bytes.get(2..2 + len)?;
            let value = core::str::from_utf8(text).ok()?.parse::<f64>().ok()?;
            Some((Member::Num(value), &bytes[2 + len..]))
        }
        _ => None,
    }
}

/// Appends one member to a packed buffer (see [`SetMembers`]); returns the bytes written, or
/// `None` if `out` is too small or the member cannot be packed (a string over 65535 bytes, a
/// number text over 255 bytes).
pub fn pack_member(member_kind: PackedKind, text: &[u8], out: &mut [u8]) -> Option<usize> {
    match member_kind {
        PackedKind::Str => {
            let len = u16::try_from(text.len()).ok()?;
            let total = 3 + text.len();
            let out = out.get_mut(..total)?;
            out[0] = b'S';
            out[1..3].copy_from_slice(&len.to_le_bytes());
            out[3..].copy_from_slice(text);
            Some(total)
        }
        PackedKind::Num => {
            let len = u8::try_from(text.len()).ok()?;
            let total = 2 + text.len();
            let out = out.get_mut(..total)?;
            out[0] = b'N';
            out[1] = len;
            out[2..].copy_from_slice(text);
            Some(total)
        }
    }
}

/// Which kind of member [`pack_member`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedKind {
    /// UTF-8 string bytes.
    Str,
    /// The JSON text of a number.
    Num,
}

/// The value of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A number, for every type but `set`.
    Number(f64),
    /// The members of a `set` sample.
    Set(SetMembers<'a>),
    /// Several numeric samples at once, for `histogram` and `distribution` only (every member a
    /// number): the record shape of the aggregating client (`"value": [v1, v2, ...]`), which
    /// writes one record per series per interval instead of one per call.
    Samples(SetMembers<'a>),
}

/// One metric sample, borrowed from wherever it was read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// The metric name.
    pub name: &'a str,
    /// The metric type.
    pub kind: MetricType,
    /// Tags in any order; duplicates are allowed and collapse.
    pub tags: &'a [Tag<'a>],
    /// The value.
    pub value: Value<'a>,
    /// When it was measured.
    pub timestamp: Timestamp,
}

/// The type of an aggregated point, as Datadog's v1 series API and the wrapped queue name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputType {
    /// `count`: a sum over `interval` seconds.
    Count,
    /// `gauge`: a level.
    Gauge,
    /// `rate`: per second, over `interval` seconds.
    Rate,
}

impl OutputType {
    /// Parses the `type` field of a wrapped record or series entry.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "count" => OutputType::Count,
            "gauge" => OutputType::Gauge,
            "rate" => OutputType::Rate,
            _ => return None,
        })
    }

    /// The name written in the `type` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutputType::Count => "count",
            OutputType::Gauge => "gauge",
            OutputType::Rate => "rate",
        }
    }
}

/// A metric name as written: `base`, or `base.suffix` (`req.latency` + `95percentile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricName<'a> {
    /// The name the sample was recorded under.
    pub base: &'a str,
    /// The aggregate's suffix, joined with a dot.
    pub suffix: Option<&'a str>,
}

impl<'a> MetricName<'a> {
    /// A name without suffix.
    pub const fn plain(base: &'a str) -> Self {
        MetricName { base, suffix: None }
    }

    /// Length of the written name, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.base.len() + self.suffix.map_or(0, |s| s.len() + 1)
    }
}

impl fmt::Display for MetricName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base)?;
        if let Some(suffix) = self.suffix {
            f.write_str(".")?;
            f.write_str(suffix)?;
        }
        Ok(())
    }
}

/// One aggregated ("wrapped") point, ready for the wrapped queue or a Datadog series payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wrapped<'a> {
    /// The metric name.
    pub name: MetricName<'a>,
    /// The point type.
    pub kind: OutputType,
    /// Tags, sorted and without duplicates when they come from the aggregator.
    pub tags: &'a [Tag<'a>],
    /// The point's timestamp (the start of its flush bucket, for aggregated points).
    pub timestamp: Timestamp,
    /// The point's value.
    pub value: f64,
    /// The interval in seconds, for `count` and `rate` points.
    pub interval: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_type_round_trips_through_its_name() {
        for kind in MetricType::ALL {
            assert_eq!(MetricType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(MetricType::parse("Count"), None);
        assert_eq!(MetricType::parse("timer"), None);
    }

    #[test]
    fn tag_splits_at_the_first_colon() {
        assert_eq!(Tag::parse("env:staging:east"), Tag::new("env", "staging:east"));
        assert_eq!(Tag::parse("bare"), Tag { key: "bare", value: None });
        assert_eq!(Tag::parse("env:staging:east").encoded_len(), 16);
    }

    #[test]
    fn packed_members_iterate_in_order() {
        let mut buf = [0u8; 64];
        let mut at = 0;
        at += pack_member(PackedKind::Str, b"Alice", &mut buf[at..]).unwrap();
        at += pack_member(PackedKind::Num, b"1.5e1", &mut buf[at..]).unwrap();
        at += pack_member(PackedKind::Str, b"", &mut buf[at..]).unwrap();
        let members = SetMembers::from_packed(&buf[..at]);
        let got: heapless::Vec<Member<'_>, 4> = members.iter().collect();
        assert_eq!(&got[..], &[Member::Str("Alice"), Member::Num(15.0), Member::Str("")]);
        assert_eq!(members.len(), 3);
    }

    #[test]
    fn truncated_packed_members_stop_early() {
        let members = SetMembers::from_packed(b"S\x05\x00Al");
        assert!(members.is_empty());
    }
}
