//! Protocol strictness, faults, quotas, recording and the admin API.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Client, assert_errcode, to_start_of_china_day};
use crate::{Fault, FaultAction, SandboxConfig};

#[tokio::test]
async fn wrong_method_bad_json_and_unknown_path() {
    let client = Client::new().await;
    let token = client.oa_token().await;
    let app = client.sandbox.oa_app();
    let send = format!("/cgi-bin/message/template/send?access_token={token}");

    assert_errcode(&client.get(&send).await, 43002);
    let post_token = client
        .call(
            Method::POST,
            &format!(
                "/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
                app.appid, app.secret
            ),
            None,
        )
        .await;
    assert_errcode(&post_token, 43001);
    assert_errcode(
        &client.call(Method::POST, &send, Some("{not json")).await,
        47001,
    );
    assert_errcode(
        &client.call(Method::POST, &send, Some("[1,2]")).await,
        47001,
    );
    assert_errcode(
        &client
            .post("/cgi-bin/stable_token", &json!({ "appid": 1 }))
            .await,
        47001,
    );

    let (status, _) = client
        .try_send(Method::GET, "/cgi-bin/nope", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);

    let recorded = client.sandbox.requests();
    let bad = recorded
        .iter()
        .find(|r| r.body == Some(json!("{not json")))
        .expect("raw body recorded");
    assert_eq!((bad.method.as_str(), bad.errcode), ("POST", 47001));
    assert_eq!(bad.query.get("access_token"), Some(&token));
    let missing = recorded.last().unwrap();
    assert_eq!(
        (missing.path.as_str(), missing.status),
        ("/cgi-bin/nope", Some(404))
    );
}

#[tokio::test]
async fn drop_connection_fault_closes_without_answer() {
    let client = Client::new().await;
    let app = client.sandbox.oa_app();
    client
        .sandbox
        .inject(Fault::new("/cgi-bin/token", FaultAction::DropConnection).times(1));
    let path = format!(
        "/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
        app.appid, app.secret
    );
    let dropped = client.try_send(Method::GET, &path, None).await;
    assert!(dropped.is_err(), "expected no response, got {dropped:?}");
    // `times(1)`: the next call goes through.
    assert!(client.get(&path).await["access_token"].is_string());

    let recorded = client.sandbox.requests();
    assert_eq!(recorded[0].status, None);
    assert_eq!(recorded[0].faults, [FaultAction::DropConnection]);
    assert_eq!(client.sandbox.token_fetches(&app.appid), 2);
    assert!(client.sandbox.faults().is_empty());
}

#[tokio::test]
async fn errcode_and_latency_faults() {
    let client = Client::new().await;
    let token = client.oa_token().await;
    let path = format!("/cgi-bin/user/get?access_token={token}");
    client.sandbox.inject(Fault::new(
        "*",
        FaultAction::Latency(Duration::from_millis(50)),
    ));
    client
        .sandbox
        .inject(Fault::errcode("/cgi-bin/user/get", -1, "system error").times(2));
    let started = std::time::Instant::now();
    assert_errcode(&client.get(&path).await, -1);
    assert_errcode(&client.get(&path).await, -1);
    assert_errcode(&client.get(&path).await, 0);
    assert!(started.elapsed() >= Duration::from_millis(150));
    client.sandbox.clear_faults();
    client
        .sandbox
        .inject(Fault::errcode("*", 45009, "quota").probability(0.0));
    assert_errcode(&client.get(&path).await, 0);
}

#[tokio::test]
async fn daily_quota_and_quota_get_roll_at_china_midnight() {
    let mut limits = BTreeMap::new();
    limits.insert("/cgi-bin/user/get".to_owned(), 2);
    let client = Client::start(SandboxConfig {
        daily_limits: limits,
        ..SandboxConfig::default()
    })
    .await;
    to_start_of_china_day(&client);

    let token = client.oa_token().await;
    let path = format!("/cgi-bin/user/get?access_token={token}");
    let quota = format!("/cgi-bin/openapi/quota/get?access_token={token}");
    assert_errcode(&client.get(&path).await, 0);
    assert_errcode(&client.get(&path).await, 0);
    assert_errcode(&client.get(&path).await, 45009);
    let answer = client
        .post(&quota, &json!({ "cgi_path": "/cgi-bin/user/get" }))
        .await;
    assert_eq!(
        answer["quota"],
        json!({ "daily_limit": 2, "used": 2, "remain": 0 })
    );
    assert_errcode(
        &client
            .post(
                &quota,
                &json!({ "cgi_path": "/cgi-bin/message/subscribe/send" }),
            )
            .await,
        76022,
    );
    assert_errcode(
        &client
            .post(&quota, &json!({ "cgi_path": "/cgi-bin/nope" }))
            .await,
        76021,
    );

    // 23:59 China time is already the next UTC day, but still the same quota day.
    client
        .sandbox
        .advance_clock(Duration::from_secs(86_400 - 120));
    let token = client.oa_token().await;
    let path = format!("/cgi-bin/user/get?access_token={token}");
    assert_errcode(&client.get(&path).await, 45009);
    client.sandbox.advance_clock(Duration::from_secs(120));
    assert_errcode(&client.get(&path).await, 0);
}

#[tokio::test]
async fn admin_api_drives_the_sandbox() {
    let client = Client::new().await;
    let user = client
        .post(
            "/sandbox/users",
            &json!({ "follows_oa": true, "has_unionid": true }),
        )
        .await;
    let mini = user["mini_openid"].as_str().unwrap();
    assert!(user["oa_openid"].as_str().unwrap().starts_with("oOA"));
    let code = client
        .post(&format!("/sandbox/users/{mini}/login-code"), &json!({}))
        .await;
    assert_eq!(code["code"].as_str().map(str::len), Some(32));
    let granted = client
        .post(
            &format!("/sandbox/users/{mini}/subscriptions"),
            &json!({ "template_id": "TPL_ORDER_STATUS", "count": 2 }),
        )
        .await;
    assert_eq!(granted["remaining"], 2);
    let followers = client
        .post("/sandbox/followers", &json!({ "count": 3 }))
        .await;
    assert_eq!(followers["followers"], 4);

    let fault = json!({ "endpoint": "/cgi-bin/token", "action": { "type": "errcode", "errcode": -1 }, "times": 1 });
    let (status, _) = client
        .try_send(Method::POST, "/sandbox/faults", Some(&fault.to_string()))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let app = client.sandbox.mini_app();
    assert_errcode(&client.classic_token(&app.appid, &app.secret).await, -1);

    let (status, _) = client
        .try_send(Method::POST, "/sandbox/users/oMPnobody/login-code", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let overview = client.get("/sandbox").await;
    assert_eq!(overview["mini_program"]["appid"], json!(app.appid));
    let stats = client.get("/sandbox/stats").await;
    assert_eq!(stats["token_fetches"][&app.appid]["classic"], 1);
    let requests: Vec<Value> =
        serde_json::from_value(client.get("/sandbox/requests").await).unwrap();
    assert_eq!(requests.len(), 1, "admin calls are not recorded");
}

#[tokio::test]
async fn shutdown_is_prompt_idempotent_and_final() {
    let client = Client::new().await;
    // Leaves an idle keep-alive connection in the client's pool.
    client.oa_token().await;
    tokio::time::timeout(Duration::from_secs(3), client.sandbox.shutdown())
        .await
        .expect("idle connections do not hold up shutdown");
    client.sandbox.shutdown().await;
    assert!(
        client
            .try_send(Method::GET, "/cgi-bin/token", None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn each_request_records_how_its_body_was_framed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::Framing;

    let client = Client::new().await;
    let app = client.sandbox.oa_app();
    let body = json!({"grant_type": "client_credential", "appid": app.appid, "secret": app.secret})
        .to_string();
    client
        .call(Method::POST, "/cgi-bin/stable_token", Some(&body))
        .await;
    // The same body again, chunked, written by hand: hyper's client frames a known body
    // with Content-Length.
    let address = client.sandbox.addr();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /cgi-bin/stable_token HTTP/1.1\r\nhost: {address}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let recorded = client.sandbox.requests();
    let framings: Vec<(&str, Framing, bool)> = recorded
        .iter()
        .map(|r| (r.method.as_str(), r.framing, r.framed_like_peers()))
        .collect();
    assert_eq!(
        framings,
        [
            ("POST", Framing::ContentLength(body.len() as u64), true),
            ("POST", Framing::Chunked, false),
        ]
    );
    assert_eq!(recorded[1].body, Some(serde_json::from_str(&body).unwrap()));
    assert_eq!(client.sandbox.stats().unframed_requests, 1);
    client.sandbox.clear_requests();
    let problem = client
        .sandbox
        .framing_problem()
        .expect("counted past the clear");
    assert!(problem.starts_with("1 request(s) without"), "{problem}");

    client.get("/cgi-bin/user/get?access_token=x").await;
    let get = client.sandbox.requests().pop().unwrap();
    assert_eq!(
        (get.framing, get.framed_like_peers()),
        (Framing::None, true)
    );
    let serialised = serde_json::to_value(&recorded[0]).unwrap();
    assert_eq!(serialised["framing"], json!({"content-length": body.len()}));
}
