//! Calls `wechat:notify/notifier`: sending and checking notifications, final statuses, users.

use wxnotify_contract::{Delivery, MessageStatus, Notification, Recipient, User};

use crate::bindings::wechat::notify::types as wit;
use crate::error::Error;
use crate::runtime::Tenant;

impl Tenant {
    /// Sends `notification` through the first of its channels that delivers.
    pub async fn send_notification(&self, notification: &Notification) -> Result<Delivery, Error> {
        let notification = wit::Notification::from(notification.clone());
        let delivery = self
            .run(async |store, exports| {
                exports
                    .notifier(store)?
                    .call_send_notification(store, &notification)
                    .await
            })
            .await
            .map(Delivery::from)?;
        for failure in &delivery.failures {
            crate::unclassified::note_error(self.id(), &failure.error);
        }
        Ok(delivery)
    }

    /// Checks `notification` as sending would before its first call; sends nothing.
    pub async fn check_notification(&self, notification: &Notification) -> Result<(), Error> {
        let notification = wit::Notification::from(notification.clone());
        self.run(async |store, exports| {
            exports
                .notifier(store)?
                .call_check_notification(store, &notification)
                .await
        })
        .await
    }

    /// The final status WeChat pushed for template message `msgid`; `None` until it has.
    pub async fn final_status(&self, msgid: i64) -> Result<Option<MessageStatus>, Error> {
        let status = self
            .run(async |store, exports| {
                exports
                    .notifier(store)?
                    .call_final_status(store, msgid)
                    .await
            })
            .await?;
        Ok(status.map(MessageStatus::from))
    }

    /// Every identity known for `recipient`.
    pub async fn resolve_user(&self, recipient: &Recipient) -> Result<User, Error> {
        let recipient = wit::Recipient::from(recipient.clone());
        self.run(async |store, exports| {
            exports
                .notifier(store)?
                .call_resolve_user(store, &recipient)
                .await
        })
        .await
        .map(User::from)
    }
}
