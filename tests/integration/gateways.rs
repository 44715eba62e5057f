//! The built components against the worlds of hosts we do not run here: Spin 4's `platform`
//! world and its HTTP trigger (`gateways/spin/wit/platform.wit`). Spin's CLI cannot be built on
//! these machines, so the check is static: every interface and every function a component
//! imports must be in Spin's world at a version its linker accepts, and it must export the
//! handler the trigger calls.

use std::path::Path;

use wit_parser::{WorldItem, WorldKey};
use wxnotify_tests::host_world::{ComponentWorld, HostWorld};

fn spin() -> HostWorld {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateways/spin/wit");
    HostWorld::load("Spin 4", &dir, "http-trigger").expect("Spin's world parses")
}

fn guest() -> ComponentWorld {
    ComponentWorld::decode(wxnotify::BUILTIN_COMPONENT).expect("the built-in component decodes")
}

#[test]
fn the_built_component_links_in_spin_4_and_exports_its_http_handler() {
    let guest = guest();
    let used = guest.imported_functions();
    for expected in [
        "wasi:http/outgoing-handler@0.2.12#handle",
        "wasi:http/types@0.2.12#[method]fields.append",
        "wasi:keyvalue/atomics@0.2.0-draft2#swap",
        "wasi:keyvalue/batch@0.2.0-draft2#get-many",
        "wasi:config/store@0.2.0-draft-2024-09-27#get",
    ] {
        assert!(
            used.iter().any(|f| f == expected),
            "{expected} not in {used:#?}"
        );
    }
    let problems = spin().problems(&guest);
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("{} imported functions checked against Spin 4", used.len());
}

#[test]
fn the_wecom_robot_plugin_links_in_spin_4_too() {
    let plugin = std::fs::read(env!("WXNOTIFY_PLUGIN_WECOM_ROBOT")).expect("the plugin is built");
    let problems = spin().problems(&ComponentWorld::decode(&plugin).expect("the plugin decodes"));
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The real component, re-encoded with one import more: interface `interface` of the WIT
/// package `wit`.
fn guest_importing_also(wit: &str, interface: &str) -> ComponentWorld {
    let mut component = guest();
    let (resolve, world) = component.parts_mut();
    let package = resolve.push_str("extra.wit", wit).unwrap();
    let id = resolve.packages[package].interfaces[interface];
    resolve.worlds[world].imports.insert(
        WorldKey::Interface(id),
        WorldItem::Interface {
            id,
            stability: Default::default(),
            external_id: None,
            docs: Default::default(),
            span: Default::default(),
        },
    );
    ComponentWorld::decode(&component.encode().unwrap()).unwrap()
}

#[test]
fn a_component_with_an_import_spin_lacks_fails_the_check() {
    // An interface of no Spin world.
    let extra = guest_importing_also(
        "package example:vault@1.0.0;\ninterface secrets { reveal: func(name: string) -> string; }",
        "secrets",
    );
    assert_eq!(
        spin().problems(&extra),
        ["imports `example:vault/secrets@1.0.0`, which Spin 4 does not provide"]
    );
}

#[test]
fn a_function_spins_version_lacks_fails_the_check() {
    // `wasi:config/store` at the version Spin implements, but with a function it does not have.
    let mut component = guest();
    let (resolve, _) = component.parts_mut();
    let store = resolve
        .interfaces
        .iter()
        .find(|(_, i)| {
            i.name.as_deref() == Some("store") && {
                let package = &resolve.packages[i.package.unwrap()].name;
                (package.namespace.as_str(), package.name.as_str()) == ("wasi", "config")
            }
        })
        .map(|(id, _)| id)
        .expect("the component imports wasi:config/store");
    let mut get = resolve.interfaces[store].functions["get"].clone();
    get.name = "get-everything".into();
    resolve.interfaces[store]
        .functions
        .insert("get-everything".into(), get);
    let changed = ComponentWorld::decode(&component.encode().unwrap()).unwrap();
    assert_eq!(
        spin().problems(&changed),
        [
            "imports `get-everything` of `wasi:config/store@0.2.0-draft-2024-09-27`, which Spin 4's \
             version of the interface does not have"
        ]
    );
}

#[test]
fn a_component_for_another_keyvalue_draft_fails_the_check() {
    // What `wasmtime serve` and wasmCloud implement: wasi:keyvalue@0.2.0-draft, which no Spin
    // release (draft2) links.
    let draft = guest_importing_also(
        "package wasi:keyvalue@0.2.0-draft;\n\
         interface store { resource bucket; open: func(identifier: string) -> bucket; }",
        "store",
    );
    assert_eq!(
        spin().problems(&draft),
        [
            "imports `wasi:keyvalue/store@0.2.0-draft`, which Spin 4 does not provide (it has @0.2.0-draft2)"
        ]
    );
}
