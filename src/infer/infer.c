// infer.c — see infer.h.
#include "infer/infer.h"
#include "data/augment.h"
#include "eval/metrics.h"
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
    Runtime *rt = m->rt;
    runtime_step_reset(rt);
    Tensor in = runtime_input(rt, x, rt->dtype);
    const int inf = rt->ctx.inference;
    rt->ctx.inference = 1;   // no backward: activations go as soon as they are read (nn/recompute.h)
    camoxpert_forward(&rt->ctx, m->net, &in, o);
    rt->ctx.inference = inf;
    return runtime_output_f32(rt, &o->maps.pred);
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
    for (int64_t i = 0; i < (int64_t)H * W; i++) prob[i] = 1.0f / (1.0f + expf(-prob[i]));
}

void infer_mask(const float *logits, int S, Image8 *mask) {
    float *prob = cx_malloc(sizeof(float) * (size_t)mask->w * mask->h);
    infer_prob_at(logits, S, S, mask->h, mask->w, prob);
    metrics_export_u8(prob, (int64_t)mask->w * mask->h, mask->px);
    free(prob);
}
