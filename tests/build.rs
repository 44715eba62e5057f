//! Builds the components the end-to-end tests run besides the built-in one, for
//! `wasm32-wasip2`, and hands their paths to the tests:
//!
//! - `WXNOTIFY_FIXTURE_MISBEHAVING`: `tests/fixtures/misbehaving/`, a component that spins,
//!   exhausts memory or sleeps on request (`env!("WXNOTIFY_FIXTURE_MISBEHAVING")`);
//! - `WXNOTIFY_PLUGIN_WECOM_ROBOT`: `plugins/wecom-robot/`, the WeCom group robot plugin
//!   (`env!("WXNOTIFY_PLUGIN_WECOM_ROBOT")`).

include!("../scripts/build_component.rs");

fn main() {
    component_build::rerun_if_changed(&[
        "tests/fixtures/misbehaving/src",
        "tests/fixtures/misbehaving/Cargo.toml",
        "plugins/wecom-robot/src",
        "plugins/wecom-robot/Cargo.toml",
        "component-io/src",
        "component-io/Cargo.toml",
        "contract/src",
        "contract/Cargo.toml",
        "wit",
        "Cargo.lock",
        "scripts/build_component.rs",
    ]);

    let misbehaving = component_build::build_component(
        "wxnotify-fixture-misbehaving",
        "wxnotify_fixture_misbehaving.wasm",
    );
    println!(
        "cargo:rustc-env=WXNOTIFY_FIXTURE_MISBEHAVING={}",
        misbehaving.display()
    );

    let wecom_robot = component_build::build_component(
        "wxnotify-plugin-wecom-robot",
        "wxnotify_plugin_wecom_robot.wasm",
    );
    println!(
        "cargo:rustc-env=WXNOTIFY_PLUGIN_WECOM_ROBOT={}",
        wecom_robot.display()
    );
}
