//! Access tokens: cached per account in the `tokens` bucket and refreshed single-flight
//! across every process sharing the store.

use super::{Called, WeChat};
use crate::env::{Bucket, Env};
use crate::wechat::config::{Account, TokenMode};
use crate::wechat::error::{Error, Result};
use crate::wechat::token::{self, CachedToken};

/// How long a caller waits for another caller's token refresh before giving up.
const TOKEN_WAIT_MS: u64 = 30_000;
/// How often a waiting caller looks for the refreshed token.
const TOKEN_POLL_MS: u64 = 40;

impl<E: Env> WeChat<'_, E> {
    /// A usable token for `account`: the cached one while it is fresh, otherwise a new one.
    ///
    /// Refreshes are single-flight across every caller sharing the store: one caller takes
    /// the refresh lease (a CAS in the `tokens` bucket) and fetches; the others wait for the
    /// token it stores. A lease expires, so a caller that crashed mid-refresh blocks no one.
    pub(super) async fn token(&self, account: &Account) -> Result<CachedToken> {
        let key = token::cache_key(&account.appid, self.config.token_mode);
        let lease_key = token::lease_key(&account.appid, self.config.token_mode);
        let give_up_at = self.env.now_ms() + TOKEN_WAIT_MS;
        loop {
            if let Some(cached) = self.cached_token(&key).await? {
                return Ok(cached);
            }
            let now = self.env.now_ms();
            let current = self.env.get(Bucket::Tokens, &lease_key).await?;
            if !token::Lease::held_in(current.as_deref(), now) {
                let lease = token::Lease::new(self.env.random_u64() | 1, now).to_bytes();
                if self
                    .env
                    .compare_and_swap(Bucket::Tokens, &lease_key, current.as_deref(), &lease)
                    .await?
                {
                    // Another caller may have stored a token between the read above and the lease.
                    let fetched = match self.cached_token(&key).await? {
                        Some(cached) => Ok(cached),
                        None => self.fetch_token(account, &key, false).await,
                    };
                    let released = token::Lease::released().to_bytes();
                    self.env
                        .compare_and_swap(Bucket::Tokens, &lease_key, Some(&lease), &released)
                        .await?;
                    return fetched;
                }
            }
            if now >= give_up_at {
                return Err(Error::unavailable(format!(
                    "timed out waiting for another caller to refresh the access token of {}",
                    account.appid
                )));
            }
            self.backoff(TOKEN_POLL_MS).await;
        }
    }

    pub(super) async fn cached_token(&self, key: &str) -> Result<Option<CachedToken>> {
        let now = self.now_secs();
        Ok(self
            .env
            .get(Bucket::Tokens, key)
            .await?
            .and_then(|bytes| CachedToken::from_bytes(&bytes))
            .filter(|cached| cached.is_fresh(now)))
    }

    pub(super) async fn fetch_token(
        &self,
        account: &Account,
        key: &str,
        force_refresh: bool,
    ) -> Result<CachedToken> {
        let endpoint = token::endpoint(self.config.token_mode);
        let request = token::fetch_request(&self.config, account, force_refresh);
        let answer: Called<token::TokenAnswer> = self.call(endpoint, &request).await?;
        let fresh = answer.value.into_cached(self.now_secs());
        self.env.set(Bucket::Tokens, key, &fresh.to_bytes()).await?;
        Ok(fresh)
    }

    /// The token to retry with after `failed` was refused as stale.
    ///
    /// `failed` is marked dead only if it is still the cached token: dropping a token another
    /// caller just fetched would start a refresh storm. If WeChat then hands back the very
    /// token it refused (a stable token it still believes valid), one `force_refresh` is made,
    /// within the account's budget of 20 a day, 30 s apart, shared through the store.
    pub(super) async fn replace_token(
        &self,
        account: &Account,
        failed: &CachedToken,
    ) -> Result<CachedToken> {
        let key = token::cache_key(&account.appid, self.config.token_mode);
        let dead = CachedToken {
            access_token: failed.access_token.clone(),
            expires_at: 0,
            fetched_at: failed.fetched_at,
        };
        self.env
            .compare_and_swap(
                Bucket::Tokens,
                &key,
                Some(&failed.to_bytes()),
                &dead.to_bytes(),
            )
            .await?;
        let fresh = self.token(account).await?;
        if fresh.access_token != failed.access_token || self.config.token_mode != TokenMode::Stable
        {
            return Ok(fresh);
        }
        let budget_key = token::force_budget_key(&account.appid);
        let current = self.env.get(Bucket::Tokens, &budget_key).await?;
        let Some(spent) = token::ForceBudget::from_bytes(current.as_deref()).spend(self.now_secs())
        else {
            return Ok(fresh);
        };
        if !self
            .env
            .compare_and_swap(
                Bucket::Tokens,
                &budget_key,
                current.as_deref(),
                &spent.to_bytes(),
            )
            .await?
        {
            // Another caller spent it, and is forcing the refresh now.
            return Ok(fresh);
        }
        self.fetch_token(account, &key, true).await
    }
}

#[cfg(test)]
mod tests {
    use crate::env::Bucket;
    use crate::testing::{Answer, FakeEnv, OA_APPID};
    use crate::wechat::config::TokenMode;
    use crate::wechat::error::Error;
    use crate::wechat::token::{self, CachedToken, LEASE_MS, Lease};
    use wxnotify_contract::Recipient;

    const OA: &str = "oOA0000000000000000000000001";
    const USER_INFO: &str = "/cgi-bin/user/info";

    fn env() -> FakeEnv {
        let env = FakeEnv::new(&[]);
        env.answer(
            USER_INFO,
            Answer::Json(format!(
                r#"{{"subscribe":1,"openid":"{OA}","unionid":"u-1"}}"#
            )),
        );
        env
    }

    /// One call that needs the OA's token.
    fn call(env: &FakeEnv) -> Result<(), Error> {
        env.run(async |w| w.fetch_oa_user(OA).await.map(drop))
    }

    fn lease_key() -> String {
        token::lease_key(OA_APPID, TokenMode::Stable)
    }

    /// Another process takes the refresh lease now.
    fn hold_lease_elsewhere(env: &FakeEnv) {
        let theirs = Lease::new(99, env.now_ms()).to_bytes();
        env.put(
            Bucket::Tokens,
            &lease_key(),
            &String::from_utf8(theirs).unwrap(),
        );
    }

    fn cache_key() -> String {
        token::cache_key(OA_APPID, TokenMode::Stable)
    }

    #[test]
    fn a_token_is_fetched_once_and_reused_until_near_its_expiry() {
        let env = env();
        call(&env).unwrap();
        call(&env).unwrap();
        assert_eq!(env.token_fetches(), 1);
        // The lease is released after the fetch: the next refresh needs no wait.
        let lease = env.value(Bucket::Tokens, &lease_key()).unwrap();
        assert!(!Lease::held_in(Some(lease.as_bytes()), env.now_ms()));
        // 7200 s tokens are refreshed 300 s before they expire.
        env.set_now_ms(env.now_ms() + 6_900_000);
        call(&env).unwrap();
        assert_eq!(env.token_fetches(), 2);
        assert_eq!(env.sent_to(USER_INFO).len(), 3);
        let resolved =
            env.run(async |w| w.resolve_user(&Recipient::OfficialAccount(OA.into())).await);
        assert_eq!(resolved.unwrap().unionid.as_deref(), Some("u-1"));
    }

    #[test]
    fn a_refresh_in_flight_elsewhere_is_waited_for_not_repeated() {
        let env = env();
        // Another process holds the lease and is fetching.
        hold_lease_elsewhere(&env);
        // It stores its token while this caller waits.
        let stored = CachedToken {
            access_token: "their-token".into(),
            expires_at: env.now_ms() / 1000 + 7200,
            fetched_at: 0,
        };
        let mut polls = 0;
        env.on_sleep(move |env| {
            polls += 1;
            if polls == 3 {
                let stored = String::from_utf8(stored.to_bytes()).unwrap();
                env.put(Bucket::Tokens, &cache_key(), &stored);
            }
        });
        call(&env).unwrap();
        assert_eq!(env.token_fetches(), 0, "single flight: theirs is used");
        assert!(
            env.sent_to(USER_INFO)[0]
                .url
                .contains("access_token=their-token")
        );
        assert_eq!(env.slept().len(), 3);
    }

    #[test]
    fn a_lease_whose_holder_died_is_taken_over_when_it_expires() {
        let env = env();
        hold_lease_elsewhere(&env);
        call(&env).unwrap();
        assert_eq!(env.token_fetches(), 1);
        let waited: u64 = env.slept().iter().sum();
        assert!(
            (LEASE_MS..LEASE_MS + 1_000).contains(&waited),
            "waited {waited} ms for a lease of {LEASE_MS} ms"
        );
    }

    #[test]
    fn a_lease_lost_to_a_racer_means_waiting_for_the_racers_token() {
        let env = env();
        // Between this caller's read and its compare-and-swap, another takes the lease.
        let theirs = Lease::new(99, env.now_ms()).to_bytes();
        *env.race_on.borrow_mut() = Some((lease_key(), theirs));
        let stored = CachedToken {
            access_token: "racer-token".into(),
            expires_at: env.now_ms() / 1000 + 7200,
            fetched_at: 0,
        };
        env.on_sleep(move |env| {
            let stored = String::from_utf8(stored.to_bytes()).unwrap();
            env.put(Bucket::Tokens, &cache_key(), &stored);
        });
        call(&env).unwrap();
        assert_eq!(env.token_fetches(), 0);
        assert!(
            env.sent_to(USER_INFO)[0]
                .url
                .contains("access_token=racer-token")
        );
    }

    #[test]
    fn a_failed_fetch_releases_the_lease_and_names_the_cause() {
        let env = env();
        env.answer(
            "/cgi-bin/stable_token",
            Answer::Json(r#"{"errcode":40125,"errmsg":"invalid appsecret"}"#.into()),
        );
        assert!(matches!(call(&env), Err(Error::Auth(api)) if api.errcode == 40125));
        let lease = env.value(Bucket::Tokens, &lease_key()).unwrap();
        assert!(!Lease::held_in(Some(lease.as_bytes()), env.now_ms()));
        assert!(env.sent_to(USER_INFO).is_empty());
    }
}
