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
//! Run with `cargo bench -p wxnotify --bench sends` (`-- --quick` for a short run).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wxnotify::{
    ChannelMessage, Engine, EngineOptions, Notification, Recipient, TemplateMessage, Tenant,
};

const OA_OPENID: &str = "oOA0000000000000000000000001";

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
    let (runtime, tenant) = wechat::runtime_with_tenant(engine, "bench", server);
    // The runtime must outlive the tenant's calls: leak it, as a server would keep it.
    Box::leak(Box::new(runtime));
    tenant
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn engine(keep_resident: usize) -> Engine {
    Engine::with_options(EngineOptions {
        cache_dir: None,
        keep_resident_bytes: keep_resident,
        ..EngineOptions::default()
    })
    .expect("engine")
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (rounds, count) = if quick { (3, 256) } else { (7, 4096) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
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
        // Engines compared, by how much of an instance they keep resident between calls:
        // `WXNOTIFY_BENCH_KEEP_RESIDENT=0,1024,8192` (KiB), default: none and the default.
        let sizes: Vec<usize> = match std::env::var("WXNOTIFY_BENCH_KEEP_RESIDENT") {
            Ok(list) => list
                .split(',')
                .map(|kib| kib.trim().parse::<usize>().expect("sizes in KiB") << 10)
                .collect(),
            Err(_) => vec![0, EngineOptions::default().keep_resident_bytes],
        };
        let sides: Vec<(String, Side)> = sizes
            .into_iter()
            .map(|size| {
                let name = format!("component, resident {} KiB", size >> 10);
                (name, Side::Component(tenant(&engine(size), server)))
            })
            .collect();
        // Warm up: the token cached, connections open, code paged in.
        for (_, side) in &sides {
            side.rate(64, 16).await;
        }
        native.rate(64, 16).await;

        println!(
            "sends/s, median of {rounds} rounds of {count} sends; ratio = component / native (same run)"
        );
        println!("{:<32} {:>12} {:>12} {:>8}", "configuration", "native", "component", "ratio");
        for concurrency in [1, 16, 64] {
            for (name, side) in &sides {
                let (mut natives, mut components) = (Vec::new(), Vec::new());
                for _ in 0..rounds {
                    natives.push(native.rate(count, concurrency).await);
                    components.push(side.rate(count, concurrency).await);
                }
                let (native_rate, component_rate) = (median(natives), median(components));
                println!(
                    "{:<32} {native_rate:>12.0} {component_rate:>12.0} {:>8.2}",
                    format!("{name}, ×{concurrency}"),
                    component_rate / native_rate
                );
            }
        }
    });
}
