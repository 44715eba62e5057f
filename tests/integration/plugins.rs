//! Plugins end to end: the WeCom group robot plugin (`plugins/wecom-robot/`) in the real host,
//! posting to the sandbox's robot webhook, alone and swapped in for the built-in component.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wxnotify::tenant::TenantsFile;
use wxnotify::{
    Channel, ChannelMessage, Notification, NotifyError, Recipient, TemplateMessage, Tenant,
};
use wxnotify_sandbox::{Fault, ROBOT_MESSAGES_PER_MINUTE, WECOM_WEBHOOK_SEND};
use wxnotify_tests::{World, call, data, template_to};

/// The staging group's robot.
const ROBOT_KEY: &str = "5b1d9e7c-3f2a-4c8e-a6d0-staging-robot";
/// The variable the tenants file names for the key (`webhook_key = { env = … }`).
const KEY_VARIABLE: &str = "STAGING_ROBOT_KEY";

fn robot_plugin() -> &'static Path {
    Path::new(env!("WXNOTIFY_PLUGIN_WECOM_ROBOT"))
}

/// Adds tenant `id` running the robot plugin against the sandbox, with no WeChat account: its
/// `webhook_key` is read from [`KEY_VARIABLE`], which holds `key` (`None`: unset, and the
/// tenant sets no key).
fn robot_tenant(world: &World, id: &str, key: Option<&str>) -> Arc<Tenant> {
    let mut toml = format!(
        "[tenants.{id}]\nplugin = \"{}\"\napi_base = \"{}\"\n",
        robot_plugin().display(),
        world.sandbox.base_url()
    );
    if key.is_some() {
        toml.push_str(&format!(
            "[tenants.{id}.config]\nwebhook_key = {{ env = \"{KEY_VARIABLE}\" }}\n"
        ));
    }
    let file = TenantsFile::parse(&toml, "test").expect("tenants file");
    let mut tenants = file
        .resolve_all(|variable| {
            (variable == KEY_VARIABLE)
                .then_some(key)
                .flatten()
                .map(str::to_owned)
        })
        .expect("tenant resolves");
    world
        .runtime
        .add_tenant(tenants.remove(0))
        .expect("tenant is added")
}

/// Order #42 has shipped, as the shop tells a user it knows only by OA openid.
fn order_shipped() -> Notification {
    Notification {
        recipient: Recipient::OfficialAccount("oa-openid-of-a-real-user".into()),
        channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL_ORDER_SHIPPED".into(),
            data: data(&[
                ("thing1", "Order #42 shipped"),
                ("character_string2", "SF1234567890"),
                ("time3", "2024-05-01 10:00"),
            ]),
            url: Some("https://shop.example/orders/42".into()),
            miniprogram: None,
        })],
        idempotency_key: Some("order-42-shipped".into()),
    }
}

#[track_caller]
fn assert_in_order(content: &str, parts: &[&str]) {
    let mut from = 0;
    for part in parts {
        let at = content[from..]
            .find(part)
            .unwrap_or_else(|| panic!("`{part}` missing or out of order in:\n{content}"));
        from += at + part.len();
    }
}

#[tokio::test]
async fn a_notification_lands_in_the_group_as_markdown_with_its_keywords() {
    let world = World::in_memory().await;
    let sandbox = world.sandbox.state();
    sandbox.add_robot(ROBOT_KEY);
    let staging = robot_tenant(&world, "staging", Some(ROBOT_KEY));

    let delivery = staging.send_notification(&order_shipped()).await.unwrap();
    assert!(matches!(delivery.channel, Channel::TemplateMessage));
    assert_eq!(delivery.openid, "oa-openid-of-a-real-user");
    assert_eq!(delivery.msgid, None);
    assert_eq!(delivery.attempts, 1);
    assert!(delivery.truncated.is_empty() && delivery.failures.is_empty());

    let messages = sandbox.robot_messages(ROBOT_KEY);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].msgtype, "markdown");
    assert_in_order(
        &messages[0].content,
        &[
            "official-account openid `oa-openid-of-a-real-user`",
            "order-42-shipped",
            "Template message** `TPL_ORDER_SHIPPED`",
            "> thing1: Order #42 shipped",
            "> character_string2: SF1234567890",
            "> time3: 2024-05-01 10:00",
            "> url: https://shop.example/orders/42",
        ],
    );
    assert!(
        sandbox.delivered_template_messages().is_empty(),
        "nothing reached the user"
    );
    let requests = sandbox.requests();
    assert_eq!(requests.len(), 1, "one webhook call, no token fetch");
    assert_eq!(requests[0].path, WECOM_WEBHOOK_SEND);
    assert_eq!(requests[0].query["key"], "***");
    assert_eq!(requests[0].body.as_ref().unwrap()["msgtype"], "markdown");
}

#[tokio::test]
async fn a_wrong_webhook_key_is_reported_without_showing_it() {
    let world = World::in_memory().await;
    world.sandbox.state().add_robot(ROBOT_KEY);
    let wrong_key = "9f8e7d6c-wrong-key-of-another-group";
    let staging = robot_tenant(&world, "staging", Some(wrong_key));

    let error = staging
        .send_notification(&order_shipped())
        .await
        .unwrap_err();
    let Some(NotifyError::Auth(api)) = error.notify_error() else {
        panic!("expected an auth error, got {error}");
    };
    assert_eq!(api.errcode, 93000);
    let shown = format!("{error} / {error:?}");
    assert!(shown.contains("webhook_key"), "{shown}");
    assert!(!shown.contains(wrong_key), "the key leaked: {shown}");

    let requests = world.sandbox.state().requests();
    assert_eq!(requests.len(), 1, "a wrong key is not retried");
    assert_eq!(requests[0].errcode, 93000);
    assert!(world.sandbox.state().robot_messages(ROBOT_KEY).is_empty());
}

#[tokio::test]
async fn a_missing_webhook_key_is_a_config_error_before_any_call() {
    let world = World::in_memory().await;
    let staging = robot_tenant(&world, "staging", None);
    let error = staging
        .send_notification(&order_shipped())
        .await
        .unwrap_err();
    assert!(
        matches!(error.notify_error(), Some(NotifyError::Config(m)) if m.contains("webhook_key is not set")),
        "{error}"
    );
    assert!(world.sandbox.state().requests().is_empty());
}

#[tokio::test]
async fn the_21st_message_within_a_minute_is_a_quota_error() {
    let world = World::in_memory().await;
    let sandbox = world.sandbox.state();
    sandbox.add_robot(ROBOT_KEY);
    let staging = robot_tenant(&world, "staging", Some(ROBOT_KEY));

    for _ in 0..ROBOT_MESSAGES_PER_MINUTE {
        staging.send_notification(&order_shipped()).await.unwrap();
    }
    let error = staging
        .send_notification(&order_shipped())
        .await
        .unwrap_err();
    assert!(
        matches!(error.notify_error(), Some(NotifyError::Quota { error: api, .. }) if api.errcode == 45009),
        "{error}"
    );
    assert_eq!(
        sandbox.robot_messages(ROBOT_KEY).len(),
        ROBOT_MESSAGES_PER_MINUTE
    );
    assert_eq!(
        sandbox.requests().len(),
        ROBOT_MESSAGES_PER_MINUTE + 1,
        "a quota refusal is not retried"
    );

    sandbox.advance_clock(Duration::from_secs(60));
    staging.send_notification(&order_shipped()).await.unwrap();
    assert_eq!(
        sandbox.robot_messages(ROBOT_KEY).len(),
        ROBOT_MESSAGES_PER_MINUTE + 1
    );
}

#[tokio::test]
async fn a_busy_robot_is_retried_once_then_reported_unavailable() {
    let world = World::in_memory().await;
    let sandbox = world.sandbox.state();
    sandbox.add_robot(ROBOT_KEY);
    let staging = robot_tenant(&world, "staging", Some(ROBOT_KEY));

    sandbox.inject(Fault::errcode(WECOM_WEBHOOK_SEND, -1, "system busy").times(1));
    let delivery = staging.send_notification(&order_shipped()).await.unwrap();
    assert_eq!(delivery.attempts, 2);
    assert_eq!(sandbox.robot_messages(ROBOT_KEY).len(), 1);

    sandbox.inject(Fault::errcode(WECOM_WEBHOOK_SEND, -1, "system busy").times(2));
    let error = staging
        .send_notification(&order_shipped())
        .await
        .unwrap_err();
    assert!(
        matches!(error.notify_error(), Some(NotifyError::Unavailable { message: m, .. }) if m.contains("busy")),
        "{error}"
    );
    let errcodes: Vec<i64> = sandbox.requests().iter().map(|r| r.errcode).collect();
    assert_eq!(errcodes, [-1, 0, -1, -1]);
    assert_eq!(sandbox.robot_messages(ROBOT_KEY).len(), 1);
}

#[tokio::test]
async fn content_over_4096_bytes_is_cut_and_the_delivery_says_what() {
    let world = World::in_memory().await;
    world.sandbox.state().add_robot(ROBOT_KEY);
    let staging = robot_tenant(&world, "staging", Some(ROBOT_KEY));
    let long = "货".repeat(2000);
    let notification = Notification {
        recipient: Recipient::Union("union-1".into()),
        channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL_LONG".into(),
            data: data(&[("thing1", &long), ("time3", "2024-05-01 10:00")]),
            url: None,
            miniprogram: None,
        })],
        idempotency_key: None,
    };
    let delivery = staging.send_notification(&notification).await.unwrap();
    assert_eq!(delivery.truncated, ["thing1", "time3"]);
    let messages = world.sandbox.state().robot_messages(ROBOT_KEY);
    assert_eq!(messages.len(), 1, "the sandbox took the cut content");
    assert!(messages[0].content.len() <= 4096);
    assert!(messages[0].content.ends_with("(cut: over 4096 bytes)"));
}

#[tokio::test]
async fn a_live_swap_sends_one_tenant_to_the_robot_while_another_keeps_wechat() {
    let world = World::in_memory().await;
    let sandbox = world.sandbox.state();
    sandbox.add_robot(ROBOT_KEY);
    let oa = Recipient::OfficialAccount(world.new_follower_oa_openid());
    let staging = world.add_tenant(
        "staging",
        &format!("[tenants.staging.config]\nwebhook_key = \"{ROBOT_KEY}\""),
    );
    let shop = world.shop();

    let before = staging
        .send_notification(&template_to(oa.clone(), "before the swap", None))
        .await
        .unwrap();
    assert!(before.msgid.is_some(), "the built-in component sent it");
    assert_eq!(sandbox.delivered_template_messages().len(), 1);

    world
        .runtime
        .swap_plugin("staging", Some(robot_plugin()))
        .unwrap();
    assert_eq!(
        staging.plugin_source(),
        robot_plugin().display().to_string()
    );
    let after = staging
        .send_notification(&template_to(oa.clone(), "after the swap", None))
        .await
        .unwrap();
    assert_eq!(after.msgid, None);
    let messages = sandbox.robot_messages(ROBOT_KEY);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].content.contains("> thing1: after the swap"));
    assert_eq!(
        sandbox.delivered_template_messages().len(),
        1,
        "the swapped tenant sent no template message"
    );

    shop.send_notification(&template_to(oa, "shop is untouched", None))
        .await
        .unwrap();
    let delivered = sandbox.delivered_template_messages();
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[1].displayed[0].text, "shop is untouched");
    assert_eq!(sandbox.robot_messages(ROBOT_KEY).len(), 1);
    assert_eq!(shop.plugin_source(), "built-in");
}

#[tokio::test]
async fn identity_calls_get_a_clear_config_error() {
    let world = World::in_memory().await;
    let staging = robot_tenant(&world, "staging", Some(ROBOT_KEY));

    let error = staging
        .resolve_user(&Recipient::MiniProgram("mini-1".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(error.notify_error(), Some(NotifyError::Config(m))
            if m.contains("wecom-robot plugin does not serve notifier.resolve-user")),
        "{error}"
    );
    let error = staging.login("code-1").await.unwrap_err();
    assert!(
        matches!(error.notify_error(), Some(NotifyError::Config(m)) if m.contains("accounts.login")),
        "{error}"
    );
    let error = staging.sync_followers(false).await.unwrap_err();
    assert!(
        matches!(error.notify_error(), Some(NotifyError::Config(m)) if m.contains("accounts.sync-followers")),
        "{error}"
    );
    assert!(world.sandbox.state().requests().is_empty());
}

#[tokio::test]
async fn its_json_api_takes_the_built_in_components_json() {
    let world = World::in_memory().await;
    let sandbox = world.sandbox.state();
    sandbox.add_robot(ROBOT_KEY);
    let staging = robot_tenant(&world, "staging", Some(ROBOT_KEY));

    // The payload a gateway posts (and `wxnotify serve` stores). Written out, not built
    // with `json!` (whose objects sort their keys), so the keyword order is the caller's.
    let payload = r#"{
        "recipient": {"mini_program": "mini-openid-7"},
        "channels": [{"subscribe_message": {"template_id": "TPL_ORDER_STATUS",
            "data": {"thing1": "Refund approved", "amount4": "¥12.50"}, "page": "pages/order/detail"}}],
        "idempotency_key": "refund-7"
    }"#;
    let (status, delivery) = call(&staging, "POST", "/v1/notifications", payload).await;
    assert_eq!(status, 200, "{delivery}");
    assert_eq!(
        delivery,
        json!({"channel": "subscribe_message", "msgid": null, "openid": "mini-openid-7",
               "attempts": 1, "truncated": [], "failures": []})
    );
    let messages = sandbox.robot_messages(ROBOT_KEY);
    assert_eq!(messages.len(), 1);
    assert_in_order(
        &messages[0].content,
        &[
            "Subscribe message** `TPL_ORDER_STATUS`",
            "> thing1: Refund approved",
            "> amount4: ¥12.50",
            "> page: pages/order/detail",
        ],
    );

    let no_channels = r#"{"recipient": {"union": "u-1"}, "channels": []}"#;
    let (status, error) = call(&staging, "POST", "/v1/notifications", no_channels).await;
    assert_eq!(
        (status, &error["error"]["kind"]),
        (400, &json!("invalid_input"))
    );
    // The JSON API is derived from the same implementation as the typed exports, so a route
    // the plugin does not serve answers what the export does.
    let (status, error) = call(&staging, "GET", "/v1/users/mini/mini-openid-7", "").await;
    assert_eq!((status, &error["error"]["kind"]), (500, &json!("config")));
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("wecom-robot plugin does not serve notifier.resolve-user"),
        "{message}"
    );
    let (status, _) = call(&staging, "GET", "/v1/notifications", "").await;
    assert_eq!(status, 405);

    sandbox.inject(Fault::errcode(WECOM_WEBHOOK_SEND, 45009, "api freq out of limit").times(1));
    let (status, error) = call(&staging, "POST", "/v1/notifications", payload).await;
    assert_eq!(status, 429, "the outbox retries it later");
    assert_eq!(error["error"]["kind"], "quota");
    assert_eq!(error["error"]["errcode"], 45009);
    assert_eq!(
        error["error"]["retry_after_secs"], 60,
        "a per-minute limit, not WeChat's daily quota: the outbox must not pause till midnight"
    );
    assert_eq!(sandbox.robot_messages(ROBOT_KEY).len(), 1);
}

/// `POST` or `GET` to `wxnotify serve` at `addr` over a plain connection; the status and JSON.
async fn serve_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: wxnotify\r\nauthorization: Bearer staging-key\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let (_, json) = answer.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(json).unwrap_or_default())
}

#[tokio::test]
async fn under_serve_it_delivers_through_its_typed_exports_and_its_quota_waits_a_minute() {
    use wxnotify::serve::{ServeOptions, Server};
    use wxnotify_store::outbox::{SharedOutbox, SqliteOutbox};

    let world = World::in_memory().await;
    let sandbox = world.sandbox.state();
    sandbox.add_robot(ROBOT_KEY);
    // A server of its own, with the robot tenant only.
    let runtime =
        Arc::new(wxnotify::Runtime::new(wxnotify_tests::engine(), world.backend.clone()).unwrap());
    let toml = format!(
        "[tenants.staging]\nplugin = \"{}\"\napi_base = \"{}\"\n\
         [tenants.staging.config]\nwebhook_key = {{ env = \"{KEY_VARIABLE}\" }}\n",
        robot_plugin().display(),
        world.sandbox.base_url()
    );
    let tenant = TenantsFile::parse(&toml, "test")
        .unwrap()
        .resolve_all(|_| Some(ROBOT_KEY.to_owned()))
        .unwrap()
        .remove(0);
    runtime.add_tenant(tenant).unwrap();
    let outbox: SharedOutbox = Arc::new(SqliteOutbox::open_in_memory().unwrap());
    let keys = [("staging".to_owned(), Some("staging-key".to_owned()))].into();
    let options = ServeOptions {
        bind: ([127, 0, 0, 1], 0).into(),
        workers: 1,
        ..ServeOptions::default()
    };
    let server = Server::start(runtime, outbox.clone(), keys, options)
        .await
        .unwrap();
    let addr = server.addr();
    let notification = r#"{"recipient": {"mini_program": "mini-openid-7"},
        "channels": [{"subscribe_message": {"template_id": "TPL_ORDER_STATUS",
            "data": {"thing1": "Refund approved"}}}]}"#;

    // Checked through `check-notification`, delivered through `send-notification`.
    let (status, accepted) =
        serve_request(addr, "POST", "/v1/staging/notifications", notification).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/staging/notifications/{id}");
    let delivered = wait_for(addr, &path, "delivered").await;
    assert_eq!(delivered["channel"], "subscribe_message", "{delivered}");
    assert_eq!(sandbox.robot_messages(ROBOT_KEY).len(), 1);
    let (status, refused) = serve_request(
        addr,
        "POST",
        "/v1/staging/notifications",
        r#"{"recipient": {"union": "u"}, "channels": []}"#,
    )
    .await;
    assert_eq!(
        (status, &refused["error"]["kind"]),
        (400, &json!("invalid_input"))
    );

    // The robot's per-minute limit: retried in a minute, the tenant not paused till midnight.
    sandbox.inject(Fault::errcode(WECOM_WEBHOOK_SEND, 45009, "api freq out of limit").times(1));
    let (_, accepted) =
        serve_request(addr, "POST", "/v1/staging/notifications", notification).await;
    let id = accepted["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/staging/notifications/{id}");
    let waiting = wait_for(addr, &path, "queued").await;
    assert_eq!(waiting["error"]["retry_after_secs"], 60, "{waiting}");
    let next = outbox
        .status(&id)
        .await
        .unwrap()
        .unwrap()
        .next_attempt_at
        .unwrap();
    let wait = next
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
        "retried in {wait:?}"
    );
    server.shutdown().await;
}

/// Polls `path` until the notification's state is `state` (its first attempt made).
async fn wait_for(addr: std::net::SocketAddr, path: &str, state: &str) -> serde_json::Value {
    for _ in 0..200 {
        let (_, status) = serve_request(addr, "GET", path, "").await;
        if status["state"] == state && status["attempts"].as_u64() >= Some(1) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{path} never reached {state}");
}
