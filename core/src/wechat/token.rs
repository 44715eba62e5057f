//! Access-token policy: what is cached, when it is refreshed, how it is fetched.

use serde::{Deserialize, Serialize};
use wxnotify_rules::china_time;

use super::config::{Account, Config, TokenMode};
use super::query;
use crate::env::{HttpRequest, Method};

/// Tokens are replaced this long before they expire: WeChat renews stable tokens 5 minutes
/// before expiry and keeps the old one valid for those 5 minutes.
pub const REFRESH_MARGIN_SECS: u64 = 300;

/// A token as stored in the `tokens` bucket.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedToken {
    pub access_token: String,
    /// Unix seconds; 0 marks a token that failed and must not be used again.
    pub expires_at: u64,
    /// Unix seconds at which it was fetched (0 in tokens cached before this field existed):
    /// its age, for operators.
    #[serde(default)]
    pub fetched_at: u64,
}

// Tokens are credentials: Debug shows only when it expires.
impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("expires_at", &self.expires_at)
            .field("fetched_at", &self.fetched_at)
            .finish_non_exhaustive()
    }
}

impl CachedToken {
    /// Whether the token can still be used at `now` without refreshing.
    pub fn is_fresh(&self, now: u64) -> bool {
        now.saturating_add(REFRESH_MARGIN_SECS) < self.expires_at
    }

    /// Unix seconds from which the token is replaced instead of used.
    pub fn refresh_at(&self) -> u64 {
        self.expires_at.saturating_sub(REFRESH_MARGIN_SECS)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` for a value this version cannot read; it is then refetched, not trusted.
    pub fn from_bytes(bytes: &[u8]) -> Option<CachedToken> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The `tokens` bucket key of an account's token. Stable and classic tokens are distinct
/// credentials on WeChat's side, so they are cached apart.
pub fn cache_key(appid: &str, mode: TokenMode) -> String {
    format!("access_token/{appid}/{}", mode.as_str())
}

/// The token endpoint's answer.
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    pub expires_in: u64,
}

impl TokenAnswer {
    pub fn into_cached(self, now: u64) -> CachedToken {
        CachedToken {
            access_token: self.access_token,
            expires_at: now.saturating_add(self.expires_in),
            fetched_at: now,
        }
    }
}

/// The request that fetches a token for `account`.
pub fn fetch_request(config: &Config, account: &Account, force_refresh: bool) -> HttpRequest {
    match config.token_mode {
        TokenMode::Stable => HttpRequest {
            method: Method::Post,
            url: config.url("/cgi-bin/stable_token"),
            body: Some(
                serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": account.appid,
                    "secret": account.secret,
                    "force_refresh": force_refresh,
                })
                .to_string()
                .into_bytes(),
            ),
        },
        TokenMode::Classic => HttpRequest {
            method: Method::Get,
            url: config.url(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
                query(&account.appid),
                query(&account.secret)
            )),
            body: None,
        },
    }
}

/// How long a refresh lease holds before others may take over: longer than a token fetch can
/// take (its timeouts), short enough that a crashed holder does not stall callers for long.
pub const LEASE_MS: u64 = 20_000;

/// A claim to refresh one account's token, held in the `tokens` bucket so that callers in every
/// process sharing the store make one fetch between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// A random id of the caller holding it.
    pub holder: u64,
    pub expires_at_ms: u64,
}

impl Lease {
    pub fn new(holder: u64, now_ms: u64) -> Lease {
        Lease {
            holder,
            expires_at_ms: now_ms.saturating_add(LEASE_MS),
        }
    }

    /// A lease that nobody holds, written on release.
    pub fn released() -> Lease {
        Lease {
            holder: 0,
            expires_at_ms: 0,
        }
    }

    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether the stored value `bytes` is a lease still held at `now_ms`; unreadable values
    /// are treated as free, so a corrupt lease cannot block refreshes.
    pub fn held_in(bytes: Option<&[u8]>, now_ms: u64) -> bool {
        bytes
            .and_then(|b| serde_json::from_slice::<Lease>(b).ok())
            .is_some_and(|lease| lease.is_live(now_ms))
    }
}

/// The `tokens` bucket key of an account's refresh lease.
pub fn lease_key(appid: &str, mode: TokenMode) -> String {
    format!("lease/{appid}/{}", mode.as_str())
}

/// `force_refresh` calls WeChat allows per account per day.
pub const FORCE_PER_DAY: u32 = 20;
/// Minimum spacing of `force_refresh` calls; closer ones refresh nothing.
pub const FORCE_MIN_GAP_SECS: u64 = 30;

/// `force_refresh` calls spent today, shared by every process through the `tokens` bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceBudget {
    /// Day number in China Standard Time, when WeChat's daily counters reset.
    pub day: i64,
    pub used: u32,
    /// Unix seconds of the last force refresh.
    pub last_at: u64,
}

impl ForceBudget {
    /// The budget after spending one force refresh at `now`, or `None` when none is left today
    /// or the last one was under 30 seconds ago.
    pub fn spend(&self, now: u64) -> Option<ForceBudget> {
        let today = china_time::day(i64::try_from(now).unwrap_or(i64::MAX));
        let used_today = if self.day == today { self.used } else { 0 };
        if used_today >= FORCE_PER_DAY || now < self.last_at.saturating_add(FORCE_MIN_GAP_SECS) {
            return None;
        }
        Some(ForceBudget {
            day: today,
            used: used_today + 1,
            last_at: now,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: Option<&[u8]>) -> ForceBudget {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }
}

/// The `tokens` bucket key of an account's force-refresh budget.
pub fn force_budget_key(appid: &str) -> String {
    format!("force_budget/{appid}")
}

/// The endpoint path of `mode`, for error messages.
pub fn endpoint(mode: TokenMode) -> &'static str {
    match mode {
        TokenMode::Stable => "/cgi-bin/stable_token",
        TokenMode::Classic => "/cgi-bin/token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::config::AccountKind;

    fn config(mode: &str) -> Config {
        Config::load(|k| {
            Ok(match k {
                "token_mode" => Some(mode.to_owned()),
                "api_base" => Some("http://127.0.0.1:9".to_owned()),
                _ => None,
            })
        })
        .unwrap()
    }

    fn account() -> Account {
        Account {
            kind: AccountKind::OfficialAccount,
            appid: "wx1".into(),
            secret: "s&1".into(),
        }
    }

    #[test]
    fn refreshes_five_minutes_before_expiry() {
        let token = CachedToken {
            access_token: "t".into(),
            expires_at: 10_000,
            fetched_at: 0,
        };
        assert!(token.is_fresh(10_000 - 301));
        assert!(!token.is_fresh(10_000 - 300));
        assert!(!token.is_fresh(20_000));
        let failed = CachedToken {
            access_token: "t".into(),
            expires_at: 0,
            fetched_at: 0,
        };
        assert!(!failed.is_fresh(0));
    }

    #[test]
    fn expiry_comes_from_the_answer_not_a_constant() {
        let answer = TokenAnswer {
            access_token: "t".into(),
            expires_in: 5400,
        };
        assert_eq!(answer.into_cached(1_000).expires_at, 6_400);
    }

    #[test]
    fn stable_request_is_a_json_post() {
        let req = fetch_request(&config("stable"), &account(), false);
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.url, "http://127.0.0.1:9/cgi-bin/stable_token");
        let body: serde_json::Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"grant_type":"client_credential","appid":"wx1","secret":"s&1","force_refresh":false})
        );
    }

    #[test]
    fn classic_request_encodes_the_query() {
        let req = fetch_request(&config("classic"), &account(), false);
        assert_eq!(req.method, Method::Get);
        assert_eq!(
            req.url,
            "http://127.0.0.1:9/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=s%261"
        );
    }

    #[test]
    fn leases_expire_and_garbage_is_free() {
        let lease = Lease::new(7, 1_000);
        assert!(lease.is_live(1_000 + LEASE_MS - 1));
        assert!(!lease.is_live(1_000 + LEASE_MS));
        assert!(Lease::held_in(Some(&lease.to_bytes()), 1_000));
        assert!(!Lease::held_in(Some(&Lease::released().to_bytes()), 1_000));
        assert!(!Lease::held_in(Some(b"not json"), 1_000));
        assert!(!Lease::held_in(None, 1_000));
    }

    #[test]
    fn force_budget_allows_twenty_a_day_thirty_seconds_apart() {
        // 2026-11-21 00:00:00 CST = 2026-11-20 16:00:00 UTC.
        let midnight_cst: u64 = 1_795_190_400;
        let day = |secs: u64| china_time::day(i64::try_from(secs).unwrap());
        assert_eq!(day(midnight_cst), day(midnight_cst - 1) + 1);
        let mut budget = ForceBudget::default();
        let mut now = midnight_cst;
        for _ in 0..FORCE_PER_DAY {
            budget = budget.spend(now).expect("within budget");
            assert_eq!(budget.spend(now + FORCE_MIN_GAP_SECS - 1), None, "too soon");
            now += FORCE_MIN_GAP_SECS;
        }
        assert_eq!(budget.used, FORCE_PER_DAY);
        assert_eq!(budget.spend(now), None, "the day's budget is spent");
        let tomorrow = midnight_cst + 86_400;
        assert_eq!(
            budget.spend(tomorrow).map(|b| b.used),
            Some(1),
            "it resets at 00:00 CST"
        );
        assert_eq!(
            ForceBudget::from_bytes(Some(b"junk")),
            ForceBudget::default()
        );
    }

    #[test]
    fn cache_round_trip_and_debug_hides_the_token() {
        let token = CachedToken {
            access_token: "SECRET_TOKEN".into(),
            expires_at: 7,
            fetched_at: 0,
        };
        assert_eq!(
            CachedToken::from_bytes(&token.to_bytes()),
            Some(token.clone())
        );
        assert!(!format!("{token:?}").contains("SECRET_TOKEN"));
        assert_eq!(CachedToken::from_bytes(b"garbage"), None);
        assert_eq!(
            cache_key("wx1", TokenMode::Stable),
            "access_token/wx1/stable"
        );
    }
}
