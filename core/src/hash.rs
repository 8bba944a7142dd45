//! A small, fast, well-mixed 64-bit hash (a folded-multiply construction in the style of wyhash),
//! used for series identity and set members. Not keyed: the core has no random source, and its
//! tables stay bounded whatever the input, so a flooding attacker can slow a lookup but not
//! overflow anything.

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

#[inline(always)]
const fn mum(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Hashes `bytes` with `seed`.
#[inline]
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut state = mix_words(seed ^ P0, bytes);
    if !bytes.len().is_multiple_of(8) {
        state = mum(state ^ tail_word(bytes), P2);
    }
    mum(state ^ bytes.len() as u64, P1 ^ P2)
}

/// Mixes the whole 8-byte words of `bytes` into `state`, one at a time: the strings hashed here
/// are short (names and tags, a few words), where an unrolled loop's set-up cost more than the
/// loop (`chunks_exact` was unrolled by two).
#[inline(always)]
fn mix_words(mut state: u64, bytes: &[u8]) -> u64 {
    let mut rest = bytes;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        state = mum(state ^ u64::from_le_bytes(*word), P1);
        rest = tail;
    }
    state
}

/// The last `bytes.len() % 8` bytes of `bytes` (at least one) as a little-endian word padded
/// with zeros: the same value as copying them into a zeroed `[u8; 8]`, read with at most two
/// fixed-size loads instead of a variable-length copy (a `memcpy` call, then a store-forwarding
/// stall on the reload, was a sixth of `record`'s time).
#[inline(always)]
fn tail_word(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let rest = len % 8;
    if len >= 8 {
        // The last 8 bytes hold the tail in their high end: shift it down.
        return load_u64(&bytes[len - 8..]) >> (8 * (8 - rest));
    }
    short_word(bytes)
}

/// All of `bytes` (1 to 7 of them) as a little-endian word padded with zeros: two overlapping
/// loads, whose overlapping bytes agree.
#[inline(always)]
fn short_word(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    if len >= 4 {
        let lo = u64::from(load_u32(bytes));
        let hi = u64::from(load_u32(&bytes[len - 4..]));
        lo | hi << (8 * (len - 4))
    } else if len >= 2 {
        let lo = u64::from(load_u16(bytes));
        let hi = u64::from(load_u16(&bytes[len - 2..]));
        lo | hi << (8 * (len - 2))
    } else {
        bytes.first().map_or(0, |&b| u64::from(b))
    }
}

#[inline(always)]
fn load_u64(bytes: &[u8]) -> u64 {
    bytes.first_chunk().map_or(0, |w| u64::from_le_bytes(*w))
}

#[inline(always)]
fn load_u32(bytes: &[u8]) -> u32 {
    bytes.first_chunk().map_or(0, |w| u32::from_le_bytes(*w))
}

#[inline(always)]
fn load_u16(bytes: &[u8]) -> u16 {
    bytes.first_chunk().map_or(0, |w| u16::from_le_bytes(*w))
}

/// Hashes the concatenation of `parts`, equal to `hash_bytes(seed, &parts.concat())`, without
/// copying: a word that spans two parts is assembled from two masked loads.
#[inline]
pub fn hash_parts(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut state = seed ^ P0;
    // The last `fill` (0..8) bytes seen and not yet mixed, in the low bytes of `pending`.
    let mut pending = 0u64;
    let mut fill = 0usize;
    let mut len = 0usize;
    for part in parts {
        len += part.len();
        let mut bytes = *part;
        if fill > 0 {
            let take = (8 - fill).min(bytes.len());
            if take == 0 {
                continue;
            }
            pending |= prefix_word(bytes, take) << (8 * fill);
            fill += take;
            bytes = &bytes[take..];
            if fill < 8 {
                continue;
            }
            state = mum(state ^ pending, P1);
            pending = 0;
            fill = 0;
        }
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            state = mum(state ^ load_u64(chunk), P1);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            pending = short_word(rest);
            fill = rest.len();
        }
    }
    if fill > 0 {
        state = mum(state ^ pending, P2);
    }
    mum(state ^ len as u64, P1 ^ P2)
}

/// The first `n` (1..=8) bytes of `bytes` (at least `n` long), little-endian, zero-padded.
#[inline(always)]
fn prefix_word(bytes: &[u8], n: usize) -> u64 {
    let word = if bytes.len() >= 8 { load_u64(bytes) } else { short_word(bytes) };
    if n >= 8 {
        word
    } else {
        word & ((1u64 << (8 * n)) - 1)
    }
}

/// Mixes all of `bytes` but their last 16 (or fewer, at least one unless `bytes` is empty) into
/// `state`, 16 bytes a multiply, and returns the state and those last bytes as two words, for
/// [`absorb_last`]. Together they are [`absorb`]: split so that a caller can look at the last
/// words (a series key's tag looks for a colon in them) before they are mixed.
///
/// Up to 16 bytes are read as two words that may overlap (the first and last 8, 4, or for 1 to 3
/// bytes their first, middle and last byte): between inputs of one length they differ whenever
/// the bytes do; the caller mixes the length in. These are wyhash's reads (Wang Yi, public
/// domain); series identity uses them, not [`hash_bytes`], whose values HyperLogLog sketches keep
/// across versions.
#[cfg_attr(target_pointer_width = "64", inline(always))]
#[cfg_attr(not(target_pointer_width = "64"), inline)]
pub(crate) fn absorb_head(mut state: u64, bytes: &[u8]) -> (u64, u64, u64) {
    let len = bytes.len();
    if len <= 16 {
        let (a, b) = words16(bytes);
        return (state, a, b);
    }
    let mut rest = bytes;
    while rest.len() > 16 {
        let Some((chunk, tail)) = rest.split_first_chunk::<16>() else { break };
        state = mum(load_u64(chunk) ^ P1, load_u64(&chunk[8..]) ^ state);
        rest = tail;
    }
    (state, load_u64(&bytes[len - 16..]), load_u64(&bytes[len - 8..]))
}

/// Mixes the last words from [`absorb_head`] into its state.
#[inline(always)]
pub(crate) fn absorb_last((state, a, b): (u64, u64, u64)) -> u64 {
    mum(a ^ P1, b ^ state)
}

/// Mixes `bytes` into `state`, 16 bytes a multiply. Not a hash on its own: inputs of different
/// lengths can give the same value, so the caller mixes in the length.
///
/// `state` must look random ([`seed_state`]): the first multiply takes the last word read
/// xor'ed with it, and a word equal to it would zero the product, so that every input of that
/// length ending in that word would hash alike (a seed of 0 with any input of 1 to 3 bytes, read
/// as `b = 0`; an ASCII seed with text ending in it).
#[cfg_attr(target_pointer_width = "64", inline(always))]
#[cfg_attr(not(target_pointer_width = "64"), inline)]
pub(crate) fn absorb(state: u64, bytes: &[u8]) -> u64 {
    absorb_last(absorb_head(state, bytes))
}

/// Hashes `bytes` with `seed`, 16 bytes a multiply (wyhash's reads), from a state the seed is
/// first mixed into, then the length: for keys that live in one process's memory (a DogStatsD
/// context; the aggregator's series keys use the same steps). Unlike [`hash_bytes`], its values
/// may change between versions. With a constant seed, the seed's mixing is folded at compile
/// time.
#[inline]
pub fn hash_key(seed: u64, bytes: &[u8]) -> u64 {
    absorb(seed_state(seed), bytes) ^ bytes.len() as u64
}

/// A seed mixed into a random-looking starting state for [`absorb`], whatever the seed (0,
/// ASCII text): no word read from an input equals it but by a 2^-64 chance.
#[inline(always)]
pub(crate) const fn seed_state(seed: u64) -> u64 {
    mum(seed ^ P0, P1)
}

/// Up to 16 bytes as two words: see [`absorb_head`].
#[inline(always)]
fn words16(bytes: &[u8]) -> (u64, u64) {
    let len = bytes.len();
    if len >= 8 {
        (load_u64(bytes), load_u64(&bytes[len - 8..]))
    } else if len >= 4 {
        (u64::from(load_u32(bytes)), u64::from(load_u32(&bytes[len - 4..])))
    } else {
        let byte = |i: usize| bytes.get(i).map_or(0, |&b| u64::from(b));
        (byte(0) << 16 | byte(len / 2) << 8 | byte(len.wrapping_sub(1)), 0)
    }
}

/// Whether any byte of `word` is `byte`: exact, with no false positives (the borrow of the
/// subtraction only runs past a zero byte).
#[inline(always)]
pub(crate) const fn has_byte(word: u64, byte: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let v = word ^ (ONES * byte as u64);
    v.wrapping_sub(ONES) & !v & (ONES << 7) != 0
}

/// Mixes one 64-bit word into `state`.
#[inline(always)]
pub fn hash_u64(state: u64, word: u64) -> u64 {
    mum(state ^ word ^ P0, P1)
}

/// A [`BuildHasher`](core::hash::BuildHasher) for maps whose keys are already hashes from this
/// module: a `u64` key passes through unchanged, so it is not hashed twice. Other keys are hashed
/// with [`hash_bytes`].
#[derive(Debug, Default, Clone, Copy)]
pub struct BuildPassThrough;

impl core::hash::BuildHasher for BuildPassThrough {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// The hasher of [`BuildPassThrough`].
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough(u64);

impl core::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_by_content_length_and_seed() {
        assert_ne!(hash_bytes(0, b"a"), hash_bytes(0, b"a\0"));
        assert_ne!(hash_bytes(0, b""), hash_bytes(1, b""));
        assert_ne!(hash_bytes(0, b"abcdefgh1"), hash_bytes(0, b"abcdefgh2"));
        assert_eq!(hash_bytes(7, b"same"), hash_bytes(7, b"same"));
    }

    /// The reference definition of [`hash_bytes`]: whole words, then the tail copied into a
    /// zeroed word. The fast tail read must give the same value for every length.
    fn hash_bytes_reference(seed: u64, bytes: &[u8]) -> u64 {
        let mut state = seed ^ P0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            state = mum(state ^ u64::from_le_bytes(word), P1);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            state = mum(state ^ u64::from_le_bytes(word), P2);
        }
        mum(state ^ bytes.len() as u64, P1 ^ P2)
    }

    #[test]
    fn the_tail_read_matches_the_reference_for_every_length() {
        let text: [u8; 40] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        for start in 0..8 {
            for end in start..text.len() {
                let bytes = &text[start..end];
                assert_eq!(hash_bytes(5, bytes), hash_bytes_reference(5, bytes), "{start}..{end}");
            }
        }
        // Fixed values, so the hash of names and members cannot drift between versions.
        assert_eq!(hash_bytes(0, b""), hash_bytes_reference(0, b""));
        assert_eq!(hash_bytes(0, b"abc"), 0xd334_bd81_44aa_d9c0);
    }

    #[test]
    fn parts_hash_like_their_concatenation() {
        let text = b"env:production-east-1:zone";
        for split_a in 0..text.len() {
            for split_b in split_a..text.len() {
                let parts: [&[u8]; 3] = [&text[..split_a], &text[split_a..split_b], &text[split_b..]];
                assert_eq!(hash_parts(9, &parts), hash_bytes(9, text));
            }
        }
    }

    #[test]
    fn parts_of_every_length_and_alignment_hash_like_their_concatenation() {
        // Words spanning two or three parts, empty parts, parts shorter and longer than a word.
        let text: [u8; 40] = core::array::from_fn(|i| b'a' + (i * 7 % 26) as u8);
        for len in 0..text.len() {
            let whole = hash_bytes(3, &text[..len]);
            for a in 0..=len {
                for b in a..=len.min(a + 9) {
                    let parts: [&[u8]; 4] = [&text[..a], &text[a..b], &[], &text[b..len]];
                    assert_eq!(hash_parts(3, &parts), whole, "{len}: {a} {b}");
                }
            }
        }
    }

    #[test]
    fn any_seed_keeps_every_byte() {
        // A seed of 0 against inputs of 1 to 3 bytes (read as `b = 0`), and a seed equal to the
        // input's last word, would zero the first product without `seed_state`.
        let seed = u64::from_le_bytes(*b"ees-eman");
        for (a, b) in [(&b"a"[..], &b"c"[..]), (b"ab", b"cd"), (b"abc", b"abd")] {
            assert_ne!(hash_key(0, a), hash_key(0, b));
        }
        assert_ne!(hash_key(seed, b"xxxxxxxxees-eman"), hash_key(seed, b"yyyyyyyyees-eman"));
        assert_ne!(hash_key(seed, b"xxxxees-eman"), hash_key(seed, b"yyyyees-eman"));
    }

    #[test]
    fn high_bits_are_spread() {
        // HyperLogLog uses the top bits: small sequential inputs must not share them.
        let mut seen = [false; 16];
        for i in 0u32..64 {
            seen[(hash_bytes(0, &i.to_le_bytes()) >> 60) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn a_u64_key_passes_through() {
        use core::hash::BuildHasher;
        assert_eq!(BuildPassThrough.hash_one(0xdead_beef_u64), 0xdead_beef);
    }
}
