//! What the filter answers, route by route: the same routes, bodies and error JSON as the
//! component's `wasi:http` handler (`guest/src/http_api.rs`), over the same core.
//!
//! | route | answer |
//! |---|---|
//! | `GET {prefix}/callback/{oa\|mini}` | URL verification: `echostr` |
//! | `POST {prefix}/callback/{oa\|mini}` | `success`, once the push is applied and, for a new push, taken by the backend |
//! | `POST {prefix}/v1/notifications` | the `Delivery` of `send-notification` |
//! | `POST {prefix}/v1/notifications/check` | `{"ok": true}` when sending would pass its checks |
//!
//! Any other path passes through the filter untouched.

use std::rc::Rc;

use wxnotify_contract::json_api::{self, Answer};
use wxnotify_contract::{Delivery, Notification};
use wxnotify_core::WeChat;
use wxnotify_core::callbacks::{self, Received};
use wxnotify_core::wechat::callback::{self as wechat_callback, CallbackError, Push, Rejection};
use wxnotify_core::wechat::config::AccountKind;

use crate::config::{Events, Plugin};
use crate::proxy_env::ProxyEnv;
use crate::runtime::{self, Reply};

/// A route the filter answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Callback(AccountKind),
    Send,
    Check,
}

impl Route {
    /// The route of `path` (without its query) under `prefix`; `None`: not the filter's.
    pub fn of(prefix: &str, path: &str) -> Option<Route> {
        let path = path.strip_prefix(prefix)?;
        match path.trim_end_matches('/') {
            "/callback/oa" => Some(Route::Callback(AccountKind::OfficialAccount)),
            "/callback/mini" => Some(Route::Callback(AccountKind::MiniProgram)),
            "/v1/notifications" => Some(Route::Send),
            "/v1/notifications/check" => Some(Route::Check),
            _ => None,
        }
    }

    /// Whether `method` is served on this route.
    pub fn allows(self, method: &str) -> bool {
        match self {
            Route::Callback(_) => matches!(method, "GET" | "POST"),
            Route::Send | Route::Check => method == "POST",
        }
    }

    /// The largest body the route reads.
    pub fn max_body(self) -> usize {
        match self {
            Route::Callback(_) => wechat_callback::MAX_BODY_BYTES,
            Route::Send | Route::Check => json_api::MAX_API_BODY_BYTES,
        }
    }

    /// The answer to a body over [`Route::max_body`], as the component gives it.
    pub fn too_large(self) -> Reply {
        match self {
            Route::Callback(_) => callback_reply(Err(Rejection::TooLarge.into())),
            Route::Send | Route::Check => json_reply(&Answer::error(&json_api::body_too_large())),
        }
    }

    /// Whether the route needs the API key (WeChat's callbacks carry signatures instead).
    pub fn needs_api_key(self) -> bool {
        !matches!(self, Route::Callback(_))
    }

    /// Answers the route's request in HTTP context `context`, now or when its flow finishes.
    pub fn serve(
        self,
        context: u32,
        plugin: Rc<Plugin>,
        method: &str,
        query: String,
        body: Vec<u8>,
    ) {
        match self {
            Route::Callback(kind) if method == "GET" => {
                let env = ProxyEnv::new(plugin);
                let answer = callbacks::verify_url(&env, kind, &query);
                runtime::start(context, std::future::ready(callback_reply(answer)));
            }
            Route::Callback(kind) => {
                runtime::start(context, receive(plugin, kind, query, body));
            }
            Route::Send => runtime::start(context, send(plugin, body)),
            Route::Check => {
                let env = ProxyEnv::new(plugin);
                let checked = json_api::parse_json::<Notification>(&body)
                    .and_then(|n| WeChat::new(&env)?.check_notification(&n));
                let answer = match checked {
                    Ok(_) => Answer::ok(serde_json::json!({ "ok": true })),
                    Err(error) => Answer::error(&error),
                };
                runtime::start(context, std::future::ready(json_reply(&answer)));
            }
        }
    }
}

/// An answer of the HTTP layer itself (wrong method, body too large, no API key).
pub fn refusal(status: u16, kind: &str, message: &str) -> Reply {
    json_reply(&Answer::route_error(status, kind, message))
}

fn json_reply(answer: &Answer) -> Reply {
    Reply {
        status: u32::from(answer.status),
        content_type: "application/json",
        body: answer.body.to_string().into_bytes(),
    }
}

fn text_reply(text: String) -> Reply {
    Reply {
        status: 200,
        content_type: "text/plain; charset=utf-8",
        body: text.into_bytes(),
    }
}

fn callback_reply(outcome: Result<String, CallbackError>) -> Reply {
    match outcome {
        Ok(text) => text_reply(text),
        Err(error) => json_reply(&callbacks::refusal_answer(&error)),
    }
}

async fn send(plugin: Rc<Plugin>, body: Vec<u8>) -> Reply {
    let env = ProxyEnv::new(plugin);
    let sent: Result<Delivery, wxnotify_contract::Error> = async {
        let notification = json_api::parse_json::<Notification>(&body)?;
        let wechat = WeChat::new(&env)?;
        Ok(wechat.send_notification(&notification).await?.into())
    }
    .await;
    json_reply(&match sent {
        Ok(delivery) => Answer::ok(delivery),
        Err(error) => Answer::error(&error),
    })
}

/// A push: checked and applied by the core, then — if it is new and a backend is configured —
/// handed on as JSON. WeChat gets `success` only once the backend has it; otherwise the push's
/// marker is released and WeChat's retry brings it again.
async fn receive(plugin: Rc<Plugin>, kind: AccountKind, query: String, body: Vec<u8>) -> Reply {
    let env = ProxyEnv::new(plugin.clone());
    let accepted = match callbacks::receive_push(&env, kind, &query, || Ok(body)).await {
        Ok(accepted) => accepted,
        Err(error) => return callback_reply(Err(error)),
    };
    let Some(events) = &plugin.events else {
        return text_reply("success".to_owned());
    };
    if accepted.received == Received::Duplicate {
        return text_reply("success".to_owned());
    }
    match hand_on(events, kind, &accepted.push).await {
        Ok(()) => text_reply("success".to_owned()),
        Err(message) => {
            // Housekeeping: if the marker stays, the retry is taken for a duplicate and the
            // backend never sees the push; nothing better can be done about that here.
            let _ = callbacks::release(&env, kind, &accepted.push).await;
            refusal(502, "backend_unavailable", &message)
        }
    }
}

/// The JSON a backend receives for a push: the account it came to and what it says.
pub fn event_json(kind: AccountKind, push: &Push) -> serde_json::Value {
    let account = match kind {
        AccountKind::OfficialAccount => "oa",
        AccountKind::MiniProgram => "mini",
    };
    let mut event = serde_json::to_value(push).unwrap_or_default();
    if let Some(fields) = event.as_object_mut() {
        fields.insert("account".to_owned(), account.into());
    }
    event
}

async fn hand_on(events: &Events, kind: AccountKind, push: &Push) -> Result<(), String> {
    let body = event_json(kind, push).to_string().into_bytes();
    let length = body.len().to_string();
    let headers = vec![
        (":method", "POST"),
        (":path", events.path.as_str()),
        (":authority", events.authority.as_str()),
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
    ];
    let cluster = &events.upstream.cluster;
    let answer = runtime::call(cluster, headers, Some(&body), events.upstream.timeout)
        .map_err(|status| format!("the proxy refused a call to cluster `{cluster}` ({status:?})"))?
        .await;
    match answer.status {
        Some(status) if (200..300).contains(&status) => Ok(()),
        Some(status) => Err(format!(
            "the backend (cluster `{cluster}`) answered the push with status {status}"
        )),
        None => Err(format!(
            "no answer from the backend (cluster `{cluster}`) within {} ms",
            events.upstream.timeout.as_millis()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::Route;
    use wxnotify_core::wechat::config::AccountKind;

    #[test]
    fn routes_under_the_prefix_only() {
        assert_eq!(
            Route::of("", "/callback/oa"),
            Some(Route::Callback(AccountKind::OfficialAccount))
        );
        assert_eq!(Route::of("/wx", "/wx/v1/notifications/"), Some(Route::Send));
        assert_eq!(Route::of("/wx", "/v1/notifications"), None);
        assert_eq!(Route::of("", "/v1/notifications/check"), Some(Route::Check));
        assert_eq!(Route::of("", "/v1/users/oa/x"), None);
        assert!(Route::Send.allows("POST") && !Route::Send.allows("GET"));
        assert!(Route::Callback(AccountKind::MiniProgram).allows("GET"));
    }
}
