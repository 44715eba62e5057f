//! Commands that call a tenant's component: send, resolve, login, decrypt, sync-followers.

use std::sync::Arc;
use std::time::Instant;

use wxnotify::tenant::TenantsFile;
use wxnotify::{
    ChannelMessage, Engine, EngineOptions, MiniprogramPage, MiniprogramState, Notification,
    Recipient, Runtime, SubscribeMessage, TemplateMessage, Tenant, UniformMessage,
};

use super::output::{delivery_json, delivery_text, print_user, progress_json};
use super::{TenantArgs, UsageError};

/// Loads the tenants file, opens its storage and returns the tenant to act for.
pub async fn open_tenant(args: &TenantArgs) -> anyhow::Result<Arc<Tenant>> {
    let file = TenantsFile::load(&args.tenants)?;
    let runtime = runtime_for(&file).await?;
    let id = match (&args.tenant, runtime.tenant_ids().as_slice()) {
        (Some(id), _) => id.clone(),
        (None, [only]) => only.clone(),
        (None, []) => {
            return Err(UsageError(format!("{} defines no tenant", args.tenants.display())).into());
        }
        (None, ids) => {
            return Err(UsageError(format!(
                "--tenant is required: the file defines {}",
                ids.join(", ")
            ))
            .into());
        }
    };
    Ok(runtime.tenant(&id)?)
}

/// A runtime serving every tenant of `file`, secrets read from the environment.
pub async fn runtime_for(file: &TenantsFile) -> anyhow::Result<Runtime> {
    let engine = Engine::with_options(file.engine.options(EngineOptions::default()))?;
    Ok(Runtime::from_file(&engine, file, |variable| std::env::var(variable).ok()).await?)
}

/// `mini:ID`, `oa:ID` or `union:ID`.
pub fn parse_recipient(text: &str) -> Result<Recipient, String> {
    match text.split_once(':') {
        Some(("mini", id)) => Ok(Recipient::MiniProgram(id.to_owned())),
        Some(("oa", id)) => Ok(Recipient::OfficialAccount(id.to_owned())),
        Some(("union", id)) => Ok(Recipient::Union(id.to_owned())),
        _ => Err(format!(
            "expected mini:OPENID, oa:OPENID or union:UNIONID, got `{text}`"
        )),
    }
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))
}

fn parse_state(text: &str) -> Result<MiniprogramState, String> {
    match text {
        "developer" => Ok(MiniprogramState::Developer),
        "trial" => Ok(MiniprogramState::Trial),
        "formal" => Ok(MiniprogramState::Formal),
        other => Err(format!(
            "expected developer, trial or formal, got `{other}`"
        )),
    }
}

/// Sends one notification: an OA template message, a subscribe message, or both in that order
/// (the second is tried only when the first does not deliver).
#[derive(clap::Args)]
pub struct SendCommand {
    #[command(flatten)]
    tenant: TenantArgs,
    /// Recipient: mini:OPENID, oa:OPENID or union:UNIONID.
    #[arg(long, value_parser = parse_recipient)]
    to: Recipient,
    /// Send an official-account template message with this template id.
    #[arg(long)]
    template: Option<String>,
    /// Send a mini-program subscribe message with this template id (after --template, if both).
    #[arg(long)]
    subscribe: Option<String>,
    /// Send a legacy uniform_send `mp_template_msg` with this template id (delivered via template/send).
    #[arg(long, conflicts_with_all = ["template"])]
    uniform: Option<String>,
    /// Template data KEY=VALUE, in order (repeat).
    #[arg(long = "data", value_parser = parse_pair)]
    data: Vec<(String, String)>,
    /// Data for the subscribe message when it differs from --data (repeat).
    #[arg(long = "subscribe-data", value_parser = parse_pair)]
    subscribe_data: Vec<(String, String)>,
    /// Web page the template message opens.
    #[arg(long)]
    url: Option<String>,
    /// Mini-program page the message opens (template: miniprogram.pagepath; subscribe: page).
    #[arg(long)]
    page: Option<String>,
    /// Mini-program version a subscribe message opens.
    #[arg(long, value_parser = parse_state)]
    state: Option<MiniprogramState>,
    /// Subscribe message language: zh_CN, en_US, zh_HK or zh_TW.
    #[arg(long)]
    lang: Option<String>,
    /// Idempotency key (client_msg_id on the OA path).
    #[arg(long)]
    key: Option<String>,
}

impl SendCommand {
    pub async fn execute(self, json: bool) -> anyhow::Result<()> {
        let mut channels = Vec::new();
        let page = self.page.clone().map(|pagepath| MiniprogramPage {
            appid: None,
            pagepath,
        });
        if let Some(template_id) = self.template {
            channels.push(ChannelMessage::TemplateMessage(TemplateMessage {
                template_id,
                data: self.data.clone(),
                url: self.url.clone(),
                miniprogram: page.clone(),
            }));
        }
        if let Some(template_id) = self.uniform {
            channels.push(ChannelMessage::UniformLegacy(UniformMessage {
                appid: None,
                template_id,
                data: self.data.clone(),
                url: self.url.clone(),
                miniprogram: page,
            }));
        }
        if let Some(template_id) = self.subscribe {
            let data = if self.subscribe_data.is_empty() {
                self.data
            } else {
                self.subscribe_data
            };
            channels.push(ChannelMessage::SubscribeMessage(SubscribeMessage {
                template_id,
                data,
                page: self.page,
                miniprogram_state: self.state,
                lang: self.lang,
            }));
        }
        if channels.is_empty() {
            return Err(
                UsageError("name a channel: --template, --subscribe or --uniform".into()).into(),
            );
        }
        let tenant = open_tenant(&self.tenant).await?;
        let notification = Notification {
            recipient: self.to,
            channels,
            idempotency_key: self.key,
        };
        let delivery = tenant.send_notification(&notification).await?;
        if json {
            out!("{}", delivery_json(&delivery));
        } else {
            out!("{}", delivery_text(&delivery));
        }
        Ok(())
    }
}

/// Shows every identity known for a user.
#[derive(clap::Args)]
pub struct ResolveCommand {
    #[command(flatten)]
    tenant: TenantArgs,
    /// The user: mini:OPENID, oa:OPENID or union:UNIONID.
    #[arg(long, value_parser = parse_recipient)]
    to: Recipient,
}

impl ResolveCommand {
    pub async fn execute(self, json: bool) -> anyhow::Result<()> {
        let user = open_tenant(&self.tenant)
            .await?
            .resolve_user(&self.to)
            .await?;
        print_user(&user, json);
        Ok(())
    }
}

/// Exchanges a login code for the user's identity.
#[derive(clap::Args)]
pub struct LoginCommand {
    #[command(flatten)]
    tenant: TenantArgs,
    /// The code from wx.login.
    js_code: String,
}

impl LoginCommand {
    pub async fn execute(self, json: bool) -> anyhow::Result<()> {
        let user = open_tenant(&self.tenant)
            .await?
            .login(&self.js_code)
            .await?;
        print_user(&user, json);
        Ok(())
    }
}

/// Decrypts open data with the stored session key.
#[derive(clap::Args)]
pub struct DecryptCommand {
    #[command(flatten)]
    tenant: TenantArgs,
    /// The user's mini-program openid (logged in before).
    #[arg(long)]
    openid: String,
    /// encryptedData, base64.
    #[arg(long)]
    data: String,
    /// iv, base64.
    #[arg(long)]
    iv: String,
}

impl DecryptCommand {
    pub async fn execute(self, _json: bool) -> anyhow::Result<()> {
        let plaintext = open_tenant(&self.tenant)
            .await?
            .decrypt_user_data(&self.openid, &self.data, &self.iv)
            .await?;
        // The plaintext is JSON already: printed as is in both modes.
        out!("{plaintext}");
        Ok(())
    }
}

/// Syncs the OA's followers page by page, resuming a sync that was interrupted.
#[derive(clap::Args)]
pub struct SyncCommand {
    #[command(flatten)]
    tenant: TenantArgs,
    /// Start from the first follower even if an interrupted sync could resume.
    #[arg(long)]
    restart: bool,
}

impl SyncCommand {
    pub async fn execute(self, json: bool) -> anyhow::Result<()> {
        let tenant = open_tenant(&self.tenant).await?;
        let started = Instant::now();
        let bar = if json {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(0)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} followers ({per_sec}, {msg}) eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut restart = self.restart;
        loop {
            let progress = tenant.sync_followers(restart).await?;
            restart = false;
            let mapped = progress.mapped;
            bar.set_length(u64::from(progress.total));
            bar.set_position(u64::from(progress.synced));
            bar.set_message(format!("{mapped} unionids mapped"));
            if json {
                out!("{}", progress_json(&progress));
            }
            if progress.done {
                bar.finish();
                if !json {
                    out!(
                        "synced {} of {} followers, {mapped} unionids mapped, in {:.1?}",
                        progress.synced,
                        progress.total,
                        started.elapsed()
                    );
                }
                return Ok(());
            }
        }
    }
}
