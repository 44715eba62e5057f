//! The outbox in an SQLite file: safe to share between threads and between processes of one
//! machine, and between the outbox and the key-value backend (its tables have their own names
//! and their own schema version, so both can live in one file).
//!
//! Layout: one row per message in `outbox_messages`, one row per paused tenant in
//! `outbox_paused`. The column `due_at` says when a message can next be claimed: while queued,
//! its `not_before` or the end of its tenant's pause, whichever is later; while in flight, the
//! end of its lease; for a final message, NULL. So a single range scan of a partial index,
//! `due_at <= now`, finds every claimable message — new, retried, and abandoned by a dead
//! worker alike — in the order it became due (`seq`, the rowid, breaks ties in enqueue order).
//! Pausing a tenant rewrites `due_at` of its queued messages, so claims do not even see them.
//!
//! Every operation is one transaction; every one that writes starts with `BEGIN IMMEDIATE`,
//! taking the file's write lock before reading, so two connections — in this process or
//! another — can never both claim a message or both insert an idempotency key. The outbox's
//! connections that accept and settle run with `synchronous=FULL`: in WAL mode every commit
//! syncs the log, so an accepted message survives a power loss, not only a crash of the process
//! (the key-value backend's connections on the same file keep their cheaper `NORMAL`).
//!
//! Settling (`complete`, `retry`) is group-committed: settles that arrive while one is being
//! written wait, and are then written together in one transaction, one sync. Each caller still
//! returns only once its own settle is durable; 16 workers settling at once cost one sync
//! instead of 16.
//!
//! Claims are not synced on their own (they run with `synchronous=NORMAL`): a claim is a
//! lease, and losing one to a power cut only makes its message due again — which is what
//! happens anyway when a worker dies holding it, so delivery stays at least once. A claim
//! becomes durable with the next synced commit after it (the WAL is synced as a whole), so a
//! message whose settle survived also kept its claim. A process crash loses no commit either
//! way. This raised `serve`'s delivery rate by 16 % in an in-run comparison (BENCHMARKS.md).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Ack, Bucket, Claimed, Clock, Depth, Enqueued, ListQuery, ListedMessage, MessageState,
    NewMessage, Outbox, Outcome, Page, PageCursor, State, check_batch, check_tenant, check_worker,
    clamp_max, clamp_page, from_millis, is_valid_id, lease_millis, new_id, slices, to_millis,
    truncate_detail,
};
use crate::sqlite::{BACKEND, Pool, Synchronous, internal};
use crate::{SqliteOptions, StoreError};

/// The outbox schema this build creates and understands (in `outbox_schema`, not in
/// `PRAGMA user_version`, which belongs to the key-value schema).
const SCHEMA_VERSION: i64 = 2;

/// How claims commit (module docs). Switched per claim on the pool's connections rather than
/// kept in a pool of their own: more connections wanting the write lock made SQLite's busy
/// handler sleep more, and cost more than the syncs saved.
const CLAIMS_SYNC: Synchronous = Synchronous::Normal;

/// Version 1. Plain `CREATE TABLE` (no `IF NOT EXISTS`): it runs only when `outbox_schema` is
/// missing, and a file that has an `outbox_messages` table without it belongs to someone else;
/// opening must then fail rather than adopt that table.
pub(super) const SCHEMA_V1: &str = "
CREATE TABLE outbox_schema (version INTEGER NOT NULL);
INSERT INTO outbox_schema (version) VALUES (1);
CREATE TABLE outbox_messages (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant          TEXT NOT NULL,
    idempotency_key TEXT,
    payload         BLOB NOT NULL,
    -- 0 queued, 1 in flight, 2 delivered, 3 failed
    state           INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    -- Times are milliseconds since the Unix epoch.
    enqueued_at     INTEGER NOT NULL,
    not_before      INTEGER NOT NULL,
    due_at          INTEGER,
    worker          TEXT,
    last_detail     TEXT,
    finished_at     INTEGER
);
CREATE UNIQUE INDEX outbox_messages_idempotency
    ON outbox_messages (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX outbox_messages_due ON outbox_messages (due_at, seq) WHERE due_at IS NOT NULL;
CREATE INDEX outbox_messages_state ON outbox_messages (state, tenant);
CREATE INDEX outbox_messages_finished
    ON outbox_messages (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE outbox_paused (
    tenant TEXT PRIMARY KEY,
    until  INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 2: recipients, and an index for listing a tenant's messages by time (the console).
const SCHEMA_V2: &str = "
ALTER TABLE outbox_messages ADD COLUMN recipient TEXT;
CREATE INDEX outbox_messages_tenant_time ON outbox_messages (tenant, enqueued_at, id);
UPDATE outbox_schema SET version = 2;
";

const QUEUED: i64 = 0;
const IN_FLIGHT: i64 = 1;
const DELIVERED: i64 = 2;
const FAILED: i64 = 3;

/// The end of `?1`'s pause if it lasts beyond `?2`, else 0 (which never wins a `MAX`).
const PAUSE_END: &str =
    "SELECT COALESCE((SELECT until FROM outbox_paused WHERE tenant = ?1 AND until > ?2), 0)";
pub(super) const FIND_BY_KEY: &str =
    "SELECT id FROM outbox_messages WHERE tenant = ?1 AND idempotency_key = ?2";
const INSERT: &str = "INSERT INTO outbox_messages \
     (id, tenant, idempotency_key, payload, state, attempts, enqueued_at, not_before, due_at, \
      recipient) \
     VALUES (?1, ?2, ?3, ?4, 0, 0, ?5, ?5, ?6, ?7)";
const PAUSED_NOW: &str = "SELECT tenant, until FROM outbox_paused WHERE until > ?1";
pub(super) const DUE: &str = "SELECT seq, id, tenant, payload, attempts, enqueued_at \
     FROM outbox_messages \
     WHERE due_at <= ?1 ORDER BY due_at, seq LIMIT ?2";
const TAKE: &str = "UPDATE outbox_messages \
     SET state = 1, attempts = attempts + 1, due_at = ?2, worker = ?3 WHERE seq = ?1";
/// Back to the queue until the end of its tenant's pause (an in-flight message whose lease
/// expired during the pause).
const PARK: &str = "UPDATE outbox_messages \
     SET state = 0, due_at = MAX(not_before, ?2), worker = NULL WHERE seq = ?1";
const FINISH: &str = "UPDATE outbox_messages \
     SET state = ?2, last_detail = ?3, finished_at = ?4, due_at = NULL, worker = NULL, \
         payload = X'' \
     WHERE id = ?1 AND state IN (0, 1)";
const REQUEUE: &str = "UPDATE outbox_messages \
     SET state = 0, not_before = ?2, last_detail = ?3, worker = NULL, \
         due_at = MAX(?2, COALESCE((SELECT until FROM outbox_paused \
             WHERE outbox_paused.tenant = outbox_messages.tenant AND until > ?4), 0)) \
     WHERE id = ?1 AND state IN (0, 1)";
const STATE_OF: &str = "SELECT state FROM outbox_messages WHERE id = ?1";
const STATUS: &str = "SELECT state, attempts, last_detail, tenant, idempotency_key, enqueued_at, \
     due_at, finished_at FROM outbox_messages WHERE id = ?1";
/// A page of a tenant's messages, newest first: `?1` tenant, `[?2, ?3)` the window, `?4` the
/// state code or NULL, `?5` the search text or NULL, `(?6, ?7)` the cursor (exclusive), `?8`
/// the limit. The search matches the id exactly or the recipient anywhere (`instr`, not
/// `LIKE`: a `%` or `_` in it is plain text).
pub(super) const LIST: &str = "SELECT id, recipient, state, attempts, last_detail, idempotency_key, \
     enqueued_at, due_at, finished_at FROM outbox_messages \
     WHERE tenant = ?1 AND enqueued_at >= ?2 AND enqueued_at < ?3 \
       AND (enqueued_at, id) < (?6, ?7) \
       AND (?4 IS NULL OR state = ?4) \
       AND (?5 IS NULL OR id = ?5 OR instr(recipient, ?5) > 0) \
     ORDER BY enqueued_at DESC, id DESC LIMIT ?8";
/// States and attempts of a tenant's messages in a window, by slice: `?1` tenant, `[?2, ?3)`
/// the window, `?4` the slice width.
const OUTCOMES: &str = "SELECT (enqueued_at - ?2) / ?4, state, attempts > 0, count(*) \
     FROM outbox_messages WHERE tenant = ?1 AND enqueued_at >= ?2 AND enqueued_at < ?3 \
     GROUP BY 1, 2, 3";
const DEPTH_ALL: &str =
    "SELECT state, count(*) FROM outbox_messages WHERE state IN (0, 1) GROUP BY state";
pub(super) const DEPTH_TENANT: &str = "SELECT state, count(*) FROM outbox_messages \
     WHERE state IN (0, 1) AND tenant = ?1 GROUP BY state";
const FORGET_ENDED_PAUSES: &str = "DELETE FROM outbox_paused WHERE until <= ?1";
const SET_PAUSE: &str = "INSERT INTO outbox_paused (tenant, until) VALUES (?1, ?2) \
     ON CONFLICT (tenant) DO UPDATE SET until = excluded.until";
const LIFT_PAUSE: &str = "DELETE FROM outbox_paused WHERE tenant = ?1";
/// With `?2` the new end of the pause (possibly in the past, which lifts it).
pub(super) const RESCHEDULE_TENANT: &str = "UPDATE outbox_messages \
     SET due_at = MAX(not_before, ?2) WHERE state = 0 AND tenant = ?1";
pub(super) const PURGE: &str = "DELETE FROM outbox_messages WHERE seq IN \
     (SELECT seq FROM outbox_messages WHERE finished_at < ?1 ORDER BY finished_at LIMIT ?2)";

/// An [`Outbox`] in an SQLite file (see the module docs of [`crate::outbox`] for the
/// guarantees).
///
/// Cloning is cheap; clones share the connection pool. Separate instances — in this process or
/// in others — may open the same file at the same time, also a file that a
/// [`SqliteBackend`](crate::SqliteBackend) uses. The async methods must run inside a tokio
/// runtime.
#[derive(Clone)]
pub struct SqliteOutbox {
    pool: Arc<Pool>,
    clock: Arc<dyn Clock>,
    settles: Arc<Mutex<SettleQueue>>,
}

/// Settles waiting for the next group commit, and whether a writer is draining them.
#[derive(Default)]
struct SettleQueue {
    waiting: Vec<PendingSettle>,
    writing: bool,
}

/// One `complete` or `retry`: `update` (`FINISH` or `REQUEUE`) with its parameters, and where
/// its caller waits for the outcome.
struct PendingSettle {
    update: &'static str,
    id: String,
    value: i64,
    detail: String,
    done: oneshot::Sender<Result<Ack, StoreError>>,
}

impl std::fmt::Debug for SqliteOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteOutbox")
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

impl SqliteOutbox {
    /// Opens (creating it if needed) the outbox in the file at `path` with default
    /// [`SqliteOptions`].
    ///
    /// The parent directory must exist. This blocks on file I/O and possibly on other processes'
    /// locks (up to the busy timeout): call it at startup or from a blocking context.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_options(path, SqliteOptions::default())
    }

    /// Opens (creating it if needed) the outbox in the file at `path`, which may be the
    /// key-value backend's file.
    ///
    /// Switches the file to WAL mode and creates or checks the outbox tables. Fails with
    /// [`StoreError::Open`] naming `path` if the parent directory is missing, the file cannot be
    /// opened, is not an SQLite database, cannot use WAL, or holds an unrelated
    /// `outbox_messages` table; with [`StoreError::UnsupportedSchema`] if a newer build created
    /// the outbox tables.
    pub fn open_with_options(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let pool = Pool::open_file(
            path.as_ref(),
            options,
            Synchronous::Full,
            migrate,
            SCHEMA_VERSION,
        )?;
        Ok(Self {
            pool,
            clock: Arc::new(SystemClock),
            settles: Arc::default(),
        })
    }

    /// A private, empty in-memory outbox (for tests, e.g. of the server): nothing is shared
    /// with other instances (clones do share it), nothing is durable, and operations run one at
    /// a time.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let pool = Pool::open_in_memory(Synchronous::Full, migrate, SCHEMA_VERSION)?;
        Ok(Self {
            pool,
            clock: Arc::new(SystemClock),
            settles: Arc::default(),
        })
    }

    /// This outbox reading "now" from `clock` (see [`Clock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The file this outbox stores into (`None` for [`open_in_memory`](Self::open_in_memory)).
    pub fn path(&self) -> Option<&Path> {
        self.pool.path()
    }

    /// `complete` and `retry`: `update` (`FINISH` or `REQUEUE`, whose parameters are the id,
    /// `value`, the detail and now) written in the next group commit (module docs); says what
    /// it did once that commit is durable.
    async fn settle(
        &self,
        update: &'static str,
        id: &str,
        value: i64,
        detail: &str,
    ) -> Result<Ack, StoreError> {
        if !is_valid_id(id) {
            return Ok(Ack::NotFound);
        }
        let (done, outcome) = oneshot::channel();
        let pending = PendingSettle {
            update,
            id: id.to_owned(),
            value,
            detail: truncate_detail(detail).to_owned(),
            done,
        };
        let start_writer = {
            let mut queue = self.settles.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push(pending);
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            // A task of its own: a caller that stops waiting must not stop the writer the
            // others wait for.
            tokio::spawn(self.clone().write_settles());
        }
        outcome
            .await
            .map_err(|_| internal("the settle writer stopped before answering".into()))?
    }

    /// Writes waiting settles, all that have arrived each time, until none is left.
    async fn write_settles(self) {
        loop {
            let batch = {
                let mut queue = self.settles.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            let (settles, callers): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|p| ((p.update, p.id, p.value, p.detail), p.done))
                .unzip();
            let settles = Arc::new(settles);
            let clock = self.clock.clone();
            let written = {
                let settles = settles.clone();
                self.pool
                    .run(move |conn| {
                        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                        let now = to_millis(clock.now());
                        let mut acks = Vec::with_capacity(settles.len());
                        for (update, id, value, detail) in settles.iter() {
                            let changed = tx
                                .prepare_cached(update)?
                                .execute(params![id, value, detail, now])?;
                            acks.push(ack(&tx, id, changed)?);
                        }
                        tx.commit()?;
                        Ok(acks)
                    })
                    .await
            };
            match written {
                Ok(acks) => {
                    for (caller, ack) in callers.into_iter().zip(acks) {
                        let _ = caller.send(Ok(ack));
                    }
                }
                // The group failed as a whole (the file, not a settle): each is tried alone,
                // so each caller gets its own outcome.
                Err(_) => {
                    for ((update, id, value, detail), caller) in
                        settles.iter().cloned().zip(callers)
                    {
                        let _ = caller.send(self.settle_alone(update, id, value, detail).await);
                    }
                }
            }
        }
    }

    /// One settle in a transaction of its own.
    async fn settle_alone(
        &self,
        update: &'static str,
        id: String,
        value: i64,
        detail: String,
    ) -> Result<Ack, StoreError> {
        let clock = self.clock.clone();
        self.pool
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let changed = tx.prepare_cached(update)?.execute(params![
                    id,
                    value,
                    detail,
                    to_millis(clock.now())
                ])?;
                let ack = ack(&tx, &id, changed)?;
                tx.commit()?;
                Ok(ack)
            })
            .await
    }

    #[cfg(test)]
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.pool.run(op).await
    }

    /// [`run`](Self::run) as claims run.
    #[cfg(test)]
    pub(crate) async fn run_as_claims<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.pool.run_committing(CLAIMS_SYNC, op).await
    }
}

/// Creates the outbox tables in a file that has none and brings version 1 to 2; returns the
/// outbox schema version now in the file.
fn migrate(conn: &mut Connection) -> rusqlite::Result<i64> {
    // IMMEDIATE: two processes opening a fresh file at once must not both create the tables.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
         AND name = 'outbox_schema')",
        [],
        |row| row.get(0),
    )?;
    let found: i64 = if exists {
        tx.query_row("SELECT version FROM outbox_schema", [], |row| row.get(0))?
    } else {
        tx.execute_batch(SCHEMA_V1)?;
        1
    };
    if found != 1 {
        // Current, or newer (the pool refuses it).
        return Ok(found);
    }
    tx.execute_batch(SCHEMA_V2)?;
    tx.commit()?;
    Ok(SCHEMA_VERSION)
}

/// The host's clock: this backend's default.
#[derive(Debug)]
struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

fn decode_state(column: usize, code: i64) -> rusqlite::Result<State> {
    match code {
        QUEUED => Ok(State::Queued),
        IN_FLIGHT => Ok(State::InFlight),
        DELIVERED => Ok(State::Delivered),
        FAILED => Ok(State::Failed),
        // Reported as `StoreError::Corrupt`: this crate never writes another code.
        _ => Err(rusqlite::Error::FromSqlConversionFailure(
            column,
            Type::Integer,
            format!("unknown outbox state {code}").into(),
        )),
    }
}

fn encode_state(state: State) -> i64 {
    match state {
        State::Queued => QUEUED,
        State::InFlight => IN_FLIGHT,
        State::Delivered => DELIVERED,
        State::Failed => FAILED,
    }
}

fn encode_final(state: State) -> i64 {
    match state {
        State::Delivered => DELIVERED,
        // `Outcome` only yields the two final states.
        _ => FAILED,
    }
}

/// A count of claims as stored (an `INTEGER`), for [`Claimed::attempts`].
fn attempts(column: usize, stored: i64) -> rusqlite::Result<u32> {
    u32::try_from(stored).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, stored))
}

/// The outcome of an update `WHERE id = ? AND state IN (0, 1)` that changed `changed` rows.
fn ack(tx: &rusqlite::Transaction<'_>, id: &str, changed: usize) -> rusqlite::Result<Ack> {
    if changed > 0 {
        return Ok(Ack::Applied);
    }
    let state: Option<i64> = tx
        .prepare_cached(STATE_OF)?
        .query_row(params![id], |row| row.get(0))
        .optional()?;
    match state {
        None => Ok(Ack::NotFound),
        Some(code) => decode_state(0, code).map(Ack::AlreadyFinal),
    }
}

#[async_trait::async_trait]
impl Outbox for SqliteOutbox {
    async fn enqueue_many(
        &self,
        tenant: &str,
        messages: &[NewMessage<'_>],
    ) -> Result<Vec<Enqueued>, StoreError> {
        check_batch(tenant, messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let tenant = tenant.to_owned();
        let messages: Vec<(Option<String>, Vec<u8>, Option<String>)> = messages
            .iter()
            .map(|m| {
                (
                    m.idempotency_key.map(str::to_owned),
                    m.payload.to_vec(),
                    m.recipient.map(str::to_owned),
                )
            })
            .collect();
        let clock = self.clock.clone();
        self.pool
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = to_millis(clock.now());
                let pause_end: i64 = tx
                    .prepare_cached(PAUSE_END)?
                    .query_row(params![tenant, now], |row| row.get(0))?;
                let due = now.max(pause_end);
                let mut results = Vec::with_capacity(messages.len());
                {
                    let mut find = tx.prepare_cached(FIND_BY_KEY)?;
                    let mut insert = tx.prepare_cached(INSERT)?;
                    for (key, payload, recipient) in &messages {
                        // Inside the write transaction nobody can insert the key between this
                        // look-up and the insert; the unique index backs that up.
                        if let Some(key) = key
                            && let Some(id) = find
                                .query_row(params![tenant, key], |row| row.get(0))
                                .optional()?
                        {
                            results.push(Enqueued {
                                id,
                                duplicate: true,
                            });
                            continue;
                        }
                        let id = new_id(from_millis(now));
                        insert.execute(params![id, tenant, key, payload, now, due, recipient])?;
                        results.push(Enqueued {
                            id,
                            duplicate: false,
                        });
                    }
                }
                tx.commit()?;
                Ok(results)
            })
            .await
    }

    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        check_worker(worker)?;
        let max = clamp_max(max);
        if max == 0 {
            return Ok(Vec::new());
        }
        let worker = worker.to_owned();
        let lease = lease_millis(lease);
        let clock = self.clock.clone();
        self.pool
            .run_committing(CLAIMS_SYNC, move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = to_millis(clock.now());
                let paused: HashMap<String, i64> = tx
                    .prepare_cached(PAUSED_NOW)?
                    .query_map(params![now], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut claimed = Vec::new();
                {
                    let mut due = tx.prepare_cached(DUE)?;
                    let mut take = tx.prepare_cached(TAKE)?;
                    let mut park = tx.prepare_cached(PARK)?;
                    let lease_end = now.saturating_add(lease);
                    // Queued messages of paused tenants are not due (pausing moved their
                    // `due_at`), but in-flight ones whose lease expires during the pause are;
                    // those are parked, which takes them out of the range, and the scan goes
                    // on. So the loop ends: every round claims or parks every row it saw.
                    loop {
                        let want = max - claimed.len();
                        let rows = due
                            .query_map(params![now, want as i64], |row| {
                                Ok((
                                    row.get::<_, i64>(0)?,
                                    row.get::<_, String>(1)?,
                                    row.get::<_, String>(2)?,
                                    row.get::<_, Vec<u8>>(3)?,
                                    attempts(4, row.get(4)?)?,
                                    row.get::<_, i64>(5)?,
                                ))
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()?;
                        let seen = rows.len();
                        for (seq, id, tenant, payload, attempts, enqueued_at) in rows {
                            if let Some(&pause_end) = paused.get(&tenant) {
                                park.execute(params![seq, pause_end])?;
                                continue;
                            }
                            take.execute(params![seq, lease_end, worker])?;
                            claimed.push(Claimed {
                                id,
                                tenant,
                                payload,
                                attempts: attempts.saturating_add(1),
                                enqueued_at: from_millis(enqueued_at),
                            });
                        }
                        if seen < want || claimed.len() >= max {
                            break;
                        }
                    }
                }
                tx.commit()?;
                Ok(claimed)
            })
            .await
    }

    async fn complete(&self, id: &str, outcome: Outcome) -> Result<Ack, StoreError> {
        let state = encode_final(outcome.state());
        self.settle(FINISH, id, state, outcome.detail()).await
    }

    async fn retry(
        &self,
        id: &str,
        not_before: SystemTime,
        detail: &str,
    ) -> Result<Ack, StoreError> {
        self.settle(REQUEUE, id, to_millis(not_before), detail)
            .await
    }

    async fn status(&self, id: &str) -> Result<Option<MessageState>, StoreError> {
        if !is_valid_id(id) {
            return Ok(None);
        }
        let id = id.to_owned();
        self.pool
            .run(move |conn| {
                conn.prepare_cached(STATUS)?
                    .query_row(params![id], |row| {
                        let state = decode_state(0, row.get(0)?)?;
                        let due_at: Option<i64> = row.get(6)?;
                        let finished_at: Option<i64> = row.get(7)?;
                        Ok(MessageState {
                            state,
                            attempts: attempts(1, row.get(1)?)?,
                            last_detail: row.get(2)?,
                            tenant: row.get(3)?,
                            idempotency_key: row.get(4)?,
                            enqueued_at: from_millis(row.get(5)?),
                            next_attempt_at: due_at
                                .filter(|_| state == State::Queued)
                                .map(from_millis),
                            finished_at: finished_at.map(from_millis),
                        })
                    })
                    .optional()
            })
            .await
    }

    async fn list(&self, query: &ListQuery<'_>) -> Result<Page, StoreError> {
        check_tenant(query.tenant)?;
        let tenant = query.tenant.to_owned();
        let (since, until) = (to_millis(query.since), to_millis(query.until));
        let state = query.state.map(encode_state);
        let search = query.search.map(str::to_owned);
        // No cursor: after the newest possible position.
        let (after_ms, after_id) = query
            .after
            .map_or((i64::MAX, String::new()), |c| (c.enqueued_ms, c.id.clone()));
        let limit = clamp_page(query.limit);
        self.pool
            .run(move |conn| {
                let mut statement = conn.prepare_cached(LIST)?;
                let rows = statement.query_map(
                    params![
                        tenant,
                        since,
                        until,
                        state,
                        search,
                        after_ms,
                        after_id,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    |row| {
                        let state = decode_state(2, row.get(2)?)?;
                        let due_at: Option<i64> = row.get(7)?;
                        let finished_at: Option<i64> = row.get(8)?;
                        Ok(ListedMessage {
                            id: row.get(0)?,
                            recipient: row.get(1)?,
                            status: MessageState {
                                state,
                                attempts: attempts(3, row.get(3)?)?,
                                last_detail: row.get(4)?,
                                tenant: tenant.clone(),
                                idempotency_key: row.get(5)?,
                                enqueued_at: from_millis(row.get(6)?),
                                next_attempt_at: due_at
                                    .filter(|_| state == State::Queued)
                                    .map(from_millis),
                                finished_at: finished_at.map(from_millis),
                            },
                        })
                    },
                )?;
                let messages = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                let next = (messages.len() == limit)
                    .then(|| messages.last())
                    .flatten()
                    .map(|last| PageCursor {
                        enqueued_ms: to_millis(last.status.enqueued_at),
                        id: last.id.clone(),
                    });
                Ok(Page { messages, next })
            })
            .await
    }

    async fn outcomes(
        &self,
        tenant: &str,
        since: SystemTime,
        until: SystemTime,
        buckets: usize,
    ) -> Result<Vec<Bucket>, StoreError> {
        check_tenant(tenant)?;
        let tenant = tenant.to_owned();
        let (start, width, empty) = slices(since, until, buckets);
        let end = to_millis(until);
        self.pool
            .run(move |conn| {
                let mut slices = empty.clone();
                let mut statement = conn.prepare_cached(OUTCOMES)?;
                let rows = statement.query_map(params![tenant, start, end, width], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        decode_state(1, row.get(1)?)?,
                        row.get::<_, bool>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })?;
                for row in rows {
                    let (slice, state, retried, count) = row?;
                    let Some(bucket) = usize::try_from(slice).ok().and_then(|i| slices.get_mut(i))
                    else {
                        continue;
                    };
                    bucket.add(state, retried, u64::try_from(count).unwrap_or(0));
                }
                Ok(slices)
            })
            .await
    }

    async fn depth(&self, tenant: Option<&str>) -> Result<Depth, StoreError> {
        if let Some(tenant) = tenant {
            check_tenant(tenant)?;
        }
        let tenant = tenant.map(str::to_owned);
        self.pool
            .run(move |conn| {
                let row = |row: &rusqlite::Row<'_>| Ok((row.get::<_, i64>(0)?, row.get(1)?));
                let counts: Vec<(i64, i64)> = match &tenant {
                    None => conn
                        .prepare_cached(DEPTH_ALL)?
                        .query_map([], row)?
                        .collect::<rusqlite::Result<_>>()?,
                    Some(tenant) => conn
                        .prepare_cached(DEPTH_TENANT)?
                        .query_map(params![tenant], row)?
                        .collect::<rusqlite::Result<_>>()?,
                };
                let mut depth = Depth::default();
                for (state, count) in counts {
                    let count = u64::try_from(count).unwrap_or(0);
                    match state {
                        QUEUED => depth.queued = count,
                        _ => depth.in_flight = count,
                    }
                }
                Ok(depth)
            })
            .await
    }

    async fn pause_tenant(&self, tenant: &str, until: SystemTime) -> Result<(), StoreError> {
        check_tenant(tenant)?;
        let tenant = tenant.to_owned();
        let until = to_millis(until);
        let clock = self.clock.clone();
        self.pool
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = to_millis(clock.now());
                // Ended pauses are only ever compared against and lost; keep the table small.
                tx.prepare_cached(FORGET_ENDED_PAUSES)?
                    .execute(params![now])?;
                if until > now {
                    tx.prepare_cached(SET_PAUSE)?
                        .execute(params![tenant, until])?;
                } else {
                    tx.prepare_cached(LIFT_PAUSE)?.execute(params![tenant])?;
                }
                // Extending, shortening and lifting alike: the queued messages become due at
                // their own `not_before` or the new end, whichever is later.
                tx.prepare_cached(RESCHEDULE_TENANT)?
                    .execute(params![tenant, until])?;
                tx.commit()
            })
            .await
    }

    async fn purge_finished(
        &self,
        finished_before: SystemTime,
        max: usize,
    ) -> Result<usize, StoreError> {
        let max = clamp_max(max);
        if max == 0 {
            return Ok(0);
        }
        let before = to_millis(finished_before);
        self.pool
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let purged = tx
                    .prepare_cached(PURGE)?
                    .execute(params![before, max as i64])?;
                tx.commit()?;
                Ok(purged)
            })
            .await
    }

    fn name(&self) -> &'static str {
        BACKEND
    }
}
