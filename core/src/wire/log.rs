//! stub
/// x
pub const MAX_LOG_FIELDS: usize = 32;
