//! The WeChat logic: pure functions and types, no binding calls.

pub mod api;
pub mod callback;
pub mod config;
pub mod crypto;
pub mod error;
pub mod message;
pub mod token;
pub mod users;

/// Percent-encodes a query-string component.
pub fn query(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `url` with its credentials (access token, AppSecret, login code) replaced by `***`, for
/// error messages.
pub use wxnotify_rules::credentials::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_components() {
        assert_eq!(query("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
