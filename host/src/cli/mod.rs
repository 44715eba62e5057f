//! Command-line interface: one module per command family, each an `XxxCommand` with `execute`.

/// `println!` for command output: a closed pipe (`wxnotify … | head`) ends the process
/// quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

mod calls;
mod demo;
mod output;
mod plugin;
mod sandbox;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use wxnotify::{Error, NotifyError};

pub use output::error_json;

/// Success.
#[allow(
    dead_code,
    reason = "documents the exit-code table next to its siblings"
)]
pub const EXIT_OK: u8 = 0;
/// A fault: WeChat credentials, the component, the runtime or storage.
pub const EXIT_FAULT: u8 = 1;
/// Bad input: the request, the tenants file, or a missing identity mapping.
pub const EXIT_INPUT: u8 = 2;
/// WeChat or the user refused the message; retrying will not help.
pub const EXIT_REFUSED: u8 = 3;
/// Temporarily unavailable or over quota; retry later.
pub const EXIT_RETRY: u8 = 4;

/// Send WeChat mini-program and official-account notifications through the wxnotify component.
#[derive(Parser)]
#[command(
    name = "wxnotify",
    version,
    about,
    after_help = "Exit codes: 0 delivered, 1 fault, 2 bad input, 3 refused by WeChat or the user, 4 retry later.\n\
                  Try it without a WeChat account: wxnotify demo"
)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    command: Command,
}

/// Where the tenants come from.
#[derive(clap::Args, Clone)]
pub struct TenantArgs {
    /// Tenants file (TOML).
    #[arg(long, env = "WXNOTIFY_TENANTS", default_value = "wxnotify.toml")]
    tenants: PathBuf,
    /// Tenant to act for; may be omitted when the file has only one.
    #[arg(long, short = 't')]
    tenant: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Send a notification.
    ///
    /// Example: wxnotify send --to mini:oMP000… --template TPL_ORDER_SHIPPED --data thing1="Order shipped"
    Send(calls::SendCommand),
    /// Show every identity known for a user.
    ///
    /// Example: wxnotify resolve --to oa:oOA000…
    Resolve(calls::ResolveCommand),
    /// Exchange a mini-program login code (wx.login) for the user's identity.
    ///
    /// Example: wxnotify login 0a3Bc…
    Login(calls::LoginCommand),
    /// Decrypt encryptedData from the mini-program with the session key stored at login.
    ///
    /// Example: wxnotify decrypt --openid oMP000… --data CiyLU1… --iv r7BXXK…
    Decrypt(calls::DecryptCommand),
    /// Map the official account's followers to unionids (resumes an interrupted sync).
    ///
    /// Example: wxnotify sync-followers
    SyncFollowers(calls::SyncCommand),
    /// Inspect or precompile a component (a tenant's plugin).
    ///
    /// Example: wxnotify plugin inspect plugins/wecom.wasm
    Plugin(plugin::PluginCommand),
    /// Run the local WeChat API sandbox.
    ///
    /// Example: wxnotify sandbox --bind 127.0.0.1:8900 --followers 1000
    Sandbox(sandbox::SandboxCommand),
    /// Serve the HTTP API, WeChat's callback routes and the outbox workers.
    ///
    /// Example: wxnotify serve --bind 0.0.0.0:8080 --workers 8
    Serve(serve::ServeCommand),
    /// Run the whole flow against an in-process sandbox: no account, no server needed.
    ///
    /// Example: wxnotify demo
    Demo(demo::DemoCommand),
}

impl Cli {
    /// Runs the chosen command.
    pub async fn execute(self) -> anyhow::Result<()> {
        let json = self.json;
        match self.command {
            Command::Send(c) => c.execute(json).await,
            Command::Resolve(c) => c.execute(json).await,
            Command::Login(c) => c.execute(json).await,
            Command::Decrypt(c) => c.execute(json).await,
            Command::SyncFollowers(c) => c.execute(json).await,
            Command::Plugin(c) => c.execute(json).await,
            Command::Sandbox(c) => c.execute(json).await,
            Command::Demo(c) => c.execute(json).await,
            Command::Serve(c) => c.execute(json).await,
        }
    }
}

/// Writes one line to stdout; exits with success when the reader has gone away.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {error}");
        std::process::exit(i32::from(EXIT_FAULT));
    }
}

/// An input mistake found by the CLI itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for `error`: see [`Cli`]'s help.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<UsageError>().is_some() {
        return EXIT_INPUT;
    }
    match error.downcast_ref::<Error>() {
        Some(Error::Config(_) | Error::UnknownTenant(_)) => EXIT_INPUT,
        Some(Error::Notify { error, .. }) if error.is_retryable() => EXIT_RETRY,
        Some(Error::Notify { error, .. }) => match error {
            NotifyError::InvalidInput(_) | NotifyError::NotFound(_) => EXIT_INPUT,
            NotifyError::Refused(_) | NotifyError::Rejected(_) => EXIT_REFUSED,
            _ => EXIT_FAULT,
        },
        Some(Error::Deadline { .. }) => EXIT_RETRY,
        _ => EXIT_FAULT,
    }
}
