//! The DogStatsD listener (issue 12, in progress): UDP and Unix datagram sockets whose lines are
//! parsed by the core (`chouette_core::wire::dogstatsd`) and aggregated in memory with the same
//! semantics as the apps' raw records.
//!
//! - [`socket`]: the sockets, read in batches on a thread of their own.

pub mod memory;
pub mod socket;
