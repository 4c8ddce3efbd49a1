// hostile.h — helpers of the hostile tests (tests/test_hostile*.c; hostile_common.c).
//
//   char *o;
//   int rc = run_bin(&o, "predict --weights %s --input %s --out %s", tiny_checkpoint(), photos, out);
//   CHECKF(rc == 2 && strstr(o, "--overwrite"), "exit %d: %s", rc, o);
#pragma once
#include "test.h"
#include "infer/open.h"
#include <stdint.h>

// Every command whose messages run_bin checks against its --help (NULL-terminated).
extern const char *const hostile_commands[];
// `camoxpert ARGS` with a 60 s limit (124: it hung and was killed); *out (may be NULL)
// gets stdout and stderr. Every --option an error, warning or note line names must be
// one the command has (a failure of the test otherwise).
int run_bin(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void check_named_options(const char *cmd, const char *out);
// A tiny synthetic set in the COD10K-v3 layout (12 train, 2 test photos of 64²), made
// by the program itself, fresh for each call: TMP/name ("" when synth failed).
const char *tiny_set(const char *name);
// An untrained sparse edgenext_xx_small model (E 4, k 2) from seed 5, and that model
// saved with its config in the metadata: TMP/model.safetensors (NULL on failure).
cx_status tiny_model(Model *m);
const char *tiny_checkpoint(void);
// FNV hash of a file's bytes (0: unreadable); of every regular file of a folder, names
// and contents; the number of regular files under a folder (-1: error).
uint64_t file_hash(const char *path);
uint64_t dir_hash(const char *dir);
int count_files(const char *dir);
// A finished one-epoch training run of a dense edgenext_xx_small at 32² on a tiny set:
// TMP/name with best/last.safetensors and train_log.jsonl ("" on failure).
const char *tiny_run(const char *name);
// What a run directory shows of a run: the steps train_log.jsonl logged (dup: a step logged
// twice or one missing), and best.safetensors' validation Sα (-1: none).
typedef struct { int steps, dup; double best_sm; } RunSummary;
void run_summary_read(const char *dir, RunSummary *r);
