//! The WASI plumbing every wxnotify component needs, written once: send one request and read
//! its answer ([`send`]), read an incoming request's body within a limit
//! ([`read_request_body`]), answer one ([`respond`]), and — from one implementation of
//! [`Notify`] — the component's typed exports ([`export_notify!`]) and its JSON API
//! ([`answer_json_api`]).
//!
//! It owns the bindings of the WASI interfaces it uses ([`wasi`]). A component shares them by
//! generating its world with [`notify_bindings!`], which maps those interfaces to this crate, so
//! the types match.
//!
//! Natively (for the components' unit tests) the bindings compile but cannot be called.

#[allow(unsafe_code, reason = "the canonical-ABI glue wit-bindgen generates")]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package wxnotify:component-io;
            world io {
                import wasi:http/outgoing-handler@0.2.12;
                import wasi:clocks/monotonic-clock@0.2.12;
            }
        ",
        world: "wxnotify:component-io/io",
        generate_all,
    });
}

pub use bindings::wasi;
/// The contract's plain types, for the macros' expansions.
pub use wxnotify_contract as contract;
use wxnotify_contract::json_api::{self, Answer};
use wxnotify_contract::{Error, Notify};

/// Generates `mod bindings` with the `wechat:notify/notify` world of the WIT directory `$wit`
/// (relative to the calling crate), its HTTP, I/O and monotonic-clock interfaces taken from
/// this crate: the one `generate!` of a wxnotify component. The caller depends on
/// `wit-bindgen` and this crate, and invokes it at its crate root.
///
/// It also converts the generated `wechat:notify/types` both ways to the contract's plain
/// types ([`wxnotify_contract::wit_conversions!`]).
#[macro_export]
macro_rules! notify_bindings {
    ($wit:literal) => {
        #[allow(unsafe_code, reason = "the canonical-ABI glue wit-bindgen generates")]
        mod bindings {
            ::wit_bindgen::generate!({
                path: $wit,
                world: "wechat:notify/notify",
                with: {
                    "wasi:http/types@0.2.12": ::wxnotify_component_io::wasi::http::types,
                    "wasi:http/outgoing-handler@0.2.12": ::wxnotify_component_io::wasi::http::outgoing_handler,
                    "wasi:io/error@0.2.12": ::wxnotify_component_io::wasi::io::error,
                    "wasi:io/poll@0.2.12": ::wxnotify_component_io::wasi::io::poll,
                    "wasi:io/streams@0.2.12": ::wxnotify_component_io::wasi::io::streams,
                    "wasi:clocks/monotonic-clock@0.2.12": ::wxnotify_component_io::wasi::clocks::monotonic_clock,
                },
                generate_all,
            });

            mod contract_conversions {
                use super::exports::wechat::notify::accounts;
                use super::wechat::notify::types;
                $crate::contract::wit_conversions!(types, accounts);
            }
        }
    };
}

/// Implements the `notifier` and `accounts` exports of `$component` (a unit struct that
/// implements [`Notify`]) by converting each call's arguments to the contract's types and the
/// result back: the component's logic is written once, against the plain types. Invoke it at
/// the crate root after [`notify_bindings!`]; the caller still implements
/// `wasi:http/incoming-handler` and calls `bindings::export!`.
#[macro_export]
macro_rules! export_notify {
    ($component:ident) => {
        const _: () = {
            use bindings::exports::wechat::notify::{accounts, notifier};
            use bindings::wechat::notify::types as wit;
            use $crate::contract::Notify as _;

            impl notifier::Guest for $component {
                fn send_notification(
                    notification: wit::Notification,
                ) -> Result<wit::Delivery, wit::Error> {
                    $component
                        .send_notification(notification.into())
                        .map(Into::into)
                        .map_err(Into::into)
                }

                fn check_notification(notification: wit::Notification) -> Result<(), wit::Error> {
                    $component
                        .check_notification(notification.into())
                        .map_err(Into::into)
                }

                fn final_status(msgid: i64) -> Result<Option<wit::MessageStatus>, wit::Error> {
                    $component
                        .final_status(msgid)
                        .map(|status| status.map(Into::into))
                        .map_err(Into::into)
                }

                fn resolve_user(recipient: wit::Recipient) -> Result<wit::User, wit::Error> {
                    $component
                        .resolve_user(recipient.into())
                        .map(Into::into)
                        .map_err(Into::into)
                }
            }

            impl accounts::Guest for $component {
                fn login(js_code: String) -> Result<wit::User, wit::Error> {
                    $component
                        .login(js_code)
                        .map(Into::into)
                        .map_err(Into::into)
                }

                fn decrypt_user_data(
                    mini_openid: String,
                    encrypted_data: String,
                    iv: String,
                ) -> Result<String, wit::Error> {
                    $component
                        .decrypt_user_data(mini_openid, encrypted_data, iv)
                        .map_err(Into::into)
                }

                fn sync_followers(restart: bool) -> Result<accounts::SyncProgress, wit::Error> {
                    $component
                        .sync_followers(restart)
                        .map(Into::into)
                        .map_err(Into::into)
                }
            }
        };
    };
}

pub use wxnotify_contract::json_api::MAX_API_BODY_BYTES;

/// Answers `request` from the JSON API ([`json_api::answer`]) over `api`, reading its body (at
/// most [`MAX_API_BODY_BYTES`]) only for the routes that take one.
pub fn answer_json_api(api: &impl Notify, request: &IncomingRequest) -> Answer {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let path = path_with_query
        .split_once('?')
        .map_or(path_with_query.as_str(), |(path, _)| path);
    let method = match request.method() {
        WasiMethod::Get => json_api::Method::Get,
        WasiMethod::Post => json_api::Method::Post,
        _ => json_api::Method::Other,
    };
    json_api::answer(api, method, path, || {
        read_request_body(request, MAX_API_BODY_BYTES).map_err(|e| match e {
            BodyError::TooLarge => json_api::body_too_large(),
            BodyError::Unreadable(m) => {
                Error::InvalidInput(format!("reading the request body: {m}"))
            }
        })
    })
}

/// Sends `answer` as `application/json`.
pub fn respond_json(out: ResponseOutparam, answer: &Answer) {
    respond(
        out,
        answer.status,
        "application/json",
        answer.body.to_string().as_bytes(),
    );
}

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method as WasiMethod, OutgoingBody,
    OutgoingRequest, OutgoingResponse, RequestOptions, ResponseOutparam, Scheme,
};
use wasi::io::streams::{InputStream, StreamError};

const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;
const FIRST_BYTE_TIMEOUT_NS: u64 = 15_000_000_000;
const BETWEEN_BYTES_TIMEOUT_NS: u64 = 15_000_000_000;
/// `blocking-write-and-flush` takes at most this many bytes per call.
const WRITE_CHUNK: usize = 4096;

/// The method, answer and failure of one request ([`send`]).
pub use wxnotify_contract::egress::{Failure, Method, Response};

/// An outgoing request: a GET, or a POST of a JSON body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: Method,
    /// `http(s)://authority/path?query`.
    pub url: &'a str,
    /// A JSON body (sent as `application/json; charset=utf-8`).
    pub json: Option<&'a [u8]>,
    /// A response body larger than this is an error, not an answer.
    pub max_response_bytes: usize,
}

/// Sends `request` and reads its answer, with connect, first-byte and between-bytes timeouts
/// the host may lower.
pub fn send(request: &Request<'_>) -> Result<Response, Failure> {
    let (scheme, authority, path) = split_url(request.url)?;
    let headers = Fields::new();
    if let Some(json) = request.json {
        // With its length declared the body is sent as every peer SDK sends it; without, the
        // host would chunk it, and a front end that reads bodies by length sees none (47001).
        let length = json.len().to_string();
        for (name, value) in [
            ("content-type", &b"application/json; charset=utf-8"[..]),
            ("content-length", length.as_bytes()),
        ] {
            headers
                .append(name, value)
                .map_err(|e| format!("header {name}: {e:?}"))?;
        }
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
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
    // Hosts may not support every timeout; their defaults then apply.
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT_NS));
    let _ = options.set_between_bytes_timeout(Some(BETWEEN_BYTES_TIMEOUT_NS));
    // The request is handed over before its body is written: the host buffers little of an
    // unsent body, so writing a large one first would wait for a reader that never starts.
    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(failure)?;
    let written = write_body(body, request.json);
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        // A denied or failed request also closes its body stream: the response says why.
        Some(Ok(Err(code))) => return Err(failure(code)),
        Some(Err(())) | None => return Err("the response was already taken".into()),
    };
    written?;
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "the response body was already taken")?;
    let stream = incoming
        .stream()
        .map_err(|()| "the response stream was already taken")?;
    let body = match read_stream(&stream, request.max_response_bytes) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Err(
                format!("response larger than {} bytes", request.max_response_bytes).into(),
            );
        }
        Err(BodyError::Unreadable(e)) => return Err(format!("reading the response: {e}").into()),
    };
    drop(stream);
    drop(IncomingBody::finish(incoming));
    Ok(Response { status, body })
}

/// `scheme://authority/path?query` split into its parts.
fn split_url(url: &str) -> Result<(Scheme, &str, &str), String> {
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

fn write_body(body: OutgoingBody, bytes: Option<&[u8]>) -> Result<(), Failure> {
    if let Some(bytes) = bytes {
        let stream = body
            .write()
            .map_err(|()| "the request body stream was already taken")?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing the body: {}", stream_error(e)))?;
        }
    }
    OutgoingBody::finish(body, None)
        .map_err(|code| format!("finishing the body: {}", describe(&code)))?;
    Ok(())
}

fn failure(code: ErrorCode) -> Failure {
    match code {
        ErrorCode::HttpRequestDenied => Failure::Denied(describe(&code)),
        other => Failure::Failed(describe(&other)),
    }
}

fn stream_error(error: StreamError) -> String {
    match error {
        StreamError::Closed => "stream closed".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// What went wrong, in words, for an error code.
pub fn describe(code: &ErrorCode) -> String {
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

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit: declared so in `content-length`, or found so while reading.
    TooLarge,
    /// The stream failed, or the body was already taken.
    Unreadable(String),
}

/// Reads an incoming request's body, stopping as soon as it is known to exceed `limit` bytes:
/// a body declared larger is not read at all, and at most `limit + 1` bytes of any other.
pub fn read_request_body(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, BodyError> {
    let declared = request
        .headers()
        .get("content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let consumed = || BodyError::Unreadable("request body already consumed".into());
    let body = request.consume().map_err(|()| consumed())?;
    let stream = body.stream().map_err(|()| consumed())?;
    let bytes = read_stream(&stream, limit)?;
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

/// Reads `stream` to its end, failing once more than `limit` bytes came.
fn read_stream(stream: &InputStream, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut bytes = Vec::new();
    loop {
        let wanted = (limit + 1 - bytes.len()).min(64 * 1024) as u64;
        match stream.blocking_read(wanted) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > limit {
                    return Err(BodyError::TooLarge);
                }
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(e) => return Err(BodyError::Unreadable(stream_error(e))),
        }
    }
}

/// Answers `status` with `bytes` as `content_type`. Nothing can be reported once the answer
/// has started, so failures end it early.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, bytes: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append("content-type", content_type.as_bytes());
    let _ = headers.append("content-length", bytes.len().to_string().as_bytes());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in bytes.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let (scheme, authority, path) =
            split_url("https://api.weixin.qq.com/cgi-bin/token?grant_type=x").unwrap();
        assert!(matches!(scheme, Scheme::Https));
        assert_eq!(authority, "api.weixin.qq.com");
        assert_eq!(path, "/cgi-bin/token?grant_type=x");
        let (scheme, authority, path) = split_url("http://127.0.0.1:9000").unwrap();
        assert!(matches!(scheme, Scheme::Http));
        assert_eq!((authority, path), ("127.0.0.1:9000", "/"));
        for (bad, why) in [
            ("api.weixin.qq.com/x", "no scheme"),
            ("ftp://host/x", "unsupported URL scheme `ftp`"),
            ("https:///x", "no host"),
        ] {
            let error = split_url(bad).err().unwrap();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
