//! zlib inflate without a heap: never panics, never writes past the buffer, and whatever it
//! accepts re-inflates to the same bytes after a round trip through the compressor.
#![no_main]

use chouette_core::wire::zlib::{compress, decompress_into};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0u8; 64 * 1024];
    let Ok(n) = decompress_into(data, &mut out) else { return };
    let again = compress(&out[..n], 6);
    let mut check = vec![0u8; n + 1];
    let m = decompress_into(&again, &mut check).expect("our own stream inflates");
    assert_eq!(&check[..m], &out[..n]);
});
