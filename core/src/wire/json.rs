//! A small zero-copy JSON scanner: a pull parser over a byte slice, no heap, no recursion.
//!
//! It reads what Python's `json` module reads: objects, arrays, strings, numbers, `true`, `false`,
//! `null`, and Python's extra tokens `NaN`, `Infinity` and `-Infinity` (which `json.dumps` emits
//! for non-finite floats), reported as [`Token::NonFinite`] so a caller can refuse a record with a
//! precise reason rather than "bad JSON".
//!
//! - Strings borrow the input ([`JsonStr`]); escapes (`\n`, `\uXXXX`, surrogate pairs) are decoded
//!   only on demand, into a caller-provided slice ([`JsonStr::decode`], [`Arena`]).
//! - Numbers keep their text ([`Token::Number`]); the value comes from `str::parse::<f64>`.
//! - Nesting is limited to [`MAX_DEPTH`] levels, so hostile input cannot exhaust anything; skipping
//!   a value ([`Scanner::skip_value`]) is iterative and validates what it skips.
//! - Every error carries the byte offset where it was found ([`JsonError`]).
//!
//! Why not serde + serde-json-core: the README's "JSON records" section, measured in `json-eval/`.
//!
//! ```
//! use chouette_core::wire::json::{Scanner, Token};
//!
//! let mut sc = Scanner::new(br#"{"a": [1, "x"], "b": null}"#).unwrap();
//! assert_eq!(sc.value().unwrap(), Token::ObjectStart);
//! let key = sc.next_key().unwrap().unwrap();
//! assert_eq!(key.as_raw(), "a");
//! sc.skip_value().unwrap();
//! assert_eq!(sc.next_key().unwrap().unwrap().as_raw(), "b");
//! assert_eq!(sc.value().unwrap(), Token::Null);
//! assert_eq!(sc.next_key().unwrap(), None);
//! sc.finish().unwrap();
//! ```

use core::fmt;

/// Deepest nesting of objects and arrays accepted. The records read here nest three levels at
/// most (`points: [[ts, value]]`); 32 leaves room for arbitrary log extras.
pub const MAX_DEPTH: usize = 32;

/// What was wrong with the JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// The input is not valid UTF-8.
    InvalidUtf8,
    /// The input ended inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    UnexpectedByte,
    /// A malformed number (`01`, `1.`, `-`, `1e`).
    BadNumber,
    /// A malformed escape (`\x`, `\u12`), or a lone UTF-16 surrogate when decoding.
    BadEscape,
    /// A raw control character (below U+0020) inside a string.
    ControlCharacter,
    /// Objects and arrays nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The buffer given to decode a string into is too small.
    ScratchTooSmall,
    /// Something other than whitespace follows the top-level value.
    TrailingData,
}

impl JsonErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            JsonErrorKind::InvalidUtf8 => "invalid UTF-8",
            JsonErrorKind::UnexpectedEnd => "unexpected end of input",
            JsonErrorKind::UnexpectedByte => "unexpected byte",
            JsonErrorKind::BadNumber => "malformed number",
            JsonErrorKind::BadEscape => "malformed string escape",
            JsonErrorKind::ControlCharacter => "control character in string",
            JsonErrorKind::TooDeep => "nesting too deep",
            JsonErrorKind::ScratchTooSmall => "scratch buffer too small",
            JsonErrorKind::TrailingData => "data after the JSON value",
        }
    }
}

/// A JSON syntax error and the byte offset where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// What was wrong.
    pub kind: JsonErrorKind,
    /// Byte offset in the input.
    pub offset: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.as_str(), self.offset)
    }
}

impl core::error::Error for JsonError {}

/// A JSON string as it appears in the input, between its quotes, escapes not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a> {
    raw: &'a str,
    escaped: bool,
    offset: usize,
}

impl<'a> JsonStr<'a> {
    /// The text between the quotes, escapes as written (`caf\u00e9`). Valid inside a JSON string
    /// as is: several raw strings joined still make a well-formed JSON string body.
    pub const fn as_raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the string contains escapes (so [`JsonStr::borrowed`] is `None`).
    pub const fn has_escapes(&self) -> bool {
        self.escaped
    }

    /// Byte offset of the opening quote in the input.
    pub const fn offset(&self) -> usize {
        self.offset
    }

    /// The decoded text without copying, when there is nothing to decode.
    pub const fn borrowed(&self) -> Option<&'a str> {
        if self.escaped {
            None
        } else {
            Some(self.raw)
        }
    }

    /// Decoded length in bytes: at most the raw length.
    pub fn decoded_len_bound(&self) -> usize {
        self.raw.len()
    }

    /// Decodes into `out`, returning the decoded text: the input itself when there are no
    /// escapes, otherwise a prefix of `out`. `out.len() >= self.as_raw().len()` always suffices.
    pub fn decode<'o>(&self, out: &'o mut [u8]) -> Result<&'o str, JsonError>
    where
        'a: 'o,
    {
        if !self.escaped {
            return Ok(self.raw);
        }
        let n = self.decode_into(out)?;
        let out: &'o [u8] = out;
        core::str::from_utf8(&out[..n]).map_err(|_| self.error(JsonErrorKind::BadEscape))
    }

    /// Decodes the escapes into `out` and returns the number of bytes written (the raw bytes are
    /// copied when there are none).
    pub fn decode_into(&self, out: &mut [u8]) -> Result<usize, JsonError> {
        let raw = self.raw.as_bytes();
        let mut w = 0;
        let mut i = 0;
        let put = |out: &mut [u8], w: &mut usize, bytes: &[u8]| -> Result<(), JsonError> {
            let dst = out.get_mut(*w..*w + bytes.len()).ok_or(self.error(JsonErrorKind::ScratchTooSmall))?;
            dst.copy_from_slice(bytes);
            *w += bytes.len();
            Ok(())
        };
        while i < raw.len() {
            let start = i;
            while i < raw.len() && raw[i] != b'\\' {
                i += 1;
            }
            put(out, &mut w, &raw[start..i])?;
            if i >= raw.len() {
                break;
            }
            // raw[i] == b'\\'; the scanner checked the escape's shape.
            let esc = *raw.get(i + 1).ok_or(self.error(JsonErrorKind::BadEscape))?;
            i += 2;
            let simple = match esc {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => 0,
                _ => return Err(self.error(JsonErrorKind::BadEscape)),
            };
            if esc != b'u' {
                put(out, &mut w, &[simple])?;
                continue;
            }
            let hi = self.hex4(raw, i)?;
            i += 4;
            let code = if (0xD800..0xDC00).contains(&hi) {
                // A high surrogate must be followed by an escaped low surrogate.
                if raw.get(i) != Some(&b'\\') || raw.get(i + 1) != Some(&b'u') {
                    return Err(self.error(JsonErrorKind::BadEscape));
                }
                let lo = self.hex4(raw, i + 2)?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return Err(self.error(JsonErrorKind::BadEscape));
                }
                i += 6;
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            } else if (0xDC00..0xE000).contains(&hi) {
                return Err(self.error(JsonErrorKind::BadEscape));
            } else {
                hi
            };
            let ch = char::from_u32(code).ok_or(self.error(JsonErrorKind::BadEscape))?;
            let mut buf = [0u8; 4];
            put(out, &mut w, ch.encode_utf8(&mut buf).as_bytes())?;
        }
        Ok(w)
    }

    fn hex4(&self, raw: &[u8], at: usize) -> Result<u32, JsonError> {
        let digits = raw.get(at..at + 4).ok_or(self.error(JsonErrorKind::BadEscape))?;
        let mut value = 0u32;
        for &d in digits {
            value = value << 4 | hex_digit(d).ok_or(self.error(JsonErrorKind::BadEscape))?;
        }
        Ok(value)
    }

    fn error(&self, kind: JsonErrorKind) -> JsonError {
        JsonError { kind, offset: self.offset }
    }
}

#[inline]
fn hex_digit(d: u8) -> Option<u32> {
    match d {
        b'0'..=b'9' => Some((d - b'0') as u32),
        b'a'..=b'f' => Some((d - b'a' + 10) as u32),
        b'A'..=b'F' => Some((d - b'A' + 10) as u32),
        _ => None,
    }
}

/// One value's first token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as its JSON text (`-1.5e3`).
    Number(&'a str),
    /// A string.
    Str(JsonStr<'a>),
    /// Python's `NaN`, `Infinity` or `-Infinity`, as the float it stands for.
    NonFinite(f64),
    /// `{`: read the members with [`Scanner::next_key`].
    ObjectStart,
    /// `[`: read the elements with [`Scanner::next_element`].
    ArrayStart,
}

/// The pull parser. Read a value with [`Scanner::value`]; inside an object alternate
/// [`Scanner::next_key`] and a value; inside an array alternate [`Scanner::next_element`] and a
/// value; end with [`Scanner::finish`].
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    /// Bit `d` set: the container at depth `d + 1` is an object.
    objects: u64,
    /// Just after `{` or `[`: the next member needs no comma.
    after_open: bool,
}

impl<'a> Scanner<'a> {
    /// A scanner over `input`, which must be UTF-8 (checked once, here).
    pub fn new(input: &'a [u8]) -> Result<Self, JsonError> {
        let text = core::str::from_utf8(input)
            .map_err(|e| JsonError { kind: JsonErrorKind::InvalidUtf8, offset: e.valid_up_to() })?;
        Ok(Self::from_str(text))
    }

    /// A scanner over text.
    pub const fn from_str(text: &'a str) -> Self {
        Scanner { text, pos: 0, depth: 0, objects: 0, after_open: false }
    }

    /// Current byte offset.
    pub const fn offset(&self) -> usize {
        self.pos
    }

    /// Restarts at `offset` at the top level (the start of a value found earlier).
    pub(crate) fn seek(&mut self, offset: usize) {
        self.pos = offset.min(self.text.len());
        self.depth = 0;
        self.after_open = false;
    }

    /// Current nesting depth (0 at the top level).
    pub const fn depth(&self) -> usize {
        self.depth
    }

    /// The input text.
    pub const fn text(&self) -> &'a str {
        self.text
    }

    #[inline(always)]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline(always)]
    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError { kind, offset: self.pos }
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        let bytes = self.bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline(always)]
    fn peek(&self) -> Result<u8, JsonError> {
        self.bytes().get(self.pos).copied().ok_or(self.err(JsonErrorKind::UnexpectedEnd))
    }

    fn expect_literal(&mut self, literal: &str) -> Result<(), JsonError> {
        if self.bytes()[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            Ok(())
        } else if literal.as_bytes().starts_with(&self.bytes()[self.pos..]) {
            Err(JsonError { kind: JsonErrorKind::UnexpectedEnd, offset: self.text.len() })
        } else {
            Err(self.err(JsonErrorKind::UnexpectedByte))
        }
    }

    fn open(&mut self, object: bool) -> Result<(), JsonError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(JsonErrorKind::TooDeep));
        }
        if object {
            self.objects |= 1 << self.depth;
        } else {
            self.objects &= !(1 << self.depth);
        }
        self.depth += 1;
        self.pos += 1;
        self.after_open = true;
        Ok(())
    }

    /// Whether the innermost open container is an object.
    pub fn in_object(&self) -> bool {
        self.depth > 0 && self.objects & (1 << (self.depth - 1)) != 0
    }

    /// Reads the next value's token. For `{` and `[` the container is entered; read its contents
    /// with [`Scanner::next_key`] or [`Scanner::next_element`] (or skip the rest of it with
    /// [`Scanner::skip_container`]).
    #[inline(always)]
    pub fn value(&mut self) -> Result<Token<'a>, JsonError> {
        self.skip_ws();
        self.after_open = false;
        let b = self.peek()?;
        match b {
            b'"' => Ok(Token::Str(self.string()?)),
            b'{' => self.open(true).map(|_| Token::ObjectStart),
            b'[' => self.open(false).map(|_| Token::ArrayStart),
            b'-' | b'0'..=b'9' => {
                if b == b'-' && self.bytes().get(self.pos + 1) == Some(&b'I') {
                    self.pos += 1;
                    self.expect_literal("Infinity")?;
                    return Ok(Token::NonFinite(f64::NEG_INFINITY));
                }
                self.number().map(Token::Number)
            }
            b't' => self.expect_literal("true").map(|_| Token::Bool(true)),
            b'f' => self.expect_literal("false").map(|_| Token::Bool(false)),
            b'n' => self.expect_literal("null").map(|_| Token::Null),
            b'N' => self.expect_literal("NaN").map(|_| Token::NonFinite(f64::NAN)),
            b'I' => self.expect_literal("Infinity").map(|_| Token::NonFinite(f64::INFINITY)),
            _ => Err(self.err(JsonErrorKind::UnexpectedByte)),
        }
    }

    #[inline(always)]
    fn number(&mut self) -> Result<&'a str, JsonError> {
        let bytes = self.bytes();
        let start = self.pos;
        let mut i = self.pos;
        let bad = |i: usize| JsonError { kind: JsonErrorKind::BadNumber, offset: i };
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while matches!(bytes.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => return Err(bad(i)),
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            let digits = i;
            while matches!(bytes.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return Err(bad(i));
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            while matches!(bytes.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return Err(bad(i));
            }
        }
        self.pos = i;
        Ok(&self.text[start..i])
    }

    #[inline(always)]
    fn string(&mut self) -> Result<JsonStr<'a>, JsonError> {
        let bytes = self.bytes();
        let open = self.pos;
        let start = open + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            let Some(&b) = bytes.get(i) else {
                return Err(JsonError { kind: JsonErrorKind::UnexpectedEnd, offset: bytes.len() });
            };
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    let esc = bytes.get(i + 1).copied();
                    match esc {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let digits = bytes.get(i + 2..i + 6).ok_or(JsonError {
                                kind: JsonErrorKind::UnexpectedEnd,
                                offset: bytes.len(),
                            })?;
                            if !digits.iter().all(|d| d.is_ascii_hexdigit()) {
                                return Err(JsonError { kind: JsonErrorKind::BadEscape, offset: i });
                            }
                            i += 6;
                        }
                        None => {
                            return Err(JsonError { kind: JsonErrorKind::UnexpectedEnd, offset: bytes.len() })
                        }
                        Some(_) => return Err(JsonError { kind: JsonErrorKind::BadEscape, offset: i }),
                    }
                }
                0x00..=0x1f => return Err(JsonError { kind: JsonErrorKind::ControlCharacter, offset: i }),
                _ => i += 1,
            }
        }
        self.pos = i + 1;
        Ok(JsonStr { raw: &self.text[start..i], escaped, offset: open })
    }

    /// Inside an object: the next member's key (the `:` after it is consumed, so read or skip
    /// its value next), or `None` at the closing `}` (consumed).
    #[inline(always)]
    pub fn next_key(&mut self) -> Result<Option<JsonStr<'a>>, JsonError> {
        self.skip_ws();
        let b = self.peek()?;
        if b == b'}' {
            self.close()?;
            return Ok(None);
        }
        if !self.after_open {
            if b != b',' {
                return Err(self.err(JsonErrorKind::UnexpectedByte));
            }
            self.pos += 1;
            self.skip_ws();
        }
        self.after_open = false;
        if self.peek()? != b'"' {
            return Err(self.err(JsonErrorKind::UnexpectedByte));
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek()? != b':' {
            return Err(self.err(JsonErrorKind::UnexpectedByte));
        }
        self.pos += 1;
        Ok(Some(key))
    }

    /// Inside an array: `true` if another element follows (read or skip it next), `false` at the
    /// closing `]` (consumed).
    #[inline(always)]
    pub fn next_element(&mut self) -> Result<bool, JsonError> {
        self.skip_ws();
        let b = self.peek()?;
        if b == b']' {
            self.close()?;
            return Ok(false);
        }
        if !self.after_open {
            if b != b',' {
                return Err(self.err(JsonErrorKind::UnexpectedByte));
            }
            self.pos += 1;
        }
        self.after_open = false;
        Ok(true)
    }

    fn close(&mut self) -> Result<(), JsonError> {
        let b = self.peek()?;
        let want = if self.in_object() { b'}' } else { b']' };
        if self.depth == 0 || b != want {
            return Err(self.err(JsonErrorKind::UnexpectedByte));
        }
        self.depth -= 1;
        self.pos += 1;
        self.after_open = false;
        Ok(())
    }

    /// Skips one whole value (validating it), without recursion.
    pub fn skip_value(&mut self) -> Result<(), JsonError> {
        match self.value()? {
            Token::ObjectStart | Token::ArrayStart => self.skip_container(),
            _ => Ok(()),
        }
    }

    /// Skips the rest of the innermost open container, up to and including its closing bracket.
    pub fn skip_container(&mut self) -> Result<(), JsonError> {
        let base = self.depth.saturating_sub(1);
        while self.depth > base {
            let more = if self.in_object() { self.next_key()?.is_some() } else { self.next_element()? };
            if more {
                // Containers are entered by `value`; their contents are read by this loop.
                self.value()?;
            }
        }
        Ok(())
    }

    /// Skips one whole value and returns its text as written (`{"msg": "hi"}`, `"x"`, `12`).
    pub fn raw_value(&mut self) -> Result<&'a str, JsonError> {
        self.skip_ws();
        let start = self.pos;
        self.skip_value()?;
        Ok(&self.text[start..self.pos])
    }

    /// Checks that only whitespace follows the top-level value.
    pub fn finish(&mut self) -> Result<(), JsonError> {
        self.skip_ws();
        if self.pos < self.text.len() {
            return Err(self.err(JsonErrorKind::TrailingData));
        }
        Ok(())
    }
}

/// Carves decoded strings out of one caller-provided scratch slice, each borrowed for as long as
/// the slice: how parsers return decoded text without a heap.
#[derive(Debug)]
pub struct Arena<'a> {
    rest: &'a mut [u8],
    used: usize,
}

impl<'a> Arena<'a> {
    /// An arena over `scratch`.
    pub fn new(scratch: &'a mut [u8]) -> Self {
        Arena { rest: scratch, used: 0 }
    }

    /// Bytes handed out so far.
    pub const fn used(&self) -> usize {
        self.used
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The decoded text of `s`: the input itself when it has no escapes (no scratch used),
    /// otherwise decoded into the arena.
    #[inline(always)]
    pub fn decode(&mut self, s: &JsonStr<'a>) -> Result<&'a str, JsonError> {
        match s.borrowed() {
            Some(text) => Ok(text),
            None => self.decode_escaped(s),
        }
    }

    #[inline(never)]
    fn decode_escaped(&mut self, s: &JsonStr<'a>) -> Result<&'a str, JsonError> {
        let rest = core::mem::take(&mut self.rest);
        let n = match s.decode_into(rest) {
            Ok(n) => n,
            Err(e) => {
                self.rest = rest;
                return Err(e);
            }
        };
        let (head, tail) = rest.split_at_mut(n);
        self.rest = tail;
        self.used += n;
        let head: &'a [u8] = head;
        core::str::from_utf8(head).map_err(|_| JsonError { kind: JsonErrorKind::BadEscape, offset: s.offset })
    }

    /// Takes the next `len` bytes, or `None` if fewer are left.
    pub fn alloc(&mut self, len: usize) -> Option<&'a mut [u8]> {
        let rest = core::mem::take(&mut self.rest);
        if len > rest.len() {
            self.rest = rest;
            return None;
        }
        let (head, tail) = rest.split_at_mut(len);
        self.rest = tail;
        self.used += len;
        Some(head)
    }

    /// The free part, to write into before [`Arena::alloc`]ating what was written.
    pub fn free(&mut self) -> &mut [u8] {
        self.rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(input: &str) -> Result<(), JsonError> {
        let mut sc = Scanner::new(input.as_bytes())?;
        sc.skip_value()?;
        sc.finish()
    }

    #[test]
    fn accepts_valid_documents() {
        for doc in [
            "{}",
            "[]",
            " { \"a\" : [1, -2.5e+3, 0, 0.5, true, false, null, \"x\\\"\\u00e9\"], \"b\": {} } ",
            "[[[]]]",
            "\"just a string\"",
            "-0",
            "NaN",
            "[Infinity, -Infinity]",
        ] {
            assert_eq!(skip_all(doc), Ok(()), "{doc}");
        }
    }

    #[test]
    fn refuses_invalid_documents_with_offsets() {
        let cases: &[(&str, JsonErrorKind, usize)] = &[
            ("", JsonErrorKind::UnexpectedEnd, 0),
            ("{", JsonErrorKind::UnexpectedEnd, 1),
            ("{\"a\" 1}", JsonErrorKind::UnexpectedByte, 5),
            ("{\"a\":1,}", JsonErrorKind::UnexpectedByte, 7),
            ("[1,]", JsonErrorKind::UnexpectedByte, 3),
            ("[,1]", JsonErrorKind::UnexpectedByte, 1),
            ("[1 2]", JsonErrorKind::UnexpectedByte, 3),
            ("{]", JsonErrorKind::UnexpectedByte, 1),
            ("[}", JsonErrorKind::UnexpectedByte, 1),
            ("01", JsonErrorKind::TrailingData, 1),
            ("1.", JsonErrorKind::BadNumber, 2),
            ("-", JsonErrorKind::BadNumber, 1),
            ("1e+", JsonErrorKind::BadNumber, 3),
            ("\"a\\x\"", JsonErrorKind::BadEscape, 2),
            ("\"a\nb\"", JsonErrorKind::ControlCharacter, 2),
            ("\"abc", JsonErrorKind::UnexpectedEnd, 4),
            ("tru", JsonErrorKind::UnexpectedEnd, 3),
            ("trux", JsonErrorKind::UnexpectedByte, 0),
            ("{} x", JsonErrorKind::TrailingData, 3),
            ("Not a JSON", JsonErrorKind::UnexpectedByte, 0),
        ];
        for &(doc, kind, offset) in cases {
            assert_eq!(skip_all(doc), Err(JsonError { kind, offset }), "{doc:?}");
        }
        assert_eq!(Scanner::new(b"\"\xff\"").unwrap_err().kind, JsonErrorKind::InvalidUtf8);
    }

    #[test]
    fn nesting_is_limited() {
        let mut deep = heapless::String::<200>::new();
        for _ in 0..MAX_DEPTH {
            deep.push('[').unwrap();
        }
        for _ in 0..MAX_DEPTH {
            deep.push(']').unwrap();
        }
        assert_eq!(skip_all(&deep), Ok(()));
        let mut deeper = heapless::String::<200>::new();
        for _ in 0..=MAX_DEPTH {
            deeper.push('[').unwrap();
        }
        assert_eq!(skip_all(&deeper).unwrap_err().kind, JsonErrorKind::TooDeep);
    }

    #[test]
    fn strings_decode_escapes_and_surrogate_pairs() {
        let mut sc = Scanner::from_str(r#""a\"b\\c\/\n\t\u00e9\ud83e\udd89z""#);
        let Token::Str(s) = sc.value().unwrap() else { panic!() };
        assert!(s.has_escapes());
        let mut buf = [0u8; 64];
        assert_eq!(s.decode(&mut buf).unwrap(), "a\"b\\c/\n\té🦉z");
        let mut small = [0u8; 3];
        assert_eq!(s.decode(&mut small).unwrap_err().kind, JsonErrorKind::ScratchTooSmall);

        for lone in [r#""\ud83e""#, r#""\udd89""#, r#""\ud83ex""#] {
            let mut sc = Scanner::from_str(lone);
            let Token::Str(s) = sc.value().unwrap() else { panic!() };
            assert_eq!(s.decode(&mut buf).unwrap_err().kind, JsonErrorKind::BadEscape);
        }
    }

    #[test]
    fn plain_strings_borrow_the_input() {
        let mut sc = Scanner::from_str(r#""plain""#);
        let Token::Str(s) = sc.value().unwrap() else { panic!() };
        assert_eq!(s.borrowed(), Some("plain"));
        assert_eq!(s.decode(&mut []).unwrap(), "plain");
    }

    #[test]
    fn python_tokens_are_reported() {
        let mut sc = Scanner::from_str("[NaN, Infinity, -Infinity, -1]");
        assert_eq!(sc.value().unwrap(), Token::ArrayStart);
        assert!(sc.next_element().unwrap());
        assert!(matches!(sc.value().unwrap(), Token::NonFinite(v) if v.is_nan()));
        assert!(sc.next_element().unwrap());
        assert_eq!(sc.value().unwrap(), Token::NonFinite(f64::INFINITY));
        assert!(sc.next_element().unwrap());
        assert_eq!(sc.value().unwrap(), Token::NonFinite(f64::NEG_INFINITY));
        assert!(sc.next_element().unwrap());
        assert_eq!(sc.value().unwrap(), Token::Number("-1"));
        assert!(!sc.next_element().unwrap());
        sc.finish().unwrap();
    }

    #[test]
    fn raw_values_keep_their_text() {
        let mut sc = Scanner::from_str(r#"{"m": {"msg": [1, "}"]} , "n": 2}"#);
        sc.value().unwrap();
        sc.next_key().unwrap();
        assert_eq!(sc.raw_value().unwrap(), r#"{"msg": [1, "}"]}"#);
        sc.next_key().unwrap();
        assert_eq!(sc.raw_value().unwrap(), "2");
        assert_eq!(sc.next_key().unwrap(), None);
    }

    #[test]
    fn arena_hands_out_disjoint_decoded_strings() {
        let mut scratch = [0u8; 8];
        let mut arena = Arena::new(&mut scratch);
        let mut sc = Scanner::from_str(r#"["\u0041b", "c\n", "plain"]"#);
        sc.value().unwrap();
        let mut got: heapless::Vec<&str, 3> = heapless::Vec::new();
        while sc.next_element().unwrap() {
            let Token::Str(s) = sc.value().unwrap() else { panic!() };
            got.push(arena.decode(&s).unwrap()).unwrap();
        }
        assert_eq!(&got[..], &["Ab", "c\n", "plain"]);
        assert_eq!(arena.used(), 4);
    }
}
