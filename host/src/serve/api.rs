//! The routes of `wxnotify serve` (see the table in [`super`]).

use std::sync::Arc;
use subtle::ConstantTimeEq;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wxnotify_store::outbox::{MAX_ENQUEUE_BATCH, NewMessage, State as MessageState};

use super::{AppError, AppState};
use crate::runtime::Tenant;

/// Largest notification request body.
const MAX_API_BODY: usize = 1 << 20;
/// Largest WeChat push: they are small XML or JSON documents.
const MAX_CALLBACK_BODY: usize = 64 << 10;
/// Most notifications in one batch request.
const MAX_BATCH: usize = 500;

/// The origin of the requests handed to the component.
pub(crate) const COMPONENT_ORIGIN: &str = "http://wxnotify.local";

const OPENAPI: &str = include_str!("openapi.json");

/// The server's routes on `state`; also usable without a listener (`tower::ServiceExt::oneshot`).
pub fn app(state: AppState) -> Router {
    // The batch limit is also bounded by what the outbox takes in one atomic enqueue.
    const _: () = assert!(MAX_BATCH <= MAX_ENQUEUE_BATCH);
    Router::new()
        .route(
            "/v1/{tenant}/notifications",
            post(submit).layer(DefaultBodyLimit::max(MAX_API_BODY)),
        )
        .route("/v1/{tenant}/notifications/{id}", get(status))
        .route("/v1/{tenant}/users/{kind}/{id}", get(user))
        .route(
            "/v1/{tenant}/wechat/{kind}",
            get(callback)
                .post(callback)
                .layer(DefaultBodyLimit::max(MAX_CALLBACK_BODY)),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .fallback(|| async { AppError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(state)
}

/// Why a request's API key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRejection {
    /// The tenant has no key configured: its API is closed.
    NotConfigured,
    /// No `Authorization: Bearer …`, or the wrong key.
    Wrong,
}

/// Checks `authorization` against the tenant's `configured` key in constant time.
pub(crate) fn check_api_key(
    configured: Option<&str>,
    authorization: Option<&HeaderValue>,
) -> Result<(), KeyRejection> {
    let configured = configured.ok_or(KeyRejection::NotConfigured)?;
    let given = authorization
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(KeyRejection::Wrong)?;
    // Comparing digests makes the time independent of where the keys differ and of their
    // lengths.
    let (a, b) = (Sha256::digest(given.trim()), Sha256::digest(configured));
    if bool::from(a.as_slice().ct_eq(b.as_slice())) {
        Ok(())
    } else {
        Err(KeyRejection::Wrong)
    }
}

/// The tenant of the URL, if it exists and the request carries its key.
fn authorize(state: &AppState, tenant: &str, headers: &HeaderMap) -> Result<Arc<Tenant>, AppError> {
    let found = state.runtime.tenant(tenant)?;
    let configured = state.api_keys.get(tenant).and_then(Option::as_deref);
    match check_api_key(configured, headers.get(header::AUTHORIZATION)) {
        Ok(()) => Ok(found),
        Err(KeyRejection::NotConfigured) => Err(AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("tenant `{tenant}` has no API key configured (api_key_env)"),
        )),
        Err(KeyRejection::Wrong) => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong `Authorization: Bearer` API key",
        )),
    }
}

fn body_error(rejection: &BytesRejection) -> AppError {
    let status = rejection.status();
    let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "invalid_input"
    };
    AppError::new(status, kind, rejection.body_text())
}

/// Calls the component's `method path` with `body`.
async fn call(
    tenant: &Tenant,
    method: Method,
    path_and_query: &str,
    content_type: Option<&HeaderValue>,
    body: Bytes,
) -> Result<http::Response<Bytes>, AppError> {
    // The component's wasi:http request needs an authority; which one does not matter.
    let uri = format!("{COMPONENT_ORIGIN}{path_and_query}");
    let mut request = http::Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(body).map_err(|e| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("bad request: {e}"),
        )
    })?;
    Ok(tenant.handle_http(request).await?)
}

/// The component's answer, passed through as is.
fn forward(response: http::Response<Bytes>) -> Response {
    let (parts, body) = response.into_parts();
    let mut answer = (parts.status, body).into_response();
    if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
        answer
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    answer
}

/// Has the component check `notification` (its JSON; no WeChat call); `index` names it in a
/// batch.
async fn validate(
    tenant: &Tenant,
    notification: Bytes,
    index: Option<usize>,
) -> Result<(), AppError> {
    let answer = call(
        tenant,
        Method::POST,
        "/v1/notifications/check",
        Some(&HeaderValue::from_static("application/json")),
        notification,
    )
    .await?;
    if answer.status().is_success() {
        return Ok(());
    }
    let mut body: Value = serde_json::from_slice(answer.body()).unwrap_or_else(|_| {
        json!({ "error": { "kind": "invalid_input", "message": String::from_utf8_lossy(answer.body()) } })
    });
    if let (Some(index), Some(error)) =
        (index, body.get_mut("error").and_then(Value::as_object_mut))
    {
        error.insert("index".into(), index.into());
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let message = format!("notifications[{index}]: {message}");
        error.insert("message".into(), message.into());
    }
    if answer.status().is_client_error() {
        Err(AppError::with_body(StatusCode::BAD_REQUEST, body))
    } else {
        // The check itself could not run (the component is busy or broken): try again later.
        Err(AppError::with_body(StatusCode::SERVICE_UNAVAILABLE, body))
    }
}

/// Validates every notification, a batch's concurrently (within the tenant's concurrency
/// limit); the error of the lowest failing index wins, so the answer does not depend on timing.
async fn validate_all(
    tenant: &Arc<Tenant>,
    notifications: &[Bytes],
    batch: bool,
) -> Result<(), AppError> {
    if !batch {
        return match notifications.first() {
            Some(notification) => validate(tenant, notification.clone(), None).await,
            None => Ok(()),
        };
    }
    let mut checks = tokio::task::JoinSet::new();
    for (index, notification) in notifications.iter().enumerate() {
        let (tenant, notification) = (tenant.clone(), notification.clone());
        checks.spawn(async move { (index, validate(&tenant, notification, Some(index)).await) });
    }
    let mut first: Option<(usize, AppError)> = None;
    while let Some(joined) = checks.join_next().await {
        let (index, result) = joined.map_err(AppError::unavailable)?;
        if let Err(error) = result
            && first.as_ref().is_none_or(|(lowest, _)| index < *lowest)
        {
            first = Some((index, error));
        }
    }
    first.map_or(Ok(()), |(_, error)| Err(error))
}

/// `POST /v1/{tenant}/notifications`
async fn submit(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let tenant = authorize(&state, &tenant_id, &headers)?;
    let body = body.map_err(|rejection| body_error(&rejection))?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let invalid =
        |message: String| AppError::new(StatusCode::BAD_REQUEST, "invalid_input", message);
    let (notifications, batch) = match value.get("notifications") {
        Some(Value::Array(list)) => {
            if list.is_empty() || list.len() > MAX_BATCH {
                return Err(invalid(format!(
                    "`notifications` must hold 1 to {MAX_BATCH} notifications, got {}",
                    list.len()
                )));
            }
            (list.as_slice(), true)
        }
        Some(_) => return Err(invalid("`notifications` must be an array".into())),
        None if value.is_object() => (std::slice::from_ref(&value), false),
        None => return Err(invalid("the body must be a JSON object".into())),
    };
    // Serialised once: the same bytes are checked by the component and stored in the outbox.
    let payloads: Vec<Bytes> = notifications
        .iter()
        .map(|n| Bytes::from(n.to_string()))
        .collect();
    validate_all(&tenant, &payloads, batch).await?;
    let messages: Vec<NewMessage<'_>> = notifications
        .iter()
        .zip(&payloads)
        .map(|(n, payload)| NewMessage {
            idempotency_key: n.get("idempotency_key").and_then(Value::as_str),
            payload,
        })
        .collect();
    let enqueued = state.outbox.enqueue_many(&tenant_id, &messages).await?;
    let answer = if batch {
        json!({
            "ids": enqueued.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            "duplicates": enqueued.iter().map(|e| e.duplicate).collect::<Vec<_>>(),
        })
    } else {
        let first = enqueued
            .first()
            .ok_or_else(|| AppError::unavailable("the outbox stored nothing"))?;
        json!({ "id": first.id, "duplicate": first.duplicate })
    };
    Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response())
}

/// `GET /v1/{tenant}/notifications/{id}`
async fn status(
    State(state): State<AppState>,
    Path((tenant_id, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let tenant = authorize(&state, &tenant_id, &headers)?;
    // Another tenant's message is reported as missing: ids are not authorisation.
    let message = state
        .outbox
        .status(&id)
        .await?
        .filter(|m| m.tenant == tenant_id)
        .ok_or_else(|| {
            AppError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no notification {id}"),
            )
        })?;
    let detail = message.last_detail.as_deref().map_or(Value::Null, |d| {
        serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned()))
    });
    let wechat_status = match (message.state, detail.get("channel"), detail.get("msgid")) {
        (MessageState::Delivered, Some(Value::String(channel)), Some(msgid))
            if channel == "template_message" && !msgid.is_null() =>
        {
            wechat_status(&tenant, msgid).await
        }
        _ => None,
    };
    let (channel, error) = channel_and_error(message.state, &detail);
    Ok(axum::Json(json!({
        "id": id,
        "state": message.state.as_str(),
        "channel": channel,
        "attempts": message.attempts,
        "error": error,
        "detail": detail,
        "wechat_status": wechat_status,
    }))
    .into_response())
}

/// The channel that delivered, and the last error of a message not delivered (yet), read off
/// the last detail: the component's delivery or error JSON, or a host's message.
fn channel_and_error(state: MessageState, detail: &Value) -> (Value, Value) {
    if state == MessageState::Delivered {
        let channel = detail.get("channel").cloned().unwrap_or(Value::Null);
        return (channel, Value::Null);
    }
    let error = match detail {
        Value::Null => Value::Null,
        Value::String(message) => json!({ "message": message }),
        other => other.get("error").cloned().unwrap_or_else(|| other.clone()),
    };
    (Value::Null, error)
}

/// What WeChat reported for a template message (`TEMPLATESENDJOBFINISH`), if it has yet.
async fn wechat_status(tenant: &Tenant, msgid: &Value) -> Option<String> {
    let msgid = match msgid {
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) => s.clone(),
        _ => return None,
    };
    let path = format!("/v1/deliveries/{msgid}");
    let answer = call(tenant, Method::GET, &path, None, Bytes::new())
        .await
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    let body: Value = serde_json::from_slice(answer.body()).ok()?;
    body.get("status")?.as_str().map(str::to_owned)
}

fn is_plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /v1/{tenant}/users/{kind}/{id}`
async fn user(
    State(state): State<AppState>,
    Path((tenant_id, kind, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let tenant = authorize(&state, &tenant_id, &headers)?;
    if !matches!(kind.as_str(), "mini" | "oa" | "union") {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the kind is mini, oa or union",
        ));
    }
    // WeChat ids are URL-safe; anything else could change the component's route.
    if !is_plain_segment(&id) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "the id has characters WeChat ids do not have",
        ));
    }
    let answer = call(
        &tenant,
        Method::GET,
        &format!("/v1/users/{kind}/{id}"),
        None,
        Bytes::new(),
    )
    .await?;
    Ok(forward(answer))
}

/// `GET|POST /v1/{tenant}/wechat/{oa|mini}`: WeChat's callback URL. No API key: the component
/// checks WeChat's signature.
async fn callback(
    State(state): State<AppState>,
    Path((tenant_id, kind)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let tenant = state.runtime.tenant(&tenant_id)?;
    if !matches!(kind.as_str(), "oa" | "mini") {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the account is oa or mini",
        ));
    }
    let body = body.map_err(|rejection| body_error(&rejection))?;
    let path = match query {
        Some(query) => format!("/callback/{kind}?{query}"),
        None => format!("/callback/{kind}"),
    };
    let answer = call(
        &tenant,
        method,
        &path,
        headers.get(header::CONTENT_TYPE),
        body,
    )
    .await?;
    Ok(forward(answer))
}

/// `GET /metrics`
async fn metrics(State(state): State<AppState>) -> Response {
    // Depths are read at scrape time; a failing outbox leaves the last values.
    for id in state.runtime.tenant_ids() {
        if let Ok(depth) = state.outbox.depth(Some(&id)).await {
            let queued = i64::try_from(depth.queued).unwrap_or(i64::MAX);
            state
                .metrics
                .queued
                .with_label_values(&[id.as_str()])
                .set(queued);
        }
    }
    if let Ok(depth) = state.outbox.depth(None).await {
        state
            .metrics
            .in_flight
            .set(i64::try_from(depth.in_flight).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /readyz`: ready when the outbox answers.
async fn ready(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state.outbox.depth(None).await?;
    Ok("ready")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_checked() {
        let bearer = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            check_api_key(Some("k1"), Some(&bearer("Bearer k1"))),
            Ok(())
        );
        assert_eq!(
            check_api_key(Some("k1"), Some(&bearer("Bearer k2"))),
            Err(KeyRejection::Wrong)
        );
        assert_eq!(
            check_api_key(Some("k1"), Some(&bearer("Bearer k1x"))),
            Err(KeyRejection::Wrong)
        );
        assert_eq!(
            check_api_key(Some("k1"), Some(&bearer("Basic k1"))),
            Err(KeyRejection::Wrong)
        );
        assert_eq!(check_api_key(Some("k1"), None), Err(KeyRejection::Wrong));
        assert_eq!(
            check_api_key(None, Some(&bearer("Bearer k1"))),
            Err(KeyRejection::NotConfigured)
        );
    }

    #[test]
    fn the_openapi_document_is_json() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
