//! The WeChat flows of wxnotify, written once for every host.
//!
//! Tokens with their cross-process refresh lease, sending with retry and fallback, identity
//! resolution (mini openid → unionid → OA openid), login, decryption, follower sync and WeChat's
//! callbacks — over [`Env`], an asynchronous I/O trait (HTTP, key-value with compare-and-swap,
//! config, clock, random). The component (`guest/`) implements it with blocking WASI calls and
//! runs each flow with [`env::block_on`]; a host with callback I/O (a Proxy-Wasm filter) polls
//! the same futures from its callbacks.
//!
//! No WASI and no bindings: it builds natively, where every flow is unit-tested against the
//! in-memory `testing::FakeEnv` (feature `testing`), and for wasm.
//!
//! Layout: [`wechat`] holds WeChat's formats and rules as pure functions (errcodes, crypto,
//! callback parsing, message checks, token and user records); [`client`] the flows, one file per
//! flow (transport, token, send, identity, accounts); [`callbacks`] what a push changes.

pub mod callbacks;
pub mod client;
pub mod env;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wechat;

pub use client::WeChat;
pub use env::{Bucket, Env, block_on};
