// infer.c — see infer.h.
#include "infer/infer.h"
#include "data/augment.h"
#include "eval/metrics.h"
#include "core/pixels.h"
#include <math.h>

void infer_image_input(const Image8 *im, int S, float *dst) {
    Image8 r = { 0 };
    image_resize_bilinear(im, S, S, &r);
    AugParams p;
    augment_none(&p);
    augment_apply(dst, NULL, r.px, NULL, S, &p);
    image_free(&r);
}

Tensor infer_forward(Model *m, const Tensor *x, CamoXpertOutputs *o) {
    runtime_step_reset(m->rt);
    Tensor in = runtime_input(m->rt, x, m->rt->dtype);
    Tensor pred = infer_forward_device(m, &in, o);
    return runtime_output_f32(m->rt, &pred);
}

Tensor infer_forward_device(Model *m, const Tensor *x, CamoXpertOutputs *o) {
    NNCtx *ctx = &m->rt->ctx;
    const int inf = ctx->inference;
    ctx->inference = 1;   // no backward: activations go as soon as they are read (nn/recompute.h)
    camoxpert_forward(ctx, m->net, x, o);
    ctx->inference = inf;
    return o->maps.pred;
}

int infer_nonfinite_images(Model *m, const CamoXpertOutputs *o, int N, char (*what)[200]) {
    const int sparse = m->cfg.sparse;
    const CodOutputs *c = &o->maps;
    struct { const Tensor *t; char name[96]; } chk[16];
    int nc = 0;
    for (int s = 0; s < 4; s++) {   // in the order the forward makes them
        chk[nc].t = &o->feats[s];
        snprintf(chk[nc++].name, 96, "backbone.stages_%d (the backbone's features at scale %d)", s, s);
    }
    for (int s = 0; s < 4; s++) {
        chk[nc].t = &o->enhanced[s];
        if (sparse) snprintf(chk[nc++].name, 96, "moe_layers.%d (the experts of scale %d)", s, s);
        else snprintf(chk[nc++].name, 96, "the experts of scale %d (texture/frequency/edge/contrast_experts.%d)", s, s);
    }
    const struct { const Tensor *t; const char *name; } head[] = {
        { &c->search_map, "search_module (the search map)" },
        { &c->fg_map, "decoder_blocks and reverse_attention (the foreground map)" },
        { &c->initial_pred, "boundary_uncertainty.mean_head (the initial prediction)" },
        { &c->uncertainty, "boundary_uncertainty.uncertainty_head (the uncertainty)" },
        { &c->refine[0], "iterative_refinement, step 1" },
        { &c->refine[1], "iterative_refinement, step 2" },
        { &c->pred, "the final prediction" },
    };
    for (size_t k = 0; k < sizeof head / sizeof *head; k++) chk[nc].t = head[k].t, snprintf(chk[nc++].name, 96, "%s", head[k].name);
    // Each output's mean per image and channel (a NaN or an infinity anywhere makes its
    // mean non-finite; ReLUs downstream would hide it): one small copy per output.
    NNCtx *ctx = &m->rt->ctx;
    int bad = 0;
    for (int n = 0; n < N; n++) what[n][0] = 0;
    for (int k = 0; k < nc && bad < N; k++) {
        const Tensor *t = chk[k].t;
        if (!t->data || t->ndim != 4 || T_N(t) != N) continue;
        Tensor y = nn_new(ctx, nn_stat_dtype(ctx), 2, (int64_t[]){ N, T_C(t) });
        avgpool_global_forward(&ctx->op, &y, t);
        Tensor h = runtime_output_f32(m->rt, &y);
        const float *p = tensor_f32(&h);
        for (int n = 0; n < N; n++) {
            if (what[n][0]) continue;
            for (int64_t ch = 0; ch < T_C(t); ch++)
                if (!isfinite(p[n * T_C(t) + ch])) {
                    snprintf(what[n], 200, "%s", chk[k].name);
                    bad++;
                    break;
                }
        }
    }
    return bad;
}

Tensor infer_forward_pred(void *net, NNCtx *ctx, const Tensor *x) {
    CamoXpertOutputs o;
    const int inf = ctx->inference;
    ctx->inference = 1;
    camoxpert_forward(ctx, net, x, &o);
    ctx->inference = inf;
    return o.maps.pred;
}

void infer_prob_at(const float *logits, int h, int w, int H, int W, float *prob) {
    image_resize_bilinear_f32(prob, H, W, logits, h, w, 1);
    for (int64_t i = 0; i < (int64_t)H * W; i++) prob[i] = px_sigmoid(prob[i]);
}

void infer_mask(const float *logits, int S, Image8 *mask) {
    float *prob = cx_malloc(sizeof(float) * (size_t)mask->w * mask->h);
    infer_prob_at(logits, S, S, mask->h, mask->w, prob);
    metrics_export_u8(prob, (int64_t)mask->w * mask->h, mask->px);
    free(prob);
}
