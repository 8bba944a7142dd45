//! An outbox drained with the next batch read while the current one is sent.
//!
//! [`drain_reading_ahead`] does what [`pipeline::drain`](crate::pipeline::drain) does (batches
//! oldest first, each settled by `send` and then applied to the store: delivered deleted, dead
//! moved, kept left) with one difference: while `send` posts a batch (on a scoped thread), the
//! loop reads the page after it from the store. A request to a backend and a store read then
//! overlap instead of following each other (VictoriaMetrics or Datadog answering while Redis
//! serves the next page), and nothing else changes:
//!
//! - Requests stay one at a time, in the same order, with the same payloads: `send` is the same
//!   call on the same batch. Bisection, dead-lettering and backoff happen inside it.
//! - A record is deleted only after its batch was settled and the report applied, on the loop's
//!   thread, as before. The page read ahead is only held in memory: if the batch does not settle
//!   whole (a failure, the deadline), it is dropped unsent and read again later.
//! - The page read ahead starts where the batch ends, read while every record of the batch is
//!   still queued. It is used only when the whole batch left the queue (delivered or dead), so it
//!   is then the queue's first page; a record of it that is also in the batch (the queue shifted
//!   meanwhile) is left out, so nothing is sent twice.
//!
//! At most two batches are held at once (the one being sent and the one read ahead).
//!
//! Not yet the agent's release pass: the Redis store reads ahead itself after every full page
//! (`RedisStore::read_page`) and drops that page at the next write, so in a dispatch drain,
//! where a delete follows every read, its read-ahead is never used. Here it would read a third
//! page while this drain holds two: `scripts/bench-agent.sh 300000` measured 28.8 MB of peak
//! RSS instead of 22.0 (the budget is 24). With that store read-ahead off for the outbox queues
//! (one condition in `RedisStore::read_page`), the peak stays at 22.5 MB, and 541,800 wrapped
//! points went to VictoriaMetrics at 123k points/s through this drain against 102k through
//! `pipeline::drain` (two runs each, 1 % apart).

use std::collections::HashSet;
use std::time::Instant;

use crate::pipeline::{apply_report, DrainResult};
use crate::store::{Queue, Record, Store, StoreError};

use super::{Outcome, Report};

/// Drains `queue` through `send` in batches of `batch`, oldest first, reading each next batch
/// while the current one is sent (see the module docs), until the queue is empty, the sender
/// keeps something after a failure (backing off), or `deadline` passes
/// ([`DrainResult::more`]). `send` should itself stop sending at `deadline` (the dispatcher's
/// `send_until`). If no thread can be started, `send` runs on the caller's thread, without the
/// overlap.
pub fn drain_reading_ahead<F>(
    store: &mut dyn Store,
    queue: Queue,
    batch: usize,
    deadline: Instant,
    mut send: F,
) -> Result<DrainResult, StoreError>
where
    F: FnMut(&[Record]) -> Report + Send,
{
    let batch = batch.max(1);
    let mut result = DrainResult::default();
    let mut ahead: Option<Vec<Record>> = None;
    loop {
        if Instant::now() >= deadline {
            result.more = true;
            break;
        }
        let records = match ahead.take() {
            Some(records) if !records.is_empty() => records,
            _ => store.read(queue, f64::INFINITY, batch)?,
        };
        if records.is_empty() {
            break;
        }
        let (report, next) = send_reading_ahead(store, queue, batch, &records, &mut send);
        let (delivered, dead, kept) = apply_report(store, queue, &records, &report)?;
        result.delivered += delivered as u64;
        result.dead += dead as u64;
        result.points += report.delivered_points;
        result.bytes += report.delivered_bytes;
        result.retried += report.retried;
        result.deferred += report.deferred;
        result.requests += u64::from(report.requests);
        if report.last_status.is_some() {
            result.last_status = report.last_status.clone();
        }
        match report.outcome {
            Outcome::Settled if delivered + dead > 0 => {}
            Outcome::Settled => break, // nothing settled, nothing failed: do not spin
            Outcome::OutOfTime => {
                result.more = true;
                break;
            }
            Outcome::Stopped | Outcome::Refused { .. } => {
                result.backing_off = true;
                break;
            }
        }
        // The page read ahead is the queue's head only if the whole batch left the queue.
        if kept == 0 {
            ahead = next.map(|page| without(page, &records));
        }
    }
    Ok(result)
}

/// `send(records)` on a scoped thread while the page after `records` is read on this one (only
/// after a full page: a short one is most likely the last). The read's error, if any, is
/// dropped: the next plain read meets it again.
fn send_reading_ahead<F>(
    store: &mut dyn Store,
    queue: Queue,
    batch: usize,
    records: &[Record],
    send: &mut F,
) -> (Report, Option<Vec<Record>>)
where
    F: FnMut(&[Record]) -> Report + Send,
{
    if records.len() < batch {
        return (send(records), None);
    }
    let overlapped = std::thread::scope(|scope| {
        let sender =
            std::thread::Builder::new().name("dispatch-send".into()).spawn_scoped(scope, || send(records));
        match sender {
            Ok(sender) => {
                let next = store.read_page(queue, f64::INFINITY, records.len(), batch).ok();
                match sender.join() {
                    Ok(report) => Ok((report, next)),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Err(error) => Err(error),
        }
    });
    overlapped.unwrap_or_else(|error| {
        log::debug!("error={error} : cannot start a thread to send; sending without reading ahead");
        (send(records), None)
    })
}

/// `page` without the records whose id is in `sent`. Both stores order a queue by score, then
/// id: a page that starts after `sent`'s last record (the usual case) is returned as it is,
/// without hashing its ids.
fn without(mut page: Vec<Record>, sent: &[Record]) -> Vec<Record> {
    let Some(last) = sent.last() else { return page };
    let after = |r: &Record| r.score > last.score || (r.score == last.score && r.id > last.id);
    if page.iter().all(after) {
        return page;
    }
    let ids: HashSet<&[u8]> = sent.iter().map(|r| r.id.as_slice()).collect();
    page.retain(|r| !ids.contains(r.id.as_slice()));
    page
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dispatch::Disposition;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::NewRecord;

    struct TempStore(std::path::PathBuf, EmbeddedStore);

    impl Drop for TempStore {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An embedded store with `n` log records `r0000`.. scored 0, 1, ...
    fn store_with(n: usize) -> TempStore {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("chouette-ahead-{}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut store = EmbeddedStore::open(&dir.join("chouette.redb")).expect("open");
        add(&mut store, 0..n);
        TempStore(dir, store)
    }

    fn add(store: &mut EmbeddedStore, range: std::ops::Range<usize>) {
        let records: Vec<NewRecord> = range
            .map(|i| NewRecord {
                id: format!("r{i:04}").into_bytes(),
                score: i as f64,
                value: b"{}".to_vec(),
            })
            .collect();
        store.add(Queue::Logs, &records).expect("add");
    }

    fn report(records: &[Record], each: impl Fn(&Record) -> Disposition, outcome: Outcome) -> Report {
        let dispositions: Vec<Disposition> = records.iter().map(each).collect();
        let kept = dispositions.iter().filter(|d| **d == Disposition::Kept).count() as u64;
        let failed = matches!(outcome, Outcome::Stopped | Outcome::Refused { .. });
        Report {
            dispositions,
            requests: 1,
            retried: if failed { kept } else { 0 },
            deferred: if failed { 0 } else { kept },
            outcome,
            ..Report::default()
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn ids(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| String::from_utf8_lossy(&r.id).into_owned()).collect()
    }

    fn queued(store: &mut EmbeddedStore) -> Vec<String> {
        ids(&store.read(Queue::Logs, f64::INFINITY, 10_000).expect("read"))
    }

    #[test]
    fn every_record_is_sent_once_in_order_and_deleted() {
        let mut s = store_with(25);
        let mut sent = Vec::new();
        let result = drain_reading_ahead(&mut s.1, Queue::Logs, 10, far(), |records| {
            sent.push(ids(records));
            report(records, |_| Disposition::Delivered, Outcome::Settled)
        })
        .expect("drain");
        let expected: Vec<Vec<String>> =
            [0..10, 10..20, 20..25].into_iter().map(|r| r.map(|i| format!("r{i:04}")).collect()).collect();
        assert_eq!(sent, expected);
        assert_eq!((result.delivered, result.dead, result.requests), (25, 0, 3));
        assert!(!result.more && !result.backing_off);
        assert!(queued(&mut s.1).is_empty());
    }

    #[test]
    fn a_failure_keeps_the_batch_and_drops_the_page_read_ahead() {
        let mut s = store_with(30);
        let mut calls = 0;
        let result = drain_reading_ahead(&mut s.1, Queue::Logs, 10, far(), |records| {
            calls += 1;
            if calls == 2 {
                // The second batch: 3 delivered, then the backend fails; the rest kept.
                report(
                    records,
                    |r| if r.score < 13.0 { Disposition::Delivered } else { Disposition::Kept },
                    Outcome::Stopped,
                )
            } else {
                report(records, |_| Disposition::Delivered, Outcome::Settled)
            }
        })
        .expect("drain");
        assert_eq!(calls, 2, "no batch sent after the failure");
        assert_eq!((result.delivered, result.retried), (13, 7));
        assert!(result.backing_off);
        // Nothing lost: the kept records and the page read ahead are all still queued.
        let expected: Vec<String> = (13..30).map(|i| format!("r{i:04}")).collect();
        assert_eq!(queued(&mut s.1), expected);
    }

    #[test]
    fn dead_records_leave_the_queue_and_the_next_page_follows() {
        let mut s = store_with(20);
        let mut sent = Vec::new();
        let result = drain_reading_ahead(&mut s.1, Queue::Logs, 10, far(), |records| {
            sent.extend(ids(records));
            report(
                records,
                |r| {
                    if r.score == 4.0 {
                        Disposition::Dead { reason: "http_400".into() }
                    } else {
                        Disposition::Delivered
                    }
                },
                Outcome::Settled,
            )
        })
        .expect("drain");
        assert_eq!(sent, (0..20).map(|i| format!("r{i:04}")).collect::<Vec<_>>());
        assert_eq!((result.delivered, result.dead), (19, 1));
        assert!(queued(&mut s.1).is_empty());
        let dead = s.1.read(Queue::Logs.dead_letter(), f64::INFINITY, 10).expect("dead");
        assert_eq!(ids(&dead), vec!["r0004"]);
    }

    #[test]
    fn a_page_read_ahead_that_overlaps_the_batch_loses_the_overlap() {
        // A record queued older than all others while the batch was sent (a requeued dead
        // letter) shifts the queue: the page read ahead then starts inside the batch.
        let record = |i: usize| Record {
            id: format!("r{i:04}").into_bytes(),
            score: i as f64,
            value: None,
            oversize: None,
        };
        let batch: Vec<Record> = (0..10).map(record).collect();
        let page: Vec<Record> = (9..19).map(record).collect();
        assert_eq!(ids(&without(page, &batch)), (10..19).map(|i| format!("r{i:04}")).collect::<Vec<_>>());
        // Out of order (a store that does not sort ties by id): still found by id.
        let page: Vec<Record> = [12, 3, 11].into_iter().map(record).collect();
        assert_eq!(ids(&without(page, &batch)), vec!["r0012", "r0011"]);
        // The usual case: the page follows the batch, nothing removed.
        let page: Vec<Record> = (10..20).map(record).collect();
        assert_eq!(without(page, &batch).len(), 10);
    }

    #[test]
    fn a_deadline_passed_while_sending_stops_and_keeps_the_rest() {
        let mut s = store_with(30);
        let deadline = Instant::now() + Duration::from_millis(50);
        let mut calls = 0;
        let result = drain_reading_ahead(&mut s.1, Queue::Logs, 10, deadline, |records| {
            calls += 1;
            // A slow backend: the answer comes after the deadline.
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            report(records, |_| Disposition::Delivered, Outcome::Settled)
        })
        .expect("drain");
        assert_eq!(calls, 1);
        assert!(result.more);
        assert_eq!(result.delivered, 10);
        // The page read ahead meanwhile was not sent: still queued.
        assert_eq!(queued(&mut s.1), (10..30).map(|i| format!("r{i:04}")).collect::<Vec<_>>());
    }
}
