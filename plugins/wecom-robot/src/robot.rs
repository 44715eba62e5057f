//! The WeCom group robot API: the webhook URL, the request body, what an answer means, and the
//! one retry. No I/O here: the caller passes the attempt and the pause in.
//!
//! The webhook key in the URL is the robot's only credential, so nothing this module returns
//! (errors included) ever contains it: WeCom's errmsg is scrubbed of it before it is kept.

use serde_json::json;
use wxnotify_component_io::{Failure, Response};

use crate::error::{ApiError, Error};

/// Where the robot API lives when the tenant sets no `api_base` of its own.
pub const DEFAULT_API_BASE: &str = "https://qyapi.weixin.qq.com";

/// The host's default `api_base` when a tenant sets none: the WeChat API, never a robot's.
const WECHAT_DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

pub const WEBHOOK_PATH: &str = "/cgi-bin/webhook/send";

/// Pause before the one retry of a busy or unreachable robot.
pub const RETRY_PAUSE_MS: u64 = 200;

/// One try, then one retry: a robot that is still busy is reported, not hammered (it allows 20
/// messages a minute).
pub const MAX_ATTEMPTS: u32 = 2;

/// The base URL to post to: `api_base` from config, unless it is missing or the WeChat API
/// default the host fills in for tenants that set none (the webhook key must not go there).
pub fn api_base(configured: Option<&str>) -> &str {
    match configured.map(|base| base.trim_end_matches('/')) {
        Some(base) if !base.is_empty() && base != WECHAT_DEFAULT_API_BASE => base,
        _ => DEFAULT_API_BASE,
    }
}

/// `{api_base}/cgi-bin/webhook/send?key={key}`, the key percent-encoded.
pub fn webhook_url(api_base: &str, key: &str) -> String {
    let mut encoded = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{api_base}{WEBHOOK_PATH}?key={encoded}")
}

/// The JSON body of a markdown message.
pub fn markdown_body(content: &str) -> Vec<u8> {
    json!({ "msgtype": "markdown", "markdown": { "content": content } })
        .to_string()
        .into_bytes()
}

/// What one attempt's outcome calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth one more try; the error is reported if it was the last.
    Retry(Error),
    Final(Error),
}

/// Judges one attempt. `key` is only used to scrub WeCom's errmsg.
pub fn judge(outcome: &Result<Response, Failure>, key: &str) -> Verdict {
    let response = match outcome {
        Ok(response) => response,
        Err(Failure::Denied(reason)) => {
            return Verdict::Final(Error::Config(format!(
                "the host refused to reach the robot API ({reason}): add its host \
                 (qyapi.weixin.qq.com, or the host of api_base) to the tenant's allowed_hosts"
            )));
        }
        Err(Failure::Failed(reason)) => {
            return Verdict::Retry(Error::Unavailable(format!(
                "the robot API could not be reached: {reason}"
            )));
        }
    };
    #[derive(serde::Deserialize)]
    struct Answer {
        errcode: Option<i64>,
        errmsg: Option<String>,
    }
    let answer = serde_json::from_slice::<Answer>(&response.body)
        .ok()
        .and_then(|answer| Some((answer.errcode?, answer.errmsg.unwrap_or_default())));
    let Some((errcode, errmsg)) = answer else {
        return Verdict::Retry(Error::Unavailable(format!(
            "the robot API answered HTTP {} without an errcode",
            response.status
        )));
    };
    let Ok(errcode) = i32::try_from(errcode) else {
        return Verdict::Final(Error::Api(ApiError {
            errcode: i32::MAX,
            errmsg: format!("errcode {errcode} out of range: {}", scrub(&errmsg, key)),
        }));
    };
    let errmsg = scrub(&errmsg, key);
    match errcode {
        0 => Verdict::Delivered,
        -1 => Verdict::Retry(Error::Unavailable(format!(
            "WeCom is busy (errcode -1: {errmsg})"
        ))),
        93000 => Verdict::Final(Error::BadKey(ApiError {
            errcode,
            errmsg: format!(
                "WeCom does not accept the configured webhook_key: check the key (or whether \
                 the robot was removed from its group); WeCom said: {errmsg}"
            ),
        })),
        45009 => Verdict::Final(Error::Quota(ApiError { errcode, errmsg })),
        _ => Verdict::Final(Error::Api(ApiError { errcode, errmsg })),
    }
}

/// `text` with every occurrence of the key replaced by `***`.
fn scrub(text: &str, key: &str) -> String {
    if key.is_empty() {
        text.to_owned()
    } else {
        text.replace(key, "***")
    }
}

/// Runs `attempt` until it delivers or [`judge`] says stop, at most [`MAX_ATTEMPTS`] times,
/// pausing [`RETRY_PAUSE_MS`] before the retry. Returns the attempts made.
pub fn send_with_retry(
    mut attempt: impl FnMut() -> Result<Response, Failure>,
    mut pause_ms: impl FnMut(u64),
    key: &str,
) -> Result<u32, Error> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match judge(&attempt(), key) {
            Verdict::Delivered => return Ok(attempts),
            Verdict::Retry(_) if attempts < MAX_ATTEMPTS => pause_ms(RETRY_PAUSE_MS),
            Verdict::Retry(error) | Verdict::Final(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";

    fn answer(body: &str) -> Result<Response, Failure> {
        Ok(Response {
            status: 200,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn builds_the_webhook_url_with_the_key_encoded() {
        assert_eq!(
            webhook_url("http://127.0.0.1:9000", "a b&c"),
            "http://127.0.0.1:9000/cgi-bin/webhook/send?key=a%20b%26c"
        );
        assert_eq!(
            webhook_url(DEFAULT_API_BASE, KEY),
            format!("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}")
        );
    }

    #[test]
    fn never_posts_the_key_to_the_wechat_api_default() {
        assert_eq!(api_base(None), DEFAULT_API_BASE);
        assert_eq!(
            api_base(Some("https://api.weixin.qq.com")),
            DEFAULT_API_BASE
        );
        assert_eq!(
            api_base(Some("https://api.weixin.qq.com/")),
            DEFAULT_API_BASE
        );
        assert_eq!(
            api_base(Some("http://127.0.0.1:9000/")),
            "http://127.0.0.1:9000"
        );
    }

    #[test]
    fn the_body_is_a_markdown_message() {
        let body: serde_json::Value = serde_json::from_slice(&markdown_body("**hi**")).unwrap();
        assert_eq!(
            body,
            json!({"msgtype": "markdown", "markdown": {"content": "**hi**"}})
        );
    }

    #[test]
    fn maps_each_errcode_to_what_the_caller_should_do() {
        assert_eq!(
            judge(&answer(r#"{"errcode":0,"errmsg":"ok"}"#), KEY),
            Verdict::Delivered
        );
        assert!(matches!(
            judge(
                &answer(r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#),
                KEY
            ),
            Verdict::Final(Error::Quota(ApiError { errcode: 45009, .. }))
        ));
        assert!(matches!(
            judge(&answer(r#"{"errcode":-1,"errmsg":"system busy"}"#), KEY),
            Verdict::Retry(Error::Unavailable(_))
        ));
        assert!(matches!(
            judge(&answer(r#"{"errcode":40058,"errmsg":"too long"}"#), KEY),
            Verdict::Final(Error::Api(ApiError { errcode: 40058, .. }))
        ));
        assert!(matches!(
            judge(&answer("<html>bad gateway</html>"), KEY),
            Verdict::Retry(Error::Unavailable(_))
        ));
        assert!(matches!(
            judge(&Err(Failure::Failed("connection refused".into())), KEY),
            Verdict::Retry(Error::Unavailable(_))
        ));
        assert!(matches!(
            judge(&Err(Failure::Denied("not allowed".into())), KEY),
            Verdict::Final(Error::Config(m)) if m.contains("allowed_hosts")
        ));
    }

    #[test]
    fn a_rejected_key_is_named_but_never_shown() {
        let errmsg =
            format!(r#"{{"errcode":93000,"errmsg":"invalid webhook url, hint: key={KEY}"}}"#);
        let Verdict::Final(Error::BadKey(error)) = judge(&answer(&errmsg), KEY) else {
            panic!("93000 must be a bad key");
        };
        assert_eq!(error.errcode, 93000);
        assert!(error.errmsg.contains("webhook_key"), "{}", error.errmsg);
        assert!(!error.errmsg.contains(KEY), "{}", error.errmsg);
    }

    #[test]
    fn retries_a_busy_robot_once_after_a_pause() {
        let mut answers = vec![
            answer(r#"{"errcode":0,"errmsg":"ok"}"#),
            answer(r#"{"errcode":-1,"errmsg":"system busy"}"#),
        ];
        let mut pauses = Vec::new();
        let attempts = send_with_retry(|| answers.pop().unwrap(), |ms| pauses.push(ms), KEY);
        assert_eq!(attempts, Ok(2));
        assert_eq!(pauses, [RETRY_PAUSE_MS]);
    }

    #[test]
    fn a_robot_busy_twice_is_unavailable() {
        let mut calls = 0;
        let outcome = send_with_retry(
            || {
                calls += 1;
                answer(r#"{"errcode":-1,"errmsg":"system busy"}"#)
            },
            |_| {},
            KEY,
        );
        assert!(matches!(outcome, Err(Error::Unavailable(m)) if m.contains("busy")));
        assert_eq!(calls, MAX_ATTEMPTS);
    }

    #[test]
    fn a_final_answer_is_not_retried() {
        let mut calls = 0;
        let outcome = send_with_retry(
            || {
                calls += 1;
                answer(r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#)
            },
            |_| panic!("no pause before a final answer"),
            KEY,
        );
        assert!(matches!(outcome, Err(Error::Quota(_))));
        assert_eq!(calls, 1);
    }
}
