//! Tests that only make sense for the Redis backend: several hosts on one server, reconnection,
//! credentials in URLs, the key layout, and the integer rules of the server-side increment.
//!
//! Every test runs against a `redis-server` that the tests start themselves, on a free port of
//! 127.0.0.1, without persistence. Tests that do not stop or reconfigure their server share one
//! (see [`shared_server`]) and keep apart through key prefixes; the server is killed when the
//! last test using it ends. Without `redis-server` installed these tests fail, saying how to
//! install it: silently skipping them would let the backend go untested.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis::redact;
pub(crate) use crate::testing::{RedisServer, chain, free_port, shared_server, unique_prefix};
use crate::{
    CasOutcome, KeyValueBackend, RedisBackend, RedisOptions, Scope, StoreError, incremented,
};

fn scope() -> Scope {
    Scope::new("tenant", "bucket")
}

#[test]
fn redaction_removes_every_password() {
    let cases = [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (
            "redis://:hunter2@10.0.0.5:6379",
            "redis://:***@10.0.0.5:6379",
        ),
        ("redis://alice:hunter2@host/1", "redis://alice:***@host/1"),
        ("redis://:p%40ss%3Aword@host", "redis://:***@host"),
        // A username without a password is not a secret.
        ("redis://alice@host", "redis://alice@host"),
        (
            "redis+unix:///run/redis.sock?db=2&user=alice&pass=hunter2",
            "redis+unix:///run/redis.sock?db=2&user=alice&pass=***",
        ),
        // Not even parseable (port out of range): only what follows the last `@` survives.
        ("redis://:hunter2@host:99999/", "redis://***@host:99999/"),
        ("redis://:hun@ter2@host:99999", "redis://***@host:99999"),
        ("redis://host:99999?pass=hunter2", "redis://host:99999"),
    ];
    for (url, expected) in cases {
        let redacted = redact(url);
        assert_eq!(redacted, expected, "{url}");
        assert!(!redacted.contains("hunter2") && !redacted.contains("ter2"));
    }
}

#[tokio::test]
async fn connect_errors_name_the_url_without_the_password() {
    // Nothing listens on a port we just released.
    let port = free_port();
    let url = format!("redis://alice:hunter2@127.0.0.1:{port}/3");
    let options = RedisOptions::default().reconnect_retries(0);
    let err = RedisBackend::connect_with_options(&url, options)
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(
        matches!(&err, StoreError::Connect { backend: "redis", url, .. }
            if url == &format!("redis://alice:***@127.0.0.1:{port}/3")),
        "{text}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    for bad in [
        "http://127.0.0.1/",
        "not a url",
        "redis://:hunter2@host:99999/",
    ] {
        let err = RedisBackend::connect_with_options(bad, options)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{bad}: {err:?}");
        assert!(!chain(&err).contains("hunter2"), "{}", chain(&err));
    }
}

/// With a password-protected server: wrong credentials fail to connect, right ones work, and
/// neither errors nor `Debug` ever show the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_is_used_and_never_shown() {
    const PASSWORD: &str = "s3cret-Pa55";
    let server = RedisServer::start(Some(PASSWORD));
    let port = server.port();

    let wrong = format!("redis://:wrong-{PASSWORD}@127.0.0.1:{port}/");
    let err =
        RedisBackend::connect_with_options(&wrong, RedisOptions::default().reconnect_retries(0))
            .await
            .unwrap_err();
    let text = chain(&err);
    assert!(matches!(err, StoreError::Connect { .. }), "{text}");
    assert!(text.contains(&format!(":***@127.0.0.1:{port}")), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");

    let backend = server.backend().await;
    assert!(!format!("{backend:?}").contains(PASSWORD));
    assert!(format!("{backend:?}").contains(&format!("127.0.0.1:{port}")));
    backend.set(&scope(), "k", b"v").await.unwrap();
    assert_eq!(
        backend.get(&scope(), "k").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );

    // Errors of later requests name the server too, still without the password.
    drop(server);
    let err = backend.get(&scope(), "k").await.unwrap_err();
    let text = chain(&err);
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                backend: "redis",
                ..
            }
        ),
        "{text}"
    );
    assert_eq!(err.to_string(), "redis store is unavailable");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

/// The layout promised in the module docs, looked at with a plain Redis client.
#[tokio::test]
async fn layout_is_one_hash_per_scope() {
    let server = shared_server();
    let prefix = unique_prefix();
    let backend = server.backend_with_prefix(&prefix).await;
    let s = Scope::new("ténant", "b:1");
    backend.set(&s, "k", b"v").await.unwrap();
    backend.set(&s, "", b"empty key").await.unwrap();
    let name = format!("{prefix}wxnotify:kv:7:ténant:3:b:1");
    assert_eq!(backend.hash_name(&s), name);

    let mut raw = server.raw().await;
    let mut stored: Vec<(Vec<u8>, Vec<u8>)> = ::redis::cmd("HGETALL")
        .arg(&name)
        .query_async(&mut raw)
        .await
        .unwrap();
    stored.sort();
    assert_eq!(
        stored,
        vec![
            (b"".to_vec(), b"empty key".to_vec()),
            (b"k".to_vec(), b"v".to_vec())
        ]
    );

    // Deleting the last key removes the hash itself.
    backend
        .delete_many(&s, &[String::new(), "k".to_owned()])
        .await
        .unwrap();
    let exists: bool = ::redis::cmd("EXISTS")
        .arg(&name)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!exists);
}

/// Two deployments on one server, told apart by their prefixes.
#[tokio::test]
async fn prefixes_separate_deployments() {
    let server = shared_server();
    let base = unique_prefix();
    let plain = server.backend_with_prefix(&base).await;
    let staging = server.backend_with_prefix(&format!("{base}staging:")).await;
    plain.set(&scope(), "k", b"plain").await.unwrap();
    staging.set(&scope(), "k", b"staging").await.unwrap();
    staging.increment(&scope(), "n", 1).await.unwrap();
    assert_eq!(
        plain.get(&scope(), "k").await.unwrap().as_deref(),
        Some(&b"plain"[..])
    );
    assert_eq!(plain.get(&scope(), "n").await.unwrap(), None);
    assert_eq!(
        plain.list_keys(&scope(), None, 10).await.unwrap().0,
        vec!["k".to_owned()]
    );
}

/// Data this crate did not write is reported, not misread.
#[tokio::test]
async fn foreign_data_is_reported_as_corrupt() {
    let server = shared_server();
    let backend = server.backend().await;
    let mut raw = server.raw().await;

    // A string where the scope's hash belongs.
    let strings = Scope::new("tenant", "strings");
    let () = ::redis::cmd("SET")
        .arg(backend.hash_name(&strings))
        .arg("not a hash")
        .query_async(&mut raw)
        .await
        .unwrap();
    for result in [
        backend.get(&strings, "k").await.map(drop),
        backend.set(&strings, "k", b"v").await,
        backend.increment(&strings, "k", 1).await.map(drop),
        backend
            .compare_and_swap(&strings, "k", None, b"v")
            .await
            .map(drop),
        backend.list_keys(&strings, None, 10).await.map(drop),
    ] {
        assert!(
            matches!(
                result,
                Err(StoreError::Corrupt {
                    backend: "redis",
                    ..
                })
            ),
            "{result:?}"
        );
    }

    // A field name that is not UTF-8.
    let () = ::redis::cmd("HSET")
        .arg(backend.hash_name(&scope()))
        .arg(&b"\xff\xfe"[..])
        .arg("v")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(matches!(
        backend.list_keys(&scope(), None, 10).await,
        Err(StoreError::Corrupt { .. })
    ));
}

/// The server-side increment follows exactly the rules of `crate::incremented`, which the other
/// backends use: the same values are integers, the same sums overflow, and results are stored
/// in the same form.
#[tokio::test]
async fn increment_follows_the_shared_integer_rules() {
    let server = shared_server();
    let backend = server.backend().await;
    let s = scope();

    let stored: Vec<Option<Vec<u8>>> = [
        "0",
        "+0",
        "-0",
        "00",
        "007",
        "-007",
        "+7",
        "42",
        "-42",
        "999999999",
        "1000000000",
        "-999999999",
        "-1000000000",
        "1999999999",
        "123456789012345678",
        "9223372036854775807",
        "-9223372036854775808",
        "+9223372036854775807",
        "0009223372036854775807",
        "-0009223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999",
        "",
        "+",
        "-",
        "+-1",
        " 1",
        "1 ",
        "1e3",
        "1.0",
        "0x10",
        "١",
        "１",
        "1\0",
    ]
    .iter()
    .map(|value| Some(value.as_bytes().to_vec()))
    .chain([None])
    .collect();
    let deltas = [
        0,
        1,
        -1,
        7,
        999_999_999,
        1_000_000_000,
        -1_000_000_000,
        -1_000_000_001,
        i64::MAX,
        i64::MIN,
        i64::MAX - 1,
        i64::MIN + 1,
    ];
    let mut cases: Vec<(Option<Vec<u8>>, i64)> = stored
        .iter()
        .flat_map(|value| deltas.iter().map(move |&delta| (value.clone(), delta)))
        .collect();
    // And random pairs, spread over every magnitude (xorshift: no need for a rand dependency).
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Reinterpreting the bits is the point: any i64, shifted to any magnitude.
        (state as i64) >> (state % 64)
    };
    for _ in 0..600 {
        cases.push((Some(next().to_string().into_bytes()), next()));
    }

    for (value, delta) in cases {
        match &value {
            Some(value) => backend.set(&s, "n", value).await.unwrap(),
            None => backend.delete(&s, "n").await.unwrap(),
        }
        let expected = incremented("n", value.as_deref(), delta);
        let actual = backend.increment(&s, "n", delta).await;
        let after = backend.get(&s, "n").await.unwrap();
        let context = format!(
            "{:?} + {delta}",
            value.as_deref().map(String::from_utf8_lossy)
        );
        match (expected, actual) {
            (Ok(expected), Ok(actual)) => {
                assert_eq!(actual, expected, "{context}");
                assert_eq!(after, Some(expected.to_string().into_bytes()), "{context}");
            }
            (Err(StoreError::NotAnInteger { .. }), Err(StoreError::NotAnInteger { key }))
            | (Err(StoreError::Overflow { .. }), Err(StoreError::Overflow { key })) => {
                assert_eq!(key, "n");
                assert_eq!(after, value, "{context}: a failed increment wrote");
            }
            (expected, actual) => panic!("{context}: expected {expected:?}, got {actual:?}"),
        }
    }
}

/// Two hosts, each with its own connection, increment one counter at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_increment_atomically() {
    const EACH: i64 = 200;
    let server = shared_server();
    let prefix = unique_prefix();
    let hosts = [
        Arc::new(server.backend_with_prefix(&prefix).await),
        Arc::new(server.backend_with_prefix(&prefix).await),
    ];
    let handles: Vec<_> = (0..EACH * 2)
        .map(|i| {
            let backend = Arc::clone(&hosts[usize::from(i % 2 == 1)]);
            tokio::spawn(async move { backend.increment(&scope(), "n", 1).await })
        })
        .collect();
    let mut seen = Vec::new();
    for handle in handles {
        seen.push(handle.await.unwrap().expect("increment"));
    }
    seen.sort_unstable();
    // Every increment saw a distinct value: none was lost or applied twice.
    assert_eq!(seen, (1..=EACH * 2).collect::<Vec<_>>());
    for host in &hosts {
        assert_eq!(
            host.get(&scope(), "n").await.unwrap().as_deref(),
            Some(&b"400"[..])
        );
    }
}

/// Two hosts race compare-and-swap loops on one counter; every task's swap lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_race_compare_and_swap() {
    const TASKS: u64 = 40;
    let server = shared_server();
    let prefix = unique_prefix();
    let hosts = [
        Arc::new(server.backend_with_prefix(&prefix).await),
        Arc::new(server.backend_with_prefix(&prefix).await),
    ];
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let backend = Arc::clone(&hosts[usize::from(i % 2 == 1)]);
            tokio::spawn(async move {
                let mut current = backend.get(&scope(), "counter").await.expect("get");
                let mut conflicts = 0u64;
                loop {
                    assert!(conflicts < 10_000, "CAS never succeeded");
                    let n: u64 = current
                        .as_deref()
                        .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                    tokio::task::yield_now().await;
                    match backend
                        .compare_and_swap(
                            &scope(),
                            "counter",
                            current.as_deref(),
                            (n + 1).to_string().as_bytes(),
                        )
                        .await
                        .expect("compare_and_swap")
                    {
                        CasOutcome::Swapped => return conflicts,
                        CasOutcome::Conflict { current: found } => {
                            conflicts += 1;
                            current = found;
                        }
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    for host in &hosts {
        assert_eq!(
            host.get(&scope(), "counter").await.unwrap(),
            Some(TASKS.to_string().into_bytes())
        );
    }
}

/// The server dies and comes back (empty) on the same port: requests in between fail cleanly,
/// and the same backend works again afterwards — scripts included, which the new server has to
/// be sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_restarts() {
    let server = RedisServer::start(None);
    let port = server.port();
    let backend = server.backend().await;
    backend.set(&scope(), "k", b"v").await.unwrap();
    assert_eq!(backend.increment(&scope(), "n", 1).await.unwrap(), 1);

    drop(server);
    let down = tokio::time::timeout(Duration::from_secs(30), backend.get(&scope(), "k"))
        .await
        .expect("a request to a dead server must fail, not hang");
    assert!(
        matches!(
            down,
            Err(StoreError::Unavailable {
                backend: "redis",
                ..
            })
        ),
        "{down:?}"
    );

    let _server = RedisServer::start_on(port, None).expect("restart on the same port");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Requests may fail while the backend notices the new server; none may panic.
        match backend.get(&scope(), "k").await {
            Ok(value) => {
                // No persistence: the restarted server is empty.
                assert_eq!(value, None);
                break;
            }
            Err(StoreError::Unavailable { .. }) => {
                assert!(Instant::now() < deadline, "never reconnected");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("unexpected error while reconnecting: {}", chain(&err)),
        }
    }
    assert_eq!(backend.increment(&scope(), "n", 5).await.unwrap(), 5);
    assert_eq!(
        backend
            .compare_and_swap(&scope(), "k", None, b"again")
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(
        backend.list_keys(&scope(), None, 10).await.unwrap(),
        (vec!["k".to_owned(), "n".to_owned()], None)
    );
}

#[tokio::test]
async fn debug_shows_neither_data_nor_connection_internals() {
    let server = shared_server();
    let backend = server.backend_with_prefix("dbg:").await;
    let debug = format!("{backend:?}");
    assert!(debug.starts_with("RedisBackend"), "{debug}");
    assert!(debug.contains("dbg:"), "{debug}");
    assert_eq!(backend.name(), "redis");
}
