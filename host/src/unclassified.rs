//! WeChat errcodes the component has no class for yet. It passes them through as the `api`
//! error; the host logs each errcode once per process, with WeChat's text, so that it can be
//! classified (in `guest/src/wechat/api.rs`) instead of being read as a fault forever.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

use serde_json::Value;

use crate::error::NotifyError;

/// Errcodes logged so far by this process.
static LOGGED: LazyLock<Mutex<HashSet<i64>>> = LazyLock::new(Mutex::default);

/// Logs `errcode` unless this process already has; returns whether it logged.
pub(crate) fn note(tenant: &str, errcode: i64, errmsg: &str) -> bool {
    let first = LOGGED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(errcode);
    if first {
        tracing::warn!(
            tenant,
            errcode,
            errmsg,
            "WeChat answered an errcode wxnotify does not classify yet: reported as an `api` \
             error (logged once per errcode)"
        );
    }
    first
}

/// Notes the errcode of an `api` error.
pub(crate) fn note_error(tenant: &str, error: &NotifyError) {
    if let NotifyError::Api(api) = error {
        note(tenant, i64::from(api.errcode), &api.errmsg);
    }
}

/// Notes the `api` errors of a component's JSON answer: its `error`, or the `failures` of a
/// delivery. Answers without one (nearly all) are not parsed.
pub(crate) fn note_answer(tenant: &str, body: &[u8]) {
    const API_KIND: &[u8] = br#""kind":"api""#;
    if !body
        .windows(API_KIND.len())
        .any(|window| window == API_KIND)
    {
        return;
    }
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let failures = answer
        .get("failures")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|failure| failure.get("error"));
    for error in answer.get("error").into_iter().chain(failures) {
        if error.get("kind").and_then(Value::as_str) == Some("api")
            && let Some(errcode) = error.get("errcode").and_then(Value::as_i64)
        {
            let errmsg = error
                .get("errmsg")
                .and_then(Value::as_str)
                .unwrap_or_default();
            note(tenant, errcode, errmsg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_errcode_is_logged_once() {
        assert!(note("shop", 91_001, "new rule"));
        assert!(!note("shop", 91_001, "new rule"));
        assert!(
            !note("other", 91_001, "new rule"),
            "once per process, not per tenant"
        );
        assert!(note("shop", 91_002, "another"));
    }

    #[test]
    fn api_errors_are_found_in_answers_and_delivery_failures() {
        note_answer(
            "shop",
            br#"{"error":{"kind":"api","message":"errcode 91003: x","errcode":91003,"errmsg":"x"}}"#,
        );
        note_answer(
            "shop",
            br#"{"channel":"subscribe_message","failures":[{"channel":"template_message","error":{"kind":"api","message":"errcode 91004: y","errcode":91004,"errmsg":"y"}}]}"#,
        );
        // Classified errors and other kinds are not noted.
        note_answer(
            "shop",
            br#"{"error":{"kind":"rejected","message":"errcode 91005: z","errcode":91005,"errmsg":"z"}}"#,
        );
        assert!(!note("shop", 91_003, "x"), "already noted from the error");
        assert!(
            !note("shop", 91_004, "y"),
            "already noted from the failures"
        );
        assert!(note("shop", 91_005, "z"), "a rejection is classified");
    }
}
