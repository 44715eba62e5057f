//! Accounts: login (`jscode2session`), open-data decryption, follower sync.

use serde::Deserialize;

use super::identity::UserInfo;
use super::{Called, SyncProgress, WeChat, checked, post_json, to_json};
use crate::env::{Bucket, Env, HttpRequest, Method};
use crate::wechat::config::AccountKind;
use crate::wechat::error::{Error, Result};
use crate::wechat::users::{self, OaRecord, SyncCursor};
use crate::wechat::{crypto, query};
use wxnotify_contract as contract;

/// `user/info/batchget` takes at most 100 openids.
const BATCHGET_MAX: usize = 100;

impl<E: Env> WeChat<'_, E> {
    pub async fn login(&self, js_code: &str) -> Result<contract::User> {
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
        ).await?;
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
        self.env.set_many(Bucket::Users, entries).await?;
        // Unionid may have been learned before (decrypted user data), so resolve from storage.
        self.resolve_user(&contract::Recipient::MiniProgram(session.openid.clone()))
            .await
            .or(Ok(contract::User {
                mini_openid: Some(session.openid),
                unionid,
                oa_openid: None,
                follows_oa: None,
            }))
    }

    pub async fn decrypt_user_data(
        &self,
        mini_openid: &str,
        encrypted_data: &str,
        iv: &str,
    ) -> Result<String> {
        checked("mini-program openid", mini_openid)?;
        let appid = self.config.account(AccountKind::MiniProgram)?.appid;
        let session_key = self.read_string(Bucket::Users, &users::mini_session_key(mini_openid)).await?.ok_or_else(|| {
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
            self.env
                .set_many(
                    Bucket::Users,
                    vec![
                        (
                            users::mini_unionid(mini_openid),
                            unionid.clone().into_bytes(),
                        ),
                        (users::union_mini(&unionid), mini_openid.as_bytes().to_vec()),
                    ],
                )
                .await?;
        }
        Ok(plaintext)
    }

    pub async fn sync_followers(&self, restart: bool) -> Result<SyncProgress> {
        let cursor = if restart {
            None
        } else {
            self.env
                .get(Bucket::Users, users::SYNC_CURSOR)
                .await?
                .and_then(|bytes| serde_json::from_slice::<SyncCursor>(&bytes).ok())
        };
        let (next_openid, synced_before, mapped_before) = cursor
            .map_or((String::new(), 0, 0), |c| {
                (c.next_openid, c.synced, c.mapped)
            });
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
        let page: Called<Page> = self
            .call_with_token(AccountKind::OfficialAccount, "/cgi-bin/user/get", |token| {
                HttpRequest {
                    method: Method::Get,
                    url: self.config.url(&format!(
                        "/cgi-bin/user/get?access_token={}&next_openid={}",
                        query(token),
                        query(&next_openid)
                    )),
                    body: None,
                }
            })
            .await?;
        let page = page.value;
        let openids = page.data.map(|d| d.openid).unwrap_or_default();
        let mut mapped = mapped_before;
        for chunk in openids.chunks(BATCHGET_MAX) {
            mapped = mapped.saturating_add(self.map_followers(chunk).await?);
        }
        let synced = synced_before.saturating_add(u32::try_from(openids.len()).unwrap_or(u32::MAX));
        // WeChat may hand back a next_openid with nothing after it, so an empty page or an empty
        // cursor both end the sync.
        let done = page.count == 0 || openids.is_empty() || page.next_openid.is_empty();
        if done {
            self.env.delete(Bucket::Users, users::SYNC_CURSOR).await?;
        } else {
            let cursor = SyncCursor {
                next_openid: page.next_openid,
                synced,
                mapped,
            };
            self.env
                .set(Bucket::Users, users::SYNC_CURSOR, &to_json(&cursor))
                .await?;
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
    pub(super) async fn map_followers(&self, openids: &[String]) -> Result<u32> {
        #[derive(Deserialize)]
        struct Batch {
            #[serde(default)]
            user_info_list: Vec<UserInfo>,
        }
        let body = serde_json::json!({
            "user_list": openids.iter().map(|o| serde_json::json!({"openid": o, "lang": "zh_CN"})).collect::<Vec<_>>()
        });
        let batch: Called<Batch> = self
            .call_with_token(
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
            )
            .await?;
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
        self.env.set_many(Bucket::Users, entries).await?;
        Ok(mapped)
    }
}

#[cfg(test)]
mod tests {
    use crate::env::Bucket;
    use crate::testing::{Answer, FakeEnv};
    use crate::wechat::error::Error;
    use crate::wechat::users;

    const MINI: &str = "oMP0000000000000000000000001";
    const UNION: &str = "oU00000000000000000000000001";
    const LOGIN: &str = "/sns/jscode2session";

    #[test]
    fn login_maps_the_user_and_keeps_the_session_key_to_itself() {
        let env = FakeEnv::new(&[]);
        env.answer(
            LOGIN,
            Answer::Json(format!(
                r#"{{"openid":"{MINI}","session_key":"c2Vzc2lvbi1rZXktMTY=","unionid":"{UNION}"}}"#
            )),
        );
        let user = env.run(async |w| w.login("code-1").await).unwrap();
        assert_eq!(user.mini_openid.as_deref(), Some(MINI));
        assert_eq!(user.unionid.as_deref(), Some(UNION));
        assert_eq!(
            env.value(Bucket::Users, &users::mini_session_key(MINI))
                .as_deref(),
            Some("c2Vzc2lvbi1rZXktMTY=")
        );
        assert_eq!(
            env.value(Bucket::Users, &users::union_mini(UNION))
                .as_deref(),
            Some(MINI)
        );
        let url = &env.sent_to(LOGIN)[0].url;
        assert!(
            url.contains("js_code=code-1") && url.contains("appid=wxmini"),
            "{url}"
        );
    }

    #[test]
    fn a_used_code_is_rejected_and_an_empty_one_never_sent() {
        let env = FakeEnv::new(&[]);
        env.answer(
            LOGIN,
            Answer::Json(r#"{"errcode":40163,"errmsg":"code been used"}"#.into()),
        );
        assert!(matches!(
            env.run(async |w| w.login("code-1").await),
            Err(Error::Rejected(api)) if api.errcode == 40163
        ));
        assert!(matches!(
            env.run(async |w| w.login(" ").await),
            Err(Error::InvalidInput(_))
        ));
        assert_eq!(env.sent_to(LOGIN).len(), 1);
    }

    #[test]
    fn open_data_decrypts_with_the_stored_session_key_and_the_official_vector() {
        // wechat-api.md §2.2: WeChat's published appid, session key, iv, data and plaintext.
        const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
        const DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
        let env = FakeEnv::new(&[("mini_appid", "wx4f4bc4dec97d474b")]);
        let decrypt = || env.run(async |w| w.decrypt_user_data(MINI, DATA, IV).await);
        assert!(matches!(decrypt(), Err(Error::NotFound(m)) if m.contains("log")));
        env.put(
            Bucket::Users,
            &users::mini_session_key(MINI),
            "tiihtNczf5v6AKRyjwEUhQ==",
        );
        let plaintext: serde_json::Value = serde_json::from_str(&decrypt().unwrap()).unwrap();
        assert_eq!(plaintext["unionId"], "ocMvos6NjeKLIBqg5Mr9QjxrP1FA");
        // The unionid it carries is learned.
        assert_eq!(
            env.value(Bucket::Users, &users::mini_unionid(MINI))
                .as_deref(),
            Some("ocMvos6NjeKLIBqg5Mr9QjxrP1FA")
        );
        // Another mini-program's data: the watermark names another appid.
        let other = FakeEnv::new(&[("mini_appid", "wxother")]);
        other.put(
            Bucket::Users,
            &users::mini_session_key(MINI),
            "tiihtNczf5v6AKRyjwEUhQ==",
        );
        let error = other
            .run(async |w| w.decrypt_user_data(MINI, DATA, IV).await)
            .unwrap_err();
        assert!(
            matches!(&error, Error::InvalidInput(m) if m.contains("issued to appid")),
            "{error}"
        );
    }

    #[test]
    fn follower_sync_maps_a_page_in_batches_of_100_and_resumes_from_its_cursor() {
        let env = FakeEnv::new(&[]);
        let openids: Vec<String> = (0..150).map(|i| format!("oOA{i:025}")).collect();
        let page = |ids: &[String], next: &str| {
            Answer::Json(
                serde_json::json!({
                    "total": 150, "count": ids.len(),
                    "data": { "openid": ids }, "next_openid": next
                })
                .to_string(),
            )
        };
        let infos = |ids: &[String]| {
            let list: Vec<_> = ids
                .iter()
                .map(|id| serde_json::json!({"subscribe": 1, "openid": id, "unionid": format!("u-{id}")}))
                .collect();
            Answer::Json(serde_json::json!({ "user_info_list": list }).to_string())
        };
        // Two pages of WeChat's list (a page is up to 10 000; here the first holds 120).
        env.answer_once("/cgi-bin/user/get", page(&openids[..120], &openids[119]));
        env.answer_once("/cgi-bin/user/get", page(&openids[120..], ""));
        env.answer_once("/cgi-bin/user/info/batchget", infos(&openids[..100]));
        env.answer_once("/cgi-bin/user/info/batchget", infos(&openids[100..120]));
        env.answer_once("/cgi-bin/user/info/batchget", infos(&openids[120..]));
        let first = env.run(async |w| w.sync_followers(false).await).unwrap();
        assert_eq!(
            (first.total, first.synced, first.mapped, first.done),
            (150, 120, 120, false)
        );
        let batches = env.sent_to("/cgi-bin/user/info/batchget");
        assert_eq!(batches.len(), 2);
        assert_eq!(
            batches[0].body.clone().unwrap()["user_list"]
                .as_array()
                .unwrap()
                .len(),
            100
        );
        let second = env.run(async |w| w.sync_followers(false).await).unwrap();
        assert_eq!(
            (second.synced, second.mapped, second.done),
            (150, 150, true)
        );
        let resumed = &env.sent_to("/cgi-bin/user/get")[1].url;
        assert!(
            resumed.contains(&format!("next_openid={}", openids[119])),
            "{resumed}"
        );
        assert_eq!(
            env.value(
                Bucket::Users,
                &users::union_oa(&format!("u-{}", openids[149]))
            )
            .as_deref(),
            Some(openids[149].as_str())
        );
        assert!(
            env.value(Bucket::Users, users::SYNC_CURSOR).is_none(),
            "cleared when done"
        );
    }
}
