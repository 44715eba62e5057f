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

/// Query parameters whose values are credentials.
const SECRET_PARAMS: [&str; 3] = ["access_token", "secret", "js_code"];

/// `url` with the values of `access_token`, `secret` and `js_code` replaced by `***`, for
/// error messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.contains(&name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", redacted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_credential_parameter() {
        assert_eq!(
            redact_url("https://h/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=S"),
            "https://h/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=***"
        );
        assert_eq!(
            redact_url("http://h/x?access_token=T&openid=o&js_code=C"),
            "http://h/x?access_token=***&openid=o&js_code=***"
        );
        assert_eq!(redact_url("http://h/x"), "http://h/x");
    }

    #[test]
    fn encodes_query_components() {
        assert_eq!(query("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
