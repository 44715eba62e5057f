//! Errors: WeChat-style API errors on the wire, and errors of the Rust/admin API.

use std::borrow::Cow;

use axum::Json;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;

/// A WeChat error answer: HTTP 200 with `{"errcode":N,"errmsg":"<text> rid: <id>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) errcode: i64,
    pub(crate) errmsg: Cow<'static, str>,
}

/// Result of an API handler.
pub(crate) type ApiResult<T = Json<serde_json::Value>> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(errcode: i64, errmsg: impl Into<Cow<'static, str>>) -> Self {
        Self {
            errcode,
            errmsg: errmsg.into(),
        }
    }

    pub(crate) fn data_format() -> Self {
        Self::new(47001, "data format error")
    }

    pub(crate) fn invalid_openid() -> Self {
        Self::new(40003, "invalid openid")
    }

    pub(crate) fn invalid_template_id() -> Self {
        Self::new(40037, "invalid template_id")
    }

    pub(crate) fn require_get() -> Self {
        Self::new(43001, "require GET method")
    }

    pub(crate) fn require_post() -> Self {
        Self::new(43002, "require POST method")
    }

    pub(crate) fn argument_invalid(detail: impl std::fmt::Display) -> Self {
        Self::new(47003, format!("argument invalid! {detail}"))
    }
}

/// WeChat appends a request id to every errmsg; clients must match on errcode, never on the
/// full text, and a random suffix keeps tests honest about that.
fn rid() -> String {
    let mut rng = rand::rng();
    format!(
        "{:08x}-{:08x}-{:08x}",
        rng.random::<u32>(),
        rng.random::<u32>(),
        rng.random::<u32>()
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // WeChat reports API errors with HTTP 200; only the body tells.
        Json(json!({
            "errcode": self.errcode,
            "errmsg": format!("{} rid: {}", self.errmsg, rid()),
        }))
        .into_response()
    }
}

/// Errors of the sandbox's Rust API (and of the admin HTTP API built on it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SandboxError {
    /// No seeded user has this mini-program openid.
    #[error("unknown mini-program openid {0}")]
    UnknownMiniOpenid(String),
    /// No seeded user has this official-account openid.
    #[error("unknown official-account openid {0}")]
    UnknownOaOpenid(String),
    /// Neither sandbox account has this appid.
    #[error("unknown appid {0}")]
    UnknownAppid(String),
    /// The account has no template with this id.
    #[error("unknown template {0}")]
    UnknownTemplate(String),
    /// A fault's probability is outside `0.0..=1.0`.
    #[error("fault probability must be within 0.0..=1.0, got {0}")]
    InvalidProbability(f64),
}
