//! The serial link's framing: golden frames, split independence, corruption, resynchronisation.

use chouette_core::link::{
    cobs, encode_frame, max_frame_bytes, FrameError, Framer, Header, Kind, HEADER_BYTES, MAX_PAYLOAD,
    TRAILER_BYTES,
};
use proptest::prelude::*;

type Owned = (Header, Vec<u8>);

#[test]
fn the_longest_frame_is_as_documented() {
    // docs/link.md ("12 to 512 bytes; on the wire at most 516") and the Framer's docs quote these.
    assert_eq!(HEADER_BYTES + TRAILER_BYTES, 12);
    assert_eq!(HEADER_BYTES + MAX_PAYLOAD + TRAILER_BYTES, 512);
    assert_eq!(max_frame_bytes(MAX_PAYLOAD), 516);
    let mut out = vec![0u8; 1024];
    let payload = [0x55u8; MAX_PAYLOAD];
    let header = Header { kind: Kind::Data, boot_id: u32::MAX, seq: u16::MAX };
    assert!(encode_frame(header, &payload, &mut out).expect("encode") <= 516);
}

fn frame(kind: Kind, boot_id: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; max_frame_bytes(payload.len())];
    let n = encode_frame(Header { kind, boot_id, seq }, payload, &mut out).expect("encode");
    out.truncate(n);
    out
}

/// Feeds `chunks` to a fresh framer; the frames and refusals, in order.
fn read(chunks: &[&[u8]]) -> (Vec<Owned>, Vec<FrameError>) {
    let mut framer = Framer::<600>::new();
    let (mut frames, mut errors) = (Vec::new(), Vec::new());
    for chunk in chunks {
        framer.feed(chunk, |r| match r {
            Ok(f) => frames.push((f.header, f.payload.to_vec())),
            Err(e) => errors.push(e),
        });
    }
    (frames, errors)
}

#[test]
fn golden_frames() {
    // Computed by an independent Python implementation of docs/link.md (bitwise CRC-32C, COBS by
    // blocks): version 1, kind, boot id LE, seq LE, payload, CRC-32C LE, COBS, then 0x00.
    let hello = frame(Kind::Hello, 0x0403_0201, 0x0605, &[]);
    assert_eq!(hello, [0x0d, 0x01, 0x01, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x44, 0x64, 0x70, 0xb5, 0x00]);
    let data = frame(Kind::Data, 7, 1, &[0x00, 0xaa]);
    assert_eq!(
        data,
        [0x04, 0x01, 0x03, 0x07, 0x01, 0x01, 0x02, 0x01, 0x01, 0x06, 0xaa, 0xc5, 0xb5, 0x91, 0xdf, 0x00]
    );
    let (frames, errors) = read(&[&hello, &data]);
    assert!(errors.is_empty());
    assert_eq!(frames[0], (Header { kind: Kind::Hello, boot_id: 0x0403_0201, seq: 0x0605 }, vec![]));
    assert_eq!(frames[1], (Header { kind: Kind::Data, boot_id: 7, seq: 1 }, vec![0x00, 0xaa]));
}

#[test]
fn refusals_are_counted_and_the_next_frame_is_read() {
    let good = frame(Kind::Ack, 9, 3, b"ok");
    let mut damaged = good.clone();
    let o = damaged.iter().position(|&b| b == b'o').expect("the payload byte");
    damaged[o] ^= 0x10; // a data byte, not a COBS code: the CRC catches it
    let oversize = vec![0x55u8; 700];
    let stream: Vec<u8> = [&b"\x00\x00garbage\x00"[..], &damaged, &oversize, &[0], &good].concat();
    let mut framer = Framer::<600>::new();
    let mut frames = Vec::new();
    framer.feed(&stream, |r| frames.push(r.map(|f| f.payload.to_vec())));
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert!(
        frames[0].is_err() && frames[1] == Err(FrameError::BadCrc) && frames[2] == Err(FrameError::Oversize)
    );
    assert_eq!(frames[3], Ok(b"ok".to_vec()));
    let stats = framer.stats();
    assert_eq!((stats.frames, stats.bad_crc, stats.oversize), (1, 1, 1));
    assert_eq!(stats.short + stats.bad_encoding, 1, "the 'garbage' run");
    let mut out = [0u8; 1024];
    let too_big = [1u8; MAX_PAYLOAD + 1];
    assert_eq!(
        encode_frame(Header { kind: Kind::Data, boot_id: 0, seq: 0 }, &too_big, &mut out),
        Err(FrameError::TooLarge)
    );
}

fn kind() -> impl Strategy<Value = Kind> {
    (1u8..=7).prop_map(|b| Kind::from_byte(b).unwrap())
}

fn frames() -> impl Strategy<Value = Vec<(Kind, u32, u16, Vec<u8>)>> {
    prop::collection::vec(
        (kind(), any::<u32>(), any::<u16>(), prop::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD)),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// However the bytes are split, the same frames come out.
    #[test]
    fn split_independence(input in frames(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20)) {
        let wire: Vec<u8> = input.iter().flat_map(|(k, b, s, p)| frame(*k, *b, *s, p)).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut at = 0;
        for p in points {
            chunks.push(&wire[at..p]);
            at = p;
        }
        chunks.push(&wire[at..]);
        let (got, errors) = read(&chunks);
        prop_assert!(errors.is_empty());
        let want: Vec<Owned> = input.iter().map(|(k, b, s, p)| (Header { kind: *k, boot_id: *b, seq: *s }, p.clone())).collect();
        prop_assert_eq!(got, want);
    }

    /// Any single corrupted byte of a frame is detected (never a wrong frame), and the next frame
    /// is read.
    #[test]
    fn a_corrupted_byte_is_detected_and_the_link_resynchronises(
        (kind, boot, seq, payload) in (kind(), any::<u32>(), any::<u16>(), prop::collection::vec(any::<u8>(), 0..64)),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let good = frame(kind, boot, seq, &payload);
        let mut bad = good.clone();
        let i = at.index(bad.len());
        bad[i] ^= flip;
        let next = frame(Kind::Ack, 1, 2, b"next");
        let (got, _errors) = read(&[&bad, &next]);
        let original = (Header { kind, boot_id: boot, seq }, payload.clone());
        let next_frame = (Header { kind: Kind::Ack, boot_id: 1, seq: 2 }, b"next".to_vec());
        // Nothing but the original (a flip of the delimiter into a byte only merges it with the
        // next frame, which is then refused) and the next frame, if it was not merged.
        for f in &got {
            prop_assert!(*f == next_frame || *f == original, "a wrong frame came out: {:?}", f);
        }
        prop_assert!(!got.contains(&original), "a corrupted frame was accepted");
        let (after, _) = read(&[&bad, &next, &next]);
        prop_assert!(after.contains(&next_frame), "the link did not resynchronise");
    }

    #[test]
    fn cobs_round_trips(data in prop::collection::vec(any::<u8>(), 0..1200)) {
        let mut enc = vec![0u8; cobs::max_encoded_len(data.len())];
        let n = cobs::encode(&data, &mut enc).unwrap();
        prop_assert!(!enc[..n].contains(&0));
        let len = cobs::decode_in_place(&mut enc[..n]).unwrap();
        prop_assert_eq!(&enc[..len], &data[..]);
    }
}
