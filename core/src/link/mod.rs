//! The serial link between a microcontroller running this core and the board's agent: framing,
//! integrity and frame headers, sans-IO and without a heap (both ends use this module).
//!
//! On the wire, every frame is COBS-encoded ([`cobs`]) and ends with one `0x00` byte, so a
//! receiver resynchronises at the next `0x00` after any garbage or a lost byte. Inside the COBS
//! encoding a frame is:
//!
//! ```text
//! version:u8 | kind:u8 | boot_id:u32 LE | seq:u16 LE | payload (0..=MAX_PAYLOAD bytes) | crc32c:u32 LE
//! ```
//!
//! The CRC-32C ([`crc32c`], from [`crate::crc`]) covers the header and the payload. [`encode_frame`] writes one frame;
//! a [`Framer`] takes bytes in chunks of any size (`feed`) and yields every frame they hold,
//! however they were split, counting what it refuses ([`FramerStats`]). `docs/link.md` is the
//! specification; `core/tests/link.rs` holds the golden frames and the property tests.
//!
//! On top of the frames: [`message`] (the payloads, postcard-encoded), [`window`] (the device's
//! Go-Back-N send window and the gateway's exactly-once receiver) and [`time`] (the device's
//! uptime mapped to wall time).

pub mod cobs;
mod frame;
pub mod message;
pub mod time;
pub mod window;

pub use crate::crc::crc32c;
pub use frame::{
    encode_frame, max_frame_bytes, Frame, FrameError, Framer, FramerStats, Header, Kind, HEADER_BYTES,
    MAX_PAYLOAD, TRAILER_BYTES, VERSION,
};
