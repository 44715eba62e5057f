//! Tenants and their calls: one fresh store per call, within the tenant's limits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wxnotify_store::SharedBackend;

use crate::bindings::exports::wasi::http::incoming_handler;
use crate::bindings::exports::wechat::notify::{accounts, notifier};
use crate::engine::{CompiledFrom, Engine};
use crate::error::{ComponentProblem, ConfigError, Error, NotifyError};
use crate::tenant::ResolvedTenant;
use crate::wasi_config::{self, ConfigValues};
use crate::wasi_http::{AllowList, EgressHooks, HttpClient, HttpLimits};
use crate::wasi_keyvalue::{self, KeyValueCtx};
pub use wxnotify_tenants::{Limits, SendRate};

/// The component built from `guest/`, run by tenants that name no other.
pub const BUILTIN_COMPONENT: &[u8] = include_bytes!(env!("WXNOTIFY_GUEST_WASM"));

/// What a component may write to stderr per call; the rest is dropped.
const STDERR_CAPACITY: usize = 16 * 1024;

/// The state of one store: one call of one tenant.
pub struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: EgressHooks,
    keyvalue: KeyValueCtx,
    config: ConfigValues,
    limiter: MemoryLimiter,
    stderr: MemoryOutputPipe,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps linear memory and remembers refusing, so a trap can be reported as what it was.
struct MemoryLimiter {
    limit: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A loaded component, ready to instantiate.
struct Plugin {
    pre: InstancePre<HostState>,
    exports: ExportIndices,
    /// Its file, or `built-in`.
    source: String,
}

/// Where the world's exported interfaces are in a linked component.
///
/// Loading an interface from an instance type-checks each of its functions; bindgen's
/// `NotifyPre::instantiate` loads all three, so a call type-checked the interfaces it does not
/// call too (3–4 % of a `check_notification`, `--bench calls`). A call loads only its own.
struct ExportIndices {
    notifier: notifier::GuestIndices,
    accounts: accounts::GuestIndices,
    incoming_handler: incoming_handler::GuestIndices,
}

impl ExportIndices {
    fn new(pre: &InstancePre<HostState>) -> wasmtime::Result<ExportIndices> {
        Ok(ExportIndices {
            notifier: notifier::GuestIndices::new(pre)?,
            accounts: accounts::GuestIndices::new(pre)?,
            incoming_handler: incoming_handler::GuestIndices::new(pre)?,
        })
    }
}

/// A fresh instance of a tenant's component, for one call: its exported interfaces.
pub(crate) struct Exports<'a> {
    instance: wasmtime::component::Instance,
    indices: &'a ExportIndices,
}

impl Exports<'_> {
    /// `wechat:notify/notifier`.
    pub(crate) fn notifier(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<notifier::Guest> {
        self.indices.notifier.load(store, &self.instance)
    }

    /// `wechat:notify/accounts`.
    pub(crate) fn accounts(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<accounts::Guest> {
        self.indices.accounts.load(store, &self.instance)
    }

    /// `wasi:http/incoming-handler`.
    pub(crate) fn incoming_handler(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<incoming_handler::Guest> {
        self.indices.incoming_handler.load(store, &self.instance)
    }
}

/// Runs tenants' components with their configuration, storage, limits and egress policy.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    backend: SharedBackend,
    http: HttpClient,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
}

impl Runtime {
    /// A runtime whose tenants store their keys in `backend` (scoped by tenant) unless they
    /// are added with their own, with the default [`HttpLimits`].
    pub fn new(engine: &Engine, backend: SharedBackend) -> Result<Runtime, Error> {
        Runtime::with_http_limits(engine, backend, HttpLimits::default())
    }

    /// [`Runtime::new`], with the timeouts and size limits of its tenants' outgoing HTTP.
    pub fn with_http_limits(
        engine: &Engine,
        backend: SharedBackend,
        http_limits: HttpLimits,
    ) -> Result<Runtime, Error> {
        let mut linker = Linker::new(engine.wasmtime());
        let link = |e: wasmtime::Error| Error::Engine {
            what: "linking WASI",
            source: e.into(),
        };
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        wasi_keyvalue::add_to_linker(&mut linker, |s: &mut HostState| {
            wasi_keyvalue::KeyValue::new(&s.keyvalue, &mut s.table)
        })
        .map_err(link)?;
        wasi_config::add_to_linker(&mut linker, |s: &mut HostState| {
            wasi_config::Config::new(&s.config)
        })
        .map_err(link)?;
        let http = HttpClient::new(http_limits).map_err(|e| Error::Engine {
            what: "TLS configuration",
            source: e.into(),
        })?;
        Ok(Runtime {
            engine: engine.clone(),
            linker,
            backend,
            http,
            tenants: RwLock::default(),
        })
    }

    /// Registers `tenant` on the runtime's storage, replacing a tenant with the same id.
    ///
    /// # Errors
    ///
    /// Besides those of [`Runtime::add_tenant_on`]: a tenant that names storage of its own
    /// ([`ResolvedTenant::storage`]) is refused rather than put on the runtime's, where its
    /// keys would not be where its configuration says; add it with
    /// [`Runtime::add_tenant_with_storage`].
    pub fn add_tenant(&self, tenant: ResolvedTenant) -> Result<Arc<Tenant>, Error> {
        if let Some(storage) = &tenant.storage {
            return Err(ConfigError::Invalid {
                tenant: tenant.id.clone(),
                field: "storage".into(),
                message: format!(
                    "the tenant has storage of its own ({storage:?}): add it with \
                     `Runtime::add_tenant_with_storage`, which opens it"
                ),
            }
            .into());
        }
        self.add_tenant_on(tenant, self.backend.clone())
    }

    /// Registers `tenant` on its own storage when it names one (opened now, see
    /// [`crate::storage::open`]), otherwise on the runtime's.
    pub async fn add_tenant_with_storage(
        &self,
        tenant: ResolvedTenant,
    ) -> Result<Arc<Tenant>, Error> {
        let backend = match &tenant.storage {
            Some(storage) => crate::storage::open(storage).await?,
            None => self.backend.clone(),
        };
        self.add_tenant_on(tenant, backend)
    }

    /// Registers `tenant` with its own storage `backend`. Its component is loaded (from the
    /// engine's caches when possible) and linked now, so a bad component fails here, naming
    /// the tenant and the file.
    pub fn add_tenant_on(
        &self,
        tenant: ResolvedTenant,
        backend: SharedBackend,
    ) -> Result<Arc<Tenant>, Error> {
        if tenant.limits.memory_bytes > self.engine.max_memory_bytes() {
            return Err(ConfigError::Invalid {
                tenant: tenant.id.clone(),
                field: "limits.memory_mb".into(),
                message: format!(
                    "at most {} MiB on this engine (raise `[engine] max_memory_mb` for more)",
                    self.engine.max_memory_bytes() >> 20
                ),
            }
            .into());
        }
        let plugin = self.load_plugin(&tenant.id, tenant.plugin.as_deref())?.0;
        let id: Arc<str> = tenant.id.as_str().into();
        let tenant = Arc::new(Tenant {
            keyvalue: KeyValueCtx {
                tenant: tenant.id.clone(),
                backend,
            },
            config: Arc::new(tenant.config),
            allowed_hosts: Arc::new(tenant.allowed_hosts),
            limits: tenant.limits,
            permits: Arc::new(tokio::sync::Semaphore::new(
                tenant.limits.concurrency.max(1),
            )),
            http: self.http.clone(),
            plugin: RwLock::new(Arc::new(plugin)),
            id,
        });
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.id.to_string(), tenant.clone());
        Ok(tenant)
    }

    /// Replaces tenant `id`'s component with the one at `path` (`None`: the built-in one).
    /// Calls already running finish on the old component, calls starting afterwards use the
    /// new one, and no other tenant is touched. On error nothing changes.
    pub fn swap_plugin(&self, id: &str, path: Option<&Path>) -> Result<CompiledFrom, Error> {
        let tenant = self.tenant(id)?;
        let (plugin, from) = self.load_plugin(id, path)?;
        *tenant
            .plugin
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(plugin);
        tracing::info!(tenant = id, component = %tenant.plugin_source(), "component swapped");
        Ok(from)
    }

    /// Whether `bytes` is a component this runtime can run as a tenant's plugin; the error
    /// says what is wrong with it.
    pub fn check_component(&self, bytes: &[u8]) -> Result<(), ComponentProblem> {
        let component = self
            .engine
            .component(bytes)
            .map_err(ComponentProblem::Invalid)?;
        self.link(&component).map(drop)
    }

    /// Links `component` against this host's imports and checks it exports the world.
    fn link(
        &self,
        component: &Component,
    ) -> Result<(InstancePre<HostState>, ExportIndices), ComponentProblem> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| ComponentProblem::Imports(e.into()))?;
        let exports = ExportIndices::new(&pre).map_err(|e| ComponentProblem::Exports(e.into()))?;
        Ok((pre, exports))
    }

    fn load_plugin(
        &self,
        tenant: &str,
        path: Option<&Path>,
    ) -> Result<(Plugin, CompiledFrom), Error> {
        let source = path.map_or_else(|| "built-in".to_owned(), |p| p.display().to_string());
        let invalid = |problem: ComponentProblem| ConfigError::Component {
            tenant: tenant.to_owned(),
            path: source.clone(),
            problem,
        };
        let bytes = match path {
            Some(path) => std::borrow::Cow::Owned(
                std::fs::read(path).map_err(|e| invalid(ComponentProblem::Unreadable(e)))?,
            ),
            None => std::borrow::Cow::Borrowed(BUILTIN_COMPONENT),
        };
        let (component, from) = self
            .engine
            .load(&bytes)
            .map_err(|e| invalid(ComponentProblem::Invalid(e)))?;
        let (pre, exports) = self.link(&component).map_err(invalid)?;
        Ok((
            Plugin {
                pre,
                exports,
                source,
            },
            from,
        ))
    }

    /// Calls `observer` for every outgoing request of every tenant (past and future ones), once
    /// the tenant's allow-list has let it through; `None` removes it.
    pub fn set_egress_observer(&self, observer: Option<crate::wasi_http::EgressObserver>) {
        self.http.set_observer(observer);
    }

    /// The storage of tenants added without their own.
    pub fn default_backend(&self) -> SharedBackend {
        self.backend.clone()
    }

    /// The tenant registered as `id`.
    pub fn tenant(&self, id: &str) -> Result<Arc<Tenant>, Error> {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownTenant(id.to_owned()))
    }

    /// The ids of the registered tenants, sorted.
    pub fn tenant_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// The longest per-call deadline of the registered tenants, `None` without tenants. One
    /// pass under the read lock: `wxnotify serve`'s workers ask before every claim.
    pub(crate) fn longest_deadline(&self) -> Option<Duration> {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|tenant| tenant.limits.deadline)
            .max()
    }
}

/// One tenant: its component, configuration, storage scope, limits and egress policy.
///
/// Each call runs in a fresh store on the component current when the call starts.
pub struct Tenant {
    id: Arc<str>,
    plugin: RwLock<Arc<Plugin>>,
    config: ConfigValues,
    allowed_hosts: Arc<AllowList>,
    keyvalue: KeyValueCtx,
    limits: Limits,
    permits: Arc<tokio::sync::Semaphore>,
    http: HttpClient,
}

// The configuration holds secrets: Debug names the tenant and its policy, never its values.
impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Tenant {
    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// What the token cache holds for each of the tenant's accounts: when the token was
    /// fetched, when it is replaced and when it expires — never the token. Read from the
    /// tenant's store in the built-in component's format; a plugin that caches tokens its own
    /// way shows as "no token cached".
    pub async fn token_cache(&self) -> Result<Vec<TokenCacheState>, Error> {
        use wxnotify_core::wechat::token::{CachedToken, cache_key};
        let mode = match self.config.get("token_mode").map(String::as_str) {
            Some("classic") => wxnotify_core::wechat::config::TokenMode::Classic,
            _ => wxnotify_core::wechat::config::TokenMode::Stable,
        };
        let scope = wxnotify_store::Scope::new(&*self.id, wxnotify_core::Bucket::Tokens.name());
        let mut states = Vec::new();
        for (account, key) in [
            ("mini_program", "mini_appid"),
            ("official_account", "oa_appid"),
        ] {
            let Some(appid) = self.config.get(key) else {
                continue;
            };
            let cached = self
                .keyvalue
                .backend
                .get(&scope, &cache_key(appid, mode))
                .await?
                .as_deref()
                .and_then(CachedToken::from_bytes)
                // A token marked failed is as good as none.
                .filter(|token| token.expires_at > 0);
            states.push(TokenCacheState {
                account: account.to_owned(),
                appid: appid.clone(),
                mode: mode.as_str().to_owned(),
                fetched_at: cached.as_ref().map(|t| t.fetched_at).filter(|&at| at > 0),
                refresh_at: cached.as_ref().map(CachedToken::refresh_at),
                expires_at: cached.as_ref().map(|t| t.expires_at),
            });
        }
        Ok(states)
    }

    /// The file of the component now in use, or `built-in`.
    pub fn plugin_source(&self) -> String {
        self.plugin
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .source
            .clone()
    }

    fn new_store(&self, pre: &InstancePre<HostState>, deadline: Instant) -> Store<HostState> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let state = HostState {
            table: ResourceTable::new(),
            // No environment, arguments or files: the component reaches the world only
            // through the interfaces of its world. Its stderr (panic messages) is logged.
            wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
            stderr,
            http: WasiHttpCtx::new(),
            hooks: EgressHooks::new(
                self.id.clone(),
                self.allowed_hosts.clone(),
                self.http.clone(),
            ),
            keyvalue: self.keyvalue.clone(),
            config: self.config.clone(),
            limiter: MemoryLimiter {
                limit: self.limits.memory_bytes,
                refused: false,
            },
        };
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        let mut tick = crate::engine::yield_until(deadline);
        store.epoch_deadline_callback(move |_| tick());
        store
    }

    /// Runs `call` on a fresh instance within the tenant's limits.
    pub(crate) async fn run<T, E: Into<NotifyError>>(
        &self,
        call: impl AsyncFnOnce(&mut Store<HostState>, &Exports<'_>) -> wasmtime::Result<Result<T, E>>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + self.limits.deadline;
        let work = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| self.failed("the tenant was shut down".into()))?;
            let plugin = self
                .plugin
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let mut store = self.new_store(&plugin.pre, deadline);
            let outcome = match plugin.pre.instantiate_async(&mut store).await {
                Ok(instance) => {
                    let exports = Exports {
                        instance,
                        indices: &plugin.exports,
                    };
                    call(&mut store, &exports).await
                }
                Err(error) => Err(error),
            };
            let written = store.data().stderr.contents();
            if !written.is_empty() {
                tracing::warn!(tenant = %self.id, "component stderr: {}", String::from_utf8_lossy(&written).trim_end());
            }
            match outcome {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => {
                    let error = error.into();
                    crate::unclassified::note_error(&self.id, &error);
                    Err(Error::Notify {
                        tenant: self.id.to_string(),
                        error,
                    })
                }
                Err(_) if store.data().limiter.refused => Err(Error::MemoryLimit {
                    tenant: self.id.to_string(),
                    limit_bytes: self.limits.memory_bytes,
                }),
                Err(_) if Instant::now() >= deadline => Err(self.deadline_exceeded()),
                Err(trap) => Err(self.failed(format!("{trap:#}"))),
            }
        };
        // The epoch callback stops a component that computes past its deadline; this stops one
        // that waits (on HTTP, storage or a slot) past it.
        tokio::time::timeout(self.limits.deadline, work)
            .await
            .unwrap_or_else(|_| Err(self.deadline_exceeded()))
    }

    fn deadline_exceeded(&self) -> Error {
        Error::Deadline {
            tenant: self.id.to_string(),
            deadline_ms: u64::try_from(self.limits.deadline.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn failed(&self, message: String) -> Error {
        Error::Component {
            tenant: self.id.to_string(),
            message,
        }
    }
}

/// The token cache of one account, as [`Tenant::token_cache`] reports it (times in Unix
/// seconds; all `None` when no usable token is cached).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TokenCacheState {
    /// `mini_program` or `official_account`.
    pub account: String,
    /// The account's appid.
    pub appid: String,
    /// `stable` or `classic`.
    pub mode: String,
    /// When the cached token was fetched (`None` also for tokens cached by older versions).
    pub fetched_at: Option<u64>,
    /// From when it is replaced by a fresh one.
    pub refresh_at: Option<u64>,
    /// When WeChat stops accepting it.
    pub expires_at: Option<u64>,
}
