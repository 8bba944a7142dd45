//! zlib streams (RFC 1950: a 2-byte header, raw deflate, an Adler-32 trailer): what Datadog
//! means by `Content-Encoding: deflate` and what Python's `zlib.compress` produces.
//!
//! - `compress` (feature `alloc`): miniz_oxide's compressor allocates its tables and output.
//! - [`decompress_into`]: no heap. It keeps miniz_oxide's `DecompressorOxide` state (about
//!   11 KB) on the stack for the duration of the call: fine on Linux, but on a microcontroller
//!   with a small stack budget the calling task must be sized for it.

use core::fmt;

use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_PARSE_ZLIB_HEADER, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
};
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// Compression level Python's `zlib.compress` uses by default (`Z_DEFAULT_COMPRESSION`), and so
/// what the original sender posted.
pub const DEFAULT_LEVEL: u8 = 6;

/// Compresses `input` into a zlib stream (header, deflate data, Adler-32), at `level` 0 (store)
/// to 10 (miniz's slowest); levels above 10 are treated as 10. With [`DEFAULT_LEVEL`] the output
/// is what Datadog's `Content-Encoding: deflate` intake expects; the bytes may differ from
/// CPython's zlib (another deflate implementation), the decompressed content never does.
#[cfg(feature = "alloc")]
pub fn compress(input: &[u8], level: u8) -> alloc::vec::Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(input, level.min(10))
}

/// Why a zlib stream could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InflateError {
    /// The output buffer filled up before the stream ended; `filled` bytes (the whole buffer)
    /// were written and more would follow.
    BufferTooSmall {
        /// Bytes written before the buffer ran out (its length).
        filled: usize,
    },
    /// The input ended before the end of the zlib stream.
    Truncated,
    /// The input is not a valid zlib stream (bad header, bad deflate data).
    Corrupt,
    /// The data inflated but its Adler-32 checksum does not match the trailer.
    ChecksumMismatch,
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::BufferTooSmall { filled } => {
                write!(f, "output buffer too small: filled {filled} bytes and more would follow")
            }
            InflateError::Truncated => f.write_str("zlib stream ends early"),
            InflateError::Corrupt => f.write_str("input is not a valid zlib stream"),
            InflateError::ChecksumMismatch => f.write_str("zlib stream fails its Adler-32 check"),
        }
    }
}

impl core::error::Error for InflateError {}

/// Inflates the zlib stream `input` into `out`; returns the number of bytes written.
///
/// The whole stream must be in `input` (bytes after its end are ignored). The header and the
/// Adler-32 trailer are checked. No heap: the decompressor state (about 11 KB) lives on the
/// stack during the call.
pub fn decompress_into(input: &[u8], out: &mut [u8]) -> Result<usize, InflateError> {
    let mut state = DecompressorOxide::new();
    let flags = TINFL_FLAG_PARSE_ZLIB_HEADER | TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _read, written) = decompress(&mut state, input, out, 0, flags);
    match status {
        TINFLStatus::Done => Ok(written),
        TINFLStatus::HasMoreOutput => Err(InflateError::BufferTooSmall { filled: written }),
        TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => Err(InflateError::Truncated),
        TINFLStatus::Adler32Mismatch => Err(InflateError::ChecksumMismatch),
        _ => Err(InflateError::Corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `zlib.compress(b"Hello, zlib!")` from CPython.
    const HELLO: [u8; 20] =
        [120, 156, 243, 72, 205, 201, 201, 215, 81, 168, 202, 201, 76, 82, 4, 0, 27, 101, 4, 19];

    #[test]
    fn inflates_a_python_stream() {
        let mut out = [0u8; 32];
        let n = decompress_into(&HELLO, &mut out).unwrap();
        assert_eq!(&out[..n], b"Hello, zlib!");
    }

    #[test]
    fn exact_size_buffer_is_enough() {
        let mut out = [0u8; 12];
        assert_eq!(decompress_into(&HELLO, &mut out), Ok(12));
    }

    #[test]
    fn short_buffer_says_how_far_it_got() {
        let mut out = [0u8; 5];
        assert_eq!(decompress_into(&HELLO, &mut out), Err(InflateError::BufferTooSmall { filled: 5 }));
        assert_eq!(&out, b"Hello");
    }

    #[test]
    fn truncated_input_is_reported() {
        let mut out = [0u8; 32];
        for cut in 0..HELLO.len() {
            let got = decompress_into(&HELLO[..cut], &mut out);
            assert!(
                matches!(got, Err(InflateError::Truncated | InflateError::Corrupt)),
                "cut {cut}: {got:?}"
            );
        }
    }

    #[test]
    fn bad_checksum_and_bad_header_are_reported() {
        let mut out = [0u8; 32];
        let mut bad_sum = HELLO;
        bad_sum[19] ^= 1;
        assert_eq!(decompress_into(&bad_sum, &mut out), Err(InflateError::ChecksumMismatch));
        let mut bad_header = HELLO;
        bad_header[1] ^= 1; // header check bits no longer divide by 31
        assert_eq!(decompress_into(&bad_header, &mut out), Err(InflateError::Corrupt));
        assert_eq!(decompress_into(b"not zlib at all", &mut out), Err(InflateError::Corrupt));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn round_trips_at_every_level() {
        let text = b"{\"series\": [{\"metric\": \"req\", \"tags\": [\"ep:a\"]}]}".repeat(50);
        let mut out = [0u8; 4096];
        for level in 0..=10 {
            let packed = compress(&text, level);
            assert_eq!(packed[0] & 0x0f, 8, "zlib header: deflate, level {level}");
            let n = decompress_into(&packed, &mut out).unwrap();
            assert_eq!(&out[..n], &text[..], "level {level}");
        }
    }
}
