//! The component's view of its host: the only boundary between the WeChat logic and I/O.
//!
//! `host_io` implements [`Env`] over the WASI imports; everything else is written against this
//! trait, so it carries no binding calls and can be exercised natively.

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

/// The HTTP method, answer and transport failure of [`Env::http`]: those of the requests
/// `host_io` sends through `wxnotify_component_io`.
pub use wxnotify_component_io::{Failure, Method, Response};

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

/// Everything the component needs from its host.
pub trait Env {
    /// Sends a request; `Err` when no HTTP answer came back.
    fn http(&self, request: &HttpRequest) -> std::result::Result<Response, Failure>;

    fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Vec<u8>>>;
    fn set(&self, bucket: Bucket, key: &str, value: &[u8]) -> Result<()>;
    fn delete(&self, bucket: Bucket, key: &str) -> Result<()>;
    /// Writes `new` only if the current value is still `expected` (`None`: absent); returns
    /// whether it wrote.
    fn compare_and_swap(
        &self,
        bucket: Bucket,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool>;
    /// Writes all entries in one host call.
    fn set_many(&self, bucket: Bucket, entries: Vec<(String, Vec<u8>)>) -> Result<()>;
    /// Reads many keys in one host call, in order.
    fn get_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>>;
    /// Deletes many keys in one host call.
    fn delete_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<()>;
    /// One page of the bucket's keys, from `cursor` (`None`: the start), and the cursor of the
    /// next page (`None`: this was the last).
    fn list_keys(
        &self,
        bucket: Bucket,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>)>;

    /// A configuration value, `None` when unset.
    fn config(&self, key: &str) -> Result<Option<String>>;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    fn sleep_ms(&self, millis: u64);
    fn random_u64(&self) -> u64;
}
