//! Opening the key-value backends a tenants file names.

use std::sync::Arc;

use wxnotify_store::{MemoryBackend, RedisBackend, SharedBackend, SqliteBackend, StoreError};

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
                .map_err(|e| Error::Engine {
                    what: "opening SQLite",
                    source: e.into(),
                })??;
            Arc::new(opened)
        }
        StorageSpec::Redis { url, prefix } => {
            Arc::new(connect_redis(url, prefix.as_deref()).await?)
        }
    })
}

/// Connects to the Redis server at `url`, its keys under `prefix` when there is one.
pub(crate) async fn connect_redis(
    url: &str,
    prefix: Option<&str>,
) -> Result<RedisBackend, StoreError> {
    let backend = RedisBackend::connect(url).await?;
    Ok(match prefix {
        Some(prefix) => backend.with_prefix(prefix),
        None => backend,
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
        let runtime = Runtime::new(engine, open(&default).await?)?;
        // Compared as specs, not by their `Debug` text: that hides Redis passwords, so two
        // users of one server would look alike. A file names a handful of storages at most.
        let mut opened: Vec<(StorageSpec, SharedBackend)> =
            vec![(default.clone(), runtime.default_backend())];
        for tenant in tenants {
            let spec = tenant.storage.as_ref().unwrap_or(&default);
            let backend = match opened.iter().find(|(known, _)| known == spec) {
                Some((_, backend)) => backend.clone(),
                None => {
                    let backend = open(spec).await?;
                    opened.push((spec.clone(), backend.clone()));
                    backend
                }
            };
            runtime.add_tenant_on(tenant, backend)?;
        }
        Ok(runtime)
    }
}
