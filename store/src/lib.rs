//! Storage for wxnotify: the key-value backends behind its `wasi:keyvalue` host
//! implementation, and the durable [`outbox`] of notifications.
//!
//! # Model
//!
//! Every entry lives in a [`Scope`] — a *tenant* and a *bucket* — and is addressed by a *key*
//! inside that scope. The host chooses the scope (the tenant from its own configuration, the
//! bucket from the identifiers it lets the guest open); the guest only ever chooses keys and
//! values. Isolation between scopes is structural, never textual: the SQLite backend keeps
//! tenant, bucket and key in separate columns of the primary key, the memory backend keeps a
//! separate map per scope, and the Redis backend keeps a separate hash per scope whose name
//! length-prefixes tenant and bucket (the key is a field of that hash, never part of a name). So
//! no key — whatever `/`, `:`, NUL or other separator it contains — can name an entry of another
//! scope. Backends added later must keep that property.
//!
//! Keys are UTF-8 strings of at most [`MAX_KEY_LEN`] bytes (the empty key is allowed); values
//! are byte strings of at most [`MAX_VALUE_LEN`] bytes; batch operations take at most
//! [`MAX_BATCH_LEN`] entries. Every backend checks these limits before touching its storage and
//! answers [`StoreError::TooLarge`], so a guest sees the same limits whatever backend the host
//! was configured with. [`KeyValueBackend::list_keys`] pages through keys in ascending byte
//! order (which for UTF-8 is code-point order), at most [`MAX_LIST_PAGE`] keys per page.
//!
//! Counters ([`KeyValueBackend::increment`]) are ordinary entries whose value is the decimal
//! ASCII form of an `i64`, so `get` on a counter returns e.g. `b"42"` and a counter can be
//! initialised or reset with `set`.
//!
//! ```
//! use std::sync::Arc;
//! use wxnotify_store::{CasOutcome, MemoryBackend, Scope, SharedBackend};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), wxnotify_store::StoreError> {
//! let store: SharedBackend = Arc::new(MemoryBackend::new());
//! let scope = Scope::new("tenant-1", "sessions");
//! store.set(&scope, "user:42", b"token").await?;
//! assert_eq!(store.increment(&scope, "hits", 2).await?, 2);
//! assert_eq!(store.get(&scope, "hits").await?.as_deref(), Some(&b"2"[..]));
//! let outcome = store
//!     .compare_and_swap(&scope, "user:42", Some(b"token"), b"rotated")
//!     .await?;
//! assert_eq!(outcome, CasOutcome::Swapped);
//! // Another tenant's key of the same name is a different entry.
//! assert_eq!(store.get(&Scope::new("tenant-2", "sessions"), "user:42").await?, None);
//! # Ok(())
//! # }
//! ```
//!
//! # Backends
//!
//! - [`MemoryBackend`]: process memory, for tests and embedders who want no persistence.
//! - [`SqliteBackend`]: one SQLite file, shared by the processes of one machine.
//! - [`RedisBackend`]: a Redis server, shared by host processes on any number of machines
//!   (e.g. so that they share access tokens and identity mappings).
//!
//! # Atomicity and durability per backend
//!
//! | | [`MemoryBackend`] | [`SqliteBackend`] | [`RedisBackend`] |
//! |---|---|---|---|
//! | single-key ops | atomic, linearizable | atomic (one statement) | atomic (one command) |
//! | `increment`, `compare_and_swap` | atomic (one lock) | atomic across connections *and processes* (`BEGIN IMMEDIATE`) | atomic across every client of the server (one Lua script, which Redis runs without interleaving) |
//! | `set_many`, `delete_many` | all-or-nothing | all-or-nothing (one `BEGIN IMMEDIATE` transaction) | all-or-nothing (one `HSET`/`HDEL`) |
//! | `get_many` | one consistent snapshot | one consistent snapshot (one read transaction) | one consistent snapshot (one `HMGET`) |
//! | `list_keys` paging | each page consistent; pages may see concurrent writes | same | same; each page reads every key of the bucket |
//! | durability | none (process memory) | WAL with `synchronous=NORMAL`: survives a process crash; a power loss may drop the last commits but never corrupts the file | the server's configuration (RDB/AOF, replication); a failed write may or may not have been applied, but never partially |
//!
//! This is stronger than `wasi:keyvalue` 0.2.0-draft2 asks for (its batch interface allows
//! partial application).
//!
//! # Durable outbox
//!
//! [`outbox`] holds the queue behind `POST /v1/{tenant}/notifications`: the [`outbox::Outbox`]
//! trait (behind [`outbox::SharedOutbox`], so the server is backend-agnostic) with
//! [`outbox::SqliteOutbox`] and [`outbox::RedisOutbox`]. Delivery is at least once: a message
//! is stored durably before `enqueue` returns, leased to one worker at a time, and handed out
//! again if its worker dies before settling it. In short (the module docs have the details):
//!
//! | | [`outbox::SqliteOutbox`] | [`outbox::RedisOutbox`] |
//! |---|---|---|
//! | where | its own tables, possibly in the key-value backend's file | a stream with consumer group `workers`, hashes and sorted sets under `{prefix}wxnotify:outbox` |
//! | an accepted message survives | a power loss (`synchronous=FULL` on the outbox's connections) | what the server's persistence survives (`appendfsync always` for a power loss) |
//! | atomicity | one `BEGIN IMMEDIATE` transaction per operation, across processes | one Lua script per operation, across hosts |
//! | idempotency keys | unique index, checked in the transaction | `SET NX` in the enqueue script |
//! | shared by | the processes of one machine | any number of hosts |
//!
//! # Errors
//!
//! [`StoreError`] says what went wrong without exposing host details in its `Display` text
//! (except [`StoreError::Open`] and [`StoreError::Connect`], which name the path or the URL —
//! never a password — for the operator): underlying causes — I/O errors, SQLite and Redis
//! messages, the Redis server's address — are only reachable through
//! [`std::error::Error::source`], so the host can log the full chain while handing the guest just
//! the top-level message.
//!
//! # Runtime
//!
//! [`SqliteBackend`] and [`outbox::SqliteOutbox`] run their blocking SQLite calls on tokio's
//! blocking thread pool, and [`RedisBackend`]'s connection (which [`outbox::RedisOutbox`]
//! shares) is driven by tokio tasks, so their async methods must be polled inside a tokio
//! runtime (for Redis, the one it was connected in). [`MemoryBackend`] has no such need.

#![deny(missing_docs)]

use std::path::PathBuf;

mod memory;
pub mod outbox;
mod redis;
mod sqlite;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use memory::MemoryBackend;
// `self::`: a bare `redis` would also name the redis crate.
pub use self::redis::{RedisBackend, RedisOptions, redact as redact_redis_url};
pub use sqlite::{SqliteBackend, SqliteOptions};

/// Largest key accepted by every backend, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

/// Largest value accepted by every backend, in bytes (1 MiB).
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

/// Most keys (or entries) one `get_many` / `set_many` / `delete_many` call may carry.
///
/// Bounds how long a batch holds a backend's write lock (for SQLite, the whole file's) and how
/// much a single guest call can make the host allocate.
pub const MAX_BATCH_LEN: usize = 1000;

/// Most keys one `list_keys` page returns; larger requested limits are clamped to it.
pub const MAX_LIST_PAGE: usize = 1000;

/// A shareable, type-erased backend, as the host holds it.
pub type SharedBackend = std::sync::Arc<dyn KeyValueBackend>;

/// The boxed cause carried by [`StoreError`] variants that wrap a lower-level error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a key lives. Tenant and bucket are chosen by the host.
///
/// Both are compared exactly (byte for byte); the backends store them as separate components,
/// so `Scope::new("a", "b/c")` and `Scope::new("a/b", "c")` are unrelated scopes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The tenant the data belongs to; supplied by the host, never by the guest.
    pub tenant: String,
    /// The bucket within the tenant (`wasi:keyvalue/store.open`'s identifier, once the host
    /// has accepted it).
    pub bucket: String,
}

impl Scope {
    /// A scope for `bucket` of `tenant`.
    pub fn new(tenant: impl Into<String>, bucket: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            bucket: bucket.into(),
        }
    }
}

/// The result of [`KeyValueBackend::compare_and_swap`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a compare-and-swap may not have written anything"]
pub enum CasOutcome {
    /// The current value matched `expected` and has been replaced.
    Swapped,
    /// The current value did not match `expected`; nothing was written.
    Conflict {
        /// The value found instead (`None`: the key is absent), for the caller's next attempt.
        current: Option<Vec<u8>>,
    },
}

/// Why a storage operation failed.
///
/// `Display` deliberately leaves out the underlying cause (see the crate docs); walk
/// [`std::error::Error::source`] to log it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not serve the request right now: I/O failure, the database stayed
    /// locked by another connection or process beyond the busy timeout, a lost connection, a
    /// response timeout. Retrying later may succeed. The memory and SQLite backends have then
    /// written nothing; with Redis a write that failed this way may or may not have been
    /// applied (the request may have reached the server before the connection failed), but
    /// never partially.
    #[error("{backend} store is unavailable")]
    Unavailable {
        /// The backend's [`KeyValueBackend::name`].
        backend: &'static str,
        /// What happened underneath.
        #[source]
        source: BoxError,
    },
    /// The store at `path` could not be opened (missing parent directory, not a database, not
    /// one of ours, permissions, …).
    #[error("cannot open {backend} store at {}", path.display())]
    Open {
        /// The backend's [`KeyValueBackend::name`].
        backend: &'static str,
        /// The path that was being opened.
        path: PathBuf,
        /// What happened underneath.
        #[source]
        source: BoxError,
    },
    /// The backend could not connect to the server at `url` (invalid URL, server unreachable,
    /// credentials refused, …).
    #[error("cannot connect to {backend} store at {url}")]
    Connect {
        /// The backend's [`KeyValueBackend::name`].
        backend: &'static str,
        /// The server's URL, with any password replaced by `***`.
        url: String,
        /// What happened underneath.
        #[source]
        source: BoxError,
    },
    /// The store holds data this crate did not write, or that is damaged.
    #[error("{backend} store holds corrupt data")]
    Corrupt {
        /// The backend's [`KeyValueBackend::name`].
        backend: &'static str,
        /// What was found to be wrong.
        #[source]
        source: BoxError,
    },
    /// The store was created by a newer version of this crate (schema version `found`); this
    /// build only understands up to `supported`, and refuses rather than guessing.
    #[error("{backend} store has schema version {found}; this build supports {supported}")]
    UnsupportedSchema {
        /// The backend's [`KeyValueBackend::name`].
        backend: &'static str,
        /// The version recorded in the store.
        found: i64,
        /// The version this build writes and reads.
        supported: i64,
    },
    /// [`KeyValueBackend::increment`] found a value that is not the decimal form of an `i64`.
    // `{key:?}`: keys are guest-chosen, so escape them before they reach a log line.
    #[error("value of key {key:?} is not a decimal 64-bit integer")]
    NotAnInteger {
        /// The key whose value could not be parsed.
        key: String,
    },
    /// [`KeyValueBackend::increment`] would leave the `i64` range; the value is unchanged.
    #[error("incrementing key {key:?} overflows a 64-bit integer")]
    Overflow {
        /// The key whose counter would overflow.
        key: String,
    },
    /// A key, value, batch or cursor exceeds its limit (see the `MAX_*` constants).
    #[error("{what} is too large: {actual} exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large: `"key"`, `"value"`, `"batch"` or `"cursor"`.
        what: &'static str,
        /// The limit: bytes for keys, values and cursors; entries for batches.
        limit: usize,
        /// The size that was offered, in the same unit.
        actual: usize,
    },
    /// The backend failed in a way that points at a bug rather than the environment.
    #[error("{backend} store failed unexpectedly")]
    Internal {
        /// The backend's [`KeyValueBackend::name`].
        backend: &'static str,
        /// What happened underneath.
        #[source]
        source: BoxError,
    },
}

/// A key-value store partitioned by [`Scope`].
///
/// Every method validates its keys, values and batch sizes against the `MAX_*` limits before
/// touching storage. Operations on one scope never observe or affect another scope.
///
/// The atomic operations take values rather than opaque versions so that any backend with a
/// server-side compare primitive can implement them directly: SQLite in one `BEGIN IMMEDIATE`
/// transaction, Redis in one Lua script that compares `HGET` with `expected` before `HSET`.
#[async_trait::async_trait]
pub trait KeyValueBackend: Send + Sync + 'static {
    /// The value of `key`, or `None` if it is absent.
    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets `key` to `value`, creating or overwriting it.
    async fn set(&self, scope: &Scope, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`; removing an absent key succeeds.
    async fn delete(&self, scope: &Scope, key: &str) -> Result<(), StoreError>;

    /// Whether `key` is present.
    async fn exists(&self, scope: &Scope, key: &str) -> Result<bool, StoreError>;

    /// Keys in ascending order strictly after `cursor`, at most `limit`; returns the page and the
    /// cursor for the next page (None when exhausted).
    ///
    /// `limit` is clamped to `1..=MAX_LIST_PAGE` (a zero limit would make no progress). The
    /// returned cursor is the last key of the page, and it is `Some` only if more keys follow,
    /// so callers can stop as soon as it is `None`. Order is by the keys' UTF-8 bytes.
    async fn list_keys(
        &self,
        scope: &Scope,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError>;

    /// Atomic add; a missing key counts as 0; the stored value is the decimal ASCII of the i64
    /// (so `get` returns e.g. `b"42"`); a non-integer value → [`StoreError::NotAnInteger`];
    /// overflow → [`StoreError::Overflow`]. Returns the new value.
    ///
    /// "Integer" means what `str::parse::<i64>` accepts: an optional sign and ASCII digits,
    /// nothing else (no whitespace). On error the stored value is left unchanged.
    async fn increment(&self, scope: &Scope, key: &str, delta: i64) -> Result<i64, StoreError>;

    /// Atomic compare-and-swap: writes `new` only if the current value equals `expected`
    /// (None = key absent). Returns `Ok(Swapped)` or `Ok(Conflict { current })`.
    async fn compare_and_swap(
        &self,
        scope: &Scope,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<CasOutcome, StoreError>;

    /// The values of `keys`, in the same order (`None` for absent keys).
    async fn get_many(
        &self,
        scope: &Scope,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Sets every entry, all-or-nothing where the backend can (all backends here can). If a
    /// key repeats, its last entry wins.
    async fn set_many(
        &self,
        scope: &Scope,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError>;

    /// Removes every key (absent keys are skipped), all-or-nothing where the backend can.
    async fn delete_many(&self, scope: &Scope, keys: &[String]) -> Result<(), StoreError>;

    /// Short name for logs and errors ("memory", "sqlite", "redis").
    fn name(&self) -> &'static str;
}

/// Rejects keys longer than [`MAX_KEY_LEN`].
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    check_len("key", key.len(), MAX_KEY_LEN)
}

/// Rejects values longer than [`MAX_VALUE_LEN`].
pub(crate) fn check_value(value: &[u8]) -> Result<(), StoreError> {
    check_len("value", value.len(), MAX_VALUE_LEN)
}

/// Rejects cursors that no key could have produced.
pub(crate) fn check_cursor(cursor: Option<&str>) -> Result<(), StoreError> {
    cursor.map_or(Ok(()), |c| check_len("cursor", c.len(), MAX_KEY_LEN))
}

/// Rejects batches of more than [`MAX_BATCH_LEN`] keys, and any oversized key in them.
pub(crate) fn check_keys(keys: &[String]) -> Result<(), StoreError> {
    check_len("batch", keys.len(), MAX_BATCH_LEN)?;
    keys.iter().try_for_each(|k| check_key(k))
}

/// Rejects batches of more than [`MAX_BATCH_LEN`] entries, and any oversized key or value in
/// them. Backends call this before writing anything, which is what makes a failing `set_many`
/// leave the store untouched.
pub(crate) fn check_entries(entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
    check_len("batch", entries.len(), MAX_BATCH_LEN)?;
    entries.iter().try_for_each(|(k, v)| {
        check_key(k)?;
        check_value(v)
    })
}

pub(crate) fn check_len(what: &'static str, actual: usize, limit: usize) -> Result<(), StoreError> {
    if actual > limit {
        Err(StoreError::TooLarge {
            what,
            limit,
            actual,
        })
    } else {
        Ok(())
    }
}

/// The page size `list_keys` actually uses for a requested `limit`.
pub(crate) fn page_size(limit: usize) -> usize {
    limit.clamp(1, MAX_LIST_PAGE)
}

/// A `list_keys` answer from the first `limit + 1` keys after the cursor, in order: the extra
/// key only says that another page exists, and the page's last key is where it starts.
pub(crate) fn into_page(mut keys: Vec<String>, limit: usize) -> (Vec<String>, Option<String>) {
    if keys.len() <= limit {
        return (keys, None);
    }
    keys.truncate(limit);
    let next = keys.last().cloned();
    (keys, next)
}

/// The counter value `increment` stores: `current` (absent = 0) plus `delta`.
///
/// Shared by all backends that can run Rust inside their atomic section, so that every backend
/// agrees on what counts as an integer.
pub(crate) fn incremented(
    key: &str,
    current: Option<&[u8]>,
    delta: i64,
) -> Result<i64, StoreError> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| StoreError::NotAnInteger {
                key: key.to_owned(),
            })?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| StoreError::Overflow {
            key: key.to_owned(),
        })
}
