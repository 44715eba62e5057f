//! Outbox tests that only make sense for Redis: the key layout and the consumer group as the
//! module docs promise them, deployments kept apart by prefixes, recovery when someone deletes
//! the stream or the group, and foreign data.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use ::redis::AsyncCommands;

use super::{LONG_LEASE, delivered, ids};
use crate::outbox::{Ack, Depth, ManualClock, Outbox, RedisOutbox, State};
use crate::tests::redis::{shared_server, unique_prefix};
use crate::{KeyValueBackend, Scope, StoreError};

#[tokio::test]
async fn layout_is_as_documented() {
    let server = shared_server();
    let prefix = unique_prefix();
    let outbox = RedisOutbox::new(server.backend_with_prefix(&prefix).await);
    let mut raw = server.raw().await;
    let stream = format!("{prefix}wxnotify:outbox");
    assert_eq!(outbox.stream_name(), stream);

    let id = outbox
        .enqueue("ténant", Some("key:1"), b"payload")
        .await
        .unwrap()
        .id;
    let message = format!("{stream}:msg:{id}");
    let fields: HashMap<String, Vec<u8>> = raw.hgetall(&message).await.unwrap();
    assert_eq!(fields["tenant"], "ténant".as_bytes());
    assert_eq!(fields["key"], b"key:1");
    assert_eq!(fields["payload"], b"payload");
    assert_eq!(fields["state"], b"queued");
    assert_eq!(fields["attempts"], b"0");
    let idem: String = raw
        .get(format!("{stream}:idem:7:ténant:key:1"))
        .await
        .unwrap();
    assert_eq!(idem, id);
    let len: usize = raw.xlen(&stream).await.unwrap();
    assert_eq!(len, 1);
    let groups: ::redis::Value = ::redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&stream)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(format!("{groups:?}").contains("workers"), "{groups:?}");

    let claimed = outbox.claim("host-1/0", 10, LONG_LEASE).await.unwrap();
    assert_eq!(ids(&claimed), [id.as_str()]);
    let pending: ::redis::Value = ::redis::cmd("XPENDING")
        .arg(&stream)
        .arg("workers")
        .query_async(&mut raw)
        .await
        .unwrap();
    let pending = format!("{pending:?}");
    assert!(pending.contains("host-1/0"), "{pending}");
    let leased: Vec<String> = raw.zrange(format!("{stream}:leases"), 0, -1).await.unwrap();
    assert_eq!(leased, [id.as_str()]);
    let state: String = raw.hget(&message, "state").await.unwrap();
    assert_eq!(state, "in_flight");

    let ack = outbox.complete(&id, delivered("ok")).await.unwrap();
    assert_eq!(ack, Ack::Applied);
    // Settled: nothing left in the stream, its pending list or the leases.
    let len: usize = raw.xlen(&stream).await.unwrap();
    assert_eq!(len, 0);
    let pending: (i64, ::redis::Value, ::redis::Value, ::redis::Value) = ::redis::cmd("XPENDING")
        .arg(&stream)
        .arg("workers")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(pending.0, 0);
    let leased: usize = raw.zcard(format!("{stream}:leases")).await.unwrap();
    assert_eq!(leased, 0);
    let finished: Vec<String> = raw
        .zrange(format!("{stream}:finished"), 0, -1)
        .await
        .unwrap();
    assert_eq!(finished, [id.as_str()]);
    let fields: HashMap<String, Vec<u8>> = raw.hgetall(&message).await.unwrap();
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["enqueued_at", "key", "state", "tenant"]);
    assert_eq!(fields["state"], b"delivered");
    // The rest is in the tenant's row; it leaves the live index and joins no failed one.
    let row: String = raw
        .hget(format!("{stream}:rows:7:ténant"), &id)
        .await
        .unwrap();
    assert!(row.starts_with("9:delivered-1:12:ok5:key:1-13:"), "{row}");
    let live: usize = raw.zcard(format!("{stream}:live:7:ténant")).await.unwrap();
    let failed: usize = raw
        .zcard(format!("{stream}:failed:7:ténant"))
        .await
        .unwrap();
    assert_eq!((live, failed), (0, 0));
    let time: Vec<String> = raw
        .zrange(format!("{stream}:time:7:ténant"), 0, -1)
        .await
        .unwrap();
    assert_eq!(time, [id.as_str()]);

    // Retries wait in the delayed set, and paused tenants' messages in their parked set.
    let later = outbox.enqueue("ténant", None, b"x").await.unwrap().id;
    outbox.claim("host-1/0", 10, LONG_LEASE).await.unwrap();
    let not_before = std::time::SystemTime::now() + Duration::from_secs(60);
    assert_eq!(
        outbox.retry(&later, not_before, "busy").await.unwrap(),
        Ack::Applied
    );
    let delayed: Vec<String> = raw
        .zrange(format!("{stream}:delayed"), 0, -1)
        .await
        .unwrap();
    assert_eq!(delayed, [later.as_str()]);
    outbox
        .pause_tenant("ténant", not_before + Duration::from_secs(60))
        .await
        .unwrap();
    let parked: Vec<String> = raw
        .smembers(format!("{stream}:parked:7:ténant"))
        .await
        .unwrap_or_default();
    // Retried before the pause: not parked, but the pause holds it when it comes due.
    assert!(parked.is_empty(), "{parked:?}");
    let paused: HashMap<String, String> = raw.hgetall(format!("{stream}:paused")).await.unwrap();
    assert!(paused.contains_key("ténant"));
    let depth: HashMap<String, i64> = raw.hgetall(format!("{stream}:depth")).await.unwrap();
    assert_eq!(depth.get("q"), Some(&1));
    assert_eq!(depth.get("q:ténant"), Some(&1));
    assert_eq!(depth.get("f"), Some(&0));
    assert!(!depth.contains_key("f:ténant"), "zero counters are removed");
}

#[tokio::test]
async fn prefixes_separate_deployments() {
    let server = shared_server();
    let (p1, p2) = (unique_prefix(), unique_prefix());
    let prod = RedisOutbox::new(server.backend_with_prefix(&p1).await);
    let staging = RedisOutbox::new(server.backend_with_prefix(&p2).await);
    let id = prod.enqueue("acme", Some("k"), b"x").await.unwrap().id;
    assert!(
        !staging
            .enqueue("acme", Some("k"), b"x")
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(staging.status(&id).await.unwrap(), None);
    assert_eq!(staging.depth(None).await.unwrap().queued, 1);
    let claimed = staging.claim("w", 10, LONG_LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_ne!(claimed[0].id, id);
    assert_eq!(ids(&prod.claim("w", 10, LONG_LEASE).await.unwrap()), [id]);

    // The outbox and the key-value store of one deployment do not collide either.
    let kv = server.backend_with_prefix(&p1).await;
    kv.set(&Scope::new("acme", "wxnotify:outbox"), "k", b"v")
        .await
        .unwrap();
    assert_eq!(prod.depth(None).await.unwrap().in_flight, 1);
}

/// Someone deletes the consumer group, or the whole stream: nothing is lost. Queued messages
/// come back through a fresh group; in-flight ones when their leases expire.
#[tokio::test]
async fn recovers_when_the_group_or_the_stream_is_deleted() {
    let server = shared_server();
    let prefix = unique_prefix();
    let clock = ManualClock::new(SystemTime::now());
    let outbox =
        RedisOutbox::new(server.backend_with_prefix(&prefix).await).with_clock(clock.clone());
    let mut raw = server.raw().await;
    let stream = outbox.stream_name().to_owned();

    for destroy_group in [true, false] {
        let lease = Duration::from_millis(200);
        let queued: Vec<String> = {
            let mut ids = Vec::new();
            for i in 0..3 {
                ids.push(outbox.enqueue("acme", None, &[i]).await.unwrap().id);
            }
            ids
        };
        let in_flight = outbox.claim("w", 1, lease).await.unwrap();
        assert_eq!(ids(&in_flight), queued[..1]);

        if destroy_group {
            let _: () = ::redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&stream)
                .arg("workers")
                .query_async(&mut raw)
                .await
                .unwrap();
        } else {
            let _: () = raw.del(&stream).await.unwrap();
        }

        let claimed = outbox.claim("w", 10, LONG_LEASE).await.unwrap();
        if destroy_group {
            // The entries are still in the stream, so the new group delivers them.
            assert_eq!(ids(&claimed), queued[1..]);
        } else {
            // The entries are gone with the stream; their hashes still say queued, but
            // nothing points at them any more. This is the one loss the outbox cannot undo
            // by itself: deleting the stream by hand deletes the queue.
            assert!(claimed.is_empty());
        }
        clock.advance(lease + Duration::from_millis(100));
        let rescued = outbox.claim("w", 10, LONG_LEASE).await.unwrap();
        assert_eq!(
            ids(&rescued),
            queued[..1],
            "the in-flight message comes back"
        );
        assert_eq!(rescued[0].attempts, 2);
        for message in claimed.iter().chain(&rescued) {
            assert_eq!(
                outbox.complete(&message.id, delivered("")).await.unwrap(),
                Ack::Applied
            );
        }
        if !destroy_group {
            for id in &queued[1..] {
                assert_eq!(
                    outbox.complete(id, delivered("cleanup")).await.unwrap(),
                    Ack::Applied
                );
            }
        }
        assert_eq!(outbox.depth(None).await.unwrap(), Depth::default());
    }
}

#[tokio::test]
async fn foreign_data_under_our_names_is_reported() {
    let server = shared_server();
    let prefix = unique_prefix();
    let clock = ManualClock::new(SystemTime::now());
    let outbox =
        RedisOutbox::new(server.backend_with_prefix(&prefix).await).with_clock(clock.clone());
    let mut raw = server.raw().await;
    let stream = outbox.stream_name().to_owned();

    // A string where the stream belongs.
    let _: () = raw.set(&stream, "not a stream").await.unwrap();
    let err = outbox.enqueue("acme", None, b"x").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let _: () = raw.del(&stream).await.unwrap();

    // A message hash with a state this crate never writes.
    let id = outbox.enqueue("acme", None, b"x").await.unwrap().id;
    let _: () = raw
        .hset(format!("{stream}:msg:{id}"), "state", "exploded")
        .await
        .unwrap();
    let err = outbox.status(&id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let _: () = raw
        .hset(format!("{stream}:msg:{id}"), "state", "queued")
        .await
        .unwrap();
    assert_eq!(
        outbox.status(&id).await.unwrap().unwrap().state,
        State::Queued
    );
}
