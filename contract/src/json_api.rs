//! The component's JSON API, derived from [`Notify`]: what a wasi:http gateway (Spin, Node,
//! wasmtime serve) routes to a component's `incoming-handler`. A component implements
//! [`Notify`] once; its typed exports and this API are both generated from that.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /v1/notifications` | [`Notification`] | the [`Delivery`] |
//! | `POST /v1/notifications/check` | [`Notification`] | `{"ok": true}` if sending would pass its checks; nothing is sent |
//! | `GET /v1/deliveries/{msgid}` | — | the [`MessageStatus`] WeChat pushed for a template message |
//! | `GET /v1/users/{mini\|oa\|union}/{id}` | — | the [`User`] |
//! | `POST /v1/login` | [`LoginRequest`] | the [`User`] |
//! | `POST /v1/users/mini/{openid}/decrypt` | [`DecryptRequest`] | `{"user_data": …}`: the decrypted JSON |
//! | `POST /v1/followers/sync` | [`SyncRequest`] (or no body) | one page's [`SyncProgress`] |
//!
//! Errors answer `{"error": {"kind", "message", "errcode"?, "errmsg"?, "retry_after_secs"?}}`
//! with [`Error::status`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Delivery, Error, MessageStatus, Notification, Recipient, SyncProgress, User};

/// The operations of the `wechat:notify/notify` world (`notifier` and `accounts`) over the
/// plain types of this crate. A component implements it; `wxnotify-component-io` turns it into
/// the typed exports and [`answer`] into the JSON API.
///
/// Every operation has a default that answers [`Notify::not_served`], so a plugin implements
/// only what it serves.
pub trait Notify {
    /// The error of an operation this component does not serve: by default [`not_served`]; a
    /// plugin says what it is instead, so the caller knows where to go.
    fn not_served(&self, export: &str) -> Error {
        not_served(export)
    }

    /// `notifier.send-notification`.
    fn send_notification(&self, notification: Notification) -> Result<Delivery, Error> {
        let _ = notification;
        Err(self.not_served("notifier.send-notification"))
    }
    /// `notifier.check-notification`.
    fn check_notification(&self, notification: Notification) -> Result<(), Error> {
        let _ = notification;
        Err(self.not_served("notifier.check-notification"))
    }
    /// `notifier.final-status`.
    fn final_status(&self, msgid: i64) -> Result<Option<MessageStatus>, Error> {
        let _ = msgid;
        Err(self.not_served("notifier.final-status"))
    }
    /// `notifier.resolve-user`.
    fn resolve_user(&self, recipient: Recipient) -> Result<User, Error> {
        let _ = recipient;
        Err(self.not_served("notifier.resolve-user"))
    }
    /// `accounts.login`.
    fn login(&self, js_code: String) -> Result<User, Error> {
        let _ = js_code;
        Err(self.not_served("accounts.login"))
    }
    /// `accounts.decrypt-user-data`.
    fn decrypt_user_data(
        &self,
        mini_openid: String,
        encrypted_data: String,
        iv: String,
    ) -> Result<String, Error> {
        let _ = (mini_openid, encrypted_data, iv);
        Err(self.not_served("accounts.decrypt-user-data"))
    }
    /// `accounts.sync-followers`.
    fn sync_followers(&self, restart: bool) -> Result<SyncProgress, Error> {
        let _ = restart;
        Err(self.not_served("accounts.sync-followers"))
    }
}

/// The `config` error of an operation a component does not serve: running it for this tenant
/// is a configuration mistake, not a fault.
pub fn not_served(export: &str) -> Error {
    Error::Config(format!(
        "this tenant's component does not serve `{export}`; use a tenant with the built-in \
         component for it"
    ))
}

/// `POST /v1/login` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// The code `wx.login` gave the mini-program (valid once, for 5 minutes).
    pub js_code: String,
}

/// `POST /v1/users/mini/{openid}/decrypt` body: what `wx.getUserInfo` (or another open-data
/// API) handed the mini-program.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct DecryptRequest {
    /// `encryptedData`, base64.
    pub encrypted_data: String,
    /// `iv`, base64.
    pub iv: String,
}

/// `POST /v1/followers/sync` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct SyncRequest {
    /// Discard a stored cursor and start from the first follower.
    #[serde(default)]
    pub restart: bool,
}

/// The decrypted user data: the plaintext JSON, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct UserData {
    /// What WeChat encrypted (its watermark checked); a string if it was not JSON.
    pub user_data: Value,
}

impl UserData {
    /// The plaintext, as JSON when it is JSON: a caller gets an object, not a string to parse
    /// again.
    pub fn from_plaintext(plaintext: String) -> UserData {
        let user_data = serde_json::from_str(&plaintext).unwrap_or(Value::String(plaintext));
        UserData { user_data }
    }
}

/// The `{"error": …}` body of a failed request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Why.
    pub error: Error,
}

/// JSON API requests are small documents; larger bodies are refused unread, by every host.
pub const MAX_API_BODY_BYTES: usize = 256 * 1024;

/// The answer to an API request whose body is over [`MAX_API_BODY_BYTES`].
pub fn body_too_large() -> Error {
    Error::InvalidInput(format!(
        "request body larger than {MAX_API_BODY_BYTES} bytes"
    ))
}

/// The methods the API routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// Any other.
    Other,
}

/// An answer: its status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

impl Answer {
    /// A successful answer: 200 and `body` as JSON.
    pub fn ok(body: impl Serialize) -> Answer {
        Answer {
            status: 200,
            body: serde_json::to_value(body).unwrap_or(Value::Null),
        }
    }

    /// The answer of a failed operation.
    pub fn error(error: &Error) -> Answer {
        Answer {
            status: error.status(),
            body: json!({ "error": error }),
        }
    }

    /// An error of the HTTP layer itself (no route, wrong method, a refused callback):
    /// `{"error": {"kind", "message"}}`.
    pub fn route_error(status: u16, kind: &str, message: &str) -> Answer {
        Answer {
            status,
            body: json!({ "error": { "kind": kind, "message": message } }),
        }
    }
}

/// Whether `path` (without its query) is one of this API's routes; a component serves other
/// routes (WeChat's callbacks) before asking.
pub fn is_api_route(path: &str) -> bool {
    path.trim_matches('/').starts_with("v1/")
}

/// Answers `method path` with `api`; `body` reads the request body (it is read only for the
/// routes that take one).
pub fn answer(
    api: &impl Notify,
    method: Method,
    path: &str,
    body: impl FnOnce() -> Result<Vec<u8>, Error>,
) -> Answer {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let outcome = match (method, segments.as_slice()) {
        (Method::Post, ["v1", "notifications"]) => parse(body)
            .and_then(|n| api.send_notification(n))
            .map(Answer::ok),
        (Method::Post, ["v1", "notifications", "check"]) => parse(body)
            .and_then(|n| api.check_notification(n))
            .map(|()| Answer::ok(json!({ "ok": true }))),
        (Method::Get, ["v1", "deliveries", msgid]) => msgid
            .parse::<i64>()
            .map_err(|_| Error::InvalidInput(format!("msgid must be an integer, got `{msgid}`")))
            .and_then(|msgid| {
                api.final_status(msgid)?.ok_or_else(|| {
                    Error::NotFound(format!(
                        "WeChat has not reported the final status of msgid {msgid} yet"
                    ))
                })
            })
            .map(Answer::ok),
        (Method::Get, ["v1", "users", kind, id]) => recipient(kind, id)
            .and_then(|r| api.resolve_user(r))
            .map(Answer::ok),
        (Method::Post, ["v1", "login"]) => parse::<LoginRequest>(body)
            .and_then(|l| api.login(l.js_code))
            .map(Answer::ok),
        (Method::Post, ["v1", "users", "mini", openid, "decrypt"]) => parse::<DecryptRequest>(body)
            .and_then(|d| api.decrypt_user_data((*openid).to_owned(), d.encrypted_data, d.iv))
            .map(|plaintext| Answer::ok(UserData::from_plaintext(plaintext))),
        // One page per call: the cursor is stored, so a gateway calls this until `done` (from
        // a cron, a queue consumer or a loop of its own).
        (Method::Post, ["v1", "followers", "sync"]) => parse_or_default::<SyncRequest>(body)
            .and_then(|s| api.sync_followers(s.restart))
            .map(Answer::ok),
        (
            _,
            ["v1", "notifications"]
            | ["v1", "notifications", "check"]
            | ["v1", "deliveries", _]
            | ["v1", "users", _, _]
            | ["v1", "login"]
            | ["v1", "users", "mini", _, "decrypt"]
            | ["v1", "followers", "sync"],
        ) => {
            return Answer::route_error(
                405,
                "method_not_allowed",
                "method not allowed on this route",
            );
        }
        _ => {
            return Answer::route_error(404, "not_found", &format!("no route for {path}"));
        }
    };
    outcome.unwrap_or_else(|error| Answer::error(&error))
}

/// The recipient named by `/v1/users/{kind}/{id}`.
pub fn recipient(kind: &str, id: &str) -> Result<Recipient, Error> {
    let id = id.to_owned();
    match kind {
        "mini" => Ok(Recipient::MiniProgram(id)),
        "oa" => Ok(Recipient::OfficialAccount(id)),
        "union" => Ok(Recipient::Union(id)),
        other => Err(Error::InvalidInput(format!(
            "user kind must be `mini`, `oa` or `union`, got `{other}`"
        ))),
    }
}

/// A request body as `T`, or the `invalid_input` error naming what is wrong with it.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::InvalidInput(format!(
            "request body is not valid JSON for this route: {e}"
        ))
    })
}

fn parse<T: serde::de::DeserializeOwned>(
    body: impl FnOnce() -> Result<Vec<u8>, Error>,
) -> Result<T, Error> {
    parse_json(&body()?)
}

/// [`parse`], with an empty body standing for `T::default()`.
fn parse_or_default<T: serde::de::DeserializeOwned + Default>(
    body: impl FnOnce() -> Result<Vec<u8>, Error>,
) -> Result<T, Error> {
    let bytes = body()?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&bytes)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::{ApiError, Channel, ChannelMessage, TemplateMessage};

    /// Records what it was asked and answers from its fields.
    #[derive(Default)]
    struct Recording {
        sent: RefCell<Vec<Notification>>,
        refuse: Option<Error>,
    }

    impl Notify for Recording {
        fn send_notification(&self, notification: Notification) -> Result<Delivery, Error> {
            if let Some(error) = &self.refuse {
                return Err(error.clone());
            }
            let openid = match &notification.recipient {
                Recipient::OfficialAccount(id) => id.clone(),
                _ => "resolved".to_owned(),
            };
            self.sent.borrow_mut().push(notification);
            Ok(Delivery {
                channel: Channel::TemplateMessage,
                msgid: Some(7),
                openid,
                attempts: 1,
                truncated: vec![],
                failures: vec![],
            })
        }

        fn sync_followers(&self, restart: bool) -> Result<SyncProgress, Error> {
            Ok(SyncProgress {
                total: 3,
                synced: if restart { 0 } else { 3 },
                mapped: 3,
                done: true,
            })
        }
    }

    fn body(text: &str) -> impl FnOnce() -> Result<Vec<u8>, Error> + '_ {
        move || Ok(text.as_bytes().to_vec())
    }

    #[test]
    fn a_notification_is_read_in_keyword_order_and_its_delivery_answered() {
        let api = Recording::default();
        let answer = answer(
            &api,
            Method::Post,
            "/v1/notifications",
            body(
                r#"{"recipient": {"official_account": "oa-1"},
                    "channels": [{"template_message": {"template_id": "T",
                                  "data": {"time3": "10:00", "thing1": "Shipped"}}}],
                    "idempotency_key": "k-1"}"#,
            ),
        );
        assert_eq!(
            answer,
            Answer {
                status: 200,
                body: json!({"channel": "template_message", "msgid": 7, "openid": "oa-1",
                             "attempts": 1, "truncated": [], "failures": []})
            }
        );
        let sent = api.sent.borrow();
        let ChannelMessage::TemplateMessage(TemplateMessage { data, .. }) = &sent[0].channels[0]
        else {
            panic!("a template message");
        };
        assert_eq!(
            data,
            &[
                ("time3".to_owned(), "10:00".to_owned()),
                ("thing1".to_owned(), "Shipped".to_owned())
            ]
        );
        assert_eq!(sent[0].idempotency_key.as_deref(), Some("k-1"));
    }

    #[test]
    fn bad_bodies_are_named_and_nothing_is_called() {
        let api = Recording::default();
        for (text, needle) in [
            (
                r#"{"recipient": {"union": "u"}, "channels": [], "extra": 1}"#,
                "extra",
            ),
            (
                r#"{"recipient": {"union": "u"}, "channels": [{"template_message":
                    {"template_id": "T", "data": {"thing1": 5}}}]}"#,
                "invalid type",
            ),
            (
                r#"{"recipient": {"union": "u"}, "channels": [{"template_message":
                    {"template_id": "T", "data": {"thing1": "a", "thing1": "b"}}}]}"#,
                "`thing1` is given twice",
            ),
            ("not json", "expected"),
        ] {
            let answer = answer(&api, Method::Post, "/v1/notifications", body(text));
            assert_eq!(answer.status, 400, "{text}");
            assert_eq!(answer.body["error"]["kind"], "invalid_input");
            let message = answer.body["error"]["message"].as_str().unwrap();
            assert!(message.contains(needle), "{message}");
        }
        assert!(api.sent.borrow().is_empty());
    }

    #[test]
    fn errors_answer_their_status_and_json() {
        let api = Recording {
            refuse: Some(Error::Refused(ApiError::new(43004, "require subscribe"))),
            ..Recording::default()
        };
        let answer = answer(
            &api,
            Method::Post,
            "v1/notifications",
            body(r#"{"recipient": {"union": "u"}, "channels": []}"#),
        );
        assert_eq!(answer.status, 422);
        assert_eq!(
            answer.body,
            json!({"error": {"kind": "refused", "message": "errcode 43004: require subscribe",
                             "errcode": 43004, "errmsg": "require subscribe"}})
        );
    }

    #[test]
    fn routes_methods_and_defaults() {
        let api = Recording::default();
        let no_body = || -> Result<Vec<u8>, Error> { panic!("not read") };
        assert_eq!(
            answer(&api, Method::Get, "/v1/notifications", no_body).status,
            405
        );
        assert_eq!(
            answer(&api, Method::Get, "/v2/anything", no_body).status,
            404
        );
        let unserved = answer(&api, Method::Get, "/v1/users/oa/o-1", no_body);
        assert_eq!(unserved.status, 500);
        assert!(
            unserved.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("notifier.resolve-user")
        );
        assert_eq!(
            answer(&api, Method::Get, "/v1/users/email/x", no_body).status,
            400
        );
        assert_eq!(
            answer(&api, Method::Get, "/v1/deliveries/abc", no_body).status,
            400
        );
        // An empty sync body is the default request.
        let sync = answer(&api, Method::Post, "/v1/followers/sync", body(" "));
        assert_eq!(
            sync.body,
            json!({"total": 3, "synced": 3, "mapped": 3, "done": true})
        );
        let restart = answer(
            &api,
            Method::Post,
            "/v1/followers/sync",
            body(r#"{"restart": true}"#),
        );
        assert_eq!(restart.body["synced"], 0);
    }

    #[test]
    fn decrypted_json_is_answered_as_json() {
        assert_eq!(
            UserData::from_plaintext(r#"{"openId":"o"}"#.into()).user_data,
            json!({"openId": "o"})
        );
        assert_eq!(
            UserData::from_plaintext("plain".into()).user_data,
            json!("plain")
        );
    }
}
