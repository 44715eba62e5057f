//! The JSON of `POST /v1/notifications`, in the shapes the built-in component
//! (`guest/src/http_api.rs`) accepts and answers, so `wxnotify serve`'s outbox workers post the
//! same stored payload to either.
//!
//! These types are the plugin's own: the built-in component's convert straight into its own
//! wit-bindgen types, which another component cannot name.

use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;
use wxnotify_component_io::wire;

use crate::wit;

/// `POST /v1/notifications` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationJson {
    recipient: RecipientJson,
    channels: Vec<ChannelJson>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RecipientJson {
    MiniProgram(String),
    OfficialAccount(String),
    Union(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ChannelJson {
    TemplateMessage(TemplateJson),
    SubscribeMessage(SubscribeJson),
    UniformLegacy(UniformJson),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateJson {
    template_id: String,
    data: Data,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    miniprogram: Option<PageJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageJson {
    #[serde(default)]
    appid: Option<String>,
    pagepath: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeJson {
    template_id: String,
    data: Data,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    miniprogram_state: Option<StateJson>,
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum StateJson {
    Developer,
    Trial,
    Formal,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UniformJson {
    #[serde(default)]
    appid: Option<String>,
    template_id: String,
    data: Data,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    miniprogram: Option<PageJson>,
}

/// A `data` object's keyword/value pairs in the order the caller wrote them: the group should
/// read them as the template shows them, not sorted.
struct Data(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Data;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of keyword strings")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Data, M::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Data(pairs))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

impl From<PageJson> for wit::MiniprogramPage {
    fn from(page: PageJson) -> Self {
        wit::MiniprogramPage {
            appid: page.appid,
            pagepath: page.pagepath,
        }
    }
}

impl From<NotificationJson> for wit::Notification {
    fn from(n: NotificationJson) -> Self {
        let channel = |channel: ChannelJson| match channel {
            ChannelJson::TemplateMessage(t) => {
                wit::ChannelMessage::TemplateMessage(wit::TemplateMessage {
                    template_id: t.template_id,
                    data: t.data.0,
                    url: t.url,
                    miniprogram: t.miniprogram.map(Into::into),
                })
            }
            ChannelJson::SubscribeMessage(s) => {
                wit::ChannelMessage::SubscribeMessage(wit::SubscribeMessage {
                    template_id: s.template_id,
                    data: s.data.0,
                    page: s.page,
                    miniprogram_state: s.miniprogram_state.map(|state| match state {
                        StateJson::Developer => wit::MiniprogramState::Developer,
                        StateJson::Trial => wit::MiniprogramState::Trial,
                        StateJson::Formal => wit::MiniprogramState::Formal,
                    }),
                    lang: s.lang,
                })
            }
            ChannelJson::UniformLegacy(u) => {
                wit::ChannelMessage::UniformLegacy(wit::UniformMessage {
                    appid: u.appid,
                    template_id: u.template_id,
                    data: u.data.0,
                    url: u.url,
                    miniprogram: u.miniprogram.map(Into::into),
                })
            }
        };
        wit::Notification {
            recipient: match n.recipient {
                RecipientJson::MiniProgram(id) => wit::Recipient::MiniProgram(id),
                RecipientJson::OfficialAccount(id) => wit::Recipient::OfficialAccount(id),
                RecipientJson::Union(id) => wit::Recipient::Union(id),
            },
            channels: n.channels.into_iter().map(channel).collect(),
            idempotency_key: n.idempotency_key,
        }
    }
}

/// A robot takes 20 messages a minute: a `quota` error clears within this many seconds.
pub const QUOTA_RETRY_AFTER_SECS: u64 = 60;

/// The status and `{"error": {"kind", "message", "errcode"?, "errmsg"?, "retry_after_secs"?}}`
/// of a failed request: the built-in component's (see [`wire::Error`]), plus
/// `retry_after_secs` on a `quota` error.
///
/// `retry_after_secs` tells `wxnotify serve`'s workers when to try again: without it they take
/// a `quota` error with errcode 45009 for WeChat's *daily* quota and pause the tenant until
/// midnight, while the robot's 45009 is its per-minute limit.
pub fn error_answer(error: wit::Error) -> (u16, Value) {
    let mut error = wire::Error::from(error);
    if error.kind == wire::Kind::Quota {
        error.retry_after_secs = Some(QUOTA_RETRY_AFTER_SECS);
    }
    error.answer()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_built_in_components_request_keeping_keyword_order() {
        let body = r#"{
            "recipient": {"official_account": "oa-1"},
            "channels": [
                {"template_message": {"template_id": "T", "data": {"time3": "10:00", "thing1": "Shipped"},
                  "miniprogram": {"pagepath": "pages/index/index"}}},
                {"subscribe_message": {"template_id": "S", "data": {"phrase2": "OK"}, "miniprogram_state": "trial"}}
            ],
            "idempotency_key": "k-1"
        }"#;
        let notification: wit::Notification = serde_json::from_str::<NotificationJson>(body)
            .unwrap()
            .into();
        assert!(
            matches!(&notification.recipient, wit::Recipient::OfficialAccount(id) if id == "oa-1")
        );
        assert_eq!(notification.idempotency_key.as_deref(), Some("k-1"));
        let wit::ChannelMessage::TemplateMessage(template) = &notification.channels[0] else {
            panic!("first channel is the template message");
        };
        assert_eq!(
            template.data,
            [
                ("time3".to_owned(), "10:00".to_owned()),
                ("thing1".to_owned(), "Shipped".to_owned())
            ]
        );
        assert!(matches!(
            &notification.channels[1],
            wit::ChannelMessage::SubscribeMessage(s)
                if matches!(s.miniprogram_state, Some(wit::MiniprogramState::Trial))
        ));
    }

    #[test]
    fn refuses_unknown_fields_and_non_string_values() {
        let unknown = r#"{"recipient": {"union": "u"}, "channels": [], "extra": 1}"#;
        assert!(serde_json::from_str::<NotificationJson>(unknown).is_err());
        let number = r#"{"recipient": {"union": "u"}, "channels": [
            {"template_message": {"template_id": "T", "data": {"thing1": 5}}}]}"#;
        assert!(serde_json::from_str::<NotificationJson>(number).is_err());
    }

    #[test]
    fn errors_keep_the_built_in_components_shape_and_statuses() {
        let quota = wit::Error::Quota(wit::ApiError {
            errcode: 45009,
            errmsg: "api freq out of limit".into(),
        });
        assert_eq!(
            error_answer(quota),
            (
                429,
                json!({"error": {"kind": "quota", "message": "errcode 45009: api freq out of limit",
                                 "errcode": 45009, "errmsg": "api freq out of limit",
                                 "retry_after_secs": 60}})
            )
        );
        let config = wit::Error::Config("webhook_key is not set".into());
        assert_eq!(
            error_answer(config),
            (
                500,
                json!({"error": {"kind": "config", "message": "webhook_key is not set"}})
            )
        );
        assert_eq!(error_answer(wit::Error::InvalidInput(String::new())).0, 400);
        assert_eq!(error_answer(wit::Error::Unavailable(String::new())).0, 503);
    }
}
