//! `wasi:http/incoming-handler`: the component's JSON API, so a wasi:http gateway (Spin, or
//! `wxnotify serve`) can route requests to it directly.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /v1/notifications` | [`NotificationJson`] | the delivery |
//! | `GET /v1/users/{mini\|oa\|union}/{id}` | — | every identity known |
//! | `POST /v1/login` | `{"js_code": "…"}` | the user |
//!
//! Errors answer `{"error": {"kind", "message", "errcode"?, "errmsg"?}}` with a status that
//! says whether to retry: 4xx final, 429/503 retry later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::bindings::exports::wasi::http::incoming_handler::Guest;
use crate::bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::client::WeChat;
use crate::host_io::WasiEnv;
use crate::wechat::error::Error;
use crate::{Component, into_delivery, into_wit, wit};

/// Requests are small JSON documents; larger bodies are refused unread.
const MAX_BODY_BYTES: usize = 256 * 1024;

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = route(&request);
        respond(response_out, status, &body);
    }
}

fn route(request: &IncomingRequest) -> (u16, serde_json::Value) {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let path = path_with_query.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method();
    let outcome = match (&method, segments.as_slice()) {
        (Method::Post, ["v1", "notifications"]) => read_json::<NotificationJson>(request)
            .and_then(|n| with_wechat(|w| w.send_notification(&n.into())))
            .map(|d| delivery_json(into_delivery(d))),
        (Method::Get, ["v1", "users", kind, id]) => recipient(kind, id)
            .and_then(|r| with_wechat(|w| w.resolve_user(&r)))
            .map(|u| user_json(&u)),
        (Method::Post, ["v1", "login"]) => read_json::<LoginJson>(request)
            .and_then(|l| with_wechat(|w| w.login(&l.js_code)))
            .map(|u| user_json(&u)),
        (_, ["v1", "notifications"] | ["v1", "users", _, _] | ["v1", "login"]) => {
            return (
                405,
                error_body("method_not_allowed", "method not allowed on this route"),
            );
        }
        _ => {
            return (
                404,
                error_body("not_found", &format!("no route for {path}")),
            );
        }
    };
    match outcome {
        Ok(value) => (200, value),
        Err(error) => error_response(error),
    }
}

fn with_wechat<T>(f: impl FnOnce(&WeChat<'_, WasiEnv>) -> Result<T, Error>) -> Result<T, Error> {
    let env = WasiEnv::default();
    let wechat = WeChat::new(&env)?;
    f(&wechat)
}

fn recipient(kind: &str, id: &str) -> Result<wit::Recipient, Error> {
    let id = (*id).to_owned();
    match kind {
        "mini" => Ok(wit::Recipient::MiniProgram(id)),
        "oa" => Ok(wit::Recipient::OfficialAccount(id)),
        "union" => Ok(wit::Recipient::Union(id)),
        other => Err(Error::InvalidInput(format!(
            "user kind must be `mini`, `oa` or `union`, got `{other}`"
        ))),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(request: &IncomingRequest) -> Result<T, Error> {
    let body = request
        .consume()
        .map_err(|()| Error::InvalidInput("request body already consumed".into()))?;
    let bytes = {
        let stream = body
            .stream()
            .map_err(|()| Error::InvalidInput("request body already consumed".into()))?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_BODY_BYTES {
                        return Err(Error::InvalidInput(format!(
                            "request body larger than {MAX_BODY_BYTES} bytes"
                        )));
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error::InvalidInput(format!(
                        "reading the request body: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
        bytes
    };
    drop(IncomingBody::finish(body));
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::InvalidInput(format!(
            "request body is not valid JSON for this route: {e}"
        ))
    })
}

fn respond(out: ResponseOutparam, status: u16, body: &serde_json::Value) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    let bytes = body.to_string().into_bytes();
    if let Ok(stream) = outgoing.write() {
        for chunk in bytes.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

fn error_response(error: Error) -> (u16, serde_json::Value) {
    let status = match &error {
        Error::InvalidInput(_) => 400,
        Error::NotFound(_) => 404,
        Error::Refused(_) | Error::Rejected(_) => 422,
        Error::Quota(_) => 429,
        Error::Unavailable(_) => 503,
        Error::Auth(_) | Error::Api(_) => 502,
        Error::Config(_) => 500,
    };
    (status, json!({ "error": error_json(into_wit(error)) }))
}

fn error_body(kind: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "kind": kind, "message": message } })
}

/// The WIT error as JSON: `kind` is the case name, `errcode`/`errmsg` come with WeChat answers.
pub fn error_json(error: wit::Error) -> serde_json::Value {
    let api = |kind: &str, e: wit::ApiError| json!({ "kind": kind, "message": format!("errcode {}: {}", e.errcode, e.errmsg), "errcode": e.errcode, "errmsg": e.errmsg });
    let text = |kind: &str, m: String| json!({ "kind": kind, "message": m });
    match error {
        wit::Error::InvalidInput(m) => text("invalid_input", m),
        wit::Error::NotFound(m) => text("not_found", m),
        wit::Error::Refused(e) => api("refused", e),
        wit::Error::Rejected(e) => api("rejected", e),
        wit::Error::Quota(e) => api("quota", e),
        wit::Error::Auth(e) => api("auth", e),
        wit::Error::Unavailable(m) => text("unavailable", m),
        wit::Error::Config(m) => text("config", m),
        wit::Error::Api(e) => api("api", e),
    }
}

fn channel_name(channel: wit::Channel) -> &'static str {
    match channel {
        wit::Channel::TemplateMessage => "template_message",
        wit::Channel::SubscribeMessage => "subscribe_message",
    }
}

fn delivery_json(delivery: wit::Delivery) -> serde_json::Value {
    json!({
        "channel": channel_name(delivery.channel),
        "msgid": delivery.msgid,
        "openid": delivery.openid,
        "attempts": delivery.attempts,
        "truncated": delivery.truncated,
        "failures": delivery.failures.into_iter().map(|f| json!({
            "channel": channel_name(f.channel),
            "error": error_json(f.error),
        })).collect::<Vec<_>>(),
    })
}

fn user_json(user: &wit::User) -> serde_json::Value {
    json!({
        "mini_openid": user.mini_openid,
        "unionid": user.unionid,
        "oa_openid": user.oa_openid,
        "follows_oa": user.follows_oa,
    })
}

#[derive(Deserialize)]
struct LoginJson {
    js_code: String,
}

/// `POST /v1/notifications` body.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationJson {
    recipient: RecipientJson,
    channels: Vec<ChannelJson>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RecipientJson {
    MiniProgram(String),
    OfficialAccount(String),
    Union(String),
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ChannelJson {
    TemplateMessage(TemplateJson),
    SubscribeMessage(SubscribeJson),
    UniformLegacy(UniformJson),
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TemplateJson {
    template_id: String,
    data: BTreeMap<String, String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    miniprogram: Option<PageJson>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PageJson {
    #[serde(default)]
    appid: Option<String>,
    pagepath: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SubscribeJson {
    template_id: String,
    data: BTreeMap<String, String>,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    miniprogram_state: Option<StateJson>,
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum StateJson {
    Developer,
    Trial,
    Formal,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct UniformJson {
    #[serde(default)]
    appid: Option<String>,
    template_id: String,
    data: BTreeMap<String, String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    miniprogram: Option<PageJson>,
}

impl From<PageJson> for wit::MiniprogramPage {
    fn from(page: PageJson) -> Self {
        wit::MiniprogramPage {
            appid: page.appid,
            pagepath: page.pagepath,
        }
    }
}

impl From<NotificationJson> for wit::Notification {
    fn from(n: NotificationJson) -> Self {
        let pairs = |data: BTreeMap<String, String>| data.into_iter().collect::<Vec<_>>();
        wit::Notification {
            recipient: match n.recipient {
                RecipientJson::MiniProgram(id) => wit::Recipient::MiniProgram(id),
                RecipientJson::OfficialAccount(id) => wit::Recipient::OfficialAccount(id),
                RecipientJson::Union(id) => wit::Recipient::Union(id),
            },
            channels: n
                .channels
                .into_iter()
                .map(|c| match c {
                    ChannelJson::TemplateMessage(t) => {
                        wit::ChannelMessage::TemplateMessage(wit::TemplateMessage {
                            template_id: t.template_id,
                            data: pairs(t.data),
                            url: t.url,
                            miniprogram: t.miniprogram.map(Into::into),
                        })
                    }
                    ChannelJson::SubscribeMessage(s) => {
                        wit::ChannelMessage::SubscribeMessage(wit::SubscribeMessage {
                            template_id: s.template_id,
                            data: pairs(s.data),
                            page: s.page,
                            miniprogram_state: s.miniprogram_state.map(|state| match state {
                                StateJson::Developer => wit::MiniprogramState::Developer,
                                StateJson::Trial => wit::MiniprogramState::Trial,
                                StateJson::Formal => wit::MiniprogramState::Formal,
                            }),
                            lang: s.lang,
                        })
                    }
                    ChannelJson::UniformLegacy(u) => {
                        wit::ChannelMessage::UniformLegacy(wit::UniformMessage {
                            appid: u.appid,
                            template_id: u.template_id,
                            data: pairs(u.data),
                            url: u.url,
                            miniprogram: u.miniprogram.map(Into::into),
                        })
                    }
                })
                .collect(),
            idempotency_key: n.idempotency_key,
        }
    }
}
