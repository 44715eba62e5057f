//! The records, variants and enums of `wechat:notify/types` (and `accounts.sync-progress`), with
//! their JSON view: field names as in WIT with `_` for `-`, variants as one-key objects
//! (`{"union": "u-1"}`), enums as strings (`"trial"`), template data as an object kept in the
//! caller's order.
//!
//! The WIT documents each item; what is said here is only what the JSON adds.

use serde::{Deserialize, Serialize};

/// Who a notification is for, in whichever identity the caller knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum Recipient {
    /// The user's openid in the mini-program.
    MiniProgram(String),
    /// The user's openid in the linked official account.
    OfficialAccount(String),
    /// The user's unionid.
    Union(String),
}

/// Template keyword values in template order: `("thing1", "Order shipped")`. In JSON an object
/// (`{"thing1": "Order shipped"}`) read in the order written, a key given twice refused.
pub type TemplateData = Vec<(String, String)>;

/// A mini-program page opened from an OA template message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct MiniprogramPage {
    /// Appid of a mini-program bound to the OA; absent: the tenant's mini-program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// Page path, query allowed.
    pub pagepath: String,
}

/// An official-account template message (`template/send`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct TemplateMessage {
    /// The template's id in the OA's console.
    pub template_id: String,
    /// Keyword values.
    #[serde(with = "data_in_order")]
    #[cfg_attr(feature = "utoipa", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub data: TemplateData,
    /// Web page opened on tap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Mini-program page opened on tap; preferred over `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<MiniprogramPage>,
}

/// Which version of the mini-program a subscribe message opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum MiniprogramState {
    /// The developer version.
    Developer,
    /// The trial version.
    Trial,
    /// The released version (the default).
    Formal,
}

/// A mini-program subscribe message (`subscribe/send`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct SubscribeMessage {
    /// The template's id in the mini-program's console.
    pub template_id: String,
    /// Keyword values, checked against their keyword type before any call.
    #[serde(with = "data_in_order")]
    #[cfg_attr(feature = "utoipa", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub data: TemplateData,
    /// Page opened on tap, query allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Defaults to `formal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram_state: Option<MiniprogramState>,
    /// `zh_CN` (default), `en_US`, `zh_HK` or `zh_TW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

/// The `mp_template_msg` of the retired `uniform_send`, delivered through `template/send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct UniformMessage {
    /// The OA appid the message was meant for; when given, the tenant's OA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// The template's id in the OA's console.
    pub template_id: String,
    /// Keyword values.
    #[serde(with = "data_in_order")]
    #[cfg_attr(feature = "utoipa", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub data: TemplateData,
    /// Web page opened on tap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Mini-program page opened on tap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<MiniprogramPage>,
}

/// One way of reaching the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum ChannelMessage {
    /// An OA template message.
    TemplateMessage(TemplateMessage),
    /// A mini-program subscribe message.
    SubscribeMessage(SubscribeMessage),
    /// A retired `uniform_send` message, sent as a template message.
    UniformLegacy(UniformMessage),
}

/// What to send, to whom, and through which channels, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Notification {
    /// Who it is for.
    pub recipient: Recipient,
    /// Tried in order until one delivers.
    pub channels: Vec<ChannelMessage>,
    /// The caller's key: one message per key (the outbox, and WeChat's `client_msg_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The WeChat API that carried a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum Channel {
    /// OA template message (`template/send`).
    TemplateMessage,
    /// Mini-program subscribe message (`subscribe/send`).
    SubscribeMessage,
}

impl Channel {
    /// The name the JSON uses.
    pub fn name(self) -> &'static str {
        match self {
            Channel::TemplateMessage => "template_message",
            Channel::SubscribeMessage => "subscribe_message",
        }
    }
}

impl ChannelMessage {
    /// The API that carries this message.
    pub fn channel(&self) -> Channel {
        match self {
            ChannelMessage::TemplateMessage(_) | ChannelMessage::UniformLegacy(_) => {
                Channel::TemplateMessage
            }
            ChannelMessage::SubscribeMessage(_) => Channel::SubscribeMessage,
        }
    }
}

/// Why one channel of a notification did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ChannelFailure {
    /// The channel tried.
    pub channel: Channel,
    /// Why it did not deliver.
    pub error: crate::Error,
}

/// A delivered notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Delivery {
    /// The channel that delivered.
    pub channel: Channel,
    /// WeChat's message id (template messages only).
    pub msgid: Option<i64>,
    /// The openid the message was sent to.
    pub openid: String,
    /// Calls made to the delivering channel's send endpoint.
    pub attempts: u32,
    /// Keywords sent shortened the way WeChat displays them.
    pub truncated: Vec<String>,
    /// Channels tried before this one, with why each did not deliver.
    pub failures: Vec<ChannelFailure>,
}

/// Everything known about one person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct User {
    /// Openid in the mini-program.
    pub mini_openid: Option<String>,
    /// Unionid.
    pub unionid: Option<String>,
    /// Openid in the official account.
    pub oa_openid: Option<String>,
    /// Whether the user follows the OA; `null` when never observed.
    pub follows_oa: Option<bool>,
}

/// Progress of a follower sync (`accounts.sync-progress`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct SyncProgress {
    /// Followers of the OA, as WeChat reports them.
    pub total: u32,
    /// Followers processed since this sync started from the beginning.
    pub synced: u32,
    /// Followers processed since this sync started whose unionid is now mapped.
    pub mapped: u32,
    /// Whether the last page has been processed.
    pub done: bool,
}

/// The final status WeChat pushed for a template message (`TEMPLATESENDJOBFINISH`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct MessageStatus {
    /// The message.
    pub msgid: i64,
    /// `success`, `failed:user block` or `failed: system failed`, as WeChat says it.
    pub status: String,
    /// The OA openid the message went to.
    pub openid: String,
    /// The push's `CreateTime` (Unix seconds).
    pub at: i64,
}

/// `data` as a JSON object in the order written: a robot or a log should read the keywords
/// as the caller wrote them, not sorted, and a key given twice is a mistake to name, not to
/// resolve silently.
mod data_in_order {
    use std::fmt;

    use serde::de::{Error as _, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        data: &[(String, String)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(data.len()))?;
        for (key, value) in data {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of keyword strings")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut pairs: Vec<(String, String)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    if pairs.iter().any(|(k, _)| *k == key) {
                        return Err(M::Error::custom(format_args!(
                            "keyword `{key}` is given twice"
                        )));
                    }
                    pairs.push((key, value));
                }
                Ok(pairs)
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}
