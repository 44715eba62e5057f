//! The JSON the components answer over `wasi:http`, written once, so the built-in component and
//! every plugin answer `wxnotify serve`'s outbox workers in the same shapes and statuses.
//!
//! Plain Rust: a component cannot hand over its own `wechat:notify/types` values, so
//! [`notify_bindings!`](crate::notify_bindings) also converts them ([`Error`], [`Delivery`])
//! from the types it generates.

use serde_json::{Value, json};

/// The case of a `wechat:notify/types` `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidInput,
    NotFound,
    Refused,
    Rejected,
    Quota,
    Auth,
    Unavailable,
    Config,
    Api,
}

impl Kind {
    /// The case name, as `kind` says it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::InvalidInput => "invalid_input",
            Kind::NotFound => "not_found",
            Kind::Refused => "refused",
            Kind::Rejected => "rejected",
            Kind::Quota => "quota",
            Kind::Auth => "auth",
            Kind::Unavailable => "unavailable",
            Kind::Config => "config",
            Kind::Api => "api",
        }
    }

    /// The HTTP status of an error of this kind: 4xx final, 429/5xx retry later (the outbox
    /// workers go by it).
    pub fn status(self) -> u16 {
        match self {
            Kind::InvalidInput => 400,
            Kind::NotFound => 404,
            Kind::Refused | Kind::Rejected => 422,
            Kind::Quota => 429,
            Kind::Unavailable => 503,
            Kind::Auth | Kind::Api => 502,
            Kind::Config => 500,
        }
    }
}

/// What an error carries: a text, or an errcode answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    Text(String),
    Api { errcode: i32, errmsg: String },
}

/// A `wechat:notify/types` `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: Kind,
    pub detail: Detail,
    /// When a retry may succeed, for a component that knows better than the workers' default
    /// (which takes a `quota` error with errcode 45009 for WeChat's *daily* quota).
    pub retry_after_secs: Option<u64>,
}

impl Error {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// `{"kind", "message", "errcode"?, "errmsg"?, "retry_after_secs"?}`: `kind` is the case
    /// name, `errcode`/`errmsg` come with errcode answers.
    pub fn to_json(&self) -> Value {
        let mut json = match &self.detail {
            Detail::Text(message) => json!({ "kind": self.kind.name(), "message": message }),
            Detail::Api { errcode, errmsg } => json!({
                "kind": self.kind.name(),
                "message": format!("errcode {errcode}: {errmsg}"),
                "errcode": errcode,
                "errmsg": errmsg,
            }),
        };
        if let Some(secs) = self.retry_after_secs {
            json["retry_after_secs"] = secs.into();
        }
        json
    }

    /// The status and `{"error": …}` body of an answer that failed with this error.
    pub fn answer(&self) -> (u16, Value) {
        (self.status(), json!({ "error": self.to_json() }))
    }
}

/// An error of the HTTP layer itself (no route, wrong method, a refused callback):
/// `{"error": {"kind", "message"}}`.
pub fn route_error(kind: &str, message: &str) -> Value {
    json!({ "error": { "kind": kind, "message": message } })
}

/// A `wechat:notify/types` `channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    TemplateMessage,
    SubscribeMessage,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::TemplateMessage => "template_message",
            Channel::SubscribeMessage => "subscribe_message",
        }
    }
}

/// A `wechat:notify/types` `delivery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: Channel,
    pub msgid: Option<i64>,
    pub openid: String,
    pub attempts: u32,
    pub truncated: Vec<String>,
    /// Channels tried before, with why each did not deliver.
    pub failures: Vec<(Channel, Error)>,
}

impl Delivery {
    pub fn to_json(&self) -> Value {
        json!({
            "channel": self.channel.name(),
            "msgid": self.msgid,
            "openid": self.openid,
            "attempts": self.attempts,
            "truncated": self.truncated,
            "failures": self.failures.iter().map(|(channel, error)| json!({
                "channel": channel.name(),
                "error": error.to_json(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// `impl From` the calling crate's `bindings::wechat::notify::types` `error`, `channel` and
/// `delivery` into [`Error`], [`Channel`] and [`Delivery`]; part of
/// [`notify_bindings!`](crate::notify_bindings).
#[doc(hidden)]
#[macro_export]
macro_rules! __wire_from_bindings {
    () => {
        impl ::core::convert::From<bindings::wechat::notify::types::Error> for $crate::wire::Error {
            fn from(error: bindings::wechat::notify::types::Error) -> Self {
                use bindings::wechat::notify::types::Error as E;
                use $crate::wire::{Detail, Error, Kind};
                let api = |e: bindings::wechat::notify::types::ApiError| Detail::Api {
                    errcode: e.errcode,
                    errmsg: e.errmsg,
                };
                let (kind, detail) = match error {
                    E::InvalidInput(m) => (Kind::InvalidInput, Detail::Text(m)),
                    E::NotFound(m) => (Kind::NotFound, Detail::Text(m)),
                    E::Unavailable(m) => (Kind::Unavailable, Detail::Text(m)),
                    E::Config(m) => (Kind::Config, Detail::Text(m)),
                    E::Refused(e) => (Kind::Refused, api(e)),
                    E::Rejected(e) => (Kind::Rejected, api(e)),
                    E::Quota(e) => (Kind::Quota, api(e)),
                    E::Auth(e) => (Kind::Auth, api(e)),
                    E::Api(e) => (Kind::Api, api(e)),
                };
                Error {
                    kind,
                    detail,
                    retry_after_secs: None,
                }
            }
        }

        impl ::core::convert::From<bindings::wechat::notify::types::Channel>
            for $crate::wire::Channel
        {
            fn from(channel: bindings::wechat::notify::types::Channel) -> Self {
                use bindings::wechat::notify::types::Channel as C;
                match channel {
                    C::TemplateMessage => Self::TemplateMessage,
                    C::SubscribeMessage => Self::SubscribeMessage,
                }
            }
        }

        impl ::core::convert::From<bindings::wechat::notify::types::Delivery>
            for $crate::wire::Delivery
        {
            fn from(delivery: bindings::wechat::notify::types::Delivery) -> Self {
                Self {
                    channel: delivery.channel.into(),
                    msgid: delivery.msgid,
                    openid: delivery.openid,
                    attempts: delivery.attempts,
                    truncated: delivery.truncated,
                    failures: delivery
                        .failures
                        .into_iter()
                        .map(|f| (f.channel.into(), f.error.into()))
                        .collect(),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(kind: Kind) -> Error {
        Error {
            kind,
            detail: Detail::Api {
                errcode: 45009,
                errmsg: "api freq out of limit".into(),
            },
            retry_after_secs: None,
        }
    }

    #[test]
    fn errors_answer_their_kind_message_and_status() {
        assert_eq!(
            api(Kind::Quota).answer(),
            (
                429,
                json!({"error": {"kind": "quota", "message": "errcode 45009: api freq out of limit",
                                 "errcode": 45009, "errmsg": "api freq out of limit"}})
            )
        );
        let config = Error {
            kind: Kind::Config,
            detail: Detail::Text("oa_secret is not set".into()),
            retry_after_secs: None,
        };
        assert_eq!(
            config.answer(),
            (
                500,
                json!({"error": {"kind": "config", "message": "oa_secret is not set"}})
            )
        );
        let statuses = [
            (Kind::InvalidInput, 400),
            (Kind::NotFound, 404),
            (Kind::Refused, 422),
            (Kind::Rejected, 422),
            (Kind::Auth, 502),
            (Kind::Api, 502),
            (Kind::Unavailable, 503),
        ];
        for (kind, status) in statuses {
            assert_eq!(kind.status(), status, "{kind:?}");
        }
    }

    #[test]
    fn a_delivery_lists_its_failures() {
        let delivery = Delivery {
            channel: Channel::SubscribeMessage,
            msgid: None,
            openid: "o-1".into(),
            attempts: 1,
            truncated: vec!["thing1".into()],
            failures: vec![(Channel::TemplateMessage, api(Kind::Refused))],
        };
        assert_eq!(
            delivery.to_json(),
            json!({"channel": "subscribe_message", "msgid": null, "openid": "o-1", "attempts": 1,
                   "truncated": ["thing1"], "failures": [{"channel": "template_message",
                   "error": {"kind": "refused", "message": "errcode 45009: api freq out of limit",
                             "errcode": 45009, "errmsg": "api freq out of limit"}}]})
        );
    }
}
