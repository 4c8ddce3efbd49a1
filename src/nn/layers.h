// layers.h — the building block of every CamoXpert module: a short sequence of
// plain layers (conv, BatchNorm, ReLU, sigmoid, softplus, global average pool)
// that mirrors a PyTorch nn.Sequential index for index, so the parameter names
// fall out of the position: layer i of a Seq created under "search_conv" owns
// "search_conv.<i>.weight". Parameter-free layers (ReLU, pool, sigmoid) occupy
// their Sequential index too, exactly as in the reference's state_dict.
//
// A Seq keeps what its backward needs (its input and every layer's output) in
// the struct; each Seq is called at most once per forward (the MoE calls each
// expert once per group of work), so the saved state is unambiguous.
//
//   Seq s = {0};
//   seq_cbr(&s, pt, "conv1", 48, 64, 3, 1, PG_REST);     // conv1.0 conv, conv1.1 BN, ReLU
//   Tensor y = seq_forward(ctx, &s, &x);                  // x (N,H,W,48) -> y (N,H,W,64)
//   seq_backward(ctx, &s, &dy, &dx);                      // dx += ..., parameter grads +=
#pragma once
#include "nn/recompute.h"

typedef enum { LAYER_CONV, LAYER_BN, LAYER_RELU, LAYER_SIGMOID, LAYER_SOFTPLUS, LAYER_POOL } layer_kind;

#define SEQ_MAX 8

typedef struct {
    layer_kind kind;
    int cin, cout, k, dil;   // conv: C -> K, k×k kernel, dilation, padding dil·(k−1)/2
    // Entries of the parameter table (-1: none):
    int w_idx, b_idx;        // conv: weight (K,C,k,k), bias (K); BN: gamma (K), beta (K)
    int rmean_idx, rvar_idx, nbt_idx;   // BN: running_mean (K), running_var (K), num_batches_tracked ()
    int inplace;             // activation computed in place over the previous layer's output
    int relu_fused;          // BN: this forward ran the in-place ReLU after it inside its op (batchnorm_relu_*)
    int bias_to_bn;          // conv: this forward left its bias to the BatchNorm after it (layers.c)
    int pre_bias_idx;        // BN: the bias of the conv before it, which its input lacks (-1: none)
    Tensor in;               // saved input (N,H,W,C): the previous layer's output, or what a range began with
    Tensor out;              // saved output (N,H,W,K); pool: (N,1,1,C)
    Tensor mean, invstd;     // BN: statistics used (K)
    Tensor gmean, gvar;      // BN under ctx->sync_sum: the global batch's mean and biased variance (K)
    double gcount;           // ... and its number of rows (N·H·W over the ranks); 0: not synchronised
} Layer;

typedef struct {
    int n;
    Layer l[SEQ_MAX];
    Tensor in;               // saved input (N,H,W,C)
} Seq;

// Builders: each appends one layer at index s->n, named "<prefix>.<index>".
void seq_conv(Seq *s, ParamTable *pt, const char *prefix, int cin, int cout, int k, int dil, param_group g);
void seq_bn(Seq *s, ParamTable *pt, const char *prefix, int c, param_group g);
void seq_act(Seq *s, layer_kind kind);   // LAYER_RELU, LAYER_SIGMOID, LAYER_SOFTPLUS or LAYER_POOL
// ConvBNReLU(cin, cout, k, dil): appends conv, BN, ReLU (three indices).
void seq_cbr(Seq *s, ParamTable *pt, const char *prefix, int cin, int cout, int k, int dil, param_group g);
// A lone conv whose parameters are "<name>.weight"/"<name>.bias" (deep heads, pred heads).
void seq_conv_named(Seq *s, ParamTable *pt, const char *name, int cin, int cout, int k, param_group g);

// y = seq(x). The output lives in ctx->act. In training mode BatchNorm uses batch
// statistics and updates its running statistics and counter in ctx->pt (not while a
// unit is replayed: nn/recompute.h). In inference (ctx->inference) each layer's output
// is given back to ctx->act once the next layer has read it (nn_drop).
Tensor seq_forward(NNCtx *ctx, Seq *s, const Tensor *x);
// The same, where x dies with its first reader: in inference it is given back too
// (when it is a whole chunk of ctx->act); otherwise seq_forward.
Tensor seq_forward_consume(NNCtx *ctx, Seq *s, const Tensor *x);
// dx += ∂L/∂x (dx may be NULL), parameter gradients +=.
void seq_backward(NNCtx *ctx, Seq *s, const Tensor *dy, Tensor *dx);
// Layers [from, to) alone, on x (their input; s->in when from is 0), and their
// backward: dy is the gradient of layer to−1's output, dx += that of layer from's
// input. A caller that transforms the activations between two ranges (spatial
// routing crops halo windows to their tiles' pixels after a branch's last spatial
// conv: experts.c) runs each range and the transform's backward itself.
Tensor seq_forward_range(NNCtx *ctx, Seq *s, int from, int to, const Tensor *x);
void seq_backward_range(NNCtx *ctx, Seq *s, int from, int to, const Tensor *dy, Tensor *dx);
int seq_out_channels(const Seq *s, int cin);

// PyTorch's default initialisation of every layer of s: conv weights
// kaiming_uniform(a=√5) = U(±1/√fan_in), biases U(±1/√fan_in); BN weight 1,
// bias 0, running mean 0, running var 1, counter 0.
void seq_init(const Seq *s, ParamTable *pt, Rng *rng);

// Helpers shared by the modules of nn/ (tensors in ctx->act; ctx->dtype unless given).
Tensor nn_new4(NNCtx *ctx, int64_t n, int64_t h, int64_t w, int64_t c);
Tensor nn_new(NNCtx *ctx, cx_dtype dt, int ndim, const int64_t *shape);
Tensor nn_zeros4(NNCtx *ctx, int64_t n, int64_t h, int64_t w, int64_t c);
Tensor nn_zeros(NNCtx *ctx, cx_dtype dt, int ndim, const int64_t *shape);
Tensor nn_zeros_like(NNCtx *ctx, const Tensor *t);   // t's dtype and shape, zeroed by an op
// (the nn_zeros* are deferred zeros under ctx->op.zeros: ops.h, first-write gradients;
// read one on the host only through nn_to_host)
Tensor nn_param(NNCtx *ctx, int i);   // value of table entry i
Tensor nn_grad(NNCtx *ctx, int i);    // gradient of table entry i
// The host side of the routing island: t itself when it is a host tensor, else a
// copy in ctx->host (one counted download); and the way back (one upload). A deferred
// zero is filled first.
Tensor nn_to_host(NNCtx *ctx, const Tensor *t);
Tensor nn_to_device(NNCtx *ctx, const Tensor *host_t);
// A small statistics tensor (F32/F64, on ctx's device) as doubles, and back (a
// download / an upload on a GPU): synchronised BatchNorm's host side.
void nn_stat_load(NNCtx *ctx, const Tensor *t, double *v);
void nn_stat_store(NNCtx *ctx, Tensor *t, const double *v);
