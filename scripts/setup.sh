#!/usr/bin/env bash
# Installs what building and testing wxnotify needs; each step is a no-op when already done.
set -euo pipefail

# The component is built for wasm32-wasip2, the Envoy filter for wasm32-wasip1.
rustup target add wasm32-wasip2 wasm32-wasip1 >/dev/null

# The Envoy filter's test host (gateways/envoy/harness: proxy-wasm-host) needs Rust 1.96.
rustup toolchain install 1.96 --profile minimal --component clippy,rustfmt >/dev/null 2>&1

# rustfmt and clippy for the CI gates.
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Fuzzing (scripts/fuzz.sh): libFuzzer needs the nightly toolchain and cargo-fuzz.
rustup toolchain install nightly --profile minimal >/dev/null 2>&1
if ! cargo fuzz --version 2>/dev/null | grep -q '0.13.2'; then
    cargo install cargo-fuzz --version 0.13.2 --locked --quiet
fi

# Debian packages, installed only when their command is missing.
apt_install() {
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update -qq >/dev/null
    # `env`: sudo would drop an exported DEBIAN_FRONTEND.
    $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The Redis backend's tests (store/) start their own redis-server and fail without one.
command -v redis-server >/dev/null 2>&1 || apt_install redis-server

# The Node.js gateway (gateways/node) and its tests: Node and npm, then the packages its
# lockfile pins (jco, preview2-shim, ioredis), installed again only when the lockfile changes.
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
node_gateway="$(cd "$(dirname "$0")/.." && pwd)/gateways/node"
if [ ! "$node_gateway/node_modules/.package-lock.json" -nt "$node_gateway/package-lock.json" ]; then
    (cd "$node_gateway" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# The browser tests (host/tests/binary/browser.rs): Debian's Chromium and its ChromeDriver,
# driven headless over WebDriver, and a Chinese font for the pages' text (and screenshots).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 \
    || [ ! -d /usr/share/fonts/truetype/wqy ]; then
    apt_install chromium chromium-driver fonts-wqy-microhei
fi
