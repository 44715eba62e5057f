//! The routes of `wxnotify serve` (see the table in [`super`]) and their OpenAPI document,
//! generated from the same handlers and types ([`ApiDoc`]); a test checks that the router and
//! the document list the same routes.
//!
//! Requests are parsed once, here, into the contract's types and handed to the tenant's
//! component through its typed exports. Only WeChat's callbacks reach the component as HTTP:
//! they are HTTP by nature (signatures over the query, raw bodies).

use std::sync::Arc;
use subtle::ConstantTimeEq;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::{OpenApi, ToSchema};
use wxnotify_contract::json_api::{
    DecryptRequest, ErrorBody, LoginRequest, SyncRequest, UserData, parse_json,
};
use wxnotify_contract::submission::{self, Submission};
use wxnotify_contract::{Channel, Delivery, Notification, SyncProgress, User};
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

/// The server's routes on `state`; also usable without a listener (`tower::ServiceExt::oneshot`).
/// Every route is in [`ApiDoc`] (a test holds them together).
pub fn app(state: AppState) -> Router {
    routes().with_state(state)
}

/// The routes, before they are given their state.
fn routes() -> Router<AppState> {
    // The batch limit is also bounded by what the outbox takes in one atomic enqueue.
    const _: () = assert!(MAX_BATCH <= MAX_ENQUEUE_BATCH);
    Router::new()
        .route(
            "/v1/{tenant}/notifications",
            post(submit).layer(DefaultBodyLimit::max(MAX_API_BODY)),
        )
        .route(
            "/v1/{tenant}/notifications/check",
            post(check).layer(DefaultBodyLimit::max(MAX_API_BODY)),
        )
        .route("/v1/{tenant}/notifications/{id}", get(status))
        .route("/v1/{tenant}/users/{kind}/{id}", get(user))
        .route("/v1/{tenant}/login", post(login))
        .route("/v1/{tenant}/users/mini/{openid}/decrypt", post(decrypt))
        .route("/v1/{tenant}/followers/sync", post(sync_followers))
        .route(
            "/v1/{tenant}/wechat/{kind}",
            get(callback)
                .post(callback)
                .layer(DefaultBodyLimit::max(MAX_CALLBACK_BODY)),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/openapi.json", get(openapi))
        .merge(super::console::routes())
        .fallback(|| async { AppError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
}

/// The OpenAPI document of [`app`], generated from the handlers' annotations and the
/// contract's types (`GET /openapi.json`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wxnotify serve",
        description = "Accepts WeChat notifications into a durable outbox (202 only once \
            stored), reports their state, checks notifications, resolves and logs in users, \
            syncs followers and receives WeChat's callbacks. Errors answer \
            `{\"error\": {\"kind\", \"message\", \"errcode\"?, \"errmsg\"?, \"retry_after_secs\"?}}`."
    ),
    paths(
        submit, check, status, user, login, decrypt, sync_followers, callback, metrics, healthz,
        ready, openapi, super::console::page, super::console::script, super::console::style,
        super::console::notifications, super::console::summary
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The tenant's API key as a bearer token.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The tenant's key, from its `api_key_env`"))
                    .build(),
            ),
        );
    }
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

/// A notification stored in the outbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The outbox id: `GET /v1/{tenant}/notifications/{id}`.
    pub id: String,
    /// Whether the idempotency key was seen before: the id is the first notification's.
    pub duplicate: bool,
}

/// A batch stored in the outbox, in request order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchAccepted {
    /// The outbox ids.
    pub ids: Vec<String>,
    /// Whether each idempotency key was seen before.
    pub duplicates: Vec<bool>,
}

/// The answer of a notification that would pass its checks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Checked {
    /// Always `true`; a failed check answers an error.
    pub ok: bool,
}

/// Where a notification is: its outbox state and what the component or WeChat said of it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationStatus {
    /// The outbox id.
    pub id: String,
    /// `queued`, `in_flight`, `delivered` or `failed`.
    pub state: String,
    /// The channel that delivered.
    pub channel: Option<Channel>,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last error of a notification not delivered (yet): the component's error, or
    /// `{"message"}` alone for a fault of the host.
    #[schema(value_type = Option<wxnotify_contract::Error>)]
    pub error: Option<Value>,
    /// The last detail as stored.
    #[schema(value_type = Option<StoredDetail>)]
    pub detail: Value,
    /// The final status WeChat pushed for a delivered template message, once it has.
    pub wechat_status: Option<String>,
}

/// What the outbox keeps of a notification's last attempt (documentation only: rows written by
/// older versions are passed through as stored).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StoredDetail {
    /// A delivered notification's delivery.
    Delivery(Delivery),
    /// The component's error.
    Error(ErrorBody),
    /// A fault of the host, in words.
    Message(String),
}

/// Reads a submission (`contract::submission`), its error as the API answers it.
fn parse_submission(body: &[u8]) -> Result<(Vec<Notification>, bool), AppError> {
    submission::parse(body, MAX_BATCH).map_err(|e| {
        AppError::new(StatusCode::BAD_REQUEST, "invalid_input", e.message).at_index(e.index)
    })
}

/// Has the component check `notification` (no WeChat call); `index` names it in a batch.
async fn validate(
    tenant: &Tenant,
    notification: &Notification,
    index: Option<usize>,
) -> Result<(), AppError> {
    match tenant.check_notification(notification).await {
        Ok(()) => Ok(()),
        // The component refused it: final, the caller's to fix.
        Err(crate::Error::Notify { error, .. }) if !error.is_retryable() => {
            let mut refusal = AppError::component(&error).at_index(index);
            refusal.status = StatusCode::BAD_REQUEST;
            Err(refusal)
        }
        // The check itself could not run (the component is busy or broken): try again later.
        Err(other) => Err(AppError::from(other).at_index(index)),
    }
}

/// Validates every notification, a batch's concurrently (within the tenant's concurrency
/// limit); the error of the lowest failing index wins, so the answer does not depend on timing.
async fn validate_all(
    tenant: &Arc<Tenant>,
    notifications: &[Notification],
    batch: bool,
) -> Result<(), AppError> {
    if !batch {
        return match notifications.first() {
            Some(notification) => validate(tenant, notification, None).await,
            None => Ok(()),
        };
    }
    let mut checks = tokio::task::JoinSet::new();
    for (index, notification) in notifications.iter().enumerate() {
        let (tenant, notification) = (tenant.clone(), notification.clone());
        checks.spawn(async move { (index, validate(&tenant, &notification, Some(index)).await) });
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

/// Accepts notifications into the outbox: each is checked by the tenant's component first, and
/// `202` is answered only once all are stored. A batch is accepted or refused whole.
#[utoipa::path(
    post, path = "/v1/{tenant}/notifications", tag = "notifications",
    params(("tenant" = String, Path, description = "The tenant id")),
    request_body = Submission,
    responses(
        (status = 202, description = "One notification stored", body = Accepted),
        (status = 202, description = "A batch stored", body = BatchAccepted),
        (status = 400, description = "Malformed, or refused by the component's checks (`index` names a batch's first)", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 403, description = "The tenant has no API key", body = ErrorBody),
        (status = 404, description = "Unknown tenant", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 503, description = "The check or the outbox is unavailable: retry", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
async fn submit(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let tenant = authorize(&state, &tenant_id, &headers)?;
    let body = body.map_err(|rejection| body_error(&rejection))?;
    let (notifications, batch) = parse_submission(&body)?;
    validate_all(&tenant, &notifications, batch).await?;
    // Stored as the contract's JSON: what the workers read back is what was checked.
    let payloads: Vec<Vec<u8>> = notifications
        .iter()
        .map(|n| serde_json::to_vec(n).map_err(AppError::unavailable))
        .collect::<Result<_, _>>()?;
    let recipients: Vec<String> = notifications
        .iter()
        .map(|n| super::console::recipient_label(&n.recipient))
        .collect();
    let messages: Vec<NewMessage<'_>> = notifications
        .iter()
        .zip(&payloads)
        .zip(&recipients)
        .map(|((n, payload), recipient)| NewMessage {
            idempotency_key: n.idempotency_key.as_deref(),
            payload,
            recipient: Some(recipient.as_str()),
        })
        .collect();
    let enqueued = state.outbox.enqueue_many(&tenant_id, &messages).await?;
    let answer = if batch {
        json!(BatchAccepted {
            ids: enqueued.iter().map(|e| e.id.clone()).collect(),
            duplicates: enqueued.iter().map(|e| e.duplicate).collect(),
        })
    } else {
        let first = enqueued
            .first()
            .ok_or_else(|| AppError::unavailable("the outbox stored nothing"))?;
        json!(Accepted {
            id: first.id.clone(),
            duplicate: first.duplicate,
        })
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Checks a notification as sending would before its first WeChat call; stores and sends
/// nothing.
#[utoipa::path(
    post, path = "/v1/{tenant}/notifications/check", tag = "notifications",
    params(("tenant" = String, Path, description = "The tenant id")),
    request_body = Notification,
    responses(
        (status = 200, description = "It would pass", body = Checked),
        (status = 400, description = "Malformed, or refused by the component's checks", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 503, description = "The check could not run: retry", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
async fn check(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Checked>, AppError> {
    let tenant = authorize(&state, &tenant_id, &headers)?;
    let body = body.map_err(|rejection| body_error(&rejection))?;
    let notification: Notification = parse_json(&body).map_err(|e| AppError::component(&e))?;
    validate(&tenant, &notification, None).await?;
    Ok(Json(Checked { ok: true }))
}

/// Where an accepted notification is.
#[utoipa::path(
    get, path = "/v1/{tenant}/notifications/{id}", tag = "notifications",
    params(
        ("tenant" = String, Path, description = "The tenant id"),
        ("id" = String, Path, description = "The outbox id from the 202"),
    ),
    responses(
        (status = 200, description = "Its state", body = NotificationStatus),
        (status = 401, description = "Missing or wrong key (the tenant's or the operator key)", body = ErrorBody),
        (status = 404, description = "No such notification for this tenant", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
async fn status(
    State(state): State<AppState>,
    Path((tenant_id, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<NotificationStatus>, AppError> {
    let tenant = super::console::authorize_reader(&state, &tenant_id, &headers)?;
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
    let Described {
        detail,
        delivery,
        error,
    } = describe_detail(message.state, message.last_detail.as_deref());
    let wechat_status = match delivery.as_ref().and_then(|d| d.msgid) {
        Some(msgid) => tenant
            .final_status(msgid)
            .await
            .ok()
            .flatten()
            .map(|s| s.status),
        None => None,
    };
    Ok(Json(NotificationStatus {
        id,
        state: message.state.as_str().to_owned(),
        channel: delivery.as_ref().map(|d| d.channel),
        attempts: message.attempts,
        error,
        detail,
        wechat_status,
    }))
}

/// What a stored `last_detail` says: the detail as JSON, the delivery of a delivered
/// notification, the error of one not delivered.
pub(crate) struct Described {
    pub(crate) detail: Value,
    pub(crate) delivery: Option<Delivery>,
    pub(crate) error: Option<Value>,
}

/// Reads a `last_detail` as the workers store it (a `Delivery`, the component's error, or a
/// host fault in words; older rows as they are).
pub(crate) fn describe_detail(state: MessageState, last_detail: Option<&str>) -> Described {
    let detail = last_detail.map_or(Value::Null, |d| {
        serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned()))
    });
    let delivery = (state == MessageState::Delivered)
        .then(|| serde_json::from_value::<Delivery>(detail.clone()).ok())
        .flatten();
    let error = match (&delivery, &detail) {
        (Some(_), _) | (None, Value::Null) => None,
        (None, Value::String(message)) => Some(json!({ "message": message })),
        (None, other) => Some(other.get("error").cloned().unwrap_or_else(|| other.clone())),
    };
    Described {
        detail,
        delivery,
        error,
    }
}

/// Every identity known for a user.
#[utoipa::path(
    get, path = "/v1/{tenant}/users/{kind}/{id}", tag = "users",
    params(
        ("tenant" = String, Path, description = "The tenant id"),
        ("kind" = String, Path, description = "`mini`, `oa` or `union`"),
        ("id" = String, Path, description = "The openid or unionid"),
    ),
    responses(
        (status = 200, description = "Every identity known", body = User),
        (status = 404, description = "Nothing known, or an unknown kind", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
async fn user(
    State(state): State<AppState>,
    Path((tenant_id, kind, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<User>, AppError> {
    let tenant = authorize(&state, &tenant_id, &headers)?;
    let recipient = wxnotify_contract::json_api::recipient(&kind, &id).map_err(|_| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the kind is mini, oa or union",
        )
    })?;
    Ok(Json(tenant.resolve_user(&recipient).await?))
}

/// Exchanges a mini-program login code for the user's identity; the session key stays in
/// storage.
#[utoipa::path(
    post, path = "/v1/{tenant}/login", tag = "users",
    params(("tenant" = String, Path, description = "The tenant id")),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "The user", body = User),
        (status = 422, description = "Invalid or used code (40029, 40163), blocked user", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
async fn login(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<User>, AppError> {
    let tenant = authorize(&state, &tenant_id, &headers)?;
    let request: LoginRequest = read_json(body)?;
    Ok(Json(tenant.login(&request.js_code).await?))
}

/// Decrypts a mini-program's open data with the session key stored at login; the watermark is
/// checked.
#[utoipa::path(
    post, path = "/v1/{tenant}/users/mini/{openid}/decrypt", tag = "users",
    params(
        ("tenant" = String, Path, description = "The tenant id"),
        ("openid" = String, Path, description = "The user's mini-program openid"),
    ),
    request_body = DecryptRequest,
    responses(
        (status = 200, description = "The decrypted JSON", body = UserData),
        (status = 400, description = "Does not decrypt, or the watermark names another appid", body = ErrorBody),
        (status = 404, description = "No session key stored: log the user in first", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
async fn decrypt(
    State(state): State<AppState>,
    Path((tenant_id, openid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UserData>, AppError> {
    let tenant = authorize(&state, &tenant_id, &headers)?;
    let request: DecryptRequest = read_json(body)?;
    let plaintext = tenant
        .decrypt_user_data(&openid, &request.encrypted_data, &request.iv)
        .await?;
    Ok(Json(UserData::from_plaintext(plaintext)))
}

/// Syncs one page (up to 10 000) of the official account's followers; call until `done`.
#[utoipa::path(
    post, path = "/v1/{tenant}/followers/sync", tag = "users",
    params(("tenant" = String, Path, description = "The tenant id")),
    request_body(content = Option<SyncRequest>, description = "Optional; `restart` discards a stored cursor"),
    responses(
        (status = 200, description = "This page's progress", body = SyncProgress),
        (status = 502, description = "The OA's credentials do not work", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
async fn sync_followers(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SyncProgress>, AppError> {
    let tenant = authorize(&state, &tenant_id, &headers)?;
    let body = body.map_err(|rejection| body_error(&rejection))?;
    let request: SyncRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SyncRequest::default()
    } else {
        parse_json(&body).map_err(|e| AppError::component(&e))?
    };
    Ok(Json(tenant.sync_followers(request.restart).await?))
}

/// A JSON body as `T`, or the `invalid_input` error naming what is wrong.
fn read_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, AppError> {
    let body = body.map_err(|rejection| body_error(&rejection))?;
    parse_json(&body).map_err(|e| AppError::component(&e))
}

/// WeChat's callback URL for the tenant's official account (`oa`) or mini-program (`mini`):
/// URL verification (`GET`) and server pushes (`POST`). No API key: the component checks
/// WeChat's signature.
#[utoipa::path(
    method(get, post), path = "/v1/{tenant}/wechat/{kind}", tag = "wechat",
    params(
        ("tenant" = String, Path, description = "The tenant id"),
        ("kind" = String, Path, description = "`oa` or `mini`"),
        ("signature" = Option<String>, Query, description = "WeChat's signature"),
        ("timestamp" = Option<String>, Query, description = "WeChat's timestamp"),
        ("nonce" = Option<String>, Query, description = "WeChat's nonce"),
        ("echostr" = Option<String>, Query, description = "URL verification only"),
        ("encrypt_type" = Option<String>, Query, description = "`aes` in safe mode"),
        ("msg_signature" = Option<String>, Query, description = "Safe mode's signature"),
    ),
    request_body(content = String, description = "A push: XML, or JSON for a mini-program", content_type = "text/xml"),
    responses(
        (status = 200, description = "`echostr` for a verification, `success` for a push", body = String, content_type = "text/plain"),
        (status = 400, description = "Malformed, stale or missing parameters", body = ErrorBody),
        (status = 401, description = "Bad signature, or a push for another account", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 503, description = "Not applied: WeChat retries", body = ErrorBody),
    )
)]
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

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
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

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Readiness: ready when the outbox answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "`ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "The outbox does not answer", body = ErrorBody),
    ))]
async fn ready(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state.outbox.depth(None).await?;
    Ok("ready")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use wxnotify_contract::submission::Batch;

    use crate::serve::console::{ConsoleNotification, ConsolePage, ConsoleSummary, OutcomeCounts};

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
    fn a_batch_names_its_failing_notification() {
        let error = parse_submission(
            br#"{"notifications": [{"recipient": {"union": "u"}, "channels": []},
                                   {"recipient": {"email": "u"}, "channels": []}]}"#,
        )
        .unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.body["error"]["index"], 1);
        let message = error.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("notifications[1]: unknown variant `email`"),
            "{message}"
        );
        let (one, batch) =
            parse_submission(br#"{"recipient": {"union": "u"}, "channels": []}"#).unwrap();
        assert!(!batch && one.len() == 1);
        assert!(parse_submission(br#"{"notifications": [], "x": 1}"#).is_err());
        assert!(parse_submission(b"[]").is_err());
    }

    /// The `(method, path)` pairs `router` serves. axum lists no routes, but its `Debug` shows
    /// each path and the methods its `Allow` header names; the format is axum 0.8's (pinned by
    /// Cargo.lock), and a change fails this parser loudly rather than passing quietly.
    fn served_routes(router: &Router<AppState>) -> BTreeSet<(String, String)> {
        let debug = format!("{router:?}");
        let served = debug
            .split("fallback_router")
            .next()
            .expect("axum's Debug names the fallback router after the routes");
        let (routes, paths) = served
            .split_once("node: Node { paths: {")
            .expect("axum's Debug lists the paths of its node");
        let mut pairs = BTreeSet::new();
        for entry in paths.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once(')').expect("RouteId(n)");
            let path = rest.split('"').nth(1).expect("a quoted path");
            let methods = routes
                .split(&format!("RouteId({id}): MethodRouter("))
                .nth(1)
                .and_then(|r| r.split("allow_header: Bytes(b\"").nth(1))
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("no methods found for {path} in {routes}"));
            for method in methods.split(',').filter(|m| *m != "HEAD") {
                pairs.insert((method.to_owned(), path.to_owned()));
            }
        }
        assert!(pairs.len() > 5, "axum's Debug format changed: {debug}");
        pairs
    }

    fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
        let mut pairs = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    pairs.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        pairs
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_is_served() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let served = served_routes(&routes());
        let documented = documented_routes(&doc);
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "routes missing from the OpenAPI document: {undocumented:?}; documented but not \
             served: {unserved:?}"
        );
    }

    /// The keys of `value` (recursively) that `schema` does not name, resolving references in
    /// `doc` and taking the best of `oneOf`/`anyOf` alternatives.
    fn undocumented_fields(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.trim_start_matches("#/components/schemas/");
            let resolved = &doc["components"]["schemas"][name];
            assert!(
                !resolved.is_null(),
                "{at}: {reference} is not in the document"
            );
            return undocumented_fields(doc, resolved, value, at);
        }
        for alternatives in ["oneOf", "anyOf"] {
            if let Some(options) = schema.get(alternatives).and_then(Value::as_array) {
                return options
                    .iter()
                    .map(|option| undocumented_fields(doc, option, value, at))
                    .min_by_key(Vec::len)
                    .unwrap_or_default();
            }
        }
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            let mut missing: Option<Vec<String>> = None;
            for part in parts {
                let here = undocumented_fields(doc, part, value, at);
                missing = Some(match missing {
                    None => here,
                    Some(before) => before.into_iter().filter(|m| here.contains(m)).collect(),
                });
            }
            return missing.unwrap_or_default();
        }
        match value {
            Value::Object(object) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let open = schema
                    .get("additionalProperties")
                    .is_some_and(|a| a != false);
                let mut missing = Vec::new();
                for (key, inner) in object {
                    let path = format!("{at}.{key}");
                    match properties.and_then(|p| p.get(key)) {
                        Some(property) => {
                            missing.extend(undocumented_fields(doc, property, inner, &path));
                        }
                        None if open => {}
                        None => missing.push(path),
                    }
                }
                missing
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .flat_map(|(i, item)| {
                    undocumented_fields(doc, &schema["items"], item, &format!("{at}[{i}]"))
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn every_request_and_response_field_is_documented() {
        use wxnotify_contract::{
            ApiError, ChannelFailure, ChannelMessage, Error, MiniprogramPage, MiniprogramState,
            Recipient, SubscribeMessage, TemplateMessage, UniformMessage,
        };
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let data = vec![("thing1".to_owned(), "Shipped".to_owned())];
        let page = Some(MiniprogramPage {
            appid: Some("wxmini".into()),
            pagepath: "pages/a".into(),
        });
        let notification = Notification {
            recipient: Recipient::Union("u".into()),
            channels: vec![
                ChannelMessage::TemplateMessage(TemplateMessage {
                    template_id: "T".into(),
                    data: data.clone(),
                    url: Some("https://example.com".into()),
                    miniprogram: page.clone(),
                }),
                ChannelMessage::SubscribeMessage(SubscribeMessage {
                    template_id: "S".into(),
                    data: data.clone(),
                    page: Some("pages/b".into()),
                    miniprogram_state: Some(MiniprogramState::Trial),
                    lang: Some("zh_CN".into()),
                }),
                ChannelMessage::UniformLegacy(UniformMessage {
                    appid: Some("wxoa".into()),
                    template_id: "U".into(),
                    data,
                    url: Some("https://example.com".into()),
                    miniprogram: page,
                }),
            ],
            idempotency_key: Some("k".into()),
        };
        let delivery = Delivery {
            channel: Channel::SubscribeMessage,
            msgid: Some(1),
            openid: "o".into(),
            attempts: 2,
            truncated: vec!["thing1".into()],
            failures: vec![ChannelFailure {
                channel: Channel::TemplateMessage,
                error: Error::Quota {
                    error: ApiError::new(45009, "limit"),
                    retry_after_secs: Some(60),
                },
            }],
        };
        let user = User {
            mini_openid: Some("m".into()),
            unionid: Some("u".into()),
            oa_openid: Some("o".into()),
            follows_oa: Some(true),
        };
        let samples: Vec<(&str, Value)> = vec![
            ("Submission", json!(Submission::One(notification.clone()))),
            (
                "Submission",
                json!(Submission::Batch(Batch {
                    notifications: vec![notification.clone()]
                })),
            ),
            ("Notification", json!(notification)),
            (
                "Accepted",
                json!(Accepted {
                    id: "i".into(),
                    duplicate: false
                }),
            ),
            (
                "BatchAccepted",
                json!(BatchAccepted {
                    ids: vec!["i".into()],
                    duplicates: vec![true]
                }),
            ),
            ("Checked", json!(Checked { ok: true })),
            ("Delivery", json!(delivery)),
            (
                "NotificationStatus",
                json!(NotificationStatus {
                    id: "i".into(),
                    state: "delivered".into(),
                    channel: Some(Channel::TemplateMessage),
                    attempts: 1,
                    error: None,
                    detail: json!(delivery),
                    wechat_status: Some("success".into()),
                }),
            ),
            ("User", json!(user)),
            (
                "ConsolePage",
                json!(ConsolePage {
                    notifications: vec![ConsoleNotification {
                        id: "i".into(),
                        recipient: Some("oa:o".into()),
                        state: "failed".into(),
                        channel: None,
                        attempts: 1,
                        error: Some(json!(Error::Rejected(ApiError::new(40003, "bad openid")))),
                        enqueued_at: 1,
                        next_attempt_at: None,
                        finished_at: Some(2),
                    }],
                    next: Some("1.01JD0000000000000000000000".into()),
                }),
            ),
            (
                "ConsoleSummary",
                json!(ConsoleSummary {
                    since: 0,
                    until: 1,
                    buckets: vec![OutcomeCounts {
                        start: 0,
                        queued: 0,
                        retrying: 0,
                        in_flight: 0,
                        delivered: 1,
                        failed: 0,
                    }],
                    queued: 0,
                    in_flight: 0,
                    retrying: 0,
                    tokens: vec![crate::TokenCacheState {
                        account: "official_account".into(),
                        appid: "wx".into(),
                        mode: "stable".into(),
                        fetched_at: Some(1),
                        refresh_at: Some(2),
                        expires_at: Some(3),
                    }],
                    now: 1,
                }),
            ),
            (
                "LoginRequest",
                json!(LoginRequest {
                    js_code: "c".into()
                }),
            ),
            (
                "DecryptRequest",
                json!(DecryptRequest {
                    encrypted_data: "e".into(),
                    iv: "i".into()
                }),
            ),
            ("SyncRequest", json!(SyncRequest { restart: true })),
            ("SyncProgress", json!(SyncProgress::default())),
            ("UserData", json!(UserData::from_plaintext("{}".into()))),
            (
                "ErrorBody",
                json!(ErrorBody {
                    error: Error::Rejected(ApiError::new(40003, "bad openid"))
                }),
            ),
        ];
        for (name, sample) in samples {
            let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
            let missing = undocumented_fields(&doc, &schema, &sample, name);
            assert!(
                missing.is_empty(),
                "{name}: not in the OpenAPI document: {missing:?}"
            );
        }
        // The walker does find what a schema does not name.
        let extra = json!({ "js_code": "c", "unexpected": 1 });
        let schema = json!({ "$ref": "#/components/schemas/LoginRequest" });
        assert_eq!(
            undocumented_fields(&doc, &schema, &extra, "LoginRequest"),
            ["LoginRequest.unexpected"]
        );
    }
}
