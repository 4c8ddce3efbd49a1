// onnx.c — `camoxpert export`: the CamoXpert graph in ONNX (onnx.h). The model is
// walked module by module in the order camoxpert_forward runs it (nn/edgenext.c,
// experts.c, moe.c, cod_head.c); each module becomes the standard ops PyTorch's
// exporter gives the reference:
//   convolution            Conv (dilations, groups: depthwise and the SDTA split)
//   BatchNorm (eval)       BatchNormalization (running statistics, eps 1e-5)
//   LayerNorm / LayerNorm2d LayerNormalization over the last axis (eps 1e-6), NHWC
//                          between two Transposes as timm permutes
//   Linear (timm MLP, XCA) MatMul with the transposed weight, Add the bias
//   GELU (exact)           Div √2, Erf, Add 1, Mul x, Mul 0.5 (opset 17 has no Gelu)
//   XCA                    Reshape/Transpose to (3, B, heads, dh, N), Gather q k v,
//                          q/max(ReduceL2(q), 1e-12), MatMul, Mul temperature,
//                          Softmax, MatMul, Transpose, Reshape
//   positional encoding    from the map's Shape: Range, Div, Sin/Cos (Where picks),
//                          Expand, Concat, MatMul with token_projection
//   bilinear resize        Resize linear, half_pixel coordinates (= PyTorch's
//                          align_corners=False, exported as pytorch_half_pixel, the
//                          same for every output side longer than 1, as ours are);
//                          the decoder's ×2 by scales, the maps to the input size by sizes
//   clamps, softplus       Clip, Softplus; the uncertainty's batch maximum ReduceMax
//   MoE routing            GlobalAveragePool, Gemm, Softmax, TopK, ReduceSum, Div,
//                          ScatterElements; per expert NonZero, Gather, the expert,
//                          Mul, and y[rows] += w·ye as Gather, Add, ScatterND
// Value names carry the PyTorch module path ("backbone.stages_1.blocks.1/Conv_57"),
// so a viewer such as Netron shows where each node comes from.
#include "infer/onnx.h"
#include "infer/onnx_pb.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ONNX raw_data is little-endian: write it byte-swapped here");

#define ONNX_IR_VERSION 8   // the IR of ONNX 1.12, the release of opset 17
#define ONNX_OPSET 17
#define LN_EPS 1e-6f        // every EdgeNeXt LayerNorm (nn/edgenext.c)
#define BN_EPS 1e-5f        // every CamoXpert BatchNorm (nn/layers.c)
#define L2_EPS 1e-12f       // F.normalize in XCA
#define PE_HIDDEN 32        // Fourier features per axis
#define MOE_RENORM_EPS 1e-8 // nn/moe.c

// TensorProto.DataType
enum { ELEM_FLOAT = 1, ELEM_INT64 = 7, ELEM_BOOL = 9, ELEM_FLOAT16 = 10 };

// ---- the graph being built ----------------------------------------------------------------

typedef struct {
    PbBuf nodes;            // GraphProto.node (field 1), in execution order
    PbBuf inits;            // GraphProto.initializer (field 5)
    PbBuf io;               // GraphProto.input / output (fields 11, 12)
    const ParamTable *pt;
    int half;               // compute in float16
    int T;                  // the compute element type: ELEM_FLOAT or ELEM_FLOAT16
    onnx_fault fault;
    int next;               // value-name counter
    char scope[256];        // the module whose nodes are being made
    char **names;           // every string made here (freed at the end)
    int n_names, cap_names;
    char **inits_made;      // open-addressing set of initializer names already written
    int cap_set, n_set;
} Og;

static const char *og_keep(Og *g, char *s) {
    if (g->n_names == g->cap_names) {
        g->cap_names = g->cap_names ? 2 * g->cap_names : 1024;
        g->names = cx_realloc(g->names, sizeof *g->names * (size_t)g->cap_names);
    }
    return g->names[g->n_names++] = s;
}

static const char *og_strf(Og *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *og_strf(Og *g, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return og_keep(g, cx_strdup(buf));
}

static void og_scope(Og *g, const char *s) { snprintf(g->scope, sizeof g->scope, "%s", s); }

// A new value name under the current scope: "scope/Op_N".
static const char *og_name(Og *g, const char *op) { return og_strf(g, "%s/%s_%d", g->scope, op, g->next++); }

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// 1 when name was already written as an initializer; else records it and returns 0.
static int og_seen(Og *g, const char *name) {
    if (2 * (g->n_set + 1) > g->cap_set) {
        int cap = g->cap_set ? 2 * g->cap_set : 4096;
        char **t = cx_calloc((size_t)cap, sizeof *t);
        for (int i = 0; i < g->cap_set; i++)
            if (g->inits_made[i]) {
                uint64_t j = fnv(g->inits_made[i]) & (uint64_t)(cap - 1);
                while (t[j]) j = (j + 1) & (uint64_t)(cap - 1);
                t[j] = g->inits_made[i];
            }
        free(g->inits_made);
        g->inits_made = t;
        g->cap_set = cap;
    }
    uint64_t j = fnv(name) & (uint64_t)(g->cap_set - 1);
    for (; g->inits_made[j]; j = (j + 1) & (uint64_t)(g->cap_set - 1))
        if (!strcmp(g->inits_made[j], name)) return 1;
    g->inits_made[j] = (char *)og_keep(g, cx_strdup(name));
    g->n_set++;
    return 0;
}

// ---- initializers ----------------------------------------------------------------------------

// A TensorProto initializer with raw_data (floats converted when elem is FLOAT16).
static void og_init(Og *g, const char *name, int elem, int ndim, const int64_t *dims, const void *data, size_t n) {
    PbBuf h = { 0 };
    if (ndim) pb_packed_int(&h, 1, dims, ndim);   // dims
    pb_int(&h, 2, elem);                          // data_type
    pb_str(&h, 8, name);                          // name
    if (elem == ELEM_FLOAT16) {
        uint16_t *b = cx_malloc(2 * n + 1);
        for (size_t i = 0; i < n; i++) b[i] = pb_f16(((const float *)data)[i]);
        pb_msg_tail(&g->inits, 5, &h, 9, b, 2 * n);
        free(b);
    } else {
        const size_t es = elem == ELEM_FLOAT ? 4 : elem == ELEM_INT64 ? 8 : 1;
        pb_msg_tail(&g->inits, 5, &h, 9, data, es * n);
    }
    pb_free(&h);
}

typedef enum { PV_PLAIN, PV_F32, PV_T } param_view;

// Table entry i as an initializer named by its PyTorch key: as it is (PV_PLAIN, in the
// compute type), in float32 (PV_F32: the router), or a (out, in[,1,1]) weight transposed
// to (in, out) for MatMul (PV_T, "<key>^T").
static const char *og_param(Og *g, int i, param_view v) {
    CX_ASSERT(i >= 0 && i < g->pt->n, "onnx: parameter index %d", i);
    const ParamInfo *p = &g->pt->p[i];
    const int elem = v == PV_F32 ? ELEM_FLOAT : g->T;
    const char *name = v == PV_T ? og_strf(g, "%s^T", p->name)
                     : v == PV_F32 && g->half ? og_strf(g, "%s:f32", p->name) : p->name;
    if (og_seen(g, name)) return name;
    Tensor t = params_host_value(g->pt, i);
    const int64_t n = tensor_numel(&t);
    float *f = cx_malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t j = 0; j < n; j++) f[j] = t.dtype == DT_F32 ? tensor_f32(&t)[j] : (float)tensor_get(&t, j);
    int64_t dims[4];
    int ndim = p->ndim;
    memcpy(dims, p->shape, sizeof(int64_t) * (size_t)ndim);
    if (v == PV_T) {
        const int64_t rows = p->shape[0], cols = n / rows;
        float *tr = cx_malloc(sizeof(float) * (size_t)n);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) tr[c * rows + r] = f[r * cols + c];
        free(f);
        f = tr;
        ndim = 2, dims[0] = cols, dims[1] = rows;
    }
    og_init(g, name, elem, ndim, dims, f, (size_t)n);
    free(f);
    return name;
}

// A parameter's index by name (printf-style), or -1 when the table has none (an absent bias).
static int og_find(const Og *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int og_find(const Og *g, const char *fmt, ...) {
    char key[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    return params_find(g->pt, key);
}

// Scalar constants (shape []) of the compute type or float32, and int64 vectors.
static const char *og_const(Og *g, int elem, double v) {
    const char *name = og_strf(g, "const/%s_%.9g", elem == ELEM_FLOAT16 ? "f16" : "f32", v);
    if (!og_seen(g, name)) {
        float f = (float)v;
        og_init(g, name, elem, 0, NULL, &f, 1);
    }
    return name;
}
static const char *og_cT(Og *g, double v) { return og_const(g, g->T, v); }
static const char *og_c32(Og *g, double v) { return og_const(g, ELEM_FLOAT, v); }

static const char *og_ints(Og *g, int n, const int64_t *v) {
    char buf[256] = "const/i64";
    for (int i = 0; i < n; i++) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "_%lld", (long long)v[i]);
    const char *name = og_strf(g, "%s", buf);
    if (!og_seen(g, name)) og_init(g, name, ELEM_INT64, 1, (int64_t[]){ n }, v, (size_t)n);
    return name;
}
#define OG_INTS(g, ...) og_ints((g), (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), (int64_t[]){ __VA_ARGS__ })

// An int64 scalar (shape []): Gather indices that drop their axis.
static const char *og_int_scalar(Og *g, int64_t v) {
    const char *name = og_strf(g, "const/i64s_%lld", (long long)v);
    if (!og_seen(g, name)) og_init(g, name, ELEM_INT64, 0, NULL, &v, 1);
    return name;
}

// ---- nodes ---------------------------------------------------------------------------------------

typedef struct {
    const char *name;
    char kind;              // 'i' int, 'f' float, 's' string, 'I' ints, 'v' a one-element tensor (ConstantOfShape)
    int64_t i;              // 'i'; 'v': the element type
    double f;               // 'f'; 'v': the value
    const char *s;
    const int64_t *ints;
    int n;
} OAttr;
#define AI(nm, v) ((OAttr){ .name = (nm), .kind = 'i', .i = (v) })
#define AF(nm, v) ((OAttr){ .name = (nm), .kind = 'f', .f = (v) })
#define AS(nm, v) ((OAttr){ .name = (nm), .kind = 's', .s = (v) })
#define AINTS(nm, ...) ((OAttr){ .name = (nm), .kind = 'I', .ints = (const int64_t[]){ __VA_ARGS__ }, \
                                 .n = (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)) })
#define AVAL(elem, v) ((OAttr){ .name = "value", .kind = 'v', .i = (elem), .f = (v) })
#define IN(...) (const char *const[]){ __VA_ARGS__ }, (int)(sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(char *))
#define ATTRS(...) (const OAttr[]){ __VA_ARGS__ }, (int)(sizeof((const OAttr[]){ __VA_ARGS__ }) / sizeof(OAttr))
#define NOATTR NULL, 0

static void attr_write(PbBuf *node, const OAttr *a) {
    PbBuf m = { 0 };
    pb_str(&m, 1, a->name);
    switch (a->kind) {
    case 'i': pb_int(&m, 3, a->i), pb_int(&m, 20, 2); break;                     // i, type INT
    case 'f': pb_float(&m, 2, (float)a->f), pb_int(&m, 20, 1); break;            // f, type FLOAT
    case 's': pb_str(&m, 4, a->s), pb_int(&m, 20, 3); break;                     // s, type STRING
    case 'I': pb_packed_int(&m, 8, a->ints, a->n), pb_int(&m, 20, 7); break;     // ints, type INTS
    case 'v': {                                                                  // t, type TENSOR
        PbBuf t = { 0 };
        pb_packed_int(&t, 1, (int64_t[]){ 1 }, 1);
        pb_int(&t, 2, a->i);
        if (a->i == ELEM_FLOAT16) {
            uint16_t h = pb_f16((float)a->f);
            pb_bytes(&t, 9, &h, 2);
        } else if (a->i == ELEM_FLOAT) {
            float f = (float)a->f;
            pb_bytes(&t, 9, &f, 4);
        } else {
            int64_t v = (int64_t)a->f;
            pb_bytes(&t, 9, &v, 8);
        }
        pb_msg(&m, 5, &t);
        pb_int(&m, 20, 4);
        pb_free(&t);
        break;
    }
    default: CX_ASSERT(0, "onnx: attribute kind %c", a->kind);
    }
    pb_msg(node, 5, &m);
    pb_free(&m);
}

// A node with the given outputs ("" inputs are omitted optional ones).
static void og_node(Og *g, const char *op, const char *const *in, int nin, const char *const *out, int nout,
                    const OAttr *a, int na) {
    PbBuf n = { 0 };
    for (int i = 0; i < nin; i++) pb_str(&n, 1, in[i]);
    for (int i = 0; i < nout; i++) pb_str(&n, 2, out[i]);
    pb_str(&n, 3, out[0]);
    pb_str(&n, 4, op);
    for (int i = 0; i < na; i++) attr_write(&n, &a[i]);
    pb_msg(&g->nodes, 1, &n);
    pb_free(&n);
}

// A node with one new output; returns its name.
static const char *og_op(Og *g, const char *op, const char *const *in, int nin, const OAttr *a, int na) {
    const char *y = og_name(g, op);
    og_node(g, op, in, nin, &y, 1, a, na);
    return y;
}

static const char *og_add(Og *g, const char *a, const char *b) { return og_op(g, "Add", IN(a, b), NOATTR); }
static const char *og_mul(Og *g, const char *a, const char *b) { return og_op(g, "Mul", IN(a, b), NOATTR); }
static const char *og_div(Og *g, const char *a, const char *b) { return og_op(g, "Div", IN(a, b), NOATTR); }
static const char *og_cast(Og *g, const char *x, int elem) { return og_op(g, "Cast", IN(x), ATTRS(AI("to", elem))); }
static const char *og_to_f32(Og *g, const char *x) { return g->half ? og_cast(g, x, ELEM_FLOAT) : x; }
static const char *og_to_T(Og *g, const char *x) { return g->half ? og_cast(g, x, ELEM_FLOAT16) : x; }
static const char *og_transpose(Og *g, const char *x, int n, const int64_t *perm) {
    OAttr a = { .name = "perm", .kind = 'I', .ints = perm, .n = n };
    return og_op(g, "Transpose", IN(x), &a, 1);
}
#define OG_TRANSPOSE(g, x, ...) og_transpose((g), (x), (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), \
                                             (int64_t[]){ __VA_ARGS__ })
static const char *og_nhwc(Og *g, const char *x) { return OG_TRANSPOSE(g, x, 0, 2, 3, 1); }
static const char *og_nchw(Og *g, const char *x) { return OG_TRANSPOSE(g, x, 0, 3, 1, 2); }
static const char *og_concat(Og *g, const char *const *xs, int n, int axis) {
    return og_op(g, "Concat", xs, n, ATTRS(AI("axis", axis)));
}
static const char *og_clip(Og *g, const char *x, int elem, double lo, double hi) {
    return og_op(g, "Clip", IN(x, og_const(g, elem, lo), og_const(g, elem, hi)), NOATTR);
}

// ---- layers -------------------------------------------------------------------------------------

// Conv of x (N,C,H,W) with table entries w (K, C/groups, k, k) and b (K) (b < 0: none).
static const char *og_conv(Og *g, const char *x, int w, int b, int k, int stride, int pad, int dil, int groups) {
    const char *wn = og_param(g, w, PV_PLAIN);
    const OAttr a[] = { AINTS("kernel_shape", k, k), AINTS("strides", stride, stride), AINTS("pads", pad, pad, pad, pad),
                        AINTS("dilations", dil, dil), AI("group", groups) };
    if (b < 0) return og_op(g, "Conv", IN(x, wn), a, 5);
    return og_op(g, "Conv", IN(x, wn, og_param(g, b, PV_PLAIN)), a, 5);
}

// Evaluation-mode BatchNorm of x (N,C,H,W): gamma, beta, running mean and variance.
static const char *og_bn(Og *g, const char *x, int w, int b, int rm, int rv) {
    return og_op(g, "BatchNormalization", IN(x, og_param(g, w, PV_PLAIN), og_param(g, b, PV_PLAIN),
                 og_param(g, rm, PV_PLAIN), og_param(g, rv, PV_PLAIN)), ATTRS(AF("epsilon", BN_EPS)));
}

// LayerNorm over the last axis, parameters "<prefix>.weight" / ".bias".
static const char *og_ln(Og *g, const char *x, const char *prefix) {
    const int w = og_find(g, "%s.weight", prefix), b = og_find(g, "%s.bias", prefix);
    CX_ASSERT(w >= 0 && b >= 0, "onnx: no LayerNorm %s in the table", prefix);
    return og_op(g, "LayerNormalization", IN(x, og_param(g, w, PV_PLAIN), og_param(g, b, PV_PLAIN)),
                 ATTRS(AI("axis", -1), AF("epsilon", LN_EPS)));
}

// timm's LayerNorm2d on NCHW x: permute to NHWC, normalise, permute back.
static const char *og_ln2d(Og *g, const char *x, const char *prefix) { return og_nchw(g, og_ln(g, og_nhwc(g, x), prefix)); }

// nn.Linear "<prefix>.weight" (out, in) / ".bias" over the last axis.
static const char *og_linear(Og *g, const char *x, const char *prefix) {
    const int w = og_find(g, "%s.weight", prefix), b = og_find(g, "%s.bias", prefix);
    CX_ASSERT(w >= 0 && b >= 0, "onnx: no Linear %s in the table", prefix);
    return og_add(g, og_op(g, "MatMul", IN(x, og_param(g, w, PV_T)), NOATTR), og_param(g, b, PV_PLAIN));
}

// GELU, exact: 0.5·x·(1 + erf(x/√2)) (the fault: the tanh approximation).
static const char *og_gelu(Og *g, const char *x) {
    if (g->fault == ONNX_FAULT_GELU_TANH) {
        const char *x3 = og_mul(g, og_mul(g, x, x), x);
        const char *in = og_mul(g, og_add(g, x, og_mul(g, x3, og_cT(g, 0.044715))), og_cT(g, sqrt(2 / M_PI)));
        const char *t = og_op(g, "Tanh", IN(in), NOATTR);
        return og_mul(g, og_mul(g, x, og_add(g, t, og_cT(g, 1))), og_cT(g, 0.5));
    }
    const char *e = og_op(g, "Erf", IN(og_div(g, x, og_cT(g, M_SQRT2))), NOATTR);
    return og_mul(g, og_mul(g, x, og_add(g, e, og_cT(g, 1))), og_cT(g, 0.5));
}

// Bilinear resize, align_corners=False: by a scale of 2 (the decoder) or to the spatial
// size hw (an int64 (2) value; the maps to the input size).
static const char *og_resize(Og *g, const char *x, const char *hw) {
    const OAttr a[] = { AS("mode", "linear"),
                        AS("coordinate_transformation_mode", g->fault == ONNX_FAULT_RESIZE_ASYMMETRIC ? "asymmetric" : "half_pixel") };
    if (!hw) {
        const char *sc = og_strf(g, "const/resize_x2");
        if (!og_seen(g, sc)) og_init(g, sc, ELEM_FLOAT, 1, (int64_t[]){ 4 }, (float[]){ 1, 1, 2, 2 }, 4);
        return og_op(g, "Resize", IN(x, "", sc), a, 2);
    }
    const char *nc = og_op(g, "Shape", IN(x), ATTRS(AI("start", 0), AI("end", 2)));
    return og_op(g, "Resize", IN(x, "", "", og_concat(g, IN(nc, hw), 0)), a, 2);
}

// A Seq (nn/layers.h) on NCHW x, layer by layer; the scope follows the layers' parameter names.
static const char *og_seq(Og *g, const Seq *s, const char *x) {
    for (int i = 0; i < s->n; i++) {
        const Layer *l = &s->l[i];
        if (l->kind == LAYER_CONV || l->kind == LAYER_BN) {
            const char *key = g->pt->p[l->w_idx].name;
            snprintf(g->scope, sizeof g->scope, "%.*s", (int)(strrchr(key, '.') - key), key);
        }
        switch (l->kind) {
        case LAYER_CONV: x = og_conv(g, x, l->w_idx, l->b_idx, l->k, 1, l->dil * (l->k - 1) / 2, l->dil, 1); break;
        case LAYER_BN: x = og_bn(g, x, l->w_idx, l->b_idx, l->rmean_idx, l->rvar_idx); break;
        case LAYER_RELU: x = og_op(g, "Relu", IN(x), NOATTR); break;
        case LAYER_SIGMOID: x = og_op(g, "Sigmoid", IN(x), NOATTR); break;
        case LAYER_SOFTPLUS: x = og_op(g, "Softplus", IN(x), NOATTR); break;
        case LAYER_POOL: x = og_op(g, "GlobalAveragePool", IN(x), NOATTR); break;
        }
    }
    return x;
}

// ---- EdgeNeXt (nn/edgenext.c; reference/edgenext.md §2) ------------------------------------------

// The tail both block kinds end with, on NHWC z: gamma ⊙ fc2(GELU(fc1(LN(z)))), back to NCHW.
static const char *og_mlp_tail(Og *g, const char *z, const char *blk) {
    char p[256];
    snprintf(p, sizeof p, "%snorm", blk);
    const char *u = og_ln(g, z, p);
    snprintf(p, sizeof p, "%smlp.fc1", blk);
    u = og_gelu(g, og_linear(g, u, p));
    snprintf(p, sizeof p, "%smlp.fc2", blk);
    u = og_linear(g, u, p);
    return og_nchw(g, og_mul(g, u, og_param(g, og_find(g, "%sgamma", blk), PV_PLAIN)));
}

// The (h, w, 64) Fourier features of §2.5 for the NHWC map t, in float32 (as timm computes
// them): 32 y features then 32 x features, sin for even k and cos for odd k.
static const char *og_pe_features(Og *g, const char *t) {
    const char *hw = og_op(g, "Shape", IN(t), ATTRS(AI("start", 1), AI("end", 3)));
    const char *hwf = og_cast(g, hw, ELEM_FLOAT);
    float dim_t[PE_HIDDEN];
    unsigned char even[PE_HIDDEN];
    for (int k = 0; k < PE_HIDDEN; k++) {
        dim_t[k] = (float)pow(10000.0, 2.0 * (k / 2) / PE_HIDDEN);
        even[k] = k % 2 == 0;
    }
    const char *dn = "const/pe_dim_t", *en = "const/pe_even";
    if (!og_seen(g, dn)) og_init(g, dn, ELEM_FLOAT, 1, (int64_t[]){ PE_HIDDEN }, dim_t, PE_HIDDEN);
    if (!og_seen(g, en)) og_init(g, en, ELEM_BOOL, 1, (int64_t[]){ PE_HIDDEN }, even, PE_HIDDEN);
    const char *axis_f[2];
    for (int a = 0; a < 2; a++) {   // a = 0: rows (y), 1: columns (x)
        const char *n = og_op(g, "Gather", IN(hwf, og_int_scalar(g, a)), ATTRS(AI("axis", 0)));
        // (1..n) / (n + 1e-6) · 2π
        const char *r = og_op(g, "Range", IN(og_c32(g, 1), og_add(g, n, og_c32(g, 0.5)), og_c32(g, 1)), NOATTR);
        const char *e = og_mul(g, og_div(g, r, og_add(g, n, og_c32(g, 1e-6))), og_c32(g, 2 * M_PI));
        const char *arg = og_div(g, og_op(g, "Unsqueeze", IN(e, OG_INTS(g, 1)), NOATTR), dn);   // (n, 32)
        const char *f = og_op(g, "Where", IN(en, og_op(g, "Sin", IN(arg), NOATTR), og_op(g, "Cos", IN(arg), NOATTR)),
                              NOATTR);
        axis_f[a] = og_op(g, "Unsqueeze", IN(f, OG_INTS(g, 1 - a)), NOATTR);   // (h,1,32) or (1,w,32)
    }
    const char *shape = og_concat(g, IN(hw, OG_INTS(g, PE_HIDDEN)), 0);
    const char *fy = og_op(g, "Expand", IN(axis_f[0], shape), NOATTR);
    const char *fx = og_op(g, "Expand", IN(axis_f[1], shape), NOATTR);
    return og_concat(g, IN(fy, fx), -1);
}

// Cross-covariance attention (§2.6) of a (B,H,W,C), heads hd: (B,H,W,C).
static const char *og_xca(Og *g, const char *a, const char *blk, int C, int hd) {
    char p[256];
    const int dh = C / hd;
    snprintf(p, sizeof p, "%sxca.qkv", blk);
    const char *qkv = og_linear(g, a, p);
    const char *r = og_op(g, "Reshape", IN(qkv, OG_INTS(g, 0, -1, 3, hd, dh)), NOATTR);   // (B,N,3,hd,dh)
    const char *t = OG_TRANSPOSE(g, r, 2, 0, 3, 4, 1);                                    // (3,B,hd,dh,N)
    const char *qkvs[3];
    for (int i = 0; i < 3; i++) qkvs[i] = og_op(g, "Gather", IN(t, og_int_scalar(g, i)), ATTRS(AI("axis", 0)));
    // q and k L2-normalised along the tokens: x / max(‖x‖₂, 1e-12), in float32
    const char *qk[2];
    for (int i = 0; i < 2; i++) {
        const char *x = og_to_f32(g, qkvs[i]);
        const char *nrm = og_op(g, "ReduceL2", IN(x), ATTRS(AINTS("axes", -1), AI("keepdims", 1)));
        qk[i] = og_to_T(g, og_div(g, x, og_op(g, "Max", IN(nrm, og_c32(g, L2_EPS)), NOATTR)));
    }
    const char *kt = OG_TRANSPOSE(g, qk[1], 0, 1, 3, 2);
    const char *at = og_op(g, "MatMul", IN(qk[0], kt), NOATTR);                           // (B,hd,dh,dh)
    at = og_mul(g, at, og_param(g, og_find(g, "%sxca.temperature", blk), PV_PLAIN));
    at = og_op(g, "Softmax", IN(at), ATTRS(AI("axis", -1)));
    const char *o = og_op(g, "MatMul", IN(at, qkvs[2]), NOATTR);                          // (B,hd,dh,N)
    o = OG_TRANSPOSE(g, o, 0, 3, 1, 2);                                                   // (B,N,hd,dh)
    o = og_op(g, "Reshape", IN(o, og_op(g, "Shape", IN(a), NOATTR)), NOATTR);            // (B,H,W,C)
    snprintf(p, sizeof p, "%sxca.proj", blk);
    return og_linear(g, o, p);
}

// SDTA block (§2.4) on NCHW x.
static const char *og_sdta(Og *g, const char *x, const char *blk, int C, int S, int hd) {
    const int ws = (C + S - 1) / S, wl = C - (S - 1) * ws;
    int64_t split[8];
    const char *sp[8], *parts[8];
    for (int j = 0; j < S; j++) {
        split[j] = j < S - 1 ? ws : wl;
        sp[j] = og_name(g, "Split");
    }
    og_node(g, "Split", IN(x, og_ints(g, S, split)), sp, S, ATTRS(AI("axis", 1)));
    // Res2Net split: y_0 = conv_0(x_0), y_j = conv_j(y_{j-1} + x_j); the last chunk passes
    const char *prev = NULL;
    for (int j = 0; j < S - 1; j++) {
        const char *in = j ? og_add(g, prev, sp[j]) : sp[0];
        prev = parts[j] = og_conv(g, in, og_find(g, "%sconvs.%d.weight", blk, j), og_find(g, "%sconvs.%d.bias", blk, j),
                                  3, 1, 1, 1, ws);
    }
    parts[S - 1] = sp[S - 1];
    const char *t = og_nhwc(g, og_concat(g, parts, S, 1));                     // (B,H,W,C)
    const int pe_w = og_find(g, "%spos_embd.token_projection.weight", blk);
    if (pe_w >= 0) {   // t += token_projection(fourier(H, W)), the same for every image
        const char *feat = og_to_T(g, og_pe_features(g, t));
        const char *pe = og_add(g, og_op(g, "MatMul", IN(feat, og_param(g, pe_w, PV_T)), NOATTR),
                                og_param(g, og_find(g, "%spos_embd.token_projection.bias", blk), PV_PLAIN));
        t = og_add(g, t, pe);
    }
    char p[256];
    snprintf(p, sizeof p, "%snorm_xca", blk);
    const char *xo = og_xca(g, og_ln(g, t, p), blk, C, hd);
    const char *t2 = og_add(g, og_mul(g, xo, og_param(g, og_find(g, "%sgamma_xca", blk), PV_PLAIN)), t);
    // out = x + γ·MLP(LN(t2)): the block input is the only residual of the output
    return og_add(g, og_mlp_tail(g, t2, blk), x);
}

// The backbone on NCHW x; feats[s] (N, d_s, H/2^(s+2), W/2^(s+2)).
static void og_backbone(Og *g, const EdgeNeXt *bb, const char *x, const char *feats[4]) {
    const EdgeNeXtConfig *c = edgenext_get_config(bb);
    og_scope(g, "backbone.stem");
    x = og_conv(g, x, og_find(g, "backbone.stem_0.weight"), og_find(g, "backbone.stem_0.bias"), c->stem_overlap ? 9 : 4, 4,
                c->stem_overlap ? 4 : 0, 1, 1);
    x = og_ln2d(g, x, "backbone.stem_1");
    for (int s = 0; s < 4; s++) {
        char blk[128];
        if (s > 0 && !c->downsample_block) {
            snprintf(blk, sizeof blk, "backbone.stages_%d.downsample", s);
            og_scope(g, blk);
            x = og_ln2d(g, x, og_strf(g, "%s.0", blk));
            x = og_conv(g, x, og_find(g, "%s.1.weight", blk), og_find(g, "%s.1.bias", blk), 2, 2, 0, 1, 1);
        }
        for (int j = 0; j < c->depths[s]; j++) {
            snprintf(blk, sizeof blk, "backbone.stages_%d.blocks.%d.", s, j);
            snprintf(g->scope, sizeof g->scope, "%.*s", (int)strlen(blk) - 1, blk);
            if (s > 0 && j == c->depths[s] - 1) {   // the last block of stages 1-3 is SDTA
                x = og_sdta(g, x, blk, c->dims[s], c->d2_scales[s], c->heads[s]);
                continue;
            }
            // conv block (§2.3); small_rw's block 0 of stages 1-3: stride 2, channel multiplier 2,
            // and its shortcut is the depthwise output (§2.9)
            const int first_rw = c->downsample_block && s > 0 && j == 0;
            const int k = c->kernel[s], stride = first_rw ? 2 : 1, cin = first_rw ? c->dims[s - 1] : c->dims[s];
            const char *y = og_conv(g, x, og_find(g, "%sconv_dw.weight", blk), og_find(g, "%sconv_dw.bias", blk), k, stride,
                                    ((stride - 1) + (k - 1)) / 2, 1, cin);
            x = og_add(g, og_mlp_tail(g, og_nhwc(g, y), blk), first_rw ? y : x);
        }
        feats[s] = x;
    }
}

// ---- experts and the MoE layer (nn/experts.c, nn/moe.c) ----------------------------------------------

static const char *og_expert(Og *g, const Expert *e, const char *x) {
    const char *br[4];
    for (int i = 0; i < e->nb; i++) br[i] = og_seq(g, &e->branch[i], x);
    const char *c = og_seq(g, &e->fusion, og_concat(g, br, e->nb, 1));
    if (e->kind == EXPERT_CONTRAST) return og_add(g, og_mul(g, c, og_seq(g, &e->amplify, c)), x);   // x + c · amplify(c)
    return og_add(g, c, x);                                                                          // fusion(cat) + x
}

typedef struct { const char *experts, *weights, *probs; } OgRoute;

// Global routing on x (N,d,h,w): the top-k of softmax(router(pool(x))), renormalised,
// in float32; each expert runs once on the images routed to it, whose outputs are
// added with their weights (the expert order of moe_dispatch_forward).
static const char *og_moe(Og *g, const Moe *m, int s, const char *x, OgRoute *route) {
    snprintf(g->scope, sizeof g->scope, "moe_layers.%d.router", s);
    const char *pooled = og_op(g, "Flatten", IN(og_op(g, "GlobalAveragePool", IN(og_to_f32(g, x)), NOATTR)),
                               ATTRS(AI("axis", 1)));                                               // (N,d)
    const char *logits = og_op(g, "Gemm", IN(pooled, og_param(g, m->router_w_idx, PV_F32), og_param(g, m->router_b_idx, PV_F32)),
                               ATTRS(AI("transB", 1)));                                             // (N,E)
    const char *probs = og_op(g, "Softmax", IN(logits), ATTRS(AI("axis", -1)));
    const char *val = og_name(g, "TopK"), *idx = og_name(g, "TopK_idx");
    og_node(g, "TopK", IN(probs, OG_INTS(g, m->k)), (const char *const[]){ val, idx }, 2,
            ATTRS(AI("axis", -1), AI("largest", 1), AI("sorted", 1)));
    const char *sum = og_op(g, "ReduceSum", IN(val, OG_INTS(g, 1)), ATTRS(AI("keepdims", 1)));
    const char *w = og_div(g, val, og_add(g, sum, og_c32(g, MOE_RENORM_EPS)));                        // (N,k)
    // (N,E) matrices: the weight of each chosen expert (0 elsewhere) and the choice itself
    const char *zeros = og_op(g, "ConstantOfShape", IN(og_op(g, "Shape", IN(probs), NOATTR)), ATTRS(AVAL(ELEM_FLOAT, 0)));
    const char *ones = og_op(g, "ConstantOfShape", IN(og_op(g, "Shape", IN(idx), NOATTR)), ATTRS(AVAL(ELEM_FLOAT, 1)));
    const char *wfull = og_to_T(g, og_op(g, "ScatterElements", IN(zeros, idx, w), ATTRS(AI("axis", 1))));
    const char *chosen = og_op(g, "ScatterElements", IN(zeros, idx, ones), ATTRS(AI("axis", 1)));
    *route = (OgRoute){ idx, w, probs };
    const char *y = og_op(g, "ConstantOfShape", IN(og_op(g, "Shape", IN(x), NOATTR)), ATTRS(AVAL(g->T, 0)));
    for (int e = 0; e < m->E; e++) {
        snprintf(g->scope, sizeof g->scope, "moe_layers.%d.experts.%d", s, e);
        const char *col = og_int_scalar(g, e);
        const char *nz = og_op(g, "NonZero", IN(og_op(g, "Gather", IN(chosen, col), ATTRS(AI("axis", 1)))), NOATTR);
        const char *rows = og_op(g, "Reshape", IN(nz, OG_INTS(g, -1)), NOATTR);                    // (c) images
        const char *ye = og_expert(g, &m->experts[e], og_op(g, "Gather", IN(x, rows), ATTRS(AI("axis", 0))));
        const char *we = og_op(g, "Gather", IN(og_op(g, "Gather", IN(wfull, col), ATTRS(AI("axis", 1))), rows),
                               ATTRS(AI("axis", 0)));
        we = og_op(g, "Reshape", IN(we, OG_INTS(g, -1, 1, 1, 1)), NOATTR);
        // y[rows] += w·ye as gather, add, scatter (ScatterND's reduction=add has no float16 kernel in
        // ONNX Runtime's CPU provider); rows are distinct within a group
        const char *sum = og_add(g, og_op(g, "Gather", IN(y, rows), ATTRS(AI("axis", 0))), og_mul(g, ye, we));
        y = og_op(g, "ScatterND", IN(y, OG_TRANSPOSE(g, nz, 1, 0), sum), NOATTR);
    }
    return y;
}

// ---- the COD head (nn/cod_head.c) ---------------------------------------------------------------------

typedef struct { const char *pred, *fg_map, *search_map, *uncertainty, *initial_pred, *refine[2], *deep[3]; } OgMaps;

static void og_head(Og *g, const CodHead *h, const char *const e[4], const char *image, OgMaps *out) {
    // 1. search and identification on e_3
    const char *sm = og_seq(g, &h->search_conv, e[3]);
    const char *cur = og_mul(g, og_seq(g, &h->identify_conv, e[3]), sm);
    // 2. decoder: upsample ×2, ConvBNReLU ×2; skips after the decoder path
    for (int i = 0; i < 4; i++) {
        const char *in = i ? og_concat(g, IN(cur, e[3 - i]), 1) : cur;
        cur = og_seq(g, &h->dec_conv2[i], og_seq(g, &h->dec_conv1[i], og_resize(g, in, NULL)));
    }
    // 3. reverse attention
    const char *bg = og_seq(g, &h->ra_bg, cur);
    const char *fg = og_op(g, "Sub", IN(og_cT(g, 1), bg), NOATTR);
    const char *x0r = og_mul(g, og_seq(g, &h->ra_refine, og_concat(g, IN(cur, bg), 1)), fg);
    // 4. to the input resolution
    og_scope(g, "resize");
    const char *hw = og_op(g, "Shape", IN(image), ATTRS(AI("start", 2), AI("end", 4)));
    const char *x0u = og_resize(g, x0r, hw);
    out->fg_map = og_resize(g, fg, hw);
    out->search_map = og_resize(g, sm, hw);
    // 5. boundary uncertainty
    const char *sh = og_seq(g, &h->bu_shared, x0u);
    const char *ip = og_seq(g, &h->bu_mean, sh), *un = og_seq(g, &h->bu_unc, sh);
    og_scope(g, "boundary_uncertainty");
    out->initial_pred = og_clip(g, ip, g->T, -LOGIT_CLAMP, LOGIT_CLAMP);
    // the uncertainty (softplus of the head's conv: the model's own step, outside its Seq) and its
    // normalisation by the batch maximum in float32 (1e-8 is 0 in float16), as the model computes them
    const char *sp = og_op(g, "Softplus", IN(og_to_f32(g, un)), NOATTR);
    const char *unc = og_clip(g, sp, ELEM_FLOAT, UNC_LO, UNC_HI);
    out->uncertainty = unc;
    const char *mx = og_op(g, "ReduceMax", IN(unc), ATTRS(AI("keepdims", 1)));
    const char *u = og_div(g, unc, og_add(g, mx, og_c32(g, UNC_NORM_EPS)));
    const char *onepu = og_to_T(g, og_add(g, u, og_c32(g, 1)));
    u = og_to_T(g, u);
    // 6. two refinement steps
    const char *pred = out->initial_pred;
    for (int i = 0; i < 2; i++) {
        const char *b = og_seq(g, &h->ir_block[i], og_concat(g, IN(x0u, pred, u), 1));
        pred = out->refine[i] = og_seq(g, &h->ir_head[i], og_mul(g, b, onepu));
    }
    og_scope(g, "iterative_refinement");
    out->pred = og_clip(g, pred, g->T, -LOGIT_CLAMP, LOGIT_CLAMP);
    // 7. deep supervision on e_2, e_1, e_0
    for (int j = 0; j < 3; j++) out->deep[j] = og_clip(g, og_seq(g, &h->deep[j], e[2 - j]), g->T, -LOGIT_CLAMP, LOGIT_CLAMP);
}

// ---- graph inputs, outputs, the file -----------------------------------------------------------------

// A ValueInfoProto of a tensor: elem, dims (a name "batch" for a symbolic dimension, or a number).
static void og_value_info(Og *g, int field, const char *name, int elem, int ndim, const char *const *dims) {
    PbBuf vi = { 0 }, tp = { 0 }, tt = { 0 }, sh = { 0 };
    for (int i = 0; i < ndim; i++) {
        PbBuf d = { 0 };
        char *end;
        long long v = strtoll(dims[i], &end, 10);
        if (*end) pb_str(&d, 2, dims[i]);   // dim_param
        else pb_int(&d, 1, v);              // dim_value
        pb_msg(&sh, 1, &d);
        pb_free(&d);
    }
    pb_int(&tt, 1, elem);     // TypeProto.Tensor.elem_type
    pb_msg(&tt, 2, &sh);      // .shape
    pb_msg(&tp, 1, &tt);      // TypeProto.tensor_type
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, &tp);
    pb_msg(&g->io, field, &vi);
    pb_free(&vi), pb_free(&tp), pb_free(&tt), pb_free(&sh);
}

// Graph output `name` of value v, elem (float32 or int64); in_T: v is of the compute type
// (cast to float32 when it is float16).
static void og_output(Og *g, const char *name, const char *v, int in_T, int elem, int ndim, const char *const *dims) {
    og_scope(g, "outputs");
    if (g->half && in_T) og_node(g, "Cast", IN(v), &name, 1, ATTRS(AI("to", ELEM_FLOAT)));
    else og_node(g, "Identity", IN(v), &name, 1, NOATTR);
    og_value_info(g, 12, name, elem, ndim, dims);
}

cx_status onnx_outputs_parse(const char *list, unsigned *bits) {
    static const struct { const char *name; unsigned bit; } w[] = {
        { "logits", ONNX_OUT_LOGITS }, { "maps", ONNX_OUT_MAPS }, { "refine", ONNX_OUT_REFINE },
        { "deep", ONNX_OUT_DEEP }, { "route", ONNX_OUT_ROUTE },
        { "all", ONNX_OUT_ALL },
    };
    *bits = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t i = 0;
        while (i < sizeof w / sizeof *w && !(strlen(w[i].name) == n && !strncmp(p, w[i].name, n))) i++;
        if (i == sizeof w / sizeof *w)
            return CX_FAIL(CX_EARG, "--outputs %s: unknown output group '%.*s' (valid, comma-separated: logits, maps, "
                           "refine, deep, route, all)", list, (int)n, p);
        *bits |= w[i].bit;
        p += n + (p[n] == ',');
    }
    if (!*bits) return CX_FAIL(CX_EARG, "--outputs is empty (valid, comma-separated: logits, maps, refine, deep, route, all)");
    return CX_OK;
}

static void meta_prop(PbBuf *model, const char *k, const char *v) {
    PbBuf e = { 0 };
    pb_str(&e, 1, k);
    pb_str(&e, 2, v);
    pb_msg(model, 14, &e);   // ModelProto.metadata_props
    pb_free(&e);
}

static cx_status write_model(Og *g, const CamoXpert *m, const OnnxExportOpts *o, unsigned outs, const char *path) {
    const CamoXpertConfig *c = &m->cfg;
    PbBuf hd = { 0 }, op = { 0 };
    pb_int(&hd, 1, ONNX_IR_VERSION);
    pb_str(&hd, 2, OWNER_EXPORT);   // producer_name: the mark core/outpath.h reads (ir_version first)
    pb_str(&op, 1, "");
    pb_int(&op, 2, ONNX_OPSET);
    pb_msg(&hd, 8, &op);
    pb_free(&op);
    // metadata: the model configuration (camoxpert_save's keys), the input convention, the outputs
    char buf[64], outl[128] = "";
    const char *keys[] = { "logits", "maps", "refine", "deep", "route" };
    for (int i = 0; i < 5; i++)
        if (outs & (1u << i)) snprintf(outl + strlen(outl), sizeof outl - strlen(outl), "%s%s", outl[0] ? "," : "", keys[i]);
    meta_prop(&hd, "model", c->sparse ? "CamoXpertSparseMoE" : "CamoXpertCOD");
    meta_prop(&hd, "backbone", c->backbone);
    snprintf(buf, sizeof buf, "%d", c->num_experts);
    meta_prop(&hd, "num_experts", buf);
    snprintf(buf, sizeof buf, "%d", c->top_k);
    meta_prop(&hd, "top_k", buf);
    meta_prop(&hd, "balance", moe_balance_name(c->balance));
    meta_prop(&hd, "routing", moe_routing_name(c->routing));
    snprintf(buf, sizeof buf, "%d", c->route_grid);
    meta_prop(&hd, "route_grid", buf);
    meta_prop(&hd, "precision", g->half ? "float16 (float32 inputs and outputs; routing and normalisations in float32)"
                                        : "float32");
    meta_prop(&hd, "input", "image: float32 (batch, 3, height, width), height and width multiples of 32; RGB, "
                            "ImageNet-normalised: (pixel/255 - mean)/std, mean 0.485 0.456 0.406, std 0.229 0.224 0.225");
    meta_prop(&hd, "outputs", outl);
    for (int i = 0; o->meta && o->meta[i]; i += 2) {
        CX_ASSERT(o->meta[i + 1], "onnx_export: metadata key %s has no value", o->meta[i]);
        meta_prop(&hd, o->meta[i], o->meta[i + 1]);
    }
    // ModelProto.graph: its fields come from three buffers, written one after another
    PbBuf nm = { 0 };
    pb_str(&nm, 2, "camoxpert");
    const size_t glen = g->nodes.n + nm.n + g->inits.n + g->io.n;
    pb_len_header(&hd, 7, glen);
    AtomicFile af;
    cx_status st = io_atomic_begin(&af, path);
    if (!st) {
        const PbBuf *parts[] = { &hd, &g->nodes, &nm, &g->inits, &g->io };
        for (size_t i = 0; i < 5 && !st; i++)
            if (parts[i]->n && fwrite(parts[i]->p, 1, parts[i]->n, af.fp) != parts[i]->n)
                st = CX_FAIL(CX_EIO, "writing %s: %s", path, io_errstr(errno));
        if (st) io_atomic_abort(&af);
        else st = io_atomic_commit(&af);
    }
    pb_free(&hd);
    pb_free(&nm);
    return st;
}

cx_status onnx_export(const CamoXpert *m, const ParamTable *pt, const OnnxExportOpts *o, const char *path) {
    if (!m->backbone) return CX_FAIL(CX_EARG, "onnx export: the model has no backbone (features given by hand)");
    if (m->cfg.sparse && m->cfg.routing != MOE_ROUTING_GLOBAL)
        return CX_FAIL(CX_EARG, "onnx export: spatial routing (per-tile experts) is not exported yet; a model trained "
                       "with --routing spatial runs with camoxpert predict");
    unsigned outs = o->outputs ? o->outputs : ONNX_OUT_LOGITS;
    if (outs == ONNX_OUT_ALL && !m->cfg.sparse) outs &= ~(unsigned)ONNX_OUT_ROUTE;
    if ((outs & ONNX_OUT_ROUTE) && !m->cfg.sparse)
        return CX_FAIL(CX_EARG, "--outputs route: %s is a dense model (every image uses every expert); leave route out",
                       m->cfg.backbone);
    Og g = { .pt = pt, .half = o->half, .T = o->half ? ELEM_FLOAT16 : ELEM_FLOAT, .fault = o->fault };
    // input
    og_value_info(&g, 11, "image", ELEM_FLOAT, 4, (const char *const[]){ "batch", "3", "height", "width" });
    og_scope(&g, "input");
    const char *x = og_to_T(&g, "image");
    // backbone, experts, head
    const char *feats[4], *enh[4];
    og_backbone(&g, m->backbone, x, feats);
    OgRoute route[4] = { { 0 } };
    for (int s = 0; s < 4; s++) {
        if (m->cfg.sparse) {
            enh[s] = og_moe(&g, &m->moe[s], s, feats[s], &route[s]);
            continue;
        }
        enh[s] = feats[s];
        for (int k = 0; k < EXPERT_KINDS; k++) enh[s] = og_expert(&g, &m->dense[k][s], enh[s]);
    }
    OgMaps maps;
    og_head(&g, &m->head, enh, "image", &maps);
    // outputs
    const char *full[4] = { "batch", "1", "height", "width" };
    if (outs & ONNX_OUT_LOGITS) og_output(&g, "logits", maps.pred, 1, ELEM_FLOAT, 4, full);
    if (outs & ONNX_OUT_MAPS) {
        og_output(&g, "fg_map", maps.fg_map, 1, ELEM_FLOAT, 4, full);
        og_output(&g, "search_map", maps.search_map, 1, ELEM_FLOAT, 4, full);
        og_output(&g, "uncertainty", maps.uncertainty, 0, ELEM_FLOAT, 4, full);
    }
    if (outs & ONNX_OUT_REFINE) {
        og_output(&g, "initial_pred", maps.initial_pred, 1, ELEM_FLOAT, 4, full);
        og_output(&g, "refine_1", maps.refine[0], 1, ELEM_FLOAT, 4, full);
        og_output(&g, "refine_2", maps.refine[1], 1, ELEM_FLOAT, 4, full);
    }
    for (int j = 0; j < 3 && (outs & ONNX_OUT_DEEP); j++) {
        const int stride = 16 >> j;
        const char *dims[4] = { "batch", "1", og_strf(&g, "height/%d", stride), og_strf(&g, "width/%d", stride) };
        og_output(&g, og_strf(&g, "deep_%d", j), maps.deep[j], 1, ELEM_FLOAT, 4, dims);
    }
    for (int s = 0; s < 4 && (outs & ONNX_OUT_ROUTE); s++) {
        const char *k = og_strf(&g, "%d", m->cfg.top_k), *E = og_strf(&g, "%d", m->cfg.num_experts);
        og_output(&g, og_strf(&g, "route_experts_s%d", s), route[s].experts, 0, ELEM_INT64, 2, (const char *const[]){ "batch", k });
        og_output(&g, og_strf(&g, "route_weights_s%d", s), route[s].weights, 0, ELEM_FLOAT, 2, (const char *const[]){ "batch", k });
        og_output(&g, og_strf(&g, "route_probs_s%d", s), route[s].probs, 0, ELEM_FLOAT, 2, (const char *const[]){ "batch", E });
    }
    cx_status st = write_model(&g, m, o, outs, path);
    if (st) cx_error_context("exporting the ONNX model to %s", path);
    pb_free(&g.nodes), pb_free(&g.inits), pb_free(&g.io);
    for (int i = 0; i < g.n_names; i++) free(g.names[i]);
    free(g.names);
    free(g.inits_made);
    return st;
}
