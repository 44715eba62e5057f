//! The wxnotify WeChat component.
//!
//! Built for `wasm32-wasip2`, it exports `wechat:notify/notifier`, `wechat:notify/accounts` and
//! `wasi:http/incoming-handler` (a small JSON API and WeChat's callback URLs) of the
//! `wechat:notify/notify` world, and reaches its host only through standard WASI imports.
//!
//! Layout: [`wechat`], [`client`] and [`callbacks`] hold the logic and never call an import;
//! [`host_io`] is the thin layer over the imports; this file maps internal errors to the WIT
//! `error`, once, and `http_api` maps them to HTTP answers.

wxnotify_component_io::notify_bindings!("../wit");

pub mod callbacks;
pub mod client;
pub mod env;
mod host_io;
mod http_api;
pub mod wechat;

#[cfg(test)]
mod spin_manifest_tests;

/// The WIT types of `wechat:notify/types`, as the logic uses them.
pub(crate) use bindings::wechat::notify::types as wit;

use bindings::exports::wechat::notify::{accounts, notifier};
use client::WeChat;
use host_io::WasiEnv;
use wechat::error::{ApiError, Error};

struct Component;

impl notifier::Guest for Component {
    fn send_notification(notification: wit::Notification) -> Result<wit::Delivery, wit::Error> {
        let env = WasiEnv::default();
        let delivered =
            WeChat::new(&env).and_then(|wechat| wechat.send_notification(&notification));
        delivered.map(into_delivery).map_err(into_wit)
    }

    fn resolve_user(recipient: wit::Recipient) -> Result<wit::User, wit::Error> {
        let env = WasiEnv::default();
        WeChat::new(&env)
            .and_then(|wechat| wechat.resolve_user(&recipient))
            .map_err(into_wit)
    }
}

impl accounts::Guest for Component {
    fn login(js_code: String) -> Result<wit::User, wit::Error> {
        let env = WasiEnv::default();
        WeChat::new(&env)
            .and_then(|wechat| wechat.login(&js_code))
            .map_err(into_wit)
    }

    fn decrypt_user_data(
        mini_openid: String,
        encrypted_data: String,
        iv: String,
    ) -> Result<String, wit::Error> {
        let env = WasiEnv::default();
        WeChat::new(&env)
            .and_then(|wechat| wechat.decrypt_user_data(&mini_openid, &encrypted_data, &iv))
            .map_err(into_wit)
    }

    fn sync_followers(restart: bool) -> Result<accounts::SyncProgress, wit::Error> {
        let env = WasiEnv::default();
        let progress = WeChat::new(&env).and_then(|wechat| wechat.sync_followers(restart));
        progress
            .map(|p| accounts::SyncProgress {
                total: p.total,
                synced: p.synced,
                mapped: p.mapped,
                done: p.done,
            })
            .map_err(into_wit)
    }
}

fn into_delivery(delivered: client::Delivered) -> wit::Delivery {
    wit::Delivery {
        channel: delivered.channel,
        msgid: delivered.msgid,
        openid: delivered.openid,
        attempts: delivered.attempts,
        truncated: delivered.truncated,
        failures: delivered
            .failures
            .into_iter()
            .map(|(channel, error)| wit::ChannelFailure {
                channel,
                error: into_wit(error),
            })
            .collect(),
    }
}

/// The one place internal errors become the WIT `error`.
fn into_wit(error: Error) -> wit::Error {
    let api = |e: ApiError| wit::ApiError {
        errcode: e.errcode,
        errmsg: e.errmsg,
    };
    match error {
        Error::InvalidInput(m) => wit::Error::InvalidInput(m),
        Error::NotFound(m) => wit::Error::NotFound(m),
        Error::Refused(e) => wit::Error::Refused(api(e)),
        Error::Rejected(e) => wit::Error::Rejected(api(e)),
        Error::Quota(e) => wit::Error::Quota(api(e)),
        Error::Auth(e) => wit::Error::Auth(api(e)),
        Error::Unavailable(m) => wit::Error::Unavailable(m),
        Error::Config(m) => wit::Error::Config(m),
        Error::Api(e) => wit::Error::Api(api(e)),
    }
}

// Natively the crate only runs unit tests; export symbols named after WIT paths do not link there.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, reason = "the canonical-ABI glue wit-bindgen generates")]
mod export {
    use super::Component;
    crate::bindings::export!(Component with_types_in crate::bindings);
}
