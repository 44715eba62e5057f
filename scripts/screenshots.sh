#!/usr/bin/env bash
# Refreshes docs/console.png and docs/sandbox-phone.png from the browser test, which saves the
# pages it ends on when WXNOTIFY_SCREENSHOTS names a directory.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
WXNOTIFY_SCREENSHOTS="$PWD/docs" cargo test -p wxnotify --test binary browser
ls -l docs/console.png docs/sandbox-phone.png
