//! The durable outbox: the queue behind `POST /v1/{tenant}/notifications`.
//!
//! # Life of a message
//!
//! ```text
//!              enqueue                 claim (a lease)             complete
//!   request ───────────▶ Queued ─────────────────────────▶ InFlight ─────────▶ Delivered | Failed
//!                          ▲  ▲                                │ │
//!                          │  └──── retry(not_before) ─────────┘ │
//!                          └─ lease expired: the next claim ─────┘
//!                             takes it over (attempts + 1)
//! ```
//!
//! - [`Outbox::enqueue`] returns only once the message is durably stored (see the table
//!   below), so an HTTP `202 Accepted` sent after it never loses the message. With an
//!   idempotency key, the same (tenant, key) returns the first message's id with
//!   `duplicate: true` and stores nothing, also when the requests race.
//! - [`Outbox::claim`] hands a worker up to `max` *due* messages — queued ones whose
//!   `not_before` has passed, and in-flight ones whose lease has expired because their worker
//!   died — skipping tenants paused by [`Outbox::pause_tenant`]. Claiming leases the message to
//!   the worker for `lease`; nobody else gets it during that time. Every claim counts as an
//!   attempt ([`Claimed::attempts`] includes it).
//! - The worker then settles the message: [`Outbox::complete`] with [`Outcome::Delivered`] or
//!   [`Outcome::Failed`] (final: the message leaves the queue and its outcome stays readable
//!   through [`Outbox::status`]), or [`Outbox::retry`] (back in the queue, due at
//!   `not_before`; for retryable errors and pauses).
//! - If the worker never settles it (crash, hang, lost connection), the lease expires and a
//!   later claim hands the message out again.
//!
//! Delivery is therefore **at least once**: a message is never lost once `enqueue` has
//! returned, but it is sent twice if a worker delivers it and dies (or overruns its lease)
//! before `complete` is stored. Leases should comfortably exceed the longest send a worker
//! can make (its timeouts included). The first final outcome wins: a late `complete` or
//! `retry` for a message that is already final changes nothing and returns
//! [`Ack::AlreadyFinal`]. Settling carries no lease token, so a worker whose lease expired can
//! still settle a message that another worker has taken over in the meantime; at worst this
//! sends it once more, it never loses it.
//!
//! The same holds when a reply is lost: the messages of a claim whose reply never reached the
//! worker stay leased until the lease ends, then they are handed out again; a
//! `complete` that failed with [`StoreError::Unavailable`] can simply be repeated
//! ([`Ack::AlreadyFinal`] with the same state then means the first attempt had been applied).
//!
//! Final messages keep their state (not their payload, which is dropped at completion) until
//! [`Outbox::purge_finished`] removes them; their idempotency keys are reserved until then, so
//! the deduplication window is the retention the host chooses.
//!
//! # Guarantees per backend
//!
//! | | [`SqliteOutbox`] | [`RedisOutbox`] |
//! |---|---|---|
//! | `enqueue` returns after | the commit, with `synchronous=FULL` (the WAL is synced): survives a power loss | the write is in the server's memory: survives what the server's persistence survives (`appendonly yes` + `appendfsync always` for a power loss; replication for losing the machine) |
//! | atomicity | every operation is one `BEGIN IMMEDIATE` transaction: atomic across connections and processes on the machine | every operation is one Lua script: atomic across every client of the server |
//! | `enqueue_many` | all or nothing | all or nothing |
//! | idempotency | unique index on (tenant, key), checked inside the transaction | `SET NX` of the key in the same script as the `XADD` |
//! | a failed call (`StoreError::Unavailable`) | wrote nothing | may or may not have been applied (never partially): retry an enqueue with its idempotency key |
//! | clock | the host's (leases, `not_before` and pauses compare with this machine's time) | the Redis server's `TIME` for "now" and leases, so workers' clock skew does not matter; `not_before` and pause ends are the caller's clock |
//! | many workers | any number of instances and processes on one file; claims serialise on the file's write lock | any number of hosts |
//!
//! # Ids
//!
//! Message ids are ULIDs (the `ulid` crate): 26 characters of Crockford base-32, 48 bits of
//! milliseconds since the Unix epoch then 80 random bits (incremented instead within one
//! process when the clock has not moved on), so they sort by creation time (exactly within a
//! process, roughly across hosts), are safe in URLs and never repeat in practice. Any other
//! string is not an id: [`Outbox::status`] answers `None` for it without asking the backend.
//!
//! # Use from the server
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use wxnotify_store::outbox::{Ack, Outbox, Outcome, SharedOutbox, SqliteOutbox, State};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), wxnotify_store::StoreError> {
//! let outbox: SharedOutbox = Arc::new(SqliteOutbox::open_in_memory()?);
//!
//! // POST /v1/acme/notifications with `Idempotency-Key: order-42`
//! let accepted = outbox.enqueue("acme", Some("order-42"), b"{...}").await?;
//! assert!(!accepted.duplicate);
//! let again = outbox.enqueue("acme", Some("order-42"), b"{...}").await?;
//! assert_eq!((again.id.as_str(), again.duplicate), (accepted.id.as_str(), true));
//!
//! // A worker
//! for message in outbox.claim("host-1/worker-0", 16, Duration::from_secs(60)).await? {
//!     // ... call the component with message.payload ...
//!     let ack = outbox
//!         .complete(&message.id, Outcome::Delivered { detail: "msgid 1234".into() })
//!         .await?;
//!     assert_eq!(ack, Ack::Applied);
//! }
//!
//! // GET /v1/acme/notifications/{id}: the server must check the tenant itself.
//! let status = outbox.status(&accepted.id).await?.filter(|s| s.tenant == "acme");
//! assert_eq!(status.map(|s| s.state), Some(State::Delivered));
//!
//! // Housekeeping, e.g. hourly: forget outcomes older than a week.
//! let week_ago = SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
//! outbox.purge_finished(week_ago, 1000).await?;
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{MAX_BATCH_LEN, MAX_KEY_LEN, MAX_VALUE_LEN, StoreError, check_len};

mod redis;
mod sqlite;

#[cfg(test)]
mod tests;

// `self::`: a bare `redis` would also name the redis crate.
pub use self::redis::RedisOutbox;
pub use self::sqlite::SqliteOutbox;

/// Where an outbox reads "now": leases, due times, pauses and ids. The default is the system
/// clock (for Redis: the server's `TIME`, so every host of a deployment agrees); tests and
/// simulations set a [`ManualClock`] with `with_clock`, and assert on controlled time
/// instead of real-time windows.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: SystemTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: Mutex::new(start),
        })
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Largest payload [`Outbox::enqueue`] accepts, in bytes (1 MiB, like a key-value value).
pub const MAX_PAYLOAD_LEN: usize = MAX_VALUE_LEN;

/// Largest tenant name, idempotency key and worker name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = MAX_KEY_LEN;

/// Most messages one [`Outbox::enqueue_many`] call may carry.
pub const MAX_ENQUEUE_BATCH: usize = MAX_BATCH_LEN;

/// Most messages one [`Outbox::claim`] hands out; larger requests are clamped to it.
///
/// Bounds how long a claim holds SQLite's write lock or blocks the Redis server.
pub const MAX_CLAIM: usize = 1000;

/// Longest `detail` kept by [`Outbox::complete`] and [`Outbox::retry`], in bytes; longer ones
/// are cut at a character boundary (a worker must never fail to settle a message because an
/// error message was long).
pub const MAX_DETAIL_LEN: usize = 4096;

/// A shareable, type-erased outbox, as the server and its workers hold it.
pub type SharedOutbox = Arc<dyn Outbox>;

/// One message of an [`Outbox::enqueue_many`] batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewMessage<'a> {
    /// The client's idempotency key, unique per tenant (`None`: never deduplicated).
    pub idempotency_key: Option<&'a str>,
    /// What the worker will hand to the component; opaque to the outbox.
    pub payload: &'a [u8],
    /// Whom the message is for, as the caller names it (e.g. `mini:o6_bmjrPTlm6_2sgVt7hMZOPfL2M`):
    /// kept after the payload is dropped, so that [`Outbox::list`] can show and search it.
    pub recipient: Option<&'a str>,
}

/// What [`Outbox::enqueue`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "the id is the only handle on the message"]
pub struct Enqueued {
    /// The message's id: the new one, or the first message's for a duplicate.
    pub id: String,
    /// True if a message with the same (tenant, idempotency key) existed, so nothing was stored.
    pub duplicate: bool,
}

/// A message handed to a worker by [`Outbox::claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The message's id, for [`Outbox::complete`] and [`Outbox::retry`].
    pub id: String,
    /// The tenant that enqueued it.
    pub tenant: String,
    /// The payload as enqueued.
    pub payload: Vec<u8>,
    /// How often the message has been claimed, this claim included (so 1 on the first try).
    pub attempts: u32,
    /// When the message was accepted.
    pub enqueued_at: SystemTime,
}

/// How a message ended, for [`Outbox::complete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The notification was sent.
    Delivered {
        /// What to show in [`MessageState::last_detail`] (e.g. what the delivery returned).
        detail: String,
    },
    /// The notification will never be sent (a permanent error, or the retries are exhausted).
    Failed {
        /// Why, for [`MessageState::last_detail`].
        detail: String,
    },
}

impl Outcome {
    pub(crate) fn state(&self) -> State {
        match self {
            Self::Delivered { .. } => State::Delivered,
            Self::Failed { .. } => State::Failed,
        }
    }

    pub(crate) fn detail(&self) -> &str {
        match self {
            Self::Delivered { detail } | Self::Failed { detail } => detail,
        }
    }
}

/// Where a message is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting to be claimed (possibly not before some time, see
    /// [`MessageState::next_attempt_at`]).
    Queued,
    /// Leased to a worker. Also the state of a message whose worker died, until its lease has
    /// expired and another claim takes it over.
    InFlight,
    /// Final: sent.
    Delivered,
    /// Final: given up.
    Failed,
}

impl State {
    /// Whether the message has left the queue for good.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed)
    }

    /// A lowercase name for APIs and logs: `queued`, `in_flight`, `delivered`, `failed` (also
    /// what the Redis backend stores).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InFlight => "in_flight",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The state named `s` by [`State::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::InFlight, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Outbox::complete`] and [`Outbox::retry`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a message that was already final has not been changed"]
pub enum Ack {
    /// The message was queued or in flight and now has the requested state.
    Applied,
    /// The message was already final (e.g. another worker finished it after this worker's
    /// lease had expired); nothing changed.
    AlreadyFinal(State),
    /// No message has this id (it never existed, or it was purged).
    NotFound,
}

/// A message as [`Outbox::status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageState {
    /// Where the message is.
    pub state: State,
    /// How often it has been claimed.
    pub attempts: u32,
    /// The detail of the last `retry` or `complete`, if any.
    pub last_detail: Option<String>,
    /// The tenant that enqueued it. The server must compare it with the tenant of the request:
    /// ids are not secret enough to stand in for authorisation.
    pub tenant: String,
    /// The idempotency key it was enqueued with.
    pub idempotency_key: Option<String>,
    /// When it was accepted.
    pub enqueued_at: SystemTime,
    /// For a queued message: the earliest time it can be claimed (its `not_before` or the end
    /// of its tenant's pause, whichever is later). `None` in the other states.
    pub next_attempt_at: Option<SystemTime>,
    /// For a final message: when it became final.
    pub finished_at: Option<SystemTime>,
}

/// How many messages wait, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Messages waiting to be claimed, whether due or not (retries waiting for their time and
    /// messages of paused tenants included).
    pub queued: u64,
    /// Messages leased to workers (including those whose lease expired but that nobody has
    /// claimed again yet).
    pub in_flight: u64,
}

/// Most messages one [`Outbox::list`] page holds; larger limits are clamped to it.
pub const MAX_PAGE: usize = 10_000;

/// Most buckets [`Outbox::outcomes`] splits a window into.
pub const MAX_BUCKETS: usize = 1000;

/// Which messages [`Outbox::list`] returns.
#[derive(Clone, Copy, Debug)]
pub struct ListQuery<'a> {
    /// Whose messages.
    pub tenant: &'a str,
    /// Accepted at or after this time.
    pub since: SystemTime,
    /// Accepted before this time.
    pub until: SystemTime,
    /// Only messages in this state (`None`: all).
    pub state: Option<State>,
    /// Only the message with this id, or messages whose recipient contains this text.
    pub search: Option<&'a str>,
    /// Continue after this message (a previous page's [`Page::next`]).
    pub after: Option<&'a PageCursor>,
    /// Most messages in the page (clamped to `1..=`[`MAX_PAGE`]).
    pub limit: usize,
}

/// One message as [`Outbox::list`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedMessage {
    /// Its id.
    pub id: String,
    /// Its recipient, as enqueued.
    pub recipient: Option<String>,
    /// Its state, as [`Outbox::status`] reports it.
    pub status: MessageState,
}

/// A page of [`Outbox::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The messages, newest first.
    pub messages: Vec<ListedMessage>,
    /// Where the next page starts, or `None` when the window holds no more.
    pub next: Option<PageCursor>,
}

/// A position in a tenant's messages ordered by (acceptance time, id), newest first: the
/// last message a page showed. Its text form (`Display`, `FromStr`) is `{millis}.{id}`, for URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCursor {
    /// Milliseconds since the Unix epoch at which that message was accepted.
    pub enqueued_ms: i64,
    /// Its id.
    pub id: String,
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.enqueued_ms, self.id)
    }
}

/// Why a text is not a [`PageCursor`].
#[derive(Debug, thiserror::Error)]
#[error("not a page cursor (`{{millis}}.{{id}}` from a previous page's `next`)")]
pub struct InvalidCursor;

impl std::str::FromStr for PageCursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<Self, InvalidCursor> {
        let (millis, id) = text.split_once('.').ok_or(InvalidCursor)?;
        let enqueued_ms = millis.parse().map_err(|_| InvalidCursor)?;
        if !is_valid_id(id) {
            return Err(InvalidCursor);
        }
        Ok(PageCursor {
            enqueued_ms,
            id: id.to_owned(),
        })
    }
}

/// Messages of one slice of [`Outbox::outcomes`]'s window, by state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Where the slice starts.
    pub start: SystemTime,
    /// Queued, never tried yet.
    pub queued: u64,
    /// Queued again after a failed attempt, waiting for their retry.
    pub retrying: u64,
    /// Leased to a worker.
    pub in_flight: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed for good.
    pub failed: u64,
}

impl Bucket {
    /// Counts `n` messages in `state`, `retried` if they were claimed before.
    pub(crate) fn add(&mut self, state: State, retried: bool, n: u64) {
        let slot = match state {
            State::Queued if retried => &mut self.retrying,
            State::Queued => &mut self.queued,
            State::InFlight => &mut self.in_flight,
            State::Delivered => &mut self.delivered,
            State::Failed => &mut self.failed,
        };
        *slot += n;
    }
}

/// The slices of `[since, until)` in milliseconds: (start, width) with at least 1 ms width;
/// a message at `at` falls into slice `(at - start) / width`.
pub(crate) fn slices(
    since: SystemTime,
    until: SystemTime,
    buckets: usize,
) -> (i64, i64, Vec<Bucket>) {
    let buckets = buckets.clamp(1, MAX_BUCKETS);
    let (start, end) = (to_millis(since), to_millis(until).max(to_millis(since)));
    let count = i64::try_from(buckets).unwrap_or(1);
    let width = ((end - start + count - 1) / count).max(1);
    let slices = (0..count)
        .map(|i| Bucket {
            start: from_millis(start + i * width),
            queued: 0,
            retrying: 0,
            in_flight: 0,
            delivered: 0,
            failed: 0,
        })
        .collect();
    (start, width, slices)
}

/// The page limit asked for, clamped to `1..=`[`MAX_PAGE`].
pub(crate) fn clamp_page(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}

/// The durable queue of notifications, shared by every host of a deployment.
///
/// All methods validate their input before touching storage ([`StoreError::TooLarge`] for
/// oversized tenants, keys, payloads and batches). See the module docs for the semantics and
/// the guarantees of each backend.
#[async_trait::async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Stores one message for `tenant`; returns once it is durably stored.
    ///
    /// With `idempotency_key`, a message already stored for the same (tenant, key) — in any
    /// state, until it is purged — is returned instead (`duplicate: true`) and nothing is
    /// stored; concurrent calls with the same key store exactly one message.
    async fn enqueue(
        &self,
        tenant: &str,
        idempotency_key: Option<&str>,
        payload: &[u8],
    ) -> Result<Enqueued, StoreError> {
        let message = NewMessage {
            idempotency_key,
            payload,
            recipient: None,
        };
        self.enqueue_many(tenant, &[message])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Internal {
                backend: self.name(),
                source: "enqueue_many returned no result".into(),
            })
    }

    /// Stores a batch of messages for `tenant` atomically (all or none); returns one result
    /// per message, in order. A key repeated within the batch stores one message: later
    /// occurrences are duplicates of the first. At most [`MAX_ENQUEUE_BATCH`] messages.
    async fn enqueue_many(
        &self,
        tenant: &str,
        messages: &[NewMessage<'_>],
    ) -> Result<Vec<Enqueued>, StoreError>;

    /// Leases up to `max` (clamped to [`MAX_CLAIM`]) due messages to `worker` for `lease`.
    ///
    /// Due: queued with `not_before` passed, or in flight with an expired lease; never a
    /// message of a tenant paused now. Messages come roughly in the order they became due
    /// (FIFO for a tenant that enqueues and never retries). An empty result means nothing is
    /// due now; a result shorter than `max` does not promise the queue is empty.
    ///
    /// `worker` names the claimant in the backend's records (for Redis, the consumer-group
    /// consumer): give each worker a stable name, e.g. `{hostname}/{index}`. `lease` is rounded
    /// to whole milliseconds, at least one.
    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Makes a queued or in-flight message final with `outcome`; it leaves the queue, its
    /// payload is dropped and its state stays readable until purged.
    async fn complete(&self, id: &str, outcome: Outcome) -> Result<Ack, StoreError>;

    /// Puts a queued or in-flight message back in the queue, due at `not_before` (or at the end
    /// of its tenant's pause, if later); a time in the past makes it due at once. `detail`
    /// becomes [`MessageState::last_detail`].
    async fn retry(
        &self,
        id: &str,
        not_before: SystemTime,
        detail: &str,
    ) -> Result<Ack, StoreError>;

    /// The message's state, or `None` if no message has this id.
    async fn status(&self, id: &str) -> Result<Option<MessageState>, StoreError>;

    /// Queued and in-flight messages of `tenant`, or of every tenant for `None`.
    async fn depth(&self, tenant: Option<&str>) -> Result<Depth, StoreError>;

    /// A page of `query.tenant`'s messages accepted in `[query.since, query.until)`, newest
    /// first, in every state (final ones until they are purged), optionally filtered by state
    /// and searched by id or recipient. [`Page::next`] continues after the page's last message;
    /// a page shorter than the limit may still have a `next` (a backend may bound the work of
    /// one call), and only `next: None` says the window is exhausted.
    async fn list(&self, query: &ListQuery<'_>) -> Result<Page, StoreError>;

    /// `tenant`'s messages accepted in `[since, until)` counted by state, in `buckets` equal
    /// slices of the window (clamped to `1..=`[`MAX_BUCKETS`]), oldest first.
    async fn outcomes(
        &self,
        tenant: &str,
        since: SystemTime,
        until: SystemTime,
        buckets: usize,
    ) -> Result<Vec<Bucket>, StoreError>;

    /// Claims skip `tenant`'s messages until `until` (e.g. when a daily quota the tenant spent
    /// resets). A later call replaces the pause, so it can be extended or
    /// shortened; a time in the past lifts it. Messages already in flight are not recalled.
    async fn pause_tenant(&self, tenant: &str, until: SystemTime) -> Result<(), StoreError>;

    /// Removes up to `max` (clamped to [`MAX_CLAIM`]) final messages that became final before
    /// `finished_before`, oldest first, releasing their idempotency keys; returns how many it
    /// removed (call again while it returns `max`).
    async fn purge_finished(
        &self,
        finished_before: SystemTime,
        max: usize,
    ) -> Result<usize, StoreError>;

    /// Short name for logs and errors ("sqlite", "redis").
    fn name(&self) -> &'static str;
}

/// Milliseconds since the Unix epoch; times before it count as 0, times too far ahead as
/// `i64::MAX`.
pub(crate) fn to_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The inverse of [`to_millis`] (negative values count as the epoch).
pub(crate) fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// A lease in whole milliseconds, at least one (a zero lease would hand the message out again
/// at once).
pub(crate) fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// A new message id for a message created at `now` (see the module docs): a ULID, 26
/// characters of Crockford's base 32 (no I, L, O, U, so ids survive being read aloud or
/// retyped), its first ten the time.
///
/// Within one process, ids increase (the `ulid` generator's monotonic mode: an id of the same
/// millisecond as the last, or of an earlier one after the clock stepped back, is the last plus
/// one), so that messages a process creates sort in creation order; the Redis backend relies on
/// that to keep a paused tenant's messages in order.
pub(crate) fn new_id(now: SystemTime) -> String {
    static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    // Only the generator's last id is guarded; a panic cannot leave it half-written.
    let mut generator = GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
    generator
        .generate_from_datetime(now)
        // 2^80 ids in one millisecond would be needed to run out of monotonic ones.
        .unwrap_or_else(|_| ulid::Ulid::from_datetime(now))
        .to_string()
}

/// Whether `id` has the shape of an id made by [`new_id`] (canonical: upper case).
pub(crate) fn is_valid_id(id: &str) -> bool {
    ulid::Ulid::from_string(id).is_ok_and(|ulid| ulid.to_string() == id)
}

/// `detail` cut to at most [`MAX_DETAIL_LEN`] bytes at a character boundary.
pub(crate) fn truncate_detail(detail: &str) -> &str {
    &detail[..detail.floor_char_boundary(MAX_DETAIL_LEN)]
}

/// Rejects an oversized tenant name.
pub(crate) fn check_tenant(tenant: &str) -> Result<(), StoreError> {
    check_len("tenant", tenant.len(), MAX_NAME_LEN)
}

/// Rejects an oversized recipient in a batch.
fn check_recipient(recipient: Option<&str>) -> Result<(), StoreError> {
    recipient.map_or(Ok(()), |r| check_len("recipient", r.len(), MAX_NAME_LEN))
}

/// Rejects an oversized worker name.
pub(crate) fn check_worker(worker: &str) -> Result<(), StoreError> {
    check_len("worker", worker.len(), MAX_NAME_LEN)
}

/// Rejects an `enqueue_many` batch that is too long or holds an oversized key or payload,
/// before anything is written.
pub(crate) fn check_batch(tenant: &str, messages: &[NewMessage<'_>]) -> Result<(), StoreError> {
    check_tenant(tenant)?;
    check_len("batch", messages.len(), MAX_ENQUEUE_BATCH)?;
    messages.iter().try_for_each(|message| {
        if let Some(key) = message.idempotency_key {
            check_len("idempotency key", key.len(), MAX_NAME_LEN)?;
        }
        check_recipient(message.recipient)?;
        check_len("payload", message.payload.len(), MAX_PAYLOAD_LEN)
    })
}

/// The number of messages a `claim` or `purge_finished` asked for, clamped to [`MAX_CLAIM`].
pub(crate) fn clamp_max(max: usize) -> usize {
    max.min(MAX_CLAIM)
}
