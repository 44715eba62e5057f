//! Token single flight: 1 000 sends at once with no access token cached, from 1 and from 4
//! processes sharing one store (an SQLite file, a Redis server of the bench's own), against a
//! local WeChat that counts the tokens it hands out. Every configuration must fetch exactly one.
//!
//! The processes are this bench run again (`WXNOTIFY_BENCH_SENDER`): each opens the store,
//! waits for a line on stdin, sends its share at once and exits; the parent counts.
//!
//! Run with `cargo bench -p wxnotify --bench tokens`.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wxnotify::{ChannelMessage, Engine, EngineOptions, Notification, Recipient, TemplateMessage};
use wxnotify_store::{SharedBackend, SqliteBackend};

#[path = "common/wechat.rs"]
mod wechat;

const SENDS: usize = 1_000;

fn notification(i: usize) -> Notification {
    Notification {
        recipient: Recipient::OfficialAccount(format!("oOA{i:025}")),
        channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL_ORDER_SHIPPED".into(),
            data: vec![("thing1".into(), "Order shipped".into())],
            url: None,
            miniprogram: None,
        })],
        idempotency_key: None,
    }
}

async fn backend(store: &str) -> SharedBackend {
    match store.strip_prefix("sqlite:") {
        Some(path) => Arc::new(SqliteBackend::open(path).expect("sqlite")),
        None => Arc::new(
            wxnotify_store::RedisBackend::connect(store)
                .await
                .expect("redis"),
        ),
    }
}

/// A sending process: `count` sends at once as tenant `tenant` once stdin says go.
async fn sender(store: &str, tenant: &str, wechat: std::net::SocketAddr, count: usize) {
    let engine = Engine::with_options(EngineOptions {
        cache_dir: None,
        ..EngineOptions::default()
    })
    .expect("engine");
    let (_runtime, mut tenants) =
        wechat::runtime_with_tenants(&engine, backend(store).await, &[tenant], wechat);
    let tenant = tenants.remove(0);
    println!("ready");
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).expect("go");
    let sends: Vec<_> = (0..count)
        .map(|i| {
            let tenant = tenant.clone();
            tokio::spawn(async move { tenant.send_notification(&notification(i)).await })
        })
        .collect();
    for send in sends {
        send.await.expect("ran").expect("delivered");
    }
}

/// Runs one configuration: `processes` senders of `SENDS / processes` each on `store`.
fn run(store: &str, tenant: &str, wechat: std::net::SocketAddr, processes: usize) -> f64 {
    let mut children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(std::env::current_exe().expect("this bench"))
                .env(
                    "WXNOTIFY_BENCH_SENDER",
                    format!("{store} {tenant} {wechat} {}", SENDS / processes),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("a sender")
        })
        .collect();
    for child in &mut children {
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut ready)
            .expect("ready");
        assert_eq!(ready.trim(), "ready");
    }
    let started = Instant::now();
    for child in &mut children {
        writeln!(child.stdin.as_mut().expect("stdin"), "go").expect("go");
    }
    for child in children {
        let status = child.wait_with_output().expect("exits").status;
        assert!(status.success(), "a sender failed");
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    if let Ok(role) = std::env::var("WXNOTIFY_BENCH_SENDER") {
        let parts: Vec<&str> = role.split(' ').collect();
        let wechat = parts[2].parse().expect("an address");
        let count = parts[3].parse().expect("a count");
        runtime.block_on(sender(parts[0], parts[1], wechat, count));
        return;
    }
    let fetches = Arc::new(AtomicU64::new(0));
    let wechat = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(wechat::serve_counting(listener, fetches.clone()));
        address
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
        .then(|| wxnotify_store::testing::RedisServer::start(None));
    println!("{SENDS} sends at once, no token cached, from 1 and from 4 processes on one store");
    println!("| store | processes | token fetches | wall time |");
    println!("|---|---|---|---|");
    let mut stores = vec![(
        "SQLite",
        format!("sqlite:{}", dir.path().join("kv.sqlite3").display()),
    )];
    if let Some(redis) = &redis {
        stores.push(("Redis", redis.url()));
    }
    for (name, store) in &stores {
        for processes in [1, 4] {
            // A tenant of its own: no token cached.
            let tenant = format!("cold{processes}");
            let before = fetches.load(Ordering::SeqCst);
            let seconds = run(store, &tenant, wechat, processes);
            let fetched = fetches.load(Ordering::SeqCst) - before;
            println!("| {name} | {processes} | {fetched} | {seconds:.2} s |");
        }
    }
}
