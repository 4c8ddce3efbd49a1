// trainer.h — the reference training recipe (reference/camoxpert.md §7) as one
// function: two stages (stage 1 trains everything but the backbone, stage 2
// everything, optionally unfreezing the backbone's stages progressively), each
// with its own batch size, learning rate and schedule; AdamW with decoupled
// weight decay (none on norms and biases), the router group at its own LR scale,
// gradient accumulation, gradient-norm clipping, EMA of the weights; validation
// with the standard COD metrics at GT resolution on a held-out split, the best
// checkpoint by Sα; routing statistics per epoch for sparse models; atomic
// checkpoints every epoch and when stopped; exact resume.
//
// Files in cfg.checkpoint_dir (train/rundir.h: one writer, never another run's):
//   last.safetensors (+ last.state.<token>.safetensors)  the weights and the training
//                                        state (optimizer, EMA, counters, data cursor),
//                                        replaced as a whole (train/checkpoint.h)
//   best.safetensors                     the weights with the best validation Sα (the
//                                        EMA weights when use_ema) and that score; never
//                                        replaced by a lower one
//   train_log.jsonl                      one JSON object per optimizer step ("type":"step")
//                                        and per epoch ("type":"epoch"); a resume cuts it
//                                        back to the checkpoint, so no step is logged twice;
//                                        a "type":"run" record at each (re)start (command,
//                                        model, parameters, device, data) and a "type":"end"
//                                        record when the run ends (done, stopped, failed)
//   .camoxpert.lock                      held while the run writes
//
// Resume is exact: the batches are a pure function of (seed, epoch, batch) (the
// loader's cursor is in the state), the learning rate a pure function of the
// step, and every other piece of changing state is saved, so a run stopped and
// resumed computes bit for bit the losses of an uninterrupted one (on the CPU
// with a fixed thread count).
//
//   TrainConfig c; train_config_default(&c);
//   c.dataset_path = "data/synth"; c.checkpoint_dir = "runs/a";
//   CX_TRY(train_config_check(&c));
//   TrainResult r;
//   CX_TRY(trainer_run(&c, &r));
#pragma once
#include "nn/camoxpert.h"
#include "train/schedule.h"

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
    int val_every;                 // validate every N epochs (and after the last)
    double grad_clip;              // max gradient norm (0: no clipping)
    int64_t max_steps;             // > 0: stop like Ctrl-C after this many optimizer steps in total
    int sync_bn;                   // data parallel: BatchNorm statistics over the global batch (SyncBatchNorm)
    int quiet;                     // 1: print nothing (the JSON log is still written)
    int progress;                  // 1: progress bar (terminal), 0: plain lines, -1: decide by isatty(stdout)
    const char *options_json;      // the run's options, stored in the checkpoints' metadata (may be NULL)
    const char *device;            // --device cpu|cuda|cuda:N|auto (NULL: auto)
    const char *precision;         // --precision fp32|bf16|auto (NULL: auto = bf16 on a GPU, fp32 on the CPU)
    const char *command_line;      // the command that started the run, for the log's "run" record (may be NULL)
    void (*epoch_done)(void *arg); // called after each epoch is logged and checkpointed (may be NULL;
    void *epoch_done_arg;          // `train --report` refreshes its page there)
} TrainConfig;

typedef struct {
    int64_t steps;                 // optimizer steps taken (total, both stages)
    int epochs;                    // epochs completed
    double first_loss, last_loss;  // mean training loss of the first and last epoch run
    double best_sm;                // best validation Sα (-1 when no validation ran)
    int best_epoch;
    double last_sm, last_iou;      // the last validation's Sα and IoU
    int interrupted;               // 1: stopped by trainer_request_stop or max_steps
} TrainResult;

// The reference trainer's defaults (docs/TRAINING.md lists them).
void train_config_default(TrainConfig *c);
// Contradictions and out-of-range values, as CX_EARG naming the options and the fix.
cx_status train_config_check(const TrainConfig *c);
// Runs (or resumes) training. CX_ENUMERIC when a loss or gradient is not finite.
cx_status trainer_run(const TrainConfig *c, TrainResult *r);
// Asks a running trainer to checkpoint and stop at the next step boundary
// (async-signal-safe: the SIGINT handler calls it).
void trainer_request_stop(void);
