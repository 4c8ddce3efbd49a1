// camoxpert.c — the whole CamoXpert model, dense and sparse (camoxpert.h).
// reference: CamoXpertCOD and CamoXpertSparseMoE (reference/camoxpert.md §1–5).
#include "nn/camoxpert.h"
#include <stdio.h>
#include <string.h>

cx_status camoxpert_config(CamoXpertConfig *cfg, const char *backbone, int sparse, int num_experts, int top_k) {
    memset(cfg, 0, sizeof *cfg);
    if (backbone && *backbone) {
        EdgeNeXtConfig ec;
        CX_TRY(edgenext_config(backbone, &ec));
        snprintf(cfg->backbone, sizeof cfg->backbone, "%s", backbone);
        memcpy(cfg->dims, ec.dims, sizeof cfg->dims);
    }
    if (sparse && (num_experts < 1 || num_experts > MOE_MAX_EXPERTS))
        return CX_FAIL(CX_EARG, "--num-experts %d: must be between 1 and %d", num_experts, MOE_MAX_EXPERTS);
    if (sparse && (top_k < 1 || top_k > num_experts))
        return CX_FAIL(CX_EARG, "--top-k %d: must be between 1 and --num-experts (%d)", top_k, num_experts);
    cfg->sparse = sparse;
    cfg->num_experts = num_experts;
    cfg->top_k = top_k;
    cfg->balance = MOE_BALANCE_MSE;
    cfg->lb_coef = 0.01;
    cfg->routing = MOE_ROUTING_GLOBAL;
    cfg->route_grid = 4;
    return CX_OK;
}

cx_status camoxpert_config_routing(CamoXpertConfig *cfg, const char *routing, int route_grid) {
    moe_routing r;
    CX_TRY(moe_routing_parse(routing, &r));
    if (r == MOE_ROUTING_SPATIAL && !cfg->sparse)
        return CX_FAIL(CX_EARG, "--routing spatial routes the sparse model's tiles: add --use-sparse-moe");
    if (route_grid < 1 || route_grid > MOE_MAX_GRID)
        return CX_FAIL(CX_EARG, "--route-grid %d: must be between 1 and %d", route_grid, MOE_MAX_GRID);
    cfg->routing = r;
    cfg->route_grid = route_grid;
    return CX_OK;
}

CamoXpert *camoxpert_create(const CamoXpertConfig *cfg, ParamTable *pt) {
    CamoXpert *m = cx_calloc(1, sizeof *m);
    m->cfg = *cfg;
    if (cfg->backbone[0]) {
        EdgeNeXtConfig ec;
        CX_ASSERT(edgenext_config(cfg->backbone, &ec) == CX_OK, "backbone %s", cfg->backbone);
        m->backbone = edgenext_create(&ec, pt, "backbone.");
    }
    char p[128];
    m->p_experts = pt->n;
    if (!cfg->sparse) {
        // state_dict order: all texture experts, then frequency, edge, contrast
        static const char *lists[4] = { "texture_experts", "frequency_experts", "edge_experts", "contrast_modules" };
        for (int k = 0; k < EXPERT_KINDS; k++)
            for (int s = 0; s < 4; s++) {
                snprintf(p, sizeof p, "%s.%d", lists[k], s);
                expert_create(&m->dense[k][s], pt, p, (expert_kind)k, cfg->dims[s], PG_REST);
            }
    } else {
        m->moe = cx_calloc(4, sizeof *m->moe);
        for (int s = 0; s < 4; s++) {
            snprintf(p, sizeof p, "moe_layers.%d", s);
            moe_create(&m->moe[s], pt, p, cfg->dims[s], cfg->num_experts, cfg->top_k, cfg->balance, cfg->lb_coef);
            if (cfg->routing == MOE_ROUTING_SPATIAL) moe_set_spatial(&m->moe[s], cfg->route_grid);
        }
    }
    m->p_head = pt->n;
    cod_head_create(&m->head, pt, cfg->dims);
    return m;
}

void camoxpert_free(CamoXpert *m) {
    if (!m) return;
    if (m->backbone) edgenext_free(m->backbone);
    free(m->moe);
    free(m);
}

void camoxpert_init(CamoXpert *m, ParamTable *pt, Rng *rng) {
    if (m->backbone) edgenext_init_weights(m->backbone, pt, rng);
    for (int s = 0; s < 4; s++) {
        if (m->cfg.sparse) moe_init(&m->moe[s], pt, rng);
        else
            for (int k = 0; k < EXPERT_KINDS; k++) expert_init(&m->dense[k][s], pt, rng);
    }
    cod_head_init(&m->head, pt, rng);
}

void camoxpert_forward_features(NNCtx *ctx, CamoXpert *m, const Tensor feats[4], int64_t H, int64_t W,
                                CamoXpertOutputs *out) {
    memset(out, 0, sizeof *out);
    m->H = H, m->W = W;
    // Each scale's routing reads that scale's features only: all four are routed first and
    // read on the host in one download (moe.h), then the experts run.
    const int route_first = m->cfg.sparse && !moe_plan_legacy();
    if (route_first) moe_route_forward_n(ctx, m->moe, feats, 4);
    for (int s = 0; s < 4; s++) {
        out->feats[s] = feats[s];
        if (m->cfg.sparse) {
            out->enhanced[s] = route_first ? moe_dispatch_forward(ctx, &m->moe[s], &feats[s])
                                           : moe_forward(ctx, &m->moe[s], &feats[s]);
            out->route[s] = m->moe[s].route;
            out->balance_loss += m->moe[s].route.lb_loss;
        } else {
            Tensor x = feats[s];
            for (int k = 0; k < EXPERT_KINDS; k++) {   // each expert a unit (nn/recompute.h)
                Expert *e = &m->dense[k][s];
                nn_unit_begin(ctx, &e->unit);
                Tensor y = expert_forward(ctx, e, &x);
                nn_unit_end(ctx, &e->unit, (Tensor *[]){ &y }, 1);
                if (k) nn_drop(ctx, &x);   // inference: the previous expert's output, read for the last time
                x = y;
            }
            out->enhanced[s] = x;
        }
    }
    out->n_route = m->cfg.sparse ? 4 : 0;
    cod_head_forward(ctx, &m->head, out->enhanced, H, W, &out->maps);
}

void camoxpert_forward(NNCtx *ctx, CamoXpert *m, const Tensor *image, CamoXpertOutputs *out) {
    CX_ASSERT(m->backbone, "camoxpert_forward on a model without a backbone (use camoxpert_forward_features)");
    Tensor feats[4];
    edgenext_forward(ctx, m->backbone, feats, image);
    camoxpert_forward_features(ctx, m, feats, T_H(image), T_W(image), out);
}

void camoxpert_backward_features(NNCtx *ctx, CamoXpert *m, const CodOutputs *dout, double dbalance,
                                 Tensor dfeats[4]) {
    Tensor de[4];
    for (int s = 0; s < 4; s++) {
        const Tensor *x = m->cfg.sparse ? &m->moe[s].x : &m->dense[0][s].branch[0].in;
        de[s] = nn_zeros_like(ctx, x);
    }
    ArenaMark mk = arena_mark(ctx->act);   // the head's gradients are temporaries once de is known
    cod_head_backward(ctx, &m->head, dout, de);
    arena_release(ctx->act, mk);
    nn_grad_ready(ctx, m->p_head);
    for (int s = 0; s < 4; s++) {
        if (m->cfg.sparse) {
            moe_backward(ctx, &m->moe[s], &de[s], dbalance, dfeats ? &dfeats[s] : NULL);
        } else {
            Tensor g = de[s];
            for (int k = EXPERT_KINDS - 1; k >= 0; k--) {
                Tensor gi = (k == 0 && dfeats) ? dfeats[s] : nn_zeros_like(ctx, &g);
                expert_backward(ctx, &m->dense[k][s], &g, k == 0 && !dfeats ? NULL : &gi);
                g = gi;
            }
        }
    }
    nn_grad_ready(ctx, m->p_experts);   // the experts are in kind-major order: all scales first
}

void camoxpert_backward(NNCtx *ctx, CamoXpert *m, const CodOutputs *dout, double dbalance, Tensor *dimage) {
    Tensor df[4];
    for (int s = 0; s < 4; s++) {
        const Tensor *x = m->cfg.sparse ? &m->moe[s].x : &m->dense[0][s].branch[0].in;
        df[s] = nn_zeros_like(ctx, x);
    }
    camoxpert_backward_features(ctx, m, dout, dbalance, df);
    if (m->backbone) edgenext_backward(ctx, m->backbone, df, dimage);
}

void camoxpert_table_key(const char *key, char *out, size_t n) {
    if (!strncmp(key, "backbone.", 9)) {
        char tail[512];
        edgenext_key_to_feature_name(key + 9, tail, sizeof tail);
        snprintf(out, n, "backbone.%s", tail);
    } else {
        snprintf(out, n, "%s", key);
    }
}

cx_status camoxpert_load(ParamTable *pt, const StFile *f, const char *file_prefix, const char *buffer_prefix) {
    static const char *const ignore[] = { "backbone.head.", NULL };
    ParamLoadOpts o = { .file_prefix = file_prefix, .buffer_prefix = buffer_prefix, .table_prefix = "",
                        .ignore = ignore, .rename = camoxpert_table_key };
    return params_load(pt, f, &o);
}

void camoxpert_balance_update(CamoXpert *m, double rate) {
    for (int s = 0; s < 4 && m->cfg.sparse; s++) moe_balance_update(&m->moe[s], rate);
}
