//! The Redis store, in the original Chouette-IoT layout (compat §2), readable by the original
//! agent and written by the original client library.
//!
//! Every queue is a ZSET `<prefix>.keys` (member = id, score = timestamp) and a HASH
//! `<prefix>.values` (field = id, value = JSON). Mutations are single `MULTI … EXEC`
//! transactions, sent as one pipeline (written in pieces as it is built, `resp.rs`): if the agent
//! dies before Redis has the whole transaction, the connection closes and Redis discards it, so a `kill -9` at any instant leaves
//! all or none of a step applied. Long argument lists are split into several commands inside
//! the same transaction ([`ARGS_PER_COMMAND`]).
//!
//! Every mutation is idempotent (ZADD/HSET of the same ids and values, ZREM/HDEL, SET), so a
//! call that failed on a connection that turned out to be dead (Redis restarted since the last
//! call) is retried once on a fresh connection. Any other failure drops the connection; the next
//! call reconnects.
//!
//! Cleanup ([`Store::cleanup`]) runs a Lua script that collects up to [`CLEANUP_BATCH`] ids at or
//! below the threshold and removes them from the ZSET and the HASH in the same atomic step, looping
//! until none is left: no orphans, unlike the original (compat §7 item 22), and negative scores are
//! cleaned too (§7 item 21). HASH fields whose id is missing from the ZSET (orphans left by the
//! original agent) are not found by a score range and are not cleaned.
//!
//! Needs Redis ≥ 4.0 (multi-field HSET); the original also supported 3.2 through HMSET.
//!
//! Caveat: Redis does not roll back a transaction when one of its commands fails at run time
//! (a key of the wrong type); such an error is reported as [`StoreError::Failed`] but the
//! other commands were applied.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use redis::{Connection, ConnectionAddr, ConnectionInfo, ErrorKind, RedisError, Value};

use super::resp::{Commands, Failure, PageReader};
use super::{
    check_score, dead_letter_envelope, oversize_envelope, AggregationCommit, DeadMove, DeadRecord, NewRecord,
    Queue, Record, Store, StoreError, AGGREGATED_UNTIL_KEY, LINK_STATE_KEY, STATUS_KEY,
};
use crate::limits::{
    ARGS_PER_COMMAND, CLEANUP_BATCH, MAX_METRIC_RECORD_BYTES, MAX_PAGE_BYTES, NEXT_STEP_SHARE,
};

/// Removes up to ARGV[2] members of KEYS[1] (ZSET) scored at or below ARGV[1], and the same
/// fields of KEYS[2] (HASH), atomically. Returns how many were removed. `unpack` is limited by
/// Lua's C stack (8000 on Redis), hence the slices of 1000.
const CLEANUP_SCRIPT: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n = #ids
if n == 0 then return 0 end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
for i = 1, n, 1000 do
  redis.call('HDEL', KEYS[2], unpack(ids, i, math.min(i + 999, n)))
end
return n
";

/// Moves one record (ARGV[1]) from the live queue (KEYS[1] ZSET, KEYS[2] HASH) to the dead-letter
/// queue (KEYS[3], KEYS[4]) with reason `too_large`, inside Redis: the value is never sent to the
/// agent. The envelope is the one of `oversize_envelope`, with ARGV[2] the live queue's prefix
/// (`cjson` escapes `/` as `\/`, which JSON readers read the same). Returns 1 if moved, 0 if the
/// id was gone.
const OVERSIZE_SCRIPT: &str = r#"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return 0 end
local v = redis.call('HGET', KEYS[2], ARGV[1]) or ''
local env = '{"reason": "too_large", "queue": ' .. cjson.encode(ARGV[2]) .. ', "size": ' .. #v
  .. ', "value": ' .. cjson.encode(v) .. '}'
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], s, ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], env)
return 1
"#;

/// How many times [`Store::redrive`] tries a transaction that concurrent changes of the
/// dead-letter queue abort (its WATCH fires) before giving up, waiting 1, 2, 4 ... 128 ms between
/// tries (about 2 s in all).
pub const REDRIVE_ATTEMPTS: usize = 20;

/// Socket timeouts for the Redis connection (compat §7 item 27: the original had none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisTimeouts {
    /// TCP (and TLS) connection establishment.
    pub connect: Duration,
    /// Waiting for a reply.
    pub read: Duration,
    /// Sending a command.
    pub write: Duration,
}

impl RedisTimeouts {
    /// The same timeout for everything.
    pub const fn uniform(timeout: Duration) -> Self {
        RedisTimeouts { connect: timeout, read: timeout, write: timeout }
    }
}

impl Default for RedisTimeouts {
    /// 5 s for each.
    fn default() -> Self {
        RedisTimeouts::uniform(Duration::from_secs(5))
    }
}

/// The PEM files of a `rediss://` store's TLS, from `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE`
/// and `REDIS_TLS_KEY_FILE`. None set: the server's certificate must chain to a public root
/// (webpki's), and no client certificate is offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificates the server's certificate must chain to, instead of the public roots.
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate (its chain), for a server that asks for one (`tls-auth-clients`).
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's private key.
    pub key: Option<std::path::PathBuf>,
}

impl TlsFiles {
    /// Whether no file is set.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// A client of `info` (a `rediss://` server) trusting `tls.ca` instead of the public roots for
/// the server's certificate, and presenting `tls.cert` with `tls.key` when the server asks for a
/// client certificate. The files are read now: `Err` names the variable and path of a missing or
/// unreadable file, or of one without what it should hold.
pub(crate) fn with_tls_files(info: ConnectionInfo, tls: &TlsFiles) -> Result<redis::Client, String> {
    let read = |var: &str, path: &Option<std::path::PathBuf>, what: &str| {
        let Some(path) = path else { return Ok(None) };
        let fail = |detail: String| format!("{var}={}: {detail}", path.display());
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let found = if var == "REDIS_TLS_KEY_FILE" {
            matches!(rustls_pemfile::private_key(&mut pem.as_slice()), Ok(Some(_)))
        } else {
            rustls_pemfile::certs(&mut pem.as_slice()).any(|c| c.is_ok())
        };
        if !found {
            return Err(fail(format!("no PEM {what} in it")));
        }
        Ok(Some(pem))
    };
    let root_cert = read("REDIS_TLS_CA_FILE", &tls.ca, "certificate")?;
    let cert = read("REDIS_TLS_CERT_FILE", &tls.cert, "certificate")?;
    let key = read("REDIS_TLS_KEY_FILE", &tls.key, "private key")?;
    let client_tls =
        cert.zip(key).map(|(client_cert, client_key)| redis::ClientTlsConfig { client_cert, client_key });
    redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls, root_cert })
        .map_err(|e| e.to_string())
}

/// `e` with what to set, when it is the TLS handshake refusing the server's certificate (no CA
/// given, or the wrong one) or the server asking for a client certificate that was not given.
fn with_tls_hint(mut e: StoreError, tls: &TlsFiles) -> StoreError {
    let (StoreError::Unavailable { detail, .. } | StoreError::Failed { detail, .. }) = &mut e;
    let hint = if detail.contains("UnknownIssuer") && tls.ca.is_none() {
        " (the server's certificate is not from a public CA: set REDIS_TLS_CA_FILE to the CA that signed it)"
    } else if detail.contains("UnknownIssuer") {
        " (REDIS_TLS_CA_FILE holds no CA that signed the server's certificate)"
    } else if detail.contains("CertificateRequired") && tls.cert.is_none() {
        " (the server asks for a client certificate: set REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE)"
    } else {
        ""
    };
    detail.push_str(hint);
    e
}

/// Queues in Redis. Holds one connection, opened lazily and replaced after a failure.
pub struct RedisStore {
    /// Where to connect, without credentials or db: those are sent by [`RedisStore::open_connection`]
    /// once the socket timeouts are set (redis-rs would send them with no read timeout).
    info: ConnectionInfo,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    timeouts: RedisTimeouts,
    description: String,
    conn: Option<Connection>,
    /// Whether `EVAL` may be used (cleared when the server refuses it).
    scripting: bool,
    /// The next page of [`Store::read_page`], read on a second connection meanwhile.
    read_ahead: ReadAhead,
    /// The plain connection page reads go through ([`PageReader`]), once opened.
    pages: Option<PageReader>,
    /// Whether pages are read on a plain connection (cleared for TLS, which has none).
    plain_reads: bool,
    /// Per queue ([`Queue::ALL`]'s order), the longest value of the last page this store read:
    /// whether the next page may load its values without asking their lengths first
    /// ([`RedisStore::unguarded`]).
    longest: [Option<u64>; Queue::ALL.len()],
}

/// Which page: the arguments of [`Store::read_page`], and where its score range starts.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PageKey {
    queue: Queue,
    /// Inclusive; `-inf` for every page [`Store::read_page`] asks for.
    min_score: f64,
    /// Exclusive.
    max_score: f64,
    offset: usize,
    limit: usize,
}

type PageResult = Result<Vec<Record>, StoreError>;

/// A page asked of the reading thread, and where it arrives.
struct Pending {
    key: PageKey,
    page: std::sync::mpsc::Receiver<PageResult>,
}

/// Reads pages the drain will ask for next, on a thread of its own with its own connection,
/// while the caller works on the page it has: the drain's reads (Redis's work and the reply
/// parsing) overlap its parsing, aggregation and commit instead of alternating with them.
///
/// Two pages at most are read ahead, besides the one the caller holds:
/// - **the next page of the step**: after a full page (or one cut for bytes), the page at the
///   next offset under the same bound;
/// - **the next step's first page**: after a page of a step with a backlog, the first page from
///   the step's bound up (`min_score` = the bound): the next step's records, read while this
///   step parses and commits. It answers the next step's first page once nothing below its
///   `min_score` is left in the queue (one `ZCOUNT`, on the main connection, checks it: late
///   records added meanwhile make it read again), cut at that step's bound. After a step's
///   commit, [`Store::read_soon`] asks for the queue's first page instead if none is pending.
///
/// A write through the store drops every page read ahead of the queues it touches (a page
/// read before records were removed would show them again), with one exception: a step's
/// commit ([`Store::commit_aggregation`]) removes only raw records below its
/// `aggregated_until`, so a next step's first page from that score up is kept. Records *added*
/// between a read ahead and its use may be missing from it, as they may be from any page read
/// at that instant: the drain reads on until a page comes back short and skips ids seen twice,
/// and what a step misses waits for the next one. (Re-scoring an existing id, which no client
/// does, is not accounted for.) If the thread cannot start or its read fails, the page is read
/// on the main connection, which reports any error. Each page is bounded by [`MAX_PAGE_BYTES`].
#[derive(Default)]
struct ReadAhead {
    /// Requests to the reading thread, once started.
    requests: Option<std::sync::mpsc::Sender<(PageKey, std::sync::mpsc::SyncSender<PageResult>)>>,
    /// The next page of the step being read.
    next_page: Option<Pending>,
    /// The first page of the next step (or of the queue, from [`Store::read_soon`]).
    next_step: Option<Pending>,
    /// The thread could not be started: not tried again.
    failed: bool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("store", &self.description)
            .field("timeouts", &self.timeouts)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl RedisStore {
    /// Parses `url` (`redis://[user:password@]host:port/db`, `rediss://…` for TLS,
    /// `redis+unix:///path?db=N`) and connects (PING), so a wrong URL or an unreachable server
    /// shows at startup. Unreachable: [`StoreError::Unavailable`] within `timeouts.connect`
    /// (plus `read` if the server accepts but does not answer).
    pub fn connect(url: &str, timeouts: RedisTimeouts) -> Result<Self, StoreError> {
        let mut store = Self::open(url, timeouts)?;
        store.ping()?;
        Ok(store)
    }

    /// [`RedisStore::connect`] to a `rediss://` server with the CA and client certificate of
    /// `tls` (read now: a missing or unreadable file, or one without what it should hold, is a
    /// [`StoreError::Failed`] naming its variable and path).
    pub fn connect_with_tls(url: &str, timeouts: RedisTimeouts, tls: &TlsFiles) -> Result<Self, StoreError> {
        let mut store = Self::open(url, timeouts)?;
        if !tls.is_empty() {
            store.use_tls_files(tls)?;
        }
        store.ping().map_err(|e| with_tls_hint(e, tls))?;
        Ok(store)
    }

    /// Trusts `tls.ca` instead of the public roots for the server's certificate, and presents
    /// `tls.cert` with `tls.key` when the server asks for a client certificate.
    fn use_tls_files(&mut self, tls: &TlsFiles) -> Result<(), StoreError> {
        let fail =
            |detail| StoreError::Failed { store: self.description.clone(), op: "load the TLS files", detail };
        self.info = with_tls_files(self.info.clone(), tls).map_err(fail)?.get_connection_info().clone();
        Ok(())
    }

    /// Parses `url` like [`RedisStore::connect`] without connecting: the first call connects.
    pub fn open(url: &str, timeouts: RedisTimeouts) -> Result<Self, StoreError> {
        let mut info: ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| {
            StoreError::Failed {
                store: "redis (URL not shown)".to_string(),
                op: "parse URL",
                // The parser's messages do not quote the URL, so they cannot leak a password.
                detail: e.to_string(),
            }
        })?;
        let description = describe_info(&info);
        let username = info.redis.username.take();
        let password = info.redis.password.take();
        let db = std::mem::take(&mut info.redis.db);
        Ok(RedisStore {
            info,
            username,
            password,
            db,
            timeouts,
            description,
            conn: None,
            scripting: true,
            read_ahead: ReadAhead::default(),
            pages: None,
            plain_reads: true,
            longest: [None; Queue::ALL.len()],
        })
    }

    /// The timeouts in use.
    pub fn timeouts(&self) -> RedisTimeouts {
        self.timeouts
    }

    /// A store with the same server, credentials and timeouts, not connected yet.
    fn sibling(&self) -> RedisStore {
        RedisStore {
            info: self.info.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            db: self.db,
            timeouts: self.timeouts,
            description: self.description.clone(),
            conn: None,
            scripting: self.scripting,
            read_ahead: ReadAhead { failed: true, ..ReadAhead::default() },
            pages: None,
            plain_reads: self.plain_reads,
            longest: [None; Queue::ALL.len()],
        }
    }

    /// The page `key` if it was read ahead for this call (see [`ReadAhead`]), waiting for it if
    /// the read is still under way.
    fn take_read_ahead(&mut self, key: &PageKey) -> Result<Option<Vec<Record>>, StoreError> {
        if let Some(pending) = self.read_ahead.next_page.take() {
            if pending.key == *key {
                return Ok(received(pending));
            }
        }
        if key.offset != 0 || key.min_score != f64::NEG_INFINITY {
            return Ok(None);
        }
        let Some(pending) = self.read_ahead.next_step.take() else { return Ok(None) };
        let first = &pending.key;
        if first.queue != key.queue
            || first.limit != key.limit
            || first.offset != 0
            || first.max_score != f64::INFINITY
        {
            return Ok(None);
        }
        // Records below its start would come first: the page is the queue's first only if
        // there are none (any records below `key`'s bound come first in the ZSET, so the page
        // cut at that bound is a prefix of it, the byte cut included).
        if first.min_score > f64::NEG_INFINITY && self.count_below(first.queue, first.min_score)? > 0 {
            return Ok(None);
        }
        let Some(mut records) = received(pending) else { return Ok(None) };
        if let Some(end) = records.iter().position(|r| r.score >= key.max_score) {
            records.truncate(end);
        }
        Ok(Some(records))
    }

    /// How many records of `queue` score below `score`.
    fn count_below(&mut self, queue: Queue, score: f64) -> Result<u64, StoreError> {
        let mut max = String::from("(");
        push_score(&mut max, score);
        let keys = keys(queue);
        self.run("read", |conn| redis::cmd("ZCOUNT").arg(keys).arg("-inf").arg(&max).query(conn))
    }

    /// Before a write to `queues`: a page of theirs read ahead may not show it, so it is not
    /// used.
    fn forget_read_ahead(&mut self, queues: &[Queue]) {
        let ahead = &mut self.read_ahead;
        for slot in [&mut ahead.next_page, &mut ahead.next_step] {
            if slot.as_ref().is_some_and(|p| queues.contains(&p.key.queue)) {
                *slot = None;
            }
        }
    }

    /// Asks the reading thread (started on first use) for the page `key`; `None` if it cannot.
    fn start_read_ahead(&mut self, key: PageKey) -> Option<Pending> {
        if self.read_ahead.requests.is_none() && !self.read_ahead.failed {
            let mut reader = self.sibling();
            let (tx, rx) = std::sync::mpsc::channel::<(PageKey, std::sync::mpsc::SyncSender<PageResult>)>();
            let started = std::thread::Builder::new().name("redis-read-ahead".into()).spawn(move || {
                // Ends when the store is dropped (the sender with it).
                for (key, reply) in rx {
                    let _ = reply.send(reader.read_page_now(key));
                }
            });
            match started {
                Ok(_) => self.read_ahead.requests = Some(tx),
                Err(error) => {
                    log::warn!(
                        "error={error}: cannot start the read-ahead thread; pages are read one at a time"
                    );
                    self.read_ahead.failed = true;
                }
            }
        }
        let requests = self.read_ahead.requests.as_ref()?;
        let (reply, page) = std::sync::mpsc::sync_channel(1);
        if requests.send((key, reply)).is_ok() {
            Some(Pending { key, page })
        } else {
            // The thread is gone (it panicked): reads go on one at a time.
            self.read_ahead.requests = None;
            self.read_ahead.failed = true;
            None
        }
    }

    /// [`Store::read_page`] (from `key.min_score` up) on this store's own connection.
    fn read_page_now(&mut self, key: PageKey) -> PageResult {
        let mut max = String::from("(");
        push_score(&mut max, key.max_score);
        let mut min = String::new();
        push_score(&mut min, key.min_score);
        self.read_range(key.queue, &min, &max, key.offset, key.limit)
    }

    /// Connects, sets the socket timeouts, then authenticates and selects the db.
    fn open_connection(&self) -> Result<Connection, RedisError> {
        let client = redis::Client::open(self.info.clone())?;
        let mut conn = client.get_connection_with_timeout(self.timeouts.connect)?;
        conn.set_read_timeout(Some(self.timeouts.read))?;
        conn.set_write_timeout(Some(self.timeouts.write))?;
        if let Some(password) = &self.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = &self.username {
                auth.arg(username);
            }
            auth.arg(password).query::<()>(&mut conn)?;
        }
        if self.db != 0 {
            redis::cmd("SELECT").arg(self.db).query::<()>(&mut conn)?;
        }
        Ok(conn)
    }

    /// Runs `f` on the connection (opening it if needed). A failure drops the connection, unless
    /// it is a plain server error; a failure of a connection that was already open because the
    /// peer closed it (a Redis restart) is retried once on a fresh connection.
    fn run<T>(
        &mut self,
        op: &'static str,
        mut f: impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let mut retried = false;
        loop {
            let reused = self.conn.is_some();
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => {
                    let conn = self.open_connection().map_err(|e| self.error(op, &e))?;
                    self.conn.insert(conn)
                }
            };
            match f(conn) {
                Ok(value) => return Ok(value),
                Err(e) => {
                    if breaks_connection(&e) {
                        self.conn = None;
                        if !retried && (reused && e.is_connection_dropped() || interrupted(&e)) {
                            log::debug!("store={} op={op} error={e}; reconnecting once", self.description);
                            retried = true;
                            continue;
                        }
                    }
                    return Err(self.error(op, &e));
                }
            }
        }
    }

    /// Runs `f` on the plain connection of page reads and transactions (opening it if needed),
    /// with the retry of [`RedisStore::run`]; `None` if there is none (TLS): the caller goes
    /// through redis-rs.
    fn read_plain<T>(
        &mut self,
        op: &'static str,
        mut f: impl FnMut(&mut PageReader) -> Result<T, Failure>,
    ) -> Option<Result<T, StoreError>> {
        let mut retried = false;
        loop {
            let reused = self.pages.is_some();
            let reader = match &mut self.pages {
                Some(reader) => reader,
                None if !self.plain_reads => return None,
                None => {
                    let user = self.username.as_deref();
                    match PageReader::connect(
                        &self.info.addr,
                        user,
                        self.password.as_deref(),
                        self.db,
                        self.timeouts,
                    ) {
                        Ok(Some(reader)) => self.pages.insert(reader),
                        Ok(None) => {
                            self.plain_reads = false;
                            return None;
                        }
                        Err(e) => return Some(Err(self.read_error(op, &e))),
                    }
                }
            };
            match f(reader) {
                Ok(value) => return Some(Ok(value)),
                Err(e) => {
                    if !matches!(e, Failure::Server(_)) {
                        self.pages = None;
                        if !retried
                            && (reused
                                || matches!(&e, Failure::Io(io) if io.kind() == std::io::ErrorKind::Interrupted))
                            && e.worth_a_retry()
                        {
                            log::debug!("store={} op={op} error={e}; reconnecting once", self.description);
                            retried = true;
                            continue;
                        }
                    }
                    return Some(Err(self.read_error(op, &e)));
                }
            }
        }
    }

    fn read_error(&self, op: &'static str, e: &Failure) -> StoreError {
        let store = self.description.clone();
        let detail = e.to_string();
        if e.is_transient() {
            StoreError::Unavailable { store, op, detail }
        } else {
            StoreError::Failed { store, op, detail }
        }
    }

    fn error(&self, op: &'static str, e: &RedisError) -> StoreError {
        let store = self.description.clone();
        let detail = e.to_string();
        if is_transient(e) {
            StoreError::Unavailable { store, op, detail }
        } else {
            StoreError::Failed { store, op, detail }
        }
    }

    /// `ZRANGEBYSCORE keys min max LIMIT offset limit WITHSCORES`, then the values
    /// ([`RedisStore::fetch_values`]): one page of [`Store::read_page`] or [`Store::read_above`].
    fn read_range(
        &mut self,
        queue: Queue,
        min: &str,
        max: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut records = Vec::new();
        let plain = self.read_plain("read", |reader| {
            records.clear();
            reader.range(keys(queue), min, max, offset, limit, &mut records)
        });
        match plain {
            Some(result) => result?,
            None => {
                let mut range = redis::cmd("ZRANGEBYSCORE");
                range
                    .arg(keys(queue))
                    .arg(min)
                    .arg(max)
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(limit)
                    .arg("WITHSCORES");
                self.run("read", |conn| {
                    records.clear();
                    parse_with_scores(range.query::<Value>(conn)?, &mut records)
                })?;
            }
        }
        self.fetch_values(queue, &mut records)?;
        Ok(records)
    }

    /// Loads the values of `records` (ids and scores read from the ZSET): one `HSTRLEN` per id
    /// in a pipeline, then one `HMGET` of the values within [`Queue::max_record_bytes`]; a larger
    /// value is marked [`Record::oversize`] and not loaded. The page ends (records are dropped
    /// from the end) once the loaded bytes would pass [`MAX_PAGE_BYTES`], after one record at least.
    /// When the queue's last page showed small values ([`RedisStore::unguarded`]), the lengths
    /// are not asked: the values come in `HMGET`s and the same bounds apply as they are read.
    fn fetch_values(&mut self, queue: Queue, records: &mut Vec<Record>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let values = values(queue);
        let max_record = queue.max_record_bytes();
        if self.unguarded(queue, records.len()) {
            let read = |reader: &mut PageReader| {
                reader.values_unguarded(values, records, max_record, MAX_PAGE_BYTES)
            };
            if let Some(longest) = self.read_plain("read", read) {
                self.longest[queue_index(queue)] = Some(longest?);
                return Ok(());
            }
        }
        let lengths = match self.read_plain("read", |reader| reader.lengths(values, records)) {
            Some(lengths) => lengths?,
            None => {
                let mut lengths = redis::pipe();
                for r in records.iter() {
                    lengths.cmd("HSTRLEN").arg(values).arg(&r.id[..]);
                }
                self.run("read", |conn| lengths.query::<Vec<u64>>(conn))?
            }
        };
        if lengths.len() != records.len() {
            let e = protocol_error("HSTRLEN replies", &Value::Int(lengths.len() as i64));
            return Err(self.error("read", &e));
        }
        let mut page_bytes = 0u64;
        let mut keep = records.len();
        for (i, (record, &len)) in records.iter_mut().zip(&lengths).enumerate() {
            if len > max_record as u64 {
                record.oversize = Some(len);
                continue;
            }
            if i > 0 && page_bytes + len > MAX_PAGE_BYTES as u64 {
                keep = i;
                break;
            }
            page_bytes += len;
        }
        records.truncate(keep);
        self.longest[queue_index(queue)] = lengths.iter().copied().max();
        if let Some(result) = self.read_plain("read", |reader| reader.values(values, records, max_record)) {
            return result;
        }
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(values);
        let mut wanted = 0;
        for r in records.iter().filter(|r| r.oversize.is_none()) {
            hmget.arg(&r.id[..]);
            wanted += 1;
        }
        if wanted == 0 {
            return Ok(());
        }
        let reply = self.run("read", |conn| hmget.query::<Value>(conn))?;
        let Value::Array(found) = reply else {
            return Err(self.error("read", &protocol_error("HMGET reply", &reply)));
        };
        if found.len() != wanted {
            let e = protocol_error("HMGET reply length", &Value::Int(found.len() as i64));
            return Err(self.error("read", &e));
        }
        for (record, value) in records.iter_mut().filter(|r| r.oversize.is_none()).zip(found) {
            record.value = match value {
                Value::Nil => None,
                other => Some(into_bytes(other).map_err(|e| self.error("read", &e))?.into()),
            };
        }
        Ok(())
    }

    /// Whether a page of `records` records of `queue` may load its values without asking their
    /// lengths first: a metric queue whose last page read here showed small values (see
    /// [`crate::limits::UNGUARDED_IDS_PER_REQUEST`]). Values larger than expected are still not
    /// loaded, and the page still ends at [`MAX_PAGE_BYTES`] ([`PageReader::values_unguarded`]):
    /// what that costs is Redis sending them, which the lengths would have spared.
    fn unguarded(&self, queue: Queue, records: usize) -> bool {
        let max_record = queue.max_record_bytes() as u64;
        max_record <= MAX_METRIC_RECORD_BYTES as u64
            && self.longest[queue_index(queue)].is_some_and(|longest| {
                longest <= max_record && longest.saturating_mul(records as u64) <= MAX_PAGE_BYTES as u64
            })
    }

    /// One batch of [`Store::cleanup`] with plain commands: the ids at or below `threshold`,
    /// then one `MULTI` removing exactly those from the ZSET and the HASH.
    fn cleanup_batch_without_script(&mut self, queue: Queue, threshold: f64) -> Result<u64, StoreError> {
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(keys(queue)).arg("-inf").arg(score_arg(threshold)).arg("LIMIT").arg(0).arg(CLEANUP_BATCH);
        let ids: Vec<Vec<u8>> = self.run("cleanup", |conn| range.query(conn))?;
        self.transaction("cleanup", |w| remove_ids(w, queue, ids.iter().map(|id| &id[..])))?;
        Ok(ids.len() as u64)
    }

    /// Whether `error` says this connection may not run scripts (an ACL user without
    /// `@scripting`, a renamed or disabled `EVAL`); remembered, so the fallbacks are used from
    /// then on without asking again.
    fn scripting_refused(&mut self, error: &StoreError) -> bool {
        let StoreError::Failed { detail, .. } = error else { return false };
        let refused = detail.contains("NOPERM") || detail.contains("unknown command");
        if refused && self.scripting {
            log::warn!(
                "store={} detail={detail:?}: this Redis user may not run scripts; using plain commands (TTL cleanup and too-large moves read values into the agent)",
                self.description
            );
            self.scripting = false;
        }
        refused
    }

    /// Runs one `MULTI … EXEC` built by `build` (nothing is sent when it adds no command): on
    /// the plain connection, sent in pieces as it is written ([`PageReader::transaction`]), or
    /// through redis-rs where there is none (TLS).
    fn transaction(&mut self, op: &'static str, build: impl Fn(&mut dyn Commands)) -> Result<(), StoreError> {
        if let Some(result) = self.read_plain(op, |reader| reader.transaction(&build)) {
            return result;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        build(&mut pipe);
        if pipe.cmd_iter().next().is_none() {
            return Ok(());
        }
        self.run(op, |conn| pipe.query::<()>(conn))
    }

    fn check_scores(
        &self,
        op: &'static str,
        mut scores: impl Iterator<Item = f64>,
    ) -> Result<(), StoreError> {
        scores.try_for_each(|score| check_score(&self.description, op, "a record score", score))
    }
}

/// `queue`'s place in [`Queue::ALL`].
fn queue_index(queue: Queue) -> usize {
    Queue::ALL.iter().position(|q| *q == queue).unwrap_or(0)
}

/// The page a reading thread sent; `None` if its read failed (read again on the main
/// connection, which reports the error).
fn received(pending: Pending) -> Option<Vec<Record>> {
    pending.page.recv().ok()?.ok()
}

/// `redis://host:port/db`, `rediss://host:port/db` or `redis+unix://path?db=N`: never credentials.
fn describe_info(info: &ConnectionInfo) -> String {
    let db = info.redis.db;
    let bracket = |host: &str| {
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        }
    };
    match &info.addr {
        ConnectionAddr::Tcp(host, port) => format!("redis://{}:{port}/{db}", bracket(host)),
        ConnectionAddr::TcpTls { host, port, .. } => {
            format!("rediss://{}:{port}/{db}", bracket(host))
        }
        ConnectionAddr::Unix(path) => format!("redis+unix://{}?db={db}", path.display()),
    }
}

/// Network trouble, or a server that cannot serve yet: retrying later may work.
fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
        )
}

/// A socket call cut short by a signal (`EINTR`). Linux does that to sockets with a timeout
/// (`SO_RCVTIMEO`, which the store sets) when the process is stopped and resumed (SIGSTOP or a
/// cgroup freeze, then SIGCONT), even with no signal handler: the connection is dropped (a
/// transaction sent in part is discarded by Redis) and the call retried on a fresh one.
fn interrupted(e: &RedisError) -> bool {
    // redis-rs keeps the I/O error private; its message is the OS error's (EINTR is 4 on Linux).
    e.is_io_error() && e.to_string().contains(&std::io::Error::from_raw_os_error(4).to_string())
}

/// Whether the connection can no longer be trusted: after an I/O error or a timeout, a late reply
/// could be taken for the answer to the next command.
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error() || e.is_unrecoverable_error() || matches!(e.kind(), ErrorKind::ParseError)
}

fn keys(queue: Queue) -> &'static str {
    queue.keys().keys
}

fn values(queue: Queue) -> &'static str {
    queue.keys().values
}

/// A score as Redis reads it (shortest round-trip decimal; `inf`, `-inf`).
fn push_score(out: &mut String, score: f64) {
    if score.is_infinite() {
        out.push_str(if score > 0.0 { "+inf" } else { "-inf" });
    } else {
        // Infallible: writing to a String.
        let _ = write!(out, "{score:?}");
    }
}

fn score_arg(score: f64) -> String {
    let mut s = String::new();
    push_score(&mut s, score);
    s
}

/// [`add_records`] of `records` into every queue of `queues` (the outboxes a bucket or a frame
/// goes to).
fn add_to_queues(w: &mut dyn Commands, queues: &[Queue], records: &[NewRecord]) {
    for &queue in queues {
        add_records(w, queue, records.iter().map(|r| (r.id.as_slice(), r.score, r.value.as_slice())));
    }
}

/// `ZADD keys s1 id1 …` and `HSET values id1 v1 …`, in chunks.
fn add_records<'a>(
    w: &mut dyn Commands,
    queue: Queue,
    records: impl Iterator<Item = (&'a [u8], f64, &'a [u8])>,
) {
    let (keys, values) = (keys(queue), values(queue));
    let records: Vec<_> = records.collect();
    let mut score = String::new();
    for chunk in records.chunks(ARGS_PER_COMMAND) {
        w.begin(2 + 2 * chunk.len());
        w.arg(b"ZADD");
        w.arg(keys.as_bytes());
        for &(id, s, _) in chunk {
            score.clear();
            push_score(&mut score, s);
            w.arg(score.as_bytes());
            w.arg(id);
        }
        w.begin(2 + 2 * chunk.len());
        w.arg(b"HSET");
        w.arg(values.as_bytes());
        for &(id, _, value) in chunk {
            w.arg(id);
            w.arg(value);
        }
    }
}

/// `ZREM keys id…` and `HDEL values id…`, in chunks.
fn remove_ids<'a>(w: &mut dyn Commands, queue: Queue, ids: impl Iterator<Item = &'a [u8]>) {
    let (keys, values) = (keys(queue), values(queue));
    let ids: Vec<&[u8]> = ids.collect();
    for chunk in ids.chunks(ARGS_PER_COMMAND) {
        for (command, key) in [(b"ZREM".as_slice(), keys), (b"HDEL".as_slice(), values)] {
            w.begin(2 + chunk.len());
            w.arg(command);
            w.arg(key.as_bytes());
            for id in chunk {
                w.arg(id);
            }
        }
    }
}

/// Moves `records` from `queue` to its dead-letter queue, in the envelope of
/// [`dead_letter_envelope`].
fn move_dead(w: &mut dyn Commands, queue: Queue, records: &[DeadRecord]) {
    if records.is_empty() {
        return;
    }
    remove_ids(w, queue, records.iter().map(|r| r.id.as_slice()));
    let envelopes: Vec<Vec<u8>> = records.iter().map(|r| dead_letter_envelope(queue, r)).collect();
    add_records(
        w,
        queue.dead_letter(),
        records.iter().zip(&envelopes).map(|(r, e)| (r.id.as_slice(), r.score, e.as_slice())),
    );
}

fn protocol_error(what: &str, got: &Value) -> RedisError {
    RedisError::from((ErrorKind::TypeError, "unexpected reply", format!("{what}: {got:?}")))
}

fn parse_score(v: &Value) -> Result<f64, RedisError> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| protocol_error("score", v)),
        Value::Double(d) => Ok(*d),
        Value::Int(i) => Ok(*i as f64),
        _ => Err(protocol_error("score", v)),
    }
}

fn into_bytes(v: Value) -> Result<Vec<u8>, RedisError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        other => Err(protocol_error("member", &other)),
    }
}

/// `(member, score)` pairs from a `WITHSCORES` reply: a flat array (RESP2) or pairs (RESP3).
fn parse_with_scores(reply: Value, out: &mut Vec<Record>) -> Result<(), RedisError> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Nil => return Ok(()),
        other => return Err(protocol_error("WITHSCORES reply", &other)),
    };
    out.reserve(items.len() / 2);
    let mut it = items.into_iter();
    while let Some(first) = it.next() {
        let (id, score) = match first {
            Value::Array(pair) => {
                let mut pair = pair.into_iter();
                match (pair.next(), pair.next(), pair.next()) {
                    (Some(id), Some(score), None) => (id, score),
                    _ => return Err(protocol_error("WITHSCORES pair", &Value::Nil)),
                }
            }
            id => match it.next() {
                Some(score) => (id, score),
                None => return Err(protocol_error("WITHSCORES reply of odd length", &id)),
            },
        };
        out.push(Record {
            score: parse_score(&score)?,
            id: into_bytes(id)?.into(),
            value: None,
            oversize: None,
        });
    }
    Ok(())
}

impl RedisStore {
    /// How many members of `keys` have exactly `score` and an id at or before `id` (members of
    /// equal score are ordered by their bytes).
    ///
    /// While the cursor is still a member of that score, its rank and the count below its score
    /// are read in one transaction: exact, O(log n), whatever the run's length (wrapped points of
    /// a bucket all share its start as score). Once it is gone (moved by a requeue, purged), a
    /// binary search over the ties alone, `ZRANGEBYSCORE key s s LIMIT k 1`. Ranks over the whole
    /// set would not do: a record added or removed at a lower score meanwhile (the agent
    /// dead-lettering) shifts them between probes, and the search then skipped records.
    fn ties_up_to(&mut self, keys: &str, score: f64, id: &[u8]) -> Result<u64, StoreError> {
        let s = score_arg(score);
        let (below, rank, at): (u64, Option<u64>, Option<f64>) = self.run("scan", |conn| {
            redis::pipe()
                .atomic()
                .cmd("ZCOUNT")
                .arg(keys)
                .arg("-inf")
                .arg(format!("({s}"))
                .cmd("ZRANK")
                .arg(keys)
                .arg(id)
                .cmd("ZSCORE")
                .arg(keys)
                .arg(id)
                .query(conn)
        })?;
        if let (Some(rank), Some(at)) = (rank, at) {
            if at == score && rank >= below {
                return Ok(rank - below + 1);
            }
        }
        let mut hi: u64 =
            self.run("scan", |conn| redis::cmd("ZCOUNT").arg(keys).arg(&s).arg(&s).query(conn))?;
        let mut lo = 0;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let member: Vec<Vec<u8>> = self.run("scan", |conn| {
                redis::cmd("ZRANGEBYSCORE").arg(keys).arg(&s).arg(&s).arg("LIMIT").arg(mid).arg(1).query(conn)
            })?;
            match member.first() {
                Some(member) if member.as_slice() <= id => lo = mid + 1,
                Some(_) => hi = mid,
                // Shrunk meanwhile: the caller filters what it reads.
                None => hi = mid,
            }
        }
        Ok(lo)
    }
}

/// One attempt of [`Store::redrive`] on `conn`: WATCH the dead-letter HASH, keep the moves whose
/// envelope is still there unchanged, then MULTI/EXEC. `None` when a concurrent change aborted
/// the transaction.
///
/// `after_a_lost_reply`: an earlier attempt's connection was lost once its transaction may have
/// been sent, so it may have been applied. A move whose record is gone from `dead` is then
/// counted as done if it is in `live` with exactly its requeued bytes (a purge: if it is gone),
/// so the count says what this run moved, not "changed meanwhile".
fn redrive_once(
    conn: &mut Connection,
    dead: Queue,
    live: Queue,
    moves: &[DeadMove],
    after_a_lost_reply: bool,
) -> Result<Option<u64>, RedisError> {
    redis::cmd("WATCH").arg(keys(dead)).arg(values(dead)).query::<()>(conn)?;
    let result = watched_move(conn, dead, live, moves, after_a_lost_reply);
    if result.is_err() {
        // A WATCH left behind would abort the connection's next transaction.
        let _ = redis::cmd("UNWATCH").query::<()>(conn);
    }
    result
}

fn watched_move(
    conn: &mut Connection,
    dead: Queue,
    live: Queue,
    moves: &[DeadMove],
    after_a_lost_reply: bool,
) -> Result<Option<u64>, RedisError> {
    let current = hmget(conn, values(dead), moves.iter().map(|m| m.id.as_slice()))?;
    let unchanged: Vec<&DeadMove> = moves
        .iter()
        .zip(&current)
        .filter(|(m, now)| now.as_deref() == Some(m.envelope.as_slice()))
        .map(|(m, _)| m)
        .collect();
    let done_before = if after_a_lost_reply {
        let gone: Vec<&DeadMove> =
            moves.iter().zip(&current).filter(|(_, now)| now.is_none()).map(|(m, _)| m).collect();
        moved_already(conn, live, &gone)?
    } else {
        0
    };
    if unchanged.is_empty() {
        redis::cmd("UNWATCH").query::<()>(conn)?;
        return Ok(Some(done_before));
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    add_records(
        &mut pipe,
        live,
        unchanged
            .iter()
            .filter_map(|m| m.requeue.as_ref())
            .map(|r| (r.id.as_slice(), r.score, r.value.as_slice())),
    );
    remove_ids(&mut pipe, dead, unchanged.iter().map(|m| m.id.as_slice()));
    match pipe.query::<Value>(conn)? {
        Value::Nil => Ok(None),
        _ => Ok(Some(unchanged.len() as u64 + done_before)),
    }
}

/// How many of `gone` (moves whose record has left the dead-letter queue) are done: a requeue
/// whose record is in `live` with exactly its requeued bytes, or a purge.
fn moved_already(conn: &mut Connection, live: Queue, gone: &[&DeadMove]) -> Result<u64, RedisError> {
    let requeued: Vec<&NewRecord> = gone.iter().filter_map(|m| m.requeue.as_ref()).collect();
    let purged = (gone.len() - requeued.len()) as u64;
    if requeued.is_empty() {
        return Ok(purged);
    }
    let found = hmget(conn, values(live), requeued.iter().map(|r| r.id.as_slice()))?;
    let back =
        requeued.iter().zip(&found).filter(|(r, now)| now.as_deref() == Some(r.value.as_slice())).count();
    Ok(purged + back as u64)
}

/// `HMGET hash ids…`: one value (or `None`) per id, in order; a reply of another length is a
/// protocol error (a zip over it would drop ids silently).
fn hmget<'a>(
    conn: &mut Connection,
    hash: &str,
    ids: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<Option<Vec<u8>>>, RedisError> {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(hash);
    let mut asked = 0;
    for id in ids {
        cmd.arg(id);
        asked += 1;
    }
    let found: Vec<Option<Vec<u8>>> = cmd.query(conn)?;
    if found.len() != asked {
        return Err(protocol_error("HMGET replies", &Value::Int(found.len() as i64)));
    }
    Ok(found)
}

/// One attempt of [`Store::commit_link`] on `conn`. Redis does not roll a `MULTI … EXEC` back
/// when one of its commands fails at run time (a `WRONGTYPE` on one outbox key would leave the
/// other outboxes and the link state written), so every key is WATCHed and its TYPE checked
/// first: a key of the wrong type fails the commit before anything is written, and a change of
/// any key between the check and the EXEC aborts it (`None`: try again).
fn commit_link_once(
    conn: &mut Connection,
    outboxes: &[Queue],
    records: &[NewRecord],
    device: &str,
    state: &[u8],
) -> Result<Option<()>, RedisError> {
    let mut expected: Vec<(&str, &str)> = vec![(LINK_STATE_KEY, "hash")];
    for &queue in outboxes {
        expected.push((keys(queue), "zset"));
        expected.push((values(queue), "hash"));
    }
    let mut watch = redis::cmd("WATCH");
    for (key, _) in &expected {
        watch.arg(*key);
    }
    watch.query::<()>(conn)?;
    let result = (|| {
        let mut types = redis::pipe();
        for (key, _) in &expected {
            types.cmd("TYPE").arg(*key);
        }
        let types: Vec<String> = types.query(conn)?;
        for ((key, want), got) in expected.iter().zip(&types) {
            if got != want && got != "none" {
                return Err(RedisError::from((
                    ErrorKind::TypeError,
                    "WRONGTYPE",
                    format!("{key} holds a {got}, not a {want}: nothing of this commit was written"),
                )));
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        add_to_queues(&mut pipe, outboxes, records);
        pipe.cmd("HSET").arg(LINK_STATE_KEY).arg(device).arg(state).ignore();
        match pipe.query::<Value>(conn)? {
            Value::Nil => Ok(None),
            _ => Ok(Some(())),
        }
    })();
    if result.is_err() {
        // A WATCH left behind would abort the connection's next transaction.
        let _ = redis::cmd("UNWATCH").query::<()>(conn);
    }
    result
}

impl Store for RedisStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.run("ping", |conn| redis::cmd("PING").query::<()>(conn))
    }

    fn idle(&mut self) {
        // The thread ends with its channel; it is started again by the next backlog. The page
        // connection's buffers (a page's worth of commands) go too: reopened by the next read.
        self.read_ahead = ReadAhead::default();
        self.pages = None;
    }

    fn read_soon(&mut self, queue: Queue, limit: usize) {
        if limit > 0 && self.read_ahead.next_step.is_none() {
            let key =
                PageKey { queue, min_score: f64::NEG_INFINITY, max_score: f64::INFINITY, offset: 0, limit };
            self.read_ahead.next_step = self.start_read_ahead(key);
        }
    }

    fn read_page(
        &mut self,
        queue: Queue,
        max_score: f64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        check_score(&self.description, "read", "max_score", max_score)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = PageKey { queue, min_score: f64::NEG_INFINITY, max_score, offset, limit };
        let page = match self.take_read_ahead(&key)? {
            Some(page) => page,
            None => self.read_page_now(key)?,
        };
        // A full page, or one cut for bytes, likely has a next page: read it meanwhile. Not
        // for a whole queue's pages (a dispatch's): their reader deletes before it reads on,
        // which would drop it unused.
        let loaded: usize = page.iter().filter_map(|r| r.value.as_ref()).map(|v| v.len()).sum();
        let cut = page.len() == limit || loaded + queue.max_record_bytes() > MAX_PAGE_BYTES;
        if !page.is_empty() && cut && max_score < f64::INFINITY {
            self.read_ahead.next_page = self.start_read_ahead(PageKey { offset: offset + page.len(), ..key });
        }
        // A backlog: the next step starts where this one ends (see `ReadAhead`).
        let from = PageKey { min_score: max_score, max_score: f64::INFINITY, offset: 0, ..key };
        let pending = self.read_ahead.next_step.as_ref().map(|p| p.key);
        if max_score < f64::INFINITY
            && (offset + page.len()) * NEXT_STEP_SHARE >= limit
            && pending != Some(from)
        {
            self.read_ahead.next_step = self.start_read_ahead(from);
        }
        Ok(page)
    }

    fn read_above(&mut self, queue: Queue, min_score: f64, limit: usize) -> Result<Vec<Record>, StoreError> {
        check_score(&self.description, "read", "min_score", min_score)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut min = String::from("(");
        push_score(&mut min, min_score);
        self.read_range(queue, &min, "+inf", 0, limit)
    }

    fn dead_letter_oversize(&mut self, queue: Queue, records: &[Record]) -> Result<u64, StoreError> {
        self.forget_read_ahead(&[queue, queue.dead_letter()]);
        let op = "dead letter too large";
        let dead = queue.dead_letter();
        let mut moved = 0;
        for record in records {
            if self.scripting {
                let mut script = redis::cmd("EVAL");
                script
                    .arg(OVERSIZE_SCRIPT)
                    .arg(4)
                    .arg(keys(queue))
                    .arg(values(queue))
                    .arg(keys(dead))
                    .arg(values(dead))
                    .arg(&record.id[..])
                    .arg(queue.prefix());
                match self.run(op, |conn| script.query::<u64>(conn)) {
                    Ok(n) => {
                        moved += n;
                        continue;
                    }
                    Err(error) if self.scripting_refused(&error) => {}
                    Err(error) => return Err(error),
                }
            }
            // Without scripting rights: read the value once and move it in one transaction.
            let value: Option<Vec<u8>> =
                self.run(op, |conn| redis::cmd("HGET").arg(values(queue)).arg(&record.id[..]).query(conn))?;
            let Some(value) = value else { continue };
            let envelope = oversize_envelope(queue, &value);
            self.transaction(op, |w| {
                remove_ids(w, queue, std::iter::once(&record.id[..]));
                add_records(w, dead, std::iter::once((&record.id[..], record.score, envelope.as_slice())));
            })?;
            moved += 1;
        }
        Ok(moved)
    }

    fn oldest_score(&mut self, queue: Queue) -> Result<Option<f64>, StoreError> {
        let keys = keys(queue);
        let mut records = Vec::new();
        self.run("oldest score", |conn| {
            records.clear();
            let reply =
                redis::cmd("ZRANGE").arg(keys).arg(0).arg(0).arg("WITHSCORES").query::<Value>(conn)?;
            parse_with_scores(reply, &mut records)
        })?;
        Ok(records.first().map(|r| r.score))
    }

    fn commit_aggregation(&mut self, commit: &AggregationCommit) -> Result<(), StoreError> {
        // Raw records below `aggregated_until` are removed: the next step's first page from
        // there up stays true (see `ReadAhead`).
        let kept = self
            .read_ahead
            .next_step
            .take()
            .filter(|p| p.key.queue == Queue::RawMetrics && p.key.min_score >= commit.aggregated_until);
        self.forget_read_ahead(&[Queue::RawMetrics, Queue::RawMetrics.dead_letter()]);
        self.forget_read_ahead(&commit.outboxes);
        self.read_ahead.next_step = kept;
        let op = "commit aggregation";
        check_score(&self.description, op, "aggregated_until", commit.aggregated_until)?;
        self.check_scores(op, commit.wrapped.iter().map(|r| r.score))?;
        self.check_scores(op, commit.dead.iter().map(|r| r.score))?;
        self.transaction(op, |w| {
            add_to_queues(w, &commit.outboxes, &commit.wrapped);
            remove_ids(w, Queue::RawMetrics, commit.delete_raw.iter().map(|id| &id[..]));
            move_dead(w, Queue::RawMetrics, &commit.dead);
            let until = score_arg(commit.aggregated_until);
            w.command(&[b"SET", AGGREGATED_UNTIL_KEY.as_bytes(), until.as_bytes()]);
        })
    }

    fn aggregated_until(&mut self) -> Result<Option<f64>, StoreError> {
        let raw: Option<String> =
            self.run("read watermark", |conn| redis::cmd("GET").arg(AGGREGATED_UNTIL_KEY).query(conn))?;
        match raw {
            None => Ok(None),
            Some(text) => text.parse::<f64>().map(Some).map_err(|_| StoreError::Failed {
                store: self.description.clone(),
                op: "read watermark",
                detail: format!("{AGGREGATED_UNTIL_KEY} holds {text:?}, not a number"),
            }),
        }
    }

    fn add(&mut self, queue: Queue, records: &[NewRecord]) -> Result<(), StoreError> {
        self.forget_read_ahead(&[queue]);
        self.check_scores("add", records.iter().map(|r| r.score))?;
        self.transaction("add", |w| {
            add_records(w, queue, records.iter().map(|r| (r.id.as_slice(), r.score, r.value.as_slice())));
        })
    }

    fn add_to_each(&mut self, queues: &[Queue], records: &[NewRecord]) -> Result<(), StoreError> {
        self.forget_read_ahead(queues);
        self.check_scores("add", records.iter().map(|r| r.score))?;
        self.transaction("add", |w| add_to_queues(w, queues, records))
    }

    fn delete(&mut self, queue: Queue, ids: &[Bytes]) -> Result<(), StoreError> {
        self.forget_read_ahead(&[queue]);
        self.transaction("delete", |w| remove_ids(w, queue, ids.iter().map(|id| &id[..])))
    }

    fn dead_letter(&mut self, queue: Queue, records: &[DeadRecord]) -> Result<(), StoreError> {
        self.forget_read_ahead(&[queue, queue.dead_letter()]);
        self.check_scores("dead letter", records.iter().map(|r| r.score))?;
        self.transaction("dead letter", |w| move_dead(w, queue, records))
    }

    fn cleanup(&mut self, queue: Queue, threshold: f64) -> Result<u64, StoreError> {
        self.forget_read_ahead(&[queue]);
        check_score(&self.description, "cleanup", "threshold", threshold)?;
        let mut script = redis::cmd("EVAL");
        script
            .arg(CLEANUP_SCRIPT)
            .arg(2)
            .arg(keys(queue))
            .arg(values(queue))
            .arg(score_arg(threshold))
            .arg(CLEANUP_BATCH);
        let mut total = 0u64;
        loop {
            let removed: u64 = if self.scripting {
                match self.run("cleanup", |conn| script.query(conn)) {
                    Ok(removed) => removed,
                    Err(error) if self.scripting_refused(&error) => continue,
                    Err(error) => return Err(error),
                }
            } else {
                self.cleanup_batch_without_script(queue, threshold)?
            };
            total += removed;
            if removed < CLEANUP_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    fn len(&mut self, queue: Queue) -> Result<u64, StoreError> {
        let keys = keys(queue);
        self.run("len", |conn| redis::cmd("ZCARD").arg(keys).query(conn))
    }

    fn put_status(&mut self, fields: &[(&str, String)]) -> Result<(), StoreError> {
        if fields.is_empty() {
            return Ok(());
        }
        let mut hset = redis::cmd("HSET");
        hset.arg(STATUS_KEY);
        for (field, value) in fields {
            hset.arg(*field).arg(value);
        }
        self.run("put status", |conn| hset.query::<()>(conn))
    }

    fn status(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut fields: Vec<(String, String)> =
            self.run("read status", |conn| redis::cmd("HGETALL").arg(STATUS_KEY).query(conn))?;
        fields.sort();
        Ok(fields)
    }

    fn commit_link(
        &mut self,
        outboxes: &[Queue],
        records: &[NewRecord],
        device: &str,
        state: &[u8],
    ) -> Result<(), StoreError> {
        self.forget_read_ahead(outboxes);
        let op = "commit link";
        self.check_scores(op, records.iter().map(|r| r.score))?;
        for attempt in 0..REDRIVE_ATTEMPTS {
            if self.run(op, |conn| commit_link_once(conn, outboxes, records, device, state))?.is_some() {
                return Ok(());
            }
            // Aborted by a concurrent write to an outbox (the dispatcher deleting sent points).
            std::thread::sleep(Duration::from_millis(1 << attempt.min(7)));
        }
        Err(StoreError::Unavailable {
            store: self.description.clone(),
            op,
            detail: format!(
                "the outboxes kept changing during {REDRIVE_ATTEMPTS} attempts; nothing committed"
            ),
        })
    }

    fn link_state(&mut self, device: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.run("read link state", |conn| redis::cmd("HGET").arg(LINK_STATE_KEY).arg(device).query(conn))
    }

    fn link_states(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut states: Vec<(String, Vec<u8>)> =
            self.run("read link states", |conn| redis::cmd("HGETALL").arg(LINK_STATE_KEY).query(conn))?;
        states.sort();
        Ok(states)
    }

    fn scan(
        &mut self,
        queue: Queue,
        after: Option<(f64, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        if let Some((score, _)) = after {
            check_score(&self.description, "scan", "the cursor's score", score)?;
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = keys(queue);
        // From the cursor's score on, past its ties up to the cursor: records removed meanwhile
        // with lower scores (the TTL cleanup) cannot shift the page.
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(keys);
        match after {
            Some((score, id)) => {
                let skip = self.ties_up_to(keys, score, id)?;
                range.arg(score_arg(score)).arg("+inf").arg("LIMIT").arg(skip).arg(limit);
            }
            None => {
                range.arg("-inf").arg("+inf").arg("LIMIT").arg(0).arg(limit);
            }
        }
        range.arg("WITHSCORES");
        let mut records = Vec::new();
        self.run("scan", |conn| {
            records.clear();
            parse_with_scores(range.query::<Value>(conn)?, &mut records)
        })?;
        // Ties added or removed between the search and the range can shift it: never return the
        // cursor or anything before it.
        if let Some((score, id)) = after {
            records.retain(|r| (r.score, &r.id[..]) > (score, id));
        }
        self.fetch_values(queue, &mut records)?;
        Ok(records)
    }

    fn redrive(&mut self, dead: Queue, live: Queue, moves: &[DeadMove]) -> Result<u64, StoreError> {
        self.forget_read_ahead(&[dead, live]);
        self.check_scores("redrive", moves.iter().filter_map(|m| m.requeue.as_ref()).map(|r| r.score))?;
        if moves.is_empty() {
            return Ok(0);
        }
        // Set once a connection was lost and the attempt made again (by `run`): the lost
        // attempt's transaction may have been applied.
        let mut after_a_lost_reply = false;
        for attempt in 0..REDRIVE_ATTEMPTS {
            let mut calls = 0;
            let moved = self.run("redrive", |conn| {
                calls += 1;
                after_a_lost_reply |= calls > 1;
                redrive_once(conn, dead, live, moves, after_a_lost_reply)
            })?;
            if let Some(moved) = moved {
                return Ok(moved);
            }
            // Aborted by a concurrent write (the agent dead-lettering): let the burst pass.
            std::thread::sleep(Duration::from_millis(1 << attempt.min(7)));
        }
        Err(StoreError::Unavailable {
            store: self.description.clone(),
            op: "redrive",
            detail: format!(
                "{dead} kept changing during {REDRIVE_ATTEMPTS} attempts; nothing moved, try again"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(url: &str) -> String {
        RedisStore::open(url, RedisTimeouts::default()).unwrap().describe()
    }

    /// A TLS file that is missing, or holds no certificate (or no key), stops the store before
    /// any connection, naming its variable and path.
    #[test]
    fn tls_files_are_read_first_and_a_bad_one_is_named() {
        let dir = std::env::temp_dir().join(format!("chouette-tls-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("not-pem.txt");
        std::fs::write(&text, "not a certificate\n").unwrap();
        // A certificate where the key should be (a well-formed PEM block, not a key).
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n").unwrap();
        let missing = dir.join("missing.pem");
        let connect = |tls: TlsFiles| match RedisStore::connect_with_tls(
            "rediss://localhost:1/0",
            RedisTimeouts::default(),
            &tls,
        ) {
            Err(StoreError::Failed { op, detail, .. }) => format!("{op}: {detail}"),
            other => panic!("{other:?}"),
        };
        let shown = |p: &std::path::Path| p.display().to_string();
        let got = connect(TlsFiles { ca: Some(missing.clone()), ..TlsFiles::default() });
        assert!(
            got.starts_with(&format!(
                "load the TLS files: REDIS_TLS_CA_FILE={}: No such file",
                shown(&missing)
            )),
            "{got}"
        );
        let got = connect(TlsFiles { ca: Some(text.clone()), ..TlsFiles::default() });
        assert_eq!(
            got,
            format!("load the TLS files: REDIS_TLS_CA_FILE={}: no PEM certificate in it", shown(&text))
        );
        let got =
            connect(TlsFiles { cert: Some(text.clone()), key: Some(cert.clone()), ..TlsFiles::default() });
        assert_eq!(
            got,
            format!("load the TLS files: REDIS_TLS_CERT_FILE={}: no PEM certificate in it", shown(&text))
        );
        let got =
            connect(TlsFiles { cert: Some(cert.clone()), key: Some(cert.clone()), ..TlsFiles::default() });
        assert_eq!(
            got,
            format!("load the TLS files: REDIS_TLS_KEY_FILE={}: no PEM private key in it", shown(&cert))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn describe_never_shows_credentials() {
        assert_eq!(describe("redis://:secret@127.0.0.1:1/0"), "redis://127.0.0.1:1/0");
        assert_eq!(describe("redis://user:secret@example.com:6380/3"), "redis://example.com:6380/3");
        assert_eq!(describe("rediss://:secret@example.com:6380"), "rediss://example.com:6380/0");
        assert_eq!(describe("redis://[::1]:6379/2"), "redis://[::1]:6379/2");
    }

    #[test]
    fn scores_round_trip_as_redis_reads_them() {
        for s in [0.0, -1.5, 1600000000.25, 1e300, 5e-324, f64::MAX] {
            assert_eq!(score_arg(s).parse::<f64>().unwrap(), s);
        }
        assert_eq!(score_arg(f64::INFINITY), "+inf");
        assert_eq!(score_arg(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn bad_url_is_failed_without_the_url() {
        let e = RedisStore::open("http://:secret@x", RedisTimeouts::default()).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn with_scores_parses_resp2_and_resp3() {
        let mut out = Vec::new();
        let resp2 = Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::BulkString(b"1.5".to_vec())]);
        parse_with_scores(resp2, &mut out).unwrap();
        let resp3 =
            Value::Array(vec![Value::Array(vec![Value::BulkString(b"b".to_vec()), Value::Double(-2.0)])]);
        parse_with_scores(resp3, &mut out).unwrap();
        assert_eq!(out[0].id, &b"a"[..]);
        assert_eq!(out[0].score, 1.5);
        assert_eq!(out[1].id, &b"b"[..]);
        assert_eq!(out[1].score, -2.0);
        let odd = Value::Array(vec![Value::BulkString(b"a".to_vec())]);
        assert!(parse_with_scores(odd, &mut out).is_err());
    }
}
