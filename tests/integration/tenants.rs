//! Tenants in one runtime are isolated — storage, tokens, limits, components — and several
//! processes sharing one SQLite file still make one token fetch between them.

use std::sync::Arc;

use wxnotify::{Error, Notification, NotifyError, Recipient};
use wxnotify_tests::{World, send_all_at_once, template_to};

fn hello(recipient: Recipient, key: &str) -> Notification {
    template_to(recipient, "hello", Some(key))
}

/// `count` notifications to OA openid `oa`, keyed `{prefix}-{i}`.
fn to_many(oa: &str, prefix: &str, count: usize) -> Vec<Notification> {
    (0..count)
        .map(|i| {
            hello(
                Recipient::OfficialAccount(oa.to_owned()),
                &format!("{prefix}-{i}"),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_tenant_cannot_see_another_tenants_keys() {
    let world = World::start().await;
    let user = world.follower_known_to_shop().await;
    let other = world.add_tenant("other", "");

    // Same accounts, same storage file: still nothing of shop's is visible to other.
    let mini = Recipient::MiniProgram(user.mini_openid.clone().unwrap());
    match other
        .send_notification(&hello(mini.clone(), "k"))
        .await
        .unwrap_err()
    {
        Error::Notify {
            error: NotifyError::NotFound(_),
            ..
        } => {}
        error => panic!("expected not-found, got {error}"),
    }
    assert!(world.shop().resolve_user(&mini).await.is_ok());
    for bucket in ["users", "tokens"] {
        let keys = world.keys("other", bucket).await;
        assert!(keys.is_empty(), "{bucket}: {keys:?}");
        let keys = world.keys("shop", bucket).await;
        assert!(!keys.is_empty(), "{bucket}");
    }
    // Its own token, too: the OA token other uses was fetched for other.
    let before = world.sandbox.state().token_fetches(&world.oa_appid());
    other
        .send_notification(&hello(
            Recipient::OfficialAccount(user.oa_openid.clone().unwrap()),
            "k",
        ))
        .await
        .unwrap();
    assert_eq!(
        world.sandbox.state().token_fetches(&world.oa_appid()),
        before + 1
    );
}

const CHILD: &str = "tenants::second_process_sender";

/// Two processes on one SQLite file send 250 notifications each, all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_sqlite_file_fetch_one_token_for_500_sends() {
    let world = World::start().await;
    let oa = world.new_follower_oa_openid();
    let wxnotify_tests::Storage::Sqlite(dir) = &world.storage else {
        unreachable!()
    };

    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            CHILD,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WXNOTIFY_CHILD_SANDBOX", world.sandbox.base_url())
        .env("WXNOTIFY_CHILD_DB", dir.path())
        .env("WXNOTIFY_CHILD_OPENID", &oa)
        .kill_on_drop(true)
        .output();
    let shop = world.shop();
    let ours = send_all_at_once(&shop, to_many(&oa, "parent", 250));
    let (child, _) = tokio::join!(child, ours);
    let child = child.unwrap();
    assert!(
        child.status.success(),
        "the second process failed:\n{}\n{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(
        String::from_utf8_lossy(&child.stdout).contains("1 passed"),
        "the child really ran"
    );
    assert_eq!(
        world.sandbox.state().delivered_template_messages().len(),
        500
    );
    assert_eq!(world.sandbox.state().token_fetches(&world.oa_appid()), 1);
}

/// The second process of the test above; run only by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run by two_processes_on_one_sqlite_file_fetch_one_token_for_500_sends"]
async fn second_process_sender() {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"))
    };
    let (base, db, oa) = (
        var("WXNOTIFY_CHILD_SANDBOX"),
        var("WXNOTIFY_CHILD_DB"),
        var("WXNOTIFY_CHILD_OPENID"),
    );
    let backend = Arc::new(wxnotify_tests::sqlite(std::path::Path::new(&db)));
    let runtime = wxnotify::Runtime::new(wxnotify_tests::engine(), backend).unwrap();
    let defaults = wxnotify_sandbox::SandboxConfig::default();
    let toml = format!(
        "[tenants.shop]\napi_base = \"{base}\"\n[tenants.shop.official_account]\nappid = \"{}\"\nsecret = \"{}\"\n",
        defaults.official_account.appid, defaults.official_account.secret
    );
    let file = wxnotify::tenant::TenantsFile::parse(&toml, "child").unwrap();
    let shop = runtime
        .add_tenant(file.resolve_all(|_| None).unwrap().remove(0))
        .unwrap();
    send_all_at_once(&shop, to_many(&oa, "child", 250)).await;
}

/// Two runtimes (two hosts) sharing one Redis send 500 notifications at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runtimes_sharing_redis_fetch_one_token_for_500_sends() {
    let redis = wxnotify_tests::RedisServer::start(None);
    let world = World::in_memory().await;
    let oa = world.new_follower_oa_openid();
    let mut tenants = Vec::new();
    for host in ["host-a", "host-b"] {
        let backend: wxnotify_store::SharedBackend = Arc::new(
            wxnotify_store::RedisBackend::connect(&redis.url())
                .await
                .unwrap(),
        );
        tenants.push((host, world.another_runtime(backend)));
    }
    let (a, b) = (tenants[0].1.shop(), tenants[1].1.shop());
    tokio::join!(
        send_all_at_once(&a, to_many(&oa, tenants[0].0, 250)),
        send_all_at_once(&b, to_many(&oa, tenants[1].0, 250)),
    );
    assert_eq!(
        world.sandbox.state().delivered_template_messages().len(),
        500
    );
    assert_eq!(world.sandbox.state().token_fetches(&world.oa_appid()), 1);
}

/// A tenant running the misbehaving test component, with `limits` TOML.
fn misbehaving(world: &World, id: &str, limits: &str) -> Arc<wxnotify::Tenant> {
    world.add_tenant(
        id,
        &format!(
            "plugin = \"{}\"\n[tenants.{id}.limits]\n{limits}",
            env!("WXNOTIFY_FIXTURE_MISBEHAVING")
        ),
    )
}

async fn keeps_sending(world: &World, oa: &str, count: usize) {
    for i in 0..count {
        world
            .shop()
            .send_notification(&hello(
                Recipient::OfficialAccount(oa.to_owned()),
                &format!("steady-{i}"),
            ))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_never_returns_is_stopped_by_its_deadline_while_others_send() {
    let world = World::in_memory().await;
    let oa = world.new_follower_oa_openid();
    let runaway = misbehaving(&world, "runaway", "deadline_ms = 1500");

    let stuck = tokio::spawn(async move {
        runaway
            .send_notification(&hello(Recipient::OfficialAccount("loop".into()), "x"))
            .await
    });
    // Sent while the runaway spins: its epoch callback yields, so it holds no executor thread.
    keeps_sending(&world, &oa, 20).await;

    match stuck.await.unwrap().unwrap_err() {
        Error::Deadline {
            tenant,
            deadline_ms,
        } => assert_eq!((tenant.as_str(), deadline_ms), ("runaway", 1500)),
        other => panic!("expected the deadline, got {other}"),
    }
    assert_eq!(
        world.sandbox.state().delivered_template_messages().len(),
        20,
        "the other tenant was not held up"
    );
}

#[tokio::test]
async fn a_component_allocating_without_bound_hits_its_memory_limit() {
    let world = World::in_memory().await;
    let hungry = misbehaving(&world, "hungry", "memory_mb = 16");
    match hungry
        .send_notification(&hello(Recipient::OfficialAccount("alloc".into()), "x"))
        .await
        .unwrap_err()
    {
        Error::MemoryLimit {
            tenant,
            limit_bytes,
        } => assert_eq!((tenant.as_str(), limit_bytes), ("hungry", 16 << 20)),
        other => panic!("expected the memory limit, got {other}"),
    }
    // The tenant is not broken by it: the next call runs in a fresh instance.
    let fine = hungry
        .send_notification(&hello(Recipient::OfficialAccount("fine".into()), "y"))
        .await
        .unwrap();
    assert_eq!(fine.openid, "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_plugin_swap_under_load_loses_no_call() {
    let world = World::in_memory().await;
    let oa = world.new_follower_oa_openid();
    let other = world.add_tenant("other", "");
    let shop = world.shop();
    let fixture = std::path::PathBuf::from(env!("WXNOTIFY_FIXTURE_MISBEHAVING"));

    let load: Vec<_> = (0..8)
        .map(|worker| {
            let shop = Arc::clone(&shop);
            let oa = oa.clone();
            tokio::spawn(async move {
                let mut deliveries = Vec::new();
                for i in 0..40 {
                    let notification = hello(
                        Recipient::OfficialAccount(oa.clone()),
                        &format!("w{worker}-{i}"),
                    );
                    deliveries.push(
                        shop.send_notification(&notification)
                            .await
                            .expect("no call is lost"),
                    );
                }
                deliveries
            })
        })
        .collect();
    for round in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let path = (round % 2 == 0).then_some(fixture.as_path());
        world.runtime.swap_plugin("shop", path).unwrap();
    }
    let mut by_fixture = 0;
    let mut by_builtin = 0;
    for worker in load {
        for delivery in worker.await.unwrap() {
            // The fixture answers msgid 1 without calling WeChat; the real component sends.
            if delivery.msgid == Some(1) {
                by_fixture += 1
            } else {
                by_builtin += 1
            }
        }
    }
    assert_eq!(by_fixture + by_builtin, 320);
    assert!(
        by_fixture > 0 && by_builtin > 0,
        "both components served calls: {by_fixture} / {by_builtin}"
    );
    assert_eq!(
        world.sandbox.state().delivered_template_messages().len(),
        by_builtin
    );
    assert_eq!(
        shop.plugin_source(),
        "built-in",
        "six swaps end on the built-in component"
    );
    assert_eq!(
        other.plugin_source(),
        "built-in",
        "other tenants see nothing"
    );

    // A broken component is refused, and the tenant keeps the one it had.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let error = world
        .runtime
        .swap_plugin("shop", Some(&broken))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tenant `shop`")
            && error.contains("broken.wasm")
            && error.contains("not a valid component"),
        "{error}"
    );
    assert_eq!(shop.plugin_source(), "built-in");
    shop.send_notification(&hello(Recipient::OfficialAccount(oa), "after"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tenant_with_storage_of_its_own_gets_it_and_is_never_put_on_the_runtimes() {
    let world = World::in_memory().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "storage = {{ backend = \"sqlite\", path = \"{}\" }}",
        dir.path().join("wxnotify.sqlite3").display()
    );
    let resolve = || world.resolve_tenant("own", None, None, &storage);

    let refused = world.runtime.add_tenant(resolve()).unwrap_err();
    assert!(
        refused.to_string().contains("tenant `own`: storage")
            && refused.to_string().contains("add_tenant_with_storage"),
        "{refused}"
    );
    assert!(
        world.runtime.tenant("own").is_err(),
        "nothing was registered"
    );

    let own = world
        .runtime
        .add_tenant_with_storage(resolve())
        .await
        .unwrap();
    let oa_openid = world.new_follower_oa_openid();
    own.send_notification(&hello(Recipient::OfficialAccount(oa_openid), "own-1"))
        .await
        .unwrap();
    assert!(
        world.keys("own", "tokens").await.is_empty(),
        "nothing in the runtime's storage"
    );
    let own_storage: wxnotify_store::SharedBackend = Arc::new(wxnotify_tests::sqlite(dir.path()));
    let (keys, _) = own_storage
        .list_keys(&wxnotify_store::Scope::new("own", "tokens"), None, 100)
        .await
        .unwrap();
    assert!(
        !keys.is_empty(),
        "the token is cached in the tenant's own file"
    );
}
