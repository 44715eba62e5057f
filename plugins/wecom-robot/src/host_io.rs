//! The thin layer over the WASI imports: config, one JSON POST, a pause. The only module
//! besides `http_api` that calls the bindings.
//!
//! Transport errors describe what failed, never the URL: its query carries the webhook key.

use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::config::store as config_store;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::error::Error;
use crate::robot::{HttpResponse, Transport};

/// Robot answers are tiny JSON documents; anything larger is not an answer.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;
const FIRST_BYTE_TIMEOUT_NS: u64 = 15_000_000_000;

/// A tenant config value.
pub fn config(key: &str) -> Result<Option<String>, Error> {
    config_store::get(key).map_err(|e| match e {
        config_store::Error::Upstream(m) | config_store::Error::Io(m) => {
            Error::Config(format!("reading config key `{key}`: {m}"))
        }
    })
}

pub fn pause_ms(millis: u64) {
    monotonic_clock::subscribe_duration(millis.saturating_mul(1_000_000)).block();
}

/// POSTs `body` as JSON to `url`.
pub fn post_json(url: &str, body: &[u8]) -> Result<HttpResponse, Transport> {
    let failed = |what: &str| Transport::Failed(what.to_owned());
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| failed("URL has no scheme"))?;
    let scheme = match scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(failed("api_base must be an http(s) URL")),
    };
    let (authority, path_with_query) = rest
        .find('/')
        .map(|slash| rest.split_at(slash))
        .ok_or_else(|| failed("URL has no path"))?;

    let headers = Fields::new();
    headers
        .append("content-type", b"application/json")
        .map_err(|e| Transport::Failed(format!("content-type header: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    let invalid = |what: &str| Transport::Failed(format!("invalid request {what}"));
    request
        .set_method(&Method::Post)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(path_with_query))
        .map_err(|()| invalid("path"))?;
    let outgoing = request.body().map_err(|()| invalid("body"))?;
    let options = RequestOptions::new();
    // Hosts may not support every timeout; their defaults then apply.
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT_NS));
    // Handed over before the body is written: the host buffers little of an unsent body.
    let pending = outgoing_handler::handle(request, Some(options)).map_err(transport)?;
    let written = write_body(outgoing, body);
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        // A denied or failed request also breaks its body stream: the response error says why.
        Some(Ok(Err(code))) => return Err(transport(code)),
        Some(Err(())) | None => return Err(failed("the response was already taken")),
    };
    written?;
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| failed("the response body was already taken"))?;
    let body = read_body(&incoming)?;
    drop(IncomingBody::finish(incoming));
    Ok(HttpResponse { status, body })
}

fn write_body(outgoing: OutgoingBody, body: &[u8]) -> Result<(), Transport> {
    let stream = outgoing
        .write()
        .map_err(|()| Transport::Failed("the request body stream was already taken".into()))?;
    // blocking-write-and-flush takes at most 4096 bytes per call.
    for chunk in body.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| Transport::Failed(format!("writing the body: {}", stream_error(e))))?;
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None)
        .map_err(|code| Transport::Failed(format!("finishing the body: {}", describe(&code))))
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, Transport> {
    let stream = incoming
        .stream()
        .map_err(|()| Transport::Failed("the response stream was already taken".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(16 * 1024) {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_RESPONSE_BYTES {
                    return Err(Transport::Failed(format!(
                        "response larger than {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
            }
            Err(StreamError::Closed) => return Ok(body),
            Err(e) => {
                return Err(Transport::Failed(format!(
                    "reading the response: {}",
                    stream_error(e)
                )));
            }
        }
    }
}

fn transport(code: ErrorCode) -> Transport {
    match code {
        ErrorCode::HttpRequestDenied => Transport::Denied(describe(&code)),
        other => Transport::Failed(describe(&other)),
    }
}

fn stream_error(error: StreamError) -> String {
    match error {
        StreamError::Closed => "stream closed".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => "not in the tenant's allowed hosts".into(),
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
