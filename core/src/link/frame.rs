//! Frames: header, payload and CRC-32C, COBS-encoded and `0x00`-terminated (see the module docs).

use super::cobs::{self, max_encoded_len};
use crate::crc::crc32c;

/// The frame format version this module writes and reads.
pub const VERSION: u8 = 1;
/// Header bytes: version, kind, boot id, sequence number.
pub const HEADER_BYTES: usize = 8;
/// Trailer bytes: the CRC-32C.
pub const TRAILER_BYTES: usize = 4;
/// Largest payload of one frame: 500 bytes, so a decoded frame is at most 512 bytes (about 45 ms
/// at 115,200 baud).
pub const MAX_PAYLOAD: usize = 500;

/// The most bytes one frame takes on the wire for a `payload_len`-byte payload, delimiter
/// included.
pub const fn max_frame_bytes(payload_len: usize) -> usize {
    max_encoded_len(HEADER_BYTES + payload_len + TRAILER_BYTES) + 1
}

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// The sender (re)started or the link came up: contexts must be defined again.
    Hello = 1,
    /// A context (name, type, tags) defined once, then referred to by id.
    Define = 2,
    /// Closed intervals.
    Data = 3,
    /// Cumulative acknowledgement.
    Ack = 4,
    /// A frame arrived damaged: resend now.
    Nack = 5,
    /// The gateway asks for the device's uptime.
    TimeRequest = 6,
    /// The device's answer.
    TimeResponse = 7,
}

impl Kind {
    /// The kind of a header byte, if known.
    pub const fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Define,
            3 => Kind::Data,
            4 => Kind::Ack,
            5 => Kind::Nack,
            6 => Kind::TimeRequest,
            7 => Kind::TimeResponse,
            _ => return None,
        })
    }
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame carries.
    pub kind: Kind,
    /// Random (or persisted and incremented) at each boot of the sender: sequence numbers restart
    /// with it.
    pub boot_id: u32,
    /// Per boot, wrapping.
    pub seq: u16,
}

/// One frame read by a [`Framer`]: its header and payload (borrowed from the framer's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: Header,
    /// The payload.
    pub payload: &'a [u8],
}

/// Why bytes between two delimiters are not a frame. Every refusal is counted in
/// [`FramerStats`]; the framer resynchronises at the next `0x00` in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes than the largest frame before a delimiter (garbage, or a lost delimiter).
    Oversize,
    /// Not a valid COBS encoding.
    BadEncoding,
    /// Shorter than a header and a trailer.
    Short,
    /// The CRC does not match: damaged on the way.
    BadCrc,
    /// A version this module does not read.
    BadVersion(u8),
    /// A kind this module does not know.
    BadKind(u8),
    /// [`encode_frame`]: the payload is over [`MAX_PAYLOAD`] or the output buffer too small.
    TooLarge,
}

/// Writes one frame (COBS-encoded, `0x00`-terminated) into `out`; returns the bytes written.
pub fn encode_frame(header: Header, payload: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    if payload.len() > MAX_PAYLOAD || out.len() < max_frame_bytes(payload.len()) {
        return Err(FrameError::TooLarge);
    }
    let mut raw = [0u8; HEADER_BYTES + MAX_PAYLOAD + TRAILER_BYTES];
    raw[0] = VERSION;
    raw[1] = header.kind as u8;
    raw[2..6].copy_from_slice(&header.boot_id.to_le_bytes());
    raw[6..8].copy_from_slice(&header.seq.to_le_bytes());
    let end = HEADER_BYTES + payload.len();
    raw[HEADER_BYTES..end].copy_from_slice(payload);
    let crc = crc32c(&raw[..end]);
    raw[end..end + TRAILER_BYTES].copy_from_slice(&crc.to_le_bytes());
    let n = cobs::encode(&raw[..end + TRAILER_BYTES], out).map_err(|_| FrameError::TooLarge)?;
    out[n] = 0;
    Ok(n + 1)
}

/// What a [`Framer`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Frames read.
    pub frames: u64,
    /// Byte runs between delimiters refused, by reason.
    pub oversize: u64,
    /// Invalid COBS.
    pub bad_encoding: u64,
    /// Too short.
    pub short: u64,
    /// CRC mismatch.
    pub bad_crc: u64,
    /// Unknown version or kind.
    pub unknown: u64,
}

/// Reassembles frames from bytes fed in chunks of any size. `N` is the buffer: at least
/// [`max_frame_bytes`]`(MAX_PAYLOAD)` (516) to read every frame.
pub struct Framer<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Dropping bytes until the next delimiter (the current run overflowed the buffer).
    skipping: bool,
    stats: FramerStats,
}

impl<const N: usize> Default for Framer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Framer<N> {
    /// An empty framer.
    pub const fn new() -> Self {
        Framer {
            buf: [0; N],
            len: 0,
            skipping: false,
            stats: FramerStats { frames: 0, oversize: 0, bad_encoding: 0, short: 0, bad_crc: 0, unknown: 0 },
        }
    }

    /// What this framer saw so far.
    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// Feeds `data`; calls `on_frame` for every frame completed in it (or a refusal of the bytes
    /// before a delimiter: an empty run, two delimiters in a row, is ignored silently).
    pub fn feed(&mut self, data: &[u8], mut on_frame: impl FnMut(Result<Frame<'_>, FrameError>)) {
        for &byte in data {
            if byte != 0 {
                if self.skipping {
                    continue;
                }
                if self.len == N {
                    self.skipping = true;
                    self.len = 0;
                    self.stats.oversize += 1;
                    on_frame(Err(FrameError::Oversize));
                    continue;
                }
                self.buf[self.len] = byte;
                self.len += 1;
                continue;
            }
            // A delimiter: the run before it is a frame, or it is refused.
            let len = core::mem::take(&mut self.len);
            if core::mem::take(&mut self.skipping) || len == 0 {
                continue;
            }
            let result = Self::read(&mut self.buf[..len], &mut self.stats);
            on_frame(result);
        }
    }

    fn read<'b>(run: &'b mut [u8], stats: &mut FramerStats) -> Result<Frame<'b>, FrameError> {
        let Ok(len) = cobs::decode_in_place(run) else {
            stats.bad_encoding += 1;
            return Err(FrameError::BadEncoding);
        };
        let raw = &run[..len];
        if len < HEADER_BYTES + TRAILER_BYTES {
            stats.short += 1;
            return Err(FrameError::Short);
        }
        let body = len - TRAILER_BYTES;
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&raw[body..]);
        if crc32c(&raw[..body]) != u32::from_le_bytes(crc) {
            stats.bad_crc += 1;
            return Err(FrameError::BadCrc);
        }
        if raw[0] != VERSION {
            stats.unknown += 1;
            return Err(FrameError::BadVersion(raw[0]));
        }
        let Some(kind) = Kind::from_byte(raw[1]) else {
            stats.unknown += 1;
            return Err(FrameError::BadKind(raw[1]));
        };
        let boot_id = u32::from_le_bytes([raw[2], raw[3], raw[4], raw[5]]);
        let seq = u16::from_le_bytes([raw[6], raw[7]]);
        stats.frames += 1;
        Ok(Frame { header: Header { kind, boot_id, seq }, payload: &raw[HEADER_BYTES..body] })
    }
}
