//! Identity records, and what WeChat's pushes report, in the `users` bucket.
//!
//! Each link is its own key, written by the one flow that learns it (login writes the
//! mini-program side, follower sync and callbacks the OA side), so no flow ever has to
//! read-modify-write a record another flow may be writing:
//!
//! | key | value |
//! |---|---|
//! | `mini/{openid}/unionid` | unionid of a mini-program openid |
//! | `mini/{openid}/session_key` | session key from the last login (never returned) |
//! | `oa/{openid}` | [`OaRecord`]: unionid and follow state of an OA openid |
//! | `union/{unionid}/mini` | mini-program openid of a unionid |
//! | `union/{unionid}/oa` | OA openid of a unionid |
//! | `sync/followers` | [`SyncCursor`] of an unfinished follower sync |
//! | `msg/{msgid}` | [`TemplateOutcome`]: final status of a template message (`TEMPLATESENDJOBFINISH`) |
//! | `subs/{mini\|oa}/{openid}/{template_id}` | [`SubscriptionStatus`]: the user's latest `accept`/`reject` of a subscribe-message template |
//! | `subs/{mini\|oa}/{openid}/{template_id}/sent` | [`SubscriptionSent`]: result of the latest send of that template |
//!
//! The markers of pushes already applied live in a bucket of their own, `callbacks` (see
//! [`crate::callbacks`]), so sweeping them never has to page through these records.
//!
//! Records written from pushes carry `at`, the push's `CreateTime`, so an older push that
//! arrives late (a retry) never overwrites a newer one.

use serde::{Deserialize, Serialize};

use super::config::AccountKind;

pub fn mini_unionid(mini_openid: &str) -> String {
    format!("mini/{mini_openid}/unionid")
}

pub fn mini_session_key(mini_openid: &str) -> String {
    format!("mini/{mini_openid}/session_key")
}

pub fn oa(oa_openid: &str) -> String {
    format!("oa/{oa_openid}")
}

pub fn union_mini(unionid: &str) -> String {
    format!("union/{unionid}/mini")
}

pub fn union_oa(unionid: &str) -> String {
    format!("union/{unionid}/oa")
}

pub const SYNC_CURSOR: &str = "sync/followers";

pub fn template_outcome(msgid: i64) -> String {
    format!("msg/{msgid}")
}

/// `kind` separates the accounts' records: the same template id can exist in both.
pub fn subscription(kind: AccountKind, openid: &str, template_id: &str) -> String {
    format!("subs/{}/{openid}/{template_id}", kind.config_prefix())
}

pub fn subscription_sent(kind: AccountKind, openid: &str, template_id: &str) -> String {
    format!("{}/sent", subscription(kind, openid, template_id))
}

/// What is known about an OA openid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OaRecord {
    pub unionid: Option<String>,
    pub follows: bool,
    /// When WeChat last told us about this openid (seconds since the Unix epoch): a record
    /// without a unionid is trusted for [`UNIONID_RECHECK_SECS`] after it, because an official
    /// account bound to no Open Platform account never has one to give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub looked_up_at: Option<u64>,
}

/// How long a lookup that found no unionid stands before `user/info` is asked again (the
/// account may have been bound to an Open Platform account since).
pub const UNIONID_RECHECK_SECS: u64 = 24 * 3600;

impl OaRecord {
    /// Whether this record can answer for the openid at `now_secs` without asking WeChat.
    pub fn is_current(&self, now_secs: u64) -> bool {
        self.unionid.is_some()
            || self
                .looked_up_at
                .is_some_and(|at| now_secs.saturating_sub(at) < UNIONID_RECHECK_SECS)
    }
}

/// Final WeChat status of a template message, from `TEMPLATESENDJOBFINISH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateOutcome {
    /// `success`, `failed:user block` or `failed: system failed`, as WeChat says it.
    pub status: String,
    /// The OA openid the message went to.
    pub openid: String,
    /// `CreateTime` of the push.
    pub at: i64,
}

/// A user's latest decision on a subscribe-message template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionStatus {
    /// `accept` or `reject`, as WeChat says it.
    pub status: String,
    /// Where it was decided: `popup` or `change` (settings).
    pub event: String,
    /// `CreateTime` of the push.
    pub at: i64,
}

impl SubscriptionStatus {
    /// Whether this decision forbids sending the template: the user rejected it in the popup,
    /// turned it off in their settings (a `change` event carries `reject`) or banned it. An
    /// `accept`, or a status WeChat adds later, leaves the decision to WeChat.
    pub fn refuses(&self) -> bool {
        matches!(self.status.as_str(), "reject" | "ban")
    }

    /// The push that recorded it, as WeChat names it (`subscribe_msg_popup_event`, …).
    pub fn event_name(&self) -> String {
        format!("subscribe_msg_{}_event", self.event)
    }
}

/// Result of the latest subscribe-message send of a template to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSent {
    pub msgid: Option<String>,
    /// `ErrorCode`: 0 when delivered.
    pub error_code: i64,
    /// `ErrorStatus`: `success` when delivered.
    pub error_status: String,
    /// `CreateTime` of the push.
    pub at: i64,
}

/// Where an interrupted follower sync resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCursor {
    /// `next_openid` to pass to `user/get`.
    pub next_openid: String,
    /// Followers processed so far in this sync.
    pub synced: u32,
    /// Followers mapped so far in this sync (absent in cursors written before it was kept).
    #[serde(default)]
    pub mapped: u32,
}

/// Checks an openid or unionid before it becomes part of a key or a URL. WeChat ids are
/// 28-character base64url-like strings; anything with separators or spaces is a caller error.
pub fn check_id(kind: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{kind} is empty"));
    }
    if id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "{kind} `{}` is not a WeChat id (letters, digits, `_` and `-` only, at most 128)",
            id.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_rejection_or_a_ban_refuses_a_template() {
        let decided = |status: &str, event: &str| SubscriptionStatus {
            status: status.into(),
            event: event.into(),
            at: 1_700_000_000,
        };
        assert!(decided("reject", "popup").refuses());
        assert!(decided("reject", "change").refuses());
        assert!(decided("ban", "popup").refuses());
        assert!(!decided("accept", "popup").refuses());
        assert!(!decided("acceptWithAudio", "popup").refuses());
        assert_eq!(
            decided("reject", "change").event_name(),
            "subscribe_msg_change_event"
        );
    }

    #[test]
    fn ids_cannot_escape_their_key() {
        assert!(check_id("openid", "oGZUI0egBJY1zhBYw2KhdUfwVJJE").is_ok());
        assert!(check_id("openid", "o-_x9").is_ok());
        for bad in ["", "a/b", "a b", "../x", "a\u{0}b", "\u{4e2d}"] {
            assert!(check_id("openid", bad).is_err(), "{bad:?}");
        }
        assert!(
            check_id("unionid", &"a".repeat(129))
                .unwrap_err()
                .contains("at most 128")
        );
    }

    #[test]
    fn keys_are_distinct_per_link() {
        assert_eq!(mini_unionid("o1"), "mini/o1/unionid");
        assert_eq!(union_oa("u1"), "union/u1/oa");
        assert_ne!(union_mini("u1"), union_oa("u1"));
        assert_eq!(template_outcome(42), "msg/42");
        assert_eq!(
            subscription(AccountKind::MiniProgram, "o1", "T1"),
            "subs/mini/o1/T1"
        );
        assert_eq!(
            subscription_sent(AccountKind::OfficialAccount, "o1", "T1"),
            "subs/oa/o1/T1/sent"
        );
    }

    #[test]
    fn a_record_without_unionid_stands_for_a_day_after_its_lookup() {
        let looked_up = |at| OaRecord {
            unionid: None,
            follows: true,
            looked_up_at: at,
        };
        let at = 1_800_000_000;
        assert!(looked_up(Some(at)).is_current(at + UNIONID_RECHECK_SECS - 1));
        assert!(!looked_up(Some(at)).is_current(at + UNIONID_RECHECK_SECS));
        assert!(
            !looked_up(None).is_current(at),
            "written before lookups were dated"
        );
        let bound = OaRecord {
            unionid: Some("oU1".into()),
            looked_up_at: None,
            ..looked_up(None)
        };
        assert!(bound.is_current(u64::MAX), "a unionid does not go stale");
        // Records written before the field existed still read.
        let old: OaRecord = serde_json::from_str(r#"{"unionid":null,"follows":true}"#).unwrap();
        assert_eq!(old, looked_up(None));
    }
}
