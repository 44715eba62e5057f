#!/usr/bin/env bash
# Soaks `wxnotify serve` (host/tests/binary/soak.rs) for SECONDS (default 180): steady load on
# the Redis outbox while the sandbox injects faults and Redis is killed and restarted; prints the
# figures (notifications, faults, RSS and open files after warm-up and at the end).
#
#   scripts/soak.sh          three minutes
#   scripts/soak.sh 30       what CI runs
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
WXNOTIFY_SOAK_SECONDS=${1:-180} cargo test -p wxnotify --test binary soak -- --ignored --nocapture \
    >"$log" 2>&1 || status=$?
grep -E '^soak: |^test |test result' "$log" || true
if [ "$status" -ne 0 ]; then
    tail -60 "$log" >&2
fi
exit "$status"
