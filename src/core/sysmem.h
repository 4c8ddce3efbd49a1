// sysmem.h — how much memory this process can plan to use, so a job that cannot fit
// is refused before it starts instead of growing until the machine kills it.
//
// The budget is the smallest of /proc/meminfo MemAvailable and the headroom of the
// process's cgroup (v2 memory.max − memory.current, v1 memory.limit_in_bytes −
// memory.usage_in_bytes). CAMOXPERT_MEMORY_LIMIT_MB overrides it (for a machine whose
// memory grows on demand, or a share of a shared one); 0 turns the checks off. Ranks of
// one job on one machine (LOCAL_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_SIZE,
// SLURM_NTASKS_PER_NODE: `train --procs N` sets the first) share it: each plans for its
// part.
//
//   char how[64];
//   int64_t budget = cx_mem_budget(how, sizeof how);   // 0: unknown or off
#pragma once
#include "error.h"
#include <stddef.h>
#include <stdint.h>

// Bytes this process may plan for, and in `source` where the number comes from
// ("MemAvailable", "the cgroup limit", "CAMOXPERT_MEMORY_LIMIT_MB"); 0 when unknown or turned off.
int64_t cx_mem_budget(char *source, size_t n);
// CAMOXPERT_MEMORY_LIMIT_MB is unset, or a number of MiB from 0: otherwise CX_EARG naming
// it ("abc" or "-5" used to be ignored silently). Every command checks it at its start.
cx_status cx_mem_limit_check(void);
// The ranks of this job on this machine (1 when not launched as several).
int cx_local_ranks(void);
