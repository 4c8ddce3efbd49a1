// checkpoint.h — training checkpoints: the weights in the reference's PyTorch
// state_dict names (NAME.safetensors, loadable by PyTorch with strict=True,
// metadata `camoxpert_config` = the model config as JSON) and, beside it, the
// training state (NAME.state.safetensors: AdamW moments and per-entry steps,
// EMA shadow, counters and the data cursor), both written atomically. The
// state file is written first and names the weights it belongs to, so a crash
// between the two writes is detected at resume rather than mixing epochs.
//
//   TrainState ts = { .stage = 1, .epoch = 3, .global_step = 750 };
//   CX_TRY(checkpoint_save("runs/a", "last", &pt, cfg_json, &ts, &opt, use_ema ? &ema : NULL));
//   CX_TRY(checkpoint_load("runs/a/last.safetensors", &pt, &ts, &opt, &ema));
#pragma once
#include "train/optim.h"

typedef struct {
    int stage;               // 1: backbone frozen, 2: everything
    int epoch;               // epochs completed (over both stages)
    int64_t global_step;     // optimizer steps taken (over both stages)
    int64_t stage_step;      // optimizer steps taken in the current stage (drives its LR schedule)
    int64_t batch_in_epoch;  // batches consumed in the current epoch (resume mid-epoch)
    double best_score;       // best validation Sα so far
    int best_epoch;
    uint64_t seed;
    uint64_t token;          // random id tying a state file to its weights file
    int n_extra;             // values in extra[] (MOE_BALANCE_BIAS selection biases, 4 scales × E)
    double extra[256];       // model state outside the parameter table that training changes
} TrainState;

// Writes DIR/NAME.state.safetensors then DIR/NAME.safetensors. opt/ema may be NULL.
// GPU tables, moments and EMA are downloaded into their host copies first.
cx_status checkpoint_save(const char *dir, const char *name, const ParamTable *pt, const char *config_json,
                          TrainState *ts, AdamW *opt, Ema *ema);
// Loads weights (strict) and, when the state file exists and opt/ts are non-NULL, the
// training state (uploaded to the GPU for GPU tables). *has_state tells whether a
// state was found (may be NULL).
cx_status checkpoint_load(const char *weights_path, ParamTable *pt, TrainState *ts, AdamW *opt, Ema *ema,
                          int *has_state);
// The config JSON stored in a weights file's metadata (malloc'd; NULL if absent).
cx_status checkpoint_read_config(const char *weights_path, char **config_json);
