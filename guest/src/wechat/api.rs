//! WeChat API answers: parsing the common envelope and classifying errcodes.

use serde::de::DeserializeOwned;

use super::error::{ApiError, Error};

/// What an errcode means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrcodeClass {
    /// The access token used is stale, expired or malformed: refresh and retry once.
    TokenInvalid,
    /// The platform was busy: retry with backoff.
    Busy,
    Refused,
    Rejected,
    Quota,
    Auth,
    Other,
}

/// Classifies a non-zero errcode (see wechat-api.md §1.3, §2.1, §4).
pub fn classify(errcode: i32) -> ErrcodeClass {
    match errcode {
        40001 | 40014 | 42001 => ErrcodeClass::TokenInvalid,
        -1 => ErrcodeClass::Busy,
        // The user declined: no authorisation left, not following, blacklisted, login blocked.
        43101 | 43004 | 43019 | 40226 => ErrcodeClass::Refused,
        // The request itself is wrong: openid, template, data, page, retired API, login code.
        40003 | 40029 | 40032 | 40036 | 40037 | 40163 | 41030 | 45103 | 45109 | 47001 | 47003 => {
            ErrcodeClass::Rejected
        }
        45009 | 45011 => ErrcodeClass::Quota,
        // Credentials, whitelist and account state: only a configuration change helps.
        40002 | 40013 | 40125 | 40164 | 40243 | 41002 | 41004 | 48001 | 50004 | 50007 | 61004
        | 89501 | 89503 | 89506 | 89507 => ErrcodeClass::Auth,
        _ => ErrcodeClass::Other,
    }
}

/// The typed error for a non-zero errcode.
pub fn error_for(api: ApiError) -> Error {
    match classify(api.errcode) {
        ErrcodeClass::Refused => Error::Refused(api),
        ErrcodeClass::Rejected => Error::Rejected(api),
        ErrcodeClass::Quota => Error::Quota(api),
        // A token still invalid after the one permitted refresh is a credentials problem.
        ErrcodeClass::TokenInvalid | ErrcodeClass::Auth => Error::Auth(api),
        ErrcodeClass::Busy => Error::Unavailable(format!("WeChat is busy: {api}")),
        ErrcodeClass::Other => Error::Api(api),
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    errcode: i32,
    #[serde(default)]
    errmsg: String,
}

/// Parses a WeChat JSON answer: `Err(ApiError)` for a non-zero errcode (absent counts as 0),
/// `Ok(T)` otherwise. A body that is not the expected JSON is `Error::Unavailable`, since a
/// proxy or an outage answers that way, not WeChat.
pub fn parse<T: DeserializeOwned>(
    endpoint: &str,
    status: u16,
    body: &[u8],
) -> Result<std::result::Result<T, ApiError>, Error> {
    let garbled = |why: String| {
        Error::Unavailable(format!(
            "{endpoint} answered HTTP {status} with an unexpected body ({why}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    };
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| garbled(format!("not JSON: {e}")))?;
    if envelope.errcode != 0 {
        return Ok(Err(ApiError {
            errcode: envelope.errcode,
            errmsg: envelope.errmsg,
        }));
    }
    if !(200..300).contains(&status) {
        return Err(garbled("HTTP error status".into()));
    }
    serde_json::from_slice(body)
        .map(Ok)
        .map_err(|e| garbled(format!("missing fields: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Sent {
        msgid: i64,
    }

    #[test]
    fn token_errors_are_retried_once_then_surface_as_auth() {
        for code in [40001, 40014, 42001] {
            assert_eq!(classify(code), ErrcodeClass::TokenInvalid);
            let err = error_for(ApiError {
                errcode: code,
                errmsg: "x".into(),
            });
            assert!(matches!(err, Error::Auth(_)), "{code}");
        }
    }

    #[test]
    fn business_refusals_are_final() {
        for code in [43101, 43004, 43019] {
            let err = error_for(ApiError {
                errcode: code,
                errmsg: "x".into(),
            });
            assert!(matches!(err, Error::Refused(_)), "{code}");
            assert!(!err.is_retryable());
        }
        for code in [40003, 40037, 47003, 45109] {
            let err = error_for(ApiError {
                errcode: code,
                errmsg: "x".into(),
            });
            assert!(matches!(err, Error::Rejected(_)), "{code}");
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn busy_and_quota_are_retryable() {
        assert!(
            error_for(ApiError {
                errcode: -1,
                errmsg: "system error".into()
            })
            .is_retryable()
        );
        for code in [45009, 45011] {
            let err = error_for(ApiError {
                errcode: code,
                errmsg: "x".into(),
            });
            assert!(matches!(err, Error::Quota(_)) && err.is_retryable());
        }
    }

    #[test]
    fn unknown_codes_pass_through() {
        let err = error_for(ApiError {
            errcode: 99999,
            errmsg: "new".into(),
        });
        assert_eq!(
            err,
            Error::Api(ApiError {
                errcode: 99999,
                errmsg: "new".into()
            })
        );
    }

    #[test]
    fn parse_success_with_and_without_errcode() {
        let ok = parse::<Sent>("t", 200, br#"{"errcode":0,"errmsg":"ok","msgid":7}"#).unwrap();
        assert_eq!(ok, Ok(Sent { msgid: 7 }));
        let ok = parse::<Sent>("t", 200, br#"{"msgid":8}"#).unwrap();
        assert_eq!(ok, Ok(Sent { msgid: 8 }));
    }

    #[test]
    fn parse_errcode_even_without_payload_fields() {
        let answer = parse::<Sent>(
            "t",
            200,
            br#"{"errcode":43004,"errmsg":"require subscribe rid: 1"}"#,
        )
        .unwrap();
        assert_eq!(answer.unwrap_err().errcode, 43004);
    }

    #[test]
    fn parse_garbage_is_unavailable() {
        let err = parse::<Sent>("/cgi-bin/x", 502, b"<html>bad gateway</html>").unwrap_err();
        assert!(
            matches!(err, Error::Unavailable(ref m) if m.contains("/cgi-bin/x") && m.contains("502"))
        );
        let err = parse::<Sent>("t", 200, br#"{"errcode":0}"#).unwrap_err();
        assert!(matches!(err, Error::Unavailable(ref m) if m.contains("missing fields")));
    }
}
