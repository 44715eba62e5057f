//! Outbox tests that only make sense for SQLite: persistence, file configuration, sharing a file
//! with the key-value backend, other processes on the same file, query plans and damaged
//! files.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use super::{LONG_LEASE, delivered, drain, enqueue_n, ids};
use crate::outbox::sqlite::{DEPTH_TENANT, DUE, FIND_BY_KEY, LIST, PURGE, RESCHEDULE_TENANT};
use crate::outbox::{Ack, Clock, Depth, ManualClock, Outbox, SharedOutbox, SqliteOutbox, State};
use crate::tests::sqlite::{child_report, spawn_child_test, wait_for_key};
use crate::{KeyValueBackend, Scope, SqliteBackend, StoreError};

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wxnotify.sqlite3");
    (dir, path)
}

#[tokio::test]
async fn everything_survives_reopening() {
    let (_dir, path) = temp_db();
    let clock = ManualClock::new(SystemTime::now());
    let lease = Duration::from_millis(200);
    let pause_end = clock.now() + Duration::from_secs(3600);
    let (delivered_id, in_flight_id, queued_id, paused_id) = {
        let outbox = SqliteOutbox::open(&path).unwrap().with_clock(clock.clone());
        let delivered_id = outbox.enqueue("acme", Some("k"), b"1").await.unwrap().id;
        let in_flight_id = outbox.enqueue("acme", None, b"2").await.unwrap().id;
        let queued_id = outbox.enqueue("acme", None, b"3").await.unwrap().id;
        let paused_id = outbox.enqueue("globex", None, b"4").await.unwrap().id;
        outbox.pause_tenant("globex", pause_end).await.unwrap();
        let claimed = outbox.claim("w", 2, lease).await.unwrap();
        assert_eq!(ids(&claimed), [delivered_id.clone(), in_flight_id.clone()]);
        let ack = outbox
            .complete(&delivered_id, delivered("sent"))
            .await
            .unwrap();
        assert_eq!(ack, Ack::Applied);
        (delivered_id, in_flight_id, queued_id, paused_id)
    };

    let outbox: SharedOutbox =
        Arc::new(SqliteOutbox::open(&path).unwrap().with_clock(clock.clone()));
    let status = outbox.status(&delivered_id).await.unwrap().unwrap();
    assert_eq!(status.state, State::Delivered);
    assert_eq!(status.last_detail.as_deref(), Some("sent"));
    assert_eq!(
        outbox.status(&in_flight_id).await.unwrap().unwrap().state,
        State::InFlight
    );
    assert!(
        outbox
            .enqueue("acme", Some("k"), b"again")
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(
        outbox.depth(None).await.unwrap(),
        Depth {
            queued: 2,
            in_flight: 1
        }
    );
    // The queued message at once; the dead worker's after its lease; the paused tenant's not.
    let claimed = outbox.claim("w2", 10, LONG_LEASE).await.unwrap();
    assert_eq!(ids(&claimed), [queued_id]);
    clock.advance(lease);
    let claimed = outbox.claim("w2", 10, LONG_LEASE).await.unwrap();
    assert_eq!(ids(&claimed), [in_flight_id]);
    assert_eq!(claimed[0].attempts, 2);
    let status = outbox.status(&paused_id).await.unwrap().unwrap();
    assert_eq!(status.state, State::Queued);
    let next = status.next_attempt_at.unwrap();
    assert!(next >= pause_end - Duration::from_millis(1), "{next:?}");
}

/// The outbox and the key-value backend share one file, each with its own tables and its own
/// `synchronous` level, whichever opens the file first.
#[tokio::test]
async fn shares_a_file_with_the_key_value_backend() {
    for outbox_first in [true, false] {
        let (_dir, path) = temp_db();
        let (outbox, kv) = if outbox_first {
            let outbox = SqliteOutbox::open(&path).unwrap();
            (outbox, SqliteBackend::open(&path).unwrap())
        } else {
            let kv = SqliteBackend::open(&path).unwrap();
            (SqliteOutbox::open(&path).unwrap(), kv)
        };
        assert_eq!(outbox.path(), Some(path.as_path()));
        let scope = Scope::new("acme", "tokens");
        kv.set(&scope, "k", b"v").await.unwrap();
        let id = outbox.enqueue("acme", None, b"x").await.unwrap().id;
        assert_eq!(
            kv.get(&scope, "k").await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert!(outbox.status(&id).await.unwrap().is_some());

        let outbox_sync = outbox
            .run(|conn| conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(outbox_sync, 2, "synchronous=FULL for the outbox");
        let claims_sync = outbox
            .run_as_claims(|conn| {
                conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))
            })
            .await
            .unwrap();
        assert_eq!(claims_sync, 1, "synchronous=NORMAL for the outbox's claims");
        // ...and the connection is back to FULL for whatever runs on it next.
        outbox.claim("w", 1, Duration::from_secs(60)).await.unwrap();
        let after_claims = outbox
            .run(|conn| conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(after_claims, 2, "synchronous=FULL again after a claim");
        let kv_sync = kv
            .run(|conn| conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(kv_sync, 1, "synchronous=NORMAL for the key-value store");

        let raw = Connection::open(&path).unwrap();
        let mode: String = raw
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let user_version: i64 = raw
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(
            user_version, 1,
            "the key-value schema's version is untouched"
        );
        let outbox_version: i64 = raw
            .query_row("SELECT version FROM outbox_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(outbox_version, 2);
    }
}

/// A file written by the first schema (before recipients and the console's index) is brought
/// to the second on open; its messages stay, listed without a recipient.
#[tokio::test]
async fn a_version_1_file_is_migrated_and_its_messages_listed() {
    let (_dir, path) = temp_db();
    {
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch(super::super::sqlite::SCHEMA_V1).unwrap();
        raw.execute(
            "INSERT INTO outbox_messages (id, tenant, payload, state, attempts, enqueued_at, \
             not_before, due_at) VALUES ('01JD0000000000000000000000', 'acme', X'7B7D', 0, 0, \
             1000, 1000, 1000)",
            [],
        )
        .unwrap();
    }
    let outbox = SqliteOutbox::open(&path).unwrap();
    let page = outbox
        .list(&crate::outbox::ListQuery {
            tenant: "acme",
            since: UNIX_EPOCH,
            until: UNIX_EPOCH + Duration::from_secs(2),
            state: None,
            search: None,
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].id, "01JD0000000000000000000000");
    assert_eq!(page.messages[0].recipient, None);
    let claimed = outbox
        .claim("w", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the old message is still delivered");
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT version FROM outbox_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}

/// The queries that run per claim and per enqueue use their indexes, so their cost does not
/// grow with the number of messages kept.
#[test]
fn hot_queries_use_their_indexes() {
    let (_dir, path) = temp_db();
    drop(SqliteOutbox::open(&path).unwrap());
    let raw = Connection::open(&path).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = raw.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let count = stmt.parameter_count();
        let params: Vec<i64> = vec![0; count];
        stmt.query_map(rusqlite::params_from_iter(params), |row| {
            row.get::<_, String>(3)
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
        .join("\n")
    };
    let cases = [
        (DUE, "outbox_messages_due"),
        (FIND_BY_KEY, "outbox_messages_idempotency"),
        (DEPTH_TENANT, "outbox_messages_state"),
        (RESCHEDULE_TENANT, "outbox_messages_state"),
        (PURGE, "outbox_messages_finished"),
        (LIST, "outbox_messages_tenant_time"),
    ];
    for (sql, index) in cases {
        let plan = plan(sql);
        assert!(plan.contains(index), "{sql}\n{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "sorts: {sql}\n{plan}");
    }
}

#[test]
fn refuses_a_foreign_outbox_table_and_a_newer_schema() {
    let (_dir, path) = temp_db();
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE outbox_messages (id INTEGER PRIMARY KEY, stuff TEXT);")
        .unwrap();
    match SqliteOutbox::open(&path) {
        Err(err @ StoreError::Open { .. }) => {
            assert!(err.to_string().contains(&path.display().to_string()));
        }
        other => panic!("expected an Open error, got {other:?}"),
    }

    let (_dir, path) = temp_db();
    drop(SqliteOutbox::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE outbox_schema SET version = 3", [])
        .unwrap();
    match SqliteOutbox::open(&path) {
        Err(StoreError::UnsupportedSchema {
            backend: "sqlite",
            found: 3,
            supported: 2,
        }) => {}
        other => panic!("expected UnsupportedSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn foreign_rows_are_reported_as_corrupt() {
    let (_dir, path) = temp_db();
    let outbox = SqliteOutbox::open(&path).unwrap();
    let id = outbox.enqueue("acme", None, b"x").await.unwrap().id;
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE outbox_messages SET state = 9 WHERE id = ?1", [&id])
        .unwrap();
    assert!(matches!(
        outbox.status(&id).await,
        Err(StoreError::Corrupt {
            backend: "sqlite",
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_lock_makes_claims_wait_then_fail_as_unavailable() {
    let (_dir, path) = temp_db();
    let timeout = Duration::from_millis(300);
    let outbox = SqliteOutbox::open_with_options(
        &path,
        crate::SqliteOptions::default().busy_timeout(timeout),
    )
    .unwrap();
    let id = outbox.enqueue("acme", None, b"x").await.unwrap().id;
    let mut raw = Connection::open(&path).unwrap();
    let tx = raw
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let start = Instant::now();
    let err = outbox.claim("w", 10, LONG_LEASE).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(start.elapsed() >= timeout);
    // Reads go on (WAL).
    assert_eq!(
        outbox.status(&id).await.unwrap().unwrap().state,
        State::Queued
    );
    drop(tx);
    assert_eq!(ids(&outbox.claim("w", 10, LONG_LEASE).await.unwrap()), [id]);
}

const CHILD_DB_ENV: &str = "WXNOTIFY_OUTBOX_TEST_CHILD_DB";
const CHILD_MARKER: &str = "CHILD-IDS:";
const CROSS_PROCESS_MESSAGES: usize = 2000;

fn control() -> Scope {
    Scope::new("test", "control")
}

/// The real thing: this test binary runs a second copy of itself (see `cross_process_child`)
/// and both processes drain one outbox file at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_processes_drain_one_file_exactly_once() {
    let (_dir, path) = temp_db();
    let outbox: SharedOutbox = Arc::new(SqliteOutbox::open(&path).unwrap());
    // Signals between the processes go through the key-value tables of the same file.
    let kv = SqliteBackend::open(&path).unwrap();
    let all: BTreeSet<String> = {
        let mut all = BTreeSet::new();
        for chunk in 0..CROSS_PROCESS_MESSAGES / 500 {
            let payloads: Vec<Vec<u8>> =
                (0..500).map(|i| super::payload(chunk * 500 + i)).collect();
            let batch: Vec<_> = payloads
                .iter()
                .map(|p| crate::outbox::NewMessage {
                    recipient: None,
                    idempotency_key: None,
                    payload: p,
                })
                .collect();
            for result in outbox.enqueue_many("acme", &batch).await.unwrap() {
                all.insert(result.id);
            }
        }
        all
    };
    let child = spawn_child_test(
        "outbox::tests::sqlite::cross_process_child",
        CHILD_DB_ENV,
        &path,
    );
    wait_for_key(&kv, &control(), "child-ready").await;
    kv.set(&control(), "go", b"1").await.unwrap();
    // Only start once the child has claimed something: SQLite's lock is not fair, and on a
    // busy machine this process could otherwise drain everything before the child's first
    // claim, which would prove nothing about two processes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while outbox.depth(None).await.unwrap().queued == CROSS_PROCESS_MESSAGES as u64 {
        assert!(Instant::now() < deadline, "the child never claimed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mine = drain(&outbox, "parent").await;

    let line = child_report(child, CHILD_MARKER).await;
    let theirs: BTreeSet<String> = line
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(mine.is_disjoint(&theirs), "completed in both processes");
    let union: BTreeSet<String> = mine.union(&theirs).cloned().collect();
    assert_eq!(union, all, "messages lost");
    assert!(!theirs.is_empty(), "the child completed nothing");
    assert_eq!(outbox.depth(None).await.unwrap(), Depth::default());
}

/// The other process of `separate_processes_drain_one_file_exactly_once`; does nothing when
/// run directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "helper process, started by separate_processes_drain_one_file_exactly_once"]
async fn cross_process_child() {
    let Some(path) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    let outbox: SharedOutbox = Arc::new(SqliteOutbox::open(&path).unwrap());
    let kv = SqliteBackend::open(&path).unwrap();
    kv.set(&control(), "child-ready", b"1").await.unwrap();
    wait_for_key(&kv, &control(), "go").await;
    let done = drain(&outbox, "child").await;
    let done: Vec<String> = done.into_iter().collect();
    println!("{CHILD_MARKER}{}", done.join(","));
}

#[tokio::test]
async fn in_memory_outboxes_are_private() {
    let a = SqliteOutbox::open_in_memory().unwrap();
    let b = SqliteOutbox::open_in_memory().unwrap();
    let shared: SharedOutbox = Arc::new(a.clone());
    enqueue_n(&shared, "acme", 2).await;
    assert_eq!(a.depth(None).await.unwrap().queued, 2);
    assert_eq!(b.depth(None).await.unwrap(), Depth::default());
    assert_eq!(a.path(), None);
}

/// Settles are group-committed: many at once each get their own answer, and every one of them
/// is in the file when the callers return.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_settles_each_get_their_own_answer_and_are_durable() {
    let (_dir, path) = temp_db();
    let outbox: SharedOutbox = Arc::new(SqliteOutbox::open(&path).unwrap());
    let enqueued = enqueue_n(&outbox, "acme", 64).await;
    let claimed = outbox.claim("w", 64, LONG_LEASE).await.unwrap();
    assert_eq!(claimed.len(), 64);
    let finished = enqueued[0].clone();
    assert_eq!(
        outbox
            .complete(&finished, delivered("first"))
            .await
            .unwrap(),
        Ack::Applied
    );
    let settles: Vec<_> = enqueued
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (outbox, id) = (outbox.clone(), id.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    outbox.complete(&id, delivered("sent")).await
                } else {
                    outbox.retry(&id, SystemTime::now(), "busy").await
                }
            })
        })
        .collect();
    let unknown = outbox
        .complete("01ARZ3NDEKTSV4RRFFQ69G5FAV", delivered("x"))
        .await
        .unwrap();
    assert_eq!(unknown, Ack::NotFound);
    let mut acks = Vec::new();
    for settle in settles {
        acks.push(settle.await.unwrap().unwrap());
    }
    assert_eq!(
        acks[0],
        Ack::AlreadyFinal(State::Delivered),
        "settled before"
    );
    assert!(acks[1..].iter().all(|ack| *ack == Ack::Applied), "{acks:?}");

    drop(outbox);
    let reopened = SqliteOutbox::open(&path).unwrap();
    for (i, id) in enqueued.iter().enumerate() {
        let state = reopened.status(id).await.unwrap().unwrap().state;
        let expected = if i % 2 == 0 {
            State::Delivered
        } else {
            State::Queued
        };
        assert_eq!(state, expected, "message {i}");
    }
}
