#!/usr/bin/env bash
# Every test: the Rust workspace (unit, end-to-end and process tests, the gateway import
# checks), then the Node.js gateway's own, which run the component that build made (transpiled
# with jco) against the sandbox binary and a redis-server of their own, then the Envoy filter's,
# in a third-party Proxy-Wasm host against the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace

echo "== gateways/node (the component on Node.js, key-value in Redis)"
cd gateways/node
npm run --silent build
npm test

echo "== gateways/envoy (the filter in proxy-wasm-host)"
cd ../..
./gateways/envoy/test.sh
