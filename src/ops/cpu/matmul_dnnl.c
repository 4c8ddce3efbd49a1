// matmul_dnnl.c — strided, batched GEMM through oneDNN's matmul (built when
// HAVE_DNNL): C = alpha·op(A)·op(B) + beta·C (+ bias); A and B float32, or both
// bf16 (bf16.c: float32 accumulation; C and the bias float32). gemm.c routes
// linear layers and gemm_batched here because oneDNN's JIT kernels run AVX-512
// whatever OPENBLAS_CORETYPE says, where OpenBLAS is held to its AVX2 kernels
// on this project's machines (docs/PERF.md, ## CPU ops: 2x per shape).
//
// Operands are described by strides, so transposes, row pitches (lda > K) and
// batch strides cost no copies; alpha is an output scale and beta a sum
// post-op, which gives the `+=` of the backward passes in one pass over C.
// Primitives are created once per shape and cached like conv_dnnl.c's.
#include "cpu.h"
#if HAVE_DNNL
#include "dnnl_util.h"
#include <pthread.h>
#include <string.h>

enum { KEY_LEN = 17 };

typedef struct {
    int64_t key[KEY_LEN];   // ta, tb, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, alpha, beta (float bits), bias, threads, bf16
    int ok;                 // 0: oneDNN has no implementation; the caller runs sgemm
    dnnl_primitive_t mm;
    dnnl_memory_desc_t a, b, c, bias, pad;
} DnnlMatmul;

// Every GEMM shape of a model (a few dozen per resolution and batch) fits;
// beyond that a call builds and destroys its primitive itself.
#define MATMUL_CACHE 512
static DnnlMatmul g_cache[MATMUL_CACHE];
static int g_ncache;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

// (batch,) rows × cols with the given element strides; 2-D when batch == 1.
static dnnl_memory_desc_t md_strided(int64_t batch, int64_t rows, int64_t cols, int64_t s_batch, int64_t s_row,
                                     int64_t s_col, dnnl_data_type_t dt) {
    dnnl_memory_desc_t md;
    dnnl_dims_t d = { batch, rows, cols }, s = { s_batch, s_row, s_col };
    int nd = batch > 1 ? 3 : 2, o = batch > 1 ? 0 : 1;
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(&md, nd, d + o, dt, s + o));
    return md;
}

static void entry_build(DnnlMatmul *e) {
    const int64_t *k = e->key;
    int64_t ta = k[0], tb = k[1], M = k[2], N = k[3], K = k[4], lda = k[5], ldb = k[6], ldc = k[7], sA = k[8],
            sB = k[9], sC = k[10], batch = k[11], has_bias = k[14];
    const dnnl_data_type_t in = k[16] ? dnnl_bf16 : dnnl_f32;
    float alpha, beta;
    int32_t ab = (int32_t)k[12], bb = (int32_t)k[13];
    memcpy(&alpha, &ab, sizeof alpha);
    memcpy(&beta, &bb, sizeof beta);
    e->a = ta ? md_strided(batch, M, K, sA, 1, lda, in) : md_strided(batch, M, K, sA, lda, 1, in);
    e->b = tb ? md_strided(batch, K, N, sB, 1, ldb, in) : md_strided(batch, K, N, sB, ldb, 1, in);
    e->c = md_strided(batch, M, N, sC, ldc, 1, dnnl_f32);
    dnnl_dims_t bd = { 1, 1, N };   // bias broadcast over batch and rows
    int nd = batch > 1 ? 3 : 2;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&e->bias, nd, bd + 3 - nd, dnnl_f32, nd == 3 ? dnnl_abc : dnnl_ab));
    dnnl_matmul_desc_t md;
    DNNL_CHECK(dnnl_matmul_desc_init(&md, &e->a, &e->b, has_bias ? &e->bias : NULL, &e->c));
    dnnl_primitive_attr_t attr = cpu_dnnl_attr(beta, alpha);
    dnnl_primitive_desc_t pd;
    e->ok = dnnl_primitive_desc_create(&pd, &md, attr, cpu_dnnl_engine(), NULL) == dnnl_success;
    DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
    if (e->ok) e->mm = cpu_dnnl_prim(pd, &e->pad);
}

int cpu_matmul_dnnl(OpCtx *ctx, int bf16, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                    int64_t sA, const void *B, int ldb, int64_t sB, float beta, float *C, int ldc, int64_t sC,
                    int batch, const float *bias) {
    int32_t ab, bb;
    memcpy(&ab, &alpha, sizeof ab);
    memcpy(&bb, &beta, sizeof bb);
    // The thread count is part of the key, as in conv_dnnl.c: oneDNN sizes its
    // work split and scratchpad for the threads available at creation.
    int64_t key[KEY_LEN] = { ta, tb, M, N, K, lda, ldb, ldc, batch > 1 ? sA : 0, batch > 1 ? sB : 0,
                             batch > 1 ? sC : 0, batch, ab, bb, bias != NULL, cx_threads_get(), bf16 != 0 };
    DnnlMatmul tmp, *e = NULL;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < g_ncache && !e; i++)
        if (!memcmp(g_cache[i].key, key, sizeof key)) e = &g_cache[i];
    if (!e) {
        e = g_ncache < MATMUL_CACHE ? &g_cache[g_ncache++] : &tmp;
        memset(e, 0, sizeof *e);
        memcpy(e->key, key, sizeof key);
        entry_build(e);
    }
    pthread_mutex_unlock(&g_lock);
    int ok = e->ok;
    if (ok) {
        dnnl_exec_arg_t args[5] = { { DNNL_ARG_SRC, cpu_dnnl_mem(&e->a, (void *)A) },
                                    { DNNL_ARG_WEIGHTS, cpu_dnnl_mem(&e->b, (void *)B) },
                                    { DNNL_ARG_DST, cpu_dnnl_mem(&e->c, C) } };
        int n = 3;
        if (bias) args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_BIAS, cpu_dnnl_mem(&e->bias, (void *)bias) };
        cpu_dnnl_run(ctx, e->mm, &e->pad, n, args);
    }
    if (e == &tmp && tmp.mm) DNNL_CHECK(dnnl_primitive_destroy(tmp.mm));
    return ok;
}
#endif
