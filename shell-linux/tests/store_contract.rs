//! The `Store` contract, run against both implementations: Redis (a real `redis-server` on a free
//! loopback port) and the embedded redb store (a temporary directory). Redis-only cases
//! (orphans, the original client's layout, reconnection, timeouts) follow.

use std::time::{Duration, Instant};

use chouette_agent::store::embedded::EmbeddedStore;
use chouette_agent::store::redis::{RedisStore, RedisTimeouts};
use chouette_agent::store::{
    dead_letter_envelope, AggregationCommit, Bytes, DeadMove, DeadRecord, NewRecord, Queue, Record, Store,
    StoreError,
};
use chouette_tests::TempDir;
use redis::Commands;

fn rec(id: &str, score: f64, value: &str) -> NewRecord {
    NewRecord { id: id.as_bytes().to_vec(), score, value: value.as_bytes().to_vec() }
}

fn ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8_lossy(&r.id).into_owned()).collect()
}

fn dead(id: &str, score: f64, value: &str, reason: &str) -> DeadRecord {
    DeadRecord {
        id: id.as_bytes().to_vec(),
        score,
        value: value.as_bytes().to_vec(),
        reason: reason.to_string(),
    }
}

fn redis_store() -> (RedisStore, chouette_tests::RedisServer) {
    let server = chouette_tests::RedisServer::start();
    let store = RedisStore::connect(&server.url(), RedisTimeouts::default()).expect("connect");
    (store, server)
}

fn embedded_store() -> (EmbeddedStore, TempDir) {
    let dir = TempDir::new("store");
    // A nested path: open creates the parent directories.
    let store = EmbeddedStore::open(&dir.0.join("state").join("chouette.redb")).expect("open");
    (store, dir)
}

/// The contract, one function per case, each on a fresh store.
mod contract {
    use super::*;

    pub fn read_orders_by_score_then_id(store: &mut dyn Store) {
        assert!(store.read(Queue::RawMetrics, f64::INFINITY, 10).unwrap().is_empty());
        store
            .add(
                Queue::RawMetrics,
                &[
                    rec("c", 3.0, "v3"),
                    rec("b", 1.0, "v1b"),
                    rec("z", 2.0, "v2"),
                    rec("a", 1.0, "v1a"),
                    rec("n", -1.5, "neg"),
                    rec("zero", 0.0, "zero"),
                ],
            )
            .unwrap();
        let all = store.read(Queue::RawMetrics, f64::INFINITY, 100).unwrap();
        assert_eq!(ids(&all), ["n", "zero", "a", "b", "z", "c"]);
        assert_eq!(all[0].score, -1.5);
        assert_eq!(all[0].value.as_deref(), Some(&b"neg"[..]));
        assert_eq!(all[2].value.as_deref(), Some(&b"v1a"[..]));
        // Other queues are separate.
        assert!(store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap().is_empty());
        assert_eq!(store.oldest_score(Queue::RawMetrics).unwrap(), Some(-1.5));
        assert_eq!(store.oldest_score(Queue::Logs).unwrap(), None);
    }

    pub fn max_score_is_exclusive_and_limit_bounds(store: &mut dyn Store) {
        let records: Vec<NewRecord> = (0..10).map(|i| rec(&format!("id{i}"), f64::from(i), "{}")).collect();
        store.add(Queue::RawMetrics, &records).unwrap();
        assert_eq!(ids(&store.read(Queue::RawMetrics, 3.0, 100).unwrap()), ["id0", "id1", "id2"]);
        assert_eq!(
            ids(&store.read(Queue::RawMetrics, 3.0000001, 100).unwrap()),
            ["id0", "id1", "id2", "id3"]
        );
        assert_eq!(ids(&store.read(Queue::RawMetrics, 100.0, 2).unwrap()), ["id0", "id1"]);
        assert!(store.read(Queue::RawMetrics, 100.0, 0).unwrap().is_empty());
        assert!(store.read(Queue::RawMetrics, 0.0, 10).unwrap().is_empty());
        assert!(store.read(Queue::RawMetrics, f64::NEG_INFINITY, 10).unwrap().is_empty());
    }

    pub fn read_page_skips_an_offset(store: &mut dyn Store) {
        let records: Vec<NewRecord> = (0..10).map(|i| rec(&format!("id{i}"), f64::from(i), "{}")).collect();
        store.add(Queue::RawMetrics, &records).unwrap();
        assert_eq!(ids(&store.read_page(Queue::RawMetrics, 8.0, 3, 2).unwrap()), ["id3", "id4"]);
        assert_eq!(ids(&store.read_page(Queue::RawMetrics, 8.0, 6, 10).unwrap()), ["id6", "id7"]);
        assert!(store.read_page(Queue::RawMetrics, 8.0, 8, 10).unwrap().is_empty());
    }

    pub fn add_to_each_fills_every_outbox(store: &mut dyn Store) {
        let points = [rec("p1", 1.0, "one"), rec("p2", 2.0, "two")];
        store.add_to_each(&[Queue::WrappedMetrics, Queue::OpentsdbMetrics], &points).unwrap();
        for queue in [Queue::WrappedMetrics, Queue::OpentsdbMetrics] {
            assert_eq!(ids(&store.read(queue, f64::INFINITY, 10).unwrap()), ["p1", "p2"], "{queue}");
        }
        assert_eq!(store.len(Queue::InfluxMetrics).unwrap(), 0);
        store.add_to_each(&[], &points).unwrap();
        store.add_to_each(&[Queue::InfluxMetrics], &[]).unwrap();
        assert_eq!(store.len(Queue::InfluxMetrics).unwrap(), 0);
    }

    pub fn add_replaces_an_existing_id(store: &mut dyn Store) {
        store.add(Queue::Logs, &[rec("x", 5.0, "old"), rec("y", 6.0, "y")]).unwrap();
        store.add(Queue::Logs, &[rec("x", 7.0, "new")]).unwrap();
        assert_eq!(store.len(Queue::Logs).unwrap(), 2);
        let all = store.read(Queue::Logs, f64::INFINITY, 10).unwrap();
        assert_eq!(ids(&all), ["y", "x"]);
        assert_eq!(all[1].value.as_deref(), Some(&b"new"[..]));
        // Empty calls are no-ops.
        store.add(Queue::Logs, &[]).unwrap();
        store.delete(Queue::Logs, &[]).unwrap();
        store.dead_letter(Queue::Logs, &[]).unwrap();
    }

    pub fn delete_removes_ids(store: &mut dyn Store) {
        store
            .add(Queue::WrappedMetrics, &[rec("a", 1.0, "a"), rec("b", 2.0, "b"), rec("c", 3.0, "c")])
            .unwrap();
        store
            .delete(
                Queue::WrappedMetrics,
                &[Bytes::from_static(b"a"), Bytes::from_static(b"c"), Bytes::from_static(b"missing")],
            )
            .unwrap();
        assert_eq!(ids(&store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap()), ["b"]);
        assert_eq!(store.len(Queue::WrappedMetrics).unwrap(), 1);
    }

    pub fn commit_aggregation_applies_everything(store: &mut dyn Store) {
        assert_eq!(store.aggregated_until().unwrap(), None);
        let raw: Vec<NewRecord> =
            (1..=5).map(|i| rec(&format!("r{i}"), f64::from(i), &format!("raw{i}"))).collect();
        store.add(Queue::RawMetrics, &raw).unwrap();
        let commit = AggregationCommit {
            wrapped: vec![rec("w1", 0.0, "wrapped1"), rec("w2", 10.0, "wrapped2")],
            outboxes: vec![Queue::WrappedMetrics, Queue::InfluxMetrics, Queue::OpentsdbMetrics],
            delete_raw: vec![Bytes::from_static(b"r1"), Bytes::from_static(b"r2")],
            dead: vec![dead("r3", 3.0, "raw3", "not_json")],
            aggregated_until: 3.5,
        };
        store.commit_aggregation(&commit).unwrap();
        assert_eq!(ids(&store.read(Queue::RawMetrics, f64::INFINITY, 10).unwrap()), ["r4", "r5"]);
        let wrapped = store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap();
        assert_eq!(ids(&wrapped), ["w1", "w2"]);
        assert_eq!(wrapped[1].value.as_deref(), Some(&b"wrapped2"[..]));
        // Every outbox got the same points in the same commit.
        for outbox in [Queue::InfluxMetrics, Queue::OpentsdbMetrics] {
            assert_eq!(store.read(outbox, f64::INFINITY, 10).unwrap(), wrapped, "{outbox}");
        }
        assert_eq!(store.len(Queue::InfluxMetrics).unwrap(), 2);
        let dead_raw = store.read(Queue::DeadRawMetrics, f64::INFINITY, 10).unwrap();
        assert_eq!(ids(&dead_raw), ["r3"]);
        assert_eq!(dead_raw[0].score, 3.0);
        assert_eq!(
            dead_raw[0].value.as_deref(),
            Some(&br#"{"reason": "not_json", "queue": "chouette:metrics:raw", "value": "raw3"}"#[..])
        );
        assert_eq!(store.aggregated_until().unwrap(), Some(3.5));
        assert_eq!(store.len(Queue::RawMetrics).unwrap(), 2);

        // A commit with only a watermark moves it.
        store
            .commit_aggregation(&AggregationCommit { aggregated_until: -2.25, ..Default::default() })
            .unwrap();
        assert_eq!(store.aggregated_until().unwrap(), Some(-2.25));
    }

    pub fn dead_letter_moves_with_envelope(store: &mut dyn Store) {
        store.add(Queue::Logs, &[rec("l1", 1.0, r#"{"msg": "a \"b\""}"#), rec("l2", 2.0, "ok")]).unwrap();
        let refused = dead("l1", 1.0, r#"{"msg": "a \"b\""}"#, "http_400");
        store.dead_letter(Queue::Logs, std::slice::from_ref(&refused)).unwrap();
        assert_eq!(ids(&store.read(Queue::Logs, f64::INFINITY, 10).unwrap()), ["l2"]);
        let dead_logs = store.read(Queue::DeadLogs, f64::INFINITY, 10).unwrap();
        assert_eq!(ids(&dead_logs), ["l1"]);
        assert_eq!(dead_logs[0].score, 1.0);
        let envelope = dead_logs[0].value.clone().unwrap();
        assert_eq!(envelope, dead_letter_envelope(Queue::Logs, &refused));
        assert_eq!(
            String::from_utf8(envelope.to_vec()).unwrap(),
            r#"{"reason": "http_400", "queue": "chouette:logs:wrapped", "value": "{\"msg\": \"a \\\"b\\\"\"}"}"#
        );
        // An orphan id (no value) is dead-lettered with an empty value.
        store.dead_letter(Queue::Logs, &[dead("l2", 2.0, "", "orphan")]).unwrap();
        assert_eq!(store.len(Queue::Logs).unwrap(), 0);
        assert_eq!(store.len(Queue::DeadLogs).unwrap(), 2);
    }

    pub fn cleanup_removes_at_or_below_threshold(store: &mut dyn Store) {
        let records = [
            rec("neg", -5.0, "a"),
            rec("zero", 0.0, "b"),
            rec("five", 5.0, "c"),
            rec("ten", 10.0, "d"),
            rec("eleven", 11.0, "e"),
            rec("future", 1e12, "f"),
        ];
        store.add(Queue::WrappedMetrics, &records).unwrap();
        assert_eq!(store.cleanup(Queue::WrappedMetrics, 10.0).unwrap(), 4);
        assert_eq!(ids(&store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap()), ["eleven", "future"]);
        assert_eq!(store.len(Queue::WrappedMetrics).unwrap(), 2);
        assert_eq!(store.cleanup(Queue::WrappedMetrics, 10.0).unwrap(), 0);
        assert_eq!(store.cleanup(Queue::Logs, 10.0).unwrap(), 0);
    }

    pub fn cleanup_loops_over_batches(store: &mut dyn Store) {
        let records: Vec<NewRecord> =
            (0..25_000).map(|i| rec(&format!("{i:08}"), f64::from(i % 1000), "{}")).collect();
        store.add(Queue::RawMetrics, &records).unwrap();
        store.add(Queue::RawMetrics, &[rec("keep", 5000.0, "{}")]).unwrap();
        assert_eq!(store.cleanup(Queue::RawMetrics, 999.0).unwrap(), 25_000);
        assert_eq!(ids(&store.read(Queue::RawMetrics, f64::INFINITY, 10).unwrap()), ["keep"]);
    }

    pub fn status_round_trips(store: &mut dyn Store) {
        assert!(store.status().unwrap().is_empty());
        store.put_status(&[("started", "1700000000".to_string()), ("version", "0.1.0".to_string())]).unwrap();
        store.put_status(&[("started", "1700000001".to_string())]).unwrap();
        store.put_status(&[]).unwrap();
        assert_eq!(
            store.status().unwrap(),
            [("started".to_string(), "1700000001".to_string()), ("version".to_string(), "0.1.0".to_string())]
        );
    }

    pub fn large_commit(store: &mut dyn Store) {
        let raw: Vec<NewRecord> = (0..50_000)
            .map(|i| {
                rec(&format!("00000000-0000-4000-8000-{i:012}"), 1_700_000_000.0 + f64::from(i) / 100.0, "{}")
            })
            .collect();
        store.add(Queue::RawMetrics, &raw).unwrap();
        assert_eq!(store.len(Queue::RawMetrics).unwrap(), 50_000);
        let wrapped: Vec<NewRecord> =
            (0..20_000).map(|i| rec(&format!("w{i}"), f64::from(i), "{}")).collect();
        let commit = AggregationCommit {
            wrapped,
            outboxes: vec![Queue::WrappedMetrics],
            delete_raw: raw[..49_000].iter().map(|r| r.id.clone().into()).collect(),
            dead: raw[49_000..]
                .iter()
                .map(|r| dead(std::str::from_utf8(&r.id).unwrap(), r.score, "{}", "x"))
                .collect(),
            aggregated_until: 1_800_000_000.0,
        };
        store.commit_aggregation(&commit).unwrap();
        assert_eq!(store.len(Queue::RawMetrics).unwrap(), 0);
        assert_eq!(store.len(Queue::DeadRawMetrics).unwrap(), 1_000);
        assert_eq!(store.len(Queue::WrappedMetrics).unwrap(), 20_000);
        assert_eq!(store.aggregated_until().unwrap(), Some(1_800_000_000.0));
    }

    pub fn scan_pages_by_cursor(store: &mut dyn Store) {
        assert!(store.scan(Queue::DeadLogs, None, 10).unwrap().is_empty());
        // 300 records sharing one score (a bucket's wrapped points do), around two others.
        let mut records: Vec<NewRecord> =
            (0..300).map(|i| rec(&format!("t{i:03}"), 5.0, &format!("v{i}"))).collect();
        records.push(rec("first", -1.0, "f"));
        records.push(rec("last", 6.0, "l"));
        store.add(Queue::DeadLogs, &records).unwrap();
        let mut want = vec!["first".to_string()];
        want.extend((0..300).map(|i| format!("t{i:03}")));
        want.push("last".into());
        // Read only (a list), then reading while deleting (a requeue).
        let mut listed: Vec<Record> = Vec::new();
        loop {
            let after = listed.last().map(|r| (r.score, &r.id[..]));
            let page = store.scan(Queue::DeadLogs, after, 7).unwrap();
            if page.is_empty() {
                break;
            }
            listed.extend(page);
        }
        assert_eq!(ids(&listed), want);
        let mut seen = Vec::new();
        let mut after: Option<(f64, Vec<u8>)> = None;
        loop {
            let page =
                store.scan(Queue::DeadLogs, after.as_ref().map(|(s, id)| (*s, id.as_slice())), 7).unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            after = Some((last.score, last.id.to_vec()));
            // Removing what was read (as a requeue does) does not shift the next page.
            let odd: Vec<Bytes> = page.iter().step_by(2).map(|r| r.id.clone()).collect();
            store.delete(Queue::DeadLogs, &odd).unwrap();
            seen.extend(page);
        }
        assert_eq!(ids(&seen), want);
        assert_eq!(seen[1].value.as_deref(), Some(&b"v0"[..]));
        assert_eq!(seen[301].score, 6.0);
        // After a cursor that is not in the queue (requeued meanwhile).
        store.add(Queue::Logs, &[rec("x1", 5.0, "1"), rec("x2", 5.0, "2"), rec("x3", 5.0, "3")]).unwrap();
        assert_eq!(ids(&store.scan(Queue::Logs, Some((5.0, b"x1a")), 10).unwrap()), ["x2", "x3"]);
        assert_eq!(ids(&store.scan(Queue::Logs, Some((4.0, b"zzz")), 1).unwrap()), ["x1"]);
        assert!(store.scan(Queue::Logs, Some((5.0, b"x3")), 10).unwrap().is_empty());
    }

    pub fn redrive_moves_only_unchanged_records(store: &mut dyn Store) {
        store
            .add(Queue::WrappedMetrics, &[rec("a", 1.5, "A"), rec("b", 2.5, "B\u{e9}"), rec("c", 3.5, "C")])
            .unwrap();
        let refused: Vec<DeadRecord> = [("a", 1.5, "A"), ("b", 2.5, "B\u{e9}"), ("c", 3.5, "C")]
            .iter()
            .map(|(id, score, value)| dead(id, *score, value, "http_400"))
            .collect();
        store.dead_letter(Queue::WrappedMetrics, &refused).unwrap();
        let read = store.scan(Queue::DeadWrappedMetrics, None, 10).unwrap();
        assert_eq!(ids(&read), ["a", "b", "c"]);
        let moves: Vec<DeadMove> = read
            .iter()
            .map(|r| DeadMove {
                id: r.id.to_vec(),
                envelope: r.value.as_deref().unwrap().to_vec(),
                requeue: Some(NewRecord {
                    id: r.id.to_vec(),
                    score: r.score,
                    value: format!("back-{}", String::from_utf8_lossy(&r.id)).into_bytes(),
                }),
            })
            .collect();
        // "c" changed since it was read (dead-lettered again with another reason): not moved.
        store.dead_letter(Queue::WrappedMetrics, &[dead("c", 3.5, "C", "other")]).unwrap();
        // A move of an id that is no longer there is skipped too.
        let gone =
            DeadMove { id: b"gone".to_vec(), envelope: b"x".to_vec(), requeue: Some(rec("gone", 1.0, "g")) };
        let mut all = moves.clone();
        all.push(gone);
        assert_eq!(store.redrive(Queue::DeadWrappedMetrics, Queue::WrappedMetrics, &all).unwrap(), 2);
        let live = store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap();
        assert_eq!(
            live,
            [
                Record::new(b"a".to_vec(), 1.5, b"back-a".to_vec()),
                Record::new(b"b".to_vec(), 2.5, b"back-b".to_vec()),
            ]
        );
        assert_eq!(ids(&store.read(Queue::DeadWrappedMetrics, f64::INFINITY, 10).unwrap()), ["c"]);
        // Moving again moves nothing (no duplicate).
        assert_eq!(store.redrive(Queue::DeadWrappedMetrics, Queue::WrappedMetrics, &moves).unwrap(), 0);
        assert_eq!(store.len(Queue::WrappedMetrics).unwrap(), 2);
        // A purge: removal only.
        let c = store.scan(Queue::DeadWrappedMetrics, None, 10).unwrap().remove(0);
        let purge = DeadMove { id: c.id.to_vec(), envelope: c.value.unwrap().to_vec(), requeue: None };
        assert_eq!(store.redrive(Queue::DeadWrappedMetrics, Queue::WrappedMetrics, &[purge]).unwrap(), 1);
        assert_eq!(store.len(Queue::DeadWrappedMetrics).unwrap(), 0);
        assert_eq!(store.len(Queue::WrappedMetrics).unwrap(), 2);
        assert_eq!(store.redrive(Queue::DeadWrappedMetrics, Queue::WrappedMetrics, &[]).unwrap(), 0);
    }

    pub fn commit_link_lands_points_and_state_together(store: &mut dyn Store) {
        assert_eq!(store.link_state("unix:/tmp/mcu").unwrap(), None);
        assert!(store.link_states().unwrap().is_empty());
        let points = [rec("p1", 1.0, "one"), rec("p2", 2.0, "two")];
        let outboxes = [Queue::WrappedMetrics, Queue::OpentsdbMetrics];
        // The state is opaque bytes, any of them.
        let state: Vec<u8> = (0..=255).collect();
        store.commit_link(&outboxes, &points, "unix:/tmp/mcu", &state).unwrap();
        for queue in outboxes {
            assert_eq!(ids(&store.read(queue, f64::INFINITY, 10).unwrap()), ["p1", "p2"], "{queue}");
        }
        assert_eq!(store.len(Queue::InfluxMetrics).unwrap(), 0);
        assert_eq!(store.link_state("unix:/tmp/mcu").unwrap(), Some(state.clone()));
        // A second device; the first one's state is replaced by its next commit.
        store.commit_link(&outboxes, &[rec("p3", 3.0, "three")], "/dev/ttyUSB0", b"boot7:seq1").unwrap();
        store.commit_link(&outboxes, &[], "unix:/tmp/mcu", b"boot1:seq9").unwrap();
        assert_eq!(store.link_state("unix:/tmp/mcu").unwrap().as_deref(), Some(&b"boot1:seq9"[..]));
        assert_eq!(
            store.link_states().unwrap(),
            [
                ("/dev/ttyUSB0".to_string(), b"boot7:seq1".to_vec()),
                ("unix:/tmp/mcu".to_string(), b"boot1:seq9".to_vec()),
            ]
        );
        assert_eq!(ids(&store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap()), ["p1", "p2", "p3"]);
        assert_eq!(store.link_state("/dev/ttyUSB1").unwrap(), None);
    }

    pub fn commit_link_refused_writes_nothing(store: &mut dyn Store) {
        store.commit_link(&[Queue::WrappedMetrics], &[rec("p1", 1.0, "one")], "dev", b"s1").unwrap();
        let points = [rec("p2", 2.0, "two"), rec("bad", f64::NAN, "nan"), rec("p3", 3.0, "three")];
        let err = store
            .commit_link(&[Queue::WrappedMetrics, Queue::InfluxMetrics], &points, "dev", b"s2")
            .unwrap_err();
        assert!(matches!(err, StoreError::Failed { op: "commit link", .. }), "{err}");
        assert_eq!(ids(&store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap()), ["p1"]);
        assert_eq!(store.len(Queue::InfluxMetrics).unwrap(), 0);
        assert_eq!(store.link_state("dev").unwrap().as_deref(), Some(&b"s1"[..]));
    }

    pub fn nan_is_refused(store: &mut dyn Store) {
        let err = store.add(Queue::RawMetrics, &[rec("a", f64::NAN, "{}")]).unwrap_err();
        assert!(matches!(err, StoreError::Failed { op: "add", .. }), "{err}");
        assert!(store.read(Queue::RawMetrics, f64::NAN, 1).is_err());
        assert!(store.cleanup(Queue::RawMetrics, f64::NAN).is_err());
        assert_eq!(store.len(Queue::RawMetrics).unwrap(), 0);
        store.ping().unwrap();
    }
}

macro_rules! contract_tests {
    ($store:ident: $($case:ident),* $(,)?) => {
        mod $store {
            $(
                #[test]
                fn $case() {
                    let (mut store, _guard) = super::$store();
                    super::contract::$case(&mut store);
                }
            )*
        }
    };
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        contract_tests!(redis_store: $($case),*);
        contract_tests!(embedded_store: $($case),*);
    };
}

both!(
    read_orders_by_score_then_id,
    max_score_is_exclusive_and_limit_bounds,
    read_page_skips_an_offset,
    add_replaces_an_existing_id,
    add_to_each_fills_every_outbox,
    delete_removes_ids,
    commit_aggregation_applies_everything,
    dead_letter_moves_with_envelope,
    cleanup_removes_at_or_below_threshold,
    cleanup_loops_over_batches,
    status_round_trips,
    large_commit,
    nan_is_refused,
    scan_pages_by_cursor,
    redrive_moves_only_unchanged_records,
    commit_link_lands_points_and_state_together,
    commit_link_refused_writes_nothing,
);

// ---- Redis only ----

/// The page after a full one is read ahead on a second connection; it is used only if nothing
/// was written to its queue since, so a write in between is always seen.
#[test]
fn redis_a_page_read_ahead_is_dropped_after_a_write() {
    let (mut store, _server) = redis_store();
    let records: Vec<NewRecord> = (0..30).map(|i| rec(&format!("r{i:02}"), f64::from(i), "v")).collect();
    store.add(Queue::RawMetrics, &records).unwrap();
    // Read ahead and used: the pages are the same as read one at a time.
    let first = store.read_page(Queue::RawMetrics, 100.0, 0, 10).unwrap();
    let second = store.read_page(Queue::RawMetrics, 100.0, 10, 10).unwrap();
    assert_eq!(ids(&first), (0..10).map(|i| format!("r{i:02}")).collect::<Vec<_>>());
    assert_eq!(ids(&second), (10..20).map(|i| format!("r{i:02}")).collect::<Vec<_>>());
    // The third page was read ahead; a delete in between must show in it.
    store.delete(Queue::RawMetrics, &[Bytes::from_static(b"r20"), Bytes::from_static(b"r25")]).unwrap();
    let third = store.read_page(Queue::RawMetrics, 100.0, 20, 10).unwrap();
    assert_eq!(ids(&third), ["r21", "r22", "r23", "r24", "r26", "r27", "r28", "r29"]);
    // A page other than the one read ahead is read as asked.
    let _ = store.read_page(Queue::RawMetrics, 100.0, 0, 5).unwrap();
    let other = store.read_page(Queue::RawMetrics, 100.0, 2, 3).unwrap();
    assert_eq!(ids(&other), ["r02", "r03", "r04"]);
}

/// `read_soon` reads the queue's first page ahead; it answers a first page below any score.
#[test]
fn redis_the_first_page_read_soon_answers_any_bucket_and_a_write_drops_it() {
    let (mut store, _server) = redis_store();
    let records: Vec<NewRecord> = (0..30).map(|i| rec(&format!("r{i:02}"), f64::from(i), "v")).collect();
    store.add(Queue::RawMetrics, &records).unwrap();
    store.read_soon(Queue::RawMetrics, 10);
    let below_5 = store.read_page(Queue::RawMetrics, 5.0, 0, 10).unwrap();
    assert_eq!(ids(&below_5), ["r00", "r01", "r02", "r03", "r04"]);
    assert!(below_5.iter().all(|r| r.value.as_deref() == Some(&b"v"[..])));
    store.read_soon(Queue::RawMetrics, 10);
    let below_all = store.read_page(Queue::RawMetrics, 100.0, 0, 10).unwrap();
    assert_eq!(ids(&below_all), (0..10).map(|i| format!("r{i:02}")).collect::<Vec<_>>());
    store.read_soon(Queue::RawMetrics, 10);
    store.delete(Queue::RawMetrics, &[Bytes::from_static(b"r01")]).unwrap();
    let after_delete = store.read_page(Queue::RawMetrics, 3.0, 0, 10).unwrap();
    assert_eq!(ids(&after_delete), ["r00", "r02"]);
}

/// After a page of small values, the next page of a metric queue is read without asking the
/// values' lengths first, and comes out the same as with them: values over the record limit
/// marked and not loaded, the page cut at the same record for bytes. The page after a cut asks
/// the lengths again.
#[test]
fn redis_pages_read_without_lengths_first_keep_every_bound() {
    use chouette_agent::limits::MAX_PAGE_BYTES;
    let (mut store, server) = redis_store();
    let limit = Queue::RawMetrics.max_record_bytes();
    let small: Vec<NewRecord> = (0..10).map(|i| rec(&format!("a{i:03}"), f64::from(i), "small")).collect();
    store.add(Queue::RawMetrics, &small).unwrap();
    let first = store.read_page(Queue::RawMetrics, f64::INFINITY, 0, 10).unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(server.command_calls("hstrlen"), 10);
    // 200 records of 60 KiB (12 MB: more than a page's bytes), three of them over the limit.
    let big: Vec<NewRecord> = (0..200)
        .map(|i| {
            let pad = if i % 70 == 5 { limit + 1 } else { 60 * 1024 };
            NewRecord {
                id: format!("b{i:03}").into_bytes(),
                score: 100.0 + f64::from(i),
                value: vec![b'x'; pad],
            }
        })
        .collect();
    store.add(Queue::RawMetrics, &big).unwrap();
    let unguarded = store.read_page(Queue::RawMetrics, f64::INFINITY, 10, 300).unwrap();
    assert_eq!(server.command_calls("hstrlen"), 10, "the lengths were asked");
    let mut fresh = RedisStore::connect(&server.url(), RedisTimeouts::default()).unwrap();
    let guarded = fresh.read_page(Queue::RawMetrics, f64::INFINITY, 10, 300).unwrap();
    assert_eq!(server.command_calls("hstrlen"), 10 + 200);
    assert_eq!(unguarded, guarded);
    let loaded: usize = unguarded.iter().filter_map(|r| r.value.as_ref()).map(|v| v.len()).sum();
    assert!(unguarded.len() < 200 && loaded <= MAX_PAGE_BYTES && loaded + limit > MAX_PAGE_BYTES);
    let marked: Vec<_> =
        unguarded.iter().filter(|r| r.oversize.is_some()).map(|r| r.value.is_none()).collect();
    assert_eq!(marked, [true, true], "{} records", unguarded.len());
    // The page after: its lengths are asked again.
    let next = store.read_page(Queue::RawMetrics, f64::INFINITY, 10 + unguarded.len(), 300).unwrap();
    assert_eq!(server.command_calls("hstrlen"), 10 + 200 + (200 - unguarded.len() as u64));
    assert_eq!(unguarded.len() + next.len(), 200);
}

/// While a step reads, the next step's first page is read ahead from the step's bound up. A
/// step's commit keeps it (it removes only records below that bound); a late record below the
/// bound, or a write to the raw queue, makes the next step read again.
#[test]
fn redis_the_next_steps_first_page_is_read_ahead_and_a_late_record_is_not_missed() {
    let (mut store, server) = redis_store();
    let records: Vec<NewRecord> = (0..40).map(|i| rec(&format!("r{i:02}"), f64::from(i), "v")).collect();
    store.add(Queue::RawMetrics, &records).unwrap();
    let step = |store: &mut RedisStore, end: f64| {
        let page = store.read_page(Queue::RawMetrics, end, 0, 20).unwrap();
        let commit = AggregationCommit {
            delete_raw: page.iter().map(|r| r.id.clone()).collect(),
            aggregated_until: end,
            ..Default::default()
        };
        store.commit_aggregation(&commit).unwrap();
        ids(&page)
    };
    assert_eq!(step(&mut store, 10.0), (0..10).map(|i| format!("r{i:02}")).collect::<Vec<_>>());
    // Read ahead from 10 up, kept through the commit, cut at the next bound: used (one ZCOUNT
    // checked that nothing is left below 10).
    assert_eq!(step(&mut store, 20.0), (10..20).map(|i| format!("r{i:02}")).collect::<Vec<_>>());
    assert_eq!(server.command_calls("zcount"), 1);
    // A late record below 20, written by a client meanwhile: the page read ahead from 20 up
    // does not answer, the step reads again and gets it.
    redis::pipe()
        .atomic()
        .zadd("chouette:metrics:raw.keys", "late", 15.0)
        .hset("chouette:metrics:raw.values", "late", "v")
        .query::<()>(&mut server.client())
        .unwrap();
    let with_late = step(&mut store, 30.0);
    assert_eq!(with_late[0], "late");
    assert_eq!(&with_late[1..], (20..30).map(|i| format!("r{i:02}")).collect::<Vec<_>>());
    // A write to the raw queue through the store between two steps drops the page read ahead.
    store.delete(Queue::RawMetrics, &[Bytes::from_static(b"r35")]).unwrap();
    let last = step(&mut store, 40.0);
    assert_eq!(last, ["r30", "r31", "r32", "r33", "r34", "r36", "r37", "r38", "r39"]);
    assert!(store.read(Queue::RawMetrics, f64::INFINITY, 10).unwrap().is_empty());
}

/// Stopped and resumed while waiting for Redis (SIGSTOP/SIGCONT, as a cgroup freeze does), the
/// socket's read fails with EINTR: the call is retried, not failed.
#[test]
fn redis_a_stop_and_continue_while_waiting_is_not_an_error() {
    let (mut store, server) = redis_store();
    store.add(Queue::RawMetrics, &[rec("a", 1.0, "v")]).unwrap();
    // Redis answers nobody for 1.5 s; meanwhile this process is stopped and resumed.
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(1500).query(&mut server.client()).unwrap();
    let pid = std::process::id();
    let mut signals = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("sleep 0.3; kill -STOP {pid}; sleep 0.2; kill -CONT {pid}"))
        .spawn()
        .unwrap();
    let len = store.len(Queue::RawMetrics);
    signals.wait().unwrap();
    assert_eq!(len.unwrap(), 1);
}

#[test]
fn redis_reads_the_original_client_layout_and_orphans() {
    let (mut store, server) = redis_store();
    let mut raw = server.client();
    let json = r#"{"metric": "my.count", "type": "count", "value": 2, "timestamp": 1600000000.25, "tags": {"k": "v"}}"#;
    let id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    // What the Python client sends: MULTI; ZADD; HSET; EXEC.
    redis::pipe()
        .atomic()
        .zadd("chouette:metrics:raw.keys", id, 1600000000.25)
        .hset("chouette:metrics:raw.values", id, json)
        .query::<()>(&mut raw)
        .unwrap();
    // An orphan: in the ZSET only.
    let _: () = raw.zadd("chouette:metrics:raw.keys", "orphan", 1600000001.0).unwrap();
    let records = store.read(Queue::RawMetrics, f64::INFINITY, 10).unwrap();
    assert_eq!(
        records,
        [
            Record {
                oversize: None,
                id: id.as_bytes().to_vec().into(),
                score: 1600000000.25,
                value: Some(json.as_bytes().to_vec().into())
            },
            Record { oversize: None, id: Bytes::from_static(b"orphan"), score: 1600000001.0, value: None },
        ]
    );
}

#[test]
fn redis_pages_of_a_whole_queue_are_read_by_rank_as_by_score() {
    // A dispatch reads pages of the whole queue by offset: by rank (ZRANGE), which Redis 7.0
    // reaches without walking past the offset. The pages must be ZRANGEBYSCORE's, +inf excluded.
    let (mut store, server) = redis_store();
    let mut raw = server.client();
    let mut pipe = redis::pipe();
    for i in 0..23u32 {
        let score = [f64::NEG_INFINITY, -2.5, 0.0, 7.0, 7.0, 1e9][(i % 6) as usize];
        let id = format!("id{:02}", (i * 7) % 23);
        pipe.zadd("chouette:logs:wrapped.keys", &id, score).hset("chouette:logs:wrapped.values", &id, "{}");
    }
    pipe.zadd("chouette:logs:wrapped.keys", "last", f64::INFINITY).hset(
        "chouette:logs:wrapped.values",
        "last",
        "{}",
    );
    pipe.query::<()>(&mut raw).unwrap();
    for offset in 0..25 {
        for limit in [1, 5, 30] {
            let expected: Vec<String> = raw
                .zrangebyscore_limit("chouette:logs:wrapped.keys", "-inf", "(+inf", offset as isize, limit)
                .unwrap();
            let page = store.read_page(Queue::Logs, f64::INFINITY, offset, limit as usize).unwrap();
            assert_eq!(ids(&page), expected, "offset {offset}, limit {limit}");
        }
    }
    assert_eq!(store.read_page(Queue::Logs, f64::INFINITY, 0, 30).unwrap().len(), 23, "not the +inf one");
    assert_eq!(store.read_page(Queue::Logs, f64::INFINITY, 20, usize::MAX).unwrap().len(), 3, "no overflow");
}

#[test]
fn redis_writes_are_readable_by_the_original_agent() {
    let (mut store, server) = redis_store();
    store.add(Queue::WrappedMetrics, &[rec("w1", 1795310771.0, r#"{"metric": "req"}"#)]).unwrap();
    let mut raw = server.client();
    // What the original sender does: ZRANGE 0 n WITHSCORES, then HMGET.
    let keys: Vec<(String, f64)> = raw.zrange_withscores("chouette:metrics:wrapped.keys", 0, 99).unwrap();
    assert_eq!(keys, [("w1".to_string(), 1795310771.0)]);
    let values: Vec<String> =
        redis::cmd("HMGET").arg("chouette:metrics:wrapped.values").arg("w1").query(&mut raw).unwrap();
    assert_eq!(values, [r#"{"metric": "req"}"#]);
    let watermark = AggregationCommit { aggregated_until: 1795310770.5, ..Default::default() };
    store.commit_aggregation(&watermark).unwrap();
    let stored: String = raw.get("chouette:agent:aggregated_until").unwrap();
    assert_eq!(stored.parse::<f64>().unwrap(), 1795310770.5);
}

#[test]
fn redis_cleanup_removes_hash_fields_too() {
    let (mut store, server) = redis_store();
    store.add(Queue::Logs, &[rec("old", 1.0, "a"), rec("new", 100.0, "b")]).unwrap();
    assert_eq!(store.cleanup(Queue::Logs, 50.0).unwrap(), 1);
    let mut raw = server.client();
    let fields: Vec<String> = raw.hkeys("chouette:logs:wrapped.values").unwrap();
    assert_eq!(fields, ["new"]);
    let members: Vec<String> = raw.zrange("chouette:logs:wrapped.keys", 0, -1).unwrap();
    assert_eq!(members, ["new"]);
}

#[test]
fn redis_recovers_after_a_restart() {
    let (mut store, server) = redis_store();
    store.add(Queue::RawMetrics, &[rec("a", 1.0, "{}")]).unwrap();
    let port = server.kill();
    let err = store.len(Queue::RawMetrics).unwrap_err();
    assert!(err.is_transient(), "{err}");
    let _server = chouette_tests::RedisServer::start_on(port);
    // No persistence: the data is gone, but the same store object works again.
    assert_eq!(store.len(Queue::RawMetrics).unwrap(), 0);
    store.add(Queue::RawMetrics, &[rec("b", 2.0, "{}")]).unwrap();
    assert_eq!(ids(&store.read(Queue::RawMetrics, f64::INFINITY, 10).unwrap()), ["b"]);
}

#[test]
fn redis_restart_between_calls_is_invisible() {
    let (mut store, server) = redis_store();
    store.ping().unwrap();
    let port = server.kill();
    let _server = chouette_tests::RedisServer::start_on(port);
    // The held connection is dead; the call reconnects and retries once.
    store.add(Queue::RawMetrics, &[rec("b", 2.0, "{}")]).unwrap();
    assert_eq!(store.len(Queue::RawMetrics).unwrap(), 1);
}

#[test]
fn redis_describe_hides_the_password() {
    let store = RedisStore::open("redis://:secret@127.0.0.1:1/0", RedisTimeouts::default()).unwrap();
    assert_eq!(store.describe(), "redis://127.0.0.1:1/0");
    let err = RedisStore::connect("redis://user:secret@127.0.0.1:1/0", RedisTimeouts::default()).unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn redis_unreachable_is_unavailable_quickly() {
    let port = chouette_tests::free_port(); // nothing listens there
    let start = Instant::now();
    let err =
        RedisStore::connect(&format!("redis://127.0.0.1:{port}/0"), RedisTimeouts::default()).unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains(&format!("redis://127.0.0.1:{port}/0")), "{err}");
}

#[test]
fn redis_silent_server_times_out() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _holder = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(3));
        drop(conn);
    });
    let start = Instant::now();
    let timeouts = RedisTimeouts::uniform(Duration::from_millis(300));
    // With a password the handshake (AUTH) must time out too.
    let err = RedisStore::connect(&format!("redis://:pw@127.0.0.1:{port}/1"), timeouts).unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
}

#[test]
fn redis_server_errors_are_failed() {
    let (mut store, server) = redis_store();
    let mut raw = server.client();
    let _: () = raw.set("chouette:metrics:raw.keys", "not a zset").unwrap();
    let err = store.len(Queue::RawMetrics).unwrap_err();
    assert!(matches!(err, StoreError::Failed { op: "len", .. }), "{err}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    // The connection is still usable.
    assert_eq!(store.len(Queue::Logs).unwrap(), 0);
}

#[test]
fn redis_commit_link_with_a_wrong_type_outbox_writes_nothing() {
    let (mut store, server) = redis_store();
    let mut raw = server.client();
    store.commit_link(&[Queue::WrappedMetrics], &[rec("p1", 1.0, "one")], "dev", b"s1").unwrap();
    // The second outbox's HASH is a string: inside a plain MULTI/EXEC, the first outbox's ZADD
    // and HSET and the state's HSET would still run (Redis does not roll back).
    let _: () = raw.set("chouette:metrics:wrapped.influxdb.values", "not a hash").unwrap();
    let points = [rec("p2", 2.0, "two")];
    let err = store
        .commit_link(
            &[Queue::WrappedMetrics, Queue::InfluxMetrics, Queue::OpentsdbMetrics],
            &points,
            "dev",
            b"s2",
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Failed { op: "commit link", .. }), "{err}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert!(err.to_string().contains("chouette:metrics:wrapped.influxdb.values"), "{err}");
    assert_eq!(ids(&store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap()), ["p1"]);
    assert_eq!(store.len(Queue::OpentsdbMetrics).unwrap(), 0);
    assert_eq!(store.link_state("dev").unwrap().as_deref(), Some(&b"s1"[..]));
    // The connection holds no WATCH: the next commit goes through.
    let _: () = raw.del("chouette:metrics:wrapped.influxdb.values").unwrap();
    store.commit_link(&[Queue::WrappedMetrics, Queue::InfluxMetrics], &points, "dev", b"s2").unwrap();
    assert_eq!(ids(&store.read(Queue::InfluxMetrics, f64::INFINITY, 10).unwrap()), ["p2"]);
    assert_eq!(store.link_state("dev").unwrap().as_deref(), Some(&b"s2"[..]));
    // A wrong type at the state's own key fails the same way.
    let _: () = raw.set("chouette:link:state", "x").unwrap();
    let err = store.commit_link(&[Queue::WrappedMetrics], &[rec("p3", 3.0, "3")], "dev", b"s3").unwrap_err();
    assert!(err.to_string().contains("chouette:link:state"), "{err}");
    assert_eq!(ids(&store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap()), ["p1", "p2"]);
}

#[test]
fn redis_commit_link_retries_when_another_client_writes_an_outbox_meanwhile() {
    // The WATCH aborts the EXEC whenever another client touches a watched key between the type
    // check and the EXEC; the commit retries, and every frame lands exactly once.
    let (mut store, server) = redis_store();
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writes = std::sync::Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        let mut raw = server.client();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = writes.load(Ordering::Relaxed);
                let _: () = raw.zadd("chouette:metrics:wrapped.keys", format!("other-{n}"), 0).unwrap();
                let _: () = raw.zrem("chouette:metrics:wrapped.keys", format!("other-{n}")).unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // The commits start once the other client writes (on a busy machine its thread may start
    // after 50 commits are done, and nothing would be raced).
    let started = Instant::now();
    while writes.load(Ordering::Relaxed) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the other client never wrote");
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..50 {
        let point = rec(&format!("p{i:02}"), f64::from(i), "v");
        store.commit_link(&[Queue::WrappedMetrics], &[point], "dev", format!("seq{i}").as_bytes()).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let expected: Vec<String> = (0..50).map(|i| format!("p{i:02}")).collect();
    assert_eq!(ids(&store.read(Queue::WrappedMetrics, f64::INFINITY, 100).unwrap()), expected);
    assert_eq!(store.link_state("dev").unwrap().as_deref(), Some(&b"seq49"[..]));
}

#[test]
fn redis_commit_link_survives_a_kill_and_fails_while_down() {
    let server = chouette_tests::RedisServer::start_persistent();
    let mut store = RedisStore::connect(&server.url(), RedisTimeouts::default()).unwrap();
    store.commit_link(&[Queue::WrappedMetrics], &[rec("p1", 1.0, "one")], "dev", b"s1").unwrap();
    let server = server.restart_persistent();
    assert_eq!(store.link_state("dev").unwrap().as_deref(), Some(&b"s1"[..]));
    assert_eq!(ids(&store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap()), ["p1"]);
    // While the server is down the commit fails as transient: the gateway does not acknowledge.
    let port = server.kill();
    let err =
        store.commit_link(&[Queue::WrappedMetrics], &[rec("p2", 2.0, "two")], "dev", b"s2").unwrap_err();
    assert!(err.is_transient(), "{err}");
    let _server = chouette_tests::RedisServer::start_on(port);
    store.commit_link(&[Queue::WrappedMetrics], &[rec("p2", 2.0, "two")], "dev", b"s2").unwrap();
    assert_eq!(store.link_state("dev").unwrap().as_deref(), Some(&b"s2"[..]));
}

/// A relay to `upstream` that loses the reply to the first `MULTI … EXEC` sent after a `WATCH`:
/// the transaction reaches Redis and is applied, then the client's connection is closed before
/// any reply to it comes back (a connection lost at the worst moment). Other connections, and
/// that one until then, are relayed as they are.
fn relay_losing_a_watched_exec_reply(upstream: u16) -> u16 {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            // Set once this connection's transaction is on its way: its replies are dropped.
            let cut = Arc::new(AtomicBool::new(false));
            let (mut from_server, mut to_client, c) =
                (server.try_clone().unwrap(), client.try_clone().unwrap(), cut.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = from_server.read(&mut buf) {
                    if c.load(Ordering::SeqCst) || to_client.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            let (mut from_client, mut to_server, done) = (client, server, done.clone());
            std::thread::spawn(move || {
                let (mut buf, mut seen) = ([0u8; 65536], Vec::<u8>::new());
                while let Ok(n @ 1..) = from_client.read(&mut buf) {
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen);
                    let armed =
                        !done.load(Ordering::SeqCst) && text.contains("WATCH") && text.contains("MULTI");
                    if armed {
                        cut.store(true, Ordering::SeqCst);
                    }
                    if to_server.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    if armed && text.contains("EXEC") {
                        done.store(true, Ordering::SeqCst);
                        // Applied by Redis, and its reply never relayed.
                        std::thread::sleep(Duration::from_millis(200));
                        let _ = from_client.shutdown(Shutdown::Both);
                        let _ = to_server.shutdown(Shutdown::Both);
                        return;
                    }
                    if !armed && seen.len() > 1 << 20 {
                        seen.drain(..seen.len() - 16);
                    }
                }
            });
        }
    });
    port
}

/// A requeue whose transaction was applied but whose reply was lost: the store reconnects and
/// tries again, finds the records gone from the dead-letter queue and back in the live one with
/// the requeued bytes, and counts them as moved (they were counted as skipped: a requeue
/// reported "changed meanwhile" for records it had moved itself).
#[test]
fn redis_a_requeue_whose_reply_is_lost_counts_what_it_moved() {
    let server = chouette_tests::RedisServer::start();
    let mut direct = RedisStore::connect(&server.url(), RedisTimeouts::default()).unwrap();
    let records: Vec<NewRecord> = (0..50).map(|i| rec(&format!("r{i:02}"), f64::from(i), "v")).collect();
    direct.add(Queue::Logs, &records).unwrap();
    let refused: Vec<DeadRecord> =
        records.iter().map(|r| dead(std::str::from_utf8(&r.id).unwrap(), r.score, "v", "http_400")).collect();
    direct.dead_letter(Queue::Logs, &refused).unwrap();
    let relay = relay_losing_a_watched_exec_reply(server.port);
    let mut store =
        RedisStore::connect(&format!("redis://127.0.0.1:{relay}/0"), RedisTimeouts::default()).unwrap();
    let read = store.scan(Queue::DeadLogs, None, 100).unwrap();
    assert_eq!(read.len(), 50);
    let moves: Vec<DeadMove> = read
        .iter()
        .map(|r| DeadMove {
            id: r.id.to_vec(),
            envelope: r.value.as_deref().unwrap().to_vec(),
            requeue: Some(NewRecord { id: r.id.to_vec(), score: r.score, value: b"v".to_vec() }),
        })
        .collect();
    assert_eq!(store.redrive(Queue::DeadLogs, Queue::Logs, &moves).unwrap(), 50);
    assert_eq!(direct.len(Queue::DeadLogs).unwrap(), 0);
    assert_eq!(direct.read(Queue::Logs, f64::INFINITY, 100).unwrap().len(), 50);
    // Once moved, moving again moves nothing, lost reply or not.
    assert_eq!(store.redrive(Queue::DeadLogs, Queue::Logs, &moves).unwrap(), 0);
}

// ---- Embedded only ----

#[test]
fn embedded_link_state_persists_across_reopen() {
    let dir = TempDir::new("store");
    let path = dir.0.join("chouette.redb");
    {
        let mut store = EmbeddedStore::open(&path).unwrap();
        store.commit_link(&[Queue::WrappedMetrics], &[rec("p1", 1.0, "one")], "dev", b"s1").unwrap();
    }
    let mut store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.link_state("dev").unwrap().as_deref(), Some(&b"s1"[..]));
    assert_eq!(ids(&store.read(Queue::WrappedMetrics, f64::INFINITY, 10).unwrap()), ["p1"]);
}

#[test]
fn embedded_persists_across_reopen() {
    let dir = TempDir::new("store");
    let path = dir.0.join("chouette.redb");
    {
        let mut store = EmbeddedStore::open(&path).unwrap();
        store.add(Queue::RawMetrics, &[rec("a", 1.0, "{}")]).unwrap();
        store.commit_aggregation(&AggregationCommit { aggregated_until: 7.0, ..Default::default() }).unwrap();
    }
    let mut store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(ids(&store.read(Queue::RawMetrics, f64::INFINITY, 10).unwrap()), ["a"]);
    assert_eq!(store.aggregated_until().unwrap(), Some(7.0));
    assert_eq!(store.describe(), format!("embedded:{}", path.display()));
}

#[test]
fn embedded_unwritable_path_names_the_path() {
    let dir = TempDir::new("store");
    let file = dir.0.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    // A directory cannot be created under a regular file.
    let path = file.join("sub").join("chouette.redb");
    let err = EmbeddedStore::open(&path).unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains(&file.join("sub").display().to_string()), "{err}");
    // Not a redb file: moved aside (kept), a fresh store in its place (tests/tests/embedded_faults.rs).
    let mut store = EmbeddedStore::open(&file).expect("a fresh store in place of a corrupt file");
    assert_eq!(store.len(Queue::RawMetrics).unwrap(), 0);
    let aside: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("a-file.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(dir.0.join(&aside[0])).unwrap(), b"x");
}

#[test]
fn redis_commit_is_seen_all_or_nothing_by_a_concurrent_reader() {
    let (mut store, server) = redis_store();
    let raw: Vec<NewRecord> = (0..50_000).map(|i| rec(&format!("r{i:06}"), f64::from(i), "{}")).collect();
    store.add(Queue::RawMetrics, &raw).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let mut conn = server.client();
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let state: (u64, u64, u64, Option<String>) = redis::pipe()
                    .atomic()
                    .zcard("chouette:metrics:raw.keys")
                    .hlen("chouette:metrics:raw.values")
                    .zcard("chouette:metrics:wrapped.keys")
                    .get("chouette:agent:aggregated_until")
                    .query(&mut conn)
                    .unwrap();
                seen.insert(state);
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let commit = AggregationCommit {
        wrapped: (0..20_000).map(|i| rec(&format!("w{i}"), f64::from(i), "{}")).collect(),
        outboxes: vec![Queue::WrappedMetrics],
        delete_raw: raw.iter().map(|r| r.id.clone().into()).collect(),
        dead: Vec::new(),
        aggregated_until: 50_000.0,
    };
    store.commit_aggregation(&commit).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.join().unwrap();
    let before = (50_000, 50_000, 0, None);
    let after = (0, 0, 20_000, Some("50000.0".to_string()));
    assert!(seen.contains(&before) && seen.contains(&after), "{seen:?}");
    assert!(seen.iter().all(|s| *s == before || *s == after), "a partial commit was visible: {seen:?}");
}

/// A `redis-server` with `requirepass`, outside chouette-tests (whose RedisServer has no option for it).
struct PasswordRedis {
    port: u16,
    child: std::process::Child,
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn password_redis() -> PasswordRedis {
    let port = chouette_tests::free_port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--requirepass", "s3cret"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start redis-server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    PasswordRedis { port, child }
}

#[test]
fn redis_authenticates_and_selects_the_db() {
    let server = password_redis();
    let url = format!("redis://:s3cret@127.0.0.1:{}/2", server.port);
    let mut store = RedisStore::connect(&url, RedisTimeouts::default()).unwrap();
    assert_eq!(store.describe(), format!("redis://127.0.0.1:{}/2", server.port));
    store.add(Queue::RawMetrics, &[rec("a", 1.0, "{}")]).unwrap();
    // Pages are read on a connection of their own, authenticated and on db 2 as well.
    assert_eq!(ids(&store.read(Queue::RawMetrics, f64::INFINITY, 10).unwrap()), ["a"]);
    let mut raw = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    let n: u64 = raw.zcard("chouette:metrics:raw.keys").unwrap();
    assert_eq!(n, 1);
    let _: () = redis::cmd("SELECT").arg(0).query(&mut raw).unwrap();
    let n: u64 = raw.zcard("chouette:metrics:raw.keys").unwrap();
    assert_eq!(n, 0, "written to db 2, not db 0");

    let wrong = format!("redis://:wrong@127.0.0.1:{}/2", server.port);
    let err = RedisStore::connect(&wrong, RedisTimeouts::default()).unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(!err.to_string().contains("wrong@"), "{err}");
}

/// `scan` pages through a long run of equal scores while another client keeps adding records of
/// lower scores, which shifts every rank: each record of the run is returned once, whether the
/// cursor is still there (a listing) or was removed with its page (a requeue, a purge).
#[test]
fn redis_scan_through_ties_while_lower_scores_are_written() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const TIES: usize = 2_000;
    let (mut store, server) = redis_store();
    for remove_pages in [false, true] {
        let mut con = server.client();
        redis::cmd("FLUSHALL").query::<()>(&mut con).unwrap();
        let run: Vec<NewRecord> = (0..TIES).map(|i| rec(&format!("t{i:05}"), 1000.0, "v")).collect();
        store.add(Queue::Logs, &run).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, mut con) = (Arc::clone(&stop), server.client());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Ids that sort before and after the run's, at scores below it.
                    let members: Vec<(f64, String)> =
                        (0..10).map(|i| ((n % 900) as f64, format!("{}{n:08}", ["a", "z"][i % 2]))).collect();
                    con.zadd_multiple::<_, _, _, ()>("chouette:logs:wrapped.keys", &members).unwrap();
                    n += 1;
                }
                n
            })
        };
        let mut seen = Vec::new();
        let mut after: Option<(f64, Vec<u8>)> = None;
        loop {
            let page = store.scan(Queue::Logs, after.as_ref().map(|(s, id)| (*s, id.as_slice())), 7).unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.score, last.id.to_vec()));
            let run_ids: Vec<Bytes> =
                page.iter().filter(|r| r.score == 1000.0).map(|r| r.id.clone()).collect();
            if remove_pages {
                store.delete(Queue::Logs, &run_ids).unwrap();
            }
            seen.extend(run_ids.into_iter().map(|id| String::from_utf8(id.to_vec()).unwrap()));
        }
        stop.store(true, Ordering::Relaxed);
        let batches = writer.join().unwrap();
        assert!(batches > 10, "the writer wrote {batches} batches only");
        let want: Vec<String> = (0..TIES).map(|i| format!("t{i:05}")).collect();
        assert_eq!(seen.len(), want.len(), "remove_pages={remove_pages}: a record missed or seen twice");
        assert_eq!(seen, want, "remove_pages={remove_pages}");
    }
}
