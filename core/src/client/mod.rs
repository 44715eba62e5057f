//! The WeChat flows — tokens, calls, identity resolution, sending, login, follower sync —
//! written against [`Env`], so this module holds the decisions and each host's `Env` the I/O.
//!
//! One file per flow: `transport` (a call with retry and token refresh), `token` (the
//! token cache and its single-flight refresh), `send` (checks, channels, fallback),
//! `identity` (resolving recipients, follow state) and `accounts` (login, decryption,
//! follower sync). Each adds methods to [`WeChat`].

use crate::env::{Env, HttpRequest, Method};
use crate::wechat::config::Config;
use crate::wechat::error::{Error, Result};
use crate::wechat::users;
use wxnotify_contract as contract;

mod accounts;
mod identity;
mod send;
mod token;
mod transport;

pub use send::{Delivered, Prepared};
/// Progress of one `sync-followers` call.
pub use wxnotify_contract::SyncProgress;

/// A successful call and how many requests it took.
struct Called<T> {
    value: T,
    attempts: u32,
}

pub struct WeChat<'e, E: Env> {
    env: &'e E,
    config: Config,
}

impl<'e, E: Env> WeChat<'e, E> {
    pub fn new(env: &'e E) -> Result<Self> {
        let config = Config::load(|key| env.config(key))?;
        Ok(WeChat { env, config })
    }

    fn now_secs(&self) -> u64 {
        self.env.now_ms() / 1000
    }
}

fn post_json(url: String, body: &serde_json::Value) -> HttpRequest {
    HttpRequest {
        method: Method::Post,
        url,
        body: Some(body.to_string().into_bytes()),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn checked(kind: &str, id: &str) -> Result<()> {
    users::check_id(kind, id).map_err(Error::InvalidInput)
}

fn describe(recipient: &contract::Recipient) -> String {
    match recipient {
        contract::Recipient::MiniProgram(id) => format!("mini-program openid {id}"),
        contract::Recipient::OfficialAccount(id) => format!("official-account openid {id}"),
        contract::Recipient::Union(id) => format!("unionid {id}"),
    }
}
