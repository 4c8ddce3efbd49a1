// backend.c — the CPU backend's table (OpsBackend, ops/backend.h): each op's fast
// float32 kernel of ops/cpu/, or, where its CPU column in ops_list.h is REF, its
// float32 reference kernel, the plain loop being fast enough there.
#include "cpu.h"
#include "ops/backend.h"
#include "ops/ref/ref.h"

#define CPU_SLOT_CPU(name) .name = cpu_##name,
#define CPU_SLOT_REF(name) .name = ref_##name##_f32,
const OpsBackend ops_cpu = {
#define OP(name, cls, by, wrap, ref, cpu, fw, params, args) CPU_SLOT_##cpu(name)
#include "ops/ops_list.h"
#undef OP
};
