//! Shared harness of the end-to-end tests: the real component (built by `host/build.rs`) in
//! the real host, against the WeChat API sandbox on 127.0.0.1.
//!
//! Every test builds its own [`World`] — a sandbox, storage and a runtime — but all share one
//! [`engine`], so the component is compiled once per test binary.

pub mod host_world;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use serde_json::Value;
use wxnotify::tenant::{ResolvedTenant, TenantsFile};
use wxnotify::{
    ChannelMessage, Delivery, Engine, Notification, Recipient, Runtime, TemplateMessage, Tenant,
    User,
};
use wxnotify_sandbox::{Sandbox, SandboxConfig, SeedUser, SeededUser};
use wxnotify_store::{MemoryBackend, Scope, SharedBackend, SqliteBackend};

/// The engine of the whole test binary.
pub fn engine() -> &'static Engine {
    static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new().expect("engine"));
    &ENGINE
}

/// Where a world keeps its key-value data.
pub enum Storage {
    /// In process memory.
    Memory,
    /// A SQLite file (the embedded default) in the given directory.
    Sqlite(tempfile::TempDir),
}

/// A sandbox, a storage backend and a runtime with one tenant, `shop`, pointed at the sandbox.
pub struct World {
    pub sandbox: Sandbox,
    pub backend: SharedBackend,
    pub runtime: Runtime,
    pub storage: Storage,
}

impl World {
    /// A world on SQLite storage, the default users get.
    pub async fn start() -> World {
        World::with(
            SandboxConfig::default(),
            Storage::Sqlite(tempfile::tempdir().expect("tempdir")),
        )
        .await
    }

    /// A world on in-memory storage.
    pub async fn in_memory() -> World {
        World::with(SandboxConfig::default(), Storage::Memory).await
    }

    pub async fn with(config: SandboxConfig, storage: Storage) -> World {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let backend: SharedBackend = match &storage {
            Storage::Memory => Arc::new(MemoryBackend::new()),
            Storage::Sqlite(dir) => Arc::new(sqlite(dir.path())),
        };
        World::on(sandbox, backend, storage)
    }

    /// A new runtime on `backend` with its own `shop` tenant, against this world's sandbox: a
    /// restarted process, or a second host sharing storage.
    pub fn another_runtime(&self, backend: SharedBackend) -> World {
        World::on(self.sandbox.clone(), backend, Storage::Memory)
    }

    fn on(sandbox: Sandbox, backend: SharedBackend, storage: Storage) -> World {
        let runtime = Runtime::new(engine(), backend.clone()).expect("runtime");
        let world = World {
            sandbox,
            backend,
            runtime,
            storage,
        };
        world.add_tenant("shop", "");
        world
    }

    /// Registers tenant `id` on the sandbox's accounts; `extra` is TOML added to its table.
    pub fn add_tenant(&self, id: &str, extra: &str) -> Arc<Tenant> {
        self.add_tenant_with_appids(id, None, None, extra)
    }

    /// [`World::add_tenant`], with `mini_appid` / `oa_appid` replacing the sandbox's appids
    /// when given (the secrets stay the sandbox's).
    pub fn add_tenant_with_appids(
        &self,
        id: &str,
        mini_appid: Option<&str>,
        oa_appid: Option<&str>,
        extra: &str,
    ) -> Arc<Tenant> {
        self.runtime
            .add_tenant(self.resolve_tenant(id, mini_appid, oa_appid, extra))
            .expect("tenant is added")
    }

    /// Tenant `id` on the sandbox's accounts as the tenants file resolves it, for a runtime of
    /// the test's own; `mini_appid` / `oa_appid` and `extra` as for
    /// [`World::add_tenant_with_appids`].
    pub fn resolve_tenant(
        &self,
        id: &str,
        mini_appid: Option<&str>,
        oa_appid: Option<&str>,
        extra: &str,
    ) -> ResolvedTenant {
        let state = self.sandbox.state();
        let (mini, oa) = (state.mini_app(), state.oa_app());
        let toml = format!(
            "[tenants.{id}]\napi_base = \"{base}\"\n{extra}\n\
             [tenants.{id}.mini_program]\nappid = \"{}\"\nsecret = \"{}\"\n\
             [tenants.{id}.official_account]\nappid = \"{}\"\nsecret = \"{}\"\n",
            mini_appid.unwrap_or(&mini.appid),
            mini.secret,
            oa_appid.unwrap_or(&oa.appid),
            oa.secret,
            base = self.sandbox.base_url(),
        );
        let file = TenantsFile::parse(&toml, "test").expect("tenants file");
        file.resolve_all(|_| None)
            .expect("tenant resolves")
            .remove(0)
    }

    pub fn shop(&self) -> Arc<Tenant> {
        self.runtime.tenant("shop").expect("shop tenant")
    }

    /// A user who follows the OA, with every identity, whose mapping the component has learned
    /// the way production does: login (jscode2session) and a follower sync.
    pub async fn follower_known_to_shop(&self) -> SeededUser {
        let user = self.sandbox.state().add_user(SeedUser::follower());
        self.learn(&user).await;
        user
    }

    /// The OA openid of a new follower (every identity) the component has not learned yet.
    pub fn new_follower_oa_openid(&self) -> String {
        let user = self.sandbox.state().add_user(SeedUser::follower());
        user.oa_openid.expect("a follower has an OA openid")
    }

    /// Logs the user with mini-program openid `mini` in to `tenant` (jscode2session).
    pub async fn log_in(&self, tenant: &Tenant, mini: &str) -> User {
        let code = self
            .sandbox
            .state()
            .issue_login_code(mini)
            .expect("login code");
        tenant.login(&code).await.expect("login")
    }

    /// Logs `user` in to the mini-program and syncs the OA's followers.
    pub async fn learn(&self, user: &SeededUser) {
        let shop = self.shop();
        let mini = user
            .mini_openid
            .as_deref()
            .expect("user has a mini-program openid");
        self.log_in(&shop, mini).await;
        loop {
            if shop.sync_followers(false).await.expect("sync").done {
                break;
            }
        }
    }

    pub fn oa_appid(&self) -> String {
        self.sandbox.state().oa_app().appid
    }

    pub fn mini_appid(&self) -> String {
        self.sandbox.state().mini_app().appid
    }

    /// How many requests to `path` the sandbox has recorded.
    pub fn requests_to(&self, path: &str) -> usize {
        self.sandbox
            .state()
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Every key of `tenant` in `bucket`.
    pub async fn keys(&self, tenant: &str, bucket: &str) -> Vec<String> {
        let (keys, _) = self
            .backend
            .list_keys(&Scope::new(tenant, bucket), None, 1000)
            .await
            .expect("list keys");
        keys
    }
}

impl Drop for World {
    /// Every end-to-end test checks the wire too: each request that reached the sandbox was
    /// framed the way every peer SDK frames it (a body with `Content-Length`, never chunked;
    /// `docs/wechat-api.md` §9), since a front end that reads bodies by length alone sees a
    /// chunked one as empty and answers `47001`.
    fn drop(&mut self) {
        if !std::thread::panicking()
            && let Some(problem) = self.sandbox.state().framing_problem()
        {
            panic!("{problem}");
        }
    }
}

/// Calls `tenant`'s JSON API (its `wasi:http/incoming-handler`) with a JSON `body`; returns
/// the status and the JSON answer.
pub async fn call(tenant: &Tenant, method: &str, path: &str, body: &str) -> (u16, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://wxnotify.local{path}"))
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_owned()))
        .expect("request");
    let response = tenant.handle_http(request).await.expect("handled");
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(response.body()).expect("JSON answer"),
    )
}

/// A SQLite backend on `dir/wxnotify.sqlite3`.
pub fn sqlite(dir: &Path) -> SqliteBackend {
    SqliteBackend::open(dir.join("wxnotify.sqlite3")).expect("sqlite opens")
}

/// An OA template message (`TPL_ORDER_SHIPPED`, `thing1` = `text`) for `recipient`.
pub fn template_to(
    recipient: Recipient,
    text: &str,
    idempotency_key: Option<&str>,
) -> Notification {
    Notification {
        recipient,
        channels: vec![ChannelMessage::TemplateMessage(TemplateMessage {
            template_id: "TPL_ORDER_SHIPPED".into(),
            data: data(&[("thing1", text)]),
            url: None,
            miniprogram: None,
        })],
        idempotency_key: idempotency_key.map(str::to_owned),
    }
}

/// Sends every notification from `tenant` at once, each on its own task; all must deliver.
pub async fn send_all_at_once(
    tenant: &Arc<Tenant>,
    notifications: Vec<Notification>,
) -> Vec<Delivery> {
    let sends: Vec<_> = notifications
        .into_iter()
        .map(|notification| {
            let tenant = Arc::clone(tenant);
            tokio::spawn(async move { tenant.send_notification(&notification).await })
        })
        .collect();
    let mut deliveries = Vec::with_capacity(sends.len());
    for send in sends {
        deliveries.push(
            send.await
                .expect("the send task ran")
                .expect("the notification was delivered"),
        );
    }
    deliveries
}

/// `(key, value)` pairs from string slices.
pub fn data(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub use wxnotify_store::testing::RedisServer;
