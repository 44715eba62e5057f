//! The component's internal error, mapped to the WIT `error` once, at the export boundary.

use std::fmt;

/// An errcode answer from WeChat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub errcode: i32,
    pub errmsg: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "errcode {}: {}", self.errcode, self.errmsg)
    }
}

/// Why an operation failed, phrased as what the caller should do (mirrors WIT `types.error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    InvalidInput(String),
    NotFound(String),
    Refused(ApiError),
    Rejected(ApiError),
    Quota(ApiError),
    Auth(ApiError),
    Unavailable(String),
    Config(String),
    Api(ApiError),
}

impl Error {
    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Quota(_))
    }

    /// A storage failure: the host's key-value backend did not answer.
    pub fn storage(what: impl fmt::Display) -> Error {
        Error::Unavailable(format!("key-value store: {what}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::Refused(e) => write!(f, "refused by the user: {e}"),
            Error::Rejected(e) => write!(f, "rejected by WeChat: {e}"),
            Error::Quota(e) => write!(f, "quota exhausted: {e}"),
            Error::Auth(e) => write!(f, "credentials rejected: {e}"),
            Error::Unavailable(m) => write!(f, "unavailable: {m}"),
            Error::Config(m) => write!(f, "configuration: {m}"),
            Error::Api(e) => write!(f, "WeChat API error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
