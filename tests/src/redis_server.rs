//! A `redis-server` of the test's own. Shared by the test crates: `wxnotify-tests` uses it as a
//! module, `host/tests/serve.rs` includes this file by path (it cannot depend on this crate,
//! which depends on `wxnotify`).

/// A `redis-server` of the test's own on a free loopback port, stopped on drop.
pub struct RedisServer {
    child: std::process::Child,
    pub url: String,
}

impl RedisServer {
    /// Starts one; fails, naming the fix, when redis-server is not installed.
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): run scripts/setup.sh or apt-get install redis-server"));
        let server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "redis-server did not start listening"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
