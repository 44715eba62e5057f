//! Login, followers and user info.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::{Client, MINUTE, assert_errcode};
use crate::{SandboxConfig, SeedUser};

#[tokio::test]
async fn jscode2session_codes_are_single_use_and_expire() {
    let client = Client::new().await;
    let app = client.sandbox.mini_app();
    let user = client.sandbox.add_user(SeedUser {
        has_unionid: true,
        ..SeedUser::default()
    });
    let openid = user.mini_openid.clone().unwrap();
    let login = |code: &str, appid: &str, secret: &str| {
        format!(
            "/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code"
        )
    };

    let code = client.sandbox.issue_login_code(&openid).unwrap();
    let session = client.get(&login(&code, &app.appid, &app.secret)).await;
    assert_eq!(session["openid"], json!(openid));
    assert_eq!(session["unionid"], json!(user.unionid));
    let key = session["session_key"].as_str().unwrap();
    assert_eq!(BASE64.decode(key).unwrap().len(), 16);
    assert_eq!(client.sandbox.session_key(&openid).as_deref(), Some(key));

    assert_errcode(
        &client.get(&login(&code, &app.appid, &app.secret)).await,
        40163,
    );
    assert_errcode(
        &client.get(&login("bogus", &app.appid, &app.secret)).await,
        40029,
    );

    // A second login issues a new session key.
    let code = client.sandbox.issue_login_code(&openid).unwrap();
    let oa = client.sandbox.oa_app();
    assert_errcode(
        &client.get(&login(&code, &oa.appid, &oa.secret)).await,
        40013,
    );
    let again = client.get(&login(&code, &app.appid, &app.secret)).await;
    assert_ne!(again["session_key"], session["session_key"]);

    let code = client.sandbox.issue_login_code(&openid).unwrap();
    client.sandbox.advance_clock(5 * MINUTE + MINUTE / 60);
    assert_errcode(
        &client.get(&login(&code, &app.appid, &app.secret)).await,
        40029,
    );

    // Without a unionid the field is absent.
    let loner = client.sandbox.add_user(SeedUser::default());
    let code = client
        .sandbox
        .issue_login_code(loner.mini_openid.as_deref().unwrap())
        .unwrap();
    let session = client.get(&login(&code, &app.appid, &app.secret)).await;
    assert!(session.get("unionid").is_none(), "{session}");
}

#[tokio::test]
async fn user_get_pages_through_followers_and_ends_cleanly() {
    let client = Client::start(SandboxConfig {
        page_size: 3,
        ..SandboxConfig::default()
    })
    .await;
    let followers = client.sandbox.add_followers(7);
    client.sandbox.add_user(SeedUser::default()); // known to the OA, not following
    let token = client.oa_token().await;
    let page = |next: &str| format!("/cgi-bin/user/get?access_token={token}&next_openid={next}");

    let mut seen = Vec::new();
    let mut next = String::new();
    let mut counts = Vec::new();
    loop {
        let answer = client.get(&page(&next)).await;
        assert_eq!(answer["total"], 7);
        let ids: Vec<String> = serde_json::from_value(answer["data"]["openid"].clone()).unwrap();
        counts.push(answer["count"].as_u64().unwrap());
        seen.extend(ids.iter().cloned());
        next = answer["next_openid"].as_str().unwrap().to_owned();
        if next.is_empty() {
            break;
        }
        assert_eq!(&next, ids.last().unwrap());
    }
    assert_eq!(counts, [3, 3, 1]);
    let expected: Vec<String> = followers.into_iter().filter_map(|u| u.oa_openid).collect();
    assert_eq!(seen, expected, "seeding order, every follower once");

    // Resuming after the last follower: nothing left, and no `data`.
    let past = client.get(&page(seen.last().unwrap())).await;
    assert_eq!(past, json!({ "total": 7, "count": 0, "next_openid": "" }));

    // An exact multiple of the page size: the page holding the last follower ends the list.
    client.sandbox.set_following(&seen[6], false).unwrap();
    let second = client.get(&page(&seen[2])).await;
    assert_eq!(
        (second["count"].as_u64(), second["next_openid"].as_str()),
        (Some(3), Some(""))
    );
    assert_errcode(
        &client.get(&page("oOAunknownunknownunknownunkn")).await,
        40003,
    );
}

#[tokio::test]
async fn user_info_and_batchget() {
    let client = Client::new().await;
    let follower = client.sandbox.add_user(SeedUser::follower());
    let gone = client.sandbox.add_user(SeedUser::follower());
    let gone_openid = gone.oa_openid.clone().unwrap();
    client.sandbox.set_following(&gone_openid, false).unwrap();
    let token = client.oa_token().await;
    let openid = follower.oa_openid.clone().unwrap();

    let info = client
        .get(&format!(
            "/cgi-bin/user/info?access_token={token}&openid={openid}&lang=zh_CN"
        ))
        .await;
    assert_eq!(info["subscribe"], 1);
    assert_eq!(info["unionid"], json!(follower.unionid));
    assert_eq!(info["subscribe_scene"], "ADD_SCENE_SEARCH");
    let mini = follower.mini_openid.clone().unwrap();
    let info = |openid: &str| format!("/cgi-bin/user/info?access_token={token}&openid={openid}");
    assert_errcode(&client.get(&info(&mini)).await, 40003);
    assert_eq!(
        client.get(&info(&gone_openid)).await,
        json!({ "subscribe": 0, "openid": gone_openid })
    );

    let batch = format!("/cgi-bin/user/info/batchget?access_token={token}");
    let list = |openids: &[&str]| {
        let items: Vec<Value> = openids
            .iter()
            .map(|o| json!({ "openid": o, "lang": "zh_CN" }))
            .collect();
        json!({ "user_list": items })
    };
    let answer = client.post(&batch, &list(&[&openid, &gone_openid])).await;
    let items = answer["user_info_list"].as_array().unwrap();
    assert_eq!(
        (
            items[0]["subscribe"].as_i64(),
            items[1]["subscribe"].as_i64()
        ),
        (Some(1), Some(0))
    );

    assert_errcode(
        &client
            .post(&batch, &list(&vec![openid.as_str(); 101]))
            .await,
        40032,
    );
    assert_errcode(&client.post(&batch, &list(&[])).await, 40032);
    assert_errcode(&client.post(&batch, &list(&[&openid, &mini])).await, 40003);
    assert_errcode(
        &client.post(&batch, &json!({ "user_list": "x" })).await,
        47001,
    );
}

#[tokio::test]
async fn seeds_one_hundred_thousand_followers() {
    let client = Client::new().await;
    let users = client.sandbox.add_followers(100_000);
    assert_eq!(users.len(), 100_000);
    let token = client.oa_token().await;
    let first = client
        .get(&format!("/cgi-bin/user/get?access_token={token}"))
        .await;
    assert_eq!(
        (first["total"].as_u64(), first["count"].as_u64()),
        (Some(100_000), Some(10_000))
    );
}
