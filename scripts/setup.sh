#!/usr/bin/env bash
# Installs what building and testing wxnotify needs; each step is a no-op when already done.
set -euo pipefail

# The component is built for wasm32-wasip2.
rustup target add wasm32-wasip2 >/dev/null

# rustfmt and clippy for the CI gates.
rustup component add rustfmt clippy >/dev/null 2>&1 || true
