//! Follower sync of a large official account: `wxnotify sandbox --followers N` (its own
//! process, so its memory is not counted) synced page by page (`user/get`, then
//! `user/info/batchget` per 100) into SQLite and into Redis (a `redis-server` of the bench's
//! own, when installed). Prints wall time, followers per second, this process's peak resident
//! set, and the store's size per identity mapping.
//!
//! Run with `cargo bench -p wxnotify --bench sync` (`-- --quick`: 100 000 followers, default
//! 1 000 000; `WXNOTIFY_BENCH_FOLLOWERS` sets the number).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use wxnotify::{Engine, EngineOptions, Runtime};
use wxnotify_store::{SharedBackend, SqliteBackend};

/// A line of `/proc/self/status`, KiB (Linux).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Sandbox {
    child: std::process::Child,
    info: serde_json::Value,
}

impl Sandbox {
    fn start(followers: usize) -> Sandbox {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wxnotify"))
            .args(["--json", "sandbox", "--bind", "127.0.0.1:0", "--followers"])
            .arg(followers.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("wxnotify sandbox starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("its first line");
        let info = serde_json::from_str(&line).expect("JSON");
        Sandbox { child, info }
    }

    fn tenants_file(&self, id: &str) -> String {
        let field = |name: &str| self.info[name].as_str().expect(name).to_owned();
        format!(
            "[tenants.{id}]\napi_base = \"{}\"\n\
             [tenants.{id}.official_account]\nappid = \"{}\"\nsecret = \"{}\"\n\
             [tenants.{id}.mini_program]\nappid = \"{}\"\nsecret = \"{}\"\n",
            field("base_url"),
            field("oa_appid"),
            field("oa_secret"),
            field("mini_appid"),
            field("mini_secret"),
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Syncs every follower into `backend`; returns (seconds, followers mapped).
async fn sync(engine: &Engine, backend: SharedBackend, sandbox: &Sandbox) -> (f64, u64) {
    let runtime = Runtime::new(engine, backend).expect("runtime");
    let file = wxnotify::tenant::TenantsFile::parse(&sandbox.tenants_file("sync"), "bench")
        .expect("tenants file");
    let tenant = runtime
        .add_tenant(file.resolve_all(|_| None).expect("resolves").remove(0))
        .expect("tenant");
    let started = Instant::now();
    let mut progress = tenant.sync_followers(true).await.expect("a page");
    while !progress.done {
        progress = tenant.sync_followers(false).await.expect("a page");
    }
    (started.elapsed().as_secs_f64(), u64::from(progress.mapped))
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let followers: usize = std::env::var("WXNOTIFY_BENCH_FOLLOWERS")
        .ok()
        .map(|n| n.parse().expect("a number"))
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async {
        let sandbox = Sandbox::start(followers);
        let engine = Engine::with_options(EngineOptions {
            cache_dir: None,
            ..EngineOptions::default()
        })
        .expect("engine");
        println!("follower sync of {followers} followers (sandbox in its own process)");
        println!("| store | wall time | followers/s | peak RSS of this process | store bytes per follower |");
        println!("|---|---|---|---|---|");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kv.sqlite3");
        let sqlite: SharedBackend = Arc::new(SqliteBackend::open(&path).expect("sqlite"));
        let (seconds, mapped) = sync(&engine, sqlite, &sandbox).await;
        assert_eq!(mapped, followers as u64, "every follower mapped");
        let bytes = ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
            .map(|meta| meta.len())
            .sum::<u64>();
        println!(
            "| SQLite | {seconds:.1} s | {:.0} | {} MiB | {:.0} |",
            followers as f64 / seconds,
            status_kib("VmHWM:") / 1024,
            bytes as f64 / followers as f64
        );
        if Command::new("redis-server").arg("--version").output().is_ok() {
            let redis = wxnotify_store::testing::RedisServer::start(None);
            let backend = wxnotify_store::RedisBackend::connect(&redis.url())
                .await
                .expect("redis");
            let (seconds, mapped) = sync(&engine, Arc::new(backend), &sandbox).await;
            assert_eq!(mapped, followers as u64, "every follower mapped");
            let used = redis_used_memory(&redis.url()).await;
            println!(
                "| Redis | {seconds:.1} s | {:.0} | {} MiB | {:.0} |",
                followers as f64 / seconds,
                status_kib("VmHWM:") / 1024,
                used as f64 / followers as f64
            );
        }
    });
}

/// `used_memory` of the Redis server at `url`, bytes (`INFO memory`).
async fn redis_used_memory(url: &str) -> u64 {
    let client = redis::Client::open(url).expect("a client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("a connection");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut connection)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}
