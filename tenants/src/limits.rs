//! What the tenants file sets beside accounts: a tenant's limits and allowed hosts, and the
//! engine's options. Plain data, read by the runtime.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Resource limits of a tenant's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory one call's component instance may grow to.
    pub memory_bytes: usize,
    /// Wall-clock time one call may take, HTTP and waiting for a slot included.
    pub deadline: Duration,
    /// Calls of this tenant that may run at once; more wait for a slot.
    pub concurrency: usize,
    /// The pace of `wxnotify serve`'s workers for this tenant, per process (`None`:
    /// unlimited). Calls made directly through a runtime's tenant are not limited by it.
    pub send_rate: Option<SendRate>,
}

/// A sending pace: at most `count` notifications per `per`, in bursts of up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRate {
    /// Notifications per period; at least 1.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl SendRate {
    /// `count` a second.
    pub fn per_second(count: u32) -> SendRate {
        SendRate {
            count,
            per: Duration::from_secs(1),
        }
    }

    /// `count` a minute: for accounts whose limit is per minute (a WeCom robot: 20).
    pub fn per_minute(count: u32) -> SendRate {
        SendRate {
            count,
            per: Duration::from_secs(60),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(60),
            concurrency: 256,
            send_rate: None,
        }
    }
}

/// The `host:port` pairs a tenant may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    authorities: BTreeSet<String>,
}

impl AllowList {
    /// An allow-list of `host:port` or `host` entries (`host` alone allows ports 80 and 443).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(entries: I) -> Self {
        let mut authorities = BTreeSet::new();
        for entry in entries {
            let entry = entry.as_ref().trim().to_ascii_lowercase();
            if entry.contains(':') {
                authorities.insert(entry);
            } else {
                authorities.insert(format!("{entry}:443"));
                authorities.insert(format!("{entry}:80"));
            }
        }
        AllowList { authorities }
    }

    /// Whether a request to `host` on `port` may leave.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.authorities
            .contains(&format!("{}:{port}", host.to_ascii_lowercase()))
    }

    /// The entries, for diagnostics.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.authorities.iter().map(String::as_str)
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where compiled components are kept between runs; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Component instances that may run at once, across all tenants (pool size).
    pub max_instances: u32,
    /// The largest linear memory any tenant may be given.
    pub max_memory_bytes: usize,
    /// Bytes of each pooled instance's linear memory, tables and stack kept resident when the
    /// instance ends: reset in place for the next call instead of handed back to the kernel
    /// (`madvise`) and faulted in again. The component runs a fresh instance per call, so this
    /// trades resident memory (about this much per pool slot in use) for fewer page faults and
    /// TLB shootdowns; `cargo bench -p wxnotify --bench sends` shows the difference.
    pub keep_resident_bytes: usize,
    /// Reset only the kept pages a call touched, found with Linux's `PAGEMAP_SCAN` (kernel 6.7
    /// and later; elsewhere this does nothing), instead of `memset` of all
    /// [`keep_resident_bytes`](Self::keep_resident_bytes) of every memory after every call.
    pub reset_touched_pages_only: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_dir: default_cache_dir(),
            max_instances: 1000,
            max_memory_bytes: 256 << 20,
            // `benches/sends.rs`: 4 MiB holds what a call of the built-in component touches;
            // at 16 concurrent sends it doubled the rate (5.8 k/s → 10.9 k/s), sequential
            // sends were unchanged, and 16 MiB gained nothing more.
            keep_resident_bytes: 4 << 20,
            // `benches/sends.rs`: the full reset was 22 % of the CPU of a send (`memset`).
            reset_touched_pages_only: true,
        }
    }
}

/// `$WXNOTIFY_CACHE_DIR`, else `$XDG_CACHE_HOME/wxnotify`, else `~/.cache/wxnotify`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WXNOTIFY_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .map(|dir| dir.join("wxnotify"))
}
