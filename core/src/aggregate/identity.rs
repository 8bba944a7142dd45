//! Series identity: the hashes of a sample's name and type and of each of its tags, which
//! [`series_key`] combines (the tags sorted and deduplicated).
//!
//! A tag's identity is its written form (`key:value`, or the bare `key`): `{key: "a", value: "b"}`
//! and the bare `"a:b"` are one tag, as they are one string to Python. A tag is hashed as the two
//! parts of its written form around its first colon, each 16 bytes a multiply ([`absorb`]), so
//! the usual tag (no colon in its key) is hashed where it lies, without joining its parts.
//!
//! These values live only inside one aggregator (its table and probes): they can change between
//! versions, unlike [`hash_bytes`](crate::hash::hash_bytes), whose values HyperLogLog sketches
//! carry from a board to the agent.

use crate::hash::{absorb, absorb_head, absorb_last, has_byte, hash_u64, seed_state};
use crate::limits::{MAX_TAGS, MAX_TAG_BYTES};
use crate::metric::{MetricType, Sample, Tag};

use super::table::SeriesKey;

/// `"name-see"`, `"tags-see"`, mixed ([`seed_state`]) at compile time: starting states that
/// look random, as [`absorb`] needs.
const NAME_STATE: u64 = seed_state(0x6e61_6d65_2d73_6565);
const TAG_STATE: u64 = seed_state(0x7461_6773_2d73_6565);

/// A series' identity: the hash of its name and type, into which its tags' hashes are mixed
/// sorted and deduplicated, and how many distinct tags it has. At most [`MAX_TAGS`] tags: the
/// aggregator refuses more before hashing.
///
/// Inlining: on 64-bit targets the hashing below is inlined into this function, and this one
/// is not inlined into its callers, so it is in the binary once for every aggregator size (the
/// agent has two): 525 instructions a sample for `record` against 557 with the tag hash called,
/// 2 KB of x86_64 code against 6 KB inlined into each caller. On 32-bit targets (the firmware,
/// where a 64-bit multiply is a dozen instructions) the compiler chooses, for flash: forcing
/// either way cost 1.3 to 4.3 KB more.
#[cfg_attr(target_pointer_width = "64", inline(never))]
#[cfg_attr(not(target_pointer_width = "64"), inline)]
pub(super) fn series_key(sample: &Sample<'_>) -> SeriesKey {
    let mut series = name_hash(sample.kind, sample.name.as_bytes());
    let mut distinct = 0u8;
    match sample.tags {
        [] => {}
        [a, b] => {
            // Two tags, the common case: no scratch, no sort loop.
            let (a, b) = (tag_hash(a), tag_hash(b));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            series = hash_u64(series, lo);
            distinct = 1;
            if hi != lo {
                series = hash_u64(series, hi);
                distinct = 2;
            }
        }
        tags => {
            // One tag comes here too (an arm of its own would inline a third copy of the tag
            // hash). Not zeroed, as a `[0; MAX_TAGS]` would be for every such sample.
            let mut hashes: heapless::Vec<u64, MAX_TAGS> = heapless::Vec::new();
            for tag in tags {
                // More than MAX_TAGS tags are refused before the key is used.
                let _ = hashes.push(tag_hash(tag));
            }
            insertion_sort(&mut hashes);
            let mut previous = None;
            for &h in hashes.iter() {
                if previous != Some(h) {
                    series = hash_u64(series, h);
                    distinct += 1;
                    previous = Some(h);
                }
            }
        }
    }
    SeriesKey { series, distinct }
}

/// The hash of a series' name and type, into which its tags' hashes are mixed.
#[inline(always)]
fn name_hash(kind: MetricType, name: &[u8]) -> u64 {
    // The type flips low bits of a random-looking state: it stays random-looking.
    absorb(NAME_STATE ^ kind as u64, name) ^ name.len() as u64
}

/// The hash of a tag's written form. A key with no colon (the usual case: [`Tag::parse`] never
/// makes one) is hashed in place; a key holding a colon (a raw record's tag object can have one)
/// is split again at it first.
#[cfg_attr(target_pointer_width = "64", inline(always))]
#[cfg_attr(not(target_pointer_width = "64"), inline)]
fn tag_hash(tag: &Tag<'_>) -> u64 {
    let key = tag.key.as_bytes();
    let head = absorb_head(TAG_STATE, key);
    let colon = if key.len() <= 16 {
        // The two words hold every byte of a short key.
        has_byte(head.1, b':') | has_byte(head.2, b':')
    } else {
        key.contains(&b':')
    };
    if colon {
        return resplit_tag_hash(tag);
    }
    finish_tag(absorb_last(head), key.len(), tag.value.map(str::as_bytes))
}

/// Mixes the value (if any) and both lengths into `state`, the key's.
#[inline(always)]
fn finish_tag(state: u64, key_len: usize, value: Option<&[u8]>) -> u64 {
    match value {
        None => state ^ key_len as u64,
        // `len + 1`: an empty value (`"k:"`) is not a bare tag (`"k"`).
        Some(value) => absorb(state, value) ^ (key_len as u64 | (value.len() as u64 + 1) << 32),
    }
}

/// [`tag_hash`] of a tag whose key holds a colon: its written form split at the first colon.
/// A tag longer than [`MAX_TAG_BYTES`] gets 0: the aggregator refuses it before using its key.
#[cold]
#[inline(never)]
fn resplit_tag_hash(tag: &Tag<'_>) -> u64 {
    let mut written = [0u8; MAX_TAG_BYTES];
    let len = tag.encoded_len();
    if len > written.len() {
        return 0;
    }
    let key = tag.key.as_bytes();
    written[..key.len()].copy_from_slice(key);
    if let Some(value) = tag.value {
        written[key.len()] = b':';
        written[key.len() + 1..len].copy_from_slice(value.as_bytes());
    }
    let written = &written[..len];
    let at = written.iter().position(|&b| b == b':').unwrap_or(len);
    let key = &written[..at];
    finish_tag(absorb(TAG_STATE, key), key.len(), written.get(at + 1..))
}

pub(super) fn insertion_sort(values: &mut [u64]) {
    for i in 1..values.len() {
        let mut j = i;
        while j > 0 && values[j - 1] > values[j] {
            values.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::HashSet;
    use std::string::String;
    use std::vec::Vec;

    use super::*;

    /// The tag a written form stands for, split at its first colon as [`Tag::parse`] does.
    fn written(tag: &Tag<'_>) -> String {
        std::format!("{tag}")
    }

    #[test]
    fn a_tag_is_its_written_form_however_it_is_split() {
        let texts = [
            "a:b",
            "a:b:c",
            ":",
            "::",
            "a:",
            ":b",
            "k:v:",
            "host:board-1:8080",
            "abcdefghijklmnop:q",
            "abcdefghijklmnopq:r",
            "abcdefghijklmnopqrstuvwxyzabcdefgh:ij:k",
            "0123456789abcde:",
            "x",
        ];
        for text in texts {
            let parsed = Tag::parse(text);
            let want = tag_hash(&parsed);
            // Every split at a colon, with and without a value, is the same tag.
            for (at, _) in text.match_indices(':') {
                let split = Tag::new(&text[..at], &text[at + 1..]);
                assert_eq!(tag_hash(&split), want, "{text:?} split at {at}");
            }
            assert_eq!(tag_hash(&Tag { key: text, value: None }), want, "{text:?} bare");
        }
    }

    #[test]
    fn distinct_written_forms_hash_apart() {
        // Every written form over a small alphabet up to 6 bytes (colons and NULs included, so
        // zero padding and splits are exercised), and longer ones of every length to 48.
        let alphabet = [b'a', b'b', b':', 0];
        let mut texts: Vec<Vec<u8>> = std::vec![Vec::new()];
        let mut last = texts.clone();
        for _ in 0..6 {
            last = last
                .iter()
                .flat_map(|t| alphabet.iter().map(move |&c| [t.as_slice(), &[c]].concat()))
                .collect();
            texts.extend(last.iter().cloned());
        }
        let long: [u8; 48] = core::array::from_fn(|i| b'a' + (i * 7 % 26) as u8);
        for len in 7..=long.len() {
            texts.push(long[..len].to_vec());
            let mut changed = long[..len].to_vec();
            changed[len / 2] = b':';
            texts.push(changed);
        }
        let mut seen = HashSet::new();
        for text in &texts {
            let text = core::str::from_utf8(text).expect("ASCII");
            assert!(seen.insert(tag_hash(&Tag::parse(text))), "{text:?} collides");
            assert_eq!(written(&Tag::parse(text)), text);
        }
        // Names: distinct bytes or lengths (trailing NULs), distinct hashes; types apart.
        let mut names = HashSet::new();
        for text in &texts {
            assert!(names.insert(name_hash(MetricType::Count, text)), "{text:?}");
        }
        assert_ne!(name_hash(MetricType::Count, b"x"), name_hash(MetricType::Gauge, b"x"));
        // Text ending in a seed's own bytes (`"name-see"` read little-endian) keeps the rest.
        for kind in MetricType::ALL {
            assert_ne!(name_hash(kind, b"xxxxxxxxees-eman"), name_hash(kind, b"yyyyyyyyees-eman"));
        }
        assert_ne!(tag_hash(&Tag::parse("xxxxxxxxees-sgat")), tag_hash(&Tag::parse("yyyyyyyyees-sgat")));
    }

    #[test]
    fn a_tag_too_long_to_keep_is_hashed_without_a_panic() {
        let long = "k:".repeat(MAX_TAG_BYTES);
        assert_eq!(tag_hash(&Tag { key: &long, value: None }), 0);
        assert_eq!(tag_hash(&Tag { key: &long, value: Some("v") }), 0);
    }
}
