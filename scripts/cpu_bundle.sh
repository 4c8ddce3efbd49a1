#!/usr/bin/env bash
# Builds what measures camoxpert's CPU paths — float32 against bf16 (issue 32: AMX-BF16,
# AVX512-BF16) and ONNX Runtime beside them — on a machine that has none of camoxpert's
# libraries, oneDNN included (the project's GPU machine, whose CPU may have AMX; its
# bundle, scripts/gpu_bundle.sh, is built without oneDNN).
#
#   scripts/cpu_bundle.sh [OUT_DIR]      (default cpu/, which git ignores)
#
# OUT_DIR/ then holds
#   cpu.tar.xz   bin/camoxpert and bin/camoxpert_bench (built from this tree into build-cpu/:
#                oneDNN, no CUDA, -march=x86-64-v4, so any AVX-512 CPU runs them), lib/ (oneDNN's libdnnl.so.2
#                and its libOpenCL.so.1, OpenBLAS with libgfortran and libquadmath, libgomp,
#                libcjson, libspng: found through LD_LIBRARY_PATH, which run.sh sets),
#                tools/node/bench_onnx.mjs, and ONNX Runtime for Node (onnxruntime-node's
#                Linux x64 files) when tools/node/node_modules has it (scripts/deps.sh)
#   run.sh       scripts/cpu_run.sh: what to run there (its header says)
# About 25 MB; oneDNN alone is 40 MB before compression.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-cpu}
MA=$(gcc -print-multiarch)
OB=/usr/lib/$MA/openblas-openmp
[[ -f $OB/libopenblas.so.0 ]] || { echo "cpu_bundle: $OB/libopenblas.so.0 missing: run scripts/deps.sh" >&2; exit 1; }
[[ -f /usr/lib/$MA/libdnnl.so.2 ]] || { echo "cpu_bundle: libdnnl.so.2 missing: run scripts/deps.sh" >&2; exit 1; }
make -j"$(nproc)" BUILD=build-cpu USE_CUDA=0 USE_DNNL=1 OPT="-O2 -g -march=x86-64-v4 -fno-math-errno" \
    OPENBLAS_CFLAGS="-I/usr/include/$MA/openblas-openmp" \
    OPENBLAS_LIBS="-L$OB -lopenblas" \
    JPEG_LIBS="-Wl,-Bstatic -ljpeg -Wl,-Bdynamic" \
    EXTRA_LDFLAGS='-Wl,-rpath,\$$ORIGIN/../lib' \
    build-cpu/camoxpert build-cpu/camoxpert_bench
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/tools/node"
cp build-cpu/camoxpert build-cpu/camoxpert_bench "$stage/bin/"
strip --strip-debug "$stage/bin/"*
cp -L "$OB/libopenblas.so.0" "$stage/lib/"
for l in libdnnl.so.2 libOpenCL.so.1 libgfortran.so.5 libquadmath.so.0 libgomp.so.1 libcjson.so.1 libspng.so.0; do
    cp -L "/usr/lib/$MA/$l" "$stage/lib/"
done
cp tools/node/bench_onnx.mjs tools/node/package.json "$stage/tools/node/"
ort=tools/node/node_modules/onnxruntime-node
if [[ -d $ort ]]; then
    # the package without the other platforms' binaries, and the one package it needs at run time
    mkdir -p "$stage/$ort/bin/napi-v6/linux"
    cp -r "$ort/package.json" "$ort/dist" "$stage/$ort/"
    cp -r "$ort/bin/napi-v6/linux/x64" "$stage/$ort/bin/napi-v6/linux/"
    cp -r tools/node/node_modules/onnxruntime-common "$stage/tools/node/node_modules/"
    echo "cpu_bundle: ONNX Runtime for Node included ($(du -sh "$stage/tools/node/node_modules" | cut -f1))"
else
    echo "cpu_bundle: no $ort (scripts/deps.sh installs it): the ONNX Runtime anchor will need python3's onnxruntime there"
fi
mkdir -p "$OUT"
tar -C "$stage" -cJf "$OUT/cpu.tar.xz" bin lib tools
cp scripts/cpu_run.sh "$OUT/run.sh"
ls -la "$OUT"
