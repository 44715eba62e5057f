//! How the component learns who a user is, and what it says when it cannot reach them.

use wxnotify::{Error, Notification, NotifyError, Recipient};
use wxnotify_sandbox::SeedUser;
use wxnotify_tests::{World, template_to};

fn hello(recipient: Recipient) -> Notification {
    template_to(recipient, "hello", None)
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
    let user = world.sandbox.state().add_user(SeedUser::follower());
    let mini = user.mini_openid.clone().unwrap();
    let logged_in = world.log_in(&world.shop(), &mini).await;
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

#[tokio::test]
async fn the_official_decrypt_vector_decrypts_through_login_and_its_unionid_is_stored() {
    // WeChat's published vector (wechat-api.md §2.2): appid, session key, iv, data, plaintext.
    let appid = "wx4f4bc4dec97d474b";
    let config = wxnotify_sandbox::SandboxConfig {
        mini_program: wxnotify_sandbox::AppCredentials::new(appid, "vector-secret"),
        ..wxnotify_sandbox::SandboxConfig::default()
    };
    let world = World::with(config, wxnotify_tests::Storage::Memory).await;
    let user = world.sandbox.state().add_user(SeedUser {
        has_unionid: false,
        ..SeedUser::default()
    });
    let mini = user.mini_openid.clone().unwrap();
    world
        .sandbox
        .state()
        .pin_session_key(&mini, VECTOR_SESSION_KEY)
        .unwrap();
    let shop = world.shop();
    let logged_in = world.log_in(&shop, &mini).await;
    assert_eq!(
        logged_in.unionid, None,
        "this mini-program is not bound to an Open Platform account"
    );

    let plaintext = shop
        .decrypt_user_data(&mini, VECTOR_DATA, VECTOR_IV)
        .await
        .unwrap();
    assert_eq!(plaintext, VECTOR_PLAINTEXT);
    let resolved = shop
        .resolve_user(&Recipient::MiniProgram(mini.clone()))
        .await
        .unwrap();
    assert_eq!(
        resolved.unionid.as_deref(),
        Some("ocMvos6NjeKLIBqg5Mr9QjxrP1FA"),
        "the revealed unionid is stored"
    );
}

#[tokio::test]
async fn data_watermarked_for_another_appid_is_rejected() {
    let world = World::in_memory().await; // its mini-program is not wx4f4bc4dec97d474b
    let user = world.sandbox.state().add_user(SeedUser::default());
    let mini = user.mini_openid.clone().unwrap();
    world
        .sandbox
        .state()
        .pin_session_key(&mini, VECTOR_SESSION_KEY)
        .unwrap();
    world.log_in(&world.shop(), &mini).await;
    match world
        .shop()
        .decrypt_user_data(&mini, VECTOR_DATA, VECTOR_IV)
        .await
        .unwrap_err()
    {
        Error::Notify {
            error: NotifyError::InvalidInput(message),
            ..
        } => {
            assert!(
                message.contains("wx4f4bc4dec97d474b") && message.contains(&world.mini_appid()),
                "{message}"
            );
        }
        other => panic!("expected invalid input, got {other}"),
    }
    let resolved = world
        .shop()
        .resolve_user(&Recipient::MiniProgram(mini))
        .await
        .unwrap();
    assert_eq!(
        resolved.unionid, None,
        "nothing from the rejected data was stored"
    );
}

#[tokio::test]
async fn decrypting_without_a_login_names_the_missing_session_key() {
    let world = World::in_memory().await;
    let message = not_found(
        world
            .shop()
            .decrypt_user_data("oMP0000000000000000000000042", VECTOR_DATA, VECTOR_IV)
            .await
            .unwrap_err(),
    );
    assert!(
        message.contains("no session key") && message.contains("login"),
        "{message}"
    );
}

#[tokio::test]
async fn an_oa_openid_with_no_known_unionid_is_looked_up_once_with_user_info() {
    let world = World::in_memory().await;
    // One bound to the Open Platform, one whose WeChat has no unionid to give: the answer
    // "none" is stored as well, or every send to that openid would cost a lookup.
    let bound = world.sandbox.state().add_user(SeedUser::follower());
    let unbound = world.sandbox.state().add_user(SeedUser {
        has_unionid: false,
        ..SeedUser::follower()
    });
    let shop = world.shop();
    for user in [&bound, &unbound] {
        let oa = user.oa_openid.clone().unwrap();
        for _ in 0..2 {
            let resolved = shop
                .resolve_user(&Recipient::OfficialAccount(oa.clone()))
                .await
                .unwrap();
            assert_eq!(resolved.unionid, user.unionid);
            assert_eq!(resolved.follows_oa, Some(true));
        }
        shop.send_notification(&hello(Recipient::OfficialAccount(oa)))
            .await
            .unwrap();
    }
    let lookups = world.requests_to("/cgi-bin/user/info");
    assert_eq!(lookups, 2, "one per openid: the answer was stored");
}

#[tokio::test]
async fn a_sync_of_25_000_followers_takes_3_pages_and_250_batchgets() {
    let world = World::start().await;
    let followers = world.sandbox.state().add_followers(25_000);
    let shop = world.shop();
    let last = loop {
        let progress = shop.sync_followers(false).await.unwrap();
        if progress.done {
            break progress;
        }
    };
    // Totals of the whole sync, not of its last page.
    assert_eq!(
        (last.total, last.synced, last.mapped),
        (25_000, 25_000, 25_000)
    );
    assert_eq!(world.requests_to("/cgi-bin/user/get"), 3);
    assert_eq!(world.requests_to("/cgi-bin/user/info/batchget"), 250);
    for follower in [&followers[0], &followers[12_345], &followers[24_999]] {
        let resolved = shop
            .resolve_user(&Recipient::Union(follower.unionid.clone().unwrap()))
            .await
            .unwrap();
        assert_eq!(resolved.oa_openid, follower.oa_openid);
    }
}

#[tokio::test]
async fn an_interrupted_sync_resumes_from_the_stored_cursor() {
    let world = World::start().await;
    let followers = world.sandbox.state().add_followers(25_000);
    let state = world.sandbox.state();
    let shop = world.shop();
    assert!(!shop.sync_followers(false).await.unwrap().done);

    // The second page dies half-way (the quota runs out; a crash leaves the same state).
    state.inject(
        wxnotify_sandbox::Fault::errcode(
            "/cgi-bin/user/info/batchget",
            45009,
            "reach max api daily quota limit",
        )
        .times(1),
    );
    assert!(shop.sync_followers(false).await.is_err());
    state.clear_faults();
    state.clear_requests();

    // A new runtime on the same storage (the process restarted) resumes at page 2.
    let again = world.another_runtime(world.backend.clone());
    let shop = again.shop();
    let mut last = shop.sync_followers(false).await.unwrap();
    while !last.done {
        last = shop.sync_followers(false).await.unwrap();
    }
    assert_eq!(last.synced, 25_000);
    let pages: Vec<_> = state
        .requests()
        .into_iter()
        .filter(|r| r.path == "/cgi-bin/user/get")
        .collect();
    assert_eq!(pages.len(), 2, "pages 2 and 3 only");
    assert_eq!(
        pages[0].query.get("next_openid"),
        followers[9_999].oa_openid.as_ref(),
        "resumed after page 1"
    );
    let resolved = shop
        .resolve_user(&Recipient::Union(
            followers[24_999].unionid.clone().unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(resolved.oa_openid, followers[24_999].oa_openid);
}

// The rest of WeChat's published vector (wechat-api.md §2.2).
const VECTOR_SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const VECTOR_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";

const VECTOR_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

const VECTOR_PLAINTEXT: &str = r#"{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0","unionId":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA","watermark":{"timestamp":1477314187,"appid":"wx4f4bc4dec97d474b"}}"#;
