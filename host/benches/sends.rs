//! Sends per second through the component against a native client making the same HTTP calls,
//! side by side in one run, against the same local server: the sandbox's cost as a ratio.
//!
//! The server answers `stable_token` and `template/send` at once (keep-alive, `Content-Length`),
//! so what is measured is the client side: for the native reference one pooled hyper client
//! posting the template message; for the component, `Tenant::send_notification` of the same
//! message (a fresh instance per call, the token from the key-value store, the egress gate).
//! Each configuration is measured in rounds interleaved with the native ones, and ratios are of
//! medians, so that a noisy machine moves both sides alike.
//!
//! The peers — wechatpy (PyPI) and the npm `wechat-api` client — send the same template
//! message to the same server in the same rounds, each round a process of its own that warms
//! up before it times (`host/benches/peers/`; `scripts/bench.sh` installs them, and a peer
//! that is not installed is reported as such).
//!
//! Run with `cargo bench -p wxnotify --bench sends` (`-- --quick` for a short run);
//! `WXNOTIFY_BENCH_RUNTIME=current_thread` runs it all on one thread (default `multi_thread`;
//! BENCHMARKS.md: "The gap is CPU, not hand-offs between threads").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wxnotify::{ChannelMessage, Engine, Notification, Recipient, TemplateMessage, Tenant};

const OA_OPENID: &str = "oOA0000000000000000000000001";

#[path = "common/engines.rs"]
mod engines;
#[path = "common/wechat.rs"]
mod wechat;
use wechat::{TOKEN, serve};

fn notification() -> Notification {
    Notification {
        recipient: Recipient::OfficialAccount(OA_OPENID.into()),
        channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL_ORDER_SHIPPED".into(),
            data: vec![("thing1".into(), "Order shipped".into())],
            url: None,
            miniprogram: None,
        })],
        idempotency_key: None,
    }
}

/// The body the component sends for [`notification`], for the native client.
fn native_body() -> Bytes {
    Bytes::from(
        serde_json::json!({
            "touser": OA_OPENID,
            "template_id": "TPL_ORDER_SHIPPED",
            "data": {"thing1": {"value": "Order shipped"}},
        })
        .to_string(),
    )
}

fn tenant(engine: &Engine, server: SocketAddr) -> Arc<Tenant> {
    wechat::tenant_for_the_run(engine, "bench", server)
}

/// One side of a comparison: sends `count` messages, `concurrency` at a time.
#[derive(Clone)]
enum Side {
    Native(Client<HttpConnector, Full<Bytes>>, String, Bytes),
    Component(Arc<Tenant>),
}

impl Side {
    async fn send(&self) {
        match self {
            Side::Native(client, url, body) => {
                let request = Request::post(url.as_str())
                    .header("content-type", "application/json; charset=utf-8")
                    .body(Full::new(body.clone()))
                    .expect("a request");
                let response = client.request(request).await.expect("an answer");
                let body = response.into_body().collect().await.expect("a body");
                assert!(body.to_bytes().starts_with(b"{\"errcode\":0"));
            }
            Side::Component(tenant) => {
                tenant
                    .send_notification(&notification())
                    .await
                    .expect("delivered");
            }
        }
    }

    /// Sends per second over `count` sends, `concurrency` at a time.
    async fn rate(&self, count: usize, concurrency: usize) -> f64 {
        let started = Instant::now();
        let per_task = count / concurrency;
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let side = self.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        side.send().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("the task ran");
        }
        (per_task * concurrency) as f64 / started.elapsed().as_secs_f64()
    }
}

/// A peer client, run as a process of its own for each round.
struct Peer {
    name: &'static str,
    program: String,
    script: &'static str,
}

impl Peer {
    /// wechatpy and `wechat-api`, where `scripts/bench.sh` installed them.
    fn installed() -> Vec<Peer> {
        let peers = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers");
        let python = std::env::var("WXNOTIFY_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let candidates = [
            (
                Peer {
                    name: "wechatpy (PyPI)",
                    program: python,
                    script: concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/benches/peers/wechatpy_send.py"
                    ),
                },
                vec!["-c".to_owned(), "import wechatpy".to_owned()],
            ),
            (
                Peer {
                    name: "wechat-api (npm)",
                    program: "node".into(),
                    script: concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/benches/peers/wechat_api_send.js"
                    ),
                },
                vec![
                    "-e".to_owned(),
                    format!("require('{peers}/node_modules/wechat-api')"),
                ],
            ),
        ];
        candidates
            .into_iter()
            .filter_map(|(peer, probe)| {
                let installed = std::process::Command::new(&peer.program)
                    .args(&probe)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success());
                if !installed {
                    println!(
                        "{}: not installed (scripts/bench.sh installs it)",
                        peer.name
                    );
                }
                installed.then_some(peer)
            })
            .collect()
    }

    /// Sends per second of one round of `count` sends, `concurrency` at a time.
    async fn rate(&self, server: SocketAddr, count: usize, concurrency: usize) -> f64 {
        let output = tokio::process::Command::new(&self.program)
            .arg(self.script)
            .arg(format!("http://{server}"))
            .arg(TOKEN)
            .arg(count.to_string())
            .arg(concurrency.to_string())
            .output()
            .await
            .expect("the peer runs");
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{} failed: {printed}{}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        printed.trim().parse().expect("the peer prints its rate")
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (rounds, count) = if quick { (3, 256) } else { (7, 4096) };
    // On one thread no call can wait for a wake-up from another: what is left of the gap is CPU.
    let runtime = match std::env::var("WXNOTIFY_BENCH_RUNTIME").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("multi_thread") => {
            tokio::runtime::Builder::new_multi_thread()
        }
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        other => panic!("WXNOTIFY_BENCH_RUNTIME={other:?}: `multi_thread` or `current_thread`"),
    }
    .enable_all()
    .build()
    .expect("tokio");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let server = listener.local_addr().expect("an address");
        tokio::spawn(serve(listener));

        let native = Side::Native(
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http(),
            format!("http://{server}/cgi-bin/message/template/send?access_token={TOKEN}"),
            native_body(),
        );
        // Engines compared, by how much of an instance they keep resident between calls and
        // how they reset it: `WXNOTIFY_BENCH_ENGINES=0,4096,4096/touched` (KiB; `/touched`:
        // only touched pages are reset), which is the default (the last is wxnotify's own).
        let sides: Vec<(String, Side)> = engines::configurations("0,4096,4096/touched")
            .into_iter()
            .map(|configuration| {
                let name = format!("component, {configuration} KiB kept");
                (name, Side::Component(tenant(&engines::engine(&configuration), server)))
            })
            .collect();
        // Warm up: the token cached, connections open, code paged in.
        for (_, side) in &sides {
            side.rate(64, 16).await;
        }
        native.rate(64, 16).await;

        let peers = Peer::installed();
        println!(
            "sends/s, median of {rounds} rounds of {count} sends; ratio = rate / native (same rounds)"
        );
        println!("{:<36} {:>10} {:>10} {:>7}", "configuration", "native", "rate", "ratio");
        for concurrency in [1, 16, 64] {
            let mut natives = Vec::new();
            let mut components = vec![Vec::new(); sides.len()];
            let mut peer_rates = vec![Vec::new(); peers.len()];
            for _ in 0..rounds {
                natives.push(native.rate(count, concurrency).await);
                for ((_, side), rates) in sides.iter().zip(&mut components) {
                    rates.push(side.rate(count, concurrency).await);
                }
                for (peer, rates) in peers.iter().zip(&mut peer_rates) {
                    rates.push(peer.rate(server, count, concurrency).await);
                }
            }
            let native_rate = median(natives);
            let names = sides
                .iter()
                .map(|(name, _)| name.as_str())
                .chain(peers.iter().map(|peer| peer.name));
            for (name, rates) in names.zip(components.into_iter().chain(peer_rates)) {
                let rate = median(rates);
                println!(
                    "{:<36} {native_rate:>10.0} {rate:>10.0} {:>7.2}",
                    format!("{name}, ×{concurrency}"),
                    rate / native_rate
                );
            }
        }
    });
}
