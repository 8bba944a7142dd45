//! InfluxDB line protocol (v1 `POST /write?precision=s`), one line per point of a wrapped record:
//!
//! ```text
//! req.95percentile,env=test,host=myhost,k\ 1=a\,b value=21.5 1795310770
//! ```
//!
//! - **Measurement**: the metric name, suffix included (`req.95percentile`).
//! - **Field**: one float field `value`. An integral value is still a float (`3`, never `3i`, as
//!   one field must keep one type in InfluxDB: a `3i` after a `2.5` is a type conflict); the `u`
//!   suffix is never written (InfluxDB 1.x refuses it). Other values are written as Python's
//!   `repr` (`21.5`, `1e-05`, `1.5e+16`), which InfluxDB reads as the same float. A NaN or
//!   infinite value is [`EncodeError::NonFinite`] (line protocol has no spelling for it).
//! - **Tags** (shared with the OpenTSDB encoder): the record's tags, then `extra_tags` (the global
//!   tags), then `host=<host>`. `host` is the caller's `host` if `Some`, else the record's own
//!   `host` field (an empty one counts as none); when there is one it replaces any `host` tag of
//!   the record or the globals.
//!   A bare tag (`foo`), an empty value (`foo:`) and an empty key (`:foo`) are omitted (InfluxDB
//!   refuses empty tag values). When a key repeats, the first occurrence wins. Tags are sorted by
//!   key, bytewise, as InfluxDB recommends.
//! - **Timestamp**: the point's timestamp in whole seconds, rounded down (post with
//!   `precision=s`).
//!
//! Escaping, checked against a real InfluxDB 1.6.7 (`shell-linux/tests/influx_server.rs`):
//!
//! - Measurement: `,` and space are escaped with a backslash (`=` needs no escape there).
//! - Tag keys and values: `,`, `=` and space are escaped.
//! - A newline or carriage return would end the line: each is written as an (escaped) space.
//! - Backslashes are written as they are (InfluxDB 1.x reads a backslash literally unless it
//!   precedes a character it unescapes), except where InfluxDB 1.x cannot read one back, where
//!   they are written as `_`:
//!   - a backslash that ends a measurement, tag key or tag value (it would escape the separator
//!     that follows);
//!   - in a measurement, one right before a `,`, space, `=` or `"` (1.x drops it, and after
//!     another backslash it drops the whole point, answering 204);
//!   - in a tag key or value, one right before a space or newline: `\\ ` would make 1.x's line
//!     splitter (which skips a backslash and the byte after it) see the fields start there, and a
//!     later `"` then swallows the newline and the following lines (`point is invalid`).
//!
//!   Checked on every string of up to four characters from `a\,"= #`, and on 1,000 seeded
//!   random records written in one request.
//! - A measurement starting with `#` would make the line a comment, which InfluxDB skips
//!   silently (204, nothing stored); one starting with a tab or NUL loses it (1.x skips them
//!   at the start of a line, and a name made only of them is refused): that first character is
//!   written as `_`. Other control characters are written as they are (1.x keeps them).
//! - A tag key `time` is refused by InfluxDB 1.x (`invalid tag key`, the whole point dropped): it
//!   is written as `time_`.
//! - Names starting with `_` are written as they are: InfluxDB 1.x stores them (checked); 2.x
//!   reserves them for its own use and may refuse the point.
//!
//! The sizes are exact: a short `out` gives [`EncodeError::BufferTooSmall`] with the number of
//! bytes that the same call needs, so a caller can grow its buffer once and retry.

use core::cmp::Ordering;

use super::series::write_number;
use super::tagset::{effective_host, for_each_sorted};
use super::wrapped::WrappedRecord;
use super::write::Writer;
use super::EncodeError;
use crate::{Tag, Timestamp};

/// Writes every point of `rec` as one line each (`\n`-terminated); returns bytes written.
///
/// `extra_tags` are the agent's global tags; `host` replaces the record's own `host` (see the
/// module docs for every rule).
///
/// ```
/// use chouette_core::wire::line::encode_lines;
/// use chouette_core::wire::wrapped::parse_wrapped;
/// use chouette_core::Tag;
///
/// let rec = parse_wrapped(br#"{"metric": "req.avg", "tags": ["k 1:a,b", "bare"], "points": [[1795310770.5, 21.5]], "type": "gauge"}"#, &mut []).unwrap();
/// let mut out = [0u8; 128];
/// let n = encode_lines(&rec, &[Tag::new("env", "test")], Some("myhost"), &mut out).unwrap();
/// assert_eq!(&out[..n], b"req.avg,env=test,host=myhost,k\\ 1=a\\,b value=21.5 1795310770\n");
/// ```
pub fn encode_lines(
    rec: &WrappedRecord<'_>,
    extra_tags: &[Tag<'_>],
    host: Option<&str>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    write_lines(rec.name(), rec.tags(), rec.host(), rec.points(), extra_tags, host, out)
}

/// [`encode_lines`] over the parts of a record.
fn write_lines(
    name: &str,
    tags: &[Tag<'_>],
    record_host: Option<&str>,
    points: &[(Timestamp, f64)],
    extra_tags: &[Tag<'_>],
    host: Option<&str>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let host = effective_host(host, record_host);
    let mut w = Writer::new(out);
    for &(timestamp, value) in points {
        if !value.is_finite() || !timestamp.0.is_finite() {
            return Err(EncodeError::NonFinite);
        }
        write_measurement(&mut w, name);
        for_each_sorted(tags, extra_tags, host, compare_keys, |key, value| {
            w.byte(b',');
            write_tag_part(&mut w, key, true);
            w.byte(b'=');
            write_tag_part(&mut w, value, false);
        });
        w.bytes(b" value=");
        write_number(&mut w, value);
        w.byte(b' ');
        w.u64(whole_seconds(timestamp.0));
        w.byte(b'\n');
    }
    w.finish()
}

/// Whole seconds, rounded down: `as` truncates toward zero, which is rounding down for the
/// non-negative timestamps the parsers accept, and saturates (a negative one would give 0).
pub(crate) fn whole_seconds(ts: f64) -> u64 {
    ts as u64
}

/// The characters a tag key or value stands for once written, before escaping: newlines become
/// spaces, a backslash at the end or before a space (or newline) becomes `_`, and the key `time`
/// becomes `time_`.
fn tag_chars(text: &str, is_key: bool) -> impl Iterator<Item = char> + '_ {
    let time = is_key && text == "time";
    let mut chars = text.chars().peekable();
    core::iter::from_fn(move || {
        let c = chars.next()?;
        Some(match c {
            '\n' | '\r' => ' ',
            '\\' if matches!(chars.peek(), None | Some(' ' | '\n' | '\r')) => '_',
            c => c,
        })
    })
    .chain(time.then_some('_'))
}

/// Orders tag keys as they are written.
fn compare_keys(a: &str, b: &str) -> Ordering {
    // Keys written as they are compare as they are; comparing chars in code-point order is
    // comparing their UTF-8 bytes.
    if is_plain_key(a) && is_plain_key(b) {
        return a.as_bytes().cmp(b.as_bytes());
    }
    tag_chars(a, true).cmp(tag_chars(b, true))
}

/// A key that [`tag_chars`] leaves unchanged: no newline, no backslash, not `time`.
fn is_plain_key(key: &str) -> bool {
    key != "time" && !key.bytes().any(|b| b == b'\n' || b == b'\r' || b == b'\\')
}

/// A tag key or value, escaped (see the module docs).
fn write_tag_part(w: &mut Writer<'_>, text: &str, is_key: bool) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let replacement: &[u8] = match b {
            b',' => b"\\,",
            b'=' => b"\\=",
            b' ' | b'\n' | b'\r' => b"\\ ",
            b'\\' => match bytes.get(i + 1) {
                None | Some(b' ' | b'\n' | b'\r') => b"_",
                Some(_) => continue,
            },
            _ => continue,
        };
        w.bytes(&bytes[start..i]);
        w.bytes(replacement);
        start = i + 1;
    }
    w.bytes(&bytes[start..]);
    if is_key && text == "time" {
        w.byte(b'_');
    }
}

/// The measurement, escaped (see the module docs).
fn write_measurement(w: &mut Writer<'_>, name: &str) {
    let bytes = name.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let replacement: &[u8] = match b {
            b',' => b"\\,",
            b' ' | b'\n' | b'\r' => b"\\ ",
            b'#' | b'\t' | 0 if i == 0 => b"_",
            b'\\' => match bytes.get(i + 1) {
                None | Some(b',' | b' ' | b'=' | b'"' | b'\n' | b'\r') => b"_",
                Some(_) => continue,
            },
            _ => continue,
        };
        w.bytes(&bytes[start..i]);
        w.bytes(replacement);
        start = i + 1;
    }
    w.bytes(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::wrapped::parse_wrapped;

    fn lines(record: &str, extra: &[Tag<'_>], host: Option<&str>) -> heapless::String<512> {
        let mut scratch = [0u8; 512];
        let rec = parse_wrapped(record.as_bytes(), &mut scratch).unwrap();
        let mut buf = [0u8; 512];
        let n = encode_lines(&rec, extra, host, &mut buf).unwrap();
        heapless::String::try_from(core::str::from_utf8(&buf[..n]).unwrap()).unwrap()
    }

    fn one(name: &str, tags: &str) -> heapless::String<512> {
        let mut record: heapless::String<256> = heapless::String::new();
        use core::fmt::Write as _;
        write!(record, r#"{{"metric": {name}, "tags": {tags}, "points": [[1.5, 1]], "type": "gauge"}}"#)
            .unwrap();
        lines(&record, &[], None)
    }

    #[test]
    fn integral_values_are_floats_and_timestamps_whole_seconds() {
        let out = lines(
            r#"{"metric": "m", "points": [[1795310770.9, 3], [1795310771, -0.5], [0.5, 1e-05], [2, 15000000000000000.0]], "type": "gauge"}"#,
            &[],
            None,
        );
        assert_eq!(
            out.as_str(),
            "m value=3 1795310770\nm value=-0.5 1795310771\nm value=1e-05 0\nm value=1.5e+16 2\n"
        );
    }

    #[test]
    fn escapes_and_replacements() {
        assert_eq!(one(r#""a b,c=d""#, "[]").as_str(), "a\\ b\\,c=d value=1 1\n");
        assert_eq!(one(r##""#x""##, "[]").as_str(), "_x value=1 1\n");
        assert_eq!(
            one(r#""\t\t\u0000x\u0001""#, r#"["\tk:\u0000v"]"#).as_str(),
            "_\t\u{0}x\u{1},\tk=\u{0}v value=1 1\n"
        );
        assert_eq!(one(r#""x#""#, "[]").as_str(), "x# value=1 1\n");
        assert_eq!(one(r#""a\nb\r""#, "[]").as_str(), "a\\ b\\  value=1 1\n");
        assert_eq!(one(r#""a\\b\\,c\\ d\\=e\\""#, "[]").as_str(), "a\\b_\\,c_\\ d_=e_ value=1 1\n");
        assert_eq!(
            one(r#""m""#, r#"["k e,y=:v a,l=ue", "q\"t:\"", "b\\:\\\\", "n\nl:x\ry"]"#).as_str(),
            "m,b_=\\_,k\\ e\\,y\\==v\\ a\\,l\\=ue,n\\ l=x\\ y,q\"t=\" value=1 1\n"
        );
        assert_eq!(one(r#""m""#, r#"["a\\,b:c\\ d"]"#).as_str(), "m,a\\\\,b=c_\\ d value=1 1\n");
        assert_eq!(one(r#""m""#, r#"["time:x", "tim:y"]"#).as_str(), "m,tim=y,time_=x value=1 1\n");
        assert_eq!(one(r#""_m""#, r#"["_k:v"]"#).as_str(), "_m,_k=v value=1 1\n");
        assert_eq!(one(r#""a\\\\\"b\\\"""#, r#"["k:a\\\""]"#).as_str(), "a\\_\"b_\",k=a\\\" value=1 1\n");
    }

    #[test]
    fn keys_that_write_alike_are_one_key() {
        // `a\n` and `a ` both write as `a\ `: the first one wins.
        assert_eq!(
            one(r#""m""#, r#"["a\n:1", "a :2", "b\\:3", "b_:4"]"#).as_str(),
            "m,a\\ =1,b_=3 value=1 1\n"
        );
    }

    #[test]
    fn non_finite_is_refused() {
        let mut buf = [0u8; 64];
        for (ts, value) in [(1.0, f64::NAN), (1.0, f64::INFINITY), (f64::NAN, 1.0)] {
            let points = [(Timestamp(1.0), 1.0), (Timestamp(ts), value)];
            assert_eq!(
                write_lines("m", &[], None, &points, &[], None, &mut buf),
                Err(EncodeError::NonFinite)
            );
        }
    }

    #[test]
    fn buffer_too_small_is_exact() {
        let rec = parse_wrapped(
            br#"{"metric": "req", "tags": ["b:2", "a:1"], "points": [[10, 1.5], [20, 2]], "type": "gauge", "host": "h"}"#,
            &mut [],
        )
        .unwrap();
        let extra = [Tag::new("env", "test")];
        let mut big = [0u8; 256];
        let n = encode_lines(&rec, &extra, None, &mut big).unwrap();
        assert_eq!(
            core::str::from_utf8(&big[..n]).unwrap(),
            "req,a=1,b=2,env=test,host=h value=1.5 10\nreq,a=1,b=2,env=test,host=h value=2 20\n"
        );
        for len in 0..n {
            let mut small = [0u8; 256];
            assert_eq!(
                encode_lines(&rec, &extra, None, &mut small[..len]),
                Err(EncodeError::BufferTooSmall { required: n })
            );
        }
        let mut exact = [0u8; 256];
        assert_eq!(encode_lines(&rec, &extra, None, &mut exact[..n]), Ok(n));
        assert_eq!(&exact[..n], &big[..n]);
    }
}
