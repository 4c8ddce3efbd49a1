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
#   gpu/run.sh scale                      issues 16/17: bench over 1, 2, 4.. GPUs, all-reduce time, buckets off, torchrun
#   gpu/run.sh dpcmp [BACKBONE SIZE]      issue 16: --sync-bn 2x8 vs 1x16 (20 steps, fp32) beside the fp32 floor
#                                         and a repeat of the 1-GPU run (on one GPU only these two are compared)
#   gpu/run.sh dp                         the same (edgenext_xx_small 128), two "nodes", kill -9 of a rank + resume
#   gpu/run.sh dpkill                     only the kill -9 of a rank and the resume
#   gpu/run.sh twin-ddp                   the PyTorch twin under DDP (torchrun) on 1 and all GPUs
#   gpu/run.sh twin-dpcmp [BACKBONE SIZE] issue 16's fp32 bound applied to PyTorch itself: the twin's 1 GPU x 16
#                                         against torchrun 2 x 8 with SyncBatchNorm, and its own floor
#   gpu/run.sh predict [N]                issue 11: predict on a folder of N (2048) 768x768 JPEGs, edgenext_base
#                                         dense at 352, bf16: batch 64 with 16/8 workers, defaults, batch 1,
#                                         CUDA graphs off; bench (batch-1 forward eager and as a graph)
#   gpu/run.sh step27                     issue 27 in one call (< 8 min on one H100): the op table's CUDA column
#                                         and the first-write and training-graph GPU tests, the dense fixture's verify
#                                         in fp32 and bf16, then bench (bf16, edgenext_base 352², batch 16, dense) with
#                                         the switches CAMOXPERT_FIRST_WRITE, CAMOXPERT_FUSE, CAMOXPERT_TRAIN_GRAPH all
#                                         on, all off, each off alone (alternated), and one --profile run; a table
#   gpu/run.sh sparse28                   issue 28 on one GPU: the MoE ops' CUDA column and the sparse step's
#                                         syncs test, the sparse and spatial fixtures (fp32, bf16), then bench
#                                         (bf16, edgenext_base 352², batch 16): the new MoE dispatch against the former
#                                         (CAMOXPERT_MOE_PLAN=old) alternated, global and spatial, profiles, and the
#                                         (E,k) sweep beside dense; a summary at the end, logs in $OUT
#   gpu/run.sh memory29                   issue 29: peak memory and step time at each --recompute level (bench,
#                                         bf16, edgenext_base 352², batch 16, dense and sparse; auto under a
#                                         6 GiB cap), predict at batch 64, each estimate beside its measured peak,
#                                         and the same losses to the last bit with and without recomputation
#   gpu/run.sh demo                       the demo's recipe (scripts/demo.sh; DEVICE=cuda unless set)
#   gpu/run.sh bf16sweep [ARGS]           issue 26: tools/bf16_sweep.py (twin fixtures over the five backbones,
#                                         dense and sparse; PyTorch's bf16 autocast error recorded in each; verify
#                                         --device cuda --precision bf16), the shared fixtures too; with
#                                         gpu/main-bin.tar.xz (bin/camoxpert and bin/libcamoxpert_cuda.so of
#                                         another build, e.g. main's) both builds side by side
#   gpu/run.sh camoxpert ARGS             the program itself
# Logs go to $OUT when it is set (the device tool brings them back).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for a in bin fixtures sparse; do
    [[ -f "$here/$a.tar.xz" ]] && tar -C "$here" -xJf "$here/$a.tar.xz"
done
[[ -f "$here/main-bin.tar.xz" ]] && mkdir -p "$here/main" && tar -C "$here/main" -xJf "$here/main-bin.tar.xz"
export CAMOXPERT_SHARED="$here/shared"
export PATH="$here/bin:$PATH"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_WAIT_POLICY=passive
log=${OUT:-/tmp}
# kill -9 of rank 1 of a 2-GPU run after its first checkpoint (data in $1/data): how long the
# launcher takes to stop everything, then a resume of the last checkpoint on 2 GPUs
kill_test() {
    local d=$1
    K="--dataset-path $d/data --backbone edgenext_xx_small --img-size 128 --batch-size 8 --epochs 40 --stage1-epochs 0 --progress 0 --val-fraction 0.1"
    camoxpert train $K --gpus 2 --checkpoint-dir $d/kill > "$log/dp_kill.log" 2>&1 & lp=$!
    for i in $(seq 600); do [[ -f $d/kill/last.safetensors ]] && break; sleep 0.1; done; sleep 3
    victim=$(pgrep -P $lp | tail -n 1); t0=$(date +%s.%N); kill -9 "$victim"; wait $lp; rc=$?; t1=$(date +%s.%N)
    echo "kill -9 of pid $victim (rank 1): the launcher exited rc=$rc after $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s"
    tail -n 4 "$log/dp_kill.log"
    camoxpert train --resume-from $d/kill/last.safetensors --gpus 2 --max-steps 60 --progress 0 > "$log/dp_resume.log" 2>&1
    echo "resume of the last checkpoint on 2 GPUs: rc=$?"; tail -n 2 "$log/dp_resume.log"
}
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
    python3 - "$d" "$here/../tools" <<'PY'
import sys
d = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import runlog
def steps(r):
    return runlog.steps(f"{d}/{r}")
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
scale)
    # issues 16/17: the training step's scaling over 1, 2, 4... GPUs of this machine (bf16, 352², batch 16 per
    # GPU, dense and sparse), the gradient all-reduce alone, buckets off, torchrun's launch on every GPU
    nvidia-smi -L; nvidia-smi topo -m; git -C "$here/.." log --oneline -1 2>/dev/null || true
    n=$(nvidia-smi -L | wc -l)
    B="--device cuda --precision bf16 --backbone edgenext_base --img-size 352 --batch-size 16 --steps 10 --overwrite"
    for g in 1 2 4 8; do
        [[ $g -le $n ]] || break
        camoxpert bench --gpus $g $B --mode both --json "$log/scale_g$g.json" > "$log/scale_g$g.log" 2>&1
        echo "== $g GPU(s)"; grep -E "^(dense|sparse|error)|all-reduce" "$log/scale_g$g.log"
    done
    CAMOXPERT_GRAD_BUCKETS=0 camoxpert bench --gpus $n $B --mode both --json "$log/scale_nobuckets.json" \
        > "$log/scale_nobuckets.log" 2>&1
    echo "== $n GPUs, one all-reduce after the backward (CAMOXPERT_GRAD_BUCKETS=0)"
    grep -E "^(dense|sparse|error)|all-reduce" "$log/scale_nobuckets.log"
    timeout 300 torchrun --no-python --nproc_per_node=$n --master_port=29541 camoxpert bench $B --mode dense \
        --json "$log/scale_torchrun.json" > "$log/scale_torchrun.log" 2>&1
    echo "== torchrun --no-python --nproc_per_node=$n camoxpert bench: rc=$?"
    grep -E "^(dense|sparse|error)|all-reduce|data parallel" "$log/scale_torchrun.log" ;;
dpcmp|dp)
    # issue 16's correctness on GPUs: fp32 --sync-bn 2 GPUs x 8 against 1 GPU x 16 for 20 steps (losses and
    # final parameters), beside the fp32 floor (the 1-GPU run against itself with other summation orders) and
    # per-GPU BatchNorm; `dp` adds a two-"node" torchrun run (node ranks 0 and 1, one GPU each, TCP on
    # 127.0.0.1) and kill -9 of a rank mid-training, then a resume of the last checkpoint.
    # dpcmp [BACKBONE SIZE] (default edgenext_xx_small 128)
    bb=${1:-edgenext_xx_small}; sz=${2:-128}
    d=/tmp/cx_dp_$bb; rm -rf $d; mkdir -p $d
    camoxpert synth --out $d/data --train 400 --test 8 --size $sz --seed 3 > /dev/null || exit 1
    M="--dataset-path $d/data --backbone $bb --img-size $sz --precision fp32 --progress 0 \
       --val-fraction 0.1 --num-workers 8 --stage1-epochs 0 --epochs 2 --max-steps 20 --seed 5"
    camoxpert train $M --device cuda --batch-size 16 --checkpoint-dir $d/one > "$log/dp_${bb}_one.log" 2>&1
    echo "$bb $sz: 1 GPU x 16 rc=$?"
    camoxpert train $M --device cuda --batch-size 16 --checkpoint-dir $d/again > "$log/dp_${bb}_again.log" 2>&1
    echo "1 GPU x 16 again rc=$?"
    if [[ $(nvidia-smi -L | wc -l) -lt 2 ]]; then echo "one GPU: the repeat only"; else
    CAMOXPERT_CONV_NONDETERMINISTIC=1 camoxpert train $M --device cuda --batch-size 16 --checkpoint-dir $d/nd \
        > "$log/dp_${bb}_nd.log" 2>&1; echo "1 GPU x 16, non-deterministic cuDNN rc=$?"
    camoxpert train $M --gpus 2 --batch-size 8 --sync-bn --checkpoint-dir $d/two > "$log/dp_${bb}_two.log" 2>&1
    echo "2 GPUs x 8 --sync-bn rc=$?"
    camoxpert train $M --gpus 2 --batch-size 8 --checkpoint-dir $d/loc > "$log/dp_${bb}_loc.log" 2>&1
    echo "2 GPUs x 8, per-GPU BatchNorm rc=$?"
    fi
    python3 - "$d" "$here/../tools" <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import safetensors_io as sio
d = sys.argv[1]
import runlog
def steps(r):
    return [loss for (loss,) in runlog.steps(f"{d}/{r}", keys=("loss",))]
def params(r):
    return sio.load(f"{d}/{r}/last.safetensors")[0]
def l2(A, B):
    ks = [n for n in A if A[n].dtype.kind == "f" and "running" not in n]
    num = sum(float(((A[n].astype(np.float64) - B[n]) ** 2).sum()) for n in ks)
    return (num / sum(float((A[n].astype(np.float64) ** 2).sum()) for n in ks)) ** 0.5
for a, b, what in (("one", "again", "1 GPU x 16 vs the same run again"),
                   ("one", "nd", "1 GPU x 16 vs itself with non-deterministic cuDNN (the fp32 floor)"),
                   ("one", "two", "1 GPU x 16 vs 2 GPUs x 8 --sync-bn"),
                   ("one", "loc", "1 GPU x 16 vs 2 GPUs x 8 per-GPU BatchNorm")):
    try:
        x, y = steps(a), steps(b)
        rel = [abs(u - v) / abs(u) for u, v in zip(x, y)]
        print(f"{what}: {len(x)}/{len(y)} steps; loss at step 1 {rel[0]:.1e}, worst over the steps {max(rel):.2e}; "
              f"parameters after them {l2(params(a), params(b)):.2e} relative L2")
        print("  per step:", " ".join(f"{r:.0e}" for r in rel))
    except Exception as e:
        print(f"{what}: {e!r}"[:200])
PY
    [[ $what == dp ]] || exit 0
    # two "nodes" on this machine: one launcher group each, one GPU each, rendezvous over TCP on 127.0.0.1
    T="--dataset-path $d/data --backbone edgenext_xx_small --img-size 128 --batch-size 8 --epochs 1 --stage1-epochs 0 --progress 0 --val-fraction 0.1"
    for nr in 1 0; do
        CUDA_VISIBLE_DEVICES=$nr timeout 300 torchrun --no-python --nnodes=2 --node_rank=$nr --nproc_per_node=1 \
            --master_addr=127.0.0.1 --master_port=29561 camoxpert train $T --device cuda --use-ddp \
            --checkpoint-dir $d/nodes > "$log/dp_node$nr.log" 2>&1 &
    done
    wait; echo "two nodes: $(grep -c '"type":"step"' $d/nodes/train_log.jsonl 2>/dev/null) steps logged"; tail -n 3 "$log/dp_node0.log"
    kill_test "$d" ;;
dpkill)
    # only the kill -9 of a rank and the resume (edgenext_xx_small 128)
    d=/tmp/cx_dpkill; rm -rf $d; mkdir -p $d
    camoxpert synth --out $d/data --train 400 --test 8 --size 128 --seed 3 > /dev/null || exit 1
    kill_test "$d" ;;
twin-dpcmp)
    # the same comparison as dpcmp for the PyTorch twin (tools/camoxpert_twin.py ddpcmp: float32 without TF32,
    # AdamW lr 1e-4, clipping 0.5, 20 steps on the same random global batches of 16): one GPU x 16 (twice: is
    # PyTorch deterministic here?), one GPU x 16 with cudnn.benchmark (other algorithms: the floor), and torchrun
    # 2 GPUs x 8 with SyncBatchNorm's function (and the uncertainty map's global maximum), and with per-GPU BN
    bb=${1:-edgenext_xx_small}; sz=${2:-128}
    T="$here/../tools/camoxpert_twin.py"; d=/tmp/twdp_$bb; rm -rf $d; mkdir -p $d
    A="--backbone $bb --size $sz --batch 16 --steps 20 --device cuda"
    python3 "$T" ddpcmp $A --out $d/one.npz > "$log/twdp_${bb}_one.log" 2>&1 || tail -3 "$log/twdp_${bb}_one.log"
    python3 "$T" ddpcmp $A --out $d/again.npz > "$log/twdp_${bb}_again.log" 2>&1 || tail -3 "$log/twdp_${bb}_again.log"
    python3 "$T" ddpcmp $A --cudnn-benchmark --out $d/bm.npz > "$log/twdp_${bb}_bm.log" 2>&1 || tail -3 "$log/twdp_${bb}_bm.log"
    timeout 300 torchrun --nproc_per_node=2 --master_port=29581 "$T" ddpcmp $A --sync-bn --out $d/two.npz \
        > "$log/twdp_${bb}_two.log" 2>&1 || tail -3 "$log/twdp_${bb}_two.log"
    timeout 300 torchrun --nproc_per_node=2 --master_port=29582 "$T" ddpcmp $A --out $d/loc.npz \
        > "$log/twdp_${bb}_loc.log" 2>&1 || tail -3 "$log/twdp_${bb}_loc.log"
    echo "twin $bb $sz, float32, against one GPU x 16:"
    python3 "$T" ddpcmp-report $d/one.npz $d/again.npz --what "the same run again"
    python3 "$T" ddpcmp-report $d/one.npz $d/bm.npz --what "one GPU x 16, cudnn.benchmark (the floor)"
    python3 "$T" ddpcmp-report $d/one.npz $d/two.npz --what "2 GPUs x 8, SyncBatchNorm"
    python3 "$T" ddpcmp-report $d/one.npz $d/loc.npz --what "2 GPUs x 8, per-GPU BatchNorm" ;;
twin-ddp)
    # the PyTorch twin under DDP (torchrun, NCCL), as the reference trains with --use-ddp: 352², batch 16 per GPU
    n=$(nvidia-smi -L | wc -l)
    IFS=, read -ra specs <<< "${TWIN_SPECS:-dense fp16 1,dense fp16 $n,sparse fp16 $n,sparse fp16 1,dense bf16 $n}"
    for spec in "${specs[@]}"; do
        set -- $spec; cl=""; [[ $2 == bf16 ]] && cl=--channels-last
        timeout 150 torchrun --nproc_per_node=$3 --master_port=29571 "$here/../tools/camoxpert_twin.py" bench \
            --device cuda --backbone edgenext_base --size 352x352 --batch 16 --mode $1 --amp $2 $cl --warmup 3 --iters 10 \
            > "$log/twin_ddp_$1_$2_$3.log" 2>&1
        grep -E "^twin|Error" "$log/twin_ddp_$1_$2_$3.log" | tail -n 2 || echo "twin $spec: no result (see its log)"
    done ;;
predict)
    # issue 11's predict target: a folder of JPEGs (synthetic scenes at 768x768, about COD10K's
    # photo size), a checkpoint from one training step (speed does not depend on the weights)
    n=${1:-2048}; d=/tmp/cx_pred; rm -rf $d; mkdir -p $d/photos
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
    nproc
    SECONDS=0
    camoxpert synth --out $d/data --train 16 --test 256 --size 768 --seed 1 > "$log/pred_synth.log" 2>&1 || exit 1
    echo "synth: $SECONDS s"
    for r in $(seq 1 $(( (n + 255) / 256 ))); do
        for f in $d/data/Test/Image/*.jpg; do cp "$f" "$d/photos/r${r}_$(basename "$f")"; done
    done
    ls $d/photos | head -n $n > $d/keep; ( cd $d/photos && ls | grep -vxFf $d/keep | xargs -r rm -f )
    du -sh $d/photos; ls $d/photos | wc -l
    camoxpert train --dataset-path $d/data --backbone edgenext_base --img-size 352 --batch-size 8 --stage1-epochs 0 \
        --epochs 1 --max-steps 1 --val-fraction 0.2 --progress 0 --checkpoint-dir $d/ck > "$log/pred_train.log" 2>&1
    echo "train rc=$?"; ls $d/ck
    ck=$d/ck/last.safetensors; [[ -f $ck ]] || ck=$d/ck/best.safetensors
    for w in 16 8; do
        rm -rf $d/out; cat $d/photos/* > /dev/null
        camoxpert predict --weights $ck --input $d/photos --out $d/out --batch-size 64 --workers $w \
            > "$log/pred_b64_w$w.log" 2>&1; echo "batch 64, $w workers rc=$?"; grep -E "^(model|wrote|note)" "$log/pred_b64_w$w.log"
    done
    rm -rf $d/out
    camoxpert predict --weights $ck --input $d/photos --out $d/out > "$log/pred_auto.log" 2>&1
    echo "defaults rc=$?"; grep -E "^(model|wrote|note)" "$log/pred_auto.log"
    du -sh $d/out
    mkdir -p $d/few; ls $d/photos | head -n 256 | while read f; do ln -s $d/photos/$f $d/few/$f; done
    rm -rf $d/out
    camoxpert predict --weights $ck --input $d/few --out $d/out --batch-size 1 > "$log/pred_b1.log" 2>&1
    echo "batch 1 rc=$?"; grep -E "^(model|wrote|note)" "$log/pred_b1.log"
    rm -rf $d/out
    CAMOXPERT_CUDA_GRAPH=0 camoxpert predict --weights $ck --input $d/few --out $d/out --batch-size 1 > "$log/pred_b1_nograph.log" 2>&1
    echo "batch 1, no CUDA graph rc=$?"; grep -E "^(model|wrote|note)" "$log/pred_b1_nograph.log"
    rm -rf $d/out
    CAMOXPERT_CUDA_GRAPH=0 camoxpert predict --weights $ck --input $d/photos --out $d/out --batch-size 64 > "$log/pred_b64_nograph.log" 2>&1
    echo "batch 64, no CUDA graph rc=$?"; grep -E "^(model|wrote|note)" "$log/pred_b64_nograph.log"
    camoxpert bench --device cuda --precision bf16 --backbone edgenext_base --img-size 352 --batch-size 16 \
        --mode both --steps 5 --json "$log/bench_pred.json" --overwrite > "$log/bench_pred.log" 2>&1
    grep -E "^(dense|sparse| )" "$log/bench_pred.log" ;;
bf16sweep)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
    python3 -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda)'
    B=()
    [[ -x "$here/main/bin/camoxpert" ]] && B+=(--camoxpert "$here/main/bin/camoxpert")
    B+=(--camoxpert "$here/bin/camoxpert")
    for f in "$here"/shared/fixtures/camoxpert_*.safetensors; do [[ -f $f ]] && B+=(--extra "$f"); done
    d=/tmp/cx_bf16sweep
    python3 "$here/../tools/bf16_sweep.py" --out $d --deadline 420 "${B[@]}" "$@" > "$log/bf16sweep.log" 2>&1
    rc=$?
    sed -n '/^== bf16 sweep/,$p' "$log/bf16sweep.log"
    tar -C $d -cJf "$log/bf16sweep_logs.tar.xz" logs
    exit $rc ;;
step27)
    # issue 27: correctness of the new paths on the GPU, then the step with each switch off and on
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
    git -C "$here/.." log --oneline -1 2>/dev/null || true
    SECONDS=0
    timeout 240 "$here/bin/camoxpert_tests" op_ cuda_train_step_first_write cuda_train_graph cuda_graph_forward \
        > "$log/s27_test.log" 2>&1
    echo "== tests rc=$? ($SECONDS s): $(tail -n 1 "$log/s27_test.log")"
    grep -E "^(FAIL|skip)|first write, cuda|nodes|gradients equal|rel err .* > tol" "$log/s27_test.log" | grep -v "0 filled" | head -40
    f="$here/shared/fixtures/camoxpert_dense_xx_small.safetensors"
    for p in fp32 bf16; do
        timeout 120 camoxpert verify --device cuda --precision $p --quiet "$f" > "$log/s27_verify_$p.log" 2>&1
        echo "== verify dense $p rc=$? ($SECONDS s)"; grep -E "FAIL|PASS|gpu gradients|error" "$log/s27_verify_$p.log" | tail -6
    done
    B="--device cuda --precision bf16 --backbone edgenext_base --img-size 352 --batch-size 16 --mode dense --steps 10 --overwrite"
    run() {   # name, then VAR=value settings
        local name=$1; shift
        env "$@" timeout 150 camoxpert bench $B --json "$log/s27_$name.json" > "$log/s27_$name.log" 2>&1
        echo "   $name rc=$? ($SECONDS s)"
    }
    ON="CAMOXPERT_FIRST_WRITE=1 CAMOXPERT_FUSE=1 CAMOXPERT_TRAIN_GRAPH=1"
    OFF="CAMOXPERT_FIRST_WRITE=0 CAMOXPERT_FUSE=0 CAMOXPERT_TRAIN_GRAPH=0"
    run on1 $ON; run off1 $OFF
    run nofw CAMOXPERT_FIRST_WRITE=0 CAMOXPERT_FUSE=1 CAMOXPERT_TRAIN_GRAPH=1
    run nofuse CAMOXPERT_FIRST_WRITE=1 CAMOXPERT_FUSE=0 CAMOXPERT_TRAIN_GRAPH=1
    run nograph CAMOXPERT_FIRST_WRITE=1 CAMOXPERT_FUSE=1 CAMOXPERT_TRAIN_GRAPH=0
    run on2 $ON; run off2 $OFF
    env $ON timeout 200 camoxpert bench $B --profile --json "$log/s27_profile.json" > "$log/s27_profile.log" 2>&1
    echo "   profile rc=$? ($SECONDS s)"
    python3 - "$log" <<'PY'
import json, os, sys
d = sys.argv[1]
print(f"{'run':9} {'step ms':>8} {'img/s':>7} {'b1 fwd ms':>9} {'b1 graph':>9} {'op calls':>9} {'graph nodes':>11} {'syncs':>5} {'zeroed/written/filled':>22} peak MB")
for n in ("on1", "off1", "nofw", "nofuse", "nograph", "on2", "off2", "profile"):
    try:
        j = json.load(open(f"{d}/s27_{n}.json"))[0]
    except Exception as e:
        print(f"{n:9} no result ({e.__class__.__name__}: see s27_{n}.log)"); continue
    z = f"{j.get('zeroed_buffers_per_step', 0):.0f}/{j.get('zeroed_written_per_step', 0):.0f}/{j.get('zeroed_filled_per_step', 0):.0f}"
    print(f"{n:9} {j['train_ms_per_step']:8.1f} {j['images_per_s']:7.1f} {j['infer_ms_batch1']:9.2f} {j.get('infer_ms_batch1_graph', 0):9.2f} "
          f"{j.get('op_calls_per_step', 0):9.0f} {j.get('step_graph_nodes', 0):11.0f} {j['host_syncs_per_step']:5.1f} {z:>22} {j['peak_mem_mb']:.0f}")
    if n == "on1": print(f"          step graph: {j.get('step_graph')}")
try:
    j = json.load(open(f"{d}/s27_profile.json"))[0]
    p = j["profile"]
    print(f"profile (on): ops {p['ops_ms_per_step']:.1f} ms/step synchronised, unprofiled {p['step_ms_unprofiled']:.1f}")
    for c in p["classes"]:
        print(f"  {c['class']:16} {c['ms_per_step']:8.2f} ms {c['calls_per_step']:6.0f} calls {c['gb_per_s']:7.0f} GB/s {c['tflop_per_s']:6.1f} TFLOP/s")
    ops = sorted(p["ops"], key=lambda o: -o["ms_per_step"])[:20]
    for o in ops:
        print(f"  {o['op']:28} {o['variant'][:22]:22} {o['ms_per_step']:7.2f} ms {o['calls_per_step']:5.0f}")
except Exception as e:
    print("no profile:", e)
PY
    grep -E "error|note:" "$log"/s27_*.log | head -10 ;;
sparse28)
    # issue 28 (about 6 minutes on an H100): correctness first, then the timings
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
    git -C "$here/.." log --oneline -1 2>/dev/null || true
    timeout 150 "$here/bin/camoxpert_tests" op_route_topk op_rows_ op_topk cuda_sparse_step cuda_model_sparse \
        > "$log/s28_tests.log" 2>&1; echo "tests rc=$?"
    grep -E "^(FAIL|not ok)|failed|host syncs per|routing: host syncs|passed" "$log/s28_tests.log" | tail -12
    for f in "$here/shared/fixtures/camoxpert_sparse_xx_small.safetensors" \
             "$here/../tests/fixtures/camoxpert_spatial_xx_small_train.safetensors"; do
        for p in fp32 bf16; do
            vl="$log/s28_verify_$(basename "$f" .safetensors)_$p.log"
            timeout 90 camoxpert verify --device cuda --precision $p --quiet "$f" > "$vl" 2>&1
            rc=$?
            echo "verify $(basename "$f") $p rc=$rc"; grep -E "FAIL|PASS|gpu gradients|error" "$vl" | tail -4
        done
    done
    B="bench --device cuda --precision bf16 --backbone edgenext_base --img-size 352 --batch-size 16 --steps 10"
    run() {   # name, plan (new|old), args...
        local n=$1 p=$2; shift 2
        CAMOXPERT_MOE_PLAN=$p timeout 120 camoxpert $B "$@" --json "$log/s28_$n.json" --overwrite > "$log/s28_$n.log" 2>&1
        echo "== $n (CAMOXPERT_MOE_PLAN=$p, rc=$?)"
        grep -E "^(dense|sparse|spatial) |batch-1 forward:|^error" "$log/s28_$n.log"
    }
    run both_new1 new --mode both; run both_old1 old --mode both
    run both_new2 new --mode both; run both_old2 old --mode both
    run spatial_new1 new --mode sparse --routing spatial; run spatial_old1 old --mode sparse --routing spatial
    run spatial_new2 new --mode sparse --routing spatial; run spatial_old2 old --mode sparse --routing spatial
    run prof_new new --mode sparse --profile; run prof_old old --mode sparse --profile
    run prof_spatial_new new --mode sparse --routing spatial --profile
    for n in prof_new prof_old prof_spatial_new; do   # the classes of the profiled training step
        echo "-- $n: training step profile by class"
        sed -n '/per training step/,/^  op /p' "$log/s28_$n.log" | head -14
        grep -E "^  (rows_|route_topk|topk_rows|copy )" "$log/s28_$n.log" | tail -8
    done
    CAMOXPERT_MOE_PLAN=new timeout 200 camoxpert $B --mode both --sweep 4:1,6:2,8:1,8:2 --json "$log/s28_sweep.json" \
        --overwrite > "$log/s28_sweep.log" 2>&1
    echo "== (E,k) sweep rc=$?"; sed -n '/sweep against dense/,$p' "$log/s28_sweep.log"
    grep -E "^(dense|sparse) " "$log/s28_sweep.log" ;;
memory29)
    # issue 29 (under 8 minutes on an H100). One process per measurement, so each starts
    # from an empty card; nvidia-smi's memory.used is sampled every 50 ms beside it (the
    # whole process: CUDA context, cuDNN and cuBLAS included), and bench reports its own
    # peak (parameters, gradients, AdamW and the arenas' peaks: the figure docs/PERF.md
    # has always quoted) and the estimate it planned with.
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    git -C "$here/.." log --oneline -1 2>/dev/null || true
    base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n 1)
    smi_peak() {   # smi_peak LOG CMD...: runs CMD with stdout+stderr into LOG; prints the largest memory.used − base (MiB)
        local lg=$1; shift
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$lg.smi" 2>/dev/null & local sp=$!
        "$@" > "$lg" 2>&1; local rc=$?
        kill $sp 2>/dev/null; wait $sp 2>/dev/null
        echo "rc=$rc smi_peak_mib=$(( $(sort -n "$lg.smi" | tail -n 1) - base ))" >> "$lg"
    }
    SECONDS=0
    B="--device cuda --precision bf16 --backbone edgenext_base --img-size 352 --batch-size 16 --steps 5 --overwrite"
    for m in dense sparse; do
        for r in none cheap blocks; do
            smi_peak "$log/mem_${m}_$r.log" camoxpert bench $B --mode $m --recompute $r --json "$log/mem_${m}_$r.json"
        done
        CAMOXPERT_GPU_MEMORY_LIMIT_MB=6144 smi_peak "$log/mem_${m}_auto6g.log" camoxpert bench $B --mode $m \
            --recompute auto --json "$log/mem_${m}_auto6g.json"
        grep -h "^recompute:" "$log/mem_${m}_auto6g.log" | sed "s/^/$m, auto under a 6 GiB cap: /"
    done
    echo "bench: $SECONDS s"
    # predict at batch 64 on a folder of synthetic photos (a checkpoint from one training step)
    d=/tmp/cx_mem29; rm -rf $d; mkdir -p $d
    camoxpert synth --out $d/data --train 48 --test 128 --size 512 --seed 1 > /dev/null || exit 1
    camoxpert train --dataset-path $d/data --backbone edgenext_base --img-size 352 --batch-size 4 --stage1-epochs 0 \
        --epochs 1 --max-steps 1 --val-fraction 0 --progress 0 --checkpoint-dir $d/ck > "$log/mem_ck.log" 2>&1
    for b in 64 1; do
        rm -rf $d/out
        smi_peak "$log/mem_predict_b$b.log" camoxpert predict --weights $d/ck/last.safetensors --input $d/data/Test/Image \
            --out $d/out --batch-size $b
    done
    echo "bench and predict: $SECONDS s"
    # the same losses to the last bit: a few steps of train on a synthetic set at each level, dense and sparse
    camoxpert synth --out $d/small --train 40 --test 4 --size 128 --seed 2 > /dev/null
    for m in dense sparse; do
        sp=""; [[ $m == sparse ]] && sp="--use-sparse-moe --num-experts 4 --top-k 2"
        for r in none cheap blocks; do
            camoxpert train --dataset-path $d/small --backbone edgenext_xx_small --img-size 128 --batch-size 8 $sp \
                --stage1-epochs 0 --epochs 2 --max-steps 8 --val-fraction 0 --progress 0 --recompute $r --seed 4 \
                --checkpoint-dir $d/bit_${m}_$r > "$log/mem_bit_${m}_$r.log" 2>&1 || echo "train $m $r failed: see its log"
        done
    done
    echo "all: $SECONDS s"
    python3 - "$log" "$d" "$here/../tools" <<'PY'
import json, os, re, sys
log, d = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
import runlog
def smi(path):
    m = re.search(r"smi_peak_mib=(-?\d+)", open(path).read()) if os.path.exists(path) else None
    return int(m.group(1)) if m else float("nan")
print("H100 bf16, edgenext_base 352², batch 16 (bench: median of 5 steps; peak = parameters + gradients + AdamW + arena peaks)")
print(f"{'model':7} {'recompute':14} {'ms/step':>8} {'x none':>7} {'peak MiB':>9} {'estimate':>9} {'est/peak':>8} {'cuda MiB':>9} {'smi MiB':>8}")
for m in ("dense", "sparse"):
    t0 = None
    for r in ("none", "cheap", "blocks", "auto6g"):
        p = f"{log}/mem_{m}_{r}.json"
        if not os.path.exists(p):
            print(f"{m:7} {r:14} no result (see mem_{m}_{r}.log)"); continue
        j = json.load(open(p))[0]
        t = j["train_ms_per_step"]; t0 = t if r == "none" else t0
        lv = r if r != "auto6g" else "auto->" + j.get("recompute", "?")
        print(f"{m:7} {lv:14} {t:8.1f} {t / t0 if t0 else float('nan'):7.3f} {j['peak_mem_mb']:9.0f} {j['estimate_mb']:9.0f} "
              f"{j['estimate_mb'] / j['peak_mem_mb']:8.3f} {j.get('device_mem_mb', float('nan')):9.0f} {smi(p[:-5] + '.log'):8}")
    j = json.load(open(f"{log}/mem_{m}_none.json"))[0] if os.path.exists(f"{log}/mem_{m}_none.json") else None
    if j: print(f"{m:7} inference b1: peak {j['infer_peak_mem_mb_batch1']:.0f} MiB, estimate {j['infer_estimate_mb_batch1']:.0f} MiB")
for b in (64, 1):
    p = f"{log}/mem_predict_b{b}.log"
    txt = open(p).read() if os.path.exists(p) else ""
    lines = [l for l in txt.splitlines() if l.startswith(("memory:", "wrote", "error"))]
    print(f"predict batch {b}: " + " | ".join(lines) + f" | nvidia-smi {smi(p)} MiB")
def steps(r):
    return runlog.steps(f"{d}/{r}")
for m in ("dense", "sparse"):
    try:
        a = steps(f"bit_{m}_none")
        for r in ("cheap", "blocks"):
            b = steps(f"bit_{m}_{r}")
            same = len(a) == len(b) and len(a) > 0 and all(x == y for x, y in zip(a, b))
            print(f"GPU train {m}, --recompute {r} vs none: {len(b)}/{len(a)} steps, losses and gradient norms "
                  f"{'identical to the last bit' if same else 'DIFFER'}" + ("" if same else f": {a[:3]} vs {b[:3]}"))
    except Exception as e:
        print(f"GPU train {m}: {e!r}"[:200])
PY
    ;;
demo) BIN="$here/bin/camoxpert" DEVICE=${DEVICE:-cuda} exec scripts/demo.sh "$@" ;;
camoxpert) exec camoxpert "$@" ;;
*) echo "usage: gpu/run.sh test|verify|bench|perf|step27|sparse28|memory29|multi|scale|dpcmp|dp|twin-ddp|demo|bf16sweep|camoxpert ..." >&2; exit 2 ;;
esac
