//! `wxnotify serve` end to end: notifications accepted through the HTTP API (batches of 500,
//! each checked by the component and stored durably) and delivered by the outbox workers
//! through the component to a local WeChat that says yes at once — with the SQLite outbox, and
//! with the Redis one when `redis-server` is installed.
//!
//! Run with `cargo bench -p wxnotify --bench serve` (`-- --quick` for a short run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use wxnotify::serve::{ServeOptions, Server};
use wxnotify::{Engine, EngineOptions};
use wxnotify_store::outbox::SharedOutbox;

#[path = "common/served.rs"]
mod served;
#[path = "common/wechat.rs"]
mod wechat;

const KEY: &str = "bench-api-key";
const BATCH: usize = 500;

/// Accepted and delivered per second for `count` notifications through a server on `outbox`.
async fn run(
    engine: &Engine,
    outbox: SharedOutbox,
    wechat: std::net::SocketAddr,
    count: usize,
) -> (f64, f64) {
    let (runtime, _) = wechat::runtime_with_tenant(engine, "shop", wechat);
    let keys = [("shop".to_owned(), Some(KEY.to_owned()))].into();
    let options = ServeOptions {
        bind: ([127, 0, 0, 1], 0).into(),
        workers: 16,
        ..ServeOptions::default()
    };
    let server = Server::start(Arc::new(runtime), outbox.clone(), keys, options)
        .await
        .expect("server");
    let url = format!("http://{}/v1/shop/notifications", server.addr());
    let client = served::client();
    let started = Instant::now();
    for batch in 0..count.div_ceil(BATCH) {
        let notifications: Vec<_> = (0..BATCH.min(count - batch * BATCH))
            .map(|i| {
                serde_json::json!({
                    "recipient": {"official_account": format!("oOA{:025}", (batch * BATCH + i) % 1000)},
                    "channels": [{"template_message": {"template_id": "TPL_ORDER_SHIPPED",
                        "data": {"thing1": "Order shipped"}}}],
                })
            })
            .collect();
        let body = serde_json::json!({ "notifications": notifications }).to_string();
        let request = http::Request::post(&url)
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let (status, answer) = served::exchange(&client, request).await;
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    }
    let accepted = started.elapsed();
    loop {
        let depth = outbox.depth(None).await.expect("depth");
        if depth.queued == 0 && depth.in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = started.elapsed();
    server.shutdown().await;
    (
        count as f64 / accepted.as_secs_f64(),
        count as f64 / delivered.as_secs_f64(),
    )
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let count = if quick { 1000 } else { 5000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let wechat = listener.local_addr().expect("addr");
        tokio::spawn(wechat::serve(listener));
        let engine = Engine::with_options(EngineOptions {
            cache_dir: None,
            ..EngineOptions::default()
        })
        .expect("engine");
        println!("| outbox | notifications | accepted/s | delivered/s (end to end) |");
        println!("|---|---|---|---|");
        let dir = tempfile::tempdir().expect("tempdir");
        let (accepted, delivered) = run(&engine, served::sqlite_outbox(&dir), wechat, count).await;
        println!("| SQLite | {count} | {accepted:.0} | {delivered:.0} |");
        if let Some((_redis, outbox)) = served::redis_outbox().await {
            let (accepted, delivered) = run(&engine, outbox, wechat, count).await;
            println!("| Redis | {count} | {accepted:.0} | {delivered:.0} |");
        }
    });
}
