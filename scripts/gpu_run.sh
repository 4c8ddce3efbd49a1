#!/usr/bin/env bash
# Runs camoxpert's GPU bundle (scripts/gpu_bundle.sh) on the GPU machine, from
# the repository root there (the tests read tests/fixtures/ relative to it).
# Unpacks whichever of gpu/{bin,fixtures,sparse}.tar.xz came with the call, then:
#
#   gpu/run.sh test [NAME... | -NAME...]  the test runner of `make test`: CPU tests,
#                                         the op table's CUDA column, GPU training
#   gpu/run.sh verify [FIXTURE...]        camoxpert verify --device cuda, fp32 then bf16
#                                         (default: every shared fixture present)
#   gpu/run.sh bench [ARGS]               camoxpert bench --device cuda ARGS
#   gpu/run.sh demo                       the demo's recipe (scripts/demo.sh; DEVICE=cuda unless set)
#   gpu/run.sh camoxpert ARGS             the program itself
# Logs go to $OUT when it is set (the device tool brings them back).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for a in bin fixtures sparse; do
    [[ -f "$here/$a.tar.xz" ]] && tar -C "$here" -xJf "$here/$a.tar.xz"
done
export CAMOXPERT_SHARED="$here/shared"
export PATH="$here/bin:$PATH"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_WAIT_POLICY=passive
log=${OUT:-/tmp}
what=${1:-test}
shift || true
case "$what" in
test)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$here/bin/camoxpert_tests" "$@" > "$log/test.log" 2>&1
    rc=$?
    grep -v '^ok ' "$log/test.log" | tail -150
    exit $rc ;;
verify)
    rc=0
    files=("$@")
    [[ ${#files[@]} -gt 0 ]] || files=("$here"/shared/fixtures/*.safetensors)
    for f in "${files[@]}"; do
        for p in fp32 bf16; do
            echo "== $(basename "$f") $p"
            camoxpert verify --device cuda --precision "$p" --quiet "$f" > "$log/verify_$(basename "$f" .safetensors)_$p.log" 2>&1 || rc=1
            grep -E "FAIL|PASS|gpu gradients|gpu training|error" "$log/verify_$(basename "$f" .safetensors)_$p.log" | tail -12
        done
    done
    exit $rc ;;
bench) exec camoxpert bench --device cuda "$@" ;;
demo) BIN="$here/bin/camoxpert" DEVICE=${DEVICE:-cuda} exec scripts/demo.sh "$@" ;;
camoxpert) exec camoxpert "$@" ;;
*) echo "usage: gpu/run.sh test|verify|bench|demo|camoxpert ..." >&2; exit 2 ;;
esac
