//! Sending: channel order and fallback, checks before any call, truncation as the platform
//! shows it, legacy uniform requests, final refusals and bounded retries.

use wxnotify::{
    Channel, ChannelMessage, Error, Notification, NotifyError, Recipient, SubscribeMessage,
    TemplateMessage, UniformMessage,
};
use wxnotify_sandbox::{Fault, FaultAction, SeedUser, SeededUser};
use wxnotify_tests::{World, data};

fn template(pairs: &[(&str, &str)]) -> ChannelMessage {
    ChannelMessage::TemplateMessage(TemplateMessage {
        template_id: "TPL_ORDER_SHIPPED".into(),
        data: data(pairs),
        url: Some("https://shop.example/orders/42".into()),
        miniprogram: None,
    })
}

fn subscribe(pairs: &[(&str, &str)]) -> ChannelMessage {
    ChannelMessage::SubscribeMessage(SubscribeMessage {
        template_id: "TPL_ORDER_STATUS".into(),
        data: data(pairs),
        page: Some("pages/order/detail?id=42".into()),
        miniprogram_state: None,
        lang: None,
    })
}

/// The template message most tests send: `thing1` = `Shipped`.
fn shipped() -> ChannelMessage {
    template(&[("thing1", "Shipped")])
}

const STATUS: &[(&str, &str)] = &[
    ("thing1", "Order shipped"),
    ("phrase2", "已发货"),
    ("time3", "2026-11-21 10:00"),
    ("amount4", "¥99.00"),
];

fn to(user: &SeededUser, channels: Vec<ChannelMessage>) -> Notification {
    Notification {
        recipient: Recipient::MiniProgram(user.mini_openid.clone().unwrap()),
        channels,
        idempotency_key: None,
    }
}

const TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";
const SUBSCRIBE_SEND: &str = "/cgi-bin/message/subscribe/send";

/// A user known to the shop (logged in, followers synced) with one subscribe authorisation.
async fn user(world: &World, follows_oa: bool) -> SeededUser {
    let user = world.sandbox.state().add_user(SeedUser {
        follows_oa,
        has_unionid: true,
        ..SeedUser::default()
    });
    world.learn(&user).await;
    world
        .sandbox
        .state()
        .grant_subscription(user.mini_openid.as_deref().unwrap(), "TPL_ORDER_STATUS", 1)
        .unwrap();
    world.sandbox.state().clear_requests();
    user
}

#[tokio::test]
async fn a_follower_gets_the_template_message() {
    let world = World::in_memory().await;
    let alice = user(&world, true).await;
    let delivery = world
        .shop()
        .send_notification(&to(&alice, vec![shipped(), subscribe(STATUS)]))
        .await
        .unwrap();
    assert_eq!(delivery.channel, Channel::TemplateMessage);
    assert_eq!(delivery.openid, alice.oa_openid.unwrap());
    assert_eq!(
        world.requests_to(SUBSCRIBE_SEND),
        0,
        "the second channel was not needed"
    );
}

#[tokio::test]
async fn a_non_follower_falls_back_to_the_subscribe_message() {
    let world = World::in_memory().await;
    let bob = user(&world, false).await;
    let delivery = world
        .shop()
        .send_notification(&to(&bob, vec![shipped(), subscribe(STATUS)]))
        .await
        .unwrap();
    assert_eq!(delivery.channel, Channel::SubscribeMessage);
    assert_eq!(delivery.openid, bob.mini_openid.clone().unwrap());
    assert_eq!(delivery.msgid, None);
    assert_eq!(delivery.failures.len(), 1);
    assert_eq!(delivery.failures[0].channel, Channel::TemplateMessage);
    assert!(
        matches!(delivery.failures[0].error, NotifyError::NotFound(_)),
        "{:?}",
        delivery.failures[0].error
    );
    let sent = world.sandbox.state().delivered_subscribe_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].touser, bob.mini_openid.unwrap());
    assert_eq!(sent[0].page.as_deref(), Some("pages/order/detail?id=42"));
    let request = world
        .sandbox
        .state()
        .requests()
        .into_iter()
        .find(|r| r.path == SUBSCRIBE_SEND)
        .unwrap();
    let body = request.body.unwrap();
    assert_eq!(body["miniprogram_state"], "formal");
    assert_eq!(body["lang"], "zh_CN");
    assert_eq!(body["data"]["phrase2"]["value"], "已发货");
}

#[tokio::test]
async fn a_six_character_phrase_is_rejected_before_any_call() {
    let world = World::in_memory().await;
    let bob = user(&world, true).await;
    let invalid = to(
        &bob,
        vec![shipped(), subscribe(&[("phrase2", "六个汉字短语")])],
    );
    match world.shop().send_notification(&invalid).await.unwrap_err() {
        Error::Notify {
            error: NotifyError::InvalidInput(message),
            ..
        } => {
            assert!(
                message.contains("phrase2") && message.contains("5"),
                "names the key and the rule: {message}"
            );
        }
        other => panic!("expected invalid input, got {other}"),
    }
    assert!(
        world.sandbox.state().requests().is_empty(),
        "no HTTP call at all, not even for the valid channel"
    );
    assert_eq!(
        world
            .sandbox
            .state()
            .subscriptions_left(bob.mini_openid.as_deref().unwrap(), "TPL_ORDER_STATUS"),
        1
    );
}

#[tokio::test]
async fn a_used_up_authorisation_is_refused_once_and_not_retried() {
    let world = World::in_memory().await;
    let bob = user(&world, false).await;
    let only_subscribe = to(&bob, vec![subscribe(STATUS)]);
    world
        .shop()
        .send_notification(&only_subscribe)
        .await
        .unwrap();
    match world
        .shop()
        .send_notification(&only_subscribe)
        .await
        .unwrap_err()
    {
        Error::Notify {
            error: NotifyError::Refused(api),
            ..
        } => assert_eq!(api.errcode, 43101),
        other => panic!("expected refused, got {other}"),
    }
    assert_eq!(
        world.requests_to(SUBSCRIBE_SEND),
        2,
        "one call per notification: the refusal was not retried"
    );
}

#[tokio::test]
async fn long_template_values_are_truncated_as_the_platform_shows_them() {
    let world = World::in_memory().await;
    let alice = user(&world, true).await;
    let long = "Your order 42 has left our warehouse";
    let delivery = world
        .shop()
        .send_notification(&to(
            &alice,
            vec![template(&[("thing1", long), ("time3", "10:00\n11:00")])],
        ))
        .await
        .unwrap();
    assert_eq!(
        delivery.truncated,
        vec!["thing1".to_owned(), "time3".to_owned()]
    );
    let sent = &world.sandbox.state().delivered_template_messages()[0];
    // The component sent exactly what WeChat shows: 20 characters and an ellipsis.
    assert_eq!(sent.data["thing1"]["value"], "Your order 42 has le…");
    let shown = sent.displayed.iter().find(|d| d.key == "thing1").unwrap();
    assert_eq!(shown.text, "Your order 42 has le…");
    assert_eq!(sent.data["time3"]["value"], "10:0011:00");
    assert!(!sent.displayed.iter().any(|d| d.text.contains('\n')));
}

#[tokio::test]
async fn a_legacy_uniform_request_goes_through_template_send() {
    let world = World::in_memory().await;
    let alice = user(&world, true).await;
    let uniform = ChannelMessage::UniformLegacy(UniformMessage {
        appid: Some(world.oa_appid()),
        template_id: "TPL_ORDER_SHIPPED".into(),
        data: data(&[("thing1", "Shipped")]),
        url: None,
        miniprogram: None,
    });
    let delivery = world
        .shop()
        .send_notification(&to(&alice, vec![uniform]))
        .await
        .unwrap();
    assert_eq!(delivery.channel, Channel::TemplateMessage);
    assert_eq!(Some(delivery.openid), alice.oa_openid.clone());
    assert_eq!(world.requests_to(TEMPLATE_SEND), 1);
    assert!(
        world
            .sandbox
            .state()
            .requests()
            .iter()
            .all(|r| !r.path.contains("uniform_send")),
        "the retired API is never called"
    );

    let wrong_account = ChannelMessage::UniformLegacy(UniformMessage {
        appid: Some("wx0000000000000bad".into()),
        template_id: "TPL_ORDER_SHIPPED".into(),
        data: data(&[("thing1", "Shipped")]),
        url: None,
        miniprogram: None,
    });
    let error = world
        .shop()
        .send_notification(&to(&alice, vec![wrong_account]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Notify { error: NotifyError::InvalidInput(ref m), .. } if m.contains("wx0000000000000bad")),
        "{error}"
    );
    assert_eq!(
        world.requests_to(TEMPLATE_SEND),
        1,
        "the mismatch was caught before sending"
    );
}

#[tokio::test]
async fn the_idempotency_key_makes_one_message_of_two_sends() {
    let world = World::in_memory().await;
    let alice = user(&world, true).await;
    let mut notification = to(&alice, vec![shipped()]);
    notification.idempotency_key = Some("order-42".into());
    let first = world.shop().send_notification(&notification).await.unwrap();
    let second = world.shop().send_notification(&notification).await.unwrap();
    assert_eq!(first.msgid, second.msgid);
    assert_eq!(world.sandbox.state().delivered_template_messages().len(), 1);
}

#[tokio::test]
async fn a_busy_platform_is_retried_with_backoff_then_reported_unavailable() {
    let world = World::in_memory().await;
    let alice = user(&world, true).await;
    let notification = to(&alice, vec![shipped()]);
    let state = world.sandbox.state();

    state.inject(Fault::errcode(TEMPLATE_SEND, -1, "system error").times(2));
    let delivery = world.shop().send_notification(&notification).await.unwrap();
    assert_eq!(delivery.attempts, 3);

    state.inject(Fault::errcode(TEMPLATE_SEND, -1, "system error"));
    state.clear_requests();
    let error = world
        .shop()
        .send_notification(&notification)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Notify {
                error: NotifyError::Unavailable { .. },
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        world.requests_to(TEMPLATE_SEND),
        3,
        "bounded: three calls, then it gives up"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let world = World::in_memory().await;
    let alice = user(&world, true).await;
    let mut notification = to(&alice, vec![shipped()]);
    notification.idempotency_key = Some("dropped".into());
    world
        .sandbox
        .state()
        .inject(Fault::new(TEMPLATE_SEND, FaultAction::DropConnection).times(1));
    let delivery = world.shop().send_notification(&notification).await.unwrap();
    assert_eq!(delivery.attempts, 2);
    assert_eq!(world.sandbox.state().delivered_template_messages().len(), 1);
}

#[tokio::test]
async fn a_send_quota_is_final_for_this_call_and_says_so() {
    let world = World::in_memory().await;
    let alice = user(&world, true).await;
    world.sandbox.state().inject(Fault::errcode(
        TEMPLATE_SEND,
        45009,
        "reach max api daily quota limit",
    ));
    let error = world
        .shop()
        .send_notification(&to(&alice, vec![shipped()]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Notify { error: NotifyError::Quota { error: ref api, .. }, .. } if api.errcode == 45009),
        "{error}"
    );
    assert_eq!(
        world.requests_to(TEMPLATE_SEND),
        1,
        "quota is not retried within the call"
    );
}

#[tokio::test]
async fn a_concurrent_send_to_the_same_user_is_retried_shortly() {
    let world = World::in_memory().await;
    let bob = user(&world, false).await;
    world
        .sandbox
        .state()
        .inject(Fault::errcode(SUBSCRIBE_SEND, 43108, "concurrent send to the same user").times(1));
    let delivery = world
        .shop()
        .send_notification(&to(&bob, vec![subscribe(STATUS)]))
        .await
        .unwrap();
    assert_eq!(delivery.channel, Channel::SubscribeMessage);
    assert_eq!(delivery.attempts, 2, "one 43108, then the retry delivered");
    assert_eq!(
        world.sandbox.state().delivered_subscribe_messages().len(),
        1
    );

    // Still concurrent after the bounded retries: unavailable, so the outbox tries again later.
    world.sandbox.state().clear_requests();
    world.sandbox.state().inject(Fault::errcode(
        SUBSCRIBE_SEND,
        43108,
        "concurrent send to the same user",
    ));
    let error = world
        .shop()
        .send_notification(&to(&bob, vec![subscribe(STATUS)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Notify { error: NotifyError::Unavailable { message: m, .. }, .. } if m.contains("43108")),
        "{error}"
    );
    assert_eq!(world.requests_to(SUBSCRIBE_SEND), 3, "bounded, as for -1");
}

#[tokio::test]
async fn todays_subscribe_errors_are_final_and_cost_one_call() {
    let world = World::in_memory().await;
    let bob = user(&world, false).await;
    let state = world.sandbox.state();
    type Expected = fn(&NotifyError) -> bool;
    let cases: [(i64, &str, Expected); 3] = [
        (
            43107,
            "subscribe message capability banned",
            |e| matches!(e, NotifyError::Auth(api) if api.errcode == 43107),
        ),
        (
            45168,
            "content hit sensitive word, data.thing1.value",
            // WeChat's text is kept whole: it names the field.
            |e| matches!(e, NotifyError::Rejected(api) if api.errcode == 45168 && api.errmsg.contains("data.thing1.value")),
        ),
        (
            40165,
            "invalid weapp pagepath",
            |e| matches!(e, NotifyError::Rejected(api) if api.errcode == 40165),
        ),
    ];
    for (errcode, errmsg, expected) in cases {
        state.clear_faults();
        state.clear_requests();
        state.inject(Fault::errcode(SUBSCRIBE_SEND, errcode, errmsg));
        let error = world
            .shop()
            .send_notification(&to(&bob, vec![subscribe(STATUS)]))
            .await
            .unwrap_err();
        match &error {
            Error::Notify { error, .. } => assert!(expected(error), "{errcode}: {error:?}"),
            other => panic!("{errcode}: {other}"),
        }
        assert_eq!(
            world.requests_to(SUBSCRIBE_SEND),
            1,
            "{errcode}: not retried"
        );
    }
    assert!(state.delivered_subscribe_messages().is_empty());
}
