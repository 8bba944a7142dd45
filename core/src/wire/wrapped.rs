//! stub
/// x
pub const MAX_POINTS: usize = 8;
