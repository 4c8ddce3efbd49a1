// bf16.c — the CPU's bf16 mode (OpCtx.cpu_bf16; `--precision bf16` on the CPU):
// whether this CPU has native bf16 (ops_cpu_bf16), which products take it
// (cpu_bf16_wanted), and the float32 -> bf16 conversion of their operands.
//
// What runs in bf16 (docs/PERF.md, "bf16 on the CPU"): the convolutions and matmuls
// that oneDNN runs, with bf16 operands and float32 accumulation, reading and writing
// float32 activations. Their inputs are converted here, into ctx->scratch, once per
// call (the input gradient's and the weight gradient's passes share dy's copy);
// weights are converted by oneDNN's reorder into its blocked layout, as the float32
// path reorders them. Every other kernel — norms, activations, the loss, the
// optimizer — is the float32 one, so master weights, gradients, statistics and
// losses stay float32 as on the GPU.
#include "cpu.h"
#include <stdio.h>
#include <string.h>
#if HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

int cpu_bf16_native(void) {
    static int v = -1;   // the ISA is fixed for the process (oneDNN reads ONEDNN_MAX_CPU_ISA once)
    if (v < 0) v = ops_cpu_bf16(NULL, 0);
    return v;
}

int ops_cpu_bf16(char *what, size_t n) {
#if HAVE_DNNL
    // oneDNN's ISA masks nest: avx512_core_amx holds avx512_core_bf16's bits
    // (dnnl_types.h), so one test covers AMX hosts and AVX512-BF16 ones (Zen 4,
    // Cooper Lake); ONEDNN_MAX_CPU_ISA lowers what the query returns.
    const int isa = (int)dnnl_get_effective_cpu_isa();
    const int native = (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
    if (what && n) {
        const char *name = isa == dnnl_cpu_isa_avx512_core_amx ? "avx512_core_amx"
                         : isa == dnnl_cpu_isa_avx512_core_bf16 ? "avx512_core_bf16"
                         : isa == dnnl_cpu_isa_avx512_core_vnni ? "avx512_core_vnni"
                         : isa == dnnl_cpu_isa_avx512_core ? "avx512_core"
                         : isa == dnnl_cpu_isa_avx2_vnni ? "avx2_vnni"
                         : isa == dnnl_cpu_isa_avx2 ? "avx2" : "below avx2";
        if (isa == dnnl_cpu_isa_avx512_core_amx) snprintf(what, n, "AMX-BF16: oneDNN %s", name);
        else if (native) snprintf(what, n, "AVX512-BF16: oneDNN %s", name);
        else snprintf(what, n, "no AVX512-BF16 or AMX-BF16 (oneDNN's kernels here: %s)", name);
    }
    return native;
#else
    if (what && n) snprintf(what, n, "built without oneDNN (USE_DNNL=0)");
    return 0;
#endif
}

// A product earns its conversions when it is large in every direction: a thin one
// (few rows, output channels or terms) is memory-bound, and the float32 paths the
// GPU keeps for accuracy are all thin — the router's linear (one row per image,
// E outputs) and the refinement's one-channel pred heads (docs/GPU.md, precision).
int cpu_bf16_all;

int cpu_bf16_wanted(const OpCtx *ctx, int64_t rows, int64_t outs, int64_t terms) {
    if (!ctx->cpu_bf16 || !cpu_bf16_native()) return 0;
    return cpu_bf16_all ||
           (rows >= 16 && outs >= 16 && terms >= 16 && (double)rows * (double)outs * (double)terms >= (double)(1 << 20));
}

// Round to nearest even; a NaN stays a (quiet) NaN.
static inline uint16_t bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
}

uint16_t *cpu_bf16_copy(OpCtx *ctx, const float *src, int64_t n) {
    uint16_t *dst = arena_alloc(ctx->scratch, sizeof(uint16_t) * (size_t)(n > 0 ? n : 1));
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_of(src[i]);
    return dst;
}
