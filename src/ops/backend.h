// backend.h — the backend interface below the op API (ggml's ggml-backend-impl.h
// idea): OpsBackend, a table with one function pointer per op of ops_list.h, which
// each backend fills once (ops/ref/ref.c: the float32 and float64 reference,
// ops/cpu/backend.c: the fast CPU kernels, ops/cuda/plugin.cu: the GPU). ops.c
// dispatches every op through the table of ctx's backend. Internal to ops/ (and
// the op tests).
//
//   const OpsBackend *b = &ops_cpu;
//   b->fill(&ctx, &y, 0);
//   char missing[512];
//   if (ops_backend_missing(b, missing, sizeof missing)) printf("lacks %s\n", missing);
#pragma once
#include "ops/ops.h"
#include <assert.h>

// Op ids, in list order: OP_ID_conv2d_forward, ..., OP_COUNT.
enum {
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) OP_ID_##name,
#include "ops/ops_list.h"
#undef OP
    OP_COUNT
};

typedef struct OpsBackend {
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) void (*name) params;
#include "ops/ops_list.h"
#undef OP
} OpsBackend;
// One slot per op and nothing else: a member added by hand would be a slot no table fills.
static_assert(sizeof(OpsBackend) == OP_COUNT * sizeof(void (*)(void)), "OpsBackend: one function pointer per op");

// Every op's name, signature and first-write column, in list order
// ("conv2d_forward(OpCtx *ctx, ...)();..."):
// the CUDA plug-in carries the string of the build that made it, and a plug-in whose
// string differs (another build's list) is refused before any slot is called.
static inline const char *ops_list_signature(void) {
    return ""
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) #name #params #fw ";"
#include "ops/ops_list.h"
#undef OP
        ;
}

extern const OpsBackend ops_ref_f32, ops_ref_f64, ops_cpu;

// The names of the ops whose slot in b is empty, ", "-separated in list order, into
// buf (cut short with "..." when it does not fit); returns how many there are.
int ops_backend_missing(const OpsBackend *b, char *buf, size_t n);
