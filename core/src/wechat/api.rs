//! WeChat API answers: parsing the common envelope and classifying errcodes.

use serde::de::DeserializeOwned;

use super::error::{ApiError, Error};

pub use wxnotify_rules::errcodes::{CONCURRENT_SEND, ErrcodeClass, classify};

/// The typed error for a non-zero errcode.
pub fn error_for(api: ApiError) -> Error {
    match classify(api.errcode) {
        ErrcodeClass::Refused => Error::Refused(api),
        ErrcodeClass::Rejected => Error::Rejected(api),
        ErrcodeClass::Quota => Error::quota(api),
        // A token still invalid after the one permitted refresh is a credentials problem.
        ErrcodeClass::TokenInvalid | ErrcodeClass::Auth => Error::Auth(api),
        ErrcodeClass::Busy if api.errcode == CONCURRENT_SEND => Error::unavailable(format!(
            "WeChat is still handling another send to this user (send to one user one at a time): {api}"
        )),
        ErrcodeClass::Busy => Error::unavailable(format!("WeChat is busy: {api}")),
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
        Error::unavailable(format!(
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
            assert!(matches!(err, Error::Quota { .. }) && err.is_retryable());
        }
    }

    fn class_of(errcode: i32) -> Error {
        error_for(ApiError {
            errcode,
            errmsg: "x".into(),
        })
    }

    #[test]
    fn a_banned_capability_is_a_configuration_problem() {
        // 43107: the account's subscribe-message capability is banned.
        let err = class_of(43107);
        assert!(
            matches!(err, Error::Auth(ref api) if api.errcode == 43107),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_concurrent_send_to_one_user_is_retried_shortly() {
        assert_eq!(classify(43108), ErrcodeClass::Busy);
        let err = class_of(43108);
        assert!(err.is_retryable(), "{err:?}");
        assert!(
            matches!(err, Error::Unavailable { message: ref m, .. } if m.contains("one user one at a time") && m.contains("43108")),
            "{err:?}"
        );
    }

    #[test]
    fn sensitive_words_are_final_and_keep_wechats_field() {
        let errmsg = "content hit sensitive word, data.thing1.value rid: 6650c4f1-2d1e";
        let err = error_for(ApiError {
            errcode: 45168,
            errmsg: errmsg.into(),
        });
        assert_eq!(
            err,
            Error::Rejected(ApiError {
                errcode: 45168,
                errmsg: errmsg.into()
            })
        );
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("data.thing1.value"), "{err}");
    }

    #[test]
    fn an_invalid_page_path_is_a_wrong_request() {
        for code in [40165, 41030] {
            let err = class_of(code);
            assert!(matches!(err, Error::Rejected(_)), "{code}: {err:?}");
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn every_other_documented_errcode_has_a_class() {
        // wechat-api.md's remaining tables: quota queries and resets, customer-service limits.
        for (code, class) in [
            (76003, ErrcodeClass::Rejected),
            (76021, ErrcodeClass::Rejected),
            (76022, ErrcodeClass::Rejected),
            (48006, ErrcodeClass::Quota),
            (45047, ErrcodeClass::Quota),
            (45015, ErrcodeClass::Refused),
            (40163, ErrcodeClass::Rejected),
            (40226, ErrcodeClass::Refused),
            (61004, ErrcodeClass::Auth),
            (89506, ErrcodeClass::Auth),
        ] {
            assert_eq!(classify(code), class, "{code}");
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
            matches!(err, Error::Unavailable { message: ref m, .. } if m.contains("/cgi-bin/x") && m.contains("502"))
        );
        let err = parse::<Sent>("t", 200, br#"{"errcode":0}"#).unwrap_err();
        assert!(
            matches!(err, Error::Unavailable { message: ref m, .. } if m.contains("missing fields"))
        );
    }
}
