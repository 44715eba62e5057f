//! A soak of `wxnotify serve`: steady load on the Redis outbox for `WXNOTIFY_SOAK_SECONDS`
//! (default 30) while the sandbox injects faults — busy answers (-1), dropped connections,
//! latency, every access token invalidated — and Redis itself is killed and restarted. Then:
//! every accepted notification is final and delivered, none lost, none sent twice on the OA
//! path, and the server's memory and open files end where they stood after warm-up.
//!
//! Ignored by `cargo test`: `scripts/soak.sh [seconds]` runs it (CI, briefly).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use wxnotify_sandbox::{Fault, FaultAction, SandboxConfig, SeedUser};

const KEY: &str = "soak-api-key-0123456789";
const TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";

/// A redis-server that keeps every write on disk (append-only, fsync always), so a kill and a
/// restart on the same port and folder lose nothing acknowledged.
struct DurableRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl DurableRedis {
    fn start() -> DurableRedis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Self::spawn(port, dir.path());
        DurableRedis { port, dir, child }
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it as a crash would, waits `down`, starts it again on its data.
    fn crash_and_restart(&mut self, down: Duration) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::thread::sleep(down);
        self.child = Self::spawn(self.port, self.dir.path());
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory (KiB) and open file descriptors of process `pid`.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

async fn request(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    body: &str,
) -> Option<(u16, Value)> {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a soak of minutes: scripts/soak.sh runs it"]
async fn a_soak_under_faults_loses_nothing_and_sends_nothing_twice() {
    let seconds: u64 = std::env::var("WXNOTIFY_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let run_for = Duration::from_secs(seconds);
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let state = sandbox.state();
    let followers: Vec<String> = (0..40)
        .map(|_| state.add_user(SeedUser::follower()).oa_openid.unwrap())
        .collect();
    let mut redis = Some(DurableRedis::start());
    let mut restarting: Option<std::thread::JoinHandle<DurableRedis>> = None;
    let dir = tempfile::tempdir().unwrap();
    let (mini, oa) = (state.mini_app(), state.oa_app());
    std::fs::write(
        dir.path().join("wxnotify.toml"),
        format!(
            "[storage]\nbackend = \"redis\"\nurl = \"{}\"\n\n\
             [tenants.shop]\napi_base = \"{}\"\napi_key_env = \"SHOP_API_KEY\"\n\
             [tenants.shop.limits]\ndeadline_ms = 5000\n\
             [tenants.shop.mini_program]\nappid = \"{}\"\nsecret_env = \"SHOP_MINI_SECRET\"\n\
             [tenants.shop.official_account]\nappid = \"{}\"\nsecret_env = \"SHOP_OA_SECRET\"\n",
            redis.as_ref().unwrap().url(),
            sandbox.base_url(),
            mini.appid,
            oa.appid,
        ),
    )
    .unwrap();
    let (mut child, addr) = crate::start_serve(
        dir.path(),
        &[
            ("SHOP_MINI_SECRET", &mini.secret),
            ("SHOP_OA_SECRET", &oa.secret),
            ("SHOP_API_KEY", KEY),
        ],
        &["--workers", "4"],
    );
    let pid = child.id();
    let base = format!("http://{addr}");
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();

    // The load: one notification every 25 ms, each with its own idempotency key; a submission
    // the server could not take (503 while Redis is down, a refused connection) is submitted
    // again with the same key, as a client must.
    let started = Instant::now();
    let mut accepted: BTreeMap<String, String> = BTreeMap::new();
    let mut resubmissions = 0u32;
    let mut faults = 0u32;
    let mut warm: Option<(u64, usize)> = None;
    let mut stage = 0;
    let mut i = 0usize;
    while started.elapsed() < run_for {
        let elapsed = started.elapsed().as_secs_f64() / run_for.as_secs_f64();
        // The faults, one stage at a time.
        let due = match elapsed {
            e if e >= 0.75 => 6,
            e if e >= 0.6 => 5,
            e if e >= 0.5 => 4,
            e if e >= 0.4 => 3,
            e if e >= 0.25 => 2,
            e if e >= 0.1 => 1,
            _ => 0,
        };
        while stage < due {
            stage += 1;
            faults += 1;
            match stage {
                1 => {
                    warm = Some(footprint(pid));
                    state.inject(
                        Fault::errcode(TEMPLATE_SEND, -1, "system error")
                            .probability(0.2)
                            .times(40),
                    );
                }
                2 => state.inject(
                    Fault::new(TEMPLATE_SEND, FaultAction::DropConnection)
                        .probability(0.1)
                        .times(20),
                ),
                3 => state.inject(
                    Fault::new(TEMPLATE_SEND, FaultAction::Latency(Duration::from_secs(2)))
                        .probability(0.1)
                        .times(10),
                ),
                4 => state.invalidate_tokens(&oa.appid).unwrap(),
                // Down for 2 s while the load goes on.
                5 => {
                    let mut crashing = redis.take().unwrap();
                    restarting = Some(std::thread::spawn(move || {
                        crashing.crash_and_restart(Duration::from_secs(2));
                        crashing
                    }));
                }
                _ => state.inject(
                    Fault::errcode(TEMPLATE_SEND, -1, "system error")
                        .probability(0.3)
                        .times(40),
                ),
            }
        }
        let key = format!("soak-{i}");
        let body = json!({
            "recipient": {"official_account": followers[i % followers.len()]},
            "channels": [{"template_message": {"template_id": "TPL_ORDER_SHIPPED",
                "data": {"thing1": format!("order {i}")}}}],
            "idempotency_key": key,
        })
        .to_string();
        loop {
            match request(
                &client,
                "POST",
                &format!("{base}/v1/shop/notifications"),
                &body,
            )
            .await
            {
                Some((202, answer)) => {
                    let id = answer["id"].as_str().unwrap().to_owned();
                    if let Some(first) = accepted.insert(key.clone(), id.clone()) {
                        assert_eq!(first, id, "a resubmitted key is the same notification");
                    }
                    break;
                }
                Some((status, answer)) if status >= 500 || status == 0 => {
                    let _ = answer;
                    resubmissions += 1;
                }
                None => resubmissions += 1,
                Some((status, answer)) => panic!("refused {key}: {status} {answer}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    state.clear_faults();
    if let Some(restart) = restarting {
        redis = Some(restart.join().unwrap());
    }
    assert!(redis.is_some(), "Redis runs to the end");

    // Every accepted notification reaches a final state: delivered, since every fault was
    // transient. A message whose settle failed while Redis was down waits for its lease
    // (deadline + 30 s) and is sent again: at least once, de-duplicated by WeChat's
    // client_msg_id on the OA path.
    let ids: Vec<String> = accepted.values().cloned().collect();
    let final_states = crate::poll(Duration::from_secs(180), Duration::from_millis(500), || {
        let (client, base, ids) = (&client, &base, &ids);
        async move {
            let mut states: BTreeMap<String, usize> = BTreeMap::new();
            for id in ids {
                let url = format!("{base}/v1/shop/notifications/{id}");
                let state = match request(client, "GET", &url, "").await {
                    Some((200, status)) => status["state"].as_str().unwrap_or("?").to_owned(),
                    other => format!("unanswered: {other:?}"),
                };
                *states.entry(state).or_default() += 1;
            }
            if states.keys().all(|s| s == "delivered") {
                ControlFlow::Break(states)
            } else {
                ControlFlow::Continue(format!("not all delivered yet: {states:?}"))
            }
        }
    })
    .await;
    let end = footprint(pid);
    child.kill().unwrap();
    child.wait().unwrap();

    // On the OA path, WeChat shows each key once.
    let delivered = state.delivered_template_messages();
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    for message in &delivered {
        *keys
            .entry(message.client_msg_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let twice: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let expected: BTreeSet<&String> = accepted.keys().collect();
    let got: BTreeSet<&String> = keys.keys().collect();
    assert_eq!(
        got, expected,
        "every accepted key delivered once, nothing else"
    );

    let (rss_warm, fds_warm) = warm.expect("warm-up measured");
    let (rss_end, fds_end) = end;
    println!(
        "soak: {seconds} s, {} notifications accepted ({resubmissions} resubmissions while the \
         server could not take them), {faults} faults (busy -1, dropped connections, 2 s \
         latency, tokens invalidated, Redis killed and restarted, busy again), {} WeChat calls; \
         final states {final_states:?}; RSS {rss_warm} KiB after warm-up, {rss_end} KiB at the \
         end; open fds {fds_warm} → {fds_end}",
        accepted.len(),
        state.stats().requests,
    );
    assert!(
        rss_end < rss_warm + 64 * 1024,
        "memory grew from {rss_warm} KiB to {rss_end} KiB"
    );
    assert!(
        fds_end <= fds_warm + 16,
        "open files grew from {fds_warm} to {fds_end}"
    );
}
