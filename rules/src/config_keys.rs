//! The `wasi:config` keys the WeChat component reads, in one list: what every host's
//! configuration is checked against (the tenants file, `gateways/spin/spin.toml`, the Node
//! gateway's variables). The component's own test makes sure its loaders read exactly these.

/// A `wasi:config` key the component reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigKey {
    /// The key, as `wasi:config/store.get` is asked for it.
    pub name: &'static str,
    /// Whether its value is a credential: a host must keep it out of files and logs (Spin:
    /// `secret = true`).
    pub secret: bool,
}

const fn key(name: &'static str, secret: bool) -> ConfigKey {
    ConfigKey { name, secret }
}

/// Every key the component reads.
pub const KEYS: [ConfigKey; 11] = [
    key("api_base", false),
    key("token_mode", false),
    key("mini_appid", false),
    key("mini_secret", true),
    key("oa_appid", false),
    key("oa_secret", true),
    key("mini_callback_token", true),
    key("mini_encoding_aes_key", true),
    key("oa_callback_token", true),
    key("oa_encoding_aes_key", true),
    key("callback_max_age_secs", false),
];
