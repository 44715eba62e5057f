//! `gateways/spin/spin.toml` against what the component reads: every config key as a Spin
//! variable (secrets marked secret) passed to the component, and the buckets it opens.

use wxnotify_core::env::Bucket;
use wxnotify_core::wechat::config::KEYS;

fn manifest() -> toml::Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../gateways/spin/spin.toml");
    std::fs::read_to_string(path)
        .expect("gateways/spin/spin.toml")
        .parse()
        .expect("spin.toml is TOML")
}

#[test]
fn every_config_key_is_a_spin_variable_passed_to_the_component() {
    let manifest = manifest();
    let variables = manifest["variables"].as_table().unwrap();
    let passed = manifest["component"]["wxnotify"]["variables"]
        .as_table()
        .unwrap();
    for key in KEYS {
        let declared = variables
            .get(key.name)
            .unwrap_or_else(|| panic!("[variables] lacks `{}`", key.name));
        let secret = declared.get("secret").and_then(toml::Value::as_bool) == Some(true);
        assert_eq!(secret, key.secret, "`{}`: secret = {secret}", key.name);
        assert!(
            declared.get("required").and_then(toml::Value::as_bool) == Some(true)
                || declared.get("default").is_some(),
            "`{}` is neither required nor defaulted",
            key.name
        );
        assert_eq!(
            passed.get(key.name).and_then(toml::Value::as_str),
            Some(format!("{{{{ {} }}}}", key.name).as_str()),
            "[component.wxnotify.variables] must pass `{}` on",
            key.name
        );
    }
    assert_eq!(
        variables.len(),
        KEYS.len(),
        "variables the component never reads"
    );
    assert_eq!(passed.len(), KEYS.len());
}

#[test]
fn the_component_may_open_exactly_its_buckets_and_reach_wechat_only() {
    let manifest = manifest();
    let component = &manifest["component"]["wxnotify"];
    let stores: Vec<&str> = component["key_value_stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let buckets = [Bucket::Tokens, Bucket::Users, Bucket::Callbacks].map(Bucket::name);
    assert_eq!(stores, buckets);
    assert_eq!(
        component["allowed_outbound_hosts"].as_array().unwrap(),
        &[toml::Value::from(
            wxnotify_core::wechat::config::DEFAULT_API_BASE
        )]
    );
    for runtime_config in ["runtime-config.toml", "runtime-config.redis.toml"] {
        let path = format!(
            "{}/../gateways/spin/{runtime_config}",
            env!("CARGO_MANIFEST_DIR")
        );
        let config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let defined: Vec<&String> = config["key_value_store"]
            .as_table()
            .unwrap()
            .keys()
            .collect();
        let mut expected = buckets.to_vec();
        expected.sort_unstable();
        assert_eq!(defined, expected, "{runtime_config}");
    }
}
