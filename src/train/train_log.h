// train_log.h — what a training run writes for people and programs: the records of
// train_log.jsonl (one JSON object a line: "run" at each (re)start, "step" per
// optimizer step, "epoch" per epoch with its validation and routing, "end" when the
// run ends; `camoxpert report` reads them back: report/runlog.h) and the console's
// progress (a bar redrawn in place on a terminal, plain lines otherwise). Each
// function takes the stream it writes to; NULL writes nothing (ranks other than 0,
// --quiet).
//
//   train_log_run_start(log, &(TrainRunFacts){ .c = &cfg, .rt = &rt, .world = 1, ... });
//   train_log_step(log, step, stage, epoch, batch, lr, &loss, grad_norm, images_per_s);
//   train_progress(stdout, bar, epoch, epochs, batch, n_batches, images_per_s, loss.total, lr, eta_s, run_eta_s);
//   cJSON *e = train_log_epoch(epoch, stage, step, mean_loss, seconds);
//   train_log_add_val(e, &vr, best);
//   train_log_write(log, e);
//   train_log_run_end(log, st, interrupted, &ts);
#pragma once
#include "train/checkpoint.h"
#include "train/loss.h"
#include "train/train_config.h"
#include "train/valshard.h"
#include <cjson/cJSON.h>
#include <stdio.h>

// What the "run" record says about a (re)start.
typedef struct {
    const TrainConfig *c;      // the options (command line, data set, sizes, epochs)
    const Runtime *rt;         // where it computes
    int world;                 // ranks
    const char *launcher;      // with world > 1: what started the ranks (torchrun, Slurm, ...)
    const char *config_json;   // the checkpoints' metadata: model config and options
    int64_t parameters;        // trainable parameters
    int train_images, val_images;
    uint64_t seed;
    int64_t start_step;        // where it starts: 0, or the resumed checkpoint's
    int start_epoch;
    const char *val_from_test; // the test set the validation split is drawn from (--val-from-test), or NULL
} TrainRunFacts;

// Writes j as one line of log and frees it.
void train_log_write(FILE *log, cJSON *j);
void train_log_run_start(FILE *log, const TrainRunFacts *f);
// status done, stopped (interrupted) or failed (st: the error, and whether it is a non-finite one).
void train_log_run_end(FILE *log, cx_status st, int interrupted, const TrainState *ts);
void train_log_step(FILE *log, int64_t step, int stage, int epoch, int64_t batch, double lr, const CamoLoss *L,
                    double grad_norm, double images_per_s);
// The "epoch" record, for train_log_add_val and the routing to join before train_log_write.
cJSON *train_log_epoch(int epoch, int stage, int64_t step, double loss, double seconds);
void train_log_add_val(cJSON *epoch, const ValResult *vr, int best);
// One progress report of an epoch at batch (1-based) of nb: with bar, the bar redrawn
// in place; else a line. eta_s < 0: unknown.
void train_progress(FILE *out, int bar, int epoch, int epochs, int64_t batch, int64_t nb, double images_per_s,
                    double loss, double lr, double eta_s, double run_eta_s);
// Ends a progress bar's line when one is drawn (before an error or another line).
void train_progress_end(FILE *out);
