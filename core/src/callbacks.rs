//! WeChat server push applied to the component's state, through [`Env`].
//!
//! [`verify_url`] answers WeChat's URL check; [`receive`] checks a push with
//! [`crate::wechat::callback`], recognises WeChat's retries, and records what the push says:
//!
//! | push | recorded (bucket `users`, see [`crate::wechat::users`]) |
//! |---|---|
//! | OA `subscribe` | `user/info` for the unionid → `oa/{openid}` (follows) and `union/{unionid}/oa` |
//! | OA `unsubscribe` | `oa/{openid}` no longer follows; the unionid and its link stay |
//! | OA `TEMPLATESENDJOBFINISH` | `msg/{msgid}`: the final status |
//! | `subscribe_msg_{popup,change}_event` | `subs/{account}/{openid}/{template}`: accept/reject |
//! | `subscribe_msg_sent_event` | `subs/{account}/{openid}/{template}/sent`: the send's result |
//! | anything else | nothing |
//!
//! WeChat retries a push it got no answer to within 5 s, up to three times. The first delivery
//! to arrive claims the push's marker (bucket `callbacks`, key [`callback::marker_key`], value
//! the time it was applied) with a compare-and-swap on an absent key, so of two deliveries
//! racing, exactly one applies it; the others are acknowledged as they are.
//!
//! wasi:keyvalue has no expiry, so markers are swept by the pushes themselves: one applied push
//! in [`SWEEP_ONE_IN`] walks one page of the bucket on from where the last sweep stopped and
//! deletes the markers applied more than [`MARKER_RETENTION_SECS`] ago. WeChat's retries come
//! within seconds, so a marker that old guards nothing, and the bucket stays the size of a day
//! of pushes.

use serde::Deserialize;

use crate::client::WeChat;
use crate::env::{Bucket, Env};
use crate::wechat::callback::{
    self, CallbackConfig, CallbackError, Push, PushKind, Query, Rejection, SubscriptionEvent,
    SubscriptionUpdate,
};
use crate::wechat::config::AccountKind;
use crate::wechat::error::{Error, Result};
use crate::wechat::users::{self, SubscriptionSent, SubscriptionStatus, TemplateOutcome};
use wxnotify_contract::json_api::Answer;

/// How long a push's marker is kept after the push was applied.
pub const MARKER_RETENTION_SECS: u64 = 24 * 3600;
/// One applied push in this many sweeps a page of markers, spreading the sweep thin.
pub const SWEEP_ONE_IN: u64 = 32;
/// Where the sweep stopped: the cursor of the next page of the `callbacks` bucket.
const SWEEP_CURSOR: &str = "sweep/cursor";

/// Compare-and-swap rounds a record update tries before giving up: each lost round means
/// another push for the same key was recorded meanwhile, which takes milliseconds.
const CAS_ROUNDS: u32 = 8;

/// What became of an accepted push. WeChat gets `success` for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Recorded.
    Applied,
    /// A repeat of a push already applied (or being applied right now): nothing done again.
    Duplicate,
    /// A push that changes nothing (a message, `SCAN`, …).
    Ignored,
}

/// URL verification: the `echostr` to answer with.
///
/// # Errors
///
/// [`CallbackError::Failed`] when the account's callbacks are not configured;
/// [`CallbackError::Rejected`] for a missing parameter or a wrong signature.
pub fn verify_url<E: Env>(
    env: &E,
    kind: AccountKind,
    query: &str,
) -> Result<String, CallbackError> {
    let config = CallbackConfig::load(kind, |key| env.config(key))?;
    Ok(callback::verify_url(&config, &Query::parse(query))?)
}

/// Receives one push to `kind`'s callback URL. `read_body` is called only once the query has
/// passed (configuration, signature in plain mode, freshness), so a forged or stale request
/// is refused unread.
///
/// # Errors
///
/// [`CallbackError::Rejected`] for a request that is not a valid push (nothing applied);
/// [`CallbackError::Failed`] for missing configuration or a push that could not be applied
/// (then its marker is released, so WeChat's retry applies it).
pub async fn receive<E: Env>(
    env: &E,
    kind: AccountKind,
    query: &str,
    read_body: impl FnOnce() -> Result<Vec<u8>, CallbackError>,
) -> Result<Received, CallbackError> {
    Ok(receive_push(env, kind, query, read_body).await?.received)
}

/// An accepted push and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub received: Received,
    /// The verified, decrypted push: what a gateway hands on to its backend.
    pub push: Push,
}

/// [`receive`], keeping the push: for a host that hands pushes on (the Envoy filter forwards
/// each new one to its backend, and calls [`release`] if the backend did not take it).
///
/// # Errors
///
/// As [`receive`].
pub async fn receive_push<E: Env>(
    env: &E,
    kind: AccountKind,
    query: &str,
    read_body: impl FnOnce() -> Result<Vec<u8>, CallbackError>,
) -> Result<Accepted, CallbackError> {
    let config = CallbackConfig::load(kind, |key| env.config(key))?;
    let query = Query::parse(query);
    let admitted = callback::admit(&config, &query, env.now_ms() / 1000)?;
    let body = read_body()?;
    let push = admitted.open(&body)?;
    let received = apply(env, kind, &push).await?;
    Ok(Accepted { received, push })
}

/// Forgets that `push` was applied, so WeChat's retry of it is applied (and handed on) again
/// rather than taken for a duplicate: for a host whose own handling of the push failed after
/// [`receive_push`] recorded it. Recording a push twice leaves the same state.
///
/// # Errors
///
/// When the marker cannot be deleted; the retry is then taken for a duplicate.
pub async fn release<E: Env>(env: &E, kind: AccountKind, push: &Push) -> Result<()> {
    match push.marker(kind) {
        Some(marker) => env.delete(Bucket::Callbacks, &marker).await,
        None => Ok(()),
    }
}

/// The answer to a callback request that did not succeed: a refusal is 4xx (WeChat should not
/// retry it), a failure the error's own status (5xx: WeChat retries).
pub fn refusal_answer(error: &CallbackError) -> Answer {
    let rejection = match error {
        CallbackError::Rejected(rejection) => rejection,
        CallbackError::Failed(error) => return Answer::error(error),
    };
    let (status, kind) = match rejection {
        Rejection::BadSignature(_) => (401, "bad_signature"),
        Rejection::WrongReceiver { .. } => (401, "wrong_receiver"),
        Rejection::TooLarge => (413, "too_large"),
        Rejection::Stale { .. } => (400, "stale_timestamp"),
        Rejection::MissingParameter(_)
        | Rejection::BadTimestamp(_)
        | Rejection::UnsupportedEncryption(_) => (400, "invalid_query"),
        Rejection::Malformed(_) | Rejection::Undecryptable(_) => (400, "malformed_push"),
    };
    Answer::route_error(status, kind, &rejection.to_string())
}

/// Applies `push` once, however often it arrives.
async fn apply<E: Env>(env: &E, kind: AccountKind, push: &Push) -> Result<Received> {
    let Some(marker) = push.marker(kind) else {
        return Ok(Received::Ignored);
    };
    let applied_at = (env.now_ms() / 1000).to_string();
    if !env
        .compare_and_swap(Bucket::Callbacks, &marker, None, applied_at.as_bytes())
        .await?
    {
        return Ok(Received::Duplicate);
    }
    let recorded = record(env, kind, push).await;
    if recorded.is_err() {
        // WeChat retries a push that is not answered `success`: release the claim so the retry
        // applies it. If the release fails too the retry is taken for a duplicate; the error
        // returned is the one that matters.
        let _ = env.delete(Bucket::Callbacks, &marker).await;
    }
    recorded?;
    if env.random_u64().is_multiple_of(SWEEP_ONE_IN) {
        // Housekeeping: the push is applied whatever happens here, and the next sweep retries.
        let _ = sweep_markers(env).await;
    }
    Ok(Received::Applied)
}

/// Deletes the stale markers among one page of the `callbacks` bucket and moves the sweep's
/// cursor on (back to the start after the last page). Returns how many it deleted.
async fn sweep_markers<E: Env>(env: &E) -> Result<usize> {
    let cursor = env
        .get(Bucket::Callbacks, SWEEP_CURSOR)
        .await?
        .and_then(|cursor| String::from_utf8(cursor).ok());
    let (keys, next) = env.list_keys(Bucket::Callbacks, cursor.as_deref()).await?;
    let markers: Vec<String> = keys
        .into_iter()
        .filter(|key| key.starts_with(callback::MARKER_PREFIX))
        .collect();
    let applied = env.get_many(Bucket::Callbacks, markers.clone()).await?;
    let oldest_kept = (env.now_ms() / 1000).saturating_sub(MARKER_RETENTION_SECS);
    let stale: Vec<String> = markers
        .into_iter()
        .zip(applied)
        .filter(|(_, applied_at)| {
            // Gone meanwhile, or not a time we wrote: nothing to keep.
            let applied_at = applied_at
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok());
            applied_at.is_none_or(|at| at < oldest_kept)
        })
        .map(|(key, _)| key)
        .collect();
    let swept = stale.len();
    env.delete_many(Bucket::Callbacks, stale).await?;
    match next {
        Some(next) => {
            env.set(Bucket::Callbacks, SWEEP_CURSOR, next.as_bytes())
                .await?
        }
        None => env.delete(Bucket::Callbacks, SWEEP_CURSOR).await?,
    }
    Ok(swept)
}

async fn record<E: Env>(env: &E, kind: AccountKind, push: &Push) -> Result<()> {
    let openid = push.openid.as_str();
    let at = push.create_time;
    match &push.kind {
        PushKind::Follow => WeChat::new(env)?.record_follow(openid).await.map(drop),
        PushKind::Unfollow => WeChat::new(env)?.record_unfollow(openid).await.map(drop),
        PushKind::TemplateFinished { msgid, status } => {
            // One final status per message: a retry writes the same record again.
            let outcome = TemplateOutcome {
                status: status.clone(),
                openid: openid.to_owned(),
                at,
            };
            env.set(
                Bucket::Users,
                &users::template_outcome(*msgid),
                &to_json(&outcome),
            )
            .await
        }
        PushKind::Subscriptions { event, items } => {
            for item in items {
                let (key, value) = match &item.update {
                    SubscriptionUpdate::Status(status) => (
                        users::subscription(kind, openid, &item.template_id),
                        to_json(&SubscriptionStatus {
                            status: status.clone(),
                            event: event.as_str().to_owned(),
                            at,
                        }),
                    ),
                    SubscriptionUpdate::Sent {
                        msgid,
                        error_code,
                        error_status,
                    } => {
                        debug_assert_eq!(*event, SubscriptionEvent::Sent);
                        (
                            users::subscription_sent(kind, openid, &item.template_id),
                            to_json(&SubscriptionSent {
                                msgid: msgid.clone(),
                                error_code: *error_code,
                                error_status: error_status.clone(),
                                at,
                            }),
                        )
                    }
                };
                store_latest(env, &key, at, &value).await?;
            }
            Ok(())
        }
        PushKind::Ignored { .. } => Ok(()),
    }
}

/// Stores `value` (a record stamped `at`) at `key` unless the record there comes from a later
/// push: pushes arrive in any order once WeChat retries, and the latest decision must win.
async fn store_latest<E: Env>(env: &E, key: &str, at: i64, value: &[u8]) -> Result<()> {
    #[derive(Deserialize)]
    struct Stamped {
        at: i64,
    }
    for _ in 0..CAS_ROUNDS {
        let current = env.get(Bucket::Users, key).await?;
        let newer_stored = current
            .as_deref()
            .and_then(|bytes| serde_json::from_slice::<Stamped>(bytes).ok())
            .is_some_and(|stored| stored.at > at);
        if newer_stored {
            return Ok(());
        }
        if env
            .compare_and_swap(Bucket::Users, key, current.as_deref(), value)
            .await?
        {
            return Ok(());
        }
    }
    Err(Error::unavailable(format!(
        "key `{key}` changed {CAS_ROUNDS} times while a push was being recorded"
    )))
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use crate::env::Failure;
    use crate::testing::{Answer, FakeEnv};
    use crate::wechat::callback::{MAX_AGE_KEY, Rejection};
    use crate::wechat::crypto;
    use crate::wechat::users::OaRecord;

    const TOKEN: &str = "AAAAA";
    const OPENID: &str = "oOA0000000000000000000000001";
    const UNIONID: &str = "oU00000000000000000000000001";
    const NOW_SECS: u64 = 1_800_000_000;

    /// The shared fake, with a WeChat whose `user/info` knows [`OPENID`] as a follower
    /// with [`UNIONID`].
    fn fake(extra: &[(&str, &str)]) -> FakeEnv {
        let env = FakeEnv::new(extra);
        answer_user_info(
            &env,
            &format!(r#"{{"subscribe":1,"openid":"{OPENID}","unionid":"{UNIONID}"}}"#),
        );
        env
    }

    fn answer_user_info(env: &FakeEnv, body: &str) {
        env.answer("/cgi-bin/user/info", Answer::Json(body.to_owned()));
    }

    fn refuse_user_info(env: &FakeEnv) {
        let refused = Failure::Failed("connection refused".into());
        env.answer("/cgi-bin/user/info", Answer::Fail(refused));
    }

    fn user_info_calls(env: &FakeEnv) -> usize {
        env.sent_to("/cgi-bin/user/info").len()
    }

    fn user(env: &FakeEnv, key: &str) -> Option<String> {
        env.value(Bucket::Users, key)
    }

    fn markers(env: &FakeEnv) -> Vec<String> {
        env.keys(Bucket::Callbacks)
            .into_iter()
            .filter(|k| k.starts_with("seen/"))
            .collect()
    }

    // The flows, run to completion: every call of the fake completes at once.
    fn receive(
        env: &FakeEnv,
        kind: AccountKind,
        query: &str,
        read_body: impl FnOnce() -> Result<Vec<u8>, CallbackError>,
    ) -> Result<Received, CallbackError> {
        block_on(super::receive(env, kind, query, read_body))
    }

    fn store_latest(env: &FakeEnv, key: &str, at: i64, value: &[u8]) -> Result<()> {
        block_on(super::store_latest(env, key, at, value))
    }

    /// A plain-mode query signed for now.
    fn signed_query() -> String {
        let (timestamp, nonce) = (NOW_SECS.to_string(), "42");
        let signature = crypto::url_signature(TOKEN, &timestamp, nonce);
        format!("signature={signature}&timestamp={timestamp}&nonce={nonce}&openid={OPENID}")
    }

    fn post(env: &FakeEnv, kind: AccountKind, body: &str) -> Result<Received, CallbackError> {
        receive(env, kind, &signed_query(), || Ok(body.as_bytes().to_vec()))
    }

    fn event(openid: &str, create_time: i64, event: &str, extra: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
             <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[{event}]]></Event>{extra}</xml>"
        )
    }

    fn oa_record(env: &FakeEnv) -> OaRecord {
        serde_json::from_str(&user(env, &users::oa(OPENID)).unwrap()).unwrap()
    }

    #[test]
    fn follow_maps_the_unionid_and_unfollow_keeps_it() {
        let env = fake(&[]);
        let oa = AccountKind::OfficialAccount;
        assert_eq!(
            post(&env, oa, &event(OPENID, 100, "subscribe", "")),
            Ok(Received::Applied)
        );
        assert_eq!(
            oa_record(&env),
            OaRecord {
                unionid: Some(UNIONID.into()),
                follows: true,
                looked_up_at: Some(NOW_SECS),
            }
        );
        assert_eq!(
            user(&env, &users::union_oa(UNIONID)).as_deref(),
            Some(OPENID)
        );
        assert_eq!(user_info_calls(&env), 1);

        assert_eq!(
            post(&env, oa, &event(OPENID, 200, "unsubscribe", "")),
            Ok(Received::Applied)
        );
        assert_eq!(
            oa_record(&env),
            OaRecord {
                unionid: Some(UNIONID.into()),
                follows: false,
                looked_up_at: Some(NOW_SECS),
            }
        );
        assert_eq!(
            user(&env, &users::union_oa(UNIONID)).as_deref(),
            Some(OPENID)
        );
        assert_eq!(user_info_calls(&env), 1, "unsubscribe needs no lookup");
    }

    #[test]
    fn a_follow_keeps_a_known_unionid_when_user_info_gives_none() {
        let env = fake(&[]);
        env.put(
            Bucket::Users,
            &users::oa(OPENID),
            r#"{"unionid":"oU00000000000000000000000001","follows":false}"#,
        );
        answer_user_info(&env, &format!(r#"{{"subscribe":0,"openid":"{OPENID}"}}"#));
        post(
            &env,
            AccountKind::OfficialAccount,
            &event(OPENID, 100, "subscribe", ""),
        )
        .unwrap();
        assert_eq!(
            oa_record(&env),
            OaRecord {
                unionid: Some(UNIONID.into()),
                follows: true,
                looked_up_at: Some(NOW_SECS),
            }
        );
    }

    #[test]
    fn a_released_push_is_applied_again_and_its_json_says_what_it_is() {
        let env = fake(&[]);
        let oa = AccountKind::OfficialAccount;
        let body = event(OPENID, 100, "subscribe", "");
        let accepted = block_on(super::receive_push(&env, oa, &signed_query(), || {
            Ok(body.as_bytes().to_vec())
        }))
        .unwrap();
        assert_eq!(accepted.received, Received::Applied);
        assert_eq!(
            serde_json::to_value(&accepted.push).unwrap(),
            serde_json::json!({ "openid": OPENID, "create_time": 100, "type": "follow" })
        );
        // The host could not hand it on: WeChat's retry must count as new.
        block_on(super::release(&env, oa, &accepted.push)).unwrap();
        assert!(markers(&env).is_empty());
        assert_eq!(post(&env, oa, &body), Ok(Received::Applied));
        assert_eq!(post(&env, oa, &body), Ok(Received::Duplicate));
    }

    #[test]
    fn a_repeated_push_is_applied_once() {
        let env = fake(&[]);
        let oa = AccountKind::OfficialAccount;
        let push = event(OPENID, 100, "subscribe", "");
        assert_eq!(post(&env, oa, &push), Ok(Received::Applied));
        assert_eq!(post(&env, oa, &push), Ok(Received::Duplicate));
        assert_eq!(post(&env, oa, &push), Ok(Received::Duplicate));
        assert_eq!(user_info_calls(&env), 1);
        let markers = markers(&env);
        assert_eq!(markers.len(), 1);
        assert_eq!(
            env.value(Bucket::Callbacks, &markers[0]).unwrap(),
            NOW_SECS.to_string(),
            "when it was applied"
        );
        // The same user following again later is a new push.
        assert_eq!(
            post(&env, oa, &event(OPENID, 101, "subscribe", "")),
            Ok(Received::Applied)
        );
    }

    #[test]
    fn a_delivery_that_loses_the_race_for_the_marker_applies_nothing() {
        let env = fake(&[]);
        let oa = AccountKind::OfficialAccount;
        let push = event(OPENID, 100, "subscribe", "");
        let parsed = {
            let config = CallbackConfig::load(oa, |k| env.config(k)).unwrap();
            let query = Query::parse(&signed_query());
            callback::admit(&config, &query, NOW_SECS)
                .unwrap()
                .open(push.as_bytes())
                .unwrap()
        };
        // The other delivery claims the marker between our read and our write.
        *env.race_on.borrow_mut() = Some((parsed.marker(oa).unwrap(), b"100".to_vec()));
        assert_eq!(post(&env, oa, &push), Ok(Received::Duplicate));
        assert_eq!(user_info_calls(&env), 0);
        assert_eq!(user(&env, &users::oa(OPENID)), None);
    }

    #[test]
    fn a_push_that_fails_to_apply_releases_its_marker_for_the_retry() {
        let env = fake(&[]);
        let oa = AccountKind::OfficialAccount;
        let push = event(OPENID, 100, "subscribe", "");
        refuse_user_info(&env);
        let err = post(&env, oa, &push).unwrap_err();
        assert!(
            matches!(&err, CallbackError::Failed(Error::Unavailable { .. })),
            "{err}"
        );
        assert!(markers(&env).is_empty(), "{:?}", markers(&env));
        // WeChat's retry, once user/info answers again.
        answer_user_info(
            &env,
            &format!(r#"{{"subscribe":1,"openid":"{OPENID}","unionid":"{UNIONID}"}}"#),
        );
        assert_eq!(post(&env, oa, &push), Ok(Received::Applied));
        assert!(oa_record(&env).follows);

        // When the release fails too, the error answered is still the first one.
        let env = fake(&[]);
        refuse_user_info(&env);
        env.fail_deletes.set(true);
        assert!(matches!(
            post(&env, oa, &push),
            Err(CallbackError::Failed(Error::Unavailable { message: m, .. })) if m.contains("connection refused")
        ));
    }

    #[test]
    fn applied_pushes_sweep_markers_older_than_a_day_a_page_at_a_time() {
        let env = fake(&[]);
        env.page.set(4);
        let oa = AccountKind::OfficialAccount;
        let finished = |msgid: i64| {
            let extra = format!("<MsgID>{msgid}</MsgID><Status><![CDATA[success]]></Status>");
            // Signed for the fake's clock, whatever it says.
            let (timestamp, nonce) = ((env.now_ms() / 1000).to_string(), "42");
            let signature = crypto::url_signature(TOKEN, &timestamp, nonce);
            let query = format!("signature={signature}&timestamp={timestamp}&nonce={nonce}");
            let body = event(OPENID, 100 + msgid, "TEMPLATESENDJOBFINISH", &extra);
            receive(&env, oa, &query, || Ok(body.into_bytes()))
        };
        env.set_now_ms((NOW_SECS - 2 * 24 * 3600) * 1000);
        for msgid in 0..6 {
            assert_eq!(finished(msgid), Ok(Received::Applied));
        }
        env.set_now_ms((NOW_SECS - 60) * 1000);
        for msgid in 10..13 {
            finished(msgid).unwrap();
        }
        assert_eq!(markers(&env).len(), 9, "no sweep while the dice say no");

        // Every push sweeps from now on: one page each, resuming where the last one stopped.
        env.set_now_ms((NOW_SECS) * 1000);
        env.random.set(0);
        for msgid in 20..23 {
            finished(msgid).unwrap();
        }
        let left: Vec<u64> = markers(&env)
            .iter()
            .map(|k| env.value(Bucket::Callbacks, k).unwrap().parse().unwrap())
            .collect();
        assert_eq!(left.len(), 6, "the 6 of the last day: {left:?}");
        assert!(left.iter().all(|&at| at >= NOW_SECS - 60), "{left:?}");
        // A sweep never touches anything but markers: the records stay.
        assert!(user(&env, "msg/0").is_some() && user(&env, "msg/22").is_some());
        // A retry of a swept push comes a day late: WeChat stopped retrying long ago, and
        // applying it again changes nothing (the same final status).
        assert_eq!(finished(0), Ok(Received::Applied));
        // A push is never swept by its own sweep, however old its CreateTime.
        assert_eq!(finished(0), Ok(Received::Duplicate));
    }

    #[test]
    fn template_job_finish_records_the_final_status() {
        let env = fake(&[]);
        let push = event(
            OPENID,
            100,
            "TEMPLATESENDJOBFINISH",
            "<MsgID>200163836</MsgID><Status><![CDATA[failed: system failed]]></Status>",
        );
        assert_eq!(
            post(&env, AccountKind::OfficialAccount, &push),
            Ok(Received::Applied)
        );
        let outcome: TemplateOutcome =
            serde_json::from_str(&user(&env, "msg/200163836").unwrap()).unwrap();
        assert_eq!(
            outcome,
            TemplateOutcome {
                status: "failed: system failed".into(),
                openid: OPENID.into(),
                at: 100
            }
        );
    }

    #[test]
    fn subscription_decisions_keep_the_latest_and_sends_their_own_record() {
        let env = fake(&[]);
        let mini = AccountKind::MiniProgram;
        let openid = "oMP0000000000000000000000001";
        let json = |create_time: i64, event: &str, list: &str| {
            format!(
                r#"{{"FromUserName":"{openid}","CreateTime":"{create_time}","MsgType":"event","Event":"{event}","List":{list}}}"#
            )
        };
        let status = |template: &str| -> Option<SubscriptionStatus> {
            user(&env, &users::subscription(mini, openid, template))
                .map(|v| serde_json::from_str(&v).unwrap())
        };
        let popup = json(
            200,
            "subscribe_msg_popup_event",
            r#"[{"TemplateId":"T1","SubscribeStatusString":"accept","PopupScene":"0"},{"TemplateId":"T2","SubscribeStatusString":"reject","PopupScene":"0"}]"#,
        );
        assert_eq!(post(&env, mini, &popup), Ok(Received::Applied));
        assert_eq!(status("T1").unwrap().status, "accept");
        assert_eq!(
            status("T2").unwrap(),
            SubscriptionStatus {
                status: "reject".into(),
                event: "popup".into(),
                at: 200
            }
        );
        // A change the user made earlier, delivered late: the popup's answer stands.
        let earlier = json(
            150,
            "subscribe_msg_change_event",
            r#"{"TemplateId":"T1","SubscribeStatusString":"reject"}"#,
        );
        assert_eq!(post(&env, mini, &earlier), Ok(Received::Applied));
        assert_eq!(status("T1").unwrap().status, "accept");
        let later = json(
            300,
            "subscribe_msg_change_event",
            r#"{"TemplateId":"T1","SubscribeStatusString":"reject"}"#,
        );
        post(&env, mini, &later).unwrap();
        assert_eq!(
            status("T1").unwrap(),
            SubscriptionStatus {
                status: "reject".into(),
                event: "change".into(),
                at: 300
            }
        );
        // A send result does not touch the decision.
        let sent = json(
            400,
            "subscribe_msg_sent_event",
            r#"{"TemplateId":"T1","MsgID":"1864323726461255680","ErrorCode":"43101","ErrorStatus":"fail"}"#,
        );
        post(&env, mini, &sent).unwrap();
        assert_eq!(status("T1").unwrap().status, "reject");
        let result: SubscriptionSent = serde_json::from_str(
            &user(&env, &users::subscription_sent(mini, openid, "T1")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            result,
            SubscriptionSent {
                msgid: Some("1864323726461255680".into()),
                error_code: 43101,
                error_status: "fail".into(),
                at: 400
            }
        );
    }

    #[test]
    fn store_latest_retries_a_lost_race_and_keeps_a_later_record() {
        let env = fake(&[]);
        *env.race_on.borrow_mut() = Some(("k".into(), br#"{"at":1}"#.to_vec()));
        store_latest(&env, "k", 5, br#"{"at":5}"#).unwrap();
        assert_eq!(user(&env, "k").as_deref(), Some(r#"{"at":5}"#));
        // A racer that wrote a later record wins, on the second round.
        *env.race_on.borrow_mut() = Some(("k".into(), br#"{"at":9}"#.to_vec()));
        store_latest(&env, "k", 6, br#"{"at":6}"#).unwrap();
        assert_eq!(user(&env, "k").as_deref(), Some(r#"{"at":9}"#));
    }

    #[test]
    fn refusals_read_no_body_and_change_nothing() {
        let env = fake(&[]);
        let oa = AccountKind::OfficialAccount;
        let unread = || -> Result<Vec<u8>, CallbackError> { panic!("the body must not be read") };
        let tampered = signed_query().replacen("signature=", "signature=0", 1);
        assert_eq!(
            receive(&env, oa, &tampered, unread),
            Err(CallbackError::Rejected(Rejection::BadSignature(
                "signature"
            )))
        );
        let stale_env = fake(&[(MAX_AGE_KEY, "60")]);
        let old = {
            let ts = (NOW_SECS - 61).to_string();
            let sig = crypto::url_signature(TOKEN, &ts, "1");
            format!("signature={sig}&timestamp={ts}&nonce=1")
        };
        assert!(matches!(
            receive(&stale_env, oa, &old, unread),
            Err(CallbackError::Rejected(Rejection::Stale { .. }))
        ));
        // The handler reports an oversized body through read_body.
        assert_eq!(
            receive(
                &env,
                oa,
                &signed_query(),
                || Err(Rejection::TooLarge.into())
            ),
            Err(CallbackError::Rejected(Rejection::TooLarge))
        );
        assert!(matches!(
            post(&env, oa, "<xml>"),
            Err(CallbackError::Rejected(Rejection::Malformed(_)))
        ));
        // Not configured: a config error naming the key, before anything else.
        let unconfigured = fake(&[]);
        unconfigured.unset("oa_callback_token");
        assert!(matches!(
            receive(&unconfigured, oa, &signed_query(), unread),
            Err(CallbackError::Failed(Error::Config(m))) if m.contains("oa_callback_token")
        ));
        assert!(matches!(
            verify_url(&unconfigured, oa, ""),
            Err(CallbackError::Failed(Error::Config(m))) if m.contains("oa_callback_token")
        ));
        assert!(env.keys(Bucket::Users).is_empty() && stale_env.keys(Bucket::Users).is_empty());
        assert!(env.sent().is_empty());
    }

    #[test]
    fn messages_and_other_events_are_acknowledged_without_a_trace() {
        let env = fake(&[]);
        let text = format!(
            "<xml><FromUserName>{OPENID}</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>text</MsgType><Content>hi</Content><MsgId>1234567890</MsgId></xml>"
        );
        assert_eq!(
            post(&env, AccountKind::OfficialAccount, &text),
            Ok(Received::Ignored)
        );
        assert_eq!(
            post(
                &env,
                AccountKind::OfficialAccount,
                &event(OPENID, 1, "SCAN", "<EventKey>7</EventKey>")
            ),
            Ok(Received::Ignored)
        );
        assert!(env.keys(Bucket::Users).is_empty());
    }
}
