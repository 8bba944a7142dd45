//! gzip bodies (RFC 1952) for the outputs that read `Content-Encoding: gzip` (InfluxDB,
//! OpenTSDB, VictoriaMetrics): miniz_oxide's raw deflate between a 10-byte header and a CRC-32 +
//! length trailer (the core's CRC-32). Nothing else is needed, so no gzip crate.

use chouette_core::crc::crc32;
use miniz_oxide::deflate::compress_to_vec;
use miniz_oxide::inflate::decompress_to_vec_with_limit;

/// The header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// `input` as a gzip member, deflated at `level` (0 to 10).
pub fn compress(input: &[u8], level: u8) -> Vec<u8> {
    let deflated = compress_to_vec(input, level.min(10));
    let mut out = Vec::with_capacity(HEADER.len() + deflated.len() + 8);
    out.extend_from_slice(&HEADER);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32(input).to_le_bytes());
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    out
}

/// The content of a gzip member written by [`compress`] (a plain header, no optional fields);
/// for the dry run and tests. At most 256 MiB.
pub fn decompress(body: &[u8]) -> Result<Vec<u8>, String> {
    if body.len() < HEADER.len() + 8 || body[..3] != HEADER[..3] {
        return Err("not a gzip member".to_owned());
    }
    if body[3] != 0 {
        return Err("gzip header flags are not supported".to_owned());
    }
    let deflated = &body[HEADER.len()..body.len() - 8];
    let data =
        decompress_to_vec_with_limit(deflated, 256 << 20).map_err(|e| format!("bad deflate data: {e:?}"))?;
    let trailer = &body[body.len() - 8..];
    if trailer[..4] != crc32(&data).to_le_bytes() || trailer[4..] != (data.len() as u32).to_le_bytes() {
        return Err("gzip trailer does not match".to_owned());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let gz = compress(&data, 6);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(decompress(&gz).unwrap(), data);
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 5] ^= 1;
        assert!(decompress(&bad).is_err());
    }
}
