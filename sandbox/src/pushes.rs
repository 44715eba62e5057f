//! Pushes to the developer's server, as WeChat makes them when a user acts: following or
//! unfollowing the official account (`subscribe` / `unsubscribe`, XML to the OA's callback
//! URL) and answering a subscribe-message popup (`subscribe_msg_popup_event`, JSON to the
//! mini-program's callback URL).
//!
//! Pushes are in plaintext mode (明文模式): the body is the event itself and the query carries
//! `signature = sha1(sort(token, timestamp, nonce))`, `timestamp`, `nonce` and `openid`, with
//! the sandbox's [`SandboxConfig::callback_token`](crate::SandboxConfig::callback_token) as
//! the token (configure the same as the tenant's `*_callback_token`). Plaintext mode is what a
//! server configured with an EncodingAESKey also accepts, so one sandbox serves either.
//!
//! A push is made only where a callback URL is set (`PUT /sandbox/callbacks` or
//! [`SandboxState::set_callback_url`]); each is recorded with the server's answer, like
//! WeChat's own push log, and the action that caused it answers only once it is done.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use serde::Serialize;
use sha1::{Digest, Sha1};

use crate::config::Account;
use crate::record::unix_secs;
use crate::state::SandboxState;

/// How long a push waits for the developer's server (WeChat gives up after 5 seconds).
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Most characters of a server's answer kept in the push log.
const ANSWER_SHOWN: usize = 200;

/// What a user did that WeChat pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// The user followed the official account.
    Follow,
    /// The user unfollowed it.
    Unfollow,
    /// The user answered a subscribe-message popup for `template_id`.
    Popup {
        /// The template of the popup.
        template_id: String,
        /// Accepted (`true`) or rejected.
        accepted: bool,
    },
}

impl PushEvent {
    /// The account whose callback URL receives it.
    pub fn account(&self) -> Account {
        match self {
            PushEvent::Follow | PushEvent::Unfollow => Account::OfficialAccount,
            PushEvent::Popup { .. } => Account::MiniProgram,
        }
    }

    /// WeChat's name of the event.
    pub fn name(&self) -> &'static str {
        match self {
            PushEvent::Follow => "subscribe",
            PushEvent::Unfollow => "unsubscribe",
            PushEvent::Popup { .. } => "subscribe_msg_popup_event",
        }
    }

    /// The body WeChat posts and its content type.
    fn body(&self, to_user: &str, openid: &str, create_time: i64) -> (String, &'static str) {
        match self {
            PushEvent::Follow | PushEvent::Unfollow => (
                format!(
                    "<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>\
                     <FromUserName><![CDATA[{openid}]]></FromUserName>\
                     <CreateTime>{create_time}</CreateTime>\
                     <MsgType><![CDATA[event]]></MsgType>\
                     <Event><![CDATA[{}]]></Event></xml>",
                    self.name()
                ),
                "text/xml",
            ),
            PushEvent::Popup {
                template_id,
                accepted,
            } => (
                serde_json::json!({
                    "ToUserName": to_user,
                    "FromUserName": openid,
                    "CreateTime": create_time,
                    "MsgType": "event",
                    "Event": self.name(),
                    "List": {
                        "TemplateId": template_id,
                        "SubscribeStatusString": if *accepted { "accept" } else { "reject" },
                        "PopupScene": "0",
                    },
                })
                .to_string(),
                "application/json",
            ),
        }
    }
}

/// One push and how the developer's server answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushRecord {
    /// When it was made, on the sandbox clock (Unix seconds).
    pub at: i64,
    /// The account whose callback URL it went to.
    pub account: Account,
    /// WeChat's name of the event.
    pub event: String,
    /// The user's openid in that account.
    pub openid: String,
    /// The callback URL, without the signed query.
    pub url: String,
    /// The HTTP status of the answer, if there was one.
    pub status: Option<u16>,
    /// The start of the answer's body, or why there was none.
    pub answer: String,
}

impl PushRecord {
    /// Whether the server took it as WeChat expects: a 200 (its body, `success` or empty, is
    /// not checked further).
    pub fn delivered(&self) -> bool {
        self.status == Some(200)
    }
}

/// `sha1` of the sorted, concatenated parts, in lower-case hex: WeChat's `signature`.
fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat()))
}

/// Pushes `event` of the user with `openid` (in the event's account) to that account's
/// callback URL, if one is set; returns the record of the push.
pub(crate) async fn push(
    state: &SandboxState,
    openid: &str,
    event: PushEvent,
) -> Option<PushRecord> {
    let account = event.account();
    let url = state.callback_url(account)?;
    let now = unix_secs(state.now());
    let timestamp = now.to_string();
    let nonce = rand::rng()
        .random_range(100_000_000u32..1_000_000_000)
        .to_string();
    let token = &state.config().callback_token;
    let (body, content_type) = event.body(original_id(account), openid, now);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("signature", &signature(token, &timestamp, &nonce))
        .append_pair("timestamp", &timestamp)
        .append_pair("nonce", &nonce)
        .append_pair("openid", openid)
        .finish();
    let separator = if url.contains('?') { '&' } else { '?' };
    let (status, answer) = match send(&format!("{url}{separator}{query}"), body, content_type).await
    {
        Ok((status, answer)) => (Some(status), answer),
        Err(reason) => (None, reason),
    };
    let record = PushRecord {
        at: now,
        account,
        event: event.name().to_owned(),
        openid: openid.to_owned(),
        url,
        status,
        answer,
    };
    state.record_push(record.clone());
    Some(record)
}

/// The account's original id (`gh_…`), the `ToUserName` of its pushes.
pub(crate) fn original_id(account: Account) -> &'static str {
    match account {
        Account::MiniProgram => "gh_5a0d1b5d1ba5",
        Account::OfficialAccount => "gh_0ac0a0c0a0c0",
    }
}

/// Posts `body`; the status and the start of the answer, or why there is none.
async fn send(
    url: &str,
    body: String,
    content_type: &'static str,
) -> Result<(u16, String), String> {
    let uri: http::Uri = url.parse().map_err(|error| format!("not a URL: {error}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("the sandbox pushes to http:// URLs only".to_owned());
    }
    let length = body.len();
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, length)
        .body(Full::new(Bytes::from(body)))
        .map_err(|error| error.to_string())?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|error| format!("no answer: {error}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("answer cut short: {error}"))?
            .to_bytes();
        let text: String = String::from_utf8_lossy(&body)
            .chars()
            .take(ANSWER_SHOWN)
            .collect();
        Ok((status, text))
    };
    tokio::time::timeout(PUSH_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {} s", PUSH_TIMEOUT.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_wechats() {
        // The official vector (wechat-api.md §5.1).
        assert_eq!(
            signature("AAAAA", "1714036504", "1514711492"),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        );
    }

    #[test]
    fn bodies_are_what_wechat_posts() {
        let (xml, kind) = PushEvent::Follow.body("gh_1", "o1", 7);
        assert_eq!(kind, "text/xml");
        assert!(
            xml.contains("<Event><![CDATA[subscribe]]></Event>"),
            "{xml}"
        );
        assert!(xml.contains("<FromUserName><![CDATA[o1]]></FromUserName>"));
        let popup = PushEvent::Popup {
            template_id: "T".into(),
            accepted: false,
        };
        let (json, kind) = popup.body("gh_2", "o2", 8);
        assert_eq!(kind, "application/json");
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["Event"], "subscribe_msg_popup_event");
        assert_eq!(json["List"]["SubscribeStatusString"], "reject");
        assert_eq!(json["List"]["TemplateId"], "T");
    }
}
