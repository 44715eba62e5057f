//! The emulated WeChat endpoints, the router, and the request-recording / fault layer.

mod message;
mod quota;
mod sns;
mod token;
mod user;
mod wecom;

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};

use crate::config::{
    CGI_JSCODE2SESSION, CGI_QUOTA_GET, CGI_STABLE_TOKEN, CGI_SUBSCRIBE_SEND, CGI_TEMPLATE_SEND,
    CGI_TOKEN, CGI_UNIFORM_SEND, CGI_USER_BATCHGET, CGI_USER_GET, CGI_USER_INFO,
    WECOM_WEBHOOK_SEND,
};
use crate::error::ApiError;
use crate::faults::FaultAction;
use crate::record::{Framing, RecordedRequest};
use crate::state::SandboxState;

/// Largest request body accepted; WeChat's own bodies are a few kilobytes.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Response extension marking a call whose connection must be closed without an answer
/// (an injected [`FaultAction::DropConnection`]).
///
/// The sandbox's own server honours it; when you drive [`router`] directly (e.g. with tower's
/// `oneshot`) you receive a `503` response carrying this extension instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedConnection;

/// The sandbox's HTTP application: the WeChat endpoints plus the `/sandbox` admin API.
///
/// Use it directly to test without a socket; [`crate::Sandbox::start`] serves it on a port.
pub fn router(state: SandboxState) -> Router {
    Router::new()
        .route(CGI_TOKEN, get(token::classic).fallback(require_get))
        .route(CGI_STABLE_TOKEN, post(token::stable).fallback(require_post))
        .route(
            CGI_JSCODE2SESSION,
            get(sns::jscode2session).fallback(require_get),
        )
        .route(CGI_USER_GET, get(user::followers).fallback(require_get))
        .route(CGI_USER_INFO, get(user::info).fallback(require_get))
        .route(
            CGI_USER_BATCHGET,
            post(user::batch_info).fallback(require_post),
        )
        .route(
            CGI_TEMPLATE_SEND,
            post(message::template_send).fallback(require_post),
        )
        .route(
            CGI_SUBSCRIBE_SEND,
            post(message::subscribe_send).fallback(require_post),
        )
        .route(
            CGI_UNIFORM_SEND,
            post(message::uniform_send).fallback(require_post),
        )
        .route(CGI_QUOTA_GET, post(quota::get).fallback(require_post))
        .route(
            WECOM_WEBHOOK_SEND,
            post(wecom::webhook_send).fallback(require_post),
        )
        .merge(crate::admin::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn require_get() -> ApiError {
    ApiError::require_get()
}

async fn require_post() -> ApiError {
    ApiError::require_post()
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

fn is_admin(path: &str) -> bool {
    path == "/sandbox" || path.starts_with("/sandbox/")
}

/// Wraps every WeChat call: applies injected faults, then records the call with the errcode of
/// its answer. Admin calls pass straight through.
async fn observe(State(state): State<SandboxState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if is_admin(&path) {
        return next.run(request).await;
    }
    let at = state.now();
    let (parts, body) = request.into_parts();
    let mut query = Params::parse(parts.uri.query()).into_map();
    if path == WECOM_WEBHOOK_SEND
        && let Some(key) = query.get_mut("key")
    {
        // A robot's webhook key is its only credential, and records end up printed (admin
        // API, test failures): read a robot's messages back by key instead.
        *key = "***".to_owned();
    }
    let method = parts.method.to_string();
    let framing = Framing::of(&parts.headers);
    let (bytes, body_error) = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => (bytes, false),
        Err(_) => (Bytes::new(), true),
    };
    let mut record = RecordedRequest {
        method,
        path: path.clone(),
        query,
        body: recorded_body(&bytes),
        framing,
        errcode: 0,
        status: None,
        faults: Vec::new(),
        at,
    };

    let plan = state.plan_faults(&path);
    record.faults = plan.applied;
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    let response = match plan.outcome {
        Some(FaultAction::DropConnection) => {
            state.record(record);
            let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
            response.extensions_mut().insert(DroppedConnection);
            return response;
        }
        Some(FaultAction::Errcode { errcode, errmsg }) => {
            ApiError::new(errcode, errmsg).into_response()
        }
        _ if body_error => ApiError::data_format().into_response(),
        _ => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };

    // Our own answers are in-memory JSON documents; buffering them lets the record carry the
    // errcode. Buffering a body we built ourselves cannot fail.
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    record.status = Some(parts.status.as_u16());
    record.errcode = errcode_of(&bytes);
    state.record(record);
    Response::from_parts(parts, Body::from(bytes))
}

/// The `errcode` of an answer, 0 when it has none. Deserialises only that field so a
/// 10 000-openid `user/get` page is scanned, not turned into a JSON tree.
fn errcode_of(answer: &[u8]) -> i64 {
    #[derive(serde::Deserialize)]
    struct Errcode {
        errcode: Option<i64>,
    }
    serde_json::from_slice::<Errcode>(answer)
        .ok()
        .and_then(|answer| answer.errcode)
        .unwrap_or(0)
}

fn recorded_body(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    )
}

/// Decoded query parameters.
#[derive(Debug, Default)]
pub(crate) struct Params(BTreeMap<String, String>);

impl Params {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// A parameter's value; an empty value counts as missing, as it does for WeChat
    /// (`appid=` gets "appid missing").
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::parse(parts.uri.query()))
    }
}

/// A request body that must be a JSON object (else 47001, as WeChat answers).
pub(crate) struct JsonObject(pub(crate) Map<String, Value>);

impl JsonObject {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(object)) => Ok(Self(object)),
            _ => Err(ApiError::data_format()),
        }
    }

    /// A string field: `None` when absent, null or empty; 47001 when of another type.
    pub(crate) fn str(&self, key: &str) -> Result<Option<&str>, ApiError> {
        opt_str(self.0.get(key))
    }

    /// A boolean field: `None` when absent or null; 47001 when of another type.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(ApiError::data_format()),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|value| !value.is_null())
    }
}

/// A string JSON value: `None` when absent, null or empty; 47001 when of another type.
pub(crate) fn opt_str(value: Option<&Value>) -> Result<Option<&str>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str()).filter(|text| !text.is_empty())),
        Some(_) => Err(ApiError::data_format()),
    }
}
