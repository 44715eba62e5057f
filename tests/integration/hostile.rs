//! Hostile plugins: a tenant's component that tries what a malicious or broken plugin would
//! (`tests/fixtures/misbehaving`, one behaviour per recipient id). Each is stopped with an error
//! naming the tenant, the host keeps serving, and a neighbouring tenant's sends succeed while
//! it happens.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use wxnotify::{Delivery, Error, NotifyError, Recipient, Tenant};
use wxnotify_store::Scope;
use wxnotify_tests::{World, template_to};

/// Tenant `hostile` running the fixture, with `extra` TOML in its table (after `plugin`).
fn hostile(world: &World, extra: &str) -> Arc<Tenant> {
    world.add_tenant(
        "hostile",
        &format!(
            "plugin = \"{}\"\n{extra}",
            env!("WXNOTIFY_FIXTURE_MISBEHAVING")
        ),
    )
}

/// The fixture's call for recipient id `id`.
async fn ask(tenant: &Tenant, id: &str) -> Result<Delivery, Error> {
    tenant
        .send_notification(&template_to(
            Recipient::OfficialAccount(id.to_owned()),
            "x",
            None,
        ))
        .await
}

/// Runs `attack` while tenant `shop` sends `count` template messages; both results.
async fn during<T: Send + 'static>(
    world: &World,
    count: usize,
    attack: impl Future<Output = T> + Send + 'static,
) -> T {
    let oa = world.new_follower_oa_openid();
    let attack = tokio::spawn(attack);
    // Let the attack start first: the neighbour's sends happen while it runs.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let shop = world.shop();
    for i in 0..count {
        let notification = template_to(
            Recipient::OfficialAccount(oa.clone()),
            "hello",
            Some(&format!("neighbour-{i}")),
        );
        shop.send_notification(&notification)
            .await
            .expect("the neighbour's send succeeds during the attack");
    }
    attack.await.expect("the attack task ends")
}

fn failure_of(result: Result<Delivery, Error>) -> Error {
    match result {
        Ok(delivery) => panic!("the hostile call succeeded: {}", delivery.openid),
        Err(error) => error,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_outside_the_allow_list_is_denied_before_any_connection() {
    let world = World::in_memory().await;
    let tenant = hostile(&world, "");
    // Somewhere the tenant may not go: another loopback address than its api_base's.
    let elsewhere = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let url = format!("http://{}/steal", elsewhere.local_addr().unwrap());
    let attack = {
        let tenant = tenant.clone();
        let id = format!("egress:{url}");
        async move { ask(&tenant, &id).await }
    };
    let error = failure_of(during(&world, 5, attack).await);
    assert!(
        matches!(&error, Error::Notify { tenant, error: NotifyError::Config(m) }
            if tenant == "hostile" && m.contains("HttpRequestDenied")),
        "{error}"
    );
    assert!(error.to_string().contains("tenant `hostile`"), "{error}");
    let connected = tokio::time::timeout(Duration::from_millis(100), elsewhere.accept()).await;
    assert!(connected.is_err(), "nothing connected to the denied host");
    // Its own api_base is reachable: the allow-list is what stopped it, not the fixture.
    let allowed = format!("egress:{}/cgi-bin/token", world.sandbox.base_url());
    let reached = ask(&tenant, &allowed).await.unwrap();
    assert!(
        reached.openid.starts_with("egress-allowed:"),
        "{}",
        reached.openid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_bucket_and_key_names_reach_nothing_of_another_tenant() {
    let world = World::in_memory().await;
    let oa = world.new_follower_oa_openid();
    let shop = world.shop();
    // The neighbour has a token and identities stored.
    shop.send_notification(&template_to(
        Recipient::OfficialAccount(oa.clone()),
        "t",
        None,
    ))
    .await
    .unwrap();
    let shop_tokens = world.keys("shop", "tokens").await;
    assert!(!shop_tokens.is_empty());
    // On the same official account as `shop` (the world's tenants share the sandbox's), so it
    // knows the very key `shop` keeps its token under.
    let tenant = hostile(&world, "");

    let attack = {
        let tenant = tenant.clone();
        async move { ask(&tenant, "escape").await }
    };
    let seen = during(&world, 5, attack).await.unwrap().openid;
    // Only the three buckets exist, each the tenant's own: nothing of the neighbour's shows.
    for (bucket, _) in wxnotify_fixture_escapes() {
        if !["tokens", "users", "callbacks"].contains(&bucket) {
            assert!(
                seen.contains(&format!("{bucket}:refused")),
                "{bucket}: {seen}"
            );
        }
    }
    for key in &shop_tokens {
        assert!(!seen.contains(key.as_str()), "saw {key}: {seen}");
    }
    let stored = world
        .backend
        .get(&Scope::new("shop", "tokens"), &shop_tokens[0])
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("forged"));
    assert!(!String::from_utf8_lossy(&stored).contains("poisoned"));
    // Its writes landed in its own namespace, where they poison nobody.
    let own = world.keys("hostile", "tokens").await;
    assert!(
        own.iter().any(|k| k.starts_with("access_token/")),
        "{own:?}"
    );
    // The neighbour still sends with its own token: one fetch in all.
    shop.send_notification(&template_to(Recipient::OfficialAccount(oa), "again", None))
        .await
        .unwrap();
    assert_eq!(world.sandbox.state().token_fetches(&world.oa_appid()), 1);
}

/// The crafted names the fixture tries (`misbehaving::ESCAPES`), spelled here too: the test
/// must not trust the fixture to say what it attempted.
fn wxnotify_fixture_escapes() -> [(&'static str, &'static str); 9] {
    [
        ("tokens", "../shop/tokens/x"),
        ("../shop/tokens", "x"),
        ("shop/tokens", "x"),
        ("tokens/../../shop", "x"),
        ("shop:tokens", "x"),
        ("", "x"),
        ("tokens\0shop", "x"),
        ("users", "../../shop/users/x"),
        ("callbacks", "%2e%2e/shop"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_mid_call_fails_that_call_and_the_next_runs_fresh() {
    let world = World::in_memory().await;
    let tenant = hostile(&world, "");
    let attack = {
        let tenant = tenant.clone();
        async move { ask(&tenant, "trap").await }
    };
    let error = failure_of(during(&world, 5, attack).await);
    assert!(
        matches!(&error, Error::Component { tenant, message }
            if tenant == "hostile" && message.contains("unreachable")),
        "{error}"
    );
    assert_eq!(ask(&tenant, "fine").await.unwrap().openid, "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_bounded_by_the_tenants_memory_limit() {
    let world = World::in_memory().await;
    let tenant = hostile(&world, "[tenants.hostile.limits]\nmemory_mb = 32\n");
    // Within the limit: the host takes it (and the caller decides what to keep of it).
    let within = ask(&tenant, "huge:4").await.unwrap();
    assert_eq!(
        (within.openid.len(), within.truncated.len()),
        (4 << 20, 100_000)
    );
    // Beyond it: the instance hits its limit before it can answer.
    let attack = {
        let tenant = tenant.clone();
        async move { ask(&tenant, "huge:64").await }
    };
    let error = failure_of(during(&world, 5, attack).await);
    assert!(
        matches!(&error, Error::MemoryLimit { tenant, limit_bytes }
            if tenant == "hostile" && *limit_bytes == 32 << 20),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_body_held_open_is_dropped_at_the_deadline() {
    let world = World::in_memory().await;
    // The tenant's api_base (so its allow-list) is a listener of the test's own.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", upstream.local_addr().unwrap());
    let toml = format!(
        "[tenants.hostile]\nplugin = \"{}\"\napi_base = \"{base}\"\n\
         [tenants.hostile.limits]\ndeadline_ms = 1500\n",
        env!("WXNOTIFY_FIXTURE_MISBEHAVING")
    );
    let resolved = wxnotify::tenant::TenantsFile::parse(&toml, "test")
        .unwrap()
        .resolve_all(|_| None)
        .unwrap()
        .remove(0);
    let tenant = world.runtime.add_tenant(resolved).unwrap();
    let watcher = tokio::spawn(async move {
        let (mut connection, _) = upstream.accept().await.unwrap();
        let mut received = Vec::new();
        // Until the host closes the connection: it must, once it gives up on the call.
        let closed = tokio::time::timeout(
            Duration::from_secs(10),
            connection.read_to_end(&mut received),
        )
        .await;
        (
            closed.is_ok(),
            String::from_utf8_lossy(&received).into_owned(),
        )
    });
    let attack = {
        let tenant = tenant.clone();
        async move { ask(&tenant, "hold-body").await }
    };
    let error = failure_of(during(&world, 5, attack).await);
    assert!(
        matches!(&error, Error::Deadline { tenant, deadline_ms } if tenant == "hostile" && *deadline_ms == 1500),
        "{error}"
    );
    let (closed, received) = watcher.await.unwrap();
    assert!(received.starts_with("POST /cgi-bin/held"), "{received}");
    assert!(closed, "the host closed the held connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_value_flood_ends_at_the_deadline_inside_its_own_namespace() {
    let world = World::in_memory().await;
    let tenant = hostile(&world, "[tenants.hostile.limits]\ndeadline_ms = 1000\n");
    let before = world.keys("shop", "users").await;
    let attack = {
        let tenant = tenant.clone();
        async move { ask(&tenant, "flood").await }
    };
    let error = failure_of(during(&world, 5, attack).await);
    assert!(
        matches!(&error, Error::Deadline { tenant, .. } if tenant == "hostile"),
        "{error}"
    );
    let flooded = world.keys("hostile", "users").await;
    assert!(!flooded.is_empty(), "it wrote before it was stopped");
    // Every entry it wrote is whole: writes are atomic, a stopped call leaves none half-done.
    for key in flooded.iter().take(50) {
        let value = world
            .backend
            .get(&Scope::new("hostile", "users"), key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(value, vec![0x5A_u8; 1024], "{key}");
    }
    let after = world.keys("shop", "users").await;
    assert!(
        after.iter().all(|k| !k.starts_with("flood/")) && after.len() >= before.len(),
        "the neighbour's users bucket holds only its own keys"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_files_and_raw_sockets_are_out_of_reach() {
    let world = World::in_memory().await;
    let tenant = hostile(&world, "");
    let attack = {
        let tenant = tenant.clone();
        async move { ask(&tenant, "files").await }
    };
    let error = failure_of(during(&world, 5, attack).await);
    let report = error.to_string();
    assert!(report.contains("tenant `hostile`"), "{report}");
    // No directory is preopened: every path fails, nothing was read.
    for path in ["/etc/passwd", "/proc/self/environ"] {
        assert!(report.contains(&format!("{path}: ")), "{report}");
    }
    assert!(!report.contains("read "), "{report}");

    // A raw TCP connection around wasi:http, even to its own api_base's host, is refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let attack = {
        let tenant = tenant.clone();
        async move { ask(&tenant, &format!("socket:{addr}")).await }
    };
    let error = failure_of(during(&world, 5, attack).await);
    assert!(
        matches!(&error, Error::Notify { tenant, error: NotifyError::Config(m) }
            if tenant == "hostile" && m.contains(&addr.to_string())),
        "{error}"
    );
    let connected = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
    assert!(connected.is_err(), "nothing connected: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_and_unbounded_allocation_are_stopped_while_a_neighbour_sends() {
    let world = World::in_memory().await;
    let tenant = hostile(
        &world,
        "[tenants.hostile.limits]\ndeadline_ms = 1000\nmemory_mb = 16\n",
    );
    let attack = {
        let tenant = tenant.clone();
        async move { ask(&tenant, "loop").await }
    };
    let error = failure_of(during(&world, 5, attack).await);
    assert!(
        matches!(&error, Error::Deadline { tenant, .. } if tenant == "hostile"),
        "{error}"
    );
    let attack = {
        let tenant = tenant.clone();
        async move { ask(&tenant, "alloc").await }
    };
    let error = failure_of(during(&world, 5, attack).await);
    assert!(
        matches!(&error, Error::MemoryLimit { tenant, .. } if tenant == "hostile"),
        "{error}"
    );
}
