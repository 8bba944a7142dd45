//! Payload compression with one deflate state kept for all the requests of a dispatch call.
//!
//! miniz_oxide's one-shot functions (`compress_to_vec_zlib`, `compress_to_vec`) allocate a
//! compressor of about 300 KB and a zeroed output of half the input's size on every call: for a
//! 1.5 MB series payload that is about 1 MB of memory set and freed per request. A
//! [`Compressor`] keeps both: the state (allocated at the first compression) is reset before
//! each payload, so nothing of a previous payload, finished or abandoned, reaches the next, and
//! the body buffer keeps its capacity. The bytes are exactly the one-shot functions' (the same
//! flags; tested).
//!
//! The dispatcher makes one per call (a batch of records: its payloads, and the requests of a
//! split or a bisection), not one for its life: kept between calls, the state stayed resident
//! in an idle agent (3.9 MB instead of 3.4 MB of RSS in `scripts/bench-agent.sh`) for a gain
//! within the noise (`cargo bench --bench dispatch`: 9.7 instead of 10.0 ms per 10,000 points).
//!
//! A payload whose compressed form grows past the output's limit is abandoned as soon as it does
//! ([`Compressor::compress`] returns `None`): it is split and sent again anyway, so compressing
//! the rest of it was wasted time.

use chouette_core::crc::crc32;
use miniz_oxide::deflate::core::{compress, CompressorOxide, TDEFLFlush, TDEFLStatus};
use miniz_oxide::DataFormat;

use super::gzip::HEADER as GZIP_HEADER;
use super::output::Encoding;

/// Deflate state and body buffer reused from one payload to the next (see the module docs).
pub struct Compressor {
    state: Option<Box<CompressorOxide>>,
    body: Vec<u8>,
}

impl Default for Compressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Compressor {
    /// A compressor; its state is allocated at the first compression, once.
    pub fn new() -> Self {
        Compressor { state: None, body: Vec::new() }
    }

    /// `input` as a request body in `encoding` (zlib stream, gzip member, or as it is),
    /// deflated at `level` (0 to 10; above 10 is 10). `None` when the body would be longer
    /// than `limit` bytes (compression stops there). The body lives until the next call.
    pub fn compress(&mut self, input: &[u8], encoding: Encoding, level: u8, limit: usize) -> Option<&[u8]> {
        self.body.clear();
        match encoding {
            Encoding::Identity => {
                if input.len() > limit {
                    return None;
                }
                self.body.extend_from_slice(input);
            }
            Encoding::Deflate => self.deflate(input, DataFormat::Zlib, level, limit)?,
            Encoding::Gzip => {
                self.body.extend_from_slice(&GZIP_HEADER);
                self.deflate(input, DataFormat::Raw, level, limit.saturating_sub(8))?;
                self.body.extend_from_slice(&crc32(input).to_le_bytes());
                self.body.extend_from_slice(&(input.len() as u32).to_le_bytes());
            }
        }
        (self.body.len() <= limit).then_some(&self.body[..])
    }

    /// Appends `input` deflated in `format` to `self.body`; `None` once `self.body` is longer
    /// than `limit`.
    fn deflate(&mut self, input: &[u8], format: DataFormat, level: u8, limit: usize) -> Option<()> {
        let level = level.min(10);
        let state = self.state.get_or_insert_with(Box::default);
        state.reset();
        state.set_format_and_level(format, level);
        let start = self.body.len();
        let mut filled = start;
        let mut rest = input;
        // Series payloads compress 30 to 40 times; the buffer doubles when that is not enough.
        let mut room = (input.len() / 16).clamp(4096, 1 << 20);
        loop {
            if self.body.len() - filled < 64 {
                // Never much past the limit: an oversized payload stops near it.
                let len = (filled + room).min(limit.saturating_add(64)).max(filled + 64);
                self.body.resize(len, 0);
                room *= 2;
            }
            let (status, read, written) = compress(state, rest, &mut self.body[filled..], TDEFLFlush::Finish);
            filled += written;
            rest = rest.get(read..).unwrap_or_default();
            match status {
                TDEFLStatus::Done => {
                    self.body.truncate(filled);
                    return Some(());
                }
                TDEFLStatus::Okay if filled <= limit => {}
                // Over the limit: abandoned (the state is reset before the next payload).
                TDEFLStatus::Okay => {
                    self.body.truncate(filled);
                    return None;
                }
                // Only a misuse of the state gives these (compressing on after `Done` without a
                // reset): this payload is compressed by the one-shot function instead, and the
                // state is replaced.
                TDEFLStatus::BadParam | TDEFLStatus::PutBufFailed => {
                    log::debug!(
                        "status={status:?} : the kept deflate state failed; payload compressed in one shot"
                    );
                    **state = CompressorOxide::default();
                    self.body.truncate(start);
                    let one_shot = match format {
                        DataFormat::Zlib => miniz_oxide::deflate::compress_to_vec_zlib(input, level),
                        _ => miniz_oxide::deflate::compress_to_vec(input, level),
                    };
                    self.body.extend_from_slice(&one_shot);
                    return (self.body.len() <= limit).then_some(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::gzip;
    use chouette_core::wire::zlib;

    /// Series-like JSON of `n` entries, seeded so that payloads differ.
    fn payload(n: usize, seed: usize) -> Vec<u8> {
        let mut out = br#"{"series": ["#.to_vec();
        for i in 0..n {
            let k = (i * 7919 + seed * 104_729) % 1000;
            out.extend_from_slice(
                format!(
                    r#"{{"metric": "bench.gauge.m{k}", "tags": ["board:b{}", "env:bench"], "type": "gauge", "host": "bench", "points": [[1796121860, {}.25]]}}, "#,
                    k % 10,
                    i * seed
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"]}");
        out
    }

    #[test]
    fn the_same_bytes_as_the_one_shot_functions_payload_after_payload() {
        let mut c = Compressor::new();
        // Sizes and levels change from one payload to the next; each is compared with a fresh
        // one-shot compression, so nothing of the previous payload leaks into the next.
        for (seed, (n, level)) in
            [(2000, 6), (10, 6), (5000, 1), (0, 6), (300, 9), (2000, 6)].into_iter().enumerate()
        {
            let input = payload(n, seed);
            let z = c.compress(&input, Encoding::Deflate, level, usize::MAX).expect("fits").to_vec();
            assert_eq!(z, zlib::compress(&input, level), "zlib, payload {seed}");
            let g = c.compress(&input, Encoding::Gzip, level, usize::MAX).expect("fits").to_vec();
            assert_eq!(g, gzip::compress(&input, level), "gzip, payload {seed}");
            assert_eq!(gzip::decompress(&g).expect("gzip"), input);
            let plain = c.compress(&input, Encoding::Identity, level, usize::MAX).expect("fits");
            assert_eq!(plain, &input[..]);
        }
    }

    #[test]
    fn a_body_over_the_limit_is_abandoned_and_the_next_payload_is_whole() {
        let mut c = Compressor::new();
        let big = payload(20_000, 1);
        let whole = zlib::compress(&big, 6);
        // Abandoned part way, well before the whole input was compressed.
        assert_eq!(c.compress(&big, Encoding::Deflate, 6, whole.len() / 4), None);
        assert!(c.body.len() <= whole.len() / 4 + 64 + 4096, "{} bytes kept", c.body.len());
        assert_eq!(c.compress(&big, Encoding::Gzip, 6, 100), None);
        assert_eq!(c.compress(&big, Encoding::Identity, 6, big.len() - 1), None);
        // Exactly at the limit: sent.
        let at = c.compress(&big, Encoding::Deflate, 6, whole.len()).map(<[u8]>::to_vec);
        assert_eq!(at.as_ref(), Some(&whole));
        // The abandoned streams left nothing behind in the state.
        let small = payload(50, 2);
        for _ in 0..2 {
            assert_eq!(c.compress(&big, Encoding::Deflate, 6, 1000), None);
            let z = c.compress(&small, Encoding::Deflate, 6, usize::MAX).expect("fits").to_vec();
            assert_eq!(z, zlib::compress(&small, 6));
            let mut out = vec![0; small.len()];
            assert_eq!(zlib::decompress_into(&z, &mut out), Ok(small.len()));
            assert_eq!(out, small);
        }
    }

    #[test]
    fn empty_and_tiny_inputs() {
        let mut c = Compressor::new();
        for input in [&b""[..], b"x", b"[]"] {
            let z = c.compress(input, Encoding::Deflate, 6, usize::MAX).expect("fits").to_vec();
            assert_eq!(z, zlib::compress(input, 6));
            let g = c.compress(input, Encoding::Gzip, 6, usize::MAX).expect("fits").to_vec();
            assert_eq!(gzip::decompress(&g).expect("gzip"), input);
        }
    }
}
