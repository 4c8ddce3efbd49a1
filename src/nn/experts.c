// experts.c — texture, frequency, edge and contrast experts (experts.h).
// reference: the reference implementation's TextureExpert, FrequencyExpert,
// EdgeExpert and ContrastEnhancementModule (reference/camoxpert.md §2).
#include "nn/experts.h"
#include <stdio.h>

const char *expert_kind_name(expert_kind k) {
    static const char *names[] = { "texture", "frequency", "edge", "contrast" };
    return k >= 0 && k < EXPERT_KINDS ? names[k] : "?";
}

void expert_create(Expert *e, ParamTable *pt, const char *prefix, expert_kind kind, int d, param_group g) {
    CX_ASSERT(d >= 4, "expert width %d < 4", d);
    *e = (Expert){ .kind = kind, .d = d };
    char p[256];
    int q = d / 4, split4[4] = { q, q, q, d - 3 * q };
    int t = d / 3, split3[3] = { t, t, d - 2 * t };
    switch (kind) {
    case EXPERT_TEXTURE:
        e->nb = 4;
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof p, "%s.branch%d", prefix, i + 1);
            seq_conv(&e->branch[i], pt, p, d, split4[i], 1, 1, g);
            seq_conv(&e->branch[i], pt, p, split4[i], split4[i], 3, 1 << i, g);   // dilation 1,2,4,8
            seq_bn(&e->branch[i], pt, p, split4[i], g);
            seq_act(&e->branch[i], LAYER_RELU);
        }
        break;
    case EXPERT_FREQUENCY: {
        static const char *names[4] = { "scale1_conv", "scale2_conv", "scale3_conv", "spatial_conv" };
        static const int ks[4] = { 3, 5, 7, 1 };
        e->nb = 4;
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof p, "%s.%s", prefix, names[i]);
            seq_cbr(&e->branch[i], pt, p, d, split4[i], ks[i], 1, g);
        }
        break;
    }
    case EXPERT_EDGE: {
        static const char *names[4] = { "horizontal_edge", "vertical_edge", "laplacian_edge", "spatial_branch" };
        static const int ks[4] = { 3, 3, 3, 1 };
        e->nb = 4;
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof p, "%s.%s", prefix, names[i]);
            seq_cbr(&e->branch[i], pt, p, d, split4[i], ks[i], 1, g);
        }
        break;
    }
    case EXPERT_CONTRAST: {
        static const char *names[3] = { "contrast_3x3", "contrast_5x5", "contrast_7x7" };
        e->nb = 3;
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s.%s", prefix, names[i]);
            seq_cbr(&e->branch[i], pt, p, d, split3[i], 3 + 2 * i, 1, g);
        }
        break;
    }
    default: CX_ASSERT(0, "expert kind %d", kind);
    }
    snprintf(p, sizeof p, "%s.fusion", prefix);
    seq_cbr(&e->fusion, pt, p, d, d, 1, 1, g);
    if (kind == EXPERT_CONTRAST) {
        // amplify = AdaptiveAvgPool2d(1), Conv1(d, d/4), ReLU, Conv1(d/4, d), Sigmoid
        snprintf(p, sizeof p, "%s.amplify", prefix);
        seq_act(&e->amplify, LAYER_POOL);
        seq_conv(&e->amplify, pt, p, d, d / 4, 1, 1, g);
        seq_act(&e->amplify, LAYER_RELU);
        seq_conv(&e->amplify, pt, p, d / 4, d, 1, 1, g);
        seq_act(&e->amplify, LAYER_SIGMOID);
    }
}

void expert_init(const Expert *e, ParamTable *pt, Rng *rng) {
    for (int i = 0; i < e->nb; i++) seq_init(&e->branch[i], pt, rng);
    seq_init(&e->fusion, pt, rng);
    seq_init(&e->amplify, pt, rng);
}

Tensor expert_forward(NNCtx *ctx, Expert *e, const Tensor *x) {
    CX_ASSERT(T_C(x) == e->d, "%s expert of width %d given %lld channels", expert_kind_name(e->kind), e->d,
              (long long)T_C(x));
    int64_t N = T_N(x), H = T_H(x), W = T_W(x);
    Tensor outs[4];
    const Tensor *po[4];
    for (int i = 0; i < e->nb; i++) {
        outs[i] = seq_forward(ctx, &e->branch[i], x);
        po[i] = &outs[i];
    }
    e->cat = nn_new4(ctx, N, H, W, e->d);
    concat_forward(&ctx->op, &e->cat, po, e->nb);
    e->c = seq_forward(ctx, &e->fusion, &e->cat);
    Tensor y = nn_new4(ctx, N, H, W, e->d);
    if (e->kind == EXPERT_CONTRAST) {
        e->w = seq_forward(ctx, &e->amplify, &e->c);                 // (N,1,1,d)
        Tensor w2 = tensor_reshape(&e->w, 2, (int64_t[]){ N, e->d });
        mul_forward(&ctx->op, &y, &e->c, &w2);                       // c · w
        add_forward(&ctx->op, &y, &y, x);                            // + x
    } else {
        add_forward(&ctx->op, &y, &e->c, x);                         // fusion(cat) + x
    }
    return y;
}

void expert_backward(NNCtx *ctx, Expert *e, const Tensor *dy, Tensor *dx) {
    ArenaMark mk = arena_mark(ctx->act);   // dc, dcat, branch gradients are temporaries
    Tensor dc = nn_zeros_like(ctx, &e->c);
    if (e->kind == EXPERT_CONTRAST) {
        int64_t N = T_N(&e->c);
        Tensor dw = nn_zeros_like(ctx, &e->w);
        Tensor w2 = tensor_reshape(&e->w, 2, (int64_t[]){ N, e->d });
        Tensor dw2 = tensor_reshape(&dw, 2, (int64_t[]){ N, e->d });
        mul_backward(&ctx->op, &dc, &dw2, dy, &e->c, &w2);
        seq_backward(ctx, &e->amplify, &dw, &dc);    // amplify reads c: its gradient joins dc
    } else {
        axpy(&ctx->op, &dc, 1.0, dy);
    }
    if (dx) axpy(&ctx->op, dx, 1.0, dy);             // residual
    Tensor dcat = nn_zeros_like(ctx, &e->cat);
    seq_backward(ctx, &e->fusion, &dc, &dcat);
    Tensor dbr[4];
    Tensor *pd[4];
    for (int i = 0; i < e->nb; i++) {
        dbr[i] = nn_zeros_like(ctx, &e->branch[i].l[e->branch[i].n - 1].out);
        pd[i] = &dbr[i];
    }
    concat_backward(&ctx->op, pd, e->nb, &dcat);
    for (int i = 0; i < e->nb; i++) seq_backward(ctx, &e->branch[i], &dbr[i], dx);
    arena_release(ctx->act, mk);
}
