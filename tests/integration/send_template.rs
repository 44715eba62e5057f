//! A notification leaves the host, runs through the sandboxed component and reaches the
//! sandbox as an OA template message to the user's OA openid — although the caller only knew
//! the user's mini-program openid.

use serde_json::json;
use wxnotify::{
    Channel, ChannelMessage, MiniprogramPage, Notification, Recipient, TemplateMessage,
};
use wxnotify_tests::{World, data};

fn shipped(recipient: Recipient) -> Notification {
    Notification {
        recipient,
        channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL_ORDER_SHIPPED".into(),
            data: data(&[
                ("thing1", "Your order shipped"),
                ("character_string2", "SF1234567890"),
                ("time3", "2026-11-21 10:00"),
            ]),
            url: None,
            miniprogram: Some(MiniprogramPage {
                appid: None,
                pagepath: "pages/order/detail?id=42".into(),
            }),
        })],
        idempotency_key: Some("order-42-shipped".into()),
    }
}

#[tokio::test]
async fn template_message_to_a_mini_program_openid_reaches_the_oa_openid() {
    let world = World::start().await;
    let user = world.follower_known_to_shop().await;
    let (mini, oa) = (
        user.mini_openid.clone().unwrap(),
        user.oa_openid.clone().unwrap(),
    );
    let sandbox = world.sandbox.state();
    sandbox.clear_requests();

    let delivery = world
        .shop()
        .send_notification(&shipped(Recipient::MiniProgram(mini.clone())))
        .await
        .unwrap();

    // What the caller got back.
    assert_eq!(delivery.channel, Channel::TemplateMessage);
    assert_eq!(
        delivery.openid, oa,
        "sent to the OA openid, not the mini-program one"
    );
    assert_ne!(delivery.openid, mini);
    assert_eq!(delivery.attempts, 1);
    assert!(delivery.failures.is_empty() && delivery.truncated.is_empty());

    // What the sandbox received.
    let sends: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.path == "/cgi-bin/message/template/send")
        .collect();
    assert_eq!(sends.len(), 1);
    let send = &sends[0];
    assert_eq!(send.method, "POST");
    assert_eq!(send.errcode, 0);
    assert_eq!(
        send.body.as_ref().unwrap(),
        &json!({
            "touser": oa,
            "template_id": "TPL_ORDER_SHIPPED",
            "data": {
                "thing1": {"value": "Your order shipped"},
                "character_string2": {"value": "SF1234567890"},
                "time3": {"value": "2026-11-21 10:00"},
            },
            "miniprogram": {"appid": world.mini_appid(), "pagepath": "pages/order/detail?id=42"},
            "client_msg_id": "order-42-shipped",
        })
    );
    let delivered = sandbox.delivered_template_messages();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        Some(delivered[0].msgid),
        delivery.msgid,
        "the caller gets WeChat's msgid"
    );

    // The token used is the OA's current stable token: WeChat hands the same one back in
    // normal mode (asked last, as it counts as a fetch).
    let used = send.query.get("access_token").cloned().unwrap();
    let current = current_stable_token(&world, &world.oa_appid(), &sandbox.oa_app().secret).await;
    assert_eq!(used, current);
}

#[tokio::test]
async fn sending_twice_fetches_the_token_once() {
    let world = World::start().await;
    let user = world.follower_known_to_shop().await;
    let sandbox = world.sandbox.state();
    let oa = world.oa_appid();
    let before = sandbox.token_fetches(&oa);
    assert_eq!(before, 1, "the follower sync fetched the OA token once");

    for key in ["first", "second"] {
        let mut notification = shipped(Recipient::MiniProgram(user.mini_openid.clone().unwrap()));
        notification.idempotency_key = Some(key.into());
        world.shop().send_notification(&notification).await.unwrap();
    }

    assert_eq!(sandbox.delivered_template_messages().len(), 2);
    assert_eq!(
        sandbox.token_fetches(&oa),
        1,
        "both sends used the cached token"
    );
    let tokens: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.path == "/cgi-bin/message/template/send")
        .map(|r| r.query["access_token"].clone())
        .collect();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0], tokens[1]);
}

#[tokio::test]
async fn the_token_cache_survives_a_new_runtime_on_the_same_sqlite_file() {
    let world = World::start().await;
    let user = world.follower_known_to_shop().await;
    let wxnotify_tests::Storage::Sqlite(dir) = &world.storage else {
        unreachable!()
    };

    // A second process: its own runtime, the same file.
    let backend = std::sync::Arc::new(wxnotify_tests::sqlite(dir.path()));
    let second = World {
        sandbox: world.sandbox.clone(),
        backend: backend.clone(),
        runtime: wxnotify::Runtime::new(wxnotify_tests::engine(), backend).unwrap(),
        storage: wxnotify_tests::Storage::Memory,
    };
    second.add_tenant("shop", "");
    second
        .shop()
        .send_notification(&shipped(Recipient::MiniProgram(
            user.mini_openid.clone().unwrap(),
        )))
        .await
        .unwrap();

    assert_eq!(world.sandbox.state().token_fetches(&world.oa_appid()), 1);
    assert_eq!(
        world.sandbox.state().delivered_template_messages()[0].touser,
        user.oa_openid.unwrap()
    );
}

async fn current_stable_token(world: &World, appid: &str, secret: &str) -> String {
    let body = json!({"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": false}).to_string();
    let answer = raw_post(
        &world.sandbox.addr().to_string(),
        "/cgi-bin/stable_token",
        &body,
    )
    .await;
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

/// A minimal HTTP/1.1 POST: the tests need no HTTP client beyond this.
pub async fn raw_post(addr: &str, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.to_owned()
}
