//! An in-process backend: nothing is persisted.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{
    CasOutcome, KeyValueBackend, Scope, StoreError, check_cursor, check_entries, check_key,
    check_keys, check_value, incremented, into_page, page_size,
};

/// Entries of one scope, ordered so that `list_keys` can page with a range query.
type Entries = BTreeMap<String, Vec<u8>>;

/// A backend that keeps everything in process memory, for tests and for embedders who want no
/// persistence.
///
/// Cloning is cheap and every clone sees the same data. Each operation, batches included, runs
/// under a single lock, so every operation is atomic and linearizable.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    // One map per scope rather than one map keyed by a joined string: scopes cannot collide
    // whatever their keys contain.
    data: Arc<Mutex<HashMap<Scope, Entries>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Scope, Entries>> {
        // A poisoned lock only means another thread panicked while holding it. Every operation
        // validates its input before its first mutation and mutates with infallible map
        // operations, so a panic cannot have left a half-applied write behind: the data is
        // still consistent and it is safe to carry on.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// Hand-written so that logging a backend never dumps tenants' data.
impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("scopes", &self.lock().len())
            .finish_non_exhaustive()
    }
}

/// Writes `value` under `key` in `scope`, creating the scope's map on first use.
fn put(data: &mut HashMap<Scope, Entries>, scope: &Scope, key: &str, value: Vec<u8>) {
    // Look up before `entry` so that the common case does not clone the scope.
    if let Some(entries) = data.get_mut(scope) {
        entries.insert(key.to_owned(), value);
        return;
    }
    data.entry(scope.clone())
        .or_default()
        .insert(key.to_owned(), value);
}

/// Removes `key` from `scope`, dropping the scope's map once it is empty so that deleted
/// tenants and buckets do not leak memory.
fn remove(data: &mut HashMap<Scope, Entries>, scope: &Scope, key: &str) {
    if let Some(entries) = data.get_mut(scope) {
        entries.remove(key);
        if entries.is_empty() {
            data.remove(scope);
        }
    }
}

fn lookup<'a>(data: &'a HashMap<Scope, Entries>, scope: &Scope, key: &str) -> Option<&'a Vec<u8>> {
    data.get(scope).and_then(|entries| entries.get(key))
}

#[async_trait::async_trait]
impl KeyValueBackend for MemoryBackend {
    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        Ok(lookup(&self.lock(), scope, key).cloned())
    }

    async fn set(&self, scope: &Scope, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        check_value(value)?;
        put(&mut self.lock(), scope, key, value.to_vec());
        Ok(())
    }

    async fn delete(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        remove(&mut self.lock(), scope, key);
        Ok(())
    }

    async fn exists(&self, scope: &Scope, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        Ok(lookup(&self.lock(), scope, key).is_some())
    }

    async fn list_keys(
        &self,
        scope: &Scope,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        check_cursor(cursor)?;
        let limit = page_size(limit);
        let data = self.lock();
        let Some(entries) = data.get(scope) else {
            return Ok((Vec::new(), None));
        };
        let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        // One key beyond the page tells whether another page exists.
        let keys: Vec<String> = entries
            .range::<str, _>((start, Bound::Unbounded))
            .take(limit + 1)
            .map(|(key, _)| key.clone())
            .collect();
        Ok(into_page(keys, limit))
    }

    async fn increment(&self, scope: &Scope, key: &str, delta: i64) -> Result<i64, StoreError> {
        check_key(key)?;
        let mut data = self.lock();
        let next = incremented(key, lookup(&data, scope, key).map(Vec::as_slice), delta)?;
        put(&mut data, scope, key, next.to_string().into_bytes());
        Ok(next)
    }

    async fn compare_and_swap(
        &self,
        scope: &Scope,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<CasOutcome, StoreError> {
        check_key(key)?;
        check_value(new)?;
        let mut data = self.lock();
        let current = lookup(&data, scope, key).map(Vec::as_slice);
        if current != expected {
            return Ok(CasOutcome::Conflict {
                current: current.map(<[u8]>::to_vec),
            });
        }
        put(&mut data, scope, key, new.to_vec());
        Ok(CasOutcome::Swapped)
    }

    async fn get_many(
        &self,
        scope: &Scope,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        check_keys(keys)?;
        let data = self.lock();
        Ok(keys
            .iter()
            .map(|key| lookup(&data, scope, key).cloned())
            .collect())
    }

    async fn set_many(
        &self,
        scope: &Scope,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        check_entries(entries)?;
        let mut data = self.lock();
        for (key, value) in entries {
            put(&mut data, scope, key, value.clone());
        }
        Ok(())
    }

    async fn delete_many(&self, scope: &Scope, keys: &[String]) -> Result<(), StoreError> {
        check_keys(keys)?;
        let mut data = self.lock();
        for key in keys {
            remove(&mut data, scope, key);
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
