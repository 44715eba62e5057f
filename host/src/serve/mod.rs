//! `wxnotify serve`: the HTTP service backends call and WeChat calls back, and the outbox
//! workers that deliver what it accepts.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /v1/{tenant}/notifications` | Bearer | check, enqueue; `202 {"id","duplicate"}` (or a batch `{"notifications":[…]}` → `{"ids","duplicates"}`) |
//! | `POST /v1/{tenant}/notifications/check` | Bearer | check only: `{"ok": true}` or the error |
//! | `GET /v1/{tenant}/notifications/{id}` | Bearer | `{"id","state","channel","attempts","error","detail","wechat_status"}` |
//! | `GET /v1/{tenant}/users/{mini\|oa\|union}/{id}` | Bearer | the user |
//! | `POST /v1/{tenant}/login` | Bearer | `{"js_code"}` → the user |
//! | `POST /v1/{tenant}/users/mini/{openid}/decrypt` | Bearer | `{"encrypted_data","iv"}` → `{"user_data"}` |
//! | `POST /v1/{tenant}/followers/sync` | Bearer | one page: `{"total","synced","mapped","done"}` |
//! | `GET\|POST /v1/{tenant}/wechat/{oa\|mini}` | WeChat's signature | the component's callback answer |
//! | `GET /v1/{tenant}/console/notifications` | Bearer or operator key | a window's notifications, newest first: `?since&until&state&q&after&limit` |
//! | `GET /v1/{tenant}/console/summary` | Bearer or operator key | outcomes over time, queue depth, retry backlog, token cache (never the token) |
//! | `GET /console` | — (the page asks for a key) | the operator console (see `console`) |
//! | `GET /metrics`, `/healthz`, `/readyz`, `/openapi.json` | — | operations |
//!
//! Requests are parsed here into the contract's types (`wxnotify-contract`) and the component
//! is called through its typed exports; the OpenAPI document is generated from the same types.
//!
//! A `202` is sent only once the outbox has stored the message durably (see
//! [`wxnotify_store::outbox`]), so an accepted notification is never lost: the workers claim it,
//! call the tenant's component, and complete, retry or fail it: deliveries and business refusals
//! (refused, rejected, invalid input…) are final, `unavailable` and host faults are retried with
//! exponential backoff (1 s doubling to 5 min, ±20 %), WeChat's daily quota (45009) pauses the
//! tenant until midnight China time, its frequency limit (45011) retries in a minute. Retries
//! end [`ServeOptions::retry_for`] after acceptance (a day by default): then the message fails
//! with its last error.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//! use wxnotify::serve::{ServeOptions, Server};
//! use wxnotify_store::outbox::{SharedOutbox, SqliteOutbox};
//! # async fn demo(runtime: Arc<wxnotify::Runtime>) -> Result<(), Box<dyn std::error::Error>> {
//! let outbox: SharedOutbox = Arc::new(SqliteOutbox::open("wxnotify.sqlite3")?);
//! let keys = BTreeMap::from([("shop".to_owned(), Some("s3cret".to_owned()))]);
//! let server = Server::start(runtime, outbox, keys, ServeOptions::default()).await?;
//! println!("listening on http://{}", server.addr());
//! server.shutdown().await; // stops accepting and claiming, lets sends in flight finish
//! # Ok(()) }
//! ```

mod api;
mod console;
mod metrics;
mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tokio::task::JoinSet;
use wxnotify_store::StoreError;
use wxnotify_store::outbox::{SharedOutbox, SqliteOutbox};

use crate::runtime::Runtime;
use crate::tenant::StorageSpec;

pub use api::{ApiDoc, app};

/// Tenants' API keys by tenant id; `None`: the tenant has no key, its API answers 403.
pub type ApiKeys = BTreeMap<String, Option<String>>;

/// How a [`Server`] runs.
#[derive(Clone)]
pub struct ServeOptions {
    /// Where to listen; port 0 picks a free one (see [`ServerHandle::addr`]).
    pub bind: SocketAddr,
    /// Outbox workers in this process.
    pub workers: usize,
    /// Names this process's workers in the outbox (`{worker_name}/{i}`); unique per process
    /// of a deployment.
    pub worker_name: String,
    /// How long after its acceptance a notification that keeps failing transiently (WeChat
    /// down, timeouts, the daily quota) is still retried; after that it fails with its last
    /// error, because a notification days late does more harm than one not sent.
    pub retry_for: Duration,
    /// A key that opens every tenant's console (`/console` and its API routes), for operators;
    /// the CLI reads it from `WXNOTIFY_OPERATOR_KEY`. It opens nothing else.
    pub operator_key: Option<String>,
}

// The operator key is a secret: Debug says whether one is set, never its value.
impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("bind", &self.bind)
            .field("workers", &self.workers)
            .field("worker_name", &self.worker_name)
            .field("retry_for", &self.retry_for)
            .field("operator_key", &self.operator_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The default of [`ServeOptions::retry_for`]: a day.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(24 * 3600);

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 4,
            worker_name: default_worker_name(),
            retry_for: DEFAULT_RETRY_FOR,
            operator_key: None,
        }
    }
}

/// `{hostname}-{pid}`: unique per process of a deployment.
pub fn default_worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wxnotify".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The outbox could not be opened.
    #[error("outbox: {0}")]
    Outbox(#[from] StoreError),
}

/// Opens the outbox that lives where `storage` (a tenants file's resolved `[storage]`) says:
/// the same SQLite file, or the same Redis server and prefix. `memory` gives an in-memory SQLite
/// outbox, which loses accepted notifications on exit (a warning is logged).
pub async fn open_outbox(storage: &StorageSpec) -> Result<SharedOutbox, ServeError> {
    Ok(match storage {
        StorageSpec::Sqlite { path } => {
            let path = path.clone();
            // Opening may wait on other processes' locks: off the async threads.
            let outbox = tokio::task::spawn_blocking(move || SqliteOutbox::open(&path))
                .await
                .map_err(|e| StoreError::Internal {
                    backend: "sqlite",
                    source: e.to_string().into(),
                })??;
            Arc::new(outbox)
        }
        StorageSpec::Memory => {
            tracing::warn!(
                "storage is `memory`: the outbox is in memory too, accepted notifications are lost on exit"
            );
            Arc::new(SqliteOutbox::open_in_memory()?)
        }
        StorageSpec::Redis { url, prefix } => {
            let backend = crate::storage::connect_redis(url, prefix.as_deref()).await?;
            Arc::new(wxnotify_store::outbox::RedisOutbox::new(backend))
        }
    })
}

/// What the routes and workers share.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of an [`AppState`] (opaque).
pub struct Shared {
    runtime: Arc<Runtime>,
    outbox: SharedOutbox,
    api_keys: ApiKeys,
    metrics: metrics::Metrics,
    rate_limits: worker::RateLimits,
    retry_for: Duration,
    operator_key: Option<String>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state of a server of `runtime`'s tenants on `outbox`. It installs the runtime's egress
    /// observer (for `wxnotify_token_fetches_total`), replacing any other. Its workers retry
    /// for [`DEFAULT_RETRY_FOR`].
    pub fn new(runtime: Arc<Runtime>, outbox: SharedOutbox, api_keys: ApiKeys) -> AppState {
        AppState::retrying_for(runtime, outbox, api_keys, DEFAULT_RETRY_FOR)
    }

    /// As [`AppState::new`], with workers that retry a notification for `retry_for` (see
    /// [`ServeOptions::retry_for`]).
    pub fn retrying_for(
        runtime: Arc<Runtime>,
        outbox: SharedOutbox,
        api_keys: ApiKeys,
        retry_for: Duration,
    ) -> AppState {
        AppState::with_operator_key(runtime, outbox, api_keys, retry_for, None)
    }

    /// As [`AppState::retrying_for`], with an operator key that opens every tenant's console
    /// (see [`ServeOptions::operator_key`]).
    pub fn with_operator_key(
        runtime: Arc<Runtime>,
        outbox: SharedOutbox,
        api_keys: ApiKeys,
        retry_for: Duration,
        operator_key: Option<String>,
    ) -> AppState {
        let metrics = metrics::Metrics::new();
        let token_fetches = metrics.token_fetches.clone();
        runtime.set_egress_observer(Some(Arc::new(move |tenant: &str, uri: &http::Uri| {
            if metrics::is_token_fetch(uri.path()) {
                token_fetches.with_label_values(&[tenant]).inc();
            }
        })));
        AppState(Arc::new(Shared {
            runtime,
            outbox,
            api_keys,
            metrics,
            rate_limits: worker::RateLimits::default(),
            retry_for,
            operator_key,
        }))
    }

    /// The lease of a claim: longer than any tenant's call can take.
    fn lease(&self) -> Duration {
        let longest = self
            .runtime
            .longest_deadline()
            .unwrap_or(Duration::from_secs(60));
        longest + worker::LEASE_MARGIN
    }
}

/// The HTTP server and its workers.
pub struct Server;

impl Server {
    /// Binds `options.bind`, serves the API and starts `options.workers` outbox workers.
    pub async fn start(
        runtime: Arc<Runtime>,
        outbox: SharedOutbox,
        api_keys: ApiKeys,
        options: ServeOptions,
    ) -> Result<ServerHandle, ServeError> {
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|source| ServeError::Bind {
                addr: options.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: options.bind,
            source,
        })?;
        let state = AppState::with_operator_key(
            runtime,
            outbox,
            api_keys,
            options.retry_for,
            options.operator_key,
        );
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for i in 0..options.workers {
            let name = format!("{}/{i}", options.worker_name);
            tasks.spawn(worker::run(state.clone(), name, stopped.clone()));
        }
        let mut http_stopped = stopped.clone();
        let router = app(state);
        tasks.spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = http_stopped.wait_for(|stop| *stop).await;
            });
            if let Err(error) = serve.await {
                tracing::error!("HTTP server failed: {error}");
            }
        });
        Ok(ServerHandle { addr, stop, tasks })
    }
}

/// A running [`Server`].
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and claiming messages, waits for requests and sends in
    /// flight to finish, and hands claimed but unstarted messages back to the queue.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!("a server task failed: {error}");
            }
        }
    }
}

/// An error answer of the API: `{"error":{"kind","message",…}}` with its status.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    body: serde_json::Value,
}

impl AppError {
    /// An error of `kind` with `message`.
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> AppError {
        AppError {
            status,
            body: serde_json::json!({ "error": { "kind": kind, "message": message.into() } }),
        }
    }

    /// The component's error, with its status and JSON.
    fn component(error: &crate::NotifyError) -> AppError {
        AppError {
            status: StatusCode::from_u16(error.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: serde_json::json!({ "error": error }),
        }
    }

    /// Names the notification of a batch the error is about (`index`, and the message's prefix).
    fn at_index(mut self, index: Option<usize>) -> AppError {
        let Some(index) = index else { return self };
        if let Some(error) = self.body.get_mut("error").and_then(|e| e.as_object_mut()) {
            let message = error
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            if !message.starts_with("notifications[") {
                let message = format!("notifications[{index}]: {message}");
                error.insert("message".into(), message.into());
            }
            error.insert("index".into(), index.into());
        }
        self
    }

    fn unavailable(message: impl std::fmt::Display) -> AppError {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            message.to_string(),
        )
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> AppError {
        // Only the validation error is the client's: e.g. an idempotency key over the limit.
        if matches!(error, StoreError::TooLarge { .. }) {
            return AppError::new(StatusCode::BAD_REQUEST, "invalid_input", error.to_string());
        }
        // `Display` leaves the cause out (it may name internals); the log gets the chain.
        let mut cause = String::new();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            cause.push_str(": ");
            cause.push_str(&inner.to_string());
            source = inner.source();
        }
        tracing::warn!("outbox: {error}{cause}");
        AppError::unavailable(format!("outbox: {error}"))
    }
}

impl From<crate::Error> for AppError {
    fn from(error: crate::Error) -> AppError {
        match error {
            crate::Error::UnknownTenant(_) => {
                AppError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            crate::Error::Notify { error, .. } => AppError::component(&error),
            other => {
                tracing::warn!("component call: {other}");
                AppError::unavailable(other)
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
