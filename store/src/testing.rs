//! Test support, for this crate's tests and (with feature `test-support`) other crates' tests:
//! a `redis-server` of the test's own, so the Redis paths are tested against a real server.
//!
//! Without `redis-server` installed, [`RedisServer::start`] panics saying how to install it:
//! silently skipping would let the Redis paths go untested.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::{RedisBackend, StoreError};

const MISSING_SERVER: &str = "redis-server is not installed, and the Redis backend's tests need \
     it: run scripts/setup.sh (or apt-get install redis-server)";

/// A `redis-server` of the caller's own on a free port of 127.0.0.1, without persistence,
/// stopped (killed) on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    password: Option<String>,
    /// The server's working directory and log file.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start(password: Option<&str>) -> Self {
        // The port is free when we look, but another process may take it before redis-server
        // binds it; then redis-server exits at once and we try another port.
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Self::start_on(free_port(), password) {
                Ok(server) => return server,
                Err(err) => failures.push(err),
            }
        }
        panic!("could not start redis-server:\n{}", failures.join("\n"));
    }

    /// Starts a server on `port` and waits until it answers.
    pub fn start_on(port: u16, password: Option<&str>) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|err| format!("temp dir: {err}"))?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            // Nothing on disk: tests lose nothing when the server stops.
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            // A log file rather than a pipe: nobody reads a pipe while the server runs, and a
            // full one would block the server.
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!("{MISSING_SERVER}"),
            Err(err) => panic!("cannot run redis-server: {err}"),
        };
        let mut server = Self {
            child,
            port,
            password: password.map(str::to_owned),
            dir,
        };
        // On failure `server` is dropped, which kills the process.
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().map_err(|err| err.to_string())? {
                return Err(format!(
                    "redis-server on port {} exited with {status}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if answers_ping(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {} did not answer PING:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to connect with, password included.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// A backend on this server with a prefix no other backend of this test binary uses.
    pub async fn backend(&self) -> RedisBackend {
        self.backend_with_prefix(&unique_prefix()).await
    }

    /// A backend on this server whose keys all start with `prefix`.
    pub async fn backend_with_prefix(&self, prefix: &str) -> RedisBackend {
        RedisBackend::connect(&self.url())
            .await
            .unwrap_or_else(|err| panic!("connect to {}: {}", self.url(), chain(&err)))
            .with_prefix(prefix)
    }

    /// A plain connection, for looking at (or tampering with) what the backend stored.
    pub async fn raw(&self) -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Errors only mean the process is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server of the tests currently running, started by the first of them and killed once the
/// last one has dropped its handle (a static `Arc` would outlive the test binary's `main` and
/// leave the process running).
pub fn shared_server() -> Arc<RedisServer> {
    static SHARED: Mutex<Weak<RedisServer>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(server) = shared.upgrade() {
        return server;
    }
    let server = Arc::new(RedisServer::start(None));
    *shared = Arc::downgrade(&server);
    server
}

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Whether something speaking RESP listens on `port` (`-NOAUTH` counts: the server is up).
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let mut reply = [0u8; 64];
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_ok()
        && stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"))
}

/// A key prefix no other caller in this process gets.
pub fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("test{}:", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// An error with all its sources, as a host would log it (`Display` and `Debug`).
pub fn chain(err: &StoreError) -> String {
    let mut text = format!("{err} / {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(err) = source {
        text.push_str(&format!(" / {err}"));
        source = err.source();
    }
    text
}
