// validate.c — see validate.h.
#include "train/validate.h"
#include "data/loader.h"
#include "infer/infer.h"
#include <string.h>

void train_freeze(AdamW *opt, unsigned char *frozen, const ParamTable *pt, int stage, int j, int n, int progressive) {
    opt->group_frozen[PG_BACKBONE] = stage == 1;
    memset(frozen, 0, (size_t)pt->n);
    if (stage != 2 || !progressive) return;
    int phase = n > 0 ? j * 3 / n : 2;
    for (int i = 0; i < pt->n; i++) {
        const ParamInfo *p = &pt->p[i];
        if (p->group != PG_BACKBONE) continue;
        int open = phase >= 2 || !strncmp(p->name, "backbone.stages_3.", 18) ||
                   (phase >= 1 && !strncmp(p->name, "backbone.stages_2.", 18));
        frozen[i] = !open;
    }
}

// Rank 0's BatchNorm running statistics (and counters) on every rank, in the table in
// use: what the reference's DDP does before each forward (broadcast_buffers); here
// before validation, the one computation that reads them. Training-mode BatchNorm
// uses each rank's batch statistics, so between validations the ranks' running
// statistics drift apart, as the reference's do between its forwards.
static cx_status sync_buffers(const ParamTable *pt, Comm *comm, int world) {
    for (int i = 0; world > 1 && i < pt->n; i++) {
        if (!(pt->p[i].flags & PF_BUFFER)) continue;
        Tensor v = tensor_view((char *)pt->data + (size_t)pt->p[i].offset * dtype_size(pt->dtype), pt->dtype, 1,
                               &pt->p[i].numel);
        v.device = pt->device;
        CX_TRY(comm_broadcast(comm, &v));
    }
    return CX_OK;
}

// Scores the loader's batches into mine[0..*k).
static cx_status score(Model *m, Loader *L, const Dataset *va, Image8 *gt, int first, int S, ValImage *mine, int *k) {
    float *prob = NULL;
    size_t prob_cap = 0;
    const Batch *b;
    cx_status st;
    while (!(st = loader_next(L, &b)) && b) {
        CamoXpertOutputs o;
        Tensor pred = infer_forward(m, &b->image, &o);
        for (int i = 0; i < b->n && !st; i++, (*k)++) {
            ValImage *vi = &mine[*k];
            vi->index = first + b->index[i];
            Image8 *g = &gt[vi->index];
            if (!g->px && (st = image_load(va->s[vi->index].mask, 1, g))) break;
            size_t need = (size_t)g->w * g->h;
            if (need > prob_cap) { prob = cx_realloc(prob, need * sizeof *prob); prob_cap = need; }
            infer_prob_at(tensor_f32(&pred) + (int64_t)i * S * S, S, S, g->h, g->w, prob);
            MetricsAccum scratch;
            metrics_accum_init(&scratch);
            if ((st = metrics_accum_prob(&scratch, prob, g->px, g->h, g->w, &vi->m))) break;
            // The reference's IoU: sigmoid > 0.5 against GT > 128, per image.
            double inter = 0, uni = 0;
            for (size_t p = 0; p < need; p++) {
                int a = prob[p] > 0.5f, t = g->px[p] > 128;
                inter += a & t, uni += a | t;
            }
            vi->iou = uni > 0 ? inter / uni : 1.0;
        }
        if (st) break;
    }
    free(prob);
    return st;
}

cx_status train_validate(Model *m, Ema *ema, const Dataset *va, Image8 *gt, int batch, const TrainConfig *c,
                         DistStore *store, Comm *comm, ValResult *vr, int *data_failed) {
    int first, n_mine;
    val_shard(va->n, batch, store->rank, store->world, &first, &n_mine);
    ValImage *mine = cx_calloc((size_t)(n_mine > 0 ? n_mine : 1), sizeof *mine);
    int *idx = cx_malloc(sizeof *idx * (size_t)(n_mine > 0 ? n_mine : 1));
    for (int i = 0; i < n_mine; i++) idx[i] = first + i;
    Dataset shard;
    dataset_select(va, idx, n_mine > 0 ? n_mine : 0, &shard);
    free(idx);
    if (ema) ema_swap(ema, &m->pt);
    cx_status st = sync_buffers(&m->pt, comm, store->world);   // a rank is gone: the message names it
    int k = 0;
    if (!st && n_mine > 0) {
        m->rt->ctx.training = 0;
        LoaderConfig lc = loader_config_default();
        lc.batch_size = batch, lc.size = c->img_size, lc.workers = c->num_workers, lc.seed = c->seed;
        lc.shuffle = 0, lc.augment = 0, lc.drop_last = 0, lc.cache = c->cache;
        Loader *L = NULL;
        st = loader_open(&L, &shard, &lc, 0, 0, 1);
        if (!st) st = score(m, L, va, gt, first, c->img_size, mine, &k);
        if (L) loader_close(L);
        m->rt->ctx.training = 1;
        if (st) {
            *data_failed = 1;
            cx_error_context("validating");
        }
    }
    dataset_free(&shard);
    if (ema) ema_swap(ema, &m->pt);
    if (!st) st = val_reduce(store, mine, k, va->n, vr);
    free(mine);
    return st;
}
