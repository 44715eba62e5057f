//! `wasi:http/incoming-handler`: `POST /v1/notifications` (and `/v1/notifications/check`) with
//! the built-in component's JSON shapes and statuses (see [`crate::wire`]), so `wxnotify
//! serve`'s outbox workers deliver through this plugin unchanged. Every other route is a JSON
//! 404 (or 405 for a wrong method on a served route).

use serde_json::{Value, json};

use wxnotify_component_io::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use wxnotify_component_io::wire::{Delivery, route_error};
use wxnotify_component_io::{BodyError, read_request_body, respond};

use crate::bindings::exports::wasi::http::incoming_handler::Guest;
use crate::error::Error;
use crate::wire::{NotificationJson, error_answer};
use crate::{Component, check, deliver, into_wit, wit};

/// Notifications are small JSON documents; larger bodies are refused unread.
const MAX_BODY_BYTES: usize = 256 * 1024;

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = route(&request);
        respond(
            response_out,
            status,
            "application/json",
            body.to_string().as_bytes(),
        );
    }
}

fn route(request: &IncomingRequest) -> (u16, Value) {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let path = path_with_query
        .split_once('?')
        .map_or(path_with_query.as_str(), |(path, _)| path);
    let outcome = match (request.method(), path.trim_matches('/')) {
        (Method::Post, "v1/notifications") => read_notification(request)
            .and_then(|n| deliver(&n).map(|d| Delivery::from(d).to_json())),
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
        Err(error) => error_answer(into_wit(error)),
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

/// Reads the request body, refusing one over [`MAX_BODY_BYTES`] unread.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, Error> {
    read_request_body(request, MAX_BODY_BYTES).map_err(|e| match e {
        BodyError::TooLarge => {
            Error::InvalidInput(format!("request body larger than {MAX_BODY_BYTES} bytes"))
        }
        BodyError::Unreadable(m) => Error::InvalidInput(format!("reading the request body: {m}")),
    })
}
