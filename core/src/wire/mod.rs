//! Wire formats: bytes in, values out, and values into caller-provided buffers.
//!
//! - [`write`]: the output cursor, JSON string escaping and number formatting shared by encoders.
//! - [`series`]: Datadog v1 `POST /api/v1/series` payloads, split at a size limit.
//! - [`zlib`]: zlib streams (`Content-Encoding: deflate`).

pub mod series;
pub mod write;
pub mod zlib;

use core::fmt;

/// Why an encoder could not produce its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small; `required` bytes would have been written.
    BufferTooSmall {
        /// Bytes the output needs.
        required: usize,
    },
    /// A value was NaN or infinite, which JSON cannot carry.
    NonFinite,
    /// One entry alone is larger than the configured payload limit.
    EntryTooLarge {
        /// Bytes the entry needs.
        required: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
            EncodeError::NonFinite => {
                f.write_str("value is NaN or infinite, which JSON cannot carry")
            }
            EncodeError::EntryTooLarge { required, limit } => {
                write!(
                    f,
                    "one entry needs {required} bytes, over the payload limit of {limit}"
                )
            }
        }
    }
}

impl core::error::Error for EncodeError {}
