//! The engine, the tenants, and one fresh store per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wxnotify_store::SharedBackend;

use crate::bindings::{Notify, NotifyPre};
use crate::error::{ConfigError, Error, NotifyError};
use crate::tenant::ResolvedTenant;
use crate::wasi_config::{self, ConfigValues};
use crate::wasi_http::EgressHooks;
use crate::wasi_keyvalue::{self, KeyValueCtx};

/// The component built from `guest/`, run by tenants that name no other.
pub const BUILTIN_COMPONENT: &[u8] = include_bytes!(env!("WXNOTIFY_GUEST_WASM"));

/// A wasmtime engine with a cache of compiled components, keyed by content hash.
///
/// Cloning is cheap; share one engine between runtimes so each component is compiled once.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    compiled: Arc<Mutex<HashMap<[u8; 32], Component>>>,
}

impl Engine {
    /// An engine for components.
    pub fn new() -> Result<Engine, Error> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).map_err(|e| Error::Engine(format!("{e:#}")))?;
        Ok(Engine {
            engine,
            compiled: Arc::default(),
        })
    }

    /// Compiles `bytes`, or returns the component compiled before from the same bytes.
    pub fn component(&self, bytes: &[u8]) -> Result<Component, String> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(component) = self.lock().get(&hash) {
            return Ok(component.clone());
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| format!("{e:#}"))?;
        self.lock().insert(hash, component.clone());
        Ok(component)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Component>> {
        // A panic while holding the lock cannot leave the map half-written.
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Resource limits of one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory a component instance may grow to.
    pub memory_bytes: usize,
    /// Wall-clock time a call may take, HTTP included.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(60),
        }
    }
}

/// The state of one store: one call of one tenant.
pub struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: EgressHooks,
    keyvalue: KeyValueCtx,
    config: ConfigValues,
    limits: StoreLimits,
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

/// Runs tenants' components with their configuration, storage and egress policy.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    backend: SharedBackend,
    limits: Limits,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
}

impl Runtime {
    /// A runtime storing every tenant's keys in `backend`, scoped by tenant.
    pub fn new(engine: &Engine, backend: SharedBackend) -> Result<Runtime, Error> {
        let mut linker = Linker::new(&engine.engine);
        let link = |e: wasmtime::Error| Error::Engine(format!("linking WASI: {e:#}"));
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
        Ok(Runtime {
            engine: engine.clone(),
            linker,
            backend,
            limits: Limits::default(),
            tenants: RwLock::default(),
        })
    }

    /// Sets the limits of tenants added from now on.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Registers `tenant` (or replaces the tenant with the same id): its component is compiled
    /// (or taken from the engine's cache) and linked now, so a bad component fails here.
    pub fn add_tenant(&self, tenant: ResolvedTenant) -> Result<Arc<Tenant>, Error> {
        let (bytes, path) = match &tenant.component {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| ConfigError::Component {
                    tenant: tenant.id.clone(),
                    path: path.display().to_string(),
                    message: format!("cannot read: {e}"),
                })?;
                (std::borrow::Cow::Owned(bytes), path.display().to_string())
            }
            None => (
                std::borrow::Cow::Borrowed(BUILTIN_COMPONENT),
                "built-in".to_owned(),
            ),
        };
        let invalid = |message: String| ConfigError::Component {
            tenant: tenant.id.clone(),
            path: path.clone(),
            message,
        };
        let component = self
            .engine
            .component(&bytes)
            .map_err(|e| invalid(format!("not a valid component: {e}")))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("cannot be linked: {e:#}")))?;
        let pre = NotifyPre::new(instance_pre).map_err(|e| {
            invalid(format!(
                "does not export the wechat:notify/notify world: {e:#}"
            ))
        })?;
        let id: Arc<str> = tenant.id.as_str().into();
        let tenant = Arc::new(Tenant {
            keyvalue: KeyValueCtx {
                tenant: tenant.id.clone(),
                backend: self.backend.clone(),
            },
            config: Arc::new(tenant.config),
            allowed_hosts: Arc::new(tenant.allowed_hosts),
            limits: self.limits,
            pre,
            id,
        });
        self.tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.id.to_string(), tenant.clone());
        Ok(tenant)
    }

    /// The tenant registered as `id`.
    pub fn tenant(&self, id: &str) -> Result<Arc<Tenant>, Error> {
        self.tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownTenant(id.to_owned()))
    }

    /// The ids of the registered tenants, sorted.
    pub fn tenant_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}

/// One tenant: its component, configuration, storage scope and egress policy.
///
/// Each call runs in a fresh store, so calls share nothing but storage.
pub struct Tenant {
    id: Arc<str>,
    pre: NotifyPre<HostState>,
    config: ConfigValues,
    allowed_hosts: Arc<crate::wasi_http::AllowList>,
    keyvalue: KeyValueCtx,
    limits: Limits,
}

impl Tenant {
    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn new_store(&self) -> Store<HostState> {
        let state = HostState {
            table: ResourceTable::new(),
            // No environment, arguments or files: the component reaches the world only
            // through the interfaces of its world. Its stderr (panic messages) is kept.
            wasi: WasiCtx::builder().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            hooks: EgressHooks::new(self.id.clone(), self.allowed_hosts.clone()),
            keyvalue: self.keyvalue.clone(),
            config: self.config.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .instances(4)
                .build(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        store
    }

    /// Runs `call` on a fresh instance within the tenant's deadline.
    pub(crate) async fn run<T>(
        &self,
        call: impl AsyncFnOnce(
            &mut Store<HostState>,
            &Notify,
        ) -> wasmtime::Result<Result<T, NotifyError>>,
    ) -> Result<T, Error> {
        let work = async {
            let mut store = self.new_store();
            let notify = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| self.failed(&e))?;
            match call(&mut store, &notify).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(Error::Notify {
                    tenant: self.id.to_string(),
                    error,
                }),
                Err(trap) => Err(self.failed(&trap)),
            }
        };
        match tokio::time::timeout(self.limits.deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::Deadline {
                tenant: self.id.to_string(),
                deadline_ms: u64::try_from(self.limits.deadline.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    fn failed(&self, error: &wasmtime::Error) -> Error {
        Error::Component {
            tenant: self.id.to_string(),
            message: format!("{error:#}"),
        }
    }
}
