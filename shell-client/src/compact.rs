//! The compact form of a raw-mode metric call, as the app's thread appends it to the buffer: a
//! few copies, no JSON. The writer thread renders it (Python's JSON) off the app's thread.
//!
//! Layout (little-endian): type index `u8`; value tag `u8` then `i64` (0), `f64` (1), or a set
//! (2: `u32` member count, each `S u32-len bytes` or `N f64`); name as `u32`-len bytes; `u32` tag
//! count, each key and value as `u32`-len bytes. The timestamp is the entry's score.

use chouette_core::{Member, MetricType};

use crate::render::{Number, RawValue};

/// Fills the bytes [`encode`] reserved: fixed-size stores, so nothing here calls `memcpy` for the
/// short fields a call is made of (a bounds-checked write past the end is skipped, never a panic;
/// `Buffer::try_push` asserts the length in debug builds).
struct Fill<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Fill<'_> {
    #[inline(always)]
    fn u8(&mut self, b: u8) {
        if let Some(slot) = self.out.get_mut(self.at) {
            *slot = b;
        }
        self.at += 1;
    }

    #[inline(always)]
    fn word(&mut self, w: [u8; 8]) {
        if let Some(slot) = self.out.get_mut(self.at..self.at + 8) {
            slot.copy_from_slice(&w);
        }
        self.at += 8;
    }

    #[inline(always)]
    fn u32(&mut self, n: usize) {
        if let Some(slot) = self.out.get_mut(self.at..self.at + 4) {
            slot.copy_from_slice(&(n as u32).to_le_bytes());
        }
        self.at += 4;
    }

    #[inline(always)]
    fn str(&mut self, s: &str) {
        self.u32(s.len());
        let n = s.len();
        if let Some(slot) = self.out.get_mut(self.at..self.at + n) {
            copy_short(slot, s.as_bytes());
        }
        self.at += n;
    }
}

/// `to.copy_from_slice(from)` (equal lengths), with strings of up to 16 bytes copied as two
/// overlapping fixed-size pieces instead of a `memcpy` call.
#[inline(always)]
fn copy_short(to: &mut [u8], from: &[u8]) {
    // Plain ranges (of length N, as the compiler can see) rather than `first_chunk` and
    // `last_chunk`, which the shipped `opt-level = "z"` leaves as calls. `to` and `from` have
    // the same length, at least N (the match below), so no range is out of bounds.
    #[inline(always)]
    fn both<const N: usize>(to: &mut [u8], from: &[u8]) {
        let n = from.len().min(to.len());
        if n >= N {
            to[..N].copy_from_slice(&from[..N]);
            to[n - N..n].copy_from_slice(&from[n - N..n]);
        }
    }
    match from.len() {
        0 => {}
        1..=3 => {
            for (t, f) in to.iter_mut().zip(from) {
                *t = *f;
            }
        }
        4..=7 => both::<4>(to, from),
        8..=16 => both::<8>(to, from),
        _ => to.copy_from_slice(from),
    }
}

/// How many bytes [`encode`] appends for this call (the buffer checks its byte bound with it
/// before taking its lock).
#[inline]
pub(crate) fn encoded_len(name: &str, value: RawValue<'_>, tags: &[(&str, &str)]) -> usize {
    let value_len = match value {
        RawValue::Number(_) => 1 + 8,
        RawValue::Members(members) => {
            1 + 4
                + members
                    .iter()
                    .map(|m| match m {
                        Member::Str(s) => 1 + 4 + s.len(),
                        Member::Num(_) => 1 + 8,
                    })
                    .sum::<usize>()
        }
        RawValue::MemberTexts(_) | RawValue::Samples(_) => 1,
    };
    let tags_len: usize = tags.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    1 + value_len + 4 + name.len() + 4 + tags_len
}

/// Calls whose compact form fits in this many bytes (most: a name and a few tags) are written
/// on the stack and appended with one copy.
const STACK_BYTES: usize = 256;

/// Appends one call, `len` bytes ([`encoded_len`]): written by fixed-size stores into a stack
/// buffer (or, for a long call, into the arena extended once), where an `extend_from_slice`
/// per field (a capacity check and a `memcpy` call each) was a third of a raw call's time on the
/// app's thread.
#[inline]
pub(crate) fn encode(
    out: &mut Vec<u8>,
    len: usize,
    kind: MetricType,
    name: &str,
    value: RawValue<'_>,
    tags: &[(&str, &str)],
) {
    if len <= STACK_BYTES {
        let mut buf = [0u8; STACK_BYTES];
        let mut w = Fill { out: &mut buf[..len], at: 0 };
        fill(&mut w, kind, name, value, tags);
        debug_assert_eq!(w.at, len, "encode: len must be encoded_len");
        out.extend_from_slice(&buf[..len]);
    } else {
        let start = out.len();
        out.resize(start + len, 0);
        let mut w = Fill { out: &mut out[start..], at: 0 };
        fill(&mut w, kind, name, value, tags);
        debug_assert_eq!(w.at, len, "encode: len must be encoded_len");
    }
}

#[inline(always)]
fn fill(w: &mut Fill<'_>, kind: MetricType, name: &str, value: RawValue<'_>, tags: &[(&str, &str)]) {
    w.u8(MetricType::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8);
    match value {
        RawValue::Number(Number::Int(i)) => {
            w.u8(0);
            w.word(i.to_le_bytes());
        }
        RawValue::Number(Number::Float(f)) => {
            w.u8(1);
            w.word(f.to_le_bytes());
        }
        RawValue::Members(members) => {
            w.u8(2);
            w.u32(members.len());
            for m in members {
                match m {
                    Member::Str(s) => {
                        w.u8(b'S');
                        w.str(s);
                    }
                    Member::Num(n) => {
                        w.u8(b'N');
                        w.word(n.to_le_bytes());
                    }
                }
            }
        }
        RawValue::MemberTexts(_) | RawValue::Samples(_) => w.u8(3),
    }
    w.str(name);
    w.u32(tags.len());
    for (k, v) in tags {
        w.str(k);
        w.str(v);
    }
}

/// A decoded call, borrowing the buffer; members and tags go into caller-provided vectors
/// (reused from call to call by the writer thread).
pub(crate) struct Call<'a> {
    pub kind: MetricType,
    pub number: Option<Number>,
    pub name: &'a str,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
    fn b8(&mut self) -> Option<[u8; 8]> {
        self.take(8)?.try_into().ok()
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Reads back what [`encode`] wrote (clearing and filling `members` and `tags`); `None` on
/// bytes it did not write.
pub(crate) fn decode<'a>(
    bytes: &'a [u8],
    members: &mut Vec<Member<'a>>,
    tags: &mut Vec<(&'a str, &'a str)>,
) -> Option<Call<'a>> {
    members.clear();
    tags.clear();
    let mut r = Reader(bytes);
    let kind = *MetricType::ALL.get(r.u8()? as usize)?;
    let number = match r.u8()? {
        0 => Some(Number::Int(i64::from_le_bytes(r.b8()?))),
        1 => Some(Number::Float(f64::from_le_bytes(r.b8()?))),
        2 => {
            for _ in 0..r.u32()? {
                members.push(match r.u8()? {
                    b'S' => Member::Str(r.str()?),
                    b'N' => Member::Num(f64::from_le_bytes(r.b8()?)),
                    _ => return None,
                });
            }
            None
        }
        _ => return None,
    };
    let name = r.str()?;
    for _ in 0..r.u32()? {
        tags.push((r.str()?, r.str()?));
    }
    Some(Call { kind, number, name })
}

impl Call<'_> {
    /// The value as the renderer takes it.
    pub fn value<'m>(&self, members: &'m [Member<'m>]) -> RawValue<'m> {
        match self.number {
            Some(n) => RawValue::Number(n),
            None => RawValue::Members(members),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip() {
        let mut buf = Vec::new();
        let (value, tags) = (RawValue::Number(Number::Float(0.5)), &[("k", "v"), ("é", "")][..]);
        encode(&mut buf, encoded_len("r", value, tags), MetricType::Rate, "r", value, tags);
        let (mut m, mut t) = (Vec::new(), Vec::new());
        let call = decode(&buf, &mut m, &mut t).unwrap();
        assert_eq!((call.kind, call.number, call.name), (MetricType::Rate, Some(Number::Float(0.5)), "r"));
        assert_eq!(t, vec![("k", "v"), ("é", "")]);
        let members = [Member::Str("a"), Member::Num(2.5)];
        buf.clear();
        let value = RawValue::Members(&members);
        encode(&mut buf, encoded_len("s", value, &[]), MetricType::Set, "s", value, &[]);
        let (mut m, mut t) = (Vec::new(), Vec::new());
        assert!(decode(&buf, &mut m, &mut t).is_some());
        assert_eq!(m, members);
        assert!(decode(&buf[..buf.len() - 1], &mut m, &mut t).is_none());
        assert!(decode(&[9], &mut m, &mut t).is_none());
    }

    /// The layout of the module docs, written field by field as plainly as possible.
    fn reference(kind: MetricType, name: &str, value: RawValue<'_>, tags: &[(&str, &str)]) -> Vec<u8> {
        fn put_str(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let mut out = vec![MetricType::ALL.iter().position(|k| *k == kind).unwrap() as u8];
        match value {
            RawValue::Number(Number::Int(i)) => {
                out.push(0);
                out.extend_from_slice(&i.to_le_bytes());
            }
            RawValue::Number(Number::Float(f)) => {
                out.push(1);
                out.extend_from_slice(&f.to_le_bytes());
            }
            RawValue::Members(members) => {
                out.push(2);
                out.extend_from_slice(&(members.len() as u32).to_le_bytes());
                for m in members {
                    match m {
                        Member::Str(s) => {
                            out.push(b'S');
                            put_str(&mut out, s);
                        }
                        Member::Num(n) => {
                            out.push(b'N');
                            out.extend_from_slice(&n.to_le_bytes());
                        }
                    }
                }
            }
            RawValue::MemberTexts(_) | RawValue::Samples(_) => out.push(3),
        }
        put_str(&mut out, name);
        out.extend_from_slice(&(tags.len() as u32).to_le_bytes());
        for (k, v) in tags {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        out
    }

    #[test]
    fn encode_writes_the_layout_at_every_string_length() {
        assert!(encoded_len(&"x".repeat(300), RawValue::Number(Number::Int(1)), &[]) > STACK_BYTES);
        let text: String = ('a'..='z').chain('A'..='Z').cycle().take(400).collect();
        let members = [Member::Str("abc"), Member::Num(2.5), Member::Str("")];
        let values = [
            RawValue::Number(Number::Int(-3)),
            RawValue::Number(Number::Float(0.5)),
            RawValue::Members(&members),
            RawValue::Members(&[]),
            RawValue::Samples(&[]),
        ];
        // Up to 40 bytes, every length (the short copies); 300, a call past the stack buffer.
        for n in (0..=40).chain([300]) {
            let s = &text[..n];
            let (name, tags) = (format!("{s}.é"), [("k", s), (s, "v"), ("é", "")]);
            for value in values.iter().copied().chain([RawValue::Members(&[Member::Str(s)])]) {
                for tags in [&[][..], &tags[..]] {
                    let mut buf = vec![7u8; 3];
                    let len = encoded_len(&name, value, tags);
                    encode(&mut buf, len, MetricType::Set, &name, value, tags);
                    assert_eq!(buf[..3], [7, 7, 7]);
                    assert_eq!(buf[3..], reference(MetricType::Set, &name, value, tags), "length {n}");
                }
            }
        }
    }
}
