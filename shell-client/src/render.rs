//! Rendering records as the original Python client writes them (compat §2.2, §2.4), and ids.

use chouette_core::wire::write::Writer;
use chouette_core::Member;

use crate::sanitize::SanitizeMode;

/// A metric value: an integer is written as Python writes an `int` (`2`), a float as Python's
/// `repr` (`2.0`, `0.1`, `1e-05`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer value.
    Int(i64),
    /// A float value (must be finite: non-finite values are dropped and counted).
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

    fn negated(self) -> Number {
        match self {
            Number::Int(i) => Number::Int(i.saturating_neg()),
            Number::Float(f) => Number::Float(-f),
        }
    }

    pub(crate) fn is_finite(self) -> bool {
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
    fn from(v: u64) -> Number {
        i64::try_from(v).map_or(Number::Float(v as f64), Number::Int)
    }
}

impl From<usize> for Number {
    fn from(v: usize) -> Number {
        Number::from(v as u64)
    }
}

impl std::ops::Neg for Number {
    type Output = Number;
    fn neg(self) -> Number {
        self.negated()
    }
}

/// The value of a raw record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawValue<'a> {
    Number(Number),
    Set(&'a [Member<'a>]),
    /// Set members already sorted and rendered as JSON texts (aggregating mode).
    SetTexts(&'a [String]),
    /// Several histogram samples in one record (aggregating mode; core's `Value::Samples`).
    Samples(&'a [Number]),
}

pub(crate) fn write_number(w: &mut Writer<'_>, n: Number) {
    match n {
        Number::Int(i) => w.i64(i),
        Number::Float(f) => w.python_float(f),
    }
}

pub(crate) fn write_member(w: &mut Writer<'_>, m: Member<'_>) {
    match m {
        Member::Str(s) => w.json_str(s),
        Member::Num(n) => w.f64(n),
    }
}

/// Renders one raw record: `{"metric": …, "type": …, "value": …, "timestamp": …, "tags": {…}}`
/// with Python's `json.dumps` separators, key order and number formatting. Global tags come
/// first; a call tag with the same key replaces the global one (as a Python dict would).
#[allow(clippy::too_many_arguments)]
pub(crate) fn raw_metric(
    w: &mut Writer<'_>,
    sanitize: SanitizeMode,
    name: &str,
    kind: &str,
    value: RawValue<'_>,
    timestamp: f64,
    global: &[(String, String)],
    tags: &[(&str, &str)],
) {
    w.str("{\"metric\": ");
    w.json_str(&sanitize.name(name));
    w.str(", \"type\": ");
    w.json_str(kind);
    w.str(", \"value\": ");
    match value {
        RawValue::Number(n) => write_number(w, n),
        RawValue::Set(members) => {
            w.byte(b'[');
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    w.str(", ");
                }
                write_member(w, *m);
            }
            w.byte(b']');
        }
        RawValue::Samples(samples) => {
            w.byte(b'[');
            for (i, n) in samples.iter().enumerate() {
                if i > 0 {
                    w.str(", ");
                }
                write_number(w, *n);
            }
            w.byte(b']');
        }
        RawValue::SetTexts(members) => {
            w.byte(b'[');
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    w.str(", ");
                }
                w.str(m);
            }
            w.byte(b']');
        }
    }
    w.str(", \"timestamp\": ");
    write_timestamp(w, timestamp);
    w.str(", \"tags\": {");
    let mut first = true;
    let mut tag = |w: &mut Writer<'_>, k: &str, v: &str| {
        if !first {
            w.str(", ");
        }
        first = false;
        w.json_str(&sanitize.tag_key(k));
        w.str(": ");
        w.json_str(v);
    };
    for (k, v) in global {
        if !tags.iter().any(|(ck, _)| ck == k) {
            tag(w, k, v);
        }
    }
    for (k, v) in tags {
        tag(w, k, v);
    }
    w.str("}}");
}

/// Writes a timestamp as Python's `repr(float)` would. Fast path for what the clock gives
/// (whole microseconds below 2^32 s, i.e. until 2106): the shortest text that reads back is then
/// the six-decimal form with its trailing zeros removed, because neighbouring microseconds are
/// further apart than one ulp (at most 4.8e-7 there), so no shorter decimal reads back to the
/// same double. Anything else goes through [`Writer::python_float`].
pub(crate) fn write_timestamp(w: &mut Writer<'_>, ts: f64) {
    if (1e-4..4_294_967_296.0).contains(&ts) {
        let micros = (ts * 1e6).round();
        if micros / 1e6 == ts {
            let micros = micros as u64;
            w.u64(micros / 1_000_000);
            let mut frac = micros % 1_000_000;
            w.byte(b'.');
            if frac == 0 {
                w.byte(b'0');
                return;
            }
            let mut digits = [b'0'; 6];
            for d in digits.iter_mut().rev() {
                *d = b'0' + (frac % 10) as u8;
                frac /= 10;
            }
            let len = digits.iter().rposition(|&d| d != b'0').map_or(1, |i| i + 1);
            w.bytes(&digits[..len]);
            return;
        }
    }
    w.python_float(ts);
}

/// The per-thread scratch grows up to this (the largest log Datadog's intake takes is 1 MiB;
/// most are far smaller), so records up to it render once, without allocating, after the first.
const SCRATCH_MAX_BYTES: usize = 64 * 1024;

thread_local! {
    /// Per-thread scratch for rendering, so a call neither allocates nor zeroes a buffer.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 1024]);
}

/// Renders into this thread's scratch buffer (grown up to `SCRATCH_MAX_BYTES`, and a heap one if
/// that is busy or still too small: `f` is then called a second time), and gives the rendered
/// bytes to `done`. `None` when `f` wrote
/// something that is not JSON (a non-finite number).
pub(crate) fn render<R>(f: impl Fn(&mut Writer<'_>), done: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let mut done = Some(done);
    let mut required = 1024;
    let from_scratch = SCRATCH
        .try_with(|scratch| {
            let mut scratch = scratch.try_borrow_mut().ok()?;
            loop {
                let mut w = Writer::new(&mut scratch);
                f(&mut w);
                match w.finish() {
                    Ok(len) => return done.take().map(|done| done(&scratch[..len])),
                    Err(chouette_core::wire::EncodeError::BufferTooSmall { required: r })
                        if r > scratch.len() && r <= SCRATCH_MAX_BYTES =>
                    {
                        scratch.resize(r, 0);
                    }
                    Err(chouette_core::wire::EncodeError::BufferTooSmall { required: r }) => {
                        required = r;
                        return None;
                    }
                    Err(_) => {
                        required = 0;
                        return None;
                    }
                }
            }
        })
        .ok()
        .flatten();
    if from_scratch.is_some() || required == 0 {
        return from_scratch;
    }
    let done = done?;
    let mut heap = vec![0u8; required];
    let mut w = Writer::new(&mut heap);
    f(&mut w);
    let len = w.finish().ok()?;
    Some(done(&heap[..len]))
}

/// Renders a raw record into a new `Vec` (for the writer thread's own records and tests).
pub fn encode_raw_metric(
    name: &str,
    kind: &str,
    value: Number,
    timestamp: f64,
    tags: &[(&str, &str)],
) -> Option<Vec<u8>> {
    render(
        |w| raw_metric(w, SanitizeMode::None, name, kind, RawValue::Number(value), timestamp, &[], tags),
        <[u8]>::to_vec,
    )
}

/// Generates uuid4 strings (random, version 4, RFC 4122 variant) from a xorshift generator
/// seeded from the clock, the process id and an address: unique enough for record ids, no
/// dependency and no system call per id.
#[derive(Debug)]
pub(crate) struct Uuids {
    state: [u64; 2],
}

impl Uuids {
    pub(crate) fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        let addr = &local as *const u8 as u64;
        let mut s = [nanos ^ 0x9e37_79b9_7f4a_7c15, (std::process::id() as u64) << 32 ^ addr ^ 0xda94_2042];
        if s == [0, 0] {
            s[0] = 1;
        }
        let mut u = Uuids { state: s };
        for _ in 0..8 {
            u.next_u64();
        }
        u
    }

    fn next_u64(&mut self) -> u64 {
        let [mut s1, s0] = self.state;
        self.state[0] = s0;
        s1 ^= s1 << 23;
        self.state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
        self.state[1].wrapping_add(s0)
    }

    /// A new lower-case hyphenated uuid4.
    pub(crate) fn next(&mut self) -> [u8; 36] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let mut out = [b'-'; 36];
        let mut at = 0;
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                at += 1;
            }
            out[at] = HEX[(b >> 4) as usize];
            out[at + 1] = HEX[(b & 15) as usize];
            at += 2;
        }
        out
    }
}

/// Now, as float Unix seconds (Python's `time.time()`).
/// Whole microseconds (Python's `time.time()` carries sub-microsecond noise; the extra digits say
/// nothing and cost a slow float formatting on the app's thread).
pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| {
        // u64 micros (not `as_micros`' u128, whose conversion to f64 is a slow library call).
        (d.as_secs().saturating_mul(1_000_000) + u64::from(d.subsec_micros())) as f64 / 1e6
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl Fn(&mut Writer<'_>)) -> String {
        render(f, |b| String::from_utf8(b.to_vec()).unwrap()).unwrap()
    }

    #[test]
    fn raw_records_are_python_json() {
        let got = text(|w| {
            raw_metric(
                w,
                SanitizeMode::None,
                "my.count",
                "count",
                RawValue::Number(Number::Int(2)),
                1600000000.25,
                &[],
                &[("k", "v")],
            )
        });
        assert_eq!(
            got,
            r#"{"metric": "my.count", "type": "count", "value": 2, "timestamp": 1600000000.25, "tags": {"k": "v"}}"#
        );
        let global = vec![("env".to_owned(), "prod".to_owned()), ("k".to_owned(), "g".to_owned())];
        let got = text(|w| {
            raw_metric(
                w,
                SanitizeMode::None,
                "g",
                "gauge",
                RawValue::Number(Number::Float(1.0)),
                10.0,
                &global,
                &[("k", "é\"")],
            )
        });
        assert_eq!(
            got,
            r#"{"metric": "g", "type": "gauge", "value": 1.0, "timestamp": 10.0, "tags": {"env": "prod", "k": "\u00e9\""}}"#
        );
        let members = [Member::Str("a"), Member::Num(2.0), Member::Num(0.5)];
        let got =
            text(|w| raw_metric(w, SanitizeMode::None, "s", "set", RawValue::Set(&members), 10.5, &[], &[]));
        assert_eq!(
            got,
            r#"{"metric": "s", "type": "set", "value": ["a", 2, 0.5], "timestamp": 10.5, "tags": {}}"#
        );
    }

    #[test]
    fn timestamps_are_python_reprs() {
        let ts = |t: f64| text(|w| write_timestamp(w, t));
        assert_eq!(ts(1600000000.25), "1600000000.25");
        assert_eq!(ts(1763780437.123456), "1763780437.123456");
        assert_eq!(ts(1763780437.000001), "1763780437.000001");
        assert_eq!(ts(1763780437.0), "1763780437.0");
        assert_eq!(ts(10.5), "10.5");
        assert_eq!(ts(0.0001), "0.0001");
        assert_eq!(ts(1e-05), "1e-05");
        assert_eq!(ts(1763780437.1234567), "1763780437.1234567");
        assert_eq!(ts(5e9), "5000000000.0");
        // Against the general (slow) path, on clock-like values.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let many = (0..20_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            100 + x % 4_294_967_295_999_000
        });
        for micros in
            [1u64, 999_999, 123_000, 1_763_780_437_000_100, 4_294_967_295_999_999].into_iter().chain(many)
        {
            let t = micros as f64 / 1e6;
            assert_eq!(ts(t), text(|w| w.python_float(t)), "{micros}");
        }
    }

    #[test]
    fn long_records_grow_the_scratch_then_fall_back_to_the_heap() {
        for n in [2000, SCRATCH_MAX_BYTES, 2 * SCRATCH_MAX_BYTES, 100] {
            let name = "n".repeat(n);
            let got = encode_raw_metric(&name, "count", Number::Int(1), 1.0, &[]).unwrap();
            let want = format!(
                r#"{{"metric": "{name}", "type": "count", "value": 1, "timestamp": 1.0, "tags": {{}}}}"#
            );
            assert_eq!(std::str::from_utf8(&got).unwrap(), want);
        }
        let grown = SCRATCH.with(|s| s.borrow().len());
        assert!(grown > 2000 && grown <= SCRATCH_MAX_BYTES, "{grown}");
    }

    #[test]
    fn uuids_are_version_4() {
        let mut u = Uuids::new();
        let a = u.next();
        let b = u.next();
        assert_ne!(a, b);
        let s = std::str::from_utf8(&a).unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_eq!([8, 13, 18, 23].map(|i| a[i]), [b'-'; 4]);
    }
}
