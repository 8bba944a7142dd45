//! OpenTSDB `POST /api/put` JSON (also Apptuit's and VictoriaMetrics' OpenTSDB listener), one
//! object per point of a wrapped record:
//!
//! ```text
//! {"metric": "req.avg", "timestamp": 1795310770, "value": 21.5, "tags": {"env": "test", "host": "myhost"}}
//! ```
//!
//! [`encode_points`] writes the objects separated by `", "`, without the enclosing brackets, so a
//! caller can join the points of several records into one array.
//!
//! - `timestamp`: whole seconds, rounded down.
//! - `value`: as the series encoder writes numbers (`3`, `21.5`, `1e-05`); NaN and infinities are
//!   [`EncodeError::NonFinite`].
//! - `tags`: the same rules as the line protocol (see [`super::line`]): the record's tags, then
//!   `extra_tags`, then `host` (the caller's, else the record's own, replacing any `host` tag);
//!   bare tags, empty values and empty keys omitted; sorted by the written key; the first
//!   occurrence of a key wins (keys are compared after sanitizing, so `a b` and `a_b` are one
//!   key under [`Sanitize::Apptuit`]). OpenTSDB requires at least one tag: a point left with none
//!   is [`EncodeError::NoTags`] (reason `no_tags`), and nothing is written for the record.
//! - Strings are escaped as `json.dumps` does (`\u00e9`).
//!
//! [`Sanitize`] rewrites the metric name and the tag **keys** (never the values) as apptuit-py
//! 2.4.2 does (`apptuit/utils.py`):
//!
//! - [`Sanitize::Apptuit`]: every character other than a letter, a digit, `-`, `_`, `.` or `/`
//!   becomes `_` (Unicode letters and digits are kept), then runs of `_` become one `_`.
//! - [`Sanitize::Prometheus`]: a name starting with an ASCII digit gets a leading `_`; every
//!   character other than ASCII letters, digits and `_` becomes `_`; then runs of `_` become one.
//! - [`Sanitize::None`]: written as they are (apptuit-py would refuse invalid characters instead;
//!   the server then decides).
//!
//! "Letter or digit" is Rust's [`char::is_alphanumeric`]; Python's `\w` is `str.isalnum()`, which
//! differs only for combining marks that Unicode counts as alphabetic (Indic vowel signs such as
//! U+093E): we keep those, apptuit-py replaces them.

use core::cmp::Ordering;

use super::line::whole_seconds;
use super::series::write_number;
use super::tagset::{effective_host, for_each_sorted};
use super::wrapped::WrappedRecord;
use super::write::Writer;
use super::EncodeError;
use crate::{Tag, Timestamp};

/// How metric names and tag keys are rewritten (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sanitize {
    /// Written as they are.
    #[default]
    None,
    /// apptuit-py's `sanitize_mode="apptuit"`.
    Apptuit,
    /// apptuit-py's `sanitize_mode="prometheus"`.
    Prometheus,
}

impl Sanitize {
    /// `none`, `apptuit` or `prometheus` (as [`Sanitize::as_str`] writes them), else `None`.
    pub fn parse(text: &str) -> Option<Sanitize> {
        match text {
            "none" => Some(Sanitize::None),
            "apptuit" => Some(Sanitize::Apptuit),
            "prometheus" => Some(Sanitize::Prometheus),
            _ => None,
        }
    }

    /// The configuration name: `none`, `apptuit` or `prometheus`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sanitize::None => "none",
            Sanitize::Apptuit => "apptuit",
            Sanitize::Prometheus => "prometheus",
        }
    }

    /// The characters of `text` once sanitized.
    pub fn chars(self, text: &str) -> impl Iterator<Item = char> + Clone + '_ {
        let prefix = self == Sanitize::Prometheus && text.starts_with(|c: char| c.is_ascii_digit());
        let mut previous_underscore = prefix;
        prefix.then_some('_').into_iter().chain(text.chars().filter_map(move |c| {
            let c = match self {
                Sanitize::None => return Some(c),
                Sanitize::Apptuit if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/') => c,
                Sanitize::Prometheus if c.is_ascii_alphanumeric() || c == '_' => c,
                _ => '_',
            };
            let underscore = c == '_';
            let skip = underscore && previous_underscore;
            previous_underscore = underscore;
            (!skip).then_some(c)
        }))
    }

    /// Writes `text` sanitized, JSON-escaped, without quotes.
    fn write(self, w: &mut Writer<'_>, text: &str) {
        if self == Sanitize::None {
            w.json_str_body(text);
            return;
        }
        let mut utf8 = [0u8; 4];
        for c in self.chars(text) {
            w.json_str_body(c.encode_utf8(&mut utf8));
        }
    }

    fn compare(self, a: &str, b: &str) -> Ordering {
        if self == Sanitize::None {
            return a.as_bytes().cmp(b.as_bytes());
        }
        self.chars(a).cmp(self.chars(b))
    }
}

/// Writes every point of `rec` as a JSON object `{"metric": .., "timestamp": .., "value": .., "tags": {..}}`,
/// objects separated by ", " (no enclosing brackets); returns bytes written.
///
/// See the module docs for the rules; a short `out` gives [`EncodeError::BufferTooSmall`] with
/// the exact size needed.
///
/// ```
/// use chouette_core::wire::opentsdb::{encode_points, Sanitize};
/// use chouette_core::wire::wrapped::parse_wrapped;
/// use chouette_core::Tag;
///
/// let rec = parse_wrapped(br#"{"metric": "req avg", "tags": ["k 1:a b"], "points": [[1795310770.5, 21.5]], "type": "gauge"}"#, &mut []).unwrap();
/// let mut out = [0u8; 128];
/// let n = encode_points(&rec, &[Tag::new("env", "test")], Some("myhost"), Sanitize::Apptuit, &mut out).unwrap();
/// assert_eq!(
///     &out[..n],
///     br#"{"metric": "req_avg", "timestamp": 1795310770, "value": 21.5, "tags": {"env": "test", "host": "myhost", "k_1": "a b"}}"#
/// );
/// ```
pub fn encode_points(
    rec: &WrappedRecord<'_>,
    extra_tags: &[Tag<'_>],
    host: Option<&str>,
    sanitize: Sanitize,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    write_points(rec.name(), rec.tags(), rec.host(), rec.points(), extra_tags, host, sanitize, out)
}

/// [`encode_points`] over the parts of a record.
#[allow(clippy::too_many_arguments)]
fn write_points(
    name: &str,
    tags: &[Tag<'_>],
    record_host: Option<&str>,
    points: &[(Timestamp, f64)],
    extra_tags: &[Tag<'_>],
    host: Option<&str>,
    sanitize: Sanitize,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let host = effective_host(host, record_host);
    let mut w = Writer::new(out);
    for (i, &(timestamp, value)) in points.iter().enumerate() {
        if !value.is_finite() || !timestamp.0.is_finite() {
            return Err(EncodeError::NonFinite);
        }
        if i > 0 {
            w.bytes(b", ");
        }
        w.bytes(b"{\"metric\": \"");
        sanitize.write(&mut w, name);
        w.bytes(b"\", \"timestamp\": ");
        w.u64(whole_seconds(timestamp.0));
        w.bytes(b", \"value\": ");
        write_number(&mut w, value);
        w.bytes(b", \"tags\": {");
        let mut first = true;
        let written = for_each_sorted(
            tags,
            extra_tags,
            host,
            |a, b| sanitize.compare(a, b),
            |key, value| {
                if !first {
                    w.bytes(b", ");
                }
                first = false;
                w.byte(b'"');
                sanitize.write(&mut w, key);
                w.bytes(b"\": ");
                w.json_str(value);
            },
        );
        if written == 0 {
            return Err(EncodeError::NoTags);
        }
        w.bytes(b"}}");
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::wrapped::parse_wrapped;

    fn sanitized(mode: Sanitize, text: &str) -> heapless::String<64> {
        mode.chars(text).collect()
    }

    #[test]
    fn sanitize_modes_match_apptuit_py() {
        // Expected values are what apptuit-py 2.4.2's sanitize_name_apptuit and
        // sanitize_name_prometheus return (CPython 3.11).
        let cases: &[(&str, &str, &str)] = &[
            ("proc.cpu.percent", "proc.cpu.percent", "proc_cpu_percent"),
            ("a b  c", "a_b_c", "a_b_c"),
            ("1abc", "1abc", "_1abc"),
            ("9", "9", "_9"),
            ("_1", "_1", "_1"),
            ("__x__", "_x_", "_x_"),
            ("héllo-wörld/β", "héllo-wörld/β", "h_llo_w_rld_"),
            ("a:b;c=d", "a_b_c_d", "a_b_c_d"),
            ("a._.b", "a._.b", "a_b"),
            ("日本語 1", "日本語_1", "_1"),
            ("", "", ""),
        ];
        for &(input, apptuit, prometheus) in cases {
            assert_eq!(sanitized(Sanitize::Apptuit, input).as_str(), apptuit, "{input}");
            assert_eq!(sanitized(Sanitize::Prometheus, input).as_str(), prometheus, "{input}");
            assert_eq!(sanitized(Sanitize::None, input).as_str(), input);
        }
        for mode in [Sanitize::None, Sanitize::Apptuit, Sanitize::Prometheus] {
            assert_eq!(Sanitize::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(Sanitize::parse("Apptuit"), None);
        // The one known difference (module docs): a combining mark Unicode counts as alphabetic
        // is kept here; apptuit-py (Python's `\w`) replaces it. Other combining marks agree.
        assert_eq!(sanitized(Sanitize::Apptuit, "\u{93e}").as_str(), "\u{93e}"); // apptuit-py: "_"
        assert_eq!(sanitized(Sanitize::Apptuit, "x\u{301}y").as_str(), "x_y"); // apptuit-py: "x_y"
        assert_eq!(Sanitize::default(), Sanitize::None);
    }

    #[test]
    fn objects_are_separated_and_tags_are_required() {
        let rec = parse_wrapped(
            br#"{"metric": "m", "tags": ["b:2", "a:1", "bare"], "points": [[10.7, 1], [20, 0.25]], "type": "gauge"}"#,
            &mut [],
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let n = encode_points(&rec, &[], None, Sanitize::None, &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"metric": "m", "timestamp": 10, "value": 1, "tags": {"a": "1", "b": "2"}}, {"metric": "m", "timestamp": 20, "value": 0.25, "tags": {"a": "1", "b": "2"}}"#
        );
        for len in 0..n {
            assert_eq!(
                encode_points(&rec, &[], None, Sanitize::None, &mut buf[..len]),
                Err(EncodeError::BufferTooSmall { required: n })
            );
        }
        let bare = parse_wrapped(
            br#"{"metric": "m", "tags": ["bare", "e:"], "points": [[1, 1]], "type": "gauge"}"#,
            &mut [],
        )
        .unwrap();
        assert_eq!(encode_points(&bare, &[], None, Sanitize::None, &mut buf), Err(EncodeError::NoTags));
        assert_eq!(EncodeError::NoTags.reason(), "no_tags");
        let n = encode_points(&bare, &[], Some("h"), Sanitize::None, &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"metric": "m", "timestamp": 1, "value": 1, "tags": {"host": "h"}}"#
        );
    }

    #[test]
    fn keys_equal_after_sanitizing_are_one_key() {
        let rec = parse_wrapped(
            br#"{"metric": "m", "tags": ["a b:1", "a_b:2", "a__b:3", "1x:4"], "points": [[1, 1]], "type": "gauge"}"#,
            &mut [],
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let n = encode_points(&rec, &[], None, Sanitize::Prometheus, &mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"metric": "m", "timestamp": 1, "value": 1, "tags": {"_1x": "4", "a_b": "1"}}"#
        );
    }

    #[test]
    fn non_finite_is_refused() {
        let mut buf = [0u8; 256];
        let tags = [Tag::new("a", "b")];
        for (ts, value) in [(1.0, f64::NAN), (1.0, f64::NEG_INFINITY), (f64::INFINITY, 1.0)] {
            let points = [(Timestamp(1.0), 1.0), (Timestamp(ts), value)];
            assert_eq!(
                write_points("m", &tags, None, &points, &[], None, Sanitize::None, &mut buf),
                Err(EncodeError::NonFinite)
            );
        }
    }
}
