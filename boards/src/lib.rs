#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc = include_str!("../README.md")]
//!
//! ## Map of the modules
//!
//! - [`tegrastats`]: one parser for every JetPack `tegrastats` line format, plus the original plugin's
//!   metrics and Datadog's `nvidia.jetson.*` set.
//! - [`rpi`]: Raspberry Pi thermal zone, `vcgencmd`, DS18B20 `w1_slave` parsers, and I2C drivers
//!   (TMP102, LM75, BME280 temperature, pressure and humidity) generic over `embedded_hal::i2c::I2c`.
//! - [`linux`]: `/proc/stat`, `/proc/meminfo`, `/proc/loadavg`, `/proc/mounts`, `/proc/filesystems`,
//!   `/proc/net/dev` and `statvfs` arithmetic, as psutil computes them.
//!
//! Everything here is text-in/value-out (or bus-in/value-out for the drivers): the reads happen in the
//! agent, under an injectable root. No parser allocates.

#[cfg(test)]
extern crate std;

pub mod linux;
pub mod rpi;
pub mod tegrastats;

mod number;

use core::fmt;

/// A temperature in thousandths of a degree Celsius (the unit of Linux thermal sysfs and `w1_therm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MilliCelsius(pub i32);

impl MilliCelsius {
    /// The temperature in degrees Celsius (`49768` → `49.768`, correctly rounded).
    pub fn as_celsius(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

impl fmt::Display for MilliCelsius {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:03} C", abs / 1000, abs % 1000)
    }
}

/// Why a text could not be parsed. Shared by every parser of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The input was empty or only whitespace.
    Empty,
    /// A field the format requires is missing (its name).
    Missing(&'static str),
    /// A number was malformed or out of range (the field it belongs to).
    InvalidNumber(&'static str),
    /// The input does not have the expected shape (e.g. no field of a tegrastats line was recognised).
    Unrecognised,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty input"),
            ParseError::Missing(field) => write!(f, "missing field `{field}`"),
            ParseError::InvalidNumber(field) => write!(f, "invalid number in `{field}`"),
            ParseError::Unrecognised => f.write_str("unrecognised format"),
        }
    }
}

impl core::error::Error for ParseError {}
