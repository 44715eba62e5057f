//! The wxnotify WeChat component.
//!
//! Built for `wasm32-wasip2`, it exports `wechat:notify/notifier`, `wechat:notify/accounts` and
//! `wasi:http/incoming-handler` (the JSON API and WeChat's callback URLs) of the
//! `wechat:notify/notify` world, and reaches its host only through standard WASI imports.
//!
//! An adapter: the WeChat logic is `wxnotify-core`, written against its asynchronous `Env`.
//! `host_io` implements `Env` over the WASI imports (blocking, so each flow runs with
//! [`block_on`]); this file implements [`Notify`] once over the core's flows, from which
//! `wxnotify-component-io` derives the typed exports and the JSON API; `http_api` adds WeChat's
//! callback URLs.

wxnotify_component_io::notify_bindings!("../wit");
wxnotify_component_io::export_notify!(Component);

mod host_io;
mod http_api;

#[cfg(test)]
mod spin_manifest_tests;

use host_io::WasiEnv;
use wxnotify_contract::{
    Delivery, Error, MessageStatus, Notification, Notify, Recipient, SyncProgress, User,
};
use wxnotify_core::{WeChat, block_on};

struct Component;

/// Runs the flow `f` on a [`WeChat`] over this call's imports.
fn with_wechat<T>(
    f: impl AsyncFnOnce(&WeChat<'_, WasiEnv>) -> Result<T, Error>,
) -> Result<T, Error> {
    let env = WasiEnv::default();
    block_on(async {
        let wechat = WeChat::new(&env)?;
        f(&wechat).await
    })
}

impl Notify for Component {
    fn send_notification(&self, notification: Notification) -> Result<Delivery, Error> {
        with_wechat(async |w| w.send_notification(&notification).await).map(Into::into)
    }

    fn check_notification(&self, notification: Notification) -> Result<(), Error> {
        with_wechat(async |w| w.check_notification(&notification)).map(drop)
    }

    fn final_status(&self, msgid: i64) -> Result<Option<MessageStatus>, Error> {
        let outcome = with_wechat(async |w| w.template_outcome(msgid).await)?;
        Ok(outcome.map(|o| MessageStatus {
            msgid,
            status: o.status,
            openid: o.openid,
            at: o.at,
        }))
    }

    fn resolve_user(&self, recipient: Recipient) -> Result<User, Error> {
        with_wechat(async |w| w.resolve_user(&recipient).await)
    }

    fn login(&self, js_code: String) -> Result<User, Error> {
        with_wechat(async |w| w.login(&js_code).await)
    }

    fn decrypt_user_data(
        &self,
        mini_openid: String,
        encrypted_data: String,
        iv: String,
    ) -> Result<String, Error> {
        with_wechat(async |w| {
            w.decrypt_user_data(&mini_openid, &encrypted_data, &iv)
                .await
        })
    }

    fn sync_followers(&self, restart: bool) -> Result<SyncProgress, Error> {
        with_wechat(async |w| w.sync_followers(restart).await)
    }
}

// Natively the crate only runs unit tests; export symbols named after WIT paths do not link there.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, reason = "the canonical-ABI glue wit-bindgen generates")]
mod export {
    use super::Component;
    crate::bindings::export!(Component with_types_in crate::bindings);
}
