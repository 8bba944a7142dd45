#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![doc = include_str!("../README.md")]
//!
//! ## Map of the layers (linked)
//!
//! - [`limits`]: every fixed capacity, documented in one place.
//! - [`keys`]: the Redis key names (and the embedded store's table names), and [`id`]: record ids.
//! - [`metric`]: the model (samples, tags, set members, wrapped points).
//! - [`hash`]: the series and member hash.
//! - [`sketch`]: the relative-error quantile sketch and the exact-then-HyperLogLog set counter.
//! - [`aggregate`]: the flush-bucket aggregator, and [`wrap`]: Datadog and simple wrapper math.
//! - [`crc`]: CRC-32C (the link's frames) and CRC-32 (gzip), one table builder.
//! - [`link`]: the serial link to a board's agent: COBS framing, CRC-32C, frame headers (sans-IO).
//! - [`wire`]: the original client's raw JSON (read and written), the wrapped JSON, log records,
//!   Datadog v1 series payloads, InfluxDB line protocol, OpenTSDB `/api/put` JSON, zlib.

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod aggregate;
pub mod crc;
pub mod hash;
pub mod id;
pub mod keys;
pub mod limits;
pub mod link;
pub mod metric;
mod prefetch;
pub mod sketch;
pub mod wire;
pub mod wrap;

pub use metric::{
    Member, MetricName, MetricType, OutputType, Sample, SetMembers, Tag, Timestamp, Value, Wrapped,
};
