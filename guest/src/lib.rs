//! The wxnotify WeChat component.
//!
//! Built for `wasm32-wasip2`, it exports `wechat:notify/notifier`, `wechat:notify/accounts` and
//! `wasi:http/incoming-handler` (the JSON API and WeChat's callback URLs) of the
//! `wechat:notify/notify` world, and reaches its host only through standard WASI imports.
//!
//! Layout: [`wechat`], [`client`] and [`callbacks`] hold the logic, written against the
//! contract's plain types (`wxnotify-contract`), and never call an import; [`host_io`] is the
//! thin layer over the imports; this file implements [`Notify`] once, from which
//! `wxnotify-component-io` derives the typed exports and the JSON API; `http_api` adds WeChat's
//! callback URLs.

wxnotify_component_io::notify_bindings!("../wit");
wxnotify_component_io::export_notify!(Component);

pub mod callbacks;
pub mod client;
pub mod env;
mod host_io;
mod http_api;
pub mod wechat;

#[cfg(test)]
mod spin_manifest_tests;

use client::WeChat;
use host_io::WasiEnv;
use wechat::error::Error;
use wxnotify_contract::{
    Delivery, MessageStatus, Notification, Notify, Recipient, SyncProgress, User,
};

struct Component;

/// Runs `f` on a [`WeChat`] over this call's imports.
fn with_wechat<T>(f: impl FnOnce(&WeChat<'_, WasiEnv>) -> Result<T, Error>) -> Result<T, Error> {
    let env = WasiEnv::default();
    let wechat = WeChat::new(&env)?;
    f(&wechat)
}

impl Notify for Component {
    fn send_notification(&self, notification: Notification) -> Result<Delivery, Error> {
        with_wechat(|w| w.send_notification(&notification)).map(Into::into)
    }

    fn check_notification(&self, notification: Notification) -> Result<(), Error> {
        with_wechat(|w| w.check_notification(&notification)).map(drop)
    }

    fn final_status(&self, msgid: i64) -> Result<Option<MessageStatus>, Error> {
        let outcome = with_wechat(|w| w.template_outcome(msgid))?;
        Ok(outcome.map(|o| MessageStatus {
            msgid,
            status: o.status,
            openid: o.openid,
            at: o.at,
        }))
    }

    fn resolve_user(&self, recipient: Recipient) -> Result<User, Error> {
        with_wechat(|w| w.resolve_user(&recipient))
    }

    fn login(&self, js_code: String) -> Result<User, Error> {
        with_wechat(|w| w.login(&js_code))
    }

    fn decrypt_user_data(
        &self,
        mini_openid: String,
        encrypted_data: String,
        iv: String,
    ) -> Result<String, Error> {
        with_wechat(|w| w.decrypt_user_data(&mini_openid, &encrypted_data, &iv))
    }

    fn sync_followers(&self, restart: bool) -> Result<SyncProgress, Error> {
        with_wechat(|w| w.sync_followers(restart))
    }
}

// Natively the crate only runs unit tests; export symbols named after WIT paths do not link there.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, reason = "the canonical-ABI glue wit-bindgen generates")]
mod export {
    use super::Component;
    crate::bindings::export!(Component with_types_in crate::bindings);
}
