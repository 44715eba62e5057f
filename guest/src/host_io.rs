//! [`Env`] over the WASI imports: the only module that calls the bindings' imports. Every call
//! blocks until done, so the flows' futures are ready when first polled
//! ([`wxnotify_core::block_on`]).

use std::cell::OnceCell;

use wxnotify_component_io as io;

use crate::bindings::wasi::clocks::wall_clock;
use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::bindings::wasi::random::random;
use io::wasi::clocks::monotonic_clock;
use wxnotify_core::env::{Bucket, Env, Failure, HttpRequest, Response};
use wxnotify_core::wechat::error::{Error, Result};

/// WeChat answers are small JSON documents; anything larger is not an answer.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The WASI host of one export call. Buckets are opened on first use.
#[derive(Default)]
pub struct WasiEnv {
    tokens: OnceCell<store::Bucket>,
    users: OnceCell<store::Bucket>,
    callbacks: OnceCell<store::Bucket>,
}

impl WasiEnv {
    fn bucket(&self, bucket: Bucket) -> Result<&store::Bucket> {
        let cell = match bucket {
            Bucket::Tokens => &self.tokens,
            Bucket::Users => &self.users,
            Bucket::Callbacks => &self.callbacks,
        };
        if let Some(opened) = cell.get() {
            return Ok(opened);
        }
        let opened = store::open(bucket.name()).map_err(|e| store_error(bucket, e))?;
        Ok(cell.get_or_init(|| opened))
    }
}

fn store_error(bucket: Bucket, error: store::Error) -> Error {
    match error {
        store::Error::NoSuchStore => Error::Config(format!(
            "the host provides no key-value bucket `{}`",
            bucket.name()
        )),
        store::Error::AccessDenied => Error::Config(format!(
            "the host denies access to key-value bucket `{}`",
            bucket.name()
        )),
        store::Error::Other(message) => {
            Error::storage(format!("bucket `{}`: {message}", bucket.name()))
        }
    }
}

impl Env for WasiEnv {
    async fn http(&self, request: &HttpRequest) -> std::result::Result<Response, Failure> {
        let describe = |e: String| {
            format!(
                "{} {}: {e}",
                request.method.as_str(),
                wxnotify_core::wechat::redact_url(&request.url)
            )
        };
        io::send(&io::Request {
            method: request.method,
            url: &request.url,
            json: request.body.as_deref(),
            max_response_bytes: MAX_RESPONSE_BYTES,
        })
        .map_err(|failure| match failure {
            Failure::Denied(e) => Failure::Denied(describe(e)),
            Failure::Failed(e) => Failure::Failed(describe(e)),
        })
    }

    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Vec<u8>>> {
        self.bucket(bucket)?
            .get(key)
            .map_err(|e| store_error(bucket, e))
    }

    async fn set(&self, bucket: Bucket, key: &str, value: &[u8]) -> Result<()> {
        self.bucket(bucket)?
            .set(key, value)
            .map_err(|e| store_error(bucket, e))
    }

    async fn delete(&self, bucket: Bucket, key: &str) -> Result<()> {
        self.bucket(bucket)?
            .delete(key)
            .map_err(|e| store_error(bucket, e))
    }

    async fn compare_and_swap(
        &self,
        bucket: Bucket,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool> {
        let handle = self.bucket(bucket)?;
        let cas = atomics::Cas::new(handle, key).map_err(|e| store_error(bucket, e))?;
        let current = cas.current().map_err(|e| store_error(bucket, e))?;
        if current.as_deref() != expected {
            return Ok(false);
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(e)) => Err(store_error(bucket, e)),
        }
    }

    async fn set_many(&self, bucket: Bucket, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        batch::set_many(self.bucket(bucket)?, &entries).map_err(|e| store_error(bucket, e))
    }

    async fn get_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>> {
        let found =
            batch::get_many(self.bucket(bucket)?, &keys).map_err(|e| store_error(bucket, e))?;
        Ok(found.into_iter().map(|(_, value)| value).collect())
    }

    async fn delete_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        batch::delete_many(self.bucket(bucket)?, &keys).map_err(|e| store_error(bucket, e))
    }

    async fn list_keys(
        &self,
        bucket: Bucket,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>)> {
        let page = self
            .bucket(bucket)?
            .list_keys(cursor)
            .map_err(|e| store_error(bucket, e))?;
        Ok((page.keys, page.cursor))
    }

    fn config(&self, key: &str) -> Result<Option<String>> {
        config::get(key).map_err(|e| match e {
            config::Error::Upstream(m) | config::Error::Io(m) => {
                Error::Config(format!("reading config key `{key}`: {m}"))
            }
        })
    }

    fn now_ms(&self) -> u64 {
        let now = wall_clock::now();
        now.seconds
            .saturating_mul(1000)
            .saturating_add(u64::from(now.nanoseconds / 1_000_000))
    }

    async fn sleep_ms(&self, millis: u64) {
        monotonic_clock::subscribe_duration(millis.saturating_mul(1_000_000)).block();
    }

    fn random_u64(&self) -> u64 {
        random::get_random_u64()
    }
}
