//! WeChat errcodes the component has no class for yet. It passes them through as the `api`
//! error; the host logs each errcode once per process, with WeChat's text, so that it can be
//! classified (in `rules/src/errcodes.rs`) instead of being read as a fault forever.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

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
    fn only_api_errors_are_noted() {
        use wxnotify_contract::ApiError;
        note_error("shop", &NotifyError::Api(ApiError::new(91_003, "x")));
        note_error("shop", &NotifyError::Rejected(ApiError::new(91_005, "z")));
        assert!(!note("shop", 91_003, "x"), "already noted from the error");
        assert!(note("shop", 91_005, "z"), "a rejection is classified");
    }
}
