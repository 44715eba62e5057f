//! A faithful local emulator of the WeChat server API.
//!
//! wxnotify's integration tests, benchmarks, `wxnotify sandbox` and `wxnotify demo` talk to this
//! sandbox instead of `https://api.weixin.qq.com`. It is deliberately *strict*: wherever WeChat
//! rejects a request (missing field, wrong token type, openid of the other account, bad JSON,
//! wrong method, used login code, exhausted subscription, …) the sandbox rejects it with the same
//! errcode, so code that passes here has met WeChat's rules rather than a lenient double's.
//!
//! Emulated endpoints: `/cgi-bin/token`, `/cgi-bin/stable_token`, `/sns/jscode2session`,
//! `/cgi-bin/user/get`, `/cgi-bin/user/info`, `/cgi-bin/user/info/batchget`,
//! `/cgi-bin/message/template/send`, `/cgi-bin/message/subscribe/send`,
//! `/cgi-bin/message/wxopen/template/uniform_send` (always 45109),
//! `/cgi-bin/openapi/quota/get`, and WeCom's group robot webhook `/cgi-bin/webhook/send`
//! ([`SandboxState::add_robot`], [`SandboxState::robot_messages`]). Time-based rules follow a test clock ([`SandboxState::now`],
//! [`SandboxState::advance_clock`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use wxnotify_sandbox::{Sandbox, SandboxConfig, SeedUser};
//!
//! let sandbox = Sandbox::start(SandboxConfig::default()).await?;
//! let user = sandbox.add_user(SeedUser { follows_oa: true, has_unionid: true, ..SeedUser::default() });
//! // Point the client at sandbox.base_url() instead of https://api.weixin.qq.com ...
//! assert!(sandbox.delivered_template_messages().is_empty());
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod admin;
mod api;
mod config;
mod error;
mod faults;
mod phone;
pub mod pushes;
mod record;
mod server;
mod state;
mod tokens;
mod users;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use api::{DroppedConnection, router};
pub use config::{
    Account, AppCredentials, CGI_JSCODE2SESSION, CGI_QUOTA_GET, CGI_STABLE_TOKEN,
    CGI_SUBSCRIBE_SEND, CGI_TEMPLATE_SEND, CGI_TOKEN, CGI_UNIFORM_SEND, CGI_USER_BATCHGET,
    CGI_USER_GET, CGI_USER_INFO, SandboxConfig, WECOM_WEBHOOK_SEND, default_daily_limits,
};
pub use error::SandboxError;
pub use faults::{Fault, FaultAction};
pub use pushes::{PushEvent, PushRecord};
pub use record::{
    DeliveredSubscribeMessage, DeliveredTemplateMessage, DisplayedValue, Framing, RecordedRequest,
    RobotMessage, Stats, TokenFetches,
};
pub use state::{ROBOT_MESSAGES_PER_MINUTE, SandboxState};
pub use users::{SeedUser, SeededUser};

/// A running sandbox server.
///
/// Cheap to clone; all clones control the same server. It dereferences to [`SandboxState`],
/// which carries the whole Rust API (seeding users, observing calls, injecting faults, moving the
/// clock). The server stops on [`Sandbox::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct Sandbox {
    state: SandboxState,
    server: Arc<Server>,
}

struct Server {
    addr: SocketAddr,
    /// Taken by the first `shutdown`; dropping the sender (with the last handle) also stops the
    /// accept loop.
    running: Mutex<Option<(watch::Sender<()>, JoinHandle<()>)>>,
}

impl Sandbox {
    /// Binds `config.bind` and serves the sandbox on the current tokio runtime.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let state = SandboxState::new(config);
        let (stop, stopped) = watch::channel(());
        let task = tokio::spawn(server::serve(listener, router(state.clone()), stopped));
        tracing::debug!(%addr, "wechat sandbox listening");
        Ok(Self {
            state,
            server: Arc::new(Server {
                addr,
                running: Mutex::new(Some((stop, task))),
            }),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://<addr>`: use it in place of `https://api.weixin.qq.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The shared state (also reachable through `Deref`).
    pub fn state(&self) -> &SandboxState {
        &self.state
    }

    /// Stops accepting connections and waits (up to a few seconds) for in-flight calls to end.
    /// Later calls, from any clone, return at once.
    pub async fn shutdown(&self) {
        let running = self
            .server
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((stop, task)) = running {
            // An error only means the loop already ended.
            let _ = stop.send(());
            if let Err(error) = task.await {
                tracing::warn!(%error, "sandbox server task failed");
            }
        }
    }
}

/// The handle is a smart pointer to the shared state: every seeding/observation method lives on
/// [`SandboxState`] so that a bare [`router`] offers exactly the same API.
impl Deref for Sandbox {
    type Target = SandboxState;

    fn deref(&self) -> &SandboxState {
        &self.state
    }
}

#[cfg(test)]
mod tests;
