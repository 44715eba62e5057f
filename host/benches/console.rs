//! The console's API on a full outbox: `GET /v1/{tenant}/console/notifications?limit=10000`
//! (one page of 10 000, newest first, as JSON over HTTP) and the summary of the same window,
//! through a real `wxnotify serve` — with the SQLite outbox, and with the Redis one when
//! `redis-server` is installed. The outbox holds the tenant's messages in every state (mostly
//! delivered, some failed with an error, some queued) and another tenant's, which the page
//! must skip. Target: a page of 10 000 in under 100 ms on either backend.
//!
//! Run with `cargo bench -p wxnotify --bench console` (`-- --quick` for a short run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use wxnotify::serve::{ServeOptions, Server};
use wxnotify::{Engine, EngineOptions};
use wxnotify_store::outbox::{Ack, NewMessage, Outcome, SharedOutbox};

#[path = "common/served.rs"]
mod served;
#[path = "common/wechat.rs"]
mod wechat;

use served::HttpClient;

const KEY: &str = "bench-api-key";
const PAGE: usize = 10_000;

/// What the workers store for a delivered template message and for a refusal.
const DELIVERED: &str = r#"{"channel":"template_message","msgid":3160000000000000001,"openid":"oOA000000000000000000000001","attempts":1,"truncated":[],"failures":[]}"#;
const REFUSED: &str = r#"{"error":{"kind":"refused","message":"errcode 43004: require subscribe","errcode":43004,"errmsg":"require subscribe"}}"#;

/// Fills `outbox` with `count` messages of `shop` (9 in 10 delivered, 1 in 20 failed, the
/// rest queued) and `count / 5` of `other`.
async fn fill(outbox: &SharedOutbox, count: usize) {
    let payload = br#"{"recipient":{"official_account":"o"},"channels":[]}"#;
    for (tenant, n) in [("shop", count), ("other", count / 5)] {
        let recipients: Vec<String> = (0..n).map(|i| format!("oa:oOA{i:025}")).collect();
        for chunk in recipients.chunks(1000) {
            let batch: Vec<NewMessage<'_>> = chunk
                .iter()
                .map(|recipient| NewMessage {
                    idempotency_key: None,
                    payload,
                    recipient: Some(recipient),
                })
                .collect();
            outbox.enqueue_many(tenant, &batch).await.expect("enqueue");
        }
    }
    // Settled concurrently, as workers do (SQLite group-commits them).
    loop {
        let claimed = outbox
            .claim("bench", 1000, Duration::from_secs(600))
            .await
            .expect("claim");
        if claimed.is_empty() {
            break;
        }
        let settles = claimed.iter().enumerate().map(|(i, message)| {
            let outbox = outbox.clone();
            let id = message.id.clone();
            async move {
                let result =
                    match i % 20 {
                        0 => outbox
                            .retry(
                                &id,
                                std::time::UNIX_EPOCH + Duration::from_secs(4_000_000_000),
                                "{\"error\":{\"kind\":\"unavailable\",\"message\":\"timeout\"}}",
                            )
                            .await,
                        1 => {
                            outbox
                                .complete(
                                    &id,
                                    Outcome::Failed {
                                        detail: REFUSED.into(),
                                    },
                                )
                                .await
                        }
                        _ => {
                            outbox
                                .complete(
                                    &id,
                                    Outcome::Delivered {
                                        detail: DELIVERED.into(),
                                    },
                                )
                                .await
                        }
                    };
                assert_eq!(result.expect("settle"), Ack::Applied);
            }
        });
        let mut tasks = tokio::task::JoinSet::new();
        for settle in settles {
            tasks.spawn(settle);
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("settle task");
        }
    }
}

/// One GET with the key: the body's length and the time to its last byte.
async fn get(client: &HttpClient, url: &str) -> (Duration, usize) {
    let request = http::Request::get(url)
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let started = Instant::now();
    let (status, body) = served::exchange(client, request).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    (took, body.len())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Prints the row of `name`: page and summary times over `rounds` requests each.
async fn measure(engine: &Engine, name: &str, outbox: SharedOutbox, count: usize, rounds: usize) {
    let filled = Instant::now();
    fill(&outbox, count).await;
    let filled = filled.elapsed();
    let unused_wechat = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let (runtime, _) = wechat::runtime_with_tenant(engine, "shop", unused_wechat);
    let keys = [("shop".to_owned(), Some(KEY.to_owned()))].into();
    let options = ServeOptions {
        bind: ([127, 0, 0, 1], 0).into(),
        workers: 0,
        ..ServeOptions::default()
    };
    let server = Server::start(Arc::new(runtime), outbox, keys, options)
        .await
        .expect("server");
    let base = format!("http://{}/v1/shop/console", server.addr());
    let client = served::client();
    let page_url = format!("{base}/notifications?since=0&limit={PAGE}");
    let summary_url = format!("{base}/summary?since=0&buckets=24");
    let (mut pages, mut summaries, mut bytes) = (Vec::new(), Vec::new(), 0);
    // One warm-up of each, then interleaved rounds.
    get(&client, &page_url).await;
    get(&client, &summary_url).await;
    for _ in 0..rounds {
        let (took, len) = get(&client, &page_url).await;
        pages.push(took);
        bytes = len;
        summaries.push(get(&client, &summary_url).await.0);
    }
    let worst = pages.iter().max().copied().unwrap_or_default();
    println!(
        "| {name} | {count} (+{}) | {:.1} ms | {:.1} ms | {:.1} ms | {} KiB | {:.1} s |",
        count / 5,
        median(pages).as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        median(summaries).as_secs_f64() * 1e3,
        bytes / 1024,
        filled.as_secs_f64(),
    );
    server.shutdown().await;
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (count, rounds) = if quick { (12_000, 3) } else { (50_000, 15) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async {
        let engine = Engine::with_options(EngineOptions {
            cache_dir: None,
            ..EngineOptions::default()
        })
        .expect("engine");
        println!(
            "| outbox | messages of the tenant (+ another's) | page of {PAGE}: median | worst | summary: median | page size | filled in |"
        );
        println!("|---|---|---|---|---|---|---|");
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = served::sqlite_outbox(&dir);
        measure(&engine, "SQLite", sqlite, count, rounds).await;
        if let Some((_redis, outbox)) = served::redis_outbox().await {
            measure(&engine, "Redis", outbox, count, rounds).await;
        }
    });
}
