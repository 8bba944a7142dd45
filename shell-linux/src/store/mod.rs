//! Durable queues. Every queue is a pair of keys in the original's layout (compat §2.1):
//! a sorted set of record ids scored by timestamp (`<prefix>.keys`) and a hash from id to JSON
//! (`<prefix>.values`).

pub mod embedded;
pub mod redis;
// Public (hidden) only for the fuzz targets (`shell-linux/fuzz`), which feed the page reader's
// reply parsing arbitrary bytes over a slice: see `store/resp.rs`.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod resp;
#[cfg(not(feature = "fuzzing"))]
mod resp;

use std::fmt;

/// A record's id and value: a slice of the buffer its page was read into ([`Record`]).
pub use bytes::Bytes;

use chouette_core::keys;

use crate::limits::{MAX_DEAD_RECORD_BYTES, MAX_LOG_RECORD_BYTES, MAX_METRIC_RECORD_BYTES};

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
    /// `chouette:metrics:wrapped.influxdb`: the InfluxDB output's outbox (same records as
    /// [`Queue::WrappedMetrics`], written by the same aggregation commit).
    InfluxMetrics,
    /// `chouette:metrics:wrapped.influxdb.dead`: points InfluxDB refused.
    DeadInfluxMetrics,
    /// `chouette:metrics:wrapped.opentsdb`: the OpenTSDB output's outbox.
    OpentsdbMetrics,
    /// `chouette:metrics:wrapped.opentsdb.dead`: points OpenTSDB refused.
    DeadOpentsdbMetrics,
    /// `chouette:events`: DogStatsD events (one JSON body for `/api/v1/events` each).
    Events,
    /// `chouette:events.dead`: events Datadog refused or that are not an event's JSON.
    DeadEvents,
    /// `chouette:service_checks`: DogStatsD service checks (one `/api/v1/check_run` entry each).
    ServiceChecks,
    /// `chouette:service_checks.dead`: service checks refused or not a check's JSON.
    DeadServiceChecks,
}

impl Queue {
    /// Every queue.
    pub const ALL: [Queue; 14] = [
        Queue::RawMetrics,
        Queue::WrappedMetrics,
        Queue::Logs,
        Queue::DeadRawMetrics,
        Queue::DeadWrappedMetrics,
        Queue::DeadLogs,
        Queue::InfluxMetrics,
        Queue::DeadInfluxMetrics,
        Queue::OpentsdbMetrics,
        Queue::DeadOpentsdbMetrics,
        Queue::Events,
        Queue::DeadEvents,
        Queue::ServiceChecks,
        Queue::DeadServiceChecks,
    ];

    /// The outboxes of the metric outputs: every aggregation commit writes its points to the
    /// enabled ones ([`AggregationCommit::outboxes`]).
    pub const METRIC_OUTBOXES: [Queue; 3] =
        [Queue::WrappedMetrics, Queue::InfluxMetrics, Queue::OpentsdbMetrics];

    /// Its key and table names ([`keys`]).
    pub const fn keys(self) -> keys::QueueKeys {
        match self {
            Queue::RawMetrics => keys::RAW_METRICS,
            Queue::WrappedMetrics => keys::WRAPPED_METRICS,
            Queue::Logs => keys::LOGS,
            Queue::DeadRawMetrics => keys::DEAD_RAW_METRICS,
            Queue::DeadWrappedMetrics => keys::DEAD_WRAPPED_METRICS,
            Queue::DeadLogs => keys::DEAD_LOGS,
            Queue::InfluxMetrics => keys::WRAPPED_INFLUXDB,
            Queue::DeadInfluxMetrics => keys::DEAD_WRAPPED_INFLUXDB,
            Queue::OpentsdbMetrics => keys::WRAPPED_OPENTSDB,
            Queue::DeadOpentsdbMetrics => keys::DEAD_WRAPPED_OPENTSDB,
            Queue::Events => keys::EVENTS,
            Queue::DeadEvents => keys::DEAD_EVENTS,
            Queue::ServiceChecks => keys::SERVICE_CHECKS,
            Queue::DeadServiceChecks => keys::DEAD_SERVICE_CHECKS,
        }
    }

    /// The key prefix: the ZSET is `<prefix>.keys`, the HASH `<prefix>.values`.
    pub const fn prefix(self) -> &'static str {
        self.keys().prefix
    }

    /// The dead-letter queue of a live queue (a dead-letter queue is its own).
    pub const fn dead_letter(self) -> Queue {
        match self {
            Queue::RawMetrics | Queue::DeadRawMetrics => Queue::DeadRawMetrics,
            Queue::WrappedMetrics | Queue::DeadWrappedMetrics => Queue::DeadWrappedMetrics,
            Queue::Logs | Queue::DeadLogs => Queue::DeadLogs,
            Queue::InfluxMetrics | Queue::DeadInfluxMetrics => Queue::DeadInfluxMetrics,
            Queue::OpentsdbMetrics | Queue::DeadOpentsdbMetrics => Queue::DeadOpentsdbMetrics,
            Queue::Events | Queue::DeadEvents => Queue::DeadEvents,
            Queue::ServiceChecks | Queue::DeadServiceChecks => Queue::DeadServiceChecks,
        }
    }

    /// Whether this is a dead-letter queue.
    pub const fn is_dead(self) -> bool {
        matches!(
            self,
            Queue::DeadRawMetrics
                | Queue::DeadWrappedMetrics
                | Queue::DeadLogs
                | Queue::DeadInfluxMetrics
                | Queue::DeadOpentsdbMetrics
                | Queue::DeadEvents
                | Queue::DeadServiceChecks
        )
    }

    /// The live queue a dead-letter queue's records came from (a live queue is its own).
    pub const fn live(self) -> Queue {
        match self {
            Queue::DeadRawMetrics => Queue::RawMetrics,
            Queue::DeadWrappedMetrics => Queue::WrappedMetrics,
            Queue::DeadLogs => Queue::Logs,
            Queue::DeadInfluxMetrics => Queue::InfluxMetrics,
            Queue::DeadOpentsdbMetrics => Queue::OpentsdbMetrics,
            Queue::DeadEvents => Queue::Events,
            Queue::DeadServiceChecks => Queue::ServiceChecks,
            live => live,
        }
    }

    /// The largest value this queue's reads load (see [`Record::oversize`]; the numbers and their
    /// reasons are in [`crate::limits`]): 64 KiB for a metric record (a raw or wrapped metric is
    /// a few hundred bytes; 64 KiB is a histogram of thousands of samples), 1 MiB for a log (the
    /// Datadog intake's own limit per log), 16 MiB for a dead letter (an envelope escapes its
    /// value: up to six bytes per byte of a log).
    /// A larger value is never loaded by a read: the agent dead-letters it with reason
    /// `too_large` ([`Store::dead_letter_oversize`]), which moves the bytes inside the store.
    pub const fn max_record_bytes(self) -> usize {
        match self {
            Queue::RawMetrics | Queue::WrappedMetrics | Queue::InfluxMetrics | Queue::OpentsdbMetrics => {
                MAX_METRIC_RECORD_BYTES
            }
            // An event or a check is one datagram (DOGSTATSD_BUFFER_SIZE, 8 KiB by default) in
            // JSON: a log's limit leaves room for any buffer size an operator sets.
            Queue::Logs | Queue::Events | Queue::ServiceChecks => MAX_LOG_RECORD_BYTES,
            Queue::DeadRawMetrics
            | Queue::DeadWrappedMetrics
            | Queue::DeadLogs
            | Queue::DeadInfluxMetrics
            | Queue::DeadOpentsdbMetrics
            | Queue::DeadEvents
            | Queue::DeadServiceChecks => MAX_DEAD_RECORD_BYTES,
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
            Queue::InfluxMetrics => "influxdb metrics",
            Queue::DeadInfluxMetrics => "dead influxdb metrics",
            Queue::OpentsdbMetrics => "opentsdb metrics",
            Queue::DeadOpentsdbMetrics => "dead opentsdb metrics",
            Queue::Events => "events",
            Queue::DeadEvents => "dead events",
            Queue::ServiceChecks => "service checks",
            Queue::DeadServiceChecks => "dead service checks",
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
    /// As a store's page reader reads it (Redis's plain page connection, the embedded store), a
    /// slice of one buffer holding the whole page's ids.
    pub id: Bytes,
    /// The ZSET score: the record's timestamp in float Unix seconds.
    pub score: f64,
    /// The JSON value, or `None` when the ZSET names an id the HASH does not hold (an orphan)
    /// or when the value is over [`Queue::max_record_bytes`] ([`Record::oversize`] is then set).
    /// As a page reader reads it, a slice of one buffer holding the whole page's values (the
    /// redis-rs fallback, used for `rediss://`, still reads one allocation a value).
    pub value: Option<Bytes>,
    /// The value's length when it is over the queue's [`Queue::max_record_bytes`]: the read did
    /// not load it (`value` is `None`). Such a record goes to [`Store::dead_letter_oversize`].
    pub oversize: Option<u64>,
}

impl Record {
    /// A record holding `value`.
    pub fn new(id: impl Into<Vec<u8>>, score: f64, value: impl Into<Vec<u8>>) -> Record {
        Record { id: Bytes::from(id.into()), score, value: Some(Bytes::from(value.into())), oversize: None }
    }
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
/// original value as a JSON string>"}` under the same id and score (see [`dead_letter_envelope`]:
/// `queue` is the live queue's prefix; a value that is not UTF-8 also gets a `"value_base64"`
/// field holding the exact bytes, `value` then holding a lossy copy).
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

/// One record taken out of a dead-letter queue by [`Store::redrive`]: removed only if the queue
/// still holds `id` with exactly `envelope` (what was read), and then, for a requeue, put back
/// into the live queue as `requeue`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadMove {
    /// The id in the dead-letter queue.
    pub id: Vec<u8>,
    /// The envelope as read: the record moves only if it is still exactly this.
    pub envelope: Vec<u8>,
    /// The record to add to the live queue (same id and score, the original bytes); `None` to
    /// delete only (a purge).
    pub requeue: Option<NewRecord>,
}

/// Everything one aggregation step changes, applied atomically: after a crash at any instant,
/// either all of it happened or none of it did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggregationCommit {
    /// Wrapped points to add to every queue of `outboxes`.
    pub wrapped: Vec<NewRecord>,
    /// The outboxes of the enabled outputs ([`Queue::METRIC_OUTBOXES`]): each gets every point
    /// of `wrapped`, in the same atomic step, so no output can have a bucket another lacks.
    pub outboxes: Vec<Queue>,
    /// Raw record ids to delete from [`Queue::RawMetrics`] (the ones aggregated).
    pub delete_raw: Vec<Bytes>,
    /// Raw records to move to [`Queue::DeadRawMetrics`] (deleted from the raw queue).
    pub dead: Vec<DeadRecord>,
    /// The new aggregation watermark: every raw score below it has been aggregated.
    pub aggregated_until: f64,
}

/// The key (Redis string; a row of the embedded store's meta table) holding the aggregation
/// watermark, as a decimal float.
pub const AGGREGATED_UNTIL_KEY: &str = keys::AGGREGATED_UNTIL;

/// The Redis HASH (the embedded store's status table) read by `chouette status`.
pub const STATUS_KEY: &str = keys::STATUS;

/// The Redis HASH (the embedded store's table) holding the serial link's per-device state
/// ([`Store::commit_link`]).
pub const LINK_STATE_KEY: &str = keys::LINK_STATE;

/// The JSON envelope a dead-letter queue stores for `record` refused from `queue`:
/// `{"reason": "<reason>", "queue": "<queue prefix>", "value": "<original value>"}`, Python
/// `json.dumps` style (`", "` and `": "` separators, non-ASCII as `\uXXXX`). When the value is
/// not UTF-8, `value` holds it with U+FFFD replacements and `"value_base64"` the exact bytes.
pub fn dead_letter_envelope(queue: Queue, record: &DeadRecord) -> Vec<u8> {
    envelope(queue, &record.reason, None, &record.value)
}

/// The envelope of a record moved with reason `too_large` ([`Store::dead_letter_oversize`]):
/// [`dead_letter_envelope`]'s with the value's length in a `"size"` field after `"queue"`:
/// `{"reason": "too_large", "queue": "<prefix>", "size": N, "value": "<original>"}`.
pub fn oversize_envelope(queue: Queue, value: &[u8]) -> Vec<u8> {
    envelope(queue, "too_large", Some(value.len()), value)
}

fn envelope(queue: Queue, reason: &str, size: Option<usize>, value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(value);
    let exact = matches!(text, std::borrow::Cow::Borrowed(_));
    let size = size.map(|n| n.to_string());
    let write = |buf: &mut [u8]| {
        let mut w = chouette_core::wire::write::Writer::new(buf);
        w.str("{\"reason\": ");
        w.json_str(reason);
        w.str(", \"queue\": ");
        w.json_str(queue.prefix());
        if let Some(size) = &size {
            w.str(", \"size\": ");
            w.str(size);
        }
        w.str(", \"value\": ");
        w.json_str(&text);
        if !exact {
            w.str(", \"value_base64\": \"");
            w.str(&base64(value));
            w.byte(b'"');
        }
        w.byte(b'}');
        w.len()
    };
    let mut out = vec![0; write(&mut [])];
    write(&mut out);
    out
}

/// Standard base64 with padding, as in an envelope's `value_base64` (`chouette dead` decodes it).
pub fn encode_base64(bytes: &[u8]) -> String {
    base64(bytes)
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        let emit = chunk.len() + 1;
        for i in 0..4 {
            if i < emit {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Refuses a NaN score (Redis refuses it too; the embedded index cannot order it).
pub(crate) fn check_score(store: &str, op: &'static str, what: &str, score: f64) -> Result<(), StoreError> {
    if score.is_nan() {
        return Err(StoreError::Failed { store: store.to_string(), op, detail: format!("{what} is NaN") });
    }
    Ok(())
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
    fn read(&mut self, queue: Queue, max_score: f64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.read_page(queue, max_score, 0, limit)
    }

    /// Like [`Store::read`], skipping the first `offset` records of that order (paging through
    /// a bucket without loading it whole; a record added meanwhile can shift pages, so callers
    /// deduplicate by id).
    ///
    /// Bounded by bytes as well: values over [`Queue::max_record_bytes`] are not loaded (see
    /// [`Record::oversize`]), and the page ends early once its values reach
    /// [`MAX_PAGE_BYTES`](crate::limits::MAX_PAGE_BYTES) (so a short page is not the last one:
    /// read on until a page comes back empty).
    fn read_page(
        &mut self,
        queue: Queue,
        max_score: f64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Up to `limit` records of `queue` with a score strictly above `min_score`, oldest first,
    /// bounded by bytes as [`Store::read_page`] is.
    fn read_above(&mut self, queue: Queue, min_score: f64, limit: usize) -> Result<Vec<Record>, StoreError>;

    /// A hint: the first page of `queue` ([`Store::read_page`] at offset 0, `limit` records, any
    /// `max_score`) will be read soon. A store may start reading it meanwhile (the Redis store
    /// reads it on a second connection); any write in between makes it read again. Does nothing
    /// by default.
    fn read_soon(&mut self, queue: Queue, limit: usize) {
        let _ = (queue, limit);
    }

    /// The agent has nothing to aggregate for now: a store may free what it keeps for a backlog
    /// (the Redis store closes its read-ahead connection and thread, and their buffers sized for
    /// the largest page). Does nothing by default.
    fn idle(&mut self) {}

    /// Moves records whose values are too large to load ([`Record::oversize`]) to the
    /// dead-letter queue with reason `too_large`, atomically per record, without loading the
    /// values into the agent where the store allows it (Redis: a server-side script; without
    /// scripting rights, each value is read once). The envelope is [`dead_letter_envelope`]'s
    /// with a `"size"` field. Returns how many were moved (an id already gone is skipped).
    fn dead_letter_oversize(&mut self, queue: Queue, records: &[Record]) -> Result<u64, StoreError>;

    /// The lowest score in `queue`, if any.
    fn oldest_score(&mut self, queue: Queue) -> Result<Option<f64>, StoreError>;

    /// Applies an aggregation step atomically (Redis: one MULTI/EXEC).
    fn commit_aggregation(&mut self, commit: &AggregationCommit) -> Result<(), StoreError>;

    /// The aggregation watermark last committed (key `chouette:agent:aggregated_until`).
    fn aggregated_until(&mut self) -> Result<Option<f64>, StoreError>;

    /// Adds records to a queue (atomically: all or none).
    fn add(&mut self, queue: Queue, records: &[NewRecord]) -> Result<(), StoreError>;

    /// Adds the same records to each of `queues`, atomically (all queues or none): how finished
    /// points (collectors) reach every output's outbox.
    fn add_to_each(&mut self, queues: &[Queue], records: &[NewRecord]) -> Result<(), StoreError>;

    /// Deletes records from a queue (ZSET member and HASH field, atomically).
    fn delete(&mut self, queue: Queue, ids: &[Bytes]) -> Result<(), StoreError>;

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

    /// Adds `records` to every queue of `outboxes` and stores `state` under `device`
    /// ([`LINK_STATE_KEY`]), in one atomic step (Redis: one MULTI/EXEC; embedded: one write
    /// transaction): after a crash at any instant, the points and the link's de-duplication
    /// state are both there or neither is, so the gateway acknowledges a frame only once both
    /// are, and a retransmission is never counted twice. `state` is opaque bytes to the store.
    fn commit_link(
        &mut self,
        outboxes: &[Queue],
        records: &[NewRecord],
        device: &str,
        state: &[u8],
    ) -> Result<(), StoreError> {
        let _ = (outboxes, records, device, state);
        Err(StoreError::Failed {
            store: self.describe(),
            op: "commit link",
            detail: "not supported by this store".into(),
        })
    }

    /// The link state last committed for `device` ([`Store::commit_link`]), if any.
    fn link_state(&mut self, device: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = device;
        Err(StoreError::Failed {
            store: self.describe(),
            op: "read link state",
            detail: "not supported by this store".into(),
        })
    }

    /// Every device's link state, sorted by device (for `chouette status`).
    fn link_states(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Err(StoreError::Failed {
            store: self.describe(),
            op: "read link states",
            detail: "not supported by this store".into(),
        })
    }

    /// Up to `limit` records of `queue` in (score, id) order, strictly after the record `after`
    /// (`None`: from the start). A cursor, not an offset: records removed or added meanwhile do
    /// not shift the pages (`chouette dead` pages through a dead-letter queue while it moves
    /// records out of it).
    fn scan(
        &mut self,
        queue: Queue,
        after: Option<(f64, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let _ = (queue, after, limit);
        Err(StoreError::Failed {
            store: self.describe(),
            op: "scan",
            detail: "not supported by this store".into(),
        })
    }

    /// Takes records out of the dead-letter queue `dead` and adds their `requeue` records to
    /// `live`, atomically (Redis: one WATCHed MULTI/EXEC; embedded: one transaction). A move whose
    /// id is no longer in `dead` with exactly its `envelope` (requeued or purged meanwhile by
    /// someone else) is skipped, so nothing is ever duplicated or lost. Returns how many moved.
    fn redrive(&mut self, dead: Queue, live: Queue, moves: &[DeadMove]) -> Result<u64, StoreError> {
        let _ = (dead, live, moves);
        Err(StoreError::Failed {
            store: self.describe(),
            op: "redrive",
            detail: "not supported by this store".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(value: &[u8], reason: &str) -> DeadRecord {
        DeadRecord { id: b"id".to_vec(), score: 1.0, value: value.to_vec(), reason: reason.to_string() }
    }

    #[test]
    fn envelope_is_python_style_json() {
        let env = dead_letter_envelope(Queue::RawMetrics, &dead(br#"{"a": "\u00e9"}"#, "not_json"));
        assert_eq!(
            String::from_utf8(env).unwrap(),
            r#"{"reason": "not_json", "queue": "chouette:metrics:raw", "value": "{\"a\": \"\\u00e9\"}"}"#
        );
        let env = dead_letter_envelope(Queue::Logs, &dead("é\n".as_bytes(), "http_400"));
        assert_eq!(
            String::from_utf8(env).unwrap(),
            r#"{"reason": "http_400", "queue": "chouette:logs:wrapped", "value": "\u00e9\n"}"#
        );
    }

    #[test]
    fn envelope_keeps_non_utf8_bytes_in_base64() {
        let env = dead_letter_envelope(Queue::RawMetrics, &dead(b"\xffab", "not_json"));
        assert_eq!(
            String::from_utf8(env).unwrap(),
            r#"{"reason": "not_json", "queue": "chouette:metrics:raw", "value": "\ufffdab", "value_base64": "/2Fi"}"#
        );
    }

    #[test]
    fn oversize_envelope_carries_the_size_before_the_value() {
        // The Lua move in the Redis store writes the same bytes for UTF-8 values.
        assert_eq!(
            String::from_utf8(oversize_envelope(Queue::Logs, b"ab")).unwrap(),
            r#"{"reason": "too_large", "queue": "chouette:logs:wrapped", "size": 2, "value": "ab"}"#
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
