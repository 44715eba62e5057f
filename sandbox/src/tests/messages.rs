//! Template messages, subscribe messages and the retired uniform send.

use serde_json::{Value, json};

use super::{Client, MINUTE, assert_errcode};
use crate::SeedUser;

fn shipped(touser: &str) -> Value {
    json!({
        "touser": touser,
        "template_id": "TPL_ORDER_SHIPPED",
        "url": "https://example.com/orders/1",
        "data": {
            "thing1": { "value": "一二三四五六七八九十一二三四五六七八九十多" },
            "character_string2": { "value": "SF1234567890" },
            "time3": { "value": "2024-01-01\n12:00" },
        },
    })
}

fn status(touser: &str) -> Value {
    json!({
        "touser": touser,
        "template_id": "TPL_ORDER_STATUS",
        "page": "pages/order/detail?id=1",
        "miniprogram_state": "formal",
        "lang": "zh_CN",
        "data": {
            "thing1": { "value": "Coffee beans" },
            "phrase2": { "value": "已发货" },
            "time3": { "value": "2024-01-01 12:00" },
            "amount4": { "value": "¥12.50" },
        },
    })
}

#[tokio::test]
async fn template_send_checks_recipient_and_dedups_client_msg_id() {
    let client = Client::new().await;
    let follower = client.sandbox.add_user(SeedUser::follower());
    let stranger = client.sandbox.add_user(SeedUser::default());
    let token = client.oa_token().await;
    let send = format!("/cgi-bin/message/template/send?access_token={token}");
    let oa_openid = follower.oa_openid.clone().unwrap();

    assert_errcode(
        &client
            .post(&send, &shipped(stranger.oa_openid.as_deref().unwrap()))
            .await,
        43004,
    );
    assert_errcode(
        &client
            .post(&send, &shipped(follower.mini_openid.as_deref().unwrap()))
            .await,
        40003,
    );
    let mut no_touser = shipped(&oa_openid);
    no_touser.as_object_mut().unwrap().remove("touser");
    assert_errcode(&client.post(&send, &no_touser).await, 40003);
    let mut unknown_template = shipped(&oa_openid);
    unknown_template["template_id"] = json!("TPL_NOPE");
    assert_errcode(&client.post(&send, &unknown_template).await, 40037);
    let mut bad_data = shipped(&oa_openid);
    bad_data["data"]["thing1"] = json!({ "value": 42 });
    assert_errcode(&client.post(&send, &bad_data).await, 47001);

    let mut message = shipped(&oa_openid);
    message["client_msg_id"] = json!("order-1-shipped");
    let first = client.post(&send, &message).await;
    assert_errcode(&first, 0);
    assert!(first["msgid"].as_i64().is_some(), "{first}");
    let retry = client.post(&send, &message).await;
    assert_eq!(retry["msgid"], first["msgid"]);
    let delivered = client.sandbox.delivered_template_messages();
    assert_eq!(delivered.len(), 1, "a retry is not delivered again");
    let shown: Vec<(&str, &str, bool)> = delivered[0]
        .displayed
        .iter()
        .map(|d| (d.key.as_str(), d.text.as_str(), d.truncated))
        .collect();
    assert_eq!(
        shown,
        [
            ("thing1", "一二三四五六七八九十一二三四五六七八九十…", true),
            ("character_string2", "SF1234567890", false),
            ("time3", "2024-01-0112:00", true),
        ]
    );

    // After the 10-minute window the same key sends again.
    client.sandbox.advance_clock(10 * MINUTE);
    let later = client.post(&send, &message).await;
    assert_ne!(later["msgid"], first["msgid"]);
    assert_eq!(client.sandbox.delivered_template_messages().len(), 2);
}

#[tokio::test]
async fn subscribe_send_consumes_authorisations_and_validates() {
    let client = Client::new().await;
    let user = client.sandbox.add_user(SeedUser::follower());
    let openid = user.mini_openid.clone().unwrap();
    let token = client.mini_token().await;
    let send = format!("/cgi-bin/message/subscribe/send?access_token={token}");

    assert_errcode(&client.post(&send, &status(&openid)).await, 43101);
    client
        .sandbox
        .grant_subscription(&openid, "TPL_ORDER_STATUS", 1)
        .unwrap();

    // Rejected sends do not use up the authorisation.
    let mut phrase = status(&openid);
    phrase["data"]["phrase2"] = json!({ "value": "shipped" });
    let answer = client.post(&send, &phrase).await;
    assert_errcode(&answer, 47003);
    assert!(
        answer["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("argument invalid! data.phrase2.value invalid")
    );
    let mut empty = status(&openid);
    empty["data"]["thing1"] = json!({ "value": "" });
    let answer = client.post(&send, &empty).await;
    assert!(
        answer["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("argument invalid! data.thing1.value is empty")
    );
    let mut missing = status(&openid);
    missing["data"].as_object_mut().unwrap().remove("amount4");
    assert_errcode(&client.post(&send, &missing).await, 47003);
    let mut page = status(&openid);
    page["page"] = json!("pages/secret/index?id=1");
    assert_errcode(&client.post(&send, &page).await, 41030);
    let mut state = status(&openid);
    state["miniprogram_state"] = json!("production");
    assert_errcode(&client.post(&send, &state).await, 47003);
    let mut lang = status(&openid);
    lang["lang"] = json!("fr_FR");
    assert_errcode(&client.post(&send, &lang).await, 47003);
    assert_errcode(
        &client
            .post(&send, &status(user.oa_openid.as_deref().unwrap()))
            .await,
        40003,
    );
    let mut template = status(&openid);
    template["template_id"] = json!("TPL_ORDER_SHIPPED");
    assert_errcode(&client.post(&send, &template).await, 40037);

    assert_errcode(&client.post(&send, &status(&openid)).await, 0);
    assert_errcode(&client.post(&send, &status(&openid)).await, 43101);
    let delivered = client.sandbox.delivered_subscribe_messages();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].page.as_deref(),
        Some("pages/order/detail?id=1")
    );
    assert_eq!(
        (
            delivered[0].miniprogram_state.as_str(),
            delivered[0].lang.as_str()
        ),
        ("formal", "zh_CN")
    );
}

#[tokio::test]
async fn uniform_send_is_retired() {
    let client = Client::new().await;
    let token = client.mini_token().await;
    let body = json!({ "touser": "x", "mp_template_msg": {} });
    let path = "/cgi-bin/message/wxopen/template/uniform_send";
    assert_errcode(&client.post(path, &body).await, 41001);
    assert_errcode(
        &client
            .post(&format!("{path}?access_token={token}"), &body)
            .await,
        45109,
    );
}
