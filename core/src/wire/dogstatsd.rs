//! DogStatsD datagrams (protocol 1.0–1.3): metrics, events and service checks, parsed without
//! allocating, and rendered back into caller-provided buffers.
//!
//! A datagram holds messages separated by `\n` (a `\r\n` ending is accepted, a trailing newline
//! too, empty lines are skipped). [`parse_datagram`] yields one [`Line`] per message: its bytes
//! and either a [`Message`] borrowing from them or the [`ParseError`] that refused it, so the
//! caller can count refusals per [`ParseError::reason`] and keep the last bad line.
//!
//! ```text
//! metric   := NAME ":" VALUE (":" VALUE)* "|" TYPE ("|" FIELD)*
//! TYPE     := c | g | ms | h | s | d
//! FIELD    := "@" RATE | "#" TAG ("," TAG)* | "c:" CONTAINER_ID | "T" UNIX_SECONDS | anything else (ignored)
//! event    := "_e{" LEN "," LEN "}:" TITLE "|" TEXT ("|d:" ts | "|h:" host | "|k:" key | "|p:" priority
//!             | "|s:" source | "|t:" alert_type | "|#" tags)*
//! check    := "_sc|" NAME "|" STATUS ("|d:" ts | "|h:" host | "|#" tags)* ["|m:" MESSAGE]
//! ```
//!
//! What it accepts, as the Datadog Agent's `comp/dogstatsd/server/parse.go` does: value packing
//! (`name:1:2:3|h`, empty values skipped as in `21::22`), optional fields in any order, unknown
//! fields (`|e:`, `|card:`, anything else) ignored, tags split at `,` with the key/value split left
//! to the caller ([`Tags::parsed`] splits at the first `:`, so `url:http://x` keeps its colons), a
//! `+` sign on a value read as a plain number (the Agent has no relative gauges: `g:+3` sets 3).
//!
//! What it refuses, each with its own [`ParseError`]: non-UTF-8 lines, an empty name, a missing
//! `:` or `|`, an unknown type, no value at all, a value that is not a number, NaN or ±infinity,
//! a sample rate that is not a number in (0, 1], a `|T` or `d:` timestamp that is not a whole
//! number ≥ 1, event headers whose byte lengths do not match, an empty event title, a service
//! check without a name or with a status other than 0–3.
//!
//! Differences from the Agent, checked against its `parse*.go` (the full table is in
//! `docs/dogstatsd.md`):
//! - A sample rate outside (0, 1] is refused (`bad_sample_rate`), not clamped or used as is.
//! - Empty tags (`#a,,b`, `#`) are skipped rather than kept as empty strings.
//! - An invalid event priority, alert type or `d:` is refused (`bad_priority`, `bad_alert_type`,
//!   `bad_timestamp`); the Agent logs and keeps the event with the default.
//! - Event text and service-check messages are kept as sent: `\\n` stays the two bytes `\` `n`;
//!   [`unescape_newlines`] turns it into a newline, into a buffer.
//! - `m:` in a service check takes the rest of the line, `|` included (the protocol says it comes
//!   last); the Agent splits it at `|` like the other fields.
//! - A packed NaN or infinity refuses its line; the Agent drops that value and keeps the others.
//! - `|T` is parsed on every type; the listener honours it on gauges and counts only.
//!
//! Mapping onto the core's model: [`Kind::metric_type`], [`scaled_count`] (a count at `@0.25`
//! adds 4 times its value) and [`sample_weight`] (a histogram sample at `@0.3` is recorded 3
//! times, as the Agent counts it: `int64(1/rate)`); gauges and sets ignore the rate.

use core::fmt;

use super::write::Writer;
use super::EncodeError;
use crate::metric::{MetricType, Tag};

/// The DogStatsD metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `c`: a count.
    Count,
    /// `g`: a gauge.
    Gauge,
    /// `ms`: a timer, a histogram of durations.
    Timer,
    /// `h`: a histogram.
    Histogram,
    /// `s`: a set (one member per message).
    Set,
    /// `d`: a distribution.
    Distribution,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 6] =
        [Kind::Count, Kind::Gauge, Kind::Timer, Kind::Histogram, Kind::Set, Kind::Distribution];

    /// The type as written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Count => "c",
            Kind::Gauge => "g",
            Kind::Timer => "ms",
            Kind::Histogram => "h",
            Kind::Set => "s",
            Kind::Distribution => "d",
        }
    }

    /// The core's type for this kind: `c` → Count, `g` → Gauge, `ms`/`h` → Histogram,
    /// `s` → Set, `d` → Distribution.
    pub const fn metric_type(self) -> MetricType {
        match self {
            Kind::Count => MetricType::Count,
            Kind::Gauge => MetricType::Gauge,
            Kind::Timer | Kind::Histogram => MetricType::Histogram,
            Kind::Set => MetricType::Set,
            Kind::Distribution => MetricType::Distribution,
        }
    }
}

/// What a count sample adds to its bucket: `value / rate` (`page.views:1|c|@0.25` counts 4),
/// as the Agent's counter does (`value * 1/rate`). No rate means 1.
pub fn scaled_count(value: f64, sample_rate: Option<f64>) -> f64 {
    match sample_rate {
        Some(rate) => value * (1.0 / rate),
        None => value,
    }
}

/// How many times a histogram, timer or distribution sample is recorded: the Agent's
/// `int64(1/rate)`, truncated (`@0.3` weighs 3, `@0.5` weighs 2), at least 1. Gauges and sets
/// ignore the rate.
pub fn sample_weight(sample_rate: Option<f64>) -> u32 {
    match sample_rate {
        Some(rate) => {
            let w = 1.0 / rate;
            if w >= u32::MAX as f64 {
                u32::MAX
            } else if w >= 1.0 {
                w as u32
            } else {
                1
            }
        }
        None => 1,
    }
}

/// Writes `text` into `out` with every `\\n` (backslash, `n`) turned into a newline, as the Agent
/// does for event text; returns the length, or `None` if `out` is shorter than `text`.
pub fn unescape_newlines(text: &str, out: &mut [u8]) -> Option<usize> {
    if out.len() < text.len() {
        return None;
    }
    let bytes = text.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'n') {
            out[n] = b'\n';
            i += 2;
        } else {
            out[n] = bytes[i];
            i += 1;
        }
        n += 1;
    }
    Some(n)
}

/// Why a DogStatsD line was refused. Each variant is one reason the agent counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The metric name (before the first `:`) is empty.
    EmptyName,
    /// No `:` separates the name from the value.
    MissingValue,
    /// No `|` before the type.
    MissingType,
    /// The type is not `c g ms h s d`.
    UnknownType,
    /// Every packed value is empty (`name:|c`, `name::|h`).
    EmptyValue,
    /// A value is not a number.
    BadValue,
    /// A value is NaN or ±infinity.
    NonFinite,
    /// The `@` sample rate is not a number in (0, 1].
    BadSampleRate,
    /// A `|T` or `d:` timestamp is not a whole number ≥ 1.
    BadTimestamp,
    /// An event's `_e{title_len,text_len}:` header is malformed.
    BadEventHeader,
    /// An event's byte lengths do not match its title and text.
    EventLengthMismatch,
    /// An event's title is empty.
    EmptyTitle,
    /// An event's `p:` is not `normal` or `low`.
    BadPriority,
    /// An event's `t:` is not `error`, `warning`, `info` or `success`.
    BadAlertType,
    /// A service check has no name, or no status.
    BadServiceCheck,
    /// A service check's status is not 0, 1, 2 or 3.
    BadStatus,
}

impl ParseError {
    /// Every reason, for zero-filled counters.
    pub const ALL: [ParseError; 17] = [
        ParseError::NotUtf8,
        ParseError::EmptyName,
        ParseError::MissingValue,
        ParseError::MissingType,
        ParseError::UnknownType,
        ParseError::EmptyValue,
        ParseError::BadValue,
        ParseError::NonFinite,
        ParseError::BadSampleRate,
        ParseError::BadTimestamp,
        ParseError::BadEventHeader,
        ParseError::EventLengthMismatch,
        ParseError::EmptyTitle,
        ParseError::BadPriority,
        ParseError::BadAlertType,
        ParseError::BadServiceCheck,
        ParseError::BadStatus,
    ];

    /// A short, stable label for counting refusals (a self-metric tag value).
    pub const fn reason(&self) -> &'static str {
        match self {
            ParseError::NotUtf8 => "not_utf8",
            ParseError::EmptyName => "empty_name",
            ParseError::MissingValue => "missing_value",
            ParseError::MissingType => "missing_type",
            ParseError::UnknownType => "unknown_type",
            ParseError::EmptyValue => "empty_value",
            ParseError::BadValue => "bad_value",
            ParseError::NonFinite => "non_finite",
            ParseError::BadSampleRate => "bad_sample_rate",
            ParseError::BadTimestamp => "bad_timestamp",
            ParseError::BadEventHeader => "bad_event_header",
            ParseError::EventLengthMismatch => "event_length_mismatch",
            ParseError::EmptyTitle => "empty_title",
            ParseError::BadPriority => "bad_priority",
            ParseError::BadAlertType => "bad_alert_type",
            ParseError::BadServiceCheck => "bad_service_check",
            ParseError::BadStatus => "bad_status",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::NotUtf8 => "line is not UTF-8",
            ParseError::EmptyName => "metric name is empty",
            ParseError::MissingValue => "no `:` between name and value",
            ParseError::MissingType => "no `|` before the metric type",
            ParseError::UnknownType => "metric type is not c, g, ms, h, s or d",
            ParseError::EmptyValue => "metric has no value",
            ParseError::BadValue => "value is not a number",
            ParseError::NonFinite => "value is NaN or infinite",
            ParseError::BadSampleRate => "sample rate is not a number in (0, 1]",
            ParseError::BadTimestamp => "timestamp is not a whole number of seconds >= 1",
            ParseError::BadEventHeader => "event header is not `_e{title_len,text_len}:`",
            ParseError::EventLengthMismatch => "event title and text do not match the header's lengths",
            ParseError::EmptyTitle => "event title is empty",
            ParseError::BadPriority => "event priority is not normal or low",
            ParseError::BadAlertType => "event alert type is not error, warning, info or success",
            ParseError::BadServiceCheck => "service check has no name or no status",
            ParseError::BadStatus => "service check status is not 0, 1, 2 or 3",
        })
    }
}

impl core::error::Error for ParseError {}

/// The packed values of a metric message, as sent (`1:2.5:3` of `name:1:2.5:3|h`); iterate with
/// [`Values::iter`]. Two `Values` are equal when they yield the same values.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    raw: &'a str,
    /// The first value, parsed once when the line is, so that the common one-value line is not
    /// parsed again when its values are walked; NaN for a set (numbers are finite).
    first: f64,
    /// Where the packed values after the first (`2.5:3`) start in `raw`, parsed again when
    /// walked; `raw.len()` when none. An offset rather than a `&str`, and the set flag folded
    /// into `first`, keep a metric no bigger than an event: [`Message`] stays 120 bytes.
    rest: usize,
}

/// One value of a metric message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A number (every kind but `s`); finite.
    Number(f64),
    /// A set member, as text.
    Member(&'a str),
}

impl<'a> Values<'a> {
    /// Values from their wire text, for rendering: numbers separated by `:` (`"1:2:3"`), or one
    /// set member when `kind` is [`Kind::Set`]. Checked as the parser checks them.
    pub fn new(raw: &'a str, kind: Kind) -> Result<Self, ParseError> {
        if kind == Kind::Set {
            return if raw.is_empty() {
                Err(ParseError::EmptyValue)
            } else {
                Ok(Values { raw, first: f64::NAN, rest: raw.len() })
            };
        }
        // The first non-empty value (`::1` packs one value), parsed and kept.
        let mut text = raw;
        let (first, rest) = loop {
            let (part, tail) = split_value(text);
            if !part.is_empty() {
                break (parse_number(part)?, tail);
            }
            if tail.is_empty() {
                return Err(ParseError::EmptyValue);
            }
            text = tail;
        };
        // The others are checked here and parsed again by the iterator: packing is rare.
        let mut text = rest;
        while !text.is_empty() {
            let (part, tail) = split_value(text);
            if !part.is_empty() {
                parse_number(part)?;
            }
            text = tail;
        }
        Ok(Values { raw, first, rest: raw.len() - rest.len() })
    }

    /// The text as sent.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The values, in order (empty packed values skipped).
    pub fn iter(&self) -> ValuesIter<'a> {
        let first = if self.is_set() { Value::Member(self.raw) } else { Value::Number(self.first) };
        ValuesIter { first: Some(first), rest: self.raw.get(self.rest..).unwrap_or_default() }
    }

    /// How many values.
    pub fn count(&self) -> usize {
        self.iter().count()
    }

    fn is_set(&self) -> bool {
        self.first.is_nan()
    }
}

/// `1:2:3` → (`1`, `2:3`); the last value → (it, ``). A value ending in `:` (`1:`) leaves an empty
/// rest, which holds no value either: empty values are skipped.
#[inline(always)]
fn split_value(text: &str) -> (&str, &str) {
    match find_byte(text.as_bytes(), b':') {
        // `:` is ASCII: both indices are character boundaries.
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    }
}

impl PartialEq for Values<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.is_set() == other.is_set() && self.iter().eq(other.iter())
    }
}

/// Iterator over [`Values`].
#[derive(Debug, Clone)]
pub struct ValuesIter<'a> {
    /// The first value, parsed when the line was.
    first: Option<Value<'a>>,
    /// The numbers after it, as text.
    rest: &'a str,
}

impl<'a> Iterator for ValuesIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        while !self.rest.is_empty() {
            let (part, tail) = split_value(self.rest);
            self.rest = tail;
            if part.is_empty() {
                continue;
            }
            // Checked at parse time; a value that fails here cannot come from `parse_*`.
            if let Ok(v) = parse_number(part) {
                return Some(Value::Number(v));
            }
        }
        None
    }
}

/// `0x01` in every byte of a word, for the word-at-a-time searches below.
const LOW_BITS: u64 = u64::from_le_bytes([0x01; 8]);
/// `0x80` in every byte of a word.
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// The high bit of every zero byte of `word` set, others clear, exact up to the first zero byte
/// (a borrow can flag a `0x01` byte above a zero byte, never below one): its lowest set bit
/// marks the first zero byte.
#[inline(always)]
const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(LOW_BITS) & !word & HIGH_BITS
}

/// Where `needle` first occurs in `haystack`: [`find_any`] of one byte.
#[inline(always)]
fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    find_any(haystack, [needle])
}

/// Where one of `needles` first occurs in `haystack`, 8 bytes at a time, the last bytes in one
/// more word that overlaps the previous one (lines and tags are short: the standard library's
/// `memchr` spends its time there on set-up and alignment; measured in the agent's `dogstatsd`
/// bench).
#[inline]
fn find_any<const N: usize>(haystack: &[u8], needles: [u8; N]) -> Option<usize> {
    let patterns = needles.map(|n| LOW_BITS * n as u64);
    let hits = |word: &[u8; 8]| {
        let word = u64::from_le_bytes(*word);
        patterns.iter().fold(0, |hits, p| hits | zero_bytes(word ^ p))
    };
    let (words, tail) = haystack.as_chunks::<8>();
    for (i, word) in words.iter().enumerate() {
        let hits = hits(word);
        if hits != 0 {
            return Some(i * 8 + (hits.trailing_zeros() / 8) as usize);
        }
    }
    if tail.is_empty() {
        return None;
    }
    match haystack.last_chunk::<8>() {
        Some(last) => {
            // The bytes before the tail were searched: no zero byte there, so no borrow either.
            let tail_bytes = !0u64 << (8 * (8 - tail.len()));
            let hits = hits(last) & tail_bytes;
            (hits != 0).then(|| haystack.len() - 8 + (hits.trailing_zeros() / 8) as usize)
        }
        None => tail.iter().position(|b| needles.contains(b)),
    }
}

/// Powers of ten that are exact in an f64.
const POW10: [f64; 16] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];

#[inline]
fn parse_number(text: &str) -> Result<f64, ParseError> {
    // Fast path (Clinger's): `[-]digits[.digits]` with at most 15 digits in all. The digits form
    // an integer below 2^53 and the divisor a power of ten, both exact, so one correctly rounded
    // division gives the same f64 as the full parser.
    let b = text.as_bytes();
    let (negative, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if !digits.is_empty() && digits.len() <= 16 {
        let mut n: u64 = 0;
        let mut count = 0usize;
        let mut frac: Option<usize> = None;
        let mut simple = true;
        for (i, &d) in digits.iter().enumerate() {
            if d.is_ascii_digit() {
                n = n * 10 + (d - b'0') as u64;
                count += 1;
            } else if d == b'.' && frac.is_none() && i > 0 && i + 1 < digits.len() {
                frac = Some(digits.len() - i - 1);
            } else {
                simple = false;
                break;
            }
        }
        if simple && count <= 15 {
            let v = n as f64 / POW10[frac.unwrap_or(0)];
            return Ok(if negative { -v } else { v });
        }
    }
    let v: f64 = text.parse().map_err(|_| ParseError::BadValue)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ParseError::NonFinite)
    }
}

/// Tags as sent, `,`-separated, without the `#` (`env:prod,canary`); iterate with [`Tags::iter`].
/// Empty tags are skipped. Two `Tags` are equal when they yield the same tags in the same order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tags<'a> {
    raw: &'a str,
}

impl<'a> Tags<'a> {
    /// Tags from their wire text (`"env:prod,canary"`).
    pub const fn new(raw: &'a str) -> Self {
        Tags { raw }
    }

    /// No tags.
    pub const EMPTY: Tags<'static> = Tags { raw: "" };

    /// The text as sent.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The tags, in order, empty ones skipped.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + Clone {
        TagsIter { rest: self.raw }
    }

    /// The tags split at their first `:` into key and value, as Datadog does (`url:http://x:80`
    /// is the key `url` and the value `http://x:80`; `canary` is a bare tag).
    pub fn parsed(&self) -> impl Iterator<Item = Tag<'a>> + Clone {
        self.iter().map(Tag::parse)
    }

    /// Whether there is no tag.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl PartialEq for Tags<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Tags<'_> {}

/// Iterator over [`Tags`]: split at `,`, empty tags skipped (what `split(',').filter(..)` does,
/// in a loop the agent can afford three times a line).
#[derive(Debug, Clone)]
struct TagsIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for TagsIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while !self.rest.is_empty() {
            let (tag, rest) = match find_byte(self.rest.as_bytes(), b',') {
                // `,` is ASCII: both indices are character boundaries.
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, ""),
            };
            self.rest = rest;
            if !tag.is_empty() {
                return Some(tag);
            }
        }
        None
    }

    /// Counted here, in one loop, rather than by calling `next` per tag from the caller (the
    /// agent counts a line's tags to check them against the core's limit).
    fn count(self) -> usize {
        let b = self.rest.as_bytes();
        let (mut count, mut start) = (0, 0);
        while start < b.len() {
            let end = find_byte(&b[start..], b',').map_or(b.len(), |i| start + i);
            count += usize::from(end > start);
            start = end + 1;
        }
        count
    }
}

/// An event's priority (`p:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// `normal`.
    Normal,
    /// `low`.
    Low,
}

impl Priority {
    /// As written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// An event's alert type (`t:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertType {
    /// `error`.
    Error,
    /// `warning`.
    Warning,
    /// `info`.
    Info,
    /// `success`.
    Success,
}

impl AlertType {
    /// As written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertType::Error => "error",
            AlertType::Warning => "warning",
            AlertType::Info => "info",
            AlertType::Success => "success",
        }
    }
}

/// A service check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0.
    Ok,
    /// 1.
    Warning,
    /// 2.
    Critical,
    /// 3.
    Unknown,
}

impl Status {
    /// The number on the wire (and in Datadog's `check_run` API).
    pub const fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }
}

/// One parsed DogStatsD message, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Message<'a> {
    /// `name:value[:value...]|type|...`
    Metric {
        /// The metric name.
        name: &'a str,
        /// The values (at least one).
        values: Values<'a>,
        /// The type.
        kind: Kind,
        /// `@rate`, in (0, 1].
        sample_rate: Option<f64>,
        /// `#tags`.
        tags: Tags<'a>,
        /// `c:` container id (protocol 1.2).
        container_id: Option<&'a str>,
        /// `T` unix seconds (protocol 1.3), ≥ 1.
        timestamp: Option<u64>,
    },
    /// `_e{len,len}:title|text|...`
    Event {
        /// The title (not empty).
        title: &'a str,
        /// The text, `\\n` kept as sent (see [`unescape_newlines`]).
        text: &'a str,
        /// `d:` unix seconds.
        timestamp: Option<u64>,
        /// `h:`.
        hostname: Option<&'a str>,
        /// `k:`.
        aggregation_key: Option<&'a str>,
        /// `p:`.
        priority: Option<Priority>,
        /// `s:`.
        source_type_name: Option<&'a str>,
        /// `t:`.
        alert_type: Option<AlertType>,
        /// `#tags`.
        tags: Tags<'a>,
    },
    /// `_sc|name|status|...`
    ServiceCheck {
        /// The check name (not empty).
        name: &'a str,
        /// The status.
        status: Status,
        /// `d:` unix seconds.
        timestamp: Option<u64>,
        /// `h:`.
        hostname: Option<&'a str>,
        /// `#tags`.
        tags: Tags<'a>,
        /// `m:`, the rest of the line.
        message: Option<&'a str>,
    },
}

/// One line of a datagram: its bytes (without the line ending) and what it parsed to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line<'a> {
    /// The line as received.
    pub bytes: &'a [u8],
    /// The message, or why it was refused.
    pub result: Result<Message<'a>, ParseError>,
}

/// The lines of a datagram, empty lines skipped. Allocates nothing.
pub fn parse_datagram(datagram: &[u8]) -> Lines<'_> {
    // One UTF-8 check for the whole datagram (the common case) rather than one a line: `\n` and
    // `\r` are ASCII, so every line of a valid datagram is valid.
    let rest = match core::str::from_utf8(datagram) {
        Ok(text) => Rest::Text(text),
        Err(_) => Rest::Bytes(datagram),
    };
    Lines { rest }
}

/// Iterator returned by [`parse_datagram`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: Rest<'a>,
}

/// What is left of a datagram.
#[derive(Debug, Clone)]
enum Rest<'a> {
    /// Of a datagram that is valid UTF-8.
    Text(&'a str),
    /// Of one that is not: each line is checked on its own.
    Bytes(&'a [u8]),
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        loop {
            match self.rest {
                Rest::Text(text) => {
                    if text.is_empty() {
                        return None;
                    }
                    let (line, rest) = match find_byte(text.as_bytes(), b'\n') {
                        // `\n` is ASCII: both indices are character boundaries.
                        Some(i) => (&text[..i], &text[i + 1..]),
                        None => (text, ""),
                    };
                    self.rest = Rest::Text(rest);
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    if line.is_empty() {
                        continue;
                    }
                    return Some(Line { bytes: line.as_bytes(), result: parse_text(line) });
                }
                Rest::Bytes(bytes) => {
                    if bytes.is_empty() {
                        return None;
                    }
                    let (mut line, rest) = match find_byte(bytes, b'\n') {
                        Some(i) => (&bytes[..i], &bytes[i + 1..]),
                        None => (bytes, &[][..]),
                    };
                    self.rest = Rest::Bytes(rest);
                    if let [head @ .., b'\r'] = line {
                        line = head;
                    }
                    if line.is_empty() {
                        continue;
                    }
                    return Some(Line { bytes: line, result: parse_message(line) });
                }
            }
        }
    }
}

/// Parses one message (no line ending).
pub fn parse_message(line: &[u8]) -> Result<Message<'_>, ParseError> {
    let line = core::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    parse_text(line)
}

/// [`parse_message`] of a line already known to be text.
#[inline]
fn parse_text(line: &str) -> Result<Message<'_>, ParseError> {
    if line.as_bytes().first() == Some(&b'_') {
        if let Some(rest) = line.strip_prefix("_e{") {
            return parse_event(rest);
        } else if let Some(rest) = line.strip_prefix("_sc|") {
            return parse_service_check(rest);
        }
    }
    parse_metric(line)
}

fn parse_timestamp(text: &str) -> Result<u64, ParseError> {
    match text.parse::<u64>() {
        Ok(t) if t >= 1 => Ok(t),
        _ => Err(ParseError::BadTimestamp),
    }
}

/// A metric line in one pass: the first `:` or `|`, the `|` ending the values, the type read in
/// place, then each field's first byte and the `|` that ends it. Every index below is that of an
/// ASCII byte (or one past it, or the end), so every slice is on character boundaries.
#[inline]
fn parse_metric(line: &str) -> Result<Message<'_>, ParseError> {
    let b = line.as_bytes();
    // As the grammar's `split_once('|')` then `split_once(':')`: no `|` is a missing type if a
    // `:` was seen, else a missing value; a `|` before any `:` is a missing value.
    let colon = match find_any(b, [b':', b'|']) {
        Some(i) if b[i] == b':' => i,
        _ => return Err(ParseError::MissingValue),
    };
    let bar = match find_byte(&b[colon + 1..], b'|') {
        Some(i) => colon + 1 + i,
        None => return Err(ParseError::MissingType),
    };
    if colon == 0 {
        return Err(ParseError::EmptyName);
    }
    let (kind, kind_len) = match &b[bar + 1..] {
        [b'm', b's', ..] => (Kind::Timer, 2),
        [b'c', ..] => (Kind::Count, 1),
        [b'g', ..] => (Kind::Gauge, 1),
        [b'h', ..] => (Kind::Histogram, 1),
        [b's', ..] => (Kind::Set, 1),
        [b'd', ..] => (Kind::Distribution, 1),
        _ => return Err(ParseError::UnknownType),
    };
    // The type ends the line or its field.
    let mut end = bar + 1 + kind_len;
    if end < b.len() && b[end] != b'|' {
        return Err(ParseError::UnknownType);
    }
    let values = Values::new(&line[colon + 1..bar], kind)?;
    let mut sample_rate = None;
    let mut tags = Tags::EMPTY;
    let mut container_id = None;
    let mut timestamp = None;
    // `end` is at a `|` (a field follows, maybe empty) or at the end of the line.
    while end < b.len() {
        let start = end + 1;
        end = match find_byte(&b[start..], b'|') {
            Some(i) => start + i,
            None => b.len(),
        };
        match b.get(start) {
            Some(b'@') => {
                let rate = parse_number(&line[start + 1..end]).map_err(|_| ParseError::BadSampleRate)?;
                if !(rate > 0.0 && rate <= 1.0) {
                    return Err(ParseError::BadSampleRate);
                }
                sample_rate = Some(rate);
            }
            Some(b'#') => tags = Tags::new(&line[start + 1..end]),
            Some(b'T') => timestamp = Some(parse_timestamp(&line[start + 1..end])?),
            Some(b'c') if b.get(start + 1) == Some(&b':') => {
                container_id = Some(&line[start + 2..end]);
            }
            _ => {} // `e:`, `card:` and unknown fields: ignored, as the Agent does.
        }
    }
    Ok(Message::Metric { name: &line[..colon], values, kind, sample_rate, tags, container_id, timestamp })
}

fn parse_len(text: &str) -> Result<usize, ParseError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadEventHeader);
    }
    text.parse().map_err(|_| ParseError::BadEventHeader)
}

fn parse_event(rest: &str) -> Result<Message<'_>, ParseError> {
    let (lens, body) = rest.split_once("}:").ok_or(ParseError::BadEventHeader)?;
    let (title_len, text_len) = lens.split_once(',').ok_or(ParseError::BadEventHeader)?;
    let (title_len, text_len) = (parse_len(title_len)?, parse_len(text_len)?);
    let text_start = title_len.checked_add(1).ok_or(ParseError::EventLengthMismatch)?;
    let text_end = text_start.checked_add(text_len).ok_or(ParseError::EventLengthMismatch)?;
    if body.len() < text_end || body.as_bytes()[title_len] != b'|' {
        return Err(ParseError::EventLengthMismatch);
    }
    let title = body.get(..title_len).ok_or(ParseError::EventLengthMismatch)?;
    let text = body.get(text_start..text_end).ok_or(ParseError::EventLengthMismatch)?;
    let tail = body.get(text_end..).ok_or(ParseError::EventLengthMismatch)?;
    if title.is_empty() {
        return Err(ParseError::EmptyTitle);
    }
    let fields = match tail.strip_prefix('|') {
        Some(f) => f,
        None if tail.is_empty() => "",
        None => return Err(ParseError::EventLengthMismatch),
    };
    let (mut timestamp, mut hostname, mut aggregation_key, mut priority) = (None, None, None, None);
    let (mut source_type_name, mut alert_type, mut tags) = (None, None, Tags::EMPTY);
    if !fields.is_empty() {
        for field in fields.split('|') {
            if let Some(t) = field.strip_prefix('#') {
                tags = Tags::new(t);
                continue;
            }
            let Some((key, value)) = field.split_once(':') else { continue };
            match key {
                "d" => timestamp = Some(parse_timestamp(value)?),
                "h" => hostname = Some(value),
                "k" => aggregation_key = Some(value),
                "p" => {
                    priority = Some(match value {
                        "normal" => Priority::Normal,
                        "low" => Priority::Low,
                        _ => return Err(ParseError::BadPriority),
                    })
                }
                "s" => source_type_name = Some(value),
                "t" => {
                    alert_type = Some(match value {
                        "error" => AlertType::Error,
                        "warning" => AlertType::Warning,
                        "info" => AlertType::Info,
                        "success" => AlertType::Success,
                        _ => return Err(ParseError::BadAlertType),
                    })
                }
                _ => {}
            }
        }
    }
    Ok(Message::Event {
        title,
        text,
        timestamp,
        hostname,
        aggregation_key,
        priority,
        source_type_name,
        alert_type,
        tags,
    })
}

fn parse_service_check(rest: &str) -> Result<Message<'_>, ParseError> {
    let (name, rest) = rest.split_once('|').ok_or(ParseError::BadServiceCheck)?;
    if name.is_empty() {
        return Err(ParseError::BadServiceCheck);
    }
    let (status, mut fields) = match rest.split_once('|') {
        Some((s, f)) => (s, Some(f)),
        None => (rest, None),
    };
    let status = match status {
        "0" => Status::Ok,
        "1" => Status::Warning,
        "2" => Status::Critical,
        "3" => Status::Unknown,
        "" => return Err(ParseError::BadServiceCheck),
        _ => return Err(ParseError::BadStatus),
    };
    let (mut timestamp, mut hostname, mut tags, mut message) = (None, None, Tags::EMPTY, None);
    while let Some(f) = fields {
        if let Some(m) = f.strip_prefix("m:") {
            message = Some(m);
            break;
        }
        let (field, tail) = match f.split_once('|') {
            Some((a, b)) => (a, Some(b)),
            None => (f, None),
        };
        fields = tail;
        if let Some(t) = field.strip_prefix('#') {
            tags = Tags::new(t);
        } else if let Some(d) = field.strip_prefix("d:") {
            timestamp = Some(parse_timestamp(d)?);
        } else if let Some(h) = field.strip_prefix("h:") {
            hostname = Some(h);
        }
    }
    Ok(Message::ServiceCheck { name, status, timestamp, hostname, tags, message })
}

/// Writes the canonical text of `message` (no line ending) into `out`: values as the shortest
/// text that reads back to the same number, fields in the grammar's order, tags as sent.
/// [`parse_message`] of the output equals `message`.
pub fn render(message: &Message<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Writer::new(out);
    match *message {
        Message::Metric { name, values, kind, sample_rate, tags, container_id, timestamp } => {
            w.str(name);
            for v in values.iter() {
                w.byte(b':');
                match v {
                    Value::Number(n) => w.f64(n),
                    Value::Member(m) => w.str(m),
                }
            }
            w.byte(b'|');
            w.str(kind.as_str());
            if let Some(rate) = sample_rate {
                w.bytes(b"|@");
                w.f64(rate);
            }
            if !tags.is_empty() {
                w.bytes(b"|#");
                write_tags(&mut w, tags);
            }
            if let Some(c) = container_id {
                w.bytes(b"|c:");
                w.str(c);
            }
            if let Some(t) = timestamp {
                w.bytes(b"|T");
                w.u64(t);
            }
        }
        Message::Event {
            title,
            text,
            timestamp,
            hostname,
            aggregation_key,
            priority,
            source_type_name,
            alert_type,
            tags,
        } => {
            w.bytes(b"_e{");
            w.u64(title.len() as u64);
            w.byte(b',');
            w.u64(text.len() as u64);
            w.bytes(b"}:");
            w.str(title);
            w.byte(b'|');
            w.str(text);
            if let Some(t) = timestamp {
                w.bytes(b"|d:");
                w.u64(t);
            }
            for (prefix, value) in [(b"|h:", hostname), (b"|k:", aggregation_key)] {
                if let Some(v) = value {
                    w.bytes(prefix);
                    w.str(v);
                }
            }
            if let Some(p) = priority {
                w.bytes(b"|p:");
                w.str(p.as_str());
            }
            if let Some(s) = source_type_name {
                w.bytes(b"|s:");
                w.str(s);
            }
            if let Some(a) = alert_type {
                w.bytes(b"|t:");
                w.str(a.as_str());
            }
            if !tags.is_empty() {
                w.bytes(b"|#");
                write_tags(&mut w, tags);
            }
        }
        Message::ServiceCheck { name, status, timestamp, hostname, tags, message } => {
            w.bytes(b"_sc|");
            w.str(name);
            w.byte(b'|');
            w.u64(status.code() as u64);
            if let Some(t) = timestamp {
                w.bytes(b"|d:");
                w.u64(t);
            }
            if let Some(h) = hostname {
                w.bytes(b"|h:");
                w.str(h);
            }
            if !tags.is_empty() {
                w.bytes(b"|#");
                write_tags(&mut w, tags);
            }
            if let Some(m) = message {
                w.bytes(b"|m:");
                w.str(m);
            }
        }
    }
    w.finish()
}

fn write_tags(w: &mut Writer<'_>, tags: Tags<'_>) {
    for (i, t) in tags.iter().enumerate() {
        if i > 0 {
            w.byte(b',');
        }
        w.str(t);
    }
}

#[cfg(test)]
#[path = "dogstatsd_reference.rs"]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(line: &str) -> Message<'_> {
        match parse_message(line.as_bytes()) {
            Ok(m) => m,
            Err(e) => panic!("{line}: {e}"),
        }
    }

    #[test]
    fn a_plain_count() {
        let Message::Metric { name, values, kind, sample_rate, tags, container_id, timestamp } =
            metric("page.views:1|c")
        else {
            panic!("not a metric")
        };
        assert_eq!(
            (name, kind, sample_rate, container_id, timestamp),
            ("page.views", Kind::Count, None, None, None)
        );
        assert_eq!(values.iter().collect::<heapless::Vec<_, 4>>(), [Value::Number(1.0)]);
        assert!(tags.is_empty());
    }

    #[test]
    fn kinds_map_to_the_core() {
        let expected = [
            MetricType::Count,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::Histogram,
            MetricType::Set,
            MetricType::Distribution,
        ];
        for (k, t) in Kind::ALL.iter().zip(expected) {
            assert_eq!(k.metric_type(), t, "{}", k.as_str());
        }
    }

    #[test]
    fn sample_rate_scales_counts_and_weighs_samples() {
        assert_eq!(scaled_count(1.0, Some(0.25)), 4.0);
        assert_eq!(scaled_count(3.0, Some(0.5)), 6.0);
        assert_eq!(scaled_count(3.0, None), 3.0);
        assert_eq!(sample_weight(None), 1);
        assert_eq!(sample_weight(Some(1.0)), 1);
        assert_eq!(sample_weight(Some(0.5)), 2);
        assert_eq!(sample_weight(Some(0.3)), 3); // 3.33 truncated, as the Agent's int64(1/rate)
        assert_eq!(sample_weight(Some(0.1)), 10);
        assert_eq!(sample_weight(Some(1e-300)), u32::MAX);
    }

    #[test]
    fn tags_are_counted_as_iterated() {
        for (raw, n) in
            [("", 0), (",", 0), (",,", 0), ("a", 1), (",a", 1), ("a,", 1), ("a,,b,", 2), ("abcdefgh,ij", 2)]
        {
            assert_eq!(Tags::new(raw).iter().count(), n, "{raw}");
            assert_eq!(Tags::new(raw).iter().fold(0, |n, _| n + 1), n, "{raw}");
        }
    }

    #[test]
    fn tags_split_at_the_first_colon() {
        let tags = Tags::new("env:prod,url:http://x:80,,canary,k:");
        let parsed: heapless::Vec<Tag<'_>, 8> = tags.parsed().collect();
        assert_eq!(
            parsed,
            [
                Tag::new("env", "prod"),
                Tag::new("url", "http://x:80"),
                Tag { key: "canary", value: None },
                Tag::new("k", "")
            ]
        );
    }

    #[test]
    fn the_fast_number_path_agrees_with_the_full_parser() {
        for text in [
            "0",
            "-0",
            "21.375",
            "0.01234",
            "-12.5",
            "999999999999999",
            "0.1",
            "1.000000000000001",
            "123456789.012345",
        ] {
            let full: f64 = text.parse().unwrap_or(f64::NAN);
            assert_eq!(parse_number(text).map(f64::to_bits), Ok(full.to_bits()), "{text}");
        }
        for text in [".5", "5.", "1.2.3", "-", "--1", "1-"] {
            assert_eq!(
                parse_number(text).map(f64::to_bits),
                text.parse::<f64>().map(f64::to_bits).map_err(|_| ParseError::BadValue),
                "{text}"
            );
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_message_is_no_bigger_than_before() {
        // A line is moved several times between the parser and its caller: keeping the parsed
        // first value must not make a metric bigger than an event (120 bytes on 64 bits).
        let size = core::mem::size_of::<Message<'_>>();
        assert!(size <= 120, "{size}");
    }

    #[test]
    fn newlines_unescape_into_a_buffer() {
        let mut out = [0u8; 16];
        let n = unescape_newlines("a\\nb\\", &mut out);
        assert_eq!(n.map(|n| &out[..n]), Some(&b"a\nb\\"[..]));
        assert_eq!(unescape_newlines("abc", &mut [0u8; 2]), None);
    }

    #[test]
    fn renders_what_it_parses() {
        let mut buf = [0u8; 128];
        for line in
            ["a:1:2.5|h|@0.5|#x:y,z|c:abc|T1700000000", "_e{1,2}:t|xy|p:low|#a", "_sc|n|2|h:me|m:oops|x"]
        {
            let m = metric(line);
            let n = render(&m, &mut buf).unwrap_or(0);
            assert_eq!(core::str::from_utf8(&buf[..n]), Ok(line));
        }
        assert_eq!(render(&metric("a:1|c"), &mut buf[..3]), Err(EncodeError::BufferTooSmall { required: 5 }));
    }

    /// The fast parser against the old one (`reference`), field by field: the same text slices
    /// (same address and length, not only equal text), the same numbers to the bit, the same
    /// errors. Datagrams too: the same lines, in the same order, with the same bytes.
    mod differential {
        extern crate std;

        use super::super::reference;
        use super::*;
        use proptest::prelude::*;
        use std::vec::Vec;

        #[derive(Debug, PartialEq)]
        enum Seen {
            Number(u64),
            Member(*const u8, usize),
        }

        fn slice(s: &str) -> (*const u8, usize) {
            (s.as_ptr(), s.len())
        }

        fn same_opt(a: Option<&str>, b: Option<&str>) -> bool {
            a.map(slice) == b.map(slice)
        }

        fn same_tags(a: Tags<'_>, b: reference::Tags<'_>) -> bool {
            slice(a.as_str()) == slice(b.as_str())
                && a.iter().map(slice).eq(b.iter().map(slice))
                && a.iter().count() == b.iter().count()
        }

        fn same_values(a: Values<'_>, b: reference::Values<'_>) -> bool {
            let new = a.iter().map(|v| match v {
                Value::Number(n) => Seen::Number(n.to_bits()),
                Value::Member(m) => Seen::Member(m.as_ptr(), m.len()),
            });
            let old = b.iter().map(|v| match v {
                reference::Value::Number(n) => Seen::Number(n.to_bits()),
                reference::Value::Member(m) => Seen::Member(m.as_ptr(), m.len()),
            });
            slice(a.as_str()) == slice(b.as_str()) && new.eq(old) && a.count() == b.count()
        }

        fn same(
            new: &Result<Message<'_>, ParseError>,
            old: &Result<reference::Message<'_>, ParseError>,
        ) -> bool {
            use reference::Message as Old;
            match (new, old) {
                (Err(a), Err(b)) => a == b,
                (
                    Ok(Message::Metric { name, values, kind, sample_rate, tags, container_id, timestamp }),
                    Ok(Old::Metric {
                        name: name2,
                        values: values2,
                        kind: kind2,
                        sample_rate: rate2,
                        tags: tags2,
                        container_id: container2,
                        timestamp: timestamp2,
                    }),
                ) => {
                    slice(name) == slice(name2)
                        && same_values(*values, *values2)
                        && kind == kind2
                        && sample_rate.map(f64::to_bits) == rate2.map(f64::to_bits)
                        && same_tags(*tags, *tags2)
                        && same_opt(*container_id, *container2)
                        && timestamp == timestamp2
                }
                (
                    Ok(Message::Event {
                        title,
                        text,
                        timestamp,
                        hostname,
                        aggregation_key,
                        priority,
                        source_type_name,
                        alert_type,
                        tags,
                    }),
                    Ok(Old::Event {
                        title: title2,
                        text: text2,
                        timestamp: timestamp2,
                        hostname: hostname2,
                        aggregation_key: key2,
                        priority: priority2,
                        source_type_name: source2,
                        alert_type: alert2,
                        tags: tags2,
                    }),
                ) => {
                    slice(title) == slice(title2)
                        && slice(text) == slice(text2)
                        && timestamp == timestamp2
                        && same_opt(*hostname, *hostname2)
                        && same_opt(*aggregation_key, *key2)
                        && priority == priority2
                        && same_opt(*source_type_name, *source2)
                        && alert_type == alert2
                        && same_tags(*tags, *tags2)
                }
                (
                    Ok(Message::ServiceCheck { name, status, timestamp, hostname, tags, message }),
                    Ok(Old::ServiceCheck {
                        name: name2,
                        status: status2,
                        timestamp: timestamp2,
                        hostname: hostname2,
                        tags: tags2,
                        message: message2,
                    }),
                ) => {
                    slice(name) == slice(name2)
                        && status == status2
                        && timestamp == timestamp2
                        && same_opt(*hostname, *hostname2)
                        && same_tags(*tags, *tags2)
                        && same_opt(*message, *message2)
                }
                _ => false,
            }
        }

        /// Both parsers on one line, and on a datagram: the same results.
        fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
            let (new, old) = (parse_message(bytes), reference::parse_message(bytes));
            prop_assert!(
                same(&new, &old),
                "{:?}: {:?} vs {:?}",
                std::string::String::from_utf8_lossy(bytes),
                new,
                old
            );
            let mut old_lines = reference::parse_datagram(bytes);
            for line in parse_datagram(bytes) {
                let Some(old) = old_lines.next() else {
                    return Err(TestCaseError::fail(std::format!("extra line {:?}", line.bytes)));
                };
                prop_assert_eq!(
                    (line.bytes.as_ptr(), line.bytes.len()),
                    (old.bytes.as_ptr(), old.bytes.len())
                );
                prop_assert!(
                    same(&line.result, &old.result),
                    "{:?}: {:?} vs {:?}",
                    line.bytes,
                    line.result,
                    old.result
                );
            }
            prop_assert!(old_lines.next().is_none(), "a line missing");
            Ok(())
        }

        /// The grammar's pieces, right and wrong, and anything else.
        fn piece() -> impl Strategy<Value = Vec<u8>> {
            const PIECES: &[&str] = &[
                "app.metric_1",
                "a",
                "_",
                "_e{",
                "_sc|",
                "}:",
                ",",
                ":",
                "::",
                "|",
                "||",
                "@",
                "#",
                "T",
                "c:",
                "c",
                "g",
                "ms",
                "m",
                "h",
                "s",
                "d",
                "x",
                "e:",
                "card:",
                "1",
                "0",
                "-0",
                "21.375",
                "0.5",
                "@0.5",
                "@1",
                "@0",
                "@2",
                "@.5",
                "@nan",
                "1e3",
                "+3",
                ".5",
                "5.",
                "-",
                "nan",
                "inf",
                "-inf",
                "1e400",
                "1.000000000000001",
                "999999999999999",
                "9999999999999999",
                "12345678901234567890",
                "T1700000000",
                "T0",
                "T-1",
                "d:",
                "h:",
                "k:",
                "p:",
                "s:",
                "t:",
                "m:",
                "normal",
                "low",
                "error",
                "{1,2}:",
                "{0,0}:",
                "{3,1}:",
                "|#env:prod,canary",
                "env:prod",
                "\r",
                "\n",
                "\r\n",
                " ",
                "é",
                "\u{1F989}",
            ];
            prop_oneof![
                4 => prop::sample::select(PIECES).prop_map(|p| p.as_bytes().to_vec()),
                1 => any::<u8>().prop_map(|b| std::vec![b]),
                1 => "[a-z0-9:|@#,._-]{0,8}".prop_map(std::string::String::into_bytes),
            ]
        }

        /// A metric line the way clients write them, with one piece changed or not.
        fn client_line() -> impl Strategy<Value = Vec<u8>> {
            (
                "[a-z._]{0,12}",
                prop::collection::vec(prop_oneof!["-?[0-9]{1,17}(\\.[0-9]{0,17})?", "[a-z:-]{0,4}"], 0..4),
                prop::sample::select(&["c", "g", "ms", "h", "s", "d", "q", ""][..]),
                prop::collection::vec(
                    prop_oneof![
                        "@[0-9.]{0,6}",
                        "#[a-z:,/]{0,20}",
                        "T[0-9]{0,12}",
                        "c:[a-z0-9]{0,8}",
                        "[a-z]{0,3}:?[a-z]{0,3}",
                    ],
                    0..4,
                ),
                piece(),
                0usize..200,
            )
                .prop_map(|(name, values, kind, fields, piece, at)| {
                    let mut line = name.into_bytes();
                    line.push(b':');
                    line.extend_from_slice(values.join(":").as_bytes());
                    line.push(b'|');
                    line.extend_from_slice(kind.as_bytes());
                    for f in fields {
                        line.push(b'|');
                        line.extend_from_slice(f.as_bytes());
                    }
                    if at < line.len() {
                        line.splice(at..at, piece);
                    }
                    line
                })
        }

        #[test]
        fn on_edge_lines() {
            for line in [
                &b""[..],
                b":",
                b"|",
                b":|",
                b"a:1",
                b"a|c",
                b"a:1|",
                b"a:1|c|",
                b"a:1|c||",
                b":1|c",
                b"a:|c",
                b"a::|c",
                b"a::1:|c",
                b"a:1:x|c",
                b"a:x|q",
                b"a:1|msx",
                b"a:1|m",
                b"a:1|cc|@0.5",
                b"a:1|c|@",
                b"a:1|c|@0|#a",
                b"a:1|c|T",
                b"a:1|c|c",
                b"a:1|c|c:",
                b"a:1|c|#a,,b|#c",
                b"a:b:c|s",
                b"a:|s",
                b"a:1|c\r",
                b"a:1|c\n\r\nb:2|g\n",
                b"\xff:1|c",
                b"a:1|c\n\xff\nb:2|g",
                b"_e{1,1}:a|b",
                b"_e{1,1}:a|b|p:x",
                b"_sc|a|0|m:x|y",
                b"_sc|a",
                b"_x:1|c",
                b"_:1|c",
                b"a:1e3|d|@1e-1",
                b"a:1|c|@+0.5",
                b"a:1|c|@0.50000000000000001",
                b"a:9999999999999999|g",
                b"app.metric_1:21.375|ms|@0.5|#host:board-1,endpoint:/api/v1/thing/1,env:prod",
                b"a:1|c|#t\r\r\nb:1|c\r\r",
                b"a:1|c\rx\n",
                b"a:1|c|\r\n",
                b"a:1|c|c\r\n",
                b"\r\r\n\r\n\n\r",
                b"a:1|c|@0.5\r\n|c",
                b"a:1\r|c\n",
                b"a\r:1|c\r\n_e{1,1}:a|b\r\n",
            ] {
                check(line).unwrap_or_else(|e| panic!("{e}"));
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            #[test]
            fn on_random_lines(pieces in prop::collection::vec(piece(), 0..14)) {
                check(&pieces.concat())?;
            }

            #[test]
            fn on_client_lines(line in client_line()) {
                check(&line)?;
            }

            #[test]
            fn on_datagrams(lines in prop::collection::vec(client_line(), 0..6),
                            ends in prop::collection::vec(prop::sample::select(&["\n", "\r\n", "\n\n", "\r"][..]), 6)) {
                let mut datagram = Vec::new();
                for (line, end) in lines.iter().zip(&ends) {
                    datagram.extend_from_slice(line);
                    datagram.extend_from_slice(end.as_bytes());
                }
                check(&datagram)?;
            }
        }
    }
}
