//! [`Env`] over the WASI imports: the only module that calls the bindings' imports.

use std::cell::OnceCell;

use crate::bindings::wasi::clocks::{monotonic_clock, wall_clock};
use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::bindings::wasi::random::random;
use crate::env::{Bucket, Env, HttpRequest, HttpResponse, Method, Transport};
use crate::wechat::error::{Error, Result};

/// WeChat answers are small JSON documents; anything larger is not an answer.
const MAX_RESPONSE_BYTES: usize = 4 << 20;
const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;
const FIRST_BYTE_TIMEOUT_NS: u64 = 15_000_000_000;
const BETWEEN_BYTES_TIMEOUT_NS: u64 = 15_000_000_000;

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
    fn http(&self, request: &HttpRequest) -> std::result::Result<HttpResponse, Transport> {
        let describe = |e: String| {
            format!(
                "{} {}: {e}",
                method_name(request.method),
                crate::wechat::redact_url(&request.url)
            )
        };
        send(request).map_err(|failure| match failure {
            Failure::Denied(e) => Transport::Denied(describe(e)),
            Failure::Other(e) => Transport::Failed(describe(e)),
        })
    }

    fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Vec<u8>>> {
        self.bucket(bucket)?
            .get(key)
            .map_err(|e| store_error(bucket, e))
    }

    fn set(&self, bucket: Bucket, key: &str, value: &[u8]) -> Result<()> {
        self.bucket(bucket)?
            .set(key, value)
            .map_err(|e| store_error(bucket, e))
    }

    fn delete(&self, bucket: Bucket, key: &str) -> Result<()> {
        self.bucket(bucket)?
            .delete(key)
            .map_err(|e| store_error(bucket, e))
    }

    fn compare_and_swap(
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

    fn set_many(&self, bucket: Bucket, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        batch::set_many(self.bucket(bucket)?, &entries).map_err(|e| store_error(bucket, e))
    }

    fn get_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>> {
        let found =
            batch::get_many(self.bucket(bucket)?, &keys).map_err(|e| store_error(bucket, e))?;
        Ok(found.into_iter().map(|(_, value)| value).collect())
    }

    fn delete_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        batch::delete_many(self.bucket(bucket)?, &keys).map_err(|e| store_error(bucket, e))
    }

    fn list_keys(
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

    fn sleep_ms(&self, millis: u64) {
        monotonic_clock::subscribe_duration(millis.saturating_mul(1_000_000)).block();
    }

    fn random_u64(&self) -> u64 {
        random::get_random_u64()
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
    }
}

/// `scheme://authority/path?query` split into its parts.
fn split_url(url: &str) -> std::result::Result<(Scheme, &str, &str), String> {
    let (scheme, rest) = url.split_once("://").ok_or("URL has no scheme")?;
    let scheme = match scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => return Err(format!("unsupported URL scheme `{other}`")),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("URL has no host".into());
    }
    Ok((scheme, authority, path))
}

/// A request that got no answer: denied by the host's egress policy, or failed on the way.
enum Failure {
    Denied(String),
    Other(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Other(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Other(message.to_owned())
    }
}

fn send(request: &HttpRequest) -> std::result::Result<HttpResponse, Failure> {
    let (scheme, authority, path) = split_url(&request.url)?;
    let headers = Fields::new();
    if request.body.is_some() {
        headers
            .append("content-type", b"application/json; charset=utf-8")
            .map_err(|e| format!("header: {e:?}"))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        Method::Get => crate::bindings::wasi::http::types::Method::Get,
        Method::Post => crate::bindings::wasi::http::types::Method::Post,
    };
    let invalid = |what: &str| format!("invalid request {what}");
    outgoing
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let body = outgoing.body().map_err(|()| invalid("body"))?;
    let options = RequestOptions::new();
    // Hosts may not support every timeout; the defaults then apply.
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT_NS));
    let _ = options.set_between_bytes_timeout(Some(BETWEEN_BYTES_TIMEOUT_NS));
    // The request is handed over before its body is written: the host buffers little of an
    // unsent body, so writing a large one first would wait for a reader that never starts.
    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(failure)?;
    let written = write_body(body, request.body.as_deref());
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        // A denied or failed request also closes its body stream: the response says why.
        Some(Ok(Err(e))) => return Err(failure(e)),
        Some(Err(())) | None => return Err("the response was already taken".into()),
    };
    written?;
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "the response body was already taken".to_owned())?;
    let body = read_body(&incoming).map_err(Failure::Other)?;
    drop(IncomingBody::finish(incoming));
    Ok(HttpResponse { status, body })
}

fn write_body(body: OutgoingBody, bytes: Option<&[u8]>) -> std::result::Result<(), Failure> {
    if let Some(bytes) = bytes {
        let stream = body
            .write()
            .map_err(|()| "the request body stream was already taken".to_owned())?;
        // blocking-write-and-flush takes at most 4096 bytes per call.
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing the body: {}", stream_error(e)))?;
        }
    }
    OutgoingBody::finish(body, None)
        .map_err(|e| format!("finishing the body: {}", error_code(&e)))?;
    Ok(())
}

fn read_body(incoming: &IncomingBody) -> std::result::Result<Vec<u8>, String> {
    let stream = incoming
        .stream()
        .map_err(|()| "the response stream was already taken".to_owned())?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_RESPONSE_BYTES {
                    return Err(format!("response larger than {MAX_RESPONSE_BYTES} bytes"));
                }
            }
            Err(StreamError::Closed) => return Ok(body),
            Err(e) => return Err(format!("reading the response: {}", stream_error(e))),
        }
    }
}

fn failure(code: ErrorCode) -> Failure {
    match code {
        ErrorCode::HttpRequestDenied => Failure::Denied(error_code(&code)),
        other => Failure::Other(error_code(&other)),
    }
}

fn stream_error(error: StreamError) -> String {
    match error {
        StreamError::Closed => "stream closed".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

fn error_code(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            "request denied by the host (not in the tenant's allowed hosts)".into()
        }
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTerminated => "connection closed before the response".into(),
        ErrorCode::ConnectionTimeout => "connection timed out".into(),
        ErrorCode::ConnectionReadTimeout => "timed out waiting for the response".into(),
        ErrorCode::DnsError(_) => "DNS lookup failed".into(),
        ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => "TLS failure".into(),
        other => format!("{other:?}"),
    }
}
