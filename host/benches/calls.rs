//! What one call into the component costs when no network is involved, and what tenants cost
//! at rest:
//!
//! - per-call overhead: `check_notification` (a fresh instance, its configuration read, the
//!   checks; no key-value access, no HTTP), p50 and p99 of sequential calls;
//! - `resolve_user` of a known unionid per second, the mapping read from memory, SQLite and
//!   Redis (a `redis-server` of the bench's own, when installed), sequentially and 16 at a time;
//! - resident memory of 1 000 tenants sharing one compiled component, before and after each
//!   was called once.
//!
//! Run with `cargo bench -p wxnotify --bench calls` (`-- --quick` for a short run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wxnotify::{ChannelMessage, Notification, Recipient, TemplateMessage, Tenant};
use wxnotify_store::{MemoryBackend, SharedBackend, SqliteBackend};

#[path = "common/engines.rs"]
mod engines;
#[path = "common/wechat.rs"]
mod wechat;
use wechat::{FOLLOWER, UNIONID};

fn notification() -> Notification {
    Notification {
        recipient: Recipient::OfficialAccount(FOLLOWER.into()),
        channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL_ORDER_SHIPPED".into(),
            data: vec![("thing1".into(), "Order shipped".into())],
            url: None,
            miniprogram: None,
        })],
        idempotency_key: None,
    }
}

fn percentile(sorted: &[Duration], at: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * at).round() as usize]
}

/// Resolves per second over `count` resolves, `concurrency` at a time.
async fn resolves_per_second(tenant: &Arc<Tenant>, count: usize, concurrency: usize) -> f64 {
    let started = Instant::now();
    let per_task = count / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let tenant = tenant.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let user = tenant
                        .resolve_user(&Recipient::Union(UNIONID.into()))
                        .await
                        .expect("resolved");
                    assert_eq!(user.oa_openid.as_deref(), Some(FOLLOWER));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task ran");
    }
    (per_task * concurrency) as f64 / started.elapsed().as_secs_f64()
}

/// The process's resident set, KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (calls, resolves) = if quick {
        (2_000, 2_000)
    } else {
        (20_000, 20_000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let server = listener.local_addr().expect("an address");
        tokio::spawn(wechat::serve(listener));
        // Per-call overhead, per engine configuration, in interleaved blocks so that a noisy
        // machine slows them alike.
        let configurations = engines::configurations("4096,4096/touched");
        let tenants: Vec<_> = configurations
            .iter()
            .map(|configuration| {
                let engine = engines::engine(configuration);
                wechat::tenant_for_the_run(&engine, "calls", server)
            })
            .collect();
        let notification = notification();
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::with_capacity(calls); tenants.len()];
        for block in 0..=calls / 500 {
            for (tenant, latencies) in tenants.iter().zip(&mut latencies) {
                for _ in 0..500 {
                    let started = Instant::now();
                    tenant
                        .check_notification(&notification)
                        .await
                        .expect("checks pass");
                    // The first block warms up.
                    if block > 0 {
                        latencies.push(started.elapsed());
                    }
                }
            }
        }
        println!("## per-call overhead, no network: check_notification, {calls} sequential calls");
        println!("| engine (KiB kept resident) | p50 | p99 | max |");
        println!("|---|---|---|---|");
        for (configuration, mut latencies) in configurations.iter().zip(latencies) {
            latencies.sort();
            println!(
                "| {configuration} | {:.1?} | {:.1?} | {:.1?} |",
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
                latencies[latencies.len() - 1]
            );
        }
        let engine = engines::engine(&configurations[configurations.len() - 1]);

        // resolve_user from each store.
        println!();
        println!("## resolve_user of a known unionid (two key-value reads), per second");
        println!("| store | sequential | 16 at a time |");
        println!("|---|---|---|");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut stores: Vec<(&str, SharedBackend)> = vec![
            ("memory", Arc::new(MemoryBackend::new())),
            (
                "SQLite",
                Arc::new(SqliteBackend::open(dir.path().join("kv.sqlite3")).expect("sqlite")),
            ),
        ];
        let redis = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok()
            .then(|| wxnotify_store::testing::RedisServer::start(None));
        if let Some(redis) = &redis {
            let backend = wxnotify_store::RedisBackend::connect(&redis.url())
                .await
                .expect("redis");
            stores.push(("Redis", Arc::new(backend)));
        }
        for (name, backend) in stores {
            let (_runtime, mut tenants) =
                wechat::runtime_with_tenants(&engine, backend, &["resolve"], server);
            let tenant = tenants.remove(0);
            // Maps the follower (user/info), so the unionid resolves from the store.
            tenant
                .resolve_user(&Recipient::OfficialAccount(FOLLOWER.into()))
                .await
                .expect("the follower is looked up");
            resolves_per_second(&tenant, 500, 16).await;
            let sequential = resolves_per_second(&tenant, resolves / 4, 1).await;
            let concurrent = resolves_per_second(&tenant, resolves, 16).await;
            println!("| {name} | {sequential:.0} | {concurrent:.0} |");
        }

        // 1 000 tenants on one component.
        println!();
        println!("## resident memory of 1 000 tenants sharing one component");
        let before = rss_kib();
        let ids: Vec<String> = (0..1000).map(|i| format!("t{i:04}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let backend: SharedBackend = Arc::new(MemoryBackend::new());
        let (_runtime, tenants) = wechat::runtime_with_tenants(&engine, backend, &ids, server);
        let added = rss_kib();
        for tenant in &tenants {
            tenant
                .check_notification(&notification)
                .await
                .expect("checks pass");
        }
        let called = rss_kib();
        println!("| | RSS (KiB) | per tenant |");
        println!("|---|---|---|");
        println!("| before | {before} | |");
        println!(
            "| 1 000 tenants added | {added} | {:.1} KiB |",
            (added.saturating_sub(before)) as f64 / 1000.0
        );
        println!(
            "| each called once | {called} | {:.1} KiB |",
            (called.saturating_sub(before)) as f64 / 1000.0
        );
    });
}
