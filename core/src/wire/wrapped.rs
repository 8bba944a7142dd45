//! The wrapped-metric JSON the original agent stores between aggregation and sending
//! (compat §2.3), one record per Redis hash value:
//!
//! ```text
//! {"metric": "req", "tags": ["ep:a"], "points": [[1795310771.0, 1]], "type": "count", "interval": 10}
//! ```
//!
//! [`encode_wrapped`] writes exactly what the original's `json.dumps(WrappedMetric.asdict())`
//! writes: that key order, `", "` and `": "` separators, `interval` only when set and non-zero,
//! strings escaped like `json.dumps` (`\u00e9`), the timestamp as a Python float (`1795310771.0`)
//! and the value as an integer when it is integral (`1`), else as Python's float `repr`.
//!
//! [`parse_wrapped`] reads what the original agent and its collector plugins wrote, in any key
//! order, extra keys ignored:
//! - `tags`: a list of `"key:value"` strings, or missing (no tags). Anything else (an object,
//!   `null`, a list holding a non-string) is refused ([`ParseError::WrongFieldType`] /
//!   [`ParseError::BadTag`]): the original's sender crashed on those (compat §7 item 12) and we
//!   would otherwise have to guess the tags, so the agent dead-letters them instead.
//! - `points`: one to [`MAX_POINTS`] `[timestamp, value]` pairs of finite numbers, timestamps
//!   non-negative ([`ParseError::NegativeTimestamp`], as for raw records).
//! - `type`: `count`, `gauge` or `rate`.
//! - `interval`: optional; an integer, or a float with an integral value; `0` and `null` mean none.
//! - `host`: optional string (or `null`).

use heapless::Vec;

use super::json::{Arena, JsonError, JsonErrorKind, JsonStr, Scanner, Token};
use super::write::Writer;
use super::{EncodeError, Field, ParseError};
use crate::limits::{MAX_NAME_BYTES, MAX_TAGS, MAX_TAG_BYTES};
use crate::{MetricName, OutputType, Tag, Timestamp, Wrapped};

/// Most points kept from one wrapped record. The original always writes exactly one; a record
/// with more is refused ([`ParseError::TooManyPoints`]).
pub const MAX_POINTS: usize = 8;

/// Writes one wrapped point as the original agent stores it; returns the bytes written.
///
/// A non-finite timestamp or value gives [`EncodeError::NonFinite`]; a short `out` gives
/// [`EncodeError::BufferTooSmall`] with the size required.
pub fn encode_wrapped(w: &Wrapped<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut wr = Writer::new(out);
    wr.str("{\"metric\": \"");
    wr.json_str_body(w.name.base);
    if let Some(suffix) = w.name.suffix {
        wr.byte(b'.');
        wr.json_str_body(suffix);
    }
    wr.str("\", \"tags\": [");
    for (i, tag) in w.tags.iter().enumerate() {
        if i > 0 {
            wr.str(", ");
        }
        write_tag(&mut wr, tag);
    }
    wr.str("], \"points\": [[");
    wr.python_float(w.timestamp.as_secs_f64());
    wr.str(", ");
    wr.f64(w.value);
    wr.str("]], \"type\": \"");
    wr.str(w.kind.as_str());
    wr.byte(b'"');
    if let Some(interval) = w.interval.filter(|&i| i != 0) {
        wr.str(", \"interval\": ");
        wr.u64(interval as u64);
    }
    wr.byte(b'}');
    wr.finish()
}

/// Writes `"key:value"` (or `"key"` for a bare tag) as one JSON string.
pub(crate) fn write_tag(wr: &mut Writer<'_>, tag: &Tag<'_>) {
    wr.byte(b'"');
    write_tag_body(wr, tag);
    wr.byte(b'"');
}

/// Writes `key:value` escaped, without quotes.
pub(crate) fn write_tag_body(wr: &mut Writer<'_>, tag: &Tag<'_>) {
    wr.json_str_body(tag.key);
    if let Some(value) = tag.value {
        wr.byte(b':');
        wr.json_str_body(value);
    }
}

/// One wrapped record, borrowed from the input and the scratch buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct WrappedRecord<'a> {
    name: &'a str,
    kind: OutputType,
    tags: Vec<Tag<'a>, MAX_TAGS>,
    points: Vec<(Timestamp, f64), MAX_POINTS>,
    interval: Option<u32>,
    host: Option<&'a str>,
}

impl<'a> WrappedRecord<'a> {
    /// An empty record (no name, no points), for [`parse_wrapped_into`] to fill.
    pub const fn empty() -> Self {
        WrappedRecord {
            name: "",
            kind: OutputType::Gauge,
            tags: Vec::new(),
            points: Vec::new(),
            interval: None,
            host: None,
        }
    }

    /// The metric name, suffix included (`req.95percentile`).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The point type.
    pub fn kind(&self) -> OutputType {
        self.kind
    }

    /// The tags, in the order written.
    pub fn tags(&self) -> &[Tag<'a>] {
        &self.tags
    }

    /// The `[timestamp, value]` points (at least one).
    pub fn points(&self) -> &[(Timestamp, f64)] {
        &self.points
    }

    /// The interval in seconds, if present and non-zero.
    pub fn interval(&self) -> Option<u32> {
        self.interval
    }

    /// The `host` field, if present.
    pub fn host(&self) -> Option<&'a str> {
        self.host
    }

    /// Point `index` as a [`Wrapped`] value (name without a separate suffix), or `None` past the
    /// last point.
    pub fn wrapped(&self, index: usize) -> Option<Wrapped<'_>> {
        let &(timestamp, value) = self.points.get(index)?;
        Some(Wrapped {
            name: MetricName::plain(self.name),
            kind: self.kind,
            tags: &self.tags,
            timestamp,
            value,
            interval: self.interval,
        })
    }
}

/// Scratch bytes that always suffice to parse a wrapped record of `input_len` bytes (strings with
/// escapes are decoded there; a record without escapes needs none).
pub const fn wrapped_scratch_len(input_len: usize) -> usize {
    input_len
}

fn classify(key: &JsonStr<'_>) -> Option<Field> {
    let mut buf = [0u8; 12];
    let text = match key.borrowed() {
        Some(text) => text,
        None if key.as_raw().len() <= 64 => key.decode(&mut buf).ok()?,
        None => return None,
    };
    Some(match text {
        "metric" => Field::Metric,
        "tags" => Field::Tags,
        "points" => Field::Points,
        "type" => Field::Type,
        "interval" => Field::Interval,
        "host" => Field::Host,
        _ => return None,
    })
}

/// Parses one wrapped record (see the module docs for what is accepted and refused).
///
/// Strings with escapes are decoded into `scratch`; [`wrapped_scratch_len`]`(input.len())` bytes
/// always suffice.
pub fn parse_wrapped<'a>(input: &'a [u8], scratch: &'a mut [u8]) -> Result<WrappedRecord<'a>, ParseError> {
    let mut rec = WrappedRecord::empty();
    parse_wrapped_into(input, scratch, &mut rec)?;
    Ok(rec)
}

/// [`parse_wrapped`] into `rec`, which it replaces, instead of returning a record: a record is
/// over a kilobyte (its tags and points are inline), and returning one through a `Result` copied
/// it twice. After an error, `rec` holds what was parsed so far.
pub fn parse_wrapped_into<'a>(
    input: &'a [u8],
    scratch: &'a mut [u8],
    rec: &mut WrappedRecord<'a>,
) -> Result<(), ParseError> {
    let too_small = ParseError::ScratchTooSmall { required: wrapped_scratch_len(input.len()) };
    let decode_err = |e: JsonError| match e.kind {
        JsonErrorKind::ScratchTooSmall => too_small,
        _ => ParseError::NotJson(e),
    };
    let mut arena = Arena::new(scratch);
    let mut sc = Scanner::new(input)?;
    if sc.value()? != Token::ObjectStart {
        return Err(ParseError::NotAnObject);
    }
    let mut name = None;
    let mut kind = None;
    let tags = &mut rec.tags;
    let points = &mut rec.points;
    tags.clear();
    points.clear();
    let mut interval = None;
    let mut host = None;
    while let Some(key) = sc.next_key()? {
        match classify(&key) {
            Some(Field::Metric) => match sc.value()? {
                Token::Str(s) => name = Some(arena.decode(&s).map_err(decode_err)?),
                _ => return Err(ParseError::WrongFieldType(Field::Metric)),
            },
            Some(Field::Type) => match sc.value()? {
                Token::Str(s) => {
                    let mut buf = [0u8; 8];
                    let text = s.decode(&mut buf).map_err(|_| ParseError::UnknownType)?;
                    kind = Some(OutputType::parse(text).ok_or(ParseError::UnknownType)?);
                }
                _ => return Err(ParseError::WrongFieldType(Field::Type)),
            },
            Some(Field::Tags) => {
                tags.clear();
                if sc.value()? != Token::ArrayStart {
                    return Err(ParseError::WrongFieldType(Field::Tags));
                }
                while sc.next_element()? {
                    let Token::Str(s) = sc.value()? else {
                        return Err(ParseError::BadTag);
                    };
                    let text = arena.decode(&s).map_err(decode_err)?;
                    let tag = Tag::parse(text);
                    let len = text.len() - usize::from(tag.value.is_some());
                    if len > MAX_TAG_BYTES {
                        return Err(ParseError::TagTooLong { len });
                    }
                    tags.push(tag).map_err(|_| ParseError::TooManyTags)?;
                }
            }
            Some(Field::Points) => {
                points.clear();
                read_points(&mut sc, points)?;
            }
            Some(Field::Interval) => {
                interval = match sc.value()? {
                    Token::Null => None,
                    Token::Number(text) => {
                        let v = text.parse::<f64>().map_err(|_| ParseError::BadInterval)?;
                        if !(0.0..=u32::MAX as f64).contains(&v) || v != (v as u32) as f64 {
                            return Err(ParseError::BadInterval);
                        }
                        Some(v as u32).filter(|&i| i != 0)
                    }
                    _ => return Err(ParseError::BadInterval),
                }
            }
            Some(Field::Host) => match sc.value()? {
                Token::Str(s) => host = Some(arena.decode(&s).map_err(decode_err)?),
                Token::Null => host = None,
                _ => return Err(ParseError::WrongFieldType(Field::Host)),
            },
            _ => sc.skip_value()?,
        }
    }
    sc.finish()?;
    let name = name.ok_or(ParseError::MissingField(Field::Metric))?;
    let kind = kind.ok_or(ParseError::MissingField(Field::Type))?;
    if points.is_empty() {
        return Err(ParseError::MissingField(Field::Points));
    }
    if name.is_empty() {
        return Err(ParseError::EmptyName);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ParseError::NameTooLong { len: name.len() });
    }
    (rec.name, rec.kind, rec.interval, rec.host) = (name, kind, interval, host);
    Ok(())
}

fn read_points(
    sc: &mut Scanner<'_>,
    points: &mut Vec<(Timestamp, f64), MAX_POINTS>,
) -> Result<(), ParseError> {
    if sc.value()? != Token::ArrayStart {
        return Err(ParseError::WrongFieldType(Field::Points));
    }
    let read_number = |sc: &mut Scanner<'_>| -> Result<f64, ParseError> {
        if !sc.next_element()? {
            return Err(ParseError::BadPoint);
        }
        let v = match sc.value()? {
            Token::Number(text) => text.parse::<f64>().map_err(|_| ParseError::BadPoint)?,
            Token::NonFinite(_) => return Err(ParseError::NonFinite(Field::Points)),
            _ => return Err(ParseError::BadPoint),
        };
        if !v.is_finite() {
            return Err(ParseError::NonFinite(Field::Points));
        }
        Ok(v)
    };
    let mut any = false;
    while sc.next_element()? {
        any = true;
        if sc.value()? != Token::ArrayStart {
            return Err(ParseError::BadPoint);
        }
        let ts = read_number(sc)?;
        let value = read_number(sc)?;
        if sc.next_element()? {
            return Err(ParseError::BadPoint);
        }
        if ts < 0.0 {
            return Err(ParseError::NegativeTimestamp);
        }
        points.push((Timestamp(ts), value)).map_err(|_| ParseError::TooManyPoints)?;
    }
    if !any {
        return Err(ParseError::BadPoint);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(w: &Wrapped<'_>) -> heapless::String<512> {
        let mut buf = [0u8; 512];
        let n = encode_wrapped(w, &mut buf).unwrap();
        let mut s = heapless::String::new();
        s.push_str(core::str::from_utf8(&buf[..n]).unwrap()).unwrap();
        s
    }

    /// A slot parsed into again holds the new record alone: nothing of the one before (its tags,
    /// points, interval, host) survives, whichever fields the new one has.
    #[test]
    fn parsing_into_a_used_slot_gives_the_fresh_record() {
        let first = br#"{"metric": "a", "tags": ["x:1", "y"], "points": [[1.0, 2], [3.0, 4]], "type": "rate", "interval": 10, "host": "h"}"#;
        let second = br#"{"type": "gauge", "points": [[5.0, 6.5]], "metric": "b"}"#;
        let mut rec = WrappedRecord::empty();
        parse_wrapped_into(first, &mut [], &mut rec).unwrap();
        assert_eq!(
            (rec.tags().len(), rec.points().len(), rec.interval(), rec.host()),
            (2, 2, Some(10), Some("h"))
        );
        parse_wrapped_into(second, &mut [], &mut rec).unwrap();
        assert_eq!(rec, parse_wrapped(second, &mut []).unwrap());
        assert_eq!(
            (rec.name(), rec.tags().len(), rec.points(), rec.interval(), rec.host()),
            ("b", 0, &[(Timestamp(5.0), 6.5)][..], None, None)
        );
    }

    #[test]
    fn encodes_like_the_original() {
        let tags = [Tag::new("ep", "a")];
        let w = Wrapped {
            name: MetricName::plain("req"),
            kind: OutputType::Count,
            tags: &tags,
            timestamp: Timestamp(1795310771.0),
            value: 1.0,
            interval: Some(10),
        };
        assert_eq!(
            encode(&w).as_str(),
            r#"{"metric": "req", "tags": ["ep:a"], "points": [[1795310771.0, 1]], "type": "count", "interval": 10}"#
        );
        let g = Wrapped { kind: OutputType::Gauge, interval: Some(0), tags: &[], value: 1.875, ..w };
        assert_eq!(
            encode(&g).as_str(),
            r#"{"metric": "req", "tags": [], "points": [[1795310771.0, 1.875]], "type": "gauge"}"#
        );
        let mut small = [0u8; 10];
        assert!(matches!(encode_wrapped(&w, &mut small), Err(EncodeError::BufferTooSmall { required: 99 })));
        let nan = Wrapped { value: f64::NAN, ..w };
        assert_eq!(encode_wrapped(&nan, &mut [0u8; 256]), Err(EncodeError::NonFinite));
    }

    #[test]
    fn parses_what_it_encodes() {
        let input = br#"{"metric": "req", "tags": ["ep:a", "bare"], "points": [[1795310771.0, 1]], "type": "count", "interval": 10, "host": "h"}"#;
        let r = parse_wrapped(input, &mut []).unwrap();
        assert_eq!(r.name(), "req");
        assert_eq!(r.tags(), &[Tag::new("ep", "a"), Tag::parse("bare")]);
        assert_eq!(r.points(), &[(Timestamp(1795310771.0), 1.0)]);
        assert_eq!(r.interval(), Some(10));
        assert_eq!(r.host(), Some("h"));
        assert_eq!(r.kind(), OutputType::Count);
        assert!(r.wrapped(1).is_none());
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, ParseError)] = &[
            ("[]", ParseError::NotAnObject),
            (
                r#"{"metric": "m", "tags": {"a": "b"}, "points": [[1, 1]], "type": "count"}"#,
                ParseError::WrongFieldType(Field::Tags),
            ),
            (r#"{"metric": "m", "tags": [1], "points": [[1, 1]], "type": "count"}"#, ParseError::BadTag),
            (r#"{"metric": "m", "points": [[1, 1]], "type": "histogram"}"#, ParseError::UnknownType),
            (r#"{"metric": "m", "points": [], "type": "count"}"#, ParseError::BadPoint),
            (r#"{"metric": "m", "points": [[1]], "type": "count"}"#, ParseError::BadPoint),
            (r#"{"metric": "m", "points": [[1, 2, 3]], "type": "count"}"#, ParseError::BadPoint),
            (
                r#"{"metric": "m", "points": [[1, NaN]], "type": "count"}"#,
                ParseError::NonFinite(Field::Points),
            ),
            (
                r#"{"metric": "m", "points": [[1, 1]], "type": "count", "interval": 1.5}"#,
                ParseError::BadInterval,
            ),
            (
                r#"{"metric": "m", "points": [[1, 1]], "type": "count", "interval": -1}"#,
                ParseError::BadInterval,
            ),
            (r#"{"metric": "m", "type": "count"}"#, ParseError::MissingField(Field::Points)),
            (
                r#"{"metric": "m", "points": [[1,1],[1,1],[1,1],[1,1],[1,1],[1,1],[1,1],[1,1],[1,1]], "type": "count"}"#,
                ParseError::TooManyPoints,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_wrapped(input.as_bytes(), &mut []).as_ref().err(), Some(want), "{input}");
        }
        let ok = parse_wrapped(
            br#"{"metric": "m", "points": [[1, 1]], "type": "rate", "interval": 10.0}"#,
            &mut [],
        )
        .unwrap();
        assert_eq!(ok.interval(), Some(10));
    }
}
