#!/usr/bin/env bash
# Re-vendors the standard WASI packages from pinned crates on crates.io:
#   wit/deps/: what the component is built against
#     wasi:http, io, clocks, random, cli, filesystem, sockets @0.2.12  <- wasmtime-wasi-http 48.0.8
#     wasi:keyvalue@0.2.0-draft2, wasi:config@0.2.0-draft-2024-09-27  <- spin-sdk 7.0.0
#   gateways/spin/wit/deps/: what Spin 4's `platform` world names (gateways/spin/wit/platform.wit)
#     wasi:http, io, clocks, random, cli, filesystem, sockets @0.2.6   <- wasmtime-wasi-http 35.0.0
#     wasi:keyvalue@0.2.0-draft2, wasi:config@0.2.0-draft-2024-09-27  <- spin-sdk 7.0.0
# These are the versions wasmtime and Spin implement; the deps/ folders are never edited by hand.
# `scripts/vendor-wit.sh --check` fails if either differs from what the pins produce.
set -euo pipefail

WASMTIME_WASI_HTTP=48.0.8
SPIN_WASI_HTTP=35.0.0
SPIN_SDK=7.0.0

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One manifest per pin: two versions of one crate cannot share a dependency graph.
fetch() { # NAME VERSION -> the crate's source directory
  local dir="$work/pins-$1-$2"
  mkdir -p "$dir/src"
  touch "$dir/src/lib.rs"
  printf '[package]\nname = "wit-pins"\nversion = "0.0.0"\nedition = "2024"\n[dependencies]\n%s = "=%s"\n' \
    "$1" "$2" >"$dir/Cargo.toml"
  cargo fetch --quiet --manifest-path "$dir/Cargo.toml"
  cargo metadata --format-version 1 --manifest-path "$dir/Cargo.toml" |
    python3 -c "import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p['manifest_path']) for p in m['packages'] if p['name']=='$1' and p['version']=='$2'))"
}
http_dir=$(fetch wasmtime-wasi-http "$WASMTIME_WASI_HTTP")
spin_http_dir=$(fetch wasmtime-wasi-http "$SPIN_WASI_HTTP")
spin_dir=$(fetch spin-sdk "$SPIN_SDK")

# WASI 0.2 packages (one file or one folder each, depending on the release), then the drafts.
vendor() { # FROM_WASI_HTTP_DIR OUT
  mkdir -p "$2/keyvalue" "$2/config"
  for pkg in cli clocks filesystem http io random sockets; do
    cp -r "$1/wit/deps/$pkg"* "$2/"
  done
  cp "$spin_dir"/wit/deps/wasi-keyvalue-2024-10-17/*.wit "$2/keyvalue/"
  cp "$spin_dir"/wit/deps/wasi-runtime-config-2024-09-27/*.wit "$2/config/"
}
vendor "$http_dir" "$work/deps"
vendor "$spin_http_dir" "$work/spin-deps"

targets=("$work/deps:wit/deps" "$work/spin-deps:gateways/spin/wit/deps")
if [ "${1:-}" = "--check" ]; then
  for pair in "${targets[@]}"; do
    out=${pair%%:*} dest=${pair#*:}
    if ! diff -r "$out" "$root/$dest" >/dev/null; then
      diff -r "$out" "$root/$dest" | head -20 >&2 || true
      echo "error: $dest/ is not what scripts/vendor-wit.sh vendors; run scripts/vendor-wit.sh and commit" >&2
      exit 1
    fi
    echo "$dest/ is current"
  done
else
  for pair in "${targets[@]}"; do
    out=${pair%%:*} dest=${pair#*:}
    rm -rf "${root:?}/$dest"
    mkdir -p "$(dirname "$root/$dest")"
    cp -r "$out" "$root/$dest"
  done
  echo "vendored wit/deps/ (wasmtime-wasi-http $WASMTIME_WASI_HTTP, spin-sdk $SPIN_SDK) and" \
    "gateways/spin/wit/deps/ (wasmtime-wasi-http $SPIN_WASI_HTTP, spin-sdk $SPIN_SDK)"
fi
