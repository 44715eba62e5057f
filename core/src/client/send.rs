//! Sending: every channel checked before the first call, then tried in order until one
//! delivers; the subscribe path honours recorded refusals.

use serde::Deserialize;

use super::{Called, WeChat, checked, post_json};
use crate::env::{Bucket, Env};
use crate::wechat::config::AccountKind;
use crate::wechat::error::{ApiError, Error, Result};
use crate::wechat::users::{self};
use crate::wechat::{message, query};
use wxnotify_contract as contract;

/// What WeChat answers a subscribe message the user has not authorised.
const SUBSCRIPTION_REFUSED: i32 = 43101;

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

impl<E: Env> WeChat<'_, E> {
    pub async fn send_notification(
        &self,
        notification: &contract::Notification,
    ) -> Result<Delivered> {
        // Every channel is checked before the first call, so a malformed notification costs
        // no request and no one-time authorisation.
        let channels = self.check_notification(notification)?;
        let mut failures = Vec::new();
        for channel in &channels {
            let outcome = match channel {
                Prepared::Template(message) => {
                    self.send_template(
                        &notification.recipient,
                        message,
                        notification.idempotency_key.as_deref(),
                    )
                    .await
                }
                Prepared::Subscribe(message) => {
                    self.send_subscribe(&notification.recipient, message).await
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
    pub async fn template_outcome(&self, msgid: i64) -> Result<Option<users::TemplateOutcome>> {
        Ok(self
            .env
            .get(Bucket::Users, &users::template_outcome(msgid))
            .await?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    pub(super) fn prepare(&self, channel: &contract::ChannelMessage) -> Result<Prepared> {
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

    pub(super) async fn send_template(
        &self,
        recipient: &contract::Recipient,
        message: &contract::TemplateMessage,
        idempotency_key: Option<&str>,
    ) -> Result<Delivered> {
        let openid = self.oa_openid_of(recipient).await?;
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
        let sent: Result<Called<Sent>> = self
            .call_with_token(
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
            )
            .await;
        // WeChat says the user does not follow: remember it, so the next notification skips
        // this channel without a call until a sync or a subscribe event says otherwise.
        if let Err(Error::Refused(api)) = &sent
            && api.errcode == 43004
        {
            self.record_unfollow(&openid).await?;
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

    pub(super) async fn send_subscribe(
        &self,
        recipient: &contract::Recipient,
        message: &contract::SubscribeMessage,
    ) -> Result<Delivered> {
        let openid = self.mini_openid_of(recipient).await?;
        self.check_subscription(&openid, &message.template_id)
            .await?;
        let body = message::subscribe_body(&openid, message);
        let sent: Called<serde::de::IgnoredAny> = self
            .call_with_token(
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
            )
            .await?;
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
    pub(super) async fn check_subscription(&self, openid: &str, template_id: &str) -> Result<()> {
        let key = users::subscription(AccountKind::MiniProgram, openid, template_id);
        let decision = self
            .env
            .get(Bucket::Users, &key)
            .await?
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
}

/// A channel message checked and ready to send.
pub enum Prepared {
    Template(contract::TemplateMessage),
    Subscribe(contract::SubscribeMessage),
}

impl Prepared {
    pub(super) fn kind(&self) -> contract::Channel {
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

#[cfg(test)]
mod tests {
    use crate::env::Bucket;
    use crate::testing::{Answer, FakeEnv};
    use crate::wechat::config::AccountKind;
    use crate::wechat::error::Error;
    use crate::wechat::users;
    use wxnotify_contract::{
        Channel, ChannelMessage, Notification, Recipient, SubscribeMessage, TemplateMessage,
    };

    const MINI: &str = "oMP0000000000000000000000001";
    const UNION: &str = "oU00000000000000000000000001";
    const OA: &str = "oOA0000000000000000000000001";
    const TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";
    const SUBSCRIBE_SEND: &str = "/cgi-bin/message/subscribe/send";

    fn template() -> ChannelMessage {
        ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL_SHIPPED".into(),
            data: vec![("thing1".into(), "Your order has shipped".into())],
            url: None,
            miniprogram: None,
        })
    }

    fn subscribe(phrase: &str) -> ChannelMessage {
        ChannelMessage::SubscribeMessage(SubscribeMessage {
            template_id: "TPL_STATUS".into(),
            data: vec![("phrase1".into(), phrase.into())],
            page: None,
            miniprogram_state: None,
            lang: None,
        })
    }

    fn to_union(channels: Vec<ChannelMessage>) -> Notification {
        Notification {
            recipient: Recipient::Union(UNION.into()),
            channels,
            idempotency_key: Some("order-42".into()),
        }
    }

    fn send(env: &FakeEnv, notification: &Notification) -> Result<super::Delivered, Error> {
        env.run(async |w| w.send_notification(notification).await)
    }

    fn ok(msgid: Option<i64>) -> Answer {
        Answer::Json(match msgid {
            Some(id) => format!(r#"{{"errcode":0,"errmsg":"ok","msgid":{id}}}"#),
            None => r#"{"errcode":0,"errmsg":"ok"}"#.into(),
        })
    }

    fn refused(errcode: i32) -> Answer {
        Answer::Json(format!(r#"{{"errcode":{errcode},"errmsg":"refused"}}"#))
    }

    #[test]
    fn a_follower_gets_the_template_message_at_their_oa_openid() {
        let env = FakeEnv::new(&[]);
        env.know(Some(MINI), UNION, Some(OA), true);
        env.answer(TEMPLATE_SEND, ok(Some(42)));
        let delivered = send(&env, &to_union(vec![template(), subscribe("已发货")])).unwrap();
        assert_eq!(delivered.channel, Channel::TemplateMessage);
        assert_eq!((delivered.msgid, delivered.openid.as_str()), (Some(42), OA));
        assert_eq!(delivered.attempts, 1);
        let body = env.sent_to(TEMPLATE_SEND)[0].body.clone().unwrap();
        assert_eq!(body["touser"], OA);
        assert_eq!(body["template_id"], "TPL_SHIPPED");
        assert_eq!(body["client_msg_id"], "order-42", "the idempotency key");
        assert!(env.sent_to(SUBSCRIBE_SEND).is_empty());
    }

    #[test]
    fn a_refused_template_falls_back_to_the_subscribe_message_and_says_why() {
        let env = FakeEnv::new(&[]);
        env.know(Some(MINI), UNION, Some(OA), true);
        env.answer(TEMPLATE_SEND, refused(43004));
        env.answer(SUBSCRIBE_SEND, ok(None));
        let delivered = send(&env, &to_union(vec![template(), subscribe("已发货")])).unwrap();
        assert_eq!(delivered.channel, Channel::SubscribeMessage);
        assert_eq!(delivered.openid, MINI);
        assert!(matches!(
            delivered.failures.as_slice(),
            [(Channel::TemplateMessage, Error::Refused(api))] if api.errcode == 43004
        ));
        assert_eq!(
            env.sent_to(SUBSCRIBE_SEND)[0].body.clone().unwrap()["touser"],
            MINI
        );
    }

    #[test]
    fn a_known_non_follower_skips_the_template_call() {
        let env = FakeEnv::new(&[]);
        env.know(Some(MINI), UNION, Some(OA), false);
        env.answer(SUBSCRIBE_SEND, ok(None));
        let delivered = send(&env, &to_union(vec![template(), subscribe("已发货")])).unwrap();
        assert_eq!(delivered.channel, Channel::SubscribeMessage);
        assert!(env.sent_to(TEMPLATE_SEND).is_empty());
    }

    #[test]
    fn a_recorded_rejection_refuses_the_subscribe_message_without_a_call() {
        let env = FakeEnv::new(&[]);
        env.know(Some(MINI), UNION, None, false);
        let key = users::subscription(AccountKind::MiniProgram, MINI, "TPL_STATUS");
        env.put(
            Bucket::Users,
            &key,
            r#"{"status":"reject","event":"popup","at":1700000000}"#,
        );
        let error = send(&env, &to_union(vec![subscribe("已发货")])).unwrap_err();
        assert!(
            matches!(&error, Error::Refused(api) if api.errcode == 43101
                && api.errmsg.contains("subscribe_msg_popup_event")),
            "{error}"
        );
        assert!(env.sent().is_empty());
    }

    #[test]
    fn when_every_channel_fails_a_retryable_error_wins_so_the_caller_retries() {
        let env = FakeEnv::new(&[]);
        env.know(Some(MINI), UNION, Some(OA), true);
        env.answer(
            TEMPLATE_SEND,
            Answer::Json(r#"{"errcode":-1,"errmsg":"busy"}"#.into()),
        );
        env.answer(SUBSCRIBE_SEND, refused(43101));
        let error = send(&env, &to_union(vec![template(), subscribe("已发货")])).unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error}");

        // With nothing retryable, the last channel's error is answered.
        env.answer(TEMPLATE_SEND, refused(43004));
        let error = send(&env, &to_union(vec![template(), subscribe("已发货")])).unwrap_err();
        assert!(matches!(error, Error::Refused(api) if api.errcode == 43101));
    }

    #[test]
    fn bad_values_and_missing_mappings_fail_before_any_call() {
        let env = FakeEnv::new(&[]);
        env.know(Some(MINI), UNION, Some(OA), true);
        // A phrase is at most 5 characters: checked for every channel before the first call.
        let error = send(&env, &to_union(vec![template(), subscribe("far too long")])).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidInput(m) if m.contains("phrase1")),
            "{error}"
        );
        let error = send(&env, &to_union(vec![])).unwrap_err();
        assert!(matches!(error, Error::InvalidInput(_)));
        assert!(env.sent().is_empty(), "no token fetched, nothing sent");

        let stranger = Notification {
            recipient: Recipient::Union("oU-nobody-000000000000000000".into()),
            channels: vec![template()],
            idempotency_key: None,
        };
        let error = send(&env, &stranger).unwrap_err();
        assert!(
            matches!(&error, Error::NotFound(m) if m.contains("sync-followers")),
            "{error}"
        );
    }

    #[test]
    fn long_template_values_are_sent_as_wechat_shows_them_and_reported() {
        let env = FakeEnv::new(&[]);
        env.know(None, UNION, Some(OA), true);
        env.answer(TEMPLATE_SEND, ok(Some(1)));
        let long = ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL".into(),
            data: vec![(
                "thing1".into(),
                "一二三四五六七八九十一二三四五六七八九十一二".into(),
            )],
            url: None,
            miniprogram: None,
        });
        let delivered = send(&env, &to_union(vec![long])).unwrap();
        assert_eq!(delivered.truncated, ["thing1"]);
    }
}
