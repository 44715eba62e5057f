//! One outgoing HTTP exchange as the WeChat flows and every host's HTTP glue see it: the
//! method, the answer, and why there was none. Shared so that the flows (`wxnotify-core`) and
//! the components' WASI plumbing (`wxnotify-component-io`) hand each other the same values.

/// The methods the flows use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
}

impl Method {
    /// `GET` or `POST`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The whole body.
    pub body: Vec<u8>,
}

/// Why a request got no answer. The text never contains the URL: its query may carry a
/// credential, so callers add what they can show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The host's egress policy refused it: retrying cannot help.
    Denied(String),
    /// Refused, reset, timed out, unreadable: it may work later.
    Failed(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Failed(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Failed(message.to_owned())
    }
}
