//! Implements `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` over a
//! [`KeyValueBackend`](wxnotify_store::KeyValueBackend).
//!
//! Every key is scoped by the host to the calling tenant ([`Scope`]); the component names only
//! the bucket, and only the buckets of [`BUCKETS`] exist. A tenant can therefore never read or
//! write another tenant's keys, whatever key it asks for.

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wxnotify_store::{CasOutcome, Scope, SharedBackend, StoreError};

use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// The buckets a component may open: access tokens, identity mappings, and the markers of
/// WeChat pushes already applied.
pub const BUCKETS: [&str; 3] = ["tokens", "users", "callbacks"];

/// Keys listed per `list-keys` page.
const LIST_PAGE: usize = 1000;

/// A bucket opened by the component: the tenant-scoped location of its keys.
pub struct OpenBucket {
    scope: Scope,
}

/// A compare-and-swap in progress: the value observed when it began.
pub struct PendingCas {
    scope: Scope,
    key: String,
    observed: Option<Vec<u8>>,
}

/// The key-value capability of one tenant: its backend and its name.
#[derive(Clone)]
pub struct KeyValueCtx {
    /// The tenant every key is scoped to.
    pub tenant: String,
    /// Where the keys live.
    pub backend: SharedBackend,
}

/// A borrow of the store's key-value state, on which the generated `Host` traits are implemented.
pub struct KeyValue<'a> {
    ctx: &'a KeyValueCtx,
    table: &'a mut ResourceTable,
}

impl<'a> KeyValue<'a> {
    /// A view over `ctx` using the store's resource table.
    pub fn new(ctx: &'a KeyValueCtx, table: &'a mut ResourceTable) -> Self {
        KeyValue { ctx, table }
    }

    fn scope(&self, bucket: &Resource<OpenBucket>) -> wasmtime::Result<Scope> {
        Ok(self.table.get(bucket)?.scope.clone())
    }
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValue<'a>;
}

/// Adds the three interfaces to `linker`; `view` finds the tenant's state in the store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KeyValue<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKeyValue>(linker, view)?;
    atomics::add_to_linker::<T, HasKeyValue>(linker, view)?;
    batch::add_to_linker::<T, HasKeyValue>(linker, view)?;
    Ok(())
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(guest_error)`"
)]
fn guest_error(error: StoreError) -> store::Error {
    // The component sees what failed, not how the backend is reached.
    store::Error::Other(error.to_string())
}

impl store::Host for KeyValue<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<OpenBucket>, store::Error>> {
        if !BUCKETS.contains(&identifier.as_str()) {
            return Ok(Err(store::Error::NoSuchStore));
        }
        let scope = Scope {
            tenant: self.ctx.tenant.clone(),
            bucket: identifier,
        };
        Ok(Ok(self.table.push(OpenBucket { scope })?))
    }
}

impl store::HostBucket for KeyValue<'_> {
    async fn get(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let scope = self.scope(&bucket)?;
        Ok(self
            .ctx
            .backend
            .get(&scope, &key)
            .await
            .map_err(guest_error))
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let scope = self.scope(&bucket)?;
        Ok(self
            .ctx
            .backend
            .set(&scope, &key, &value)
            .await
            .map_err(guest_error))
    }

    async fn delete(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let scope = self.scope(&bucket)?;
        Ok(self
            .ctx
            .backend
            .delete(&scope, &key)
            .await
            .map_err(guest_error))
    }

    async fn exists(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let scope = self.scope(&bucket)?;
        Ok(self
            .ctx
            .backend
            .exists(&scope, &key)
            .await
            .map_err(guest_error))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<OpenBucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let scope = self.scope(&bucket)?;
        let page = self
            .ctx
            .backend
            .list_keys(&scope, cursor.as_deref(), LIST_PAGE)
            .await;
        Ok(page
            .map(|(keys, cursor)| store::KeyResponse { keys, cursor })
            .map_err(guest_error))
    }

    async fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValue<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let scope = self.scope(&bucket)?;
        Ok(self
            .ctx
            .backend
            .increment(&scope, &key, delta)
            .await
            .map_err(guest_error))
    }

    async fn swap(
        &mut self,
        cas: Resource<PendingCas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let pending = self.table.delete(cas)?;
        let outcome = self
            .ctx
            .backend
            .compare_and_swap(
                &pending.scope,
                &pending.key,
                pending.observed.as_deref(),
                &value,
            )
            .await;
        Ok(match outcome {
            Ok(CasOutcome::Swapped) => Ok(()),
            // The new handle observes the value that won, so the guest can retry from it.
            Ok(CasOutcome::Conflict { current }) => {
                let retry = self.table.push(PendingCas {
                    scope: pending.scope,
                    key: pending.key,
                    observed: current,
                })?;
                Err(atomics::CasError::CasFailed(retry))
            }
            Err(error) => Err(atomics::CasError::StoreError(guest_error(error))),
        })
    }
}

impl atomics::HostCas for KeyValue<'_> {
    async fn new(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<PendingCas>, store::Error>> {
        let scope = self.scope(&bucket)?;
        let observed = match self.ctx.backend.get(&scope, &key).await {
            Ok(value) => value,
            Err(error) => return Ok(Err(guest_error(error))),
        };
        Ok(Ok(self.table.push(PendingCas {
            scope,
            key,
            observed,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<PendingCas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.table.get(&cas)?.observed.clone()))
    }

    async fn drop(&mut self, cas: Resource<PendingCas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KeyValue<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, store::Error>> {
        let scope = self.scope(&bucket)?;
        Ok(self
            .ctx
            .backend
            .get_many(&scope, &keys)
            .await
            .map(|values| keys.into_iter().zip(values).collect())
            .map_err(guest_error))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let scope = self.scope(&bucket)?;
        Ok(self
            .ctx
            .backend
            .set_many(&scope, &entries)
            .await
            .map_err(guest_error))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let scope = self.scope(&bucket)?;
        Ok(self
            .ctx
            .backend
            .delete_many(&scope, &keys)
            .await
            .map_err(guest_error))
    }
}
