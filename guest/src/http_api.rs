//! `wasi:http/incoming-handler`: the component's JSON API and WeChat's callback URLs, so a
//! wasi:http gateway (Spin, or `wxnotify serve`) can route requests to it directly.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /v1/notifications` | [`NotificationJson`] | the delivery |
//! | `POST /v1/notifications/check` | [`NotificationJson`] | `{"ok": true}` if sending would pass its checks; nothing is sent |
//! | `GET /v1/deliveries/{msgid}` | — | the final status WeChat pushed for a template message |
//! | `GET /v1/users/{mini\|oa\|union}/{id}` | — | every identity known |
//! | `POST /v1/login` | `{"js_code": "…"}` | the user |
//! | `POST /v1/users/mini/{openid}/decrypt` | `{"encrypted_data": "…", "iv": "…"}` | `{"user_data": …}`: the decrypted JSON, watermark checked |
//! | `POST /v1/followers/sync` | `{"restart": false}` (or no body) | one page synced: `{"total", "synced", "mapped", "done"}` |
//! | `GET /callback/{oa\|mini}` | — | URL verification: `echostr`, as text |
//! | `POST /callback/{oa\|mini}` | a WeChat push (XML, or JSON for mini) | `success`, as text |
//!
//! The callback routes are the URLs to set in the official account's and the mini program's
//! consoles; see [`crate::callbacks`] for what a push changes and [`crate::wechat::callback`]
//! for how it is checked.
//!
//! Errors answer `{"error": {"kind", "message", "errcode"?, "errmsg"?}}` with a status that
//! says whether to retry: 4xx final, 429/5xx retry later (WeChat retries a push that is not
//! answered 200).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use wxnotify_component_io::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use wxnotify_component_io::wire::{self, route_error};
use wxnotify_component_io::{BodyError, read_request_body, respond};

use crate::bindings::exports::wasi::http::incoming_handler::Guest;
use crate::callbacks;
use crate::client::WeChat;
use crate::host_io::WasiEnv;
use crate::wechat::callback::{self, CallbackError, Rejection};
use crate::wechat::config::AccountKind;
use crate::wechat::error::Error;
use crate::{Component, into_delivery, into_wit, wit};

/// Requests are small JSON documents; larger bodies are refused unread.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// What the component answers: JSON for the API and every error, text for WeChat.
enum Answer {
    Json(u16, serde_json::Value),
    Text(u16, String),
}

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        match route(&request) {
            Answer::Json(status, body) => respond(
                response_out,
                status,
                "application/json",
                body.to_string().as_bytes(),
            ),
            Answer::Text(status, body) => respond(
                response_out,
                status,
                "text/plain; charset=utf-8",
                body.as_bytes(),
            ),
        }
    }
}

fn route(request: &IncomingRequest) -> Answer {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let (path, query) = path_with_query
        .split_once('?')
        .unwrap_or((&path_with_query, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method();
    let outcome = match (&method, segments.as_slice()) {
        (Method::Post, ["v1", "notifications"]) => read_json::<NotificationJson>(request)
            .and_then(|n| with_wechat(|w| w.send_notification(&n.into())))
            .map(|d| wire::Delivery::from(into_delivery(d)).to_json()),
        (Method::Post, ["v1", "notifications", "check"]) => read_json::<NotificationJson>(request)
            .and_then(|n| with_wechat(|w| w.check_notification(&n.into())))
            .map(|_| json!({ "ok": true })),
        (Method::Get, ["v1", "deliveries", msgid]) => msgid
            .parse::<i64>()
            .map_err(|_| Error::InvalidInput(format!("msgid must be an integer, got `{msgid}`")))
            .and_then(|msgid| {
                with_wechat(|w| w.template_outcome(msgid))?
                    .map(|outcome| {
                        json!({ "msgid": msgid, "status": outcome.status, "openid": outcome.openid, "at": outcome.at })
                    })
                    .ok_or_else(|| {
                        Error::NotFound(format!("WeChat has not reported the final status of msgid {msgid} yet"))
                    })
            }),
        (Method::Get, ["v1", "users", kind, id]) => recipient(kind, id)
            .and_then(|r| with_wechat(|w| w.resolve_user(&r)))
            .map(|u| user_json(&u)),
        (Method::Post, ["v1", "login"]) => read_json::<LoginJson>(request)
            .and_then(|l| with_wechat(|w| w.login(&l.js_code)))
            .map(|u| user_json(&u)),
        (Method::Post, ["v1", "users", "mini", openid, "decrypt"]) => {
            read_json::<DecryptJson>(request)
                .and_then(|d| {
                    with_wechat(|w| w.decrypt_user_data(openid, &d.encrypted_data, &d.iv))
                })
                .map(|plaintext| {
                    // The plaintext is JSON (its watermark was read from it); a gateway's
                    // caller gets it as such rather than as a string to parse again.
                    let user_data = serde_json::from_str::<serde_json::Value>(&plaintext)
                        .unwrap_or(serde_json::Value::String(plaintext));
                    json!({ "user_data": user_data })
                })
        }
        // One page per call, as the export: the cursor is stored, so a gateway calls this
        // until `done` (from a cron, a queue consumer or a loop of its own).
        (Method::Post, ["v1", "followers", "sync"]) => read_json_or_default::<SyncJson>(request)
            .and_then(|s| with_wechat(|w| w.sync_followers(s.restart)))
            .map(|p| json!({ "total": p.total, "synced": p.synced, "mapped": p.mapped, "done": p.done })),
        (Method::Get | Method::Post, ["callback", "oa"]) => {
            return callback_answer(request, &method, AccountKind::OfficialAccount, query);
        }
        (Method::Get | Method::Post, ["callback", "mini"]) => {
            return callback_answer(request, &method, AccountKind::MiniProgram, query);
        }
        (
            _,
            ["v1", "notifications"]
            | ["v1", "notifications", "check"]
            | ["v1", "deliveries", _]
            | ["v1", "users", _, _]
            | ["v1", "login"]
            | ["v1", "users", "mini", _, "decrypt"]
            | ["v1", "followers", "sync"]
            | ["callback", "oa" | "mini"],
        ) => {
            return Answer::Json(
                405,
                route_error("method_not_allowed", "method not allowed on this route"),
            );
        }
        _ => {
            return Answer::Json(
                404,
                route_error("not_found", &format!("no route for {path}")),
            );
        }
    };
    match outcome {
        Ok(value) => Answer::Json(200, value),
        Err(error) => error_response(error),
    }
}

/// `GET` (URL verification) or `POST` (a push) on `kind`'s callback URL.
fn callback_answer(
    request: &IncomingRequest,
    method: &Method,
    kind: AccountKind,
    query: &str,
) -> Answer {
    let env = WasiEnv::default();
    let outcome = if matches!(method, Method::Get) {
        callbacks::verify_url(&env, kind, query)
    } else {
        let read = || read_request_body(request, callback::MAX_BODY_BYTES).map_err(into_callback);
        // WeChat wants `success` (or nothing) for every push it need not retry, duplicates and
        // pushes that change nothing included; never a passive reply.
        callbacks::receive(&env, kind, query, read).map(|_| "success".to_owned())
    };
    match outcome {
        Ok(text) => Answer::Text(200, text),
        Err(CallbackError::Rejected(rejection)) => {
            let (status, kind) = rejection_status(&rejection);
            Answer::Json(status, route_error(kind, &rejection.to_string()))
        }
        Err(CallbackError::Failed(error)) => error_response(error),
    }
}

/// The status and `kind` of a refused callback request.
fn rejection_status(rejection: &Rejection) -> (u16, &'static str) {
    match rejection {
        Rejection::BadSignature(_) => (401, "bad_signature"),
        Rejection::WrongReceiver { .. } => (401, "wrong_receiver"),
        Rejection::TooLarge => (413, "too_large"),
        Rejection::Stale { .. } => (400, "stale_timestamp"),
        Rejection::MissingParameter(_)
        | Rejection::BadTimestamp(_)
        | Rejection::UnsupportedEncryption(_) => (400, "invalid_query"),
        Rejection::Malformed(_) | Rejection::Undecryptable(_) => (400, "malformed_push"),
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
    parse_json(&read_body(request)?)
}

/// [`read_json`], with an empty body standing for `T::default()`.
fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
    request: &IncomingRequest,
) -> Result<T, Error> {
    let bytes = read_body(request)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&bytes)
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, Error> {
    read_request_body(request, MAX_BODY_BYTES).map_err(|e| match e {
        BodyError::TooLarge => {
            Error::InvalidInput(format!("request body larger than {MAX_BODY_BYTES} bytes"))
        }
        BodyError::Unreadable(m) => Error::InvalidInput(m),
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::InvalidInput(format!(
            "request body is not valid JSON for this route: {e}"
        ))
    })
}

/// What a request body that could not be read means for a callback: refused, nothing applied.
fn into_callback(error: BodyError) -> CallbackError {
    match error {
        BodyError::TooLarge => Rejection::TooLarge.into(),
        BodyError::Unreadable(m) => Rejection::Malformed(m).into(),
    }
}

fn error_response(error: Error) -> Answer {
    let (status, body) = wire::Error::from(into_wit(error)).answer();
    Answer::Json(status, body)
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

/// `POST /v1/users/mini/{openid}/decrypt` body: what `wx.getUserInfo` (or another open-data
/// API) handed the mini-program.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecryptJson {
    encrypted_data: String,
    iv: String,
}

/// `POST /v1/followers/sync` body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SyncJson {
    /// Discard a stored cursor and start from the first follower.
    #[serde(default)]
    restart: bool,
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
