//! Builds the guest component for `wasm32-wasip2` so the `wxnotify` library and binary carry
//! the built-in component (`BUILTIN_COMPONENT`).
//!
//! `WXNOTIFY_GUEST_WASM=/path/to/component.wasm` skips the build and embeds that file instead.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf();
    for input in [
        "guest/src",
        "guest/Cargo.toml",
        "rules/src",
        "rules/Cargo.toml",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=WXNOTIFY_GUEST_WASM");

    if let Some(prebuilt) = env::var_os("WXNOTIFY_GUEST_WASM") {
        println!(
            "cargo:rustc-env=WXNOTIFY_GUEST_WASM={}",
            Path::new(&prebuilt).display()
        );
        return;
    }
    require_target();

    // One guest build directory for every profile and tool (build, test, clippy) of the
    // workspace, beside the host's own: target/<profile>/build/wxnotify-*/out → target/.
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|target| target.join("wasm-guest"))
        .unwrap_or_else(|| out_dir.join("wasm-guest"));

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--package",
            "wxnotify-guest",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        // Host flags and tool wrappers (clippy-driver, coverage) must not leak into the guest.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .status()
        .expect("could not run cargo to build the guest component");
    assert!(
        status.success(),
        "building the guest component (guest/) for {TARGET} failed"
    );

    let wasm = target_dir
        .join(TARGET)
        .join("release")
        .join("wxnotify_guest.wasm");
    assert!(
        wasm.exists(),
        "the guest build produced no {}",
        wasm.display()
    );
    println!("cargo:rustc-env=WXNOTIFY_GUEST_WASM={}", wasm.display());
}

/// Fails with the command that fixes it when the wasm target is missing.
fn require_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if !libdir.is_some_and(|dir| dir.exists()) {
        panic!(
            "\nerror: the {TARGET} target is not installed\n  = help: install it with `rustup target add {TARGET}`\n"
        );
    }
}
