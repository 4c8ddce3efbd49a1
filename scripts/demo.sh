#!/usr/bin/env bash
# The README's main job. Builds are done by `make demo`; this runs the program.
# Today: the version and a short op benchmark (the training demo replaces it
# once training lands).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/camoxpert}
"$BIN" --version
if [[ -x build/camoxpert_bench ]] || make -s build/camoxpert_bench >/dev/null 2>&1; then
    build/camoxpert_bench --quick
fi
