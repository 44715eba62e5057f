#!/usr/bin/env bash
# The benchmark suite (BENCHMARKS.md) in one command: installs the peer clients the sends bench
# compares with (wechatpy from PyPI, `wechat-api` from npm), then runs every bench. Arguments go
# to each bench: `scripts/bench.sh --quick` for a short run.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

# The peers, pinned (host/benches/peers/): Python's in a virtualenv of their own, so they
# neither need nor disturb the system's packages.
peers_venv="${XDG_CACHE_HOME:-$HOME/.cache}/wxnotify/bench-peers"
if [ ! -x "$peers_venv/bin/python" ]; then
    python3 -m venv "$peers_venv"
fi
"$peers_venv/bin/pip" install --quiet --disable-pip-version-check \
    -r host/benches/peers/requirements.txt
export WXNOTIFY_BENCH_PYTHON="$peers_venv/bin/python"
(cd host/benches/peers && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

for bench in calls sends serve console tokens sync component_load; do
    echo "== cargo bench --bench $bench"
    cargo bench -p wxnotify --bench "$bench" -- "$@"
done
