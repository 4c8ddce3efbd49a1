// checkpoint.h — training checkpoints: the weights (NAME.safetensors, written by
// nn/weights.h: PyTorch state_dict names, the model config in the metadata) and,
// beside them, the training state (NAME.state.<token>.safetensors: AdamW moments
// and per-entry steps, EMA shadow, counters and the data cursor).
//
// Replaced atomically as a whole: the state is written under a new random token,
// then the weights file, whose metadata names that token, replaces NAME.safetensors
// in one rename (the commit point), then older states are removed. A kill at any
// moment leaves NAME.safetensors naming a state that exists — the previous
// checkpoint or the new one, never a mix — and resume loads exactly that pair.
// Non-finite weights or optimizer state are never written (CX_ENUMERIC).
//
// best.safetensors carries its validation score (`camoxpert_best_score`,
// `camoxpert_best_epoch`); checkpoint_save_best never replaces it by a lower score.
//
//   TrainState ts = { .stage = 1, .epoch = 3, .global_step = 750 };
//   CX_TRY(checkpoint_save("runs/a", "last", &pt, cfg_json, &ts, &opt, use_ema ? &ema : NULL));
//   CX_TRY(weights_load(&pt, "runs/a/last.safetensors"));   // or infer/open.h's model_open
//   CX_TRY(checkpoint_load_state("runs/a/last.safetensors", &pt, &ts, &opt, &ema, &has_state));
#pragma once
#include "train/optim.h"

typedef struct {
    int stage;               // 1: backbone frozen, 2: everything
    int epoch;               // epochs completed (over both stages)
    int64_t global_step;     // optimizer steps taken (over both stages)
    int64_t stage_step;      // optimizer steps taken in the current stage (drives its LR schedule)
    int64_t batch_in_epoch;  // batches consumed in the current epoch (resume mid-epoch), per rank
    int64_t samples_in_epoch;// the same cursor in samples of all ranks (-1: not recorded: batch_in_epoch
                             // × the stage's batch size, one rank); a resume on another number of ranks
                             // re-shards from it
    int world;               // ranks that trained (1 when not recorded)
    double best_score;       // best validation Sα so far
    int best_epoch;
    uint64_t seed;
    uint64_t token;          // random id tying a state file to its weights file (and naming it)
    int64_t log_bytes;       // length of train_log.jsonl at this save (resume cuts the log back to it)
    int n_extra;             // values in extra[] (MOE_BALANCE_BIAS selection biases, 4 scales × E)
    double extra[256];       // model state outside the parameter table that training changes
} TrainState;

// Writes DIR/NAME.state.<token>.safetensors then DIR/NAME.safetensors (the commit),
// then removes older states; with ts NULL only the weights. opt/ema may be NULL.
// GPU tables, moments and EMA are downloaded into their host copies first.
cx_status checkpoint_save(const char *dir, const char *name, const ParamTable *pt, const char *config_json,
                          TrainState *ts, AdamW *opt, Ema *ema);
// The training state the weights file names, when it exists (opt and ema, which may
// be NULL, are uploaded to the GPU for GPU tables); pt gives the sizes (the weights
// themselves are loaded by the caller). *has_state tells whether a state was loaded
// (may be NULL); none named (best.safetensors, a PyTorch file) is *has_state = 0, and
// a named state that is missing is a warning and *has_state = 0.
cx_status checkpoint_load_state(const char *weights_path, const ParamTable *pt, TrainState *ts, AdamW *opt, Ema *ema,
                                int *has_state);

// The state file of a weights file for a token (0: the pre-token name NAME.state.safetensors).
void checkpoint_state_path(const char *weights_path, uint64_t token, char *out, size_t n);
// Removes DIR/NAME.state.<t>.safetensors for every token t other than keep (and the
// pre-token NAME.state.safetensors when legacy); returns how many. The leftovers of a
// kill between a state's write and its commit.
int checkpoint_tidy(const char *dir, const char *name, uint64_t keep, int legacy);
// The token DIR/NAME.safetensors names (0 when it has none).
cx_status checkpoint_read_token(const char *weights_path, uint64_t *token);

// DIR/best.safetensors with its score and epoch in the metadata, unless the file
// there already holds a score >= score (then *saved = 0 and nothing is written).
cx_status checkpoint_save_best(const char *dir, const ParamTable *pt, const char *config_json, double score, int epoch,
                               int *saved);
// The score and epoch a best.safetensors carries; CX_ENOTFOUND when the file or its score is absent.
cx_status checkpoint_read_best(const char *path, double *score, int *epoch);
