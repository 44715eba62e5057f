//! The operator console: `GET /console`, a page embedded in the binary, and the two API routes
//! it reads — a tenant's notifications of a time window (filtered, searched, paged) and a
//! summary (outcomes over time, queue depth, retry backlog, token cache).
//!
//! The page is plain HTML, CSS and JavaScript with no framework and no build step: it is three
//! small files that only fetch JSON and fill a table and an SVG chart, and a front-end
//! toolchain would cost every build of the binary more than the page itself. It loads nothing
//! from elsewhere (its `Content-Security-Policy` says so), keeps the key the operator types in
//! the tab's `sessionStorage` only, and never receives a secret: the API routes answer what
//! the outbox keeps (states, recipients, errors) and the token cache's times, not its tokens.
//!
//! Both routes accept the tenant's own API key or the operator key (`WXNOTIFY_OPERATOR_KEY`,
//! see [`super::ServeOptions::operator_key`]), which opens every tenant's console.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use wxnotify_contract::json_api::ErrorBody;
use wxnotify_contract::{Channel, Recipient};
use wxnotify_store::outbox::{Bucket, ListQuery, ListedMessage, PageCursor, State as MessageState};

use super::api::{KeyRejection, check_api_key, describe_detail};
use super::{AppError, AppState};
use crate::{Tenant, TokenCacheState};

/// The window shown when the request names none: the last day.
const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Rows per page when the request names no limit.
const DEFAULT_LIMIT: usize = 100;
/// Chart slices when the request names none.
const DEFAULT_BUCKETS: usize = 24;

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// The console's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route("/v1/{tenant}/console/notifications", get(notifications))
        .route("/v1/{tenant}/console/summary", get(summary))
}

/// How a notification's recipient is kept in the outbox, shown and searched by the console:
/// the kind of id as the users route names it (`mini`, `oa`, `union`), then the id.
pub(crate) fn recipient_label(recipient: &Recipient) -> String {
    match recipient {
        Recipient::MiniProgram(openid) => format!("mini:{openid}"),
        Recipient::OfficialAccount(openid) => format!("oa:{openid}"),
        Recipient::Union(unionid) => format!("union:{unionid}"),
    }
}

/// One of the console's static files, which may not be framed nor load anything from elsewhere.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// The console page.
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 200, description = "The operator console", body = String, content_type = "text/html")))]
async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// The console's script.
#[utoipa::path(get, path = "/console/console.js", tag = "console",
    responses((status = 200, description = "The console's script", body = String, content_type = "text/javascript")))]
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The console's style sheet.
#[utoipa::path(get, path = "/console/console.css", tag = "console",
    responses((status = 200, description = "The console's style sheet", body = String, content_type = "text/css")))]
async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The tenant of the URL, if it exists and the request carries its key or the operator key:
/// for the routes that only read (the console's, a notification's status).
pub(crate) fn authorize_reader(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<Arc<Tenant>, AppError> {
    let found = state.runtime.tenant(tenant)?;
    let authorization = headers.get(header::AUTHORIZATION);
    if state.operator_key.is_some()
        && check_api_key(state.operator_key.as_deref(), authorization).is_ok()
    {
        return Ok(found);
    }
    let configured = state.api_keys.get(tenant).and_then(Option::as_deref);
    match check_api_key(configured, authorization) {
        Ok(()) => Ok(found),
        Err(KeyRejection::NotConfigured) if state.operator_key.is_none() => Err(AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "tenant `{tenant}` has no API key configured (api_key_env) and no operator key \
                 is set (WXNOTIFY_OPERATOR_KEY)"
            ),
        )),
        Err(_) => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong `Authorization: Bearer` key (the tenant's API key or the operator key)",
        )),
    }
}

/// Milliseconds since the Unix epoch.
fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A query string the route cannot read, as the API answers it.
fn query_error(rejection: &QueryRejection) -> AppError {
    AppError::new(
        StatusCode::BAD_REQUEST,
        "invalid_input",
        rejection.body_text(),
    )
}

/// `[since, until)` from the query, in milliseconds; the last day by default.
fn window(since: Option<u64>, until: Option<u64>) -> Result<(SystemTime, SystemTime), AppError> {
    let until = until.map_or_else(SystemTime::now, |ms| UNIX_EPOCH + Duration::from_millis(ms));
    let since = since.map_or_else(
        || until.checked_sub(DEFAULT_WINDOW).unwrap_or(UNIX_EPOCH),
        |ms| UNIX_EPOCH + Duration::from_millis(ms),
    );
    if since > until {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "`since` is after `until`",
        ));
    }
    Ok((since, until))
}

/// The query of `GET /v1/{tenant}/console/notifications`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationsQuery {
    /// Accepted at or after (Unix milliseconds; default: a day before `until`).
    since: Option<u64>,
    /// Accepted before (Unix milliseconds; default: now).
    until: Option<u64>,
    /// Only this state: `queued`, `in_flight`, `delivered` or `failed`.
    state: Option<String>,
    /// An outbox id, or a part of a recipient (`mini:…`, `oa:…`, `union:…`).
    q: Option<String>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// Rows per page (default 100, at most 10 000).
    limit: Option<usize>,
}

/// A page of a tenant's notifications, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsolePage {
    /// The notifications.
    pub notifications: Vec<ConsoleNotification>,
    /// Pass as `after` for the next page; `null` once the window is exhausted.
    pub next: Option<String>,
}

/// A notification as the console lists it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsoleNotification {
    /// The outbox id.
    pub id: String,
    /// `mini:{openid}`, `oa:{openid}` or `union:{unionid}` (`null` for notifications accepted
    /// before recipients were kept).
    pub recipient: Option<String>,
    /// `queued`, `in_flight`, `delivered` or `failed`.
    pub state: String,
    /// The channel that delivered.
    pub channel: Option<Channel>,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last error of a notification not delivered (yet).
    #[schema(value_type = Option<wxnotify_contract::Error>)]
    pub error: Option<Value>,
    /// When it was accepted (Unix milliseconds).
    pub enqueued_at: u64,
    /// When it is tried next, while queued.
    pub next_attempt_at: Option<u64>,
    /// When it became final.
    pub finished_at: Option<u64>,
}

impl From<ListedMessage> for ConsoleNotification {
    fn from(message: ListedMessage) -> Self {
        let status = message.status;
        let described = describe_detail(status.state, status.last_detail.as_deref());
        ConsoleNotification {
            id: message.id,
            recipient: message.recipient,
            state: status.state.as_str().to_owned(),
            channel: described.delivery.map(|d| d.channel),
            attempts: status.attempts,
            error: described.error,
            enqueued_at: millis(status.enqueued_at),
            next_attempt_at: status.next_attempt_at.map(millis),
            finished_at: status.finished_at.map(millis),
        }
    }
}

/// A tenant's notifications of a time window, newest first, filtered and paged.
#[utoipa::path(
    get, path = "/v1/{tenant}/console/notifications", tag = "console",
    params(("tenant" = String, Path, description = "The tenant id"), NotificationsQuery),
    responses(
        (status = 200, description = "A page", body = ConsolePage),
        (status = 400, description = "A bad state, window or cursor", body = ErrorBody),
        (status = 401, description = "Missing or wrong key", body = ErrorBody),
        (status = 503, description = "The outbox does not answer", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
async fn notifications(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    query: Result<Query<NotificationsQuery>, QueryRejection>,
) -> Result<Json<ConsolePage>, AppError> {
    authorize_reader(&state, &tenant, &headers)?;
    let Query(query) = query.map_err(|rejection| query_error(&rejection))?;
    let (since, until) = window(query.since, query.until)?;
    let filter = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => Some(MessageState::parse(name).ok_or_else(|| {
            AppError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                format!("unknown state `{name}`: queued, in_flight, delivered or failed"),
            )
        })?),
    };
    let after = match query.after.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<PageCursor>().map_err(|error| {
            AppError::new(StatusCode::BAD_REQUEST, "invalid_input", error.to_string())
        })?),
    };
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let page = state
        .outbox
        .list(&ListQuery {
            tenant: &tenant,
            since,
            until,
            state: filter,
            search,
            after: after.as_ref(),
            // The outbox clamps it to 1..=MAX_PAGE.
            limit: query.limit.unwrap_or(DEFAULT_LIMIT),
        })
        .await?;
    Ok(Json(ConsolePage {
        notifications: page.messages.into_iter().map(Into::into).collect(),
        next: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// The query of `GET /v1/{tenant}/console/summary`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// Accepted at or after (Unix milliseconds; default: a day before `until`).
    since: Option<u64>,
    /// Accepted before (Unix milliseconds; default: now).
    until: Option<u64>,
    /// Slices of the window (default 24, at most 1 000).
    buckets: Option<usize>,
}

/// Notifications accepted in one slice of the window, by state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OutcomeCounts {
    /// Where the slice starts (Unix milliseconds).
    pub start: u64,
    /// Queued, never tried.
    pub queued: u64,
    /// Queued again after a failed attempt.
    pub retrying: u64,
    /// Being sent.
    pub in_flight: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed for good.
    pub failed: u64,
}

impl From<Bucket> for OutcomeCounts {
    fn from(bucket: Bucket) -> Self {
        OutcomeCounts {
            start: millis(bucket.start),
            queued: bucket.queued,
            retrying: bucket.retrying,
            in_flight: bucket.in_flight,
            delivered: bucket.delivered,
            failed: bucket.failed,
        }
    }
}

/// A tenant's deliveries at a glance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsoleSummary {
    /// The window's start (Unix milliseconds).
    pub since: u64,
    /// The window's end.
    pub until: u64,
    /// Outcomes by slice of the window, oldest first.
    pub buckets: Vec<OutcomeCounts>,
    /// Notifications waiting now, whenever accepted (retries and paused ones included).
    pub queued: u64,
    /// Notifications being sent now.
    pub in_flight: u64,
    /// Notifications of the window waiting for a retry.
    pub retrying: u64,
    /// The token cache of each account (times in Unix seconds; never the token).
    pub tokens: Vec<TokenCacheState>,
    /// The server's time (Unix milliseconds), to show ages against.
    pub now: u64,
}

/// Outcomes over time, queue depth, retry backlog and token cache of a tenant.
#[utoipa::path(
    get, path = "/v1/{tenant}/console/summary", tag = "console",
    params(("tenant" = String, Path, description = "The tenant id"), SummaryQuery),
    responses(
        (status = 200, description = "The summary", body = ConsoleSummary),
        (status = 400, description = "A bad window", body = ErrorBody),
        (status = 401, description = "Missing or wrong key", body = ErrorBody),
        (status = 503, description = "The outbox or the store does not answer", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
async fn summary(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<SummaryQuery>, QueryRejection>,
) -> Result<Json<ConsoleSummary>, AppError> {
    let tenant = authorize_reader(&state, &tenant_id, &headers)?;
    let Query(query) = query.map_err(|rejection| query_error(&rejection))?;
    let (since, until) = window(query.since, query.until)?;
    // The outbox clamps it to 1..=MAX_BUCKETS.
    let buckets = query.buckets.unwrap_or(DEFAULT_BUCKETS);
    let outcomes = state
        .outbox
        .outcomes(&tenant_id, since, until, buckets)
        .await?;
    let depth = state.outbox.depth(Some(&tenant_id)).await?;
    let tokens = tenant.token_cache().await?;
    Ok(Json(ConsoleSummary {
        since: millis(since),
        until: millis(until),
        retrying: outcomes.iter().map(|b| b.retrying).sum(),
        buckets: outcomes.into_iter().map(Into::into).collect(),
        queued: depth.queued,
        in_flight: depth.in_flight,
        tokens,
        now: millis(SystemTime::now()),
    }))
}
