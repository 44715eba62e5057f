//! The outbox on a Redis server, shared by every host of a deployment.
//!
//! Layout, with `{o}` standing for `{prefix}wxnotify:outbox`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{o}` | stream, consumer group `workers` | one entry `id → {message id}` per message that is due (undelivered entries) or leased (the group's pending entries) |
//! | `{o}:msg:{id}` | hash | the message: `tenant`, `key`, `payload`, `state`, `attempts`, `detail`, `enqueued_at`, `not_before`, `entry` (its stream entry), `worker`, `lease_until`, `finished_at` |
//! | `{o}:idem:{len(tenant)}:{tenant}:{key}` | string | the id of the message enqueued with that idempotency key |
//! | `{o}:delayed` | sorted set | queued messages that are not due yet, scored by when they will be (retries, paused tenants) |
//! | `{o}:leases` | sorted set | in-flight messages, scored by the end of their lease |
//! | `{o}:paused` | hash | tenant → end of its pause |
//! | `{o}:parked:{len(tenant)}:{tenant}` | set | messages held back by the tenant's pause, so that changing the pause can reschedule them |
//! | `{o}:depth` | hash | counters `q`, `f` (queued, in flight) and `q:{tenant}`, `f:{tenant}` |
//! | `{o}:finished` | sorted set | final messages, scored by when they became final, for `purge_finished` |
//! | `{o}:time:{len(tenant)}:{tenant}` | sorted set | the tenant's messages, scored by when they were accepted, for `list` and `outcomes` |
//!
//! Times are milliseconds since the Unix epoch. "Now" is the server's `TIME`, so leases mean
//! the same to every host whatever their clocks say (or the caller's [`Clock`](super::Clock)
//! when one is set with `with_clock`).
//!
//! The queue is only as durable as the server: run it with its append-only file on
//! (`appendonly yes`; `appendfsync always` to lose nothing acknowledged on a crash).
//!
//! Every operation is one Lua script, which Redis runs without interleaving any other client,
//! so every operation is atomic across all hosts:
//!
//! - `enqueue_many`: per message, `SET NX` of the idempotency key (a duplicate reads the
//!   existing id instead), `HSET` of the message, `XADD` to the stream (or, while its tenant is
//!   paused, `ZADD` to `delayed`). Ids are made by the client; the script checks all of them
//!   for collisions before its first write, so a batch is stored whole or not at all.
//! - `claim`: moves due members of `delayed` into the stream; takes over messages whose lease
//!   ended (`XCLAIM` of their pending entry to the claiming consumer — driven by the `leases`
//!   set rather than `XAUTOCLAIM`, so that the lease a message was claimed with, not the lease
//!   of whoever claims next, decides when it expires); then reads new entries with
//!   `XREADGROUP`. Entries of paused tenants are acknowledged and parked in `delayed` until the
//!   pause ends.
//! - `complete` / `retry`: `XACK` and `XDEL` of the message's entry, then the final state (and
//!   `finished`) or a new entry / `delayed` member.
//!
//! Stream entries are deleted once acknowledged, so the stream holds only live messages. The
//! consumer group remembers every worker name it has seen (an empty consumer costs a few
//! bytes), which is why workers should have stable names. Deleting keys by hand is not
//! survivable in general: if the group is deleted, the next claim recreates it and the entries
//! still in the stream are delivered again; if the stream itself is deleted, queued messages
//! lose their entries and are not claimed any more (in-flight ones still come back through
//! `leases`).
//! Scripts compute most key names from the prefix, so this needs a standalone Redis (or a
//! primary with replicas), not Redis Cluster.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use ::redis::{Script, Value, cmd};

use super::{
    Ack, Bucket, Claimed, Clock, Depth, Enqueued, ListQuery, ListedMessage, MessageState,
    NewMessage, Outbox, Outcome, Page, PageCursor, State, check_batch, check_tenant, check_worker,
    clamp_max, clamp_page, from_millis, is_valid_id, lease_millis, new_id, slices, to_millis,
    truncate_detail,
};
use crate::redis::{BACKEND, internal, reply_items as items};
use crate::{RedisBackend, StoreError};

/// What every key name contains after the deployment prefix.
const NAMESPACE: &str = "wxnotify:outbox";

/// Most `delayed` members one claim moves into the stream, so that a claim stays short even
/// when a whole backlog becomes due at once (say, at the end of a big tenant's pause); the
/// rest follow with the next claims.
const MOVE_LIMIT: usize = 1000;

/// Most stream entries one claim looks at, paused or stale ones included, for the same reason.
const SCAN_LIMIT: usize = 2000;

/// Most messages one `list` call looks at, filtered-out ones included, so that a search in a
/// large window does not block the server for long: the page is then short and has a `next`.
const LIST_SCAN_LIMIT: usize = 50_000;

/// Definitions every script starts with. `KEYS[1]` is always `{prefix}wxnotify:outbox`.
const LIBRARY: &str = r"
local base = KEYS[1]
local stream = base
local group = 'workers'
local delayed = base .. ':delayed'
local leases = base .. ':leases'
local paused = base .. ':paused'
local depth = base .. ':depth'
local finished = base .. ':finished'

local function msg_key(id) return base .. ':msg:' .. id end
-- Length-prefixed tenants, so that no tenant or key can make its name equal another's.
local function parked_key(tenant) return base .. ':parked:' .. #tenant .. ':' .. tenant end
local function time_key(tenant) return base .. ':time:' .. #tenant .. ':' .. tenant end
local function idem_key(tenant, key)
  return base .. ':idem:' .. #tenant .. ':' .. tenant .. ':' .. key
end

-- Integers as decimal strings (tostring would switch to exponents for large numbers).
local function int(x) return string.format('%d', x) end

-- The server's clock, unless the caller's clock is given as the last argument (`with_clock`).
local function now_ms()
  local given = ARGV[#ARGV]
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The end of the tenant's pause if it lasts beyond now, else nil.
local function pause_of(tenant, now)
  local ends = tonumber(redis.call('HGET', paused, tenant))
  if ends and ends > now then return ends end
  return nil
end

-- Adjusts a depth counter, total and per tenant; per-tenant counters that reach zero go, so
-- that tenants who stopped sending leave nothing behind.
local function count(field, tenant, delta)
  redis.call('HINCRBY', depth, field, delta)
  local per_tenant = field .. ':' .. tenant
  if redis.call('HINCRBY', depth, per_tenant, delta) == 0 then
    redis.call('HDEL', depth, per_tenant)
  end
end

-- The consumer group, created with the stream if either is missing (a fresh deployment, or
-- someone deleted the key), reading from the start so that no entry is skipped.
local function ensure_group()
  if redis.call('EXISTS', stream) == 1 then
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      for i = 1, #info, 2 do
        if info[i] == 'name' and info[i + 1] == group then return end
      end
    end
  end
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end

-- Removes the message's stream entry, acknowledging it if it was pending.
local function drop_entry(m)
  local entry = redis.call('HGET', m, 'entry')
  if entry then
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    redis.call('HDEL', m, 'entry')
  end
end

-- For complete and retry: takes the message out of the queue (its stream entry, lease, delayed
-- slot and parking) if it is queued or in flight. Returns its state and tenant, or nil and the
-- script's reply when there is no such message or it is already final.
local function unqueue(id, m)
  local f = redis.call('HMGET', m, 'state', 'tenant')
  if not f[1] then return nil, {0} end
  if f[1] ~= 'queued' and f[1] ~= 'in_flight' then return nil, {1, f[1]} end
  ensure_group()
  drop_entry(m)
  redis.call('ZREM', leases, id)
  redis.call('ZREM', delayed, id)
  redis.call('SREM', parked_key(f[2]), id)
  return f
end

-- Queues a message (already in state queued, without an entry) to become due at not_before,
-- or at the end of its tenant's pause if that is later: into the stream if that is now, else
-- into `delayed`.
local function schedule(id, m, tenant, not_before, now)
  local due = not_before
  local pause = pause_of(tenant, now)
  if pause then
    redis.call('SADD', parked_key(tenant), id)
    if pause > due then due = pause end
  end
  if due <= now then
    redis.call('HSET', m, 'entry', redis.call('XADD', stream, '*', 'id', id))
  else
    redis.call('ZADD', delayed, int(due), id)
  end
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{LIBRARY}{body}"))
}

/// ARGV: tenant, count, then per message: id, `1`/`0` (has a key), key, payload, recipient
/// (empty: none).
/// Returns per message `{0, id}` (stored) or `{1, existing id}` (duplicate).
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local tenant, n = ARGV[1], tonumber(ARGV[2])
-- Every check before the first write: Redis does not roll back a script that fails midway.
for i = 0, n - 1 do
  if redis.call('EXISTS', msg_key(ARGV[3 + i * 5])) == 1 then
    return redis.error_reply('ERR wxnotify outbox: message id collision')
  end
end
ensure_group()
local now = now_ms()
local results = {}
for i = 0, n - 1 do
  local at = 3 + i * 5
  local id, has_key, key, payload = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local recipient = ARGV[at + 4]
  local existing = false
  if has_key == '1' then
    local ik = idem_key(tenant, key)
    if not redis.call('SET', ik, id, 'NX') then existing = redis.call('GET', ik) end
  end
  if existing then
    results[#results + 1] = {1, existing}
  else
    local m = msg_key(id)
    redis.call('HSET', m, 'tenant', tenant, 'payload', payload, 'state', 'queued',
      'attempts', 0, 'enqueued_at', int(now), 'not_before', int(now))
    if has_key == '1' then redis.call('HSET', m, 'key', key) end
    if recipient ~= '' then redis.call('HSET', m, 'recipient', recipient) end
    redis.call('ZADD', time_key(tenant), int(now), id)
    count('q', tenant, 1)
    schedule(id, m, tenant, now, now)
    results[#results + 1] = {0, id}
  end
end
return results
",
    )
});

/// ARGV: worker, max, lease (ms), move limit, scan limit.
/// Returns `{id, tenant, payload, attempts, enqueued_at}` per claimed message.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local worker, max, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local move_limit, scan_limit = tonumber(ARGV[4]), tonumber(ARGV[5])
ensure_group()
local now = now_ms()
local lease_end = now + lease
local claimed = {}

-- Leases the message (whose entry is pending for this worker) to the worker.
local function take(id, m, tenant)
  local attempts = redis.call('HINCRBY', m, 'attempts', 1)
  redis.call('HSET', m, 'state', 'in_flight', 'worker', worker, 'lease_until', int(lease_end))
  redis.call('ZADD', leases, int(lease_end), id)
  local f = redis.call('HMGET', m, 'payload', 'enqueued_at')
  claimed[#claimed + 1] = {id, tenant, f[1], attempts, f[2]}
end

-- 1. Delayed messages that are due now join the stream (or stay parked if still paused).
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', int(now), 'LIMIT', 0, move_limit)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  local m = msg_key(id)
  local f = redis.call('HMGET', m, 'state', 'tenant', 'not_before')
  if f[1] == 'queued' then
    redis.call('SREM', parked_key(f[2]), id)
    schedule(id, m, f[2], tonumber(f[3]), now)
  end
end

-- 2. Messages whose lease ended (their worker died or overran): oldest first.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', int(now), 'LIMIT', 0, max)) do
  local m = msg_key(id)
  local f = redis.call('HMGET', m, 'state', 'tenant', 'not_before', 'entry')
  if f[1] ~= 'in_flight' then
    redis.call('ZREM', leases, id)
  else
    local moved = false
    if f[4] and not pause_of(f[2], now) then
      moved = #redis.call('XCLAIM', stream, group, worker, 0, f[4], 'JUSTID') == 1
    end
    if moved then
      take(id, m, f[2])
    else
      -- Paused tenant, or the pending entry is gone (the group was recreated): back to the
      -- queue, which parks it or gives it a fresh entry.
      redis.call('ZREM', leases, id)
      drop_entry(m)
      redis.call('HSET', m, 'state', 'queued')
      redis.call('HDEL', m, 'worker', 'lease_until')
      count('f', f[2], -1)
      count('q', f[2], 1)
      schedule(id, m, f[2], tonumber(f[3]), now)
    end
  end
end

-- 3. New entries, in stream order.
local scanned = 0
while #claimed < max and scanned < scan_limit do
  local reply = redis.call('XREADGROUP', 'GROUP', group, worker, 'COUNT', max - #claimed,
    'STREAMS', stream, '>')
  if not reply or #reply[1][2] == 0 then break end
  for _, e in ipairs(reply[1][2]) do
    scanned = scanned + 1
    local entry, id = e[1], e[2][2]
    local f = false
    if type(id) == 'string' then
      f = redis.call('HMGET', msg_key(id), 'state', 'tenant', 'not_before', 'entry')
    end
    if not f or f[1] ~= 'queued' or f[4] ~= entry then
      -- Not the message's current entry (it was settled or rescheduled meanwhile): drop it.
      redis.call('XACK', stream, group, entry)
      redis.call('XDEL', stream, entry)
    elseif pause_of(f[2], now) then
      local m = msg_key(id)
      drop_entry(m)
      schedule(id, m, f[2], tonumber(f[3]), now)
    else
      count('q', f[2], -1)
      count('f', f[2], 1)
      take(id, msg_key(id), f[2])
    end
  end
end
return claimed
",
    )
});

/// ARGV: id, final state, detail. Returns `{2}` (applied), `{1, state}` (already final) or
/// `{0}` (no such message).
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id, final, detail = ARGV[1], ARGV[2], ARGV[3]
local m = msg_key(id)
local f, reply = unqueue(id, m)
if not f then return reply end
local now = now_ms()
if f[1] == 'in_flight' then count('f', f[2], -1) else count('q', f[2], -1) end
redis.call('HSET', m, 'state', final, 'detail', detail, 'finished_at', int(now))
redis.call('HDEL', m, 'payload', 'worker', 'lease_until', 'not_before')
redis.call('ZADD', finished, int(now), id)
return {2}
",
    )
});

/// ARGV: id, not_before (ms), detail. Replies like [`COMPLETE`].
static RETRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id, not_before, detail = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local m = msg_key(id)
local f, reply = unqueue(id, m)
if not f then return reply end
local now = now_ms()
if f[1] == 'in_flight' then
  count('f', f[2], -1)
  count('q', f[2], 1)
end
redis.call('HSET', m, 'state', 'queued', 'detail', detail, 'not_before', int(not_before))
redis.call('HDEL', m, 'worker', 'lease_until')
schedule(id, m, f[2], not_before, now)
return {2}
",
    )
});

/// ARGV: id. Returns nil, or `{tenant, state, attempts, detail, key, enqueued_at, not_before,
/// finished_at, end of the tenant's pause}` (absent fields nil): the tenant, then the fields
/// of [`message_state`].
static STATUS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local f = redis.call('HMGET', msg_key(ARGV[1]), 'tenant', 'state', 'attempts', 'detail', 'key',
  'enqueued_at', 'not_before', 'finished_at')
if not f[2] then return false end
f[9] = false
if f[2] == 'queued' then f[9] = redis.call('HGET', paused, f[1]) end
return f
",
    )
});

/// The fields of a message that `list` reads, in the order of its rows.
const LISTED_FIELDS: &str = "'recipient', 'state', 'attempts', 'detail', 'key', 'enqueued_at', \
     'not_before', 'finished_at'";

/// ARGV: tenant, since, until (ms, exclusive), state (empty: any), search (empty: none), cursor
/// millis and id (empty: none), limit, scan limit. Returns `{next millis, next id}` (both empty
/// when the window is exhausted) followed by one row per message: `{id, recipient, state,
/// attempts, detail, key, enqueued_at, not_before, finished_at, end of the tenant's pause}`.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        r"
local tenant, since, before = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local state, search = ARGV[4], ARGV[5]
local after_ms, after_id = tonumber(ARGV[6]), ARGV[7]
local limit, scan_limit = tonumber(ARGV[8]), tonumber(ARGV[9])
local tk = time_key(tenant)
local pause = redis.call('HGET', paused, tenant)
-- Newest first from the cursor's millisecond (inclusive: messages of one batch share it, and
-- the ids already shown are skipped below) or from the end of the window (exclusive).
local max = '(' .. int(before)
if after_ms and after_ms < before then max = int(after_ms) end
local rows, scanned, offset, exhausted = {{}}, 0, 0, false
local last_ms, last_id = '', ''
while #rows < limit and scanned < scan_limit do
  local chunk = redis.call('ZREVRANGEBYSCORE', tk, max, int(since), 'WITHSCORES', 'LIMIT',
    offset, 1000)
  if #chunk == 0 then exhausted = true break end
  offset = offset + #chunk / 2
  for i = 1, #chunk, 2 do
    local id, ms = chunk[i], tonumber(chunk[i + 1])
    if not (after_ms and ms == after_ms and id >= after_id) then
      scanned = scanned + 1
      last_ms, last_id = int(ms), id
      local f = redis.call('HMGET', msg_key(id), {LISTED_FIELDS})
      local matches = f[2] and (state == '' or f[2] == state)
      if matches and search ~= '' then
        matches = id == search or (f[1] and string.find(f[1], search, 1, true) ~= nil)
      end
      if matches then
        local p = false
        if f[2] == 'queued' then p = pause end
        rows[#rows + 1] = {{id, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], p}}
      end
      if #rows >= limit or scanned >= scan_limit then break end
    end
  end
end
if exhausted then last_ms, last_id = '', '' end
local reply = {{last_ms, last_id}}
for _, row in ipairs(rows) do reply[#reply + 1] = row end
return reply
"
    ))
});

/// ARGV: tenant, start, end (ms, exclusive), slice width (ms), slices. Returns five counts per
/// slice — queued, retrying, in flight, delivered, failed — slice after slice.
static OUTCOMES: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local tenant, start, stop = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local width, slices = tonumber(ARGV[4]), tonumber(ARGV[5])
local counts = {}
for i = 1, slices * 5 do counts[i] = 0 end
local column = {queued = 1, in_flight = 3, delivered = 4, failed = 5}
local offset = 0
while true do
  local chunk = redis.call('ZRANGEBYSCORE', time_key(tenant), int(start), '(' .. int(stop),
    'WITHSCORES', 'LIMIT', offset, 1000)
  if #chunk == 0 then break end
  offset = offset + #chunk / 2
  for i = 1, #chunk, 2 do
    local f = redis.call('HMGET', msg_key(chunk[i]), 'state', 'attempts')
    local c = column[f[1]]
    if c then
      if c == 1 and tonumber(f[2]) > 0 then c = 2 end
      local slice = math.floor((tonumber(chunk[i + 1]) - start) / width)
      if slice < slices then
        local at = slice * 5 + c
        counts[at] = counts[at] + 1
      end
    end
  end
end
return counts
",
    )
});

/// ARGV: tenant, end of the pause (ms).
static PAUSE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local tenant, ends = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
if ends > now then
  redis.call('HSET', paused, tenant, int(ends))
else
  redis.call('HDEL', paused, tenant)
end
-- Parked messages become due at their own not_before or the new end, whichever is later
-- (past times: the next claim moves them into the stream).
local pk = parked_key(tenant)
for _, id in ipairs(redis.call('SMEMBERS', pk)) do
  local f = redis.call('HMGET', msg_key(id), 'state', 'not_before')
  if f[1] == 'queued' and redis.call('ZSCORE', delayed, id) then
    local due = tonumber(f[2])
    if ends > due then due = ends end
    redis.call('ZADD', delayed, int(due), id)
  else
    redis.call('SREM', pk, id)
  end
end
return 0
",
    )
});

/// ARGV: finished before (ms), max. Returns how many messages it removed.
static PURGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local before, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', finished, '-inf', '(' .. int(before), 'LIMIT', 0, max)
for _, id in ipairs(ids) do
  local m = msg_key(id)
  local f = redis.call('HMGET', m, 'tenant', 'key')
  if f[1] and f[2] then
    local ik = idem_key(f[1], f[2])
    -- Only our own reservation: the key may have been taken over since (it cannot, while the
    -- message exists, but deleting someone else's would silently allow a duplicate).
    if redis.call('GET', ik) == id then redis.call('DEL', ik) end
  end
  if f[1] then redis.call('ZREM', time_key(f[1]), id) end
  redis.call('DEL', m)
  redis.call('ZREM', finished, id)
end
return #ids
",
    )
});

/// An [`Outbox`] on a Redis server (see the module docs of [`crate::outbox`] for the
/// guarantees).
///
/// It shares the connection, the deployment prefix and the error handling of the
/// [`RedisBackend`] it is made from. Cloning is cheap. Any number of instances on any number of
/// hosts may use the same server and prefix at the same time. Tested with Redis 7.0 (the
/// commands it uses all exist since 5.0); standalone or primary/replica, not Cluster.
///
/// ```no_run
/// use std::sync::Arc;
/// use wxnotify_store::RedisBackend;
/// use wxnotify_store::outbox::{RedisOutbox, SharedOutbox};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), wxnotify_store::StoreError> {
/// let backend = RedisBackend::connect("redis://10.0.0.5:6379/0")
///     .await?
///     .with_prefix("prod:");
/// let outbox: SharedOutbox = Arc::new(RedisOutbox::new(backend));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RedisOutbox {
    backend: RedisBackend,
    /// `{prefix}wxnotify:outbox`: the stream, and the start of every other key name.
    base: Arc<str>,
    /// `None`: the server's `TIME`.
    clock: Option<Arc<dyn Clock>>,
}

impl RedisOutbox {
    /// The outbox of `backend`'s deployment (its prefix), over `backend`'s connection.
    ///
    /// Nothing is sent to the server until the first operation, which creates the stream and
    /// the consumer group if they are missing.
    pub fn new(backend: RedisBackend) -> Self {
        let base = format!("{}{NAMESPACE}", backend.prefix()).into();
        Self {
            backend,
            base,
            clock: None,
        }
    }

    /// This outbox reading "now" from `clock` instead of the server's `TIME` (see [`Clock`]):
    /// every instance of a deployment must then share it.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    fn now(&self) -> SystemTime {
        self.clock
            .as_ref()
            .map_or_else(SystemTime::now, |clock| clock.now())
    }

    /// The name of the stream (the other keys' names start with it).
    #[cfg(test)]
    pub(crate) fn stream_name(&self) -> &str {
        &self.base
    }

    async fn run(&self, script: &Script, args: &[&[u8]]) -> Result<Value, StoreError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(&*self.base);
        for arg in args {
            invocation.arg(*arg);
        }
        // Always last, read by the scripts' `now_ms`: empty for the server's clock.
        let now = match &self.clock {
            Some(clock) => to_millis(clock.now()).to_string(),
            None => String::new(),
        };
        invocation.arg(now);
        self.backend.invoke(&invocation).await
    }

    /// `complete` and `retry`: runs `script` (`COMPLETE` or `RETRY`, whose arguments are the
    /// id, `value` and the detail) and says what it did.
    async fn settle(
        &self,
        script: &Script,
        id: &str,
        value: &str,
        detail: &str,
    ) -> Result<Ack, StoreError> {
        if !is_valid_id(id) {
            return Ok(Ack::NotFound);
        }
        let detail = truncate_detail(detail);
        let args = [id.as_bytes(), value.as_bytes(), detail.as_bytes()];
        let reply = self.run(script, &args).await?;
        match items(reply)?.as_slice() {
            [Value::Int(2)] => Ok(Ack::Applied),
            [Value::Int(0)] => Ok(Ack::NotFound),
            [Value::Int(1), state] => Ok(Ack::AlreadyFinal(parse_state(state)?)),
            _ => Err(internal("unexpected reply from an outbox script")),
        }
    }
}

/// Data in the store that this crate would not have written.
fn corrupt(what: &'static str) -> StoreError {
    StoreError::Corrupt {
        backend: BACKEND,
        source: what.into(),
    }
}

fn bytes(value: Value) -> Result<Vec<u8>, StoreError> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(text) => Ok(text.into_bytes()),
        _ => Err(corrupt("an outbox field is missing or not a string")),
    }
}

fn text(value: Value) -> Result<String, StoreError> {
    String::from_utf8(bytes(value)?).map_err(|_| corrupt("an outbox field is not UTF-8"))
}

/// Whether a script returned "nothing" here: Lua's `false` is a nil reply in RESP2 but a
/// boolean in RESP3 (if the URL asks for RESP3).
fn is_nil(value: &Value) -> bool {
    matches!(value, Value::Nil | Value::Boolean(false))
}

fn optional_text(value: Value) -> Result<Option<String>, StoreError> {
    if is_nil(&value) {
        return Ok(None);
    }
    text(value).map(Some)
}

fn number(value: Value) -> Result<i64, StoreError> {
    match value {
        Value::Int(n) => Ok(n),
        value => text(value)?
            .parse()
            .map_err(|_| corrupt("an outbox field is not an integer")),
    }
}

fn optional_number(value: Value) -> Result<Option<i64>, StoreError> {
    if is_nil(&value) {
        return Ok(None);
    }
    number(value).map(Some)
}

fn count(value: Value) -> Result<u32, StoreError> {
    u32::try_from(number(value)?).map_err(|_| corrupt("an attempt count is out of range"))
}

fn parse_state(value: &Value) -> Result<State, StoreError> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().and_then(State::parse),
        _ => None,
    }
    .ok_or_else(|| corrupt("an outbox message has an unknown state"))
}

/// A script's row: `head` leading values, then the eight fields of [`message_state`].
fn split_row(
    row: Value,
    head: usize,
    unexpected: &'static str,
) -> Result<(Vec<Value>, [Value; 8]), StoreError> {
    let mut values = items(row)?;
    if values.len() != head + 8 {
        return Err(internal(unexpected));
    }
    let fields =
        <[Value; 8]>::try_from(values.split_off(head)).map_err(|_| internal(unexpected))?;
    Ok((values, fields))
}

/// A message's state from its hash fields `state, attempts, detail, key, enqueued_at,
/// not_before, finished_at` and the end of its tenant's pause.
fn message_state(tenant: String, fields: [Value; 8]) -> Result<MessageState, StoreError> {
    let [
        state,
        attempts,
        detail,
        key,
        enqueued_at,
        not_before,
        finished_at,
        pause_end,
    ] = fields;
    let state = parse_state(&state)?;
    let next_attempt_at = match state {
        State::Queued => {
            let not_before = optional_number(not_before)?.unwrap_or(0);
            let pause_end = optional_number(pause_end)?.unwrap_or(0);
            Some(from_millis(not_before.max(pause_end)))
        }
        _ => None,
    };
    Ok(MessageState {
        state,
        attempts: count(attempts)?,
        last_detail: optional_text(detail)?,
        tenant,
        idempotency_key: optional_text(key)?,
        enqueued_at: from_millis(number(enqueued_at)?),
        next_attempt_at,
        finished_at: optional_number(finished_at)?.map(from_millis),
    })
}

#[async_trait::async_trait]
impl Outbox for RedisOutbox {
    async fn enqueue_many(
        &self,
        tenant: &str,
        messages: &[NewMessage<'_>],
    ) -> Result<Vec<Enqueued>, StoreError> {
        check_batch(tenant, messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let ids: Vec<String> = messages.iter().map(|_| new_id(now)).collect();
        let n = messages.len().to_string();
        let mut args: Vec<&[u8]> = vec![tenant.as_bytes(), n.as_bytes()];
        for (message, id) in messages.iter().zip(&ids) {
            let (has_key, key) = match message.idempotency_key {
                Some(key) => (&b"1"[..], key.as_bytes()),
                None => (&b"0"[..], &b""[..]),
            };
            let recipient = message.recipient.unwrap_or_default().as_bytes();
            args.extend([id.as_bytes(), has_key, key, message.payload, recipient]);
        }
        let reply = self.run(&ENQUEUE, &args).await?;
        let results = items(reply)?
            .into_iter()
            .map(|result| match items(result)?.as_mut_slice() {
                [Value::Int(flag @ (0 | 1)), id] => Ok(Enqueued {
                    id: text(std::mem::replace(id, Value::Nil))?,
                    duplicate: *flag == 1,
                }),
                _ => Err(internal("unexpected reply from the enqueue script")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if results.len() != messages.len() {
            return Err(internal("the enqueue script returned too few results"));
        }
        Ok(results)
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
        let (max, lease) = (max.to_string(), lease_millis(lease).to_string());
        let (move_limit, scan_limit) = (MOVE_LIMIT.to_string(), SCAN_LIMIT.to_string());
        let args: [&[u8]; 5] = [
            worker.as_bytes(),
            max.as_bytes(),
            lease.as_bytes(),
            move_limit.as_bytes(),
            scan_limit.as_bytes(),
        ];
        let reply = self.run(&CLAIM, &args).await?;
        items(reply)?
            .into_iter()
            .map(|message| match <[Value; 5]>::try_from(items(message)?) {
                Ok([id, tenant, payload, attempts, enqueued_at]) => Ok(Claimed {
                    id: text(id)?,
                    tenant: text(tenant)?,
                    payload: bytes(payload)?,
                    attempts: count(attempts)?,
                    enqueued_at: from_millis(number(enqueued_at)?),
                }),
                Err(_) => Err(internal("unexpected reply from the claim script")),
            })
            .collect()
    }

    async fn complete(&self, id: &str, outcome: Outcome) -> Result<Ack, StoreError> {
        let state = outcome.state().as_str();
        self.settle(&COMPLETE, id, state, outcome.detail()).await
    }

    async fn retry(
        &self,
        id: &str,
        not_before: SystemTime,
        detail: &str,
    ) -> Result<Ack, StoreError> {
        let not_before = to_millis(not_before).to_string();
        self.settle(&RETRY, id, &not_before, detail).await
    }

    async fn status(&self, id: &str) -> Result<Option<MessageState>, StoreError> {
        if !is_valid_id(id) {
            return Ok(None);
        }
        let reply = self.run(&STATUS, &[id.as_bytes()]).await?;
        if is_nil(&reply) {
            return Ok(None);
        }
        let (head, fields) = split_row(reply, 1, "unexpected reply from the status script")?;
        let [tenant] = <[Value; 1]>::try_from(head)
            .map_err(|_| internal("unexpected reply from the status script"))?;
        message_state(text(tenant)?, fields).map(Some)
    }

    async fn list(&self, query: &ListQuery<'_>) -> Result<Page, StoreError> {
        check_tenant(query.tenant)?;
        let (since, until) = (
            to_millis(query.since).to_string(),
            to_millis(query.until).to_string(),
        );
        let (after_ms, after_id) = query.after.map_or((String::new(), ""), |cursor| {
            (cursor.enqueued_ms.to_string(), cursor.id.as_str())
        });
        let limit = clamp_page(query.limit).to_string();
        let scan_limit = LIST_SCAN_LIMIT.to_string();
        let args: [&[u8]; 9] = [
            query.tenant.as_bytes(),
            since.as_bytes(),
            until.as_bytes(),
            query.state.map_or("", State::as_str).as_bytes(),
            query.search.unwrap_or_default().as_bytes(),
            after_ms.as_bytes(),
            after_id.as_bytes(),
            limit.as_bytes(),
            scan_limit.as_bytes(),
        ];
        let mut reply = items(self.run(&LIST, &args).await?)?.into_iter();
        let (Some(next_ms), Some(next_id)) = (reply.next(), reply.next()) else {
            return Err(internal("unexpected reply from the list script"));
        };
        let next = match (text(next_ms)?, text(next_id)?) {
            (ms, _) if ms.is_empty() => None,
            (ms, id) => Some(PageCursor {
                enqueued_ms: ms
                    .parse()
                    .map_err(|_| internal("the list script returned a bad cursor"))?,
                id,
            }),
        };
        let messages = reply
            .map(|row| {
                let (head, fields) = split_row(row, 2, "unexpected row from the list script")?;
                let [id, recipient] = <[Value; 2]>::try_from(head)
                    .map_err(|_| internal("unexpected row from the list script"))?;
                Ok(ListedMessage {
                    id: text(id)?,
                    recipient: optional_text(recipient)?,
                    status: message_state(query.tenant.to_owned(), fields)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page { messages, next })
    }

    async fn outcomes(
        &self,
        tenant: &str,
        since: SystemTime,
        until: SystemTime,
        buckets: usize,
    ) -> Result<Vec<Bucket>, StoreError> {
        check_tenant(tenant)?;
        let (start, width, mut slices) = slices(since, until, buckets);
        let args = [
            start.to_string(),
            to_millis(until).to_string(),
            width.to_string(),
            slices.len().to_string(),
        ];
        let mut argv: Vec<&[u8]> = vec![tenant.as_bytes()];
        argv.extend(args.iter().map(String::as_bytes));
        let counts = items(self.run(&OUTCOMES, &argv).await?)?
            .into_iter()
            .map(|n| number(n).map(|n| u64::try_from(n).unwrap_or(0)))
            .collect::<Result<Vec<_>, _>>()?;
        if counts.len() != slices.len() * 5 {
            return Err(internal("unexpected reply from the outcomes script"));
        }
        for (bucket, counts) in slices.iter_mut().zip(counts.chunks_exact(5)) {
            bucket.add(State::Queued, false, counts[0]);
            bucket.add(State::Queued, true, counts[1]);
            bucket.add(State::InFlight, false, counts[2]);
            bucket.add(State::Delivered, false, counts[3]);
            bucket.add(State::Failed, false, counts[4]);
        }
        Ok(slices)
    }

    async fn depth(&self, tenant: Option<&str>) -> Result<Depth, StoreError> {
        let mut command = cmd("HMGET");
        command.arg(format!("{}:depth", self.base));
        match tenant {
            Some(tenant) => {
                check_tenant(tenant)?;
                command
                    .arg(format!("q:{tenant}"))
                    .arg(format!("f:{tenant}"));
            }
            None => {
                command.arg("q").arg("f");
            }
        }
        let counts: Vec<Option<i64>> = self.backend.query(&command).await?;
        let counter = |i: usize| {
            counts
                .get(i)
                .copied()
                .flatten()
                .map_or(0, |n| u64::try_from(n).unwrap_or(0))
        };
        Ok(Depth {
            queued: counter(0),
            in_flight: counter(1),
        })
    }

    async fn pause_tenant(&self, tenant: &str, until: SystemTime) -> Result<(), StoreError> {
        check_tenant(tenant)?;
        let until = to_millis(until).to_string();
        self.run(&PAUSE, &[tenant.as_bytes(), until.as_bytes()])
            .await
            .map(drop)
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
        let before = to_millis(finished_before).to_string();
        let max = max.to_string();
        match self
            .run(&PURGE, &[before.as_bytes(), max.as_bytes()])
            .await?
        {
            Value::Int(n) => Ok(usize::try_from(n).unwrap_or(0)),
            _ => Err(internal("unexpected reply from the purge script")),
        }
    }

    fn name(&self) -> &'static str {
        BACKEND
    }
}
