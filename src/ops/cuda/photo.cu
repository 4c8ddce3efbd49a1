// photo.cu — photos in and masks out on the GPU, for `camoxpert predict`
// (infer/pipeline.h): the network input made from 8-bit photos of any size
// (cuda_photo_input), the 8-bit masks made from the logits (cuda_mask_export), and
// JPEG decoding by nvJPEG's hardware engine (cuda_jpeg_*). The per-pixel arithmetic
// is core/pixels.h's, which the CPU path uses too; this file is compiled without
// fused multiply-adds (Makefile) so both round alike: the input equals the CPU's bit
// for bit, and a mask differs from the CPU's only where the GPU's exp() rounds a
// probability differently by one unit in the last place (at most one level, rarely).
//
// nvJPEG is loaded when first asked for (dlopen of libnvjpeg.so.13, then
// libnvjpeg.so): the plug-in has no link-time dependency on it, and a machine without
// it, or a GPU without the hardware decoder (only A100/A30 and Hopper, Ada, Blackwell
// data-centre cards have one), gets a reason and the CPU's decoder instead. Only the
// few entry points used are declared here, from NVIDIA's nvJPEG documentation.
#include "ops/cuda/common.cuh"
#include "core/pixels.h"
#include <dlfcn.h>
#include <string.h>

// ---- the network input ------------------------------------------------------------------------------
// y (N,S,S,3) float or bf16; photo n in src at byte box[4n], box[4n+1] rows by box[4n+2]
// columns, RGB interleaved (box[4n+3] = 0) or as three planes (1). One thread an output pixel.
__global__ void k_photo_input(void *y, int ydt, const uint8_t *src, const long long *box, int S, float sc0, float sc1,
                              float sc2, float sh0, float sh1, float sh2) {
    const int n = blockIdx.y;
    const long long off = box[4 * n];
    const int h = (int)box[4 * n + 1], w = (int)box[4 * n + 2], planar = (int)box[4 * n + 3];
    const float sc[3] = { sc0, sc1, sc2 }, sh[3] = { sh0, sh1, sh2 };
    const uint8_t *im = src + off;
    const long long plane = (long long)h * w;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)S * S; i += (int64_t)gridDim.x * blockDim.x) {
        int oy = (int)(i / S), ox = (int)(i % S), y0, y1, x0, x1;
        float fy, fx;
        px_bilinear_tap(oy, S, h, &y0, &y1, &fy);
        px_bilinear_tap(ox, S, w, &x0, &x1, &fx);
        const float b = fy, a = 1 - b, q = fx, p = 1 - q;
        for (int c = 0; c < 3; c++) {
            long long i00, i01, i10, i11;
            if (planar) {
                const long long base = c * plane;
                i00 = base + (long long)y0 * w + x0, i01 = base + (long long)y0 * w + x1;
                i10 = base + (long long)y1 * w + x0, i11 = base + (long long)y1 * w + x1;
            } else {
                i00 = ((long long)y0 * w + x0) * 3 + c, i01 = ((long long)y0 * w + x1) * 3 + c;
                i10 = ((long long)y1 * w + x0) * 3 + c, i11 = ((long long)y1 * w + x1) * 3 + c;
            }
            float v = px_blend(a, b, p, q, im[i00], im[i01], im[i10], im[i11]);
            float u = px_u8(v);   // the resized photo is 8-bit, as on the CPU
            stf(y, ydt, ((int64_t)n * S * S + i) * 3 + c, u * sc[c] - sh[c]);
        }
    }
}

extern "C" void cuda_photo_input(OpCtx *ctx, Tensor *y, const Tensor *src, const Tensor *box, const float mean[3],
                                 const float std[3]) {
    const int N = (int)T_N(y), S = (int)T_H(y), ydt = cuda_fdt(y, "photo_input");
    float sc[3], sh[3];
    for (int c = 0; c < 3; c++) sc[c] = 1.0f / (255.0f * std[c]), sh[c] = mean[c] / std[c];   // data/augment.c's
    dim3 grid(cuda_grid((int64_t)S * S) < 1024 ? cuda_grid((int64_t)S * S) : 1024, (unsigned)N);
    k_photo_input<<<grid, CUDA_BLOCK, 0, cuda_stream(ctx)>>>(y->data, ydt, (const uint8_t *)src->data,
                                                              (const long long *)box->data, S, sc[0], sc[1], sc[2], sh[0],
                                                              sh[1], sh[2]);
    CUDA_KCHECK("photo_input");
}

// ---- the masks -------------------------------------------------------------------------------------
// The probability at pixel (y, x) of mask n (h rows by w columns) from its logits (S, S):
// infer.h infer_prob_at's bilinear resize, then the sigmoid (core/pixels.h).
__device__ __forceinline__ float mask_prob(const float *lg, int S, int h, int w, int oy, int ox) {
    int y0, y1, x0, x1;
    float fy, fx;
    px_bilinear_tap(oy, h, S, &y0, &y1, &fy);
    px_bilinear_tap(ox, w, S, &x0, &x1, &fx);
    const float b = fy, a = 1 - b, q = fx, p = 1 - q;
    float v = px_blend(a, b, p, q, lg[y0 * S + x0], lg[y0 * S + x1], lg[y1 * S + x0], lg[y1 * S + x1]);
    return px_sigmoid(v);
}

// mm[2n], mm[2n+1]: the smallest and largest probability of mask n, as the bits of
// non-negative floats (ordered as integers). atomicMin/Max: order-free, so exact.
__global__ void k_mask_minmax_init(int *mm, int n) {
    CUDA_LOOP(i, n) mm[2 * i] = 0x7f800000, mm[2 * i + 1] = 0;
}

__global__ void k_mask_minmax(int *mm, const float *logits, const long long *box, int S) {
    const int n = blockIdx.y, h = (int)box[4 * n + 1], w = (int)box[4 * n + 2];
    const float *lg = logits + (int64_t)n * S * S;
    float mn = INFINITY, mx = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)h * w; i += (int64_t)gridDim.x * blockDim.x) {
        float p = mask_prob(lg, S, h, w, (int)(i / w), (int)(i % w));
        mn = fminf(mn, p), mx = fmaxf(mx, p);
    }
    struct MinOp { __device__ float operator()(float a, float b) const { return fminf(a, b); } };
    struct MaxOp { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
    mn = block_reduce(mn, (float)INFINITY, MinOp());
    mx = block_reduce(mx, 0.0f, MaxOp());
    if (threadIdx.x == 0) atomicMin(&mm[2 * n], __float_as_int(mn)), atomicMax(&mm[2 * n + 1], __float_as_int(mx));
}

__global__ void k_mask_export(uint8_t *dst, const int *mm, const float *logits, const long long *box, int S) {
    const int n = blockIdx.y, h = (int)box[4 * n + 1], w = (int)box[4 * n + 2];
    const float *lg = logits + (int64_t)n * S * S;
    const double mn = __int_as_float(mm[2 * n]), mx = __int_as_float(mm[2 * n + 1]), scale = px_export_scale(mn, mx);
    uint8_t *d = dst + box[4 * n];
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)h * w; i += (int64_t)gridDim.x * blockDim.x)
        d[i] = px_export_u8(mask_prob(lg, S, h, w, (int)(i / w), (int)(i % w)), mn, scale);
}

extern "C" void cuda_mask_export(OpCtx *ctx, Tensor *dst, const Tensor *logits, const Tensor *box) {
    CX_ASSERT(logits->dtype == DT_F32 && dst->dtype == DT_U8 && box->dtype == DT_I64, "mask_export: dtypes");
    const int N = (int)T_N(logits), S = (int)T_H(logits);
    ArenaMark mark = arena_mark(ctx->scratch);
    int *mm = (int *)cuda_scratch(ctx, sizeof(int) * 2 * (size_t)N);
    k_mask_minmax_init<<<LAUNCH_1D(N)>>>(mm, N);
    CUDA_KCHECK("mask_minmax_init");
    dim3 grid(256, (unsigned)N);
    k_mask_minmax<<<grid, CUDA_BLOCK, 0, cuda_stream(ctx)>>>(mm, (const float *)logits->data, (const long long *)box->data, S);
    CUDA_KCHECK("mask_minmax");
    k_mask_export<<<grid, CUDA_BLOCK, 0, cuda_stream(ctx)>>>((uint8_t *)dst->data, mm, (const float *)logits->data,
                                                             (const long long *)box->data, S);
    CUDA_KCHECK("mask_export");
    arena_release(ctx->scratch, mark);
}

// ---- nvJPEG -----------------------------------------------------------------------------------------
// The subset of nvjpeg.h used (enums are int-sized; 0 is NVJPEG_STATUS_SUCCESS).
typedef struct { unsigned char *channel[4]; size_t pitch[4]; } NvjImage;
enum { NVJ_BACKEND_HARDWARE = 3, NVJ_OUTPUT_RGB = 3 };
struct NvjApi {
    int (*createEx)(int backend, void *dev_alloc, void *pinned_alloc, unsigned flags, void **handle);
    int (*destroy)(void *handle);
    int (*stateCreate)(void *handle, void **state);
    int (*stateDestroy)(void *state);
    int (*batchedInit)(void *handle, void *state, int batch_size, int max_cpu_threads, int output_format);
    int (*batched)(void *handle, void *state, const unsigned char *const *data, const size_t *lengths, NvjImage *dst,
                   cudaStream_t stream);
    int (*streamCreate)(void *handle, void **stream);
    int (*streamDestroy)(void *stream);
    int (*parseHeader)(void *handle, const unsigned char *data, size_t length, void *stream);
    int (*batchedSupported)(void *handle, void *stream, int *is_supported);
    int (*getProperty)(int type, int *value);
};

struct CudaJpeg {
    NvjApi f;
    void *lib, *handle, *state, *stream;
    int batch;   // the batch size nvjpegDecodeBatchedInitialize was last given
    int device;
    char version[32];
};

extern "C" cx_status cuda_jpeg_open(CudaState *s, void **out, char *desc, size_t n) {
    *out = NULL;
    static const char *const names[] = { "libnvjpeg.so.13", "libnvjpeg.so", "/usr/local/cuda/lib64/libnvjpeg.so.13" };
    void *lib = NULL;
    for (size_t i = 0; i < sizeof names / sizeof *names && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) return CX_FAIL(CX_ENOTFOUND, "nvJPEG (libnvjpeg.so.13, part of the CUDA toolkit) is not installed");
    CudaJpeg *j = (CudaJpeg *)calloc(1, sizeof *j);
    j->lib = lib, j->device = s->device;
    struct { void **slot; const char *name; } sym[] = {
        { (void **)&j->f.createEx, "nvjpegCreateEx" }, { (void **)&j->f.destroy, "nvjpegDestroy" },
        { (void **)&j->f.stateCreate, "nvjpegJpegStateCreate" }, { (void **)&j->f.stateDestroy, "nvjpegJpegStateDestroy" },
        { (void **)&j->f.batchedInit, "nvjpegDecodeBatchedInitialize" }, { (void **)&j->f.batched, "nvjpegDecodeBatched" },
        { (void **)&j->f.streamCreate, "nvjpegJpegStreamCreate" }, { (void **)&j->f.streamDestroy, "nvjpegJpegStreamDestroy" },
        { (void **)&j->f.parseHeader, "nvjpegJpegStreamParseHeader" },
        { (void **)&j->f.batchedSupported, "nvjpegDecodeBatchedSupported" }, { (void **)&j->f.getProperty, "nvjpegGetProperty" },
    };
    for (size_t i = 0; i < sizeof sym / sizeof *sym; i++)
        if (!(*sym[i].slot = dlsym(lib, sym[i].name))) {
            dlclose(lib), free(j);
            return CX_FAIL(CX_ENOTFOUND, "nvJPEG lacks %s (too old a version)", sym[i].name);
        }
    int ma = 0, mi = 0, pa = 0;
    j->f.getProperty(0, &ma), j->f.getProperty(1, &mi), j->f.getProperty(2, &pa);
    snprintf(j->version, sizeof j->version, "%d.%d.%d", ma, mi, pa);
    CUDA_CHECK(cudaSetDevice(s->device));
    int e = j->f.createEx(NVJ_BACKEND_HARDWARE, NULL, NULL, 0, &j->handle);
    if (e) {
        dlclose(lib), free(j);
        return CX_FAIL(CX_ELIB, "this GPU has no JPEG decoding engine that nvJPEG %d.%d.%d can use (status %d)", ma,
                       mi, pa, e);
    }
    if ((e = j->f.stateCreate(j->handle, &j->state)) || (e = j->f.streamCreate(j->handle, &j->stream))) {
        if (j->state) j->f.stateDestroy(j->state);
        j->f.destroy(j->handle), dlclose(lib), free(j);
        return CX_FAIL(CX_ELIB, "nvJPEG could not make its decoding state (status %d)", e);
    }
    if (desc) snprintf(desc, n, "nvJPEG %s, hardware decoder", j->version);
    *out = j;
    return CX_OK;
}

extern "C" int cuda_jpeg_supported(void *dec, const uint8_t *data, size_t n) {
    CudaJpeg *j = (CudaJpeg *)dec;
    int sup = -1;
    return !j->f.parseHeader(j->handle, data, n, j->stream) && !j->f.batchedSupported(j->handle, j->stream, &sup) && sup == 0;
}

extern "C" cx_status cuda_jpeg_decode(CudaState *s, void *dec, int n, const uint8_t *const *data, const size_t *len,
                                      uint8_t *const *dst, const int *w, const int *h) {
    CudaJpeg *j = (CudaJpeg *)dec;
    if (n < 1) return CX_OK;
    int e = 0;
    if (j->batch != n) {
        if ((e = j->f.batchedInit(j->handle, j->state, n, 1, NVJ_OUTPUT_RGB))) {
            j->batch = 0;
            return CX_FAIL(CX_EIO, "nvJPEG could not prepare a batch of %d (status %d)", n, e);
        }
        j->batch = n;
    }
    NvjImage *img = (NvjImage *)calloc((size_t)n, sizeof *img);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) img[i].channel[c] = dst[i] + (size_t)c * w[i] * h[i], img[i].pitch[c] = (size_t)w[i];
    e = j->f.batched(j->handle, j->state, (const unsigned char *const *)data, len, img, s->stream);
    free(img);
    if (e) {
        j->batch = 0;   // a failed batch wants a new initialisation
        return CX_FAIL(CX_EIO, "nvJPEG could not decode the batch (status %d)", e);
    }
    return CX_OK;
}

extern "C" void cuda_jpeg_close(void *dec) {
    CudaJpeg *j = (CudaJpeg *)dec;
    if (!j) return;
    j->f.streamDestroy(j->stream);
    j->f.stateDestroy(j->state);
    j->f.destroy(j->handle);
    dlclose(j->lib);
    free(j);
}
