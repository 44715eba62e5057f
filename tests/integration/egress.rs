//! A component reaches only the hosts its tenant allows: anything else is denied by the host
//! before a connection is made, and the error says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wxnotify::{Error, NotifyError, Recipient};
use wxnotify_tests::{World, template_to};

#[tokio::test]
async fn a_host_outside_the_allow_list_is_denied_without_a_connection() {
    let world = World::in_memory().await;
    // A listener that counts every connection it is offered.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outside = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });

    // The component is told to call `outside`, but the tenant only allows the sandbox.
    let state = world.sandbox.state();
    let (mini, oa) = (state.mini_app(), state.oa_app());
    let toml = format!(
        "[tenants.leaky]\napi_base = \"http://{outside}\"\nallowed_hosts = [\"{}\"]\n\
         [tenants.leaky.mini_program]\nappid = \"{}\"\nsecret = \"{}\"\n\
         [tenants.leaky.official_account]\nappid = \"{}\"\nsecret = \"{}\"\n",
        world.sandbox.addr(),
        mini.appid,
        mini.secret,
        oa.appid,
        oa.secret
    );
    let file = wxnotify::tenant::TenantsFile::parse(&toml, "test").unwrap();
    let leaky = world
        .runtime
        .add_tenant(file.resolve_all(|_| None).unwrap().remove(0))
        .unwrap();

    let notification = template_to(
        Recipient::OfficialAccount("oOA0000000000000000000000001".into()),
        "hello",
        None,
    );
    let error = leaky.send_notification(&notification).await.unwrap_err();

    let Error::Notify {
        tenant,
        error: NotifyError::Config(message),
    } = &error
    else {
        panic!("expected a config error naming the denial, got {error}");
    };
    assert_eq!(tenant, "leaky");
    assert!(message.contains("denied"), "{message}");
    assert!(
        message.contains(&outside.to_string()),
        "names the host: {message}"
    );
    assert!(
        !message.contains("secret=sandbox"),
        "secrets are redacted: {message}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection was attempted"
    );
    assert!(
        world.sandbox.state().requests().is_empty(),
        "nothing reached the sandbox either"
    );
}

#[tokio::test]
async fn an_embedder_sets_the_limits_of_outgoing_http() {
    let world = World::in_memory().await;
    // Smaller than any token answer: the egress gate cuts it off, whatever the component asks.
    let limits = wxnotify::wasi_http::HttpLimits {
        max_response_bytes: 32,
        ..wxnotify::wasi_http::HttpLimits::default()
    };
    let runtime = wxnotify::Runtime::with_http_limits(
        wxnotify_tests::engine(),
        world.backend.clone(),
        limits,
    )
    .unwrap();
    let small = runtime
        .add_tenant(world.resolve_tenant("small", None, None, ""))
        .unwrap();
    let error = small
        .send_notification(&template_to(
            Recipient::OfficialAccount(world.new_follower_oa_openid()),
            "hi",
            None,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Notify { error: NotifyError::Unavailable { message: m, .. }, .. }
            if m.contains("stable_token") && m.contains("exceeds limit: 32 bytes")),
        "{error}"
    );
    assert_eq!(
        world.requests_to("/cgi-bin/message/template/send"),
        0,
        "no token, no send"
    );
    assert!(world.requests_to("/cgi-bin/stable_token") >= 1);
}
