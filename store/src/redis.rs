//! A backend on a Redis server, shared by every host process that connects to it.
//!
//! Layout: each [`Scope`] is one Redis hash, named
//! `{prefix}wxnotify:kv:{len(tenant)}:{tenant}:{len(bucket)}:{bucket}` (lengths in bytes, in
//! decimal); each entry is one field of that hash, the field name being the key. Because the
//! lengths say where tenant and bucket end, no tenant or bucket can make its hash name equal to
//! another scope's, and keys never take part in the name at all. Redis deletes a hash together
//! with its last field, so emptied scopes leave nothing behind.
//!
//! Atomicity comes from the server, never from this process: every operation is one Redis
//! command or one Lua script, and Redis runs each command and each script to completion before
//! it serves any other client. So an increment or compare-and-swap is atomic across every host
//! connected to the server, and a batch is applied whole or not at all.
//!
//! | operation | implemented as |
//! |---|---|
//! | `get`, `set`, `delete`, `exists` | `HGET`, `HSET`, `HDEL`, `HEXISTS` |
//! | `get_many` | one `HMGET` (one consistent snapshot) |
//! | `set_many`, `delete_many` | one `HSET`/`HDEL` carrying every field |
//! | `increment` | a Lua script that parses, adds and checks the range exactly like [`str::parse::<i64>`] and [`i64::checked_add`] |
//! | `compare_and_swap` | a Lua script: `HGET`, compare bytes, `HSET` if equal |
//! | `list_keys` | `HKEYS`, then filter and sort here |
//!
//! `list_keys` fetches every key of the bucket for every page: Redis hashes have no order, and
//! sorting inside Redis is not an option (Lua compares strings with the server's `strcoll`,
//! which need not be byte order). A page therefore costs O(keys in the bucket) in transfer and
//! in server time. That is fine for what the host keeps in Redis (tokens and identity mappings,
//! up to some thousands of keys per bucket); buckets of millions of keys would want a sorted
//! index instead.
//!
//! A write that fails with [`StoreError::Unavailable`] (connection lost, response timeout) may
//! or may not have been applied: the request can reach the server before the connection drops.
//! It was never applied partially.
//!
//! Connections: a [`ConnectionManager`] multiplexes every request of a backend (and its clones)
//! over one connection and replaces the connection in the background when it breaks; requests
//! made while it reconnects wait for the attempt (bounded by the reconnect retries) and fail
//! with [`StoreError::Unavailable`] if it does not succeed. Scripts are sent by SHA1 and
//! re-uploaded automatically when a server (a restarted one, say) does not know them.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

// `::redis`: this module is itself called `redis`; the leading `::` names the crate.
use ::redis::aio::ConnectionManager;
use ::redis::aio::ConnectionManagerConfig;
use ::redis::{
    Client, Cmd, ErrorKind, FromRedisValue, RedisError, Script, ScriptInvocation, ServerErrorKind,
    Value, cmd,
};

use crate::{
    BoxError, CasOutcome, KeyValueBackend, Scope, StoreError, check_cursor, check_entries,
    check_key, check_keys, check_value, into_page, page_size,
};

pub(crate) const BACKEND: &str = "redis";

/// What every hash name contains after the deployment prefix.
const NAMESPACE: &str = "wxnotify:kv:";

/// Longest pause between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// `increment`, atomically on the server. Redis' own `HINCRBY` is not used because it accepts
/// a different set of integers than every other backend (it rejects `+7` and `007`, which
/// `str::parse::<i64>` accepts). Lua 5.1 only has doubles, so the script never holds an `i64` in
/// one number: it splits magnitudes into a high part and the low nine digits, both exact in a
/// double, and does the arithmetic and the range check on those.
///
/// `KEYS[1]`: the scope's hash. `ARGV[1]`: the key. `ARGV[2]`: the delta, in decimal.
/// Returns `{0, new value}`, `{1}` if the stored value is not an integer, `{2}` on overflow; in
/// the last two cases it has written nothing.
static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- The largest magnitude of an i64: 9223372036 * 1e9 + 854775807 (+1 for negative numbers).
local MAX_HI, MAX_LO = 9223372036, 854775807

-- What Rust's str::parse::<i64> accepts: an optional sign, then one or more ASCII digits, in
-- range. Returns the value as a high part and a low part (below 1e9), both carrying the sign,
-- or nil.
local function parse(s)
  local sign, digits = string.match(s, '^([%+%-]?)([0-9]+)$')
  if not sign then return nil end
  digits = string.match(digits, '^0*(.-)$')
  if #digits > 19 then return nil end
  local hi = tonumber(string.sub(digits, 1, -10)) or 0
  local lo = tonumber(string.sub(digits, -9)) or 0
  local negative = sign == '-'
  local max_lo = negative and MAX_LO + 1 or MAX_LO
  if hi > MAX_HI or (hi == MAX_HI and lo > max_lo) then return nil end
  if negative then return -hi, -lo end
  return hi, lo
end

-- The decimal form of hi * 1e9 + lo, or nil if that is outside the i64 range. Both parts are
-- integers; |lo| < 1e9 and they do not have opposite signs.
local function format(hi, lo)
  local negative = hi < 0 or (hi == 0 and lo < 0)
  hi, lo = math.abs(hi), math.abs(lo)
  local max_lo = negative and MAX_LO + 1 or MAX_LO
  if hi > MAX_HI or (hi == MAX_HI and lo > max_lo) then return nil end
  local digits
  if hi == 0 then
    digits = string.format('%.0f', lo)
  else
    digits = string.format('%.0f%09.0f', hi, lo)
  end
  if negative then return '-' .. digits end
  return digits
end

local current = redis.call('HGET', KEYS[1], ARGV[1])
local hi, lo = 0, 0
if current then
  hi, lo = parse(current)
  if not hi then return {1} end
end
local delta_hi, delta_lo = parse(ARGV[2])
-- Every intermediate below is an integer under 2^35: exact in a double.
hi, lo = hi + delta_hi, lo + delta_lo
if lo >= 1e9 then
  hi, lo = hi + 1, lo - 1e9
elseif lo <= -1e9 then
  hi, lo = hi - 1, lo + 1e9
end
if hi > 0 and lo < 0 then
  hi, lo = hi - 1, lo + 1e9
elseif hi < 0 and lo > 0 then
  hi, lo = hi + 1, lo - 1e9
end
local result = format(hi, lo)
if not result then return {2} end
redis.call('HSET', KEYS[1], ARGV[1], result)
return {0, result}
",
    )
});

/// `compare_and_swap`, atomically on the server. Lua strings compare byte for byte, and an
/// absent field (`false`) never equals a string, not even the empty one.
///
/// `KEYS[1]`: the scope's hash. `ARGV[1]`: the key. `ARGV[2]`: `1` if a value is expected, `0` if
/// absence is. `ARGV[3]`: the expected value (empty when absence is expected). `ARGV[4]`: the new
/// value. Returns `{1}` when it swapped, `{0, current}` or `{0}` (absent) when it did not.
static COMPARE_AND_SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
local matches
if ARGV[2] == '1' then
  matches = current == ARGV[3]
else
  matches = current == false
end
if matches then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  return {1}
end
if current then return {0, current} end
return {0}
",
    )
});

/// Tuning for [`RedisBackend::connect_with_options`].
#[derive(Clone, Copy, Debug)]
pub struct RedisOptions {
    connection_timeout: Duration,
    response_timeout: Duration,
    reconnect_retries: usize,
}

impl Default for RedisOptions {
    /// Two-second connection timeout, five-second response timeout, six reconnection retries.
    fn default() -> Self {
        Self {
            connection_timeout: Duration::from_secs(2),
            // Generous compared to a round trip: a batch of large values has to be uploaded
            // within it, and a request that times out leaves its outcome unknown.
            response_timeout: Duration::from_secs(5),
            reconnect_retries: 6,
        }
    }
}

impl RedisOptions {
    /// How long one attempt to open a connection (TCP, and `AUTH`/`SELECT` from the URL) may
    /// take.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long a request may take, from sending it to the end of the reply, before it fails
    /// with [`StoreError::Unavailable`]. A write that timed out may still have been applied.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How often a failed connection attempt is retried (with exponential backoff, at most a
    /// second apart) before the requests waiting for it fail. Applies to the first connection
    /// in [`RedisBackend::connect_with_options`] and to every reconnection; a later request
    /// starts a new round of attempts.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }
}

/// A backend storing everything on a Redis server (see the module docs for the layout and the
/// guarantees).
///
/// Cloning is cheap; clones share one multiplexed connection. Any number of backends — in this
/// process or on other machines — may use the same server at the same time: atomic operations
/// stay atomic across all of them. The async methods must run inside a tokio runtime, the one
/// the backend was connected in.
///
/// ```no_run
/// use wxnotify_store::{KeyValueBackend, RedisBackend, Scope};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), wxnotify_store::StoreError> {
/// let store = RedisBackend::connect("redis://:secret@10.0.0.5:6379/0")
///     .await?
///     .with_prefix("prod:");
/// store.set(&Scope::new("tenant-1", "tokens"), "access", b"...").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    conn: ConnectionManager,
    /// Prepended to every key name (also the outbox's, see [`crate::outbox::RedisOutbox`]).
    prefix: Arc<str>,
    /// The server's URL without credentials, for errors and `Debug`.
    url: Arc<str>,
}

// Hand-written: the connection manager's own `Debug` prints the connection info, password
// included.
impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to the server at `url` with default [`RedisOptions`].
    ///
    /// `url` is a redis-rs connection URL: `redis://[user][:password@]host[:port][/db]`, or
    /// `redis+unix:///path/to/socket?db=N&user=U&pass=P`. TLS (`rediss://`) is not compiled in.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_options(url, RedisOptions::default()).await
    }

    /// Connects to the server at `url`, waiting until the first connection is established
    /// (including authentication and database selection).
    ///
    /// Fails with [`StoreError::Connect`] if the URL is invalid or the server cannot be reached
    /// or refuses the credentials within the retries of `options`. The error names the URL
    /// with any password replaced by `***`.
    pub async fn connect_with_options(
        url: &str,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        let redacted: Arc<str> = redact(url).into();
        let fail = |err: RedisError| StoreError::Connect {
            backend: BACKEND,
            url: redacted.to_string(),
            source: err.into(),
        };
        let client = Client::open(url).map_err(fail)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connection_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(options.reconnect_retries)
            .set_max_delay(MAX_RECONNECT_DELAY);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(fail)?;
        Ok(Self {
            conn,
            prefix: Arc::from(""),
            url: redacted,
        })
    }

    /// The deployment prefix given to [`with_prefix`](Self::with_prefix) (default: empty).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The same backend, with every hash name starting with `prefix` (default: none), so that
    /// several deployments can share one Redis server (or one ACL key pattern such as
    /// `~prod:*` can cover a deployment).
    ///
    /// Deployments never see each other's data as long as no deployment's prefix contains
    /// `wxnotify:kv:` or `wxnotify:outbox`: names then start with their deployment's prefix
    /// followed by the first occurrence of `wxnotify:kv:` (or, for the keys of a
    /// [`RedisOutbox`](crate::outbox::RedisOutbox) made from this backend, of
    /// `wxnotify:outbox`), which tells the prefixes apart.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The name of the hash holding `scope`'s entries.
    pub(crate) fn hash_name(&self, scope: &Scope) -> String {
        format!(
            "{}{NAMESPACE}{}:{}:{}:{}",
            self.prefix,
            scope.tenant.len(),
            scope.tenant,
            scope.bucket.len(),
            scope.bucket
        )
    }

    /// Sends one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T, StoreError> {
        // Clones share the connection; `query_async` merely wants it mutably.
        let mut conn = self.conn.clone();
        command
            .query_async(&mut conn)
            .await
            .map_err(|err| self.error(err))
    }

    /// Runs one script, uploading it first if the server does not know it yet.
    pub(crate) async fn invoke(&self, script: &ScriptInvocation<'_>) -> Result<Value, StoreError> {
        let mut conn = self.conn.clone();
        script
            .invoke_async(&mut conn)
            .await
            .map_err(|err| self.error(err))
    }

    /// Sorts a Redis failure into the error case that says what it means for the caller. The
    /// source names the server, so that logs tell which Redis failed.
    fn error(&self, err: RedisError) -> StoreError {
        let kind = classify(&err);
        let source: BoxError = Box::new(RequestFailed {
            url: Arc::clone(&self.url),
            source: err,
        });
        match kind {
            Class::Unavailable => StoreError::Unavailable {
                backend: BACKEND,
                source,
            },
            Class::Corrupt => StoreError::Corrupt {
                backend: BACKEND,
                source,
            },
            Class::Internal => StoreError::Internal {
                backend: BACKEND,
                source,
            },
        }
    }
}

/// A failed request to the server at `url` (credentials removed).
#[derive(Debug, thiserror::Error)]
#[error("request to Redis at {url} failed")]
struct RequestFailed {
    url: Arc<str>,
    #[source]
    source: RedisError,
}

enum Class {
    Unavailable,
    Corrupt,
    Internal,
}

fn classify(err: &RedisError) -> Class {
    match err.kind() {
        // The environment: the network, the server restarting, loading, failing over or
        // refusing us.
        ErrorKind::Io | ErrorKind::AuthenticationFailed | ErrorKind::ClusterConnectionNotFound => {
            Class::Unavailable
        }
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::NoPerm
            // Redis Cluster redirects: a deployment pointed this backend at a cluster node,
            // which it does not support.
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => Class::Unavailable,
        ErrorKind::Extension => match err.code() {
            // Someone else stored a non-hash under one of our names.
            Some("WRONGTYPE") => Class::Corrupt,
            // Out of memory, busy with someone's slow script, refusing writes because it cannot
            // persist, credentials changed under us.
            Some("OOM" | "BUSY" | "MISCONF" | "NOREPLICAS" | "NOAUTH" | "WRONGPASS") => {
                Class::Unavailable
            }
            _ => Class::Internal,
        },
        // `ERR` (e.g. a failing script), unexpected reply types, client-side misuse: a bug here.
        _ => Class::Internal,
    }
}

pub(crate) fn internal(message: &'static str) -> StoreError {
    StoreError::Internal {
        backend: BACKEND,
        source: message.into(),
    }
}

/// `url` with every credential replaced by `***`: the password in the userinfo and the `pass`
/// (or `password`) query parameter of socket URLs. For logs and `Debug` output of Redis URLs.
pub fn redact(url: &str) -> String {
    const MASK: &str = "***";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return redact_unparsed(url);
    };
    if parsed.password().is_some() && parsed.set_password(Some(MASK)).is_err() {
        return redact_unparsed(url);
    }
    let secret =
        |name: &str| name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password");
    if parsed.query_pairs().any(|(name, _)| secret(&name)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if secret(&name) {
                    MASK.into()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.into()
}

/// A URL that does not even parse may still hold a password; keep only what certainly is not
/// one: the scheme and whatever follows the last `@`, up to any query or fragment.
fn redact_unparsed(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (host, had_userinfo) = match rest.rsplit_once('@') {
        Some((_, host)) => (host, true),
        None => (rest, false),
    };
    let host = host.split(['?', '#']).next().unwrap_or_default();
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    let userinfo = if had_userinfo { "***@" } else { "" };
    format!("{scheme}{userinfo}{host}")
}

#[async_trait::async_trait]
impl KeyValueBackend for RedisBackend {
    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        self.query(cmd("HGET").arg(self.hash_name(scope)).arg(key))
            .await
    }

    async fn set(&self, scope: &Scope, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        check_value(value)?;
        self.query(cmd("HSET").arg(self.hash_name(scope)).arg(key).arg(value))
            .await
    }

    async fn delete(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.query(cmd("HDEL").arg(self.hash_name(scope)).arg(key))
            .await
    }

    async fn exists(&self, scope: &Scope, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        self.query(cmd("HEXISTS").arg(self.hash_name(scope)).arg(key))
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
        // One command, so the page comes from one consistent view of the bucket.
        let fields: Vec<Vec<u8>> = self.query(cmd("HKEYS").arg(self.hash_name(scope))).await?;
        let mut keys = Vec::new();
        for field in fields {
            // Every key this crate writes is a `&str`; anything else was written by someone else.
            let key = String::from_utf8(field).map_err(|err| StoreError::Corrupt {
                backend: BACKEND,
                source: err.into(),
            })?;
            // `String` orders by bytes, which is the order the other backends page in.
            if cursor.is_none_or(|after| key.as_str() > after) {
                keys.push(key);
            }
        }
        // One key beyond the page tells whether another page exists. Selecting the smallest
        // `limit + 1` first keeps the sort to the page, however large the bucket.
        if keys.len() > limit + 1 {
            keys.select_nth_unstable(limit);
            keys.truncate(limit + 1);
        }
        keys.sort_unstable();
        Ok(into_page(keys, limit))
    }

    async fn increment(&self, scope: &Scope, key: &str, delta: i64) -> Result<i64, StoreError> {
        check_key(key)?;
        let mut script = INCREMENT.prepare_invoke();
        script
            .key(self.hash_name(scope))
            .arg(key)
            .arg(delta.to_string());
        let reply = self.invoke(&script).await?;
        match reply_items(reply)?.as_slice() {
            [Value::Int(0), Value::BulkString(digits)] => std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| internal("the increment script returned a malformed integer")),
            [Value::Int(1)] => Err(StoreError::NotAnInteger {
                key: key.to_owned(),
            }),
            [Value::Int(2)] => Err(StoreError::Overflow {
                key: key.to_owned(),
            }),
            _ => Err(internal("unexpected reply from the increment script")),
        }
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
        let mut script = COMPARE_AND_SWAP.prepare_invoke();
        script
            .key(self.hash_name(scope))
            .arg(key)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new);
        let reply = self.invoke(&script).await?;
        match reply_items(reply)?.as_mut_slice() {
            [Value::Int(1)] => Ok(CasOutcome::Swapped),
            [Value::Int(0)] => Ok(CasOutcome::Conflict { current: None }),
            [Value::Int(0), Value::BulkString(current)] => Ok(CasOutcome::Conflict {
                current: Some(std::mem::take(current)),
            }),
            _ => Err(internal(
                "unexpected reply from the compare-and-swap script",
            )),
        }
    }

    async fn get_many(
        &self,
        scope: &Scope,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        check_keys(keys)?;
        if keys.is_empty() {
            // HMGET needs at least one field.
            return Ok(Vec::new());
        }
        let mut command = cmd("HMGET");
        command.arg(self.hash_name(scope));
        for key in keys {
            command.arg(key);
        }
        let values: Vec<Option<Vec<u8>>> = self.query(&command).await?;
        if values.len() != keys.len() {
            return Err(internal("HMGET returned a different number of values"));
        }
        Ok(values)
    }

    async fn set_many(
        &self,
        scope: &Scope,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        // Validated before anything is sent; the single HSET below is then applied whole.
        check_entries(entries)?;
        if entries.is_empty() {
            // HSET needs at least one field.
            return Ok(());
        }
        let mut command = cmd("HSET");
        command.arg(self.hash_name(scope));
        // HSET assigns its fields in order, so a repeated key ends up with its last value.
        for (key, value) in entries {
            command.arg(key).arg(value);
        }
        self.query(&command).await
    }

    async fn delete_many(&self, scope: &Scope, keys: &[String]) -> Result<(), StoreError> {
        check_keys(keys)?;
        if keys.is_empty() {
            // HDEL needs at least one field.
            return Ok(());
        }
        let mut command = cmd("HDEL");
        command.arg(self.hash_name(scope));
        for key in keys {
            command.arg(key);
        }
        self.query(&command).await
    }

    fn name(&self) -> &'static str {
        BACKEND
    }
}

/// The elements of a script's array reply.
pub(crate) fn reply_items(reply: Value) -> Result<Vec<Value>, StoreError> {
    match reply {
        Value::Array(items) => Ok(items),
        _ => Err(internal("a script returned something other than an array")),
    }
}
