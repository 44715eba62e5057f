//! Calls `wechat:notify/notifier`: sending notifications and resolving users.

use crate::bindings::{Delivery, Notification, Recipient, User};
use crate::error::Error;
use crate::runtime::Tenant;

impl Tenant {
    /// Sends `notification` through the first of its channels that delivers.
    pub async fn send_notification(&self, notification: &Notification) -> Result<Delivery, Error> {
        let delivery = self
            .run(async |store, notify| {
                notify
                    .wechat_notify_notifier()
                    .call_send_notification(store, notification)
                    .await
            })
            .await?;
        for failure in &delivery.failures {
            crate::unclassified::note_error(self.id(), &failure.error);
        }
        Ok(delivery)
    }

    /// Every identity known for `recipient`.
    pub async fn resolve_user(&self, recipient: &Recipient) -> Result<User, Error> {
        self.run(async |store, notify| {
            notify
                .wechat_notify_notifier()
                .call_resolve_user(store, recipient)
                .await
        })
        .await
    }
}
