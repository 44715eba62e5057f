//! Tests of the WeChat rules through real HTTP on 127.0.0.1.

mod accounts;
mod messages;
mod observe;
mod phone;
mod tokens;
mod wecom;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::{Sandbox, SandboxConfig};

/// A small HTTP client bound to one sandbox.
struct Client {
    sandbox: Sandbox,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    async fn start(config: SandboxConfig) -> Self {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        Self {
            sandbox,
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn new() -> Self {
        Self::start(SandboxConfig::default()).await
    }

    /// Sends a request; `Err` when no HTTP response came back.
    async fn try_send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&str>,
    ) -> Result<(StatusCode, Bytes), hyper_util::client::legacy::Error> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.sandbox.base_url()))
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
            .expect("valid request");
        let response = self.http.request(request).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Ok((status, body))
    }

    async fn call(&self, method: Method, path_and_query: &str, body: Option<&str>) -> Value {
        let (status, body) = self
            .try_send(method, path_and_query, body)
            .await
            .expect("an HTTP response");
        assert_eq!(status, StatusCode::OK, "{path_and_query}: {body:?}");
        serde_json::from_slice(&body).expect("JSON answer")
    }

    async fn get(&self, path_and_query: &str) -> Value {
        self.call(Method::GET, path_and_query, None).await
    }

    async fn post(&self, path_and_query: &str, body: &Value) -> Value {
        self.call(Method::POST, path_and_query, Some(&body.to_string()))
            .await
    }

    async fn classic_token(&self, appid: &str, secret: &str) -> Value {
        self.get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}"
        ))
        .await
    }

    async fn stable_token(&self, appid: &str, secret: &str, force_refresh: bool) -> Value {
        let body = json!({
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret,
            "force_refresh": force_refresh,
        });
        self.post("/cgi-bin/stable_token", &body).await
    }

    async fn oa_token(&self) -> String {
        let app = self.sandbox.oa_app();
        token_of(&self.classic_token(&app.appid, &app.secret).await)
    }

    async fn mini_token(&self) -> String {
        let app = self.sandbox.mini_app();
        token_of(&self.classic_token(&app.appid, &app.secret).await)
    }
}

fn token_of(answer: &Value) -> String {
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {answer}"))
        .to_owned()
}

/// The errcode of an answer (0 when absent, as WeChat omits it on some successes).
fn errcode(answer: &Value) -> i64 {
    answer["errcode"].as_i64().unwrap_or(0)
}

#[track_caller]
fn assert_errcode(answer: &Value, expected: i64) {
    assert_eq!(errcode(answer), expected, "answer: {answer}");
    if expected != 0 {
        let errmsg = answer["errmsg"].as_str().unwrap_or_default();
        assert!(errmsg.contains(" rid: "), "errmsg without rid: {errmsg}");
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// Moves the sandbox clock to one minute after the next 00:00 China time, so a test of daily
/// limits never straddles a quota day whatever the wall clock says.
fn to_start_of_china_day(client: &Client) {
    let now = crate::record::unix_secs(client.sandbox.now());
    let to_midnight = wxnotify_rules::china_time::next_midnight(now) - now;
    client.sandbox.advance_clock(Duration::from_secs(
        u64::try_from(to_midnight).unwrap() + 60,
    ));
}
