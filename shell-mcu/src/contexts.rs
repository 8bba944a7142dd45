//! The context table: each series the device flushed gets a `ctx` id, and its DEFINE payload
//! (name, type, tags) stays in a fixed byte arena so it can be sent again after a resync.

use chouette_core::limits::MAX_TAGS;
use chouette_core::link::message::{self, Define};
use chouette_core::metric::{MetricType, Tag};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Why a context got no id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextError {
    /// `CONTEXTS` ids are taken, or the arena is full.
    Full,
}

#[derive(Clone, Copy)]
struct Slot {
    hash: u32,
    offset: u16,
    len: u16,
    /// The gateway does not know it yet in this session: a DEFINE must go out.
    pending: bool,
}

const EMPTY: Slot = Slot { hash: 0, offset: 0, len: 0, pending: false };

/// Up to `CONTEXTS` contexts whose DEFINE payloads fill at most `BYTES` bytes.
pub struct Contexts<const CONTEXTS: usize, const BYTES: usize> {
    slots: [Slot; CONTEXTS],
    len: usize,
    arena: [u8; BYTES],
    used: usize,
}

/// Serializes like `Define` (whose tags are `&str`) from the aggregator's [`Tag`]s.
#[derive(serde::Serialize)]
struct DefineOut<'a> {
    ctx: u16,
    kind: MetricType,
    name: &'a str,
    tags: TagsOut<'a>,
}

struct TagsOut<'a>(&'a [Tag<'a>]);

impl Serialize for TagsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for tag in self.0 {
            seq.serialize_element(&TagOut(tag))?;
        }
        seq.end()
    }
}

struct TagOut<'a>(&'a Tag<'a>);

impl Serialize for TagOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

fn hash_of(kind: MetricType, name: &str, tags: &[Tag<'_>]) -> u32 {
    // FNV-1a: a filter before the exact comparison, not an identity.
    let mut hash: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for &byte in bytes {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
    };
    eat(&[kind as u8]);
    eat(name.as_bytes());
    for tag in tags {
        eat(&[0xFF]);
        eat(tag.key.as_bytes());
        if let Some(value) = tag.value {
            eat(b":");
            eat(value.as_bytes());
        }
    }
    hash
}

fn tag_is(tag: &Tag<'_>, text: &str) -> bool {
    match tag.value {
        None => tag.key == text,
        Some(value) => {
            text.len() == tag.key.len() + 1 + value.len()
                && text.starts_with(tag.key)
                && text.as_bytes()[tag.key.len()] == b':'
                && text.ends_with(value)
        }
    }
}

impl<const CONTEXTS: usize, const BYTES: usize> Contexts<CONTEXTS, BYTES> {
    /// An empty table.
    pub const fn new() -> Self {
        const { assert!(CONTEXTS >= 1 && CONTEXTS <= u16::MAX as usize && BYTES <= u16::MAX as usize) };
        Contexts { slots: [EMPTY; CONTEXTS], len: 0, arena: [0; BYTES], used: 0 }
    }

    /// Contexts defined.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id of the series `(kind, name, tags)`, taken now if it had none (its DEFINE is then
    /// pending).
    pub fn id_of(&mut self, kind: MetricType, name: &str, tags: &[Tag<'_>]) -> Result<u16, ContextError> {
        let hash = hash_of(kind, name, tags);
        for (index, slot) in self.slots[..self.len].iter().enumerate() {
            if slot.hash != hash {
                continue;
            }
            let bytes =
                &self.arena[usize::from(slot.offset)..usize::from(slot.offset) + usize::from(slot.len)];
            if let Ok(define) = message::decode::<Define<'_>>(bytes) {
                if define.kind == kind
                    && define.name == name
                    && define.tags.len() == tags.len()
                    && define.tags.iter().zip(tags).all(|(text, tag)| tag_is(tag, text))
                {
                    return Ok(index as u16);
                }
            }
        }
        if self.len == CONTEXTS || tags.len() > MAX_TAGS {
            return Err(ContextError::Full);
        }
        let ctx = self.len as u16;
        let define = DefineOut { ctx, kind, name, tags: TagsOut(tags) };
        let written =
            message::encode(&define, &mut self.arena[self.used..]).map_err(|_| ContextError::Full)?;
        self.slots[self.len] = Slot { hash, offset: self.used as u16, len: written as u16, pending: true };
        self.used += written;
        self.len += 1;
        Ok(ctx)
    }

    /// The first context whose DEFINE must go out, and its payload.
    pub fn next_pending(&self) -> Option<(u16, &[u8])> {
        let (index, slot) = self.slots[..self.len].iter().enumerate().find(|(_, slot)| slot.pending)?;
        let start = usize::from(slot.offset);
        Some((index as u16, &self.arena[start..start + usize::from(slot.len)]))
    }

    /// `ctx`'s DEFINE went into the send window.
    pub fn sent(&mut self, ctx: u16) {
        if let Some(slot) = self.slots.get_mut(usize::from(ctx)) {
            slot.pending = false;
        }
    }

    /// Whether a DEFINE waits.
    pub fn has_pending(&self) -> bool {
        self.slots[..self.len].iter().any(|slot| slot.pending)
    }

    /// A new session: every context must be defined again (same ids).
    pub fn redefine_all(&mut self) {
        for slot in &mut self.slots[..self.len] {
            slot.pending = true;
        }
    }
}

impl<const CONTEXTS: usize, const BYTES: usize> Default for Contexts<CONTEXTS, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defines_decode_as_the_core_s_define_and_ids_are_stable() {
        let mut table = Contexts::<4, 256>::new();
        let tags = [Tag::new("env", "dev"), Tag { key: "bare", value: None }];
        assert_eq!(table.id_of(MetricType::Count, "a.b", &tags), Ok(0));
        assert_eq!(table.id_of(MetricType::Gauge, "a.b", &tags), Ok(1));
        assert_eq!(table.id_of(MetricType::Count, "a.b", &tags), Ok(0));
        assert_eq!(table.id_of(MetricType::Count, "a.b", &tags[..1]), Ok(2));
        {
            let (ctx, bytes) = table.next_pending().expect("pending");
            let define: Define<'_> = message::decode(bytes).expect("decodes");
            assert_eq!((ctx, define.ctx, define.kind, define.name), (0, 0, MetricType::Count, "a.b"));
            assert_eq!(define.tags.as_slice(), &["env:dev", "bare"]);
        }
        table.sent(0);
        assert_eq!(table.next_pending().map(|(ctx, _)| ctx), Some(1));
        table.sent(1);
        table.sent(2);
        assert!(!table.has_pending());
        table.redefine_all();
        assert_eq!(table.next_pending().map(|(ctx, _)| ctx), Some(0));
    }

    #[test]
    fn a_full_table_refuses() {
        let mut table = Contexts::<1, 64>::new();
        assert_eq!(table.id_of(MetricType::Count, "a", &[]), Ok(0));
        assert_eq!(table.id_of(MetricType::Count, "b", &[]), Err(ContextError::Full));
        let mut small = Contexts::<4, 8>::new();
        assert_eq!(small.id_of(MetricType::Count, "a.long.name", &[]), Err(ContextError::Full));
        assert!(small.is_empty());
    }
}
