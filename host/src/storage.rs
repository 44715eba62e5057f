//! Opening the key-value backends a tenants file names.

use std::collections::HashMap;
use std::sync::Arc;

use wxnotify_store::{MemoryBackend, RedisBackend, SharedBackend, SqliteBackend};

use crate::engine::Engine;
use crate::error::Error;
use crate::runtime::Runtime;
use crate::tenant::{StorageSpec, TenantsFile};

/// Opens the backend `spec` describes (paths already resolved).
pub async fn open(spec: &StorageSpec) -> Result<SharedBackend, Error> {
    Ok(match spec {
        StorageSpec::Memory => Arc::new(MemoryBackend::new()),
        StorageSpec::Sqlite { path } => {
            let path = path.clone();
            // Opening may wait on other processes' locks: off the async threads.
            let opened = tokio::task::spawn_blocking(move || SqliteBackend::open(&path))
                .await
                .map_err(|e| Error::Engine(format!("opening SQLite: {e}")))??;
            Arc::new(opened)
        }
        StorageSpec::Redis { url, prefix } => {
            let backend = RedisBackend::connect(url).await?;
            Arc::new(match prefix {
                Some(prefix) => backend.with_prefix(prefix.clone()),
                None => backend,
            })
        }
    })
}

impl Runtime {
    /// A runtime serving every tenant of `file`, each on its storage, with secrets read
    /// through `env`. Tenants naming the same storage share one backend.
    pub async fn from_file(
        engine: &Engine,
        file: &TenantsFile,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Runtime, Error> {
        let tenants = file.resolve_all(env)?;
        let default = file.resolve_storage(file.storage.clone());
        let mut opened: HashMap<String, SharedBackend> = HashMap::new();
        let runtime = Runtime::new(engine, open(&default).await?)?;
        opened.insert(format!("{default:?}"), runtime.default_backend());
        for tenant in tenants {
            let spec = tenant.storage.clone().unwrap_or_else(|| default.clone());
            let backend = match opened.get(&format!("{spec:?}")) {
                Some(backend) => backend.clone(),
                None => {
                    let backend = open(&spec).await?;
                    opened.insert(format!("{spec:?}"), backend.clone());
                    backend
                }
            };
            runtime.add_tenant_on(tenant, backend)?;
        }
        Ok(runtime)
    }
}
