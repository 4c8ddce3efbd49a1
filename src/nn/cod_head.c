// cod_head.c — search module, decoder, reverse attention, boundary uncertainty,
// iterative refinement and deep heads (cod_head.h).
// reference: the reference's SearchIdentificationModule, DecoderBlock,
// ReverseAttention, BoundaryUncertaintyModule, IterativeRefinement and
// deep_heads (reference/camoxpert.md §5).
#include "nn/cod_head.h"
#include <math.h>
#include <stdio.h>


void cod_head_create(CodHead *h, ParamTable *pt, const int dims[4]) {
    *h = (CodHead){ 0 };
    for (int s = 0; s < 4; s++) h->dims[s] = dims[s];
    int d3 = dims[3];
    seq_cbr(&h->search_conv, pt, "search_module.search_conv", d3, d3 / 2, 3, 1, PG_REST);
    seq_cbr(&h->search_conv, pt, "search_module.search_conv", d3 / 2, d3 / 2, 3, 1, PG_REST);
    seq_conv(&h->search_conv, pt, "search_module.search_conv", d3 / 2, 1, 1, 1, PG_REST);
    seq_act(&h->search_conv, LAYER_SIGMOID);
    seq_cbr(&h->identify_conv, pt, "search_module.identify_conv", d3, d3, 3, 1, PG_REST);
    seq_cbr(&h->identify_conv, pt, "search_module.identify_conv", d3, d3, 1, 1, PG_REST);
    // decoder: d3 -> d2; 2·d2 -> d1; 2·d1 -> d0; 2·d0 -> 64
    const int cin[4] = { d3, 2 * dims[2], 2 * dims[1], 2 * dims[0] };
    const int cout[4] = { dims[2], dims[1], dims[0], 64 };
    char p[128];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "decoder_blocks.%d.conv1", i);
        seq_cbr(&h->dec_conv1[i], pt, p, cin[i], cout[i], 3, 1, PG_REST);
        snprintf(p, sizeof p, "decoder_blocks.%d.conv2", i);
        seq_cbr(&h->dec_conv2[i], pt, p, cout[i], cout[i], 3, 1, PG_REST);
    }
    seq_cbr(&h->ra_bg, pt, "reverse_attention.background_pred", 64, 32, 3, 1, PG_REST);
    seq_cbr(&h->ra_bg, pt, "reverse_attention.background_pred", 32, 16, 3, 1, PG_REST);
    seq_conv(&h->ra_bg, pt, "reverse_attention.background_pred", 16, 1, 1, 1, PG_REST);
    seq_act(&h->ra_bg, LAYER_SIGMOID);
    seq_cbr(&h->ra_refine, pt, "reverse_attention.refine", 65, 64, 3, 1, PG_REST);
    seq_cbr(&h->ra_refine, pt, "reverse_attention.refine", 64, 64, 3, 1, PG_REST);
    seq_cbr(&h->bu_shared, pt, "boundary_uncertainty.shared", 64, 64, 3, 1, PG_REST);
    seq_cbr(&h->bu_mean, pt, "boundary_uncertainty.mean_head", 64, 32, 3, 1, PG_REST);
    seq_conv(&h->bu_mean, pt, "boundary_uncertainty.mean_head", 32, 1, 1, 1, PG_REST);
    seq_cbr(&h->bu_unc, pt, "boundary_uncertainty.uncertainty_head", 64, 32, 3, 1, PG_REST);
    seq_conv(&h->bu_unc, pt, "boundary_uncertainty.uncertainty_head", 32, 1, 1, 1, PG_REST);   // softplus: forward
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "iterative_refinement.refinement_blocks.%d", i);
        seq_cbr(&h->ir_block[i], pt, p, 66, 64, 3, 1, PG_REST);
        seq_cbr(&h->ir_block[i], pt, p, 64, 64, 3, 1, PG_REST);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "iterative_refinement.pred_heads.%d", i);
        seq_conv_named(&h->ir_head[i], pt, p, 64, 1, 1, PG_REST);
    }
    for (int j = 0; j < 3; j++) {
        snprintf(p, sizeof p, "deep_heads.%d", j);
        seq_conv_named(&h->deep[j], pt, p, dims[2 - j], 1, 1, PG_REST);
    }
}

void cod_head_init(const CodHead *h, ParamTable *pt, Rng *rng) {
    const Seq *all[] = { &h->search_conv, &h->identify_conv, &h->dec_conv1[0], &h->dec_conv2[0], &h->dec_conv1[1],
                         &h->dec_conv2[1], &h->dec_conv1[2], &h->dec_conv2[2], &h->dec_conv1[3], &h->dec_conv2[3],
                         &h->ra_bg, &h->ra_refine, &h->bu_shared, &h->bu_mean, &h->bu_unc, &h->ir_block[0],
                         &h->ir_block[1], &h->ir_head[0], &h->ir_head[1], &h->deep[0], &h->deep[1], &h->deep[2] };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) seq_init(all[i], pt, rng);
}

static Tensor clamped(NNCtx *ctx, const Tensor *x, double lo, double hi) {
    Tensor y = tensor_like(ctx->act, x);
    clamp_forward(&ctx->op, &y, x, lo, hi);
    return y;
}

static Tensor concat2(NNCtx *ctx, const Tensor *a, const Tensor *b) {
    Tensor y = nn_new4(ctx, T_N(a), T_H(a), T_W(a), T_C(a) + T_C(b));
    const Tensor *xs[2] = { a, b };
    concat_forward(&ctx->op, &y, xs, 2);
    return y;
}

static Tensor resized(NNCtx *ctx, const Tensor *x, int64_t H, int64_t W) {
    Tensor y = nn_new4(ctx, T_N(x), H, W, T_C(x));
    resize_bilinear_forward(&ctx->op, &y, x, 0, 0);
    return y;
}

// ---- the batch maximum over the ranks (synchronised BatchNorm's companion) ---------
// Forward: each rank's maximum to all (a vector with one slot per rank, summed), the
// largest taken, and this rank's map rescaled to it. Backward: maxnorm_backward gave
// the rank's own share of the maximum's gradient (its Σ dy·x over its elements equal to
// the maximum); that share is replaced by the global one, −Σ_global dy·x / den² spread
// over the maxima of every rank.
static void sync_batch_max(NNCtx *ctx, CodHead *h) {
    double ml, *v = cx_calloc((size_t)ctx->sync_world, sizeof *v);
    nn_stat_load(ctx, &h->u_max, &ml);
    v[ctx->sync_rank] = ml;
    if (ctx->sync_sum(ctx->sync_arg, v, ctx->sync_world)) {
        ctx->sync_failed = 1;
        free(v);
        return;
    }
    double mg = v[0];
    for (int r = 1; r < ctx->sync_world; r++) mg = fmax(mg, v[r]);
    free(v);
    h->max_synced = 1;
    if (mg == ml) return;
    scale_inplace(&ctx->op, &h->u, (ml + UNC_NORM_EPS) / (mg + UNC_NORM_EPS));
    nn_stat_store(ctx, &h->u_max, &mg);
}

static void sync_batch_max_backward(NNCtx *ctx, CodHead *h, Tensor *duc, const Tensor *du) {
    OpCtx *op = &ctx->op;
    const Tensor *x = &h->out.uncertainty;
    const int64_t n = tensor_numel(x);
    double M;
    nn_stat_load(ctx, &h->u_max, &M);
    Tensor ones = tensor_like(ctx->act, x), mask = nn_zeros_like(ctx, x), prod = tensor_like(ctx->act, x);
    fill(op, &ones, 1.0);
    clamp_backward(op, &mask, &ones, x, M, M);   // 1 where x == M
    mul_forward(op, &prod, du, x);
    Tensor s = nn_zeros(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ 1 }), c = nn_zeros(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ 1 });
    Tensor prod2 = tensor_reshape(&prod, 2, (int64_t[]){ n, 1 }), mask2 = tensor_reshape(&mask, 2, (int64_t[]){ n, 1 });
    rows_sum(op, &s, &prod2);
    rows_sum(op, &c, &mask2);
    double v[2];
    nn_stat_load(ctx, &s, v);
    nn_stat_load(ctx, &c, v + 1);
    const double sl = v[0], cl = v[1], den = M + UNC_NORM_EPS;
    if (ctx->sync_sum(ctx->sync_arg, v, 2)) {
        ctx->sync_failed = 1;
        return;
    }
    const double k = (v[1] > 0 ? -v[0] / (den * den) / v[1] : 0) - (cl > 0 ? -sl / (den * den) / cl : 0);
    axpy(op, duc, k, &mask);
}

// ---- the stages (each a unit: nn/recompute.h) ----------------------------------------

// Decoder block i on cur (x4, or block i−1's output) and the skip e_{3−i}: upsample ×2
// (after the concatenation), ConvBNReLU ×2.
static Tensor dec_block_forward(NNCtx *ctx, CodHead *h, int i, const Tensor *cur, const Tensor *skip) {
    h->dec_in[i] = i ? concat2(ctx, cur, skip) : *cur;
    Tensor up = nn_new4(ctx, T_N(cur), 2 * T_H(&h->dec_in[i]), 2 * T_W(&h->dec_in[i]), T_C(&h->dec_in[i]));
    resize_bilinear_forward(&ctx->op, &up, &h->dec_in[i], 2.0, 2.0);
    if (i) nn_drop(ctx, &h->dec_in[i]);
    Tensor t = seq_forward_consume(ctx, &h->dec_conv1[i], &up);
    return seq_forward_consume(ctx, &h->dec_conv2[i], &t);
}

// Reverse attention on x0 = dec_out[3]: bg, fg = 1 − bg, x0r = refine(x0 ‖ bg) · fg.
static void ra_forward(NNCtx *ctx, CodHead *h) {
    OpCtx *op = &ctx->op;
    Tensor x0 = h->dec_out[3];
    h->bg = seq_forward(ctx, &h->ra_bg, &x0);
    h->fg = tensor_like(ctx->act, &h->bg);
    fill(op, &h->fg, 1.0);
    axpy(op, &h->fg, -1.0, &h->bg);
    Tensor catr = concat2(ctx, &x0, &h->bg);
    h->ra_r = seq_forward_consume(ctx, &h->ra_refine, &catr);
    h->x0r = tensor_like(ctx->act, &h->ra_r);
    mul_forward(op, &h->x0r, &h->ra_r, &h->fg);
}

// Boundary uncertainty on x0u: the shared ConvBNReLU, the mean and uncertainty heads, their clamps.
static void bu_forward(NNCtx *ctx, CodHead *h, CodOutputs *out) {
    Tensor sh = seq_forward(ctx, &h->bu_shared, &h->x0u);
    h->ip_raw = seq_forward(ctx, &h->bu_mean, &sh);
    h->u_conv = seq_forward_consume(ctx, &h->bu_unc, &sh);
    // The uncertainty map and everything made of it (u, 1 + u) are float32 beside bf16
    // activations, as under PyTorch's autocast (softplus is on its float32 list and
    // what follows it is promoted): 1 + u scales every channel of the refinement
    // blocks' output, and a bf16 1 + u (steps of 2^-7) added a rounding that the pred
    // heads' cancellation amplified past bf16's tolerance (issue 26).
    h->u_raw = nn_new(ctx, nn_stat_dtype(ctx), 4, h->u_conv.shape);
    softplus_forward(&ctx->op, &h->u_raw, &h->u_conv);
    out->initial_pred = clamped(ctx, &h->ip_raw, -LOGIT_CLAMP, LOGIT_CLAMP);
    out->uncertainty = clamped(ctx, &h->u_raw, UNC_LO, UNC_HI);
}

// Refinement iteration i on the previous prediction: block(x0u ‖ pred ‖ u) · (1 + u) -> head.
static Tensor ir_forward(NNCtx *ctx, CodHead *h, int i, const Tensor *pred) {
    const Tensor *x0u = &h->x0u;
    Tensor c = nn_new4(ctx, T_N(x0u), T_H(x0u), T_W(x0u), 66), pred_act = *pred;
    if (pred->dtype != ctx->dtype) {   // the blocks' input channel in the activation dtype
        pred_act = nn_new(ctx, ctx->dtype, 4, pred->shape);
        copy(&ctx->op, &pred_act, pred);
    }
    const Tensor *xs[3] = { x0u, &pred_act, &h->u_act };
    concat_forward(&ctx->op, &c, xs, 3);
    if (pred_act.data != pred->data) nn_drop(ctx, &pred_act);
    h->ir_b[i] = seq_forward_consume(ctx, &h->ir_block[i], &c);
    // h = b·(1 + u) and the pred head (1×1, 64 -> 1) on it in float32 beside bf16 activations:
    // the head's 64 terms nearly cancel (pred is ~10x smaller than they are), so a bf16
    // rounding of h, or of the head's product before its bias, cost more than all the
    // rounding before it (issue 26); one channel out, so the float32 GEMM is cheap
    Tensor hb = nn_new(ctx, nn_stat_dtype(ctx), 4, h->ir_b[i].shape);
    mul_forward(&ctx->op, &hb, &h->ir_b[i], &h->onepu);
    nn_drop(ctx, &h->ir_b[i]);
    return seq_forward_consume(ctx, &h->ir_head[i], &hb);
}

void cod_head_forward(NNCtx *ctx, CodHead *h, const Tensor e[4], int64_t H, int64_t W, CodOutputs *out) {
    OpCtx *op = &ctx->op;
    for (int s = 0; s < 4; s++) {
        CX_ASSERT(T_C(&e[s]) == h->dims[s], "feature %d has %lld channels, the head expects %d", s,
                  (long long)T_C(&e[s]), h->dims[s]);
        h->e[s] = e[s];
    }
    // 1. search and identification on e_3
    h->sm_small = seq_forward(ctx, &h->search_conv, &e[3]);
    h->id = seq_forward(ctx, &h->identify_conv, &e[3]);
    h->x4 = tensor_like(ctx->act, &h->id);
    mul_forward(op, &h->x4, &h->id, &h->sm_small);
    nn_drop(ctx, &h->id);
    // 2. decoder: upsample ×2, ConvBNReLU ×2; skips after the decoder path
    Tensor cur = h->x4;
    for (int i = 0; i < 4; i++) {
        nn_unit_begin(ctx, &h->u_dec[i]);
        h->dec_out[i] = dec_block_forward(ctx, h, i, &cur, &e[3 - i]);
        nn_unit_end(ctx, &h->u_dec[i], (Tensor *[]){ &h->dec_out[i] }, 1);
        nn_drop(ctx, &cur);
        cur = h->dec_out[i];
    }
    // 3. reverse attention. In inference x0u, its result at the input resolution (4.), is placed
    // first: below the unit's internals, the full-resolution stages after it find the space above
    // it whole (in training the unit's internals stay until the next unit begins: after it).
    const int64_t x0u_c = seq_out_channels(&h->ra_refine, 65);
    if (ctx->inference) h->x0u = nn_new4(ctx, T_N(&e[0]), H, W, x0u_c);
    nn_unit_begin(ctx, &h->u_ra);
    ra_forward(ctx, h);
    nn_unit_end(ctx, &h->u_ra, (Tensor *[]){ &h->x0r, &h->fg }, 2);
    nn_drop(ctx, &h->dec_out[3]);
    // 4. to input resolution
    if (!ctx->inference) h->x0u = nn_new4(ctx, T_N(&h->x0r), H, W, x0u_c);
    resize_bilinear_forward(op, &h->x0u, &h->x0r, 0, 0);
    nn_drop(ctx, &h->x0r);
    out->fg_map = resized(ctx, &h->fg, H, W);
    out->search_map = resized(ctx, &h->sm_small, H, W);
    // 5. boundary uncertainty
    nn_unit_begin(ctx, &h->u_bu);
    bu_forward(ctx, h, out);
    nn_unit_end(ctx, &h->u_bu, (Tensor *[]){ &h->ip_raw, &h->u_conv, &h->u_raw, &out->initial_pred, &out->uncertainty }, 5);
    // 6. iterative refinement with u normalised by the batch maximum (on the device)
    h->u = tensor_like(ctx->act, &out->uncertainty);
    h->u_max = nn_new(ctx, nn_stat_dtype(ctx), 1, (int64_t[]){ 1 });
    maxnorm_forward(op, &h->u, &h->u_max, &out->uncertainty, UNC_NORM_EPS);
    h->max_synced = 0;
    if (ctx->training && ctx->sync_sum && !ctx->sync_failed) sync_batch_max(ctx, h);
    h->onepu = tensor_like(ctx->act, &h->u);
    fill(op, &h->onepu, 1.0);
    axpy(op, &h->onepu, 1.0, &h->u);
    h->u_act = h->u;   // the refinement blocks' input channel, in the activation dtype
    if (h->u.dtype != ctx->dtype) {
        h->u_act = nn_new(ctx, ctx->dtype, 4, h->u.shape);
        copy(op, &h->u_act, &h->u);
    }
    Tensor pred = out->initial_pred;
    for (int i = 0; i < 2; i++) {
        nn_unit_begin(ctx, &h->u_ir[i]);
        out->refine[i] = ir_forward(ctx, h, i, &pred);
        nn_unit_end(ctx, &h->u_ir[i], (Tensor *[]){ &out->refine[i] }, 1);
        pred = out->refine[i];
    }
    nn_drop(ctx, &h->x0u);
    out->pred = clamped(ctx, &out->refine[1], -LOGIT_CLAMP, LOGIT_CLAMP);
    // 7. deep supervision on e_2, e_1, e_0
    for (int j = 0; j < 3; j++) {
        h->deep_raw[j] = seq_forward(ctx, &h->deep[j], &e[2 - j]);
        out->deep[j] = clamped(ctx, &h->deep_raw[j], -LOGIT_CLAMP, LOGIT_CLAMP);
    }
    h->out = *out;
}

static int has(const Tensor *t) { return t->data != NULL; }

void cod_head_backward(NNCtx *ctx, CodHead *h, const CodOutputs *d, Tensor de[4]) {
    OpCtx *op = &ctx->op;
    const CodOutputs *o = &h->out;
    // deep heads
    for (int j = 0; j < 3; j++) {
        if (!has(&d->deep[j])) continue;
        Tensor g = nn_zeros_like(ctx, &h->deep_raw[j]);
        clamp_backward(op, &g, &d->deep[j], &h->deep_raw[j], -LOGIT_CLAMP, LOGIT_CLAMP);
        seq_backward(ctx, &h->deep[j], &g, &de[2 - j]);
    }
    // refinement, last iteration first (dpred[0] is initial_pred's, in its dtype; pred_1, pred_2 may be F32)
    Tensor dpred[3];
    dpred[0] = nn_zeros_like(ctx, &o->initial_pred);
    for (int i = 1; i < 3; i++) dpred[i] = nn_zeros_like(ctx, &o->refine[i - 1]);
    if (has(&d->pred)) clamp_backward(op, &dpred[2], &d->pred, &o->refine[1], -LOGIT_CLAMP, LOGIT_CLAMP);
    for (int i = 0; i < 2; i++)
        if (has(&d->refine[i])) axpy(op, &dpred[i + 1], 1.0, &d->refine[i]);
    if (has(&d->initial_pred)) axpy(op, &dpred[0], 1.0, &d->initial_pred);
    Tensor du = nn_zeros_like(ctx, &h->u);
    Tensor dx0u = nn_zeros_like(ctx, &h->x0u);
    // Gradients that are dead once a stage has passed them on are released (arena marks):
    // only what flows on (allocated before the mark) outlives the stage.
    for (int i = 1; i >= 0; i--) {
        ArenaMark mk = arena_mark(ctx->act);
        if (nn_unit_replay_begin(ctx, &h->u_ir[i])) {
            ir_forward(ctx, h, i, i ? &o->refine[0] : &o->initial_pred);
            nn_unit_replay_end(ctx, &h->u_ir[i]);
        }
        Tensor dhb = nn_zeros_like(ctx, &h->ir_head[i].in);
        seq_backward(ctx, &h->ir_head[i], &dpred[i + 1], &dhb);
        Tensor db = nn_zeros_like(ctx, &h->ir_b[i]);
        mul_backward(op, &db, &du, &dhb, &h->ir_b[i], &h->onepu);   // d(1+u) = du
        Tensor dc = nn_zeros_like(ctx, &h->ir_block[i].in);
        seq_backward(ctx, &h->ir_block[i], &db, &dc);
        // the dtype conversions' gradients: through an activation-dtype slice where the dtypes differ
        Tensor du_act = h->u_act.data == h->u.data ? du : nn_zeros_like(ctx, &h->u_act);
        Tensor dp_act = dpred[i].dtype == dc.dtype ? dpred[i] : nn_zeros4(ctx, T_N(&dc), T_H(&dc), T_W(&dc), 1);
        Tensor *dxs[3] = { &dx0u, &dp_act, &du_act };
        concat_backward(op, dxs, 3, &dc);
        if (du_act.data != du.data) axpy(op, &du, 1.0, &du_act);
        if (dp_act.data != dpred[i].data) axpy(op, &dpred[i], 1.0, &dp_act);
        nn_unit_done(ctx, &h->u_ir[i]);
        arena_release(ctx->act, mk);
    }
    // u = uc / (max(uc) + eps): the max's gradient is shared evenly by the tied maxima
    ArenaMark mk_unc = arena_mark(ctx->act);
    if (nn_unit_replay_begin(ctx, &h->u_bu)) {
        CodOutputs r;
        bu_forward(ctx, h, &r);
        nn_unit_replay_end(ctx, &h->u_bu);
    }
    Tensor duc = nn_zeros_like(ctx, &o->uncertainty);
    maxnorm_backward(op, &duc, &du, &o->uncertainty, &h->u_max, UNC_NORM_EPS);
    if (h->max_synced) sync_batch_max_backward(ctx, h, &duc, &du);
    if (has(&d->uncertainty)) axpy(op, &duc, 1.0, &d->uncertainty);
    Tensor dur = nn_zeros_like(ctx, &h->u_raw), dipr = nn_zeros_like(ctx, &h->ip_raw);
    clamp_backward(op, &dur, &duc, &h->u_raw, UNC_LO, UNC_HI);
    clamp_backward(op, &dipr, &dpred[0], &h->ip_raw, -LOGIT_CLAMP, LOGIT_CLAMP);
    Tensor duconv = nn_zeros_like(ctx, &h->u_conv);
    softplus_backward(op, &duconv, &dur, &h->u_conv);
    Tensor dsh = nn_zeros_like(ctx, &h->bu_mean.in);
    seq_backward(ctx, &h->bu_mean, &dipr, &dsh);
    seq_backward(ctx, &h->bu_unc, &duconv, &dsh);
    seq_backward(ctx, &h->bu_shared, &dsh, &dx0u);
    nn_unit_done(ctx, &h->u_bu);
    arena_release(ctx->act, mk_unc);
    // back to half resolution
    Tensor dx0r = nn_zeros_like(ctx, &h->x0r), dfg = nn_zeros_like(ctx, &h->fg);
    Tensor dsm = nn_zeros_like(ctx, &h->sm_small);
    resize_bilinear_backward(op, &dx0r, &dx0u, 0, 0);
    if (has(&d->fg_map)) resize_bilinear_backward(op, &dfg, &d->fg_map, 0, 0);
    if (has(&d->search_map)) resize_bilinear_backward(op, &dsm, &d->search_map, 0, 0);
    // reverse attention
    Tensor dx = nn_zeros_like(ctx, &h->dec_out[3]);
    ArenaMark mk_ra = arena_mark(ctx->act);
    if (nn_unit_replay_begin(ctx, &h->u_ra)) {
        ra_forward(ctx, h);
        nn_unit_replay_end(ctx, &h->u_ra);
    }
    Tensor dr = nn_zeros_like(ctx, &h->ra_r);
    mul_backward(op, &dr, &dfg, &dx0r, &h->ra_r, &h->fg);
    Tensor dcatr = nn_zeros_like(ctx, &h->ra_refine.in);
    seq_backward(ctx, &h->ra_refine, &dr, &dcatr);
    Tensor dbg = nn_zeros_like(ctx, &h->bg);
    Tensor *dxs[2] = { &dx, &dbg };
    concat_backward(op, dxs, 2, &dcatr);
    axpy(op, &dbg, -1.0, &dfg);                      // fg = 1 − bg
    seq_backward(ctx, &h->ra_bg, &dbg, &dx);
    nn_unit_done(ctx, &h->u_ra);
    arena_release(ctx->act, mk_ra);
    // decoder: each block's gradient toward the next (dn) outlives the block's temporaries
    for (int i = 3; i >= 0; i--) {
        Tensor dn = nn_zeros_like(ctx, i ? &h->dec_out[i - 1] : &h->dec_in[0]);
        ArenaMark mk = arena_mark(ctx->act);
        if (nn_unit_replay_begin(ctx, &h->u_dec[i])) {
            dec_block_forward(ctx, h, i, i ? &h->dec_out[i - 1] : &h->x4, &h->e[3 - i]);
            nn_unit_replay_end(ctx, &h->u_dec[i]);
        }
        Tensor dt = nn_zeros_like(ctx, &h->dec_conv2[i].in);
        seq_backward(ctx, &h->dec_conv2[i], &dx, &dt);
        Tensor dup = nn_zeros_like(ctx, &h->dec_conv1[i].in);
        seq_backward(ctx, &h->dec_conv1[i], &dt, &dup);
        Tensor din = i ? nn_zeros_like(ctx, &h->dec_in[i]) : dn;
        resize_bilinear_backward(op, &din, &dup, 2.0, 2.0);
        if (i) {
            Tensor *ds[2] = { &dn, &de[3 - i] };
            concat_backward(op, ds, 2, &din);
        }
        nn_unit_done(ctx, &h->u_dec[i]);
        arena_release(ctx->act, mk);
        dx = dn;
    }
    // search and identification
    Tensor did = nn_zeros_like(ctx, &h->id);
    mul_backward(op, &did, &dsm, &dx, &h->id, &h->sm_small);
    seq_backward(ctx, &h->identify_conv, &did, &de[3]);
    seq_backward(ctx, &h->search_conv, &dsm, &de[3]);
}
