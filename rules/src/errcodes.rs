//! What WeChat's errcodes mean for a caller: one table, used by the component to type its
//! errors (wechat-api.md §1.3, §2.1, §4, §6 and §9) and by anything else that reads errcodes.

/// What an errcode means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrcodeClass {
    /// The access token used is stale, expired or malformed: refresh and retry once.
    TokenInvalid,
    /// The platform was busy, or is still handling another send to the same user: retry
    /// shortly, with backoff.
    Busy,
    /// The user cannot or will not receive it: final.
    Refused,
    /// The request itself is wrong: final.
    Rejected,
    /// A daily or per-minute quota is spent: retry after it resets.
    Quota,
    /// Credentials, whitelist or account state: fix the configuration.
    Auth,
    /// Not classified yet: passed through, logged once by the host.
    Other,
}

/// WeChat's answer to a second send to a user while the first is still being handled.
pub const CONCURRENT_SEND: i32 = 43108;

/// Classifies a non-zero errcode.
pub fn classify(errcode: i32) -> ErrcodeClass {
    match errcode {
        40001 | 40014 | 42001 => ErrcodeClass::TokenInvalid,
        -1 | CONCURRENT_SEND => ErrcodeClass::Busy,
        // The user declined: no authorisation left, not following, blacklisted, login blocked,
        // outside the customer-service reply window.
        43101 | 43004 | 43019 | 40226 | 45015 => ErrcodeClass::Refused,
        // The request itself is wrong: openid, template, data, page, retired API, login code,
        // sensitive words in the content, a quota query's path.
        40003 | 40029 | 40032 | 40036 | 40037 | 40163 | 40165 | 41030 | 45103 | 45109 | 45168
        | 47001 | 47003 | 76003 | 76021 | 76022 => ErrcodeClass::Rejected,
        45009 | 45011 | 45047 | 48006 => ErrcodeClass::Quota,
        // Credentials, whitelist and account state (a frozen account, a banned capability):
        // only a configuration change helps.
        40002 | 40013 | 40125 | 40164 | 40243 | 41002 | 41004 | 43107 | 48001 | 50004 | 50007
        | 61004 | 89501 | 89503 | 89506 | 89507 => ErrcodeClass::Auth,
        _ => ErrcodeClass::Other,
    }
}
