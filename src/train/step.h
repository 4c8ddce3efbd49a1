// step.h — one training step, the same for the trainer, `camoxpert bench` and
// the benchmarks: micro-batches accumulate gradients (and the loss terms, on the
// device), then one optimizer step: gradient mean, global-norm clipping, AdamW,
// EMA. The step's host synchronisations of its own are two small downloads: the
// accumulated loss terms with the gradient norm before the update is applied (a
// non-finite loss or gradient is reported and the update skipped), and Σw² of the
// weights after it (a weight made non-finite is named, and reaches neither the EMA
// nor a checkpoint); a sparse
// model adds the routing island's copies (nn/moe.h), and the loader's batch
// goes up in two uploads.
//
//   TrainStep step;
//   train_step_init(&step, &rt, model, &pt, &opt, use_ema ? &ema : NULL, &weights);
//   train_step_begin(&step);
//   train_step_accumulate(&step, &images, &masks, skip_backbone, &out);   // per micro-batch
//   StepResult r;
//   CX_TRY(train_step_finish(&step, lr, grad_clip, &r));   // r.applied == 0: not finite, nothing changed
//   train_step_free(&step);
#pragma once
#include "nn/camoxpert.h"
#include "nn/runtime.h"
#include "train/comm.h"
#include "train/loss.h"
#include "train/optim.h"

typedef struct {
    Runtime *rt;
    CamoXpert *m;
    ParamTable *pt;
    AdamW *opt;
    Ema *ema;                // NULL: no EMA
    CamoLossWeights w;
    Arena keep;              // the step's own small device buffers (never reset)
    Tensor stats;            // (CL_TERMS + 3): accumulated loss terms, then Σg², norm, clipping factor
    Tensor wstats;           // (3): Σw² of the updated weights (finite iff every weight is)
    AdamSeg *wseg;           // the whole table as segments
    double balance;          // Σ balance losses of the micro-batches (host)
    int n_micro;
    Comm *comm;              // data parallel (world > 1): the gradients and terms are summed over the
                             // ranks before the mean; NULL or world 1: this process alone
    // Gradient buckets (data parallel): during the last micro-batch's backward, each
    // range of the gradient buffer the backward has finished (nn.h grad_ready: the
    // head, the experts, each backbone stage) is all-reduced at once, beside the rest of
    // the backward (NCCL: on its own stream); train_step_finish reduces what is left
    // and waits. Set by the caller:
    int accum;               // micro-batches per step (default 1): the one numbered accum is the last
    int buckets;             // 1 (default): buckets; 0: one all-reduce after the backward
                             // (CAMOXPERT_GRAD_BUCKETS=0 in the environment)
    // First-write gradients (ops.h): 1 (default) makes the backward's zeroed buffers
    // deferred zeros, written by their first op instead of filled and added into; 0
    // fills them (CAMOXPERT_FIRST_WRITE=0 in the environment). Counted over the steps:
    int first_write;
    int64_t zeros_deferred, zeros_written, zeros_filled, zeros_dropped;   // (ZeroSet)
    // The micro-batch as a CUDA graph (step.c): 1 (default) on a GPU for a dense model on
    // one rank, after graph_after eager micro-batches of one shape (default 2); 0 always
    // eager (CAMOXPERT_TRAIN_GRAPH=0). graph_why: the captured graph's size ("1234 nodes")
    // or why there is none.
    int graph, graph_after, graph_failed;
    int64_t graph_captures, graph_replays;
    char graph_why[160];
    struct {
        void *exec;                      // the graph, or NULL
        int key_set, skip_backbone, eager;   // the key's shapes below; eager micro-batches seen at it
        int64_t ishape[4], mshape[4];
        void *xu, *yu;                   // the captured input buffers (float32, on the device)
        void *act_base;                  // the activation arena's block at the capture
        size_t act_cap, scr_cap, act_used;
        CamoXpertOutputs out;            // where the captured work leaves its outputs
        int64_t *counter_delta;          // (pt->n) BatchNorm batch counters a micro-batch adds
        double macs, balance;            // a micro-batch's FLOP count (multiply-adds) and balance loss
        int64_t calls;                   // ... its op calls
        int64_t zs[4];                   // ... and first-write counters
        int64_t nodes;                   // kernels and copies in the graph
    } g;
    // the step's state
    int64_t reduced_from;    // gradient elements [reduced_from, numel) have been started
    int n_buckets;           // buckets started in this step (the remainder at finish included)
    cx_status bucket_err;    // the first failed start (reported by train_step_finish)
    char bucket_msg[512];
    int bn_warned;           // degenerate BatchNorm statistics were reported (once a run)
} TrainStep;

typedef struct {
    CamoLoss loss;           // mean over the micro-batches
    double grad_norm;        // before clipping
    int loss_finite, grad_finite;
    int applied;             // 1: the update was applied
    int weights_finite;      // 0: the update made a weight non-finite (the EMA was not updated)
    int bad_param;           // then: the first such parameter, the index in it and the value
    int64_t bad_index;
    double bad_value;
} StepResult;

void train_step_init(TrainStep *s, Runtime *rt, CamoXpert *m, ParamTable *pt, AdamW *opt, Ema *ema,
                     const CamoLossWeights *w);
void train_step_free(TrainStep *s);
// Zeroes the gradients and the accumulated terms.
void train_step_begin(TrainStep *s);
// One micro-batch: image (N,S,S,3) and mask (N,S,S,1) host float32 tensors.
// Resets the runtime's step arenas first; *o holds the outputs and routing
// (valid until the next call). skip_backbone: backward stops at the features
// (stage 1: the backbone is frozen).
void train_step_accumulate(TrainStep *s, const Tensor *image, const Tensor *mask, int skip_backbone,
                           CamoXpertOutputs *o);
// Mean of the accumulated gradients, clipping at grad_clip (0: none), AdamW at
// lr, EMA; the MoE selection bias is the caller's (it needs the routing).
// With s->comm over W > 1 ranks, the gradient buffer (in buckets: see above), the loss
// terms and the balance sum are first summed over the ranks, and the mean is over the
// W × n_micro micro-batches of all ranks: what one process would compute from the
// global batch as W-step accumulation. Every rank then holds the same reduced values,
// so every decision below (not finite: skip and report) is the same on every rank.
// Fails only when the all-reduce does (a rank died; the message names it).
cx_status train_step_finish(TrainStep *s, double lr, double grad_clip, StepResult *r);
