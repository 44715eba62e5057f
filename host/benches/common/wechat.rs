//! A WeChat that says yes at once, for the benches: `stable_token` and `template/send`
//! answered on keep-alive connections with `Content-Length`, so what a bench measures is the
//! client side.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A runtime with one tenant `id` whose official account is served by the WeChat at `wechat`
/// (the fake below), with room for 1 000 calls at once.
#[allow(dead_code, reason = "not every bench has one tenant in memory")]
pub fn runtime_with_tenant(
    engine: &wxnotify::Engine,
    id: &str,
    wechat: std::net::SocketAddr,
) -> (wxnotify::Runtime, std::sync::Arc<wxnotify::Tenant>) {
    let backend = std::sync::Arc::new(wxnotify_store::MemoryBackend::new());
    let (runtime, mut tenants) = runtime_with_tenants(engine, backend, &[id], wechat);
    (runtime, tenants.remove(0))
}

/// A tenant as [`runtime_with_tenant`] makes one, whose runtime lives until the bench ends (it
/// is leaked, as a server would keep it), for benches that only call the tenant.
#[allow(dead_code, reason = "not every bench calls a tenant directly")]
pub fn tenant_for_the_run(
    engine: &wxnotify::Engine,
    id: &str,
    wechat: std::net::SocketAddr,
) -> std::sync::Arc<wxnotify::Tenant> {
    let (runtime, tenant) = runtime_with_tenant(engine, id, wechat);
    Box::leak(Box::new(runtime));
    tenant
}

/// A runtime on `backend` with tenants `ids`, as [`runtime_with_tenant`] makes one.
pub fn runtime_with_tenants(
    engine: &wxnotify::Engine,
    backend: wxnotify_store::SharedBackend,
    ids: &[&str],
    wechat: std::net::SocketAddr,
) -> (wxnotify::Runtime, Vec<std::sync::Arc<wxnotify::Tenant>>) {
    let runtime = wxnotify::Runtime::new(engine, backend).expect("runtime");
    let file: String = ids
        .iter()
        .map(|id| {
            format!(
                "[tenants.{id}]\napi_base = \"http://{wechat}\"\n\
                 [tenants.{id}.limits]\nconcurrency = 1000\n\
                 [tenants.{id}.official_account]\nappid = \"wx0ac0a0c0a0c00002\"\nsecret = \"s\"\n"
            )
        })
        .collect();
    let file = wxnotify::tenant::TenantsFile::parse(&file, "bench").expect("tenants file");
    let tenants = file
        .resolve_all(|_| None)
        .expect("resolves")
        .into_iter()
        .map(|resolved| runtime.add_tenant(resolved).expect("tenant added"))
        .collect();
    (runtime, tenants)
}

/// The access token it hands out.
pub const TOKEN: &str = "BENCH_TOKEN_0123456789";

/// The one follower `user/info` knows, and its unionid.
pub const FOLLOWER: &str = "oOA0000000000000000000000001";
pub const UNIONID: &str = "oU00000000000000000000000001";

/// A WeChat that says yes at once.
#[allow(dead_code, reason = "the token bench counts")]
pub async fn serve(listener: tokio::net::TcpListener) {
    serve_counting(listener, std::sync::Arc::default()).await;
}

/// [`serve`], counting the access tokens it hands out in `token_fetches`.
pub async fn serve_counting(
    listener: tokio::net::TcpListener,
    token_fetches: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let token_fetches = token_fetches.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let token_fetches = token_fetches.clone();
                async move {
                    let path = request.uri().path().to_owned();
                    // Read the body, as WeChat would, before answering.
                    let _ = request.into_body().collect().await;
                    let answer = if path == "/cgi-bin/stable_token" {
                        token_fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        format!(r#"{{"access_token":"{TOKEN}","expires_in":7200}}"#)
                    } else if path == "/cgi-bin/user/info" {
                        format!(r#"{{"subscribe":1,"openid":"{FOLLOWER}","unionid":"{UNIONID}"}}"#)
                    } else {
                        r#"{"errcode":0,"errmsg":"ok","msgid":200228332}"#.to_owned()
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer)))
                            .expect("a response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
