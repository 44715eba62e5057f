//! The Envoy filter in a Proxy-Wasm host that is not ours (`proxy-wasm-host`), against the
//! WeChat sandbox: the callback vectors every host must answer alike, pushes handed on to a
//! backend, sends with identity resolution from shared data, and one token for many workers.

use std::collections::HashSet;

use serde_json::{Value, json};
use wxnotify_envoy_harness::{
    ANSWER_WITHIN, Backend, HttpRequest, HttpResponse, Proxy, ProxyOptions, Sandbox,
};

/// §5.1 of docs/wechat-api.md (token `AAAAA`): plain-mode signatures cover the token, the
/// timestamp and the nonce, not the body, so this query signs any push.
const PLAIN: &str =
    "signature=899cf89e464efb63f54ddac96b0a0a235f53aa78&timestamp=1714037059&nonce=486452656";
const API_KEY: &str = "test-api-key-8c1f";

/// The plugin on the sandbox's accounts, its OA secret read from the VM's environment.
fn plugin_config(sandbox: &Sandbox, backend: Option<&Backend>, extra: &[(&str, &str)]) -> Value {
    let mut config = sandbox.plugin_config(extra);
    config.remove("oa_secret");
    let mut plugin = json!({
        "tenant": "shop",
        "wechat": { "cluster": "wechat", "timeout_ms": 3000 },
        "api_key": API_KEY,
        "config": config,
        "config_from_env": { "oa_secret": "WXNOTIFY_OA_SECRET" },
    });
    if backend.is_some() {
        plugin["events"] =
            json!({ "cluster": "backend", "path": "/wechat/events", "timeout_ms": 2000 });
    }
    plugin
}

fn proxy(
    sandbox: &Sandbox,
    backend: Option<&Backend>,
    workers: usize,
    extra: &[(&str, &str)],
) -> Proxy {
    let mut clusters = vec![("wechat".to_owned(), sandbox.base_url.clone())];
    if let Some(backend) = backend {
        clusters.push(("backend".to_owned(), backend.base_url.clone()));
    }
    Proxy::start(&ProxyOptions {
        workers,
        plugin_config: plugin_config(sandbox, backend, extra),
        clusters,
        environment: vec![("WXNOTIFY_OA_SECRET".into(), sandbox.oa_secret.clone())],
    })
    .unwrap()
}

/// Plain-mode callbacks for both accounts, with no freshness check: the §5.1 vector is from 2024.
const PLAIN_CALLBACKS: [(&str, &str); 3] = [
    ("oa_callback_token", "AAAAA"),
    ("mini_callback_token", "AAAAA"),
    ("callback_max_age_secs", "0"),
];

fn oa_event(openid: &str, create_time: u64, event: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[{event}]]></Event></xml>"
    )
}

fn push(proxy: &Proxy, body: &str) -> HttpResponse {
    proxy.request(HttpRequest::post(&format!("/callback/oa?{PLAIN}"), body))
}

fn send(proxy: &Proxy, notification: &Value) -> HttpResponse {
    proxy.request(authorized(notification))
}

fn authorized(notification: &Value) -> HttpRequest {
    HttpRequest::json("/v1/notifications", notification)
        .header("authorization", &format!("Bearer {API_KEY}"))
}

/// A template message, then a subscribe message, to `recipient`.
fn order_shipped(recipient: Value) -> Value {
    json!({
        "recipient": recipient,
        "channels": [
            { "template_message": { "template_id": "TPL_ORDER_SHIPPED", "data": { "thing1": "Shipped" } } },
            { "subscribe_message": {
                "template_id": "TPL_ORDER_STATUS",
                "data": {
                    "thing1": "Order shipped", "phrase2": "已发货",
                    "time3": "2026-11-21 10:00", "amount4": "¥99.00" },
                "page": "pages/order/detail?id=42" } }
        ]
    })
}

fn assert_error(answer: &HttpResponse, status: u16, kind: &str, needle: &str) {
    assert_eq!(answer.status, status, "{}", answer.text());
    let error = &answer.json()["error"];
    assert_eq!(error["kind"], kind, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

/// `tests/vectors/callbacks.json`, which the component's own test reads too.
#[test]
fn every_shared_callback_vector_gets_the_component_s_answer() {
    let vectors: Value =
        serde_json::from_str(include_str!("../../../../tests/vectors/callbacks.json")).unwrap();
    let sandbox = Sandbox::start();
    for vector in vectors["vectors"].as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let mut config = serde_json::Map::new();
        // The vector's own accounts: the sandbox's appids only where it names none.
        config.insert("mini_appid".into(), sandbox.mini_appid.clone().into());
        config.insert("oa_appid".into(), sandbox.oa_appid.clone().into());
        config.extend(vector["config"].as_object().unwrap().clone());
        let proxy = Proxy::start(&ProxyOptions {
            workers: 1,
            plugin_config: json!({ "wechat": { "cluster": "wechat" }, "config": config }),
            clusters: vec![("wechat".into(), sandbox.base_url.clone())],
            environment: Vec::new(),
        })
        .unwrap();
        let mut body = vector["body"].as_str().unwrap().as_bytes().to_vec();
        if let Some(size) = vector["pad_body_to"].as_u64() {
            body.resize(usize::try_from(size).unwrap(), b' ');
        }
        let request = HttpRequest {
            method: vector["method"].as_str().unwrap().into(),
            path_and_query: format!(
                "/callback/{}?{}",
                vector["account"].as_str().unwrap(),
                vector["query"].as_str().unwrap()
            ),
            headers: Vec::new(),
            body,
        };
        let answer = proxy.request(request);
        let expect = &vector["expect"];
        assert_eq!(
            u64::from(answer.status),
            expect["status"].as_u64().unwrap(),
            "{name}: {}",
            answer.text()
        );
        if let Some(text) = expect["text"].as_str() {
            assert_eq!(answer.text(), text, "{name}");
            assert!(
                answer
                    .header("content-type")
                    .unwrap()
                    .starts_with("text/plain"),
                "{name}"
            );
        }
        if let Some(kind) = expect["kind"].as_str() {
            let needle = expect["message_contains"].as_str().unwrap_or_default();
            assert_error(&answer, answer.status, kind, needle);
        }
        assert!(
            proxy.callouts().is_empty(),
            "{name}: no push here calls WeChat"
        );
    }
}

#[test]
fn a_follow_push_is_handed_on_once_and_maps_the_follower_for_a_template_message() {
    let sandbox = Sandbox::start();
    let backend = Backend::start();
    let proxy = proxy(&sandbox, Some(&backend), 2, &PLAIN_CALLBACKS);
    let user = sandbox.admin(
        "POST",
        "/users",
        Some(&json!({ "follows_oa": true, "has_unionid": true })),
    );
    let (oa_openid, unionid) = (
        user["oa_openid"].as_str().unwrap(),
        user["unionid"].as_str().unwrap(),
    );

    // Before the push, nothing maps the unionid: the template channel cannot be used.
    let unknown = send(&proxy, &order_shipped(json!({ "union": unionid })));
    assert_error(&unknown, 404, "not_found", "unionid");

    // WeChat delivers the push twice (a retry): both acknowledged, handed on once.
    let follow = oa_event(oa_openid, 1_714_037_000, "subscribe");
    for _ in 0..2 {
        let answer = push(&proxy, &follow);
        assert_eq!((answer.status, answer.text().as_str()), (200, "success"));
    }
    assert_eq!(
        backend.events(),
        vec![
            json!({ "account": "oa", "openid": oa_openid, "create_time": 1_714_037_000, "type": "follow" })
        ]
    );

    let sent = send(&proxy, &order_shipped(json!({ "union": unionid })));
    assert_eq!(sent.status, 200, "{}", sent.text());
    let delivery = sent.json();
    assert_eq!(delivery["channel"], "template_message");
    assert_eq!(delivery["openid"], oa_openid);
    let template = sandbox.admin("GET", "/messages", None)["template"].clone();
    assert!(
        template
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["touser"] == oa_openid && m["msgid"] == delivery["msgid"]),
        "the sandbox delivered it: {template}"
    );

    // An unfollow is recorded too: the next send falls back and, with no mini openid known
    // for the unionid, says so.
    assert_eq!(
        push(&proxy, &oa_event(oa_openid, 1_714_037_100, "unsubscribe")).status,
        200
    );
    assert_eq!(backend.events().len(), 2);
    let after = send(&proxy, &order_shipped(json!({ "union": unionid })));
    assert!(after.status >= 400, "{}", after.text());

    // Every WeChat call went to the cluster, with WeChat's authority and a framed body.
    let calls = proxy.callouts();
    let wechat: Vec<_> = calls.iter().filter(|c| c.cluster == "wechat").collect();
    assert!(wechat.iter().all(|c| c.header(":authority") == Some(sandbox.base_url.trim_start_matches("http://"))));
    assert!(
        wechat
            .iter()
            .filter(|c| c.header(":method") == Some("POST"))
            .all(|c| c.header("content-length") == Some(c.body.len().to_string().as_str()))
    );
    assert_eq!(sandbox.admin("GET", "/stats", None)["unframed_requests"], 0);
    assert_no_secret_logged(&proxy, &sandbox);
}

#[test]
fn a_non_follower_gets_the_subscribe_message() {
    let sandbox = Sandbox::start();
    let proxy = proxy(&sandbox, None, 1, &[]);
    let user = sandbox.admin(
        "POST",
        "/users",
        Some(&json!({ "follows_oa": false, "has_unionid": true })),
    );
    let mini_openid = user["mini_openid"].as_str().unwrap();
    sandbox.admin(
        "POST",
        &format!("/users/{mini_openid}/subscriptions"),
        Some(&json!({ "template_id": "TPL_ORDER_STATUS" })),
    );
    let sent = send(
        &proxy,
        &order_shipped(json!({ "mini_program": mini_openid })),
    );
    assert_eq!(sent.status, 200, "{}", sent.text());
    let delivery = sent.json();
    assert_eq!(delivery["channel"], "subscribe_message");
    assert_eq!(delivery["openid"], mini_openid);
    assert_eq!(delivery["failures"][0]["channel"], "template_message");
    let subscribe = sandbox.admin("GET", "/messages", None)["subscribe"].clone();
    assert_eq!(subscribe[0]["touser"], mini_openid, "{subscribe}");
    assert_eq!(subscribe[0]["page"], "pages/order/detail?id=42");
}

#[test]
fn two_hundred_concurrent_sends_on_two_workers_fetch_one_token_and_a_stale_one_is_refreshed_once() {
    let sandbox = Sandbox::start();
    let proxy = proxy(&sandbox, None, 2, &[]);
    let users: Vec<String> = (0..20)
        .map(|_| {
            let user = sandbox.admin(
                "POST",
                "/users",
                Some(&json!({ "follows_oa": true, "has_unionid": true })),
            );
            user["oa_openid"].as_str().unwrap().to_owned()
        })
        .collect();
    let shipped = |openid: &str| {
        json!({
            "recipient": { "official_account": openid },
            "channels": [{ "template_message": { "template_id": "TPL_ORDER_SHIPPED", "data": { "thing1": "Shipped" } } }]
        })
    };
    let concurrent = |count: usize| -> Vec<HttpResponse> {
        let pending: Vec<_> = (0..count)
            .map(|i| proxy.send(authorized(&shipped(&users[i % users.len()]))))
            .collect();
        pending
            .into_iter()
            .map(|answer| {
                answer
                    .recv_timeout(ANSWER_WITHIN)
                    .expect("every send is answered")
            })
            .collect()
    };

    let answers = concurrent(200);
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let msgids: HashSet<String> = answers
        .iter()
        .map(|a| a.json()["msgid"].to_string())
        .collect();
    assert_eq!(msgids.len(), 200, "200 distinct messages");
    assert_eq!(
        sandbox.token_fetches(&sandbox.oa_appid),
        1,
        "single flight across workers"
    );

    // WeChat revokes the token (40001 from now on): the next sends refresh it once between them.
    sandbox.admin(
        "POST",
        &format!("/tokens/{}/invalidate", sandbox.oa_appid),
        None,
    );
    for answer in concurrent(50) {
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    assert_eq!(
        sandbox.token_fetches(&sandbox.oa_appid),
        2,
        "one refresh for the stale token"
    );
    assert_eq!(
        sandbox.admin("GET", "/messages", None)["template"]
            .as_array()
            .unwrap()
            .len(),
        250
    );
}

#[test]
fn a_push_the_backend_did_not_take_is_not_acknowledged_and_its_retry_is_handed_on() {
    let sandbox = Sandbox::start();
    let backend = Backend::start();
    let proxy = proxy(&sandbox, Some(&backend), 1, &PLAIN_CALLBACKS);
    let finished = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\
        <FromUserName><![CDATA[oOA0000000000000000000000001]]></FromUserName>\
        <CreateTime>1714037200</CreateTime><MsgType><![CDATA[event]]></MsgType>\
        <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>\
        <Status><![CDATA[success]]></Status></xml>";
    backend.answer_with(503);
    assert_error(
        &push(&proxy, finished),
        502,
        "backend_unavailable",
        "status 503",
    );
    assert!(backend.events().is_empty());

    backend.answer_with(200);
    let retried = push(&proxy, finished);
    assert_eq!((retried.status, retried.text().as_str()), (200, "success"));
    assert_eq!(
        backend.events(),
        vec![json!({
            "account": "oa", "openid": "oOA0000000000000000000000001", "create_time": 1_714_037_200,
            "type": "template_finished", "msgid": 200_163_836, "status": "success"
        })]
    );
    // And the push was recorded where the core keeps it, as through the component.
    drop(backend);
    let again = push(&proxy, finished);
    assert_eq!(
        again.status, 200,
        "a duplicate is acknowledged without calling the backend"
    );
}

#[test]
fn bad_requests_get_the_component_s_errors_and_other_paths_pass_through() {
    let sandbox = Sandbox::start();
    let proxy = proxy(&sandbox, None, 1, &[]);
    let notification = order_shipped(json!({ "official_account": "oOA0000000000000000000000001" }));

    let anonymous = proxy.request(HttpRequest::json("/v1/notifications", &notification));
    assert_error(&anonymous, 401, "unauthorized", "Authorization");
    let wrong_key = proxy.request(
        HttpRequest::json("/v1/notifications", &notification)
            .header("authorization", "Bearer nope"),
    );
    assert_eq!(wrong_key.status, 401);
    let get = proxy.request(
        HttpRequest::get("/v1/notifications").header("authorization", &format!("Bearer {API_KEY}")),
    );
    assert_error(&get, 405, "method_not_allowed", "method");
    let broken = proxy.request(
        HttpRequest::post("/v1/notifications", "{\"recipient\":")
            .header("authorization", &format!("Bearer {API_KEY}")),
    );
    assert_error(&broken, 400, "invalid_input", "");
    let oversized = proxy.request(
        HttpRequest::post("/v1/notifications", vec![b' '; 256 * 1024 + 1])
            .header("authorization", &format!("Bearer {API_KEY}")),
    );
    assert_error(&oversized, 400, "invalid_input", "262144 bytes");
    let no_channel = send(
        &proxy,
        &json!({ "recipient": { "official_account": "oOA0000000000000000000000001" }, "channels": [] }),
    );
    assert_eq!(no_channel.status, 400, "{}", no_channel.text());

    // Checks run without a call to WeChat.
    let checked = proxy.request(
        HttpRequest::json("/v1/notifications/check", &notification)
            .header("authorization", &format!("Bearer {API_KEY}")),
    );
    assert_eq!(
        (checked.status, checked.json()),
        (200, json!({ "ok": true }))
    );
    assert!(proxy.callouts().is_empty());

    for path in [
        "/",
        "/v1/users/oa/oOA0000000000000000000000001",
        "/callback/other",
    ] {
        assert!(
            proxy.request(HttpRequest::get(path)).passed_through,
            "{path}"
        );
    }
}

#[test]
fn wechat_out_of_reach_is_a_503_and_a_broken_configuration_is_refused_naming_the_key() {
    let sandbox = Sandbox::start();
    let unreachable = Proxy::start(&ProxyOptions {
        workers: 1,
        plugin_config: json!({
            "wechat": { "cluster": "wechat", "timeout_ms": 500 },
            // Nothing listens on port 9 of this host.
            "config": sandbox.plugin_config(&[("api_base", "http://127.0.0.1:9")]),
        }),
        clusters: vec![("wechat".into(), "http://127.0.0.1:9".into())],
        environment: Vec::new(),
    })
    .unwrap();
    let answer = unreachable.request(authorized_free(&template_only()));
    assert_error(&answer, 503, "unavailable", "cluster `wechat`");

    let refused = Proxy::start(&ProxyOptions {
        workers: 1,
        plugin_config: json!({
            "wechat": { "cluster": "wechat" },
            "config": { "oa_secret": "TOP-SECRET-VALUE", "oa_secrte": "x" }
        }),
        clusters: Vec::new(),
        environment: Vec::new(),
    })
    .err()
    .expect("the plugin refuses a configuration with an unknown key");
    assert!(refused.contains("unknown key `oa_secrte`"), "{refused}");
    assert!(!refused.contains("TOP-SECRET-VALUE"), "{refused}");

    let unconfigured = Proxy::start(&ProxyOptions {
        workers: 1,
        plugin_config: json!({ "wechat": { "cluster": "wechat" }, "config": { "api_base": sandbox.base_url } }),
        clusters: vec![("wechat".into(), sandbox.base_url.clone())],
        environment: Vec::new(),
    })
    .unwrap();
    let answer = unconfigured.request(authorized_free(&template_only()));
    assert_error(&answer, 500, "config", "oa_appid");
}

fn template_only() -> Value {
    json!({
        "recipient": { "official_account": "oOA0000000000000000000000001" },
        "channels": [{ "template_message": { "template_id": "TPL_ORDER_SHIPPED", "data": { "thing1": "Shipped" } } }]
    })
}

/// A send to a plugin configured without an API key.
fn authorized_free(notification: &Value) -> HttpRequest {
    HttpRequest::json("/v1/notifications", notification)
}

fn assert_no_secret_logged(proxy: &Proxy, sandbox: &Sandbox) {
    let logs = proxy.logs().join("\n");
    for secret in [
        sandbox.oa_secret.as_str(),
        sandbox.mini_secret.as_str(),
        API_KEY,
        "AAAAA",
    ] {
        assert!(!logs.contains(secret), "a secret reached the log:\n{logs}");
    }
}
