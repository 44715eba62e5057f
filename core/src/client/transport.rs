//! Transport: one logical WeChat call — retried with backoff while WeChat is busy or
//! unreachable, with the access token refreshed once when WeChat says it is stale.

use serde::de::DeserializeOwned;

use super::{Called, WeChat};
use crate::env::{Env, Failure, HttpRequest, Response};
use crate::wechat::api::{self, ErrcodeClass};
use crate::wechat::config::AccountKind;
use crate::wechat::error::{ApiError, Error, Result};

/// Calls made when WeChat is busy (-1) or unreachable, before giving up.
pub(super) const MAX_ATTEMPTS: u32 = 3;
/// First backoff delay; doubled per attempt, with up to 50% jitter.
const BACKOFF_BASE_MS: u64 = 100;

impl<E: Env> WeChat<'_, E> {
    /// Calls an access-token API. On a stale token (40001/42001/40014) the cached token is
    /// dropped if it is still the one that failed, a fresh one is obtained, and the call is
    /// repeated exactly once.
    pub(super) async fn call_with_token<T: DeserializeOwned>(
        &self,
        kind: AccountKind,
        endpoint: &str,
        build: impl Fn(&str) -> HttpRequest,
    ) -> Result<Called<T>> {
        let account = self.config.account(kind)?;
        let token = self.token(&account).await?;
        let mut attempts = 0;
        match self
            .call_raw(endpoint, &build(&token.access_token), &mut attempts)
            .await?
        {
            Ok(value) => Ok(Called { value, attempts }),
            Err(api) if api::classify(api.errcode) == ErrcodeClass::TokenInvalid => {
                let fresh = self.replace_token(&account, &token).await?;
                match self
                    .call_raw(endpoint, &build(&fresh.access_token), &mut attempts)
                    .await?
                {
                    Ok(value) => Ok(Called { value, attempts }),
                    Err(api) => Err(api::error_for(api)),
                }
            }
            Err(api) => Err(api::error_for(api)),
        }
    }

    /// Calls an API that takes no access token.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        request: &HttpRequest,
    ) -> Result<Called<T>> {
        let mut attempts = 0;
        match self.call_raw(endpoint, request, &mut attempts).await? {
            Ok(value) => Ok(Called { value, attempts }),
            Err(api) => Err(api::error_for(api)),
        }
    }

    /// One logical call: retried with backoff while WeChat is busy or unreachable, at most
    /// [`MAX_ATTEMPTS`] requests. Returns WeChat's errcode answer unclassified.
    pub(super) async fn call_raw<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        request: &HttpRequest,
        attempts: &mut u32,
    ) -> Result<std::result::Result<T, ApiError>> {
        let mut tries = 0;
        loop {
            tries += 1;
            *attempts += 1;
            let outcome = match self.env.http(request).await {
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
            self.backoff(BACKOFF_BASE_MS << (tries - 1)).await;
        }
    }

    /// Sleeps `delay` plus up to half of it again, so callers that failed together do not
    /// retry together.
    pub(super) async fn backoff(&self, delay: u64) {
        self.env
            .sleep_ms(delay + self.env.random_u64() % (delay / 2 + 1))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use crate::env::Failure;
    use crate::testing::{Answer, FakeEnv};
    use crate::wechat::error::Error;
    use wxnotify_contract::Recipient;

    const OA: &str = "oOA0000000000000000000000001";
    const USER_INFO: &str = "/cgi-bin/user/info";

    fn looked_up(env: &FakeEnv) -> Result<wxnotify_contract::User, Error> {
        env.run(async |w| w.resolve_user(&Recipient::OfficialAccount(OA.into())).await)
    }

    fn found() -> Answer {
        Answer::Json(format!(
            r#"{{"subscribe":1,"openid":"{OA}","unionid":"u-1"}}"#
        ))
    }

    #[test]
    fn a_busy_wechat_is_retried_with_growing_jittered_backoff_then_reported_unavailable() {
        let env = FakeEnv::new(&[]);
        env.answer(
            USER_INFO,
            Answer::Json(r#"{"errcode":-1,"errmsg":"system error"}"#.into()),
        );
        let error = looked_up(&env).unwrap_err();
        assert!(
            matches!(&error, Error::Unavailable { message, .. } if message.contains("-1")),
            "{error}"
        );
        assert_eq!(env.sent_to(USER_INFO).len(), super::MAX_ATTEMPTS as usize);
        // 100 ms then 200 ms, each plus `random % (delay / 2 + 1)` (the fake's random is 7).
        assert_eq!(env.slept(), [107, 207]);
    }

    #[test]
    fn one_busy_answer_costs_one_retry() {
        let env = FakeEnv::new(&[]);
        env.answer_once(
            USER_INFO,
            Answer::Json(r#"{"errcode":-1,"errmsg":"busy"}"#.into()),
        );
        env.answer(USER_INFO, found());
        let user = looked_up(&env).unwrap();
        assert_eq!(user.unionid.as_deref(), Some("u-1"));
        assert_eq!(env.sent_to(USER_INFO).len(), 2);
    }

    #[test]
    fn a_stale_token_is_replaced_once_and_the_call_repeated_with_the_new_one() {
        let env = FakeEnv::new(&[]);
        env.answer_once(
            USER_INFO,
            Answer::Json(r#"{"errcode":40001,"errmsg":"invalid credential"}"#.into()),
        );
        env.answer(USER_INFO, found());
        looked_up(&env).unwrap();
        let calls = env.sent_to(USER_INFO);
        assert_eq!(calls.len(), 2);
        assert!(
            calls[0].url.contains("access_token=token-1"),
            "{}",
            calls[0].url
        );
        assert!(
            calls[1].url.contains("access_token=token-2"),
            "{}",
            calls[1].url
        );
        assert_eq!(env.token_fetches(), 2);

        // Still stale after the one refresh: the credentials are wrong, not the token.
        let env = FakeEnv::new(&[]);
        env.answer(
            USER_INFO,
            Answer::Json(r#"{"errcode":40001,"errmsg":"invalid credential"}"#.into()),
        );
        assert!(matches!(looked_up(&env), Err(Error::Auth(api)) if api.errcode == 40001));
        assert_eq!(env.sent_to(USER_INFO).len(), 2);
    }

    #[test]
    fn denied_egress_is_a_configuration_error_and_not_retried() {
        let env = FakeEnv::new(&[]);
        env.answer(
            USER_INFO,
            Answer::Fail(Failure::Denied("api.weixin.qq.com is not allowed".into())),
        );
        assert!(matches!(looked_up(&env), Err(Error::Config(m)) if m.contains("not allowed")));
        assert_eq!(env.sent_to(USER_INFO).len(), 1);
        assert!(env.slept().is_empty());
    }

    #[test]
    fn an_answer_that_is_not_json_is_transient() {
        let env = FakeEnv::new(&[]);
        env.answer(
            USER_INFO,
            Answer::Status(502, "<html>bad gateway</html>".into()),
        );
        assert!(
            matches!(looked_up(&env), Err(Error::Unavailable { message, .. }) if message.contains("502"))
        );
        assert_eq!(env.sent_to(USER_INFO).len(), super::MAX_ATTEMPTS as usize);
    }
}
