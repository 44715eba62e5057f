//! `wxnotify demo`: the whole flow on embedded defaults — an in-process WeChat sandbox, SQLite
//! storage in a temporary directory, the built-in component — printed step by step.

use serde_json::json;
use wxnotify::tenant::TenantsFile;
use wxnotify::{
    ChannelMessage, Notification, Recipient, SubscribeMessage, TemplateMessage, UniformMessage,
};
use wxnotify_sandbox::{Sandbox, SandboxConfig, SeedUser};

use super::calls::runtime_for;
use super::output::{delivery_json, delivery_text, user_json};
use super::sandbox::tenants_toml;

/// Runs the demo.
#[derive(clap::Args)]
pub struct DemoCommand {
    /// After the demo, keep the sandbox running (until Ctrl-C) so that its phone page shows
    /// what alice and bob received.
    #[arg(long)]
    keep_open: bool,
}

fn shipped(data: &[(&str, &str)]) -> Vec<(String, String)> {
    data.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl DemoCommand {
    pub async fn execute(self, json: bool) -> anyhow::Result<()> {
        let say = |text: String| {
            if !json {
                out!("{text}");
            }
        };
        let sandbox = Sandbox::start(SandboxConfig::default()).await?;
        let state = sandbox.state();
        let alice = state.add_user(SeedUser::follower());
        let bob = state.add_user(SeedUser {
            follows_oa: false,
            has_unionid: true,
            ..SeedUser::default()
        });
        let (Some(alice_mini), Some(bob_mini)) =
            (alice.mini_openid.clone(), bob.mini_openid.clone())
        else {
            anyhow::bail!("the sandbox seeded a user without a mini-program openid");
        };
        state.grant_subscription(&bob_mini, "TPL_ORDER_STATUS", 1)?;
        say(format!(
            "1. WeChat API sandbox on {} with two users:",
            sandbox.base_url()
        ));
        say(format!(
            "   alice follows the official account: mini openid {alice_mini}, OA openid {}",
            alice.oa_openid.clone().unwrap_or_default()
        ));
        say(format!(
            "   bob does not follow it:             mini openid {bob_mini}, one subscribe authorisation"
        ));

        let dir = tempfile::tempdir()?;
        let storage = format!(
            "[storage]\nbackend = \"sqlite\"\npath = \"{}\"\n",
            dir.path().join("wxnotify.sqlite3").display()
        );
        let runtime = runtime_for(&TenantsFile::parse(
            &tenants_toml(&sandbox, &storage),
            "demo",
        )?)
        .await?;
        let tenant = runtime.tenant("sandbox")?;
        say(format!(
            "2. tenant `sandbox`: built-in component, SQLite storage in {}",
            dir.path().display()
        ));

        let alice_user = tenant.login(&state.issue_login_code(&alice_mini)?).await?;
        tenant.login(&state.issue_login_code(&bob_mini)?).await?;
        say(format!(
            "3. login (jscode2session): alice's unionid is {}",
            alice_user.unionid.clone().unwrap_or_default()
        ));

        let progress = tenant.sync_followers(true).await?;
        say(format!(
            "4. follower sync (user/get + batchget): followers synced {}, unionids mapped to OA openids {}",
            progress.synced, progress.mapped
        ));

        let to_alice = Notification {
            recipient: Recipient::MiniProgram(alice_mini.clone()),
            channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
                template_id: "TPL_ORDER_SHIPPED".into(),
                data: shipped(&[
                    ("thing1", "Your order has shipped"),
                    ("character_string2", "SF1234567890"),
                    ("time3", "2026-11-21 10:00"),
                ]),
                url: None,
                miniprogram: Some(wxnotify::MiniprogramPage {
                    appid: None,
                    pagepath: "pages/order/detail?id=42".into(),
                }),
            })],
            idempotency_key: Some("order-42-shipped".into()),
        };
        let first = tenant.send_notification(&to_alice).await?;
        say(format!(
            "5. template message to alice, addressed by her MINI-PROGRAM openid:\n   {}",
            delivery_text(&first).replace('\n', "\n   ")
        ));
        if let Some(received) = state.delivered_template_messages().last() {
            say(format!(
                "   the sandbox received template/send for {} (her OA openid), template {}",
                received.touser, received.template_id
            ));
        }

        let to_bob = Notification {
            recipient: Recipient::MiniProgram(bob_mini.clone()),
            channels: vec![
                ChannelMessage::TemplateMessage(TemplateMessage {
                    template_id: "TPL_ORDER_SHIPPED".into(),
                    data: shipped(&[("thing1", "Order shipped")]),
                    url: None,
                    miniprogram: None,
                }),
                ChannelMessage::SubscribeMessage(SubscribeMessage {
                    template_id: "TPL_ORDER_STATUS".into(),
                    data: shipped(&[
                        ("thing1", "Order shipped"),
                        ("phrase2", "已发货"),
                        ("time3", "2026-11-21 10:00"),
                        ("amount4", "¥99.00"),
                    ]),
                    page: Some("pages/order/detail?id=43".into()),
                    miniprogram_state: None,
                    lang: None,
                }),
            ],
            idempotency_key: None,
        };
        let second = tenant.send_notification(&to_bob).await?;
        say(format!(
            "6. template message first, subscribe message next, to bob:\n   {}",
            delivery_text(&second).replace('\n', "\n   ")
        ));

        let legacy = Notification {
            recipient: Recipient::MiniProgram(alice_mini.clone()),
            channels: vec![ChannelMessage::UniformLegacy(UniformMessage {
                appid: Some(state.oa_app().appid),
                template_id: "TPL_ORDER_SHIPPED".into(),
                data: shipped(&[("thing1", "Sent the modern way")]),
                url: None,
                miniprogram: None,
            })],
            idempotency_key: None,
        };
        let third = tenant.send_notification(&legacy).await?;
        let retired_calls = state
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/uniform_send"))
            .count();
        say(format!(
            "7. a legacy uniform_send request (mp_template_msg) for alice:\n   {}\n   calls to the retired uniform_send endpoint: {retired_calls}",
            delivery_text(&third).replace('\n', "\n   ")
        ));

        let invalid = Notification {
            recipient: Recipient::MiniProgram(bob_mini.clone()),
            channels: vec![ChannelMessage::SubscribeMessage(SubscribeMessage {
                template_id: "TPL_ORDER_STATUS".into(),
                data: shipped(&[("phrase2", "六个汉字短语")]),
                page: None,
                miniprogram_state: None,
                lang: None,
            })],
            idempotency_key: None,
        };
        let before = state.requests().len();
        let Err(rejected) = tenant.send_notification(&invalid).await else {
            anyhow::bail!("the component accepted a 6-character `phrase` value");
        };
        say(format!(
            "8. a 6-character `phrase` value: {rejected}\n   requests sent to WeChat for it: {}",
            state.requests().len() - before
        ));

        let mini_fetches = state.token_fetches(&state.mini_app().appid);
        let oa_fetches = state.token_fetches(&state.oa_app().appid);
        say(format!(
            "9. access tokens fetched: {oa_fetches} for the official account, {mini_fetches} for the mini-program (cached in SQLite)"
        ));
        let phone = format!("{}/sandbox/phone", sandbox.base_url());
        if self.keep_open {
            say(format!(
                "10. what alice and bob see on their phones: open {phone} (Ctrl-C to stop)"
            ));
        } else {
            say(
                "10. to see what alice and bob see on their phones: wxnotify demo --keep-open"
                    .to_owned(),
            );
        }
        if json {
            out!(
                "{}",
                json!({
                    "sandbox": sandbox.base_url(),
                    "phone": phone,
                    "alice": user_json(&alice_user),
                    "template_to_mini_openid": delivery_json(&first),
                    "fallback_to_subscribe": delivery_json(&second),
                    "uniform_legacy": delivery_json(&third),
                    "retired_uniform_send_calls": retired_calls,
                    "invalid_phrase": rejected.to_string(),
                    "token_fetches": { "official_account": oa_fetches, "mini_program": mini_fetches },
                })
            );
        }
        if self.keep_open {
            tokio::signal::ctrl_c().await?;
        }
        sandbox.shutdown().await;
        Ok(())
    }
}
