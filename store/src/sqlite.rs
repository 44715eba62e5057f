//! A backend on one SQLite file, safe to share between threads and between processes.
//!
//! Layout: a single table `kv(tenant, bucket, key, value)` whose primary key is the three
//! scope/key columns (`WITHOUT ROWID`, so the table *is* that index and `list_keys` is a range
//! scan). The schema version lives in `PRAGMA user_version`. The same file may also hold the
//! outbox's tables ([`crate::outbox::SqliteOutbox`], which versions them separately and opens
//! its own connections through the same [`Pool`] code).
//!
//! Concurrency: the file runs in WAL mode, so readers never wait for the writer. Each operation
//! takes a connection from a small pool and runs on tokio's blocking thread pool. Every
//! read-modify-write (increment, CAS) and every batch write runs in a `BEGIN IMMEDIATE`
//! transaction: it takes the file's write lock *before* reading, so two connections — in this
//! process or another — can never both read the old value and both write. Waiting for that lock
//! is bounded by the busy timeout; past it the operation fails with
//! [`StoreError::Unavailable`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Semaphore;

use crate::{
    BoxError, CasOutcome, KeyValueBackend, Scope, StoreError, check_cursor, check_entries,
    check_key, check_keys, check_value, incremented, into_page, page_size,
};

pub(crate) const BACKEND: &str = "sqlite";

/// The schema this build creates and understands (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// Version 1 of the schema. Plain `CREATE TABLE` (not `IF NOT EXISTS`): it only runs on a file
/// whose `user_version` is 0, and if such a file already has a `kv` table it belongs to someone
/// else and opening it must fail rather than adopt that table.
const SCHEMA_V1: &str = "CREATE TABLE kv (
    tenant TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (tenant, bucket, key)
) WITHOUT ROWID;";

const GET: &str = "SELECT value FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3";
const EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3)";
const UPSERT: &str = "INSERT INTO kv (tenant, bucket, key, value) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (tenant, bucket, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3";
const LIST_FIRST: &str =
    "SELECT key FROM kv WHERE tenant = ?1 AND bucket = ?2 ORDER BY key LIMIT ?3";
const LIST_AFTER: &str =
    "SELECT key FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key > ?3 ORDER BY key LIMIT ?4";

/// `rusqlite` panics on busy timeouts beyond `i32::MAX` milliseconds; nobody needs more.
const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Tuning for [`SqliteBackend::open_with_options`].
#[derive(Clone, Copy, Debug)]
pub struct SqliteOptions {
    max_connections: usize,
    busy_timeout: Duration,
}

impl Default for SqliteOptions {
    /// Four connections, five-second busy timeout.
    fn default() -> Self {
        Self {
            max_connections: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteOptions {
    /// Most connections (and so most concurrent blocking threads) the backend uses; at least 1.
    /// Connections are opened on demand and kept for reuse. Writers serialise on the file lock
    /// anyway, so more connections mainly help concurrent readers.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long an operation waits for another connection or process to release the database
    /// before failing with [`StoreError::Unavailable`] (capped at about 24 days).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout.min(MAX_BUSY_TIMEOUT);
        self
    }
}

/// A backend storing everything in one SQLite file (see the module docs for the guarantees).
///
/// Cloning is cheap; clones share the connection pool. Separate `SqliteBackend`s — in this
/// process or in others — may open the same file at the same time; atomic operations stay
/// atomic across all of them.
#[derive(Clone)]
pub struct SqliteBackend {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.path())
            .field("busy_timeout", &self.pool.busy_timeout)
            .finish_non_exhaustive()
    }
}

enum Target {
    File(PathBuf),
    /// A private in-memory database. It lives exactly as long as its only connection, so the
    /// pool holds one connection and never opens another.
    Memory,
}

/// How far a commit is pushed towards the disk before it returns (`PRAGMA synchronous`, a
/// per-connection setting, so each pool picks its own even when several share one file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Synchronous {
    /// In WAL mode: a commit survives a crash of the process, not necessarily of the machine.
    Normal,
    /// In WAL mode: the WAL is synced at every commit, so a commit survives a power loss too.
    Full,
}

impl Synchronous {
    /// Makes `conn`'s commits from now on behave as `self` says.
    fn apply_to(self, conn: &Connection) -> rusqlite::Result<()> {
        let value = match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", value)
    }
}

/// A bounded pool of connections to one database, running work on tokio's blocking threads.
/// Shared by the key-value backend and the outbox (each with a pool of its own).
pub(crate) struct Pool {
    target: Target,
    busy_timeout: Duration,
    synchronous: Synchronous,
    /// Connections not in use. Never more than `permits` allows, since a connection is only
    /// taken (or created) while holding a permit.
    idle: Mutex<Vec<Connection>>,
    /// Bounds the connections in use. Acquired asynchronously, *before* moving to a blocking
    /// thread, so that waiting for a connection never occupies a thread.
    permits: Arc<Semaphore>,
}

impl SqliteBackend {
    /// Opens (creating it if needed) the store at `path` with default [`SqliteOptions`].
    ///
    /// The parent directory must exist. This blocks on file I/O and possibly on other processes'
    /// locks (up to the busy timeout): call it at startup or from a blocking context.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_options(path, SqliteOptions::default())
    }

    /// Opens (creating it if needed) the store at `path`.
    ///
    /// Switches the file to WAL mode and creates or checks the schema. Fails with
    /// [`StoreError::Open`] naming `path` if the parent directory is missing, the file cannot be
    /// opened, is not an SQLite database, cannot use WAL, or already holds an unrelated `kv`
    /// table; with [`StoreError::UnsupportedSchema`] if a newer build created it.
    pub fn open_with_options(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let pool = Pool::open_file(
            path.as_ref(),
            options,
            Synchronous::Normal,
            migrate,
            SCHEMA_VERSION,
        )?;
        Ok(Self { pool })
    }

    /// A private, empty in-memory store (for tests): nothing is shared with other instances
    /// (clones do share it) and everything is gone when the last clone is dropped. It uses a
    /// single connection, so operations run one at a time.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let pool = Pool::open_in_memory(Synchronous::Normal, migrate, SCHEMA_VERSION)?;
        Ok(Self { pool })
    }

    /// The file this backend stores into (`None` for [`open_in_memory`](Self::open_in_memory)).
    pub fn path(&self) -> Option<&Path> {
        self.pool.path()
    }

    /// Runs `op` on a pooled connection (see [`Pool::run`]).
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.pool.run(op).await
    }
}

impl Pool {
    /// Opens (creating it if needed) the database at `path` in WAL mode, runs `migrate` on the
    /// first connection (retrying it while the file is busy) and returns the pool with that
    /// connection in it.
    ///
    /// Fails with [`StoreError::Open`] naming `path` if the parent directory is missing, the
    /// file cannot be opened, is not an SQLite database, cannot use WAL, or `migrate` fails;
    /// with [`StoreError::UnsupportedSchema`] if the schema version `migrate` returns is not
    /// `supported`.
    pub(crate) fn open_file(
        path: &Path,
        options: SqliteOptions,
        synchronous: Synchronous,
        mut migrate: impl FnMut(&mut Connection) -> rusqlite::Result<i64>,
        supported: i64,
    ) -> Result<Arc<Self>, StoreError> {
        let path = path.to_path_buf();
        let fail = |source: BoxError| StoreError::Open {
            backend: BACKEND,
            path: path.clone(),
            source,
        };
        // SQLite would only say "unable to open database file"; say what is actually wrong.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(fail(
                format!("parent directory {} does not exist", parent.display()).into(),
            ));
        }
        let target = Target::File(path.clone());
        let mut conn =
            connect(&target, options.busy_timeout, synchronous).map_err(|e| fail(e.into()))?;
        // WAL is a property of the file, so setting it once here covers every later connection.
        // Changing the journal mode needs a moment of exclusive access, hence the retry.
        let mode = retry_busy(options.busy_timeout, || {
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        })
        .map_err(|e| fail(e.into()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Without WAL readers and the writer block each other; that works, but not with the
            // latency this backend promises, so refuse loudly (e.g. on a network file system).
            return Err(fail(
                format!("could not switch to WAL journal mode (still {mode:?})").into(),
            ));
        }
        let version =
            retry_busy(options.busy_timeout, || migrate(&mut conn)).map_err(|e| fail(e.into()))?;
        require_schema(version, supported)?;
        Ok(Self::new(target, conn, options, synchronous))
    }

    /// A pool over a private in-memory database, after running `migrate` on it (see
    /// [`open_file`](Self::open_file)).
    pub(crate) fn open_in_memory(
        synchronous: Synchronous,
        mut migrate: impl FnMut(&mut Connection) -> rusqlite::Result<i64>,
        supported: i64,
    ) -> Result<Arc<Self>, StoreError> {
        let options = SqliteOptions::default().max_connections(1);
        let mut conn = connect(&Target::Memory, options.busy_timeout, synchronous)
            .map_err(|e| internal(e.into()))?;
        let version = migrate(&mut conn).map_err(|e| internal(e.into()))?;
        require_schema(version, supported)?;
        Ok(Self::new(Target::Memory, conn, options, synchronous))
    }

    fn new(
        target: Target,
        conn: Connection,
        options: SqliteOptions,
        synchronous: Synchronous,
    ) -> Arc<Self> {
        let permits = match target {
            Target::Memory => 1,
            Target::File(_) => options.max_connections,
        };
        Arc::new(Self {
            target,
            busy_timeout: options.busy_timeout,
            synchronous,
            // The connection that did the setup is the first one in the pool.
            idle: Mutex::new(vec![conn]),
            permits: Arc::new(Semaphore::new(permits)),
        })
    }

    /// The database file (`None` for an in-memory database).
    pub(crate) fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::File(path) => Some(path),
            Target::Memory => None,
        }
    }

    /// Runs `op` on a pooled connection on the blocking thread pool, retrying it while the
    /// database is busy (within the busy timeout).
    ///
    /// `op` may run more than once, so it must be a whole transaction (or a single statement):
    /// a failed attempt is rolled back before the next. Operations that can fail for reasons
    /// other than SQLite return `Ok(Err(..))` from `op` (rolling back by dropping their
    /// transaction), which the caller flattens.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run_committing(self.synchronous, op).await
    }

    /// [`run`](Self::run) with `op`'s commits pushed to the disk as `synchronous` says instead
    /// of as the pool's connections do (an in-memory database has no disk: there it is `run`).
    pub(crate) async fn run_committing<T, F>(
        self: &Arc<Self>,
        synchronous: Synchronous,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| unavailable(e.into()))?;
        let pool = Arc::clone(self);
        let task = tokio::task::spawn_blocking(move || {
            // Held by the blocking task, not the caller: if the caller's future is dropped, the
            // connection is still counted as in use until this work has finished.
            let _permit = permit;
            let mut conn = pool.checkout()?;
            if synchronous != pool.synchronous && matches!(pool.target, Target::File(_)) {
                conn.commit_as(synchronous).map_err(from_sqlite)?;
            }
            retry_busy(pool.busy_timeout, || op(conn.get())).map_err(from_sqlite)
        });
        task.await.map_err(|e| internal(e.into()))?
    }
}

#[cfg(test)]
impl SqliteBackend {
    /// Connections currently parked in the pool.
    pub(crate) fn idle_connections(&self) -> usize {
        self.pool.idle().len()
    }
}

impl Pool {
    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // Pushing and popping cannot leave the vector half-updated, so a panic elsewhere while
        // the lock was held does not make its contents suspect.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checkout(&self) -> Result<PooledConn<'_>, StoreError> {
        // A statement of its own, so that the lock is released before a new connection is
        // opened (a `match` would hold the guard until its end).
        let idle = self.idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => match &self.target {
                Target::File(_) => connect(&self.target, self.busy_timeout, self.synchronous)
                    .map_err(from_sqlite)?,
                // Opening a new in-memory connection would silently start from an empty
                // database; only reachable if the one connection was discarded below.
                Target::Memory => {
                    return Err(unavailable("the in-memory database has been lost".into()));
                }
            },
        };
        Ok(PooledConn {
            conn: Some(conn),
            pool: self,
            switched: false,
        })
    }

    /// Returns `conn` to the pool, first setting its `synchronous` back to the pool's own if
    /// `switched`.
    fn checkin(&self, conn: Connection, switched: bool) {
        // The next user must not find itself inside someone else's transaction. rusqlite
        // rolls a `Transaction` back when it is dropped, even while unwinding, so this only
        // guards against a bug; a connection that cannot be reset is closed instead.
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            return;
        }
        // Nor commit with less care than its pool promises: closed if that cannot be undone.
        if switched && self.synchronous.apply_to(&conn).is_err() {
            return;
        }
        self.idle().push(conn);
    }
}

/// A connection on loan from the pool; returned on drop, also when the operation panicked.
struct PooledConn<'a> {
    conn: Option<Connection>,
    pool: &'a Pool,
    /// Whether its `synchronous` differs from the pool's until it is returned.
    switched: bool,
}

impl PooledConn<'_> {
    /// Commits on this loan as `synchronous` says (set back on return).
    fn commit_as(&mut self, synchronous: Synchronous) -> rusqlite::Result<()> {
        self.switched = true;
        synchronous.apply_to(self.get())
    }

    fn get(&mut self) -> &mut Connection {
        // `conn` is only taken in `drop`.
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("pooled connection used after return"))
    }
}

impl Drop for PooledConn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn, self.switched);
        }
    }
}

/// Opens and configures one connection.
fn connect(
    target: &Target,
    busy_timeout: Duration,
    synchronous: Synchronous,
) -> rusqlite::Result<Connection> {
    let conn = match target {
        // No SQLITE_OPEN_URI: the path is a path, even if it happens to start with "file:".
        // NO_MUTEX: a connection is only ever used by one thread at a time (the pool hands it
        // out exclusively), so SQLite's per-connection mutex would be pure overhead.
        Target::File(path) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?,
        Target::Memory => Connection::open_in_memory()?,
    };
    // Let SQLite itself sleep and retry while another connection holds a lock; `retry_busy`
    // covers the cases where it reports SQLITE_BUSY without waiting.
    conn.busy_timeout(busy_timeout)?;
    // In WAL mode NORMAL only syncs at checkpoints: a commit survives a crash of the process
    // but possibly not of the machine, and the file is never corrupted. FULL also syncs the WAL
    // at every commit. Per connection, so pools on one file may differ.
    synchronous.apply_to(&conn)?;
    Ok(conn)
}

/// Refuses a file whose tables (`found`, from `PRAGMA user_version` or the migration) were
/// created by another schema version than the one this build `supports`.
fn require_schema(found: i64, supported: i64) -> Result<(), StoreError> {
    if found == supported {
        return Ok(());
    }
    Err(StoreError::UnsupportedSchema {
        backend: BACKEND,
        found,
        supported,
    })
}

/// Creates the schema in a fresh file; returns the schema version now in the file.
fn migrate(conn: &mut Connection) -> rusqlite::Result<i64> {
    // IMMEDIATE: two processes opening a fresh file at once must not both create the table.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version != 0 {
        return Ok(version);
    }
    tx.execute_batch(SCHEMA_V1)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(SCHEMA_VERSION)
}

/// Runs `op` until it stops failing with SQLITE_BUSY / SQLITE_LOCKED or `budget` has passed.
///
/// SQLite's busy handler already waits inside most calls, but in some situations SQLite returns
/// SQLITE_BUSY at once instead (e.g. during WAL recovery, or to break a lock-upgrade deadlock),
/// and then only starting the whole transaction again helps.
pub(crate) fn retry_busy<T>(
    budget: Duration,
    mut op: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match op() {
            Err(err) if is_busy(&err) && start.elapsed() < budget => {
                // Blocking sleep: this runs on a blocking-pool thread, never on the runtime.
                std::thread::sleep(pause.min(budget.saturating_sub(start.elapsed())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

pub(crate) fn unavailable(source: BoxError) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        source,
    }
}

pub(crate) fn internal(source: BoxError) -> StoreError {
    StoreError::Internal {
        backend: BACKEND,
        source,
    }
}

/// Sorts a SQLite failure into the error case that says what it means for the caller.
pub(crate) fn from_sqlite(err: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    let corrupt = |err: E| StoreError::Corrupt {
        backend: BACKEND,
        source: err.into(),
    };
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => corrupt(err),
        // The environment: locks held too long, I/O, full disk, permissions, memory.
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::OutOfMemory
            | ErrorCode::NoLargeFileSupport,
        ) => unavailable(err.into()),
        Some(_) => internal(err.into()),
        // Not from SQLite itself: a column held something this crate never writes (a key that
        // is not UTF-8 text, a value that is not a blob).
        None => match err {
            E::FromSqlConversionFailure(..)
            | E::InvalidColumnType(..)
            | E::Utf8Error(..)
            | E::IntegralValueOutOfRange(..) => corrupt(err),
            _ => internal(err.into()),
        },
    }
}

/// `limit + 1` as an SQL integer: one key beyond the page tells whether another page exists.
fn fetch_count(limit: usize) -> i64 {
    i64::try_from(limit).map_or(i64::MAX, |n| n.saturating_add(1))
}

#[async_trait::async_trait]
impl KeyValueBackend for SqliteBackend {
    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let (scope, key) = (scope.clone(), key.to_owned());
        self.run(move |conn| {
            conn.prepare_cached(GET)?
                .query_row(params![scope.tenant, scope.bucket, key], |row| row.get(0))
                .optional()
        })
        .await
    }

    async fn set(&self, scope: &Scope, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        check_value(value)?;
        let (scope, key, value) = (scope.clone(), key.to_owned(), value.to_vec());
        self.run(move |conn| {
            conn.prepare_cached(UPSERT)?
                .execute(params![scope.tenant, scope.bucket, key, value])
                .map(drop)
        })
        .await
    }

    async fn delete(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let (scope, key) = (scope.clone(), key.to_owned());
        self.run(move |conn| {
            conn.prepare_cached(DELETE)?
                .execute(params![scope.tenant, scope.bucket, key])
                .map(drop)
        })
        .await
    }

    async fn exists(&self, scope: &Scope, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        let (scope, key) = (scope.clone(), key.to_owned());
        self.run(move |conn| {
            conn.prepare_cached(EXISTS)?
                .query_row(params![scope.tenant, scope.bucket, key], |row| row.get(0))
        })
        .await
    }

    async fn list_keys(
        &self,
        scope: &Scope,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        check_cursor(cursor)?;
        let limit = page_size(limit);
        let (scope, cursor) = (scope.clone(), cursor.map(str::to_owned));
        let fetch = fetch_count(limit);
        let keys = self
            .run(move |conn| {
                let key = |row: &rusqlite::Row<'_>| row.get::<_, String>(0);
                match &cursor {
                    None => conn
                        .prepare_cached(LIST_FIRST)?
                        .query_map(params![scope.tenant, scope.bucket, fetch], key)?
                        .collect::<rusqlite::Result<Vec<_>>>(),
                    Some(after) => conn
                        .prepare_cached(LIST_AFTER)?
                        .query_map(params![scope.tenant, scope.bucket, after, fetch], key)?
                        .collect::<rusqlite::Result<Vec<_>>>(),
                }
            })
            .await?;
        Ok(into_page(keys, limit))
    }

    async fn increment(&self, scope: &Scope, key: &str, delta: i64) -> Result<i64, StoreError> {
        check_key(key)?;
        let (scope, key) = (scope.clone(), key.to_owned());
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<Vec<u8>> = tx
                .prepare_cached(GET)?
                .query_row(params![scope.tenant, scope.bucket, key], |row| row.get(0))
                .optional()?;
            let next = match incremented(&key, current.as_deref(), delta) {
                Ok(next) => next,
                // Dropping `tx` rolls back; nothing was written anyway.
                Err(err) => return Ok(Err(err)),
            };
            tx.prepare_cached(UPSERT)?.execute(params![
                scope.tenant,
                scope.bucket,
                key,
                next.to_string().as_bytes()
            ])?;
            tx.commit()?;
            Ok(Ok(next))
        })
        .await?
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
        let (scope, key) = (scope.clone(), key.to_owned());
        let (expected, new) = (expected.map(<[u8]>::to_vec), new.to_vec());
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<Vec<u8>> = tx
                .prepare_cached(GET)?
                .query_row(params![scope.tenant, scope.bucket, key], |row| row.get(0))
                .optional()?;
            if current != expected {
                return Ok(CasOutcome::Conflict { current });
            }
            tx.prepare_cached(UPSERT)?
                .execute(params![scope.tenant, scope.bucket, key, new])?;
            tx.commit()?;
            Ok(CasOutcome::Swapped)
        })
        .await
    }

    async fn get_many(
        &self,
        scope: &Scope,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        check_keys(keys)?;
        let (scope, keys) = (scope.clone(), keys.to_vec());
        self.run(move |conn| {
            // One read transaction, so all values come from the same snapshot.
            let tx = conn.transaction()?;
            let values = {
                let mut stmt = tx.prepare_cached(GET)?;
                keys.iter()
                    .map(|key| {
                        stmt.query_row(params![scope.tenant, scope.bucket, key], |row| row.get(0))
                            .optional()
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            Ok(values)
        })
        .await
    }

    async fn set_many(
        &self,
        scope: &Scope,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        // Validated up front: the transaction below can then only fail for SQLite's reasons,
        // and then rolls back as a whole.
        check_entries(entries)?;
        let (scope, entries) = (scope.clone(), entries.to_vec());
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(UPSERT)?;
                for (key, value) in &entries {
                    stmt.execute(params![scope.tenant, scope.bucket, key, value])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn delete_many(&self, scope: &Scope, keys: &[String]) -> Result<(), StoreError> {
        check_keys(keys)?;
        let (scope, keys) = (scope.clone(), keys.to_vec());
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(DELETE)?;
                for key in &keys {
                    stmt.execute(params![scope.tenant, scope.bucket, key])?;
                }
            }
            tx.commit()
        })
        .await
    }

    fn name(&self) -> &'static str {
        BACKEND
    }
}
