#!/usr/bin/env bash
# Installs camoxpert's system dependencies on Debian 12 — only what is missing.
# Idempotent: running it twice installs nothing the second time.
# Developer-only extras (PyTorch for the fixture tools under tools/): --dev.
# Then ONNX Runtime for the export parity test (tests/test_onnx.c): the npm package
# onnxruntime-node into tools/node/node_modules (git ignores it), with --ignore-scripts:
# its install script would fetch a GPU provider from a host these machines cannot reach;
# the CPU runtime ships inside the package.
set -euo pipefail
cd "$(dirname "$0")/.."
# clang + libclang-rt-14-dev: libFuzzer for `make fuzz` (without them fuzz-smoke falls back to a gcc mutation driver).
# chromium: the test that loads `camoxpert report`'s page in a headless browser (skipped without it);
# also a browser to open the demo's report in.
pkgs=(build-essential pkg-config libopenblas-openmp-dev libdnnl-dev libcjson-dev libspng-dev libjpeg62-turbo-dev clang libclang-rt-14-dev
      chromium)
if [[ "${1:-}" == "--dev" ]]; then pkgs+=(python3-torch python3-numpy); fi
# Node.js and npm (a Node that came with its own npm, as NodeSource's does, is kept)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then pkgs+=(nodejs npm); fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "deps: all ${#pkgs[@]} packages present"
else
    echo "deps: installing ${missing[*]}"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "deps: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
        SUDO=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
ort=tools/node/node_modules/onnxruntime-node/package.json
want=$(sed -n 's/.*"onnxruntime-node": *"\([^"]*\)".*/\1/p' tools/node/package.json)
if [[ -f $ort ]] && grep -q "\"version\": *\"$want\"" "$ort"; then
    echo "deps: onnxruntime-node $want present (tools/node)"
else
    echo "deps: npm install onnxruntime-node $want into tools/node"
    npm install --prefix tools/node --ignore-scripts --no-package-lock --no-audit --no-fund --loglevel=error
fi
