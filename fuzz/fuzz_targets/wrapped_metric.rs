//! Wrapped-metric parser: never panics, and what it accepts encodes and parses back the same.
#![no_main]

use chouette_core::wire::wrapped::{encode_wrapped, parse_wrapped, wrapped_scratch_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scratch = vec![0u8; wrapped_scratch_len(data.len())];
    let Ok(rec) = parse_wrapped(data, &mut scratch) else { return };
    let Some(w) = rec.wrapped(0) else { panic!("a parsed record has a point") };
    let mut out = vec![0u8; 64 + 8 * data.len()];
    let n = encode_wrapped(&w, &mut out).expect("parsed values encode");
    let mut scratch2 = vec![0u8; n];
    let again = parse_wrapped(&out[..n], &mut scratch2).expect("encoded record parses");
    assert_eq!(again.wrapped(0), Some(w));
});
