//! Log records (compat §2.4, §3.3, §5.5), as the original client's log handler writes them:
//!
//! ```text
//! {"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": [], "level": "INFO",
//!  "message": {"msg": "hello %s"}, "service": "svc"}
//! ```
//!
//! plus an optional `exc_info` and any extra attributes of the Python `LogRecord`.
//!
//! [`parse_log`] keeps every top-level field as its key and its value's JSON text, in order, so
//! [`encode_log_for_intake`] can write the record exactly as the original sender did: every field
//! verbatim (so byte-identical to Python's `json.dumps` for records `json.dumps` wrote), `ddtags`
//! replaced by the comma-joined string of the record's tags and the global tags, and `host` set.
//!
//! What is accepted and refused:
//! - not JSON / not an object: [`ParseError::NotJson`] / [`ParseError::NotAnObject`].
//! - `date` missing: [`ParseError::MissingField`]; not a string: [`ParseError::WrongFieldType`];
//!   not a date [`parse_log_date`] reads: [`ParseError::BadDate`].
//! - `ddtags`: a list of strings (each one tag, or several joined with commas); missing or `null`
//!   means no tags; **a single string is accepted as an already-joined tag list** (`"a:b,c:d"`,
//!   the intake's own format; the empty string means no tags). The original's sender crashed on a
//!   string `ddtags` (compat §7 item 12); joining it as the intake expects is kinder and loses
//!   nothing. A list holding a non-string, or a number or object, is refused
//!   ([`ParseError::BadTag`], [`ParseError::WrongFieldType`]); more than [`MAX_TAGS`] entries:
//!   [`ParseError::TooManyTags`].
//! - more than [`MAX_LOG_FIELDS`] fields: [`ParseError::TooManyFields`].
//! - a repeated key keeps its first position and its last value, as a Python dict does (keys
//!   are compared as written, escapes not decoded).

use heapless::Vec;

use super::json::{JsonStr, Scanner, Token};
use super::write::Writer;
use super::{EncodeError, Field, ParseError};
use crate::limits::MAX_TAGS;
use crate::{Tag, Timestamp};

/// Most top-level fields in one log record: the six base fields, `exc_info`, and room for extras
/// (each costs 40 bytes of the parsed view on 64-bit).
pub const MAX_LOG_FIELDS: usize = 32;

/// One log record: every top-level field, in order, with its value's JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord<'a> {
    fields: Vec<(JsonStr<'a>, &'a str), MAX_LOG_FIELDS>,
    date: Timestamp,
    date_text: &'a str,
    tags: Vec<JsonStr<'a>, MAX_TAGS>,
}

impl<'a> LogRecord<'a> {
    /// The `date` field, parsed.
    pub fn date(&self) -> Timestamp {
        self.date
    }

    /// The `date` field as written.
    pub fn date_text(&self) -> &'a str {
        self.date_text
    }

    /// Every top-level field: its key (escapes not decoded) and its value's JSON text.
    pub fn fields(&self) -> impl Iterator<Item = (JsonStr<'a>, &'a str)> + '_ {
        self.fields.iter().copied()
    }

    /// The JSON text of field `key` (a key written without escapes), if present.
    pub fn field(&self, key: &str) -> Option<&'a str> {
        self.fields.iter().find(|(k, _)| k.as_raw() == key).map(|&(_, v)| v)
    }

    /// Field `key` if it is a string (decode it with [`JsonStr::decode`] or take
    /// [`JsonStr::borrowed`] when it has no escapes).
    pub fn str_field(&self, key: &str) -> Option<JsonStr<'a>> {
        let raw = self.field(key)?;
        match Scanner::from_str(raw).value() {
            Ok(Token::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// `level` (`INFO`), if a string.
    pub fn level(&self) -> Option<JsonStr<'a>> {
        self.str_field("level")
    }

    /// `service`, if a string.
    pub fn service(&self) -> Option<JsonStr<'a>> {
        self.str_field("service")
    }

    /// `ddsource`, if a string.
    pub fn ddsource(&self) -> Option<JsonStr<'a>> {
        self.str_field("ddsource")
    }

    /// The `ddtags` entries, as JSON strings (each a tag, or a comma-joined list of tags).
    pub fn ddtags(&self) -> &[JsonStr<'a>] {
        &self.tags
    }
}

/// Parses one log record (see the module docs for what is accepted and refused).
pub fn parse_log(input: &[u8]) -> Result<LogRecord<'_>, ParseError> {
    let mut sc = Scanner::new(input)?;
    if sc.value()? != Token::ObjectStart {
        return Err(ParseError::NotAnObject);
    }
    let mut fields: Vec<(JsonStr<'_>, &str), MAX_LOG_FIELDS> = Vec::new();
    let mut date = None;
    let mut tags = Vec::new();
    while let Some(key) = sc.next_key()? {
        let value = sc.raw_value()?;
        match key.as_raw() {
            "date" => {
                let Ok(Token::Str(s)) = Scanner::from_str(value).value() else {
                    return Err(ParseError::WrongFieldType(Field::Date));
                };
                let mut buf = [0u8; 40];
                let text = s.decode(&mut buf).map_err(|_| ParseError::BadDate)?;
                let ts = parse_log_date(text).ok_or(ParseError::BadDate)?;
                date = Some((ts, s.as_raw()));
            }
            "ddtags" => read_ddtags(value, &mut tags)?,
            _ => {}
        }
        if let Some(field) = fields.iter_mut().find(|(k, _)| k.as_raw() == key.as_raw()) {
            field.1 = value;
        } else if fields.push((key, value)).is_err() {
            return Err(ParseError::TooManyFields);
        }
    }
    sc.finish()?;
    let (date, date_text) = date.ok_or(ParseError::MissingField(Field::Date))?;
    Ok(LogRecord { fields, date, date_text, tags })
}

fn read_ddtags<'a>(value: &'a str, tags: &mut Vec<JsonStr<'a>, MAX_TAGS>) -> Result<(), ParseError> {
    tags.clear();
    let mut sc = Scanner::from_str(value);
    match sc.value()? {
        Token::Null => Ok(()),
        Token::Str(s) if s.as_raw().is_empty() => Ok(()),
        Token::Str(s) => tags.push(s).map_err(|_| ParseError::TooManyTags),
        Token::ArrayStart => {
            while sc.next_element()? {
                let Token::Str(s) = sc.value()? else {
                    return Err(ParseError::BadTag);
                };
                tags.push(s).map_err(|_| ParseError::TooManyTags)?;
            }
            Ok(())
        }
        _ => Err(ParseError::WrongFieldType(Field::DdTags)),
    }
}

/// Writes `rec` as the original logs sender sends it to the intake: every field in its original
/// order and verbatim, except `ddtags`, which becomes the comma-joined string of the record's
/// tags followed by `global_tags` (`"a:b,env:test"`; appended if the record had none), and,
/// when `host` is given, `host` (overwritten in place, or appended last). Separators are
/// Python's `", "` and `": "`. Returns the bytes written.
pub fn encode_log_for_intake(
    rec: &LogRecord<'_>,
    global_tags: &[Tag<'_>],
    host: Option<&str>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let mut w = Writer::new(out);
    w.byte(b'{');
    let mut first = true;
    let mut wrote_tags = false;
    let mut wrote_host = false;
    let mut sep = |w: &mut Writer<'_>| {
        if !first {
            w.str(", ");
        }
        first = false;
    };
    for (key, value) in rec.fields.iter() {
        sep(&mut w);
        w.byte(b'"');
        w.str(key.as_raw());
        w.str("\": ");
        match key.as_raw() {
            "ddtags" if !wrote_tags => {
                write_ddtags(&mut w, rec, global_tags);
                wrote_tags = true;
            }
            "host" if host.is_some() && !wrote_host => {
                w.json_str(host.unwrap_or_default());
                wrote_host = true;
            }
            _ => w.str(value),
        }
    }
    if !wrote_tags {
        sep(&mut w);
        w.str("\"ddtags\": ");
        write_ddtags(&mut w, rec, global_tags);
    }
    if let (Some(host), false) = (host, wrote_host) {
        sep(&mut w);
        w.str("\"host\": ");
        w.json_str(host);
    }
    w.byte(b'}');
    w.finish()
}

fn write_ddtags(w: &mut Writer<'_>, rec: &LogRecord<'_>, global_tags: &[Tag<'_>]) {
    w.byte(b'"');
    let mut first = true;
    for tag in rec.tags.iter() {
        if !first {
            w.byte(b',');
        }
        first = false;
        // Raw string bodies joined still form a valid JSON string body.
        w.str(tag.as_raw());
    }
    for tag in global_tags {
        if !first {
            w.byte(b',');
        }
        first = false;
        super::wrapped::write_tag_body(w, tag);
    }
    w.byte(b'"');
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads `n` ASCII digits at `at`.
fn digits(bytes: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for &b in bytes.get(at..at + n)? {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(b - b'0');
    }
    Some(v)
}

/// Parses a log date, `%Y-%m-%dT%H:%M:%S[.ffffff](+HH:MM|+HHMM|-HH:MM|-HHMM|Z)`: what Python's
/// `datetime.isoformat()` writes, including the form without fraction it writes when the
/// microseconds are exactly 0 (the original agent lost those logs; we accept them). The fraction
/// has one to six digits.
///
/// ```
/// use chouette_core::wire::log::parse_log_date;
/// assert_eq!(parse_log_date("2012-12-21T00:00:00+00:00").unwrap().as_secs_f64(), 1356048000.0);
/// ```
pub fn parse_log_date(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    if year < 1
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut micros = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let n = at - start;
        if !(1..=6).contains(&n) {
            return None;
        }
        micros = digits(b, start, n)?;
        for _ in n..6 {
            micros *= 10;
        }
    }
    let offset_secs = match b.get(at..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (hh, mm) = match rest {
                [_, _, b':', _, _] | [_, _, _, _] => {
                    let mm_at = if rest.len() == 5 { 3 } else { 2 };
                    (digits(rest, 0, 2)?, digits(rest, mm_at, 2)?)
                }
                _ => return None,
            };
            if hh > 23 || mm > 59 {
                return None;
            }
            let secs = hh * 3600 + mm * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(Timestamp(secs as f64 + micros as f64 / 1e6))
}

/// Formats a timestamp as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, always with six fractional digits
/// and the `+00:00` offset, so the original agent (which parses `%Y-%m-%dT%H:%M:%S.%f%z`) reads
/// what our client writes. Microseconds are rounded to nearest. Timestamps outside years
/// 0001-9999 (and NaN) are clamped into that range.
///
/// ```
/// use chouette_core::{wire::log::format_log_date, Timestamp};
/// let mut buf = [0u8; 32];
/// assert_eq!(format_log_date(Timestamp(1356048000.5), &mut buf), "2012-12-21T00:00:00.500000+00:00");
/// ```
pub fn format_log_date(ts: Timestamp, out: &mut [u8; 32]) -> &str {
    const MIN: f64 = -62_135_596_800.0; // 0001-01-01T00:00:00
    const MAX: f64 = 253_402_300_799.0; // 9999-12-31T23:59:59
    let t = ts.as_secs_f64();
    let t = if t.is_nan() { 0.0 } else { t.clamp(MIN, MAX) };
    let mut secs = t as i64;
    if (secs as f64) > t {
        secs -= 1; // floor for negative times
    }
    let mut micros = ((t - secs as f64) * 1e6 + 0.5) as i64;
    if micros >= 1_000_000 {
        secs += 1;
        micros -= 1_000_000;
    }
    if secs as f64 > MAX {
        secs = MAX as i64;
        micros = 999_999;
    }
    let days = if secs >= 0 { secs / 86_400 } else { (secs - 86_399) / 86_400 };
    let rem = secs - days * 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut put = |at: usize, value: i64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, rem / 3600, 2);
    put(14, rem / 60 % 60, 2);
    put(17, rem % 60, 2);
    put(20, micros, 6);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out[19] = b'.';
    out[26..32].copy_from_slice(b"+00:00");
    core::str::from_utf8(&out[..]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(rec: &LogRecord<'_>, tags: &[Tag<'_>], host: Option<&str>) -> heapless::String<512> {
        let mut buf = [0u8; 512];
        let n = encode_log_for_intake(rec, tags, host, &mut buf).unwrap();
        let mut s = heapless::String::new();
        s.push_str(core::str::from_utf8(&buf[..n]).unwrap()).unwrap();
        s
    }

    #[test]
    fn encodes_like_the_original_sender() {
        let input = br#"{"date": "2012-12-21T00:00:00+00:00", "ddsource": "svc", "ddtags": ["a:b"], "level": "INFO", "message": {"msg": "hi"}, "service": "svc"}"#;
        let rec = parse_log(input).unwrap();
        assert_eq!(rec.date(), Timestamp(1356048000.0));
        assert_eq!(rec.level().unwrap().borrowed(), Some("INFO"));
        assert_eq!(rec.service().unwrap().borrowed(), Some("svc"));
        assert_eq!(rec.ddsource().unwrap().borrowed(), Some("svc"));
        assert_eq!(rec.field("message"), Some(r#"{"msg": "hi"}"#));
        let global = [Tag::new("env", "test"), Tag::new("device", "pi")];
        assert_eq!(
            encode(&rec, &global, Some("myhost")).as_str(),
            r#"{"date": "2012-12-21T00:00:00+00:00", "ddsource": "svc", "ddtags": "a:b,env:test,device:pi", "level": "INFO", "message": {"msg": "hi"}, "service": "svc", "host": "myhost"}"#
        );
    }

    #[test]
    fn host_is_overwritten_in_place_and_missing_ddtags_appended() {
        let rec = parse_log(br#"{"host": "old", "date": "2012-12-21T00:00:00Z"}"#).unwrap();
        assert_eq!(
            encode(&rec, &[Tag::new("host", "pytest")], Some("test_host")).as_str(),
            r#"{"host": "test_host", "date": "2012-12-21T00:00:00Z", "ddtags": "host:pytest"}"#
        );
        assert_eq!(
            encode(&rec, &[], None).as_str(),
            r#"{"host": "old", "date": "2012-12-21T00:00:00Z", "ddtags": ""}"#
        );
    }

    #[test]
    fn ddtags_shapes() {
        let rec = parse_log(br#"{"date": "2012-12-21T00:00:00Z", "ddtags": "a:b,c:d"}"#).unwrap();
        assert_eq!(rec.ddtags().len(), 1);
        assert!(encode(&rec, &[Tag::new("e", "f")], None).contains(r#""ddtags": "a:b,c:d,e:f""#));
        let rec = parse_log(br#"{"date": "2012-12-21T00:00:00Z", "ddtags": null}"#).unwrap();
        assert!(rec.ddtags().is_empty());
        assert_eq!(parse_log(br#"{"date": "2012-12-21T00:00:00Z", "ddtags": [1]}"#), Err(ParseError::BadTag));
        assert_eq!(
            parse_log(br#"{"date": "2012-12-21T00:00:00Z", "ddtags": {}}"#),
            Err(ParseError::WrongFieldType(Field::DdTags))
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_log(b"[1]"), Err(ParseError::NotAnObject));
        assert!(matches!(parse_log(b"So wrong!"), Err(ParseError::NotJson(_))));
        assert_eq!(parse_log(b"{}"), Err(ParseError::MissingField(Field::Date)));
        assert_eq!(parse_log(br#"{"date": 1}"#), Err(ParseError::WrongFieldType(Field::Date)));
        assert_eq!(parse_log(br#"{"date": "yesterday"}"#), Err(ParseError::BadDate));
    }

    #[test]
    fn dates_parse() {
        let p = |s: &str| parse_log_date(s).map(|t| t.as_secs_f64());
        assert_eq!(p("2012-12-21T00:00:00+00:00"), Some(1356048000.0));
        assert_eq!(p("2012-12-21T00:00:00Z"), Some(1356048000.0));
        assert_eq!(p("2012-12-21T01:00:00+0100"), Some(1356048000.0));
        assert_eq!(p("2012-12-20T23:00:00-01:00"), Some(1356048000.0));
        assert_eq!(p("2020-09-13T12:26:40.123456+00:00"), Some(1600000000.123456));
        assert_eq!(p("2020-09-13T12:26:40.5+00:00"), Some(1600000000.5));
        assert_eq!(p("2026-11-22T01:25:26.038424+00:00"), Some(1795310726.038424));
        assert_eq!(p("2024-02-29T00:00:00+00:00"), Some(1709164800.0));
        assert_eq!(p("1970-01-01T00:00:00+00:00"), Some(0.0));
        for bad in [
            "2023-02-29T00:00:00+00:00",
            "2012-12-21T00:00:00",
            "2012-12-21 00:00:00+00:00",
            "2012-12-21T24:00:00+00:00",
            "2012-13-21T00:00:00+00:00",
            "2012-12-21T00:00:00.+00:00",
            "2012-12-21T00:00:00.1234567+00:00",
            "2012-12-21T00:00:00+00:0",
            "2012-12-21T00:00:00+00:00x",
            "",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_round_trip_across_leap_years() {
        let mut buf = [0u8; 32];
        assert_eq!(
            format_log_date(Timestamp(1795310726.038424), &mut buf),
            "2026-11-22T01:25:26.038424+00:00"
        );
        assert_eq!(format_log_date(Timestamp(-1.5), &mut buf), "1969-12-31T23:59:58.500000+00:00");
        // Every 7 days and 13 hours and some micros, 1968..2100: through 2000 (leap) and 2100 (not).
        let mut t: i64 = -63_072_000;
        while t < 4_102_444_800 {
            let micros = (t.rem_euclid(997) * 1003) % 1_000_000;
            let ts = Timestamp(t as f64 + micros as f64 / 1e6);
            let text = format_log_date(ts, &mut buf);
            let back = parse_log_date(text).unwrap();
            assert!((back.0 - ts.0).abs() < 1e-6, "{text}");
            let mut again = [0u8; 32];
            assert_eq!(format_log_date(back, &mut again), text);
            t += 7 * 86_400 + 13 * 3600 + 17;
        }
        for (y, m, d) in [(2000, 2, 29), (1900, 3, 1), (2100, 2, 28), (1, 1, 1), (9999, 12, 31)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
    }
}
