#!/usr/bin/env bash
# Re-vendors the standard WASI packages under wit/deps/ from pinned crates on crates.io:
#   wasi:http, io, clocks, random, cli, filesystem, sockets @0.2.12  <- wasmtime-wasi-http 48.0.8
#   wasi:keyvalue@0.2.0-draft2, wasi:config@0.2.0-draft-2024-09-27  <- spin-sdk 7.0.0
# These are the versions wasmtime and Spin implement; wit/deps/ is never edited by hand.
# `scripts/vendor-wit.sh --check` fails if wit/deps/ differs from what the pins produce.
set -euo pipefail

WASMTIME_WASI_HTTP=48.0.8
SPIN_SDK=7.0.0

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/pins/src"
cat >"$work/pins/Cargo.toml" <<TOML
[package]
name = "wit-pins"
version = "0.0.0"
edition = "2024"
[dependencies]
wasmtime-wasi-http = "=$WASMTIME_WASI_HTTP"
spin-sdk = "=$SPIN_SDK"
TOML
touch "$work/pins/src/lib.rs"
cargo fetch --quiet --manifest-path "$work/pins/Cargo.toml"

crate_dir() {
  cargo metadata --format-version 1 --manifest-path "$work/pins/Cargo.toml" |
    python3 -c "import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p['manifest_path']) for p in m['packages'] if p['name']=='$1' and p['version']=='$2'))"
}
http_dir=$(crate_dir wasmtime-wasi-http "$WASMTIME_WASI_HTTP")
spin_dir=$(crate_dir spin-sdk "$SPIN_SDK")

out="$work/deps"
mkdir -p "$out/keyvalue" "$out/config"
for pkg in cli clocks filesystem http io random sockets; do
  cp "$http_dir/wit/deps/$pkg.wit" "$out/$pkg.wit"
done
cp "$spin_dir"/wit/deps/wasi-keyvalue-2024-10-17/*.wit "$out/keyvalue/"
cp "$spin_dir"/wit/deps/wasi-runtime-config-2024-09-27/*.wit "$out/config/"

if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$out" "$root/wit/deps" >/dev/null; then
    diff -r "$out" "$root/wit/deps" | head -20 >&2 || true
    echo "error: wit/deps/ is not what scripts/vendor-wit.sh vendors; run scripts/vendor-wit.sh and commit" >&2
    exit 1
  fi
  echo "wit/deps/ is current"
else
  rm -rf "$root/wit/deps"
  cp -r "$out" "$root/wit/deps"
  echo "vendored wit/deps/ from wasmtime-wasi-http $WASMTIME_WASI_HTTP and spin-sdk $SPIN_SDK"
fi
