//! The WeChat logic's view of its host: the only boundary between the flows and I/O.
//!
//! The trait is asynchronous so that one implementation of the flows serves hosts whose I/O
//! blocks (the component: WASI calls return when done, so every future is ready when first
//! polled — see [`block_on`]) and hosts whose I/O answers later through a callback (a
//! Proxy-Wasm filter: `dispatch_http_call` returns at once and the answer arrives in
//! `on_http_call_response`, so the filter keeps the flow's future and polls it again then).
//! Writing the flows as explicit state machines would serve both too, at the price of turning
//! every multi-call flow (token refresh with its lease, send with retry and fallback, follower
//! sync) inside out; `async fn` lets the compiler build those machines. No `Send` bound: both
//! hosts run a flow on one thread.

use crate::wechat::error::Result;

/// The key-value buckets the component uses. The host decides where they live and prefixes
/// every key with the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Access tokens and their refresh leases.
    Tokens,
    /// Identity mappings, session keys and the follower-sync cursor.
    Users,
    /// Markers of WeChat pushes already applied (see [`crate::callbacks`]).
    Callbacks,
}

impl Bucket {
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Tokens => "tokens",
            Bucket::Users => "users",
            Bucket::Callbacks => "callbacks",
        }
    }
}

/// The method, answer and transport failure of [`Env::http`].
pub use wxnotify_contract::egress::{Failure, Method, Response};

/// An outgoing HTTP request. `url` may carry an access token or secret: never log it as is,
/// use [`crate::wechat::redact_url`].
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    /// A JSON body (POST only).
    pub body: Option<Vec<u8>>,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &crate::wechat::redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

/// Everything the flows need from their host.
#[allow(
    async_fn_in_trait,
    reason = "hosts run a flow on one thread; no Send bound wanted"
)]
pub trait Env {
    /// Sends a request; `Err` when no HTTP answer came back.
    async fn http(&self, request: &HttpRequest) -> std::result::Result<Response, Failure>;

    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Vec<u8>>>;
    async fn set(&self, bucket: Bucket, key: &str, value: &[u8]) -> Result<()>;
    async fn delete(&self, bucket: Bucket, key: &str) -> Result<()>;
    /// Writes `new` only if the current value is still `expected` (`None`: absent); returns
    /// whether it wrote.
    async fn compare_and_swap(
        &self,
        bucket: Bucket,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool>;
    /// Writes all entries in one host call.
    async fn set_many(&self, bucket: Bucket, entries: Vec<(String, Vec<u8>)>) -> Result<()>;
    /// Reads many keys in one host call, in order.
    async fn get_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>>;
    /// Deletes many keys in one host call.
    async fn delete_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<()>;
    /// One page of the bucket's keys, from `cursor` (`None`: the start), and the cursor of the
    /// next page (`None`: this was the last).
    async fn list_keys(
        &self,
        bucket: Bucket,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>)>;

    /// A configuration value, `None` when unset. Configuration is read at the start of a
    /// flow, from memory in every host, so it is not asynchronous.
    fn config(&self, key: &str) -> Result<Option<String>>;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Waits `millis` (a backoff between attempts).
    async fn sleep_ms(&self, millis: u64);
    fn random_u64(&self) -> u64;
}

/// Runs `future` to completion on an [`Env`] whose I/O blocks, so that every future is ready
/// when polled: the component's case. A future that is not ready means the `Env` does not
/// block, and must be driven by its host instead (a Proxy-Wasm filter polls again when an
/// answer arrives); this panics rather than spin.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => {
            panic!(
                "block_on: the Env's I/O did not complete when called; drive this future from the host's event loop"
            )
        }
    }
}
