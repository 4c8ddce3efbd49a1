#!/usr/bin/env bash
# The README's main job (`make demo` builds, then runs this): on a machine with no
# dataset, generate a synthetic camouflage set, train a small sparse CamoXpert on it,
# evaluate on the synthetic test split (the nine-column COD table) next to the
# colour-threshold baseline, predict masks for a few test images and for the
# real photos in ../shared/data/camo4 when present, and write the run's report
# (one HTML page: curves, routing, predictions). Everything goes under $OUT.
#
#   OUT=demo_out THREADS=2 EPOCHS=8 IMG=64 TRAIN=400 DEVICE=auto ./scripts/demo.sh
# DEVICE: cpu, cuda, cuda:N or auto (a GPU when one is usable); PRECISION: fp32, bf16
# or auto (bf16 on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/camoxpert}
OUT=${OUT:-demo_out}
THREADS=${THREADS:-0}          # 0: all cores
EPOCHS=${EPOCHS:-8}
TRAIN=${TRAIN:-400}
IMG=${IMG:-64}
SHARED=${CAMOXPERT_SHARED:-../shared}
DEVICE=${DEVICE:-auto}
PRECISION=${PRECISION:-auto}
# Idle OpenMP threads sleep instead of spinning: on a machine shared with other jobs a
# spinning thread waiting for a descheduled one made a training step 10x slower
# (docs/PERF.md, ## Training); on an idle machine it costs little.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
t0=$(date +%s)

"$BIN" --version
rm -rf "$OUT/run"   # a fresh run each time (a new train refuses a directory holding another run)
mkdir -p "$OUT"

echo
echo "== 1. synthetic data: $TRAIN training + 60 test images, 128x128, COD10K-v3 layout"
"$BIN" synth --out "$OUT/data" --train "$TRAIN" --test 60 --size 128 --difficulty 0.3 --seed 1 --overwrite \
    --baseline "$OUT/baseline" --threads "$THREADS"

echo
echo "== 2. train a sparse CamoXpert (edgenext_xx_small, 4 experts, top-2) at ${IMG}x${IMG} for $EPOCHS epochs"
echo "      (stage 1: 1 epoch with the backbone frozen; stage 2: everything)"
"$BIN" train --dataset-path "$OUT/data" --checkpoint-dir "$OUT/run" \
    --backbone edgenext_xx_small --img-size "$IMG" --batch-size 8 \
    --epochs "$EPOCHS" --stage1-epochs 1 --lr 1e-3 --stage2-lr 1e-3 --scheduler cosine \
    --use-sparse-moe --num-experts 4 --top-k 2 \
    --val-fraction 0.1 --cache --seed 1 --threads "$THREADS" --device "$DEVICE" --precision "$PRECISION" --report

echo
echo "== 3. predict the 60 test images with the best checkpoint and score them"
"$BIN" predict --weights "$OUT/run/best.safetensors" --input "$OUT/data/Test/Image" --out "$OUT/pred_test" \
    --threads "$THREADS" --device "$DEVICE" --precision "$PRECISION"
echo "-- CamoXpert (sparse, trained above) on the synthetic test split:"
"$BIN" eval --pred "$OUT/pred_test" --gt "$OUT/data/Test/GT_Object" --categories --json "$OUT/eval_model.json" \
    --threads "$THREADS"
echo "-- colour-threshold baseline (Otsu on gray, smaller side = object) on the same images:"
"$BIN" eval --pred "$OUT/baseline" --gt "$OUT/data/Test/GT_Object" --json "$OUT/eval_baseline.json" \
    --threads "$THREADS"

echo
echo "== 4. masks, overlays and routing for a few test images"
mkdir -p "$OUT/examples_in"
for f in $(ls "$OUT/data/Test/Image" | head -n 4); do cp "$OUT/data/Test/Image/$f" "$OUT/examples_in/"; done
"$BIN" predict --weights "$OUT/run/best.safetensors" --input "$OUT/examples_in" --out "$OUT/examples" \
    --overlay --routing --threads "$THREADS" --device "$DEVICE" --precision "$PRECISION"
if [[ -d "$SHARED/data/camo4/Imgs" ]]; then
    echo "-- real photos ($SHARED/data/camo4; a model trained on synthetic textures is not expected to find these animals)"
    "$BIN" predict --weights "$OUT/run/best.safetensors" --input "$SHARED/data/camo4/Imgs" --out "$OUT/camo4" \
        --overlay --routing --threads "$THREADS" --device "$DEVICE" --precision "$PRECISION"
fi

echo
echo "== 5. the run's report: curves, routing, 24 validation images predicted (open it in any browser)"
"$BIN" report "$OUT/run" --max-images 24 --threads "$THREADS"

sm() { sed -n 's/.*"Smeasure":[[:space:]]*\([0-9.]*\).*/\1/p' "$1" | head -n 1 | xargs printf "%.4f"; }
echo
echo "== done in $(( $(date +%s) - t0 )) s. Where everything went:"
echo "  $OUT/data/                     synthetic dataset (Train/, Test/: Image/ + GT_Object/)"
echo "  $OUT/run/best.safetensors      best checkpoint by validation Sα (PyTorch state_dict names)"
echo "  $OUT/run/last.safetensors      last checkpoint + training state (resume: camoxpert train --resume-from it)"
echo "  $OUT/run/train_log.jsonl       every step and epoch as JSON (losses, lr, validation, routing)"
echo "  $OUT/run/report.html           the run on one page (curves, routing heat maps, predictions); no server needed"
echo "  $OUT/pred_test/                8-bit masks of the test split; scores in $OUT/eval_model.json"
echo "  $OUT/baseline/                 colour-threshold baseline masks; scores in $OUT/eval_baseline.json"
echo "  $OUT/examples/                 masks, overlays (*_overlay.jpg) and routing (*_routing.json)"
[[ -d "$OUT/camo4" ]] && echo "  $OUT/camo4/                    the same for the camo4 photos"
echo "  report: file://$(realpath "$OUT/run/report.html")"
echo "  test-split Sα: CamoXpert $(sm "$OUT/eval_model.json"), colour-threshold baseline $(sm "$OUT/eval_baseline.json")"
