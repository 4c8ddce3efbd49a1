#!/usr/bin/env bash
# Builds what runs on a GPU machine that has CUDA 13, cuDNN 9 and cuBLASLt
# installed system-wide but none of camoxpert's CPU libraries (the project's GPU
# test machine: Ubuntu 24.04, no package registry, at most 64 MiB sent per call,
# the repository's own files included).
#
#   scripts/gpu_bundle.sh [OUT_DIR]      (default gpu/, which git ignores)
#
# OUT_DIR/ then holds three archives and the script that unpacks and runs them:
#   bin.tar.xz       bin/camoxpert, bin/camoxpert_tests and the CUDA plug-in
#                    bin/libcamoxpert_cuda.so (built from this tree into build-gpu/),
#                    lib/ (OpenBLAS with its libgfortran and
#                    libquadmath, libgomp, libcjson, libspng: found through the
#                    rpath), shared/data/camo4 and the metrics fixture
#   fixtures.tar.xz  the shared EdgeNeXt and dense CamoXpert fixtures without their
#                    stored float64 gradients (tools/strip_fixture.py; the CPU tests
#                    check those, in float64; the GPU's gradients are checked
#                    against the CPU's float32 ones)
#   sparse.tar.xz    the shared sparse CamoXpert fixture
#   run.sh           scripts/gpu_run.sh
# The shared fixtures are 71 MiB whole; stripped, everything fits one call with
# the repository (~61 MiB). oneDNN is left out (its library alone is
# 40 MB; the CPU paths use OpenBLAS and our kernels). cuDNN and cuBLASLt come
# from the GPU machine (the rpath names CUDA_HOME/lib64; the system's library
# path is searched too).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu}
SHARED_SRC=${CAMOXPERT_SHARED:-../shared}
MA=$(gcc -print-multiarch)
OB=/usr/lib/$MA/openblas-openmp
[[ -f $OB/libopenblas.so.0 ]] || { echo "gpu_bundle: $OB/libopenblas.so.0 missing: run scripts/deps.sh" >&2; exit 1; }
make -j"$(nproc)" BUILD=build-gpu USE_DNNL=0 \
    OPENBLAS_CFLAGS="-I/usr/include/$MA/openblas-openmp" \
    OPENBLAS_LIBS="-L$OB -lopenblas" \
    JPEG_LIBS="-Wl,-Bstatic -ljpeg -Wl,-Bdynamic" \
    EXTRA_LDFLAGS='-Wl,-rpath,\$$ORIGIN/../lib' \
    build-gpu/camoxpert build-gpu/camoxpert_tests build-gpu/libcamoxpert_cuda.so
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/shared/fixtures" "$stage/shared/data"
cp build-gpu/camoxpert build-gpu/camoxpert_tests build-gpu/libcamoxpert_cuda.so "$stage/bin/"
strip --strip-debug "$stage/bin/"*
cp -L "$OB/libopenblas.so.0" "$stage/lib/"
for l in libgfortran.so.5 libquadmath.so.0 libgomp.so.1 libcjson.so.1 libspng.so.0; do cp -L "/usr/lib/$MA/$l" "$stage/lib/"; done
cp -r "$SHARED_SRC/data/camo4" "$stage/shared/data/"
cp -r "$SHARED_SRC/fixtures/metrics_camo4" "$SHARED_SRC/fixtures/README.md" "$stage/shared/fixtures/"
mkdir -p "$OUT"
tar -C "$stage" -cJf "$OUT/bin.tar.xz" bin lib shared
rm -rf "$stage/bin" "$stage/lib" "$stage/shared/data" "$stage/shared/fixtures/"*
/usr/bin/python3 tools/strip_fixture.py "$SHARED_SRC/fixtures/edgenext_xx_small.safetensors" \
    "$stage/shared/fixtures/edgenext_xx_small.safetensors" --drop-prefix grad/
/usr/bin/python3 tools/strip_fixture.py "$SHARED_SRC/fixtures/camoxpert_dense_xx_small.safetensors" \
    "$stage/shared/fixtures/camoxpert_dense_xx_small.safetensors" --drop-prefix grad/
tar -C "$stage" -cJf "$OUT/fixtures.tar.xz" shared
rm -rf "$stage/shared/fixtures/"*
cp "$SHARED_SRC/fixtures/camoxpert_sparse_xx_small.safetensors" "$stage/shared/fixtures/"
tar -C "$stage" -cJf "$OUT/sparse.tar.xz" shared
cp scripts/gpu_run.sh "$OUT/run.sh"
ls -la "$OUT"
