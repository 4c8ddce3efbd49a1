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
#   gpu/run.sh multi                      issue 16 (2+ GPUs): NCCL test, 2 GPUs vs 1, torchrun, scaling
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
multi)
    # issue 16 on a machine with 2+ GPUs: NCCL, 2 GPUs against 1 GPU with the same micro-batches
    # (fp32), torchrun's launch line, and the scaling of a training step (bf16, 352², batch 16 per GPU)
    nvidia-smi -L
    "$here/bin/camoxpert_tests" cuda_nccl > "$log/test_nccl.log" 2>&1; grep -v '^ok ' "$log/test_nccl.log" | tail -5
    d=/tmp/cx_multi; rm -rf $d; mkdir -p $d
    camoxpert synth --out $d/data --train 64 --test 8 --size 128 --seed 1 > /dev/null
    M="--dataset-path $d/data --backbone edgenext_xx_small --img-size 64 --batch-size 4 --epochs 3 --stage1-epochs 1 \
       --precision fp32 --progress 0 --val-fraction 0.25 --num-workers 2"
    camoxpert train $M --device cuda --accumulation-steps 2 --checkpoint-dir $d/one > "$log/train_one.log" 2>&1; echo "1 GPU rc=$?"
    camoxpert train $M --gpus 2 --checkpoint-dir $d/two > "$log/train_two.log" 2>&1; echo "--gpus 2 rc=$?"
    timeout 300 torchrun --no-python --nproc_per_node=2 --master_port=29533 camoxpert train $M --device cuda --use-ddp \
        --use-cod-specialized --checkpoint-dir $d/tr > "$log/train_torchrun.log" 2>&1; echo "torchrun rc=$?"
    tail -n 2 "$log/train_two.log" "$log/train_torchrun.log"
    python3 - "$d" <<'PY'
import json, sys
d = sys.argv[1]
def steps(r):
    out = []
    for line in open(f"{d}/{r}/train_log.jsonl"):
        j = json.loads(line)
        if j.get("type") == "step": out.append((j["loss"], j["grad_norm"]))
    return out
a, b, t = steps("one"), steps("two"), steps("tr")
worst = max(abs(x[0] - y[0]) / abs(x[0]) for x, y in zip(a, b)) if a and b else float("nan")
wn = max(abs(x[1] - y[1]) / abs(x[1]) for x, y in zip(a, b)) if a and b else float("nan")
print(f"1 GPU (accumulation 2) vs 2 GPUs, fp32 (48 training images: 6 steps an epoch either way): {len(a)}/{len(b)} steps, worst relative loss difference {worst:.2e}, grad norm {wn:.2e}; torchrun run: {len(t)} steps")
PY
    for g in 1 2; do
        camoxpert bench --gpus $g --device cuda --precision bf16 --backbone edgenext_base --img-size 352 --batch-size 16 \
            --mode both --steps 10 --json "$log/bench_gpus$g.json" --overwrite > "$log/bench_gpus$g.log" 2>&1
        echo "== $g GPU(s)"; grep -E "^(dense|sparse|error)" "$log/bench_gpus$g.log"
    done ;;
demo) BIN="$here/bin/camoxpert" DEVICE=${DEVICE:-cuda} exec scripts/demo.sh "$@" ;;
camoxpert) exec camoxpert "$@" ;;
*) echo "usage: gpu/run.sh test|verify|bench|perf|multi|demo|camoxpert ..." >&2; exit 2 ;;
esac
