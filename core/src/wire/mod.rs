//! Wire formats: bytes in, values out, and values into caller-provided buffers.
//!
//! - [`write`](mod@write): the output cursor, JSON string escaping and number formatting shared by encoders.
//! - [`series`]: Datadog v1 `POST /api/v1/series` payloads, split at a size limit.
//! - [`zlib`]: zlib streams (`Content-Encoding: deflate`).
//! - [`json`]: the zero-copy JSON scanner the record parsers share.
//! - [`raw`]: the original client's raw-metric JSON.
//! - [`wrapped`]: the wrapped-metric JSON the original agent stores.
//! - [`log`]: log records, and their encoding for the logs intake.
//! - [`line`](mod@line): InfluxDB line protocol, one line per point of a wrapped record.
//! - [`dogstatsd`]: DogStatsD datagrams (metrics, events, service checks), parsed and rendered.
//! - [`opentsdb`]: OpenTSDB `/api/put` JSON objects, with Apptuit's name sanitizing.

pub mod dogstatsd;
pub mod json;
pub mod line;
pub mod log;
pub mod opentsdb;
pub mod raw;
pub mod series;
mod tagset;
pub mod wrapped;
pub mod write;
pub mod zlib;

use core::fmt;

/// Which field of a record a [`ParseError`] is about, named as the JSON key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// `metric`: the metric name.
    Metric,
    /// `type`.
    Type,
    /// `value` (raw records).
    Value,
    /// `timestamp` (raw records).
    Timestamp,
    /// `tags`.
    Tags,
    /// `points` (wrapped records).
    Points,
    /// `interval` (wrapped records).
    Interval,
    /// `host` (wrapped records).
    Host,
    /// `date` (log records).
    Date,
    /// `ddtags` (log records).
    DdTags,
}

impl Field {
    /// The JSON key.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Metric => "metric",
            Field::Type => "type",
            Field::Value => "value",
            Field::Timestamp => "timestamp",
            Field::Tags => "tags",
            Field::Points => "points",
            Field::Interval => "interval",
            Field::Host => "host",
            Field::Date => "date",
            Field::DdTags => "ddtags",
        }
    }
}

/// Why a record (raw metric, wrapped metric, log) was refused. Each variant is one reason the
/// agent counts ([`ParseError::reason`]) before dead-lettering the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Not JSON at all (or not UTF-8); where and why.
    NotJson(json::JsonError),
    /// JSON, but not an object (an array, a string, a number...).
    NotAnObject,
    /// A required field is absent.
    MissingField(Field),
    /// A field has the wrong JSON type (a string `timestamp`, an object `tags` in a wrapped
    /// record, a number `metric`...).
    WrongFieldType(Field),
    /// A number field holds Python's `NaN`, `Infinity` or `-Infinity`.
    NonFinite(Field),
    /// The `value` of a numeric type (`count`, `gauge`...) is not a number (a string, a list,
    /// `null`): the original agent crashed on these (compat §7 item 11).
    NonNumericValue,
    /// The `value` of a `set` is not a list.
    SetNotAList,
    /// A set member is a list or an object.
    BadSetMember,
    /// The metric name is empty.
    EmptyName,
    /// The metric name is longer than [`crate::limits::MAX_NAME_BYTES`].
    NameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// More than [`crate::limits::MAX_TAGS`] tags.
    TooManyTags,
    /// One tag is longer than [`crate::limits::MAX_TAG_BYTES`] (key and value together).
    TagTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A tag value is a list or an object (raw records), or a tag is not a string (wrapped
    /// records, log `ddtags`).
    BadTag,
    /// The `type` is not one this format knows.
    UnknownType,
    /// The timestamp is negative (the original never cleaned such records up, compat §7 item 21).
    NegativeTimestamp,
    /// The scratch buffer is too small; `required` bytes always suffice for this input.
    ScratchTooSmall {
        /// Scratch bytes that suffice.
        required: usize,
    },
    /// Something other than whitespace follows the record's object, at this byte offset.
    TrailingData {
        /// Byte offset of the first extra byte.
        offset: usize,
    },
    /// `points` is empty, or an entry is not a `[timestamp, value]` pair of numbers.
    BadPoint,
    /// More points than [`wrapped::MAX_POINTS`].
    TooManyPoints,
    /// `interval` is negative, fractional or too large.
    BadInterval,
    /// A log record has more than [`log::MAX_LOG_FIELDS`] top-level fields.
    TooManyFields,
    /// A log `date` is not an ISO 8601 date the original agent writes.
    BadDate,
}

impl ParseError {
    /// A short, stable label for counting refusals (a self-metric tag value).
    pub const fn reason(&self) -> &'static str {
        match self {
            ParseError::NotJson(_) => "not_json",
            ParseError::NotAnObject => "not_an_object",
            ParseError::MissingField(_) => "missing_field",
            ParseError::WrongFieldType(_) => "wrong_field_type",
            ParseError::NonFinite(_) => "non_finite",
            ParseError::NonNumericValue => "non_numeric_value",
            ParseError::SetNotAList => "set_not_a_list",
            ParseError::BadSetMember => "bad_set_member",
            ParseError::EmptyName => "empty_name",
            ParseError::NameTooLong { .. } => "name_too_long",
            ParseError::TooManyTags => "too_many_tags",
            ParseError::TagTooLong { .. } => "tag_too_long",
            ParseError::BadTag => "bad_tag",
            ParseError::UnknownType => "unknown_type",
            ParseError::NegativeTimestamp => "negative_timestamp",
            ParseError::ScratchTooSmall { .. } => "scratch_too_small",
            ParseError::TrailingData { .. } => "trailing_data",
            ParseError::BadPoint => "bad_point",
            ParseError::TooManyPoints => "too_many_points",
            ParseError::BadInterval => "bad_interval",
            ParseError::TooManyFields => "too_many_fields",
            ParseError::BadDate => "bad_date",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotJson(e) => write!(f, "not JSON: {e}"),
            ParseError::NotAnObject => f.write_str("record is not a JSON object"),
            ParseError::MissingField(field) => write!(f, "missing field `{}`", field.as_str()),
            ParseError::WrongFieldType(field) => {
                write!(f, "field `{}` has the wrong type", field.as_str())
            }
            ParseError::NonFinite(field) => {
                write!(f, "field `{}` is NaN or infinite", field.as_str())
            }
            ParseError::NonNumericValue => f.write_str("value of a numeric metric is not a number"),
            ParseError::SetNotAList => f.write_str("value of a set metric is not a list"),
            ParseError::BadSetMember => f.write_str("set member is a list or an object"),
            ParseError::EmptyName => f.write_str("metric name is empty"),
            ParseError::NameTooLong { len } => {
                write!(f, "metric name is {len} bytes, over the limit of {}", crate::limits::MAX_NAME_BYTES)
            }
            ParseError::TooManyTags => {
                write!(f, "more than {} tags", crate::limits::MAX_TAGS)
            }
            ParseError::TagTooLong { len } => {
                write!(f, "tag is {len} bytes, over the limit of {}", crate::limits::MAX_TAG_BYTES)
            }
            ParseError::BadTag => f.write_str("tag is not a string or a scalar"),
            ParseError::UnknownType => f.write_str("unknown metric type"),
            ParseError::NegativeTimestamp => f.write_str("timestamp is negative"),
            ParseError::ScratchTooSmall { required } => {
                write!(f, "scratch buffer too small: {required} bytes suffice")
            }
            ParseError::TrailingData { offset } => {
                write!(f, "data after the record at byte {offset}")
            }
            ParseError::BadPoint => f.write_str("points must be [timestamp, value] pairs of numbers"),
            ParseError::TooManyPoints => {
                write!(f, "more than {} points", wrapped::MAX_POINTS)
            }
            ParseError::BadInterval => f.write_str("interval is not a non-negative integer"),
            ParseError::TooManyFields => {
                write!(f, "more than {} fields in a log record", log::MAX_LOG_FIELDS)
            }
            ParseError::BadDate => f.write_str("log date is not an ISO 8601 date"),
        }
    }
}

impl core::error::Error for ParseError {}

impl From<json::JsonError> for ParseError {
    fn from(e: json::JsonError) -> Self {
        match e.kind {
            json::JsonErrorKind::TrailingData => ParseError::TrailingData { offset: e.offset },
            _ => ParseError::NotJson(e),
        }
    }
}

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
    /// The point would carry no tag, and the format requires one (OpenTSDB).
    NoTags,
}

impl EncodeError {
    /// A short, stable label for counting refusals (a self-metric tag value, a dead-letter
    /// reason).
    pub const fn reason(&self) -> &'static str {
        match self {
            EncodeError::BufferTooSmall { .. } => "buffer_too_small",
            EncodeError::NonFinite => "non_finite",
            EncodeError::EntryTooLarge { .. } => "entry_too_large",
            EncodeError::NoTags => "no_tags",
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
            EncodeError::NonFinite => f.write_str("value is NaN or infinite, which JSON cannot carry"),
            EncodeError::EntryTooLarge { required, limit } => {
                write!(f, "one entry needs {required} bytes, over the payload limit of {limit}")
            }
            EncodeError::NoTags => f.write_str("point has no tag, and the format requires one"),
        }
    }
}

impl core::error::Error for EncodeError {}
