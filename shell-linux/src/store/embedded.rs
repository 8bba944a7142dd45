//! The embedded store: the same queues in one redb file (pure Rust, crash-safe), used when no
//! Redis is configured so the agent runs on a machine with nothing installed.
//!
//! Every mutation is one redb write transaction, committed durably (fsync) before the call
//! returns: after a crash, a step is either wholly applied or not at all. One exception: the
//! status hash (what `chouette status` prints, written at every release tick) is committed
//! without an fsync while another commit was durable within [`STATUS_DURABLE_EVERY`]; the next
//! durable commit (or closing the store) persists it with everything before it, and a crash loses
//! at most that long of status updates, never a queued record.
//!
//! # On-disk format
//!
//! One redb database file (format of redb 2). For each queue with prefix `P`
//! ([`Queue::prefix`]):
//! - table `P.index`: key `(u64 score key, id bytes)` → value bytes (the JSON). Ordered by score,
//!   then id, like the Redis ZSET; reads are one range scan.
//! - table `P.ids`: key id bytes → `u64` score key, to find an id's index entry.
//!
//! The score key maps an `f64` to a `u64` whose unsigned order is the float order: for a
//! negative float all bits are inverted, otherwise the sign bit is set (`-0.0` is stored as
//! `0.0`; NaN is refused). Both tables change together in every transaction, so there are no
//! orphans.
//!
//! Plus table `chouette:agent:meta` (`&str` → `f64`: the row `chouette:agent:aggregated_until`),
//! table `chouette:agent:status` (`&str` → `&str`), and table `chouette:agent:probe` (`&str` →
//! bytes; empty but during the probe write of a reopen, see below).
//!
//! # Faults
//!
//! - **An I/O error** (a full disk: `ENOSPC`, or `EFBIG` past a file-size limit) fails the
//!   transaction as a whole (nothing of it is applied), and redb then refuses every later call on
//!   that handle, reads included, with "Previous I/O error occurred. Please close and re-open the
//!   database", even once space is back. So the store drops the handle at the first I/O error
//!   (a [`StoreError::Unavailable`], logged once by the run loop) and reopens the file later
//!   (redb repairs it from its last commit: what was committed before the error is all there).
//!   A reopen counts only once a probe write of [`PROBE_BYTES`] commits (in table
//!   `chouette:agent:probe`, removed at once): on a disk that is still full, redb reopens and
//!   reads fine while writes fail, and a dispatcher that could read and send but not delete would
//!   send the same batch at every tick. Reopens are tried after [`REOPEN_RETRY`], doubling up to
//!   [`REOPEN_RETRY_MAX`] while they fail (each one reads the whole file to repair it). Before
//!   each reopen, and at the I/O error itself, the store sets the header's "recovery required"
//!   bit (one byte in place): redb 2.6 may leave it clear after a failed write, and an open
//!   without repair then corrupts the file (`mark_needs_repair`).
//! - **A corrupt file** (truncated, garbage, wrong magic number, a repair that fails) is renamed
//!   to `<file>.corrupt-<unix time>`, kept for inspection, with one ERROR naming both paths, and a
//!   fresh store is created in its place: the agent starts, never a restart loop. Before redb
//!   reads the file, its header is checked (`check_header`): redb 2.6 panics (an abort in the
//!   release build) on a truncated file instead of returning an error. A file locked by another
//!   process is not corrupt: opening fails, as before.
//! - **A file that makes redb panic** (damaged B-tree pages: redb does not check page checksums
//!   when it reads, and indexes out of bounds on some damage) would abort the agent at every
//!   start. A panic hook notices a panic raised in redb's code while a store is open and writes
//!   `<file>.redb-panic` (the panic message); the next open moves the file aside as corrupt. One
//!   crash, then a fresh store, not a restart loop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chouette_core::keys;
use redb::{
    Database, DatabaseError, ReadableTable, ReadableTableMetadata, StorageError, TableDefinition,
    WriteTransaction,
};

use super::{
    check_score, dead_letter_envelope, oversize_envelope, AggregationCommit, DeadMove, DeadRecord, NewRecord,
    Queue, Record, Store, StoreError, AGGREGATED_UNTIL_KEY, STATUS_KEY,
};
use crate::limits::{CLEANUP_BATCH, MAX_PAGE_BYTES, PROBE_BYTES, REDB_CACHE_BYTES};

type Index = TableDefinition<'static, (u64, &'static [u8]), &'static [u8]>;
type Ids = TableDefinition<'static, &'static [u8], u64>;

const META: TableDefinition<'static, &str, f64> = TableDefinition::new(keys::META_TABLE);
const STATUS: TableDefinition<'static, &str, &str> = TableDefinition::new(STATUS_KEY);

/// After an I/O error, how long calls fail at once before the store tries to reopen the file;
/// doubled after each failed try, up to [`REOPEN_RETRY_MAX`] (a reopen after an I/O error
/// repairs the file: it reads all of it).
pub const REOPEN_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two tries to reopen: how late, at worst, the store resumes once
/// space is back.
pub const REOPEN_RETRY_MAX: Duration = Duration::from_secs(30);

const LINK_STATE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new(keys::LINK_STATE);
const PROBE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new(keys::PROBE_TABLE);

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// The size of redb's file header (magic, god byte, layout, two commit slots).
const REDB_HEADER_BYTES: usize = 320;
/// The page size of the files this store creates (redb's default, which `open` insists on).
const REDB_PAGE_BYTES: u32 = 4096;
/// The header's "god byte" and its "recovery required" bit: set, the next open repairs the file.
const REDB_GOD_BYTE_OFFSET: u64 = 9;
const REDB_RECOVERY_REQUIRED: u8 = 2;

/// A redb error, boxed (redb's own is 160 bytes, too large to return by value everywhere).
#[derive(Debug)]
struct DbError(Box<redb::Error>);

impl<E: Into<redb::Error>> From<E> for DbError {
    fn from(e: E) -> Self {
        DbError(Box::new(e.into()))
    }
}

impl DbError {
    /// An I/O error, after which redb refuses every call on this handle until it is reopened.
    fn is_io(&self) -> bool {
        matches!(*self.0, redb::Error::Io(_) | redb::Error::PreviousIo)
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The longest the status hash goes without a durable commit ([`Store::put_status`]): a crash
/// loses at most this long of status updates. Bounded too because redb frees the pages of
/// non-durable commits only at a durable one.
pub const STATUS_DURABLE_EVERY: Duration = Duration::from_secs(60);

/// The two tables of a queue.
const fn tables(queue: Queue) -> (Index, Ids) {
    let names = queue.keys();
    (TableDefinition::new(names.index_table), TableDefinition::new(names.ids_table))
}

/// The `u64` whose unsigned order is the order of the (non-NaN) `score`.
pub fn score_key(score: f64) -> u64 {
    let bits = if score == 0.0 { 0 } else { score.to_bits() };
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The score a [`score_key`] came from.
pub fn key_score(key: u64) -> f64 {
    if key >> 63 == 1 {
        f64::from_bits(key & !(1 << 63))
    } else {
        f64::from_bits(!key)
    }
}

/// Queues in a redb file.
pub struct EmbeddedStore {
    /// `None` once an I/O error closed it, until a reopen succeeds.
    db: Option<Database>,
    path: PathBuf,
    description: String,
    /// While closed: no try to reopen before this instant.
    reopen_after: Instant,
    /// The wait after the next failed try (doubles; back to [`REOPEN_RETRY`] after a commit).
    reopen_backoff: Duration,
    /// When the last durable commit was made (the status may skip its fsync shortly after one).
    last_durable: Instant,
    /// Whether a commit since the last durable one was not durable (persisted when closing).
    unpersisted: bool,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if self.unpersisted && self.db.is_some() {
            // An empty durable commit persists the status written without an fsync.
            if let Err(error) = self.write("close", |_| Ok(())) {
                log::debug!(
                    "path={} error={error}: the last status update is not persisted",
                    self.path.display()
                );
            }
        }
        self.db = None;
        stop_watching(&self.path);
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish()
    }
}

/// Why the file could not be opened.
enum OpenFailure {
    /// Not a usable redb file: it is moved aside.
    Corrupt(String),
    /// Anything else (locked by another process, permission denied, disk full): an error.
    Other(String),
}

/// The store files open (or being opened) in this process: a panic in redb marks them.
static IN_USE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The marker a panic in redb leaves beside a store file in use: `<file>.redb-panic`.
pub fn panic_marker_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".redb-panic");
    PathBuf::from(name)
}

/// Adds `path` to the files a panic in redb marks, installing the panic hook (once per
/// process; it runs before the abort of the release build and hands over to the previous hook).
fn watch_for_redb_panics(path: &Path) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_some_and(|l| is_redb_source(l.file())) {
                mark_in_use_files(&info.to_string());
            }
            previous(info);
        }));
    });
    let mut paths = IN_USE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !paths.iter().any(|p| p == path) {
        paths.push(path.to_path_buf());
    }
}

fn stop_watching(path: &Path) {
    let mut paths = IN_USE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    paths.retain(|p| p != path);
}

/// Whether a panic location is in redb's sources (`.../redb-2.6.4/src/...`, or a vendored
/// `.../redb/src/...`).
fn is_redb_source(file: &str) -> bool {
    file.split(['/', '\\']).any(|part| part == "redb" || part.starts_with("redb-"))
}

/// Writes the panic marker of every store file in use (called from the panic hook).
fn mark_in_use_files(panic: &str) {
    let Ok(paths) = IN_USE.try_lock() else { return };
    for path in paths.iter() {
        let marker = panic_marker_path(path);
        match std::fs::write(&marker, panic) {
            Ok(()) => log::error!(
                "path={} marker={}: redb panicked while this store was in use; the next start moves the file aside",
                path.display(),
                marker.display()
            ),
            Err(e) => log::error!("path={}: redb panicked, and the panic marker cannot be written: {e}", path.display()),
        }
    }
}

/// Opens (or creates) the redb file at `path`, holding its lock. A corrupt file is renamed to
/// `<path>.corrupt-<unix time>` (one ERROR) and a fresh one created in its place.
fn open_database(path: &Path) -> Result<Database, String> {
    match open_checked(path) {
        Ok(db) => return Ok(db),
        Err(OpenFailure::Other(detail)) => return Err(detail),
        Err(OpenFailure::Corrupt(_)) => {} // moved aside by open_checked, below
    }
    match open_checked(path) {
        Ok(db) => Ok(db),
        Err(OpenFailure::Other(detail) | OpenFailure::Corrupt(detail)) => {
            Err(format!("cannot create a fresh store at {}: {detail}", path.display()))
        }
    }
}

/// Opens the file under its lock, checks its header, then hands it to redb. A corrupt file is
/// renamed aside (still under the lock, so never a file another agent holds) before returning
/// [`OpenFailure::Corrupt`].
fn open_checked(path: &Path) -> Result<Database, OpenFailure> {
    let other =
        |e: &dyn std::fmt::Display| OpenFailure::Other(format!("cannot open {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| other(&e))?;
    // redb takes the same lock on this descriptor (a no-op then); taking it first means the
    // header is read, and a corrupt file moved, only while no other process holds the file.
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Err(other(&DatabaseError::DatabaseAlreadyOpen)),
        Err(e) => return Err(other(&e)),
    }
    let marker = panic_marker_path(path);
    let panicked = std::fs::read_to_string(&marker).ok();
    let checked = match (panicked, file.metadata().map(|m| m.len())) {
        (Some(panic), Ok(len)) if len > 0 => Err(OpenFailure::Corrupt(format!(
            "redb panicked on this file in an earlier run: {}",
            panic.trim()
        ))),
        _ => check_header(&file).map_err(|e| match e {
            HeaderError::Io(e) => other(&e),
            HeaderError::Corrupt(detail) => OpenFailure::Corrupt(detail),
        }),
    };
    watch_for_redb_panics(path);
    let opened = checked.and_then(|()| {
        redb::Builder::new()
            .set_cache_size(REDB_CACHE_BYTES)
            .create_file(file.try_clone().map_err(|e| other(&e))?)
            .map_err(|e| match e {
                DatabaseError::UpgradeRequired(_) | DatabaseError::Storage(StorageError::Corrupted(_)) => {
                    OpenFailure::Corrupt(e.to_string())
                }
                // redb's answer to a wrong magic number or a header cut short.
                DatabaseError::Storage(StorageError::Io(ref io))
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    OpenFailure::Corrupt(e.to_string())
                }
                e => other(&e),
            })
    });
    let result = match opened {
        Err(OpenFailure::Corrupt(detail)) => match move_aside(path) {
            Ok(aside) => {
                log::error!(
                    "path={} moved_to={} error={detail}: the store file is corrupt; moved it aside, \
                     the data in it is kept there for inspection; starting with a fresh, empty store",
                    path.display(),
                    aside.display()
                );
                let _ = std::fs::remove_file(&marker);
                Err(OpenFailure::Corrupt(detail))
            }
            Err(e) => Err(OpenFailure::Other(format!(
                "{} is corrupt ({detail}) and cannot be moved aside: {e}",
                path.display()
            ))),
        },
        Ok(db) => {
            let _ = std::fs::remove_file(&marker); // a panic marker beside an empty file
            Ok(db)
        }
        Err(other) => Err(other),
    };
    if result.is_err() {
        stop_watching(path);
    }
    // Dropping `file` here releases the lock on a file moved aside; redb holds its own
    // descriptor (same lock) of a file it opened.
    result
}

/// Renames `path` to `<path>.corrupt-<unix time>` (`-2`, `-3`... if taken); returns the new path.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    move_aside_at(path, now)
}

fn move_aside_at(path: &Path, now: u64) -> std::io::Result<PathBuf> {
    for n in 1..100u32 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{now}"));
        if n > 1 {
            name.push(format!("-{n}"));
        }
        let aside = PathBuf::from(name);
        if !aside.exists() {
            std::fs::rename(path, &aside)?;
            return Ok(aside);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "every .corrupt-<time> name is taken"))
}

/// Why [`check_header`] refused a file.
#[derive(Debug)]
enum HeaderError {
    /// The file cannot be read.
    Io(std::io::Error),
    /// The file is not a redb file this store can open.
    Corrupt(String),
}

/// Checks what redb 2.6 asserts (panics on) rather than reports when it opens a file: the header
/// is whole, starts with redb's magic number, names our page size, and describes a layout no
/// longer than the file (redb's file format 2 and 3 header: page size at byte 12, then region
/// header pages, region data pages, full regions, trailing region pages, little-endian `u32`s).
/// An empty file passes (redb initializes a new database in it).
fn check_header(file: &File) -> Result<(), HeaderError> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map_err(HeaderError::Io)?.len();
    if len == 0 {
        return Ok(());
    }
    let corrupt = |detail: String| Err(HeaderError::Corrupt(detail));
    let mut header = [0u8; REDB_HEADER_BYTES];
    if len < REDB_HEADER_BYTES as u64 {
        return corrupt(format!("{len} bytes, shorter than a redb header"));
    }
    file.read_exact_at(&mut header, 0).map_err(HeaderError::Io)?;
    if header[..REDB_MAGIC.len()] != REDB_MAGIC {
        return corrupt("not a redb file (wrong magic number)".to_string());
    }
    let field = |offset: usize| {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&header[offset..offset + 4]);
        u128::from(u32::from_le_bytes(bytes))
    };
    let (page, header_pages, data_pages, full_regions, trailing_pages) =
        (field(12), field(16), field(20), field(24), field(28));
    if page != u128::from(REDB_PAGE_BYTES) {
        return corrupt(format!("the header names a page size of {page} bytes, not {REDB_PAGE_BYTES}"));
    }
    if data_pages == 0 || full_regions == 0 && trailing_pages == 0 {
        return corrupt("the header describes no region".to_string());
    }
    let trailing = if trailing_pages > 0 { (header_pages + trailing_pages) * page } else { 0 };
    let layout = page + full_regions * (header_pages + data_pages) * page + trailing;
    if layout > u128::from(len) {
        return corrupt(format!("truncated: {len} bytes, its header describes {layout}"));
    }
    Ok(())
}

impl EmbeddedStore {
    /// Opens (or creates, with its parent directories) the database at `path`. A corrupt file is
    /// moved aside (see the module docs) and a fresh store created. Fails with
    /// [`StoreError::Failed`] naming the path if it cannot be created (a full disk, a read-only
    /// directory), or if another process holds it open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let description = format!("embedded:{}", path.display());
        let failed = |op, detail: String| StoreError::Failed { store: description.clone(), op, detail };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| failed("open", format!("cannot create directory {}: {e}", parent.display())))?;
        }
        let db = open_database(path).map_err(|detail| failed("open", detail))?;
        create_tables(&db)
            .map_err(|e| failed("open", format!("cannot create the tables in {}: {e}", path.display())))?;
        Ok(EmbeddedStore {
            db: Some(db),
            path: path.to_path_buf(),
            description,
            reopen_after: Instant::now(),
            reopen_backoff: REOPEN_RETRY,
            last_durable: Instant::now(),
            unpersisted: false,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, op: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed { store: self.description.clone(), op, detail: e.to_string() }
    }

    /// The open database, reopening it if an I/O error closed it.
    fn db(&mut self, op: &'static str) -> Result<&Database, StoreError> {
        if self.db.is_none() {
            let store = self.description.clone();
            let unavailable = |detail: String| StoreError::Unavailable {
                store,
                op,
                detail: format!("closed after an I/O error, not reopened yet: {detail}"),
            };
            let now = Instant::now();
            if now < self.reopen_after {
                let wait = self.reopen_after - now;
                return Err(unavailable(format!("next try in {} ms", wait.as_millis())));
            }
            match reopen(&self.path) {
                Ok(db) => {
                    log::debug!("path={}: reopened the store after an I/O error", self.path.display());
                    self.db = Some(db);
                }
                Err(detail) => {
                    log::debug!("path={} error={detail}: cannot reopen the store yet", self.path.display());
                    self.close_for_a_while();
                    return Err(unavailable(detail));
                }
            }
        }
        match &self.db {
            Some(db) => Ok(db),
            None => Err(self.failed(op, "the database is closed")),
        }
    }

    /// Drops the handle; the next try to reopen comes after the current backoff, which doubles.
    fn close_for_a_while(&mut self) {
        self.db = None;
        self.reopen_after = Instant::now() + self.reopen_backoff;
        self.reopen_backoff = (self.reopen_backoff * 2).min(REOPEN_RETRY_MAX);
    }

    /// The error for `e`; an I/O error also closes the handle (redb refuses every later call on
    /// it), so that a later call reopens the file.
    fn fail(&mut self, op: &'static str, e: DbError) -> StoreError {
        if !e.is_io() {
            return self.failed(op, e);
        }
        self.close_for_a_while();
        // Now, not only at the reopen: if the agent stops before, its next start repairs too.
        if let Err(e) = mark_needs_repair(&self.path) {
            log::debug!("path={} error={e}: cannot mark the store for repair yet", self.path.display());
        }
        StoreError::Unavailable {
            store: self.description.clone(),
            op,
            detail: format!(
                "{e}: closed the file, reopening it once writes work again (nothing committed is lost, \
                 this step was not applied)"
            ),
        }
    }

    /// Runs `f` in one write transaction and commits it durably; any error aborts it.
    fn write<T>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        self.write_durable(op, true, f)
    }

    /// [`EmbeddedStore::write`], without an fsync when not `durable` (persisted by the next
    /// durable commit; lost in a crash before it).
    fn write_durable<T>(
        &mut self,
        op: &'static str,
        durable: bool,
        f: impl FnOnce(&WriteTransaction) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let db = self.db(op)?;
        let run = || {
            let mut txn = db.begin_write()?;
            if !durable {
                txn.set_durability(redb::Durability::None);
            }
            let out = f(&txn)?;
            txn.commit()?;
            Ok::<T, DbError>(out)
        };
        let out = run().map_err(|e| self.fail(op, e))?;
        self.reopen_backoff = REOPEN_RETRY;
        self.unpersisted = !durable;
        if durable {
            self.last_durable = Instant::now();
        }
        Ok(out)
    }

    /// Runs `f` in a read transaction.
    fn read_txn<T>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let db = self.db(op)?;
        let run = || f(&db.begin_read()?);
        run().map_err(|e| self.fail(op, e))
    }

    fn check_scores(
        &self,
        op: &'static str,
        mut scores: impl Iterator<Item = f64>,
    ) -> Result<(), StoreError> {
        scores.try_for_each(|score| check_score(&self.description, op, "a record score", score))
    }
}

/// Sets the header's "recovery required" bit, so that the next open of the file repairs it
/// (rebuilds its allocator state from the last valid commit) whatever state the I/O error left
/// it in. redb 2.6 may leave that bit clear after an I/O error during a commit, a repair or
/// the start of a write (fixed upstream in redb PR #1177, "Fix silent database corruption from
/// transient I/O errors"); an open without repair then works on stale allocator state, and reads
/// panic on pages reused while still in use (reproduced here with `RLIMIT_FSIZE`). One byte
/// written in place: it needs no free space.
fn mark_needs_repair(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // the open creates one
        Err(e) => return Err(e),
    };
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    let mut header = [0u8; REDB_MAGIC.len() + 1];
    if file.metadata()?.len() < REDB_HEADER_BYTES as u64 || file.read_exact_at(&mut header, 0).is_err() {
        return Ok(()); // not a redb file (yet): the open checks it
    }
    if header[..REDB_MAGIC.len()] != REDB_MAGIC || header[REDB_MAGIC.len()] & REDB_RECOVERY_REQUIRED != 0 {
        return Ok(());
    }
    file.write_all_at(&[header[REDB_MAGIC.len()] | REDB_RECOVERY_REQUIRED], REDB_GOD_BYTE_OFFSET)?;
    file.sync_data()
}

/// Reopens the file after an I/O error: opens it (repairing it; a corrupt one is replaced by a
/// fresh one, which has no tables yet), creates the tables, and proves that writes work again
/// by committing a [`PROBE_BYTES`] probe, then removing it.
fn reopen(path: &Path) -> Result<Database, String> {
    mark_needs_repair(path).map_err(|e| format!("cannot mark {} for repair: {e}", path.display()))?;
    let db = open_database(path)?;
    let probe = || {
        create_tables(&db)?;
        let txn = db.begin_write()?;
        txn.open_table(PROBE)?.insert("probe", vec![0u8; PROBE_BYTES].as_slice())?;
        txn.commit()?;
        let txn = db.begin_write()?;
        txn.open_table(PROBE)?.remove("probe")?;
        txn.commit()?;
        Ok::<(), DbError>(())
    };
    probe().map_err(|e| format!("writes still fail: {e}"))?;
    Ok(db)
}

/// Creates every table (a no-op for those that exist).
fn create_tables(db: &Database) -> Result<(), DbError> {
    let txn = db.begin_write()?;
    for queue in Queue::ALL {
        let (index, ids) = tables(queue);
        txn.open_table(index)?;
        txn.open_table(ids)?;
    }
    txn.open_table(META)?;
    txn.open_table(STATUS)?;
    txn.open_table(LINK_STATE)?;
    txn.commit()?;
    Ok(())
}

/// Inserts or replaces records (a new score for an existing id moves it, as ZADD does).
fn insert<'a>(
    txn: &WriteTransaction,
    queue: Queue,
    records: impl Iterator<Item = (&'a [u8], f64, &'a [u8])>,
) -> Result<(), DbError> {
    let (index_def, ids_def) = tables(queue);
    let mut index = txn.open_table(index_def)?;
    let mut ids = txn.open_table(ids_def)?;
    for (id, score, value) in records {
        let key = score_key(score);
        let old = ids.insert(id, key)?.map(|g| g.value());
        if let Some(old) = old.filter(|&old| old != key) {
            index.remove((old, id))?;
        }
        index.insert((key, id), value)?;
    }
    Ok(())
}

/// Inserts `records` into every queue of `queues` (the outboxes a bucket or a frame goes to).
fn insert_each(txn: &WriteTransaction, queues: &[Queue], records: &[NewRecord]) -> Result<(), DbError> {
    for &queue in queues {
        insert(txn, queue, records.iter().map(|r| (r.id.as_slice(), r.score, r.value.as_slice())))?;
    }
    Ok(())
}

/// Removes ids (absent ones are ignored); returns how many were present.
fn remove<'a>(
    txn: &WriteTransaction,
    queue: Queue,
    ids_to_remove: impl Iterator<Item = &'a [u8]>,
) -> Result<u64, DbError> {
    let (index_def, ids_def) = tables(queue);
    let mut index = txn.open_table(index_def)?;
    let mut ids = txn.open_table(ids_def)?;
    // Removing in key order keeps each B-tree walk on the pages the previous one touched:
    // first the ids table in id order, then the index in (score, id) order.
    let mut sorted: Vec<&[u8]> = ids_to_remove.collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut found: Vec<(u64, &[u8])> = Vec::with_capacity(sorted.len());
    for id in sorted {
        let old = ids.remove(id)?.map(|g| g.value());
        if let Some(old) = old {
            found.push((old, id));
        }
    }
    found.sort_unstable();
    for key in &found {
        index.remove(*key)?;
    }
    Ok(found.len() as u64)
}

/// Records from an index range, bounded as [`Store::read_page`] says: values over the queue's
/// [`Queue::max_record_bytes`] are marked oversize (not copied), and the page ends once its
/// values reach [`MAX_PAGE_BYTES`].
fn collect_page<'a>(
    queue: Queue,
    range: impl Iterator<
        Item = Result<
            (redb::AccessGuard<'a, (u64, &'static [u8])>, redb::AccessGuard<'a, &'static [u8]>),
            redb::StorageError,
        >,
    >,
    capacity: usize,
) -> Result<Vec<Record>, DbError> {
    // The page's ids in one buffer and its values in another, each record's a slice of them
    // (as the Redis store's reader does): two allocations a page, not two a record.
    let (mut ids, mut values) = (Vec::new(), Vec::new());
    let mut spans = Vec::with_capacity(capacity);
    for entry in range {
        let (key, value) = entry?;
        let (score, id) = key.value();
        let value = value.value();
        let mut oversize = None;
        let at = values.len();
        if value.len() > queue.max_record_bytes() {
            oversize = Some(value.len() as u64);
        } else if !spans.is_empty() && values.len() + value.len() > MAX_PAGE_BYTES {
            break;
        } else {
            values.extend_from_slice(value);
        }
        let id_at = ids.len();
        ids.extend_from_slice(id);
        let value = oversize.is_none().then_some(at..values.len());
        spans.push((id_at..ids.len(), key_score(score), value, oversize));
    }
    let (ids, values) = (Bytes::from(ids), Bytes::from(values));
    Ok(spans
        .into_iter()
        .map(|(id, score, value, oversize)| Record {
            id: ids.slice(id),
            score,
            value: value.map(|v| values.slice(v)),
            oversize,
        })
        .collect())
}

fn move_dead(txn: &WriteTransaction, queue: Queue, records: &[DeadRecord]) -> Result<(), DbError> {
    remove(txn, queue, records.iter().map(|r| r.id.as_slice()))?;
    let envelopes: Vec<Vec<u8>> = records.iter().map(|r| dead_letter_envelope(queue, r)).collect();
    insert(
        txn,
        queue.dead_letter(),
        records.iter().zip(&envelopes).map(|(r, e)| (r.id.as_slice(), r.score, e.as_slice())),
    )
}

impl Store for EmbeddedStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.read_txn("ping", |txn| {
            txn.open_table(META)?;
            Ok(())
        })
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
        let upper = score_key(max_score);
        self.read_txn("read", |txn| {
            let index = txn.open_table(tables(queue).0)?;
            let range = index.range(..(upper, &[][..]))?.skip(offset).take(limit);
            collect_page(queue, range, limit.min(index.len()? as usize))
        })
    }

    fn read_above(&mut self, queue: Queue, min_score: f64, limit: usize) -> Result<Vec<Record>, StoreError> {
        check_score(&self.description, "read", "min_score", min_score)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Keys strictly above `min_score`: from the next score key on.
        let Some(lower) = score_key(min_score).checked_add(1) else {
            return Ok(Vec::new());
        };
        self.read_txn("read", |txn| {
            let index = txn.open_table(tables(queue).0)?;
            let range = index.range((lower, &[][..])..)?.take(limit);
            collect_page(queue, range, limit.min(index.len()? as usize))
        })
    }

    fn dead_letter_oversize(&mut self, queue: Queue, records: &[Record]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        self.write("dead letter too large", |txn| {
            let mut dead = Vec::with_capacity(records.len());
            {
                let (index_def, ids_def) = tables(queue);
                let index = txn.open_table(index_def)?;
                let ids = txn.open_table(ids_def)?;
                for record in records {
                    let Some(key) = ids.get(&record.id[..])?.map(|g| g.value()) else { continue };
                    let Some(value) = index.get((key, &record.id[..]))?.map(|g| g.value().to_vec()) else {
                        continue;
                    };
                    dead.push((record.id.clone(), key_score(key), value));
                }
            }
            remove(txn, queue, dead.iter().map(|(id, _, _)| &id[..]))?;
            let envelopes: Vec<Vec<u8>> =
                dead.iter().map(|(_, _, value)| oversize_envelope(queue, value)).collect();
            insert(
                txn,
                queue.dead_letter(),
                dead.iter().zip(&envelopes).map(|((id, score, _), e)| (&id[..], *score, e.as_slice())),
            )?;
            Ok(dead.len() as u64)
        })
    }

    fn oldest_score(&mut self, queue: Queue) -> Result<Option<f64>, StoreError> {
        self.read_txn("oldest score", |txn| {
            let index = txn.open_table(tables(queue).0)?;
            let first = index.first()?.map(|(key, _)| key_score(key.value().0));
            Ok(first)
        })
    }

    fn commit_aggregation(&mut self, commit: &AggregationCommit) -> Result<(), StoreError> {
        let op = "commit aggregation";
        check_score(&self.description, op, "aggregated_until", commit.aggregated_until)?;
        self.check_scores(op, commit.wrapped.iter().map(|r| r.score))?;
        self.check_scores(op, commit.dead.iter().map(|r| r.score))?;
        self.write(op, |txn| {
            insert_each(txn, &commit.outboxes, &commit.wrapped)?;
            remove(txn, Queue::RawMetrics, commit.delete_raw.iter().map(|id| &id[..]))?;
            move_dead(txn, Queue::RawMetrics, &commit.dead)?;
            txn.open_table(META)?.insert(AGGREGATED_UNTIL_KEY, commit.aggregated_until)?;
            Ok(())
        })
    }

    fn aggregated_until(&mut self) -> Result<Option<f64>, StoreError> {
        self.read_txn("read watermark", |txn| {
            Ok(txn.open_table(META)?.get(AGGREGATED_UNTIL_KEY)?.map(|g| g.value()))
        })
    }

    fn add(&mut self, queue: Queue, records: &[NewRecord]) -> Result<(), StoreError> {
        self.check_scores("add", records.iter().map(|r| r.score))?;
        if records.is_empty() {
            return Ok(());
        }
        self.write("add", |txn| {
            insert(txn, queue, records.iter().map(|r| (r.id.as_slice(), r.score, r.value.as_slice())))
        })
    }

    fn add_to_each(&mut self, queues: &[Queue], records: &[NewRecord]) -> Result<(), StoreError> {
        self.check_scores("add", records.iter().map(|r| r.score))?;
        if records.is_empty() || queues.is_empty() {
            return Ok(());
        }
        self.write("add", |txn| insert_each(txn, queues, records))
    }

    fn delete(&mut self, queue: Queue, ids: &[Bytes]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write("delete", |txn| remove(txn, queue, ids.iter().map(|id| &id[..])).map(drop))
    }

    fn dead_letter(&mut self, queue: Queue, records: &[DeadRecord]) -> Result<(), StoreError> {
        self.check_scores("dead letter", records.iter().map(|r| r.score))?;
        if records.is_empty() {
            return Ok(());
        }
        self.write("dead letter", |txn| move_dead(txn, queue, records))
    }

    fn cleanup(&mut self, queue: Queue, threshold: f64) -> Result<u64, StoreError> {
        check_score(&self.description, "cleanup", "threshold", threshold)?;
        let (index_def, ids_def) = tables(queue);
        // Keys at or below the threshold: strictly below the next score key.
        let end = score_key(threshold).checked_add(1);
        // Most ticks expire nothing: a read says so without a write transaction, whose commit
        // costs a header write and an fdatasync (14 queues at every aggregation tick).
        let expired = self.read_txn("cleanup", |txn| {
            let first = txn.open_table(index_def)?.first()?.map(|(key, _)| key.value().0);
            Ok(first.is_some_and(|key| end.is_none_or(|end| key < end)))
        })?;
        if !expired {
            return Ok(0);
        }
        self.write("cleanup", |txn| {
            let mut index = txn.open_table(index_def)?;
            let mut ids = txn.open_table(ids_def)?;
            let mut total = 0u64;
            let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
            loop {
                batch.clear();
                let range = match end {
                    Some(end) => index.range(..(end, &[][..]))?,
                    None => index.range::<(u64, &[u8])>(..)?,
                };
                for entry in range.take(CLEANUP_BATCH) {
                    let (key, _) = entry?;
                    let (score, id) = key.value();
                    batch.push((score, id.to_vec()));
                }
                for (score, id) in &batch {
                    index.remove((*score, id.as_slice()))?;
                    ids.remove(id.as_slice())?;
                }
                total += batch.len() as u64;
                if batch.len() < CLEANUP_BATCH {
                    return Ok(total);
                }
            }
        })
    }

    fn len(&mut self, queue: Queue) -> Result<u64, StoreError> {
        self.read_txn("len", |txn| Ok(txn.open_table(tables(queue).1)?.len()?))
    }

    fn put_status(&mut self, fields: &[(&str, String)]) -> Result<(), StoreError> {
        if fields.is_empty() {
            return Ok(());
        }
        // Status only: no fsync of its own while other commits are durable (module docs).
        let durable = self.last_durable.elapsed() >= STATUS_DURABLE_EVERY;
        self.write_durable("put status", durable, |txn| {
            let mut status = txn.open_table(STATUS)?;
            for (field, value) in fields {
                status.insert(*field, value.as_str())?;
            }
            Ok(())
        })
    }

    fn status(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        self.read_txn("read status", |txn| {
            let status = txn.open_table(STATUS)?;
            let mut out = Vec::new();
            for entry in status.iter()? {
                let (field, value) = entry?;
                out.push((field.value().to_string(), value.value().to_string()));
            }
            Ok(out)
        })
    }

    fn commit_link(
        &mut self,
        outboxes: &[Queue],
        records: &[NewRecord],
        device: &str,
        state: &[u8],
    ) -> Result<(), StoreError> {
        let op = "commit link";
        self.check_scores(op, records.iter().map(|r| r.score))?;
        self.write(op, |txn| {
            insert_each(txn, outboxes, records)?;
            txn.open_table(LINK_STATE)?.insert(device, state)?;
            Ok(())
        })
    }

    fn link_state(&mut self, device: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_txn("read link state", |txn| {
            Ok(txn.open_table(LINK_STATE)?.get(device)?.map(|g| g.value().to_vec()))
        })
    }

    fn link_states(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read_txn("read link states", |txn| {
            let table = txn.open_table(LINK_STATE)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (device, state) = entry?;
                out.push((device.value().to_string(), state.value().to_vec()));
            }
            Ok(out)
        })
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
        self.read_txn("scan", |txn| {
            use std::ops::Bound;
            let index = txn.open_table(tables(queue).0)?;
            let start = match after {
                Some((score, id)) => Bound::Excluded((score_key(score), id)),
                None => Bound::Unbounded,
            };
            let mut out = Vec::with_capacity(limit.min(1024));
            for entry in index.range::<(u64, &[u8])>((start, Bound::Unbounded))?.take(limit) {
                let (key, value) = entry?;
                let (score, id) = key.value();
                out.push(Record {
                    id: id.to_vec().into(),
                    score: key_score(score),
                    value: Some(value.value().to_vec().into()),
                    oversize: None,
                });
            }
            Ok(out)
        })
    }

    fn redrive(&mut self, dead: Queue, live: Queue, moves: &[DeadMove]) -> Result<u64, StoreError> {
        self.check_scores("redrive", moves.iter().filter_map(|m| m.requeue.as_ref()).map(|r| r.score))?;
        if moves.is_empty() {
            return Ok(0);
        }
        self.write("redrive", |txn| {
            let mut unchanged = Vec::with_capacity(moves.len());
            {
                let (index_def, ids_def) = tables(dead);
                let index = txn.open_table(index_def)?;
                let ids = txn.open_table(ids_def)?;
                for m in moves {
                    let Some(key) = ids.get(m.id.as_slice())?.map(|g| g.value()) else { continue };
                    let same = index
                        .get((key, m.id.as_slice()))?
                        .is_some_and(|value| value.value() == m.envelope.as_slice());
                    if same {
                        unchanged.push(m);
                    }
                }
            }
            remove(txn, dead, unchanged.iter().map(|m| m.id.as_slice()))?;
            insert(
                txn,
                live,
                unchanged
                    .iter()
                    .filter_map(|m| m.requeue.as_ref())
                    .map(|r| (r.id.as_slice(), r.score, r.value.as_slice())),
            )?;
            Ok(unchanged.len() as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableHandle;

    #[test]
    fn score_keys_order_like_floats() {
        let scores = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1.0,
            -5e-324,
            0.0,
            5e-324,
            1.0,
            1600000000.25,
            1e300,
            f64::INFINITY,
        ];
        for pair in scores.windows(2) {
            assert!(score_key(pair[0]) < score_key(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        for s in scores {
            assert_eq!(key_score(score_key(s)), s);
        }
        assert_eq!(score_key(-0.0), score_key(0.0));
    }

    #[test]
    fn redb_sources_are_recognised() {
        let registry = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/redb-2.6.4/src/db.rs";
        assert!(is_redb_source(registry));
        assert!(is_redb_source("vendor/redb/src/tree_store/btree_base.rs"));
        assert!(is_redb_source(r"C:\cargo\registry\src\redb-2.6.4\src\db.rs"));
        assert!(!is_redb_source("shell-linux/src/store/embedded.rs"));
        assert!(!is_redb_source("/root/.cargo/registry/src/x/redis-0.27.6/src/lib.rs"));
    }

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(what: &str) -> Scratch {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir =
                std::env::temp_dir().join(format!("chouette-unit-{what}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// As the Redis reader's pages: ids in one buffer, values in another, end to end (an
    /// oversize value is not copied), so a backlog leaves no small-object slabs behind.
    #[test]
    fn a_pages_ids_and_values_are_each_read_into_one_buffer() {
        let dir = Scratch::new("page");
        let mut store = EmbeddedStore::open(&dir.0.join("chouette.redb")).unwrap();
        let big = vec![b'x'; Queue::Logs.max_record_bytes() + 1];
        let values: [&[u8]; 4] = [b"first", &big, b"", b"fourth"];
        let records: Vec<NewRecord> = (0..4)
            .map(|i| NewRecord {
                id: format!("id-{i}").into_bytes(),
                score: i as f64,
                value: values[i].to_vec(),
            })
            .collect();
        store.add(Queue::Logs, &records).unwrap();
        let page = store.read_page(Queue::Logs, f64::INFINITY, 0, 10).unwrap();
        let ids: Vec<&[u8]> = page.iter().map(|r| &r.id[..]).collect();
        assert_eq!(ids, [b"id-0".as_slice(), b"id-1", b"id-2", b"id-3"]);
        assert!(ids.windows(2).all(|w| w[0].as_ptr_range().end == w[1].as_ptr()));
        assert_eq!((page[1].oversize, &page[1].value), (Some(big.len() as u64), &None));
        let loaded = [&page[0], &page[2], &page[3]].map(|r| r.value.as_deref().unwrap());
        assert_eq!(loaded, [b"first".as_slice(), b"", b"fourth"]);
        assert!(loaded.windows(2).all(|w| w[0].as_ptr_range().end == w[1].as_ptr()));
    }

    #[test]
    fn moving_aside_never_overwrites_an_earlier_copy() {
        let dir = Scratch::new("aside");
        let path = dir.0.join("chouette.redb");
        std::fs::write(&path, b"first").unwrap();
        assert_eq!(move_aside_at(&path, 1700000000).unwrap(), dir.0.join("chouette.redb.corrupt-1700000000"));
        std::fs::write(&path, b"second").unwrap();
        assert_eq!(
            move_aside_at(&path, 1700000000).unwrap(),
            dir.0.join("chouette.redb.corrupt-1700000000-2")
        );
        assert_eq!(std::fs::read(dir.0.join("chouette.redb.corrupt-1700000000")).unwrap(), b"first");
        assert_eq!(std::fs::read(dir.0.join("chouette.redb.corrupt-1700000000-2")).unwrap(), b"second");
        assert!(!path.exists());
    }

    #[test]
    fn the_header_check_reads_the_layout_redb_writes() {
        let dir = Scratch::new("header");
        let path = dir.0.join("chouette.redb");
        let mut store = EmbeddedStore::open(&path).unwrap();
        let records: Vec<NewRecord> = (0..300)
            .map(|i| NewRecord { id: i.to_string().into_bytes(), score: 1.0, value: vec![7; 500] })
            .collect();
        store.add(Queue::Logs, &records).unwrap();
        drop(store);
        let check = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            check_header(&File::open(&path).unwrap())
        };
        let bytes = std::fs::read(&path).unwrap();
        assert!(check(&bytes).is_ok());
        assert!(check(b"").is_ok(), "an empty file is a new database");
        // Exactly as long as the header says passes; one byte less does not.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 4096]);
        assert!(check(&longer).is_ok(), "a longer file is repaired by redb, not refused");
        let message = match check(&bytes[..bytes.len() - 1]) {
            Err(HeaderError::Corrupt(message)) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message,
            format!("truncated: {} bytes, its header describes {}", bytes.len() - 1, bytes.len())
        );
    }

    #[test]
    fn a_cleanup_that_expires_nothing_writes_nothing() {
        let dir = Scratch::new("cleanup");
        let path = dir.0.join("chouette.redb");
        let mut store = EmbeddedStore::open(&path).unwrap();
        let records: Vec<NewRecord> = (0..3)
            .map(|i| NewRecord {
                id: format!("id{i}").into_bytes(),
                score: 100.0 + f64::from(i),
                value: vec![1],
            })
            .collect();
        store.add(Queue::WrappedMetrics, &records).unwrap();
        let before = std::fs::read(&path).unwrap();
        // Nothing at or below 99.5, and an empty queue: no write transaction, the file unchanged
        // (a commit rewrites the header and its checksum).
        assert_eq!(store.cleanup(Queue::WrappedMetrics, 99.5).unwrap(), 0);
        assert_eq!(store.cleanup(Queue::Logs, f64::INFINITY).unwrap(), 0);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(store.cleanup(Queue::WrappedMetrics, 101.0).unwrap(), 2);
        assert_ne!(std::fs::read(&path).unwrap(), before);
        assert_eq!(store.cleanup(Queue::WrappedMetrics, f64::INFINITY).unwrap(), 1);
        assert_eq!(store.len(Queue::WrappedMetrics).unwrap(), 0);
    }

    #[test]
    fn the_status_written_without_fsync_is_persisted_when_the_store_closes() {
        let dir = Scratch::new("status");
        let path = dir.0.join("chouette.redb");
        let mut store = EmbeddedStore::open(&path).unwrap();
        let record = NewRecord { id: b"r1".to_vec(), score: 5.0, value: b"{}".to_vec() };
        store.add(Queue::WrappedMetrics, std::slice::from_ref(&record)).unwrap();
        // Just after a durable commit: the status skips its fsync.
        store.put_status(&[("last_dispatch", "metrics: 202".to_string())]).unwrap();
        assert!(store.unpersisted);
        assert_eq!(store.status().unwrap(), [("last_dispatch".to_string(), "metrics: 202".to_string())]);
        drop(store);
        let mut store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.status().unwrap(), [("last_dispatch".to_string(), "metrics: 202".to_string())]);
        assert_eq!(store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap().len(), 1);
        // Long after the last durable commit: the status is durable itself.
        store.last_durable = Instant::now() - STATUS_DURABLE_EVERY;
        store.put_status(&[("last_dispatch", "metrics: 500".to_string())]).unwrap();
        assert!(!store.unpersisted);
    }

    #[test]
    fn table_names_follow_queue_prefixes() {
        for queue in Queue::ALL {
            let (index, ids) = tables(queue);
            assert_eq!(index.name(), format!("{}.index", queue.prefix()));
            assert_eq!(ids.name(), format!("{}.ids", queue.prefix()));
        }
    }
}
