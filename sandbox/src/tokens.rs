//! Access tokens with WeChat's lifetimes: classic tokens (`/cgi-bin/token`) and stable tokens
//! (`/cgi-bin/stable_token`), kept apart per account.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rand::Rng;
use rand::distr::Alphanumeric;

use crate::config::Account;
use crate::error::ApiError;

/// How long a replaced token keeps working: WeChat's hand-over window after a refresh, and the
/// window before expiry in which normal-mode `stable_token` already hands out the successor.
pub(crate) const OVERLAP: Duration = Duration::from_secs(5 * 60);
/// Force-mode `stable_token` refreshes allowed per account and day.
pub(crate) const FORCE_REFRESH_PER_DAY: u32 = 20;
/// Minimum spacing of force-mode `stable_token` refreshes.
pub(crate) const FORCE_REFRESH_SPACING: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Classic,
    Stable,
}

#[derive(Debug, Clone)]
struct TokenRecord {
    account: Account,
    expires_at: SystemTime,
    /// Set when the token was replaced or revoked: it is refused (40001) from this instant on.
    valid_until: Option<SystemTime>,
}

impl TokenRecord {
    fn revoked_at(&self, now: SystemTime) -> bool {
        self.valid_until.is_some_and(|until| now >= until)
    }

    fn usable_at(&self, now: SystemTime) -> bool {
        !self.revoked_at(now) && now < self.expires_at
    }
}

/// Per-account force-refresh budget of `stable_token`.
#[derive(Debug, Default, Clone, Copy)]
struct ForceBudget {
    day: i64,
    used: u32,
    last: Option<SystemTime>,
}

/// A token handed out: the string and its remaining lifetime in whole seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssuedToken {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
}

/// Every token of both accounts.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    tokens: HashMap<String, TokenRecord>,
    latest_classic: [Option<String>; 2],
    current_stable: [Option<String>; 2],
    force: [ForceBudget; 2],
}

impl TokenStore {
    /// Checks a token presented to an API; the error is WeChat's errcode for it.
    pub(crate) fn validate(&self, token: &str, now: SystemTime) -> Result<Account, ApiError> {
        let Some(record) = self.tokens.get(token) else {
            return Err(invalid_credential());
        };
        if record.revoked_at(now) {
            return Err(invalid_credential());
        }
        if now >= record.expires_at {
            return Err(ApiError::new(42001, "access_token expired"));
        }
        Ok(record.account)
    }

    /// `/cgi-bin/token`: always a new token; the previous one keeps working for [`OVERLAP`].
    pub(crate) fn issue_classic(
        &mut self,
        account: Account,
        ttl: Duration,
        now: SystemTime,
    ) -> IssuedToken {
        self.prune(now);
        if let Some(previous) = self.latest_classic[account.index()].take() {
            self.revoke(&previous, now + OVERLAP);
        }
        let issued = self.insert(account, TokenKind::Classic, ttl, now);
        self.latest_classic[account.index()] = Some(issued.access_token.clone());
        issued
    }

    /// `/cgi-bin/stable_token`.
    ///
    /// Normal mode returns the current token while it has more than [`OVERLAP`] left, otherwise
    /// a successor (the old one lives out its own lifetime). Force mode revokes the current token
    /// and issues a new one, at most [`FORCE_REFRESH_PER_DAY`] times per day and
    /// [`FORCE_REFRESH_SPACING`] apart; beyond that it behaves like normal mode.
    pub(crate) fn issue_stable(
        &mut self,
        account: Account,
        force_refresh: bool,
        ttl: Duration,
        now: SystemTime,
        day: i64,
    ) -> IssuedToken {
        self.prune(now);
        let slot = account.index();
        if force_refresh && self.force[slot].allows(now, day) {
            let budget = &mut self.force[slot];
            if budget.day != day {
                *budget = ForceBudget {
                    day,
                    ..ForceBudget::default()
                };
            }
            budget.used += 1;
            budget.last = Some(now);
            if let Some(current) = self.current_stable[slot].take() {
                self.revoke(&current, now);
            }
        }
        let current = self.current_stable[slot]
            .as_ref()
            .and_then(|token| Some((token, self.tokens.get(token)?)))
            .filter(|(_, record)| record.usable_at(now))
            .and_then(|(token, record)| {
                let left = record.expires_at.duration_since(now).ok()?;
                (left > OVERLAP).then(|| IssuedToken {
                    access_token: token.clone(),
                    expires_in: left.as_secs(),
                })
            });
        if let Some(current) = current {
            return current;
        }
        let issued = self.insert(account, TokenKind::Stable, ttl, now);
        self.current_stable[slot] = Some(issued.access_token.clone());
        issued
    }

    /// Every token of `account` is refused from now on (40001).
    pub(crate) fn invalidate(&mut self, account: Account, now: SystemTime) {
        let tokens: Vec<String> = self
            .tokens
            .iter()
            .filter(|(_, record)| record.account == account)
            .map(|(token, _)| token.clone())
            .collect();
        for token in tokens {
            self.revoke(&token, now);
        }
    }

    /// Every live token of `account` expires now (42001).
    pub(crate) fn expire(&mut self, account: Account, now: SystemTime) {
        for record in self.tokens.values_mut() {
            if record.account == account && record.expires_at > now {
                record.expires_at = now;
            }
        }
    }

    fn revoke(&mut self, token: &str, at: SystemTime) {
        if let Some(record) = self.tokens.get_mut(token) {
            record.valid_until = Some(record.valid_until.map_or(at, |until| until.min(at)));
        }
    }

    fn insert(
        &mut self,
        account: Account,
        kind: TokenKind,
        ttl: Duration,
        now: SystemTime,
    ) -> IssuedToken {
        let access_token = new_token_string(kind);
        self.tokens.insert(
            access_token.clone(),
            TokenRecord {
                account,
                expires_at: now + ttl,
                valid_until: None,
            },
        );
        IssuedToken {
            access_token,
            expires_in: ttl.as_secs(),
        }
    }

    /// Forgets revoked tokens: an unknown token gets the same 40001 as a revoked one, so this
    /// changes no answer and keeps a long benchmark's token churn from growing the map.
    fn prune(&mut self, now: SystemTime) {
        self.tokens.retain(|_, record| !record.revoked_at(now));
    }
}

impl ForceBudget {
    fn allows(&self, now: SystemTime, day: i64) -> bool {
        let used_today = if self.day == day { self.used } else { 0 };
        let spaced = self.last.is_none_or(|last| {
            now.duration_since(last)
                .is_ok_and(|gap| gap >= FORCE_REFRESH_SPACING)
        });
        used_today < FORCE_REFRESH_PER_DAY && spaced
    }
}

fn invalid_credential() -> ApiError {
    ApiError::new(
        40001,
        "invalid credential, access_token is invalid or not latest",
    )
}

/// A token string shaped like WeChat's (`<version>_<~130 url-safe characters>`). The version
/// prefix differs per kind only to make logs easier to read; clients must treat it as opaque.
fn new_token_string(kind: TokenKind) -> String {
    let prefix = match kind {
        TokenKind::Classic => "91_",
        TokenKind::Stable => "92_",
    };
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(130)
        .map(char::from)
        .collect();
    format!("{prefix}{random}")
}
