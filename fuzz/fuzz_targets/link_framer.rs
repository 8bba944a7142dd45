//! Link framer: any bytes, split anywhere, never panic; every frame read is one a sender could
//! have written (it re-encodes to the same bytes).
#![no_main]

use chouette_core::link::{encode_frame, max_frame_bytes, Framer, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut framer = Framer::<600>::new();
    let mut frames = 0u64;
    for chunk in [&data[..split], &data[split..]] {
        framer.feed(chunk, |frame| {
            let Ok(frame) = frame else { return };
            frames += 1;
            assert!(frame.payload.len() <= MAX_PAYLOAD);
            let mut out = [0u8; max_frame_bytes(MAX_PAYLOAD)];
            let n = encode_frame(frame.header, frame.payload, &mut out).expect("a read frame encodes");
            assert_eq!(out[n - 1], 0);
        });
    }
    assert_eq!(framer.stats().frames, frames);
});
