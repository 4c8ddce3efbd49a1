// ref.h — the plain reference kernels, one instantiation per float dtype
// (ref_<op>_f32 and ref_<op>_f64), generated from ref_tmpl.h. They are the
// ground truth for tests (finite differences, fast-vs-reference, PyTorch
// goldens) and the float64 path of whole-model gradient parity. Written for
// clarity, not speed; reductions accumulate in double in both dtypes.
// Signatures and accumulation contracts are those of ops_list.h; the tables
// (ops_ref_f32, ops_ref_f64: ops/backend.h) are filled in ref.c.
#pragma once
#include "ops/ops.h"

// The loss works in double whatever the maps' dtype (loss_ref.c): one function for both
// (declared below as both names).
#define ref_cod_loss_f32 ref_cod_loss
#define ref_cod_loss_f64 ref_cod_loss

// ref_<op>_f32 and ref_<op>_f64 of every op whose reference column in ops_list.h is REF.
#define REF_DECL_REF(name, params) void ref_##name##_f32 params; void ref_##name##_f64 params;
#define REF_DECL_CPU(name, params)
#define REF_DECL_NONE(name, params)
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) REF_DECL_##ref(name, params)
#include "ops/ops_list.h"
#undef OP

// Shape helpers shared by the reference and fast kernels.
// Mode of a broadcast multiply (ops_list.h mul_forward): x viewed as (N, P, C) and
// s indexed as n*sn + p*sp + c*sc.
typedef struct { int64_t N, P, C, sn, sp, sc; } MulBcast;
MulBcast mul_bcast_plan(const Tensor *x, const Tensor *s);
