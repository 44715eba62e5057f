//! The plugin configuration: the JSON an Envoy `envoy.filters.http.wasm` filter (or an Istio
//! `WasmPlugin`'s `pluginConfig`) gives the filter.
//!
//! ```json
//! {
//!   "tenant": "shop",
//!   "wechat": { "cluster": "wechat_api", "timeout_ms": 5000 },
//!   "events": { "cluster": "backend", "path": "/wechat/events" },
//!   "api_key_from_env": "WXNOTIFY_API_KEY",
//!   "config": { "oa_appid": "wx…", "oa_callback_token": "…" },
//!   "config_from_env": { "oa_secret": "WXNOTIFY_OA_SECRET" }
//! }
//! ```
//!
//! `config` holds the same keys, with the same meaning, as the component's `wasi:config`
//! ([`wxnotify_rules::config_keys::KEYS`]): one vocabulary for every host. `config_from_env`
//! takes a key's value from an environment variable of the VM instead (Envoy:
//! `vm_config.environment_variables.host_env_keys`), so secrets can stay out of the proxy's
//! configuration. Values are read, never logged; errors name keys and variables, never values.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use wxnotify_rules::config_keys;

/// What WeChat's API base defaults to when `config.api_base` is not set.
const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";

/// A valid plugin configuration.
pub struct Plugin {
    /// Prefixes every shared-data key, so plugins sharing a VM id share nothing else.
    pub tenant: String,
    pub wechat: Upstream,
    /// `config.api_base` without its trailing `/`: WeChat URLs are this plus a path.
    pub api_base: String,
    /// `:authority` of WeChat calls: the host (and port) of `api_base`.
    pub wechat_authority: String,
    pub events: Option<Events>,
    api_key: Option<String>,
    /// Where the filter's routes are mounted (`""`: at the root).
    pub path_prefix: String,
    config: BTreeMap<String, String>,
}

/// A cluster the filter calls, and how long it waits for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub cluster: String,
    pub timeout: Duration,
}

/// Where verified pushes are handed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    pub upstream: Upstream,
    pub authority: String,
    pub path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_tenant")]
    tenant: String,
    wechat: RawUpstream,
    events: Option<RawEvents>,
    api_key: Option<String>,
    /// The environment variable holding `api_key`.
    api_key_from_env: Option<String>,
    #[serde(default)]
    path_prefix: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    config_from_env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    cluster: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    cluster: String,
    path: String,
    /// Defaults to the cluster's name.
    authority: Option<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_tenant() -> String {
    "default".to_owned()
}

fn default_timeout_ms() -> u64 {
    5_000
}

impl Plugin {
    /// Parses and checks the plugin configuration; `environment` reads the VM's environment
    /// variables for `config_from_env`.
    ///
    /// # Errors
    ///
    /// A message naming what is wrong (a field, a key, a variable), never a value.
    pub fn parse(
        bytes: &[u8],
        environment: impl Fn(&str) -> Option<String>,
    ) -> Result<Plugin, String> {
        let mut raw: Raw = serde_json::from_slice(bytes).map_err(|e| {
            // serde_json quotes unknown fields and types, not values, in its messages.
            format!("the plugin configuration is not valid: {e}")
        })?;
        for (key, variable) in std::mem::take(&mut raw.config_from_env) {
            if raw.config.contains_key(&key) {
                return Err(format!(
                    "config key `{key}` is given both in `config` and in `config_from_env`"
                ));
            }
            let value = environment(&variable).ok_or_else(|| {
                format!("`config_from_env` reads `{key}` from `{variable}`, which is not set in the VM's environment")
            })?;
            raw.config.insert(key, value);
        }
        if let Some(variable) = raw.api_key_from_env.take() {
            if raw.api_key.is_some() {
                return Err("give `api_key` or `api_key_from_env`, not both".to_owned());
            }
            raw.api_key = Some(environment(&variable).ok_or_else(|| {
                format!("`api_key_from_env` names `{variable}`, which is not set in the VM's environment")
            })?);
        }
        for key in raw.config.keys() {
            if !config_keys::KEYS.iter().any(|known| known.name == key) {
                return Err(format!(
                    "the plugin configuration's `config` has an unknown key `{key}` (known: {})",
                    config_keys::KEYS
                        .iter()
                        .map(|k| k.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if !raw
            .tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || raw.tenant.is_empty()
        {
            return Err("`tenant` must be non-empty letters, digits, `-` and `_`".to_owned());
        }
        let wechat = upstream(raw.wechat.cluster, raw.wechat.timeout_ms, "wechat")?;
        let api_base = raw
            .config
            .get("api_base")
            .map_or(DEFAULT_API_BASE, String::as_str)
            .trim_end_matches('/')
            .to_owned();
        let wechat_authority = authority(&api_base)?;
        let events = raw
            .events
            .map(|events| {
                if !events.path.starts_with('/') {
                    return Err("`events.path` must start with `/`".to_owned());
                }
                let authority = events.authority.unwrap_or_else(|| events.cluster.clone());
                Ok(Events {
                    upstream: upstream(events.cluster, events.timeout_ms, "events")?,
                    authority,
                    path: events.path,
                })
            })
            .transpose()?;
        let path_prefix = raw.path_prefix.trim_end_matches('/').to_owned();
        if !(path_prefix.is_empty() || path_prefix.starts_with('/')) {
            return Err("`path_prefix` must start with `/`".to_owned());
        }
        if raw.api_key.as_deref().is_some_and(str::is_empty) {
            return Err("`api_key` is empty: leave it out to accept every caller".to_owned());
        }
        Ok(Plugin {
            tenant: raw.tenant,
            wechat,
            api_base,
            wechat_authority,
            events,
            api_key: raw.api_key,
            path_prefix,
            config: raw.config,
        })
    }

    /// A `config` value, as `wasi:config` would give it to the component.
    pub fn config(&self, key: &str) -> Option<&str> {
        self.config.get(key).map(String::as_str)
    }

    /// Whether `authorization` (the request's header) carries the configured API key; every
    /// caller passes when none is configured. Constant-time in the key's bytes.
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(expected) = &self.api_key else {
            return true;
        };
        let given = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
    }
}

fn upstream(cluster: String, timeout_ms: u64, what: &str) -> Result<Upstream, String> {
    if cluster.is_empty() {
        return Err(format!("`{what}.cluster` is empty"));
    }
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(format!("`{what}.timeout_ms` must be 1 to 60000"));
    }
    Ok(Upstream {
        cluster,
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// The `host[:port]` of an `http(s)://` base URL. By hand: the core checks the scheme when a
/// flow loads its configuration; this only needs what lies between `://` and the path.
fn authority(api_base: &str) -> Result<String, String> {
    let rest = api_base
        .strip_prefix("https://")
        .or_else(|| api_base.strip_prefix("http://"))
        .ok_or("config key `api_base` must be an http(s) URL")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err("config key `api_base` has no host".to_owned());
    }
    Ok(host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Plugin, String> {
        Plugin::parse(json.as_bytes(), |name| {
            (name == "WX_OA_SECRET").then(|| "from-env".to_owned())
        })
    }

    #[test]
    fn a_full_configuration_is_read() {
        let plugin = parse(
            r#"{"tenant":"shop","wechat":{"cluster":"wechat_api"},
                "events":{"cluster":"backend","path":"/wechat/events","timeout_ms":800},
                "api_key":"k","path_prefix":"/wx/",
                "config":{"api_base":"http://127.0.0.1:9000/","oa_appid":"wx1","oa_secret":"s3cr3t"}}"#,
        )
        .unwrap();
        assert_eq!(plugin.tenant, "shop");
        assert_eq!(plugin.wechat.timeout, Duration::from_secs(5));
        assert_eq!(plugin.api_base, "http://127.0.0.1:9000");
        assert_eq!(plugin.wechat_authority, "127.0.0.1:9000");
        assert_eq!(plugin.path_prefix, "/wx");
        let events = plugin.events.as_ref().unwrap();
        assert_eq!(
            (events.authority.as_str(), events.upstream.timeout),
            ("backend", Duration::from_millis(800))
        );
        assert_eq!(plugin.config("oa_secret"), Some("s3cr3t"));
        assert!(plugin.admits(Some("Bearer k")));
        assert!(!plugin.admits(Some("Bearer kk")));
        assert!(!plugin.admits(None));
    }

    #[test]
    fn defaults_reach_wechat_itself_and_admit_everyone() {
        let plugin = parse(r#"{"wechat":{"cluster":"wechat_api"}}"#).unwrap();
        assert_eq!(plugin.tenant, "default");
        assert_eq!(plugin.wechat_authority, "api.weixin.qq.com");
        assert!(plugin.admits(None));
        assert!(plugin.events.is_none());
    }

    #[test]
    fn a_secret_can_come_from_the_environment() {
        let plugin =
            parse(r#"{"wechat":{"cluster":"w"},"config_from_env":{"oa_secret":"WX_OA_SECRET"}}"#)
                .unwrap();
        assert_eq!(plugin.config("oa_secret"), Some("from-env"));
        let unset = parse(r#"{"wechat":{"cluster":"w"},"config_from_env":{"oa_secret":"NOPE"}}"#);
        assert!(unset.err().unwrap().contains("`NOPE`, which is not set"));
        let twice = parse(
            r#"{"wechat":{"cluster":"w"},"config":{"oa_secret":"a"},"config_from_env":{"oa_secret":"WX_OA_SECRET"}}"#,
        );
        assert!(
            twice
                .err()
                .unwrap()
                .contains("both in `config` and in `config_from_env`")
        );
        let unknown =
            parse(r#"{"wechat":{"cluster":"w"},"config_from_env":{"oa_secrte":"WX_OA_SECRET"}}"#);
        assert!(unknown.err().unwrap().contains("unknown key `oa_secrte`"));
    }

    /// The plugin configuration embedded in `gateways/envoy/envoy.yaml` (the block under
    /// `value: |`) is one this filter accepts.
    #[test]
    fn the_example_envoy_yaml_configures_the_filter() {
        let yaml = include_str!("../envoy.yaml");
        let mut lines = yaml
            .lines()
            .skip_while(|line| !line.trim_end().ends_with("value: |"));
        let indent = |line: &str| line.len() - line.trim_start().len();
        let opening = indent(lines.next().expect("a `value: |` block"));
        let json: String = lines
            .take_while(|line| line.trim().is_empty() || indent(line) > opening)
            .collect::<Vec<_>>()
            .join("\n");
        let every_variable = |_: &str| Some("set".to_owned());
        let plugin = Plugin::parse(json.as_bytes(), every_variable).unwrap();
        assert_eq!(plugin.wechat.cluster, "wechat_api");
        assert_eq!(plugin.wechat_authority, "api.weixin.qq.com");
        assert!(plugin.events.is_some() && !plugin.admits(None));
    }

    #[test]
    fn mistakes_are_named_and_values_never_shown() {
        let refused = |json: &str| parse(json).err().unwrap();
        assert!(
            refused(r#"{"wechat":{"cluster":"w"},"config":{"oa_secrte":"TOPSECRET"}}"#)
                .contains("unknown key `oa_secrte`")
        );
        assert!(refused(r#"{"wechat":{"cluster":"w"},"clustre":1}"#).contains("clustre"));
        assert!(refused(r#"{}"#).contains("missing field `wechat`"));
        assert!(refused(r#"{"wechat":{"cluster":""}}"#).contains("`wechat.cluster` is empty"));
        assert!(refused(r#"{"wechat":{"cluster":"w","timeout_ms":0}}"#).contains("timeout_ms"));
        assert!(
            refused(r#"{"wechat":{"cluster":"w"},"config":{"api_base":"ftp://x"}}"#)
                .contains("`api_base`")
        );
        assert!(refused(r#"{"wechat":{"cluster":"w"},"tenant":"a/b"}"#).contains("`tenant`"));
        assert!(refused(r#"{"wechat":{"cluster":"w"},"api_key":""}"#).contains("`api_key`"));
        let leaked = refused(r#"{"wechat":{"cluster":"w"},"config":{"oa_secret":7}}"#);
        assert!(leaked.contains("invalid type"), "{leaked}");
    }
}
