//! The embedded store: the same queues in one redb file (pure Rust, crash-safe), used when no
//! Redis is configured so the agent runs on a machine with nothing installed.
//!
//! Every mutation is one redb write transaction, committed durably (fsync) before the call
//! returns: after a crash, a step is either wholly applied or not at all.
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
//! Plus table `chouette:agent:meta` (`&str` → `f64`: the row `chouette:agent:aggregated_until`)
//! and table `chouette:agent:status` (`&str` → `&str`).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{
    check_score, dead_letter_envelope, AggregationCommit, DeadMove, DeadRecord, NewRecord, Queue, Record,
    Store, StoreError, AGGREGATED_UNTIL_KEY, STATUS_KEY,
};

type Index = TableDefinition<'static, (u64, &'static [u8]), &'static [u8]>;
type Ids = TableDefinition<'static, &'static [u8], u64>;

const META: TableDefinition<'static, &str, f64> = TableDefinition::new("chouette:agent:meta");
const STATUS: TableDefinition<'static, &str, &str> = TableDefinition::new(STATUS_KEY);

/// How many entries cleanup collects before deleting them (bounds its memory).
const CLEANUP_BATCH: usize = 10_000;

/// A redb error, boxed (redb's own is 160 bytes, too large to return by value everywhere).
#[derive(Debug)]
struct DbError(Box<redb::Error>);

impl<E: Into<redb::Error>> From<E> for DbError {
    fn from(e: E) -> Self {
        DbError(Box::new(e.into()))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The two tables of a queue.
const fn tables(queue: Queue) -> (Index, Ids) {
    match queue {
        Queue::RawMetrics => (
            TableDefinition::new("chouette:metrics:raw.index"),
            TableDefinition::new("chouette:metrics:raw.ids"),
        ),
        Queue::WrappedMetrics => (
            TableDefinition::new("chouette:metrics:wrapped.index"),
            TableDefinition::new("chouette:metrics:wrapped.ids"),
        ),
        Queue::Logs => (
            TableDefinition::new("chouette:logs:wrapped.index"),
            TableDefinition::new("chouette:logs:wrapped.ids"),
        ),
        Queue::DeadRawMetrics => (
            TableDefinition::new("chouette:metrics:raw.dead.index"),
            TableDefinition::new("chouette:metrics:raw.dead.ids"),
        ),
        Queue::DeadWrappedMetrics => (
            TableDefinition::new("chouette:metrics:wrapped.dead.index"),
            TableDefinition::new("chouette:metrics:wrapped.dead.ids"),
        ),
        Queue::DeadLogs => (
            TableDefinition::new("chouette:logs:wrapped.dead.index"),
            TableDefinition::new("chouette:logs:wrapped.dead.ids"),
        ),
    }
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
    db: Database,
    path: PathBuf,
    description: String,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish()
    }
}

impl EmbeddedStore {
    /// Opens (or creates, with its parent directories) the database at `path`. Fails with
    /// [`StoreError::Failed`] naming the path if it cannot be created or is not a redb file, or
    /// if another process holds it open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let description = format!("embedded:{}", path.display());
        let failed = |op, detail: String| StoreError::Failed { store: description.clone(), op, detail };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| failed("open", format!("cannot create directory {}: {e}", parent.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| failed("open", format!("cannot open {}: {e}", path.display())))?;
        let store = EmbeddedStore { db, path: path.to_path_buf(), description };
        store.write("create tables", |txn| {
            for queue in Queue::ALL {
                let (index, ids) = tables(queue);
                txn.open_table(index)?;
                txn.open_table(ids)?;
            }
            txn.open_table(META)?;
            txn.open_table(STATUS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, op: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed { store: self.description.clone(), op, detail: e.to_string() }
    }

    /// Runs `f` in one write transaction and commits it; any error aborts it.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let run = || {
            let txn = self.db.begin_write()?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok::<T, DbError>(out)
        };
        run().map_err(|e| self.failed(op, e))
    }

    /// Runs `f` in a read transaction.
    fn read_txn<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let run = || f(&self.db.begin_read()?);
        run().map_err(|e| self.failed(op, e))
    }

    fn check_scores(
        &self,
        op: &'static str,
        mut scores: impl Iterator<Item = f64>,
    ) -> Result<(), StoreError> {
        scores.try_for_each(|score| check_score(&self.description, op, "a record score", score))
    }
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
            let mut out = Vec::with_capacity(limit.min(index.len()? as usize));
            for entry in index.range(..(upper, &[][..]))?.skip(offset).take(limit) {
                let (key, value) = entry?;
                let (score, id) = key.value();
                out.push(Record {
                    id: id.to_vec(),
                    score: key_score(score),
                    value: Some(value.value().to_vec()),
                });
            }
            Ok(out)
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
            insert(
                txn,
                Queue::WrappedMetrics,
                commit.wrapped.iter().map(|r| (r.id.as_slice(), r.score, r.value.as_slice())),
            )?;
            remove(txn, Queue::RawMetrics, commit.delete_raw.iter().map(Vec::as_slice))?;
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

    fn delete(&mut self, queue: Queue, ids: &[Vec<u8>]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write("delete", |txn| remove(txn, queue, ids.iter().map(Vec::as_slice)).map(drop))
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
        self.write("put status", |txn| {
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
                    id: id.to_vec(),
                    score: key_score(score),
                    value: Some(value.value().to_vec()),
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
    fn table_names_follow_queue_prefixes() {
        for queue in Queue::ALL {
            let (index, ids) = tables(queue);
            assert_eq!(index.name(), format!("{}.index", queue.prefix()));
            assert_eq!(ids.name(), format!("{}.ids", queue.prefix()));
        }
    }
}
