// conv_dnnl.c — conv2d through oneDNN (built when HAVE_DNNL): forward,
// backward-data and backward-weights (+ bias) on our NHWC activations and OIHW
// weights, in float32, or with bf16 operands (bf16.c: the activations' bf16 copies
// come from the caller, weights are reordered into bf16 here; float32 accumulation,
// float32 outputs and gradients). oneDNN's JIT convolutions block over output pixels, channels and taps
// without materialising im2col columns, which is what the im2col + sgemm path
// (conv.c) spends most of its time on for 3×3..7×7 kernels.
//
// Layouts: activations are described to oneDNN as `nhwc` (no reorder);
// weights as `any`, so oneDNN picks its blocked layout, and are reordered from
// OIHW on every call — they change every optimizer step, and the reorder is
// K·C·kh·kw floats, small next to the convolution. Grouped convolutions use
// `goihw`, which is OIHW's memory order.
//
// Accumulation (ops.h: backward ADDS): dw is computed in oneDNN's layout and
// reordered into dw with a sum post-op (+=); dx uses a sum post-op on the
// backward-data primitive where oneDNN accepts one (Debian's 2.6 does not),
// else a scratch buffer that is then added; db comes from the
// backward-weights primitive into scratch, then is added.
// conv.c decides per shape and pass whether this file runs (conv_use_dnnl):
// dense and grouped convolutions always, depthwise only where oneDNN wins.
//
// Primitives are created once per shape and pass and cached (creation costs
// milliseconds: JIT code generation). Scratchpads are in user mode and come
// from ctx->scratch, so a cached primitive may run from several threads.
#include "cpu.h"
#if HAVE_DNNL
#include "dnnl_util.h"
#include <pthread.h>
#include <string.h>

enum { PASS_FWD, PASS_BWD_DATA, PASS_BWD_WEIGHTS };
enum { KEY_LEN = 15 };

typedef struct {
    int64_t key[KEY_LEN];   // N, H, W, C, K, kh, kw, stride, pad, dil, groups, pass, bias, threads, bf16
    int ok;                 // 0: oneDNN has no implementation here; conv.c's path runs instead
    int dx_sum;             // backward-data accumulates into dx itself (sum post-op)
    dnnl_primitive_t conv;
    dnnl_primitive_t wre;   // weights reorder: OIHW -> wei_md (fwd, bwd-data) or wei_md -> OIHW += (bwd-weights); NULL: same layout (fwd, bwd-data only)
    dnnl_memory_desc_t act_in, act_out, wei_user, wei, bias, conv_pad, wre_pad;   // *_pad: scratchpads
} DnnlConv;

// The cache holds every shape and pass a process uses; beyond DNNL_CACHE entries a
// call builds and destroys its primitives itself (milliseconds of JIT every call).
// One model at one input size takes ~200 (edgenext_base dense at 352², a training
// step and the batch-1 forward: 198), float32 and bf16 primitives of a shape are
// separate entries, and a process may run several models (bench --mode both,
// verify's runs, camoxpert_bench precision: 256 were full there).
#define DNNL_CACHE 1024
static DnnlConv g_cache[DNNL_CACHE];
static int g_ncache;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static dnnl_memory_desc_t md_tag(int nd, const int64_t *dims, dnnl_data_type_t dt, dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md;
    dnnl_dims_t d;
    for (int i = 0; i < nd; i++) d[i] = dims[i];
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, nd, d, dt, tag));
    return md;
}

// Reorder src -> dst (with += when sum); NULL if the layouts are equal and no sum is needed.
static dnnl_primitive_t reorder_new(const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst, int sum,
                                    dnnl_memory_desc_t *pad) {
    memset(pad, 0, sizeof *pad);
    if (!sum && dnnl_memory_desc_equal(src, dst)) return NULL;
    dnnl_primitive_attr_t attr = cpu_dnnl_attr(sum, 1);
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_reorder_primitive_desc_create(&pd, src, cpu_dnnl_engine(), dst, cpu_dnnl_engine(), attr));
    DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
    return cpu_dnnl_prim(pd, pad);
}

static void entry_build(DnnlConv *e) {
    const int64_t *k = e->key;
    int64_t N = k[0], H = k[1], W = k[2], C = k[3], K = k[4], kh = k[5], kw = k[6], s = k[7], p = k[8], d = k[9],
            G = k[10], pass = k[11], has_bias = k[12];
    // bf16: the activations the primitive reads (x; dy) and the weights it multiplies are
    // bf16; what it writes (y, dx, dw, db) is float32.
    const dnnl_data_type_t lo = k[14] ? dnnl_bf16 : dnnl_f32, f32 = dnnl_f32;
    int64_t Ho = (H + 2 * p - d * (kh - 1) - 1) / s + 1, Wo = (W + 2 * p - d * (kw - 1) - 1) / s + 1;
    // oneDNN's right padding makes the sizes consistent: Ho = (H + pl + pr - d(kh-1) - 1)/s + 1 exactly.
    dnnl_dims_t strides = { s, s }, dil = { d - 1, d - 1 }, pl = { p, p },
                pr = { (Ho - 1) * s + d * (kh - 1) + 1 - H - p, (Wo - 1) * s + d * (kw - 1) + 1 - W - p };
    const int64_t *sdims = (int64_t[]){ N, C, H, W }, *ddims = (int64_t[]){ N, K, Ho, Wo };
    // src, dst: what the pass reads or writes there (forward x -> y; backward-data dy -> dx;
    // backward-weights x, dy); wany: the multiplied weights, dwany: the weight gradient
    dnnl_memory_desc_t src = md_tag(4, sdims, pass == PASS_BWD_DATA ? f32 : lo, dnnl_nhwc),
                       dst = md_tag(4, ddims, pass == PASS_FWD ? f32 : lo, dnnl_nhwc), wany, dwany, bias;
    e->wei_user = G == 1 ? md_tag(4, (int64_t[]){ K, C, kh, kw }, f32, dnnl_oihw)
                         : md_tag(5, (int64_t[]){ G, K / G, C / G, kh, kw }, f32, dnnl_goihw);
    wany = G == 1 ? md_tag(4, (int64_t[]){ K, C, kh, kw }, lo, dnnl_format_tag_any)
                  : md_tag(5, (int64_t[]){ G, K / G, C / G, kh, kw }, lo, dnnl_format_tag_any);
    dwany = wany;
    dwany.data_type = f32;
    bias = md_tag(1, (int64_t[]){ K }, f32, dnnl_x);
    e->bias = bias;
    e->ok = 0;

    // Backward primitives need the forward primitive descriptor as a hint (in bf16: the
    // forward of bf16 activations).
    dnnl_convolution_desc_t fd;
    dnnl_memory_desc_t fsrc = md_tag(4, sdims, lo, dnnl_nhwc), fdst = md_tag(4, ddims, pass == PASS_FWD ? f32 : lo,
                                                                                 dnnl_nhwc);
    DNNL_CHECK(dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &fsrc,
                                                          &wany, pass == PASS_FWD && has_bias ? &bias : NULL, &fdst,
                                                          strides, dil, pl, pr));
    dnnl_primitive_attr_t attr = cpu_dnnl_attr(0, 1);
    dnnl_primitive_desc_t fpd, pd = NULL;
    if (dnnl_primitive_desc_create(&fpd, &fd, attr, cpu_dnnl_engine(), NULL) != dnnl_success) {
        DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
        return;
    }
    if (pass == PASS_FWD) {
        pd = fpd;
        fpd = NULL;
        e->act_in = src;
        e->act_out = dst;
    } else if (pass == PASS_BWD_DATA) {
        dnnl_convolution_desc_t bd;
        DNNL_CHECK(dnnl_dilated_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &src, &wany, &dst,
                                                                    strides, dil, pl, pr));
        dnnl_primitive_attr_t sum = cpu_dnnl_attr(1, 1);
        e->dx_sum = dnnl_primitive_desc_create(&pd, &bd, sum, cpu_dnnl_engine(), fpd) == dnnl_success;
        DNNL_CHECK(dnnl_primitive_attr_destroy(sum));
        if (!e->dx_sum && dnnl_primitive_desc_create(&pd, &bd, attr, cpu_dnnl_engine(), fpd) != dnnl_success) pd = NULL;
        e->act_in = dst;    // dy
        e->act_out = src;   // dx
    } else {
        dnnl_convolution_desc_t bd;
        DNNL_CHECK(dnnl_dilated_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &src, &dwany,
                                                                       has_bias ? &bias : NULL, &dst, strides, dil,
                                                                       pl, pr));
        if (dnnl_primitive_desc_create(&pd, &bd, attr, cpu_dnnl_engine(), fpd) != dnnl_success) pd = NULL;
        e->act_in = src;    // x
        e->act_out = dst;   // dy
    }
    if (fpd) DNNL_CHECK(dnnl_primitive_desc_destroy(fpd));
    DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
    if (!pd) return;
    e->wei = *dnnl_primitive_desc_query_md(pd, pass == PASS_BWD_WEIGHTS ? dnnl_query_diff_weights_md
                                                                          : dnnl_query_weights_md, 0);
    e->conv = cpu_dnnl_prim(pd, &e->conv_pad);
    e->wre = pass == PASS_BWD_WEIGHTS ? reorder_new(&e->wei, &e->wei_user, 1, &e->wre_pad)
                                      : reorder_new(&e->wei_user, &e->wei, 0, &e->wre_pad);
    e->ok = 1;
}

static void entry_destroy(DnnlConv *e) {
    if (e->conv) DNNL_CHECK(dnnl_primitive_destroy(e->conv));
    if (e->wre) DNNL_CHECK(dnnl_primitive_destroy(e->wre));
}

// The thread count (cx_threads_set) is part of the key: oneDNN sizes its work
// split and scratchpad for the OpenMP threads available at creation.
static void key_fill(int64_t *key, const Tensor *x, const Tensor *w, ConvArgs a, int pass, int bias, int bf16) {
    int64_t k[KEY_LEN] = { T_N(x), T_H(x), T_W(x), T_C(x), w->shape[0], w->shape[2], w->shape[3],
                           a.stride, a.pad, a.dil, a.groups, pass, bias, cx_threads_get(), bf16 };
    memcpy(key, k, sizeof k);
}

// Finds or builds the entry of this shape and pass. When the cache is full it is built
// into *tmp, for this call only: every entry_get is paired with an entry_put.
static const DnnlConv *entry_get(DnnlConv *tmp, const Tensor *x, const Tensor *w, ConvArgs a, int pass, int bias,
                                 int bf16) {
    int64_t key[KEY_LEN];
    key_fill(key, x, w, a, pass, bias, bf16);
    pthread_mutex_lock(&g_lock);
    const DnnlConv *found = NULL;
    for (int i = 0; i < g_ncache && !found; i++)
        if (!memcmp(g_cache[i].key, key, sizeof g_cache[i].key)) found = &g_cache[i];
    if (!found) {
        DnnlConv *e = g_ncache < DNNL_CACHE ? &g_cache[g_ncache++] : tmp;
        memset(e, 0, sizeof *e);
        memcpy(e->key, key, sizeof e->key);
        entry_build(e);
        found = e;
    }
    pthread_mutex_unlock(&g_lock);
    return found;
}

// Ends a use of entry_get's entry: destroys it when it was built into tmp.
static void entry_put(const DnnlConv *e, DnnlConv *tmp) {
    if (e == tmp) entry_destroy(tmp);
}

// The weights in the primitive's layout: reordered into scratch, or w itself.
static void *weights_in(OpCtx *ctx, const DnnlConv *e, const Tensor *w) {
    if (!e->wre) return tensor_f32(w);
    void *buf = cpu_dnnl_scratch(ctx, &e->wei);
    cpu_dnnl_run(ctx, e->wre, &e->wre_pad, 2,
        (dnnl_exec_arg_t[3]){ { DNNL_ARG_FROM, cpu_dnnl_mem(&e->wei_user, tensor_f32(w)) }, { DNNL_ARG_TO, cpu_dnnl_mem(&e->wei, buf) } });
    return buf;
}

// xb, dyb: the bf16 copies of x, dy (cpu_bf16_copy) for the bf16 primitive; NULL: float32.
int cpu_conv_dnnl_forward(OpCtx *ctx, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *b, ConvArgs a,
                          const uint16_t *xb) {
    DnnlConv tmp;
    const DnnlConv *e = entry_get(&tmp, x, w, a, PASS_FWD, b != NULL, xb != NULL);
    int ok = e->ok;
    if (ok) {
        ArenaMark m = arena_mark(ctx->scratch);
        void *wb = weights_in(ctx, e, w);
        dnnl_exec_arg_t args[5] = { { DNNL_ARG_SRC, cpu_dnnl_mem(&e->act_in, xb ? (void *)xb : tensor_f32(x)) },
                                    { DNNL_ARG_WEIGHTS, cpu_dnnl_mem(&e->wei, wb) },
                                    { DNNL_ARG_DST, cpu_dnnl_mem(&e->act_out, tensor_f32(y)) } };
        int n = 3;
        if (b) args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_BIAS, cpu_dnnl_mem(&e->bias, tensor_f32(b)) };
        cpu_dnnl_run(ctx, e->conv, &e->conv_pad, n, args);
        arena_release(ctx->scratch, m);
    }
    entry_put(e, &tmp);
    return ok;
}

// dx += conv_backward_data(dy, w)
int cpu_conv_dnnl_backward_data(OpCtx *ctx, Tensor *dx, const Tensor *dy, const Tensor *x, const Tensor *w, ConvArgs a,
                                const uint16_t *dyb) {
    DnnlConv tmp;
    const DnnlConv *e = entry_get(&tmp, x, w, a, PASS_BWD_DATA, 0, dyb != NULL);
    int ok = e->ok;
    if (ok) {
        ArenaMark m = arena_mark(ctx->scratch);
        void *wb = weights_in(ctx, e, w);
        // A first write (ops.h) goes straight into dx; the primitive that adds (dx_sum) gets a zeroed dx.
        const int wr = op_overwrites(ctx, dx);
        if (wr && e->dx_sum) op_zero_first(ctx, dx);
        float *dxp = tensor_f32(dx), *out = e->dx_sum || wr ? dxp : cpu_dnnl_scratch(ctx, &e->act_out);
        cpu_dnnl_run(ctx, e->conv, &e->conv_pad, 3,
            (dnnl_exec_arg_t[4]){ { DNNL_ARG_DIFF_DST, cpu_dnnl_mem(&e->act_in, dyb ? (void *)dyb : tensor_f32(dy)) },
                                  { DNNL_ARG_WEIGHTS, cpu_dnnl_mem(&e->wei, wb) },
                                  { DNNL_ARG_DIFF_SRC, cpu_dnnl_mem(&e->act_out, out) } });
        if (!e->dx_sum && !wr) {
            int64_t n = tensor_numel(dx);
#pragma omp parallel for simd schedule(static)
            for (int64_t i = 0; i < n; i++) dxp[i] += out[i];
        }
        arena_release(ctx->scratch, m);
    }
    entry_put(e, &tmp);
    return ok;
}

// dw += conv_backward_weights(x, dy); db += Σ dy when db. bf16: xb and dyb both set.
int cpu_conv_dnnl_backward_weights(OpCtx *ctx, Tensor *dw, Tensor *db, const Tensor *dy, const Tensor *x,
                                   const Tensor *w, ConvArgs a, const uint16_t *dyb, const uint16_t *xb) {
    CX_ASSERT(!xb == !dyb, "conv backward-weights: both operands bf16 or neither");
    DnnlConv tmp;
    const DnnlConv *e = entry_get(&tmp, x, w, a, PASS_BWD_WEIGHTS, db != NULL, xb != NULL);
    int ok = e->ok;
    if (ok) {
        ArenaMark m = arena_mark(ctx->scratch);
        void *wb = cpu_dnnl_scratch(ctx, &e->wei);
        float *bb = db ? arena_alloc(ctx->scratch, sizeof(float) * (size_t)tensor_numel(db)) : NULL;
        dnnl_exec_arg_t args[5] = { { DNNL_ARG_SRC, cpu_dnnl_mem(&e->act_in, xb ? (void *)xb : tensor_f32(x)) },
                                    { DNNL_ARG_DIFF_DST, cpu_dnnl_mem(&e->act_out, dyb ? (void *)dyb : tensor_f32(dy)) },
                                    { DNNL_ARG_DIFF_WEIGHTS, cpu_dnnl_mem(&e->wei, wb) } };
        int n = 3;
        if (db) args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_DIFF_BIAS, cpu_dnnl_mem(&e->bias, bb) };
        cpu_dnnl_run(ctx, e->conv, &e->conv_pad, n, args);
        cpu_dnnl_run(ctx, e->wre, &e->wre_pad, 2,
            (dnnl_exec_arg_t[3]){ { DNNL_ARG_FROM, cpu_dnnl_mem(&e->wei, wb) }, { DNNL_ARG_TO, cpu_dnnl_mem(&e->wei_user, tensor_f32(dw)) } });
        if (db)
            for (int64_t k = 0; k < tensor_numel(db); k++) tensor_f32(db)[k] += bb[k];
        arena_release(ctx->scratch, m);
    }
    entry_put(e, &tmp);
    return ok;
}

#endif
