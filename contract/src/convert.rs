//! [`wit_conversions!`](crate::wit_conversions): `From` both ways between this crate's types
//! and the ones a bindings generator made from `wit/` — wit-bindgen's in a component,
//! wasmtime's `bindgen!` in a host. Both generators name and shape the WIT types alike
//! (records as structs with snake_case fields, variants and enums as Rust enums), so one macro
//! serves both, and a WIT change that this crate misses fails to compile everywhere.

/// Implements `From` both ways between the bindings' `wechat:notify/types` (module `$types`)
/// plus `accounts.sync-progress` (module `$accounts`) and this crate's types. Invoke it where
/// both modules are in scope by those names, in the crate that owns the bindings.
#[macro_export]
macro_rules! wit_conversions {
    ($types:ident, $accounts:ident) => {
        $crate::__two_way! { $types::Recipient, $crate::Recipient, enum(same) {
            MiniProgram, OfficialAccount, Union
        } }
        $crate::__two_way! { $types::MiniprogramPage, $crate::MiniprogramPage, struct {
            appid, pagepath
        } }
        $crate::__two_way! { $types::MiniprogramState, $crate::MiniprogramState, unit {
            Developer, Trial, Formal
        } }
        $crate::__two_way! { $types::TemplateMessage, $crate::TemplateMessage, struct {
            template_id, data, url, miniprogram: opt
        } }
        $crate::__two_way! { $types::SubscribeMessage, $crate::SubscribeMessage, struct {
            template_id, data, page, miniprogram_state: opt, lang
        } }
        $crate::__two_way! { $types::UniformMessage, $crate::UniformMessage, struct {
            appid, template_id, data, url, miniprogram: opt
        } }
        $crate::__two_way! { $types::ChannelMessage, $crate::ChannelMessage, enum(into) {
            TemplateMessage, SubscribeMessage, UniformLegacy
        } }
        $crate::__two_way! { $types::Notification, $crate::Notification, struct {
            recipient: into, channels: list, idempotency_key
        } }
        $crate::__two_way! { $types::Channel, $crate::Channel, unit {
            TemplateMessage, SubscribeMessage
        } }
        $crate::__two_way! { $types::ApiError, $crate::ApiError, struct { errcode, errmsg } }
        $crate::__two_way! { $types::ChannelFailure, $crate::ChannelFailure, struct {
            channel: into, error: into
        } }
        $crate::__two_way! { $types::Delivery, $crate::Delivery, struct {
            channel: into, msgid, openid, attempts, truncated, failures: list
        } }
        $crate::__two_way! { $types::User, $crate::User, struct {
            mini_openid, unionid, oa_openid, follows_oa
        } }
        $crate::__two_way! { $types::MessageStatus, $crate::MessageStatus, struct {
            msgid, status, openid, at
        } }
        $crate::__two_way! { $accounts::SyncProgress, $crate::SyncProgress, struct {
            total, synced, mapped, done
        } }

        impl ::core::convert::From<$types::Error> for $crate::Error {
            fn from(error: $types::Error) -> Self {
                use $types::Error as W;
                match error {
                    W::InvalidInput(m) => Self::InvalidInput(m),
                    W::NotFound(m) => Self::NotFound(m),
                    W::Refused(e) => Self::Refused(e.into()),
                    W::Rejected(e) => Self::Rejected(e.into()),
                    W::Quota(q) => Self::Quota {
                        error: $crate::ApiError::new(q.errcode, q.errmsg),
                        retry_after_secs: q.retry_after_secs,
                    },
                    W::Auth(e) => Self::Auth(e.into()),
                    W::Unavailable(t) => Self::Unavailable {
                        message: t.message,
                        retry_after_secs: t.retry_after_secs,
                    },
                    W::Config(m) => Self::Config(m),
                    W::Api(e) => Self::Api(e.into()),
                }
            }
        }

        impl ::core::convert::From<$crate::Error> for $types::Error {
            fn from(error: $crate::Error) -> Self {
                use $crate::Error as E;
                match error {
                    E::InvalidInput(m) => Self::InvalidInput(m),
                    E::NotFound(m) => Self::NotFound(m),
                    E::Refused(e) => Self::Refused(e.into()),
                    E::Rejected(e) => Self::Rejected(e.into()),
                    E::Quota {
                        error,
                        retry_after_secs,
                    } => Self::Quota($types::QuotaError {
                        errcode: error.errcode,
                        errmsg: error.errmsg,
                        retry_after_secs,
                    }),
                    E::Auth(e) => Self::Auth(e.into()),
                    E::Unavailable {
                        message,
                        retry_after_secs,
                    } => Self::Unavailable($types::TransientError {
                        message,
                        retry_after_secs,
                    }),
                    E::Config(m) => Self::Config(m),
                    E::Api(e) => Self::Api(e.into()),
                }
            }
        }
    };
}

/// One pair of `From` impls. A field or payload converts as marked: unmarked (or `same`) as
/// is, `into`,
/// `opt` (an `option` of a converted type) or `list` (a `list` of one).
#[doc(hidden)]
#[macro_export]
macro_rules! __two_way {
    ($a:ty, $b:ty, struct { $($field:ident $(: $how:ident)?),* $(,)? }) => {
        $crate::__two_way!(@struct $a, $b, $($field $($how)?),*);
        $crate::__two_way!(@struct $b, $a, $($field $($how)?),*);
    };
    (@struct $from:ty, $to:ty, $($field:ident $($how:ident)?),*) => {
        impl ::core::convert::From<$from> for $to {
            fn from(value: $from) -> Self {
                Self { $($field: $crate::__convert!($($how)?; value.$field)),* }
            }
        }
    };
    ($a:ty, $b:ty, enum($how:ident) { $($case:ident),* $(,)? }) => {
        $crate::__two_way!(@enum $a, $b, $how, $($case),*);
        $crate::__two_way!(@enum $b, $a, $how, $($case),*);
    };
    (@enum $from:ty, $to:ty, $how:ident, $($case:ident),*) => {
        impl ::core::convert::From<$from> for $to {
            fn from(value: $from) -> Self {
                type Source = $from;
                match value {
                    $(Source::$case(x) => Self::$case($crate::__convert!($how; x)),)*
                }
            }
        }
    };
    ($a:ty, $b:ty, unit { $($case:ident),* $(,)? }) => {
        $crate::__two_way!(@unit $a, $b, $($case),*);
        $crate::__two_way!(@unit $b, $a, $($case),*);
    };
    (@unit $from:ty, $to:ty, $($case:ident),*) => {
        impl ::core::convert::From<$from> for $to {
            fn from(value: $from) -> Self {
                type Source = $from;
                match value {
                    $(Source::$case => Self::$case,)*
                }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __convert {
    (; $e:expr) => {
        $e
    };
    (same; $e:expr) => {
        $e
    };
    (into; $e:expr) => {
        ::core::convert::Into::into($e)
    };
    (opt; $e:expr) => {
        ::core::option::Option::map($e, ::core::convert::Into::into)
    };
    (list; $e:expr) => {
        ::core::iter::Iterator::collect(::core::iter::Iterator::map(
            ::core::iter::IntoIterator::into_iter($e),
            ::core::convert::Into::into,
        ))
    };
}
