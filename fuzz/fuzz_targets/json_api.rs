//! The JSON API every component serves: any method, path and body, against a component that
//! answers every operation. Nothing may panic, every answer is JSON with a status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxnotify_contract::json_api::{self, Method};
use wxnotify_contract::{
    Channel, Delivery, Error, MessageStatus, Notification, Notify, Recipient, SyncProgress, User,
};

struct Answers;

impl Notify for Answers {
    fn send_notification(&self, notification: Notification) -> Result<Delivery, Error> {
        let openid = match notification.recipient {
            Recipient::MiniProgram(id) | Recipient::OfficialAccount(id) | Recipient::Union(id) => {
                id
            }
        };
        Ok(Delivery {
            channel: Channel::TemplateMessage,
            msgid: Some(1),
            openid,
            attempts: 1,
            truncated: Vec::new(),
            failures: Vec::new(),
        })
    }
    fn check_notification(&self, _: Notification) -> Result<(), Error> {
        Ok(())
    }
    fn final_status(&self, msgid: i64) -> Result<Option<MessageStatus>, Error> {
        Ok((msgid % 2 == 0).then(|| MessageStatus {
            msgid,
            status: "success".into(),
            openid: "o".into(),
            at: 0,
        }))
    }
    fn resolve_user(&self, _: Recipient) -> Result<User, Error> {
        Ok(User::default())
    }
    fn login(&self, _: String) -> Result<User, Error> {
        Err(Error::unavailable("down"))
    }
    fn decrypt_user_data(&self, _: String, data: String, _: String) -> Result<String, Error> {
        Ok(data)
    }
    fn sync_followers(&self, _: bool) -> Result<SyncProgress, Error> {
        Ok(SyncProgress::default())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (path, body) = text.split_once('\n').unwrap_or((&text, ""));
    let method = match selector % 3 {
        0 => Method::Post,
        1 => Method::Get,
        _ => Method::Other,
    };
    let answer = json_api::answer(&Answers, method, path, || Ok(body.as_bytes().to_vec()));
    assert!((200..600).contains(&answer.status));
    // A notification that reads must write back and read again to the same value.
    if let Ok(notification) = serde_json::from_str::<Notification>(body) {
        let written = serde_json::to_string(&notification).expect("serialises");
        let again: Notification = serde_json::from_str(&written).expect("reads back");
        assert_eq!(again, notification);
    }
});
