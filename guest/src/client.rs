//! The WeChat flows — tokens, calls, identity resolution, sending, login, follower sync —
//! written against [`Env`], so this module holds the decisions and `host_io` the I/O.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::env::{Bucket, Env, Failure, HttpRequest, Method, Response};
use crate::wechat::api::{self, ErrcodeClass};
use crate::wechat::config::{Account, AccountKind, Config, TokenMode};
use crate::wechat::error::{ApiError, Error, Result};
use crate::wechat::token::{self, CachedToken};
use crate::wechat::users::{self, OaRecord, SyncCursor};
use crate::wechat::{crypto, message, query};
use wxnotify_contract as contract;

/// Calls made when WeChat is busy (-1) or unreachable, before giving up.
const MAX_ATTEMPTS: u32 = 3;
/// First backoff delay; doubled per attempt, with up to 50% jitter.
const BACKOFF_BASE_MS: u64 = 100;
/// How long a caller waits for another caller's token refresh before giving up.
const TOKEN_WAIT_MS: u64 = 30_000;
/// How often a waiting caller looks for the refreshed token.
const TOKEN_POLL_MS: u64 = 40;
/// What WeChat answers a subscribe message the user has not authorised.
const SUBSCRIPTION_REFUSED: i32 = 43101;
/// `user/info/batchget` takes at most 100 openids.
const BATCHGET_MAX: usize = 100;

/// A successful call and how many requests it took.
struct Called<T> {
    value: T,
    attempts: u32,
}

/// A delivered notification, with the errors of the channels that failed before.
#[derive(Debug)]
pub struct Delivered {
    pub channel: contract::Channel,
    pub msgid: Option<i64>,
    pub openid: String,
    pub attempts: u32,
    pub truncated: Vec<String>,
    pub failures: Vec<(contract::Channel, Error)>,
}

impl From<Delivered> for contract::Delivery {
    fn from(delivered: Delivered) -> Self {
        contract::Delivery {
            channel: delivered.channel,
            msgid: delivered.msgid,
            openid: delivered.openid,
            attempts: delivered.attempts,
            truncated: delivered.truncated,
            failures: delivered
                .failures
                .into_iter()
                .map(|(channel, error)| contract::ChannelFailure { channel, error })
                .collect(),
        }
    }
}

/// Progress of one `sync-followers` call.
pub use contract::SyncProgress;

pub struct WeChat<'e, E: Env> {
    env: &'e E,
    config: Config,
}

impl<'e, E: Env> WeChat<'e, E> {
    pub fn new(env: &'e E) -> Result<Self> {
        let config = Config::load(|key| env.config(key))?;
        Ok(WeChat { env, config })
    }

    // ---------------------------------------------------------------- sending

    pub fn send_notification(&self, notification: &contract::Notification) -> Result<Delivered> {
        // Every channel is checked before the first call, so a malformed notification costs
        // no request and no one-time authorisation.
        let channels = self.check_notification(notification)?;
        let mut failures = Vec::new();
        for channel in &channels {
            let outcome = match channel {
                Prepared::Template(message) => self.send_template(
                    &notification.recipient,
                    message,
                    notification.idempotency_key.as_deref(),
                ),
                Prepared::Subscribe(message) => {
                    self.send_subscribe(&notification.recipient, message)
                }
            };
            match outcome {
                Ok(mut delivered) => {
                    delivered.failures = failures;
                    return Ok(delivered);
                }
                Err(error) => failures.push((channel.kind(), error)),
            }
        }
        Err(choose_failure(failures))
    }

    /// Checks `notification` as sending would before its first call — recipient id, every
    /// channel's values — without sending anything; returns the checked channels.
    pub fn check_notification(
        &self,
        notification: &contract::Notification,
    ) -> Result<Vec<Prepared>> {
        match &notification.recipient {
            contract::Recipient::MiniProgram(id) => checked("mini-program openid", id)?,
            contract::Recipient::OfficialAccount(id) => checked("official-account openid", id)?,
            contract::Recipient::Union(id) => checked("unionid", id)?,
        }
        if notification.channels.is_empty() {
            return Err(Error::InvalidInput("notification has no channels".into()));
        }
        notification
            .channels
            .iter()
            .map(|channel| self.prepare(channel))
            .collect()
    }

    /// The final status WeChat pushed for template message `msgid` (`TEMPLATESENDJOBFINISH`),
    /// `None` until it has.
    pub fn template_outcome(&self, msgid: i64) -> Result<Option<users::TemplateOutcome>> {
        Ok(self
            .env
            .get(Bucket::Users, &users::template_outcome(msgid))?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    fn prepare(&self, channel: &contract::ChannelMessage) -> Result<Prepared> {
        Ok(match channel {
            contract::ChannelMessage::TemplateMessage(m) => {
                message::check_template(m)?;
                Prepared::Template(m.clone())
            }
            contract::ChannelMessage::UniformLegacy(m) => {
                let template =
                    message::from_uniform(m, self.config.appid(AccountKind::OfficialAccount))?;
                message::check_template(&template)?;
                Prepared::Template(template)
            }
            contract::ChannelMessage::SubscribeMessage(m) => {
                message::check_subscribe(m)?;
                Prepared::Subscribe(m.clone())
            }
        })
    }

    fn send_template(
        &self,
        recipient: &contract::Recipient,
        message: &contract::TemplateMessage,
        idempotency_key: Option<&str>,
    ) -> Result<Delivered> {
        let openid = self.oa_openid_of(recipient)?;
        let body = message::template_body(
            &openid,
            message,
            self.config.appid(AccountKind::MiniProgram),
            idempotency_key,
        )?;
        #[derive(Deserialize)]
        struct Sent {
            msgid: i64,
        }
        let sent: Result<Called<Sent>> = self.call_with_token(
            AccountKind::OfficialAccount,
            "/cgi-bin/message/template/send",
            |token| {
                post_json(
                    self.config.url(&format!(
                        "/cgi-bin/message/template/send?access_token={}",
                        query(token)
                    )),
                    &body.json,
                )
            },
        );
        // WeChat says the user does not follow: remember it, so the next notification skips
        // this channel without a call until a sync or a subscribe event says otherwise.
        if let Err(Error::Refused(api)) = &sent
            && api.errcode == 43004
        {
            self.record_unfollow(&openid)?;
        }
        let sent = sent?;
        Ok(Delivered {
            channel: contract::Channel::TemplateMessage,
            msgid: Some(sent.value.msgid),
            openid,
            attempts: sent.attempts,
            truncated: body.truncated,
            failures: Vec::new(),
        })
    }

    fn send_subscribe(
        &self,
        recipient: &contract::Recipient,
        message: &contract::SubscribeMessage,
    ) -> Result<Delivered> {
        let openid = self.mini_openid_of(recipient)?;
        self.check_subscription(&openid, &message.template_id)?;
        let body = message::subscribe_body(&openid, message);
        let sent: Called<serde::de::IgnoredAny> = self.call_with_token(
            AccountKind::MiniProgram,
            "/cgi-bin/message/subscribe/send",
            |token| {
                post_json(
                    self.config.url(&format!(
                        "/cgi-bin/message/subscribe/send?access_token={}",
                        query(token)
                    )),
                    &body,
                )
            },
        )?;
        Ok(Delivered {
            channel: contract::Channel::SubscribeMessage,
            msgid: None,
            openid,
            attempts: sent.attempts,
            truncated: Vec::new(),
            failures: Vec::new(),
        })
    }

    /// Refuses a subscribe message the user's newest recorded decision forbids: WeChat would
    /// answer 43101, and asking would cost a call. No record, or an `accept`, lets it through.
    fn check_subscription(&self, openid: &str, template_id: &str) -> Result<()> {
        let key = users::subscription(AccountKind::MiniProgram, openid, template_id);
        let decision = self
            .env
            .get(Bucket::Users, &key)?
            .and_then(|bytes| serde_json::from_slice::<users::SubscriptionStatus>(&bytes).ok());
        match decision {
            Some(decision) if decision.refuses() => Err(Error::Refused(ApiError {
                errcode: SUBSCRIPTION_REFUSED,
                errmsg: format!(
                    "mini-program openid {openid} answered `{}` for template {template_id} in {} \
                     (CreateTime {}); not sent",
                    decision.status,
                    decision.event_name(),
                    decision.at
                ),
            })),
            _ => Ok(()),
        }
    }

    // ---------------------------------------------------------------- identity

    /// The OA openid a template message must go to.
    fn oa_openid_of(&self, recipient: &contract::Recipient) -> Result<String> {
        let (openid, described) = match recipient {
            contract::Recipient::OfficialAccount(openid) => {
                checked("official-account openid", openid)?;
                (openid.clone(), format!("official-account openid {openid}"))
            }
            contract::Recipient::MiniProgram(mini) => {
                checked("mini-program openid", mini)?;
                let unionid = self
                    .read_string(Bucket::Users, &users::mini_unionid(mini))?
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "no unionid is known for mini-program openid {mini}: log the user in \
                         (login) or decrypt their user data (decrypt-user-data) first"
                        ))
                    })?;
                let openid = self.read_string(Bucket::Users, &users::union_oa(&unionid))?.ok_or_else(|| {
                    Error::NotFound(format!(
                        "unionid {unionid} of mini-program openid {mini} has no official-account \
                         openid: the user does not follow the official account, or its followers \
                         were not synced (sync-followers)"
                    ))
                })?;
                let described = format!("official-account openid {openid} (unionid {unionid})");
                (openid, described)
            }
            contract::Recipient::Union(unionid) => {
                checked("unionid", unionid)?;
                let openid = self
                    .read_string(Bucket::Users, &users::union_oa(unionid))?
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "unionid {unionid} has no official-account openid: the user does not \
                         follow the official account, or its followers were not synced \
                         (sync-followers)"
                        ))
                    })?;
                let described = format!("official-account openid {openid} (unionid {unionid})");
                (openid, described)
            }
        };
        // A known non-follower would get 43004; saying so locally saves the call.
        if let Some(record) = self.oa_record(&openid)?
            && !record.follows
        {
            return Err(Error::Refused(ApiError {
                errcode: 43004,
                errmsg: format!("{described} does not follow the official account (not sent)"),
            }));
        }
        Ok(openid)
    }

    /// The mini-program openid a subscribe message must go to.
    fn mini_openid_of(&self, recipient: &contract::Recipient) -> Result<String> {
        let unionid =
            match recipient {
                contract::Recipient::MiniProgram(openid) => {
                    checked("mini-program openid", openid)?;
                    return Ok(openid.clone());
                }
                contract::Recipient::Union(unionid) => {
                    checked("unionid", unionid)?;
                    unionid.clone()
                }
                contract::Recipient::OfficialAccount(openid) => {
                    checked("official-account openid", openid)?;
                    self.oa_record(openid)?.and_then(|r| r.unionid).ok_or_else(|| {
                    Error::NotFound(format!(
                        "no unionid is known for official-account openid {openid}: sync the \
                         followers (sync-followers) or resolve the user first"
                    ))
                })?
                }
            };
        self.read_string(Bucket::Users, &users::union_mini(&unionid))?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "unionid {unionid} has no mini-program openid: the user has not logged in to \
                 the mini-program (login)"
                ))
            })
    }

    /// Every identity known for `recipient`; an OA openid with no known unionid is looked up
    /// with `user/info`.
    pub fn resolve_user(&self, recipient: &contract::Recipient) -> Result<contract::User> {
        let mut user = contract::User {
            mini_openid: None,
            unionid: None,
            oa_openid: None,
            follows_oa: None,
        };
        match recipient {
            contract::Recipient::MiniProgram(openid) => {
                checked("mini-program openid", openid)?;
                user.mini_openid = Some(openid.clone());
                user.unionid = self.read_string(Bucket::Users, &users::mini_unionid(openid))?;
            }
            contract::Recipient::Union(unionid) => {
                checked("unionid", unionid)?;
                user.unionid = Some(unionid.clone());
            }
            contract::Recipient::OfficialAccount(openid) => {
                checked("official-account openid", openid)?;
                let record = match self.oa_record(openid)? {
                    Some(record) if record.is_current(self.now_secs()) => record,
                    _ => self.fetch_oa_user(openid)?,
                };
                user.oa_openid = Some(openid.clone());
                user.follows_oa = Some(record.follows);
                user.unionid = record.unionid;
            }
        }
        if let Some(unionid) = user.unionid.clone() {
            if user.mini_openid.is_none() {
                user.mini_openid = self.read_string(Bucket::Users, &users::union_mini(&unionid))?;
            }
            if user.oa_openid.is_none() {
                user.oa_openid = self.read_string(Bucket::Users, &users::union_oa(&unionid))?;
            }
        }
        if user.follows_oa.is_none()
            && let Some(oa) = &user.oa_openid
        {
            user.follows_oa = self.oa_record(oa)?.map(|r| r.follows);
        }
        let nothing_known = match recipient {
            contract::Recipient::MiniProgram(openid) => {
                user.unionid.is_none()
                    && self
                        .env
                        .get(Bucket::Users, &users::mini_session_key(openid))?
                        .is_none()
            }
            contract::Recipient::Union(_) => user.mini_openid.is_none() && user.oa_openid.is_none(),
            contract::Recipient::OfficialAccount(_) => false,
        };
        if nothing_known {
            return Err(Error::NotFound(format!(
                "nothing is known about {}: log the user in (login) or sync the followers \
                 (sync-followers) first",
                describe(recipient)
            )));
        }
        Ok(user)
    }

    /// Looks an OA openid up with `user/info` and stores what WeChat says.
    fn fetch_oa_user(&self, openid: &str) -> Result<OaRecord> {
        let info = self.user_info(openid)?;
        self.store_oa_record(openid, info.unionid, info.subscribe == 1)
    }

    /// Records that `openid` now follows the official account (a `subscribe` push), with the
    /// unionid `user/info` reports, so notifications addressed by mini-program openid or
    /// unionid reach them from now on. A push carries no unionid, hence the lookup.
    ///
    /// The push, not `user/info`'s `subscribe` field, says they follow: it is the event itself.
    pub fn record_follow(&self, openid: &str) -> Result<OaRecord> {
        checked("official-account openid", openid)?;
        let info = self.user_info(openid)?;
        // WeChat leaves the unionid out when it has none to give; keep one learned before.
        let unionid = match info.unionid {
            Some(unionid) => Some(unionid),
            None => self.oa_record(openid)?.and_then(|r| r.unionid),
        };
        self.store_oa_record(openid, unionid, true)
    }

    /// Records that `openid` no longer follows the official account (an `unsubscribe` push,
    /// or WeChat's 43004), so template messages to them are refused locally. The unionid and
    /// its mapping stay: they still identify the person if they follow again.
    pub fn record_unfollow(&self, openid: &str) -> Result<OaRecord> {
        checked("official-account openid", openid)?;
        let known = self.oa_record(openid)?;
        let record = OaRecord {
            follows: false,
            unionid: known.as_ref().and_then(|r| r.unionid.clone()),
            looked_up_at: known.and_then(|r| r.looked_up_at),
        };
        self.env
            .set(Bucket::Users, &users::oa(openid), &to_json(&record))?;
        Ok(record)
    }

    /// `user/info` of an OA openid; a unionid that could not be part of a key is dropped.
    fn user_info(&self, openid: &str) -> Result<UserInfo> {
        let info: Called<UserInfo> = self.call_with_token(
            AccountKind::OfficialAccount,
            "/cgi-bin/user/info",
            |token| HttpRequest {
                method: Method::Get,
                url: self.config.url(&format!(
                    "/cgi-bin/user/info?access_token={}&openid={}&lang=zh_CN",
                    query(token),
                    query(openid)
                )),
                body: None,
            },
        )?;
        let mut info = info.value;
        info.unionid = info
            .unionid
            .filter(|u| users::check_id("unionid", u).is_ok());
        Ok(info)
    }

    /// Stores what a `user/info` lookup made of `openid` just now, and the unionid → openid
    /// link when there is a unionid.
    fn store_oa_record(
        &self,
        openid: &str,
        unionid: Option<String>,
        follows: bool,
    ) -> Result<OaRecord> {
        let record = OaRecord {
            unionid,
            follows,
            looked_up_at: Some(self.now_secs()),
        };
        let mut entries = vec![(users::oa(openid), to_json(&record))];
        if let Some(unionid) = &record.unionid {
            entries.push((users::union_oa(unionid), openid.as_bytes().to_vec()));
        }
        self.env.set_many(Bucket::Users, entries)?;
        Ok(record)
    }

    fn oa_record(&self, openid: &str) -> Result<Option<OaRecord>> {
        Ok(self
            .env
            .get(Bucket::Users, &users::oa(openid))?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    fn read_string(&self, bucket: Bucket, key: &str) -> Result<Option<String>> {
        Ok(self
            .env
            .get(bucket, key)?
            .and_then(|bytes| String::from_utf8(bytes).ok()))
    }

    // ---------------------------------------------------------------- accounts

    pub fn login(&self, js_code: &str) -> Result<contract::User> {
        if js_code.trim().is_empty() {
            return Err(Error::InvalidInput("js_code is empty".into()));
        }
        let account = self.config.account(AccountKind::MiniProgram)?;
        #[derive(Deserialize)]
        struct Session {
            openid: String,
            session_key: String,
            unionid: Option<String>,
        }
        let session: Called<Session> = self.call(
            "/sns/jscode2session",
            &HttpRequest {
                method: Method::Get,
                url: self.config.url(&format!(
                    "/sns/jscode2session?appid={}&secret={}&js_code={}&grant_type=authorization_code",
                    query(&account.appid),
                    query(&account.secret),
                    query(js_code)
                )),
                body: None,
            },
        )?;
        let session = session.value;
        checked("mini-program openid from jscode2session", &session.openid)
            .map_err(|e| Error::unavailable(e.to_string()))?;
        let mut entries = vec![(
            users::mini_session_key(&session.openid),
            session.session_key.into_bytes(),
        )];
        let unionid = session.unionid.filter(|u| !u.is_empty());
        if let Some(unionid) = &unionid {
            entries.push((
                users::mini_unionid(&session.openid),
                unionid.clone().into_bytes(),
            ));
            entries.push((
                users::union_mini(unionid),
                session.openid.clone().into_bytes(),
            ));
        }
        self.env.set_many(Bucket::Users, entries)?;
        // Unionid may have been learned before (decrypted user data), so resolve from storage.
        self.resolve_user(&contract::Recipient::MiniProgram(session.openid.clone()))
            .or(Ok(contract::User {
                mini_openid: Some(session.openid),
                unionid,
                oa_openid: None,
                follows_oa: None,
            }))
    }

    pub fn decrypt_user_data(
        &self,
        mini_openid: &str,
        encrypted_data: &str,
        iv: &str,
    ) -> Result<String> {
        checked("mini-program openid", mini_openid)?;
        let appid = self.config.account(AccountKind::MiniProgram)?.appid;
        let session_key = self.read_string(Bucket::Users, &users::mini_session_key(mini_openid))?.ok_or_else(|| {
            Error::NotFound(format!(
                "no session key is stored for mini-program openid {mini_openid}: log the user in (login) first"
            ))
        })?;
        let plaintext = crypto::decrypt_user_data(&session_key, encrypted_data, iv, &appid)
            .map_err(|e| Error::InvalidInput(format!("user data: {e}")))?;
        #[derive(Deserialize)]
        struct Revealed {
            #[serde(rename = "unionId")]
            union_id: Option<String>,
        }
        if let Ok(Revealed {
            union_id: Some(unionid),
        }) = serde_json::from_str::<Revealed>(&plaintext)
            && users::check_id("unionid", &unionid).is_ok()
        {
            self.env.set_many(
                Bucket::Users,
                vec![
                    (
                        users::mini_unionid(mini_openid),
                        unionid.clone().into_bytes(),
                    ),
                    (users::union_mini(&unionid), mini_openid.as_bytes().to_vec()),
                ],
            )?;
        }
        Ok(plaintext)
    }

    pub fn sync_followers(&self, restart: bool) -> Result<SyncProgress> {
        let cursor = if restart {
            None
        } else {
            self.env
                .get(Bucket::Users, users::SYNC_CURSOR)?
                .and_then(|bytes| serde_json::from_slice::<SyncCursor>(&bytes).ok())
        };
        let (next_openid, synced_before) =
            cursor.map_or((String::new(), 0), |c| (c.next_openid, c.synced));
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            total: u32,
            #[serde(default)]
            count: u32,
            data: Option<PageData>,
            #[serde(default)]
            next_openid: String,
        }
        #[derive(Deserialize)]
        struct PageData {
            #[serde(default)]
            openid: Vec<String>,
        }
        let page: Called<Page> =
            self.call_with_token(AccountKind::OfficialAccount, "/cgi-bin/user/get", |token| {
                HttpRequest {
                    method: Method::Get,
                    url: self.config.url(&format!(
                        "/cgi-bin/user/get?access_token={}&next_openid={}",
                        query(token),
                        query(&next_openid)
                    )),
                    body: None,
                }
            })?;
        let page = page.value;
        let openids = page.data.map(|d| d.openid).unwrap_or_default();
        let mut mapped = 0;
        for chunk in openids.chunks(BATCHGET_MAX) {
            mapped += self.map_followers(chunk)?;
        }
        let synced = synced_before.saturating_add(u32::try_from(openids.len()).unwrap_or(u32::MAX));
        // WeChat may hand back a next_openid with nothing after it, so an empty page or an empty
        // cursor both end the sync.
        let done = page.count == 0 || openids.is_empty() || page.next_openid.is_empty();
        if done {
            self.env.delete(Bucket::Users, users::SYNC_CURSOR)?;
        } else {
            let cursor = SyncCursor {
                next_openid: page.next_openid,
                synced,
            };
            self.env
                .set(Bucket::Users, users::SYNC_CURSOR, &to_json(&cursor))?;
        }
        Ok(SyncProgress {
            total: page.total,
            synced,
            mapped,
            done,
        })
    }

    /// Looks up ≤ 100 followers and stores their unionid and follow state; returns how many
    /// now have a unionid mapped.
    fn map_followers(&self, openids: &[String]) -> Result<u32> {
        #[derive(Deserialize)]
        struct Batch {
            #[serde(default)]
            user_info_list: Vec<UserInfo>,
        }
        let body = serde_json::json!({
            "user_list": openids.iter().map(|o| serde_json::json!({"openid": o, "lang": "zh_CN"})).collect::<Vec<_>>()
        });
        let batch: Called<Batch> = self.call_with_token(
            AccountKind::OfficialAccount,
            "/cgi-bin/user/info/batchget",
            |token| {
                post_json(
                    self.config.url(&format!(
                        "/cgi-bin/user/info/batchget?access_token={}",
                        query(token)
                    )),
                    &body,
                )
            },
        )?;
        let now_secs = self.now_secs();
        let mut entries = Vec::with_capacity(batch.value.user_info_list.len() * 2);
        let mut mapped = 0;
        for info in batch.value.user_info_list {
            let Some(openid) = info.openid.filter(|o| users::check_id("openid", o).is_ok()) else {
                continue;
            };
            let unionid = info
                .unionid
                .filter(|u| users::check_id("unionid", u).is_ok());
            if let Some(unionid) = &unionid {
                entries.push((users::union_oa(unionid), openid.clone().into_bytes()));
                mapped += 1;
            }
            entries.push((
                users::oa(&openid),
                to_json(&OaRecord {
                    unionid,
                    follows: info.subscribe == 1,
                    looked_up_at: Some(now_secs),
                }),
            ));
        }
        self.env.set_many(Bucket::Users, entries)?;
        Ok(mapped)
    }

    // ---------------------------------------------------------------- calls and tokens

    /// Calls an access-token API. On a stale token (40001/42001/40014) the cached token is
    /// dropped if it is still the one that failed, a fresh one is obtained, and the call is
    /// repeated exactly once.
    fn call_with_token<T: DeserializeOwned>(
        &self,
        kind: AccountKind,
        endpoint: &str,
        build: impl Fn(&str) -> HttpRequest,
    ) -> Result<Called<T>> {
        let account = self.config.account(kind)?;
        let token = self.token(&account)?;
        let mut attempts = 0;
        match self.call_raw(endpoint, &build(&token.access_token), &mut attempts)? {
            Ok(value) => Ok(Called { value, attempts }),
            Err(api) if api::classify(api.errcode) == ErrcodeClass::TokenInvalid => {
                let fresh = self.replace_token(&account, &token)?;
                match self.call_raw(endpoint, &build(&fresh.access_token), &mut attempts)? {
                    Ok(value) => Ok(Called { value, attempts }),
                    Err(api) => Err(api::error_for(api)),
                }
            }
            Err(api) => Err(api::error_for(api)),
        }
    }

    /// Calls an API that takes no access token.
    fn call<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        request: &HttpRequest,
    ) -> Result<Called<T>> {
        let mut attempts = 0;
        match self.call_raw(endpoint, request, &mut attempts)? {
            Ok(value) => Ok(Called { value, attempts }),
            Err(api) => Err(api::error_for(api)),
        }
    }

    /// One logical call: retried with backoff while WeChat is busy or unreachable, at most
    /// [`MAX_ATTEMPTS`] requests. Returns WeChat's errcode answer unclassified.
    fn call_raw<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        request: &HttpRequest,
        attempts: &mut u32,
    ) -> Result<std::result::Result<T, ApiError>> {
        let mut tries = 0;
        loop {
            tries += 1;
            *attempts += 1;
            let outcome = match self.env.http(request) {
                Ok(Response { status, body }) => api::parse::<T>(endpoint, status, &body),
                Err(Failure::Failed(why)) => Err(Error::unavailable(why)),
                // The egress policy will deny the retry too: the tenant's configuration must change.
                Err(Failure::Denied(why)) => Err(Error::Config(why)),
            };
            let retryable = match &outcome {
                Ok(Err(api)) => api::classify(api.errcode) == ErrcodeClass::Busy,
                Err(Error::Unavailable { .. }) => true,
                _ => false,
            };
            if !retryable || tries >= MAX_ATTEMPTS {
                return outcome;
            }
            self.backoff(BACKOFF_BASE_MS << (tries - 1));
        }
    }

    /// Sleeps `delay` plus up to half of it again, so callers that failed together do not
    /// retry together.
    fn backoff(&self, delay: u64) {
        self.env
            .sleep_ms(delay + self.env.random_u64() % (delay / 2 + 1));
    }

    fn now_secs(&self) -> u64 {
        self.env.now_ms() / 1000
    }

    /// A usable token for `account`: the cached one while it is fresh, otherwise a new one.
    ///
    /// Refreshes are single-flight across every caller sharing the store: one caller takes
    /// the refresh lease (a CAS in the `tokens` bucket) and fetches; the others wait for the
    /// token it stores. A lease expires, so a caller that crashed mid-refresh blocks no one.
    fn token(&self, account: &Account) -> Result<CachedToken> {
        let key = token::cache_key(&account.appid, self.config.token_mode);
        let lease_key = token::lease_key(&account.appid, self.config.token_mode);
        let give_up_at = self.env.now_ms() + TOKEN_WAIT_MS;
        loop {
            if let Some(cached) = self.cached_token(&key)? {
                return Ok(cached);
            }
            let now = self.env.now_ms();
            let current = self.env.get(Bucket::Tokens, &lease_key)?;
            if !token::Lease::held_in(current.as_deref(), now) {
                let lease = token::Lease::new(self.env.random_u64() | 1, now).to_bytes();
                if self.env.compare_and_swap(
                    Bucket::Tokens,
                    &lease_key,
                    current.as_deref(),
                    &lease,
                )? {
                    // Another caller may have stored a token between the read above and the lease.
                    let fetched = match self.cached_token(&key)? {
                        Some(cached) => Ok(cached),
                        None => self.fetch_token(account, &key, false),
                    };
                    let released = token::Lease::released().to_bytes();
                    self.env.compare_and_swap(
                        Bucket::Tokens,
                        &lease_key,
                        Some(&lease),
                        &released,
                    )?;
                    return fetched;
                }
            }
            if now >= give_up_at {
                return Err(Error::unavailable(format!(
                    "timed out waiting for another caller to refresh the access token of {}",
                    account.appid
                )));
            }
            self.backoff(TOKEN_POLL_MS);
        }
    }

    fn cached_token(&self, key: &str) -> Result<Option<CachedToken>> {
        let now = self.now_secs();
        Ok(self
            .env
            .get(Bucket::Tokens, key)?
            .and_then(|bytes| CachedToken::from_bytes(&bytes))
            .filter(|cached| cached.is_fresh(now)))
    }

    fn fetch_token(
        &self,
        account: &Account,
        key: &str,
        force_refresh: bool,
    ) -> Result<CachedToken> {
        let endpoint = token::endpoint(self.config.token_mode);
        let request = token::fetch_request(&self.config, account, force_refresh);
        let answer: Called<token::TokenAnswer> = self.call(endpoint, &request)?;
        let fresh = answer.value.into_cached(self.now_secs());
        self.env.set(Bucket::Tokens, key, &fresh.to_bytes())?;
        Ok(fresh)
    }

    /// The token to retry with after `failed` was refused as stale.
    ///
    /// `failed` is marked dead only if it is still the cached token: dropping a token another
    /// caller just fetched would start a refresh storm. If WeChat then hands back the very
    /// token it refused (a stable token it still believes valid), one `force_refresh` is made,
    /// within the account's budget of 20 a day, 30 s apart, shared through the store.
    fn replace_token(&self, account: &Account, failed: &CachedToken) -> Result<CachedToken> {
        let key = token::cache_key(&account.appid, self.config.token_mode);
        let dead = CachedToken {
            access_token: failed.access_token.clone(),
            expires_at: 0,
        };
        self.env.compare_and_swap(
            Bucket::Tokens,
            &key,
            Some(&failed.to_bytes()),
            &dead.to_bytes(),
        )?;
        let fresh = self.token(account)?;
        if fresh.access_token != failed.access_token || self.config.token_mode != TokenMode::Stable
        {
            return Ok(fresh);
        }
        let budget_key = token::force_budget_key(&account.appid);
        let current = self.env.get(Bucket::Tokens, &budget_key)?;
        let Some(spent) = token::ForceBudget::from_bytes(current.as_deref()).spend(self.now_secs())
        else {
            return Ok(fresh);
        };
        if !self.env.compare_and_swap(
            Bucket::Tokens,
            &budget_key,
            current.as_deref(),
            &spent.to_bytes(),
        )? {
            // Another caller spent it, and is forcing the refresh now.
            return Ok(fresh);
        }
        self.fetch_token(account, &key, true)
    }
}

/// A channel message checked and ready to send.
pub enum Prepared {
    Template(contract::TemplateMessage),
    Subscribe(contract::SubscribeMessage),
}

impl Prepared {
    fn kind(&self) -> contract::Channel {
        match self {
            Prepared::Template(_) => contract::Channel::TemplateMessage,
            Prepared::Subscribe(_) => contract::Channel::SubscribeMessage,
        }
    }
}

/// The error reported when no channel delivered: the first retryable one if any, so a caller
/// that retries on `unavailable`/`quota` retries this notification; otherwise the last.
fn choose_failure(mut failures: Vec<(contract::Channel, Error)>) -> Error {
    if let Some(index) = failures.iter().position(|(_, e)| e.is_retryable()) {
        return failures.swap_remove(index).1;
    }
    failures.pop().map_or_else(
        || Error::InvalidInput("notification has no channels".into()),
        |(_, e)| e,
    )
}

#[derive(Deserialize)]
struct UserInfo {
    #[serde(default)]
    subscribe: u8,
    openid: Option<String>,
    unionid: Option<String>,
}

fn post_json(url: String, body: &serde_json::Value) -> HttpRequest {
    HttpRequest {
        method: Method::Post,
        url,
        body: Some(body.to_string().into_bytes()),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn checked(kind: &str, id: &str) -> Result<()> {
    users::check_id(kind, id).map_err(Error::InvalidInput)
}

fn describe(recipient: &contract::Recipient) -> String {
    match recipient {
        contract::Recipient::MiniProgram(id) => format!("mini-program openid {id}"),
        contract::Recipient::OfficialAccount(id) => format!("official-account openid {id}"),
        contract::Recipient::Union(id) => format!("unionid {id}"),
    }
}
