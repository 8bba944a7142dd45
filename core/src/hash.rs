//! A small, fast, well-mixed 64-bit hash (a folded-multiply construction in the style of wyhash),
//! used for series identity and set members. Not keyed: the core has no random source, and its
//! tables stay bounded whatever the input, so a flooding attacker can slow a lookup but not
//! overflow anything.

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Hashes `bytes` with `seed`.
#[inline]
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
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

/// Mixes one 64-bit word into `state`.
#[inline(always)]
pub fn hash_u64(state: u64, word: u64) -> u64 {
    mum(state ^ word ^ P0, P1)
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

    #[test]
    fn high_bits_are_spread() {
        // HyperLogLog uses the top bits: small sequential inputs must not share them.
        let mut seen = [false; 16];
        for i in 0u32..64 {
            seen[(hash_bytes(0, &i.to_le_bytes()) >> 60) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
