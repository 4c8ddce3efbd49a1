#!/usr/bin/env bash
# scripts/gpu_oneshot.sh — the GPU checks of issues 26-29 and 35 in two device calls of under 10
# minutes each on one H100:
#   OUT=$OUT gpu/gpu_oneshot.sh tests   the GPU's own tests (names with "cuda"), then the whole suite;
#                                       issue 35's test five times on the host's CPU beside them; the
#                                       sm_80 plug-in's refusal
#   OUT=$OUT gpu/gpu_oneshot.sh predict30  issue 30: the GPU tests, predict's GPU path against its CPU
#                                       path on 2,048 JPEGs, the ONNX Runtime anchors, the Python example
#   OUT=$OUT gpu/gpu_oneshot.sh perf    issue 26's bf16 sweep (a base build against this one), then the
#                                       training step: the base build against this build, this build
#                                       with the switches of 27/28 off, --recompute blocks (29), and the
#                                       PyTorch twin if time is left
# Bundle first (scripts/gpu_bundle.sh; gpu/main-bin.tar.xz: bin/camoxpert and bin/libcamoxpert_cuda.so
# of the base build; gpu/sm80/libcamoxpert_cuda.so.xz: a plug-in built for sm_80 only), copy this
# script to gpu/, and carry gpu/bin.tar.xz gpu/sparse.tar.xz gpu/fixtures_dense.tar.xz
# gpu/main-bin.tar.xz gpu/sm80 gpu/run.sh gpu/gpu_oneshot.sh (under the call's 64 MiB). The device
# tool brings back only a few files: the logs go to /tmp/cx_oneshot and come back as
# $OUT/logs.tar.xz, packed after each part, so a call cut short still returns what ran.
set -u
cd "$(dirname "$0")/.."
RET=$OUT
OUT=/tmp/cx_oneshot; mkdir -p $OUT
pack() { tar -C $OUT -cJf $RET/logs.tar.xz . 2>/dev/null; }
trap pack EXIT
T0=$SECONDS
PART=${1:-tests}
left() { echo $((560 - (SECONDS - T0))); }   # a call may run 10 minutes
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader; nproc
  grep -m1 'model name' /proc/cpuinfo
  grep -o -w -E 'avx512f|avx512_bf16|amx_tile|amx_bf16|avx512_fp16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } | tee $OUT/info.txt
for a in bin sparse fixtures fixtures_dense; do [[ -f gpu/$a.tar.xz ]] && tar -C gpu -xJf gpu/$a.tar.xz; done
[[ -f gpu/main-bin.tar.xz ]] && mkdir -p gpu/main && tar -C gpu/main -xJf gpu/main-bin.tar.xz
[[ -f gpu/sm80/libcamoxpert_cuda.so.xz ]] && xz -dkf gpu/sm80/libcamoxpert_cuda.so.xz
export CAMOXPERT_SHARED=$PWD/gpu/shared LD_LIBRARY_PATH=$PWD/gpu/lib OMP_WAIT_POLICY=passive
ls gpu/shared/fixtures | tr '\n' ' ' | tee -a $OUT/info.txt; echo
gpu/bin/camoxpert --version 2>&1 | head -3 | tee -a $OUT/info.txt
echo "unpacked t=$((SECONDS-T0))s"
if [[ $PART == tests ]]; then
# issue 35, five times, on the CPU beside the suite (one thread a rank)
( for i in 1 2 3 4 5; do
    timeout 90 gpu/bin/camoxpert_tests cli_train_two_ranks_equal_one_process_with_the_same_micro_batches \
        dist_cpu_parameter 2>&1 | grep -E "^(ok|FAIL)|passed|tests/|grad" | tr '\n' ' '; echo
  done > $OUT/issue35.txt 2>&1 ) &
p35=$!
# the GPU's own tests first (every test and op-table row whose name says cuda), then the whole
# suite, every shared fixture but edgenext_xx_small's (the call's 64 MiB); the whole suite took
# more than 250 s on the H100 machine's 16 cores on 2026-12-07
timeout 150 gpu/bin/camoxpert_tests cuda > $OUT/suite_cuda.log 2>&1
echo "GPU tests rc=$? t=$((SECONDS-T0))s: $(tail -n 1 $OUT/suite_cuda.log)" | tee $OUT/suite_summary.txt
grep -E "^FAIL" $OUT/suite_cuda.log | head -20 | tee -a $OUT/suite_summary.txt; pack
timeout $(( $(left) - 40 )) gpu/bin/camoxpert_tests > $OUT/suite.log 2>&1
echo "suite rc=$? t=$((SECONDS-T0))s: $(tail -n 1 $OUT/suite.log)" | tee -a $OUT/suite_summary.txt
grep -E "^(FAIL|skip)" $OUT/suite.log | grep -v "edgenext_xx_small.safetensors" | head -20 | tee -a $OUT/suite_summary.txt
wait $p35; cat $OUT/issue35.txt; pack
{ echo "== a plug-in built for sm_80 only, on this card (--device cuda, then auto):"
  CAMOXPERT_CUDA_PLUGIN=$PWD/gpu/sm80/libcamoxpert_cuda.so timeout 30 gpu/bin/camoxpert bench --device cuda --backbone edgenext_xx_small --img-size 64 --steps 1 2>&1 | tail -2; echo "exit ${PIPESTATUS[0]}"
  CAMOXPERT_CUDA_PLUGIN=$PWD/gpu/sm80/libcamoxpert_cuda.so timeout 30 gpu/bin/camoxpert bench --device auto --backbone edgenext_xx_small --img-size 64 --steps 1 2>&1 | head -1; } > $OUT/cards.txt 2>&1
fi
if [[ $PART == perf ]]; then
# issue 26: the sweep, edc5414 and this build (the shared fixtures first, then the issue's configuration)
dl=$(( $(left) - 300 )); [[ $dl -lt 40 ]] && dl=40
timeout $((dl + 90)) python3 tools/bf16_sweep.py --out /tmp/cx_bf16sweep --deadline $dl --jobs 12 \
    --camoxpert gpu/main/bin/camoxpert --camoxpert gpu/bin/camoxpert \
    --extra gpu/shared/fixtures/camoxpert_sparse_xx_small.safetensors \
    --extra gpu/shared/fixtures/camoxpert_dense_xx_small.safetensors > $OUT/sweep.log 2>&1
echo "sweep rc=$? (deadline $dl s) t=$((SECONDS-T0))s" >> $OUT/sweep.log
tar -C /tmp/cx_bf16sweep -cJf $OUT/sweep_logs.tar.xz logs 2>/dev/null
sed -n '/^== bf16 sweep/,$p' $OUT/sweep.log | head -70; pack
# the step: edc5414, this build, this build with the switches off, --recompute blocks
B="--device cuda --precision bf16 --backbone edgenext_base --img-size 352 --batch-size 16 --mode both --steps 8"
bench() {   # name, binary, env...
    local n=$1 b=$2; shift 2
    [[ $(left) -lt 45 ]] && { echo "== $n: skipped (time)"; return; }
    env "$@" timeout 75 $b bench $B --json $OUT/bench_$n.json > $OUT/bench_$n.log 2>&1
    echo "== $n rc=$? t=$((SECONDS-T0))s"; pack; grep -E "^(dense|sparse|recompute|error)|batch-1 forward:|memory \(" $OUT/bench_$n.log
}
{ bench main1 gpu/main/bin/camoxpert
  bench new1 gpu/bin/camoxpert
  bench off gpu/bin/camoxpert CAMOXPERT_FIRST_WRITE=0 CAMOXPERT_FUSE=0 CAMOXPERT_TRAIN_GRAPH=0 CAMOXPERT_MOE_PLAN=old
  bench main2 gpu/main/bin/camoxpert
  bench new2 gpu/bin/camoxpert
  B="$B --recompute blocks"; bench blocks gpu/bin/camoxpert
  if [[ $(left) -gt 80 ]]; then
      timeout $(( $(left) - 10 )) python3 tools/camoxpert_twin.py bench --device cuda --backbone edgenext_base \
          --size 352x352 --batch 16 --mode dense --amp bf16 --channels-last --warmup 3 --iters 8 > $OUT/twin_dense.log 2>&1
      echo "== twin dense bf16 channels_last rc=$?"; grep -E "^twin|Error" $OUT/twin_dense.log | tail -2
  fi; } 2>&1 | tee $OUT/bench.txt
fi
if [[ $PART == predict30 ]]; then
# issue 30: the GPU tests (the photo path's first), predict on 2,048 JPEGs of 768² with the GPU
# path (nvJPEG), with the CPU's decoder, and the CPU path, alternated; the CPU anchors (ONNX
# Runtime on our export and on the twin's torch.onnx.export, camoxpert --device cpu); the
# Python example with the real onnxruntime package. Carry gpu/bin.tar.xz gpu/fixtures.tar.xz
# gpu/sparse.tar.xz gpu/gpu_oneshot.sh.
{ ls /usr/local/cuda/lib64 2>/dev/null | grep -i nvjpeg; ldconfig -p | grep -i nvjpeg; } > $OUT/nvjpeg.txt 2>&1
cat $OUT/nvjpeg.txt
timeout 60 gpu/bin/camoxpert_tests cuda_photo cuda_nvjpeg cuda_predict > $OUT/photo_tests.log 2>&1
echo "photo tests rc=$? t=$((SECONDS-T0))s"; grep -E "^(ok|FAIL|skip)|  |passed" $OUT/photo_tests.log | head -40; pack
timeout 150 gpu/bin/camoxpert_tests cuda > $OUT/suite_cuda.log 2>&1
echo "GPU tests rc=$? t=$((SECONDS-T0))s: $(tail -n 1 $OUT/suite_cuda.log)" | tee $OUT/suite_summary.txt
grep -E "^(FAIL|skip)" $OUT/suite_cuda.log | head -20 | tee -a $OUT/suite_summary.txt; pack
d=/tmp/cx_pred; rm -rf $d; mkdir -p $d/photos
gpu/bin/camoxpert synth --out $d/data --train 16 --test 256 --size 768 --seed 1 > $OUT/pred_synth.log 2>&1 || echo "synth failed"
for r in 1 2 3 4 5 6 7 8; do for f in $d/data/Test/Image/*.jpg; do cp "$f" "$d/photos/r${r}_$(basename "$f")"; done; done
echo "photos: $(ls $d/photos | wc -l), $(du -sh $d/photos | cut -f1) t=$((SECONDS-T0))s"
gpu/bin/camoxpert train --dataset-path $d/data --backbone edgenext_base --img-size 352 --batch-size 8 --stage1-epochs 0 \
    --epochs 1 --max-steps 1 --val-fraction 0.2 --progress 0 --checkpoint-dir $d/ck > $OUT/pred_train.log 2>&1
ck=$d/ck/last.safetensors; [[ -f $ck ]] || ck=$d/ck/best.safetensors
echo "checkpoint $ck t=$((SECONDS-T0))s"
pred() {   # name, env...
    local n=$1; shift
    rm -rf $d/out_$n; cat $d/photos/* > /dev/null
    env "$@" timeout 60 gpu/bin/camoxpert predict --weights $ck --input $d/photos --out $d/out_$n --batch-size 64 \
        --workers ${W:-16} > $OUT/pred_$n.log 2>&1
    echo "== $n rc=$? t=$((SECONDS-T0))s"; grep -E "^(photos|wrote|note|error)" $OUT/pred_$n.log
}
{ pred gpu1; pred cpudec1 CAMOXPERT_NVJPEG=0; pred cpu1 CAMOXPERT_PREDICT_GPU_IO=0
  pred gpu2; pred cpudec2 CAMOXPERT_NVJPEG=0; pred cpu2 CAMOXPERT_PREDICT_GPU_IO=0
  W=8 pred gpu_w8; W=4 pred gpu_w4
  rm -rf $d/out_def; gpu/bin/camoxpert predict --weights $ck --input $d/photos --out $d/out_def > $OUT/pred_def.log 2>&1
  echo "== defaults rc=$?"; grep -E "^(model|photos|wrote)" $OUT/pred_def.log
  python3 - $d <<'PY'
import sys, os, numpy as np
from PIL import Image
d = sys.argv[1]; names = sorted(os.listdir(f"{d}/out_cpu1"))[:64]; names = [n for n in names if n.endswith(".png")]
for other in ("gpu1", "cpudec1"):
    diffs = [np.abs(np.asarray(Image.open(f"{d}/out_{other}/{n}"), np.int16) - np.asarray(Image.open(f"{d}/out_cpu1/{n}"), np.int16)) for n in names]
    print(f"masks {other} vs cpu1 ({len(names)} photos): mean {np.mean([x.mean() for x in diffs]):.4f} levels, "
          f"largest {max(x.max() for x in diffs)}, pixels differing {np.mean([(x > 0).mean() for x in diffs]) * 100:.3f}%")
PY
} 2>&1 | tee $OUT/predict.txt; pack
# the CPU anchors, then the Python example with the real onnxruntime
timeout $(( $(left) - 60 )) python3 tools/onnx_bench.py --camoxpert gpu/bin/camoxpert --threads $(nproc) \
    --dir /tmp/cx_onnx > $OUT/onnx_bench.log 2>&1
echo "onnx_bench rc=$? t=$((SECONDS-T0))s"; tail -n 8 $OUT/onnx_bench.log; pack
if [[ $(left) -gt 40 ]]; then
  ex=/tmp/cx_ex; mkdir -p $ex; p=$(ls $d/data/Test/Image/*.jpg | head -1)
  gpu/bin/camoxpert synth --out $ex/data --train 0 --test 2 --size 352 --seed 3 > /dev/null 2>&1
  p=$(ls $ex/data/Test/Image/*.jpg | head -1)
  timeout 60 gpu/bin/camoxpert export --weights /tmp/cx_onnx/ckpt.safetensors --onnx $ex/m.onnx > $OUT/example.log 2>&1
  timeout 60 python3 docs/examples/ort_predict.py $ex/m.onnx $p $ex/ort.png >> $OUT/example.log 2>&1; echo "example rc=$?" >> $OUT/example.log
  timeout 60 gpu/bin/camoxpert predict --weights /tmp/cx_onnx/ckpt.safetensors --input $p --out $ex/cx --device cpu \
      --precision fp32 --img-size 352 >> $OUT/example.log 2>&1
  python3 -c "import numpy as np, sys; from PIL import Image; a=np.asarray(Image.open('$ex/ort.png'),np.int16); b=np.asarray(Image.open('$ex/cx/'+'$(basename ${p%.*})'+'.png'),np.int16); print('example vs camoxpert predict: largest', np.abs(a-b).max(), 'mean', np.abs(a-b).mean())" >> $OUT/example.log 2>&1
  tail -n 3 $OUT/example.log
fi
fi
echo "done t=$((SECONDS-T0))s"
