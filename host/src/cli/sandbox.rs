//! `wxnotify sandbox`: the local WeChat API, for trying a mini-program backend without an account.

use std::net::SocketAddr;

use wxnotify_sandbox::{Account, Sandbox, SandboxConfig};

/// Serves the sandbox until Ctrl-C.
#[derive(clap::Args)]
pub struct SandboxCommand {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8900")]
    bind: SocketAddr,
    /// Followers of the official account to seed (each with a unionid and a mini-program openid).
    #[arg(long, default_value_t = 0)]
    followers: usize,
    /// Where WeChat pushes the official account's events (follow, unfollow), e.g.
    /// `http://127.0.0.1:8080/v1/sandbox/wechat/oa` for `wxnotify serve`; also settable on the
    /// phone page.
    #[arg(long)]
    oa_callback: Option<String>,
    /// Where WeChat pushes the mini-program's events (subscribe popups), e.g.
    /// `http://127.0.0.1:8080/v1/sandbox/wechat/mini`.
    #[arg(long)]
    mini_callback: Option<String>,
}

/// A tenants file that points a tenant named `sandbox` at `sandbox`.
pub fn tenants_toml(sandbox: &Sandbox, storage: &str) -> String {
    let mini = sandbox.state().mini_app();
    let oa = sandbox.state().oa_app();
    format!(
        r#"{storage}
[tenants.sandbox]
api_base = "{base}"

[tenants.sandbox.mini_program]
appid = "{mini_appid}"
secret = "{mini_secret}"

[tenants.sandbox.official_account]
appid = "{oa_appid}"
secret = "{oa_secret}"

[tenants.sandbox.config]
oa_callback_token = "{callback_token}"
mini_callback_token = "{callback_token}"
"#,
        base = sandbox.base_url(),
        mini_appid = mini.appid,
        mini_secret = mini.secret,
        oa_appid = oa.appid,
        oa_secret = oa.secret,
        callback_token = sandbox.state().config().callback_token,
    )
}

impl SandboxCommand {
    pub async fn execute(self, json: bool) -> anyhow::Result<()> {
        let sandbox = Sandbox::start(SandboxConfig {
            bind: self.bind,
            ..SandboxConfig::default()
        })
        .await?;
        sandbox.state().add_followers(self.followers);
        for (account, url) in [
            (Account::OfficialAccount, self.oa_callback),
            (Account::MiniProgram, self.mini_callback),
        ] {
            if let Some(url) = url {
                anyhow::ensure!(
                    url.starts_with("http://"),
                    "the sandbox pushes to http:// URLs only, not `{url}`"
                );
                sandbox.state().set_callback_url(account, Some(url));
            }
        }
        if json {
            out!(
                "{}",
                // The sandbox's own credentials, printed in the tenants file below as well:
                // they open nothing but this sandbox.
                serde_json::json!({
                    "base_url": sandbox.base_url(),
                    "mini_appid": sandbox.state().mini_app().appid,
                    "mini_secret": sandbox.state().mini_app().secret,
                    "oa_appid": sandbox.state().oa_app().appid,
                    "oa_secret": sandbox.state().oa_app().secret,
                    "followers": self.followers,
                    "phone_url": format!("{}/sandbox/phone", sandbox.base_url()),
                })
            );
        } else {
            out!("WeChat API sandbox listening on {}", sandbox.base_url());
            out!(
                "admin API: {}/sandbox (users, login codes, faults, recorded requests)",
                sandbox.base_url()
            );
            out!(
                "phone: open {}/sandbox/phone to see each user's WeChat and act as them",
                sandbox.base_url()
            );
            out!("\nA tenants file for it (save as wxnotify.toml):\n");
            out!(
                "{}",
                tenants_toml(
                    &sandbox,
                    "[storage]\nbackend = \"sqlite\"\npath = \"wxnotify.sqlite3\"\n"
                )
            );
            out!("Press Ctrl-C to stop.");
        }
        tokio::signal::ctrl_c().await?;
        sandbox.shutdown().await;
        Ok(())
    }
}
