//! Access tokens under concurrency and failure: one fetch however many callers, one refetch
//! and exactly one retry when a token goes stale, a bounded force refresh, never a loop.

use wxnotify::{Error, Notification, NotifyError, Recipient};
use wxnotify_sandbox::Fault;
use wxnotify_tests::{World, send_all_at_once, template_to};

fn hello(oa_openid: &str, key: &str) -> Notification {
    template_to(
        Recipient::OfficialAccount(oa_openid.to_owned()),
        "hello",
        Some(key),
    )
}

const TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";

fn template_sends(world: &World) -> usize {
    world.requests_to(TEMPLATE_SEND)
}

fn forced_fetches(world: &World) -> usize {
    world
        .sandbox
        .state()
        .requests()
        .iter()
        .filter(|r| r.path == "/cgi-bin/stable_token")
        .filter(|r| r.body.as_ref().is_some_and(|b| b["force_refresh"] == true))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_sends_with_an_empty_cache_fetch_one_token() {
    let world = World::start().await;
    let oa = world.new_follower_oa_openid();
    send_all_at_once(
        &world.shop(),
        (0..200).map(|i| hello(&oa, &format!("k{i}"))).collect(),
    )
    .await;
    assert_eq!(
        world.sandbox.state().delivered_template_messages().len(),
        200
    );
    assert_eq!(world.sandbox.state().token_fetches(&world.oa_appid()), 1);
}

#[tokio::test]
async fn a_token_invalidated_once_costs_one_refetch_and_one_retry() {
    let world = World::in_memory().await;
    let oa = world.new_follower_oa_openid();
    let shop = world.shop();
    shop.send_notification(&hello(&oa, "first")).await.unwrap();
    let state = world.sandbox.state();
    assert_eq!(state.token_fetches(&world.oa_appid()), 1);

    // Someone else force-refreshed the token: the cached one is now refused with 40001.
    state.invalidate_tokens(&world.oa_appid()).unwrap();
    state.clear_requests();
    let delivery = shop.send_notification(&hello(&oa, "second")).await.unwrap();

    assert_eq!(delivery.attempts, 2);
    assert_eq!(
        template_sends(&world),
        2,
        "the send, then exactly one retry"
    );
    assert_eq!(state.token_fetches(&world.oa_appid()), 2, "one refetch");
    let tokens: Vec<_> = state
        .requests()
        .into_iter()
        .filter(|r| r.path == TEMPLATE_SEND)
        .map(|r| (r.query["access_token"].clone(), r.errcode))
        .collect();
    assert_eq!(tokens[0].1, 40001);
    assert_eq!(tokens[1].1, 0);
    assert_ne!(tokens[0].0, tokens[1].0, "the retry used the new token");
}

#[tokio::test]
async fn a_token_refused_for_ever_surfaces_after_two_calls_with_one_bounded_force_refresh() {
    let world = World::in_memory().await;
    let oa = world.new_follower_oa_openid();
    let shop = world.shop();
    world.sandbox.state().inject(Fault::errcode(
        TEMPLATE_SEND,
        40001,
        "invalid credential, access_token is invalid or not latest",
    ));

    let refused = |error: Error| match error {
        Error::Notify {
            error: NotifyError::Auth(api),
            ..
        } => api.errcode,
        other => panic!("expected an auth error, got {other}"),
    };
    assert_eq!(
        refused(shop.send_notification(&hello(&oa, "a")).await.unwrap_err()),
        40001
    );
    assert_eq!(template_sends(&world), 2, "no loop: the call and one retry");
    // WeChat handed back the same token, so one force refresh was spent.
    assert_eq!(forced_fetches(&world), 1);

    // Within 30 s no further force refresh is made, whoever asks.
    assert_eq!(
        refused(shop.send_notification(&hello(&oa, "b")).await.unwrap_err()),
        40001
    );
    assert_eq!(template_sends(&world), 4);
    assert_eq!(forced_fetches(&world), 1, "the force budget is 30 s apart");
}

#[tokio::test]
async fn an_expired_token_is_refetched() {
    let world = World::in_memory().await;
    let oa = world.new_follower_oa_openid();
    let shop = world.shop();
    shop.send_notification(&hello(&oa, "a")).await.unwrap();
    world
        .sandbox
        .state()
        .expire_tokens(&world.oa_appid())
        .unwrap();
    let delivery = shop.send_notification(&hello(&oa, "b")).await.unwrap();
    assert_eq!(delivery.attempts, 2);
    assert_eq!(world.sandbox.state().token_fetches(&world.oa_appid()), 2);
}

#[tokio::test]
async fn classic_mode_uses_cgi_bin_token() {
    let world = World::in_memory().await;
    let oa = world.new_follower_oa_openid();
    let classic = world.add_tenant("classic", "token_mode = \"classic\"");
    classic.send_notification(&hello(&oa, "a")).await.unwrap();
    classic.send_notification(&hello(&oa, "b")).await.unwrap();
    let state = world.sandbox.state();
    let counts = state.token_fetch_counts(&world.oa_appid());
    assert_eq!((counts.classic, counts.stable), (1, 0));
    let fetch = state
        .requests()
        .into_iter()
        .find(|r| r.path == "/cgi-bin/token")
        .unwrap();
    assert_eq!(fetch.method, "GET");
    assert_eq!(fetch.query["grant_type"], "client_credential");
}

#[tokio::test]
async fn a_token_quota_surfaces_as_quota_with_the_errmsg() {
    let world = World::in_memory().await;
    let oa = world.new_follower_oa_openid();
    world.sandbox.state().inject(Fault::errcode(
        "/cgi-bin/stable_token",
        45009,
        "reach max api daily quota limit",
    ));
    match world
        .shop()
        .send_notification(&hello(&oa, "a"))
        .await
        .unwrap_err()
    {
        Error::Notify {
            error: NotifyError::Quota { error: api, .. },
            ..
        } => {
            assert_eq!(api.errcode, 45009);
            assert!(api.errmsg.contains("daily quota"), "{}", api.errmsg);
        }
        other => panic!("expected quota, got {other}"),
    }
    assert_eq!(template_sends(&world), 0);
}
