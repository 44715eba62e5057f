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
