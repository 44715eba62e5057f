//! No secret reaches what wxnotify prints, logs or answers: every command and the server, on
//! success and failure paths, with distinctive secret values and logs at every level
//! (`WXNOTIFY_LOG=trace`). What is checked: stdout and stderr of each process, every HTTP
//! answer of the server (the API's JSON, its errors, `/metrics`), and every value stored in the
//! SQLite file but the two kept by design: the token cache (`tokens` bucket) and the session
//! keys decryption needs (`users`, `mini/{openid}/session_key`).

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use wxnotify_sandbox::{AppCredentials, SandboxConfig, SeedUser};

use crate::wxnotify;

const MINI_SECRET: &str = "MINISECRET4f1c9a7e";
const OA_SECRET: &str = "OASECRET8b2d6e0f";
const WRONG_SECRET: &str = "WRONGSECRET5a7c3e91";
const CALLBACK_TOKEN: &str = "CBTOKEN3e9a5c1b";
/// 43 characters, as WeChat's EncodingAESKey.
const AES_KEY: &str = "AESKEYzq8w7e6r5t4y3u2i1o0pAsDfGhJkLzXcVbNm1";
const API_KEY: &str = "APIKEY7c4e2a9d";
const OPERATOR_KEY: &str = "OPERATORKEY2b8e4d6f";
/// 16 bytes ("secret-session-1"), base64, as jscode2session's.
const SESSION_KEY: &str = "c2VjcmV0LXNlc3Npb24tMQ==";
const REDIS_PASSWORD: &str = "REDISPASS6d2f8a1c";

/// Everything the processes printed and the server answered.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    /// Runs `command` to its end, checks that it succeeded or failed as `succeeds` says, and
    /// keeps its stdout and stderr.
    fn run(&mut self, what: &str, succeeds: bool, mut command: Command) {
        let output = command.output().expect("wxnotify runs");
        assert_eq!(
            output.status.success(),
            succeeds,
            "{what}: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .filter(|line| !line.contains("TRACE") && !line.contains("DEBUG"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        self.add(
            format!("{what}: stdout"),
            String::from_utf8_lossy(&output.stdout),
        );
        self.add(
            format!("{what}: stderr"),
            String::from_utf8_lossy(&output.stderr),
        );
    }

    /// Panics naming every place a `secret` shows up.
    fn assert_free_of(&self, secrets: &[(&str, String)]) {
        let mut leaks = Vec::new();
        for (name, secret) in secrets {
            assert!(secret.len() >= 8, "{name} is too short to search for");
            for (what, text) in &self.0 {
                if let Some(line) = text.lines().find(|line| line.contains(secret.as_str())) {
                    let line: String = line.chars().take(300).collect();
                    leaks.push(format!("{name} in {what}: {line}"));
                }
            }
        }
        assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
    }
}

fn tenants_toml(api_base: &str, mini_appid: &str, oa_appid: &str) -> String {
    format!(
        "[storage]\nbackend = \"sqlite\"\npath = \"wxnotify.sqlite3\"\n\n\
         [tenants.shop]\napi_base = \"{api_base}\"\napi_key_env = \"SHOP_API_KEY\"\n\
         [tenants.shop.mini_program]\nappid = \"{mini_appid}\"\nsecret_env = \"SHOP_MINI_SECRET\"\n\
         [tenants.shop.official_account]\nappid = \"{oa_appid}\"\nsecret_env = \"SHOP_OA_SECRET\"\n\
         [tenants.shop.config]\noa_callback_token = {{ env = \"SHOP_CALLBACK_TOKEN\" }}\n\
         oa_encoding_aes_key = {{ env = \"SHOP_AES_KEY\" }}\n\
         mini_callback_token = {{ env = \"SHOP_CALLBACK_TOKEN\" }}\n"
    )
}

/// `wxnotify ARGS` in `dir` with every secret in its environment and logs at every level.
fn command(dir: &std::path::Path, oa_secret: &str, args: &[&str]) -> Command {
    let mut command = wxnotify(dir);
    command
        // Every level of every target, but the compiler's (megabytes of IR, no secrets).
        .env(
            "WXNOTIFY_LOG",
            "trace,cranelift_codegen=info,regalloc2=info,wasmtime_cranelift=info",
        )
        .env("SHOP_MINI_SECRET", MINI_SECRET)
        .env("SHOP_OA_SECRET", oa_secret)
        .env("SHOP_CALLBACK_TOKEN", CALLBACK_TOKEN)
        .env("SHOP_AES_KEY", AES_KEY)
        .env("SHOP_API_KEY", API_KEY)
        .env("WXNOTIFY_OPERATOR_KEY", OPERATOR_KEY)
        .args(args);
    command
}

/// Every row of every table of the SQLite file at `path`, as text, but the entries that hold a
/// credential by design: the `tokens` bucket and `users` session keys.
fn add_stored_values(seen: &mut Seen, path: &std::path::Path) {
    let db = rusqlite::Connection::open(path).expect("the SQLite file opens");
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.iter().any(|t| t == "kv") && tables.iter().any(|t| t == "outbox_messages"));
    for table in tables {
        let mut query = db.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns: Vec<String> = query.column_names().map(str::to_owned).collect();
        let mut rows = query.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let text = |i: usize| match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    String::from_utf8_lossy(t).into_owned()
                }
                other => format!("{other:?}"),
            };
            let values: Vec<String> = (0..columns.len()).map(text).collect();
            if table == "kv" {
                let (bucket, key) = (&values[1], &values[2]);
                if bucket == "tokens" || (bucket == "users" && key.ends_with("/session_key")) {
                    continue;
                }
            }
            seen.add(format!("stored: {table}"), values.join(" | "));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_output_logs_or_answers() {
    let defaults = SandboxConfig::default();
    let sandbox = crate::sandbox(SandboxConfig {
        mini_program: AppCredentials::new(defaults.mini_program.appid.clone(), MINI_SECRET),
        official_account: AppCredentials::new(defaults.official_account.appid.clone(), OA_SECRET),
        ..defaults
    })
    .await;
    let state = sandbox.state();
    let user = state.add_user(SeedUser::follower());
    let mini = user.mini_openid.clone().unwrap();
    let oa = user.oa_openid.clone().unwrap();
    state.pin_session_key(&mini, SESSION_KEY).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wxnotify.toml"),
        tenants_toml(
            &sandbox.base_url(),
            &state.mini_app().appid,
            &state.oa_app().appid,
        ),
    )
    .unwrap();
    let run = |args: &[&str]| command(dir.path(), OA_SECRET, args);
    let mut seen = Seen::default();

    // The commands, each on a success and a failure path, plain and --json.
    let code = state.issue_login_code(&mini).unwrap();
    seen.run("login", true, run(&["login", &code]));
    seen.run(
        "login again (a used code)",
        false,
        run(&["--json", "login", &code]),
    );
    seen.run("sync-followers", true, run(&["sync-followers"]));
    let to_mini = format!("mini:{mini}");
    let shipped = ["--template", "TPL_ORDER_SHIPPED", "--data", "thing1=hi"];
    seen.run(
        "send",
        true,
        run(&[&["send", "--to", &to_mini][..], &shipped].concat()),
    );
    seen.run(
        "send --json",
        true,
        run(&[
            &["--json", "send", "--to", &format!("oa:{oa}")][..],
            &shipped,
        ]
        .concat()),
    );
    seen.run(
        "send to an unknown user",
        false,
        run(&[
            &["send", "--to", "mini:oMP00000000000000000000unknown"][..],
            &shipped,
        ]
        .concat()),
    );
    seen.run(
        "resolve",
        true,
        run(&["--json", "resolve", "--to", &to_mini]),
    );
    seen.run(
        "decrypt garbage",
        false,
        run(&[
            "decrypt",
            "--openid",
            &mini,
            "--data",
            "AAAAAAAAAAAAAAAAAAAAAA==",
            "--iv",
            "AAAAAAAAAAAAAAAAAAAAAA==",
        ]),
    );
    // On storage of its own: the token cached above would spare it the fetch.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("wxnotify.toml"),
        elsewhere.path().join("wxnotify.toml"),
    )
    .unwrap();
    seen.run(
        "a wrong secret",
        false,
        command(
            elsewhere.path(),
            WRONG_SECRET,
            &[
                &["--json", "send", "--to", &format!("oa:{oa}")][..],
                &shipped,
            ]
            .concat(),
        ),
    );

    // Redis storage with a password: a send, and a server that does not answer.
    let redis = wxnotify_store::testing::RedisServer::start(Some(REDIS_PASSWORD));
    let on_redis = tempfile::tempdir().unwrap();
    let sqlite_storage = "[storage]\nbackend = \"sqlite\"\npath = \"wxnotify.sqlite3\"\n";
    let with_storage = |storage: &str| {
        tenants_toml(
            &sandbox.base_url(),
            &state.mini_app().appid,
            &state.oa_app().appid,
        )
        .replace(sqlite_storage, storage)
    };
    std::fs::write(
        on_redis.path().join("wxnotify.toml"),
        with_storage(&format!(
            "[storage]\nbackend = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        )),
    )
    .unwrap();
    seen.run(
        "send on Redis",
        true,
        command(
            on_redis.path(),
            OA_SECRET,
            &[&["send", "--to", &format!("oa:{oa}")][..], &shipped].concat(),
        ),
    );
    let unreachable = tempfile::tempdir().unwrap();
    std::fs::write(
        unreachable.path().join("wxnotify.toml"),
        with_storage(&format!(
            "[storage]\nbackend = \"redis\"\nurl = \"redis://:{REDIS_PASSWORD}@127.0.0.1:9/0\"\n"
        )),
    )
    .unwrap();
    seen.run(
        "a Redis that does not answer",
        false,
        command(
            unreachable.path(),
            OA_SECRET,
            &[
                &["--json", "send", "--to", &format!("oa:{oa}")][..],
                &shipped,
            ]
            .concat(),
        ),
    );

    // The server: accepted and refused requests, a delivery, a bad callback, the metrics.
    let mut serve = run(&["serve", "--bind", "127.0.0.1:0", "--workers", "1"]);
    let mut child = serve
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wxnotify serve starts");
    // Trace logs fill a pipe quickly: drain stderr while the server runs, or it blocks.
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut stderr_pipe, &mut stderr).unwrap();
        stderr
    });
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let call = |method: &str, path: &str, key: Option<&str>, body: &str| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.expect("an answer");
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let notification = serde_json::json!({
        "recipient": {"official_account": oa},
        "channels": [{"template_message": {"template_id": "TPL_ORDER_SHIPPED", "data": {"thing1": "hi"}}}],
    })
    .to_string();
    let (status, accepted) = call(
        "POST",
        "/v1/shop/notifications",
        Some(API_KEY),
        &notification,
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    seen.add("serve: 202", accepted.clone());
    let id = serde_json::from_str::<serde_json::Value>(&accepted).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, refused) = call(
        "POST",
        "/v1/shop/notifications",
        Some("not-the-key"),
        &notification,
    )
    .await;
    assert_eq!(status, 401, "{refused}");
    seen.add("serve: 401", refused);
    let (status, invalid) = call(
        "POST",
        "/v1/shop/notifications",
        Some(API_KEY),
        "{\"recipient\":1}",
    )
    .await;
    assert_eq!(status, 400, "{invalid}");
    seen.add("serve: 400", invalid);
    let delivered = crate::poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let call = &call;
        let id = &id;
        async move {
            let (_, status) = call(
                "GET",
                &format!("/v1/shop/notifications/{id}"),
                Some(API_KEY),
                "",
            )
            .await;
            if status.contains("\"delivered\"") {
                std::ops::ControlFlow::Break(status)
            } else {
                std::ops::ControlFlow::Continue(format!("not delivered: {status}"))
            }
        }
    })
    .await;
    seen.add("serve: status", delivered);
    let forged = "/v1/shop/wechat/oa?signature=0000&timestamp=1&nonce=2&echostr=3";
    let (status, callback) = call("GET", forged, None, "").await;
    assert_eq!(status, 401, "{callback}");
    seen.add("serve: a forged callback", callback);
    let (_, metrics) = call("GET", "/metrics", None, "").await;
    seen.add("serve: /metrics", metrics);
    // The console's answers, the token cache's state among them.
    for path in ["/v1/shop/console/summary", "/v1/shop/console/notifications"] {
        let (status, answer) = call("GET", path, Some(OPERATOR_KEY), "").await;
        assert_eq!(status, 200, "{path}: {answer}");
        seen.add(format!("serve: {path}"), answer);
    }
    let (status, refused) = call("GET", "/v1/shop/console/summary", Some("nope"), "").await;
    assert_eq!(status, 401, "{refused}");
    seen.add("serve: console 401", refused);
    child.kill().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    seen.add("serve: stdout", first + &rest);
    child.wait().unwrap();
    let stderr = stderr_reader.join().unwrap();
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "logs at every level were on"
    );
    seen.add("serve: stderr", stderr);

    // What is stored: every row of every table, but the token cache and the session keys.
    add_stored_values(&mut seen, &dir.path().join("wxnotify.sqlite3"));

    // Every access token the sandbox handed out, and the login code.
    let mut secrets: Vec<(&str, String)> = vec![
        ("the mini-program's AppSecret", MINI_SECRET.into()),
        ("the official account's AppSecret", OA_SECRET.into()),
        ("a wrong AppSecret", WRONG_SECRET.into()),
        ("the callback token", CALLBACK_TOKEN.into()),
        ("the operator key", OPERATOR_KEY.into()),
        ("the EncodingAESKey", AES_KEY.into()),
        ("the API key", API_KEY.into()),
        ("the session key", SESSION_KEY.into()),
        ("the Redis password", REDIS_PASSWORD.into()),
        ("the js_code", code),
    ];
    for request in state.requests() {
        if let Some(token) = request.query.get("access_token") {
            secrets.push(("an access token", token.clone()));
        }
    }
    assert!(
        secrets.iter().any(|(name, _)| *name == "an access token"),
        "the commands used access tokens"
    );
    seen.assert_free_of(&secrets);
}
