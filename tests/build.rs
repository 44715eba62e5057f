//! Builds the test-fixture components for `wasm32-wasip2` and hands their paths to the tests:
//!
//! - `WXNOTIFY_FIXTURE_MISBEHAVING`: `tests/fixtures/misbehaving/`, a component that spins,
//!   exhausts memory or sleeps on request (`env!("WXNOTIFY_FIXTURE_MISBEHAVING")`).

include!("../scripts/build_component.rs");

fn main() {
    component_build::rerun_if_changed(&[
        "tests/fixtures/misbehaving/src",
        "tests/fixtures/misbehaving/Cargo.toml",
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
}
