//! Tests that only make sense for the SQLite backend: persistence, file configuration, several
//! instances and processes on one file, lock contention, and damaged files.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::{KeyValueBackend, Scope, SqliteBackend, SqliteOptions, StoreError};

fn scope() -> Scope {
    Scope::new("tenant", "bucket")
}

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kv.sqlite3");
    (dir, path)
}

#[tokio::test]
async fn data_persists_across_reopen() {
    let (_dir, path) = temp_db();
    {
        let backend = SqliteBackend::open(&path).unwrap();
        backend.set(&scope(), "k", b"v").await.unwrap();
        backend.increment(&scope(), "n", 7).await.unwrap();
        backend
            .set_many(
                &Scope::new("other", "bucket"),
                &[("k".to_owned(), b"o".to_vec())],
            )
            .await
            .unwrap();
    }
    let backend = SqliteBackend::open(&path).unwrap();
    assert_eq!(backend.path(), Some(path.as_path()));
    assert_eq!(
        backend.get(&scope(), "k").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(backend.increment(&scope(), "n", 1).await.unwrap(), 8);
    assert_eq!(
        backend
            .get(&Scope::new("other", "bucket"), "k")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"o"[..])
    );
}

#[tokio::test]
async fn file_is_configured_as_promised() {
    let (_dir, path) = temp_db();
    let backend = SqliteBackend::open(&path).unwrap();
    backend.set(&scope(), "k", b"v").await.unwrap();

    // Checked from an independent connection: WAL is recorded in the file itself.
    let raw = Connection::open(&path).unwrap();
    let mode: String = raw
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let (tenant, bucket, key, value): (String, String, String, Vec<u8>) = raw
        .query_row("SELECT tenant, bucket, key, value FROM kv", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!(
        (
            tenant.as_str(),
            bucket.as_str(),
            key.as_str(),
            value.as_slice()
        ),
        ("tenant", "bucket", "k", &b"v"[..])
    );
    drop(raw);

    // Per-connection settings, read through the backend's own pool.
    let (synchronous, busy_timeout) = backend
        .run(|conn| {
            Ok((
                conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))?,
                conn.pragma_query_value(None, "busy_timeout", |r| r.get::<_, i64>(0))?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(synchronous, 1, "synchronous=NORMAL");
    assert_eq!(busy_timeout, 5000);
}

/// Two independent backends (as two processes would have) share one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_instances_increment_atomically() {
    const EACH: i64 = 200;
    let (_dir, path) = temp_db();
    let first = Arc::new(SqliteBackend::open(&path).unwrap());
    let second = Arc::new(SqliteBackend::open(&path).unwrap());
    let mut handles = Vec::new();
    for i in 0..EACH * 2 {
        let backend = if i % 2 == 0 {
            Arc::clone(&first)
        } else {
            Arc::clone(&second)
        };
        handles.push(tokio::spawn(async move {
            backend.increment(&scope(), "n", 1).await
        }));
    }
    let mut seen = Vec::new();
    for handle in handles {
        seen.push(
            handle
                .await
                .unwrap()
                .expect("increment must not fail under contention"),
        );
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=EACH * 2).collect::<Vec<_>>());
    for backend in [&first, &second] {
        assert_eq!(
            backend.get(&scope(), "n").await.unwrap().as_deref(),
            Some(&b"400"[..])
        );
    }
}

const CHILD_DB_ENV: &str = "WXNOTIFY_STORE_TEST_CHILD_DB";
const CHILD_INCREMENTS: i64 = 300;
const CHILD_MARKER: &str = "CHILD-VALUES:";

/// Waits (up to a minute) until `key` exists in `scope`: how a parent test and the copy of
/// itself it runs as a second process signal each other through the shared file.
pub(crate) async fn wait_for_key(backend: &SqliteBackend, scope: &Scope, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !backend.exists(scope, key).await.unwrap() {
        assert!(Instant::now() < deadline, "timed out waiting for {key:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the ignored test `name` of this test binary as a second process, handing it the
/// database `db` through the environment variable `env`.
pub(crate) fn spawn_child_test(
    name: &str,
    env: &str,
    db: &std::path::Path,
) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits for a child started by [`spawn_child_test`], checks that it succeeded, and returns
/// what it printed after `marker`.
pub(crate) async fn child_report(child: tokio::process::Child, marker: &str) -> String {
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        // libtest prints the test's name on the same line, before the marker.
        .find_map(|line| line.split_once(marker).map(|(_, report)| report.to_owned()))
        .unwrap_or_else(|| panic!("child reported nothing:\n{stdout}"))
}

async fn increments(backend: &Arc<SqliteBackend>, count: i64) -> Vec<i64> {
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let backend = Arc::clone(backend);
            tokio::spawn(async move { backend.increment(&scope(), "n", 1).await })
        })
        .collect();
    let mut seen = Vec::new();
    for handle in handles {
        seen.push(handle.await.unwrap().expect("increment"));
    }
    seen
}

/// The real thing: this test binary runs a second copy of itself (see `cross_process_child`)
/// and both processes increment the same counter at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_processes_increment_atomically() {
    let (_dir, path) = temp_db();
    let backend = Arc::new(SqliteBackend::open(&path).unwrap());
    let child = spawn_child_test("tests::sqlite::cross_process_child", CHILD_DB_ENV, &path);
    wait_for_key(&backend, &scope(), "child-ready").await;
    backend.set(&scope(), "go", b"1").await.unwrap();
    let mut seen = increments(&backend, CHILD_INCREMENTS).await;

    let line = child_report(child, CHILD_MARKER).await;
    seen.extend(line.split(',').map(|n| n.trim().parse::<i64>().unwrap()));
    seen.sort_unstable();
    // Between them the two processes saw every value exactly once.
    assert_eq!(seen, (1..=2 * CHILD_INCREMENTS).collect::<Vec<_>>());
    assert_eq!(
        backend.get(&scope(), "n").await.unwrap(),
        Some((2 * CHILD_INCREMENTS).to_string().into_bytes())
    );
}

/// The other process of `separate_processes_increment_atomically`; does nothing when run
/// directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "helper process, started by separate_processes_increment_atomically"]
async fn cross_process_child() {
    let Some(path) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    let backend = Arc::new(SqliteBackend::open(path).unwrap());
    backend.set(&scope(), "child-ready", b"1").await.unwrap();
    wait_for_key(&backend, &scope(), "go").await;
    let seen = increments(&backend, CHILD_INCREMENTS).await;
    let seen: Vec<String> = seen.iter().map(i64::to_string).collect();
    println!("{CHILD_MARKER}{}", seen.join(","));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_held_past_busy_timeout_is_unavailable() {
    let (_dir, path) = temp_db();
    let timeout = Duration::from_millis(300);
    let backend =
        SqliteBackend::open_with_options(&path, SqliteOptions::default().busy_timeout(timeout))
            .unwrap();
    backend.set(&scope(), "k", b"before").await.unwrap();

    let mut raw = Connection::open(&path).unwrap();
    let tx = raw
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let start = Instant::now();
    let err = backend.set(&scope(), "k", b"during").await.unwrap_err();
    let waited = start.elapsed();
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                backend: "sqlite",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(waited >= timeout, "gave up after {waited:?}");
    assert!(waited < timeout * 10, "kept waiting for {waited:?}");
    assert!(
        matches!(
            backend.increment(&scope(), "n", 1).await,
            Err(StoreError::Unavailable { .. })
        ),
        "atomic ops wait for the write lock too"
    );
    // WAL: readers are not blocked by a writer.
    assert_eq!(
        backend.get(&scope(), "k").await.unwrap().as_deref(),
        Some(&b"before"[..])
    );
    drop(tx);

    backend.set(&scope(), "k", b"after").await.unwrap();
    assert_eq!(
        backend.get(&scope(), "k").await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_lock_released_within_busy_timeout() {
    let (_dir, path) = temp_db();
    let backend = SqliteBackend::open(&path).unwrap();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn({
        let path = path.clone();
        move || {
            let mut raw = Connection::open(path).unwrap();
            let tx = raw
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            tx.execute(
                "INSERT INTO kv VALUES ('tenant', 'bucket', 'n', CAST('10' AS BLOB))",
                [],
            )
            .unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            tx.commit().unwrap();
        }
    });
    locked_rx.recv().unwrap();
    // Must wait for the holder's commit and then build on it.
    assert_eq!(backend.increment(&scope(), "n", 1).await.unwrap(), 11);
    holder.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_pool_serves_many_concurrent_callers() {
    let (_dir, path) = temp_db();
    let backend = Arc::new(
        SqliteBackend::open_with_options(&path, SqliteOptions::default().max_connections(2))
            .unwrap(),
    );
    backend.set(&scope(), "k", b"v").await.unwrap();
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let backend = Arc::clone(&backend);
            tokio::spawn(async move {
                backend.set(&scope(), &format!("k{i}"), b"x").await?;
                backend.get(&scope(), "k").await
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap().unwrap().as_deref(), Some(&b"v"[..]));
    }
    let opened = backend.idle_connections();
    assert!((1..=2).contains(&opened), "{opened} connections");
}

#[tokio::test]
async fn in_memory_instances_are_private_but_clones_share() {
    let a = SqliteBackend::open_in_memory().unwrap();
    let a_clone = a.clone();
    let b = SqliteBackend::open_in_memory().unwrap();
    a.set(&scope(), "k", b"v").await.unwrap();
    assert_eq!(
        a_clone.get(&scope(), "k").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(b.get(&scope(), "k").await.unwrap(), None);
    assert_eq!(a.path(), None);
}

#[track_caller]
fn assert_open_error(result: Result<SqliteBackend, StoreError>, path: &std::path::Path) {
    match result {
        Err(err @ StoreError::Open { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string()),
                "{message:?} does not name {}",
                path.display()
            );
            assert!(std::error::Error::source(&err).is_some());
        }
        other => panic!("expected an Open error, got {other:?}"),
    }
}

#[test]
fn open_fails_with_the_path_when_the_parent_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("kv.sqlite3");
    assert_open_error(SqliteBackend::open(&path), &path);
    assert!(
        !path.parent().unwrap().exists(),
        "must not create directories"
    );
}

#[test]
fn open_fails_on_a_directory_and_on_a_non_database() {
    let dir = tempfile::tempdir().unwrap();
    assert_open_error(SqliteBackend::open(dir.path()), dir.path());

    let path = dir.path().join("junk.sqlite3");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    assert_open_error(SqliteBackend::open(&path), &path);
}

#[test]
fn open_refuses_someone_elses_database() {
    let (_dir, path) = temp_db();
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE kv (id INTEGER PRIMARY KEY, stuff TEXT);")
        .unwrap();
    assert_open_error(SqliteBackend::open(&path), &path);
}

#[test]
fn open_refuses_a_newer_schema() {
    let (_dir, path) = temp_db();
    drop(SqliteBackend::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 2)
        .unwrap();
    match SqliteBackend::open(&path) {
        Err(StoreError::UnsupportedSchema {
            found: 2,
            supported: 1,
            ..
        }) => {}
        other => panic!("expected UnsupportedSchema, got {other:?}"),
    }
}

#[test]
fn two_processes_can_create_the_same_file_at_once() {
    let (_dir, path) = temp_db();
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || SqliteBackend::open(path).map(drop))
        })
        .collect();
    for opener in openers {
        opener.join().unwrap().unwrap();
    }
}

#[tokio::test]
async fn foreign_rows_are_reported_as_corrupt() {
    let (_dir, path) = temp_db();
    let backend = SqliteBackend::open(&path).unwrap();
    let raw = Connection::open(&path).unwrap();
    // A value stored as TEXT rather than BLOB, and a key that is not UTF-8.
    raw.execute(
        "INSERT INTO kv VALUES ('tenant', 'bucket', 'text', 'abc')",
        [],
    )
    .unwrap();
    raw.execute(
        "INSERT INTO kv VALUES ('tenant', 'bucket', CAST(X'FF00' AS TEXT), X'00')",
        [],
    )
    .unwrap();
    assert!(matches!(
        backend.get(&scope(), "text").await,
        Err(StoreError::Corrupt {
            backend: "sqlite",
            ..
        })
    ));
    assert!(matches!(
        backend.list_keys(&scope(), None, 10).await,
        Err(StoreError::Corrupt { .. })
    ));
}
