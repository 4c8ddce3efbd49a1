// table.h — dataset tables of COD scores as papers print them: one table per dataset,
// one row per method, the columns Sα, Fβw, MAE, Eφ mean/max/adaptive, Fβ
// mean/max/adaptive (each named with its variant), then IoU and Dice at 0.5; the best
// value of each column marked. As aligned text, Markdown, CSV or LaTeX; `camoxpert
// eval --format` picks one, and its JSON reads the marks through eval_table_best.
//
//   EvalRow rows[2] = { { "ours", &s1, NULL }, { "SINet", NULL, "no folder CAMO" } };
//   EvalTable t = { "CAMO-test", "250 images", rows, 2 };
//   eval_tables_print(stdout, EVAL_FMT_MD, &t, 1, 0);
#pragma once
#include "eval/metrics.h"
#include <stdio.h>

typedef enum { EVAL_FMT_TEXT, EVAL_FMT_MD, EVAL_FMT_CSV, EVAL_FMT_LATEX } eval_format;

enum { EVAL_N_COLS = 11 };   // the table's score columns

typedef struct {
    const char *method;
    const MetricsSummary *s;   // NULL: not scored
    const char *why;           // when s is NULL: why ("3 predictions missing")
} EvalRow;

typedef struct {
    const char *title;         // "CAMO-test"
    const char *caption;       // "250 images, GT data/TestDataset/CAMO/GT"
    const EvalRow *rows;       // (n_rows)
    int n_rows;
} EvalTable;

// The columns: JSON key, whether lower is better (MAE). whole: IoU and Dice from the
// dataset's summed counts (--average dataset) rather than per-image means.
extern const char *const eval_col_keys[EVAL_N_COLS];
extern const int eval_col_lower_better[EVAL_N_COLS];
void eval_row_values(const MetricsSummary *s, int whole, double *v);   // v: (EVAL_N_COLS,)

// 1 when row r holds the best value of column c among the scored rows, compared at
// `digits` decimals (as printed; < 0: exactly), and at least two rows are scored.
int eval_table_best(const EvalTable *t, int r, int c, int whole, int digits);

// Prints the tables one after another. CSV is one header and a row per (table, method),
// with a "best" column naming the row's best columns; text cells a spreadsheet would run
// as a formula (=, +, -, @ first) are quoted with a leading apostrophe.
void eval_tables_print(FILE *fp, eval_format f, const EvalTable *t, int n, int whole);
// The CSV header eval_tables_print writes (its first line, the file's mark).
const char *eval_tables_csv_header(void);
