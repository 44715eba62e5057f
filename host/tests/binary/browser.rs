//! The operator console and the sandbox phone in a real browser: Debian's Chromium, headless,
//! driven through Debian's ChromeDriver with fantoccini (`scripts/setup.sh` installs both).
//!
//! With `WXNOTIFY_SCREENSHOTS=<dir>` the tests also save the pages they end on as PNG files
//! there (`scripts/screenshots.sh` refreshes the ones under `docs/`).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use wxnotify_sandbox::{Account, SandboxConfig, SeedUser};

use crate::serve_api::{KEY, Served, serve};

/// How long a page may take to show what a test waits for.
const PAGE_WAIT: Duration = Duration::from_secs(20);

/// A headless Chromium behind its ChromeDriver; both end on drop.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A program of the machine, by name, or the reason the test cannot run.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: run scripts/setup.sh"))
}

impl Browser {
    async fn start() -> Browser {
        let chromium = program("chromium");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        // The flags this machine needs (its closed network refuses Chromium's background
        // connections), a fresh profile, and a window the screenshots are made at.
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,1100".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": chromium, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = crate::poll(Duration::from_secs(30), Duration::from_millis(100), || {
            let capabilities = capabilities.clone();
            let url = url.clone();
            async move {
                match ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&url)
                    .await
                {
                    Ok(client) => ControlFlow::Break(client),
                    Err(error) => ControlFlow::Continue(format!("no browser session: {error}")),
                }
            }
        })
        .await;
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self
            .client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// The texts of the elements `css` finds, once `ready` holds for them.
    async fn texts_when(&self, css: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        crate::poll(PAGE_WAIT, Duration::from_millis(200), || async {
            let mut texts = Vec::new();
            for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
                // An element replaced meanwhile (the pages redraw) is read again next round.
                match element.text().await {
                    Ok(text) => texts.push(text),
                    Err(_) => return ControlFlow::Continue(format!("{css} changed while read")),
                }
            }
            if ready(&texts) {
                ControlFlow::Break(texts)
            } else {
                ControlFlow::Continue(format!("{css} shows {texts:?}"))
            }
        })
        .await
    }

    /// Saves the page as `name`.png under `WXNOTIFY_SCREENSHOTS`, when set.
    async fn screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("WXNOTIFY_SCREENSHOTS") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
        }
    }
}

/// A subscribe message to the user with mini-program openid `openid`.
fn order_status(openid: &str) -> Value {
    json!({
        "recipient": { "mini_program": openid },
        "channels": [{ "subscribe_message": {
            "template_id": "TPL_ORDER_STATUS",
            "data": {
                "thing1": "您的订单已发货，预计明天送达",
                "phrase2": "已发货",
                "time3": "2026-12-02 10:00",
                "amount4": "¥99.00"
            },
            "page": "pages/order/detail?id=42"
        }}],
    })
}

/// The sandbox's `subscribe/send` calls so far.
fn subscribe_sends(sandbox: &wxnotify_sandbox::Sandbox) -> usize {
    sandbox
        .state()
        .requests()
        .iter()
        .filter(|r| r.path == wxnotify_sandbox::CGI_SUBSCRIBE_SEND)
        .count()
}

/// The whole loop by clicking: a user accepts a subscribe popup on the sandbox phone (pushed
/// to `wxnotify serve`), receives the message as a 服务通知 card, then rejects the popup; the
/// next send fails without a WeChat call, and the console shows both with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_popup_fails_the_next_send_and_the_console_shows_why() {
    let sandbox = crate::sandbox(SandboxConfig {
        callback_token: "AAAAA".into(),
        ..SandboxConfig::default()
    })
    .await;
    let bob = sandbox.state().add_user(SeedUser {
        follows_oa: false,
        has_unionid: true,
        ..SeedUser::default()
    });
    let bob_mini = bob.mini_openid.clone().unwrap();
    let alice = sandbox.state().add_user(SeedUser::follower());
    let served: Served = serve(&sandbox, "", &[]).await;
    sandbox.state().set_callback_url(
        Account::MiniProgram,
        Some(format!("{}/v1/shop/wechat/mini", served.base)),
    );
    let browser = Browser::start().await;

    // On the phone: bob accepts the popup; the push reaches serve.
    let phone = format!("{}/sandbox/phone", sandbox.base_url());
    browser.client.goto(&phone).await.unwrap();
    browser
        .click(&format!("#users li[data-user='{bob_mini}']"))
        .await;
    browser.click("#open-popup").await;
    browser.click("#popup-accept").await;
    let pushes = browser
        .texts_when("#pushes li.delivered", |texts| texts.len() == 1)
        .await;
    assert!(
        pushes[0].contains("subscribe_msg_popup_event"),
        "{pushes:?}"
    );

    let delivered = served.submit(&order_status(&bob_mini)).await;
    let status = served.wait_final(&delivered).await;
    assert_eq!(status["state"], "delivered", "{status}");
    // The card, as bob sees it, with the page it opens.
    let cards = browser
        .texts_when("#feed .card", |texts| texts.len() == 1)
        .await;
    assert!(cards[0].contains("TPL_ORDER_STATUS"), "{cards:?}");
    assert!(
        cards[0].contains("已发货") && cards[0].contains("进入小程序查看"),
        "{cards:?}"
    );
    assert!(
        cards[0].contains("pages/order/detail?id=42"),
        "the page it opens: {cards:?}"
    );
    browser.screenshot("sandbox-phone").await;

    // A template message from the OA to alice, its long value cut as the platform shows it.
    let shipped = served
        .submit(&json!({
            "recipient": { "official_account": alice.oa_openid.clone().unwrap() },
            "channels": [{ "template_message": {
                "template_id": "TPL_ORDER_SHIPPED",
                "data": { "thing1": "您的订单已发货，预计明天送达，请留意快递员的电话" },
                "miniprogram": { "pagepath": "pages/order/detail?id=7" }
            }}],
        }))
        .await;
    assert_eq!(served.wait_final(&shipped).await["state"], "delivered");
    let alice_key = alice.mini_openid.clone().unwrap();
    browser
        .click(&format!("#users li[data-user='{alice_key}']"))
        .await;
    browser.click("#tab-oa").await;
    let cut = browser
        .texts_when("#feed .card dd.truncated", |texts| texts.len() == 1)
        .await;
    assert!(cut[0].ends_with('…'), "{cut:?}");
    assert!(cut[0].chars().count() <= 21, "{cut:?}");
    browser
        .click(&format!("#users li[data-user='{bob_mini}']"))
        .await;
    browser.click("#tab-subscribe").await;

    // Then bob rejects it: the next send fails in the component, WeChat is not called.
    browser.click("#open-popup").await;
    browser.click("#popup-reject").await;
    browser
        .texts_when("#pushes li.delivered", |texts| texts.len() == 2)
        .await;
    let sends_before = subscribe_sends(&sandbox);
    let failed = served.submit(&order_status(&bob_mini)).await;
    let status = served.wait_final(&failed).await;
    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(
        subscribe_sends(&sandbox),
        sends_before,
        "no WeChat call for a rejected template: {status}"
    );
    let reason = status["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("subscribe_msg_popup_event"), "{status}");

    // The console: both notifications, the failure with its reason.
    browser
        .client
        .goto(&format!("{}/console", served.base))
        .await
        .unwrap();
    browser.type_into("#tenant", "shop").await;
    browser.type_into("#key", KEY).await;
    browser.click("#open").await;
    let rows = browser
        .texts_when("#rows tr", |texts| texts.len() == 3)
        .await;
    assert!(
        rows[0].contains(&failed) && rows[0].contains("failed"),
        "{rows:?}"
    );
    assert!(
        rows[0].contains("subscribe_msg_popup_event"),
        "the reason: {rows:?}"
    );
    assert!(
        rows[1].contains(&shipped) && rows[1].contains("template message"),
        "{rows:?}"
    );
    assert!(
        rows[2].contains(&delivered) && rows[2].contains("delivered"),
        "{rows:?}"
    );
    assert!(
        rows[2].contains("subscribe message"),
        "the channel: {rows:?}"
    );
    let delivered_count = browser
        .texts_when("#count-delivered", |texts| texts == ["2"])
        .await;
    assert_eq!(delivered_count, ["2"]);
    browser
        .texts_when("#count-failed", |texts| texts == ["1"])
        .await;
    let tokens = browser
        .texts_when("#tokens tbody tr", |texts| texts.len() == 2)
        .await;
    assert!(
        tokens
            .iter()
            .all(|row| row.contains("ago") && row.contains("in 1 h")),
        "both accounts' tokens were fetched, refreshed in under 2 h: {tokens:?}"
    );
    // A row opens its status, with WeChat's final status when pushed.
    browser
        .click(&format!("#rows tr[data-id='{failed}']"))
        .await;
    let detail = browser
        .texts_when("#detail-fields", |texts| {
            texts.first().is_some_and(|t| t.contains("failed"))
        })
        .await;
    assert!(
        detail[0].contains("subscribe_msg_popup_event"),
        "{detail:?}"
    );
    browser.screenshot("console").await;

    // A wrong key is refused with a message, nothing shown.
    browser.type_into("#key", "wrong-key").await;
    browser.click("#open").await;
    let message = browser
        .texts_when("#message", |texts| {
            texts.first().is_some_and(|t| t.contains("401"))
        })
        .await;
    assert!(
        message[0].contains("Could not open tenant shop"),
        "{message:?}"
    );
    browser.client.clone().close().await.unwrap();
    sandbox.shutdown().await;
}
