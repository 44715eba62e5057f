//! The component's configuration, read through `wasi:config/store`.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `api_base` | WeChat API base URL | `https://api.weixin.qq.com` |
//! | `mini_appid`, `mini_secret` | the mini-program's AppID and AppSecret | required for mini-program calls |
//! | `oa_appid`, `oa_secret` | the official account's AppID and AppSecret | required for OA calls |
//! | `token_mode` | `stable` (`/cgi-bin/stable_token`) or `classic` (`/cgi-bin/token`) | `stable` |
//! | `oa_callback_token`, `mini_callback_token` | the Token of the account's callback URL (server push) | required by `/callback/{oa,mini}` |
//! | `oa_encoding_aes_key`, `mini_encoding_aes_key` | the EncodingAESKey, for encrypted (safe-mode) pushes; checked against `{oa,mini}_appid` | plain pushes only |
//! | `callback_max_age_secs` | how far a push's `timestamp` may be from now, either way | `300`; `0`: unchecked |
//!
//! The callback keys are read by [`super::callback::CallbackConfig`], only when a callback
//! request arrives.

use super::error::{Error, Result};

/// The official WeChat API host.
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

/// How access tokens are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenMode {
    /// `POST /cgi-bin/stable_token`: repeated fetches return the same token, so processes
    /// sharing an account never invalidate each other's token.
    Stable,
    /// `GET /cgi-bin/token`: every fetch invalidates the previous token after 5 minutes.
    Classic,
}

impl TokenMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenMode::Stable => "stable",
            TokenMode::Classic => "classic",
        }
    }
}

/// Which of the tenant's two WeChat accounts a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    MiniProgram,
    OfficialAccount,
}

impl AccountKind {
    /// The prefix of the account's config keys (`mini_appid`, `oa_callback_token`, …) and of
    /// its key families in the `users` bucket.
    pub fn config_prefix(self) -> &'static str {
        match self {
            AccountKind::MiniProgram => "mini",
            AccountKind::OfficialAccount => "oa",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            AccountKind::MiniProgram => "mini-program",
            AccountKind::OfficialAccount => "official account",
        }
    }
}

/// AppID and AppSecret of one account.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub kind: AccountKind,
    pub appid: String,
    pub secret: String,
}

// The secret must never reach a log line, so Debug shows the appid only.
impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("kind", &self.kind)
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

/// Configuration as read from the host; accounts are checked when a call needs them, so a
/// tenant with only an OA can still send template messages.
#[derive(Clone)]
pub struct Config {
    pub api_base: String,
    pub token_mode: TokenMode,
    mini_appid: Option<String>,
    mini_secret: Option<String>,
    oa_appid: Option<String>,
    oa_secret: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("api_base", &self.api_base)
            .field("token_mode", &self.token_mode)
            .field("mini_appid", &self.mini_appid)
            .field("oa_appid", &self.oa_appid)
            .finish_non_exhaustive()
    }
}

/// Every key the component reads (a test below checks that the loaders read exactly these).
pub use wxnotify_rules::config_keys::KEYS;

impl Config {
    /// Builds the configuration from a lookup function (`wasi:config/store.get`).
    pub fn load(mut get: impl FnMut(&str) -> Result<Option<String>>) -> Result<Config> {
        let mut non_empty = |key: &str| -> Result<Option<String>> {
            Ok(get(key)?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };
        let api_base = non_empty("api_base")?.unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            return Err(Error::Config(format!(
                "config key `api_base` must be an http(s) URL, got `{api_base}`"
            )));
        }
        let token_mode = match non_empty("token_mode")?.as_deref() {
            None | Some("stable") => TokenMode::Stable,
            Some("classic") => TokenMode::Classic,
            Some(other) => {
                return Err(Error::Config(format!(
                    "config key `token_mode` must be `stable` or `classic`, got `{other}`"
                )));
            }
        };
        Ok(Config {
            api_base: api_base.trim_end_matches('/').to_owned(),
            token_mode,
            mini_appid: non_empty("mini_appid")?,
            mini_secret: non_empty("mini_secret")?,
            oa_appid: non_empty("oa_appid")?,
            oa_secret: non_empty("oa_secret")?,
        })
    }

    /// The account of `kind`, or a `config` error naming the missing key.
    pub fn account(&self, kind: AccountKind) -> Result<Account> {
        let (appid, secret) = match kind {
            AccountKind::MiniProgram => (&self.mini_appid, &self.mini_secret),
            AccountKind::OfficialAccount => (&self.oa_appid, &self.oa_secret),
        };
        let missing = |what: &str| {
            Error::Config(format!(
                "config key `{}_{what}` is missing: the {} is not configured",
                kind.config_prefix(),
                kind.describe()
            ))
        };
        Ok(Account {
            kind,
            appid: appid.clone().ok_or_else(|| missing("appid"))?,
            secret: secret.clone().ok_or_else(|| missing("secret"))?,
        })
    }

    /// The appid of `kind`, for checks that need no secret.
    pub fn appid(&self, kind: AccountKind) -> Option<&str> {
        match kind {
            AccountKind::MiniProgram => self.mini_appid.as_deref(),
            AccountKind::OfficialAccount => self.oa_appid.as_deref(),
        }
    }

    /// `{api_base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(|k| Ok(map.get(k).cloned()))
    }

    #[test]
    fn the_loaders_read_exactly_the_listed_keys() {
        let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
        // Every key set to a valid value, so every branch that reads a key reads it.
        let value = |key: &str| match key {
            "api_base" => "https://api.weixin.qq.com",
            "token_mode" => "stable",
            "callback_max_age_secs" => "300",
            k if k.ends_with("_encoding_aes_key") => "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            _ => "wx0000000000000001",
        };
        let get = |key: &str| -> Result<Option<String>> {
            read.borrow_mut().insert(key.to_owned());
            Ok(Some(value(key).to_owned()))
        };
        Config::load(get).unwrap();
        for kind in [AccountKind::MiniProgram, AccountKind::OfficialAccount] {
            crate::wechat::callback::CallbackConfig::load(kind, get).unwrap();
        }
        let listed: std::collections::BTreeSet<String> =
            KEYS.iter().map(|k| k.name.to_owned()).collect();
        assert_eq!(read.into_inner(), listed);
    }

    #[test]
    fn defaults_to_the_official_host_and_stable_tokens() {
        let config = load(&[]).unwrap();
        assert_eq!(config.api_base, DEFAULT_API_BASE);
        assert_eq!(config.token_mode, TokenMode::Stable);
        assert_eq!(
            config.url("/cgi-bin/token"),
            "https://api.weixin.qq.com/cgi-bin/token"
        );
    }

    #[test]
    fn a_missing_secret_names_its_key() {
        let config = load(&[("oa_appid", "wx1")]).unwrap();
        let err = config.account(AccountKind::OfficialAccount).unwrap_err();
        assert_eq!(
            err,
            Error::Config(
                "config key `oa_secret` is missing: the official account is not configured".into()
            )
        );
    }

    #[test]
    fn rejects_bad_values() {
        assert!(
            matches!(load(&[("token_mode", "fast")]), Err(Error::Config(m)) if m.contains("token_mode"))
        );
        assert!(
            matches!(load(&[("api_base", "ftp://x")]), Err(Error::Config(m)) if m.contains("api_base"))
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let config = load(&[("mini_appid", "wx1"), ("mini_secret", "s3cr3t")]).unwrap();
        let account = config.account(AccountKind::MiniProgram).unwrap();
        assert!(!format!("{account:?}").contains("s3cr3t"));
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
