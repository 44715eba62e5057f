//! Builds the guest component for `wasm32-wasip2` so the `wxnotify` library and binary carry
//! the built-in component (`BUILTIN_COMPONENT`).
//!
//! `WXNOTIFY_GUEST_WASM=/path/to/component.wasm` skips the build and embeds that file instead.

include!("../scripts/build_component.rs");

fn main() {
    println!("cargo:rerun-if-env-changed=WXNOTIFY_GUEST_WASM");
    if let Some(prebuilt) = std::env::var_os("WXNOTIFY_GUEST_WASM") {
        println!(
            "cargo:rustc-env=WXNOTIFY_GUEST_WASM={}",
            std::path::Path::new(&prebuilt).display()
        );
        return;
    }
    component_build::rerun_if_changed(&[
        "guest/src",
        "guest/Cargo.toml",
        "core/src",
        "core/Cargo.toml",
        "contract/src",
        "contract/Cargo.toml",
        "rules/src",
        "rules/Cargo.toml",
        "component-io/src",
        "component-io/Cargo.toml",
        "wit",
        "Cargo.lock",
        "scripts/build_component.rs",
    ]);
    let guest = component_build::build_component("wxnotify-guest", "wxnotify_guest.wasm");
    println!("cargo:rustc-env=WXNOTIFY_GUEST_WASM={}", guest.display());
}
