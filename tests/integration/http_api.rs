//! The component's own JSON API (its `wasi:http/incoming-handler` export), as a wasi:http
//! gateway would route to it.

use serde_json::json;
use wxnotify_tests::{World, call};

#[tokio::test]
async fn sends_and_resolves_over_json() {
    let world = World::in_memory().await;
    let user = world.follower_known_to_shop().await;
    let mini = user.mini_openid.clone().unwrap();

    let body = json!({
        "recipient": {"mini_program": mini},
        "channels": [{"template_message": {"template_id": "TPL_ORDER_SHIPPED", "data": {"thing1": "Shipped"}}}],
        "idempotency_key": "json-1",
    });
    let (status, delivery) = call(
        &world.shop(),
        "POST",
        "/v1/notifications",
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{delivery}");
    assert_eq!(delivery["channel"], "template_message");
    assert_eq!(delivery["openid"], json!(user.oa_openid));
    assert_eq!(
        delivery["msgid"],
        json!(world.sandbox.state().delivered_template_messages()[0].msgid)
    );

    let (status, resolved) =
        call(&world.shop(), "GET", &format!("/v1/users/mini/{mini}"), "").await;
    assert_eq!(status, 200);
    assert_eq!(
        resolved,
        json!({"mini_openid": mini, "unionid": user.unionid, "oa_openid": user.oa_openid, "follows_oa": true})
    );
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx() {
    let world = World::in_memory().await;
    let (status, error) = call(&world.shop(), "POST", "/v1/notifications", "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["kind"], "invalid_input");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{error}"
    );

    let unknown_field =
        json!({"recipient": {"mini_program": "o1"}, "channels": [], "colour": "red"});
    let (status, error) = call(
        &world.shop(),
        "POST",
        "/v1/notifications",
        &unknown_field.to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{error}"
    );

    let (status, error) = call(
        &world.shop(),
        "GET",
        "/v1/users/mini/oMP0000000000000000000000404",
        "",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error["error"]["kind"], "not_found");

    let (status, _) = call(&world.shop(), "GET", "/v1/nothing", "").await;
    assert_eq!(status, 404);
    let (status, _) = call(&world.shop(), "DELETE", "/v1/notifications", "").await;
    assert_eq!(status, 405);
    assert!(
        world.sandbox.state().requests().is_empty(),
        "no bad request reached WeChat"
    );
}

#[tokio::test]
async fn checks_without_sending_and_reports_final_template_status() {
    let world = World::in_memory().await;
    let valid = json!({
        "recipient": {"mini_program": "oMP0000000000000000000000001"},
        "channels": [{"subscribe_message": {"template_id": "TPL_ORDER_STATUS", "data": {"phrase2": "配送中"}}}],
    });
    let (status, answer) = call(
        &world.shop(),
        "POST",
        "/v1/notifications/check",
        &valid.to_string(),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"ok": true})));
    let invalid = json!({
        "recipient": {"mini_program": "oMP0000000000000000000000001"},
        "channels": [{"subscribe_message": {"template_id": "TPL_ORDER_STATUS", "data": {"phrase2": "六个汉字短语"}}}],
    });
    let (status, error) = call(
        &world.shop(),
        "POST",
        "/v1/notifications/check",
        &invalid.to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("phrase2"),
        "{error}"
    );
    let (status, error) = call(
        &world.shop(),
        "POST",
        "/v1/notifications/check",
        &json!({"recipient": {"union": "a/b"}, "channels": []}).to_string(),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        world.sandbox.state().requests().is_empty(),
        "checking never calls WeChat"
    );

    let (status, error) = call(&world.shop(), "GET", "/v1/deliveries/42", "").await;
    assert_eq!(status, 404);
    assert!(
        error["error"]["message"].as_str().unwrap().contains("42"),
        "{error}"
    );
    let (status, _) = call(&world.shop(), "GET", "/v1/deliveries/forty-two", "").await;
    assert_eq!(status, 400);
}

/// What a gateway that reaches the component only through its HTTP handler (Spin, Node, Envoy)
/// does to map the official account's followers: one page per call until `done`.
#[tokio::test]
async fn followers_sync_over_json_a_page_per_call_and_then_sends_reach_them() {
    let world = World::in_memory().await;
    let followers = world.sandbox.state().add_followers(12_000);
    let shop = world.shop();

    let (status, first) = call(&shop, "POST", "/v1/followers/sync", "").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first,
        json!({"total": 12_000, "synced": 10_000, "mapped": 10_000, "done": false})
    );
    let (status, last) = call(&shop, "POST", "/v1/followers/sync", r#"{"restart": false}"#).await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(
        last,
        json!({"total": 12_000, "synced": 12_000, "mapped": 12_000, "done": true})
    );
    assert_eq!(world.requests_to("/cgi-bin/user/get"), 2);

    // A follower logs in to the mini-program: a send by mini openid now reaches its OA openid.
    let follower = &followers[11_999];
    let (status, user) = call(
        &shop,
        "POST",
        "/v1/login",
        &json!({"js_code": world.sandbox.state().issue_login_code(follower.mini_openid.as_deref().unwrap()).unwrap()}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    let (status, delivery) = call(
        &shop,
        "POST",
        "/v1/notifications",
        &json!({
            "recipient": {"mini_program": follower.mini_openid},
            "channels": [{"template_message": {"template_id": "TPL_ORDER_SHIPPED", "data": {"thing1": "Shipped"}}}],
        })
        .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{delivery}");
    assert_eq!(delivery["openid"], json!(follower.oa_openid));

    // `restart` starts again from the first follower.
    let (_, restarted) = call(&shop, "POST", "/v1/followers/sync", r#"{"restart": true}"#).await;
    assert_eq!(restarted["synced"], 10_000, "{restarted}");
    let (status, error) = call(&shop, "POST", "/v1/followers/sync", r#"{"restart": 1}"#).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["kind"], "invalid_input");
    let (status, _) = call(&shop, "GET", "/v1/followers/sync", "").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn user_data_decrypts_over_json_with_the_official_vector() {
    // wechat-api.md §2.2: appid, session key, iv, data and plaintext published by WeChat.
    const APPID: &str = "wx4f4bc4dec97d474b";
    const SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
    let config = wxnotify_sandbox::SandboxConfig {
        mini_program: wxnotify_sandbox::AppCredentials::new(APPID, "vector-secret"),
        ..wxnotify_sandbox::SandboxConfig::default()
    };
    let world = World::with(config, wxnotify_tests::Storage::Memory).await;
    let user = world.sandbox.state().add_user(wxnotify_sandbox::SeedUser {
        has_unionid: false,
        ..wxnotify_sandbox::SeedUser::default()
    });
    let mini = user.mini_openid.clone().unwrap();
    let shop = world.shop();
    let decrypt = format!("/v1/users/mini/{mini}/decrypt");
    let body = json!({"encrypted_data": DATA, "iv": IV}).to_string();

    let (status, error) = call(&shop, "POST", &decrypt, &body).await;
    assert_eq!(status, 404, "no login yet, so no session key: {error}");
    assert_eq!(error["error"]["kind"], "not_found");

    world
        .sandbox
        .state()
        .pin_session_key(&mini, SESSION_KEY)
        .unwrap();
    world.log_in(&shop, &mini).await;
    let (status, decrypted) = call(&shop, "POST", &decrypt, &body).await;
    assert_eq!(status, 200, "{decrypted}");
    assert_eq!(
        decrypted["user_data"]["unionId"], "ocMvos6NjeKLIBqg5Mr9QjxrP1FA",
        "{decrypted}"
    );
    assert_eq!(decrypted["user_data"]["watermark"]["appid"], APPID);
    let (_, resolved) = call(&shop, "GET", &format!("/v1/users/mini/{mini}"), "").await;
    assert_eq!(
        resolved["unionid"], "ocMvos6NjeKLIBqg5Mr9QjxrP1FA",
        "the revealed unionid is stored"
    );

    let (status, error) = call(&shop, "POST", &decrypt, r#"{"iv": "x"}"#).await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("encrypted_data"),
        "{error}"
    );
}
