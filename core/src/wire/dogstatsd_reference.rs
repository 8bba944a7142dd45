//! The DogStatsD parser as it was before it was made faster (commit f3b5b7a), kept verbatim as
//! a test-only reference: `differential` in the parent's tests checks that the fast parser gives
//! exactly its results, line for line. Its own `Values`, `Tags` and `Message` keep the old
//! representation; the parent's test compares them field by field. Not to be changed, but for
//! events and service checks, whose parsing the speed work left as it was: they call the
//! parent's functions.
#![allow(dead_code, missing_docs)]

use super::{AlertType, Kind, ParseError, Priority, Status};
use crate::metric::Tag;

/// The packed values of a metric message, as sent (`1:2.5:3` of `name:1:2.5:3|h`); iterate with
/// [`Values::iter`]. Two `Values` are equal when they yield the same values.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    raw: &'a str,
    set: bool,
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
        let v = Values { raw, set: kind == Kind::Set };
        v.check()?;
        Ok(v)
    }

    /// The text as sent.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The values, in order (empty packed values skipped).
    pub fn iter(&self) -> ValuesIter<'a> {
        ValuesIter { rest: Some(self.raw), set: self.set }
    }

    /// How many values.
    pub fn count(&self) -> usize {
        self.iter().count()
    }

    fn check(&self) -> Result<(), ParseError> {
        if self.set {
            return if self.raw.is_empty() { Err(ParseError::EmptyValue) } else { Ok(()) };
        }
        let mut any = false;
        for part in self.raw.split(':') {
            if part.is_empty() {
                continue;
            }
            parse_number(part)?;
            any = true;
        }
        if any {
            Ok(())
        } else {
            Err(ParseError::EmptyValue)
        }
    }
}

impl PartialEq for Values<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.set == other.set && self.iter().eq(other.iter())
    }
}

/// Iterator over [`Values`].
#[derive(Debug, Clone)]
pub struct ValuesIter<'a> {
    rest: Option<&'a str>,
    set: bool,
}

impl<'a> Iterator for ValuesIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.set {
            return self.rest.take().map(Value::Member);
        }
        loop {
            let rest = self.rest?;
            let (part, tail) = match rest.split_once(':') {
                Some((p, t)) => (p, Some(t)),
                None => (rest, None),
            };
            self.rest = tail;
            if part.is_empty() {
                continue;
            }
            // Checked at parse time; a value that fails here cannot come from `parse_*`.
            if let Ok(v) = parse_number(part) {
                return Some(Value::Number(v));
            }
        }
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
        self.raw.split(',').filter(|t| !t.is_empty())
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
    Lines { rest: datagram }
}

/// Iterator returned by [`parse_datagram`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (mut line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
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

/// Parses one message (no line ending).
pub fn parse_message(line: &[u8]) -> Result<Message<'_>, ParseError> {
    let line = core::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    if let Some(rest) = line.strip_prefix("_e{") {
        parse_event(rest)
    } else if let Some(rest) = line.strip_prefix("_sc|") {
        parse_service_check(rest)
    } else {
        parse_metric(line)
    }
}

fn parse_timestamp(text: &str) -> Result<u64, ParseError> {
    match text.parse::<u64>() {
        Ok(t) if t >= 1 => Ok(t),
        _ => Err(ParseError::BadTimestamp),
    }
}

fn parse_metric(line: &str) -> Result<Message<'_>, ParseError> {
    let (head, fields) = match line.split_once('|') {
        Some(x) => x,
        None => {
            return Err(if line.contains(':') { ParseError::MissingType } else { ParseError::MissingValue })
        }
    };
    let (name, raw) = head.split_once(':').ok_or(ParseError::MissingValue)?;
    if name.is_empty() {
        return Err(ParseError::EmptyName);
    }
    let (kind_text, fields) = match fields.split_once('|') {
        Some((k, f)) => (k, Some(f)),
        None => (fields, None),
    };
    let kind = kind_parse(kind_text.as_bytes()).ok_or(ParseError::UnknownType)?;
    let values = Values::new(raw, kind)?;
    let mut sample_rate = None;
    let mut tags = Tags::EMPTY;
    let mut container_id = None;
    let mut timestamp = None;
    if let Some(fields) = fields {
        for field in fields.split('|') {
            match field.as_bytes().first() {
                Some(b'@') => {
                    let rate: f64 = field[1..].parse().map_err(|_| ParseError::BadSampleRate)?;
                    if !(rate > 0.0 && rate <= 1.0) {
                        return Err(ParseError::BadSampleRate);
                    }
                    sample_rate = Some(rate);
                }
                Some(b'#') => tags = Tags::new(&field[1..]),
                Some(b'T') => timestamp = Some(parse_timestamp(&field[1..])?),
                Some(b'c') if field.as_bytes().get(1) == Some(&b':') => container_id = Some(&field[2..]),
                _ => {} // `e:`, `card:` and unknown fields: ignored, as the Agent does.
            }
        }
    }
    Ok(Message::Metric { name, values, kind, sample_rate, tags, container_id, timestamp })
}

/// Events and service checks: the speed work left their parsing as it was, so the parent's
/// functions serve here too (a copy would compare the same code with itself), with their tags in
/// this module's representation, so that the parent's `Tags` is still compared with the old one.
fn parse_event(rest: &str) -> Result<Message<'_>, ParseError> {
    super::parse_event(rest).map(from_parent)
}

fn parse_service_check(rest: &str) -> Result<Message<'_>, ParseError> {
    super::parse_service_check(rest).map(from_parent)
}

fn from_parent(message: super::Message<'_>) -> Message<'_> {
    use super::Message as New;
    match message {
        New::Metric { name, values, kind, sample_rate, tags, container_id, timestamp } => Message::Metric {
            name,
            values: Values { raw: values.as_str(), set: kind == Kind::Set },
            kind,
            sample_rate,
            tags: Tags::new(tags.as_str()),
            container_id,
            timestamp,
        },
        New::Event {
            title,
            text,
            timestamp,
            hostname,
            aggregation_key,
            priority,
            source_type_name,
            alert_type,
            tags,
        } => Message::Event {
            title,
            text,
            timestamp,
            hostname,
            aggregation_key,
            priority,
            source_type_name,
            alert_type,
            tags: Tags::new(tags.as_str()),
        },
        New::ServiceCheck { name, status, timestamp, hostname, tags, message } => Message::ServiceCheck {
            name,
            status,
            timestamp,
            hostname,
            tags: Tags::new(tags.as_str()),
            message,
        },
    }
}

fn kind_parse(text: &[u8]) -> Option<Kind> {
    Some(match text {
        b"c" => Kind::Count,
        b"g" => Kind::Gauge,
        b"ms" => Kind::Timer,
        b"h" => Kind::Histogram,
        b"s" => Kind::Set,
        b"d" => Kind::Distribution,
        _ => return None,
    })
}
