// dnnl_common.c — see dnnl_util.h.
#include "cpu.h"
#if HAVE_DNNL
#include "dnnl_util.h"
#include <pthread.h>

static dnnl_engine_t g_engine;
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;
static void engine_create(void) { DNNL_CHECK(dnnl_engine_create(&g_engine, dnnl_cpu, 0)); }

dnnl_engine_t cpu_dnnl_engine(void) {
    pthread_once(&g_engine_once, engine_create);
    return g_engine;
}

int cpu_dnnl_avx512(void) {
    static int v = -1;   // the ISA is fixed for the process (ONEDNN_MAX_CPU_ISA is read once)
    if (v < 0) v = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;   // bits
    return v;
}

dnnl_primitive_attr_t cpu_dnnl_attr(float sum_scale, float out_scale) {
    dnnl_primitive_attr_t attr;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (out_scale != 1.0f) DNNL_CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &out_scale));
    if (sum_scale != 0.0f) {
        dnnl_post_ops_t po;
        DNNL_CHECK(dnnl_post_ops_create(&po));
        DNNL_CHECK(dnnl_post_ops_append_sum(po, sum_scale));
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
        DNNL_CHECK(dnnl_post_ops_destroy(po));
    }
    return attr;
}

dnnl_primitive_t cpu_dnnl_prim(dnnl_primitive_desc_t pd, dnnl_memory_desc_t *pad) {
    dnnl_primitive_t p;
    *pad = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    DNNL_CHECK(dnnl_primitive_create(&p, pd));
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    return p;
}

dnnl_memory_t cpu_dnnl_mem(const dnnl_memory_desc_t *md, void *p) {
    dnnl_memory_t m;
    DNNL_CHECK(dnnl_memory_create(&m, md, cpu_dnnl_engine(), p));
    return m;
}

void *cpu_dnnl_scratch(OpCtx *ctx, const dnnl_memory_desc_t *md) {
    size_t n = dnnl_memory_desc_get_size(md);
    return n ? arena_alloc(ctx->scratch, n) : NULL;
}

void cpu_dnnl_run(OpCtx *ctx, dnnl_primitive_t p, const dnnl_memory_desc_t *pad, int n, dnnl_exec_arg_t *args) {
    ArenaMark m = arena_mark(ctx->scratch);
    dnnl_memory_t pm = cpu_dnnl_mem(pad, cpu_dnnl_scratch(ctx, pad));
    args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, pm };
    dnnl_stream_t st;
    DNNL_CHECK(dnnl_stream_create(&st, cpu_dnnl_engine(), dnnl_stream_default_flags));
    DNNL_CHECK(dnnl_primitive_execute(p, st, n, args));
    DNNL_CHECK(dnnl_stream_wait(st));
    DNNL_CHECK(dnnl_stream_destroy(st));
    for (int i = 0; i < n; i++) DNNL_CHECK(dnnl_memory_destroy(args[i].memory));
    arena_release(ctx->scratch, m);
}
#endif
