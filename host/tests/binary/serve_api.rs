//! `wxnotify serve` as a backend and WeChat see it: the binary, a tenants file on disk, the
//! in-process WeChat API sandbox.

use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use wxnotify_sandbox::{Fault, FaultAction, Sandbox, SandboxConfig, SeedUser};

pub(crate) const KEY: &str = "test-api-key-0123456789";

/// A running `wxnotify serve`, killed on drop.
pub(crate) struct Served {
    child: Child,
    pub(crate) base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Served {
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = self
            .client
            .request(request.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            content_type,
            body,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.request("GET", path, Some(KEY), None, Bytes::new())
            .await
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.request(
            "POST",
            path,
            Some(KEY),
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    /// Submits one notification for `shop`, which must be accepted; returns its id.
    pub(crate) async fn submit(&self, notification: &Value) -> String {
        let accepted = self.post_json("/v1/shop/notifications", notification).await;
        assert_eq!(accepted.status, 202, "{}", accepted.text());
        accepted.json()["id"].as_str().unwrap().to_owned()
    }

    /// Polls the notification until it is final.
    pub(crate) async fn wait_final(&self, id: &str) -> Value {
        let path = &format!("/v1/shop/notifications/{id}");
        crate::poll(
            Duration::from_secs(60),
            Duration::from_millis(100),
            move || async move {
                let answer = self.get(path).await;
                assert_eq!(answer.status, 200, "{}", answer.text());
                let status = answer.json();
                if matches!(status["state"].as_str(), Some("delivered" | "failed")) {
                    ControlFlow::Break(status)
                } else {
                    ControlFlow::Continue(format!("still not final: {status}"))
                }
            },
        )
        .await
    }
}

/// Starts `wxnotify serve --bind 127.0.0.1:0` with tenant `shop` (API key set), tenant
/// `closed` (no key), both on the sandbox, on SQLite in a temporary directory; `shop_toml` is
/// more of shop's TOML (e.g. its limits), `args` more `serve` options.
pub(crate) async fn serve(sandbox: &Sandbox, shop_toml: &str, args: &[&str]) -> Served {
    serve_with_env(sandbox, shop_toml, args, &[]).await
}

/// As [`serve`], with more environment variables.
pub(crate) async fn serve_with_env(
    sandbox: &Sandbox,
    shop_toml: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (mini, oa) = (sandbox.state().mini_app(), sandbox.state().oa_app());
    let tenant = |id: &str, key: &str| {
        format!(
            "[tenants.{id}]\napi_base = \"{base}\"\n{key}\n\
             [tenants.{id}.mini_program]\nappid = \"{}\"\nsecret_env = \"SHOP_MINI_SECRET\"\n\
             [tenants.{id}.official_account]\nappid = \"{}\"\nsecret_env = \"SHOP_OA_SECRET\"\n\
             [tenants.{id}.config]\noa_callback_token = \"AAAAA\"\nmini_callback_token = \"AAAAA\"\n\
             callback_max_age_secs = \"0\"\n",
            mini.appid,
            oa.appid,
            base = sandbox.base_url(),
        )
    };
    std::fs::write(
        dir.path().join("wxnotify.toml"),
        format!(
            "[storage]\nbackend = \"sqlite\"\npath = \"wxnotify.sqlite3\"\n\n{}\n{}",
            tenant(
                "shop",
                &format!("api_key_env = \"SHOP_API_KEY\"\n{shop_toml}")
            ),
            tenant("closed", "")
        ),
    )
    .unwrap();
    let secrets = [
        ("SHOP_MINI_SECRET", mini.secret.as_str()),
        ("SHOP_OA_SECRET", oa.secret.as_str()),
        ("SHOP_API_KEY", KEY),
    ];
    let (child, addr) = crate::start_serve(
        dir.path(),
        &[&secrets[..], env].concat(),
        &[&["--workers", "2"], args].concat(),
    );
    let base = format!("http://{addr}");
    Served {
        child,
        base,
        client: Client::builder(TokioExecutor::new()).build_http(),
        _dir: dir,
    }
}

fn shipped(oa_openid: &str, key: Option<&str>) -> Value {
    let mut notification = json!({
        "recipient": { "official_account": oa_openid },
        "channels": [{ "template_message": {
            "template_id": "TPL_ORDER_SHIPPED",
            "data": { "thing1": "Your order has shipped" }
        }}],
    });
    if let Some(key) = key {
        notification["idempotency_key"] = key.into();
    }
    notification
}

#[tokio::test(flavor = "multi_thread")]
async fn submits_one_and_a_batch_and_they_are_delivered() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let user = sandbox.state().add_user(SeedUser::follower());
    let oa = user.oa_openid.unwrap();
    let served = serve(&sandbox, "", &[]).await;

    let one = served
        .post_json("/v1/shop/notifications", &shipped(&oa, Some("order-1")))
        .await;
    assert_eq!(one.status, 202, "{}", one.text());
    let one = one.json();
    assert_eq!(one["duplicate"], false);
    let id = one["id"].as_str().unwrap().to_owned();

    // The same idempotency key again: the first message, nothing stored.
    let again = served
        .post_json("/v1/shop/notifications", &shipped(&oa, Some("order-1")))
        .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json()["id"], id.as_str());
    assert_eq!(again.json()["duplicate"], true);

    let batch = served
        .post_json(
            "/v1/shop/notifications",
            &json!({ "notifications": [shipped(&oa, Some("order-2")), shipped(&oa, None), shipped(&oa, Some("order-1"))] }),
        )
        .await;
    assert_eq!(batch.status, 202, "{}", batch.text());
    let batch = batch.json();
    assert_eq!(batch["ids"].as_array().unwrap().len(), 3);
    assert_eq!(batch["duplicates"], json!([false, false, true]));
    assert_eq!(batch["ids"][2], id.as_str());

    let status = served.wait_final(&id).await;
    assert_eq!(status["state"], "delivered", "{status}");
    assert!(status["attempts"].as_u64().unwrap() >= 1);
    assert_eq!(status["detail"]["channel"], "template_message");
    assert_eq!(status["channel"], "template_message", "{status}");
    assert_eq!(status["error"], Value::Null, "{status}");
    assert!(status.get("wechat_status").is_some());
    for id in batch["ids"].as_array().unwrap() {
        let status = served.wait_final(id.as_str().unwrap()).await;
        assert_eq!(status["state"], "delivered", "{status}");
    }
    assert_eq!(sandbox.delivered_template_messages().len(), 3);

    // Another tenant cannot see it; an unknown id is 404.
    let closed = served
        .request(
            "GET",
            &format!("/v1/closed/notifications/{id}"),
            Some(KEY),
            None,
            "",
        )
        .await;
    assert_eq!(closed.status, 403);
    let missing = served
        .get("/v1/shop/notifications/01ARZ3NDEKTSV4RRFFQ69G5FAV")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["kind"], "not_found");

    // Users are forwarded to the component.
    let resolved = served.get(&format!("/v1/shop/users/oa/{oa}")).await;
    assert_eq!(resolved.status, 200, "{}", resolved.text());
    assert_eq!(resolved.json()["oa_openid"], oa.as_str());

    // The counters saw it.
    let metrics = served.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains(r#"wxnotify_sends_total{channel="template_message",outcome="delivered",tenant="shop"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"wxnotify_token_fetches_total{tenant="shop"}"#),
        "{text}"
    );
    assert!(
        text.contains("wxnotify_send_duration_seconds_count 3"),
        "{text}"
    );
    assert!(
        text.contains(r#"wxnotify_outbox_queued{tenant="shop"} 0"#),
        "{text}"
    );
    assert!(text.contains("wxnotify_outbox_in_flight 0"), "{text}");
    sandbox.shutdown().await;
}

const OPERATOR_KEY: &str = "operator-key-9876543210";

#[tokio::test(flavor = "multi_thread")]
async fn the_console_lists_filters_and_searches_a_window_and_opens_to_the_operator() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let stranger = sandbox.state().add_user(SeedUser {
        follows_oa: false,
        has_unionid: true,
        ..SeedUser::default()
    });
    let follower = sandbox.state().add_user(SeedUser::follower());
    let served = serve_with_env(
        &sandbox,
        "",
        &[],
        &[("WXNOTIFY_OPERATOR_KEY", OPERATOR_KEY)],
    )
    .await;
    let stranger_oa = stranger.oa_openid.clone().unwrap();
    let delivered = served
        .submit(&shipped(follower.oa_openid.as_deref().unwrap(), None))
        .await;
    assert_eq!(served.wait_final(&delivered).await["state"], "delivered");
    let failed = served.submit(&shipped(&stranger_oa, None)).await;
    assert_eq!(served.wait_final(&failed).await["state"], "failed");

    let page = served.get("/v1/shop/console/notifications").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    let rows = page["notifications"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [failed.as_str(), delivered.as_str()],
        "newest first: {page}"
    );
    assert_eq!(rows[0]["state"], "failed");
    assert_eq!(rows[0]["recipient"], format!("oa:{stranger_oa}"));
    assert_eq!(rows[0]["error"]["kind"], "refused", "{page}");
    assert_eq!(rows[0]["error"]["errcode"], 43004, "{page}");
    assert_eq!(rows[1]["state"], "delivered");
    assert_eq!(rows[1]["channel"], "template_message");
    assert_eq!(rows[1]["error"], Value::Null);
    assert_eq!(page["next"], Value::Null);

    let only_failed = served
        .get("/v1/shop/console/notifications?state=failed")
        .await
        .json();
    assert_eq!(only_failed["notifications"].as_array().unwrap().len(), 1);
    let searched = served
        .get(&format!(
            "/v1/shop/console/notifications?q={}",
            &stranger_oa[..12]
        ))
        .await
        .json();
    assert_eq!(searched["notifications"][0]["id"], failed.as_str());
    assert_eq!(searched["notifications"].as_array().unwrap().len(), 1);
    let paged = served
        .get("/v1/shop/console/notifications?limit=1")
        .await
        .json();
    let next = paged["next"].as_str().expect("a next page").to_owned();
    let second = served
        .get(&format!(
            "/v1/shop/console/notifications?limit=1&after={next}"
        ))
        .await
        .json();
    assert_eq!(second["notifications"][0]["id"], delivered.as_str());
    let empty_window = served
        .get("/v1/shop/console/notifications?since=0&until=1000")
        .await
        .json();
    assert_eq!(empty_window["notifications"], json!([]));

    for (query, named) in [
        ("state=lost", "unknown state `lost`"),
        ("after=nope", "not a page cursor"),
        ("since=2000&until=1000", "`since` is after `until`"),
        ("limit=x", "limit"),
        ("colour=red", "colour"),
    ] {
        let answer = served
            .get(&format!("/v1/shop/console/notifications?{query}"))
            .await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.text());
        assert!(answer.text().contains(named), "{query}: {}", answer.text());
    }

    let summary = served.get("/v1/shop/console/summary?buckets=4").await;
    assert_eq!(summary.status, 200, "{}", summary.text());
    let summary = summary.json();
    let buckets = summary["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 4);
    let total = |state: &str| -> u64 { buckets.iter().map(|b| b[state].as_u64().unwrap()).sum() };
    assert_eq!((total("delivered"), total("failed")), (1, 1), "{summary}");
    assert_eq!(
        (summary["queued"].as_u64(), summary["retrying"].as_u64()),
        (Some(0), Some(0))
    );
    let tokens = summary["tokens"].as_array().unwrap();
    let oa = tokens
        .iter()
        .find(|t| t["account"] == "official_account")
        .expect("the OA's token cache");
    assert_eq!(oa["appid"], sandbox.state().oa_app().appid);
    let (fetched, refresh, expires) = (
        oa["fetched_at"].as_u64().expect("fetched"),
        oa["refresh_at"].as_u64().unwrap(),
        oa["expires_at"].as_u64().unwrap(),
    );
    assert!(fetched <= refresh && refresh + 300 == expires, "{oa}");
    let mini = tokens
        .iter()
        .find(|t| t["account"] == "mini_program")
        .unwrap();
    assert_eq!(
        mini["expires_at"],
        Value::Null,
        "no mini-program call was made: {mini}"
    );
    assert!(
        !summary.to_string().contains("access_token"),
        "never the token: {summary}"
    );

    // The operator key opens every tenant's console and a notification's status, nothing else.
    let as_operator = |path: &'static str| {
        let served = &served;
        async move {
            served
                .request("GET", path, Some(OPERATOR_KEY), None, Bytes::new())
                .await
        }
    };
    assert_eq!(as_operator("/v1/shop/console/summary").await.status, 200);
    assert_eq!(
        as_operator("/v1/closed/console/notifications").await.status,
        200
    );
    let status_path = format!("/v1/shop/notifications/{failed}");
    let status = served
        .request("GET", &status_path, Some(OPERATOR_KEY), None, Bytes::new())
        .await;
    assert_eq!(status.status, 200, "{}", status.text());
    let submit = served
        .request(
            "POST",
            "/v1/shop/notifications",
            Some(OPERATOR_KEY),
            Some("application/json"),
            shipped(&stranger_oa, None).to_string(),
        )
        .await;
    assert_eq!(submit.status, 401, "the operator key sends nothing");
    // A tenant's key opens its own console only.
    let other = served.get("/v1/closed/console/summary").await;
    assert_eq!(other.status, 401, "{}", other.text());
    let anonymous = served
        .request("GET", "/v1/shop/console/summary", None, None, Bytes::new())
        .await;
    assert_eq!(anonymous.status, 401);

    // The page and its files, from the binary, loading nothing from elsewhere.
    let page = served
        .request("GET", "/console", None, None, Bytes::new())
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    assert!(page.text().contains("/console/console.js"));
    for (path, kind) in [
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let asset = served.request("GET", path, None, None, Bytes::new()).await;
        assert_eq!(asset.status, 200, "{path}");
        assert!(
            asset.content_type.starts_with(kind),
            "{path}: {}",
            asset.content_type
        );
        // The SVG namespace is a name, not an address.
        let text = asset.text().replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path}"
        );
    }
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_fail_at_once_and_the_daily_quota_waits() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    // Known to the OA but not following it: WeChat refuses template messages (43004).
    let stranger = sandbox.state().add_user(SeedUser {
        follows_oa: false,
        has_unionid: true,
        ..SeedUser::default()
    });
    let follower = sandbox.state().add_user(SeedUser::follower());
    let served = serve(&sandbox, "", &[]).await;

    let refused = served
        .submit(&shipped(stranger.oa_openid.as_deref().unwrap(), None))
        .await;
    let status = served.wait_final(&refused).await;
    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(status["attempts"], 1, "never retried: {status}");
    assert_eq!(status["wechat_status"], Value::Null);
    assert_eq!(status["channel"], Value::Null, "{status}");
    assert_eq!(status["error"]["kind"], "refused", "{status}");
    assert_eq!(status["error"]["errcode"], 43004, "{status}");

    // 45009: the tenant is paused until midnight China time, the message waits in the queue.
    sandbox.state().inject(Fault {
        endpoint: "/cgi-bin/message/template/send".into(),
        action: FaultAction::Errcode {
            errcode: 45009,
            errmsg: "reach max api daily quota limit".into(),
        },
        times: None,
        probability: 1.0,
    });
    let id = served
        .submit(&shipped(follower.oa_openid.as_deref().unwrap(), None))
        .await;
    let (served, path) = (&served, &format!("/v1/shop/notifications/{id}"));
    let status = crate::poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        move || async move {
            let status = served.get(path).await.json();
            if status["state"] == "queued" && status["attempts"] == 1 {
                ControlFlow::Break(status)
            } else {
                ControlFlow::Continue(format!("{status}"))
            }
        },
    )
    .await;
    assert_eq!(status["detail"]["error"]["errcode"], 45009, "{status}");
    assert_eq!(
        status["error"]["kind"], "quota",
        "the error of the last attempt: {status}"
    );
    let metrics = served.get("/metrics").await.text();
    assert!(
        metrics.contains(
            r#"wxnotify_sends_total{channel="template_message",outcome="failed",tenant="shop"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"wxnotify_sends_total{channel="template_message",outcome="retried",tenant="shop"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wxnotify_outbox_queued{tenant="shop"} 1"#),
        "{metrics}"
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_that_keeps_failing_ends_when_its_retry_window_closes() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let follower = sandbox.state().add_user(SeedUser::follower());
    sandbox.state().inject(Fault::errcode(
        "/cgi-bin/message/template/send",
        -1,
        "system error",
    ));
    let served = serve(&sandbox, "", &["--retry-for", "3s"]).await;
    let accepted = served
        .submit(&shipped(follower.oa_openid.as_deref().unwrap(), None))
        .await;
    let status = served.wait_final(&accepted).await;
    assert_eq!(status["state"], "failed", "{status}");
    let detail = status["error"]["message"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("gave up after") && detail.contains("system error"),
        "says why it stopped and what went wrong last: {status}"
    );
    assert!(
        status["attempts"].as_u64().unwrap() >= 2,
        "retried within the window first: {status}"
    );
    assert!(sandbox.state().delivered_template_messages().is_empty());
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_send_rate_spaces_its_sends() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let follower = sandbox.state().add_user(SeedUser::follower());
    let oa = follower.oa_openid.unwrap();
    let served = serve(&sandbox, "[tenants.shop.limits]\nsends_per_second = 3", &[]).await;
    let batch: Vec<Value> = (0..12).map(|_| shipped(&oa, None)).collect();
    let submitted = std::time::SystemTime::now();
    let accepted = served
        .post_json("/v1/shop/notifications", &json!({ "notifications": batch }))
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    for id in accepted.json()["ids"].as_array().unwrap() {
        let status = served.wait_final(id.as_str().unwrap()).await;
        assert_eq!(status["state"], "delivered", "{status}");
    }
    let last = sandbox
        .state()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/cgi-bin/message/template/send")
        .map(|r| r.at)
        .max()
        .unwrap();
    // A bucket of 3 refilled at 3 a second: 3 at once, the other 9 a third of a second apart.
    // A lower bound only: a slow machine makes it later, never earlier.
    let took = last.duration_since(submitted).unwrap();
    assert!(
        took >= Duration::from_millis(2_950),
        "12 sends at 3 a second took {took:?}"
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_logs_in_and_syncs_through_the_typed_exports() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let followers = sandbox.state().add_followers(3);
    let served = serve(&sandbox, "", &[]).await;

    // A check stores and sends nothing.
    let oa = followers[0].oa_openid.clone().unwrap();
    let checked = served
        .post_json("/v1/shop/notifications/check", &shipped(&oa, None))
        .await;
    assert_eq!(
        (checked.status, checked.json()),
        (200, json!({ "ok": true }))
    );
    let phrase = json!({ "recipient": { "union": "u-1" }, "channels": [{ "subscribe_message": {
        "template_id": "T", "data": { "phrase1": "far too long for a phrase" } } }] });
    let refused = served
        .post_json("/v1/shop/notifications/check", &phrase)
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.json()["error"]["kind"], "invalid_input");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("phrase1"),
        "{}",
        refused.text()
    );
    assert_eq!(
        sandbox.state().stats().requests,
        0,
        "nothing reached WeChat"
    );

    // Follower sync, one page per call, then the users are known.
    let synced = served
        .post_json("/v1/shop/followers/sync", &json!({ "restart": true }))
        .await;
    assert_eq!(synced.status, 200, "{}", synced.text());
    assert_eq!(
        synced.json(),
        json!({ "total": 3, "synced": 3, "mapped": 3, "done": true })
    );
    let user = served.get(&format!("/v1/shop/users/oa/{oa}")).await;
    assert_eq!(user.json()["follows_oa"], true, "{}", user.text());

    // Login with a code the sandbox issued; decryption needs the session key it stored.
    let mini = followers[1].mini_openid.clone().unwrap();
    let code = sandbox.state().issue_login_code(&mini).unwrap();
    let logged_in = served
        .post_json("/v1/shop/login", &json!({ "js_code": code }))
        .await;
    assert_eq!(logged_in.status, 200, "{}", logged_in.text());
    assert_eq!(logged_in.json()["mini_openid"], mini);
    let again = served
        .post_json("/v1/shop/login", &json!({ "js_code": code }))
        .await;
    assert_eq!(again.status, 422, "a code works once: {}", again.text());
    assert_eq!(again.json()["error"]["kind"], "rejected");
    let stranger = followers[2].mini_openid.clone().unwrap();
    let undecryptable = served
        .post_json(
            &format!("/v1/shop/users/mini/{stranger}/decrypt"),
            &json!({ "encrypted_data": "AAAA", "iv": "AAAAAAAAAAAAAAAAAAAAAA==" }),
        )
        .await;
    assert_eq!(undecryptable.status, 404, "{}", undecryptable.text());
    assert_eq!(undecryptable.json()["error"]["kind"], "not_found");
    let malformed = served
        .post_json("/v1/shop/login", &json!({ "code": "x" }))
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    assert!(malformed.text().contains("js_code"), "{}", malformed.text());
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_what_it_should() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let served = serve(&sandbox, "", &[]).await;
    let body = shipped("oOA0000000000000000000000001", None);

    let no_key = served
        .request(
            "POST",
            "/v1/shop/notifications",
            None,
            Some("application/json"),
            body.to_string(),
        )
        .await;
    assert_eq!(no_key.status, 401);
    assert_eq!(no_key.json()["error"]["kind"], "unauthorized");
    let wrong_key = served
        .request(
            "POST",
            "/v1/shop/notifications",
            Some("wrong"),
            Some("application/json"),
            body.to_string(),
        )
        .await;
    assert_eq!(wrong_key.status, 401);
    assert!(!wrong_key.text().contains(KEY));

    let closed = served.post_json("/v1/closed/notifications", &body).await;
    assert_eq!(closed.status, 403);
    assert_eq!(closed.json()["error"]["kind"], "forbidden");

    let unknown = served.post_json("/v1/nobody/notifications", &body).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["kind"], "not_found");

    let too_large = served
        .request(
            "POST",
            "/v1/shop/notifications",
            Some(KEY),
            Some("application/json"),
            vec![b' '; (1 << 20) + 1],
        )
        .await;
    assert_eq!(too_large.status, 413);

    let malformed = served
        .request(
            "POST",
            "/v1/shop/notifications",
            Some(KEY),
            Some("application/json"),
            "{not json",
        )
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["kind"], "invalid_input");

    // The component refuses it before anything is stored; in a batch, the error names the index.
    let invalid = json!({ "recipient": { "official_account": "oOA0000000000000000000000001" }, "channels": [] });
    let refused = served.post_json("/v1/shop/notifications", &invalid).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.json()["error"]["kind"].is_string());
    let batch = served
        .post_json(
            "/v1/shop/notifications",
            &json!({ "notifications": [body, invalid] }),
        )
        .await;
    assert_eq!(batch.status, 400, "{}", batch.text());
    assert_eq!(batch.json()["error"]["index"], 1);
    let metrics = served.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"wxnotify_outbox_queued{tenant="shop"} 0"#),
        "{metrics}"
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_wechat_callbacks_and_serves_operations() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let served = serve(&sandbox, "", &[]).await;

    // §5.1: URL verification, no API key (WeChat signs instead).
    let verified = served
        .request(
            "GET",
            "/v1/shop/wechat/oa?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492",
            None,
            None,
            "",
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.text());
    assert_eq!(verified.text(), "4375120948345356249");
    assert!(verified.content_type.starts_with("text/plain"));
    let forged = served
        .request(
            "GET",
            "/v1/shop/wechat/oa?signature=0000000000000000000000000000000000000000&echostr=1&timestamp=1714036504&nonce=1514711492",
            None,
            None,
            "",
        )
        .await;
    assert!(forged.status >= 400, "{}", forged.text());
    let too_large = served
        .request(
            "POST",
            "/v1/shop/wechat/oa",
            None,
            Some("text/xml"),
            vec![b'x'; (64 << 10) + 1],
        )
        .await;
    assert_eq!(too_large.status, 413);
    assert_eq!(
        served
            .request("GET", "/v1/shop/wechat/elsewhere", None, None, "")
            .await
            .status,
        404
    );

    let health = served.get("/healthz").await;
    assert_eq!(health.status, 200);
    let ready = served.get("/readyz").await;
    assert_eq!(ready.status, 200);
    let openapi = served.get("/openapi.json").await;
    assert_eq!(openapi.status, 200);
    let doc = openapi.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/{tenant}/notifications"]["post"].is_object());
    let metrics = served.get("/metrics").await.text();
    for family in [
        "wxnotify_outbox_in_flight",
        "wxnotify_outbox_queued",
        "wxnotify_send_duration_seconds",
    ] {
        assert!(metrics.contains(family), "{family} in {metrics}");
    }

    // SIGTERM: a graceful stop, exit code 0.
    let pid = served.child.id().to_string();
    let mut served = served;
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let child = &mut served.child;
    let status = crate::poll(
        Duration::from_secs(30),
        Duration::from_millis(50),
        move || {
            let exited = child.try_wait().unwrap();
            async move {
                match exited {
                    Some(status) => ControlFlow::Break(status),
                    None => ControlFlow::Continue("still running after SIGTERM".to_owned()),
                }
            }
        },
    )
    .await;
    assert_eq!(status.code(), Some(0));
    sandbox.shutdown().await;
}

#[test]
fn a_missing_api_key_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_minimal(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_wxnotify"))
        .env("WXNOTIFY_TENANTS", dir.path().join("wxnotify.toml"))
        .env_remove("NOPE_API_KEY")
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NOPE_API_KEY") && stderr.contains("api_key_env") && stderr.contains("`t`"),
        "{stderr}"
    );
}

fn write_minimal(dir: &Path) {
    std::fs::write(
        dir.join("wxnotify.toml"),
        "[storage]\nbackend = \"memory\"\n[tenants.t]\napi_key_env = \"NOPE_API_KEY\"\n\
         [tenants.t.official_account]\nappid = \"wxoa\"\nsecret = \"s\"\n",
    )
    .unwrap();
}
