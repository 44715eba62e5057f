//! Calls `wechat:notify/accounts`: login, user-data decryption and follower sync.

use crate::error::Error;
use crate::runtime::Tenant;
use wxnotify_contract::{SyncProgress, User};

impl Tenant {
    /// Exchanges a mini-program login code for the user's identity; the session key stays in
    /// storage.
    pub async fn login(&self, js_code: &str) -> Result<User, Error> {
        self.run(async |store, exports| exports.accounts(store)?.call_login(store, js_code).await)
            .await
            .map(User::from)
    }

    /// Decrypts open data with the session key stored at login; returns the plaintext JSON.
    pub async fn decrypt_user_data(
        &self,
        mini_openid: &str,
        encrypted_data: &str,
        iv: &str,
    ) -> Result<String, Error> {
        self.run(async |store, exports| {
            exports
                .accounts(store)?
                .call_decrypt_user_data(store, mini_openid, encrypted_data, iv)
                .await
        })
        .await
    }

    /// Syncs one page of the OA's followers; call until `done`. `restart` ignores a stored cursor.
    pub async fn sync_followers(&self, restart: bool) -> Result<SyncProgress, Error> {
        self.run(async |store, exports| {
            exports
                .accounts(store)?
                .call_sync_followers(store, restart)
                .await
        })
        .await
        .map(SyncProgress::from)
    }
}
