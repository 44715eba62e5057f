//! `wechat:notify/types.error`: why a call failed, what its JSON and HTTP status are, and —
//! in one function, [`Error::retry`] — what it means for trying again.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An errcode answer from WeChat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// WeChat's errcode.
    pub errcode: i32,
    /// WeChat's text, including its `rid` for support requests.
    pub errmsg: String,
}

impl ApiError {
    /// An errcode answer.
    pub fn new(errcode: i32, errmsg: impl Into<String>) -> ApiError {
        ApiError {
            errcode,
            errmsg: errmsg.into(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "errcode {}: {}", self.errcode, self.errmsg)
    }
}

/// Why a call failed, phrased as what the caller should do (the WIT documents each case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ErrorJson", try_from = "ErrorJson")]
pub enum Error {
    /// Fix the request.
    InvalidInput(String),
    /// An identity mapping needed to reach the user is unknown.
    NotFound(String),
    /// The user cannot or will not receive this message. Final.
    Refused(ApiError),
    /// WeChat rejected the request itself. Final.
    Rejected(ApiError),
    /// A quota is exhausted.
    Quota {
        /// WeChat's (or the service's) answer.
        error: ApiError,
        /// When it resets, if the component knows better than the errcode says.
        retry_after_secs: Option<u32>,
    },
    /// The credentials or the account's rights do not work. Fix the configuration.
    Auth(ApiError),
    /// Busy, unreachable or garbled. Retry later.
    Unavailable {
        /// What happened.
        message: String,
        /// When a retry may succeed, if the component knows.
        retry_after_secs: Option<u32>,
    },
    /// The tenant's configuration is missing or invalid.
    Config(String),
    /// Any other errcode.
    Api(ApiError),
}

/// WeChat's "daily quota reached" errcode: nothing gets through before midnight China time.
pub const DAILY_QUOTA_ERRCODE: i32 = 45009;
/// How long WeChat's other limits (45011: API frequency) take to clear.
const PER_MINUTE_LIMIT: Duration = Duration::from_secs(60);

/// What an error means for trying the same call again: the one place that decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Final: the same call gives the same answer.
    Never,
    /// Transient: try again with backoff.
    WithBackoff,
    /// Try again after this long.
    After(Duration),
    /// The account's daily quota is spent: nothing gets through before WeChat resets it at
    /// midnight China time.
    AtQuotaReset,
}

impl Error {
    /// An `unavailable` error without a retry hint.
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::Unavailable {
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// A `quota` error without a retry hint.
    pub fn quota(error: ApiError) -> Error {
        Error::Quota {
            error,
            retry_after_secs: None,
        }
    }

    /// A storage failure: the host's key-value backend did not answer.
    pub fn storage(what: impl fmt::Display) -> Error {
        Error::unavailable(format!("key-value store: {what}"))
    }

    /// The case name, as the JSON's `kind` says it.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "invalid_input",
            Error::NotFound(_) => "not_found",
            Error::Refused(_) => "refused",
            Error::Rejected(_) => "rejected",
            Error::Quota { .. } => "quota",
            Error::Auth(_) => "auth",
            Error::Unavailable { .. } => "unavailable",
            Error::Config(_) => "config",
            Error::Api(_) => "api",
        }
    }

    /// WeChat's answer, for the cases that carry one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::Refused(e)
            | Error::Rejected(e)
            | Error::Auth(e)
            | Error::Api(e)
            | Error::Quota { error: e, .. } => Some(e),
            Error::InvalidInput(_)
            | Error::NotFound(_)
            | Error::Unavailable { .. }
            | Error::Config(_) => None,
        }
    }

    /// The retry hint the component gave, if any.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Error::Quota {
                retry_after_secs, ..
            }
            | Error::Unavailable {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => None,
        }
    }

    /// What this error means for trying again. A hint from the component wins: a WeCom robot's
    /// 45009 is a per-minute limit, not WeChat's daily quota.
    pub fn retry(&self) -> Retry {
        match self {
            Error::Quota {
                retry_after_secs: Some(secs),
                ..
            }
            | Error::Unavailable {
                retry_after_secs: Some(secs),
                ..
            } => Retry::After(Duration::from_secs(u64::from(*secs))),
            Error::Quota { error, .. } if error.errcode == DAILY_QUOTA_ERRCODE => {
                Retry::AtQuotaReset
            }
            Error::Quota { .. } => Retry::After(PER_MINUTE_LIMIT),
            Error::Unavailable { .. } => Retry::WithBackoff,
            Error::InvalidInput(_)
            | Error::NotFound(_)
            | Error::Refused(_)
            | Error::Rejected(_)
            | Error::Auth(_)
            | Error::Config(_)
            | Error::Api(_) => Retry::Never,
        }
    }

    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retry() != Retry::Never
    }

    /// The HTTP status of an answer that failed with this error: 4xx final, 429/503 retry
    /// later, 5xx for a fault to fix on the server's side.
    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidInput(_) => 400,
            Error::NotFound(_) => 404,
            Error::Refused(_) | Error::Rejected(_) => 422,
            Error::Quota { .. } => 429,
            Error::Unavailable { .. } => 503,
            Error::Auth(_) | Error::Api(_) => 502,
            Error::Config(_) => 500,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::Refused(e) => write!(f, "refused by the user: {e}"),
            Error::Rejected(e) => write!(f, "rejected by WeChat: {e}"),
            Error::Quota { error, .. } => write!(f, "quota exhausted: {error}"),
            Error::Auth(e) => write!(f, "credentials rejected: {e}"),
            Error::Unavailable { message, .. } => write!(f, "unavailable: {message}"),
            Error::Config(m) => write!(f, "configuration: {m}"),
            Error::Api(e) => write!(f, "WeChat API error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The JSON of an [`Error`]: `{"kind", "message", "errcode"?, "errmsg"?, "retry_after_secs"?}`.
/// `message` is the text, or `errcode N: errmsg` for the cases that carry WeChat's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = Error))]
pub struct ErrorJson {
    /// The case: `invalid_input`, `not_found`, `refused`, `rejected`, `quota`, `auth`,
    /// `unavailable`, `config` or `api`.
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// WeChat's errcode, for `refused`, `rejected`, `quota`, `auth` and `api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i32>,
    /// WeChat's errmsg, with `errcode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errmsg: Option<String>,
    /// When a retry may succeed, when the component knows (`quota`, `unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u32>,
}

impl From<Error> for ErrorJson {
    fn from(error: Error) -> Self {
        let kind = error.kind().to_owned();
        let retry_after_secs = error.retry_after_secs();
        match error {
            Error::InvalidInput(message)
            | Error::NotFound(message)
            | Error::Config(message)
            | Error::Unavailable { message, .. } => ErrorJson {
                kind,
                message,
                errcode: None,
                errmsg: None,
                retry_after_secs,
            },
            Error::Refused(api)
            | Error::Rejected(api)
            | Error::Auth(api)
            | Error::Api(api)
            | Error::Quota { error: api, .. } => ErrorJson {
                kind,
                message: api.to_string(),
                errcode: Some(api.errcode),
                errmsg: Some(api.errmsg),
                retry_after_secs,
            },
        }
    }
}

impl TryFrom<ErrorJson> for Error {
    type Error = String;

    fn try_from(json: ErrorJson) -> Result<Self, String> {
        let api = || match (json.errcode, &json.errmsg) {
            (Some(errcode), Some(errmsg)) => Ok(ApiError::new(errcode, errmsg.clone())),
            _ => Err(format!(
                "a `{}` error needs `errcode` and `errmsg`",
                json.kind
            )),
        };
        Ok(match json.kind.as_str() {
            "invalid_input" => Error::InvalidInput(json.message),
            "not_found" => Error::NotFound(json.message),
            "config" => Error::Config(json.message),
            "unavailable" => Error::Unavailable {
                message: json.message,
                retry_after_secs: json.retry_after_secs,
            },
            "refused" => Error::Refused(api()?),
            "rejected" => Error::Rejected(api()?),
            "auth" => Error::Auth(api()?),
            "api" => Error::Api(api()?),
            "quota" => Error::Quota {
                error: api()?,
                retry_after_secs: json.retry_after_secs,
            },
            other => return Err(format!("unknown error kind `{other}`")),
        })
    }
}

#[cfg(feature = "utoipa")]
impl utoipa::PartialSchema for Error {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ErrorJson::schema()
    }
}

#[cfg(feature = "utoipa")]
impl utoipa::ToSchema for Error {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        ErrorJson::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn api(errcode: i32) -> ApiError {
        ApiError::new(errcode, "api freq out of limit")
    }

    #[test]
    fn errors_have_one_json_shape_and_read_back() {
        let quota = Error::quota(api(45009));
        let json = serde_json::to_value(&quota).unwrap();
        assert_eq!(
            json,
            json!({"kind": "quota", "message": "errcode 45009: api freq out of limit",
                   "errcode": 45009, "errmsg": "api freq out of limit"})
        );
        assert_eq!(serde_json::from_value::<Error>(json).unwrap(), quota);
        let hinted = Error::Unavailable {
            message: "busy".into(),
            retry_after_secs: Some(5),
        };
        let json = serde_json::to_value(&hinted).unwrap();
        assert_eq!(
            json,
            json!({"kind": "unavailable", "message": "busy", "retry_after_secs": 5})
        );
        assert_eq!(serde_json::from_value::<Error>(json).unwrap(), hinted);
        assert!(
            serde_json::from_value::<Error>(json!({"kind": "refused", "message": "m"}))
                .unwrap_err()
                .to_string()
                .contains("needs `errcode`")
        );
        assert!(serde_json::from_value::<Error>(json!({"kind": "odd", "message": "m"})).is_err());
    }

    #[test]
    fn one_function_says_what_a_retry_may_do() {
        assert_eq!(Error::quota(api(45009)).retry(), Retry::AtQuotaReset);
        assert_eq!(
            Error::quota(api(45011)).retry(),
            Retry::After(PER_MINUTE_LIMIT)
        );
        // A component that knows better wins: a robot's 45009 clears within a minute.
        let robot = Error::Quota {
            error: api(45009),
            retry_after_secs: Some(60),
        };
        assert_eq!(robot.retry(), Retry::After(Duration::from_secs(60)));
        assert_eq!(Error::unavailable("busy").retry(), Retry::WithBackoff);
        for final_error in [
            Error::InvalidInput(String::new()),
            Error::NotFound(String::new()),
            Error::Refused(api(43101)),
            Error::Rejected(api(40003)),
            Error::Auth(api(40125)),
            Error::Config(String::new()),
            Error::Api(api(99999)),
        ] {
            assert_eq!(final_error.retry(), Retry::Never, "{final_error}");
            assert!(!final_error.is_retryable());
            assert!(final_error.status() < 429 || final_error.status() >= 500);
            assert_ne!(final_error.status(), 503);
        }
        assert_eq!(Error::quota(api(45009)).status(), 429);
        assert_eq!(Error::unavailable("x").status(), 503);
    }
}
