//! The `wxnotify` binary as it is run: commands against the sandbox, and `wxnotify serve` in
//! separate processes — killed, sharing a queue, facing a faulty WeChat.
//!
//! One test binary for all of them: each links wasmtime.

// The console and the sandbox phone in headless Chromium.
mod browser;
// The commands: send, sync-followers, plugin, exit codes, output.
mod commands;
// `wxnotify serve`: crash, two servers on one Redis, the fault run.
mod serve;
// `wxnotify serve`'s HTTP API: submission, status, auth, callbacks, operations.
mod serve_api;
// No secret in what the commands and the server print, log or answer.
mod secrets;
// A soak under faults (ignored by `cargo test`; `scripts/soak.sh` runs it).
mod soak;

use std::ops::{ControlFlow, Deref};
use std::time::{Duration, Instant};

/// A sandbox whose wire is checked when the test ends: every request it received came framed
/// with `Content-Length`, as every peer SDK sends it (the end-to-end suite checks the same).
struct CheckedSandbox(wxnotify_sandbox::Sandbox);

impl Deref for CheckedSandbox {
    type Target = wxnotify_sandbox::Sandbox;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for CheckedSandbox {
    fn drop(&mut self) {
        if !std::thread::panicking()
            && let Some(problem) = self.0.state().framing_problem()
        {
            panic!("{problem}");
        }
    }
}

/// Starts a sandbox on 127.0.0.1.
async fn sandbox(config: wxnotify_sandbox::SandboxConfig) -> CheckedSandbox {
    CheckedSandbox(
        wxnotify_sandbox::Sandbox::start(config)
            .await
            .expect("sandbox starts"),
    )
}

/// The `wxnotify` binary, run in `dir` on the tenants file `dir/wxnotify.toml`.
fn wxnotify(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"));
    command
        .current_dir(dir)
        .env("WXNOTIFY_TENANTS", dir.join("wxnotify.toml"))
        .env("WXNOTIFY_CACHE_DIR", dir.join("cache"));
    command
}

/// Runs `probe` every `every` until it answers `Break`; once `limit` has passed, a `Continue`
/// fails the test with the message it carries.
async fn poll<T, F>(limit: Duration, every: Duration, mut probe: impl FnMut() -> F) -> T
where
    F: Future<Output = ControlFlow<T, String>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            ControlFlow::Break(value) => return value,
            ControlFlow::Continue(why) => assert!(started.elapsed() < limit, "{why}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Starts `wxnotify serve --bind 127.0.0.1:0` in `dir` (which holds `wxnotify.toml`) with
/// `env` and `args`; returns the process and the `IP:PORT` it listens on.
fn start_serve(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = wxnotify(dir)
        .envs(env.iter().copied())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wxnotify serve starts");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("a first line");
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();
    (child, addr)
}
