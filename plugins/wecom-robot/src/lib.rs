//! wxnotify plugin: a `wechat:notify/notify` component that posts each notification into a
//! WeCom (企业微信) group chat through a group robot webhook, instead of messaging the user.
//!
//! Run per tenant (`plugin = "…/wxnotify_plugin_wecom_robot.wasm"`) for a staging tenant whose
//! notifications must not reach real users, or as an ops mirror: the group reads exactly what
//! the user would have received. See README.md for config keys, hosts and the error mapping.
//!
//! Layout: [`render`] and [`robot`] are plain logic tested natively, written against the
//! contract's plain types (`wxnotify-contract`); `host_io` is the thin layer over the WASI
//! imports; this file implements `Notify` (sending and checking; the rest answers that the
//! plugin does not serve it), maps [`Error`] to the contract's error, once, and serves the JSON
//! API for gateways from the same implementation.

wxnotify_component_io::notify_bindings!("../../wit");
wxnotify_component_io::export_notify!(Component);

pub mod error;
mod host_io;
pub mod render;
pub mod robot;

use wxnotify_component_io::wasi::http::types::{IncomingRequest, ResponseOutparam};
use wxnotify_component_io::{answer_json_api, respond_json};
use wxnotify_contract::{self as wit, Notify};

use bindings::exports::wasi::http::incoming_handler;
use error::Error;

/// Config key of the robot's webhook key (a secret: give it as `{ env = "VAR" }`).
pub const WEBHOOK_KEY: &str = "webhook_key";

/// A robot takes 20 messages a minute: a `quota` error clears within this many seconds, which
/// the error says, so a host does not take it for WeChat's daily 45009 and wait for midnight.
pub const QUOTA_RETRY_AFTER_SECS: u32 = 60;

struct Component;

impl Notify for Component {
    fn send_notification(
        &self,
        notification: wit::Notification,
    ) -> Result<wit::Delivery, wit::Error> {
        deliver(&notification).map_err(into_contract)
    }

    fn check_notification(&self, notification: wit::Notification) -> Result<(), wit::Error> {
        check(&notification).map_err(into_contract)
    }

    // Everything else is the default: a `config` error naming the export, in these words.
    fn not_served(&self, export: &str) -> wit::Error {
        wit::Error::Config(Error::not_served_message(export))
    }
}

/// The JSON API (`wxnotify_contract::json_api`) over the same implementation, for gateways.
impl incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        respond_json(response_out, &answer_json_api(&Component, &request));
    }
}

/// Renders `notification`, posts it to the tenant's robot and says what was delivered.
fn deliver(notification: &wit::Notification) -> Result<wit::Delivery, Error> {
    let rendered = render::render(notification)?;
    let key = webhook_key()?;
    let api_base = host_io::config("api_base")?;
    let url = robot::webhook_url(robot::api_base(api_base.as_deref()), &key);
    let body = robot::markdown_body(&rendered.content);
    let attempts =
        robot::send_with_retry(|| host_io::post_json(&url, &body), host_io::pause_ms, &key)?;
    let (_, recipient_id) = render::recipient(&notification.recipient);
    Ok(wit::Delivery {
        channel: first_channel(notification),
        msgid: None,
        openid: recipient_id.to_owned(),
        attempts,
        truncated: rendered.truncated,
        failures: Vec::new(),
    })
}

/// Whether [`deliver`] would get as far as posting: the notification renders and a key is set.
fn check(notification: &wit::Notification) -> Result<(), Error> {
    render::render(notification)?;
    webhook_key().map(drop)
}

fn webhook_key() -> Result<String, Error> {
    host_io::config(WEBHOOK_KEY)?
        .map(|key| key.trim().to_owned())
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "{WEBHOOK_KEY} is not set: give the tenant `{WEBHOOK_KEY} = {{ env = \"…\" }}` \
                 under [tenants.<id>.config] with the key of its WeCom group robot"
            ))
        })
}

/// The channel a delivery reports: the first one asked for, as the group saw it in its place.
fn first_channel(notification: &wit::Notification) -> wit::Channel {
    match notification.channels.first() {
        Some(wit::ChannelMessage::SubscribeMessage(_)) => wit::Channel::SubscribeMessage,
        Some(wit::ChannelMessage::TemplateMessage(_) | wit::ChannelMessage::UniformLegacy(_))
        | None => wit::Channel::TemplateMessage,
    }
}

/// The one place [`Error`] becomes the contract's (and so the WIT) `error`.
fn into_contract(error: Error) -> wit::Error {
    let api = |e: error::ApiError| wit::ApiError::new(e.errcode, e.errmsg);
    match error {
        Error::InvalidInput(m) => wit::Error::InvalidInput(m),
        Error::Config(m) => wit::Error::Config(m),
        Error::BadKey(e) => wit::Error::Auth(api(e)),
        Error::Quota(e) => wit::Error::Quota {
            error: api(e),
            retry_after_secs: Some(QUOTA_RETRY_AFTER_SECS),
        },
        Error::Unavailable(m) => wit::Error::unavailable(m),
        Error::Api(e) => wit::Error::Api(api(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_robots_quota_says_it_clears_within_a_minute() {
        let quota = into_contract(Error::Quota(error::ApiError {
            errcode: 45009,
            errmsg: "api freq out of limit".into(),
        }));
        assert_eq!(
            quota.retry(),
            wit::Retry::After(std::time::Duration::from_secs(60))
        );
        assert_eq!(quota.status(), 429);
        let busy = into_contract(Error::Unavailable("busy".into()));
        assert_eq!(
            (busy.retry(), busy.status()),
            (wit::Retry::WithBackoff, 503)
        );
        let unserved = Component.login("code".into()).unwrap_err();
        assert!(
            unserved
                .to_string()
                .contains("wecom-robot plugin does not serve accounts.login"),
            "{unserved}"
        );
    }
}

// Natively the crate only runs unit tests; export symbols named after WIT paths do not link there.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, reason = "the canonical-ABI glue wit-bindgen generates")]
mod export {
    use super::Component;
    crate::bindings::export!(Component with_types_in crate::bindings);
}
