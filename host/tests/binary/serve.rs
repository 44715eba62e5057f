//! `wxnotify serve` as it runs in production: separate processes, killed without warning,
//! sharing a queue, against a WeChat that fails. Every notification must reach the sandbox,
//! none twice.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wxnotify_sandbox::{Fault, FaultAction, Sandbox, SandboxConfig, SeedUser};

const API_KEY: &str = "test-api-key-0123456789";

/// A tenants file for tenant `shop` on the sandbox, with `storage` TOML.
fn write_tenants(dir: &Path, sandbox: &Sandbox, storage: &str) {
    let (mini, oa) = (sandbox.state().mini_app(), sandbox.state().oa_app());
    std::fs::write(
        dir.join("wxnotify.toml"),
        format!(
            "[storage]\n{storage}\n\n[tenants.shop]\napi_base = \"{}\"\napi_key_env = \"SHOP_API_KEY\"\n\
             [tenants.shop.limits]\ndeadline_ms = 5000\n\
             [tenants.shop.mini_program]\nappid = \"{}\"\nsecret = \"{}\"\n\
             [tenants.shop.official_account]\nappid = \"{}\"\nsecret = \"{}\"\n",
            sandbox.base_url(),
            mini.appid,
            mini.secret,
            oa.appid,
            oa.secret
        ),
    )
    .unwrap();
}

/// A sandbox that records every request of a 5 000-notification run.
async fn big_sandbox() -> crate::CheckedSandbox {
    let config = SandboxConfig {
        record_limit: 1_000_000,
        ..SandboxConfig::default()
    };
    crate::sandbox(config).await
}

/// The OA openid of a new user who does or does not follow the OA.
fn oa_user(sandbox: &Sandbox, follows_oa: bool) -> String {
    let seed = SeedUser {
        follows_oa,
        has_unionid: true,
        ..SeedUser::default()
    };
    sandbox.state().add_user(seed).oa_openid.unwrap()
}

/// A running `wxnotify serve`; killed (SIGKILL) on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(dir: &Path, name: &str) -> Server {
        let (child, addr) = crate::start_serve(
            dir,
            &[("SHOP_API_KEY", API_KEY)],
            &["--workers", "4", "--worker-name", name],
        );
        Server { child, addr }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with the API key; returns status and JSON body.
async fn request(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(ToString::to_string).unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

/// The status of notification `id` of `shop`: HTTP status and JSON body.
async fn status_of(addr: &str, id: &str) -> (u16, Value) {
    request(addr, "GET", &format!("/v1/shop/notifications/{id}"), None).await
}

/// Submits `keys.len()` template messages to `oa`, in batches of 500, one idempotency key each.
async fn submit(addr: &str, oa: &str, keys: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for batch in keys.chunks(500) {
        let notifications: Vec<Value> = batch
            .iter()
            .map(|key| {
                json!({
                    "recipient": {"official_account": oa},
                    "channels": [{"template_message": {"template_id": "TPL_ORDER_SHIPPED", "data": {"thing1": "Shipped"}}}],
                    "idempotency_key": key,
                })
            })
            .collect();
        let (status, answer) = request(
            addr,
            "POST",
            "/v1/shop/notifications",
            Some(&json!({ "notifications": notifications })),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        ids.extend(
            answer["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_owned()),
        );
    }
    ids
}

/// Waits (bounded) until `done` holds.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    crate::poll(limit, Duration::from_millis(50), || {
        let done = done();
        async move {
            if done {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(format!("gave up waiting for {what}"))
            }
        }
    })
    .await
}

/// How many template/send requests and deliveries the sandbox saw per client_msg_id.
fn sends_per_key(sandbox: &Sandbox) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut requests = HashMap::new();
    for request in sandbox.state().requests() {
        if request.path == "/cgi-bin/message/template/send"
            && let Some(key) = request
                .body
                .as_ref()
                .and_then(|b| b["client_msg_id"].as_str())
        {
            *requests.entry(key.to_owned()).or_insert(0) += 1;
        }
    }
    let mut delivered = HashMap::new();
    for message in sandbox.state().delivered_template_messages() {
        *delivered
            .entry(message.client_msg_id.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    (requests, delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_delivery_loses_nothing_and_sends_nothing_twice() {
    let sandbox = big_sandbox().await;
    let oa = oa_user(&sandbox, true);
    // Slow WeChat down a little, so the kill lands mid-delivery.
    sandbox.state().inject(Fault::new(
        "/cgi-bin/message/template/send",
        FaultAction::Latency(Duration::from_millis(2)),
    ));
    let dir = tempfile::tempdir().unwrap();
    write_tenants(
        dir.path(),
        &sandbox,
        "backend = \"sqlite\"\npath = \"wxnotify.sqlite3\"",
    );
    let keys: Vec<String> = (0..5_000).map(|i| format!("crash-{i}")).collect();

    let first = Server::start(dir.path(), "first");
    let ids = submit(&first.addr, &oa, &keys).await;
    assert_eq!(ids.len(), 5_000);
    wait_until("the first deliveries", Duration::from_secs(120), || {
        sandbox.state().delivered_template_messages().len() >= 1_000
    })
    .await;
    first.kill(); // SIGKILL: no drain, sends in flight are cut off.
    let at_kill = sandbox.state().delivered_template_messages().len();
    assert!(at_kill < 5_000, "the kill came too late to prove anything");

    let second = Server::start(dir.path(), "second");
    wait_until("every notification", Duration::from_secs(180), || {
        sandbox.state().delivered_template_messages().len() >= 5_000
    })
    .await;
    let (requests, delivered) = sends_per_key(&sandbox);
    assert_eq!(delivered.len(), 5_000, "every notification reached WeChat");
    assert!(
        delivered.values().all(|&n| n == 1),
        "none was delivered twice (client_msg_id)"
    );
    let resent = requests.values().filter(|&&n| n > 1).count();
    assert!(
        resent <= 4 * 8,
        "only sends in flight at the kill were repeated: {resent}"
    );
    for id in [&ids[0], &ids[2_500], &ids[4_999]] {
        let (status, state) = status_of(&second.addr, id).await;
        assert_eq!(
            (status, state["state"].as_str()),
            (200, Some("delivered")),
            "{state}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_redis_deliver_5000_once_with_one_token_fetch() {
    let redis = wxnotify_store::testing::RedisServer::start(None);
    let sandbox = big_sandbox().await;
    let oa = oa_user(&sandbox, true);
    let dir = tempfile::tempdir().unwrap();
    write_tenants(
        dir.path(),
        &sandbox,
        &format!("backend = \"redis\"\nurl = \"{}\"", redis.url()),
    );
    let (a, b) = (
        Server::start(dir.path(), "a"),
        Server::start(dir.path(), "b"),
    );
    let keys: Vec<String> = (0..5_000).map(|i| format!("shared-{i}")).collect();
    let (first_half, second_half) = keys.split_at(2_500);
    tokio::join!(
        submit(&a.addr, &oa, first_half),
        submit(&b.addr, &oa, second_half)
    );

    wait_until("every notification", Duration::from_secs(180), || {
        sandbox.state().delivered_template_messages().len() >= 5_000
    })
    .await;
    let (requests, delivered) = sends_per_key(&sandbox);
    assert_eq!(delivered.len(), 5_000);
    assert!(
        requests.values().all(|&n| n == 1),
        "no notification was sent twice"
    );
    assert_eq!(
        sandbox
            .state()
            .token_fetches(&sandbox.state().oa_app().appid),
        1,
        "one token fetch for the account"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_faulty_wechat_delays_but_never_loses_and_refusals_are_not_retried() {
    let sandbox = big_sandbox().await;
    let follower = oa_user(&sandbox, true);
    let stranger = oa_user(&sandbox, false);
    let state = sandbox.state();
    state.inject(
        Fault::errcode("/cgi-bin/message/template/send", -1, "system error").probability(0.10),
    );
    state.inject(
        Fault::new(
            "/cgi-bin/message/template/send",
            FaultAction::DropConnection,
        )
        .probability(0.05),
    );
    let dir = tempfile::tempdir().unwrap();
    write_tenants(
        dir.path(),
        &sandbox,
        "backend = \"sqlite\"\npath = \"wxnotify.sqlite3\"",
    );
    let server = Server::start(dir.path(), "faulty");

    let keys: Vec<String> = (0..1_000).map(|i| format!("fault-{i}")).collect();
    let refused_keys: Vec<String> = (0..20).map(|i| format!("refused-{i}")).collect();
    let ids = submit(&server.addr, &follower, &keys[..500]).await;
    wait_until("a first part", Duration::from_secs(120), || {
        state.delivered_template_messages().len() >= 200
    })
    .await;
    state.invalidate_tokens(&state.oa_app().appid).unwrap();
    submit(&server.addr, &follower, &keys[500..]).await;
    let refused_ids = submit(&server.addr, &stranger, &refused_keys).await;

    wait_until(
        "every follower notification",
        Duration::from_secs(240),
        || state.delivered_template_messages().len() >= 1_000,
    )
    .await;
    let (_, delivered) = sends_per_key(&sandbox);
    assert_eq!(
        delivered.len(),
        1_000,
        "every notification to the follower was delivered"
    );
    // The refusals were queued last and may still be backing off from a -1: wait for each to
    // end rather than assume it already has.
    let started = Instant::now();
    let addr = server.addr.as_str();
    for id in &refused_ids {
        // One 120 s budget for all of them.
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        let status = crate::poll(left, Duration::from_millis(100), move || async move {
            let (_, status) = status_of(addr, id).await;
            if status["state"] != "queued" && status["state"] != "in_flight" {
                ControlFlow::Break(status)
            } else {
                ControlFlow::Continue(format!("gave up waiting for the refusal to end: {status}"))
            }
        })
        .await;
        assert_eq!(status["state"], "failed", "{status}");
    }
    // A -1 before the refusal may be retried; the refusal itself never is.
    let mut refusals: HashMap<String, usize> = HashMap::new();
    for request in state.requests() {
        if request.errcode == 43004
            && let Some(key) = request
                .body
                .as_ref()
                .and_then(|b| b["client_msg_id"].as_str())
        {
            *refusals.entry(key.to_owned()).or_insert(0) += 1;
        }
    }
    // After the first 43004 the non-follower is remembered, so later ones cost no call at all.
    assert!(
        !refusals.is_empty(),
        "WeChat refused the stranger at least once"
    );
    assert!(
        refusals.values().all(|&n| n == 1),
        "a 43004 was retried: {refusals:?}"
    );
    assert!(refused_keys.iter().all(|key| !delivered.contains_key(key)));
    let (_, status) = status_of(&server.addr, &ids[0]).await;
    assert_eq!(status["state"], "delivered");
}
