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
    Tensor y = nn_new4(ctx, T_N(x), T_H(x), T_W(x), e->d);
    expert_forward_into(ctx, e, x, &y);
    return y;
}

void expert_forward_into(NNCtx *ctx, Expert *e, const Tensor *x, Tensor *y_out) {
    CX_ASSERT(T_C(x) == e->d, "%s expert of width %d given %lld channels", expert_kind_name(e->kind), e->d,
              (long long)T_C(x));
    int64_t N = T_N(x), H = T_H(x), W = T_W(x);
    CX_ASSERT(tensor_numel(y_out) == N * H * W * e->d, "%s expert: output of %lld elements for (%lld,%lld,%lld,%d)",
              expert_kind_name(e->kind), (long long)tensor_numel(y_out), (long long)N, (long long)H, (long long)W, e->d);
    e->in = *x;
    Tensor outs[4];
    const Tensor *po[4];
    for (int i = 0; i < e->nb; i++) {
        outs[i] = seq_forward(ctx, &e->branch[i], x);
        po[i] = &outs[i];
    }
    e->cat = nn_new4(ctx, N, H, W, e->d);
    concat_forward(&ctx->op, &e->cat, po, e->nb);
    e->c = seq_forward(ctx, &e->fusion, &e->cat);
    Tensor y = tensor_reshape(y_out, 4, (int64_t[]){ N, H, W, e->d });
    if (e->kind == EXPERT_CONTRAST) {
        e->w = seq_forward(ctx, &e->amplify, &e->c);                 // (N,1,1,d)
        Tensor w2 = tensor_reshape(&e->w, 2, (int64_t[]){ N, e->d });
        mul_forward(&ctx->op, &y, &e->c, &w2);                       // c · w
        add_forward(&ctx->op, &y, &y, x);                            // + x
    } else {
        add_forward(&ctx->op, &y, &e->c, x);                         // fusion(cat) + x
    }
}

void expert_backward(NNCtx *ctx, Expert *e, const Tensor *dy, Tensor *dx) {
    ArenaMark mk = arena_mark(ctx->act);   // dc, dcat, branch gradients are temporaries
    if (nn_unit_replay_begin(ctx, &e->unit)) {
        expert_forward(ctx, e, &e->in);
        nn_unit_replay_end(ctx, &e->unit);
    }
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
    nn_unit_done(ctx, &e->unit);
    arena_release(ctx->act, mk);
}

int expert_radius(expert_kind k) {
    static const int r[EXPERT_KINDS] = { 8, 3, 1, 3 };
    return k >= 0 && k < EXPERT_KINDS ? r[k] : 0;
}

// The first layer of a branch after its last spatial (k > 1) conv: layers before
// it run on the windows, the rest on the kept pixels.
static int branch_cut(const Seq *b) {
    int cut = 0;
    for (int i = 0; i < b->n; i++)
        if (b->l[i].kind == LAYER_CONV && b->l[i].k > 1) cut = i + 1;
    return cut;
}

static Tensor rows2(const Tensor *t) {   // (R, ...) as (R, C): the rows the MoE ops see
    return tensor_reshape(t, 2, (int64_t[]){ tensor_numel(t) / T_C(t), T_C(t) });
}

Tensor expert_forward_tiles(NNCtx *ctx, Expert *e, const Tensor *xw, const ExpertTiles *t) {
    CX_ASSERT(T_C(xw) == e->d, "%s expert of width %d given %lld channels", expert_kind_name(e->kind), e->d,
              (long long)T_C(xw));
    const int64_t M = t->M;
    e->in = *xw;
    Tensor xw2 = rows2(xw);
    e->xc = nn_new4(ctx, M, 1, 1, e->d);
    Tensor xc2 = rows2(&e->xc);
    rows_gather(&ctx->op, &xc2, &xw2, &t->centre);
    Tensor outs[4];
    const Tensor *po[4];
    for (int i = 0; i < e->nb; i++) {
        Seq *b = &e->branch[i];
        int cut = branch_cut(b);
        if (cut == 0) {
            outs[i] = seq_forward(ctx, b, &e->xc);
        } else {
            Tensor a = seq_forward_range(ctx, b, 0, cut, xw);
            Tensor ac = nn_new4(ctx, M, 1, 1, T_C(&a)), a2 = rows2(&a), ac2 = rows2(&ac);
            rows_gather(&ctx->op, &ac2, &a2, &t->centre);
            outs[i] = cut < b->n ? seq_forward_range(ctx, b, cut, b->n, &ac) : ac;
        }
        po[i] = &outs[i];
    }
    e->cat = nn_new4(ctx, M, 1, 1, e->d);
    concat_forward(&ctx->op, &e->cat, po, e->nb);
    e->c = seq_forward(ctx, &e->fusion, &e->cat);
    Tensor y = nn_new4(ctx, M, 1, 1, e->d);
    if (e->kind == EXPERT_CONTRAST) {
        // amplify's pool over each image's kept pixels, then its layers on (n_img,1,1,d)
        Tensor pooled = nn_zeros4(ctx, t->n_img, 1, 1, e->d), p2 = rows2(&pooled), c2 = rows2(&e->c);
        rows_gather_sum(&ctx->op, &p2, &c2, &t->img_ptr, &t->img_list, &t->img_w);
        e->amplify.l[0].out = pooled;
        e->w = seq_forward_range(ctx, &e->amplify, 1, e->amplify.n, &pooled);   // (n_img,1,1,d)
        e->wpix = nn_new4(ctx, M, 1, 1, e->d);
        Tensor w2 = rows2(&e->w), wp2 = rows2(&e->wpix);
        rows_gather(&ctx->op, &wp2, &w2, &t->img);
        mul_forward(&ctx->op, &y, &e->c, &e->wpix);                  // c · w
        add_forward(&ctx->op, &y, &y, &e->xc);                       // + x
    } else {
        add_forward(&ctx->op, &y, &e->c, &e->xc);                    // fusion(cat) + x
    }
    return y;
}

void expert_backward_tiles(NNCtx *ctx, Expert *e, const ExpertTiles *t, const Tensor *dy, Tensor *dxw) {
    ArenaMark mk = arena_mark(ctx->act);
    if (nn_unit_replay_begin(ctx, &e->unit)) {
        expert_forward_tiles(ctx, e, &e->in, t);
        nn_unit_replay_end(ctx, &e->unit);
    }
    const int64_t M = t->M;
    Tensor dc = nn_zeros_like(ctx, &e->c);
    if (e->kind == EXPERT_CONTRAST) {
        Tensor dwpix = nn_zeros_like(ctx, &e->wpix);
        mul_backward(&ctx->op, &dc, &dwpix, dy, &e->c, &e->wpix);
        Tensor dw = nn_zeros_like(ctx, &e->w), dw2 = rows2(&dw), dwp2 = rows2(&dwpix);
        rows_gather_sum(&ctx->op, &dw2, &dwp2, &t->img_ptr, &t->img_list, NULL);
        Tensor dpooled = nn_zeros_like(ctx, &e->amplify.l[0].out), dp2 = rows2(&dpooled), dc2 = rows2(&dc);
        seq_backward_range(ctx, &e->amplify, 1, e->amplify.n, &dw, &dpooled);
        rows_scatter_add_backward(&ctx->op, &dc2, NULL, &dp2, NULL, &t->img, &t->img_w);   // dc[i] += w_i·dpooled[img_i]
    } else {
        axpy(&ctx->op, &dc, 1.0, dy);
    }
    Tensor dxc = nn_zeros_like(ctx, &e->xc);
    if (dxw) axpy(&ctx->op, &dxc, 1.0, dy);                          // residual
    Tensor dcat = nn_zeros_like(ctx, &e->cat);
    seq_backward(ctx, &e->fusion, &dc, &dcat);
    Tensor dbr[4];
    Tensor *pd[4];
    for (int i = 0; i < e->nb; i++) {
        dbr[i] = nn_zeros4(ctx, M, 1, 1, T_C(&e->branch[i].l[e->branch[i].n - 1].out));
        pd[i] = &dbr[i];
    }
    concat_backward(&ctx->op, pd, e->nb, &dcat);
    for (int i = 0; i < e->nb; i++) {
        Seq *b = &e->branch[i];
        int cut = branch_cut(b);
        if (cut == 0) {
            seq_backward(ctx, b, &dbr[i], dxw ? &dxc : NULL);
            continue;
        }
        Tensor dac = dbr[i];
        if (cut < b->n) {
            dac = nn_zeros4(ctx, M, 1, 1, T_C(&b->l[cut].in));
            seq_backward_range(ctx, b, cut, b->n, &dbr[i], &dac);
        }
        Tensor da = nn_zeros_like(ctx, &b->l[cut - 1].out), da2 = rows2(&da), dac2 = rows2(&dac);
        rows_gather_sum(&ctx->op, &da2, &dac2, &t->uncrop_ptr, &t->uncrop_list, NULL);   // the crop's backward
        seq_backward_range(ctx, b, 0, cut, &da, dxw);
    }
    if (dxw) {
        Tensor dxw2 = rows2(dxw), dxc2 = rows2(&dxc);
        rows_gather_sum(&ctx->op, &dxw2, &dxc2, &t->uncrop_ptr, &t->uncrop_list, NULL);
    }
    nn_unit_done(ctx, &e->unit);
    arena_release(ctx->act, mk);
}
