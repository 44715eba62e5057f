//! Implements `wasi:config/store@0.2.0-draft-2024-09-27` from a tenant's configuration.
//!
//! Values, secrets included, come from the tenants file and the environment (see
//! [`crate::tenant`]); the component reads them by key and they never appear in a log.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use crate::bindings::wasi::config::store;

/// The configuration a tenant's component sees.
pub type ConfigValues = Arc<BTreeMap<String, String>>;

/// A borrow of the store's configuration, on which the generated `Host` trait is implemented.
pub struct Config<'a> {
    values: &'a ConfigValues,
}

impl<'a> Config<'a> {
    /// A view over `values`.
    pub fn new(values: &'a ConfigValues) -> Self {
        Config { values }
    }
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = Config<'a>;
}

/// Adds `wasi:config/store` to `linker`; `view` finds the tenant's values in the store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> Config<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasConfig>(linker, view)
}

impl store::Host for Config<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.values.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
