//! Datadog v1 `POST /api/v1/series` payloads, streamed into a caller buffer and split at a size
//! limit.
//!
//! ```text
//! {"series": [{"metric": "req", "tags": ["ep:a", "env:test"], "type": "count", "interval": 10,
//!   "host": "myhost", "points": [[1795310770, 1], [1795310780, 3]]}, ...]}
//! ```
//!
//! Differences from what the original Python sender posts (`json.dumps({"series": records})`),
//! all accepted by Datadog's intake:
//!
//! - **Key order** is `metric, tags, type, interval, host, points`: `points` comes last so the
//!   open entry can take more points while streaming (the original wrote `points` third).
//! - **Grouping**: consecutive pushes of one series (same name with suffix, same tags, same type,
//!   same interval, same host) share one entry whose `points` holds several `[ts, value]` pairs;
//!   the original wrote one entry per point. A series that comes back after another one opens a
//!   new entry (still correct, just larger).
//! - **Global tags** (`extra_tags`) are appended after the point's own tags, in order, as the
//!   original does; unlike the original, a global tag equal (same key and value) to a tag already
//!   on the point, or to an earlier global tag, is not written twice.
//! - **Numbers**: an integral value or timestamp is written as an integer (`1795310770`, `3`),
//!   anything else as Python's `repr` (`21.5`, `1e-05`); the original wrote timestamps as floats
//!   (`1795310770.0`). Both parse to the same number.
//! - `interval` is written when it is `Some` and not zero (the original omitted a falsy
//!   interval); `host` when the caller gives one.
//!
//! Strings are escaped as `json.dumps` does (`ensure_ascii`), separators are `", "` and `": "`.
//!
//! How it stays fast (about 200 ns a point or less, see `benches/encode.rs`): no `core::fmt` per
//! point (short decimals and integers have their own formatters, checked against
//! [`Writer::f64`]); text that needs no escaping is copied in one go; and whether a point belongs
//! to the open entry is decided by comparing what its header *would* be with the open entry's
//! header bytes already in the buffer, stopping at the first difference: no copy of the previous
//! point is kept and nothing is hashed, so the answer is exact.

use core::fmt;
use core::ops::Range;

use super::write::Writer;
use super::EncodeError;
use crate::limits;
use crate::metric::{Tag, Wrapped};

/// Default most points in one payload: 10,000.
///
/// This is the original sender's bulk size (`METRICS_BULK_SIZE`, one request per 10,000 records)
/// and the Datadog Agent's `serializer_max_series_points_per_payload`. At about 100 bytes per
/// point uncompressed and 15 per point compressed (level 6) a full payload is about 1 MB before
/// and 150 KB after compression: far under v1's 62 MiB / 3.2 MB limits, so the compressed limit
/// is not reached even when compression does much worse than usual, and a payload that has to be
/// retried stays small on a slow uplink.
pub const DEFAULT_MAX_POINTS: usize = 10_000;

const PREFIX: &[u8] = b"{\"series\": [";
/// Closes the payload when no entry is open.
const CLOSE_EMPTY: &[u8] = b"]}";
/// Closes the open entry's `points`, the entry, the `series` array and the object.
const CLOSE_OPEN: &[u8] = b"]}]}";
/// Closes the open entry before the next one starts.
const NEXT_ENTRY: &[u8] = b"]}, ";
/// Separates two points of one entry.
const NEXT_POINT: &[u8] = b", ";

/// How a payload opens, `{"series": [`: a payload is this, entries joined by
/// [`ENTRY_SEPARATOR`], then [`PAYLOAD_CLOSE`]. An entry is what one encoder's payload holds
/// between these (a caller that encodes each record once joins the entries itself).
pub const PAYLOAD_OPEN: &[u8] = PREFIX;
/// How a payload closes after its last entry, `]}`.
pub const PAYLOAD_CLOSE: &[u8] = CLOSE_EMPTY;
/// Between two entries of one payload, `, `.
pub const ENTRY_SEPARATOR: &[u8] = NEXT_POINT;

/// The smallest payload, `{"series": []}`: 14 bytes.
pub const EMPTY_PAYLOAD_BYTES: usize = PREFIX.len() + CLOSE_EMPTY.len();

/// Where a payload must be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Largest payload before compression, in bytes, closing brackets included.
    pub max_payload_bytes: usize,
    /// Most points in one payload (at least one is always accepted).
    pub max_points: usize,
}

impl SeriesLimits {
    /// v1's uncompressed limit ([`limits::V1_MAX_UNCOMPRESSED_BYTES`], 62 MiB) and
    /// [`DEFAULT_MAX_POINTS`].
    pub const V1: SeriesLimits =
        SeriesLimits { max_payload_bytes: limits::V1_MAX_UNCOMPRESSED_BYTES, max_points: DEFAULT_MAX_POINTS };
}

impl Default for SeriesLimits {
    fn default() -> Self {
        SeriesLimits::V1
    }
}

/// Why one point was not added to a payload. The payload is unchanged in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError {
    /// The payload cannot take this point without going over the byte limit, the point limit or
    /// the buffer. Finish this payload, start a new encoder and push the same point again.
    Full,
    /// The value or the timestamp is NaN or infinite, which JSON cannot carry. Drop the point.
    NonFinite,
    /// The point alone, in an empty payload, would need more than the byte limit (or the
    /// buffer): it can never be sent. Dead-letter it.
    EntryTooLarge {
        /// Bytes an empty payload holding only this point needs.
        required: usize,
        /// The smaller of the configured byte limit and the buffer length.
        limit: usize,
    },
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full => f.write_str("payload full: finish it and push the point again"),
            PushError::NonFinite => {
                f.write_str("value or timestamp is NaN or infinite, which JSON cannot carry")
            }
            PushError::EntryTooLarge { required, limit } => {
                write!(f, "one point needs a {required}-byte payload, over the limit of {limit}")
            }
        }
    }
}

impl core::error::Error for PushError {}

/// A finished payload: the JSON bytes and what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    bytes: &'a [u8],
    points: usize,
    entries: usize,
}

impl<'a> Payload<'a> {
    /// The JSON body.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Length of the body, in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the payload holds no point (`{"series": []}`).
    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// Points in the payload (the agent's `dispatched.metrics.number`).
    pub fn points(&self) -> usize {
        self.points
    }

    /// Entries (`series[]` elements) in the payload; at most [`Payload::points`].
    pub fn entries(&self) -> usize {
        self.entries
    }
}

/// Streams points into one v1 series payload in a caller buffer.
///
/// ```
/// use chouette_core::wire::series::{SeriesEncoder, SeriesLimits};
/// use chouette_core::{MetricName, OutputType, Tag, Timestamp, Wrapped};
///
/// let tags = [Tag::new("ep", "a")];
/// let point = |ts: f64, value: f64| Wrapped {
///     name: MetricName::plain("req"),
///     kind: OutputType::Count,
///     tags: &tags,
///     timestamp: Timestamp(ts),
///     value,
///     interval: Some(10),
/// };
/// let mut buf = [0u8; 256];
/// let mut encoder = SeriesEncoder::new(&mut buf, SeriesLimits::default());
/// encoder.push(&point(1795310770.0, 1.0), &[Tag::new("env", "test")], Some("myhost")).unwrap();
/// encoder.push(&point(1795310780.0, 3.0), &[Tag::new("env", "test")], Some("myhost")).unwrap();
/// let payload = encoder.finish().unwrap();
/// assert_eq!(
///     payload.bytes(),
///     br#"{"series": [{"metric": "req", "tags": ["ep:a", "env:test"], "type": "count", "interval": 10, "host": "myhost", "points": [[1795310770, 1], [1795310780, 3]]}]}"#
/// );
/// assert_eq!((payload.points(), payload.entries()), (2, 1));
/// ```
///
/// After `Err(PushError::Full)`, [`SeriesEncoder::finish`] the payload, start a new encoder and
/// push the same point again. The bytes past the payload's current end are scratch space: the
/// buffer holds a valid payload only once `finish` has closed it.
#[derive(Debug)]
pub struct SeriesEncoder<'a> {
    out: &'a mut [u8],
    /// The byte limit: the smaller of `max_payload_bytes` and the buffer length.
    cap: usize,
    /// The point limit (at least 1).
    max_points: usize,
    /// End of the committed text (entries and points so far, without closing brackets).
    len: usize,
    /// Where the open entry's header (everything up to `"points": [`) lies, if one is open.
    open: Option<Range<usize>>,
    points: usize,
    entries: usize,
}

impl<'a> SeriesEncoder<'a> {
    /// An encoder writing into `out`. A buffer shorter than [`EMPTY_PAYLOAD_BYTES`] refuses
    /// every point, and `finish` then reports `BufferTooSmall`. A byte limit under
    /// [`EMPTY_PAYLOAD_BYTES`] refuses every point (`EntryTooLarge`); `finish` still writes the
    /// 14-byte empty payload, which is not worth sending.
    pub fn new(out: &'a mut [u8], limits: SeriesLimits) -> Self {
        if let Some(dst) = out.get_mut(..PREFIX.len()) {
            dst.copy_from_slice(PREFIX);
        }
        let cap = limits.max_payload_bytes.min(out.len());
        SeriesEncoder {
            out,
            cap,
            max_points: limits.max_points.max(1),
            len: PREFIX.len(),
            open: None,
            points: 0,
            entries: 0,
        }
    }

    /// Points pushed so far.
    pub fn points(&self) -> usize {
        self.points
    }

    /// Entries (`series[]` elements) so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Length the payload would have if finished now, closing brackets included.
    pub fn len(&self) -> usize {
        self.len + self.closing().len()
    }

    /// Whether no point was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    fn closing(&self) -> &'static [u8] {
        if self.open.is_some() {
            CLOSE_OPEN
        } else {
            CLOSE_EMPTY
        }
    }

    /// Adds one point, with the agent's global tags `extra_tags` appended to its own tags and
    /// `host` as the entry's `host`. On error the payload is unchanged (see [`PushError`]).
    pub fn push(
        &mut self,
        point: &Wrapped<'_>,
        extra_tags: &[Tag<'_>],
        host: Option<&str>,
    ) -> Result<(), PushError> {
        if !point.value.is_finite() || !point.timestamp.0.is_finite() {
            return Err(PushError::NonFinite);
        }
        if let Some(open) = self.open.clone() {
            // Compare the point's header with the open entry's; if that cannot tell (a string
            // needs escaping), render it where a new entry would go and compare the bytes.
            let at = self.len + NEXT_ENTRY.len();
            let mut header = None;
            let same = match header_matches(&self.out[open.clone()], point, extra_tags, host) {
                Some(same) => same,
                None => {
                    let len = write_at(self.out, at, |w| write_header(w, point, extra_tags, host));
                    header = Some(len);
                    at + len <= self.out.len() && self.out[at..at + len] == self.out[open.clone()]
                }
            };
            if same {
                let at = self.len + NEXT_POINT.len();
                let pair = write_at(self.out, at, |w| write_point(w, point));
                if self.points >= self.max_points || at + pair + CLOSE_OPEN.len() > self.cap {
                    return Err(PushError::Full);
                }
                self.out[self.len..at].copy_from_slice(NEXT_POINT);
                self.len = at + pair;
                self.points += 1;
                return Ok(());
            }
            let header = header
                .unwrap_or_else(|| write_at(self.out, at, |w| write_header(w, point, extra_tags, host)));
            self.open_entry(at, header, point)
        } else {
            let at = self.len;
            let header = write_at(self.out, at, |w| write_header(w, point, extra_tags, host));
            self.open_entry(at, header, point)
        }
    }

    /// Commits a new entry whose header (`header` bytes) is already written at `at`.
    fn open_entry(&mut self, at: usize, header: usize, point: &Wrapped<'_>) -> Result<(), PushError> {
        let pair = write_at(self.out, at + header, |w| write_point(w, point));
        let end = at + header + pair;
        if self.points >= self.max_points || end + CLOSE_OPEN.len() > self.cap {
            let required = PREFIX.len() + header + pair + CLOSE_OPEN.len();
            if required > self.cap {
                return Err(PushError::EntryTooLarge { required, limit: self.cap });
            }
            return Err(PushError::Full);
        }
        if self.open.is_some() {
            self.out[self.len..at].copy_from_slice(NEXT_ENTRY);
        }
        self.open = Some(at..at + header);
        self.len = end;
        self.points += 1;
        self.entries += 1;
        Ok(())
    }

    /// Closes the payload and returns it.
    ///
    /// Fails only with `BufferTooSmall` when the buffer is shorter than [`EMPTY_PAYLOAD_BYTES`].
    pub fn finish(self) -> Result<Payload<'a>, EncodeError> {
        let closing = self.closing();
        let end = self.len + closing.len();
        let out: &'a mut [u8] = self.out;
        match out.get_mut(self.len..end) {
            Some(dst) => dst.copy_from_slice(closing),
            None => return Err(EncodeError::BufferTooSmall { required: end }),
        }
        let out: &'a [u8] = out;
        Ok(Payload { bytes: &out[..end], points: self.points, entries: self.entries })
    }
}

/// Runs `f` on a writer over `out[at..]` (empty if `at` is past the end); returns the bytes it
/// wrote, counting those that did not fit.
#[inline]
fn write_at(out: &mut [u8], at: usize, f: impl FnOnce(&mut Writer<'_>)) -> usize {
    let mut w = Writer::new(out.get_mut(at..).unwrap_or_default());
    f(&mut w);
    w.len()
}

/// Where a header goes: a [`Writer`] (to write it) or a [`Matcher`] (to compare a point's header
/// with the open entry's without writing it). One generic `write_header` serves both, so the two
/// cannot drift apart.
trait HeaderSink {
    fn bytes(&mut self, bytes: &[u8]);
    /// A JSON string body, escaped as [`Writer::json_str_body`] does.
    fn str_body(&mut self, text: &str);
    fn u64(&mut self, value: u64);
}

impl HeaderSink for Writer<'_> {
    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        Writer::bytes(self, bytes);
    }

    /// With a fast path for the usual text that needs no escape: one branch-free scan the
    /// compiler vectorises, then one copy.
    #[inline]
    fn str_body(&mut self, text: &str) {
        if is_plain(text) {
            Writer::bytes(self, text.as_bytes());
        } else {
            self.json_str_body(text);
        }
    }

    #[inline]
    fn u64(&mut self, value: u64) {
        Writer::u64(self, value);
    }
}

/// Compares what would be written with `expected`, byte by byte, without writing.
struct Matcher<'h> {
    expected: &'h [u8],
    pos: usize,
    /// Everything so far matched.
    same: bool,
    /// A string needed escaping before any difference: the matcher stopped there and cannot
    /// tell; the caller must render and compare.
    undecided: bool,
}

impl HeaderSink for Matcher<'_> {
    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        if !self.same {
            return;
        }
        let end = self.pos + bytes.len();
        self.same = self.expected.get(self.pos..end) == Some(bytes);
        self.pos = end;
    }

    #[inline]
    fn str_body(&mut self, text: &str) {
        if !self.same {
            return;
        }
        if is_plain(text) {
            self.bytes(text.as_bytes());
        } else {
            // Stop here: the rest cannot be aligned without rendering this string.
            self.undecided = true;
            self.same = false;
        }
    }

    #[inline]
    fn u64(&mut self, value: u64) {
        if !self.same {
            return;
        }
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.bytes(&digits[at..]);
    }
}

/// Whether the open entry's header (`expected`) is the one `point` would get: `Some(answer)`,
/// or `None` when a string needs escaping and only rendering it can tell.
#[inline]
fn header_matches(
    expected: &[u8],
    point: &Wrapped<'_>,
    extra_tags: &[Tag<'_>],
    host: Option<&str>,
) -> Option<bool> {
    let mut m = Matcher { expected, pos: 0, same: true, undecided: false };
    write_header(&mut m, point, extra_tags, host);
    if m.undecided {
        None
    } else {
        Some(m.same && m.pos == expected.len())
    }
}

/// Text that JSON-escapes to itself: printable ASCII without `"` or `\\`.
#[inline]
fn is_plain(text: &str) -> bool {
    text.bytes().fold(0u8, |acc, b| acc | NEEDS_ESCAPE[b as usize]) == 0
}

/// 1 for the bytes [`Writer::json_str_body`] escapes (controls, `"`, `\\`, DEL, non-ASCII).
static NEEDS_ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        if b < 0x20 || b >= 0x7f || b == b'"' as usize || b == b'\\' as usize {
            table[b] = 1;
        }
        b += 1;
    }
    table
};

/// Everything of an entry up to and including `"points": [`.
fn write_header<S: HeaderSink>(w: &mut S, point: &Wrapped<'_>, extra_tags: &[Tag<'_>], host: Option<&str>) {
    w.bytes(b"{\"metric\": \"");
    w.str_body(point.name.base);
    if let Some(suffix) = point.name.suffix {
        w.bytes(b".");
        w.str_body(suffix);
    }
    w.bytes(b"\", \"tags\": [");
    let mut first = true;
    for tag in point.tags {
        write_tag(w, tag, &mut first);
    }
    for (i, tag) in extra_tags.iter().enumerate() {
        if point.tags.contains(tag) || extra_tags[..i].contains(tag) {
            continue;
        }
        write_tag(w, tag, &mut first);
    }
    w.bytes(b"], \"type\": \"");
    w.bytes(point.kind.as_str().as_bytes());
    w.bytes(b"\"");
    if let Some(interval) = point.interval.filter(|&i| i != 0) {
        w.bytes(b", \"interval\": ");
        w.u64(u64::from(interval));
    }
    if let Some(host) = host {
        w.bytes(b", \"host\": \"");
        w.str_body(host);
        w.bytes(b"\"");
    }
    w.bytes(b", \"points\": [");
}

#[inline]
fn write_tag<S: HeaderSink>(w: &mut S, tag: &Tag<'_>, first: &mut bool) {
    w.bytes(if *first { b"\"" } else { b", \"" });
    *first = false;
    w.str_body(tag.key);
    if let Some(value) = tag.value {
        w.bytes(b":");
        w.str_body(value);
    }
    w.bytes(b"\"");
}

/// Two decimal digits at a time: `"00"` to `"99"`.
static DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut table = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        table[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    table
};

/// [`Writer::u64`], two digits per division (timestamps have ten).
#[inline]
fn write_u64(w: &mut Writer<'_>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while value >= 100 {
        at -= 2;
        digits[at..at + 2].copy_from_slice(&DIGIT_PAIRS[(value % 100) as usize]);
        value /= 100;
    }
    if value >= 10 {
        at -= 2;
        digits[at..at + 2].copy_from_slice(&DIGIT_PAIRS[value as usize]);
    } else {
        at -= 1;
        digits[at] = b'0' + value as u8;
    }
    w.bytes(&digits[at..]);
}

/// Exact powers of ten, `10^0` to `10^9`.
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// [`Writer::f64`] (integers as integers, other values as Python's `repr`), with a fast path
/// that avoids `core::fmt` for the usual short decimals (`0.25`, `21.5`, `1795310771.125`).
///
/// For `1e-4 <= |v| < 2^49 / 10^k`, the value is written as `n / 10^k` with the smallest `k` in
/// `1..=9` for which the integer `n = round(v * 10^k)` gives back `v` when divided by `10^k` (a
/// correctly rounded IEEE division of two exact numbers, so the text parses back to `v`).
/// The smallest such `k` is the shortest round-trip text, which is what `repr` prints in fixed
/// notation (`1e-4 <= |v| < 1e16`); `n < 2^49` keeps `n` unique, so it is also the closest.
/// Anything else goes to [`Writer::f64`]. A unit test compares both on many values.
#[inline]
pub(crate) fn write_number(w: &mut Writer<'_>, value: f64) {
    const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53
    const UNIQUE: f64 = 562_949_953_421_312.0; // 2^49
    let abs = value.abs();
    if abs < EXACT_INT && value == (value as i64) as f64 && !(value == 0.0 && value.is_sign_negative()) {
        w.i64(value as i64);
        return;
    }
    if (1e-4..UNIQUE).contains(&abs) {
        for (k, &scale) in POW10.iter().enumerate().skip(1) {
            // `abs * scale < 2^50` has an ulp of at most 1/4, so adding 0.5 is exact: rounding.
            let n = (abs * scale + 0.5) as u64;
            if n as f64 >= UNIQUE {
                break;
            }
            if n as f64 / scale == abs {
                if value < 0.0 {
                    w.byte(b'-');
                }
                let int = n / (scale as u64);
                let frac = n % (scale as u64);
                write_u64(w, int);
                let mut digits = [b'0'; 9];
                let mut rest = frac;
                for d in digits[..k].iter_mut().rev() {
                    *d = b'0' + (rest % 10) as u8;
                    rest /= 10;
                }
                w.byte(b'.');
                w.bytes(&digits[..k]);
                return;
            }
        }
    }
    w.f64(value);
}

/// `[ts, value]`, both finite (checked by the caller).
#[inline]
fn write_point(w: &mut Writer<'_>, point: &Wrapped<'_>) {
    w.byte(b'[');
    write_number(w, point.timestamp.0);
    w.bytes(b", ");
    write_number(w, point.value);
    w.byte(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{MetricName, OutputType, Timestamp};

    fn gauge<'a>(name: &'a str, tags: &'a [Tag<'a>], ts: f64, value: f64) -> Wrapped<'a> {
        Wrapped {
            name: MetricName::plain(name),
            kind: OutputType::Gauge,
            tags,
            timestamp: Timestamp(ts),
            value,
            interval: None,
        }
    }

    fn text<'b>(payload: &Payload<'b>) -> &'b str {
        core::str::from_utf8(payload.bytes()).unwrap()
    }

    #[test]
    fn fast_numbers_match_writer_f64() {
        fn both(value: f64) -> (heapless::Vec<u8, 64>, heapless::Vec<u8, 64>) {
            let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
            let mut wa = Writer::new(&mut a);
            write_number(&mut wa, value);
            let na = wa.finish().unwrap();
            let mut wb = Writer::new(&mut b);
            wb.f64(value);
            let nb = wb.finish().unwrap();
            (heapless::Vec::from_slice(&a[..na]).unwrap(), heapless::Vec::from_slice(&b[..nb]).unwrap())
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..200_000u64 {
            let r = next();
            let value = match i % 6 {
                0 => (r % 100_000_000) as f64 / POW10[(r >> 40) as usize % 10],
                1 => f64::from_bits(r),
                2 => (r % 1_000_000) as f64 * 0.1,
                3 => 1_795_310_770.0 + (r % 1000) as f64 * 0.001,
                4 => ((r % 2_000_000) as f64 - 1e6) / 7.0,
                _ => (r >> 11) as f64 / (1u64 << 53) as f64 * POW10[(r % 10) as usize],
            };
            if !value.is_finite() {
                continue;
            }
            let (fast, slow) = both(value);
            assert_eq!(fast, slow, "{value:e}");
        }
        for value in [0.1 + 0.2, 1e-4, 9.9999e-5, 0.0001, 1e15 + 0.5, -0.0, 0.0, -2.5, 5e-324] {
            let (fast, slow) = both(value);
            assert_eq!(fast, slow, "{value:e}");
        }
    }

    #[test]
    fn matcher_agrees_with_the_rendered_header() {
        let tags = [Tag::new("a", "b"), Tag::parse("bare")];
        let extra = [Tag::new("env", "test")];
        let p = Wrapped { interval: Some(10), ..gauge("m", &tags, 1.0, 1.0) };
        let mut buf = [0u8; 256];
        let n = write_at(&mut buf, 0, |w| write_header(w, &p, &extra, Some("h")));
        let hdr = &buf[..n];
        assert_eq!(header_matches(hdr, &p, &extra, Some("h")), Some(true));
        assert_eq!(header_matches(hdr, &p, &extra, None), Some(false));
        assert_eq!(header_matches(hdr, &p, &[], Some("h")), Some(false));
        assert_eq!(header_matches(&hdr[..n - 1], &p, &extra, Some("h")), Some(false));
        let q = Wrapped { interval: Some(1), ..p };
        assert_eq!(header_matches(hdr, &q, &extra, Some("h")), Some(false));
        let r = Wrapped { name: MetricName { base: "m", suffix: Some("x") }, ..p };
        assert_eq!(header_matches(hdr, &r, &extra, Some("h")), Some(false));
        assert_eq!(header_matches(hdr, &p, &extra, Some("hôte")), None);
    }

    #[test]
    fn empty_payload() {
        let mut buf = [0u8; 64];
        let payload = SeriesEncoder::new(&mut buf, SeriesLimits::default()).finish().unwrap();
        assert_eq!(text(&payload), r#"{"series": []}"#);
        assert_eq!(payload.len(), EMPTY_PAYLOAD_BYTES);
        assert!(payload.is_empty());
    }

    #[test]
    fn tiny_buffer_reports_the_empty_payload_size() {
        let mut buf = [0u8; 10];
        let mut enc = SeriesEncoder::new(&mut buf, SeriesLimits::default());
        assert!(matches!(
            enc.push(&gauge("a", &[], 1.0, 1.0), &[], None),
            Err(PushError::EntryTooLarge { limit: 10, .. })
        ));
        assert_eq!(enc.finish(), Err(EncodeError::BufferTooSmall { required: 14 }));
    }

    #[test]
    fn groups_consecutive_points_and_splits_on_change() {
        let mut buf = [0u8; 512];
        let mut enc = SeriesEncoder::new(&mut buf, SeriesLimits::default());
        let t = [Tag::new("a", "b")];
        enc.push(&gauge("x", &t, 10.0, 1.0), &[], None).unwrap();
        enc.push(&gauge("x", &t, 20.0, 2.5), &[], None).unwrap();
        enc.push(&gauge("y", &t, 10.0, 3.0), &[], None).unwrap();
        enc.push(&gauge("x", &t, 30.0, 4.0), &[], None).unwrap();
        enc.push(&gauge("x", &t, 40.0, 5.0), &[], Some("h")).unwrap();
        let payload = enc.finish().unwrap();
        assert_eq!(
            text(&payload),
            concat!(
                r#"{"series": [{"metric": "x", "tags": ["a:b"], "type": "gauge", "points": [[10, 1], [20, 2.5]]}, "#,
                r#"{"metric": "y", "tags": ["a:b"], "type": "gauge", "points": [[10, 3]]}, "#,
                r#"{"metric": "x", "tags": ["a:b"], "type": "gauge", "points": [[30, 4]]}, "#,
                r#"{"metric": "x", "tags": ["a:b"], "type": "gauge", "host": "h", "points": [[40, 5]]}]}"#,
            )
        );
        assert_eq!((payload.points(), payload.entries()), (5, 4));
    }

    #[test]
    fn global_tags_are_appended_without_exact_duplicates() {
        let mut buf = [0u8; 256];
        let mut enc = SeriesEncoder::new(&mut buf, SeriesLimits::default());
        let own = [Tag::new("env", "test"), Tag::new("z", "1")];
        let global =
            [Tag::new("env", "test"), Tag::new("env", "prod"), Tag::parse("bare"), Tag::parse("bare")];
        enc.push(&gauge("m", &own, 1.0, 1.0), &global, None).unwrap();
        let payload = enc.finish().unwrap();
        assert_eq!(
            text(&payload),
            r#"{"series": [{"metric": "m", "tags": ["env:test", "z:1", "env:prod", "bare"], "type": "gauge", "points": [[1, 1]]}]}"#
        );
    }

    #[test]
    fn non_finite_points_leave_the_payload_unchanged() {
        let mut buf = [0u8; 256];
        let mut enc = SeriesEncoder::new(&mut buf, SeriesLimits::default());
        enc.push(&gauge("m", &[], 1.0, 1.0), &[], None).unwrap();
        assert_eq!(enc.push(&gauge("m", &[], 2.0, f64::NAN), &[], None), Err(PushError::NonFinite));
        assert_eq!(enc.push(&gauge("n", &[], f64::INFINITY, 1.0), &[], None), Err(PushError::NonFinite));
        let payload = enc.finish().unwrap();
        assert_eq!(
            text(&payload),
            r#"{"series": [{"metric": "m", "tags": [], "type": "gauge", "points": [[1, 1]]}]}"#
        );
    }

    #[test]
    fn full_at_the_byte_limit_keeps_the_payload_closed_and_within_it() {
        // One entry with one point is 78 bytes; a second point of the same series adds 8.
        let one = r#"{"series": [{"metric": "m", "tags": [], "type": "gauge", "points": [[1, 1]]}]}"#;
        assert_eq!(one.len(), 78);
        for limit in 78..100 {
            let mut buf = [0u8; 256];
            let limits = SeriesLimits { max_payload_bytes: limit, max_points: 100 };
            let mut enc = SeriesEncoder::new(&mut buf, limits);
            enc.push(&gauge("m", &[], 1.0, 1.0), &[], None).unwrap();
            let second = enc.push(&gauge("m", &[], 2.0, 2.0), &[], None);
            assert_eq!(second.is_ok(), limit >= 78 + 8, "limit {limit}");
            let third = enc.push(&gauge("n", &[], 2.0, 2.0), &[], None);
            assert!(third == Err(PushError::Full) || limit >= 78 + 8 + 4 + 58, "limit {limit}");
            let payload = enc.finish().unwrap();
            assert!(payload.len() <= limit);
        }
    }

    #[test]
    fn buffer_end_is_a_limit_too() {
        let mut buf = [0u8; 90];
        let mut enc = SeriesEncoder::new(&mut buf, SeriesLimits::default());
        enc.push(&gauge("m", &[], 1.0, 1.0), &[], None).unwrap();
        assert_eq!(enc.push(&gauge("q", &[], 2.0, 2.0), &[], None), Err(PushError::Full));
        assert_eq!(enc.finish().unwrap().len(), 78);
    }

    #[test]
    fn point_limit() {
        let mut buf = [0u8; 512];
        let limits = SeriesLimits { max_payload_bytes: 512, max_points: 2 };
        let mut enc = SeriesEncoder::new(&mut buf, limits);
        enc.push(&gauge("m", &[], 1.0, 1.0), &[], None).unwrap();
        enc.push(&gauge("m", &[], 2.0, 1.0), &[], None).unwrap();
        assert_eq!(enc.push(&gauge("m", &[], 3.0, 1.0), &[], None), Err(PushError::Full));
        assert_eq!(enc.push(&gauge("n", &[], 3.0, 1.0), &[], None), Err(PushError::Full));
        assert_eq!(enc.finish().unwrap().points(), 2);
    }

    #[test]
    fn an_entry_over_the_limit_is_too_large_even_in_an_empty_payload() {
        let mut buf = [0u8; 512];
        let limits = SeriesLimits { max_payload_bytes: 60, max_points: 10 };
        let mut enc = SeriesEncoder::new(&mut buf, limits);
        assert_eq!(
            enc.push(&gauge("m", &[], 1.0, 1.0), &[], None),
            Err(PushError::EntryTooLarge { required: 78, limit: 60 })
        );
        assert_eq!(text(&enc.finish().unwrap()), r#"{"series": []}"#);
    }
}
