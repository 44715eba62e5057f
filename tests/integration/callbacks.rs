//! WeChat's callback URLs (`/callback/oa`, `/callback/mini`) on the component's
//! `wasi:http/incoming-handler`: URL verification, plain and safe-mode pushes with the official
//! vectors (§5.1, §5.5 S1 and S2 of `docs/wechat-api.md`), the events wxnotify records, and
//! requests refused without changing anything.
//!
//! Plain-mode `signature` covers token, timestamp and nonce but not the body, so every plain
//! push here is signed with the §5.1 vector (token `AAAAA`) and the tenants skip the freshness
//! check (`callback_max_age_secs = 0`): the vectors date from 2024.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use wxnotify::{
    Channel, ChannelMessage, Error, Notification, NotifyError, Recipient, SubscribeMessage, Tenant,
};
use wxnotify_sandbox::{SeedUser, SeededUser};
use wxnotify_store::Scope;
use wxnotify_tests::{World, data, template_to};

// §5.1 (token AAAAA): URL verification, and the plain-mode push signature.
const TOKEN: &str = "AAAAA";
const VERIFY: &str = "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492";
const PLAIN: &str =
    "signature=899cf89e464efb63f54ddac96b0a0a235f53aa78&timestamp=1714037059&nonce=486452656";

// §5.5 S1: mini program, JSON, safe mode.
const S1_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const S1_APPID: &str = "wxba5fad812f8e6fb9";
const S1_QUERY: &str = "signature=6c5c811b55cc85e0e1b54100749188c20beb3f5d&timestamp=1714112445&nonce=415670741&openid=o9AgO5Kd5ggOC-bXrbNODIiE3bGY&encrypt_type=aes&msg_signature=046e02f8204d34f8ba5fa3b1db94908f3df2e9b3";
const S1_BODY: &str = r#"{"ToUserName":"gh_97417a04a28d","Encrypt":"+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="}"#;

// §5.5 S2: official account, XML, safe mode (the WXBizMsgCrypt demo).
const S2_TOKEN: &str = "spamtest";
const S2_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const S2_APPID: &str = "wx2c2769f8efd9abc2";
const S2_QUERY: &str = "signature=16120ec1b8dbb870f510d87ce6bc2463eae6ca1a&timestamp=1409735669&nonce=1320562132&encrypt_type=aes&msg_signature=5d197aaffba7e9b25a30732f161a50dee96bd5fa";
const S2_BODY: &str = "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>";

/// The component config a tenant needs for plain-mode callbacks of both accounts.
const PLAIN_CALLBACKS: [(&str, &str); 3] = [
    ("oa_callback_token", TOKEN),
    ("mini_callback_token", TOKEN),
    ("callback_max_age_secs", "0"),
];

/// The component config of a mini program with safe-mode callbacks keyed as in §5.5 S1.
const S1_CALLBACKS: [(&str, &str); 3] = [
    ("mini_callback_token", TOKEN),
    ("mini_encoding_aes_key", S1_KEY),
    ("callback_max_age_secs", "0"),
];

/// Registers tenant `id` on the sandbox's accounts (`mini_appid` / `oa_appid` replace the
/// sandbox's appids when given) with extra component `config`, through the tenants file's
/// `[tenants.{id}.config]` table as an operator would write it.
fn tenant_with(
    world: &World,
    id: &str,
    mini_appid: Option<&str>,
    oa_appid: Option<&str>,
    config: &[(&str, &str)],
) -> Arc<Tenant> {
    let extra: String = config
        .iter()
        .map(|(key, value)| format!("{key} = \"{value}\"\n"))
        .collect();
    world.add_tenant_with_appids(
        id,
        mini_appid,
        oa_appid,
        &format!("[tenants.{id}.config]\n{extra}"),
    )
}

/// A tenant on the sandbox's accounts with plain-mode callbacks and no freshness check.
fn plain_tenant(world: &World, id: &str) -> Arc<Tenant> {
    tenant_with(world, id, None, None, &PLAIN_CALLBACKS)
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts a JSON error with `status` and `kind` whose message contains `needle`.
    fn assert_error(&self, status: u16, kind: &str, needle: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let error = &self.json()["error"];
        assert_eq!(error["kind"], kind, "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }

    fn assert_success(&self) {
        assert_eq!(
            (self.status, self.body.as_str()),
            (200, "success"),
            "the push was not acknowledged"
        );
        assert!(
            self.content_type.starts_with("text/plain"),
            "{}",
            self.content_type
        );
    }
}

async fn call(
    tenant: &Tenant,
    method: &str,
    path_and_query: &str,
    body: impl Into<Bytes>,
    content_length: bool,
) -> Answer {
    let body = body.into();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://wxnotify.local{path_and_query}"));
    if content_length {
        request = request.header("content-length", body.len());
    }
    let response = tenant
        .handle_http(request.body(body).unwrap())
        .await
        .unwrap();
    Answer {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: String::from_utf8(response.body().to_vec()).unwrap(),
    }
}

async fn get(tenant: &Tenant, path: &str, query: &str) -> Answer {
    call(tenant, "GET", &format!("{path}?{query}"), "", false).await
}

async fn post(tenant: &Tenant, path: &str, query: &str, body: &str) -> Answer {
    call(
        tenant,
        "POST",
        &format!("{path}?{query}"),
        body.to_owned(),
        true,
    )
    .await
}

/// A plain-mode OA push of an event from `openid`.
fn oa_event(openid: &str, create_time: u64, event: &str, extra: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\
         <FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{create_time}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{extra}</xml>"
    )
}

async fn stored(world: &World, tenant: &str, key: &str) -> Option<Value> {
    let value = world
        .backend
        .get(&Scope::new(tenant, "users"), key)
        .await
        .unwrap()?;
    Some(serde_json::from_slice(&value).unwrap())
}

/// Asserts that `tenant` has no keys and that nothing reached WeChat.
async fn assert_untouched(world: &World, tenant: &str) {
    for bucket in wxnotify::wasi_keyvalue::BUCKETS {
        let keys = world.keys(tenant, bucket).await;
        assert!(keys.is_empty(), "{bucket}: {keys:?}");
    }
    assert!(
        world.sandbox.state().requests().is_empty(),
        "{:?}",
        world.sandbox.state().requests()
    );
}

fn user_info_calls(world: &World) -> usize {
    world.requests_to("/cgi-bin/user/info")
}

fn shipped(recipient: Recipient) -> Notification {
    template_to(recipient, "Shipped", None)
}

/// A follower the sandbox knows, logged in to the mini-program (so its unionid is known to
/// `tenant`) but not synced: only a `subscribe` push can map its OA openid.
async fn logged_in_follower(world: &World, tenant: &Tenant) -> SeededUser {
    let user = world.sandbox.state().add_user(SeedUser::follower());
    world
        .log_in(tenant, user.mini_openid.as_deref().unwrap())
        .await;
    user
}

#[tokio::test]
async fn url_verification_echoes_the_official_vector() {
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    for path in ["/callback/oa", "/callback/mini"] {
        let answer = get(&cb, path, VERIFY).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "4375120948345356249")
        );
        assert!(answer.content_type.starts_with("text/plain"));
    }
    get(&cb, "/callback/oa", &VERIFY.replace("f464b", "f464c"))
        .await
        .assert_error(401, "bad_signature", "`signature` does not match");
    get(
        &cb,
        "/callback/oa",
        &VERIFY.replace("echostr=4375120948345356249&", ""),
    )
    .await
    .assert_error(400, "invalid_query", "`echostr` is missing");
    // A tenant without callbacks configured says which key is missing.
    get(&world.shop(), "/callback/mini", VERIFY)
        .await
        .assert_error(500, "config", "`mini_callback_token`");
    post(&world.shop(), "/callback/oa", PLAIN, "<xml/>")
        .await
        .assert_error(500, "config", "`oa_callback_token`");
    let answer = call(&cb, "PUT", "/callback/oa", "", false).await;
    assert_eq!(answer.status, 405);
    assert_untouched(&world, "cb").await;
}

#[tokio::test]
async fn plain_push_official_vector_is_acknowledged() {
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    let text = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\
                <FromUserName><![CDATA[oOA0000000000000000000000001]]></FromUserName>\
                <CreateTime>1714037059</CreateTime><MsgType><![CDATA[text]]></MsgType>\
                <Content><![CDATA[hello]]></Content><MsgId>24602221234567890</MsgId></xml>";
    post(&cb, "/callback/oa", PLAIN, text)
        .await
        .assert_success();
    // A text message changes nothing, not even a duplicate marker.
    assert_untouched(&world, "cb").await;
}

#[tokio::test]
async fn safe_mode_json_official_sample_s1() {
    let world = World::in_memory().await;
    let cb = tenant_with(&world, "cb", Some(S1_APPID), None, &S1_CALLBACKS);
    // The decrypted push is `debug_demo`: acknowledged, nothing to record.
    post(&cb, "/callback/mini", S1_QUERY, S1_BODY)
        .await
        .assert_success();
    assert_untouched(&world, "cb").await;
}

#[tokio::test]
async fn safe_mode_xml_official_sample_s2() {
    let world = World::in_memory().await;
    let cb = tenant_with(
        &world,
        "cb",
        None,
        Some(S2_APPID),
        &[
            ("oa_callback_token", S2_TOKEN),
            ("oa_encoding_aes_key", S2_KEY),
            ("callback_max_age_secs", "0"),
        ],
    );
    post(&cb, "/callback/oa", S2_QUERY, S2_BODY)
        .await
        .assert_success();
    assert_untouched(&world, "cb").await;
}

#[tokio::test]
async fn subscribe_maps_the_unionid_so_a_send_by_mini_openid_works() {
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    let user = logged_in_follower(&world, &cb).await;
    let (mini, oa) = (
        user.mini_openid.clone().unwrap(),
        user.oa_openid.clone().unwrap(),
    );
    let by_mini = shipped(Recipient::MiniProgram(mini.clone()));
    match cb.send_notification(&by_mini).await {
        Err(Error::Notify {
            error: NotifyError::NotFound(_),
            ..
        }) => {}
        other => panic!("before the push the OA openid is unknown, got {other:?}"),
    }

    post(
        &cb,
        "/callback/oa",
        PLAIN,
        &oa_event(&oa, 1_714_037_000, "subscribe", ""),
    )
    .await
    .assert_success();
    assert_eq!(user_info_calls(&world), 1);
    let record = stored(&world, "cb", &format!("oa/{oa}")).await.unwrap();
    assert_eq!(record["unionid"], json!(user.unionid), "{record}");
    assert_eq!(record["follows"], true, "{record}");
    assert!(record["looked_up_at"].is_u64(), "dated: {record}");

    let delivery = cb.send_notification(&by_mini).await.expect("sent");
    assert_eq!(delivery.openid, oa);
    assert_eq!(world.sandbox.state().delivered_template_messages().len(), 1);
}

#[tokio::test]
async fn unsubscribe_flips_the_follow_state_and_keeps_the_unionid() {
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    let user = logged_in_follower(&world, &cb).await;
    let oa = user.oa_openid.clone().unwrap();
    post(
        &cb,
        "/callback/oa",
        PLAIN,
        &oa_event(&oa, 1_714_037_000, "subscribe", ""),
    )
    .await
    .assert_success();
    post(
        &cb,
        "/callback/oa",
        PLAIN,
        &oa_event(&oa, 1_714_037_100, "unsubscribe", ""),
    )
    .await
    .assert_success();

    let resolved = cb
        .resolve_user(&Recipient::OfficialAccount(oa.clone()))
        .await
        .unwrap();
    assert_eq!(resolved.follows_oa, Some(false));
    assert_eq!(resolved.unionid, user.unionid);
    assert_eq!(resolved.mini_openid, user.mini_openid);
    // Known not to follow: refused locally, without a call to WeChat.
    world.sandbox.state().clear_requests();
    match cb
        .send_notification(&shipped(Recipient::OfficialAccount(oa)))
        .await
    {
        Err(Error::Notify {
            error: NotifyError::Refused(api),
            ..
        }) => assert_eq!(api.errcode, 43004),
        other => panic!("expected a local 43004, got {other:?}"),
    }
    assert!(world.sandbox.state().requests().is_empty());
}

#[tokio::test]
async fn template_send_job_finish_is_recorded() {
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    let openid = "oOA0000000000000000000000001";
    let finished = oa_event(
        openid,
        1_714_037_000,
        "TEMPLATESENDJOBFINISH",
        "<MsgID>200163836</MsgID><Status><![CDATA[failed:user block]]></Status>",
    );
    post(&cb, "/callback/oa", PLAIN, &finished)
        .await
        .assert_success();
    assert_eq!(
        stored(&world, "cb", "msg/200163836").await,
        Some(json!({"status": "failed:user block", "openid": openid, "at": 1_714_037_000}))
    );
    // The component's API reports it by msgid, as the server's notification status will.
    let answer = call(&cb, "GET", "/v1/deliveries/200163836", "", false).await;
    assert_eq!(answer.status, 200);
    let status: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(status["status"], "failed:user block");
    assert_eq!(status["msgid"], 200_163_836);
}

#[tokio::test]
async fn subscribe_message_popup_with_list_as_object_and_as_array() {
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    let openid = "oMP0000000000000000000000001";
    let popup = |create_time: &str, list: Value| {
        json!({
            "ToUserName": "gh_123456789abc",
            "FromUserName": openid,
            "CreateTime": create_time,
            "MsgType": "event",
            "Event": "subscribe_msg_popup_event",
            "List": list,
        })
        .to_string()
    };
    let one = popup(
        "1610969440",
        json!({"TemplateId": "TPL_A", "SubscribeStatusString": "accept", "PopupScene": "0"}),
    );
    post(&cb, "/callback/mini", PLAIN, &one)
        .await
        .assert_success();
    assert_eq!(
        stored(&world, "cb", &format!("subs/mini/{openid}/TPL_A")).await,
        Some(json!({"status": "accept", "event": "popup", "at": 1_610_969_440}))
    );

    let many = popup(
        "1610969500",
        json!([
            {"TemplateId": "TPL_A", "SubscribeStatusString": "reject", "PopupScene": "0"},
            {"TemplateId": "TPL_B", "SubscribeStatusString": "accept", "PopupScene": "0"},
        ]),
    );
    post(&cb, "/callback/mini", PLAIN, &many)
        .await
        .assert_success();
    assert_eq!(
        stored(&world, "cb", &format!("subs/mini/{openid}/TPL_A")).await,
        Some(json!({"status": "reject", "event": "popup", "at": 1_610_969_500}))
    );
    assert_eq!(
        stored(&world, "cb", &format!("subs/mini/{openid}/TPL_B")).await,
        Some(json!({"status": "accept", "event": "popup", "at": 1_610_969_500}))
    );
}

#[tokio::test]
async fn refused_pushes_change_nothing() {
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    let subscribe = oa_event(
        "oOA0000000000000000000000001",
        1_714_037_000,
        "subscribe",
        "",
    );

    post(
        &cb,
        "/callback/oa",
        &PLAIN.replace("899cf", "899ca"),
        &subscribe,
    )
    .await
    .assert_error(401, "bad_signature", "`signature` does not match");
    post(&cb, "/callback/oa", PLAIN, "<xml><FromUserName>o</Fro")
        .await
        .assert_error(400, "malformed_push", "not valid push XML");
    post(&cb, "/callback/mini", PLAIN, r#"{"FromUserName":"o","#)
        .await
        .assert_error(400, "malformed_push", "not valid JSON");
    // Over 64 KiB: refused on the declared length, and when read without one.
    let oversized = format!("{subscribe}{}", " ".repeat(64 * 1024));
    post(&cb, "/callback/oa", PLAIN, &oversized)
        .await
        .assert_error(413, "too_large", "65536 bytes");
    call(
        &cb,
        "POST",
        &format!("/callback/oa?{PLAIN}"),
        oversized,
        false,
    )
    .await
    .assert_error(413, "too_large", "65536 bytes");

    // The S1 push, signed correctly, but for another mini program than this tenant's.
    let other_app = tenant_with(&world, "other-app", None, None, &S1_CALLBACKS);
    post(&other_app, "/callback/mini", S1_QUERY, S1_BODY)
        .await
        .assert_error(401, "wrong_receiver", S1_APPID);

    // The default freshness window: the 2024 vector is a replay now.
    let fresh_only = tenant_with(
        &world,
        "fresh-only",
        None,
        None,
        &[("oa_callback_token", TOKEN)],
    );
    post(&fresh_only, "/callback/oa", PLAIN, &subscribe)
        .await
        .assert_error(400, "stale_timestamp", "callback_max_age_secs");

    for tenant in ["cb", "other-app", "fresh-only"] {
        assert_untouched(&world, tenant).await;
    }
}

#[tokio::test]
async fn a_duplicate_push_is_applied_once() {
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    let oa = world.new_follower_oa_openid();

    // WeChat's retries, one after the other.
    let push = oa_event(&oa, 1_714_037_000, "subscribe", "");
    for _ in 0..3 {
        post(&cb, "/callback/oa", PLAIN, &push)
            .await
            .assert_success();
    }
    assert_eq!(user_info_calls(&world), 1);

    // Two deliveries of a new push at once.
    let push = oa_event(&oa, 1_714_037_500, "subscribe", "");
    let (a, b) = tokio::join!(
        post(&cb, "/callback/oa", PLAIN, &push),
        post(&cb, "/callback/oa", PLAIN, &push)
    );
    a.assert_success();
    b.assert_success();
    assert_eq!(user_info_calls(&world), 2);
    let markers = world
        .keys("cb", "callbacks")
        .await
        .into_iter()
        .filter(|k| k.starts_with("seen/"))
        .count();
    assert_eq!(markers, 2);
}

/// A subscribe message of `TPL_ORDER_STATUS` (valid values) for `recipient`, then, as the
/// fallback, the OA template message.
fn status_then_shipped(recipient: Recipient) -> Notification {
    let mut notification = shipped(recipient);
    notification.channels.insert(
        0,
        ChannelMessage::SubscribeMessage(SubscribeMessage {
            template_id: "TPL_ORDER_STATUS".into(),
            data: data(&[
                ("thing1", "Order shipped"),
                ("phrase2", "已发货"),
                ("time3", "2026-11-21 10:00"),
                ("amount4", "¥99.00"),
            ]),
            page: None,
            miniprogram_state: None,
            lang: None,
        }),
    );
    notification
}

/// Pushes to `tenant` that the user `openid` answered `status` for `TPL_ORDER_STATUS` in
/// `event` (plain mode, JSON), and checks that it was acknowledged.
async fn push_decision(tenant: &Tenant, openid: &str, create_time: u64, event: &str, status: &str) {
    let push = json!({
        "ToUserName": "gh_123456789abc",
        "FromUserName": openid,
        "CreateTime": create_time,
        "MsgType": "event",
        "Event": event,
        "List": {"TemplateId": "TPL_ORDER_STATUS", "SubscribeStatusString": status, "PopupScene": "0"},
    })
    .to_string();
    post(tenant, "/callback/mini", PLAIN, &push)
        .await
        .assert_success();
}

#[tokio::test]
async fn a_recorded_rejection_skips_the_subscribe_call_and_a_later_acceptance_lifts_it() {
    const SUBSCRIBE_SEND: &str = "/cgi-bin/message/subscribe/send";
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    let user = logged_in_follower(&world, &cb).await;
    let mini = user.mini_openid.clone().unwrap();
    world
        .sandbox
        .state()
        .grant_subscription(&mini, "TPL_ORDER_STATUS", 2)
        .unwrap();
    while !cb.sync_followers(false).await.unwrap().done {}
    let decide = |create_time, event, status| push_decision(&cb, &mini, create_time, event, status);
    let subscribe_only = || {
        let mut notification = status_then_shipped(Recipient::MiniProgram(mini.clone()));
        notification.channels.truncate(1);
        notification
    };

    // The user rejected the template in the popup: no call, a refusal that names the push.
    decide(1_714_037_100, "subscribe_msg_popup_event", "reject").await;
    world.sandbox.state().clear_requests();
    let error = cb.send_notification(&subscribe_only()).await.unwrap_err();
    match &error {
        Error::Notify {
            error: NotifyError::Refused(api),
            ..
        } => {
            assert_eq!(api.errcode, 43101);
            assert!(
                api.errmsg.contains("subscribe_msg_popup_event")
                    && api.errmsg.contains("TPL_ORDER_STATUS"),
                "{}",
                api.errmsg
            );
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(world.requests_to(SUBSCRIBE_SEND), 0, "WeChat was not asked");

    // With a fallback, the refusal is reported among the delivery's failures.
    let delivery = cb
        .send_notification(&status_then_shipped(Recipient::MiniProgram(mini.clone())))
        .await
        .unwrap();
    assert_eq!(delivery.channel, Channel::TemplateMessage);
    assert_eq!(delivery.failures.len(), 1);
    assert_eq!(delivery.failures[0].channel, Channel::SubscribeMessage);
    assert!(
        matches!(&delivery.failures[0].error, NotifyError::Refused(api) if api.errmsg.contains("subscribe_msg_popup_event")),
        "{:?}",
        delivery.failures[0].error
    );
    assert_eq!(world.requests_to(SUBSCRIBE_SEND), 0);

    // An older push arriving late changes nothing; a newer acceptance lets the send through.
    decide(1_714_037_000, "subscribe_msg_popup_event", "accept").await;
    assert!(cb.send_notification(&subscribe_only()).await.is_err());
    assert_eq!(world.requests_to(SUBSCRIBE_SEND), 0);
    decide(1_714_037_200, "subscribe_msg_popup_event", "accept").await;
    let delivery = cb.send_notification(&subscribe_only()).await.unwrap();
    assert_eq!(delivery.channel, Channel::SubscribeMessage);
    assert_eq!(world.requests_to(SUBSCRIBE_SEND), 1);

    // Turning the template off in the settings refuses it again, naming that push.
    decide(1_714_037_300, "subscribe_msg_change_event", "reject").await;
    let error = cb.send_notification(&subscribe_only()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Notify { error: NotifyError::Refused(api), .. } if api.errmsg.contains("subscribe_msg_change_event")),
        "{error}"
    );
    assert_eq!(world.requests_to(SUBSCRIBE_SEND), 1, "no second call");
}

#[tokio::test]
async fn with_no_recorded_decision_the_subscribe_message_is_sent() {
    let world = World::in_memory().await;
    let cb = plain_tenant(&world, "cb");
    let user = world.sandbox.state().add_user(SeedUser::default());
    let mini = user.mini_openid.clone().unwrap();
    world
        .sandbox
        .state()
        .grant_subscription(&mini, "TPL_ORDER_STATUS", 1)
        .unwrap();
    let mut notification = status_then_shipped(Recipient::MiniProgram(mini));
    notification.channels.truncate(1);
    let delivery = cb.send_notification(&notification).await.unwrap();
    assert_eq!(delivery.channel, Channel::SubscribeMessage);
    assert_eq!(world.requests_to("/cgi-bin/message/subscribe/send"), 1);
}

/// `tests/vectors/callbacks.json`: the requests every host (the component here, the Envoy
/// filter in `gateways/envoy/harness`) must answer alike.
#[tokio::test]
async fn every_shared_vector_gets_its_documented_answer() {
    let vectors: Value = serde_json::from_str(include_str!("../vectors/callbacks.json")).unwrap();
    let world = World::in_memory().await;
    for (i, vector) in vectors["vectors"].as_array().unwrap().iter().enumerate() {
        let name = vector["name"].as_str().unwrap();
        let mut config: Vec<(&str, &str)> = vector["config"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str().unwrap()))
            .collect();
        let mut appid = |key: &str| {
            let at = config.iter().position(|(k, _)| *k == key)?;
            Some(config.remove(at).1)
        };
        let (mini_appid, oa_appid) = (appid("mini_appid"), appid("oa_appid"));
        let tenant = tenant_with(&world, &format!("v{i}"), mini_appid, oa_appid, &config);
        let mut body = vector["body"].as_str().unwrap().to_owned();
        if let Some(size) = vector["pad_body_to"].as_u64() {
            body.extend(std::iter::repeat_n(' ', size as usize - body.len()));
        }
        let path = format!(
            "/callback/{}?{}",
            vector["account"].as_str().unwrap(),
            vector["query"].as_str().unwrap()
        );
        let method = vector["method"].as_str().unwrap();
        let answer = call(&tenant, method, &path, body, true).await;
        let expect = &vector["expect"];
        assert_eq!(
            u64::from(answer.status),
            expect["status"].as_u64().unwrap(),
            "{name}: {}",
            answer.body
        );
        if let Some(text) = expect["text"].as_str() {
            assert_eq!(answer.body, text, "{name}");
        }
        if let Some(kind) = expect["kind"].as_str() {
            let error = &answer.json()["error"];
            assert_eq!(error["kind"], kind, "{name}: {error}");
            let needle = expect["message_contains"].as_str().unwrap_or_default();
            let message = error["message"].as_str().unwrap();
            assert!(
                message.contains(needle),
                "{name}: {message:?} lacks {needle:?}"
            );
        }
    }
}
