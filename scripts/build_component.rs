// Shared by the build scripts that build a workspace crate as a wasm component
// (host/build.rs: the guest; tests/build.rs: the test fixtures and the plugins). Not a crate of
// its own: each build script pulls it in with
//
//     include!("../scripts/build_component.rs");
//
// and calls `component_build::build_component(package, wasm_name)`. Everything lives in the
// `component_build` module so the including file's own `use`s and items never clash with it.

#[allow(
    dead_code,
    reason = "each build script uses only part of this shared file"
)]
mod component_build {
    use std::env;
    use std::path::PathBuf;
    use std::process::Command;

    /// The target every component is built for.
    pub const TARGET: &str = "wasm32-wasip2";

    /// The workspace root: the nearest ancestor of the including package whose `Cargo.toml`
    /// declares `[workspace]`.
    pub fn workspace_root() -> PathBuf {
        let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
        manifest_dir
            .ancestors()
            .find(|dir| {
                std::fs::read_to_string(dir.join("Cargo.toml"))
                    .is_ok_and(|manifest| manifest.lines().any(|l| l.trim() == "[workspace]"))
            })
            .unwrap_or_else(|| panic!("no workspace root above {}", manifest_dir.display()))
            .to_path_buf()
    }

    /// Asks cargo to rerun the build script when any of `inputs` (relative to the workspace
    /// root: files or directories) changes.
    pub fn rerun_if_changed(inputs: &[&str]) {
        let root = workspace_root();
        for input in inputs {
            println!("cargo:rerun-if-changed={}", root.join(input).display());
        }
    }

    /// Builds workspace member `package` for [`TARGET`] in release mode and returns the path of
    /// its component, `wasm_name` (the cdylib's file name, e.g. `wxnotify_guest.wasm`).
    ///
    /// Every component of the workspace, for every profile and tool (build, test, clippy),
    /// shares one build directory beside the outer build's own: `target/wasm-guest`.
    pub fn build_component(package: &str, wasm_name: &str) -> PathBuf {
        require_target();
        let root = workspace_root();

        // OUT_DIR is target/<profile>/build/<pkg>-<hash>/out → target/.
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
                package,
            ])
            .env("CARGO_TARGET_DIR", &target_dir)
            // Host flags and tool wrappers (clippy-driver, coverage) must not leak into the
            // component.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("RUSTC_WRAPPER")
            .status()
            .unwrap_or_else(|e| panic!("could not run cargo to build {package}: {e}"));
        assert!(
            status.success(),
            "building the component {package} for {TARGET} failed"
        );

        let wasm = target_dir.join(TARGET).join("release").join(wasm_name);
        assert!(
            wasm.exists(),
            "building {package} produced no {}",
            wasm.display()
        );
        wasm
    }

    /// Fails with the command that fixes it when the wasm target is missing.
    pub fn require_target() {
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
}
