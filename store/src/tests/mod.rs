//! The conformance suite every backend must pass, plus backend-specific tests.
//!
//! Each suite function takes a fresh, empty backend; [`conformance!`] instantiates the whole
//! suite for one backend, so a new backend needs one (async) fixture function and its name in
//! [`suite!`].

use std::collections::BTreeSet;
use std::sync::Arc;

use tempfile::TempDir;

use crate::{
    CasOutcome, MAX_BATCH_LEN, MAX_KEY_LEN, MAX_LIST_PAGE, MAX_VALUE_LEN, MemoryBackend, Scope,
    SharedBackend, SqliteBackend, StoreError,
};

pub(crate) mod redis;
pub(crate) mod sqlite;

/// A backend under test and whatever must outlive it.
struct Fixture {
    backend: SharedBackend,
    _dir: Option<TempDir>,
    /// Declared after `backend`, so the backend disconnects before the server may stop.
    _server: Option<Arc<redis::RedisServer>>,
}

async fn memory() -> Fixture {
    Fixture {
        backend: Arc::new(MemoryBackend::new()),
        _dir: None,
        _server: None,
    }
}

async fn sqlite_file() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteBackend::open(dir.path().join("kv.sqlite3")).expect("open sqlite");
    Fixture {
        backend: Arc::new(backend),
        _dir: Some(dir),
        _server: None,
    }
}

async fn sqlite_in_memory() -> Fixture {
    Fixture {
        backend: Arc::new(SqliteBackend::open_in_memory().expect("open in-memory sqlite")),
        _dir: None,
        _server: None,
    }
}

/// A Redis backend on the redis-server shared by the tests running at the time, with a key
/// prefix of its own so that tests cannot see each other's data.
async fn redis_shared() -> Fixture {
    let server = redis::shared_server();
    Fixture {
        backend: Arc::new(server.backend().await),
        _dir: None,
        _server: Some(server),
    }
}

macro_rules! conformance {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                // Multi-threaded, so that the concurrency tests really run in parallel.
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let fixture = super::$backend().await;
                    super::$test(&fixture.backend).await;
                }
            )*
        }
    };
}

macro_rules! suite {
    ($($backend:ident),*) => {
        $(
            conformance!($backend:
                round_trip,
                tenant_isolation,
                separators_cannot_escape_scope,
                list_keys_pages,
                list_keys_clamps_limit,
                increment_counts,
                increment_rejects_non_integers,
                increment_overflow,
                concurrent_increments,
                compare_and_swap,
                concurrent_compare_and_swap,
                batch_ops,
                batch_is_all_or_nothing_on_invalid_input,
                size_limits,
            );
        )*
    };
}

suite!(memory, sqlite_file, sqlite_in_memory, redis_shared);

fn scope(tenant: &str, bucket: &str) -> Scope {
    Scope::new(tenant, bucket)
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|&k| k.to_owned()).collect()
}

#[track_caller]
fn assert_too_large<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_what: &str) {
    match result {
        Err(StoreError::TooLarge { what, .. }) if what == expected_what => {}
        other => panic!("expected TooLarge {{ what: {expected_what:?} }}, got {other:?}"),
    }
}

/// Reads every key of `scope` through `list_keys`, page by page.
async fn all_keys(backend: &SharedBackend, scope: &Scope, limit: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let (page, next) = backend
            .list_keys(scope, cursor.as_deref(), limit)
            .await
            .expect("list_keys");
        assert!(page.len() <= limit.max(1), "page larger than limit");
        all.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
    panic!("list_keys never finished");
}

async fn round_trip(backend: &SharedBackend) {
    let s = scope("tenant", "bucket");
    assert!(!backend.name().is_empty());
    assert_eq!(backend.get(&s, "k").await.unwrap(), None);
    assert!(!backend.exists(&s, "k").await.unwrap());

    backend.set(&s, "k", b"v1").await.unwrap();
    assert_eq!(
        backend.get(&s, "k").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    assert!(backend.exists(&s, "k").await.unwrap());

    backend.set(&s, "k", b"v2").await.unwrap();
    assert_eq!(
        backend.get(&s, "k").await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );

    // Arbitrary bytes survive, and an empty value is present, not absent.
    let binary: Vec<u8> = (0..=255u8).collect();
    backend.set(&s, "bin", &binary).await.unwrap();
    assert_eq!(backend.get(&s, "bin").await.unwrap(), Some(binary));
    backend.set(&s, "empty", b"").await.unwrap();
    assert_eq!(backend.get(&s, "empty").await.unwrap(), Some(Vec::new()));
    assert!(backend.exists(&s, "empty").await.unwrap());
    // So is the empty key.
    backend.set(&s, "", b"root").await.unwrap();
    assert_eq!(
        backend.get(&s, "").await.unwrap().as_deref(),
        Some(&b"root"[..])
    );

    backend.delete(&s, "k").await.unwrap();
    assert_eq!(backend.get(&s, "k").await.unwrap(), None);
    assert!(!backend.exists(&s, "k").await.unwrap());
    // Deleting an absent key is not an error.
    backend.delete(&s, "k").await.unwrap();
    assert!(backend.exists(&s, "bin").await.unwrap());
}

async fn tenant_isolation(backend: &SharedBackend) {
    let a = scope("tenant-a", "bucket");
    let b = scope("tenant-b", "bucket");
    let a2 = scope("tenant-a", "other-bucket");

    backend.set(&a, "k", b"a").await.unwrap();
    backend.set(&b, "k", b"b").await.unwrap();
    assert_eq!(
        backend.get(&a, "k").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(
        backend.get(&b, "k").await.unwrap().as_deref(),
        Some(&b"b"[..])
    );
    assert_eq!(backend.get(&a2, "k").await.unwrap(), None);
    assert!(!backend.exists(&a2, "k").await.unwrap());

    backend.set(&b, "only-b", b"x").await.unwrap();
    assert_eq!(all_keys(backend, &a, 10).await, keys(&["k"]));
    assert_eq!(all_keys(backend, &b, 10).await, keys(&["k", "only-b"]));
    assert!(all_keys(backend, &a2, 10).await.is_empty());

    assert_eq!(backend.increment(&a, "n", 5).await.unwrap(), 5);
    assert_eq!(backend.increment(&b, "n", 1).await.unwrap(), 1);
    assert_eq!(
        backend
            .compare_and_swap(&b, "k", Some(b"a"), b"stolen")
            .await
            .unwrap(),
        CasOutcome::Conflict {
            current: Some(b"b".to_vec())
        }
    );
    assert_eq!(
        backend.get_many(&b, &keys(&["k", "n"])).await.unwrap(),
        vec![Some(b"b".to_vec()), Some(b"1".to_vec())]
    );

    backend.delete(&a, "k").await.unwrap();
    assert_eq!(
        backend.get(&b, "k").await.unwrap().as_deref(),
        Some(&b"b"[..])
    );
    backend.delete_many(&b, &keys(&["n"])).await.unwrap();
    assert_eq!(
        backend.get(&a, "n").await.unwrap().as_deref(),
        Some(&b"5"[..])
    );
}

/// Scopes and keys whose concatenation (with any separator) would coincide stay distinct.
async fn separators_cannot_escape_scope(backend: &SharedBackend) {
    for sep in ["/", ":", "\0", "\u{1f}", "|", "."] {
        let cases = [
            (scope("a", &format!("b{sep}c")), "k".to_owned()),
            (scope(&format!("a{sep}b"), "c"), "k".to_owned()),
            (scope("a", "b"), format!("c{sep}k")),
            (scope("a", ""), format!("b{sep}c{sep}k")),
            (scope("", "a"), format!("b{sep}c{sep}k")),
            (scope(&format!("a{sep}b{sep}c"), ""), "k".to_owned()),
            (scope("a", "b"), format!("{sep}c{sep}k")),
        ];
        for (i, (s, key)) in cases.iter().enumerate() {
            backend.set(s, key, i.to_string().as_bytes()).await.unwrap();
        }
        for (i, (s, key)) in cases.iter().enumerate() {
            assert_eq!(
                backend.get(s, key).await.unwrap(),
                Some(i.to_string().into_bytes()),
                "separator {sep:?}, case {i}"
            );
        }
        // Each scope lists only its own keys.
        for (s, _) in &cases {
            let expected: BTreeSet<String> = cases
                .iter()
                .filter(|(other, _)| other == s)
                .map(|(_, k)| k.clone())
                .collect();
            let listed: BTreeSet<String> = all_keys(backend, s, 3).await.into_iter().collect();
            assert_eq!(listed, expected, "separator {sep:?}, scope {s:?}");
        }
        for (s, key) in &cases {
            backend.delete(s, key).await.unwrap();
        }
    }

    // A NUL inside a key is part of the key, not a terminator.
    let s = scope("t", "b");
    backend.set(&s, "k", b"plain").await.unwrap();
    backend.set(&s, "k\0suffix", b"nul").await.unwrap();
    assert_eq!(
        backend.get(&s, "k").await.unwrap().as_deref(),
        Some(&b"plain"[..])
    );
    assert_eq!(
        backend.get(&s, "k\0suffix").await.unwrap().as_deref(),
        Some(&b"nul"[..])
    );
    assert_eq!(all_keys(backend, &s, 10).await, keys(&["k", "k\0suffix"]));
    backend.delete(&s, "k\0suffix").await.unwrap();
    assert_eq!(
        backend.get(&s, "k").await.unwrap().as_deref(),
        Some(&b"plain"[..])
    );
}

async fn list_keys_pages(backend: &SharedBackend) {
    let s = scope("t", "b");
    assert_eq!(
        backend.list_keys(&s, None, 10).await.unwrap(),
        (Vec::new(), None)
    );

    // Inserted out of order; includes non-ASCII keys, which sort by their UTF-8 bytes.
    let mut expected: Vec<String> = (0..23).rev().map(|i| format!("key-{i:02}")).collect();
    expected.extend(keys(&["é", "z", "Z", "a", "ä", "\u{10348}", "key-05x"]));
    for key in &expected {
        backend.set(&s, key, b"v").await.unwrap();
    }
    // Noise in neighbouring scopes must not show up.
    backend
        .set(&scope("t", "b2"), "key-00a", b"v")
        .await
        .unwrap();
    backend
        .set(&scope("t2", "b"), "key-00a", b"v")
        .await
        .unwrap();
    expected.sort();

    let (page1, next1) = backend.list_keys(&s, None, 10).await.unwrap();
    assert_eq!(page1, expected[..10]);
    assert_eq!(next1.as_deref(), Some(expected[9].as_str()));
    let (page2, next2) = backend.list_keys(&s, next1.as_deref(), 10).await.unwrap();
    assert_eq!(page2, expected[10..20]);
    assert_eq!(next2.as_deref(), Some(expected[19].as_str()));
    let (page3, next3) = backend.list_keys(&s, next2.as_deref(), 10).await.unwrap();
    assert_eq!(page3, expected[20..]);
    assert_eq!(next3, None, "the last page has no cursor");

    // A page that ends exactly at the last key reports exhaustion at once.
    let (page, next) = backend.list_keys(&s, None, expected.len()).await.unwrap();
    assert_eq!(page, expected);
    assert_eq!(next, None);

    // The cursor need not be an existing key; listing is strictly after it.
    let (page, _) = backend.list_keys(&s, Some("key-05"), 2).await.unwrap();
    assert_eq!(page, keys(&["key-05x", "key-06"]));
    let (page, next) = backend.list_keys(&s, Some("\u{10ffff}"), 5).await.unwrap();
    assert_eq!((page, next), (Vec::new(), None));

    for limit in [1, 3, 7, 29, 100] {
        assert_eq!(
            all_keys(backend, &s, limit).await,
            expected,
            "limit {limit}"
        );
    }
}

async fn list_keys_clamps_limit(backend: &SharedBackend) {
    let s = scope("t", "b");
    let all: Vec<String> = (0..=MAX_LIST_PAGE).map(|i| format!("{i:05}")).collect();
    for chunk in all.chunks(MAX_BATCH_LEN) {
        let entries: Vec<(String, Vec<u8>)> =
            chunk.iter().map(|k| (k.clone(), b"v".to_vec())).collect();
        backend.set_many(&s, &entries).await.unwrap();
    }
    // Zero would make no progress: it is treated as one.
    let (page, next) = backend.list_keys(&s, None, 0).await.unwrap();
    assert_eq!(page, all[..1]);
    assert_eq!(next.as_deref(), Some(all[0].as_str()));
    // Huge limits are capped at MAX_LIST_PAGE.
    let (page, next) = backend.list_keys(&s, None, usize::MAX).await.unwrap();
    assert_eq!(page, all[..MAX_LIST_PAGE]);
    assert_eq!(next.as_deref(), Some(all[MAX_LIST_PAGE - 1].as_str()));
    let (page, next) = backend
        .list_keys(&s, next.as_deref(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(page, all[MAX_LIST_PAGE..]);
    assert_eq!(next, None);
}

async fn increment_counts(backend: &SharedBackend) {
    let s = scope("t", "b");
    assert_eq!(backend.increment(&s, "n", 5).await.unwrap(), 5);
    assert_eq!(
        backend.get(&s, "n").await.unwrap().as_deref(),
        Some(&b"5"[..])
    );
    assert_eq!(backend.increment(&s, "n", -8).await.unwrap(), -3);
    assert_eq!(
        backend.get(&s, "n").await.unwrap().as_deref(),
        Some(&b"-3"[..])
    );
    assert_eq!(backend.increment(&s, "n", 0).await.unwrap(), -3);

    // A missing key counts as zero, also for negative deltas.
    assert_eq!(backend.increment(&s, "m", -2).await.unwrap(), -2);
    assert_eq!(
        backend.increment(&s, "min", i64::MIN).await.unwrap(),
        i64::MIN
    );
    assert_eq!(
        backend.get(&s, "min").await.unwrap(),
        Some(i64::MIN.to_string().into_bytes())
    );

    // Counters are plain values: `set` can seed them.
    backend.set(&s, "seeded", b"41").await.unwrap();
    assert_eq!(backend.increment(&s, "seeded", 1).await.unwrap(), 42);
    assert_eq!(
        backend.get(&s, "seeded").await.unwrap().as_deref(),
        Some(&b"42"[..])
    );
    backend.set(&s, "plus", b"+7").await.unwrap();
    assert_eq!(backend.increment(&s, "plus", 1).await.unwrap(), 8);
}

async fn increment_rejects_non_integers(backend: &SharedBackend) {
    let s = scope("t", "b");
    let bad: [&[u8]; 9] = [
        b"abc",
        b"",
        b" 1",
        b"1 ",
        b"1.5",
        b"0x10",
        b"--1",
        b"\xff\xfe",
        b"99999999999999999999",
    ];
    for value in bad {
        backend.set(&s, "n", value).await.unwrap();
        match backend.increment(&s, "n", 1).await {
            Err(StoreError::NotAnInteger { key }) => assert_eq!(key, "n"),
            other => panic!("{value:?}: expected NotAnInteger, got {other:?}"),
        }
        // The failed increment wrote nothing.
        assert_eq!(backend.get(&s, "n").await.unwrap().as_deref(), Some(value));
    }
}

async fn increment_overflow(backend: &SharedBackend) {
    let s = scope("t", "b");
    backend
        .set(&s, "max", i64::MAX.to_string().as_bytes())
        .await
        .unwrap();
    match backend.increment(&s, "max", 1).await {
        Err(StoreError::Overflow { key }) => assert_eq!(key, "max"),
        other => panic!("expected Overflow, got {other:?}"),
    }
    assert_eq!(
        backend.get(&s, "max").await.unwrap(),
        Some(i64::MAX.to_string().into_bytes())
    );
    assert_eq!(
        backend.increment(&s, "max", -1).await.unwrap(),
        i64::MAX - 1
    );

    assert_eq!(
        backend.increment(&s, "min", i64::MIN).await.unwrap(),
        i64::MIN
    );
    assert!(matches!(
        backend.increment(&s, "min", -1).await,
        Err(StoreError::Overflow { .. })
    ));
    assert_eq!(
        backend.get(&s, "min").await.unwrap(),
        Some(i64::MIN.to_string().into_bytes())
    );
}

async fn concurrent_increments(backend: &SharedBackend) {
    const TASKS: i64 = 40;
    const EACH: i64 = 5;
    let s = scope("t", "b");
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let (backend, s) = (Arc::clone(backend), s.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..EACH {
                    seen.push(backend.increment(&s, "n", 1).await.expect("increment"));
                }
                seen
            })
        })
        .collect();
    let mut seen = Vec::new();
    for handle in handles {
        seen.extend(handle.await.unwrap());
    }
    seen.sort_unstable();
    // Every increment saw a distinct value: none was lost or applied twice.
    assert_eq!(seen, (1..=TASKS * EACH).collect::<Vec<_>>());
    assert_eq!(
        backend.get(&s, "n").await.unwrap(),
        Some((TASKS * EACH).to_string().into_bytes())
    );
}

async fn compare_and_swap(backend: &SharedBackend) {
    let s = scope("t", "b");
    // Absent → swap.
    assert_eq!(
        backend
            .compare_and_swap(&s, "k", None, b"v1")
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(
        backend.get(&s, "k").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    // Expecting absence when present → conflict with the current value.
    assert_eq!(
        backend
            .compare_and_swap(&s, "k", None, b"v2")
            .await
            .unwrap(),
        CasOutcome::Conflict {
            current: Some(b"v1".to_vec())
        }
    );
    // Stale expectation → conflict, nothing written.
    assert_eq!(
        backend
            .compare_and_swap(&s, "k", Some(b"v0"), b"v2")
            .await
            .unwrap(),
        CasOutcome::Conflict {
            current: Some(b"v1".to_vec())
        }
    );
    assert_eq!(
        backend.get(&s, "k").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    // Matching expectation → swap.
    assert_eq!(
        backend
            .compare_and_swap(&s, "k", Some(b"v1"), b"v2")
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(
        backend.get(&s, "k").await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    // Expecting a value of an absent key → conflict reporting absence.
    backend.delete(&s, "k").await.unwrap();
    assert_eq!(
        backend
            .compare_and_swap(&s, "k", Some(b"v2"), b"v3")
            .await
            .unwrap(),
        CasOutcome::Conflict { current: None }
    );
    assert!(!backend.exists(&s, "k").await.unwrap());
    // An empty value is not absence.
    backend.set(&s, "e", b"").await.unwrap();
    assert_eq!(
        backend.compare_and_swap(&s, "e", None, b"x").await.unwrap(),
        CasOutcome::Conflict {
            current: Some(Vec::new())
        }
    );
    assert_eq!(
        backend
            .compare_and_swap(&s, "e", Some(b""), b"x")
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    // Prefixes do not match.
    assert_eq!(
        backend
            .compare_and_swap(&s, "e", Some(b"xx"), b"y")
            .await
            .unwrap(),
        CasOutcome::Conflict {
            current: Some(b"x".to_vec())
        }
    );
}

async fn concurrent_compare_and_swap(backend: &SharedBackend) {
    const TASKS: u64 = 32;
    let s = scope("t", "b");
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let (backend, s) = (Arc::clone(backend), s.clone());
            tokio::spawn(async move {
                let mut current = backend.get(&s, "counter").await.expect("get");
                let mut attempts = 0u64;
                loop {
                    attempts += 1;
                    assert!(attempts < 10_000, "CAS never succeeded");
                    let n: u64 = current
                        .as_deref()
                        .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                    // Widen the window between read and write so that tasks really collide.
                    tokio::task::yield_now().await;
                    let next = (n + 1).to_string();
                    match backend
                        .compare_and_swap(&s, "counter", current.as_deref(), next.as_bytes())
                        .await
                        .expect("compare_and_swap")
                    {
                        CasOutcome::Swapped => return attempts,
                        CasOutcome::Conflict { current: found } => current = found,
                    }
                }
            })
        })
        .collect();
    let mut attempts = 0;
    for handle in handles {
        attempts += handle.await.unwrap();
    }
    assert!(attempts >= TASKS);
    assert_eq!(
        backend.get(&s, "counter").await.unwrap(),
        Some(TASKS.to_string().into_bytes())
    );
}

async fn batch_ops(backend: &SharedBackend) {
    let s = scope("t", "b");
    assert_eq!(
        backend.get_many(&s, &[]).await.unwrap(),
        Vec::<Option<Vec<u8>>>::new()
    );
    backend.set_many(&s, &[]).await.unwrap();
    backend.delete_many(&s, &[]).await.unwrap();

    backend
        .set_many(
            &s,
            &[
                ("a".to_owned(), b"1".to_vec()),
                ("b".to_owned(), b"2".to_vec()),
                ("c".to_owned(), Vec::new()),
                // A repeated key: the last entry wins.
                ("a".to_owned(), b"3".to_vec()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        backend
            .get_many(&s, &keys(&["c", "missing", "a", "b", "a"]))
            .await
            .unwrap(),
        vec![
            Some(Vec::new()),
            None,
            Some(b"3".to_vec()),
            Some(b"2".to_vec()),
            Some(b"3".to_vec()),
        ]
    );
    // Nothing leaked into another scope.
    assert_eq!(
        backend
            .get_many(&scope("t", "other"), &keys(&["a", "b"]))
            .await
            .unwrap(),
        vec![None, None]
    );

    backend
        .delete_many(&s, &keys(&["a", "missing", "c"]))
        .await
        .unwrap();
    assert_eq!(
        backend.get_many(&s, &keys(&["a", "b", "c"])).await.unwrap(),
        vec![None, Some(b"2".to_vec()), None]
    );
    assert_eq!(all_keys(backend, &s, 10).await, keys(&["b"]));

    // Exactly MAX_BATCH_LEN is allowed.
    let many: Vec<(String, Vec<u8>)> = (0..MAX_BATCH_LEN)
        .map(|i| (format!("k{i}"), i.to_string().into_bytes()))
        .collect();
    backend.set_many(&s, &many).await.unwrap();
    let names: Vec<String> = many.iter().map(|(k, _)| k.clone()).collect();
    let values = backend.get_many(&s, &names).await.unwrap();
    assert_eq!(values.len(), MAX_BATCH_LEN);
    assert_eq!(
        values[MAX_BATCH_LEN - 1],
        Some((MAX_BATCH_LEN - 1).to_string().into_bytes())
    );
    backend.delete_many(&s, &names).await.unwrap();
    assert_eq!(all_keys(backend, &s, 10).await, keys(&["b"]));
}

async fn batch_is_all_or_nothing_on_invalid_input(backend: &SharedBackend) {
    let s = scope("t", "b");
    backend.set(&s, "keep", b"old").await.unwrap();
    let entries = vec![
        ("keep".to_owned(), b"new".to_vec()),
        ("fresh".to_owned(), b"x".to_vec()),
        ("huge".to_owned(), vec![0; MAX_VALUE_LEN + 1]),
    ];
    assert_too_large(backend.set_many(&s, &entries).await, "value");
    assert_eq!(
        backend.get(&s, "keep").await.unwrap().as_deref(),
        Some(&b"old"[..])
    );
    assert!(!backend.exists(&s, "fresh").await.unwrap());

    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    assert_too_large(
        backend
            .delete_many(&s, &[String::from("keep"), long_key])
            .await,
        "key",
    );
    assert!(backend.exists(&s, "keep").await.unwrap());

    let too_many: Vec<(String, Vec<u8>)> = (0..=MAX_BATCH_LEN)
        .map(|i| (format!("k{i}"), Vec::new()))
        .collect();
    assert_too_large(backend.set_many(&s, &too_many).await, "batch");
    assert!(!backend.exists(&s, "k0").await.unwrap());
    let too_many_keys: Vec<String> = too_many.into_iter().map(|(k, _)| k).collect();
    assert_too_large(backend.get_many(&s, &too_many_keys).await, "batch");
    assert_too_large(backend.delete_many(&s, &too_many_keys).await, "batch");
}

async fn size_limits(backend: &SharedBackend) {
    let s = scope("t", "b");
    let max_key = "k".repeat(MAX_KEY_LEN);
    // The limit counts bytes, not characters: 512 two-byte characters fit, 513 do not.
    let max_multibyte_key = "é".repeat(MAX_KEY_LEN / 2);
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let long_multibyte_key = "é".repeat(MAX_KEY_LEN / 2 + 1);
    let max_value = vec![7u8; MAX_VALUE_LEN];
    let long_value = vec![7u8; MAX_VALUE_LEN + 1];

    backend.set(&s, &max_key, &max_value).await.unwrap();
    assert_eq!(
        backend.get(&s, &max_key).await.unwrap(),
        Some(max_value.clone())
    );
    backend.set(&s, &max_multibyte_key, b"v").await.unwrap();
    assert!(backend.exists(&s, &max_multibyte_key).await.unwrap());
    let (_, next) = backend.list_keys(&s, Some(&max_key), 10).await.unwrap();
    assert_eq!(next, None);

    for key in [&long_key, &long_multibyte_key] {
        assert_too_large(backend.get(&s, key).await, "key");
        assert_too_large(backend.set(&s, key, b"v").await, "key");
        assert_too_large(backend.delete(&s, key).await, "key");
        assert_too_large(backend.exists(&s, key).await, "key");
        assert_too_large(backend.increment(&s, key, 1).await, "key");
        assert_too_large(backend.compare_and_swap(&s, key, None, b"v").await, "key");
        assert_too_large(backend.get_many(&s, std::slice::from_ref(key)).await, "key");
        assert_too_large(
            backend.delete_many(&s, std::slice::from_ref(key)).await,
            "key",
        );
        assert_too_large(
            backend.set_many(&s, &[(key.clone(), Vec::new())]).await,
            "key",
        );
        assert_too_large(backend.list_keys(&s, Some(key), 10).await, "cursor");
    }
    assert_too_large(backend.set(&s, "k", &long_value).await, "value");
    assert_too_large(
        backend.compare_and_swap(&s, "k", None, &long_value).await,
        "value",
    );
    assert!(!backend.exists(&s, "k").await.unwrap());
    // The limit error says which limit.
    match backend.set(&s, "k", &long_value).await {
        Err(StoreError::TooLarge { limit, actual, .. }) => {
            assert_eq!((limit, actual), (MAX_VALUE_LEN, MAX_VALUE_LEN + 1));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}
