//! Classic and stable tokens, token checks on APIs.

use std::time::Duration;

use serde_json::json;

use super::{Client, MINUTE, assert_errcode, to_start_of_china_day, token_of};

#[tokio::test]
async fn classic_token_overlaps_five_minutes_then_expires() {
    let client = Client::new().await;
    let app = client.sandbox.oa_app();
    let first = client.classic_token(&app.appid, &app.secret).await;
    assert_eq!(first["expires_in"], 7200);
    let first = token_of(&first);
    let second = client.oa_token().await;
    assert_ne!(first, second, "every classic fetch issues a new token");

    let user_get = |token: &str| format!("/cgi-bin/user/get?access_token={token}");
    assert_errcode(&client.get(&user_get(&first)).await, 0);
    client
        .sandbox
        .advance_clock(5 * MINUTE - Duration::from_secs(1));
    assert_errcode(&client.get(&user_get(&first)).await, 0);
    client.sandbox.advance_clock(Duration::from_secs(2));
    assert_errcode(&client.get(&user_get(&first)).await, 40001);
    assert_errcode(&client.get(&user_get(&second)).await, 0);

    client.sandbox.advance_clock(Duration::from_secs(7200));
    assert_errcode(&client.get(&user_get(&second)).await, 42001);
    assert_eq!(client.sandbox.token_fetches(&app.appid), 2);
}

#[tokio::test]
async fn classic_token_rejects_bad_credentials() {
    let client = Client::new().await;
    let app = client.sandbox.mini_app();
    let cases = [
        (
            format!(
                "grant_type=password&appid={}&secret={}",
                app.appid, app.secret
            ),
            40002,
        ),
        (
            format!("grant_type=client_credential&secret={}", app.secret),
            41002,
        ),
        (
            format!("grant_type=client_credential&appid={}", app.appid),
            41004,
        ),
        (
            format!(
                "grant_type=client_credential&appid=wx0000000000000000&secret={}",
                app.secret
            ),
            40013,
        ),
        (
            format!(
                "grant_type=client_credential&appid={}&secret=wrong",
                app.appid
            ),
            40125,
        ),
    ];
    for (query, expected) in cases {
        assert_errcode(
            &client.get(&format!("/cgi-bin/token?{query}")).await,
            expected,
        );
    }
    // Failed fetches count too (the one without an appid cannot be attributed).
    assert_eq!(client.sandbox.token_fetches(&app.appid), 3);
}

#[tokio::test]
async fn stable_token_normal_mode_reuses_then_renews_in_last_five_minutes() {
    let client = Client::new().await;
    let app = client.sandbox.mini_app();
    let first = client.stable_token(&app.appid, &app.secret, false).await;
    let again = client.stable_token(&app.appid, &app.secret, false).await;
    assert_eq!(token_of(&first), token_of(&again));
    // Classic fetches never disturb the stable token.
    client.mini_token().await;
    client.mini_token().await;
    client.sandbox.advance_clock(10 * MINUTE);
    let quota = |token: &str| format!("/cgi-bin/openapi/quota/get?access_token={token}");
    let body = json!({ "cgi_path": "/cgi-bin/message/subscribe/send" });
    assert_errcode(&client.post(&quota(&token_of(&first)), &body).await, 0);

    // 4 minutes left: a successor is handed out, the old one lives out its own lifetime.
    client
        .sandbox
        .advance_clock(Duration::from_secs(7200) - 14 * MINUTE);
    let renewed = client.stable_token(&app.appid, &app.secret, false).await;
    assert_ne!(token_of(&renewed), token_of(&first));
    assert_eq!(renewed["expires_in"], 7200);
    assert_errcode(&client.post(&quota(&token_of(&first)), &body).await, 0);
    client.sandbox.advance_clock(5 * MINUTE);
    assert_errcode(&client.post(&quota(&token_of(&first)), &body).await, 42001);
    assert_errcode(&client.post(&quota(&token_of(&renewed)), &body).await, 0);
    let counts = client.sandbox.token_fetch_counts(&app.appid);
    assert_eq!((counts.classic, counts.stable), (2, 3));
}

#[tokio::test]
async fn stable_token_force_refresh_is_spaced_and_capped() {
    let client = Client::new().await;
    let app = client.sandbox.oa_app();
    to_start_of_china_day(&client);
    let user_get = |token: &str| format!("/cgi-bin/user/get?access_token={token}");
    let mut current = token_of(&client.stable_token(&app.appid, &app.secret, false).await);

    client.sandbox.advance_clock(MINUTE);
    let forced = token_of(&client.stable_token(&app.appid, &app.secret, true).await);
    assert_ne!(forced, current);
    assert_errcode(&client.get(&user_get(&current)).await, 40001);
    current = forced;

    // Less than 30 s later: no refresh, the current token comes back.
    client.sandbox.advance_clock(Duration::from_secs(10));
    let refused = token_of(&client.stable_token(&app.appid, &app.secret, true).await);
    assert_eq!(refused, current);

    // 20 forced refreshes per day, the first one above included.
    for _ in 1..20 {
        client.sandbox.advance_clock(Duration::from_secs(31));
        let forced = token_of(&client.stable_token(&app.appid, &app.secret, true).await);
        assert_ne!(forced, current);
        current = forced;
    }
    client.sandbox.advance_clock(Duration::from_secs(31));
    let capped = token_of(&client.stable_token(&app.appid, &app.secret, true).await);
    assert_eq!(capped, current);
    assert_errcode(&client.get(&user_get(&current)).await, 0);

    // GET is refused as WeChat does.
    let get = client
        .get(&format!(
            "/cgi-bin/stable_token?grant_type=client_credential&appid={}&secret={}",
            app.appid, app.secret
        ))
        .await;
    assert_errcode(&get, 43002);
}

#[tokio::test]
async fn token_checks_missing_invalidated_expired_and_wrong_account() {
    let client = Client::new().await;
    let oa = client.oa_token().await;
    let mini = client.mini_token().await;
    let template = |token: &str| format!("/cgi-bin/message/template/send?access_token={token}");
    let subscribe = |token: &str| format!("/cgi-bin/message/subscribe/send?access_token={token}");
    let body = json!({});

    assert_errcode(
        &client.post("/cgi-bin/message/template/send", &body).await,
        41001,
    );
    assert_errcode(&client.post(&template("nope"), &body).await, 40001);
    assert_errcode(&client.post(&template(&mini), &body).await, 48001);
    assert_errcode(&client.post(&subscribe(&oa), &body).await, 48001);
    assert_errcode(
        &client
            .get(&format!("/cgi-bin/user/get?access_token={mini}"))
            .await,
        48001,
    );

    client
        .sandbox
        .invalidate_tokens(&client.sandbox.oa_app().appid)
        .unwrap();
    assert_errcode(&client.post(&template(&oa), &body).await, 40001);
    client
        .sandbox
        .expire_tokens(&client.sandbox.mini_app().appid)
        .unwrap();
    assert_errcode(&client.post(&subscribe(&mini), &body).await, 42001);
}
