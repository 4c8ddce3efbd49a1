// train_config.h — what a training run is asked to do: the options of `camoxpert
// train` as one struct, the reference trainer's defaults (docs/TRAINING.md lists
// them), the checks that refuse contradictions and out-of-range values before any
// work (each error names the options and the fix), and the memory check that refuses
// a run whose training step cannot fit, naming a batch size (or input size) that does.
//
//   TrainConfig c;
//   train_config_default(&c);
//   c.dataset_path = "data/synth", c.batch_size = 8;
//   CX_TRY(train_config_check(&c));
//   TrainMemPlan plan;
//   CX_TRY(train_config_check_memory(&c, &model, &train_split, &val_split, stdout, &plan));
#pragma once
#include "data/dataset.h"
#include "infer/open.h"
#include "nn/memory.h"
#include "train/schedule.h"
#include <stdio.h>

typedef struct {
    const char *dataset_path;      // --dataset-path (a layout data/dataset.h recognises)
    const char *checkpoint_dir;    // --checkpoint-dir
    const char *backbone;          // EdgeNeXt variant
    const char *backbone_weights;  // timm EdgeNeXt safetensors for the backbone, or NULL
    const char *resume_from;       // a checkpoint (weights; the state it names when present)
    int overwrite;                 // 1: a new run may replace the run in checkpoint_dir (its files are deleted)
    int batch_size, stage2_batch_size, img_size;
    int epochs, stage1_epochs;     // epochs over both stages; the first stage1_epochs are stage 1
    double lr, stage2_lr, weight_decay, min_lr, warmup_epochs;
    lr_kind scheduler;
    int t_mult;
    int accumulation_steps;
    int deep_supervision;          // 1: the 0.4·deep-supervision loss term is on
    int use_ema;
    double ema_decay;
    int progressive_unfreeze, skip_stage1;
    uint64_t seed;
    int num_workers;               // loader threads
    int cache;                     // 1: keep resized images in memory
    int skip_bad;                  // 1: leave out bad or unpaired files found by the scan (a warning each)
    int include_noncam;            // COD10K: keep the NonCAM images (nothing hidden, empty masks)
    int sparse, num_experts, top_k;
    double lb_coef;
    moe_balance balance;
    double bias_rate;              // MOE_BALANCE_BIAS step of the selection bias
    const char *routing;           // "global" or "spatial" (sparse; docs/ROUTING.md)
    int route_grid;                // spatial: at most route_grid × route_grid tiles per scale
    double router_lr_scale;
    double val_fraction;           // held out for validation (0: no validation)
    int val_from_test;             // 1: accept a validation split drawn from a test set's photos (refused
                                   // otherwise: model selection would see the test set); a warning, and the
                                   // log's "run" record names the set
    int val_every;                 // validate every N epochs (and after the last)
    double grad_clip;              // max gradient norm (0: no clipping)
    int64_t max_steps;             // > 0: stop like Ctrl-C after this many optimizer steps in total
    int sync_bn;                   // data parallel: BatchNorm statistics over the global batch (SyncBatchNorm)
    int recompute;                 // --recompute: an nn_recompute level (nn/nn.h), or -1 (auto, the default):
                                   // the cheapest level whose training step fits the device's memory
    int quiet;                     // 1: print nothing (the JSON log is still written)
    int progress;                  // 1: progress bar (terminal), 0: plain lines, -1: decide by isatty(stdout)
    const char *options_json;      // the run's options, stored in the checkpoints' metadata (may be NULL)
    const char *device;            // --device cpu|cuda|cuda:N|auto (NULL: auto)
    const char *precision;         // --precision fp32|bf16|auto (NULL: auto = bf16 on a GPU, fp32 on the CPU)
    const char *command_line;      // the command that started the run, for the log's "run" record (may be NULL)
    void (*epoch_done)(void *arg); // called after each epoch is logged and checkpointed (may be NULL;
    void *epoch_done_arg;          // `train --report` refreshes its page there)
} TrainConfig;

// The reference trainer's defaults (docs/TRAINING.md lists them).
void train_config_default(TrainConfig *c);
// Contradictions and out-of-range values, as CX_EARG naming the options and the fix.
cx_status train_config_check(const TrainConfig *c);
// The estimated peak of a training step at the larger stage batch (the model laid
// out, nothing allocated: infer/open.h's ModelSpec.check) plus the data the run keeps
// (validation masks at full size, the cache, the loader's batches), against what the
// device has (runtime_mem_budget: the GPU's free memory for the model on a GPU, the
// host's otherwise), at the recomputation level c->recompute, or under auto at each
// level from none to blocks until one fits. The estimate and the level are printed to
// out (NULL: not) and returned in *plan (may be NULL); a run that does not fit is
// CX_EARG naming a batch size (or input size, or a recomputation level) that fits.
typedef struct {
    nn_recompute level;   // what the training forward keeps (nn/recompute.h)
    double bytes;         // the estimated peak, data included
    MemEstimate model;    // the model's part of it (runtime_reserve sizes the arenas with it)
} TrainMemPlan;
cx_status train_config_check_memory(const TrainConfig *c, const Model *model, const Dataset *tr, const Dataset *va,
                                    FILE *out, TrainMemPlan *plan);
