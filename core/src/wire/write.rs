//! Writing into caller-provided buffers: a cursor that keeps counting past the end (so a too-small
//! buffer reports how much it needs), JSON string escaping as Python's `json.dumps` does it, and
//! number formatting.

use core::fmt::Write as _;

use super::EncodeError;

/// A cursor over a caller-provided buffer.
///
/// Writes past the end are not stored but counted, so [`Writer::finish`] can say how large the
/// buffer must be (`EncodeError::BufferTooSmall { required }`).
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    error: Option<EncodeError>,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0, error: None }
    }

    /// Bytes written so far (including any that did not fit).
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Whether everything written so far fit in the buffer.
    pub fn fits(&self) -> bool {
        self.pos <= self.buf.len()
    }

    /// Moves the cursor back to `len` (which must not exceed [`Writer::len`]), dropping what was
    /// written after it: used to undo a partly written entry that went over a size limit.
    pub fn truncate(&mut self, len: usize) {
        if len < self.pos {
            self.pos = len;
        }
    }

    /// The bytes written, if they all fit.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.pos.min(self.buf.len())]
    }

    /// Records an error other than a short buffer (a non-finite number, say); `finish` reports
    /// the first one.
    pub fn fail(&mut self, error: EncodeError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// The number of bytes written, or why the output is unusable.
    pub fn finish(self) -> Result<usize, EncodeError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.pos > self.buf.len() {
            return Err(EncodeError::BufferTooSmall { required: self.pos });
        }
        Ok(self.pos)
    }

    /// Appends raw bytes.
    #[inline]
    pub fn bytes(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }

    /// Appends one byte.
    #[inline]
    pub fn byte(&mut self, byte: u8) {
        if let Some(dst) = self.buf.get_mut(self.pos) {
            *dst = byte;
        }
        self.pos += 1;
    }

    /// Appends text as is.
    #[inline]
    pub fn str(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    /// Appends `text` as a JSON string, quotes included, escaped as Python's `json.dumps` does by
    /// default (`ensure_ascii=True`): `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control
    /// characters, DEL (U+007F) and every non-ASCII character as lower-case `\uXXXX` (surrogate
    /// pairs above U+FFFF).
    pub fn json_str(&mut self, text: &str) {
        self.byte(b'"');
        self.json_str_body(text);
        self.byte(b'"');
    }

    /// Like [`Writer::json_str`] without the quotes: for a string built from several pieces.
    pub fn json_str_body(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f {
                continue;
            }
            if b >= 0x80 && !is_char_start(b) {
                continue; // continuation bytes are handled with their start byte
            }
            self.bytes(&bytes[start..i]);
            match b {
                b'"' => self.bytes(b"\\\""),
                b'\\' => self.bytes(b"\\\\"),
                b'\n' => self.bytes(b"\\n"),
                b'\r' => self.bytes(b"\\r"),
                b'\t' => self.bytes(b"\\t"),
                0x08 => self.bytes(b"\\b"),
                0x0c => self.bytes(b"\\f"),
                0x00..=0x1f => self.unicode_escape(b as u16),
                _ => {
                    let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                    let mut units = [0u16; 2];
                    for unit in ch.encode_utf16(&mut units) {
                        self.unicode_escape(*unit);
                    }
                    start = i + ch.len_utf8();
                    continue;
                }
            }
            start = i + 1;
        }
        self.bytes(&bytes[start..]);
    }

    fn unicode_escape(&mut self, unit: u16) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.bytes(&[
            b'\\',
            b'u',
            HEX[(unit >> 12) as usize & 15],
            HEX[(unit >> 8) as usize & 15],
            HEX[(unit >> 4) as usize & 15],
            HEX[unit as usize & 15],
        ]);
    }

    /// Appends an unsigned integer.
    pub fn u64(&mut self, mut value: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.bytes(&digits[at..]);
    }

    /// Appends a signed integer.
    pub fn i64(&mut self, value: i64) {
        if value < 0 {
            self.byte(b'-');
        }
        self.u64(value.unsigned_abs());
    }

    /// Appends a finite number as JSON: an integral value of magnitude below 2^53 as an integer
    /// (`3`, `-12`, `1600000000`), anything else as Python's `repr` writes a float (shortest text
    /// that reads back to the same value: `1.875`, `9.549999999999999`, `1e-05`, `1.5e+16`).
    /// A non-finite number is not JSON: it records `EncodeError::NonFinite`.
    pub fn f64(&mut self, value: f64) {
        if !value.is_finite() {
            self.fail(EncodeError::NonFinite);
            return;
        }
        const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53
        if value.abs() < EXACT_INT && value == (value as i64) as f64 {
            if value == 0.0 && value.is_sign_negative() {
                self.bytes(b"-0.0");
            } else {
                self.i64(value as i64);
            }
            return;
        }
        self.python_float(value);
    }

    /// Appends a finite float exactly as Python's `repr(float)` does (`2.0`, `0.8`, `1e-05`,
    /// `1e+16`, `1.5e+300`).
    pub fn python_float(&mut self, value: f64) {
        if !value.is_finite() {
            self.fail(EncodeError::NonFinite);
            return;
        }
        if !self.whole_micros(value) {
            self.shortest_repr(value);
        }
    }

    /// Python's `repr` of a finite float, the general (slower) way.
    fn shortest_repr(&mut self, value: f64) {
        // `{:e}` gives the shortest round-trip digits: "-1.875e0", "1e16", "9.5e-7".
        let mut text: heapless::String<40> = heapless::String::new();
        if write!(text, "{value:e}").is_err() {
            self.fail(EncodeError::NonFinite);
            return;
        }
        let (mantissa, exp) = text.split_once('e').unwrap_or((text.as_str(), "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let (negative, mantissa) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa),
        };
        let mut digits: heapless::Vec<u8, 24> = heapless::Vec::new();
        for &b in mantissa.as_bytes() {
            if b.is_ascii_digit() {
                let _ = digits.push(b);
            }
        }
        if negative {
            self.byte(b'-');
        }
        let n = digits.len() as i32;
        if (-4..16).contains(&exp) {
            if exp >= 0 {
                let int_len = exp + 1;
                if n <= int_len {
                    self.bytes(&digits);
                    for _ in n..int_len {
                        self.byte(b'0');
                    }
                    self.bytes(b".0");
                } else {
                    self.bytes(&digits[..int_len as usize]);
                    self.byte(b'.');
                    self.bytes(&digits[int_len as usize..]);
                }
            } else {
                self.bytes(b"0.");
                for _ in 0..(-exp - 1) {
                    self.byte(b'0');
                }
                self.bytes(&digits);
            }
        } else {
            self.byte(digits[0]);
            if n > 1 {
                self.byte(b'.');
                self.bytes(&digits[1..]);
            }
            self.byte(b'e');
            self.byte(if exp < 0 { b'-' } else { b'+' });
            let abs = exp.unsigned_abs();
            if abs < 10 {
                self.byte(b'0');
            }
            self.u64(abs as u64);
        }
    }
}

impl Writer<'_> {
    /// The fast path of [`Writer::python_float`] for what a clock gives (whole microseconds
    /// from 1e-4 to 2^32 s, i.e. until 2106); `false`, having written nothing, for anything else.
    /// There the shortest text that reads back is the six-decimal form without its trailing
    /// zeros: neighbouring microseconds are further apart than one ulp (at most 4.8e-7 below
    /// 2^32), so every shorter decimal, a multiple of 1e-6 too, reads back to another double; and
    /// Python's `repr` uses fixed notation from 1e-4 to 1e16.
    #[inline]
    fn whole_micros(&mut self, value: f64) -> bool {
        if !(1e-4..4_294_967_296.0).contains(&value) {
            return false;
        }
        // Nearest whole microsecond (`f64::round` is not in `core`); the check below is what
        // makes the fast path exact, whatever the rounding here.
        let micros = (value * 1e6 + 0.5) as u64;
        if micros as f64 / 1e6 != value {
            return false;
        }
        self.u64(micros / 1_000_000);
        self.byte(b'.');
        let mut frac = micros % 1_000_000;
        if frac == 0 {
            self.byte(b'0');
            return true;
        }
        let mut digits = [b'0'; 6];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        let len = digits.iter().rposition(|&d| d != b'0').map_or(1, |i| i + 1);
        self.bytes(&digits[..len]);
        true
    }
}

#[inline]
fn is_char_start(b: u8) -> bool {
    b & 0xC0 != 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Writer<'_>)) -> heapless::String<128> {
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        f(&mut w);
        let n = w.finish().unwrap();
        let mut out = heapless::String::new();
        out.push_str(core::str::from_utf8(&buf[..n]).unwrap()).unwrap();
        out
    }

    #[test]
    fn floats_match_python_repr() {
        // Expected values are what CPython 3.11 prints for repr(x).
        let cases: &[(f64, &str)] = &[
            (2.0, "2.0"),
            (0.8, "0.8"),
            (1.875, "1.875"),
            (9.549999999999999, "9.549999999999999"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.5e300, "1.5e+300"),
            (-0.5, "-0.5"),
            (5e-324, "5e-324"),
            (1795310771.25, "1795310771.25"),
            (0.1 + 0.2, "0.30000000000000004"),
            (123.0e-7, "1.23e-05"),
        ];
        for &(value, expected) in cases {
            assert_eq!(render(|w| w.python_float(value)).as_str(), expected, "{value:e}");
        }
    }

    #[test]
    fn clock_values_take_the_fast_path_with_the_same_text() {
        let fast = |t: f64| {
            let mut buf = [0u8; 40];
            let mut w = Writer::new(&mut buf);
            assert!(w.whole_micros(t), "{t}");
            let n = w.finish().unwrap();
            heapless::Vec::<u8, 40>::from_slice(&buf[..n]).unwrap()
        };
        let slow = |t: f64| {
            let mut buf = [0u8; 40];
            let mut w = Writer::new(&mut buf);
            w.shortest_repr(t);
            let n = w.finish().unwrap();
            heapless::Vec::<u8, 40>::from_slice(&buf[..n]).unwrap()
        };
        assert_eq!(render(|w| w.python_float(1763780437.123456)).as_str(), "1763780437.123456");
        assert_eq!(render(|w| w.python_float(1763780437.000001)).as_str(), "1763780437.000001");
        assert_eq!(render(|w| w.python_float(1763780437.0)).as_str(), "1763780437.0");
        assert_eq!(render(|w| w.python_float(1763780437.1234567)).as_str(), "1763780437.1234567");
        assert_eq!(render(|w| w.python_float(5e9)).as_str(), "5000000000.0");
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let many = (0..20_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            100 + x % 4_294_967_295_999_000
        });
        for micros in
            [100u64, 999_999, 123_000, 1_763_780_437_000_100, 4_294_967_295_999_999].into_iter().chain(many)
        {
            let t = micros as f64 / 1e6;
            assert_eq!(fast(t), slow(t), "{micros}");
        }
    }

    #[test]
    fn integral_values_print_as_integers() {
        assert_eq!(render(|w| w.f64(3.0)).as_str(), "3");
        assert_eq!(render(|w| w.f64(-12.0)).as_str(), "-12");
        assert_eq!(render(|w| w.f64(1600000000.0)).as_str(), "1600000000");
        assert_eq!(render(|w| w.f64(1e17)).as_str(), "1e+17");
        assert_eq!(render(|w| w.f64(0.6)).as_str(), "0.6");
    }

    #[test]
    fn strings_are_escaped_like_json_dumps() {
        assert_eq!(render(|w| w.json_str("a\"b\\c\n\t\u{1}")).as_str(), r#""a\"b\\c\n\t\u0001""#);
        assert_eq!(render(|w| w.json_str("café")).as_str(), r#""caf\u00e9""#);
        assert_eq!(render(|w| w.json_str("🦉")).as_str(), r#""\ud83e\udd89""#);
        // Python escapes everything outside ' '..='~' (its ESCAPE_ASCII), DEL included.
        assert_eq!(render(|w| w.json_str("~\u{7f} ")).as_str(), r#""~\u007f ""#);
    }

    #[test]
    fn short_buffer_reports_the_size_required() {
        let mut buf = [0u8; 4];
        let mut w = Writer::new(&mut buf);
        w.str("hello world");
        assert_eq!(w.finish(), Err(EncodeError::BufferTooSmall { required: 11 }));
    }

    #[test]
    fn non_finite_is_an_error() {
        let mut buf = [0u8; 16];
        let mut w = Writer::new(&mut buf);
        w.f64(f64::NAN);
        assert_eq!(w.finish(), Err(EncodeError::NonFinite));
    }
}
