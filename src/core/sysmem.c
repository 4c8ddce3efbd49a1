// sysmem.c — see sysmem.h.
#include "sysmem.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A number from a one-line file (cgroup limits); -1 when absent or "max".
static int64_t read_number(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char b[64] = "";
    int ok = fgets(b, sizeof b, f) != NULL;
    fclose(f);
    if (!ok || !strncmp(b, "max", 3)) return -1;
    long long v = strtoll(b, NULL, 10);
    return v > 0 && v < ((int64_t)1 << 60) ? v : -1;   // v1 writes "unlimited" as ~2^63
}

// The cgroup's remaining headroom in bytes, or -1 when it sets no limit.
static int64_t cgroup_headroom(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return -1;
    char line[1024];
    int64_t best = -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char lim[1400], use[1400];
        const char *p;
        if (!strncmp(line, "0::", 3)) {   // cgroup v2
            p = line + 3;
            snprintf(lim, sizeof lim, "/sys/fs/cgroup%s/memory.max", p);
            snprintf(use, sizeof use, "/sys/fs/cgroup%s/memory.current", p);
        } else if ((p = strstr(line, ":memory:"))) {   // cgroup v1
            p += 8;
            snprintf(lim, sizeof lim, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", p);
            snprintf(use, sizeof use, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", p);
        } else {
            continue;
        }
        int64_t l = read_number(lim), u = read_number(use);
        if (l > 0) {
            int64_t h = l - (u > 0 ? u : 0);
            if (best < 0 || h < best) best = h > 0 ? h : 0;
        }
    }
    fclose(f);
    return best;
}

cx_status cx_mem_limit_check(void) {
    const char *env = getenv("CAMOXPERT_MEMORY_LIMIT_MB");
    if (!env || !*env) return CX_OK;
    char *end;
    double mb = strtod(env, &end);
    if (end == env || *end || !isfinite(mb) || mb < 0 || mb > 1e12)
        return CX_FAIL(CX_EARG, "environment: CAMOXPERT_MEMORY_LIMIT_MB=%s is not a number of MiB (from 0, which turns "
                       "the memory checks off); fix or unset it", env);
    return CX_OK;
}

int cx_local_ranks(void) {
    static const char *const vars[] = { "LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", NULL };
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        long k = v && *v ? strtol(v, NULL, 10) : 0;   // Slurm's "2(x3)" reads as 2
        if (k >= 1 && k <= 1000000) return (int)k;
    }
    return 1;
}

// The machine's memory for this process: shared by the ranks that run on it.
static int64_t share(int64_t bytes, char *source, size_t n) {
    const int r = cx_local_ranks();
    if (r > 1 && bytes > 0) {
        size_t L = strlen(source);
        snprintf(source + L, n > L ? n - L : 0, ", shared by the %d ranks on this machine", r);
        return bytes / r;
    }
    return bytes;
}

int64_t cx_mem_budget(char *source, size_t n) {
    const char *env = getenv("CAMOXPERT_MEMORY_LIMIT_MB");
    if (env && *env) {
        snprintf(source, n, "CAMOXPERT_MEMORY_LIMIT_MB");
        if (cx_mem_limit_check()) return 0;   // refused where the command starts (cli/main.c)
        double mb = strtod(env, NULL);
        return mb > 0 ? share((int64_t)(mb * 1048576.0), source, n) : 0;
    }
    int64_t avail = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "MemAvailable:", 13)) avail = strtoll(line + 13, NULL, 10) * 1024;
        fclose(f);
    }
    int64_t cg = cgroup_headroom();
    if (cg >= 0 && (avail < 0 || cg < avail)) {
        snprintf(source, n, "the cgroup's memory limit");
        return share(cg, source, n);
    }
    snprintf(source, n, "MemAvailable");
    return avail > 0 ? share(avail, source, n) : 0;
}
