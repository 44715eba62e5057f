//! `wxnotify sandbox`: the local WeChat API, for trying a mini-program backend without an account.

use std::net::SocketAddr;

use wxnotify_sandbox::{Sandbox, SandboxConfig};

/// Serves the sandbox until Ctrl-C.
#[derive(clap::Args)]
pub struct SandboxCommand {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8900")]
    bind: SocketAddr,
    /// Followers of the official account to seed (each with a unionid and a mini-program openid).
    #[arg(long, default_value_t = 0)]
    followers: usize,
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
"#,
        base = sandbox.base_url(),
        mini_appid = mini.appid,
        mini_secret = mini.secret,
        oa_appid = oa.appid,
        oa_secret = oa.secret,
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
                })
            );
        } else {
            out!("WeChat API sandbox listening on {}", sandbox.base_url());
            out!(
                "admin API: {}/sandbox (users, login codes, faults, recorded requests)",
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
