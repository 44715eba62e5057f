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
pub fn runtime_with_tenant(
    engine: &wxnotify::Engine,
    id: &str,
    wechat: std::net::SocketAddr,
) -> (wxnotify::Runtime, std::sync::Arc<wxnotify::Tenant>) {
    let runtime = wxnotify::Runtime::new(
        engine,
        std::sync::Arc::new(wxnotify_store::MemoryBackend::new()),
    )
    .expect("runtime");
    let file = wxnotify::tenant::TenantsFile::parse(
        &format!(
            "[tenants.{id}]\napi_base = \"http://{wechat}\"\n\
             [tenants.{id}.limits]\nconcurrency = 1000\n\
             [tenants.{id}.official_account]\nappid = \"wx0ac0a0c0a0c00002\"\nsecret = \"s\"\n"
        ),
        "bench",
    )
    .expect("tenants file");
    let resolved = file.resolve_all(|_| None).expect("resolves").remove(0);
    let tenant = runtime.add_tenant(resolved).expect("tenant added");
    (runtime, tenant)
}

/// The access token it hands out.
pub const TOKEN: &str = "BENCH_TOKEN_0123456789";

/// A WeChat that says yes at once.
pub async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                let path = request.uri().path().to_owned();
                // Read the body, as WeChat would, before answering.
                let _ = request.into_body().collect().await;
                let answer = if path == "/cgi-bin/stable_token" {
                    format!(r#"{{"access_token":"{TOKEN}","expires_in":7200}}"#)
                } else {
                    r#"{"errcode":0,"errmsg":"ok","msgid":200228332}"#.to_owned()
                };
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(answer)))
                        .expect("a response"),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
