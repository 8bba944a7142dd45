//! The key arena: each entry's name and sorted, deduplicated tags, written once when the entry is
//! inserted, behind a header naming the entry that owns it; dead records are compacted away.

use crate::limits::MAX_TAGS;
use crate::metric::{Sample, Tag};

use super::table::Entry;
use super::{Aggregator, RecordError};

/// Separates the name and the tags in the key arena: never part of UTF-8 text.
pub(super) const KEY_SEPARATOR: u8 = 0xFF;
/// Arena record header: owner entry index (`u32`) and key length (`u16`).
pub(super) const RECORD_HEADER: usize = 6;
pub(super) const NO_OWNER: u32 = u32::MAX;

impl<const SERIES: usize, const SKETCHES: usize, const KEY_BYTES: usize>
    Aggregator<SERIES, SKETCHES, KEY_BYTES>
{
    /// Writes `sample`'s key into the arena for entry `index`: the name, then its tags sorted as
    /// their written form (`k:v` strings, as Python sorts them) and deduplicated, each behind a
    /// [`KEY_SEPARATOR`]. Compacts the arena first when that makes room. Returns the key's offset
    /// and length, for the entry.
    pub(super) fn push_key(&mut self, index: usize, sample: &Sample<'_>) -> Result<(u32, u16), RecordError> {
        let mut order = [0u8; MAX_TAGS];
        for (i, slot) in order.iter_mut().enumerate().take(sample.tags.len()) {
            *slot = i as u8;
        }
        let order = &mut order[..sample.tags.len()];
        order.sort_unstable_by(|&a, &b| cmp_written(&sample.tags[a as usize], &sample.tags[b as usize]));
        let mut key_len = sample.name.len();
        let mut previous: Option<&Tag<'_>> = None;
        for &i in order.iter() {
            let tag = &sample.tags[i as usize];
            if !previous.is_some_and(|p| cmp_written(p, tag).is_eq()) {
                key_len += 1 + tag.encoded_len();
            }
            previous = Some(tag);
        }
        // key_len <= 200 + 32 * 201: fits u16.
        let needed = RECORD_HEADER + key_len;
        if self.keys_used + needed > KEY_BYTES && self.keys_dead > 0 {
            self.compact_keys();
        }
        if self.keys_used + needed > KEY_BYTES {
            return Err(RecordError::KeysFull);
        }
        let start = self.keys_used;
        self.keys[start..start + 4].copy_from_slice(&(index as u32).to_le_bytes());
        self.keys[start + 4..start + 6].copy_from_slice(&(key_len as u16).to_le_bytes());
        let mut at = start + RECORD_HEADER;
        let mut put = |keys: &mut [u8; KEY_BYTES], bytes: &[u8]| {
            keys[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&mut self.keys, sample.name.as_bytes());
        let mut previous: Option<&Tag<'_>> = None;
        for &i in order.iter() {
            let tag = &sample.tags[i as usize];
            if previous.is_some_and(|p| cmp_written(p, tag).is_eq()) {
                continue;
            }
            previous = Some(tag);
            put(&mut self.keys, &[KEY_SEPARATOR]);
            put(&mut self.keys, tag.key.as_bytes());
            if let Some(value) = tag.value {
                put(&mut self.keys, b":");
                put(&mut self.keys, value.as_bytes());
            }
        }
        self.keys_used = start + needed;
        Ok(((start + RECORD_HEADER) as u32, key_len as u16))
    }

    pub(super) fn name_of(&self, entry: &Entry) -> &[u8] {
        let start = entry.key_off as usize;
        &self.keys[start..start + entry.name_len as usize]
    }

    /// Moves every live key record to the front of the arena, fixing its owner's offset.
    pub(super) fn compact_keys(&mut self) {
        let mut read = 0;
        let mut write = 0;
        while read + RECORD_HEADER <= self.keys_used {
            let owner = u32::from_le_bytes([
                self.keys[read],
                self.keys[read + 1],
                self.keys[read + 2],
                self.keys[read + 3],
            ]);
            let len = u16::from_le_bytes([self.keys[read + 4], self.keys[read + 5]]) as usize;
            let total = RECORD_HEADER + len;
            let live = (owner as usize) < SERIES
                && self.is_live(owner as usize)
                && self.table.0[owner as usize].key_off as usize == read + RECORD_HEADER;
            if live {
                if write != read {
                    self.keys.copy_within(read..read + total, write);
                    self.table.0[owner as usize].key_off = (write + RECORD_HEADER) as u32;
                }
                write += total;
            }
            read += total;
        }
        self.keys_used = write;
        self.keys_dead = 0;
    }
}

/// Orders tags as Python orders their `k:v` strings (bytewise).
pub(super) fn cmp_written(a: &Tag<'_>, b: &Tag<'_>) -> core::cmp::Ordering {
    fn bytes<'t>(tag: &Tag<'t>) -> impl Iterator<Item = u8> + 't {
        let value = tag.value;
        tag.key.bytes().chain(value.map(|_| b':')).chain(value.unwrap_or("").bytes())
    }
    bytes(a).cmp(bytes(b))
}
