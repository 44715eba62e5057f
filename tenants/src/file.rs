//! The tenants file: who the runtime serves, with which accounts, where, and how.
//!
//! ```toml
//! [storage]
//! backend = "sqlite"            # or "memory", or "redis" with `url = "redis://host:6379"`
//! path = "wxnotify.sqlite3"     # relative to this file; default "wxnotify.sqlite3"
//!
//! [engine]                      # shared by every tenant of the process
//! max_instances = 1000          # component calls running at once, all tenants together
//! max_memory_mb = 256           # the largest `memory_mb` a tenant may be given
//! keep_resident_mb = 4          # of each instance, kept in memory between calls (0: none)
//! reset_touched_pages_only = true  # reset only what a call dirtied (Linux 6.7+; default on)
//!
//! [tenants.shop]
//! api_base = "https://api.weixin.qq.com"   # default
//! allowed_hosts = ["api.weixin.qq.com"]    # default: the host of api_base
//! token_mode = "stable"                    # or "classic"
//! plugin = "plugins/shop.wasm"             # default: the built-in component
//! api_key_env = "SHOP_API_KEY"             # `wxnotify serve`: the Bearer key of /v1/shop/…
//! storage = { backend = "sqlite", path = "shop.sqlite3" }   # default: [storage]
//!
//! [tenants.shop.limits]
//! memory_mb = 64                           # per call
//! deadline_ms = 60000                      # per call, HTTP included
//! concurrency = 256                        # calls at once
//! sends_per_second = 50                    # `wxnotify serve` workers; default unlimited
//! # sends_per_minute = 20                  # or this, for a limit WeChat or WeCom counts per minute
//!
//! [tenants.shop.mini_program]
//! appid = "wx5ad0b5d1ba5d0001"
//! secret_env = "SHOP_MINI_SECRET"          # or `secret = "…"` for local sandboxes
//!
//! [tenants.shop.official_account]
//! appid = "wx0ac0a0c0a0c00002"
//! secret_env = "SHOP_OA_SECRET"
//!
//! [tenants.shop.config]                    # more keys for the component (or a plugin)
//! oa_callback_token = { env = "SHOP_CALLBACK_TOKEN" }
//! callback_max_age_secs = "300"
//! ```
//!
//! Unknown fields are errors, and every error names the tenant and the field.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConfigError;
use crate::limits::{AllowList, EngineOptions, Limits, SendRate};

/// A parsed tenants file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsFile {
    /// Where the tenants' key-value data lives.
    #[serde(default)]
    pub storage: StorageSpec,
    /// The engine every tenant runs on.
    #[serde(default)]
    pub engine: EngineSpec,
    /// The tenants, by id.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSpec>,
    /// The directory relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The `[engine]` section: sizes of the pool every tenant's calls share. Absent fields keep
/// [`EngineOptions::default`]'s.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// Component instances that may run at once across all tenants: a call beyond it fails
    /// (and `wxnotify serve` retries it), so it should cover the tenants' `concurrency` sum.
    pub max_instances: Option<NonZeroU32>,
    /// The largest linear memory, in MiB, any tenant's `memory_mb` may ask for.
    pub max_memory_mb: Option<NonZeroU32>,
    /// MiB of each instance kept resident between calls
    /// ([`EngineOptions::keep_resident_bytes`]); 0 hands every page back to the kernel.
    pub keep_resident_mb: Option<u32>,
    /// Whether only the kept pages a call touched are reset
    /// ([`EngineOptions::reset_touched_pages_only`]).
    pub reset_touched_pages_only: Option<bool>,
}

impl EngineSpec {
    /// The engine options this section asks for, with the cache directory of `defaults`.
    pub fn options(&self, defaults: EngineOptions) -> EngineOptions {
        EngineOptions {
            max_instances: self
                .max_instances
                .map_or(defaults.max_instances, NonZeroU32::get),
            max_memory_bytes: self
                .max_memory_mb
                .map_or(defaults.max_memory_bytes, |mb| (mb.get() as usize) << 20),
            keep_resident_bytes: self
                .keep_resident_mb
                .map_or(defaults.keep_resident_bytes, |mb| (mb as usize) << 20),
            reset_touched_pages_only: self
                .reset_touched_pages_only
                .unwrap_or(defaults.reset_touched_pages_only),
            ..defaults
        }
    }
}

/// Which key-value backend to use.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "lowercase", tag = "backend")]
pub enum StorageSpec {
    /// One SQLite file (WAL), shared safely by several processes. The embedded default.
    Sqlite {
        /// The database file.
        #[serde(default = "default_sqlite_path")]
        path: PathBuf,
    },
    /// In-process memory: lost on exit. For tests and experiments.
    Memory,
    /// A Redis server, shared by every host that points at it: one token fetch per account
    /// across all of them, one identity mapping.
    Redis {
        /// `redis://[:password@]host:port[/db]`; the password never appears in errors or logs.
        url: String,
        /// Prepended to every Redis key, so deployments can share a server.
        #[serde(default)]
        prefix: Option<String>,
    },
}

// A Redis URL may carry a password: Debug shows everything else.
impl std::fmt::Debug for StorageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageSpec::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            StorageSpec::Memory => f.write_str("Memory"),
            StorageSpec::Redis { url, prefix } => f
                .debug_struct("Redis")
                .field("url", &wxnotify_store::redact_redis_url(url))
                .field("prefix", prefix)
                .finish(),
        }
    }
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("wxnotify.sqlite3")
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec::Sqlite {
            path: default_sqlite_path(),
        }
    }
}

/// How access tokens are fetched.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenMode {
    /// `/cgi-bin/stable_token` (recommended by WeChat).
    #[default]
    Stable,
    /// `/cgi-bin/token`.
    Classic,
}

/// One tenant as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// WeChat API base URL.
    pub api_base: Option<String>,
    /// `host` or `host:port` entries the component may reach; default: the host of `api_base`.
    pub allowed_hosts: Option<Vec<String>>,
    /// Token endpoint.
    #[serde(default)]
    pub token_mode: TokenMode,
    /// A component file to run instead of the built-in one.
    pub plugin: Option<PathBuf>,
    /// Where this tenant's keys live, when not in the file's `[storage]`.
    pub storage: Option<StorageSpec>,
    /// Resource limits of each call.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// More configuration for the component, by key.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// The mini-program account.
    pub mini_program: Option<AccountSpec>,
    /// The official account.
    pub official_account: Option<AccountSpec>,
    /// The environment variable holding the API key `wxnotify serve` requires (as
    /// `Authorization: Bearer …`) on this tenant's `/v1/{tenant}/…` routes. Without it the
    /// tenant's API is closed (403); its WeChat callback routes stay open.
    pub api_key_env: Option<String>,
}

/// A configuration value: written in the file, or read from the environment.
#[derive(Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ConfigValue {
    /// The value itself.
    Plain(String),
    /// The name of an environment variable holding it (for secrets).
    Env {
        /// The variable.
        env: String,
    },
}

// Values may be secrets: Debug shows where they come from, not what they are.
impl std::fmt::Debug for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Plain(_) => f.write_str("Plain(***)"),
            ConfigValue::Env { env } => f.debug_struct("Env").field("env", env).finish(),
        }
    }
}

/// Keys the tenant's own fields set; `[config]` may not override them.
const RESERVED_KEYS: [&str; 6] = [
    "api_base",
    "token_mode",
    "mini_appid",
    "mini_secret",
    "oa_appid",
    "oa_secret",
];

/// Per-call limits as written in the file; unset fields take [`Limits::default`].
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Memory of one call's component instance, in MiB.
    pub memory_mb: Option<u64>,
    /// Wall-clock time of one call, in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Calls that may run at once.
    pub concurrency: Option<usize>,
    /// Notifications `wxnotify serve`'s workers send per second (per process); default unlimited.
    pub sends_per_second: Option<u32>,
    /// The same per minute, for limits counted per minute; not together with `sends_per_second`.
    pub sends_per_minute: Option<u32>,
}

/// AppID and AppSecret of one WeChat account.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// The AppID.
    pub appid: String,
    /// The environment variable holding the AppSecret (preferred).
    pub secret_env: Option<String>,
    /// The AppSecret itself; for local sandboxes.
    pub secret: Option<String>,
}

impl std::fmt::Debug for AccountSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSpec")
            .field("appid", &self.appid)
            .field("secret_env", &self.secret_env)
            .finish_non_exhaustive()
    }
}

/// A tenant ready to run: configuration resolved, secrets read.
#[derive(Clone)]
pub struct ResolvedTenant {
    /// The tenant id.
    pub id: String,
    /// What the component reads through `wasi:config`.
    pub config: BTreeMap<String, String>,
    /// Where the component may send requests.
    pub allowed_hosts: AllowList,
    /// The component file, `None` for the built-in one.
    pub plugin: Option<PathBuf>,
    /// The tenant's own storage, `None` for the runtime's.
    pub storage: Option<StorageSpec>,
    /// Per-call limits.
    pub limits: Limits,
}

impl std::fmt::Debug for ResolvedTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedTenant")
            .field("id", &self.id)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .field("allowed_hosts", &self.allowed_hosts)
            .field("plugin", &self.plugin)
            .field("storage", &self.storage)
            .field("limits", &self.limits)
            .finish()
    }
}

impl TenantsFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<TenantsFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut file = TenantsFile::parse(&text, &path.display().to_string())?;
        file.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(file)
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<TenantsFile, ConfigError> {
        let file: TenantsFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_owned(),
            source,
        })?;
        for id in file.tenants.keys() {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::Invalid {
                    tenant: id.clone(),
                    field: "tenant id".into(),
                    message: "use letters, digits, `-` and `_` only".into(),
                });
            }
        }
        Ok(file)
    }

    /// `path` resolved against the file's directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// `storage` with its file path resolved against the file's directory.
    pub fn resolve_storage(&self, storage: StorageSpec) -> StorageSpec {
        match storage {
            StorageSpec::Sqlite { path } => StorageSpec::Sqlite {
                path: self.resolve_path(&path),
            },
            other => other,
        }
    }

    /// Every tenant, resolved with `env` as the environment.
    pub fn resolve_all(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<ResolvedTenant>, ConfigError> {
        self.tenants
            .iter()
            .map(|(id, spec)| {
                let mut resolved = spec.resolve(id, &env)?;
                resolved.plugin = resolved.plugin.map(|p| self.resolve_path(&p));
                resolved.storage = resolved
                    .storage
                    .map(|storage| self.resolve_storage(storage));
                Ok(resolved)
            })
            .collect()
    }
}

impl TenantsFile {
    /// Every tenant's API key for `wxnotify serve`, read through `env` from its
    /// `api_key_env` (`None`: the tenant has no key, its API is closed).
    pub fn api_keys(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, Option<String>>, ConfigError> {
        self.tenants
            .iter()
            .map(|(id, spec)| {
                let key = match &spec.api_key_env {
                    None => None,
                    Some(variable) => {
                        Some(env(variable).filter(|k| !k.is_empty()).ok_or_else(|| {
                            ConfigError::MissingSecret {
                                tenant: id.clone(),
                                field: "api_key_env".into(),
                                variable: variable.clone(),
                            }
                        })?)
                    }
                };
                Ok((id.clone(), key))
            })
            .collect()
    }
}

impl LimitsSpec {
    fn resolve(&self) -> Result<Limits, (&'static str, String)> {
        let defaults = Limits::default();
        let memory_mb = self
            .memory_mb
            .unwrap_or((defaults.memory_bytes >> 20) as u64);
        if !(8..=4096).contains(&memory_mb) {
            return Err((
                "memory_mb",
                format!("must be between 8 and 4096, got {memory_mb}"),
            ));
        }
        let deadline_ms = self
            .deadline_ms
            .unwrap_or(u64::try_from(defaults.deadline.as_millis()).unwrap_or(u64::MAX));
        if deadline_ms < 100 {
            return Err((
                "deadline_ms",
                format!("must be at least 100, got {deadline_ms}"),
            ));
        }
        let concurrency = self.concurrency.unwrap_or(defaults.concurrency);
        if concurrency == 0 {
            return Err(("concurrency", "must be at least 1".into()));
        }
        let send_rate = match (self.sends_per_second, self.sends_per_minute) {
            (Some(_), Some(_)) => {
                return Err((
                    "sends_per_minute",
                    "set either sends_per_second or sends_per_minute, not both".into(),
                ));
            }
            (Some(0), None) => return Err(("sends_per_second", "must be at least 1".into())),
            (None, Some(0)) => return Err(("sends_per_minute", "must be at least 1".into())),
            (Some(count), None) => Some(SendRate::per_second(count)),
            (None, Some(count)) => Some(SendRate::per_minute(count)),
            (None, None) => None,
        };
        Ok(Limits {
            memory_bytes: usize::try_from(memory_mb << 20).unwrap_or(usize::MAX),
            deadline: std::time::Duration::from_millis(deadline_ms),
            concurrency,
            send_rate,
        })
    }
}

impl TenantSpec {
    /// Checks the spec, reads its secrets through `env` and builds the component's config.
    pub fn resolve(
        &self,
        id: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ResolvedTenant, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            tenant: id.to_owned(),
            field: field.to_owned(),
            message,
        };
        let api_base = self
            .api_base
            .clone()
            .unwrap_or_else(|| "https://api.weixin.qq.com".into());
        let url = url::Url::parse(&api_base)
            .map_err(|e| invalid("api_base", format!("`{api_base}` is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                "api_base",
                format!("`{api_base}` must be an http(s) URL with a host"),
            ));
        }
        let allowed_hosts = match &self.allowed_hosts {
            Some(hosts) => AllowList::new(hosts),
            None => {
                let host = url.host_str().unwrap_or_default();
                let port = url.port_or_known_default().unwrap_or(443);
                AllowList::new([format!("{host}:{port}")])
            }
        };
        // A plugin may need no WeChat account at all (a WeCom robot posts with its own key);
        // the built-in component can do nothing without one.
        if self.plugin.is_none() && self.mini_program.is_none() && self.official_account.is_none() {
            return Err(invalid(
                "mini_program / official_account",
                "configure at least one account".into(),
            ));
        }
        let mut config = BTreeMap::new();
        config.insert("api_base".to_owned(), api_base);
        let mode = match self.token_mode {
            TokenMode::Stable => "stable",
            TokenMode::Classic => "classic",
        };
        config.insert("token_mode".to_owned(), mode.to_owned());
        for (section, prefix, account) in [
            ("mini_program", "mini", &self.mini_program),
            ("official_account", "oa", &self.official_account),
        ] {
            let Some(account) = account else { continue };
            if account.appid.trim().is_empty() {
                return Err(invalid(&format!("{section}.appid"), "is empty".into()));
            }
            let secret = match (&account.secret_env, &account.secret) {
                (Some(variable), None) => {
                    env(variable).filter(|s| !s.is_empty()).ok_or_else(|| {
                        ConfigError::MissingSecret {
                            tenant: id.to_owned(),
                            field: format!("{section}.secret_env"),
                            variable: variable.clone(),
                        }
                    })?
                }
                (None, Some(secret)) if !secret.is_empty() => secret.clone(),
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        section,
                        "set `secret_env` or `secret`, not both".into(),
                    ));
                }
                _ => {
                    return Err(invalid(
                        section,
                        "missing `secret_env` (or `secret`)".into(),
                    ));
                }
            };
            config.insert(format!("{prefix}_appid"), account.appid.trim().to_owned());
            config.insert(format!("{prefix}_secret"), secret);
        }
        for (key, value) in &self.config {
            if RESERVED_KEYS.contains(&key.as_str()) {
                return Err(invalid(
                    &format!("config.{key}"),
                    "is set by the tenant's own fields; remove it here".into(),
                ));
            }
            let value = match value {
                ConfigValue::Plain(value) => value.clone(),
                ConfigValue::Env { env: variable } => {
                    env(variable).ok_or_else(|| ConfigError::MissingSecret {
                        tenant: id.to_owned(),
                        field: format!("config.{key}"),
                        variable: variable.clone(),
                    })?
                }
            };
            config.insert(key.clone(), value);
        }
        let limits = self
            .limits
            .resolve()
            .map_err(|(field, message)| invalid(&format!("limits.{field}"), message))?;
        Ok(ResolvedTenant {
            id: id.to_owned(),
            config,
            allowed_hosts,
            plugin: self.plugin.clone(),
            storage: self.storage.clone(),
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[storage]
backend = "memory"

[tenants.shop]
api_base = "http://127.0.0.1:9000"

[tenants.shop.official_account]
appid = "wxoa"
secret_env = "SHOP_OA_SECRET"
"#;

    #[test]
    fn the_engine_section_sizes_the_pool_and_keeps_the_rest() {
        let file = TenantsFile::parse(GOOD, "t.toml").unwrap();
        let defaults = EngineOptions::default();
        assert_eq!(file.engine, EngineSpec::default());
        assert_eq!(
            file.engine.options(defaults.clone()).max_instances,
            defaults.max_instances
        );
        let sized = format!(
            "[engine]\nmax_instances = 40\nmax_memory_mb = 512\nkeep_resident_mb = 0\n\
             reset_touched_pages_only = false\n{GOOD}"
        );
        let options = TenantsFile::parse(&sized, "t.toml")
            .unwrap()
            .engine
            .options(defaults.clone());
        assert_eq!(options.max_instances, 40);
        assert_eq!(options.max_memory_bytes, 512 << 20);
        assert_eq!(options.keep_resident_bytes, 0);
        assert!(!options.reset_touched_pages_only);
        assert!(
            file.engine
                .options(defaults.clone())
                .reset_touched_pages_only
        );
        assert_eq!(options.cache_dir, defaults.cache_dir);
        for bad in [
            "max_instances = 0",
            "max_memory_mb = -1",
            "keep_resident_mb = -1",
            "reset_touched_pages_only = \"yes\"",
            "pool = 3",
        ] {
            let error = TenantsFile::parse(&format!("[engine]\n{bad}\n{GOOD}"), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("tenants file t.toml: "), "{error}");
            let field = bad.split(' ').next().unwrap();
            assert!(error.contains(field), "shows the field: {error}");
        }
    }

    #[test]
    fn resolves_secrets_from_the_environment() {
        let file = TenantsFile::parse(GOOD, "t.toml").unwrap();
        assert_eq!(file.storage, StorageSpec::Memory);
        let tenants = file
            .resolve_all(|v| (v == "SHOP_OA_SECRET").then(|| "s3cret".to_owned()))
            .unwrap();
        let shop = &tenants[0];
        assert_eq!(shop.config["oa_secret"], "s3cret");
        assert_eq!(shop.config["api_base"], "http://127.0.0.1:9000");
        assert!(shop.allowed_hosts.allows("127.0.0.1", 9000));
        assert!(!shop.allowed_hosts.allows("api.weixin.qq.com", 443));
        assert!(!format!("{shop:?}").contains("s3cret"));
    }

    #[test]
    fn api_keys_and_send_rates_are_read() {
        let text = r#"
[tenants.shop]
api_key_env = "SHOP_API_KEY"
[tenants.shop.limits]
sends_per_second = 5
[tenants.shop.official_account]
appid = "wxoa"
secret = "s"
"#;
        let file = TenantsFile::parse(text, "t.toml").unwrap();
        let keys = file
            .api_keys(|v| (v == "SHOP_API_KEY").then(|| "k".to_owned()))
            .unwrap();
        assert_eq!(keys["shop"].as_deref(), Some("k"));
        match file.api_keys(|_| None).unwrap_err() {
            ConfigError::MissingSecret {
                tenant,
                field,
                variable,
            } => assert_eq!(
                (tenant.as_str(), field.as_str(), variable.as_str()),
                ("shop", "api_key_env", "SHOP_API_KEY")
            ),
            other => panic!("{other:?}"),
        }
        let tenants = file.resolve_all(|_| None).unwrap();
        assert_eq!(tenants[0].limits.send_rate, Some(SendRate::per_second(5)));
        let per_minute = text.replace("sends_per_second = 5", "sends_per_minute = 20");
        let file = TenantsFile::parse(&per_minute, "t.toml").unwrap();
        let tenants = file.resolve_all(|_| None).unwrap();
        assert_eq!(tenants[0].limits.send_rate, Some(SendRate::per_minute(20)));
        for (bad, field) in [
            ("sends_per_second = 0", "sends_per_second"),
            ("sends_per_minute = 0", "sends_per_minute"),
            (
                "sends_per_second = 1\nsends_per_minute = 20",
                "sends_per_minute",
            ),
        ] {
            let text = text.replace("sends_per_second = 5", bad);
            let error = TenantsFile::parse(&text, "t.toml")
                .unwrap()
                .resolve_all(|_| None)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with(&format!("tenant `shop`: limits.{field}")),
                "{error}"
            );
        }
    }

    #[test]
    fn a_missing_secret_names_tenant_field_and_variable() {
        let file = TenantsFile::parse(GOOD, "t.toml").unwrap();
        let err = file.resolve_all(|_| None).unwrap_err().to_string();
        assert_eq!(
            err,
            "tenant `shop`: official_account.secret_env names environment variable SHOP_OA_SECRET, which is not set"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = TenantsFile::parse("[tenants.shop]\napi_bsae = \"x\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_bsae"), "{err}");
        assert!(err.starts_with("tenants file t.toml"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let file = TenantsFile::parse(
            "[tenants.a]\napi_base = \"ftp://x\"\n[tenants.a.official_account]\nappid = \"wx\"\nsecret = \"s\"\n",
            "t.toml",
        )
        .unwrap();
        assert!(
            file.resolve_all(|_| None)
                .unwrap_err()
                .to_string()
                .contains("tenant `a`: api_base")
        );
        let file = TenantsFile::parse("[tenants.a]\n", "t.toml").unwrap();
        assert!(
            file.resolve_all(|_| None)
                .unwrap_err()
                .to_string()
                .contains("at least one account")
        );
        let file = TenantsFile::parse(
            "[tenants.a]\nplugin = \"robot.wasm\"\n[tenants.a.config]\nwebhook_key = \"k\"\n",
            "t.toml",
        )
        .unwrap();
        let plugin_only = &file.resolve_all(|_| None).unwrap()[0];
        assert_eq!(plugin_only.config["webhook_key"], "k");
        assert!(TenantsFile::parse("[tenants.\"a/b\"]\n", "t.toml").is_err());
        let file = TenantsFile::parse(
            "[tenants.a.limits]\nmemory_mb = 1\n[tenants.a.mini_program]\nappid = \"wx\"\nsecret = \"s\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            file.resolve_all(|_| None).unwrap_err().to_string(),
            "tenant `a`: limits.memory_mb: must be between 8 and 4096, got 1"
        );
    }

    #[test]
    fn extra_config_comes_from_the_file_or_the_environment() {
        let file = TenantsFile::parse(
            "[tenants.a.mini_program]\nappid = \"wx\"\nsecret = \"s\"\n\
             [tenants.a.config]\nmax_age = \"300\"\ntoken = { env = \"A_TOKEN\" }\n",
            "t.toml",
        )
        .unwrap();
        let a = &file
            .resolve_all(|v| (v == "A_TOKEN").then(|| "t0k".to_owned()))
            .unwrap()[0];
        assert_eq!(
            (a.config["max_age"].as_str(), a.config["token"].as_str()),
            ("300", "t0k")
        );
        let err = file.resolve_all(|_| None).unwrap_err().to_string();
        assert_eq!(
            err,
            "tenant `a`: config.token names environment variable A_TOKEN, which is not set"
        );
        let file = TenantsFile::parse(
            "[tenants.a.mini_program]\nappid = \"wx\"\nsecret = \"s\"\n[tenants.a.config]\nmini_secret = \"x\"\n",
            "t.toml",
        )
        .unwrap();
        assert!(
            file.resolve_all(|_| None)
                .unwrap_err()
                .to_string()
                .contains("config.mini_secret")
        );
    }

    #[test]
    fn a_redis_password_never_shows() {
        let file = TenantsFile::parse(
            "[storage]\nbackend = \"redis\"\nurl = \"redis://:hunter2@10.0.0.5:6379/0\"\n",
            "t.toml",
        )
        .unwrap();
        let shown = format!("{:?}", file.storage);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***@10.0.0.5:6379/0"), "{shown}");
    }

    #[test]
    fn limits_and_storage_per_tenant() {
        let file = TenantsFile::parse(
            "[tenants.a]\nstorage = { backend = \"sqlite\", path = \"a.sqlite3\" }\n\
             [tenants.a.limits]\nmemory_mb = 32\ndeadline_ms = 500\nconcurrency = 2\n\
             [tenants.a.mini_program]\nappid = \"wx\"\nsecret = \"s\"\n",
            "t.toml",
        )
        .unwrap();
        let a = &file.resolve_all(|_| None).unwrap()[0];
        assert_eq!(
            a.limits,
            Limits {
                memory_bytes: 32 << 20,
                deadline: std::time::Duration::from_millis(500),
                concurrency: 2,
                send_rate: None,
            }
        );
        assert_eq!(
            a.storage,
            Some(StorageSpec::Sqlite {
                path: "a.sqlite3".into()
            })
        );
        let err = TenantsFile::parse("[tenants.a.limits]\nmemroy_mb = 1\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("memroy_mb"), "{err}");
    }

    #[test]
    fn defaults_to_sqlite_and_the_official_host() {
        let file = TenantsFile::parse(
            "[tenants.a.mini_program]\nappid = \"wx\"\nsecret = \"s\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            file.storage,
            StorageSpec::Sqlite {
                path: "wxnotify.sqlite3".into()
            }
        );
        let a = &file.resolve_all(|_| None).unwrap()[0];
        assert!(a.allowed_hosts.allows("api.weixin.qq.com", 443));
        assert_eq!(a.config["token_mode"], "stable");
    }
}
