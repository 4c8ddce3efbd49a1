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

# Another package manager (an unattended upgrade, a second apt) holding dpkg's or apt's
# lock: wait for it, saying every 10 s who holds which, as apt's own
# -o DPkg::Lock::Timeout does for the install (used below too) — instead of failing at once.
# DEPS_LOCKS (the lock files) and DEPS_LOCK_REPORT_S are for the test (tests/test_hostile_messages.c);
# `deps.sh --wait-locks` only waits.
apt_locks=(${DEPS_LOCKS:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock})
wait_for_locks() {
    local waited=0 report=${DEPS_LOCK_REPORT_S:-10} limit=${DEPS_LOCK_TIMEOUT_S:-1800}
    while :; do
        local held="" f ino pid
        for f in "${apt_locks[@]}"; do
            [[ -e $f ]] || continue
            # /proc/locks: "1: POSIX ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF" (flock locks say FLOCK)
            local dev
            dev=$(stat -c %d "$f")
            ino=$(printf '%02x:%02x:%s' $(((dev >> 8) & 0xfff)) $(((dev & 0xff) | ((dev >> 12) & 0xfff00))) "$(stat -c %i "$f")")
            pid=$(awk -v id="$ino" '$0 !~ /->/ && $6 == id {print $5; exit}' /proc/locks)
            [[ -n $pid ]] && held="$f (pid $pid: $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null | cut -c1-60))"
            [[ -n $held ]] && break
        done
        [[ -z $held ]] && return 0
        if ((waited % report == 0)); then
            echo "deps: waiting for another package manager to finish: $held holds its lock (${waited} s)"
        fi
        if ((waited >= limit)); then
            echo "deps: gave up after ${waited} s: $held still holds its lock; run this again when it has finished" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}
if [[ "${1:-}" == "--wait-locks" ]]; then wait_for_locks; exit 0; fi
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
    wait_for_locks
    $SUDO apt-get -o DPkg::Lock::Timeout=1800 update -qq
    wait_for_locks
    $SUDO apt-get -o DPkg::Lock::Timeout=1800 install -y -qq --no-install-recommends "${missing[@]}"
fi
ort=tools/node/node_modules/onnxruntime-node/package.json
want=$(sed -n 's/.*"onnxruntime-node": *"\([^"]*\)".*/\1/p' tools/node/package.json)
if [[ -f $ort ]] && grep -q "\"version\": *\"$want\"" "$ort"; then
    echo "deps: onnxruntime-node $want present (tools/node)"
else
    echo "deps: npm install onnxruntime-node $want into tools/node"
    npm install --prefix tools/node --ignore-scripts --no-package-lock --no-audit --no-fund --loglevel=error
fi
