#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/, cargo fuzz + libFuzzer on nightly) for SECONDS
# each (default 60), starting from the committed seeds (fuzz/seeds/<target>, taken from the
# tests' vectors) and the corpus grown by earlier runs (fuzz/corpus/<target>, not committed).
# Prints each target's executions; a crash stops the script with the input saved under
# fuzz/artifacts/<target>/ — make it a regression test, then fix it.
#
#   scripts/fuzz.sh                          60 s per target
#   scripts/fuzz.sh 5                        what CI runs
#   FUZZ_RUNS=1000000 scripts/fuzz.sh        a million executions per target, however long
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
if [ -n "${FUZZ_RUNS:-}" ]; then
    budget=(-runs="$FUZZ_RUNS")
    what="$FUZZ_RUNS runs"
else
    budget=(-max_total_time="$seconds")
    what="${seconds}s"
fi

cargo +nightly fuzz build --release >/dev/null 2>&1 || cargo +nightly fuzz build --release
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    started=$(date +%s)
    if ! cargo +nightly fuzz run --release "$target" "corpus/$target" "seeds/$target" -- \
        "${budget[@]}" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz target $target failed: see above and fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    echo "$target: ${runs:-?} executions in $(($(date +%s) - started))s ($what), no crash"
    rm -f "$log"
done
