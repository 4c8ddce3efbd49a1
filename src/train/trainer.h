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
//   (the directory itself is flock'ed while the run writes: core/io.h io_dir_lock)
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
#include "train/train_config.h"

typedef struct {
    int64_t steps;                 // optimizer steps taken (total, both stages)
    int epochs;                    // epochs completed
    double first_loss, last_loss;  // mean training loss of the first and last epoch run
    double best_sm;                // best validation Sα (-1 when no validation ran)
    int best_epoch;
    double last_sm, last_iou;      // the last validation's Sα and IoU
    int interrupted;               // 1: stopped by trainer_request_stop or max_steps
    double peak_bytes;             // weights, gradients, optimizer state and the arenas' peaks, as run
} TrainResult;

// Runs (or resumes) training. CX_ENUMERIC when a loss or gradient is not finite.
cx_status trainer_run(const TrainConfig *c, TrainResult *r);
// Asks a running trainer to checkpoint and stop at the next step boundary
// (async-signal-safe: the SIGINT handler calls it).
void trainer_request_stop(void);
