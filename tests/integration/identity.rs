//! How the component learns who a user is, and what it says when it cannot reach them.

use wxnotify::{ChannelMessage, Error, Notification, NotifyError, Recipient, TemplateMessage};
use wxnotify_sandbox::SeedUser;
use wxnotify_tests::{World, data};

fn hello(recipient: Recipient) -> Notification {
    Notification {
        recipient,
        channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL_ORDER_SHIPPED".into(),
            data: data(&[("thing1", "hello")]),
            url: None,
            miniprogram: None,
        })],
        idempotency_key: None,
    }
}

fn not_found(error: Error) -> String {
    match error {
        Error::Notify {
            error: NotifyError::NotFound(message),
            ..
        } => message,
        other => panic!("expected not-found, got {other}"),
    }
}

#[tokio::test]
async fn an_unknown_mini_program_openid_names_the_missing_unionid() {
    let world = World::in_memory().await;
    let mini = "oMP0000000000000000000000999";
    let message = not_found(
        world
            .shop()
            .send_notification(&hello(Recipient::MiniProgram(mini.into())))
            .await
            .unwrap_err(),
    );
    assert!(
        message.contains(&format!(
            "no unionid is known for mini-program openid {mini}"
        )),
        "{message}"
    );
    assert!(message.contains("login"), "says how to fix it: {message}");
    assert!(
        world.sandbox.state().requests().is_empty(),
        "nothing was sent"
    );
}

#[tokio::test]
async fn a_logged_in_user_without_an_oa_mapping_names_the_missing_oa_openid() {
    let world = World::in_memory().await;
    // Logged in to the mini-program, but the OA's followers were never synced.
    let user = world.sandbox.state().add_user(SeedUser {
        follows_oa: true,
        has_unionid: true,
        ..SeedUser::default()
    });
    let mini = user.mini_openid.clone().unwrap();
    let code = world.sandbox.state().issue_login_code(&mini).unwrap();
    let logged_in = world.shop().login(&code).await.unwrap();
    assert_eq!(logged_in.unionid, user.unionid);
    assert_eq!(logged_in.mini_openid.as_deref(), Some(mini.as_str()));

    let message = not_found(
        world
            .shop()
            .send_notification(&hello(Recipient::MiniProgram(mini)))
            .await
            .unwrap_err(),
    );
    let unionid = user.unionid.unwrap();
    assert!(message.contains(&format!("unionid {unionid}")), "{message}");
    assert!(
        message.contains("no official-account openid") && message.contains("sync-followers"),
        "{message}"
    );
}

#[tokio::test]
async fn login_and_sync_resolve_every_identity() {
    let world = World::start().await;
    let user = world.follower_known_to_shop().await;
    let shop = world.shop();
    for recipient in [
        Recipient::MiniProgram(user.mini_openid.clone().unwrap()),
        Recipient::OfficialAccount(user.oa_openid.clone().unwrap()),
        Recipient::Union(user.unionid.clone().unwrap()),
    ] {
        let resolved = shop.resolve_user(&recipient).await.unwrap();
        assert_eq!(resolved.mini_openid, user.mini_openid);
        assert_eq!(resolved.oa_openid, user.oa_openid);
        assert_eq!(resolved.unionid, user.unionid);
        assert_eq!(resolved.follows_oa, Some(true));
    }
}

#[tokio::test]
async fn a_user_who_unfollowed_is_refused_once_by_wechat_then_without_a_call() {
    let world = World::in_memory().await;
    let user = world.follower_known_to_shop().await;
    world
        .sandbox
        .state()
        .set_following(&user.oa_openid.clone().unwrap(), false)
        .unwrap();
    world.sandbox.state().clear_requests();
    let template_sends = || {
        world
            .sandbox
            .state()
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("template/send"))
            .count()
    };
    let refused = |error: Error| match error {
        Error::Notify {
            error: NotifyError::Refused(api),
            ..
        } => api,
        other => panic!("expected refused, got {other}"),
    };

    let to_user = hello(Recipient::MiniProgram(user.mini_openid.clone().unwrap()));
    let first = refused(world.shop().send_notification(&to_user).await.unwrap_err());
    assert_eq!(first.errcode, 43004);
    assert!(
        first.errmsg.contains("require subscribe"),
        "WeChat's own errmsg: {}",
        first.errmsg
    );
    assert_eq!(template_sends(), 1);

    let second = refused(world.shop().send_notification(&to_user).await.unwrap_err());
    assert_eq!(second.errcode, 43004);
    assert!(
        second.errmsg.contains("does not follow"),
        "{}",
        second.errmsg
    );
    assert_eq!(
        template_sends(),
        1,
        "the known non-follower cost no second call"
    );
    let resolved = world
        .shop()
        .resolve_user(&Recipient::Union(user.unionid.clone().unwrap()))
        .await
        .unwrap();
    assert_eq!(resolved.follows_oa, Some(false));

    // Following again and a sync make the user reachable again.
    world
        .sandbox
        .state()
        .set_following(&user.oa_openid.clone().unwrap(), true)
        .unwrap();
    world.shop().sync_followers(true).await.unwrap();
    world.shop().send_notification(&to_user).await.unwrap();
}
