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
    self, CallbackConfig, CallbackError, Push, PushKind, Query, SubscriptionEvent,
    SubscriptionUpdate,
};
use crate::wechat::config::AccountKind;
use crate::wechat::error::{Error, Result};
use crate::wechat::users::{self, SubscriptionSent, SubscriptionStatus, TemplateOutcome};

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
pub fn receive<E: Env>(
    env: &E,
    kind: AccountKind,
    query: &str,
    read_body: impl FnOnce() -> Result<Vec<u8>, CallbackError>,
) -> Result<Received, CallbackError> {
    let config = CallbackConfig::load(kind, |key| env.config(key))?;
    let query = Query::parse(query);
    let admitted = callback::admit(&config, &query, env.now_ms() / 1000)?;
    let body = read_body()?;
    let push = admitted.open(&body)?;
    Ok(apply(env, kind, &push)?)
}

/// Applies `push` once, however often it arrives.
fn apply<E: Env>(env: &E, kind: AccountKind, push: &Push) -> Result<Received> {
    let Some(marker) = push.marker(kind) else {
        return Ok(Received::Ignored);
    };
    let applied_at = (env.now_ms() / 1000).to_string();
    if !env.compare_and_swap(Bucket::Callbacks, &marker, None, applied_at.as_bytes())? {
        return Ok(Received::Duplicate);
    }
    let recorded = record(env, kind, push);
    if recorded.is_err() {
        // WeChat retries a push that is not answered `success`: release the claim so the retry
        // applies it. If the release fails too the retry is taken for a duplicate; the error
        // returned is the one that matters.
        let _ = env.delete(Bucket::Callbacks, &marker);
    }
    recorded?;
    if env.random_u64().is_multiple_of(SWEEP_ONE_IN) {
        // Housekeeping: the push is applied whatever happens here, and the next sweep retries.
        let _ = sweep_markers(env);
    }
    Ok(Received::Applied)
}

/// Deletes the stale markers among one page of the `callbacks` bucket and moves the sweep's
/// cursor on (back to the start after the last page). Returns how many it deleted.
fn sweep_markers<E: Env>(env: &E) -> Result<usize> {
    let cursor = env
        .get(Bucket::Callbacks, SWEEP_CURSOR)?
        .and_then(|cursor| String::from_utf8(cursor).ok());
    let (keys, next) = env.list_keys(Bucket::Callbacks, cursor.as_deref())?;
    let markers: Vec<String> = keys
        .into_iter()
        .filter(|key| key.starts_with(callback::MARKER_PREFIX))
        .collect();
    let applied = env.get_many(Bucket::Callbacks, markers.clone())?;
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
    env.delete_many(Bucket::Callbacks, stale)?;
    match next {
        Some(next) => env.set(Bucket::Callbacks, SWEEP_CURSOR, next.as_bytes())?,
        None => env.delete(Bucket::Callbacks, SWEEP_CURSOR)?,
    }
    Ok(swept)
}

fn record<E: Env>(env: &E, kind: AccountKind, push: &Push) -> Result<()> {
    let openid = push.openid.as_str();
    let at = push.create_time;
    match &push.kind {
        PushKind::Follow => WeChat::new(env)?.record_follow(openid).map(drop),
        PushKind::Unfollow => WeChat::new(env)?.record_unfollow(openid).map(drop),
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
                store_latest(env, &key, at, &value)?;
            }
            Ok(())
        }
        PushKind::Ignored { .. } => Ok(()),
    }
}

/// Stores `value` (a record stamped `at`) at `key` unless the record there comes from a later
/// push: pushes arrive in any order once WeChat retries, and the latest decision must win.
fn store_latest<E: Env>(env: &E, key: &str, at: i64, value: &[u8]) -> Result<()> {
    #[derive(Deserialize)]
    struct Stamped {
        at: i64,
    }
    for _ in 0..CAS_ROUNDS {
        let current = env.get(Bucket::Users, key)?;
        let newer_stored = current
            .as_deref()
            .and_then(|bytes| serde_json::from_slice::<Stamped>(bytes).ok())
            .is_some_and(|stored| stored.at > at);
        if newer_stored {
            return Ok(());
        }
        if env.compare_and_swap(Bucket::Users, key, current.as_deref(), value)? {
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
    use std::cell::{Cell, RefCell};
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::env::{Failure, HttpRequest, Response};
    use crate::wechat::callback::{MAX_AGE_KEY, Rejection};
    use crate::wechat::crypto;
    use crate::wechat::users::OaRecord;

    const TOKEN: &str = "AAAAA";
    const OPENID: &str = "oOA0000000000000000000000001";
    const UNIONID: &str = "oU00000000000000000000000001";
    const NOW_SECS: u64 = 1_800_000_000;

    /// An in-memory host: config, one key space per bucket, a fixed clock, and a WeChat that
    /// hands out tokens and answers `user/info` with `user_info` (or fails when it is `None`).
    struct FakeEnv {
        config: HashMap<String, String>,
        users: RefCell<BTreeMap<String, Vec<u8>>>,
        tokens: RefCell<BTreeMap<String, Vec<u8>>>,
        callbacks: RefCell<BTreeMap<String, Vec<u8>>>,
        user_info: RefCell<Option<String>>,
        requests: RefCell<Vec<String>>,
        /// When set, the next compare-and-swap on this key sees it written by someone else
        /// first (a racing delivery).
        race_on: RefCell<Option<(String, Vec<u8>)>>,
        fail_deletes: Cell<bool>,
        /// What `random_u64` answers: 0 makes every applied push sweep.
        random: Cell<u64>,
        /// Keys per `list_keys` page.
        page: usize,
        /// The clock, in seconds.
        now_secs: Cell<u64>,
    }

    impl FakeEnv {
        fn new(extra: &[(&str, &str)]) -> FakeEnv {
            let mut config: HashMap<String, String> = [
                ("oa_appid", "wxoa"),
                ("oa_secret", "s"),
                ("mini_appid", "wxmini"),
                ("mini_secret", "s"),
                ("api_base", "http://wechat.test"),
                ("oa_callback_token", TOKEN),
                ("mini_callback_token", TOKEN),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            for (k, v) in extra {
                config.insert((*k).to_owned(), (*v).to_owned());
            }
            FakeEnv {
                config,
                users: RefCell::default(),
                tokens: RefCell::default(),
                callbacks: RefCell::default(),
                user_info: RefCell::new(Some(format!(
                    r#"{{"subscribe":1,"openid":"{OPENID}","unionid":"{UNIONID}"}}"#
                ))),
                requests: RefCell::default(),
                race_on: RefCell::default(),
                fail_deletes: Cell::new(false),
                random: Cell::new(7),
                page: 1000,
                now_secs: Cell::new(NOW_SECS),
            }
        }

        fn bucket(&self, bucket: Bucket) -> &RefCell<BTreeMap<String, Vec<u8>>> {
            match bucket {
                Bucket::Users => &self.users,
                Bucket::Tokens => &self.tokens,
                Bucket::Callbacks => &self.callbacks,
            }
        }

        fn user(&self, key: &str) -> Option<String> {
            self.users
                .borrow()
                .get(key)
                .map(|v| String::from_utf8(v.clone()).unwrap())
        }

        fn keys(&self) -> Vec<String> {
            self.users.borrow().keys().cloned().collect()
        }

        fn markers(&self) -> Vec<String> {
            self.callbacks
                .borrow()
                .keys()
                .filter(|k| k.starts_with("seen/"))
                .cloned()
                .collect()
        }

        fn user_info_calls(&self) -> usize {
            self.requests
                .borrow()
                .iter()
                .filter(|url| url.contains("/cgi-bin/user/info"))
                .count()
        }
    }

    impl Env for FakeEnv {
        fn http(&self, request: &HttpRequest) -> Result<Response, Failure> {
            self.requests.borrow_mut().push(request.url.clone());
            let body = if request.url.contains("/cgi-bin/stable_token") {
                r#"{"access_token":"T","expires_in":7200}"#.to_owned()
            } else if request.url.contains("/cgi-bin/user/info") {
                match self.user_info.borrow().clone() {
                    Some(body) => body,
                    None => return Err(Failure::Failed("connection refused".into())),
                }
            } else {
                r#"{"errcode":40001,"errmsg":"unexpected"}"#.to_owned()
            };
            Ok(Response {
                status: 200,
                body: body.into_bytes(),
            })
        }

        fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Vec<u8>>> {
            Ok(self.bucket(bucket).borrow().get(key).cloned())
        }

        fn set(&self, bucket: Bucket, key: &str, value: &[u8]) -> Result<()> {
            self.bucket(bucket)
                .borrow_mut()
                .insert(key.to_owned(), value.to_vec());
            Ok(())
        }

        fn delete(&self, bucket: Bucket, key: &str) -> Result<()> {
            if self.fail_deletes.get() {
                return Err(Error::storage("down"));
            }
            self.bucket(bucket).borrow_mut().remove(key);
            Ok(())
        }

        fn compare_and_swap(
            &self,
            bucket: Bucket,
            key: &str,
            expected: Option<&[u8]>,
            new: &[u8],
        ) -> Result<bool> {
            let raced = self.race_on.borrow_mut().take_if(|(k, _)| k == key);
            if let Some((_, value)) = raced {
                self.set(bucket, key, &value)?;
            }
            let mut map = self.bucket(bucket).borrow_mut();
            if map.get(key).map(Vec::as_slice) != expected {
                return Ok(false);
            }
            map.insert(key.to_owned(), new.to_vec());
            Ok(true)
        }

        fn set_many(&self, bucket: Bucket, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
            self.bucket(bucket).borrow_mut().extend(entries);
            Ok(())
        }

        fn get_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>> {
            let map = self.bucket(bucket).borrow();
            Ok(keys.iter().map(|k| map.get(k).cloned()).collect())
        }

        fn delete_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<()> {
            let mut map = self.bucket(bucket).borrow_mut();
            for key in keys {
                map.remove(&key);
            }
            Ok(())
        }

        fn list_keys(
            &self,
            bucket: Bucket,
            cursor: Option<&str>,
        ) -> Result<(Vec<String>, Option<String>)> {
            // Keys after the cursor (the last key of the previous page), as the hosts do.
            let map = self.bucket(bucket).borrow();
            let keys: Vec<String> = map
                .keys()
                .filter(|k| cursor.is_none_or(|c| k.as_str() > c))
                .take(self.page)
                .cloned()
                .collect();
            let next = (keys.len() == self.page).then(|| keys[keys.len() - 1].clone());
            Ok((keys, next))
        }

        fn config(&self, key: &str) -> Result<Option<String>> {
            Ok(self.config.get(key).cloned())
        }

        fn now_ms(&self) -> u64 {
            self.now_secs.get() * 1000
        }

        fn sleep_ms(&self, _millis: u64) {}

        fn random_u64(&self) -> u64 {
            self.random.get()
        }
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
        serde_json::from_str(&env.user(&users::oa(OPENID)).unwrap()).unwrap()
    }

    #[test]
    fn follow_maps_the_unionid_and_unfollow_keeps_it() {
        let env = FakeEnv::new(&[]);
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
        assert_eq!(env.user(&users::union_oa(UNIONID)).as_deref(), Some(OPENID));
        assert_eq!(env.user_info_calls(), 1);

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
        assert_eq!(env.user(&users::union_oa(UNIONID)).as_deref(), Some(OPENID));
        assert_eq!(env.user_info_calls(), 1, "unsubscribe needs no lookup");
    }

    #[test]
    fn a_follow_keeps_a_known_unionid_when_user_info_gives_none() {
        let env = FakeEnv::new(&[]);
        env.set(
            Bucket::Users,
            &users::oa(OPENID),
            br#"{"unionid":"oU00000000000000000000000001","follows":false}"#,
        )
        .unwrap();
        *env.user_info.borrow_mut() = Some(format!(r#"{{"subscribe":0,"openid":"{OPENID}"}}"#));
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
    fn a_repeated_push_is_applied_once() {
        let env = FakeEnv::new(&[]);
        let oa = AccountKind::OfficialAccount;
        let push = event(OPENID, 100, "subscribe", "");
        assert_eq!(post(&env, oa, &push), Ok(Received::Applied));
        assert_eq!(post(&env, oa, &push), Ok(Received::Duplicate));
        assert_eq!(post(&env, oa, &push), Ok(Received::Duplicate));
        assert_eq!(env.user_info_calls(), 1);
        let markers = env.markers();
        assert_eq!(markers.len(), 1);
        assert_eq!(
            env.callbacks.borrow()[&markers[0]],
            NOW_SECS.to_string().into_bytes(),
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
        let env = FakeEnv::new(&[]);
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
        assert_eq!(env.user_info_calls(), 0);
        assert_eq!(env.user(&users::oa(OPENID)), None);
    }

    #[test]
    fn a_push_that_fails_to_apply_releases_its_marker_for_the_retry() {
        let env = FakeEnv::new(&[]);
        let oa = AccountKind::OfficialAccount;
        let push = event(OPENID, 100, "subscribe", "");
        *env.user_info.borrow_mut() = None;
        let err = post(&env, oa, &push).unwrap_err();
        assert!(
            matches!(&err, CallbackError::Failed(Error::Unavailable { .. })),
            "{err}"
        );
        assert!(env.markers().is_empty(), "{:?}", env.markers());
        // WeChat's retry, once user/info answers again.
        *env.user_info.borrow_mut() = Some(format!(
            r#"{{"subscribe":1,"openid":"{OPENID}","unionid":"{UNIONID}"}}"#
        ));
        assert_eq!(post(&env, oa, &push), Ok(Received::Applied));
        assert!(oa_record(&env).follows);

        // When the release fails too, the error answered is still the first one.
        let env = FakeEnv::new(&[]);
        *env.user_info.borrow_mut() = None;
        env.fail_deletes.set(true);
        assert!(matches!(
            post(&env, oa, &push),
            Err(CallbackError::Failed(Error::Unavailable { message: m, .. })) if m.contains("connection refused")
        ));
    }

    #[test]
    fn applied_pushes_sweep_markers_older_than_a_day_a_page_at_a_time() {
        let mut env = FakeEnv::new(&[]);
        env.page = 4;
        let oa = AccountKind::OfficialAccount;
        let finished = |msgid: i64| {
            let extra = format!("<MsgID>{msgid}</MsgID><Status><![CDATA[success]]></Status>");
            // Signed for the fake's clock, whatever it says.
            let (timestamp, nonce) = (env.now_secs.get().to_string(), "42");
            let signature = crypto::url_signature(TOKEN, &timestamp, nonce);
            let query = format!("signature={signature}&timestamp={timestamp}&nonce={nonce}");
            let body = event(OPENID, 100 + msgid, "TEMPLATESENDJOBFINISH", &extra);
            receive(&env, oa, &query, || Ok(body.into_bytes()))
        };
        env.now_secs.set(NOW_SECS - 2 * 24 * 3600);
        for msgid in 0..6 {
            assert_eq!(finished(msgid), Ok(Received::Applied));
        }
        env.now_secs.set(NOW_SECS - 60);
        for msgid in 10..13 {
            finished(msgid).unwrap();
        }
        assert_eq!(env.markers().len(), 9, "no sweep while the dice say no");

        // Every push sweeps from now on: one page each, resuming where the last one stopped.
        env.now_secs.set(NOW_SECS);
        env.random.set(0);
        for msgid in 20..23 {
            finished(msgid).unwrap();
        }
        let left: Vec<u64> = env
            .markers()
            .iter()
            .map(|k| {
                let applied = env.callbacks.borrow()[k].clone();
                String::from_utf8(applied).unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(left.len(), 6, "the 6 of the last day: {left:?}");
        assert!(left.iter().all(|&at| at >= NOW_SECS - 60), "{left:?}");
        // A sweep never touches anything but markers: the records stay.
        assert!(env.user("msg/0").is_some() && env.user("msg/22").is_some());
        // A retry of a swept push comes a day late: WeChat stopped retrying long ago, and
        // applying it again changes nothing (the same final status).
        assert_eq!(finished(0), Ok(Received::Applied));
        // A push is never swept by its own sweep, however old its CreateTime.
        assert_eq!(finished(0), Ok(Received::Duplicate));
    }

    #[test]
    fn template_job_finish_records_the_final_status() {
        let env = FakeEnv::new(&[]);
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
            serde_json::from_str(&env.user("msg/200163836").unwrap()).unwrap();
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
        let env = FakeEnv::new(&[]);
        let mini = AccountKind::MiniProgram;
        let openid = "oMP0000000000000000000000001";
        let json = |create_time: i64, event: &str, list: &str| {
            format!(
                r#"{{"FromUserName":"{openid}","CreateTime":"{create_time}","MsgType":"event","Event":"{event}","List":{list}}}"#
            )
        };
        let status = |template: &str| -> Option<SubscriptionStatus> {
            env.user(&users::subscription(mini, openid, template))
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
            &env.user(&users::subscription_sent(mini, openid, "T1"))
                .unwrap(),
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
        let env = FakeEnv::new(&[]);
        *env.race_on.borrow_mut() = Some(("k".into(), br#"{"at":1}"#.to_vec()));
        store_latest(&env, "k", 5, br#"{"at":5}"#).unwrap();
        assert_eq!(env.user("k").as_deref(), Some(r#"{"at":5}"#));
        // A racer that wrote a later record wins, on the second round.
        *env.race_on.borrow_mut() = Some(("k".into(), br#"{"at":9}"#.to_vec()));
        store_latest(&env, "k", 6, br#"{"at":6}"#).unwrap();
        assert_eq!(env.user("k").as_deref(), Some(r#"{"at":9}"#));
    }

    #[test]
    fn refusals_read_no_body_and_change_nothing() {
        let env = FakeEnv::new(&[]);
        let oa = AccountKind::OfficialAccount;
        let unread = || -> Result<Vec<u8>, CallbackError> { panic!("the body must not be read") };
        let tampered = signed_query().replacen("signature=", "signature=0", 1);
        assert_eq!(
            receive(&env, oa, &tampered, unread),
            Err(CallbackError::Rejected(Rejection::BadSignature(
                "signature"
            )))
        );
        let stale_env = FakeEnv::new(&[(MAX_AGE_KEY, "60")]);
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
        let mut unconfigured = FakeEnv::new(&[]);
        unconfigured.config.remove("oa_callback_token");
        assert!(matches!(
            receive(&unconfigured, oa, &signed_query(), unread),
            Err(CallbackError::Failed(Error::Config(m))) if m.contains("oa_callback_token")
        ));
        assert!(matches!(
            verify_url(&unconfigured, oa, ""),
            Err(CallbackError::Failed(Error::Config(m))) if m.contains("oa_callback_token")
        ));
        assert!(env.keys().is_empty() && stale_env.keys().is_empty());
        assert!(env.requests.borrow().is_empty());
    }

    #[test]
    fn messages_and_other_events_are_acknowledged_without_a_trace() {
        let env = FakeEnv::new(&[]);
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
        assert!(env.keys().is_empty());
    }
}
