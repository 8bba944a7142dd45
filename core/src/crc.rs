//! Table-driven reflected CRC-32s (initial value and final XOR `0xFFFFFFFF`), one table builder
//! for both: CRC-32C (Castagnoli: iSCSI, ext4, SCTP; the serial link's frames) and CRC-32 (IEEE:
//! gzip, zip; the agent's gzip bodies). Each table is 1 KiB, built at compile time.

/// The 256-entry table of the reflected polynomial `poly`.
const fn table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { poly ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

const CASTAGNOLI: [u32; 256] = table(0x82F6_3B78);
const IEEE: [u32; 256] = table(0xEDB8_8320);

fn checksum(table: &[u32; 256], data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8))
}

/// The CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    checksum(&CASTAGNOLI, data)
}

/// The CRC-32 (IEEE 802.3, as gzip) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    checksum(&IEEE, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        // The standard check values (CRC catalogue: CRC-32/ISCSI, CRC-32/ISO-HDLC) and RFC 3720
        // B.4's CRC-32C vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
