//! An in-memory host for the flows' unit tests: configuration, one key space per bucket, a
//! clock that sleeping advances, and a scripted WeChat that records every request.
//!
//! Every call completes at once, so flows run with [`crate::block_on`]. What other hosts do
//! concurrently is scripted: a compare-and-swap that loses a race ([`FakeEnv::race_on`]), or
//! another process finishing a token refresh while this one waits ([`FakeEnv::on_sleep`]).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::env::{Bucket, Env, Failure, HttpRequest, Method, Response};
use crate::wechat::error::{Error, Result};

/// The OA's appid in [`FakeEnv::new`]'s configuration.
pub const OA_APPID: &str = "wxoa";
/// The mini-program's appid in [`FakeEnv::new`]'s configuration.
pub const MINI_APPID: &str = "wxmini";
/// The callback token of both accounts.
pub const CALLBACK_TOKEN: &str = "AAAAA";
/// The clock's start: 2027-01-15T08:00:00Z.
pub const START_MS: u64 = 1_800_000_000_000;

/// What the fake WeChat answers one request with.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `200` with this JSON.
    Json(String),
    /// This status and body.
    Status(u16, String),
    /// No answer.
    Fail(Failure),
}

/// A request the flows sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub method: Method,
    /// The path, e.g. `/cgi-bin/message/template/send`.
    pub path: String,
    /// The whole URL, credentials included (tests may look; nothing logs it).
    pub url: String,
    pub body: Option<serde_json::Value>,
}

type SleepHook = Box<dyn FnMut(&FakeEnv)>;

/// See the module documentation.
pub struct FakeEnv {
    config: RefCell<HashMap<String, String>>,
    users: RefCell<BTreeMap<String, Vec<u8>>>,
    tokens: RefCell<BTreeMap<String, Vec<u8>>>,
    callbacks: RefCell<BTreeMap<String, Vec<u8>>>,
    /// Answers by path, used in order before the standing ones.
    once: RefCell<HashMap<String, VecDeque<Answer>>>,
    standing: RefCell<HashMap<String, Answer>>,
    sent: RefCell<Vec<Sent>>,
    token_fetches: Cell<u32>,
    /// When set, the next compare-and-swap on this key sees it written by someone else first.
    pub race_on: RefCell<Option<(String, Vec<u8>)>>,
    /// Deletes fail with a storage error.
    pub fail_deletes: Cell<bool>,
    /// What `random_u64` answers.
    pub random: Cell<u64>,
    /// Keys per `list_keys` page.
    pub page: Cell<usize>,
    now_ms: Cell<u64>,
    slept: RefCell<Vec<u64>>,
    on_sleep: RefCell<Option<SleepHook>>,
}

impl FakeEnv {
    /// Both accounts configured (`wxoa`, `wxmini`, secrets `s`, callback token `AAAAA`),
    /// plus `extra`, with the clock at [`START_MS`]. The token endpoints answer a fresh token
    /// per fetch (`token-1`, `token-2`, …); every other path must be scripted.
    pub fn new(extra: &[(&str, &str)]) -> FakeEnv {
        let mut config: HashMap<String, String> = [
            ("oa_appid", OA_APPID),
            ("oa_secret", "s"),
            ("mini_appid", MINI_APPID),
            ("mini_secret", "s"),
            ("api_base", "http://wechat.test"),
            ("oa_callback_token", CALLBACK_TOKEN),
            ("mini_callback_token", CALLBACK_TOKEN),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            config.insert((*k).to_owned(), (*v).to_owned());
        }
        FakeEnv {
            config: RefCell::new(config),
            users: RefCell::default(),
            tokens: RefCell::default(),
            callbacks: RefCell::default(),
            once: RefCell::default(),
            standing: RefCell::default(),
            sent: RefCell::default(),
            token_fetches: Cell::new(0),
            race_on: RefCell::default(),
            fail_deletes: Cell::new(false),
            random: Cell::new(7),
            page: Cell::new(1000),
            now_ms: Cell::new(START_MS),
            slept: RefCell::default(),
            on_sleep: RefCell::default(),
        }
    }

    /// Removes a configuration key.
    pub fn unset(&self, key: &str) {
        self.config.borrow_mut().remove(key);
    }

    /// Answers every request to `path` with `answer` (after the ones queued with
    /// [`answer_once`](Self::answer_once)).
    pub fn answer(&self, path: &str, answer: Answer) {
        self.standing.borrow_mut().insert(path.to_owned(), answer);
    }

    /// Answers the next request to `path` with `answer`.
    pub fn answer_once(&self, path: &str, answer: Answer) {
        self.once
            .borrow_mut()
            .entry(path.to_owned())
            .or_default()
            .push_back(answer);
    }

    /// Every request sent so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.borrow().clone()
    }

    /// The requests sent to `path`.
    pub fn sent_to(&self, path: &str) -> Vec<Sent> {
        self.sent
            .borrow()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    /// Access tokens fetched (`stable_token` or `token`).
    pub fn token_fetches(&self) -> u32 {
        self.token_fetches.get()
    }

    /// The clock, in milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    /// Sets the clock.
    pub fn set_now_ms(&self, now_ms: u64) {
        self.now_ms.set(now_ms);
    }

    /// The sleeps the flows asked for, in order.
    pub fn slept(&self) -> Vec<u64> {
        self.slept.borrow().clone()
    }

    /// Runs `hook` on every sleep, after the clock has advanced: what other processes do while
    /// this one waits.
    pub fn on_sleep(&self, hook: impl FnMut(&FakeEnv) + 'static) {
        *self.on_sleep.borrow_mut() = Some(Box::new(hook));
    }

    /// The stored value of `key`, as text.
    pub fn value(&self, bucket: Bucket, key: &str) -> Option<String> {
        self.bucket(bucket)
            .borrow()
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Stores `value` under `key`, as another process would.
    pub fn put(&self, bucket: Bucket, key: &str, value: &str) {
        self.bucket(bucket)
            .borrow_mut()
            .insert(key.to_owned(), value.as_bytes().to_vec());
    }

    /// The keys of `bucket`.
    pub fn keys(&self, bucket: Bucket) -> Vec<String> {
        self.bucket(bucket).borrow().keys().cloned().collect()
    }

    /// Records a person the way login and follower sync do: `mini` ↔ `unionid` ↔ `oa`, and
    /// whether they follow the OA (an `oa` openid needs `follows`).
    pub fn know(&self, mini: Option<&str>, unionid: &str, oa: Option<&str>, follows: bool) {
        use crate::wechat::users;
        if let Some(mini) = mini {
            self.put(Bucket::Users, &users::mini_unionid(mini), unionid);
            self.put(Bucket::Users, &users::union_mini(unionid), mini);
        }
        if let Some(oa) = oa {
            self.put(Bucket::Users, &users::union_oa(unionid), oa);
            let record = users::OaRecord {
                unionid: Some(unionid.to_owned()),
                follows,
                looked_up_at: Some(self.now_ms() / 1000),
            };
            let record = serde_json::to_string(&record).unwrap_or_default();
            self.put(Bucket::Users, &users::oa(oa), &record);
        }
    }

    /// Runs `flow` on a [`WeChat`](crate::WeChat) over this fake, to completion.
    pub fn run<T>(
        &self,
        flow: impl AsyncFnOnce(&crate::WeChat<'_, FakeEnv>) -> Result<T>,
    ) -> Result<T> {
        crate::block_on(async {
            let wechat = crate::WeChat::new(self)?;
            flow(&wechat).await
        })
    }

    fn bucket(&self, bucket: Bucket) -> &RefCell<BTreeMap<String, Vec<u8>>> {
        match bucket {
            Bucket::Users => &self.users,
            Bucket::Tokens => &self.tokens,
            Bucket::Callbacks => &self.callbacks,
        }
    }

    fn answer_for(&self, path: &str) -> Answer {
        if let Some(answer) = self
            .once
            .borrow_mut()
            .get_mut(path)
            .and_then(VecDeque::pop_front)
        {
            return answer;
        }
        if let Some(answer) = self.standing.borrow().get(path) {
            return answer.clone();
        }
        if path == "/cgi-bin/stable_token" || path == "/cgi-bin/token" {
            return Answer::Json(format!(
                r#"{{"access_token":"token-{}","expires_in":7200}}"#,
                self.token_fetches.get()
            ));
        }
        Answer::Fail(Failure::Failed(format!(
            "the fake WeChat has no answer scripted for {path}"
        )))
    }
}

impl Env for FakeEnv {
    async fn http(&self, request: &HttpRequest) -> std::result::Result<Response, Failure> {
        let after_scheme = request.url.split_once("://").map_or("", |(_, rest)| rest);
        let path_and_query = after_scheme
            .find('/')
            .map_or("/", |slash| &after_scheme[slash..]);
        let path = path_and_query
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        if path == "/cgi-bin/stable_token" || path == "/cgi-bin/token" {
            self.token_fetches.set(self.token_fetches.get() + 1);
        }
        self.sent.borrow_mut().push(Sent {
            method: request.method,
            path: path.clone(),
            url: request.url.clone(),
            body: request
                .body
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok()),
        });
        match self.answer_for(&path) {
            Answer::Json(body) => Ok(Response {
                status: 200,
                body: body.into_bytes(),
            }),
            Answer::Status(status, body) => Ok(Response {
                status,
                body: body.into_bytes(),
            }),
            Answer::Fail(failure) => Err(failure),
        }
    }

    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.bucket(bucket).borrow().get(key).cloned())
    }

    async fn set(&self, bucket: Bucket, key: &str, value: &[u8]) -> Result<()> {
        self.bucket(bucket)
            .borrow_mut()
            .insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    async fn delete(&self, bucket: Bucket, key: &str) -> Result<()> {
        if self.fail_deletes.get() {
            return Err(Error::storage("down"));
        }
        self.bucket(bucket).borrow_mut().remove(key);
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        bucket: Bucket,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool> {
        let raced = self.race_on.borrow_mut().take_if(|(k, _)| k == key);
        let mut map = self.bucket(bucket).borrow_mut();
        if let Some((_, value)) = raced {
            map.insert(key.to_owned(), value);
        }
        if map.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        map.insert(key.to_owned(), new.to_vec());
        Ok(true)
    }

    async fn set_many(&self, bucket: Bucket, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.bucket(bucket).borrow_mut().extend(entries);
        Ok(())
    }

    async fn get_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>> {
        let map = self.bucket(bucket).borrow();
        Ok(keys.iter().map(|k| map.get(k).cloned()).collect())
    }

    async fn delete_many(&self, bucket: Bucket, keys: Vec<String>) -> Result<()> {
        let mut map = self.bucket(bucket).borrow_mut();
        for key in keys {
            map.remove(&key);
        }
        Ok(())
    }

    async fn list_keys(
        &self,
        bucket: Bucket,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>)> {
        // Keys after the cursor (the last key of the previous page), as the hosts do.
        let map = self.bucket(bucket).borrow();
        let page = self.page.get();
        let keys: Vec<String> = map
            .keys()
            .filter(|k| cursor.is_none_or(|c| k.as_str() > c))
            .take(page)
            .cloned()
            .collect();
        let next = (keys.len() == page).then(|| keys[keys.len() - 1].clone());
        Ok((keys, next))
    }

    fn config(&self, key: &str) -> Result<Option<String>> {
        Ok(self.config.borrow().get(key).cloned())
    }

    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    async fn sleep_ms(&self, millis: u64) {
        self.slept.borrow_mut().push(millis);
        self.now_ms.set(self.now_ms.get() + millis);
        let hook = self.on_sleep.borrow_mut().take();
        if let Some(mut hook) = hook {
            hook(self);
            self.on_sleep.borrow_mut().get_or_insert(hook);
        }
    }

    fn random_u64(&self) -> u64 {
        self.random.get()
    }
}
