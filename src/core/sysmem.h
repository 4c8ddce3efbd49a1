// sysmem.h — how much memory this process can plan to use, so a job that cannot fit
// is refused before it starts instead of growing until the machine kills it.
//
// The budget is the smallest of /proc/meminfo MemAvailable and the headroom of the
// process's cgroup (v2 memory.max − memory.current, v1 memory.limit_in_bytes −
// memory.usage_in_bytes). CAMOXPERT_MEMORY_LIMIT_MB overrides it (for a machine whose
// memory grows on demand, or a share of a shared one); 0 turns the checks off.
//
//   char how[64];
//   int64_t budget = cx_mem_budget(how, sizeof how);   // 0: unknown or off
#pragma once
#include <stddef.h>
#include <stdint.h>

// Bytes this process may plan for, and in `source` where the number comes from
// ("MemAvailable", "the cgroup limit", "CAMOXPERT_MEMORY_LIMIT_MB"); 0 when unknown or turned off.
int64_t cx_mem_budget(char *source, size_t n);
