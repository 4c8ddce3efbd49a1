// dnnl_util.h — what the oneDNN-backed kernels (conv_dnnl.c, matmul_dnnl.c)
// share: one CPU engine, attributes with user-managed scratchpads (taken from
// ctx->scratch, so a cached primitive may run from several threads and no call
// page-faults a fresh library-allocated buffer), and running a primitive.
// Internal to src/ops/cpu; HAVE_DNNL only.
#pragma once
#include "cpu.h"
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

// A failure while running a primitive that was created successfully is a bug
// or a broken library: stop with what failed.
#define DNNL_CHECK(call) do { dnnl_status_t st_ = (call); \
    CX_ASSERT(st_ == dnnl_success, "oneDNN call %s failed: %s (check libdnnl2's installation)", #call, \
              dnnl_status2str(st_)); } while (0)

dnnl_engine_t cpu_dnnl_engine(void);
// Attributes: user scratchpad; with sum_scale != 0 a sum post-op (dst = result + sum_scale·dst);
// with out_scale != 1 the result is scaled first.
dnnl_primitive_attr_t cpu_dnnl_attr(float sum_scale, float out_scale);
// Creates the primitive of pd and returns its scratchpad desc in *pad; destroys pd.
dnnl_primitive_t cpu_dnnl_prim(dnnl_primitive_desc_t pd, dnnl_memory_desc_t *pad);
dnnl_memory_t cpu_dnnl_mem(const dnnl_memory_desc_t *md, void *p);
// Scratch of md's size from ctx->scratch (NULL for an empty desc).
void *cpu_dnnl_scratch(OpCtx *ctx, const dnnl_memory_desc_t *md);
// Runs p with args (n of them; args needs room for one more, the scratchpad),
// destroying the memories afterwards.
void cpu_dnnl_run(OpCtx *ctx, dnnl_primitive_t p, const dnnl_memory_desc_t *pad, int n, dnnl_exec_arg_t *args);
