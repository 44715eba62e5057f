//! [`Env`] over Proxy-Wasm: WeChat calls are `dispatch_http_call`s to the configured cluster,
//! the buckets live in shared data (one store for every worker of a VM id on one Envoy), the
//! configuration is the plugin's.
//!
//! Shared data has a compare-and-swap but no delete, no listing and no "absent" CAS, so:
//!
//! - **Absent is empty.** A deleted key holds the empty value. An absent key is created only
//!   if still absent by writing it with a CAS number no key holds ([`NEVER_HELD`]): Envoy and
//!   `proxy-wasm-host` both ignore the number for a key that does not exist and refuse it for
//!   one that does, so of two workers creating a key, one wins.
//! - **Push markers live in a ring of slots.** Every push WeChat makes adds a marker key, and
//!   shared data can neither expire nor list keys to sweep them, so markers hash to one of
//!   [`MARKER_SLOTS`] slots holding `key\nvalue`; a marker is evicted when a later one lands in
//!   its slot. WeChat retries within 15 s, far less than filling the ring takes, so only
//!   markers that guard nothing any more are lost. The core's sweep finds nothing to list.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use wxnotify_core::env::{Bucket, Env, Failure, HttpRequest, Method, Response};
use wxnotify_core::wechat::error::{Error, Result};
use wxnotify_core::wechat::redact_url;

use crate::config::Plugin;
use crate::runtime;

/// A CAS number no shared-data key holds: hosts count each key's number up from 1.
const NEVER_HELD: u32 = u32::MAX;
/// Slots of the push-marker ring (see the module doc).
pub const MARKER_SLOTS: u64 = 16_384;
/// WeChat answers are small JSON documents; anything larger is not an answer.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The host of one request's flow.
pub struct ProxyEnv {
    plugin: Rc<Plugin>,
}

impl ProxyEnv {
    pub fn new(plugin: Rc<Plugin>) -> ProxyEnv {
        ProxyEnv { plugin }
    }

    fn key(&self, bucket: Bucket, key: &str) -> String {
        format!("wxnotify/{}/{}/{key}", self.plugin.tenant, bucket.name())
    }

    fn slot(&self, key: &str) -> String {
        format!(
            "wxnotify/{}/{}/slot-{}",
            self.plugin.tenant,
            Bucket::Callbacks.name(),
            fnv1a(key.as_bytes()) % MARKER_SLOTS
        )
    }

    /// The value `key` has in `bucket` and the CAS number of where it is stored.
    fn read(&self, bucket: Bucket, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>)> {
        if bucket != Bucket::Callbacks {
            return read_shared(&self.key(bucket, key));
        }
        let (held, cas) = read_shared(&self.slot(key))?;
        let value = held.and_then(|held| slot_value(&held, key).map(<[u8]>::to_vec));
        Ok((value, cas))
    }

    /// Writes `value` (empty: absent) where `key` is stored, if its CAS number is still `cas`
    /// (`None`: if it still does not exist).
    fn write_if(&self, bucket: Bucket, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool> {
        let (stored_at, stored) = self.stored_form(bucket, key, value);
        match hostcalls::set_shared_data(&stored_at, Some(&stored), Some(cas.unwrap_or(NEVER_HELD)))
        {
            Ok(()) => Ok(true),
            Err(Status::CasMismatch) => Ok(false),
            Err(status) => Err(storage(bucket, status)),
        }
    }

    fn write(&self, bucket: Bucket, key: &str, value: &[u8]) -> Result<()> {
        let (stored_at, stored) = self.stored_form(bucket, key, value);
        hostcalls::set_shared_data(&stored_at, Some(&stored), None)
            .map_err(|status| storage(bucket, status))
    }

    /// The shared-data key and value that hold `key = value` of `bucket`.
    fn stored_form(&self, bucket: Bucket, key: &str, value: &[u8]) -> (String, Vec<u8>) {
        if bucket != Bucket::Callbacks {
            return (self.key(bucket, key), value.to_vec());
        }
        let mut held = Vec::with_capacity(key.len() + 1 + value.len());
        if !value.is_empty() {
            held.extend_from_slice(key.as_bytes());
            held.push(b'\n');
            held.extend_from_slice(value);
        }
        (self.slot(key), held)
    }
}

fn read_shared(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>)> {
    let (value, cas) = hostcalls::get_shared_data(key)
        .map_err(|status| Error::storage(format!("shared data `{key}`: {status:?}")))?;
    Ok((value.filter(|v| !v.is_empty()), cas))
}

/// The value a marker slot holds for `key`, if it holds `key`.
fn slot_value<'a>(held: &'a [u8], key: &str) -> Option<&'a [u8]> {
    held.strip_prefix(key.as_bytes())?.strip_prefix(b"\n")
}

fn storage(bucket: Bucket, status: Status) -> Error {
    Error::storage(format!(
        "shared data of bucket `{}`: the host answered {status:?}",
        bucket.name()
    ))
}

/// FNV-1a, 64 bits: a marker's slot must be the same in every worker and every build, which
/// std's hashers do not promise.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Env for ProxyEnv {
    async fn http(&self, request: &HttpRequest) -> std::result::Result<Response, Failure> {
        let plugin = &self.plugin;
        let describe = |e: String| {
            format!(
                "{} {}: {e}",
                request.method.as_str(),
                redact_url(&request.url)
            )
        };
        let path = request
            .url
            .strip_prefix(plugin.api_base.as_str())
            .filter(|path| path.starts_with('/'))
            .ok_or_else(|| {
                Failure::Denied(describe("not under the configured `api_base`".into()))
            })?;
        let body = request.body.as_deref().unwrap_or_default();
        let length = body.len().to_string();
        let mut headers = vec![
            (":method", request.method.as_str()),
            (":path", path),
            (":authority", plugin.wechat_authority.as_str()),
            ("accept", "application/json"),
        ];
        if request.method == Method::Post {
            headers.push(("content-type", "application/json"));
            headers.push(("content-length", &length));
        }
        let cluster = &plugin.wechat.cluster;
        let answer = runtime::call(cluster, headers, Some(body), plugin.wechat.timeout)
            .map_err(|status| {
                Failure::Failed(describe(format!(
                    "the proxy refused a call to cluster `{cluster}` ({status:?})"
                )))
            })?
            .await;
        match answer.status {
            Some(status) => Ok(Response {
                status,
                body: answer.body,
            }),
            None => Err(Failure::Failed(describe(format!(
                "no answer from cluster `{cluster}` within {} ms",
                plugin.wechat.timeout.as_millis()
            )))),
        }
    }

    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read(bucket, key)?.0)
    }

    async fn set(&self, bucket: Bucket, key: &str, value: &[u8]) -> Result<()> {
        self.write(bucket, key, value)
    }

    async fn delete(&self, bucket: Bucket, key: &str) -> Result<()> {
        if bucket != Bucket::Callbacks {
            return self.write(bucket, key, b"");
        }
        // Only if the slot still holds this marker: another marker may have taken it.
        match self.read(bucket, key)? {
            (Some(_), cas) => self.write_if(bucket, key, b"", cas).map(drop),
            (None, _) => Ok(()),
        }
    }

    async fn compare_and_swap(
        &self,
        bucket: Bucket,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool> {
        let (current, cas) = self.read(bucket, key)?;
        if current.as_deref() != expected {
            return Ok(false);
        }
        self.write_if(bucket, key, new, cas)
    }

    async fn set_many(&self, bucket: Bucket, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        entries
            .iter()
            .try_for_each(|(key, value)| self.write(bucket, key, value))
    }

    async fn get_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter()
            .map(|key| Ok(self.read(bucket, key)?.0))
            .collect()
    }

    async fn delete_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<()> {
        for key in keys {
            self.delete(bucket, &key).await?;
        }
        Ok(())
    }

    async fn list_keys(
        &self,
        _bucket: Bucket,
        _cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>)> {
        // Shared data cannot be listed; the one caller, the marker sweep, has nothing to do
        // here (markers live in a ring of slots).
        Ok((Vec::new(), None))
    }

    fn config(&self, key: &str) -> Result<Option<String>> {
        Ok(self.plugin.config(key).map(str::to_owned))
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    async fn sleep_ms(&self, millis: u64) {
        runtime::sleep_until(now_ms().saturating_add(millis), now_ms).await;
    }

    fn random_u64(&self) -> u64 {
        // `random_get` cannot fail on a Proxy-Wasm host; if one did, a clock-derived value
        // still tells two leases apart.
        getrandom::u64().unwrap_or_else(|_| now_ms().wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

/// The host's wall clock, Unix milliseconds.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|now| now.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::{fnv1a, slot_value};

    #[test]
    fn a_slot_answers_only_for_the_marker_it_holds() {
        assert_eq!(slot_value(b"seen/ab\n1714", "seen/ab"), Some(&b"1714"[..]));
        assert_eq!(slot_value(b"seen/abc\n1714", "seen/ab"), None);
        assert_eq!(slot_value(b"", "seen/ab"), None);
    }

    #[test]
    fn the_slot_hash_is_fnv1a() {
        // The published FNV-1a 64 test vectors: every build places a marker alike.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
