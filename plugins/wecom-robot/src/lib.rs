//! wxnotify plugin: a `wechat:notify/notify` component that posts each notification into a
//! WeCom (企业微信) group chat through a group robot webhook, instead of messaging the user.
//!
//! Run per tenant (`plugin = "…/wxnotify_plugin_wecom_robot.wasm"`) for a staging tenant whose
//! notifications must not reach real users, or as an ops mirror: the group reads exactly what
//! the user would have received. See README.md for config keys, hosts and the error mapping.
//!
//! Layout: [`render`], [`robot`] and [`wire`] are plain logic tested natively; `host_io` is the
//! thin layer over the WASI imports; this file maps [`Error`] to the WIT `error`, once, and
//! `http_api` serves `POST /v1/notifications` like the built-in component.

wxnotify_component_io::notify_bindings!("../../wit");

pub mod error;
mod host_io;
mod http_api;
pub mod render;
pub mod robot;
pub mod wire;

/// The WIT types of `wechat:notify/types`.
pub(crate) use bindings::wechat::notify::types as wit;

use bindings::exports::wechat::notify::{accounts, notifier};
use error::Error;

/// Config key of the robot's webhook key (a secret: give it as `{ env = "VAR" }`).
pub const WEBHOOK_KEY: &str = "webhook_key";

struct Component;

impl notifier::Guest for Component {
    fn send_notification(notification: wit::Notification) -> Result<wit::Delivery, wit::Error> {
        deliver(&notification).map_err(into_wit)
    }

    fn resolve_user(_recipient: wit::Recipient) -> Result<wit::User, wit::Error> {
        Err(into_wit(Error::NotServed("notifier.resolve-user")))
    }
}

impl accounts::Guest for Component {
    fn login(_js_code: String) -> Result<wit::User, wit::Error> {
        Err(into_wit(Error::NotServed("accounts.login")))
    }

    fn decrypt_user_data(
        _mini_openid: String,
        _encrypted_data: String,
        _iv: String,
    ) -> Result<String, wit::Error> {
        Err(into_wit(Error::NotServed("accounts.decrypt-user-data")))
    }

    fn sync_followers(_restart: bool) -> Result<accounts::SyncProgress, wit::Error> {
        Err(into_wit(Error::NotServed("accounts.sync-followers")))
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

/// The one place [`Error`] becomes the WIT `error`.
fn into_wit(error: Error) -> wit::Error {
    let api = |e: error::ApiError| wit::ApiError {
        errcode: e.errcode,
        errmsg: e.errmsg,
    };
    match error {
        Error::InvalidInput(m) => wit::Error::InvalidInput(m),
        Error::Config(m) => wit::Error::Config(m),
        Error::BadKey(e) => wit::Error::Auth(api(e)),
        Error::Quota(e) => wit::Error::Quota(api(e)),
        Error::Unavailable(m) => wit::Error::Unavailable(m),
        Error::Api(e) => wit::Error::Api(api(e)),
        Error::NotServed(export) => wit::Error::Config(Error::not_served_message(export)),
    }
}

// Natively the crate only runs unit tests; export symbols named after WIT paths do not link there.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, reason = "the canonical-ABI glue wit-bindgen generates")]
mod export {
    use super::Component;
    crate::bindings::export!(Component with_types_in crate::bindings);
}
