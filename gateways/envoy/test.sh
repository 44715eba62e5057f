#!/usr/bin/env bash
# The Envoy filter's tests: builds the filter (wasm32-wasip1) and runs it in proxy-wasm-host, a
# third-party Proxy-Wasm host (gateways/envoy/harness, Rust 1.96), against `wxnotify sandbox`.
# Arguments go to `cargo test` (a test name filters); `--clippy` lints the harness instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

cargo build --quiet -p wxnotify-envoy --target wasm32-wasip1 --release
# The sandbox binary (already built by `cargo test --workspace`).
cargo build --quiet -p wxnotify

# The harness compiles its own wasmtime (49, for proxy-wasm-host): built outside the clone, so
# a new clone on the same machine reuses it.
export CARGO_TARGET_DIR="${WXNOTIFY_ENVOY_HARNESS_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/wxnotify/envoy-harness}"
export WXNOTIFY_ENVOY_FILTER="$root/target/wasm32-wasip1/release/wxnotify_envoy.wasm"
export WXNOTIFY_BIN="$root/target/debug/wxnotify"
cd gateways/envoy/harness
if [ "${1:-}" = "--clippy" ]; then
    cargo clippy --all-targets -- -D warnings
else
    cargo test --quiet "$@"
fi
