//! `wxnotify serve`: the HTTP API, WeChat's callback routes and the outbox workers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use wxnotify::serve::{ServeOptions, Server, open_outbox};
use wxnotify::tenant::TenantsFile;

use super::UsageError;
use super::calls::runtime_for;

/// Serves until SIGTERM or Ctrl-C, then drains.
#[derive(clap::Args)]
pub struct ServeCommand {
    /// Tenants file (TOML); its `[storage]` also holds the outbox.
    #[arg(long, env = "WXNOTIFY_TENANTS", default_value = "wxnotify.toml")]
    tenants: PathBuf,
    /// Address to listen on (port 0: any free port, printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Outbox workers in this process.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Names this process's workers in the outbox (default: hostname-pid).
    #[arg(long)]
    worker_name: Option<String>,
    /// How long a notification that keeps failing transiently is retried before it fails
    /// (e.g. 30m, 6h, 2d).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    retry_for: std::time::Duration,
}

impl ServeCommand {
    pub async fn execute(self, _json: bool) -> anyhow::Result<()> {
        if self.workers == 0 {
            return Err(UsageError("--workers must be at least 1".into()).into());
        }
        // As `wxnotify::Error`, so configuration mistakes exit with the bad-input code.
        let file = TenantsFile::load(&self.tenants).map_err(wxnotify::Error::from)?;
        // Keys are read once at start; they never reach a log line.
        let api_keys = file
            .api_keys(|variable| std::env::var(variable).ok())
            .map_err(wxnotify::Error::from)?;
        let runtime = Arc::new(runtime_for(&file).await?);
        let outbox = open_outbox(&file.resolve_storage(file.storage.clone())).await?;
        let options = ServeOptions {
            bind: self.bind,
            workers: self.workers,
            worker_name: self
                .worker_name
                .unwrap_or_else(wxnotify::serve::default_worker_name),
            retry_for: self.retry_for,
            operator_key: std::env::var("WXNOTIFY_OPERATOR_KEY")
                .ok()
                .filter(|key| !key.trim().is_empty()),
        };
        let server = Server::start(runtime, outbox, api_keys, options).await?;
        // Tests and scripts read the address from this first line (with `--bind …:0`).
        out!("listening on http://{}", server.addr());
        shutdown_signal().await?;
        tracing::info!("shutting down: draining sends in flight");
        server.shutdown().await;
        Ok(())
    }
}

/// Ctrl-C, or SIGTERM where there is one (what process managers send).
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
