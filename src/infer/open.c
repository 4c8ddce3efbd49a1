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

// The checkpoint's configuration (ck) wins over the options; one that says otherwise
// (given: MODEL_GIVEN_* of the options named) is an error naming both values.
static cx_status config_agrees(const char *path, const CamoXpertConfig *ck, const CamoXpertConfig *op, unsigned given) {
    char diff[512] = "";
    size_t n = 0;
    if ((given & MODEL_GIVEN_BACKBONE) && strcmp(op->backbone, ck->backbone))
        n += (size_t)snprintf(diff + n, sizeof diff - n, "; --backbone %s, the checkpoint's is %s", op->backbone,
                              ck->backbone);
    if ((given & MODEL_GIVEN_SPARSE) && op->sparse != ck->sparse && n < sizeof diff)
        n += (size_t)snprintf(diff + n, sizeof diff - n, "; --use-sparse-moe, the checkpoint is a dense model");
    if ((given & MODEL_GIVEN_EXPERTS) && op->num_experts != ck->num_experts && n < sizeof diff)
        n += (size_t)snprintf(diff + n, sizeof diff - n, "; --num-experts %d, the checkpoint's is %d", op->num_experts,
                              ck->num_experts);
    if ((given & MODEL_GIVEN_TOPK) && op->top_k != ck->top_k && n < sizeof diff)
        n += (size_t)snprintf(diff + n, sizeof diff - n, "; --top-k %d, the checkpoint's is %d", op->top_k, ck->top_k);
    if (!n) return CX_OK;
    char what[160];
    if (ck->sparse)
        snprintf(what, sizeof what, "sparse %s, %d experts, top-%d, %s routing", ck->backbone, ck->num_experts, ck->top_k,
                 ck->routing == MOE_ROUTING_SPATIAL ? "spatial" : "global");
    else snprintf(what, sizeof what, "dense %s", ck->backbone);
    return CX_FAIL(CX_EARG, "%s names its model in its metadata (%s) and the options say otherwise%s. The checkpoint's "
                   "configuration is the one its weights were trained with: leave those options out (they name the model "
                   "of a reference checkpoint that carries none)", path, what, diff);
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
    else if (s->config && !(s->weights && s->config_given)) m->cfg = *s->config;
    else {
        st = weights_read_config(s->weights, &m->cfg, s->img_size ? NULL : &ck_size);   // a given size wins
        if (st == CX_ENOTFOUND && s->config) {   // a reference checkpoint: the options name its model
            m->cfg = *s->config;
            st = CX_OK;
            cx_error_clear();
        } else if (!st && s->config) {
            st = config_agrees(s->weights, &m->cfg, s->config, s->config_given);
        }
    }
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
            st = weights_load_sha256(&m->pt, s->weights, s->hash_weights ? m->weights_sha256 : NULL);
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
