//! Identity: who a recipient is in each account (mini openid ↔ unionid ↔ OA openid), and
//! what follow and unfollow pushes change.

use serde::Deserialize;

use super::{Called, WeChat, checked, describe, to_json};
use crate::env::{Bucket, Env, HttpRequest, Method};
use crate::wechat::config::AccountKind;
use crate::wechat::error::{ApiError, Error, Result};
use crate::wechat::query;
use crate::wechat::users::{self, OaRecord};
use wxnotify_contract as contract;

impl<E: Env> WeChat<'_, E> {
    /// The OA openid a template message must go to.
    pub(super) async fn oa_openid_of(&self, recipient: &contract::Recipient) -> Result<String> {
        let (openid, described) = match recipient {
            contract::Recipient::OfficialAccount(openid) => {
                checked("official-account openid", openid)?;
                (openid.clone(), format!("official-account openid {openid}"))
            }
            contract::Recipient::MiniProgram(mini) => {
                checked("mini-program openid", mini)?;
                let unionid = self
                    .read_string(Bucket::Users, &users::mini_unionid(mini))
                    .await?
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "no unionid is known for mini-program openid {mini}: log the user in \
                         (login) or decrypt their user data (decrypt-user-data) first"
                        ))
                    })?;
                let openid = self.read_string(Bucket::Users, &users::union_oa(&unionid)).await?.ok_or_else(|| {
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
                    .read_string(Bucket::Users, &users::union_oa(unionid))
                    .await?
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
        if let Some(record) = self.oa_record(&openid).await?
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
    pub(super) async fn mini_openid_of(&self, recipient: &contract::Recipient) -> Result<String> {
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
                    self.oa_record(openid).await?.and_then(|r| r.unionid).ok_or_else(|| {
                    Error::NotFound(format!(
                        "no unionid is known for official-account openid {openid}: sync the \
                         followers (sync-followers) or resolve the user first"
                    ))
                })?
                }
            };
        self.read_string(Bucket::Users, &users::union_mini(&unionid))
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "unionid {unionid} has no mini-program openid: the user has not logged in to \
                 the mini-program (login)"
                ))
            })
    }

    /// Every identity known for `recipient`; an OA openid with no known unionid is looked up
    /// with `user/info`.
    pub async fn resolve_user(&self, recipient: &contract::Recipient) -> Result<contract::User> {
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
                user.unionid = self
                    .read_string(Bucket::Users, &users::mini_unionid(openid))
                    .await?;
            }
            contract::Recipient::Union(unionid) => {
                checked("unionid", unionid)?;
                user.unionid = Some(unionid.clone());
            }
            contract::Recipient::OfficialAccount(openid) => {
                checked("official-account openid", openid)?;
                let record = match self.oa_record(openid).await? {
                    Some(record) if record.is_current(self.now_secs()) => record,
                    _ => self.fetch_oa_user(openid).await?,
                };
                user.oa_openid = Some(openid.clone());
                user.follows_oa = Some(record.follows);
                user.unionid = record.unionid;
            }
        }
        if let Some(unionid) = user.unionid.clone() {
            if user.mini_openid.is_none() {
                user.mini_openid = self
                    .read_string(Bucket::Users, &users::union_mini(&unionid))
                    .await?;
            }
            if user.oa_openid.is_none() {
                user.oa_openid = self
                    .read_string(Bucket::Users, &users::union_oa(&unionid))
                    .await?;
            }
        }
        if user.follows_oa.is_none()
            && let Some(oa) = &user.oa_openid
        {
            user.follows_oa = self.oa_record(oa).await?.map(|r| r.follows);
        }
        let nothing_known = match recipient {
            contract::Recipient::MiniProgram(openid) => {
                user.unionid.is_none()
                    && self
                        .env
                        .get(Bucket::Users, &users::mini_session_key(openid))
                        .await?
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
    pub(super) async fn fetch_oa_user(&self, openid: &str) -> Result<OaRecord> {
        let info = self.user_info(openid).await?;
        self.store_oa_record(openid, info.unionid, info.subscribe == 1)
            .await
    }

    /// Records that `openid` now follows the official account (a `subscribe` push), with the
    /// unionid `user/info` reports, so notifications addressed by mini-program openid or
    /// unionid reach them from now on. A push carries no unionid, hence the lookup.
    ///
    /// The push, not `user/info`'s `subscribe` field, says they follow: it is the event itself.
    pub async fn record_follow(&self, openid: &str) -> Result<OaRecord> {
        checked("official-account openid", openid)?;
        let info = self.user_info(openid).await?;
        // WeChat leaves the unionid out when it has none to give; keep one learned before.
        let unionid = match info.unionid {
            Some(unionid) => Some(unionid),
            None => self.oa_record(openid).await?.and_then(|r| r.unionid),
        };
        self.store_oa_record(openid, unionid, true).await
    }

    /// Records that `openid` no longer follows the official account (an `unsubscribe` push,
    /// or WeChat's 43004), so template messages to them are refused locally. The unionid and
    /// its mapping stay: they still identify the person if they follow again.
    pub async fn record_unfollow(&self, openid: &str) -> Result<OaRecord> {
        checked("official-account openid", openid)?;
        let known = self.oa_record(openid).await?;
        let record = OaRecord {
            follows: false,
            unionid: known.as_ref().and_then(|r| r.unionid.clone()),
            looked_up_at: known.and_then(|r| r.looked_up_at),
        };
        self.env
            .set(Bucket::Users, &users::oa(openid), &to_json(&record))
            .await?;
        Ok(record)
    }

    /// `user/info` of an OA openid; a unionid that could not be part of a key is dropped.
    pub(super) async fn user_info(&self, openid: &str) -> Result<UserInfo> {
        let info: Called<UserInfo> = self
            .call_with_token(
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
            )
            .await?;
        let mut info = info.value;
        info.unionid = info
            .unionid
            .filter(|u| users::check_id("unionid", u).is_ok());
        Ok(info)
    }

    /// Stores what a `user/info` lookup made of `openid` just now, and the unionid → openid
    /// link when there is a unionid.
    pub(super) async fn store_oa_record(
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
        self.env.set_many(Bucket::Users, entries).await?;
        Ok(record)
    }

    pub(super) async fn oa_record(&self, openid: &str) -> Result<Option<OaRecord>> {
        Ok(self
            .env
            .get(Bucket::Users, &users::oa(openid))
            .await?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    pub(super) async fn read_string(&self, bucket: Bucket, key: &str) -> Result<Option<String>> {
        Ok(self
            .env
            .get(bucket, key)
            .await?
            .and_then(|bytes| String::from_utf8(bytes).ok()))
    }
}

#[derive(Deserialize)]
pub(super) struct UserInfo {
    #[serde(default)]
    pub(super) subscribe: u8,
    pub(super) openid: Option<String>,
    pub(super) unionid: Option<String>,
}

#[cfg(test)]
mod tests {
    use crate::env::{Bucket, Failure};
    use crate::testing::{Answer, FakeEnv};
    use crate::wechat::error::Error;
    use crate::wechat::users;
    use wxnotify_contract::{Recipient, User};

    const MINI: &str = "oMP0000000000000000000000001";
    const UNION: &str = "oU00000000000000000000000001";
    const OA: &str = "oOA0000000000000000000000001";
    const USER_INFO: &str = "/cgi-bin/user/info";

    fn resolve(env: &FakeEnv, recipient: &Recipient) -> Result<User, Error> {
        env.run(async |w| w.resolve_user(recipient).await)
    }

    #[test]
    fn every_identity_is_found_from_any_of_them() {
        let env = FakeEnv::new(&[]);
        env.know(Some(MINI), UNION, Some(OA), true);
        let everything = User {
            mini_openid: Some(MINI.into()),
            unionid: Some(UNION.into()),
            oa_openid: Some(OA.into()),
            follows_oa: Some(true),
        };
        for recipient in [
            Recipient::MiniProgram(MINI.into()),
            Recipient::Union(UNION.into()),
            Recipient::OfficialAccount(OA.into()),
        ] {
            assert_eq!(
                resolve(&env, &recipient).unwrap(),
                everything,
                "{recipient:?}"
            );
        }
        assert!(env.sent().is_empty(), "all from storage");
    }

    #[test]
    fn an_oa_openid_without_a_unionid_is_looked_up_once_and_stored() {
        let env = FakeEnv::new(&[]);
        env.answer(
            USER_INFO,
            Answer::Json(format!(
                r#"{{"subscribe":1,"openid":"{OA}","unionid":"{UNION}"}}"#
            )),
        );
        let user = resolve(&env, &Recipient::OfficialAccount(OA.into())).unwrap();
        assert_eq!(
            (user.unionid.as_deref(), user.follows_oa),
            (Some(UNION), Some(true))
        );
        assert_eq!(
            env.value(Bucket::Users, &users::union_oa(UNION)).as_deref(),
            Some(OA)
        );
        resolve(&env, &Recipient::OfficialAccount(OA.into())).unwrap();
        assert_eq!(
            env.sent_to(USER_INFO).len(),
            1,
            "the second answer is stored"
        );
    }

    #[test]
    fn what_cannot_be_resolved_is_named() {
        let env = FakeEnv::new(&[]);
        env.answer(
            USER_INFO,
            Answer::Fail(Failure::Failed("connection refused".into())),
        );
        assert!(matches!(
            resolve(&env, &Recipient::OfficialAccount(OA.into())),
            Err(Error::Unavailable { .. })
        ));
        let error = resolve(&env, &Recipient::MiniProgram("no spaces allowed".into())).unwrap_err();
        assert!(matches!(&error, Error::InvalidInput(m) if m.contains("mini-program openid")));
    }

    #[test]
    fn follow_and_unfollow_pushes_update_the_record() {
        let env = FakeEnv::new(&[]);
        env.answer(
            USER_INFO,
            Answer::Json(format!(
                r#"{{"subscribe":1,"openid":"{OA}","unionid":"{UNION}"}}"#
            )),
        );
        let followed = env.run(async |w| w.record_follow(OA).await).unwrap();
        assert!(followed.follows && followed.unionid.as_deref() == Some(UNION));
        let unfollowed = env.run(async |w| w.record_unfollow(OA).await).unwrap();
        assert!(!unfollowed.follows);
        assert_eq!(
            unfollowed.unionid.as_deref(),
            Some(UNION),
            "the unionid is kept"
        );
        assert_eq!(
            env.sent_to(USER_INFO).len(),
            1,
            "an unfollow needs no lookup"
        );
    }
}
