//! What the benches of `wxnotify serve` share: the outboxes they compare and their HTTP client.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wxnotify_store::outbox::{RedisOutbox, SharedOutbox, SqliteOutbox};
use wxnotify_store::testing::RedisServer;

/// A pooled HTTP/1 client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `request` and reads the whole answer.
pub async fn exchange(client: &HttpClient, request: http::Request<Full<Bytes>>) -> (u16, Bytes) {
    let response = client.request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

/// A SQLite outbox in `dir`.
pub fn sqlite_outbox(dir: &tempfile::TempDir) -> SharedOutbox {
    Arc::new(SqliteOutbox::open(dir.path().join("outbox.sqlite3")).expect("sqlite outbox"))
}

/// A Redis outbox on a server of its own (running while the returned server lives), or `None`
/// when `redis-server` is not installed.
pub async fn redis_outbox() -> Option<(RedisServer, SharedOutbox)> {
    let installed = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !installed {
        return None;
    }
    let redis = RedisServer::start(None);
    let backend = wxnotify_store::RedisBackend::connect(&redis.url())
        .await
        .expect("redis");
    Some((redis, Arc::new(RedisOutbox::new(backend))))
}
