//! The sandbox's shared state and its Rust API (seeding, observation, fault injection, clock).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::api::Params;
use crate::config::{Account, AppCredentials, CGI_STABLE_TOKEN, CGI_TOKEN, SandboxConfig};
use crate::error::{ApiError, SandboxError};
use crate::faults::{Fault, FaultBook, FaultPlan};
use crate::pushes::PushRecord;
use crate::record::{
    Bounded, DeliveredSubscribeMessage, DeliveredTemplateMessage, RecordedRequest, RobotMessage,
    Stats, TokenFetches, unix_secs,
};
use crate::tokens::TokenStore;
use crate::users::{SeedUser, SeededUser, UserDirectory, UserId};

/// Login codes expire this long after `wx.login` issued them.
pub(crate) const LOGIN_CODE_TTL: Duration = Duration::from_secs(5 * 60);
/// Window in which a repeated `client_msg_id` returns the original msgid.
pub(crate) const CLIENT_MSG_ID_WINDOW: Duration = Duration::from_secs(10 * 60);

/// A WeCom group robot accepts at most this many messages per minute (45009 beyond).
pub const ROBOT_MESSAGES_PER_MINUTE: usize = 20;
const ROBOT_RATE_WINDOW: Duration = Duration::from_secs(60);

/// One WeCom group robot: what it accepted, and when its recent messages arrived.
pub(crate) struct Robot {
    messages: Bounded<RobotMessage>,
    /// Arrival of accepted messages within the last [`ROBOT_RATE_WINDOW`], oldest first.
    recent: VecDeque<SystemTime>,
}

impl Robot {
    fn new(record_limit: usize) -> Self {
        Self {
            messages: Bounded::new(record_limit),
            recent: VecDeque::new(),
        }
    }

    /// Takes `message` unless the robot already accepted [`ROBOT_MESSAGES_PER_MINUTE`] in the
    /// minute before it (45009, as WeCom answers).
    pub(crate) fn accept(&mut self, message: RobotMessage) -> Result<(), ApiError> {
        while self
            .recent
            .front()
            .is_some_and(|&at| at + ROBOT_RATE_WINDOW <= message.at)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= ROBOT_MESSAGES_PER_MINUTE {
            return Err(ApiError::new(45009, "api freq out of limit"));
        }
        self.recent.push_back(message.at);
        self.messages.push(message);
        Ok(())
    }
}

/// The sandbox's state: accounts, users, tokens, records and faults behind one mutex.
///
/// Cheap to clone (an `Arc`). Every method takes the lock only briefly and never across an
/// `.await`. [`crate::Sandbox`] dereferences to this type, so these methods are called directly on
/// a running sandbox; build one yourself only to drive [`crate::router`] without a socket.
#[derive(Clone)]
pub struct SandboxState {
    shared: Arc<Shared>,
}

struct Shared {
    config: SandboxConfig,
    world: Mutex<World>,
}

/// A `wx.login` code.
#[derive(Debug)]
pub(crate) struct LoginCode {
    pub(crate) user: UserId,
    pub(crate) issued_at: SystemTime,
    pub(crate) used: bool,
}

/// Everything mutable. Handlers lock it, do their whole check-and-update, and unlock.
pub(crate) struct World {
    pub(crate) config: SandboxConfig,
    clock_offset: Duration,
    /// Templates per account (indexed by [`Account::index`]): id → keys in display order.
    pub(crate) templates: [BTreeMap<String, Vec<String>>; 2],
    pub(crate) users: UserDirectory,
    pub(crate) tokens: TokenStore,
    pub(crate) codes: HashMap<String, LoginCode>,
    code_order: VecDeque<(SystemTime, String)>,
    /// Remaining one-time subscribe authorisations per (user, template).
    pub(crate) subscriptions: HashMap<(UserId, String), u32>,
    /// `client_msg_id` de-duplication: (user, key) → (msgid, first send).
    dedup: HashMap<(UserId, String), (i64, SystemTime)>,
    dedup_order: VecDeque<(SystemTime, (UserId, String))>,
    /// Calls per (account, cgi path) on one China-time day.
    quota_used: HashMap<(Account, String), (i64, u64)>,
    next_msgid: i64,
    requests: Bounded<RecordedRequest>,
    pub(crate) template_messages: Bounded<DeliveredTemplateMessage>,
    pub(crate) subscribe_messages: Bounded<DeliveredSubscribeMessage>,
    pub(crate) stats: Stats,
    pub(crate) faults: FaultBook,
    /// WeCom group robots by webhook key.
    pub(crate) robots: HashMap<String, Robot>,
    /// The developer's callback URL per account (indexed by [`Account::index`]).
    callback_urls: [Option<String>; 2],
    /// Pushes made to them, oldest first.
    pushes: Bounded<PushRecord>,
}

impl SandboxState {
    /// A fresh state with the default templates and no users.
    pub fn new(config: SandboxConfig) -> Self {
        let mut world = World {
            config: config.clone(),
            clock_offset: Duration::ZERO,
            templates: Default::default(),
            users: UserDirectory::default(),
            tokens: TokenStore::default(),
            codes: HashMap::new(),
            code_order: VecDeque::new(),
            subscriptions: HashMap::new(),
            dedup: HashMap::new(),
            dedup_order: VecDeque::new(),
            quota_used: HashMap::new(),
            next_msgid: 3_160_000_000_000_000_000,
            requests: Bounded::new(config.record_limit),
            template_messages: Bounded::new(config.record_limit),
            subscribe_messages: Bounded::new(config.record_limit),
            stats: Stats::default(),
            faults: FaultBook::default(),
            robots: config
                .robot_keys
                .iter()
                .map(|key| (key.clone(), Robot::new(config.record_limit)))
                .collect(),
            callback_urls: [None, None],
            pushes: Bounded::new(config.record_limit),
        };
        world.templates[Account::OfficialAccount.index()].insert(
            "TPL_ORDER_SHIPPED".to_owned(),
            keys(["thing1", "character_string2", "time3"]),
        );
        world.templates[Account::MiniProgram.index()].insert(
            "TPL_ORDER_STATUS".to_owned(),
            keys(["thing1", "phrase2", "time3", "amount4"]),
        );
        Self {
            shared: Arc::new(Shared {
                config,
                world: Mutex::new(world),
            }),
        }
    }

    /// Locks the world. A handler that panicked mid-update leaves at worst one half-applied
    /// request behind, so a poisoned lock is used rather than failing every later test call.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.shared
            .world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The configuration the sandbox was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    /// Mini-program appid and secret.
    pub fn mini_app(&self) -> AppCredentials {
        self.shared.config.mini_program.clone()
    }

    /// Official-account appid and secret.
    pub fn oa_app(&self) -> AppCredentials {
        self.shared.config.official_account.clone()
    }

    // ----- clock -------------------------------------------------------------------------

    /// The sandbox clock: real time plus every [`Self::advance_clock`].
    pub fn now(&self) -> SystemTime {
        self.world().now()
    }

    /// Moves the sandbox clock forward; every time-based rule (token expiry and overlap, code
    /// expiry, `client_msg_id` window, force-refresh spacing, quota day) follows it.
    pub fn advance_clock(&self, by: Duration) {
        self.world().clock_offset += by;
    }

    // ----- templates and users -----------------------------------------------------------

    /// Adds (or replaces) a template of `account` with its data keys in display order, e.g.
    /// `["thing1", "time2"]`.
    pub fn add_template<K: Into<String>>(
        &self,
        account: Account,
        template_id: impl Into<String>,
        keys: impl IntoIterator<Item = K>,
    ) {
        let keys = keys.into_iter().map(Into::into).collect();
        self.world().templates[account.index()].insert(template_id.into(), keys);
    }

    /// The templates of `account`: id → keys.
    pub fn templates(&self, account: Account) -> BTreeMap<String, Vec<String>> {
        self.world().templates[account.index()].clone()
    }

    /// Seeds one user.
    pub fn add_user(&self, seed: SeedUser) -> SeededUser {
        let mut world = self.world();
        let now = unix_secs(world.now());
        world.users.add(seed, now)
    }

    /// Seeds `count` users alike.
    pub fn add_users(&self, seed: SeedUser, count: usize) -> Vec<SeededUser> {
        let mut world = self.world();
        let now = unix_secs(world.now());
        world.users.reserve(count);
        (0..count).map(|_| world.users.add(seed, now)).collect()
    }

    /// Seeds `count` linked followers ([`SeedUser::follower`]: both openids, a unionid, following
    /// the OA). 100 000 take well under a second.
    pub fn add_followers(&self, count: usize) -> Vec<SeededUser> {
        self.add_users(SeedUser::follower(), count)
    }

    /// Number of seeded users.
    pub fn user_count(&self) -> usize {
        self.world().users.len()
    }

    /// Number of users following the OA.
    pub fn follower_count(&self) -> usize {
        self.world().users.follower_count()
    }

    /// Follows or unfollows the OA on behalf of a user.
    pub fn set_following(&self, oa_openid: &str, following: bool) -> Result<(), SandboxError> {
        let mut world = self.world();
        let now = unix_secs(world.now());
        if world.users.set_following(oa_openid, following, now) {
            Ok(())
        } else {
            Err(SandboxError::UnknownOaOpenid(oa_openid.to_owned()))
        }
    }

    /// The last `limit` users added, oldest of them first, and whether each follows the OA.
    pub fn latest_users(&self, limit: usize) -> Vec<(SeededUser, bool)> {
        self.world()
            .users
            .latest(limit)
            .map(|user| (user.ids.clone(), user.following))
            .collect()
    }

    /// Where WeChat pushes `account`'s events (`None`: nowhere, the default). See
    /// [`crate::pushes`].
    pub fn set_callback_url(&self, account: Account, url: Option<String>) {
        self.world().callback_urls[account.index()] = url;
    }

    /// The callback URL of `account`, if set.
    pub fn callback_url(&self, account: Account) -> Option<String> {
        self.world().callback_urls[account.index()].clone()
    }

    /// Pushes made to the callback URLs, oldest first.
    pub fn pushes(&self) -> Vec<PushRecord> {
        self.world().pushes.to_vec()
    }

    pub(crate) fn record_push(&self, record: PushRecord) {
        self.world().pushes.push(record);
    }

    /// Makes every later login of the user return `session_key` (base64 of 16 bytes) instead of
    /// a random one, so data encrypted with a known key (such as WeChat's published test
    /// vector) can be decrypted through a real login.
    pub fn pin_session_key(
        &self,
        mini_openid: &str,
        session_key: impl Into<String>,
    ) -> Result<(), SandboxError> {
        let mut world = self.world();
        let user = world
            .users
            .by_mini_openid(mini_openid)
            .ok_or_else(|| SandboxError::UnknownMiniOpenid(mini_openid.to_owned()))?;
        world.users.get_mut(user).pinned_session_key = Some(session_key.into());
        Ok(())
    }

    /// What `wx.login` gives the mini-program client: a single-use code valid for 5 minutes.
    pub fn issue_login_code(&self, mini_openid: &str) -> Result<String, SandboxError> {
        let mut world = self.world();
        let user = world
            .users
            .by_mini_openid(mini_openid)
            .ok_or_else(|| SandboxError::UnknownMiniOpenid(mini_openid.to_owned()))?;
        let now = world.now();
        world.prune_codes(now);
        let code: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        world.codes.insert(
            code.clone(),
            LoginCode {
                user,
                issued_at: now,
                used: false,
            },
        );
        world.code_order.push_back((now, code.clone()));
        Ok(code)
    }

    /// The user accepted `count` more one-time subscriptions of a mini-program template
    /// (`wx.requestSubscribeMessage` → `accept`). Returns how many are now left.
    pub fn grant_subscription(
        &self,
        mini_openid: &str,
        template_id: &str,
        count: u32,
    ) -> Result<u32, SandboxError> {
        let mut world = self.world();
        let user = world
            .users
            .by_mini_openid(mini_openid)
            .ok_or_else(|| SandboxError::UnknownMiniOpenid(mini_openid.to_owned()))?;
        if !world.templates[Account::MiniProgram.index()].contains_key(template_id) {
            return Err(SandboxError::UnknownTemplate(template_id.to_owned()));
        }
        let left = world
            .subscriptions
            .entry((user, template_id.to_owned()))
            .or_insert(0);
        *left = left.saturating_add(count);
        Ok(*left)
    }

    /// One-time authorisations the user has left for a template (0 for unknown users).
    pub fn subscriptions_left(&self, mini_openid: &str, template_id: &str) -> u32 {
        let world = self.world();
        world
            .users
            .by_mini_openid(mini_openid)
            .and_then(|user| world.subscriptions.get(&(user, template_id.to_owned())))
            .copied()
            .unwrap_or(0)
    }

    /// The session key of the user's latest `jscode2session` login (base64 of 16 bytes), for
    /// encrypting user data the way the client would.
    pub fn session_key(&self, mini_openid: &str) -> Option<String> {
        let world = self.world();
        let user = world.users.by_mini_openid(mini_openid)?;
        world.users.get(user).session_key.clone()
    }

    // ----- tokens ------------------------------------------------------------------------

    /// Every token of `appid`, classic and stable, is refused from now on (40001).
    pub fn invalidate_tokens(&self, appid: &str) -> Result<(), SandboxError> {
        let account = self.account(appid)?;
        let mut world = self.world();
        let now = world.now();
        world.tokens.invalidate(account, now);
        Ok(())
    }

    /// Every live token of `appid` expires now (42001).
    pub fn expire_tokens(&self, appid: &str) -> Result<(), SandboxError> {
        let account = self.account(appid)?;
        let mut world = self.world();
        let now = world.now();
        world.tokens.expire(account, now);
        Ok(())
    }

    fn account(&self, appid: &str) -> Result<Account, SandboxError> {
        self.shared
            .config
            .account_of(appid)
            .ok_or_else(|| SandboxError::UnknownAppid(appid.to_owned()))
    }

    // ----- observation -------------------------------------------------------------------

    /// Recorded WeChat API calls, oldest first (at most `record_limit`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.world().requests.to_vec()
    }

    /// What was wrong with the framing of the calls received so far, or `None` when each came
    /// as every peer SDK sends it ([`RecordedRequest::framed_like_peers`]: a body with
    /// `Content-Length`, never chunked). Counted since the start, so calls forgotten by
    /// [`Self::clear_requests`] are not missed.
    pub fn framing_problem(&self) -> Option<String> {
        let world = self.world();
        let unframed = world.stats.unframed_requests;
        if unframed == 0 {
            return None;
        }
        let still_recorded: Vec<String> = world
            .requests
            .to_vec()
            .into_iter()
            .filter(|request| !request.framed_like_peers())
            .map(|request| {
                format!(
                    "{} {} ({:?})",
                    request.method, request.path, request.framing
                )
            })
            .collect();
        Some(format!(
            "{unframed} request(s) without Content-Length framing; of those still recorded: \
             {still_recorded:?}"
        ))
    }

    /// Forgets the recorded calls (counters in [`Self::stats`] are kept).
    pub fn clear_requests(&self) {
        self.world().requests.clear();
    }

    /// Calls to `/cgi-bin/token` and `/cgi-bin/stable_token` for `appid`, successful or not.
    pub fn token_fetches(&self, appid: &str) -> u32 {
        self.token_fetch_counts(appid).total()
    }

    /// [`Self::token_fetches`] split by endpoint.
    pub fn token_fetch_counts(&self, appid: &str) -> TokenFetches {
        self.world()
            .stats
            .token_fetches
            .get(appid)
            .copied()
            .unwrap_or_default()
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        self.world().stats.clone()
    }

    /// Template messages accepted, oldest first.
    pub fn delivered_template_messages(&self) -> Vec<DeliveredTemplateMessage> {
        self.world().template_messages.to_vec()
    }

    /// Subscribe messages accepted, oldest first.
    pub fn delivered_subscribe_messages(&self) -> Vec<DeliveredSubscribeMessage> {
        self.world().subscribe_messages.to_vec()
    }

    /// Forgets the delivered messages (counters in [`Self::stats`] are kept).
    pub fn clear_messages(&self) {
        let mut world = self.world();
        world.template_messages.clear();
        world.subscribe_messages.clear();
        for robot in world.robots.values_mut() {
            robot.messages.clear();
        }
    }

    // ----- WeCom group robots -------------------------------------------------------------

    /// Creates a WeCom group robot with webhook key `key` (no-op if it exists): posts to
    /// `/cgi-bin/webhook/send?key=…` are accepted from now on.
    pub fn add_robot(&self, key: impl Into<String>) {
        let mut world = self.world();
        let limit = world.config.record_limit;
        world
            .robots
            .entry(key.into())
            .or_insert_with(|| Robot::new(limit));
    }

    /// Messages the robot with webhook key `key` accepted, oldest first (none for an unknown
    /// key).
    pub fn robot_messages(&self, key: &str) -> Vec<RobotMessage> {
        self.world()
            .robots
            .get(key)
            .map(|robot| robot.messages.to_vec())
            .unwrap_or_default()
    }

    // ----- faults ------------------------------------------------------------------------

    /// Adds a fault. Faults are tried in injection order; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        self.world().faults.inject(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.world().faults.clear();
    }

    /// The active faults (with their remaining `times`).
    pub fn faults(&self) -> Vec<Fault> {
        self.world().faults.list()
    }

    // ----- used by the HTTP layer --------------------------------------------------------

    pub(crate) fn plan_faults(&self, path: &str) -> FaultPlan {
        self.world().faults.plan(path)
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        let mut world = self.world();
        world.stats.requests += 1;
        if !request.framed_like_peers() {
            world.stats.unframed_requests += 1;
        }
        let fetch_kind = match request.path.as_str() {
            CGI_TOKEN => Some(false),
            CGI_STABLE_TOKEN => Some(true),
            _ => None,
        };
        // Counted from the record so faulted, dropped and malformed fetches count too.
        if let Some(stable) = fetch_kind {
            let appid = if stable {
                request
                    .body
                    .as_ref()
                    .and_then(|body| body.get("appid"))
                    .and_then(serde_json::Value::as_str)
            } else {
                request.query.get("appid").map(String::as_str)
            };
            if let Some(appid) = appid.filter(|appid| !appid.is_empty()) {
                let fetches = world
                    .stats
                    .token_fetches
                    .entry(appid.to_owned())
                    .or_default();
                if stable {
                    fetches.stable += 1;
                } else {
                    fetches.classic += 1;
                }
            }
        }
        world.requests.push(request);
    }
}

impl World {
    pub(crate) fn now(&self) -> SystemTime {
        SystemTime::now() + self.clock_offset
    }

    /// The China Standard Time (UTC+8) calendar day of `at`: WeChat's quotas roll at local
    /// midnight, not at UTC midnight.
    pub(crate) fn cst_day(at: SystemTime) -> i64 {
        wxnotify_rules::china_time::day(unix_secs(at))
    }

    /// The token check every `access_token` API starts with: 41001 missing, 40001 unknown or
    /// replaced, 42001 expired, 48001 other account's token; then the daily quota (45009).
    pub(crate) fn authorize(
        &mut self,
        params: &Params,
        cgi_path: &'static str,
    ) -> Result<Account, ApiError> {
        let token = params
            .get("access_token")
            .ok_or_else(|| ApiError::new(41001, "access_token missing"))?;
        let now = self.now();
        let account = self.tokens.validate(token, now)?;
        let allowed = crate::config::api_accounts(cgi_path).unwrap_or_default();
        if !allowed.contains(&account) {
            return Err(ApiError::new(48001, "api unauthorized"));
        }
        self.consume_quota(account, cgi_path)?;
        Ok(account)
    }

    /// Counts one call against the daily limit of (`account`, `cgi_path`).
    pub(crate) fn consume_quota(
        &mut self,
        account: Account,
        cgi_path: &str,
    ) -> Result<(), ApiError> {
        let day = Self::cst_day(self.now());
        let limit = self.config.daily_limits.get(cgi_path).copied();
        let entry = self
            .quota_used
            .entry((account, cgi_path.to_owned()))
            .or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        if limit.is_some_and(|limit| entry.1 >= limit) {
            return Err(ApiError::new(45009, "reach max api daily quota limit"));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Calls of (`account`, `cgi_path`) today.
    pub(crate) fn quota_used(&self, account: Account, cgi_path: &str) -> u64 {
        let day = Self::cst_day(self.now());
        match self.quota_used.get(&(account, cgi_path.to_owned())) {
            Some(&(used_day, used)) if used_day == day => used,
            _ => 0,
        }
    }

    /// The session key of a new login: the pinned one, or base64 of 16 random bytes.
    pub(crate) fn new_session_key(&mut self, user: UserId) -> String {
        let key = self
            .users
            .get(user)
            .pinned_session_key
            .clone()
            .unwrap_or_else(|| BASE64.encode(rand::rng().random::<[u8; 16]>()));
        self.users.get_mut(user).session_key = Some(key.clone());
        key
    }

    /// Forgets codes old enough that they would be refused as expired anyway.
    fn prune_codes(&mut self, now: SystemTime) {
        while let Some((issued_at, _)) = self.code_order.front() {
            if now.duration_since(*issued_at).unwrap_or_default() <= LOGIN_CODE_TTL {
                break;
            }
            if let Some((_, code)) = self.code_order.pop_front() {
                self.codes.remove(&code);
            }
        }
    }

    /// The msgid of an earlier send with the same (user, `client_msg_id`) inside the window.
    pub(crate) fn dedup_lookup(&mut self, user: UserId, client_msg_id: &str) -> Option<i64> {
        let now = self.now();
        while let Some((sent_at, _)) = self.dedup_order.front() {
            if now.duration_since(*sent_at).unwrap_or_default() < CLIENT_MSG_ID_WINDOW {
                break;
            }
            if let Some((sent_at, key)) = self.dedup_order.pop_front() {
                // Only drop the entry if it is the one this queue slot was pushed for.
                if self.dedup.get(&key).is_some_and(|(_, at)| *at == sent_at) {
                    self.dedup.remove(&key);
                }
            }
        }
        self.dedup
            .get(&(user, client_msg_id.to_owned()))
            .map(|(msgid, _)| *msgid)
    }

    pub(crate) fn dedup_remember(&mut self, user: UserId, client_msg_id: &str, msgid: i64) {
        let now = self.now();
        let key = (user, client_msg_id.to_owned());
        self.dedup.insert(key.clone(), (msgid, now));
        self.dedup_order.push_back((now, key));
    }

    pub(crate) fn next_msgid(&mut self) -> i64 {
        self.next_msgid += 1;
        self.next_msgid
    }
}

fn keys<const N: usize>(keys: [&str; N]) -> Vec<String> {
    keys.into_iter().map(str::to_owned).collect()
}
