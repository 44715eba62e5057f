//! The outbox on a Redis server, shared by every host of a deployment.
//!
//! Layout, with `{o}` standing for `{prefix}wxnotify:outbox`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{o}` | stream, consumer group `workers` | one entry `id → {message id}` per message that is due (undelivered entries) or leased (the group's pending entries) |
//! | `{o}:msg:{id}` | hash | the message: `tenant`, `key`, `recipient`, `payload`, `state`, `attempts`, `detail`, `enqueued_at`, `not_before`, `entry` (its stream entry), `worker`, `lease_until`; once final only `tenant`, `key`, `state`, `enqueued_at` (the rest is in its row) |
//! | `{o}:idem:{len(tenant)}:{tenant}:{key}` | string | the id of the message enqueued with that idempotency key |
//! | `{o}:delayed` | sorted set | queued messages that are not due yet, scored by when they will be (retries, paused tenants) |
//! | `{o}:leases` | sorted set | in-flight messages, scored by the end of their lease |
//! | `{o}:paused` | hash | tenant → end of its pause |
//! | `{o}:parked:{len(tenant)}:{tenant}` | set | messages held back by the tenant's pause, so that changing the pause can reschedule them |
//! | `{o}:depth` | hash | counters `q`, `f` (queued, in flight) and `q:{tenant}`, `f:{tenant}` |
//! | `{o}:finished` | sorted set | final messages, scored by when they became final, for `purge_finished` |
//! | `{o}:time:{len(tenant)}:{tenant}` | sorted set | the tenant's messages, scored by when they were accepted, for `list` and `outcomes` |
//! | `{o}:live:{len(tenant)}:{tenant}` | sorted set | the tenant's queued and in-flight messages, scored the same way |
//! | `{o}:failed:{len(tenant)}:{tenant}` | sorted set | the tenant's failed messages, scored the same way |
//! | `{o}:rows:{len(tenant)}:{tenant}` | hash | id → row of each final message of the tenant: its `state`, `recipient`, `attempts`, `detail`, `key` and `finished_at` packed into one string, so that a page of `list` reads 10 000 of them with one `HMGET` |
//!
//! Times are milliseconds since the Unix epoch. "Now" is the server's `TIME`, so leases mean
//! the same to every host whatever their clocks say (or the caller's [`Clock`](super::Clock)
//! when one is set with `with_clock`).
//!
//! The queue is only as durable as the server: run it with its append-only file on
//! (`appendonly yes`; `appendfsync always` to lose nothing acknowledged on a crash).
//!
//! Every operation that writes is one Lua script, which Redis runs without interleaving any
//! other client, so every such operation is atomic across all hosts:
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
//! - `complete` / `retry`: `XACK` and `XDEL` of the message's entry, then the final state (its
//!   row, `finished`, out of `live`, into `failed` if it failed) or a new entry / `delayed`
//!   member.
//! - `outcomes`: `ZCOUNT`s of `time` and `failed` per slice, and the `live` messages of the
//!   window read one by one (the queue, not the history).
//!
//! `list` alone is plain commands (`ZREVRANGEBYSCORE` of an index, `HMGET` of the rows, a
//! script for the few messages without a row): each row it shows is read in one step, but a
//! page is not one snapshot.
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

/// Ids a filtered `list` reads per round trip (an unfiltered one reads what its page lacks).
const LIST_CHUNK: usize = 1000;

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
-- The tenant's messages by acceptance time (score: enqueued_at, ms); those of them still queued
-- or in flight; those that failed.
local function time_key(tenant) return base .. ':time:' .. #tenant .. ':' .. tenant end
local function live_key(tenant) return base .. ':live:' .. #tenant .. ':' .. tenant end
local function failed_key(tenant) return base .. ':failed:' .. #tenant .. ':' .. tenant end
-- The packed rows of the tenant's final messages, by id: a page of the console reads them with
-- one HMGET instead of one per message.
local function rows_key(tenant) return base .. ':rows:' .. #tenant .. ':' .. tenant end
local function idem_key(tenant, key)
  return base .. ':idem:' .. #tenant .. ':' .. tenant .. ':' .. key
end

-- Integers as decimal strings (tostring would switch to exponents for large numbers).
local function int(x) return string.format('%d', x) end

-- A row: a message's state, recipient, attempts, detail, key, not_before and finished_at as one
-- string, each field `<length>:<bytes>` or `-` when absent (read by `unpack_row` in Rust).
local function pack(...)
  local parts = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    if v then parts[i] = #v .. ':' .. v else parts[i] = '-' end
  end
  return table.concat(parts)
end

-- The row of a message that is not final (or was finished before rows existed), from its
-- hash, and its state; nil if there is no such message.
local function row_of(m)
  local f = redis.call('HMGET', m, 'state', 'recipient', 'attempts', 'detail', 'key',
    'not_before', 'finished_at')
  if not f[1] then return nil end
  return pack(f[1], f[2], f[3], f[4], f[5], f[6], f[7]), f[1]
end

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
-- slot and parking) if it is queued or in flight. Returns its state, tenant, attempts,
-- recipient, key and enqueued_at, or nil and the script's reply when there is no such message
-- or it is already final.
local function unqueue(id, m)
  local f = redis.call('HMGET', m, 'state', 'tenant', 'attempts', 'recipient', 'key',
    'enqueued_at')
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
    redis.call('ZADD', live_key(tenant), int(now), id)
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
local tenant = f[2]
if f[1] == 'in_flight' then count('f', tenant, -1) else count('q', tenant, -1) end
-- What the console and status show of a final message moves into the tenant's rows; the hash
-- keeps what claims, status and purge look up.
redis.call('HSET', rows_key(tenant), id, pack(final, f[4], f[3], detail, f[5], false, int(now)))
redis.call('HSET', m, 'state', final)
redis.call('HDEL', m, 'payload', 'worker', 'lease_until', 'not_before', 'attempts', 'recipient',
  'detail', 'finished_at')
redis.call('ZREM', live_key(tenant), id)
if final == 'failed' then redis.call('ZADD', failed_key(tenant), f[6], id) end
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

/// ARGV: id. Returns nil, or `{tenant, enqueued_at, row, end of the tenant's pause}` (the
/// pause only for a queued message, else nil): see [`listed`].
static STATUS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id = ARGV[1]
local m = msg_key(id)
local f = redis.call('HMGET', m, 'tenant', 'enqueued_at')
if not f[1] then return false end
local row = redis.call('HGET', rows_key(f[1]), id)
local pause = false
if not row then
  local state
  row, state = row_of(m)
  if state == 'queued' then pause = redis.call('HGET', paused, f[1]) end
end
return {f[1], f[2], row, pause}
",
    )
});

/// ARGV: tenant, then ids of its messages. Returns the end of the tenant's pause (nil if none),
/// then each message's row (nil if it is gone): for what `list` did not find among the final
/// rows, so that each row it shows is read in one step.
static ROWS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local tenant = ARGV[1]
local rk = rows_key(tenant)
local reply = {redis.call('HGET', paused, tenant)}
-- The last argument is the clock.
for i = 2, #ARGV - 1 do
  local id = ARGV[i]
  reply[i] = redis.call('HGET', rk, id) or row_of(msg_key(id)) or false
end
return reply
",
    )
});

/// ARGV: tenant, start, end (ms, exclusive), slice width (ms), slices. Returns five counts per
/// slice — queued, retrying, in flight, delivered, failed — slice after slice: each slice's
/// total and failures counted in the indexes, the messages still queued or in flight read one
/// by one (the tenant's queue, not its history), and the rest delivered.
static OUTCOMES: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local tenant, start, stop = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local width, slices = tonumber(ARGV[4]), tonumber(ARGV[5])
local tk, fk, lk = time_key(tenant), failed_key(tenant), live_key(tenant)
local counts = {}
for s = 0, slices - 1 do
  local lo = start + s * width
  local hi = math.min(lo + width, stop)
  local total, failed = 0, 0
  if lo < hi then
    total = redis.call('ZCOUNT', tk, int(lo), '(' .. int(hi))
    failed = redis.call('ZCOUNT', fk, int(lo), '(' .. int(hi))
  end
  local at = s * 5
  counts[at + 1], counts[at + 2], counts[at + 3] = 0, 0, 0
  counts[at + 4], counts[at + 5] = total - failed, failed
end
local column = {queued = 1, in_flight = 3}
local offset = 0
while true do
  local chunk = redis.call('ZRANGEBYSCORE', lk, int(start), '(' .. int(stop), 'WITHSCORES',
    'LIMIT', offset, 1000)
  if #chunk == 0 then break end
  offset = offset + #chunk / 2
  for i = 1, #chunk, 2 do
    local f = redis.call('HMGET', msg_key(chunk[i]), 'state', 'attempts')
    local c = column[f[1]]
    local slice = math.floor((tonumber(chunk[i + 1]) - start) / width)
    if c and slice < slices then
      if c == 1 and tonumber(f[2]) > 0 then c = 2 end
      local at = slice * 5
      counts[at + c] = counts[at + c] + 1
      counts[at + 4] = counts[at + 4] - 1
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
  if f[1] then
    redis.call('ZREM', time_key(f[1]), id)
    redis.call('ZREM', failed_key(f[1]), id)
    redis.call('HDEL', rows_key(f[1]), id)
  end
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

    /// The name of one of `tenant`'s keys (`time`, `live`, `failed`, `rows`), as the scripts'
    /// `time_key` and siblings spell it.
    fn tenant_key(&self, kind: &str, tenant: &str) -> String {
        format!("{}:{kind}:{}:{tenant}", self.base, tenant.len())
    }

    /// How many ids at the cursor's millisecond the pages so far have shown: those from the
    /// cursor's id up (newest first orders a millisecond's ids downwards).
    async fn shown_at(&self, index: &str, cursor: &PageCursor) -> Result<usize, StoreError> {
        let mut at = cmd("ZRANGEBYSCORE");
        at.arg(index)
            .arg(cursor.enqueued_ms)
            .arg(cursor.enqueued_ms);
        let ids: Vec<String> = self.backend.query(&at).await?;
        Ok(ids.iter().filter(|id| **id >= cursor.id).count())
    }

    /// The rows of `batch`'s messages (`None` for one that is gone), each with the end of the
    /// tenant's pause (read for a queued message): the final rows with one `HMGET`, the others
    /// through the `ROWS` script.
    async fn rows(
        &self,
        tenant: &str,
        rows_key: &str,
        batch: &[(String, f64)],
    ) -> Result<Vec<(Option<Value>, Value)>, StoreError> {
        let unexpected = || internal("unexpected reply to a list's read of rows");
        let mut get = cmd("HMGET");
        get.arg(rows_key);
        for (id, _) in batch {
            get.arg(id);
        }
        let mut rows = items(self.backend.query(&get).await?)?;
        if rows.len() != batch.len() {
            return Err(unexpected());
        }
        let missing: Vec<usize> = (0..rows.len()).filter(|&i| is_nil(&rows[i])).collect();
        let mut pause_end = Value::Nil;
        if !missing.is_empty() {
            let mut args: Vec<&[u8]> = vec![tenant.as_bytes()];
            args.extend(missing.iter().map(|&i| batch[i].0.as_bytes()));
            let mut reply = items(self.run(&ROWS, &args).await?)?.into_iter();
            pause_end = reply.next().ok_or_else(unexpected)?;
            for &i in &missing {
                rows[i] = reply.next().ok_or_else(unexpected)?;
            }
        }
        Ok(rows
            .into_iter()
            .map(|row| match is_nil(&row) {
                true => (None, Value::Nil),
                false => (Some(row), pause_end.clone()),
            })
            .collect())
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

/// The seven fields of a row that the scripts' `pack` made: state, recipient, attempts, detail,
/// key, not_before, finished_at, each `<length>:<bytes>` or `-` when absent.
///
/// Hand-written: the scripts can only build strings with Lua's string functions, and a
/// length-prefixed concatenation is what both sides read fastest (a page holds 10 000 rows).
fn unpack_row(packed: &[u8]) -> Result<[Option<&[u8]>; 7], StoreError> {
    let bad = || corrupt("an outbox row is malformed");
    let mut fields = [None; 7];
    let mut rest = packed;
    for field in &mut fields {
        if let Some(tail) = rest.strip_prefix(b"-") {
            rest = tail;
            continue;
        }
        let colon = rest.iter().position(|&b| b == b':').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..colon])
            .ok()
            .and_then(|len| len.parse().ok())
            .ok_or_else(bad)?;
        let end = len
            .checked_add(colon + 1)
            .filter(|&end| end <= rest.len())
            .ok_or_else(bad)?;
        *field = Some(&rest[colon + 1..end]);
        rest = &rest[end..];
    }
    if rest.is_empty() {
        Ok(fields)
    } else {
        Err(bad())
    }
}

fn row_text(field: Option<&[u8]>) -> Result<Option<String>, StoreError> {
    field
        .map(|bytes| {
            String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("an outbox field is not UTF-8"))
        })
        .transpose()
}

fn row_number(field: Option<&[u8]>) -> Result<Option<i64>, StoreError> {
    field
        .map(|bytes| {
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| corrupt("an outbox field is not an integer"))
        })
        .transpose()
}

/// A message from what the status and list scripts return for it: its acceptance time (ms),
/// its packed row and, when it is queued, the end of its tenant's pause.
fn listed(
    tenant: String,
    id: String,
    enqueued_at: Value,
    row: Value,
    pause_end: Value,
) -> Result<ListedMessage, StoreError> {
    let row = bytes(row)?;
    let [
        state,
        recipient,
        attempts,
        detail,
        key,
        not_before,
        finished_at,
    ] = unpack_row(&row)?;
    let state = std::str::from_utf8(state.unwrap_or_default())
        .ok()
        .and_then(State::parse)
        .ok_or_else(|| corrupt("an outbox message has an unknown state"))?;
    let next_attempt_at = match state {
        State::Queued => {
            let not_before = row_number(not_before)?.unwrap_or(0);
            let pause_end = optional_number(pause_end)?.unwrap_or(0);
            Some(from_millis(not_before.max(pause_end)))
        }
        _ => None,
    };
    let attempts = row_number(attempts)?.unwrap_or(0);
    Ok(ListedMessage {
        id,
        recipient: row_text(recipient)?,
        status: MessageState {
            state,
            attempts: u32::try_from(attempts)
                .map_err(|_| corrupt("an attempt count is out of range"))?,
            last_detail: row_text(detail)?,
            tenant,
            idempotency_key: row_text(key)?,
            enqueued_at: from_millis(number(enqueued_at)?),
            next_attempt_at,
            finished_at: row_number(finished_at)?.map(from_millis),
        },
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
        let [tenant, enqueued_at, row, pause_end] = <[Value; 4]>::try_from(items(reply)?)
            .map_err(|_| internal("unexpected reply from the status script"))?;
        let message = listed(text(tenant)?, id.to_owned(), enqueued_at, row, pause_end)?;
        Ok(Some(message.status))
    }

    // Plain commands, not a script: Redis converts every value a script reads or returns
    // between RESP and Lua (an 8-field HMGET cost 7 µs in a script, under 1 µs as a command,
    // and a page reads 10 000). Each
    // row is still read in one step (a final row is never changed, the others come from
    // `ROWS`); a page is not one snapshot, which a listing does not need.
    async fn list(&self, query: &ListQuery<'_>) -> Result<Page, StoreError> {
        check_tenant(query.tenant)?;
        let tenant = query.tenant;
        // A filter by state reads the smaller index holding only such messages, where there is
        // one.
        let index = match query.state {
            Some(State::Failed) => self.tenant_key("failed", tenant),
            Some(State::Queued | State::InFlight) => self.tenant_key("live", tenant),
            _ => self.tenant_key("time", tenant),
        };
        let rows_key = self.tenant_key("rows", tenant);
        let (since, until) = (to_millis(query.since), to_millis(query.until));
        let limit = clamp_page(query.limit);
        let filtered = query.state.is_some() || query.search.is_some();
        let wanted = |message: &ListedMessage| {
            query
                .state
                .is_none_or(|state| message.status.state == state)
                && query.search.is_none_or(|search| {
                    message.id == search
                        || message
                            .recipient
                            .as_deref()
                            .is_some_and(|recipient| recipient.contains(search))
                })
        };
        // Newest first, from the end of the window (exclusive) or from a millisecond
        // (inclusive) past the ids at it already shown: messages of one batch share it.
        let mut from = match query.after {
            Some(cursor) if cursor.enqueued_ms < until => {
                Some((cursor.enqueued_ms, self.shown_at(&index, cursor).await?))
            }
            _ => None,
        };
        let (mut messages, mut scanned, mut last) = (Vec::new(), 0, None);
        let exhausted = loop {
            let room = limit - messages.len();
            let want =
                if filtered { room.max(LIST_CHUNK) } else { room }.min(LIST_SCAN_LIMIT - scanned);
            let (max, skip) = match from {
                Some((ms, skip)) => (ms.to_string(), skip),
                None => (format!("({until}"), 0),
            };
            let mut range = cmd("ZREVRANGEBYSCORE");
            range
                .arg(&index)
                .arg(max)
                .arg(since)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(skip)
                .arg(want);
            let batch: Vec<(String, f64)> = self.backend.query(&range).await?;
            if batch.is_empty() {
                break true;
            }
            let rows = self.rows(tenant, &rows_key, &batch).await?;
            let mut full = false;
            for ((id, score), (row, pause_end)) in batch.iter().zip(rows) {
                // Scores are whole milliseconds, far below 2^53.
                #[allow(clippy::cast_possible_truncation)]
                let ms = *score as i64;
                scanned += 1;
                from = match from {
                    Some((at, skip)) if at == ms => Some((ms, skip + 1)),
                    _ => Some((ms, 1)),
                };
                last = Some((ms, id.clone()));
                if let Some(row) = row {
                    let message = listed(
                        tenant.to_owned(),
                        id.clone(),
                        Value::Int(ms),
                        row,
                        pause_end,
                    )?;
                    if wanted(&message) {
                        messages.push(message);
                    }
                }
                if messages.len() >= limit || scanned >= LIST_SCAN_LIMIT {
                    full = true;
                    break;
                }
            }
            if full {
                break false;
            }
            if batch.len() < want {
                break true;
            }
        };
        let next = match last {
            Some((enqueued_ms, id)) if !exhausted => Some(PageCursor { enqueued_ms, id }),
            _ => None,
        };
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

#[cfg(test)]
mod tests {
    use super::unpack_row;

    #[test]
    fn rows_unpack_into_their_seven_fields() {
        let fields = unpack_row(b"9:delivered-1:3-2:ab-13:1796197615794").unwrap();
        let expected: [Option<&[u8]>; 7] = [
            Some(b"delivered"),
            None,
            Some(b"3"),
            None,
            Some(b"ab"),
            None,
            Some(b"1796197615794"),
        ];
        assert_eq!(fields, expected);
        // A detail may hold the separators themselves.
        let fields = unpack_row(b"6:failed--4:-:1:---").unwrap();
        assert_eq!(fields[3], Some(&b"-:1:"[..]));
    }

    #[test]
    fn malformed_rows_are_corrupt_not_a_panic() {
        for row in [
            &b""[..],
            b"9:delivered",
            b"9:deliver",
            b"x:delivered-------",
            b"99999999999999999999999:a",
            b"18446744073709551615:a------",
            b"6:queued-------",
        ] {
            let err = unpack_row(row).unwrap_err();
            assert!(
                err.to_string().contains("corrupt") || format!("{err:?}").contains("malformed"),
                "{row:?}: {err:?}"
            );
        }
    }
}
