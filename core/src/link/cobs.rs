//! Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999): rewrites a buffer so it holds no
//! `0x00`, at a cost of at most one byte per 254 plus one, so `0x00` can delimit frames.

/// The most bytes [`encode`] writes for `len` input bytes: `len + len / 254 + 1`.
pub const fn max_encoded_len(len: usize) -> usize {
    len + len / 254 + 1
}

/// Why a buffer could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CobsError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// The input is not a COBS encoding (a `0x00` inside, or a code pointing past the end).
    Invalid,
}

/// Encodes `src` into `dst` (no `0x00` is written; the caller adds the delimiter). Returns the
/// bytes written.
pub fn encode(src: &[u8], dst: &mut [u8]) -> Result<usize, CobsError> {
    if dst.len() < max_encoded_len(src.len()) {
        return Err(CobsError::BufferTooSmall);
    }
    let mut code_at = 0;
    let mut out = 1;
    let mut code: u8 = 1;
    for &byte in src {
        if byte == 0 {
            dst[code_at] = code;
            code_at = out;
            out += 1;
            code = 1;
        } else {
            dst[out] = byte;
            out += 1;
            code += 1;
            if code == 0xFF {
                dst[code_at] = code;
                code_at = out;
                out += 1;
                code = 1;
            }
        }
    }
    dst[code_at] = code;
    Ok(out)
}

/// Decodes `buf` (one COBS-encoded frame, without its delimiter) in place; returns the decoded
/// length (the decoded bytes are `buf[..len]`).
pub fn decode_in_place(buf: &mut [u8]) -> Result<usize, CobsError> {
    let mut read = 0;
    let mut write = 0;
    while read < buf.len() {
        let code = buf[read];
        if code == 0 {
            return Err(CobsError::Invalid);
        }
        read += 1;
        let run = usize::from(code) - 1;
        if read + run > buf.len() {
            return Err(CobsError::Invalid);
        }
        for i in 0..run {
            let byte = buf[read + i];
            if byte == 0 {
                return Err(CobsError::Invalid);
            }
            buf[write] = byte;
            write += 1;
        }
        read += run;
        if code != 0xFF && read < buf.len() {
            buf[write] = 0;
            write += 1;
        }
    }
    Ok(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &[u8]) -> [u8; 600] {
        let mut enc = [0u8; 600];
        let n = encode(data, &mut enc).unwrap();
        assert!(n <= max_encoded_len(data.len()));
        assert!(!enc[..n].contains(&0));
        let len = decode_in_place(&mut enc[..n]).unwrap();
        assert_eq!(&enc[..len], data);
        enc
    }

    #[test]
    fn known_encodings() {
        // Examples from the COBS paper / Wikipedia's table.
        let cases: [(&[u8], &[u8]); 5] = [
            (&[0x00], &[0x01, 0x01]),
            (&[0x00, 0x00], &[0x01, 0x01, 0x01]),
            (&[0x11, 0x22, 0x00, 0x33], &[0x03, 0x11, 0x22, 0x02, 0x33]),
            (&[0x11, 0x22, 0x33, 0x44], &[0x05, 0x11, 0x22, 0x33, 0x44]),
            (&[0x11, 0x00, 0x00, 0x00], &[0x02, 0x11, 0x01, 0x01, 0x01]),
        ];
        for (data, want) in cases {
            let mut out = [0u8; 16];
            let n = encode(data, &mut out).unwrap();
            assert_eq!(&out[..n], want, "{data:02x?}");
            round_trip(data);
        }
        round_trip(&[]);
    }

    #[test]
    fn long_runs_cross_the_254_boundary() {
        let data: [u8; 520] = core::array::from_fn(|i| (i % 255) as u8 + 1);
        round_trip(&data);
        let with_zeros: [u8; 520] = core::array::from_fn(|i| if i % 300 == 0 { 0 } else { 7 });
        round_trip(&with_zeros);
        round_trip(&[1u8; 254]);
        round_trip(&[1u8; 255]);
    }

    #[test]
    fn invalid_input_is_refused() {
        assert_eq!(decode_in_place(&mut [0x03, 0x11]), Err(CobsError::Invalid));
        assert_eq!(decode_in_place(&mut [0x02, 0x00]), Err(CobsError::Invalid));
        assert_eq!(encode(&[1, 2, 3], &mut [0u8; 3]), Err(CobsError::BufferTooSmall));
    }
}
