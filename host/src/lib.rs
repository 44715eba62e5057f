//! Runs the wxnotify WeChat notification component for many tenants in one process.
//!
//! The WeChat logic is a sandboxed wasm component (built from `guest/` and embedded as
//! [`BUILTIN_COMPONENT`]). This crate supplies what it imports, per tenant:
//!
//! | capability | module | what backs it |
//! |---|---|---|
//! | `wasi:http/outgoing-handler` | [`wasi_http`] | the tenant's allow-list, then HTTPS |
//! | `wasi:keyvalue/{store,atomics,batch}` | [`wasi_keyvalue`] | a [`wxnotify_store`] backend, keys scoped by tenant ([`storage`]) |
//! | `wasi:config/store` | [`wasi_config`] | the tenant's accounts, secrets from the environment |
//!
//! and drives what it exports, with the contract's plain types ([`contract`]):
//! [`Tenant::send_notification`], [`Tenant::check_notification`], [`Tenant::final_status`] and
//! [`Tenant::resolve_user`] (`notifier`), [`Tenant::login`], [`Tenant::decrypt_user_data`] and
//! [`Tenant::sync_followers`] (`accounts`), and [`Tenant::handle_http`] (the component's
//! `wasi:http/incoming-handler`: its JSON API and WeChat's callback URLs).
//!
//! Layout: `capabilities/` (what the component imports), `exports/` (calling what it exports),
//! [`serve`], and the `wxnotify` binary's CLI behind the default feature `cli` (an embedder
//! turns default features off and compiles no CLI, no sandbox, no progress bars).
//!
//! [`serve`] is the HTTP service (`wxnotify serve`): an API that accepts notifications into the
//! durable outbox of [`wxnotify_store::outbox`], outbox workers that deliver them, WeChat's
//! callback routes and Prometheus metrics.
//!
//! # Logging
//!
//! The crate logs through `tracing` and never logs a credential. wasmtime's WASI bindings,
//! however, trace every call with its arguments, request paths with access tokens and
//! AppSecrets among them: a subscriber of your own must keep the targets `wasmtime_wasi` and
//! `wasmtime_wasi_http` at DEBUG at most (the `wxnotify` binary does).
//!
//! # Embedding
//!
//! ```no_run
//! use std::sync::Arc;
//! use wxnotify::{Channel, ChannelMessage, Engine, Notification, Recipient, Runtime, TemplateMessage};
//! use wxnotify::tenant::TenantsFile;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // One engine per process: it caches compiled components.
//! let engine = Engine::new()?;
//! // Tenants' tokens and identity mappings live in one SQLite file, scoped by tenant.
//! let storage = Arc::new(wxnotify_store::SqliteBackend::open("wxnotify.sqlite3")?);
//! let runtime = Runtime::new(&engine, storage)?;
//!
//! let file = TenantsFile::parse(
//!     r#"
//!     [tenants.shop.official_account]
//!     appid = "wx0ac0a0c0a0c00002"
//!     secret_env = "SHOP_OA_SECRET"
//!     "#,
//!     "inline",
//! )?;
//! for tenant in file.resolve_all(|var| std::env::var(var).ok())? {
//!     runtime.add_tenant(tenant)?;
//! }
//!
//! // A mini-program openid is enough: the component finds the user's OA openid.
//! let delivery = runtime
//!     .tenant("shop")?
//!     .send_notification(&Notification {
//!         recipient: Recipient::MiniProgram("oMP0000000000000000000000001".into()),
//!         channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
//!             template_id: "TPL_ORDER_SHIPPED".into(),
//!             data: vec![("thing1".into(), "Your order has shipped".into())],
//!             url: None,
//!             miniprogram: None,
//!         })],
//!         idempotency_key: Some("order-42-shipped".into()),
//!     })
//!     .await?;
//! assert_eq!(delivery.channel, Channel::TemplateMessage);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod bindings;
mod capabilities;
pub mod engine;
pub mod error;
mod exports;
mod runtime;
pub mod serve;
/// The tenants file (`wxnotify-tenants`).
pub use wxnotify_tenants as tenant;
mod unclassified;

pub use capabilities::{storage, wasi_config, wasi_http, wasi_keyvalue};

pub use engine::{CompiledFrom, Engine, EngineOptions};
pub use error::{BoxError, ComponentProblem, ConfigError, Error, NotifyError};
pub use runtime::{
    BUILTIN_COMPONENT, HostState, Limits, Runtime, SendRate, Tenant, TokenCacheState,
};
/// The contract's plain types, their JSON view and the components' JSON API.
pub use wxnotify_contract as contract;
pub use wxnotify_contract::{
    ApiError, Channel, ChannelFailure, ChannelMessage, Delivery, MessageStatus, MiniprogramPage,
    MiniprogramState, Notification, Recipient, Retry, SubscribeMessage, SyncProgress,
    TemplateMessage, UniformMessage, User,
};
