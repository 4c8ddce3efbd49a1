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
#   gpu/run.sh perf                       issue 11's side-by-side: camoxpert bench (bf16, 352²,
#                                         batch 16, dense and sparse, --profile) and the PyTorch twin on the
#                                         same card (fp16 autocast + GradScaler; bf16 + channels_last)
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
perf)
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
    git -C "$here/.." log --oneline -1 2>/dev/null || true
    camoxpert bench --device cuda --precision bf16 --backbone edgenext_base --img-size 352 --batch-size 16 \
        --mode both --steps 10 --profile --json "$log/bench_bf16.json" --overwrite > "$log/bench_bf16.log" 2>&1
    grep -E "^(dense|sparse)" "$log/bench_bf16.log"
    # the twin builds its parameters in numpy and lets cuDNN try algorithms on the first steps: a minute, not seconds
    for m in dense sparse; do
        for amp in "fp16" "bf16 --channels-last"; do
            timeout 150 python3 "$here/../tools/camoxpert_twin.py" bench --device cuda --backbone edgenext_base \
                --size 352x352 --batch 16 --mode $m --amp $amp --warmup 3 --iters 10 > "$log/twin_${m}_${amp%% *}.log" 2>&1
            grep -E "^twin|Error" "$log/twin_${m}_${amp%% *}.log" | tail -2 || echo "twin $m $amp: no result (see its log)"
        done
    done ;;
demo) BIN="$here/bin/camoxpert" DEVICE=${DEVICE:-cuda} exec scripts/demo.sh "$@" ;;
camoxpert) exec camoxpert "$@" ;;
*) echo "usage: gpu/run.sh test|verify|bench|perf|demo|camoxpert ..." >&2; exit 2 ;;
esac
