//! Durable queues. Every queue is a pair of keys in the original's layout (compat §2.1):
//! a sorted set of record ids scored by timestamp (`<prefix>.keys`) and a hash from id to JSON
//! (`<prefix>.values`).

pub mod embedded;
pub mod redis;

use std::fmt;

/// The queues the agent reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    /// `chouette:metrics:raw`: raw metrics written by apps (client library) and self-metrics.
    RawMetrics,
    /// `chouette:metrics:wrapped`: aggregated points waiting for dispatch.
    WrappedMetrics,
    /// `chouette:logs:wrapped`: log records waiting for dispatch.
    Logs,
    /// `chouette:metrics:raw.dead`: raw records refused by the parser or the aggregator.
    DeadRawMetrics,
    /// `chouette:metrics:wrapped.dead`: wrapped points refused by the backend (400) or unparseable.
    DeadWrappedMetrics,
    /// `chouette:logs:wrapped.dead`: logs refused by the intake or unparseable.
    DeadLogs,
}

impl Queue {
    /// Every queue.
    pub const ALL: [Queue; 6] = [
        Queue::RawMetrics,
        Queue::WrappedMetrics,
        Queue::Logs,
        Queue::DeadRawMetrics,
        Queue::DeadWrappedMetrics,
        Queue::DeadLogs,
    ];

    /// The key prefix: the ZSET is `<prefix>.keys`, the HASH `<prefix>.values`.
    pub const fn prefix(self) -> &'static str {
        match self {
            Queue::RawMetrics => "chouette:metrics:raw",
            Queue::WrappedMetrics => "chouette:metrics:wrapped",
            Queue::Logs => "chouette:logs:wrapped",
            Queue::DeadRawMetrics => "chouette:metrics:raw.dead",
            Queue::DeadWrappedMetrics => "chouette:metrics:wrapped.dead",
            Queue::DeadLogs => "chouette:logs:wrapped.dead",
        }
    }

    /// The dead-letter queue of a live queue (a dead-letter queue is its own).
    pub const fn dead_letter(self) -> Queue {
        match self {
            Queue::RawMetrics | Queue::DeadRawMetrics => Queue::DeadRawMetrics,
            Queue::WrappedMetrics | Queue::DeadWrappedMetrics => Queue::DeadWrappedMetrics,
            Queue::Logs | Queue::DeadLogs => Queue::DeadLogs,
        }
    }

    /// A short name for logs and `chouette status`.
    pub const fn name(self) -> &'static str {
        match self {
            Queue::RawMetrics => "raw metrics",
            Queue::WrappedMetrics => "wrapped metrics",
            Queue::Logs => "logs",
            Queue::DeadRawMetrics => "dead raw metrics",
            Queue::DeadWrappedMetrics => "dead wrapped metrics",
            Queue::DeadLogs => "dead logs",
        }
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One record read from a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record id (a uuid4 string for records the original client wrote; any bytes in general).
    pub id: Vec<u8>,
    /// The ZSET score: the record's timestamp in float Unix seconds.
    pub score: f64,
    /// The JSON value, or `None` when the ZSET names an id the HASH does not hold (an orphan).
    pub value: Option<Vec<u8>>,
}

/// One record to add to a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    /// The id (the agent generates uuid4 strings, as the original).
    pub id: Vec<u8>,
    /// The score.
    pub score: f64,
    /// The JSON value.
    pub value: Vec<u8>,
}

/// A record moved to a dead-letter queue: the original bytes and why.
///
/// Stored in the dead-letter queue's HASH as `{"reason": "...", "queue": "...", "value": "<the
/// original value as a JSON string>"}` under the same id and score.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadRecord {
    /// The id in the live queue.
    pub id: Vec<u8>,
    /// The score in the live queue.
    pub score: f64,
    /// The original value (empty for an orphan id).
    pub value: Vec<u8>,
    /// Why it was refused (`not_json`, `http_400`, ...).
    pub reason: String,
}

/// Everything one aggregation step changes, applied atomically: after a crash at any instant,
/// either all of it happened or none of it did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggregationCommit {
    /// Wrapped points to add to [`Queue::WrappedMetrics`].
    pub wrapped: Vec<NewRecord>,
    /// Raw record ids to delete from [`Queue::RawMetrics`] (the ones aggregated).
    pub delete_raw: Vec<Vec<u8>>,
    /// Raw records to move to [`Queue::DeadRawMetrics`] (deleted from the raw queue).
    pub dead: Vec<DeadRecord>,
    /// The new aggregation watermark: every raw score below it has been aggregated.
    pub aggregated_until: f64,
}

/// A store failure, with the operation and store it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached (connection refused, timeout, reset): retry later.
    #[error("{store}: unavailable during {op}: {detail}")]
    Unavailable {
        /// The store (`redis://host:port/db` without credentials, or the embedded file path).
        store: String,
        /// The operation.
        op: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The store answered with an error (wrong type at a key, permission denied, disk full...).
    #[error("{store}: {op} failed: {detail}")]
    Failed {
        /// The store.
        store: String,
        /// The operation.
        op: &'static str,
        /// What went wrong.
        detail: String,
    },
}

impl StoreError {
    /// Whether retrying later may succeed without an operator (a network fault, a restart).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Durable queues in the original's layout. Implementations: [`redis::RedisStore`] and
/// [`embedded::EmbeddedStore`]. All methods block; each implementation has timeouts.
pub trait Store: Send {
    /// A description for logs: `redis://host:port/db` (never the password) or `embedded:<path>`.
    fn describe(&self) -> String;

    /// Checks the store answers (reconnecting if needed).
    fn ping(&mut self) -> Result<(), StoreError>;

    /// Up to `limit` records of `queue` with a score strictly below `max_score`, oldest first
    /// (score, then id). Orphan ids (in the ZSET, not in the HASH) come back with `value: None`.
    fn read(
        &mut self,
        queue: Queue,
        max_score: f64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// The lowest score in `queue`, if any.
    fn oldest_score(&mut self, queue: Queue) -> Result<Option<f64>, StoreError>;

    /// Applies an aggregation step atomically (Redis: one MULTI/EXEC).
    fn commit_aggregation(&mut self, commit: &AggregationCommit) -> Result<(), StoreError>;

    /// The aggregation watermark last committed (key `chouette:agent:aggregated_until`).
    fn aggregated_until(&mut self) -> Result<Option<f64>, StoreError>;

    /// Adds records to a queue (atomically: all or none).
    fn add(&mut self, queue: Queue, records: &[NewRecord]) -> Result<(), StoreError>;

    /// Deletes records from a queue (ZSET member and HASH field, atomically).
    fn delete(&mut self, queue: Queue, ids: &[Vec<u8>]) -> Result<(), StoreError>;

    /// Moves records from `queue` to its dead-letter queue, atomically.
    fn dead_letter(&mut self, queue: Queue, records: &[DeadRecord]) -> Result<(), StoreError>;

    /// Deletes every record of `queue` with a score at or below `threshold` (TTL cleanup),
    /// ZSET and HASH together, atomically (no orphans, unlike the original); returns how many.
    fn cleanup(&mut self, queue: Queue, threshold: f64) -> Result<u64, StoreError>;

    /// Number of records in `queue` (ZSET cardinality).
    fn len(&mut self, queue: Queue) -> Result<u64, StoreError>;

    /// Sets fields of the agent's status hash (`chouette:agent:status`), read by `chouette status`.
    fn put_status(&mut self, fields: &[(&str, String)]) -> Result<(), StoreError>;

    /// Every field of the agent's status hash.
    fn status(&mut self) -> Result<Vec<(String, String)>, StoreError>;
}
