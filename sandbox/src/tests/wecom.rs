//! The WeCom group robot webhook: key, message rules, the per-minute limit, recording, faults.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use super::{Client, assert_errcode};
use crate::{Fault, ROBOT_MESSAGES_PER_MINUTE, SandboxConfig, WECOM_WEBHOOK_SEND};

const KEY: &str = "0b5c3e2a-robot-key-for-tests";

fn send_to(key: &str) -> String {
    format!("{WECOM_WEBHOOK_SEND}?key={key}")
}

fn markdown(content: &str) -> serde_json::Value {
    json!({ "msgtype": "markdown", "markdown": { "content": content } })
}

async fn with_robot() -> Client {
    let client = Client::new().await;
    client.sandbox.add_robot(KEY);
    client
}

#[tokio::test]
async fn a_known_robot_takes_markdown_and_text_with_mentions() {
    let client = with_robot().await;
    assert_errcode(&client.post(&send_to(KEY), &markdown("**hi**")).await, 0);
    let text = json!({ "msgtype": "text", "text": {
        "content": "on call", "mentioned_list": ["zhangsan"], "mentioned_mobile_list": ["13800001111"] } });
    assert_errcode(&client.post(&send_to(KEY), &text).await, 0);

    let messages = client.sandbox.robot_messages(KEY);
    assert_eq!(messages.len(), 2);
    assert_eq!(
        (messages[0].msgtype.as_str(), messages[0].content.as_str()),
        ("markdown", "**hi**")
    );
    assert_eq!(messages[1].msgtype, "text");
    assert_eq!(messages[1].mentioned_list, ["zhangsan"]);
    assert_eq!(messages[1].mentioned_mobile_list, ["13800001111"]);
    assert!(client.sandbox.robot_messages("another-key").is_empty());
}

#[tokio::test]
async fn robots_can_be_configured_up_front() {
    let client = Client::start(SandboxConfig {
        robot_keys: vec![KEY.to_owned()],
        ..SandboxConfig::default()
    })
    .await;
    assert_errcode(&client.post(&send_to(KEY), &markdown("up front")).await, 0);
    assert_eq!(client.sandbox.robot_messages(KEY).len(), 1);
}

#[tokio::test]
async fn refuses_what_wecom_refuses() {
    let client = with_robot().await;
    let send = send_to(KEY);
    assert_errcode(
        &client.post(&send_to("unknown"), &markdown("x")).await,
        93000,
    );
    assert_errcode(
        &client.post(WECOM_WEBHOOK_SEND, &markdown("x")).await,
        93000,
    );
    assert_errcode(&client.get(&send).await, 43002);
    assert_errcode(
        &client.call(Method::POST, &send, Some("{not json")).await,
        47001,
    );
    assert_errcode(
        &client.post(&send, &json!({ "msgtype": "voice" })).await,
        40008,
    );
    assert_errcode(
        &client
            .post(&send, &json!({ "markdown": { "content": "x" } }))
            .await,
        40008,
    );
    assert_errcode(
        &client.post(&send, &json!({ "msgtype": "markdown" })).await,
        44004,
    );
    assert_errcode(&client.post(&send, &markdown("")).await, 44004);
    let mentions =
        json!({ "msgtype": "text", "text": { "content": "x", "mentioned_list": "zhangsan" } });
    assert_errcode(&client.post(&send, &mentions).await, 47001);

    // Limits count bytes of UTF-8: 1366 three-byte characters are 4098 bytes.
    assert_errcode(&client.post(&send, &markdown(&"x".repeat(4096))).await, 0);
    assert_errcode(
        &client.post(&send, &markdown(&"货".repeat(1366))).await,
        40058,
    );
    let text = |content: String| json!({ "msgtype": "text", "text": { "content": content } });
    assert_errcode(&client.post(&send, &text("x".repeat(2048))).await, 0);
    assert_errcode(&client.post(&send, &text("x".repeat(2049))).await, 40058);
    assert_eq!(client.sandbox.robot_messages(KEY).len(), 2);
}

#[tokio::test]
async fn the_21st_message_within_a_minute_is_refused_until_the_minute_has_passed() {
    let client = with_robot().await;
    for i in 0..ROBOT_MESSAGES_PER_MINUTE {
        assert_errcode(
            &client
                .post(&send_to(KEY), &markdown(&format!("m{i}")))
                .await,
            0,
        );
    }
    assert_errcode(
        &client.post(&send_to(KEY), &markdown("one too many")).await,
        45009,
    );
    assert_eq!(
        client.sandbox.robot_messages(KEY).len(),
        ROBOT_MESSAGES_PER_MINUTE
    );

    // Each robot has its own limit.
    client.sandbox.add_robot("second-robot");
    assert_errcode(
        &client
            .post(&send_to("second-robot"), &markdown("own limit"))
            .await,
        0,
    );

    client.sandbox.advance_clock(Duration::from_secs(60));
    assert_errcode(
        &client.post(&send_to(KEY), &markdown("next minute")).await,
        0,
    );
}

#[tokio::test]
async fn calls_are_recorded_with_the_key_hidden_and_faults_apply() {
    let client = with_robot().await;
    client
        .sandbox
        .inject(Fault::errcode(WECOM_WEBHOOK_SEND, -1, "system busy").times(1));
    assert_errcode(&client.post(&send_to(KEY), &markdown("busy")).await, -1);
    assert_errcode(&client.post(&send_to(KEY), &markdown("fine")).await, 0);

    let recorded = client.sandbox.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].errcode, -1);
    assert_eq!(recorded[1].errcode, 0);
    assert_eq!(recorded[1].path, WECOM_WEBHOOK_SEND);
    assert_eq!(recorded[1].query["key"], "***");
    assert_eq!(recorded[1].body, Some(markdown("fine")));
    let printed = format!("{recorded:?}{}", serde_json::to_string(&recorded).unwrap());
    assert!(!printed.contains(KEY), "{printed}");
    assert_eq!(client.sandbox.robot_messages(KEY).len(), 1);
}
