//! The phone's actions: pushes to a developer's server as WeChat makes them, the phone's view
//! and its page.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes as Body;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hyper::Method;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::Client;
use crate::{Account, SeedUser};

/// What the developer's server received: query, content type, body.
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

/// A developer's server on 127.0.0.1 answering `status` to every push; its base URL.
async fn developer_server(status: StatusCode) -> (String, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = Router::new().route(
        "/{*path}",
        post(
            move |RawQuery(query): RawQuery, headers: HeaderMap, body: Body| {
                let log = log.clone();
                async move {
                    let kind = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    log.lock().unwrap().push((
                        query.unwrap_or_default(),
                        kind,
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    (status, "success")
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

fn param<'a>(query: &'a str, name: &str) -> &'a str {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {query}"))
}

/// The signature WeChat's documentation defines, computed here from its text.
fn expected_signature(token: &str, query: &str) -> String {
    let mut parts = [token, param(query, "timestamp"), param(query, "nonce")];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat()))
}

#[tokio::test]
async fn follow_and_popup_push_signed_events_and_change_state() {
    let client = Client::new().await;
    let state = client.sandbox.state();
    let (base, received) = developer_server(StatusCode::OK).await;
    let urls = client
        .call(
            Method::PUT,
            "/sandbox/callbacks",
            Some(&json!({"official_account": format!("{base}/oa"), "mini_program": format!("{base}/mini?x=1")}).to_string()),
        )
        .await;
    assert_eq!(urls["official_account"], format!("{base}/oa"));
    let user = state.add_user(SeedUser {
        follows_oa: false,
        ..SeedUser::default()
    });
    let (mini, oa) = (user.mini_openid.unwrap(), user.oa_openid.unwrap());

    let followed = client
        .call(
            Method::PUT,
            &format!("/sandbox/users/{oa}/following"),
            Some(r#"{"following": true}"#),
        )
        .await;
    assert_eq!(followed["push"]["status"], 200, "{followed}");
    assert_eq!(state.follower_count(), 1);

    let rejected = client
        .call(
            Method::POST,
            &format!("/sandbox/users/{mini}/popup"),
            Some(r#"{"template_id": "TPL_ORDER_STATUS", "answer": "reject"}"#),
        )
        .await;
    assert_eq!(rejected["remaining"], 0, "a reject grants nothing");
    let accepted = client
        .post(
            &format!("/sandbox/users/{mini}/popup"),
            &json!({"template_id": "TPL_ORDER_STATUS", "answer": "accept"}),
        )
        .await;
    assert_eq!(accepted["remaining"], 1, "an accept grants one send");

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    let token = &state.config().callback_token;
    for (query, _, _) in &received {
        assert_eq!(param(query, "signature"), expected_signature(token, query));
    }
    let (follow_query, kind, follow) = &received[0];
    assert_eq!(kind, "text/xml");
    assert_eq!(param(follow_query, "openid"), oa);
    assert!(
        follow.contains("<Event><![CDATA[subscribe]]></Event>"),
        "{follow}"
    );
    assert!(follow.contains(&format!("<FromUserName><![CDATA[{oa}]]></FromUserName>")));
    let (popup_query, kind, popup) = &received[1];
    assert_eq!(kind, "application/json");
    assert!(
        popup_query.starts_with("x=1&"),
        "the URL's own query is kept: {popup_query}"
    );
    let popup: Value = serde_json::from_str(popup).unwrap();
    assert_eq!(popup["FromUserName"], mini.as_str());
    assert_eq!(popup["List"]["SubscribeStatusString"], "reject");
    let later: Value = serde_json::from_str(&received[2].2).unwrap();
    assert_eq!(later["List"]["SubscribeStatusString"], "accept");

    // The push log and the phone's view.
    let pushes = client.get("/sandbox/pushes").await;
    assert_eq!(pushes.as_array().unwrap().len(), 3);
    let view = client.get("/sandbox/phone/state").await;
    let shown = view["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["mini_openid"] == mini.as_str())
        .unwrap();
    assert_eq!(shown["following"], true);
    assert_eq!(shown["subscriptions"]["TPL_ORDER_STATUS"], 1);
    assert_eq!(view["pushes"][0]["event"], "subscribe_msg_popup_event");
    assert_eq!(
        view["callbacks"]["mini_program"],
        format!("{base}/mini?x=1")
    );
}

#[tokio::test]
async fn a_failing_server_is_recorded_and_nothing_is_pushed_without_a_url() {
    let client = Client::new().await;
    let state = client.sandbox.state();
    let user = state.add_user(SeedUser::follower());
    let oa = user.oa_openid.unwrap();
    let quiet = client
        .call(
            Method::PUT,
            &format!("/sandbox/users/{oa}/following"),
            Some(r#"{"following": false}"#),
        )
        .await;
    assert_eq!(quiet["push"], Value::Null, "no callback URL: no push");
    assert_eq!(state.follower_count(), 0);

    let (base, _) = developer_server(StatusCode::INTERNAL_SERVER_ERROR).await;
    state.set_callback_url(Account::OfficialAccount, Some(format!("{base}/oa")));
    let failed = client
        .call(
            Method::PUT,
            &format!("/sandbox/users/{oa}/following"),
            Some(r#"{"following": true}"#),
        )
        .await;
    assert_eq!(failed["push"]["status"], 500, "{failed}");
    // An unreachable server: the push says why.
    state.set_callback_url(Account::OfficialAccount, Some("http://127.0.0.1:9/".into()));
    let unreachable = client
        .call(
            Method::PUT,
            &format!("/sandbox/users/{oa}/following"),
            Some(r#"{"following": false}"#),
        )
        .await;
    assert_eq!(unreachable["push"]["status"], Value::Null);
    assert!(
        unreachable["push"]["answer"]
            .as_str()
            .unwrap()
            .starts_with("no answer"),
        "{unreachable}"
    );

    // Bad input is named.
    let (status, body) = client
        .try_send(
            Method::PUT,
            "/sandbox/callbacks",
            Some(r#"{"mini_program": "https://example.com/cb"}"#),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("http:// URLs only"));
    let (status, body) = client
        .try_send(
            Method::POST,
            &format!("/sandbox/users/{}/popup", user.mini_openid.unwrap()),
            Some(r#"{"template_id": "NOPE", "answer": "accept"}"#),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("NOPE"));
}

#[tokio::test]
async fn the_phone_page_is_served_from_the_binary() {
    let client = Client::new().await;
    for path in [
        "/sandbox/phone",
        "/sandbox/phone/phone.js",
        "/sandbox/phone/phone.css",
    ] {
        let (status, body) = client.try_send(Method::GET, path, None).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.is_empty(), "{path}");
    }
    assert!(
        client.sandbox.state().requests().is_empty(),
        "the phone is not a WeChat call"
    );
}
