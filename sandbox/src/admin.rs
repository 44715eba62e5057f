//! The admin HTTP API under `/sandbox`, for `wxnotify sandbox` driven from a shell (or tests in
//! another process). It mirrors the Rust API of [`SandboxState`]; answers are plain JSON and
//! errors use HTTP status codes with `{"error": "..."}` — this API is ours, not WeChat's.
//! Bodies are JSON whatever the `Content-Type` (so `curl -d '{...}'` works).
//!
//! | call | body | answer |
//! |---|---|---|
//! | `GET /sandbox` | | accounts (appid, secret, templates, pages), user and follower counts |
//! | `POST /sandbox/users` | [`SeedUser`] fields, all optional | [`crate::SeededUser`] |
//! | `POST /sandbox/followers` | `{"count"}` | `{"added","followers","users":[SeededUser]}` |
//! | `POST /sandbox/users/{mini_openid}/login-code` | | `{"code"}` |
//! | `POST /sandbox/users/{mini_openid}/subscriptions` | `{"template_id","count"?}` (count 1) | `{"remaining"}` |
//! | `PUT /sandbox/users/{oa_openid}/following` | `{"following": bool}` | `{"following","push"}`: pushes `subscribe`/`unsubscribe` |
//! | `POST /sandbox/users/{mini_openid}/popup` | `{"template_id","answer":"accept"\|"reject"}` | `{"remaining","push"}`: an accept grants one; pushes `subscribe_msg_popup_event` |
//! | `GET`/`PUT /sandbox/callbacks` | `{"official_account"?: url\|null, "mini_program"?: url\|null}` | where pushes go (see [`crate::pushes`]) |
//! | `GET /sandbox/pushes` | | the pushes made and their answers |
//! | `GET /sandbox/phone` | | the phone page (see `phone`); `/sandbox/phone/state` its JSON |
//! | `GET`/`DELETE /sandbox/requests` | | recorded requests / 204 |
//! | `GET`/`DELETE /sandbox/messages` | | `{"template":[...],"subscribe":[...]}` / 204 |
//! | `GET /sandbox/stats` | | [`crate::Stats`] |
//! | `GET`/`POST`/`DELETE /sandbox/faults` | [`Fault`] on POST | list / 201 / 204 |
//! | `POST /sandbox/clock/advance` | `{"seconds"}` | `{"now_unix_ms"}` |
//! | `POST /sandbox/tokens/{appid}/invalidate` or `/expire` | | 204 |
//!
//! A fault body looks like `{"endpoint":"/cgi-bin/message/template/send","action":{"type":"errcode","errcode":-1,"errmsg":"system error"},"times":2,"probability":1.0}`
//! with `action` one of `{"type":"errcode",...}`, `{"type":"latency","millis":N}`,
//! `{"type":"drop_connection"}`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::Account;
use crate::error::SandboxError;
use crate::faults::Fault;
use crate::pushes::PushEvent;
use crate::state::SandboxState;
use crate::users::SeedUser;

/// The `/sandbox` routes (state applied by [`crate::router`]).
pub(crate) fn routes() -> Router<SandboxState> {
    Router::new()
        .route("/sandbox", get(overview))
        .route("/sandbox/users", post(add_user))
        .route("/sandbox/followers", post(add_followers))
        .route("/sandbox/users/{openid}/login-code", post(login_code))
        .route("/sandbox/users/{openid}/subscriptions", post(subscribe))
        .route("/sandbox/users/{openid}/following", put(following))
        .route("/sandbox/users/{openid}/popup", post(popup))
        .route("/sandbox/callbacks", get(callbacks).put(set_callbacks))
        .route("/sandbox/pushes", get(pushes))
        .route("/sandbox/requests", get(requests).delete(clear_requests))
        .route("/sandbox/messages", get(messages).delete(clear_messages))
        .route("/sandbox/stats", get(stats))
        .route(
            "/sandbox/faults",
            get(faults).post(inject).delete(clear_faults),
        )
        .route("/sandbox/clock/advance", post(advance_clock))
        .route(
            "/sandbox/tokens/{appid}/invalidate",
            post(invalidate_tokens),
        )
        .route("/sandbox/tokens/{appid}/expire", post(expire_tokens))
        .merge(crate::phone::routes())
}

type AdminResult = Result<Json<Value>, AdminError>;

/// An admin API error: a status and a message.
#[derive(Debug)]
struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<SandboxError> for AdminError {
    fn from(error: SandboxError) -> Self {
        let status = match error {
            SandboxError::InvalidProbability(_) => StatusCode::BAD_REQUEST,
            SandboxError::UnknownMiniOpenid(_)
            | SandboxError::UnknownOaOpenid(_)
            | SandboxError::UnknownAppid(_)
            | SandboxError::UnknownTemplate(_) => StatusCode::NOT_FOUND,
        };
        Self(status, error.to_string())
    }
}

/// Parses a JSON body whatever its content type (so `curl -d` works); an empty body reads as
/// `{}` so endpoints whose fields all have defaults need none.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| {
        AdminError(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {error}"),
        )
    })
}

fn to_json(value: impl serde::Serialize) -> AdminResult {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|error| AdminError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

async fn overview(State(state): State<SandboxState>) -> AdminResult {
    let account = |account: Account| {
        let credentials = state.config().credentials(account);
        json!({
            "appid": credentials.appid,
            "secret": credentials.secret,
            "templates": state.templates(account),
        })
    };
    let mut mini = account(Account::MiniProgram);
    mini["pages"] = json!(state.config().mini_pages);
    Ok(Json(json!({
        "mini_program": mini,
        "official_account": account(Account::OfficialAccount),
        "users": state.user_count(),
        "followers": state.follower_count(),
        "token_ttl_seconds": state.config().token_ttl.as_secs(),
        "page_size": state.config().page_size,
        "now_unix_ms": crate::record::unix_millis_of(state.now()),
    })))
}

async fn add_user(State(state): State<SandboxState>, body: Bytes) -> AdminResult {
    let seed: SeedUser = parse(&body)?;
    to_json(state.add_user(seed))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowersRequest {
    count: usize,
}

async fn add_followers(State(state): State<SandboxState>, body: Bytes) -> AdminResult {
    let request: FollowersRequest = parse(&body)?;
    let users = state.add_followers(request.count);
    Ok(Json(json!({
        "added": users.len(),
        "followers": state.follower_count(),
        "users": users,
    })))
}

async fn login_code(State(state): State<SandboxState>, Path(openid): Path<String>) -> AdminResult {
    let code = state.issue_login_code(&openid)?;
    Ok(Json(json!({ "code": code })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionRequest {
    template_id: String,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

async fn subscribe(
    State(state): State<SandboxState>,
    Path(openid): Path<String>,
    body: Bytes,
) -> AdminResult {
    let request: SubscriptionRequest = parse(&body)?;
    let remaining = state.grant_subscription(&openid, &request.template_id, request.count)?;
    Ok(Json(json!({ "remaining": remaining })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowingRequest {
    following: bool,
}

async fn following(
    State(state): State<SandboxState>,
    Path(openid): Path<String>,
    body: Bytes,
) -> AdminResult {
    let request: FollowingRequest = parse(&body)?;
    state.set_following(&openid, request.following)?;
    let event = if request.following {
        PushEvent::Follow
    } else {
        PushEvent::Unfollow
    };
    let push = crate::pushes::push(&state, &openid, event).await;
    Ok(Json(
        json!({ "following": request.following, "push": push }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum PopupAnswer {
    Accept,
    Reject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PopupRequest {
    template_id: String,
    answer: PopupAnswer,
}

/// The user answered `wx.requestSubscribeMessage`'s popup: an accept grants one send.
async fn popup(
    State(state): State<SandboxState>,
    Path(openid): Path<String>,
    body: Bytes,
) -> AdminResult {
    let request: PopupRequest = parse(&body)?;
    let accepted = matches!(request.answer, PopupAnswer::Accept);
    // Granting nothing still checks the user and the template, as the popup would.
    let remaining = state.grant_subscription(&openid, &request.template_id, u32::from(accepted))?;
    let event = PushEvent::Popup {
        template_id: request.template_id,
        accepted,
    };
    let push = crate::pushes::push(&state, &openid, event).await;
    Ok(Json(json!({ "remaining": remaining, "push": push })))
}

/// The callback URLs; `PUT` changes the accounts it names (`null` stops pushing there).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbacksRequest {
    #[serde(default, with = "serde_with_absent")]
    official_account: Option<Option<String>>,
    #[serde(default, with = "serde_with_absent")]
    mini_program: Option<Option<String>>,
}

/// `Option<Option<T>>` that tells an absent field (`None`) from `null` (`Some(None)`).
mod serde_with_absent {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(deserializer).map(Some)
    }
}

async fn callbacks(State(state): State<SandboxState>) -> AdminResult {
    Ok(Json(json!({
        "official_account": state.callback_url(Account::OfficialAccount),
        "mini_program": state.callback_url(Account::MiniProgram),
    })))
}

async fn set_callbacks(State(state): State<SandboxState>, body: Bytes) -> AdminResult {
    let request: CallbacksRequest = parse(&body)?;
    for (account, url) in [
        (Account::OfficialAccount, request.official_account),
        (Account::MiniProgram, request.mini_program),
    ] {
        let Some(url) = url else { continue };
        if let Some(url) = &url
            && !url.starts_with("http://")
        {
            return Err(AdminError(
                StatusCode::BAD_REQUEST,
                format!("the sandbox pushes to http:// URLs only, not `{url}`"),
            ));
        }
        state.set_callback_url(account, url);
    }
    callbacks(State(state)).await
}

async fn pushes(State(state): State<SandboxState>) -> AdminResult {
    to_json(state.pushes())
}

async fn requests(State(state): State<SandboxState>) -> AdminResult {
    to_json(state.requests())
}

async fn clear_requests(State(state): State<SandboxState>) -> StatusCode {
    state.clear_requests();
    StatusCode::NO_CONTENT
}

async fn messages(State(state): State<SandboxState>) -> AdminResult {
    Ok(Json(json!({
        "template": to_json(state.delivered_template_messages())?.0,
        "subscribe": to_json(state.delivered_subscribe_messages())?.0,
    })))
}

async fn clear_messages(State(state): State<SandboxState>) -> StatusCode {
    state.clear_messages();
    StatusCode::NO_CONTENT
}

async fn stats(State(state): State<SandboxState>) -> AdminResult {
    to_json(state.stats())
}

async fn faults(State(state): State<SandboxState>) -> AdminResult {
    to_json(state.faults())
}

async fn inject(State(state): State<SandboxState>, body: Bytes) -> Result<StatusCode, AdminError> {
    let fault: Fault = parse(&body)?;
    fault.validate()?;
    state.inject(fault);
    Ok(StatusCode::CREATED)
}

async fn clear_faults(State(state): State<SandboxState>) -> StatusCode {
    state.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    seconds: f64,
}

async fn advance_clock(State(state): State<SandboxState>, body: Bytes) -> AdminResult {
    let request: AdvanceRequest = parse(&body)?;
    let by = Duration::try_from_secs_f64(request.seconds).map_err(|error| {
        AdminError(
            StatusCode::BAD_REQUEST,
            format!("seconds must be a non-negative number: {error}"),
        )
    })?;
    state.advance_clock(by);
    Ok(Json(
        json!({ "now_unix_ms": crate::record::unix_millis_of(state.now()) }),
    ))
}

async fn invalidate_tokens(
    State(state): State<SandboxState>,
    Path(appid): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.invalidate_tokens(&appid)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn expire_tokens(
    State(state): State<SandboxState>,
    Path(appid): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.expire_tokens(&appid)?;
    Ok(StatusCode::NO_CONTENT)
}
