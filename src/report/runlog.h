// runlog.h — a training run's train_log.jsonl read back (train/trainer.h writes it):
// the optimizer steps, the epochs (validation scores, routing statistics), the
// (re)starts and how the run ended, and what had to be skipped to read it. This is
// the data `camoxpert report` draws; runlog_page_json turns it into the page's JSON.
//
// Reading is forgiving, because a report is most wanted for runs that went wrong:
//   * a last line without its newline (a run still writing, or killed mid-write) and
//     any line that is not JSON are skipped, each with a note naming the line;
//   * a resume appends a "type":"run" record (or, in logs without one, is seen where
//     the step counter goes back): the steps and epochs the resumed run did again
//     replace the first attempt's, and the resume is kept as a segment;
//   * null values (cJSON writes NaN and infinities as null) stay NAN, drawn as gaps.
//
//   RunLog L;
//   CX_TRY(runlog_load("runs/a/train_log.jsonl", &L));
//   for (int i = 0; i < L.n_notes; i++) printf("note: %s\n", L.notes[i]);
//   cJSON *page = runlog_page_json(&L, 2000);   // steps decimated to <= 2000 points
//   runlog_free(&L);
#pragma once
#include "core/core.h"
#include <cjson/cJSON.h>
#include <stdint.h>

#define RUNLOG_NTERMS 10           // loss terms of a step record
#define RUNLOG_NVAL 10             // validation scores of an epoch record
#define RUNLOG_MAX_SCALES 4
#define RUNLOG_MAX_EXPERTS 64
#define RUNLOG_MAX_NOTES 40

// JSON keys, in the order of RunStep.term and RunEpoch.val.
extern const char *const runlog_term_keys[RUNLOG_NTERMS];   // "bce", "iou", ... "balance"
extern const char *const runlog_val_keys[RUNLOG_NVAL];      // "Smeasure", "wFmeasure", "MAE", ... "IoU"

typedef struct {
    int64_t step;                  // optimizer steps done (1-based, over both stages)
    int stage, epoch, segment;     // epoch: 1-based, the one this step belongs to
    double lr, loss, grad_norm, images_per_s;
    double term[RUNLOG_NTERMS];
} RunStep;

typedef struct {
    int epoch, stage, segment;     // epoch: epochs completed after this one (1-based)
    int64_t step;
    double loss, seconds;
    int has_val, val_images, best;
    double val[RUNLOG_NVAL];
    int has_routing, n_scales, E;  // routing statistics of the training batches (sparse models)
    double share[RUNLOG_MAX_SCALES][RUNLOG_MAX_EXPERTS];        // share of images that chose the expert
    double mean_weight[RUNLOG_MAX_SCALES][RUNLOG_MAX_EXPERTS];  // mean routing weight when chosen
    double mean_prob[RUNLOG_MAX_SCALES][RUNLOG_MAX_EXPERTS];    // mean router probability
    double balance[RUNLOG_MAX_SCALES];                          // mean balancing loss
    int n_cat;
    char **cat_name;               // (n_cat) image categories (COD10K super-class, synthetic family)
    int *cat_images;               // (n_cat)
    double *cat_share;             // (n_cat, n_scales, E) share of the category's images per expert
} RunEpoch;

// One (re)start of the run: from a "type":"run" record, or inferred where the step
// counter went back in a log that has none.
typedef struct {
    int inferred;                  // 1: no "run" record (a log written before they existed)
    int line;                      // where it starts in the file (1-based)
    int64_t start_step;            // steps done before it (a resume's checkpoint)
    int start_epoch;
    double unix_start;             // NAN when unknown
    cJSON *run;                    // the "run" record (NULL when inferred)
    cJSON *end;                    // its "type":"end" record (NULL: none — still going, or killed)
    double last_unix;              // the last time the segment is known to be alive (end, or NAN)
} RunSegment;

typedef struct {
    char *path;
    double mtime;                  // the log's modification time (unix seconds)
    RunStep *steps;                // (n_steps) in step order, the latest attempt of each step
    int n_steps;
    RunEpoch *epochs;              // (n_epochs) in epoch order, the latest attempt of each epoch
    int n_epochs;
    RunSegment *seg;               // (n_seg) every (re)start, in file order
    int n_seg;
    int lines, skipped;            // lines read, lines skipped (each has a note)
    int64_t replaced_steps;        // step records that a resumed attempt replaced
    int replaced_epochs;
    char *notes[RUNLOG_MAX_NOTES]; // what was skipped or inferred, one sentence each
    int n_notes, n_notes_dropped;
} RunLog;

// Reads PATH. Fails only when the file cannot be read (CX_EIO/CX_ENOTFOUND, naming it
// and the fix); an empty or wholly unreadable log loads with notes saying so.
cx_status runlog_load(const char *path, RunLog *L);
// The same from memory (tests); name is used in notes.
cx_status runlog_parse(const char *text, size_t n, const char *name, RunLog *L);
void runlog_free(RunLog *L);

// The epoch that holds the best validation Sα (the last record flagged best), or NULL.
const RunEpoch *runlog_best_epoch(const RunLog *L);
// The run's first "run" record's field KEY as a cJSON item (the latest segment's when
// latest != 0), or NULL.
const cJSON *runlog_run_field(const RunLog *L, const char *key, int latest);

// The page's data for one run (the caller deletes it): facts, segments,
// notes, step series decimated to at most max_points points (bucket means that never
// straddle a stage or a resume), epoch series with null where not validated, the best
// epoch, routing series and per-category heat maps. docs/REPORT.md lists the keys.
cJSON *runlog_page_json(const RunLog *L, int max_points);
