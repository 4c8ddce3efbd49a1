// open.c — see open.h.
#include "infer/open.h"
#include "nn/weights.h"
#include <string.h>

// A timm EdgeNeXt checkpoint (hub `stem.0` or feature-extractor `stem_0` names, with
// or without a `backbone.` prefix) into the table's backbone entries.
static cx_status load_backbone(ParamTable *pt, const char *path, const char *variant) {
    StFile f;
    CX_TRY(st_open(&f, path));
    const char *fp = (st_find(&f, "backbone.stem_0.weight") || st_find(&f, "backbone.stem.0.weight")) ? "backbone." : "";
    cx_status st = edgenext_load(pt, &f, fp, "backbone.");
    st_close(&f);
    if (st) cx_error_context("--backbone-weights %s (expects %s)", path, variant);
    return st;
}

cx_status model_open(Model *m, const ModelSpec *s) {
    memset(m, 0, sizeof *m);
    CX_ASSERT(s->config || s->weights, "model_open: neither a config nor a checkpoint");
    // 1. where it runs
    if (s->rt) {
        m->rt = s->rt;
    } else if (s->reference) {
        runtime_init_reference(&m->own, DT_F64, s->training);
        m->rt = &m->own;
    } else {
        CX_TRY(runtime_init(&m->own, s->device ? s->device : "cpu", s->precision ? s->precision : "fp32", 1, s->training));
        m->rt = &m->own;
    }
    // 2. the config and the input side
    cx_status st = CX_OK;
    int ck_size = 0;
    if (s->weights && !io_path_exists(s->weights))
        st = CX_FAIL(CX_ENOTFOUND, "%s: no such checkpoint (training writes CHECKPOINT_DIR/best.safetensors and "
                     "last.safetensors)", s->weights);
    else if (s->config) m->cfg = *s->config;
    else st = weights_read_config(s->weights, &m->cfg, s->img_size ? NULL : &ck_size);   // a given size wins
    if (st) {
        model_close(m);
        return st;
    }
    m->img_size = s->img_size ? s->img_size : ck_size ? ck_size : 352;
    // 3. the layout, and the caller's check before anything is allocated
    params_init(&m->pt);
    m->net = camoxpert_create(&m->cfg, &m->pt);
    if (s->check) st = s->check(s->check_arg, m);
    // 4. the values
    if (!st) {
        params_alloc(&m->pt, s->reference ? DT_F64 : DT_F32);
        if (s->weights) {
            st = weights_load(&m->pt, s->weights);
        } else {
            Rng rng = rng_init(s->init_seed);
            camoxpert_init(m->net, &m->pt, &rng);
            if (s->backbone_weights) st = load_backbone(&m->pt, s->backbone_weights, m->cfg.backbone);
        }
    }
    if (st) {
        model_close(m);
        return st;
    }
    // 5. onto the device
    if (s->inference) m->rt->ctx.inference = 1;
    runtime_place(m->rt, &m->pt);
    m->rt->ctx.pt = &m->pt;
    return CX_OK;
}

void model_close(Model *m) {
    if (m->net) camoxpert_free(m->net);
    if (m->pt.p) params_free(&m->pt);
    if (m->rt == &m->own) runtime_free(&m->own);
    memset(m, 0, sizeof *m);
}
