#!/usr/bin/env bash
# Runs camoxpert's CPU bundle (scripts/cpu_bundle.sh) on another machine: float32 against
# bf16 on the CPU (issue 32), with ONNX Runtime running camoxpert's own ONNX export beside
# it, on the same cores. Unpacks cpu.tar.xz beside this script on the first call, then:
#
#   cpu/run.sh all [T]        everything below in order (T threads, default 2; ~30 min at 2)
#   cpu/run.sh info [T]       the CPU model and its bf16/AMX flags, oneDNN's ISA, the precision
#                             `--precision auto` chooses, and which oneDNN kernels the bf16 run
#                             takes (ONEDNN_VERBOSE: brg:avx512_core_amx on AMX hosts)
#   cpu/run.sh bench [T] [R]  edgenext_base dense and sparse at 352², the batch-1 forward and the
#                             training step at batch 2, fp32 against bf16: camoxpert_bench precision
#                             (both in one process, taking turns: wall and CPU time), then
#                             `camoxpert bench --precision fp32|bf16` alternated, R rounds (default 2)
#   cpu/run.sh ort [T]        a checkpoint (one training step on synthetic data), `camoxpert export`,
#                             then ONNX Runtime's batch-1 latency on it (spin-waiting off and on)
#                             and camoxpert's batch-1 forward fp32 and bf16, alternated, 2 rounds;
#                             ONNX Runtime at batch 4 last
#   cpu/run.sh predict [T]    camoxpert predict on a folder of 48 JPEGs (512²) at 352: images/s at
#                             batch 1, 2, 4 and 8, fp32 and bf16
# Logs go to $OUT when it is set, else /tmp/cx_cpu. The work directory is /tmp/cx_cpu.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ -x "$here/bin/camoxpert" ]] || tar -C "$here" -xJf "$here/cpu.tar.xz" || exit 1
export PATH="$here/bin:$PATH"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_WAIT_POLICY=passive
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
log=${OUT:-/tmp/cx_cpu}
d=/tmp/cx_cpu
mkdir -p "$log" "$d"
what=${1:-all}
shift || true
T=${1:-2}

info() {
    echo "== $(grep -m1 'model name' /proc/cpuinfo); $(nproc) CPUs here; load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512f|avx512_bf16|avx512_fp16|amx_bf16|amx_tile|amx_int8)$' | tr '\n' ' ')"
    camoxpert --version | head -n 3
    camoxpert bench --device cpu --backbone edgenext_xx_small --img-size 64 --batch-size 2 --steps 1 --mode dense \
        --threads "$T" 2>&1 | head -n 1
    echo "oneDNN kernels of a bf16 step (calls per implementation):"
    ONEDNN_VERBOSE=1 camoxpert bench --device cpu --precision bf16 --backbone edgenext_small --img-size 128 \
        --batch-size 2 --steps 1 --mode dense --threads "$T" 2>&1 | grep '^onednn_verbose,exec' |
        awk -F, '{print $4, $5, $6}' | sort | uniq -c | sort -rn | head -n 12
}

bench() {
    local rounds=${1:-2}
    echo "== camoxpert_bench precision, load $(cut -d' ' -f1-3 /proc/loadavg)"
    camoxpert_bench precision --backbone edgenext_base --size 352 --batch 2 --iters 5 --threads "$T" --mode both \
        2>&1 | tee "$log/precision.log"
    for r in $(seq "$rounds"); do
        for p in fp32 bf16; do
            echo "== round $r --precision $p, load $(cut -d' ' -f1-3 /proc/loadavg)"
            camoxpert bench --device cpu --precision $p --backbone edgenext_base --img-size 352 --batch-size 2 \
                --mode both --threads "$T" --steps 3 --json "$log/bench_r${r}_$p.json" --overwrite \
                > "$log/bench_r${r}_$p.log" 2>&1
            grep -E '^(device|dense|sparse)' "$log/bench_r${r}_$p.log"
        done
    done
}

checkpoint() {   # a dense edgenext_base checkpoint (speed does not depend on the weights)
    [[ -f $d/ck/last.safetensors ]] && return
    camoxpert synth --out $d/data --train 8 --test 48 --size 512 --seed 1 --overwrite > "$log/synth.log" 2>&1 || exit 1
    camoxpert train --dataset-path $d/data --backbone edgenext_base --img-size 352 --batch-size 2 --stage1-epochs 0 \
        --epochs 1 --max-steps 1 --val-fraction 0.25 --progress 0 --device cpu --precision fp32 --threads "$T" \
        --checkpoint-dir $d/ck --overwrite > "$log/train.log" 2>&1 || { tail "$log/train.log"; exit 1; }
}

ort_bench() {   # MODEL BATCH [SPIN]: one line from whichever ONNX Runtime is here (SPIN 0: no spin-waiting)
    if command -v node > /dev/null && [[ -d $here/tools/node/node_modules/onnxruntime-node ]]; then
        node "$here/tools/node/bench_onnx.mjs" "$1" --threads "$T" --size 352 --batch "$2" --runs 7 --spin "${3:-0}"
    elif python3 -c 'import onnxruntime' 2> /dev/null; then
        python3 - "$1" "$T" "$2" "${3:-0}" <<'EOF'
import sys, time, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = int(sys.argv[2]); so.inter_op_num_threads = 1
so.add_session_config_entry("session.intra_op.allow_spinning", sys.argv[4])
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
b = int(sys.argv[3]); x = np.random.RandomState(0).randn(b, 3, 352, 352).astype(np.float32)
for _ in range(2): s.run(None, {"image": x})
t = []
for _ in range(7):
    t0 = time.perf_counter(); s.run(None, {"image": x}); t.append((time.perf_counter() - t0) * 1e3)
m = float(np.median(t))
print(f"ort (python {ort.__version__}) {b}x352 threads {sys.argv[2]} spin {sys.argv[4]}: median {m:.1f} ms (runs: {' '.join(f'{v:.0f}' for v in t)}), {1000 * b / m:.2f} images/s")
EOF
    else
        echo "no ONNX Runtime here (neither node with the bundled onnxruntime-node nor python3's onnxruntime)"
    fi
}

ort() {
    checkpoint
    [[ -f $d/ours.onnx ]] || camoxpert export --weights $d/ck/last.safetensors --onnx $d/ours.onnx > "$log/export.log" 2>&1 ||
        { tail "$log/export.log"; exit 1; }
    for r in 1 2; do
        echo "== round $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
        ort_bench $d/ours.onnx 1 0
        ort_bench $d/ours.onnx 1 1
        camoxpert_bench precision --backbone edgenext_base --size 352 --iters 5 --threads "$T" --no-train \
            --mode dense 2>&1 | grep -E '^dense'
    done
    ort_bench $d/ours.onnx 4 0
}

predict() {
    checkpoint
    for p in fp32 bf16; do
        for b in 1 2 4 8; do
            rm -rf $d/out
            camoxpert predict --weights $d/ck/last.safetensors --input $d/data/Test/Image --out $d/out --device cpu \
                --precision $p --threads "$T" --batch-size $b --img-size 352 > "$log/predict_${p}_b$b.log" 2>&1
            echo "predict $p batch $b: $(grep -E '^wrote' "$log/predict_${p}_b$b.log" | sed 's/.* in //')"
        done
    done
}

case "$what" in
info) info ;;
bench) bench "${2:-2}" ;;
ort) ort ;;
predict) predict ;;
all) info; bench 2; ort; predict ;;
*) echo "usage: run.sh all|info|bench|ort|predict [threads] (see the header)" >&2; exit 2 ;;
esac
