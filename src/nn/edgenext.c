// edgenext.c — the EdgeNeXt backbone: parameter registration in timm's
// state_dict order, timm initialisation, forward and backward of every block,
// the Fourier positional encoding (cached per resolution) and checkpoint loading.
// reference: timm/models/edgenext.py (features_only=True); every formula here is
// from ../shared/reference/edgenext.md, whose section numbers the comments cite.
//
// Memory: forward keeps its saved activations in ctx->act; backward takes its
// temporaries from ctx->act too, between an arena mark and a release, so a
// training step's peak is forward's activations plus one block's temporaries.
// The stem, each downsample and each block is a unit (nn/recompute.h): what it
// keeps follows ctx->recompute, and its backward re-runs it first when needed.
#include "nn/edgenext.h"
#include "nn/layers.h"
#include <math.h>
#include <string.h>

#define LN_EPS 1e-6     // every LayerNorm (§1.3)
#define L2_EPS 1e-12    // F.normalize in XCA (§2.6)
#define PE_HIDDEN 32    // Fourier features per axis (§2.5)
#define MAX_SPLIT 8     // largest supported d2_scale
#define PE_CACHE 8      // resolutions whose Fourier features are kept

typedef struct {
    int sdta;             // 0: conv block (§2.3), 1: SDTA block (§2.4)
    int C, cin;           // output channels; input channels (differ only in small_rw block 0)
    int k, stride, pad;   // conv block depthwise conv
    int shortcut_y;       // small_rw block 0: the residual is the depthwise output
    // Entries of the parameter table (_idx); the LN -> fc1 -> GELU -> fc2 -> gamma tail
    // both block kinds end with:
    int gamma_idx, ln_w_idx, ln_b_idx, fc1_w_idx, fc1_b_idx, fc2_w_idx, fc2_b_idx;
    int dw_w_idx, dw_b_idx;               // conv block: (C,1,k,k), (C)
    int gamma_xca_idx, S, ws;             // SDTA: its gamma; split count, width of the convolved chunks
    int conv_w_idx[MAX_SPLIT], conv_b_idx[MAX_SPLIT];  // (ws,1,3,3), (ws)
    int pe_w_idx, pe_b_idx;               // (C,64,1,1), (C); -1 without positional encoding
    int lnx_w_idx, lnx_b_idx, temp_idx, qkv_w_idx, qkv_b_idx, proj_w_idx, proj_b_idx;
    int heads;
    // ---- saved by forward for backward (views into ctx->act) ----
    Tensor x;                    // (N,H,W,cin) block input
    Tensor y;                    // (N,Ho,Wo,C) conv block: depthwise output
    Tensor mean, rstd;           // (N·H·W) statistics of the tail LayerNorm
    Tensor u;                    // (N,H,W,C) LN output
    Tensor h, g;                 // (N,H,W,4C) fc1 output, GELU output
    Tensor m;                    // (N,H,W,C) fc2 output (before gamma)
    Tensor cin_t[MAX_SPLIT];     // (N,H,W,ws) input of each split conv
    Tensor t;                    // (N,H,W,C) split output (+ PE): the XCA stream
    Tensor pe_feat;              // (H·W, 64) Fourier features (cache-owned)
    Tensor xmean, xrstd, a;      // LN_xca statistics and output (N,H,W,C)
    Tensor qkv, qkvn;            // (N,H,W,3C) qkv and its token-axis L2-normalised copy
    Tensor norms;                // (N·3C) token-axis norms
    Tensor araw, P;              // (N,heads,1,dh·dh) q̂·k̂ᵀ and its softmax (after the temperatures)
    Tensor o, xo, t2;            // (N,H,W,C) attention output, proj output, t + γ_xca·xo
    NNUnit unit;                 // the block as a unit of recomputation / liveness (nn/recompute.h)
} Block;

typedef struct {
    int p_first;                 // the stage's first table entry (nn_grad_ready)
    int ln_w_idx, ln_b_idx, w_idx, b_idx;   // table entries: downsample LayerNorm2d and 2×2 conv; ln_w_idx < 0: none
    Block *blocks;
    int nblocks;
    Tensor x, n, mean, rstd;     // downsample input (N,H,W,Cin), its LN output, statistics
    Tensor out;                  // (N,h,w,C) stage output = feature map
    NNUnit unit;                 // the downsample as a unit
} Stage;

typedef struct {
    int h, w;
    cx_dtype dt;
    cx_device dev;
    void *data;                  // (h·w, 64) features: malloc'd, or GPU memory (cx_dev_alloc)
} PECache;

static void pe_cache_free(PECache *c);

struct EdgeNeXt {
    EdgeNeXtConfig cfg;
    int p_first, p_count;        // this module's entries in the table
    int stem_w_idx, stem_b_idx, stem_ln_w_idx, stem_ln_b_idx;   // table entries
    int stem_k, stem_pad;
    Tensor stem_x, stem_y, stem_mean, stem_rstd;   // input (N,H,W,3), conv output, LN statistics
    NNUnit stem_unit;
    Stage stages[4];
    PECache pe[PE_CACHE];
    int pe_next;
};

// ---- small helpers ---------------------------------------------------------------

static Tensor *pv_(const ParamTable *pt, int i, Tensor *buf) {
    if (i < 0) return NULL;
    *buf = params_value(pt, i);
    return buf;
}
static Tensor *pg_(const ParamTable *pt, int i, Tensor *buf) {
    if (i < 0) return NULL;
    *buf = params_grad(pt, i);
    return buf;
}
// A parameter's value / gradient as a Tensor* (NULL for an absent bias).
#define PV(i) pv_(ctx->pt, (i), &(Tensor){ 0 })
#define PG(i) pg_(ctx->pt, (i), &(Tensor){ 0 })

static Tensor act4(NNCtx *ctx, int64_t n, int64_t h, int64_t w, int64_t c) {
    return tensor_new4(ctx->act, ctx->dtype, n, h, w, c);
}
static Tensor zeros_like(NNCtx *ctx, const Tensor *t) { return nn_zeros_like(ctx, t); }
// (n) statistics: F32 beside bf16 activations
static Tensor act1(NNCtx *ctx, int64_t n) { return nn_new(ctx, nn_stat_dtype(ctx), 1, &n); }
static Tensor reshape2(Tensor t, int64_t a, int64_t b) { return tensor_reshape(&t, 2, (int64_t[]){ a, b }); }
// The temperature (heads,1,1) seen as a (1,heads,1,1) per-pixel scale of araw (N,heads,1,dh·dh).
static Tensor head_view(Tensor t, int hd) { return tensor_reshape(&t, 4, (int64_t[]){ 1, hd, 1, 1 }); }
// XCA's GEMMs run over (image, head): outer strides per image, inner per head.
#define XCA_BATCH(sa1_, sb1_, sc1_, sa2_, sb2_, sc2_) \
    .nb1 = (int)N, .sa1 = (sa1_), .sb1 = (sb1_), .sc1 = (sc1_), .nb2 = hd, .sa2 = (sa2_), .sb2 = (sb2_), .sc2 = (sc2_)

// (in + 2·pad − k) / stride + 1, or 0 when the window does not fit.
static int out_size(int in, int k, int stride, int pad) { return in + 2 * pad < k ? 0 : (in + 2 * pad - k) / stride + 1; }

// ---- configuration -------------------------------------------------------------------

cx_status edgenext_config(const char *variant, EdgeNeXtConfig *cfg) {
    static const struct { const char *name; int d[4], c[4], heads, rw; } v[] = {
        { "edgenext_xx_small", { 2, 2, 6, 2 }, { 24, 48, 88, 168 }, 4, 0 },
        { "edgenext_x_small", { 3, 3, 9, 3 }, { 32, 64, 100, 192 }, 4, 0 },
        { "edgenext_small", { 3, 3, 9, 3 }, { 48, 96, 160, 304 }, 8, 0 },
        { "edgenext_base", { 3, 3, 9, 3 }, { 80, 160, 288, 584 }, 8, 0 },
        { "edgenext_small_rw", { 3, 3, 9, 3 }, { 48, 96, 192, 384 }, 8, 1 },
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        if (strcmp(variant, v[i].name)) continue;
        memset(cfg, 0, sizeof *cfg);
        snprintf(cfg->name, sizeof cfg->name, "%s", v[i].name);
        for (int s = 0; s < 4; s++) {
            cfg->depths[s] = v[i].d[s];
            cfg->dims[s] = v[i].c[s];
            cfg->heads[s] = v[i].heads;
            cfg->kernel[s] = 3 + 2 * s;
        }
        static const int d2[4] = { 2, 2, 3, 4 };
        memcpy(cfg->d2_scales, d2, sizeof d2);
        cfg->conv_bias = !v[i].rw;
        cfg->stem_overlap = v[i].rw;
        cfg->downsample_block = v[i].rw;
        return CX_OK;
    }
    return CX_FAIL(CX_EARG, "unknown EdgeNeXt variant '%s' (valid: edgenext_xx_small, edgenext_x_small, "
                   "edgenext_small, edgenext_base, edgenext_small_rw)", variant);
}

// ---- parameter registration -------------------------------------------------------------

typedef struct { ParamTable *pt; char base[160]; } Reg;

// Registers `<base><name>` with the given shape (ndim from the number of dims > 0).
static int reg(Reg *r, const char *name, unsigned flags, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", r->base, name);
    int64_t shape[4] = { a, b, c, d };
    return params_add(r->pt, full, ndim, shape, PG_BACKBONE, flags);
}
static int reg_bias(Reg *r, const char *name, int on, int64_t n) { return on ? reg(r, name, PF_NO_DECAY, 1, n, 0, 0, 0) : -1; }
static int reg_vec(Reg *r, const char *name, int64_t n) { return reg(r, name, PF_NO_DECAY, 1, n, 0, 0, 0); }

static void reg_tail(Reg *r, Block *b) {
    b->ln_w_idx = reg_vec(r, "norm.weight", b->C);
    b->ln_b_idx = reg_vec(r, "norm.bias", b->C);
    b->fc1_w_idx = reg(r, "mlp.fc1.weight", 0, 2, 4 * b->C, b->C, 0, 0);
    b->fc1_b_idx = reg_vec(r, "mlp.fc1.bias", 4 * b->C);
    b->fc2_w_idx = reg(r, "mlp.fc2.weight", 0, 2, b->C, 4 * b->C, 0, 0);
    b->fc2_b_idx = reg_vec(r, "mlp.fc2.bias", b->C);
}

EdgeNeXt *edgenext_create(const EdgeNeXtConfig *cfg, ParamTable *pt, const char *prefix) {
    EdgeNeXt *m = cx_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->p_first = pt->n;
    if (!prefix) prefix = "";
    Reg r = { .pt = pt };
    const int cb = cfg->conv_bias;
    // Stem (§2.1)
    snprintf(r.base, sizeof r.base, "%s", prefix);
    m->stem_k = cfg->stem_overlap ? 9 : 4;
    m->stem_pad = cfg->stem_overlap ? 4 : 0;
    m->stem_w_idx = reg(&r, "stem_0.weight", 0, 4, cfg->dims[0], 3, m->stem_k, m->stem_k);
    m->stem_b_idx = reg_bias(&r, "stem_0.bias", cb, cfg->dims[0]);
    m->stem_ln_w_idx = reg_vec(&r, "stem_1.weight", cfg->dims[0]);
    m->stem_ln_b_idx = reg_vec(&r, "stem_1.bias", cfg->dims[0]);
    for (int s = 0; s < 4; s++) {
        Stage *stage = &m->stages[s];
        const int C = cfg->dims[s], Cp = s ? cfg->dims[s - 1] : C;
        stage->ln_w_idx = stage->ln_b_idx = stage->w_idx = stage->b_idx = -1;
        stage->p_first = pt->n;
        if (s > 0 && !cfg->downsample_block) {   // §2.2: LayerNorm2d, then conv 2×2 stride 2
            snprintf(r.base, sizeof r.base, "%sstages_%d.downsample.", prefix, s);
            stage->ln_w_idx = reg_vec(&r, "0.weight", Cp);
            stage->ln_b_idx = reg_vec(&r, "0.bias", Cp);
            stage->w_idx = reg(&r, "1.weight", 0, 4, C, Cp, 2, 2);
            stage->b_idx = reg_bias(&r, "1.bias", 1, C);
        }
        stage->nblocks = cfg->depths[s];
        CX_ASSERT(stage->nblocks >= (s == 0 ? 1 : cfg->downsample_block ? 2 : 1),
                  "stage %d needs %s blocks", s, cfg->downsample_block ? "a conv block before its SDTA block" : "at least one");
        stage->blocks = cx_calloc((size_t)stage->nblocks, sizeof *stage->blocks);
        for (int j = 0; j < stage->nblocks; j++) {
            Block *b = &stage->blocks[j];
            snprintf(r.base, sizeof r.base, "%sstages_%d.blocks.%d.", prefix, s, j);
            b->C = C;
            b->pe_w_idx = b->pe_b_idx = -1;
            // global_block_counts = (0,1,1,1): the last block of stages 1-3 is SDTA (§1.1)
            b->sdta = s > 0 && j == stage->nblocks - 1;
            if (!b->sdta) {
                const int first_rw = cfg->downsample_block && s > 0 && j == 0;   // §2.9
                b->cin = first_rw ? Cp : C;
                b->k = cfg->kernel[s];
                b->stride = first_rw ? 2 : 1;
                b->pad = ((b->stride - 1) + (b->k - 1)) / 2;
                b->shortcut_y = first_rw;
                b->gamma_idx = reg_vec(&r, "gamma", C);
                b->dw_w_idx = reg(&r, "conv_dw.weight", 0, 4, C, 1, b->k, b->k);
                b->dw_b_idx = reg_bias(&r, "conv_dw.bias", cb, C);
                reg_tail(&r, b);
            } else {
                b->cin = C;
                b->S = cfg->d2_scales[s];
                b->ws = (C + b->S - 1) / b->S;
                b->heads = cfg->heads[s];
                CX_ASSERT(b->S >= 2 && b->S <= MAX_SPLIT && C - (b->S - 1) * b->ws > 0,
                          "SDTA split of %d channels into %d chunks", C, b->S);
                CX_ASSERT(C % b->heads == 0, "%d channels do not split into %d heads", C, b->heads);
                b->gamma_xca_idx = reg_vec(&r, "gamma_xca", C);
                b->gamma_idx = reg_vec(&r, "gamma", C);
                for (int c = 0; c < b->S - 1; c++) {
                    char nm[64];
                    snprintf(nm, sizeof nm, "convs.%d.weight", c);
                    b->conv_w_idx[c] = reg(&r, nm, 0, 4, b->ws, 1, 3, 3);
                    snprintf(nm, sizeof nm, "convs.%d.bias", c);
                    b->conv_b_idx[c] = reg_bias(&r, nm, cb, b->ws);
                }
                if (s == 1) {   // use_pos_emb = (False, True, False, False)
                    b->pe_w_idx = reg(&r, "pos_embd.token_projection.weight", 0, 4, C, 2 * PE_HIDDEN, 1, 1);
                    b->pe_b_idx = reg_vec(&r, "pos_embd.token_projection.bias", C);
                }
                b->lnx_w_idx = reg_vec(&r, "norm_xca.weight", C);
                b->lnx_b_idx = reg_vec(&r, "norm_xca.bias", C);
                b->temp_idx = reg(&r, "xca.temperature", PF_NO_DECAY, 3, b->heads, 1, 1, 0);
                b->qkv_w_idx = reg(&r, "xca.qkv.weight", 0, 2, 3 * C, C, 0, 0);
                b->qkv_b_idx = reg_vec(&r, "xca.qkv.bias", 3 * C);
                b->proj_w_idx = reg(&r, "xca.proj.weight", 0, 2, C, C, 0, 0);
                b->proj_b_idx = reg_vec(&r, "xca.proj.bias", C);
                reg_tail(&r, b);
            }
        }
    }
    m->p_count = pt->n - m->p_first;
    return m;
}

const EdgeNeXtConfig *edgenext_get_config(const EdgeNeXt *m) { return &m->cfg; }

void edgenext_free(EdgeNeXt *m) {
    if (!m) return;
    for (int s = 0; s < 4; s++) free(m->stages[s].blocks);
    for (int i = 0; i < PE_CACHE; i++) pe_cache_free(&m->pe[i]);
    free(m);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

void edgenext_init_weights(const EdgeNeXt *m, ParamTable *pt, Rng *rng) {
    for (int i = m->p_first; i < m->p_first + m->p_count; i++) {
        const ParamInfo *e = &pt->p[i];
        Tensor v = params_value(pt, i);
        if (ends_with(e->name, ".gamma") || ends_with(e->name, ".gamma_xca")) tensor_fill(&v, 1e-6);
        else if (ends_with(e->name, ".temperature")) tensor_fill(&v, 1.0);
        else if (ends_with(e->name, ".bias")) tensor_fill(&v, 0.0);
        else if (e->ndim == 1) tensor_fill(&v, 1.0);   // LayerNorm weights
        else                                           // conv and linear weights: trunc_normal_tf_(std=.02)
            for (int64_t k = 0; k < e->numel; k++) tensor_set(&v, k, rng_trunc_normal(rng, 0.02, -0.04, 0.04));
    }
}

int edgenext_feature_sizes(const EdgeNeXt *m, int H, int W, int fh[4], int fw[4]) {
    int h = out_size(H, m->stem_k, 4, m->stem_pad), w = out_size(W, m->stem_k, 4, m->stem_pad);
    for (int s = 0; s < 4; s++) {
        if (s > 0) {
            if (m->cfg.downsample_block) {
                const Block *b = &m->stages[s].blocks[0];
                h = out_size(h, b->k, 2, b->pad);
                w = out_size(w, b->k, 2, b->pad);
            } else {
                h = out_size(h, 2, 2, 0);
                w = out_size(w, 2, 2, 0);
            }
        }
        fh[s] = h;
        fw[s] = w;
    }
    return h > 0 && w > 0;
}

// ---- loading -------------------------------------------------------------------------------

void edgenext_key_to_feature_name(const char *key, char *out, size_t n) {
    // §3.2: only the first dot of `stem.N.` / `stages.N.` becomes an underscore.
    const char *heads[] = { "stem.", "stages." };
    for (int i = 0; i < 2; i++) {
        size_t l = strlen(heads[i]);
        if (!strncmp(key, heads[i], l) && key[l] >= '0' && key[l] <= '9') {
            snprintf(out, n, "%.*s_%s", (int)(l - 1), key, key + l);
            return;
        }
    }
    snprintf(out, n, "%s", key);
}

cx_status edgenext_load(ParamTable *pt, const StFile *f, const char *file_prefix, const char *table_prefix) {
    static const char *const ignore[] = { "head.", NULL };
    ParamLoadOpts o = {
        .file_prefix = file_prefix ? file_prefix : "",
        .table_prefix = table_prefix ? table_prefix : "",
        .ignore = ignore,
        .rename = edgenext_key_to_feature_name,
    };
    return params_load(pt, f, &o);
}

// ---- Fourier positional encoding (§2.5) ---------------------------------------------------------

// The (h·w, 64) feature table for one resolution: 32 y features, then 32 x features,
// alternating sin/cos of pairs sharing one frequency. Computed in double and stored
// in dt (timm uses float32; the difference is far below the fixtures' tolerances).
// On a GPU run the table is computed on the host once per resolution and
// uploaded (kept in GPU memory by the cache).
static void pe_cache_free(PECache *c) {
    if (c->dev == DEV_CUDA) cx_dev_free(c->data);
    else free(c->data);
    c->data = NULL;
}

static Tensor pe_features(EdgeNeXt *m, int h, int w, cx_dtype dt, cx_device dev) {
    const int64_t shape[2] = { (int64_t)h * w, 2 * PE_HIDDEN };
    for (int i = 0; i < PE_CACHE; i++)
        if (m->pe[i].data && m->pe[i].h == h && m->pe[i].w == w && m->pe[i].dt == dt && m->pe[i].dev == dev) {
            Tensor t = tensor_view(m->pe[i].data, dt, 2, shape);
            t.device = dev;
            return t;
        }
    PECache *c = &m->pe[m->pe_next];
    m->pe_next = (m->pe_next + 1) % PE_CACHE;
    pe_cache_free(c);
    c->h = h;
    c->w = w;
    c->dt = dt;
    c->dev = dev;
    c->data = cx_malloc((size_t)shape[0] * (size_t)shape[1] * dtype_size(dt));
    Tensor t = tensor_view(c->data, dt, 2, shape);
    const double two_pi = 2.0 * M_PI;
    double inv_dim[PE_HIDDEN];
    for (int k = 0; k < PE_HIDDEN; k++) inv_dim[k] = 1.0 / pow(10000.0, 2.0 * (k / 2) / PE_HIDDEN);
    for (int r = 0; r < h; r++) {
        const double ye = (r + 1) / (h + 1e-6) * two_pi;
        for (int col = 0; col < w; col++) {
            const double xe = (col + 1) / (w + 1e-6) * two_pi;
            const int64_t base = ((int64_t)r * w + col) * 2 * PE_HIDDEN;
            for (int k = 0; k < PE_HIDDEN; k++) {
                const double py = ye * inv_dim[k], px = xe * inv_dim[k];
                tensor_set(&t, base + k, k % 2 ? cos(py) : sin(py));
                tensor_set(&t, base + PE_HIDDEN + k, k % 2 ? cos(px) : sin(px));
            }
        }
    }
    if (dev == DEV_CUDA) {
        size_t bytes = tensor_nbytes(&t);
        void *d = cx_dev_alloc(bytes);
        CX_ASSERT(d, "out of GPU memory for a %zu-byte positional-encoding table", bytes);
        cx_dev_upload(d, c->data, bytes);
        free(c->data);
        c->data = d;
        t.data = d;
        t.device = DEV_CUDA;
    }
    return t;
}

// ---- the layer-scaled residual: y = x + γ ⊙ z (block tails, XCA) ---------------------------------
// One op each way (residual_scale_*); with CAMOXPERT_FUSE=0 the multiply and the add apart.
static void residual_scaled(NNCtx *ctx, Tensor *y, const Tensor *x, const Tensor *z, const Tensor *gamma) {
    if (ops_fuse()) {
        residual_scale_forward(&ctx->op, y, x, z, gamma);
        return;
    }
    mul_forward(&ctx->op, y, z, gamma);
    axpy(&ctx->op, y, 1.0, x);
}
// dx += dy; dz += γ ⊙ dy, dγ += Σ dy ⊙ z.
static void residual_scaled_backward(NNCtx *ctx, Tensor *dx, Tensor *dz, Tensor *dgamma, const Tensor *dy,
                                     const Tensor *z, const Tensor *gamma) {
    if (ops_fuse()) {
        residual_scale_backward(&ctx->op, dx, dz, dgamma, dy, z, gamma);
        return;
    }
    mul_backward(&ctx->op, dz, dgamma, dy, z, gamma);
    axpy(&ctx->op, dx, 1.0, dy);
}

// ---- the shared tail: out = shortcut + γ ⊙ fc2(GELU(fc1(LN(z)))) --------------------------------

static void tail_forward(NNCtx *ctx, Block *b, Tensor *out, const Tensor *shortcut, const Tensor *z) {
    OpCtx *op = &ctx->op;
    const int64_t N = T_N(z), H = T_H(z), W = T_W(z), C = T_C(z);
    b->mean = act1(ctx, N * H * W);
    b->rstd = act1(ctx, N * H * W);
    b->u = act4(ctx, N, H, W, C);
    layernorm_forward(op, &b->u, &b->mean, &b->rstd, z, PV(b->ln_w_idx), PV(b->ln_b_idx), LN_EPS);
    b->h = act4(ctx, N, H, W, 4 * C);
    nn_linear_forward(ctx, &b->h, &b->u, PV(b->fc1_w_idx), PV(b->fc1_b_idx));
    b->g = act4(ctx, N, H, W, 4 * C);
    gelu_forward(op, &b->g, &b->h);
    b->m = act4(ctx, N, H, W, C);
    nn_linear_forward(ctx, &b->m, &b->g, PV(b->fc2_w_idx), PV(b->fc2_b_idx));
    *out = act4(ctx, N, H, W, C);
    residual_scaled(ctx, out, shortcut, &b->m, PV(b->gamma_idx));
}

// dz += the tail's gradient w.r.t. z; dshort += dout, the shortcut's gradient (dshort may be dz).
static void tail_backward(NNCtx *ctx, Block *b, Tensor *dz, Tensor *dshort, const Tensor *dout, const Tensor *z) {
    OpCtx *op = &ctx->op;
    Tensor dm = zeros_like(ctx, &b->m);
    residual_scaled_backward(ctx, dshort, &dm, PG(b->gamma_idx), dout, &b->m, PV(b->gamma_idx));
    Tensor dg = zeros_like(ctx, &b->g);
    linear_backward(op, &dg, PG(b->fc2_w_idx), PG(b->fc2_b_idx), &dm, &b->g, PV(b->fc2_w_idx));
    Tensor dh = zeros_like(ctx, &b->h), du = zeros_like(ctx, &b->u);
    if (ops_fuse()) {   // fc1's bias gradient in GELU's backward pass
        gelu_bias_backward(op, &dh, PG(b->fc1_b_idx), &dg, &b->h);
        linear_backward(op, &du, PG(b->fc1_w_idx), NULL, &dh, &b->u, PV(b->fc1_w_idx));
    } else {
        gelu_backward(op, &dh, &dg, &b->h);
        linear_backward(op, &du, PG(b->fc1_w_idx), PG(b->fc1_b_idx), &dh, &b->u, PV(b->fc1_w_idx));
    }
    layernorm_backward(op, dz, PG(b->ln_w_idx), PG(b->ln_b_idx), &du, z, &b->mean, &b->rstd, PV(b->ln_w_idx));
}

// ---- conv block (§2.3) ---------------------------------------------------------------------------

static ConvArgs dw_args(const Block *b) {
    return (ConvArgs){ .stride = b->stride, .pad = b->pad, .dil = 1, .groups = b->cin };
}

static void conv_block_forward(NNCtx *ctx, Block *b, Tensor *out, const Tensor *x) {
    const ConvArgs a = dw_args(b);
    b->x = *x;
    b->y = act4(ctx, T_N(x), out_size((int)T_H(x), b->k, b->stride, b->pad), out_size((int)T_W(x), b->k, b->stride, b->pad), b->C);
    nn_conv2d_forward(ctx, &b->y, x, PV(b->dw_w_idx), PV(b->dw_b_idx), a);
    tail_forward(ctx, b, out, b->shortcut_y ? &b->y : x, &b->y);
}

// dx (N,H,W,cin) +=
static void conv_block_backward(NNCtx *ctx, Block *b, Tensor *dx, const Tensor *dout) {
    ArenaMark mk = arena_mark(ctx->act);
    if (nn_unit_replay_begin(ctx, &b->unit)) {
        Tensor o;
        conv_block_forward(ctx, b, &o, &b->x);
        nn_unit_replay_end(ctx, &b->unit);
    }
    Tensor dy = zeros_like(ctx, &b->y);
    tail_backward(ctx, b, &dy, b->shortcut_y ? &dy : dx, dout, &b->y);
    conv2d_backward(&ctx->op, dx, PG(b->dw_w_idx), PG(b->dw_b_idx), &dy, &b->x, PV(b->dw_w_idx), dw_args(b));
    nn_unit_done(ctx, &b->unit);
    arena_release(ctx->act, mk);
}

// ---- SDTA block (§2.4-2.6) ---------------------------------------------------------------------

static ConvArgs split_args(const Block *b) {
    return (ConvArgs){ .stride = 1, .pad = 1, .dil = 1, .groups = b->ws };
}

static void sdta_forward(NNCtx *ctx, EdgeNeXt *m, Block *b, Tensor *out, const Tensor *x) {
    OpCtx *op = &ctx->op;
    const cx_dtype dt = ctx->dtype;
    const int64_t N = T_N(x), H = T_H(x), W = T_W(x), C = T_C(x), T = H * W, C3 = 3 * C;
    const int S = b->S, ws = b->ws, wl = (int)C - (S - 1) * ws;
    const int hd = b->heads, dh = (int)C / hd;
    b->x = *x;
    // Res2Net split: y_0 = conv_0(x_0), y_j = conv_j(y_{j-1} + x_j); the last chunk passes.
    b->t = act4(ctx, N, H, W, C);
    Tensor prev = { 0 };
    for (int j = 0; j < S - 1; j++) {
        Tensor in = act4(ctx, N, H, W, ws);
        channels_copy(op, &in, 0, x, j * ws, ws, 0);
        if (j > 0) axpy(op, &in, 1.0, &prev);
        b->cin_t[j] = in;
        Tensor y = act4(ctx, N, H, W, ws);
        nn_conv2d_forward(ctx, &y, &in, PV(b->conv_w_idx[j]), PV(b->conv_b_idx[j]), split_args(b));
        channels_copy(op, &b->t, j * ws, &y, 0, ws, 0);
        prev = y;
    }
    channels_copy(op, &b->t, (S - 1) * ws, x, (S - 1) * ws, wl, 0);
    if (b->pe_w_idx >= 0) {   // t += token_projection(fourier(H, W)), the same for every image
        b->pe_feat = pe_features(m, (int)H, (int)W, dt, ctx->act->device);
        Tensor pe = tensor_new(ctx->act, dt, 2, (int64_t[]){ T, C });
        Tensor wv = reshape2(params_value(ctx->pt, b->pe_w_idx), C, 2 * PE_HIDDEN);
        nn_linear_forward(ctx, &pe, &b->pe_feat, &wv, PV(b->pe_b_idx));
        rows_add_bcast(op, &b->t, &pe);
    }
    // XCA on LN_xca(t): q, k, v are column blocks of qkv (N, T, 3C); per head a dh×dh
    // attention over channels, with q and k L2-normalised along the token axis.
    b->xmean = act1(ctx, N * T);
    b->xrstd = act1(ctx, N * T);
    b->a = act4(ctx, N, H, W, C);
    layernorm_forward(op, &b->a, &b->xmean, &b->xrstd, &b->t, PV(b->lnx_w_idx), PV(b->lnx_b_idx), LN_EPS);
    b->qkv = act4(ctx, N, H, W, C3);
    nn_linear_forward(ctx, &b->qkv, &b->a, PV(b->qkv_w_idx), PV(b->qkv_b_idx));
    // v's columns are normalised too (one strided call) but only q̂ and k̂ are read.
    b->qkvn = act4(ctx, N, H, W, C3);
    b->norms = act1(ctx, N * C3);
    l2norm_forward(op, &b->qkvn, &b->norms, &b->qkv, N, T, C3, L2_EPS);
    // araw[n,h] (dh,dh) = q̂_hᵀ (dh×T) · k̂_h (T×dh), for every image n and head h
    b->araw = act4(ctx, N, hd, 1, (int64_t)dh * dh);
    nn_gemm_batched(ctx, &b->araw, &b->qkvn, &b->qkvn, &(GemmArgs){ .ta = 1, .M = dh, .N = dh, .K = (int)T, .alpha = 1,
        .offb = C, .lda = (int)C3, .ldb = (int)C3, .ldc = dh, XCA_BATCH(T * C3, T * C3, (int64_t)hd * dh * dh, dh, dh,
        (int64_t)dh * dh) });
    // scores = araw · temperature[head] (one value per head, the same for every image)
    Tensor temp = head_view(params_value(ctx->pt, b->temp_idx), hd);
    Tensor sc = tensor_like(ctx->act, &b->araw);
    mul_forward(op, &sc, &b->araw, &temp);
    b->P = tensor_like(ctx->act, &b->araw);
    softmax_forward(op, &b->P, &sc, N * hd * dh, dh, 1);
    // o_h (T×dh) = v_h (T×dh) · P_hᵀ
    b->o = act4(ctx, N, H, W, C);
    nn_gemm_batched(ctx, &b->o, &b->qkv, &b->P, &(GemmArgs){ .tb = 1, .M = (int)T, .N = dh, .K = dh, .alpha = 1,
        .offa = 2 * C, .lda = (int)C3, .ldb = dh, .ldc = (int)C, XCA_BATCH(T * C3, (int64_t)hd * dh * dh, T * C, dh,
        (int64_t)dh * dh, dh) });
    b->xo = act4(ctx, N, H, W, C);
    nn_linear_forward(ctx, &b->xo, &b->o, PV(b->proj_w_idx), PV(b->proj_b_idx));
    b->t2 = act4(ctx, N, H, W, C);
    residual_scaled(ctx, &b->t2, &b->t, &b->xo, PV(b->gamma_xca_idx));
    // out = x + γ·MLP(LN(t2)): the block input is the only residual of the output.
    tail_forward(ctx, b, out, x, &b->t2);
}

// dx (N,H,W,C) +=
static void sdta_backward(NNCtx *ctx, EdgeNeXt *m, Block *b, Tensor *dx, const Tensor *dout) {
    OpCtx *op = &ctx->op;
    const cx_dtype dt = ctx->dtype;
    const Tensor *x = &b->x;
    const int64_t N = T_N(x), H = T_H(x), W = T_W(x), C = T_C(x), T = H * W, C3 = 3 * C;
    const int S = b->S, ws = b->ws, wl = (int)C - (S - 1) * ws;
    const int hd = b->heads, dh = (int)C / hd;
    ArenaMark mk = arena_mark(ctx->act);
    if (nn_unit_replay_begin(ctx, &b->unit)) {
        Tensor o;
        sdta_forward(ctx, m, b, &o, &b->x);
        nn_unit_replay_end(ctx, &b->unit);
    }
    Tensor dt2 = zeros_like(ctx, &b->t2);
    tail_backward(ctx, b, &dt2, dx, dout, &b->t2);
    // t2 = t + γ_xca ⊙ proj(o)
    Tensor dtt = zeros_like(ctx, &b->t), dxo = zeros_like(ctx, &b->xo);
    residual_scaled_backward(ctx, &dtt, &dxo, PG(b->gamma_xca_idx), &dt2, &b->xo, PV(b->gamma_xca_idx));
    Tensor dO = zeros_like(ctx, &b->o);
    linear_backward(op, &dO, PG(b->proj_w_idx), PG(b->proj_b_idx), &dxo, &b->o, PV(b->proj_w_idx));
    // o_h = v_h P_hᵀ: dv_h += dO_h P_h; dP_h = dO_hᵀ v_h
    Tensor dqkv = zeros_like(ctx, &b->qkv), dqkvn = zeros_like(ctx, &b->qkvn), dP = zeros_like(ctx, &b->P);
    const int64_t sq = T * C3, so = T * C, sp = (int64_t)hd * dh * dh, dd = (int64_t)dh * dh;
    gemm_batched(op, &dqkv, &dO, &b->P, &(GemmArgs){ .M = (int)T, .N = dh, .K = dh, .alpha = 1, .beta = 1,
        .offc = 2 * C, .lda = (int)C, .ldb = dh, .ldc = (int)C3, XCA_BATCH(so, sp, sq, dh, dd, dh) });
    gemm_batched(op, &dP, &dO, &b->qkv, &(GemmArgs){ .ta = 1, .M = dh, .N = dh, .K = (int)T, .alpha = 1, .beta = 1,
        .offb = 2 * C, .lda = (int)C, .ldb = (int)C3, .ldc = dh, XCA_BATCH(so, sq, sp, dh, dh, dd) });
    Tensor dS = zeros_like(ctx, &b->P);
    softmax_backward(op, &dS, &dP, &b->P, N * hd * dh, dh, 1);
    // S = araw · temperature[head]: the temperature's gradient sums over images and entries
    Tensor temp = head_view(params_value(ctx->pt, b->temp_idx), hd);
    Tensor gtemp = head_view(params_grad(ctx->pt, b->temp_idx), hd);
    Tensor dA = zeros_like(ctx, &b->araw);
    mul_backward(op, &dA, &gtemp, &dS, &b->araw, &temp);
    // araw_h = q̂_hᵀ k̂_h: dq̂_h += k̂_h dA_hᵀ, dk̂_h += q̂_h dA_h
    gemm_batched(op, &dqkvn, &b->qkvn, &dA, &(GemmArgs){ .tb = 1, .M = (int)T, .N = dh, .K = dh, .alpha = 1, .beta = 1,
        .offa = C, .lda = (int)C3, .ldb = dh, .ldc = (int)C3, XCA_BATCH(sq, sp, sq, dh, dd, dh) });
    gemm_batched(op, &dqkvn, &b->qkvn, &dA, &(GemmArgs){ .M = (int)T, .N = dh, .K = dh, .alpha = 1, .beta = 1,
        .offc = C, .lda = (int)C3, .ldb = dh, .ldc = (int)C3, XCA_BATCH(sq, sp, sq, dh, dd, dh) });
    // dqkvn's v columns are zero, so they add nothing through the normalisation.
    l2norm_backward(op, &dqkv, &dqkvn, &b->qkv, &b->norms, N, T, C3, L2_EPS);
    Tensor da = zeros_like(ctx, &b->a);
    linear_backward(op, &da, PG(b->qkv_w_idx), PG(b->qkv_b_idx), &dqkv, &b->a, PV(b->qkv_w_idx));
    layernorm_backward(op, &dtt, PG(b->lnx_w_idx), PG(b->lnx_b_idx), &da, &b->t, &b->xmean, &b->xrstd, PV(b->lnx_w_idx));
    if (b->pe_w_idx >= 0) {   // the encoding is shared by the batch: its gradient is the batch sum
        Tensor dpe = nn_zeros(ctx, dt, 2, (int64_t[]){ T, C });
        rows_sum(op, &dpe, &dtt);
        Tensor wv = reshape2(params_value(ctx->pt, b->pe_w_idx), C, 2 * PE_HIDDEN);
        Tensor gw = reshape2(params_grad(ctx->pt, b->pe_w_idx), C, 2 * PE_HIDDEN);
        linear_backward(op, NULL, &gw, PG(b->pe_b_idx), &dpe, &b->pe_feat, &wv);
    }
    // Split backward, last conv first: the input of conv j is y_{j-1} + x_j.
    channels_copy(op, dx, (S - 1) * ws, &dtt, (S - 1) * ws, wl, 1);
    Tensor dy = act4(ctx, N, H, W, ws);
    channels_copy(op, &dy, 0, &dtt, (S - 2) * ws, ws, 0);
    for (int j = S - 2; j >= 0; j--) {
        Tensor din = nn_zeros4(ctx, N, H, W, ws);
        conv2d_backward(op, &din, PG(b->conv_w_idx[j]), PG(b->conv_b_idx[j]), &dy, &b->cin_t[j], PV(b->conv_w_idx[j]), split_args(b));
        channels_copy(op, dx, j * ws, &din, 0, ws, 1);
        if (j > 0) {
            dy = act4(ctx, N, H, W, ws);
            channels_copy(op, &dy, 0, &dtt, (j - 1) * ws, ws, 0);
            axpy(op, &dy, 1.0, &din);
        }
    }
    nn_unit_done(ctx, &b->unit);
    arena_release(ctx->act, mk);
}

// ---- stem and downsample (§2.1, §2.2) -----------------------------------------------------------

static void downsample_forward(NNCtx *ctx, Stage *stage, Tensor *out, const Tensor *x, int C) {
    const int64_t N = T_N(x), H = T_H(x), W = T_W(x);
    stage->x = *x;
    stage->mean = act1(ctx, N * H * W);
    stage->rstd = act1(ctx, N * H * W);
    stage->n = tensor_like(ctx->act, x);
    layernorm_forward(&ctx->op, &stage->n, &stage->mean, &stage->rstd, x, PV(stage->ln_w_idx), PV(stage->ln_b_idx), LN_EPS);
    *out = act4(ctx, N, out_size((int)H, 2, 2, 0), out_size((int)W, 2, 2, 0), C);
    nn_conv2d_forward(ctx, out, &stage->n, PV(stage->w_idx), PV(stage->b_idx), (ConvArgs){ .stride = 2, .pad = 0, .dil = 1, .groups = 1 });
}

// dx +=
static void downsample_backward(NNCtx *ctx, Stage *stage, Tensor *dx, const Tensor *dout) {
    ArenaMark mk = arena_mark(ctx->act);
    if (nn_unit_replay_begin(ctx, &stage->unit)) {
        Tensor o;
        downsample_forward(ctx, stage, &o, &stage->x, (int)T_C(dout));
        nn_unit_replay_end(ctx, &stage->unit);
    }
    Tensor dn = zeros_like(ctx, &stage->n);
    conv2d_backward(&ctx->op, &dn, PG(stage->w_idx), PG(stage->b_idx), dout, &stage->n, PV(stage->w_idx),
                    (ConvArgs){ .stride = 2, .pad = 0, .dil = 1, .groups = 1 });
    layernorm_backward(&ctx->op, dx, PG(stage->ln_w_idx), PG(stage->ln_b_idx), &dn, &stage->x, &stage->mean, &stage->rstd, PV(stage->ln_w_idx));
    nn_unit_done(ctx, &stage->unit);
    arena_release(ctx->act, mk);
}

static ConvArgs stem_args(const EdgeNeXt *m) {
    return (ConvArgs){ .stride = 4, .pad = m->stem_pad, .dil = 1, .groups = 1 };
}

// x (N,H,W,3) -> LN(conv(x)) (N,h,w,C0), the stride-4 map of h×w
static Tensor stem_forward(NNCtx *ctx, EdgeNeXt *m, const Tensor *x, int h, int w) {
    const int64_t N = T_N(x);
    m->stem_x = *x;
    m->stem_y = act4(ctx, N, h, w, m->cfg.dims[0]);
    nn_conv2d_forward(ctx, &m->stem_y, x, PV(m->stem_w_idx), PV(m->stem_b_idx), stem_args(m));
    m->stem_mean = act1(ctx, N * h * w);
    m->stem_rstd = act1(ctx, N * h * w);
    Tensor cur = tensor_like(ctx->act, &m->stem_y);
    layernorm_forward(&ctx->op, &cur, &m->stem_mean, &m->stem_rstd, &m->stem_y, PV(m->stem_ln_w_idx), PV(m->stem_ln_b_idx), LN_EPS);
    return cur;
}

// ---- the whole backbone ------------------------------------------------------------------------

void edgenext_forward(NNCtx *ctx, EdgeNeXt *m, Tensor feats[4], const Tensor *x) {
    CX_ASSERT(x->ndim == 4 && T_C(x) == 3, "edgenext_forward: input must be (N,H,W,3)");
    CX_ASSERT(x->dtype == ctx->dtype && ctx->pt->dtype == nn_stat_dtype(ctx), "edgenext_forward: input %s, table %s, ctx %s",
              dtype_name(x->dtype), dtype_name(ctx->pt->dtype), dtype_name(ctx->dtype));
    int fh[4], fw[4];
    CX_ASSERT(edgenext_feature_sizes(m, (int)T_H(x), (int)T_W(x), fh, fw),
              "edgenext_forward: a %lld×%lld input leaves no stride-32 feature map", (long long)T_H(x), (long long)T_W(x));
    nn_unit_begin(ctx, &m->stem_unit);
    Tensor cur = stem_forward(ctx, m, x, fh[0], fw[0]);
    nn_unit_end(ctx, &m->stem_unit, (Tensor *[]){ &cur }, 1);
    for (int s = 0; s < 4; s++) {
        Stage *stage = &m->stages[s];
        Tensor nxt;
        if (stage->ln_w_idx >= 0) {
            nn_unit_begin(ctx, &stage->unit);
            downsample_forward(ctx, stage, &nxt, &cur, m->cfg.dims[s]);
            nn_unit_end(ctx, &stage->unit, (Tensor *[]){ &nxt }, 1);
            cur = nxt;
        }
        for (int j = 0; j < stage->nblocks; j++) {
            Block *b = &stage->blocks[j];
            nn_unit_begin(ctx, &b->unit);
            if (b->sdta) sdta_forward(ctx, m, b, &nxt, &cur);
            else conv_block_forward(ctx, b, &nxt, &cur);
            nn_unit_end(ctx, &b->unit, (Tensor *[]){ &nxt }, 1);
            if (!(s > 0 && cur.data == feats[s - 1].data)) nn_drop(ctx, &cur);   // inference: read for the last time
            cur = nxt;
        }
        CX_ASSERT(T_H(&cur) == fh[s] && T_W(&cur) == fw[s], "stage %d output size", s);
        stage->out = cur;
        feats[s] = cur;
    }
}

void edgenext_backward(NNCtx *ctx, EdgeNeXt *m, const Tensor dfeats[4], Tensor *dx) {
    int top = -1;
    for (int s = 0; s < 4; s++)
        if (dfeats[s].data) {
            CX_ASSERT(tensor_same_shape(&dfeats[s], &m->stages[s].out), "edgenext_backward: dfeats[%d] shape", s);
            top = s;
        }
    if (top < 0) return;
    ArenaMark mk = arena_mark(ctx->act);
    Tensor d = zeros_like(ctx, &m->stages[top].out);   // gradient w.r.t. the current activation
    for (int s = top; s >= 0; s--) {
        Stage *stage = &m->stages[s];
        if (dfeats[s].data) axpy(&ctx->op, &d, 1.0, &dfeats[s]);
        for (int j = stage->nblocks - 1; j >= 0; j--) {
            Block *b = &stage->blocks[j];
            Tensor din = zeros_like(ctx, &b->x);
            if (b->sdta) sdta_backward(ctx, m, b, &din, &d);
            else conv_block_backward(ctx, b, &din, &d);
            arena_release_one(ctx->act, d.data);   // passed on: the next block's gradient may take its place
            d = din;
        }
        if (stage->ln_w_idx >= 0) {
            Tensor din = zeros_like(ctx, &stage->x);
            downsample_backward(ctx, stage, &din, &d);
            arena_release_one(ctx->act, d.data);
            d = din;
        }
        nn_grad_ready(ctx, stage->p_first);   // this stage and the ones above it are done
    }
    if (nn_unit_replay_begin(ctx, &m->stem_unit)) {
        stem_forward(ctx, m, &m->stem_x, (int)T_H(&m->stem_y), (int)T_W(&m->stem_y));
        nn_unit_replay_end(ctx, &m->stem_unit);
    }
    Tensor dy = zeros_like(ctx, &m->stem_y);
    layernorm_backward(&ctx->op, &dy, PG(m->stem_ln_w_idx), PG(m->stem_ln_b_idx), &d, &m->stem_y, &m->stem_mean, &m->stem_rstd,
                       PV(m->stem_ln_w_idx));
    conv2d_backward(&ctx->op, dx, PG(m->stem_w_idx), PG(m->stem_b_idx), &dy, &m->stem_x, PV(m->stem_w_idx), stem_args(m));
    nn_unit_done(ctx, &m->stem_unit);
    nn_grad_ready(ctx, m->p_first);
    arena_release(ctx->act, mk);
}
