//! The `wxnotify` binary as a user runs it: against the sandbox, with a tenants file on disk.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use wxnotify_sandbox::{Sandbox, SandboxConfig, SeedUser};

use crate::wxnotify;

fn write_tenants(dir: &Path, sandbox: &Sandbox) {
    let (mini, oa) = (sandbox.state().mini_app(), sandbox.state().oa_app());
    std::fs::write(
        dir.join("wxnotify.toml"),
        format!(
            "[storage]\nbackend = \"sqlite\"\npath = \"wxnotify.sqlite3\"\n\n[tenants.shop]\napi_base = \"{}\"\n\
             [tenants.shop.mini_program]\nappid = \"{}\"\nsecret_env = \"SHOP_MINI_SECRET\"\n\
             [tenants.shop.official_account]\nappid = \"{}\"\nsecret_env = \"SHOP_OA_SECRET\"\n",
            sandbox.base_url(),
            mini.appid,
            oa.appid
        ),
    )
    .unwrap();
}

fn with_secrets(command: &mut Command, sandbox: &Sandbox) {
    command
        .env("SHOP_MINI_SECRET", sandbox.state().mini_app().secret)
        .env("SHOP_OA_SECRET", sandbox.state().oa_app().secret);
}

/// `wxnotify --json send --to {to}` of a `TPL_ORDER_SHIPPED` template message, with the secrets.
fn json_send(dir: &Path, sandbox: &Sandbox, to: &str) -> Command {
    let mut command = wxnotify(dir);
    with_secrets(&mut command, sandbox);
    command.args([
        "--json",
        "send",
        "--to",
        to,
        "--template",
        "TPL_ORDER_SHIPPED",
        "--data",
        "thing1=hi",
    ]);
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_followers_of_100_000_shows_progress_and_resumes_after_a_kill() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let followers = sandbox.state().add_followers(100_000);
    let dir = tempfile::tempdir().unwrap();
    write_tenants(dir.path(), &sandbox);

    // First run: killed as soon as it reports its first page.
    let mut first = wxnotify(dir.path());
    with_secrets(&mut first, &sandbox);
    let mut child = first
        .args(["--json", "sync-followers"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let progress: serde_json::Value =
        serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(progress["total"], 100_000);
    assert_eq!(progress["synced"], 10_000);
    assert_eq!(progress["done"], false);
    let pages_before = sandbox
        .state()
        .requests()
        .iter()
        .filter(|r| r.path == "/cgi-bin/user/get")
        .count();
    sandbox.state().clear_requests();

    // Second run: resumes where the first stopped and finishes.
    let mut second = wxnotify(dir.path());
    with_secrets(&mut second, &sandbox);
    second.args(["sync-followers"]);
    let output = run(second).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("synced 100000 of 100000 followers"),
        "{stdout}"
    );
    let pages: Vec<_> = sandbox
        .state()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/cgi-bin/user/get")
        .collect();
    assert!(pages_before >= 1);
    assert_eq!(
        pages.len() + pages_before,
        10 + usize::from(pages_before > 1),
        "no page done twice but the one killed"
    );
    let resumed_at = pages[0]
        .query
        .get("next_openid")
        .cloned()
        .unwrap_or_default();
    assert!(!resumed_at.is_empty(), "the second run did not start over");
    let page = followers
        .iter()
        .position(|f| f.oa_openid.as_deref() == Some(resumed_at.as_str()))
        .unwrap();
    assert_eq!((page + 1) % 10_000, 0, "it resumed at a page boundary");
}

/// Runs `command` to completion off the runtime's threads, so the in-process sandbox can answer it.
async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_tell_bad_input_from_refusals() {
    let sandbox = crate::sandbox(SandboxConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_tenants(dir.path(), &sandbox);
    let user = sandbox.state().add_user(SeedUser {
        follows_oa: false,
        has_unionid: true,
        ..SeedUser::default()
    });

    // A mini-program openid nobody has told the component about: bad input (2), in JSON.
    let unknown = json_send(
        dir.path(),
        &sandbox,
        &format!("mini:{}", user.mini_openid.clone().unwrap()),
    );
    let output = run(unknown).await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let error: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "not_found");

    // The OA refuses a non-follower: a refusal (3), with WeChat's errcode.
    let refused = json_send(
        dir.path(),
        &sandbox,
        &format!("oa:{}", user.oa_openid.clone().unwrap()),
    );
    let output = run(refused).await;
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let error: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["errcode"], 43004);

    // A secret that is not in the environment: bad input (2), naming tenant, field and variable.
    let mut no_secrets = wxnotify(dir.path());
    no_secrets.args(["sync-followers"]);
    let output = run(no_secrets).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tenant `shop`") && stderr.contains("SHOP_MINI_SECRET"),
        "{stderr}"
    );
}

#[test]
fn plugin_inspect_names_what_is_wrong_with_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm not really").unwrap();
    let output = wxnotify(dir.path())
        .args(["plugin", "inspect", "broken.wasm"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("broken.wasm is not a valid component")
    );

    let output = wxnotify(dir.path())
        .args(["--json", "plugin", "inspect"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["runs_as_plugin"], true);
    assert!(
        report["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "wechat:notify/notifier@0.2.0")
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // `wxnotify plugin inspect | head -1`: the pipe closes after the first line.
    let dir = tempfile::tempdir().unwrap();
    let mut child = wxnotify(dir.path())
        .args(["plugin", "inspect"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(first.starts_with("built-in component"), "{first}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
}
