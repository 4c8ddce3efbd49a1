// sysmem.c — see sysmem.h.
#include "sysmem.h"
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

int64_t cx_mem_budget(char *source, size_t n) {
    const char *env = getenv("CAMOXPERT_MEMORY_LIMIT_MB");
    if (env && *env) {
        snprintf(source, n, "CAMOXPERT_MEMORY_LIMIT_MB");
        double mb = strtod(env, NULL);
        return mb > 0 ? (int64_t)(mb * 1048576.0) : 0;
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
        return cg;
    }
    snprintf(source, n, "MemAvailable");
    return avail > 0 ? avail : 0;
}
