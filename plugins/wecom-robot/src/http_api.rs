//! `wasi:http/incoming-handler`: `POST /v1/notifications` (and `/v1/notifications/check`) with
//! the built-in component's JSON shapes and statuses (see [`crate::wire`]), so `wxnotify
//! serve`'s outbox workers deliver through this plugin unchanged. Every other route is a JSON
//! 404 (or 405 for a wrong method on a served route).

use serde_json::{Value, json};

use crate::bindings::exports::wasi::http::incoming_handler::Guest;
use crate::bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::error::Error;
use crate::wire::{NotificationJson, delivery_json, error_json, route_error, status_of};
use crate::{Component, check, deliver, into_wit, wit};

/// Notifications are small JSON documents; larger bodies are refused unread.
const MAX_BODY_BYTES: usize = 256 * 1024;

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = route(&request);
        respond(response_out, status, body.to_string().as_bytes());
    }
}

fn route(request: &IncomingRequest) -> (u16, Value) {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let path = path_with_query
        .split_once('?')
        .map_or(path_with_query.as_str(), |(path, _)| path);
    let outcome = match (request.method(), path.trim_matches('/')) {
        (Method::Post, "v1/notifications") => {
            read_notification(request).and_then(|n| deliver(&n).map(delivery_json))
        }
        (Method::Post, "v1/notifications/check") => {
            read_notification(request).and_then(|n| check(&n).map(|()| json!({ "ok": true })))
        }
        (_, "v1/notifications" | "v1/notifications/check") => {
            return (
                405,
                route_error("method_not_allowed", "method not allowed on this route"),
            );
        }
        _ => {
            return (
                404,
                route_error(
                    "not_found",
                    &format!(
                        "no route for {path}: the wecom-robot plugin serves only \
                         POST /v1/notifications and POST /v1/notifications/check"
                    ),
                ),
            );
        }
    };
    match outcome {
        Ok(value) => (200, value),
        Err(error) => {
            let error = into_wit(error);
            (status_of(&error), error_json(error))
        }
    }
}

fn read_notification(request: &IncomingRequest) -> Result<wit::Notification, Error> {
    let bytes = read_body(request)?;
    serde_json::from_slice::<NotificationJson>(&bytes)
        .map(Into::into)
        .map_err(|e| {
            Error::InvalidInput(format!(
                "request body is not valid JSON for this route: {e}"
            ))
        })
}

/// Reads the request body, stopping as soon as it is known to exceed [`MAX_BODY_BYTES`].
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, Error> {
    let too_large =
        || Error::InvalidInput(format!("request body larger than {MAX_BODY_BYTES} bytes"));
    let declared = request
        .headers()
        .get("content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let consumed = || Error::InvalidInput("request body already consumed".into());
    let body = request.consume().map_err(|()| consumed())?;
    let bytes = {
        let stream = body.stream().map_err(|()| consumed())?;
        let mut bytes = Vec::new();
        loop {
            let wanted = (MAX_BODY_BYTES + 1 - bytes.len()).min(64 * 1024) as u64;
            match stream.blocking_read(wanted) {
                Ok(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_BODY_BYTES {
                        return Err(too_large());
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error::InvalidInput(format!(
                        "reading the request body: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
        bytes
    };
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

fn respond(out: ResponseOutparam, status: u16, bytes: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in bytes.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
