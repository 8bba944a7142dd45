//! The state shared by the app's threads (the calls, in `client.rs`) and the writer thread
//! (`worker.rs`): the buffer, the aggregating mode's tables, the counters and the shutdown
//! handshake. Its own module, so the writer thread does not import the client that starts it.

use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::aggregate::Tables;
use crate::buffer::{Buffer, Kind, Stats};
use crate::config::{ClientConfig, Mode};

/// State shared by the app's threads and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: ClientConfig,
    pub buffer: Buffer,
    /// Aggregating mode's series (`None` in raw mode).
    pub aggregates: Option<Tables>,
    pub stats: Stats,
    pub stop: AtomicBool,
    /// No writer drains the buffer any more (inert client, or after shutdown): calls drop.
    pub closed: AtomicBool,
    pub deadline: Mutex<Option<Instant>>,
    pub done: Mutex<Option<u64>>,
    pub done_cv: Condvar,
}

impl Shared {
    pub(crate) fn push(&self, kind: Kind, score: f64, json: &[u8]) {
        if let Err(why) =
            self.buffer.try_push(&self.closed, kind, score, json.len(), |out| out.extend_from_slice(json))
        {
            self.stats.add_refused(why);
        }
    }
}

pub(crate) fn shared(config: ClientConfig, closed: bool) -> Shared {
    let aggregates = match config.mode {
        Mode::Raw => None,
        Mode::Aggregating { interval } => Some(Tables::new(interval.as_secs(), config.buffer_records)),
    };
    Shared {
        buffer: Buffer::new(config.buffer_records, config.buffer_bytes, config.batch_records),
        aggregates,
        stats: Stats::default(),
        stop: AtomicBool::new(false),
        closed: AtomicBool::new(closed),
        deadline: Mutex::new(None),
        done: Mutex::new(None),
        done_cv: Condvar::new(),
        config,
    }
}
