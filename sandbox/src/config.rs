//! Configuration of a sandbox: the two accounts, token lifetime, paging, pages and quotas.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Path of the classic token endpoint.
pub const CGI_TOKEN: &str = "/cgi-bin/token";
/// Path of the stable token endpoint.
pub const CGI_STABLE_TOKEN: &str = "/cgi-bin/stable_token";
/// Path of the mini-program login endpoint.
pub const CGI_JSCODE2SESSION: &str = "/sns/jscode2session";
/// Path of the follower list endpoint.
pub const CGI_USER_GET: &str = "/cgi-bin/user/get";
/// Path of the single user info endpoint.
pub const CGI_USER_INFO: &str = "/cgi-bin/user/info";
/// Path of the batch user info endpoint.
pub const CGI_USER_BATCHGET: &str = "/cgi-bin/user/info/batchget";
/// Path of the official-account template message endpoint.
pub const CGI_TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";
/// Path of the mini-program subscribe message endpoint.
pub const CGI_SUBSCRIBE_SEND: &str = "/cgi-bin/message/subscribe/send";
/// Path of the retired uniform message endpoint.
pub const CGI_UNIFORM_SEND: &str = "/cgi-bin/message/wxopen/template/uniform_send";
/// Path of the API quota endpoint.
pub const CGI_QUOTA_GET: &str = "/cgi-bin/openapi/quota/get";
/// Path of the WeCom (企业微信) group robot webhook, served beside the WeChat API so one
/// sandbox stands in for both `api.weixin.qq.com` and `qyapi.weixin.qq.com`.
pub const WECOM_WEBHOOK_SEND: &str = "/cgi-bin/webhook/send";

/// Which of the two sandbox accounts something belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    /// The mini-program (小程序): logins and subscribe messages.
    MiniProgram,
    /// The linked official account (公众号): followers and template messages.
    OfficialAccount,
}

impl Account {
    /// Both accounts, mini-program first.
    pub const ALL: [Account; 2] = [Account::MiniProgram, Account::OfficialAccount];

    /// Index into per-account arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Account::MiniProgram => 0,
            Account::OfficialAccount => 1,
        }
    }
}

/// The appid/secret pair of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCredentials {
    /// The account's appid (`wx` + 16 hex digits on the real platform).
    pub appid: String,
    /// The account's AppSecret.
    pub secret: String,
}

impl AppCredentials {
    /// Builds a credential pair.
    pub fn new(appid: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            appid: appid.into(),
            secret: secret.into(),
        }
    }
}

/// Everything a sandbox is started with. `Default` gives the documented defaults.
///
/// The two appids must differ: requests are routed to an account by appid.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Mini-program credentials (default `wx5ad0b5d1ba5d0001` / `sandbox-mini-secret`).
    pub mini_program: AppCredentials,
    /// Official-account credentials (default `wx0ac0a0c0a0c00002` / `sandbox-oa-secret`).
    pub official_account: AppCredentials,
    /// Lifetime of every issued access token, reported as `expires_in` (default 7200 s).
    pub token_ttl: Duration,
    /// Maximum openids per `user/get` page (WeChat: 10 000). Lower it to exercise paging in tests.
    pub page_size: usize,
    /// Pages of the released mini-program; subscribe messages may only jump to these.
    pub mini_pages: Vec<String>,
    /// Daily call limit per cgi path, applied to each account separately. Paths not listed are
    /// unlimited. Defaults follow WeChat's published limits (see [`default_daily_limits`]).
    pub daily_limits: BTreeMap<String, u64>,
    /// How many recorded requests and delivered messages (of each kind) are kept; the oldest
    /// are dropped first so a long benchmark cannot exhaust memory. Counters in
    /// [`crate::Stats`] are never dropped. Default 100 000.
    pub record_limit: usize,
    /// Address to listen on (default `127.0.0.1:0`, an ephemeral port).
    pub bind: SocketAddr,
    /// Webhook keys of the WeCom group robots that exist from the start (default none); more
    /// are added with [`crate::SandboxState::add_robot`].
    pub robot_keys: Vec<String>,
    /// The token WeChat signs its pushes to the developer's server with (see
    /// [`crate::pushes`]); give the tenant the same as its `oa_callback_token` and
    /// `mini_callback_token`. Default `sandbox-callback-token`.
    pub callback_token: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            mini_program: AppCredentials::new("wx5ad0b5d1ba5d0001", "sandbox-mini-secret"),
            official_account: AppCredentials::new("wx0ac0a0c0a0c00002", "sandbox-oa-secret"),
            token_ttl: Duration::from_secs(7200),
            page_size: 10_000,
            mini_pages: vec![
                "pages/index/index".to_owned(),
                "pages/order/detail".to_owned(),
            ],
            daily_limits: default_daily_limits(),
            record_limit: 100_000,
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            robot_keys: Vec::new(),
            callback_token: "sandbox-callback-token".to_owned(),
        }
    }
}

impl SandboxConfig {
    /// Credentials of `account`.
    pub fn credentials(&self, account: Account) -> &AppCredentials {
        match account {
            Account::MiniProgram => &self.mini_program,
            Account::OfficialAccount => &self.official_account,
        }
    }

    /// The account an appid belongs to, if any.
    pub fn account_of(&self, appid: &str) -> Option<Account> {
        Account::ALL
            .into_iter()
            .find(|&account| self.credentials(account).appid == appid)
    }
}

/// WeChat's default daily limits per API (wechat-api.md §6).
pub fn default_daily_limits() -> BTreeMap<String, u64> {
    [
        (CGI_TOKEN, 2_000),
        (CGI_STABLE_TOKEN, 500_000),
        (CGI_TEMPLATE_SEND, 100_000),
        (CGI_SUBSCRIBE_SEND, 10_000_000),
        (CGI_USER_GET, 500),
        (CGI_USER_INFO, 5_000_000),
        (CGI_USER_BATCHGET, 5_000_000),
    ]
    .into_iter()
    .map(|(path, limit)| (path.to_owned(), limit))
    .collect()
}

/// Which account types may call a cgi path; `None` for paths the sandbox does not know.
/// Used by the token check (48001) and by `quota/get` (76021/76022).
pub(crate) fn api_accounts(cgi_path: &str) -> Option<&'static [Account]> {
    const BOTH: &[Account] = &[Account::MiniProgram, Account::OfficialAccount];
    const MINI: &[Account] = &[Account::MiniProgram];
    const OA: &[Account] = &[Account::OfficialAccount];
    Some(match cgi_path {
        CGI_TOKEN | CGI_STABLE_TOKEN | CGI_QUOTA_GET | CGI_UNIFORM_SEND => BOTH,
        CGI_SUBSCRIBE_SEND => MINI,
        CGI_USER_GET | CGI_USER_INFO | CGI_USER_BATCHGET | CGI_TEMPLATE_SEND => OA,
        _ => return None,
    })
}
