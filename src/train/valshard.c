// valshard.c — see valshard.h.
#include "train/valshard.h"
#include <stdlib.h>
#include <string.h>

void val_shard(int n, int batch, int rank, int world, int *first, int *count) {
    const int nb = (n + batch - 1) / batch;
    const int b0 = (int)((int64_t)nb * rank / world), b1 = (int)((int64_t)nb * (rank + 1) / world);
    const int end = (int64_t)b1 * batch < n ? b1 * batch : n;
    *first = b0 * batch < n ? b0 * batch : n;
    *count = end - *first;
}

cx_status val_reduce(DistStore *s, const ValImage *mine, int k, int n_total, ValResult *vr) {
    const void *all = mine;
    void *gathered = NULL;
    size_t one = sizeof *mine * (size_t)k, *sz = s->world > 1 ? cx_calloc((size_t)s->world, sizeof *sz) : &one;
    cx_status st = CX_OK;
    if (s->world > 1) {
        st = dist_gather(s, mine, sizeof *mine * (size_t)k, &gathered, sz);
        all = gathered;
    }
    if (!st && s->rank == 0) {
        size_t total = 0;
        for (int r = 0; r < s->world; r++) total += sz[r];
        const ValImage *v = all;
        int64_t n = (int64_t)(total / sizeof *v);
        MetricsAccum acc;
        metrics_accum_init(&acc);
        double iou_sum = 0;
        for (int64_t i = 0; i < n && !st; i++) {
            if (v[i].index != i)
                st = CX_FAIL(CX_EIO, "validation: image %lld of the split arrived at place %lld (the ranks' shards "
                             "disagree; do all ranks see the same dataset and --val-fraction?)", (long long)v[i].index,
                             (long long)i);
            metrics_accum_add(&acc, &v[i].m);
            iou_sum += v[i].iou;
        }
        if (!st && n != n_total)
            st = CX_FAIL(CX_EIO, "validation: %lld of the %d images were scored (do all ranks see the same dataset?)",
                         (long long)n, n_total);
        memset(vr, 0, sizeof *vr);
        metrics_accum_summary(&acc, &vr->s);
        vr->n = (int)acc.n;
        vr->iou = acc.n ? iou_sum / (double)acc.n : 0;
    }
    free(gathered);
    if (sz != &one) free(sz);
    CX_TRY(st);
    return s->world > 1 ? dist_broadcast(s, vr, sizeof *vr) : CX_OK;
}
